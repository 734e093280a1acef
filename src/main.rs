use clap::Parser;
use registrar::cli;
use registrar::config::{Cli, Command, ServeArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
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

/// Transparent huge pages off for this process, before it allocates much. mimalloc asks the
/// kernel for huge pages, and sled allocates a fresh log buffer for each flush and frees it
/// after the write: each new buffer then faulted in a 2 MiB page that the kernel zeroed whole
/// (`clear_page_erms` was 7 % of the server's samples under creates, on the writer thread).
/// With 4 KiB pages only what is touched is zeroed: creates +5-8 % and their p99 -30 %, PATCH
/// and GET unchanged (docs/PERFORMANCE.md, "Issue 19's fourth look"). Process-wide, like the
/// umask, hence here and not in the library. A kernel without the flag keeps its default.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
