//! `jobrun reload JOB.toml`: checks the edited manifest as the run will
//! read it, finds the run holding the job's lock and sends it SIGHUP; the
//! run takes the new `bwlimit` within a second (see `retune`). And
//! `jobrun reopen JOB.toml`: SIGUSR1 to the same process, whose audit log
//! reopens its path at its next line (after logrotate moved it).

use super::{Failure, load, out};
use crate::cli::JsonArgs;
use crate::exit::Exit;
use crate::manifest::Job;
use rustix::process::Signal;

pub fn reload(args: &JsonArgs) -> Result<Exit, Failure> {
    // A manifest the run would refuse is refused here first (exit 2): the
    // operator sees the mistake now, and the run keeps its limit.
    let job = load(&args.common)?;
    let pid = signal_holder(&job, Signal::HUP, "the next run reads the manifest anyway")?;
    if args.json {
        #[derive(serde::Serialize)]
        struct Sent {
            pid: u32,
            bwlimit: String,
        }
        out(&super::json(&Sent {
            pid,
            bwlimit: job.bwlimit.to_string(),
        })?);
    } else {
        out(&format!(
            "reload: sent SIGHUP to the run (pid {pid}); it takes `bwlimit = {}` within a second (its progress and audit log say so)\n",
            job.bwlimit
        ));
    }
    Ok(Exit::Ok)
}

pub fn reopen(args: &JsonArgs) -> Result<Exit, Failure> {
    let job = load(&args.common)?;
    let pid = signal_holder(&job, Signal::USR1, "the next run opens the log anew")?;
    if args.json {
        #[derive(serde::Serialize)]
        struct Sent<'a> {
            pid: u32,
            log: &'a str,
        }
        out(&super::json(&Sent {
            pid,
            log: job.log.as_str(),
        })?);
    } else {
        out(&format!(
            "reopen: sent SIGUSR1 to the run (pid {pid}); it reopens `{}` at its next line\n",
            job.log
        ));
    }
    Ok(Exit::Ok)
}

/// Sends `signal` to the run or verify holding the job's lock: its pid,
/// exit 3 when none holds it (`idle` says what that means), 4 when the
/// signal cannot be sent.
fn signal_holder(job: &Job, signal: Signal, idle: &str) -> Result<u32, Failure> {
    let Some(pid) = crate::lock::holder(&job.db) else {
        return Err(Failure::new(
            format!(
                "no run of this job is going (nothing holds `{}.lock`); {idle}",
                job.db
            ),
            Exit::Locked,
        ));
    };
    let sent = rustix::process::Pid::from_raw(pid as i32)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|p| rustix::process::kill_process(p, signal));
    match sent {
        Ok(()) => Ok(pid),
        Err(e) => Err(Failure::new(
            format!("cannot signal the run (pid {pid}): {e}"),
            Exit::Fatal,
        )),
    }
}
