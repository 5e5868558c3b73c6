//! How a run ends, as the runner hands it back: the run's error ([`RunError`],
//! its exit code and its one line) and what it did ([`RunReport`]).

use std::time::Duration;

use camino::Utf8PathBuf;

use super::Stage;
use crate::audit::AuditError;
use crate::db::DbError;
use crate::decide::RunMode;
use crate::exit::Exit;
use crate::lock::LockError;
use crate::manifest::Job;
use crate::mirror::{MirrorError, MirrorReport};
use crate::scan::{ScanError, ScanReport};
use crate::transfer::{TransferError, TransferReport};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "{which} root `{path}` is on another filesystem than when this job started: it was on \
         {recorded}, it is on {now} now (share not mounted? or mounted over it?); nothing was done"
    )]
    OtherFilesystem {
        which: &'static str,
        path: Utf8PathBuf,
        recorded: String,
        now: String,
    },
    #[error(
        "{which} root `{path}` is on {now}, not a network filesystem (NFS, SMB/CIFS, FUSE), and \
         `require_mounts` is on (share not mounted?); nothing was done"
    )]
    NotNetwork {
        which: &'static str,
        path: Utf8PathBuf,
        now: String,
    },
    #[error("cannot tell which filesystem {which} root `{path}` is on: {source}")]
    FsUnknown {
        which: &'static str,
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("destination root `{path}` is not a directory")]
    DestNotDir { path: Utf8PathBuf },
    #[error("cannot create destination root `{path}`: {source}")]
    DestRoot {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

impl RunError {
    pub fn exit(&self) -> Exit {
        match self {
            RunError::Lock(LockError::Locked { .. }) => Exit::Locked,
            RunError::Db(DbError::RootsDiffer { .. })
            | RunError::Scan(ScanError::RootsCross { .. }) => Exit::Usage,
            RunError::Scan(ScanError::Interrupted) => Exit::Interrupted,
            _ => Exit::Fatal,
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub mode: RunMode,
    pub stages: Vec<Stage>,
    pub scan: Option<ScanReport>,
    pub transfer: TransferReport,
    /// `None` when the plan had no mirror stage (or it did not run).
    pub mirror: Option<MirrorReport>,
    pub elapsed: Duration,
    pub exit: Exit,
    /// `--dry-run`: nothing was copied or deleted.
    pub dry_run: bool,
}

impl RunReport {
    /// Entries that failed this run: files the transfer could not copy,
    /// source entries the scan could not read or would not write (case
    /// collisions, mounts that went away), extras the mirror could not
    /// delete.
    pub fn failed(&self) -> u64 {
        self.transfer.failed
            + self.scan.as_ref().map_or(0, |s| {
                s.source_errors + s.case_collisions + s.mounts_gone.len() as u64
            })
            + self.mirror.as_ref().map_or(0, |m| m.failed)
    }

    /// The one-line summary printed at the end of every run, after the
    /// [`RunReport::adopted_note`] when there is one.
    pub fn summary(&self) -> String {
        let line = crate::progress::summary_line(&self.summary_fields());
        match self.adopted_note() {
            Some(note) => format!("{note}\n{line}"),
            None => line,
        }
    }

    /// The summary's figures.
    pub fn summary_fields(&self) -> crate::progress::Summary<'static> {
        let t = &self.transfer;
        crate::progress::Summary {
            files: t.files_done,
            bytes: t.bytes_done,
            failed: self.failed(),
            deleted: self.mirror.as_ref().map(|m| m.deleted),
            dry_run: self.dry_run,
            elapsed: self.elapsed,
            mode: Some(self.mode.name()),
            exit_code: self.exit.code(),
            reason: self.exit.reason(),
        }
    }

    /// Files this run's scan adopted (found in place, not read).
    pub fn adopted(&self) -> u64 {
        self.scan.as_ref().map_or(0, |s| s.adopted)
    }

    /// What this run's scan took as synced without reading (files found in
    /// place at the destination: no hash recorded), and where to compare
    /// them; `None` when it adopted none.
    pub fn adopted_note(&self) -> Option<String> {
        let n = self.scan.as_ref().map_or(0, |s| s.adopted);
        let (were, them) = if n == 1 {
            ("was", "it")
        } else {
            ("were", "them")
        };
        (n > 0).then(|| {
            format!(
                "jobrun: {} found in place at the destination {were} taken as synced on size and \
                 mtime, not read (no hash recorded); `jobrun verify` compares {them} with the \
                 source byte for byte",
                crate::progress::count(n, "file", "files")
            )
        })
    }
}

/// A run that was recorded: it has its `runs` row and its `run_start` and
/// `run_end` lines, which say what [`RunReport`] says.
#[derive(Debug)]
pub struct Finished {
    pub report: RunReport,
    /// The fatal condition that ended it (exit 4), if any.
    pub error: Option<RunError>,
}

/// The one error line of a failed run, as printed and as recorded (`runs`
/// row, `run_end`). A bare SQLite error ("attempt to write a readonly
/// database") gets the DB's path, which it lacks.
pub fn describe(e: &RunError, job: &Job) -> String {
    use crate::db::DbError::Sql;
    match e {
        RunError::Db(Sql(s))
        | RunError::Scan(ScanError::Db(Sql(s)))
        | RunError::Transfer(TransferError::Db(Sql(s))) => {
            format!("state DB `{}` is unusable: {s}", job.db)
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(adopted: Option<u64>) -> RunReport {
        RunReport {
            mode: RunMode::Scan,
            stages: Vec::new(),
            scan: adopted.map(|adopted| ScanReport {
                adopted,
                ..ScanReport::default()
            }),
            transfer: TransferReport::default(),
            mirror: None,
            elapsed: Duration::from_secs(1),
            exit: Exit::Ok,
            dry_run: false,
        }
    }

    #[test]
    fn the_summary_says_what_the_scan_adopted_without_reading() {
        assert_eq!(report(None).adopted_note(), None);
        assert_eq!(report(Some(0)).adopted_note(), None);
        assert!(!report(Some(0)).summary().contains('\n'));
        let one = report(Some(1)).adopted_note().unwrap();
        assert!(
            one.starts_with("jobrun: 1 file found in place at the destination was taken")
                && one.ends_with("`jobrun verify` compares it with the source byte for byte"),
            "{one}"
        );
        let s = report(Some(3)).summary();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(
            lines[0].starts_with("jobrun: 3 files found in place"),
            "{s}"
        );
        assert!(lines[1].starts_with("jobrun: 0 files, 0 B copied"), "{s}");
    }
}
