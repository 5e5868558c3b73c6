//! argv → cli → app::run → exit code. Diagnostics (tracing) go to stderr,
//! never into the audit log.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = jobrun::cli::Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| jobrun::progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    quiet_panics();
    // A bug must not print a backtrace at the user (SPEC §9): one line, and
    // exit 4 like any fatal condition. State stays safe: the DB rolls back
    // uncommitted rows, temporaries are removed by the next scan.
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jobrun::app::run(cli)))
        .map_or(jobrun::exit::Exit::Fatal, |exit| exit);
    std::process::ExitCode::from(code.code())
}

/// Replaces the panic message with one `jobrun:` line, printed once even
/// when a worker thread's panic is re-raised by the thread that joins it.
fn quiet_panics() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::panic::set_hook(Box::new(|info| {
        if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "jobrun: internal error, run aborted (a bug; please report it): {}{at}",
            what.replace('\n', " ")
        );
    }));
}
