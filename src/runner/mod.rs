//! The runner: the only place that knows stage order. It takes the job's
//! lock, opens the DB, picks the run mode, resolves the stage plan and
//! executes it. Stages talk to each other only through DB rows, so a new
//! stage is a new module plus one line in [`plan`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use crate::throttle::LiveLimit;
use std::time::{Duration, Instant};

use camino::Utf8Path;
use tracing::{info_span, warn};

use crate::audit::{AuditLog, now_rfc3339};
use crate::db::{RunRow, StateDb};
use crate::decide::{self, RunMode};
pub use crate::exit::Exit;
use crate::lock::JobLock;
use crate::manifest::Job;
use crate::mirror;
use crate::progress::{Phase, Progress, count};
use crate::scan::{self, ScanError};
use crate::stage::RunCtx;
use crate::transfer::{self, TransferReport};
use crate::units::human_bytes;

mod filesystems;
mod record;
mod report;

pub use filesystems::{Record, check_filesystem, check_filesystems};
use record::{RunEnd, RunStart, host_name, user};
pub use report::{Finished, RunError, RunReport, describe};

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
    if mode == RunMode::Mirror {
        return vec![Stage::Mirror];
    }
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

/// The line a run prints about its mode (SPEC §3). `rescan`: the user
/// asked for it; otherwise a scan despite a backlog means the last scan did
/// not finish, so its backlog is not trusted.
pub fn mode_line(mode: RunMode, rescan: bool) -> String {
    let files = |n| count(n, "file", "files");
    match mode {
        RunMode::Resume { files: n, bytes } => {
            format!("resuming backlog: {}, {}", files(n), human_bytes(bytes))
        }
        RunMode::Scan => "no backlog: full scan".into(),
        RunMode::Mirror => "mirror of the shards: no scan, nothing copied".into(),
        RunMode::ForcedScan { files: n, bytes } if rescan => format!(
            "rescan requested: full scan (backlog was {}, {})",
            files(n),
            human_bytes(bytes)
        ),
        RunMode::ForcedScan { files: n, bytes } => format!(
            "the last scan did not finish: full scan (its partial backlog: {}, {})",
            files(n),
            human_bytes(bytes)
        ),
    }
}

/// The mode the next run takes and the line it says about it, from the DB
/// as it is now: the run and `check` share it (`check` says what a run
/// would do). A backlog is not trusted after an unfinished scan, on
/// `--rescan`, or when a recorded mount point inside the source is gone
/// (its backlog would be copied from the folder the share left behind).
pub fn next_mode(
    job: &Job,
    db: &StateDb,
    rescan: bool,
) -> Result<(RunMode, String), crate::db::DbError> {
    let (files, bytes) = db.backlog()?;
    let trusted = db.last_scan_complete()?;
    let mount_gone = scan::mount_gone_now(job, db)?;
    let mode = decide::run_mode(files, bytes, rescan || !trusted || mount_gone.is_some());
    let line = match (&mount_gone, mode) {
        (Some(folder), RunMode::ForcedScan { files, bytes }) if trusted && !rescan => format!(
            "`{}` is no longer the mount point it was: full scan (backlog was {}, {})",
            folder.display(),
            count(files, "file", "files"),
            human_bytes(bytes)
        ),
        _ => mode_line(mode, rescan),
    };
    Ok((mode, line))
}

/// `jobrun mirror`: the job's DB holds the rows of its `n` shard DBs; no
/// scan and no backlog, so the mirror walks the destination afresh.
fn gather(job: &Job, db: &mut StateDb, n: usize) -> Result<(RunMode, String), RunError> {
    let paths: Vec<_> = (0..n)
        .map(|k| crate::shard::shard_file(&job.db, k))
        .collect();
    let refs: Vec<&Utf8Path> = paths.iter().map(|p| p.as_path()).collect();
    db.gather_shards(&refs)?;
    let entries = db.source_entries(job.source.as_std_path())?;
    Ok((
        RunMode::Mirror,
        format!(
            "mirror of {n} shards: {} recorded by them",
            count(entries, "source entry", "source entries")
        ),
    ))
}

/// What a run shares with the threads beside it while it goes (reload,
/// metrics): the limit a reload may replace, and the run's `runs` row id
/// once it is recorded.
#[derive(Debug)]
pub struct Shared {
    pub limit: Arc<LiveLimit>,
    pub run_id: OnceLock<i64>,
    /// The state DB's id (audit lines carry it).
    pub db_id: OnceLock<String>,
}

