use clap::Parser;
use registrar::config::{Cli, Command};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Check(args)) => return registrar::check::run(&args),
        None => cli.serve,
    };
    match registrar::startup::serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registrar: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
