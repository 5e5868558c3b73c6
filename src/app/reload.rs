//! `jobrun reload JOB.toml`: checks the edited manifest as the run will
//! read it, finds the run holding the job's lock and sends it SIGHUP; the
//! run takes the new `bwlimit` within a second (see `retune`).

use super::{Failure, load, out};
use crate::cli::JsonArgs;
use crate::exit::Exit;

pub fn reload(args: &JsonArgs) -> Result<Exit, Failure> {
    // A manifest the run would refuse is refused here first (exit 2): the
    // operator sees the mistake now, and the run keeps its limit.
    let job = load(&args.common)?;
    let Some(pid) = crate::lock::holder(&job.db) else {
        return Err(Failure::new(
            format!(
                "no run of this job is going (nothing holds `{}.lock`); the next run reads the manifest anyway",
                job.db
            ),
            Exit::Locked,
        ));
    };
    let sent = rustix::process::Pid::from_raw(pid as i32)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|p| rustix::process::kill_process(p, rustix::process::Signal::HUP));
    if let Err(e) = sent {
        return Err(Failure::new(
            format!("cannot signal the run (pid {pid}): {e}"),
            Exit::Fatal,
        ));
    }
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
