//! The runner: the only place that knows stage order. It takes the job's
//! lock, opens the DB, picks the run mode, resolves the stage plan and
//! executes it. Stages talk to each other only through DB rows, so a new
//! stage is a new module plus one line in [`plan`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use tracing::info_span;

use crate::audit::{AuditError, AuditLog, FileRecord, now_rfc3339};
use crate::db::{DbError, RunRow, StateDb};
use crate::decide::{self, MountCheck, RunMode};
use crate::manifest::Job;
use crate::mirror::{self, MirrorError, MirrorOptions, MirrorReport};
use crate::progress::{PHASE_IDLE, Progress};
use crate::scan::{self, ScanError, ScanReport};
use crate::throttle::Schedule;
use crate::transfer::{self, TransferError, TransferReport};
use crate::units::human_bytes;

/// Exit codes (SPEC §9), mapped in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Exit {
    Ok = 0,
    FilesFailed = 1,
    Usage = 2,
    Locked = 3,
    Fatal = 4,
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn reason(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::FilesFailed => "some files failed",
            Exit::Usage => "bad invocation or manifest",
            Exit::Locked => "locked by another run",
            Exit::Fatal => "aborted",
            Exit::Interrupted => "interrupted",
        }
    }
}

/// One stage of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Scan,
    Transfer,
    Mirror,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Transfer => "transfer",
            Stage::Mirror => "mirror",
        }
    }
}

/// Whether `root` is a mount point (its device differs from its parent's);
/// `None` when it does not exist or cannot be examined.
fn is_mount_point(root: &std::path::Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(root).ok()?;
    let parent = root
        .parent()
        .map_or(Ok(md.clone()), std::fs::metadata)
        .ok()?;
    Some(root.parent().is_none() || md.dev() != parent.dev())
}

/// Whether a root recorded in the DB as `recorded` is the folder `wanted`
/// (the job's canonical root) under another spelling.
pub fn same_folder(recorded: &str, wanted: &Utf8Path) -> bool {
    crate::roots::resolve(Utf8Path::new(recorded)).is_ok_and(|r| r.path == wanted)
}