impl Shared {
    pub fn new(job: &Job) -> Self {
        Self {
            limit: LiveLimit::polite(job.bwlimit.clone(), job.polite_target),
            run_id: OnceLock::new(),
            db_id: OnceLock::new(),
        }
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
    /// `jobrun mirror` of a job in this many shards: the mirror stage
    /// alone, on the union of the shard DBs' rows gathered into the job's.
    pub mirror_of: Option<usize>,
}

/// Executes a job. `say` receives the user-facing lines (mode, stage notes).
///
/// `Err` is a run refused before it was recorded: locked (exit 3), a DB of
/// another job (exit 2), or a DB or log that cannot be used at all (exit
/// 4). Any run past that gets its `runs` row and audit lines, whatever
/// ends it, and returns [`Finished`].
pub fn run(
    job: &Job,
    opts: RunOptions,
    progress: &Progress,
    stop: &AtomicBool,
    shared: &Shared,
    say: &dyn Fn(&str),
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let _lock = JobLock::acquire(job)?;
    let mut db = StateDb::open(&job.db)?;
    // A root recorded under another spelling of the same folder (a DB
    // made before roots were canonical) is moved, not refused.
    db.check_roots(&job.source, &job.destination, &same_folder)?;
    // Before the mode is picked: a backlog the filters now exclude is none.
    scan::forget_excluded(job, &mut db)?;
    let (mode, mode_said) = match opts.mirror_of {
        None => next_mode(job, &db, opts.rescan)?,
        Some(n) => gather(job, &mut db, n)?,
    };
    let mut audit = AuditLog::open(&job.log)?;
    if audit.ended_torn_line() {
        warn!(
            log = %job.log,
            "the audit log's last line was torn (a writer killed mid-line); it was ended with a newline"
        );
    }
    let run_id = db.start_run(&now_rfc3339(), mode.name(), opts.dry_run)?;
    audit.set_run(run_id);
    audit.set_db(db.id());
    let _ = shared.run_id.set(run_id);
    let _ = shared.db_id.set(db.id().unwrap_or_default().to_owned());
    say(&mode_said);
    if opts.dry_run {
        say("dry run: nothing will be copied or deleted");
    }
    let stages = match opts.mirror_of {
        None => plan(job, mode),
        Some(_) => vec![Stage::Mirror],
    };
    let mut report = RunReport {
        mode,
        stages: stages.clone(),
        scan: None,
        transfer: TransferReport::default(),
        mirror: None,
        elapsed: Duration::ZERO,
        exit: Exit::Ok,
        dry_run: opts.dry_run,
    };
    let counters = progress.clone();
    db.track_run(
        run_id,
        Box::new(move || {
            let t = counters.totals();
            (t.files_synced, t.bytes_synced, t.files_failed)
        }),
    );
    let limit = progress.clone();
    db.track_limit(Box::new(move || crate::throttle::code_text(limit.limit())));
    let lanes = progress.clone();
    db.track_in_flight(run_id, Box::new(move || in_flight(&lanes)))?;
    let mut ctx = RunCtx {
        job,
        db: &mut db,
        audit: &mut audit,
        progress,
        stop,
        limit: Arc::clone(&shared.limit),
        source_at_start: None,
        dry_run: opts.dry_run,
        say,
    };
    let outcome =
        start(&mut ctx, opts.rescan, mode).and_then(|()| execute(&mut ctx, &stages, &mut report));
    progress.set_phase(Phase::Idle);
    report.elapsed = started.elapsed();
    // One truth: the counters the last batch commit recorded with the rows
    // it committed, whichever way the run ended (a fatal error loses the
    // stage's own report; a batch whose commit failed is not counted).
    let (files, bytes, failed) = db.committed_counts();
    report.transfer.files_done = files;
    report.transfer.bytes_done = bytes;
    report.transfer.failed = failed;
    let stopped = stop.load(Relaxed);
    let auto = auto_in_force(&shared.limit.get(), progress);
    let end = RunEnding {
        job,
        opts,
        run_id,
        auto,
        limit: crate::throttle::code_text(progress.limit()),
    };
    let error = end.record(&mut db, &mut audit, &mut report, outcome, stopped);
    Ok(Finished { report, error })
}

/// Under `bwlimit = "auto"`, what `run_end` says of it: the rate the lanes
/// held last (`auto, 23068672 B/s`), `auto` when none moved a byte.
fn auto_in_force(schedule: &crate::throttle::Schedule, progress: &Progress) -> Option<String> {
    use crate::throttle::{AUTO, Limit, code_rate};
    let Limit::Auto(_) = schedule.limit_now() else {
        return None;
    };
    let code = progress.snapshot().bwlimit;
    Some(match code_rate(code).filter(|_| code & AUTO != 0) {
        Some(r) => format!("auto, {r} B/s"),
        None => "auto".into(),
    })
}

/// The lanes' files for the DB (`status` shows them while the run goes).
fn in_flight(p: &Progress) -> Vec<crate::db::InFlightFile> {
    p.in_flight()
        .into_iter()
        .map(|t| crate::db::InFlightFile {
            lane: t.lane as u32,
            path: t.path,
            size: t.size,
            done: t.done,
        })
        .collect()
}

/// How a recorded run ends, in every exit path: the exit code from what
/// happened, then the `runs` row and the `run_end` line with the same
/// figures and reason. Returns the run's error, if any (one that hit the
/// DB or the log at the very end included).
struct RunEnding<'a> {
    job: &'a Job,
    opts: RunOptions,
    run_id: i64,
    /// `run_end`'s `bwlimit`: under `auto`, the rate it held last.
    auto: Option<String>,
    /// The `runs` row's `bwlimit`: the limit in force at the end.
    limit: String,
}

