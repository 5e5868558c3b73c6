//! Command dispatch: turns a parsed [`Cli`] into an exit code. `main.rs`
//! only parses arguments, sets up tracing and calls [`run`].

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::cli::{Cli, Command, CommonArgs, StatusArgs};
use crate::db::StateDb;
use crate::decide;
use crate::manifest::{self, Job};
use crate::progress::{Progress, Reporter, Style};
use crate::runner::{self, Exit};
use crate::units::human_bytes;

/// Runs one command; every error has already been printed as one line
/// prefixed `jobrun:` when this returns.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Status(args)) => status(&args),
        None => run_job(cli),
    }
}

fn fail(msg: impl std::fmt::Display, exit: Exit) -> Exit {
    eprintln!("jobrun: {msg}");
    exit
}

fn load(args: &CommonArgs) -> Result<Job, Exit> {
    manifest::load(&args.job, &args.overrides).map_err(|e| fail(e, Exit::Usage))
}

fn run_job(cli: Cli) -> Exit {
    let args = cli.run;
    let path = args
        .job
        .expect("clap requires JOB.toml without a subcommand");
    let job = match manifest::load(&path, &args.overrides) {
        Ok(j) => j,
        Err(e) => return fail(e, Exit::Usage),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once (still safe: temps are cleaned by the
        // next scan, uncommitted rows are simply copied again).
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let style = Style::pick(args.quiet, job.progress_interval);
    let progress = Progress::default();
    let quiet = args.quiet;
    let say = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let reporter = Reporter::start(&progress, style);
    let result = runner::run(&job, args.rescan, &progress, &stop, &say);
    drop(reporter);
    match result {
        Ok(report) => {
            println!("{}", report.summary());
            report.exit
        }
        Err(e) => fail(e.to_string(), e.exit()),
    }
}

fn check(args: &CommonArgs) -> Exit {
    let job = match load(args) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let mut out = String::new();
    let rows: Vec<(&str, String)> = vec![
        ("manifest", job.manifest.to_string()),
        ("source", job.source.to_string()),
        ("destination", job.destination.to_string()),
        ("db", job.db.to_string()),
        ("log", job.log.to_string()),
        ("checksum", job.checksum.to_string()),
        (
            "block_size",
            format!(
                "{} ({} bytes)",
                human_bytes(job.block_size as u64),
                job.block_size
            ),
        ),
        (
            "queue_capacity",
            format!(
                "{} (FIFO memory up to {})",
                job.queue_capacity,
                human_bytes(job.fifo_bytes())
            ),
        ),
        (
            "transfers",
            format!(
                "{} (files at once; {} queued blocks each)",
                job.transfers,
                job.lane_capacity()
            ),
        ),
        (
            "bwlimit",
            job.bwlimit.map_or("off".into(), |b| {
                format!("{}/s ({b} bytes/s)", human_bytes(b))
            }),
        ),
        ("delete_extras", job.delete_extras.to_string()),
        ("inplace", job.inplace.to_string()),
        (
            "modify_window",
            humantime::format_duration(job.modify_window).to_string(),
        ),
        (
            "progress_interval",
            humantime::format_duration(job.progress_interval).to_string(),
        ),
    ];
    for (k, v) in rows {
        out.push_str(&format!("{k:<18} {v}\n"));
    }
    let mode = match StateDb::open_existing_read_only(&job.db).and_then(|db| match db {
        None => Ok(None),
        Some(db) => Ok(Some((db.backlog()?, db.last_scan_complete()?))),
    }) {
        Ok(None) => Some(decide::RunMode::Scan),
        Ok(Some(((files, bytes), trusted))) => Some(decide::run_mode(files, bytes, !trusted)),
        Err(e) => {
            out.push_str(&format!("warning: cannot read state DB: {e}\n"));
            None
        }
    };
    match mode {
        Some(mode) => {
            let stages: Vec<&str> = runner::plan(&job, mode).iter().map(|s| s.name()).collect();
            out.push_str(&format!("{:<18} {}\n", "mode", runner::mode_line(mode)));
            out.push_str(&format!("{:<18} {}\n", "plan", stages.join(" -> ")));
        }
        None => {
            let stages: Vec<&str> = runner::plan(&job, decide::RunMode::Scan)
                .iter()
                .map(|s| s.name())
                .collect();
            out.push_str(&format!(
                "{:<18} {} (scan only without a backlog)\n",
                "plan",
                stages.join(" -> ")
            ));
        }
    }
    for (key, root) in [("source", &job.source), ("destination", &job.destination)] {
        if !root.exists() {
            out.push_str(&format!(
                "warning: {key} root `{root}` does not exist (yet)\n"
            ));
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
    Exit::Ok
}

fn status(args: &StatusArgs) -> Exit {
    let job = match load(&args.common) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let db = match StateDb::open_existing_read_only(&job.db) {
        Ok(Some(db)) => db,
        Ok(None) => {
            return fail(
                format!("no state DB at `{}` yet: the job has never run", job.db),
                Exit::Usage,
            );
        }
        Err(e) => return fail(e, Exit::Fatal),
    };
    let counts = match db.status_counts() {
        Ok(c) => c,
        Err(e) => return fail(e, Exit::Fatal),
    };
    if args.json {
        let v = serde_json::json!({ "db": job.db, "counts": counts });
        println!("{v}");
    } else {
        println!("{:<8} {:>12} {:>14}", "status", "files", "bytes");
        for c in &counts {
            println!(
                "{:<8} {:>12} {:>14}",
                c.status,
                c.files,
                human_bytes(c.bytes)
            );
        }
    }
    Exit::Ok
}