/// What a run refuses about its roots before it touches them, with the
/// exit code it would end with; `check` reports the same (SPEC §9: `check`
/// says what a run would do). The source must be a readable folder; the
/// destination a folder, or missing with a folder as parent (a run
/// creates it).
pub fn preflight(job: &Job) -> Result<(), RunError> {
    scan::check_source_root(job.source.as_std_path(), None)?;
    let dest = job.destination.as_std_path();
    match std::fs::metadata(dest) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(RunError::DestNotDir {
            path: job.destination.clone(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The run creates the DB's and the log's folders (with their
            // parents) before it creates the destination root.
            let made_by_run = |p: &Path| {
                [job.db.parent(), job.log.parent()]
                    .into_iter()
                    .flatten()
                    .any(|d| d.as_std_path().starts_with(p))
            };
            match dest.parent().map(|p| (p, std::fs::metadata(p))) {
                Some((_, Ok(p))) if p.is_dir() => Ok(()),
                Some((p, Err(e))) if e.kind() == std::io::ErrorKind::NotFound && made_by_run(p) => {
                    Ok(())
                }
                Some((_, Err(source))) => Err(RunError::DestRoot {
                    path: job.destination.clone(),
                    source,
                }),
                _ => Err(RunError::DestRoot {
                    path: job.destination.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
                }),
            }
        }
        Err(source) => Err(RunError::DestRoot {
            path: job.destination.clone(),
            source,
        }),
    }
}

/// The ordered stages a run executes for `mode`.
pub fn plan(job: &Job, mode: RunMode) -> Vec<Stage> {
    let mut stages = Vec::with_capacity(3);
    if mode.scans() {
        stages.push(Stage::Scan);
    }
    stages.push(Stage::Transfer);
    if job.delete_extras {
        stages.push(Stage::Mirror);
    }
    stages
}

/// The line a run prints about its mode (SPEC §3).
pub fn mode_line(mode: RunMode) -> String {
    match mode {
        RunMode::Resume { files, bytes } => {
            format!("resuming backlog: {files} files, {}", human_bytes(bytes))
        }
        RunMode::Scan => "no backlog: full scan".into(),
        RunMode::ForcedScan { files, bytes } => format!(
            "rescan requested: full scan (backlog was {files} files, {})",
            human_bytes(bytes)
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("job is locked by another run (pid {pid}); lock file `{path}`")]
    Locked { path: Utf8PathBuf, pid: String },
    #[error("cannot use lock file `{path}`: {source}")]
    Lock {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{which} root `{path}` was a mount point when this job started and is not one now \
         (share not mounted?); nothing was done"
    )]
    Unmounted {
        which: &'static str,
        path: Utf8PathBuf,
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
            RunError::Locked { .. } => Exit::Locked,
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
}

impl RunReport {
    /// Entries that failed this run: files the transfer could not copy,
    /// source entries the scan could not read or would not write (case
    /// collisions), extras the mirror could not delete.
    pub fn failed(&self) -> u64 {
        self.transfer.failed
            + self
                .scan
                .as_ref()
                .map_or(0, |s| s.source_errors + s.case_collisions)
            + self.mirror.as_ref().map_or(0, |m| m.failed)
    }

    /// The one-line summary printed at the end of every run.
    pub fn summary(&self) -> String {
        let t = &self.transfer;
        crate::progress::summary_line(&crate::progress::Summary {
            files: t.files_done,
            bytes: t.bytes_done,
            failed: self.failed(),
            deleted: self.mirror.as_ref().map_or(0, |m| m.deleted),
            dry_run: self.mirror.as_ref().is_some_and(|m| m.dry_run),
            elapsed: self.elapsed,
            mode: Some(self.mode.name()),
            exit_code: self.exit.code(),
            reason: self.exit.reason(),
        })
    }
}

/// The job's exclusive lock, held for the whole run, released on drop.
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes `<db>.lock` or reports who holds it. `flock` semantics: a
    /// killed run releases it with its last file descriptor.
    pub fn acquire(job: &Job) -> Result<Self, RunError> {
        let path = Utf8PathBuf::from(format!("{}.lock", job.db));
        let err = |source| RunError::Lock {
            path: path.clone(),
            source,
        };
        // The DB and log folders are ours (local state): create them.
        for p in [&job.db, &job.log] {
            if let Some(parent) = p.parent().filter(|d| !d.as_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(RunError::Locked {
                    path: path.clone(),
                    pid: pid.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        write!(file, "{}", std::process::id()).map_err(err)?;
        Ok(Self { _file: file })
    }
}

/// Run-level audit lines.
#[derive(Serialize)]
struct RunLine<'a> {
    ts: String,
    status: &'a str,
    job: &'a str,
    mode: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bwlimit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The audit `bwlimit` of `run_start`: the rate in force, in bytes/s as
/// before (`20971520 B/s` or `off`), then the timetable when there is one
/// (`20971520 B/s (timetable 08:00,10.0 MiB/s 12:00,20.0 MiB/s 19:00,off)`).
fn bwlimit_line(schedule: &Schedule, now: Option<u64>) -> String {
    let active = now.map_or("off".into(), |b| format!("{b} B/s"));
    match schedule {
        Schedule::Fixed(_) => active,
        Schedule::Timetable(_) => format!("{active} (timetable {schedule})"),
    }
}

/// Per-invocation choices that are not manifest keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `--rescan`: scan even when a backlog exists.
    pub rescan: bool,
    /// `--dry-run`: scan (or resume), then only report what would be
    /// copied and deleted. Not a manifest key on purpose: a dry run is a
    /// property of one invocation, and `dry_run = true` forgotten in a cron
    /// manifest would silently stop a job while it reports success.
    pub dry_run: bool,
}

/// Executes a job. `say` receives the user-facing lines (mode, stage notes).
pub fn run(
    job: &Job,
    opts: RunOptions,
    progress: &Progress,
    stop: &AtomicBool,
    say: &dyn Fn(&str),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let _lock = JobLock::acquire(job)?;
    let mut db = StateDb::open(&job.db)?;
    // A root recorded under another spelling of the same folder (a DB
    // made before roots were canonical) is moved, not refused.
    db.check_roots(&job.source, &job.destination, &same_folder)?;
    for (which, root) in [("source", &job.source), ("destination", &job.destination)] {
        let key = format!("{which}_mount_point");
        let recorded = db.meta_get(&key)?.map(|v| v == "1");
        match decide::mount_check(recorded, is_mount_point(root.as_std_path())) {
            MountCheck::Record(m) => db.meta_set(&key, if m { "1" } else { "0" })?,
            MountCheck::Same => {}
            MountCheck::Unmounted => {
                return Err(RunError::Unmounted {
                    which,
                    path: root.clone(),
                });
            }
        }
    }
    let (files, bytes) = db.backlog()?;
    let trusted = db.last_scan_complete()?;
    let mode = decide::run_mode(files, bytes, opts.rescan || !trusted);
    say(&mode_line(mode));
    if opts.dry_run {
        say("dry run: nothing will be copied or deleted");
    }
    preflight(job)?;
    // The source root as found now: the scan refuses to walk another
    // folder in its place (a share unmounted in between).
    let source_id = crate::roots::RootId::of(job.source.as_std_path()).ok();
    if !job.destination.exists() {
        std::fs::create_dir(&job.destination).map_err(|source| RunError::DestRoot {
            path: job.destination.clone(),
            source,
        })?;
    }
    let stages = plan(job, mode);
    progress
        .0
        .bytes_before
        .store(db.bytes_copied_all_runs()?, Relaxed);
    let bwlimit_now = job.bwlimit.rate_now();
    progress.0.bwlimit.store(bwlimit_now.unwrap_or(0), Relaxed);

    let mut audit = AuditLog::open(&job.log)?;
    audit.write(&RunLine {
        ts: now_rfc3339(),
        status: "run_start",
        job: job.manifest.as_str(),
        mode: mode.name(),
        bwlimit: Some(bwlimit_line(&job.bwlimit, bwlimit_now)),
        files: None,
        bytes: None,
        failed: None,
        exit: None,
        error: None,
    })?;
    audit.flush()?;
    let run_id = db.start_run(&now_rfc3339(), mode.name())?;
    let counters = progress.clone();
    db.track_run(
        run_id,
        Box::new(move || {
            let c = &counters.0;
            (
                c.files_done.load(Relaxed),
                c.bytes_done.load(Relaxed),
                c.files_failed.load(Relaxed),
            )
        }),
    );

    let mut report = RunReport {
        mode,
        stages: stages.clone(),
        scan: None,
        transfer: TransferReport::default(),
        mirror: None,
        elapsed: Duration::ZERO,
        exit: Exit::Ok,
    };
    let outcome = execute(
        job,
        opts,
        source_id,
        &stages,
        &mut db,
        &mut audit,
        progress,
        stop,
        &mut report,
        say,
    );
    progress.set_phase(PHASE_IDLE);
    report.elapsed = started.elapsed();
    report.exit = match &outcome {
        Err(e) => e.exit(),
        Ok(()) if stop.load(Relaxed) => Exit::Interrupted,
        Ok(()) if report.failed() > 0 => Exit::FilesFailed,
        Ok(()) => Exit::Ok,
    };
    let t = &report.transfer;
    db.finish_run(&RunRow {
        id: run_id,
        started_at: String::new(),
        ended_at: Some(now_rfc3339()),
        mode: mode.name().into(),
        files_done: t.files_done,
        bytes_done: t.bytes_done,
        failures: report.failed(),
        exit_code: Some(i32::from(report.exit.code())),
    })?;
    audit.write(&RunLine {
        ts: now_rfc3339(),
        status: "run_end",
        job: job.manifest.as_str(),
        mode: mode.name(),
        bwlimit: None,
        files: Some(t.files_done),
        bytes: Some(t.bytes_done),
        failed: Some(report.failed()),
        exit: Some(report.exit.code()),
        error: outcome.as_ref().err().map(|e| e.to_string()),
    })?;
    audit.flush()?;
    match outcome {
        Ok(()) => Ok(report),
        Err(RunError::Scan(ScanError::Interrupted)) => Ok(report),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    job: &Job,
    opts: RunOptions,
    source_id: Option<crate::roots::RootId>,
    stages: &[Stage],
    db: &mut StateDb,
    audit: &mut AuditLog,
    progress: &Progress,
    stop: &AtomicBool,
    report: &mut RunReport,
    say: &dyn Fn(&str),
) -> Result<(), RunError> {
    for stage in stages {
        if stop.load(Relaxed) {
            break;
        }
        let _span = info_span!("stage", name = stage.name()).entered();
        match stage {
            Stage::Scan => {
                let s = scan::run(job, db, progress, stop, source_id)?;
                for (path, error) in s.source_failures.iter().chain(&s.collision_sample) {
                    let rel = path.strip_prefix(&job.source).unwrap_or(path);
                    let dest = job.destination.as_std_path().join(rel);
                    let mut rec = FileRecord::new("failed", path, &dest, 0);
                    rec.error = Some(error);
                    audit.write(&rec)?;
                }
                say(&format!(
                    "scan: {} source entries, {} destination entries, {} pending ({})",
                    s.source_entries,
                    s.dest_entries,
                    s.pending_files,
                    human_bytes(s.pending_bytes)
                ));
                report.scan = Some(s);
            }
            Stage::Transfer if opts.dry_run => {
                let (files, bytes) = db.backlog()?;
                say(&format!(
                    "dry run: would copy {files} entries ({})",
                    human_bytes(bytes)
                ));
            }
            Stage::Transfer => {
                let (files, bytes) = db.transfer_backlog()?;
                progress.0.backlog_files.store(files, Relaxed);
                progress.0.backlog_bytes.store(bytes, Relaxed);
                report.transfer = transfer::run(job, db, audit, progress, stop, source_id)?;
            }
            // Reached only when the transfer ended without a fatal error
            // (`?` above) and no stop was requested (checked at the loop top).
            Stage::Mirror => {
                let m = MirrorOptions {
                    // Without a scan this run, the stored listing predates
                    // the transfer and any change since: walk again.
                    fresh_listing: !report.mode.scans(),
                    dry_run: opts.dry_run,
                };
                report.mirror = Some(mirror::run(job, db, audit, progress, stop, m, say)?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Overrides;

    fn job(delete_extras: bool) -> Job {
        let text =
            format!("source = \"/s\"\ndestination = \"/d\"\ndelete_extras = {delete_extras}\n");
        crate::manifest::load_str("/j/t.toml".into(), &text, &Overrides::default()).unwrap()
    }

    #[test]
    fn plans() {
        let resume = RunMode::Resume { files: 1, bytes: 2 };
        assert_eq!(
            plan(&job(false), RunMode::Scan),
            vec![Stage::Scan, Stage::Transfer]
        );
        assert_eq!(plan(&job(false), resume), vec![Stage::Transfer]);
        assert_eq!(
            plan(&job(true), resume),
            vec![Stage::Transfer, Stage::Mirror]
        );
    }

    #[test]
    fn mode_lines() {
        assert_eq!(
            mode_line(RunMode::Resume {
                files: 3,
                bytes: 3 << 30
            }),
            "resuming backlog: 3 files, 3.0 GiB"
        );
        assert_eq!(mode_line(RunMode::Scan), "no backlog: full scan");
    }
}