impl RunEnding<'_> {
    fn record(
        &self,
        db: &mut StateDb,
        audit: &mut AuditLog,
        report: &mut RunReport,
        outcome: Result<(), RunError>,
        stopped: bool,
    ) -> Option<RunError> {
        let mut error = match outcome {
            Ok(()) | Err(RunError::Scan(ScanError::Interrupted)) => None,
            Err(e) => Some(e),
        };
        report.exit = match &error {
            Some(e) => e.exit(),
            None if stopped => Exit::Interrupted,
            None if report.failed() > 0 => Exit::FilesFailed,
            None => Exit::Ok,
        };
        let text = error.as_ref().map(|e| describe(e, self.job));
        let t = &report.transfer;
        let row = RunRow {
            id: self.run_id,
            started_at: String::new(),
            ended_at: Some(now_rfc3339()),
            mode: report.mode.name().into(),
            files_done: t.files_done,
            bytes_done: t.bytes_done,
            failures: report.failed(),
            exit_code: Some(i32::from(report.exit.code())),
            dry_run: self.opts.dry_run,
            error: text.clone(),
            bwlimit: Some(self.limit.clone()),
        };
        if let Err(e) = db.finish_run(&row) {
            // The DB failed at the very end: the run is aborted after all, and
            // its log line says so.
            if error.is_none() {
                report.exit = Exit::Fatal;
                error = Some(e.into());
            }
        }
        let text = text.or_else(|| error.as_ref().map(|e| describe(e, self.job)));
        let ended = audit.write(&RunEnd {
            status: "run_end",
            job: self.job.manifest.as_str(),
            mode: report.mode.name(),
            dry_run: self.opts.dry_run,
            files: report.transfer.files_done,
            bytes: report.transfer.bytes_done,
            failed: report.failed(),
            deleted: report.mirror.as_ref().map(|m| m.deleted),
            exit: report.exit.code(),
            reason: report.exit.reason(),
            error: text.as_deref(),
            bwlimit: self.auto.clone(),
        });
        if let (Err(e), None) = (ended, &error) {
            report.exit = Exit::Fatal;
            error = Some(e.into());
        }
        error
    }
}

