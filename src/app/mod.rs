//! Commands: a parsed [`Cli`] → `run`, `check`, `status` or `reload` (one file
//! each) → an exit code. A command that fails returns a [`Failure`], and
//! this file prints it, once, as one line prefixed `jobrun:` (ripgrep's
//! shape); `main.rs` only parses arguments, sets up tracing and calls [`run`].

mod check;
mod hashes;
mod manual;
mod mirror;
mod rebase;
mod reload;
mod report;
mod run;
mod shard;
mod shards_status;
mod status;
mod verify;

use std::io::Write;

use crate::cli::{Cli, Command, CommonArgs};
use crate::exit::Exit;
use crate::manifest::{self, Job};

pub use status::{FailedFile, RunStatus, StatusReport, render_status};

/// A command that did not succeed: the one line to print (stderr), the
/// exit code, and what its stdout holds.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub exit: Exit,
    pub stdout: Stdout,
}

/// A failed command's stdout, besides its stderr line.
#[derive(Debug)]
pub enum Stdout {
    /// Nothing yet: with `--json` the dispatcher prints `{"exit", "error"}`.
    Nothing,
    /// This text, printed after the stderr line (a run's summary).
    After(String),
    /// The command printed its whole stdout itself, before the line
    /// (`check`: its settings, or its one JSON object).
    Printed,
}

impl Failure {
    fn new(message: impl std::fmt::Display, exit: Exit) -> Self {
        Self {
            message: message.to_string(),
            exit,
            stdout: Stdout::Nothing,
        }
    }
}

/// Runs one command and prints its failure, if any. With `--json`, stdout
/// always gets one JSON object: a failure that printed none prints
/// `{"exit": CODE, "error": LINE}`.
pub fn run(cli: Cli) -> Exit {
    let json = match &cli.command {
        Some(Command::Check(a) | Command::Reload(a) | Command::Reopen(a)) => a.json,
        Some(Command::Status(a)) => a.json,
        Some(Command::Verify(a)) => a.json,
        Some(
            Command::Hashes(_)
            | Command::Report(_)
            | Command::GenerateMan { .. }
            | Command::Completions { .. }
            | Command::Plan(_)
            | Command::Mirror(_)
            | Command::Rebase(_),
        ) => false,
        None => cli.run.json,
    };
    let result = match cli.command {
        Some(Command::Check(args)) => check::check(&args),
        Some(Command::Status(args)) => status::status(&args),
        Some(Command::Reload(args)) => reload::reload(&args),
        Some(Command::Reopen(args)) => reload::reopen(&args),
        Some(Command::Verify(args)) => verify::verify(&args),
        Some(Command::Hashes(args)) => hashes::hashes(&args),
        Some(Command::Report(args)) => report::report(&args),
        Some(Command::GenerateMan { dir }) => manual::generate_man(&dir),
        Some(Command::Completions { shell }) => manual::completions(shell),
        Some(Command::Plan(args)) => shard::plan(&args),
        Some(Command::Mirror(args)) => mirror::mirror(&args),
        Some(Command::Rebase(args)) => rebase::rebase(&args),
        None => run::run_job(cli),
    };
    match result {
        Ok(exit) => exit,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "jobrun: {}", f.message);
            match &f.stdout {
                Stdout::After(text) => out(text),
                Stdout::Nothing if json => out(&error_json(&f)),
                Stdout::Nothing | Stdout::Printed => {}
            }
            f.exit
        }
    }
}

/// `{"exit": 2, "error": "…"}`: a `--json` command's failure.
fn error_json(f: &Failure) -> String {
    let v = serde_json::json!({ "exit": f.exit.code(), "error": f.message });
    format!("{v}\n")
}

/// `value` as pretty JSON and a newline: what a `--json` command prints.
fn json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|t| format!("{t}\n"))
        .map_err(|e| Failure::new(e, Exit::Fatal))
}

/// SIGUSR1 (`jobrun reopen`, logrotate) makes the audit log reopen its
/// path at its next line. Registered before the job's lock is taken, so
/// the lock holder that `reopen` signals never dies of it.
fn reopen_on_sigusr1() {
    let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR1, crate::audit::reopen_flag());
}

/// Prints to stdout; a closed stdout (`| head`) is not an error worth a
/// panic, the exit code still tells what happened.
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// The job, or the shard of it `--shard` names.
fn load(args: &CommonArgs) -> Result<Job, Failure> {
    let job = load_plain(&args.job, &args.overrides)?;
    shard::pick(job, args.shard.as_deref(), false)
}

/// The whole job, as the manifest says.
fn load_plain(path: &std::path::Path, overrides: &crate::cli::Overrides) -> Result<Job, Failure> {
    manifest::load(path, overrides)
        .map(noticed)
        .map_err(|e| Failure::new(e, Exit::Usage))
}

/// Prints the job's loading warnings (one line each) and gives it back.
fn noticed(job: Job) -> Job {
    for n in &job.notices {
        let _ = writeln!(std::io::stderr(), "jobrun: {n}");
    }
    job
}

/// [`load`], refusing what this user cannot run (`run` and `check`).
fn load_runnable(
    path: &std::path::Path,
    overrides: &crate::cli::Overrides,
) -> Result<Job, Failure> {
    let euid = rustix::process::geteuid().as_raw();
    manifest::load(path, overrides)
        .and_then(|job| job.check_privileges(euid).map(|()| job))
        .and_then(|job| job.check_acl_models().map(|()| job))
        .map(noticed)
        .map_err(|e| Failure::new(e, Exit::Usage))
}

/// The job's state DB, read-only, for commands that only read it
/// (`status`, `hashes`): exit 2 when the job never ran or the DB belongs
/// to another job (as a run would say), 4 when it cannot be read.
fn job_db(job: &Job) -> Result<crate::db::StateDb, Failure> {
    use crate::db::{DbError, StateDb};
    let db = match StateDb::open_existing_read_only(&job.db) {
        Ok(Some(db)) => db,
        Ok(None) => {
            return Err(Failure::new(
                format!("no state DB at `{}` yet: the job has never run", job.db),
                Exit::Usage,
            ));
        }
        Err(e) => return Err(Failure::new(e, Exit::Fatal)),
    };
    match db.verify_roots(&job.source, &job.destination, &crate::runner::same_folder) {
        Ok(()) => Ok(db),
        Err(e @ DbError::RootsDiffer { .. }) => Err(Failure::new(e, Exit::Usage)),
        Err(e) => Err(Failure::new(e, Exit::Fatal)),
    }
}
