use clap::Parser;
use registrar::cli;
use registrar::config::{Cli, Command, ServeArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::RenderWorker) = cli.command {
        // Before logging starts its thread: the worker's limits cover the whole process, and
        // its stdout is the channel to the server.
        return registrar::mail::run_worker();
    }
    // The server logs every request; the one-shot commands only what goes wrong.
    let level = match cli.command {
        None | Some(Command::Serve(_)) => "info",
        Some(_) => "warn",
    };
    registrar::logging::init(level);
    // Every command may create files of the database (serve, import, backup): owner-only.
    // Set here, not in the library: the umask is process-wide, and a process embedding the
    // server (the tests) keeps its own.
    registrar::store::files::restrict_new_files();
    let code = match cli.command {
        Some(Command::Serve(args)) => serve(*args),
        None => serve(cli.serve),
        Some(Command::Check(args)) => registrar::check::run(&args),
        Some(Command::Export(args)) => cli::finish(cli::export(&args)),
        Some(Command::Import(args)) => match cli::import(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(cli::EXIT_ROWS_REFUSED),
            Err(e) => cli::finish(Err(e)),
        },
        Some(Command::Backup(args)) => cli::finish(cli::backup(&args)),
        Some(Command::Migrate(args)) => cli::finish(cli::migrate(&args)),
        // Served before logging started, above.
        Some(Command::RenderWorker) => ExitCode::SUCCESS,
    };
    registrar::logging::flush();
    code
}

fn serve(args: ServeArgs) -> ExitCode {
    actix_web::rt::System::new().block_on(async move {
        match registrar::startup::serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("registrar: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    })
}