/// What a recorded run does before its first stage: the `run_start` line,
/// the roots' checks, the destination root (not for a dry run). Records in
/// the context the source root's identity as found now: the scan and the
/// transfer refuse another folder in its place (a share unmounted in
/// between).
fn start(ctx: &mut RunCtx<'_>, rescan: bool, mode: RunMode) -> Result<(), RunError> {
    let RunCtx {
        job,
        db,
        audit,
        progress,
        dry_run,
        ..
    } = ctx;
    let (job, dry_run) = (*job, *dry_run);
    progress.set_bytes_before(db.bytes_copied_all_runs()?);
    let bwlimit_now = job.bwlimit.limit_now();
    progress.set_limit(crate::throttle::limit_code(bwlimit_now));
    let (uid, user) = user();
    audit.write(&RunStart {
        status: "run_start",
        job: job.manifest.as_str(),
        mode: mode.name(),
        dry_run,
        rescan,
        source: job.source.as_str(),
        destination: job.destination.as_str(),
        db: job.db.as_str(),
        log: job.log.as_str(),
        checksum: job.checksum.name(),
        bwlimit: job.bwlimit.audit_text(bwlimit_now),
        transfers: job.transfers,
        delete_extras: job.delete_extras,
        version: env!("CARGO_PKG_VERSION"),
        host: host_name(),
        user,
        uid,
        pid: std::process::id(),
        torn_line_ended: audit.ended_torn_line(),
    })?;
    // The source root as found now, taken before its filesystem is checked:
    // the scan refuses to walk another folder in its place, so a share
    // unmounted after this look is caught there, and one unmounted before
    // it by the check below. (Taken after the check, a share unmounted in
    // between left the empty mount point as "the root at start": scanned
    // as an empty source, ending "ok".)
    ctx.source_at_start = crate::roots::RootId::of(job.source.as_std_path()).ok();
    check_filesystems(job, Some(db), filesystems::Record::Yes)?;
    preflight(job)?;
    crate::testhook::pause("ROOTS");
    // A dry run creates nothing at the destination: a missing root is
    // simply an empty destination to its scan.
    if !dry_run && !job.destination.exists() {
        // With the source root's bits, as every folder below it (`modes`):
        // a `0700` source root must not arrive as a `0755` destination.
        // No wider for the group than the source root's ACL allows (`xattrs`).
        let mode = std::fs::File::open(&job.source)
            .and_then(|f| Ok((f.metadata()?, f)))
            .map_or(0o700, |(m, f)| {
                let bits = std::os::unix::fs::MetadataExt::mode(&m);
                crate::modes::Modes::new(job.permissions, job.owners)
                    .dir_create(crate::xattrs::narrowed_mode(&f, bits))
            });
        create_dest_root(job.destination.as_std_path(), mode).map_err(|source| {
            RunError::DestRoot {
                path: job.destination.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Creates the destination root with `mode`; one made meanwhile by
/// another run (the shards of a job start at once) is no error.
fn create_dest_root(path: &Path, mode: u32) -> std::io::Result<()> {
    match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), mode).create(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(path) {
                Ok(md) if md.is_dir() => Ok(()),
                _ => Err(e),
            }
        }
        r => r,
    }
}

/// Runs the stages in order, each on the one context; stops before the
/// next stage once a stop was requested.
fn execute(ctx: &mut RunCtx<'_>, stages: &[Stage], report: &mut RunReport) -> Result<(), RunError> {
    for stage in stages {
        if ctx.stopped() {
            break;
        }
        let _span = info_span!("stage", name = stage.name()).entered();
        match stage {
            Stage::Scan => report.scan = Some(scan::run(ctx)?),
            Stage::Transfer if ctx.dry_run => {
                let (files, bytes) = ctx.db.backlog()?;
                ctx.say(&format!(
                    "dry run: would copy {} ({})",
                    count(files, "entry", "entries"),
                    human_bytes(bytes)
                ));
            }
            Stage::Transfer => report.transfer = transfer::run(ctx)?,
            // Reached only when the transfer ended without a fatal error
            // (`?` above) and no stop was requested (checked at the loop top).
            Stage::Mirror => {
                // Without a scan this run, the stored listing predates the
                // transfer and any change since: walk again.
                let fresh_listing = !report.mode.scans();
                report.mirror = Some(mirror::run(ctx, fresh_listing)?);
                // Entries whose destination folder had to go first (a type
                // change): copied in this same run now that it is gone.
                if report.transfer.waiting > 0 && !ctx.stopped() {
                    report.transfer.waiting = transfer::after_mirror(ctx)?.waiting;
                }
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
    fn a_destination_root_made_meanwhile_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("d");
        create_dest_root(&root, 0o755).unwrap();
        // Another shard's run made it between its check and this one's mkdir.
        create_dest_root(&root, 0o755).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(
            create_dest_root(&file, 0o755).is_err(),
            "a file in its place is not"
        );
        std::os::unix::fs::symlink(&root, dir.path().join("l")).unwrap();
        assert!(
            create_dest_root(&dir.path().join("l"), 0o755).is_err(),
            "nor a symlink"
        );
    }

    #[test]
    fn mode_lines() {
        assert_eq!(
            mode_line(
                RunMode::Resume {
                    files: 1,
                    bytes: 3 << 30
                },
                false
            ),
            "resuming backlog: 1 file, 3.0 GiB"
        );
        assert_eq!(mode_line(RunMode::Scan, false), "no backlog: full scan");
        let forced = RunMode::ForcedScan {
            files: 2,
            bytes: 1 << 20,
        };
        assert_eq!(
            mode_line(forced, true),
            "rescan requested: full scan (backlog was 2 files, 1.0 MiB)"
        );
        assert_eq!(
            mode_line(forced, false),
            "the last scan did not finish: full scan (its partial backlog: 2 files, 1.0 MiB)"
        );
    }
}
