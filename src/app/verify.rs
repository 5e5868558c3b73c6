//! `jobrun verify JOB.toml`: the job's lock (a verify and a run exclude
//! each other), the DB, the plan (`--since`, `--sample`, resuming a killed
//! verify), the `verifies` row, audit lines around [`crate::verify::run`]
//! and the summary line.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::clock::now_ns;

use serde::Serialize;

use super::{Failure, Stdout, load, out};
use crate::audit::{AuditLog, now_rfc3339, rfc3339_ns};
use crate::cli::VerifyArgs;
use crate::db::{DbError, JobRoot, StateDb, VerifyRecord};
use crate::exit::Exit;
use crate::lock::{JobLock, LockError};
use crate::manifest::Job;
use crate::progress::{Phase, Progress, Reporter, Style, count};
use crate::runner;
use crate::stage::RunCtx;
use crate::throttle::LiveLimit;
use crate::units::{HumanRate, human_bytes};
use crate::verify::{self, Found, Plan, VerifyError};

/// The `verify_start` audit line.
#[derive(Serialize)]
struct VerifyStart<'a> {
    status: &'static str,
    verify: i64,
    job: &'a str,
    destination: &'a str,
    files: u64,
    bytes: u64,
    skipped: u64,
    no_hash: u64,
    /// Of `files`, adopted ones (compared with their source).
    adopted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    repair: bool,
    bwlimit: String,
    transfers: usize,
    version: &'static str,
    pid: u32,
}

/// The `verify_end` audit line: the summary line's figures.
#[derive(Serialize)]
struct VerifyEnd<'a> {
    status: &'static str,
    verify: i64,
    job: &'a str,
    files: u64,
    bytes: u64,
    verified: u64,
    mismatch: u64,
    missing: u64,
    failed: u64,
    skipped: u64,
    no_hash: u64,
    adopted: u64,
    adopted_mismatch: u64,
    exit: u8,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `--json`: the verify's summary as one object (docs/verify-and-hashes.md):
/// its `verifies` row, and the files that did not verify.
#[derive(Serialize)]
struct VerifyJson<'a> {
    #[serde(flatten)]
    record: &'a VerifyRecord,
    seconds: f64,
    exit: u8,
    reason: &'static str,
    /// The console's lines naming the files that did not verify (the first
    /// 20, then a count; each has its line in the audit log).
    not_verified: Vec<String>,
    /// Why the verify stopped or could not be recorded; null when nothing.
    problem: Option<&'a str>,
}

/// A seed nobody chose: the clock and the pid.
fn fresh_seed() -> u64 {
    (now_ns() as u64).rotate_left(17) ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9)
}

/// Why a verify ended, as the summary, `verify_end` and `status` say it:
/// exit 1 is bad files, or none compared at all.
pub fn reason(v: &VerifyRecord, exit: Exit) -> &'static str {
    match exit {
        Exit::Ok => "all verified",
        Exit::FilesFailed if v.mismatched + v.missing + v.failed == 0 => "nothing compared",
        Exit::FilesFailed => "mismatched, missing or unreadable files",
        other => other.reason(),
    }
}

fn fail(e: impl std::fmt::Display, exit: Exit) -> Failure {
    Failure {
        message: e.to_string(),
        exit,
        stdout: Stdout::Nothing,
    }
}

fn db_failure(e: DbError) -> Failure {
    let exit = match e {
        DbError::RootsDiffer { .. } => Exit::Usage,
        _ => Exit::Fatal,
    };
    fail(e, exit)
}

/// What a verify refuses about the destination root before it reads
/// anything: it must be a folder, on the filesystem recorded when the job
/// started.
fn check_root(job: &Job, db: &StateDb) -> Result<(), Failure> {
    let dest = job.destination.as_std_path();
    if !dest.is_dir() {
        return Err(fail(
            format!(
                "destination root `{}` is missing or not a folder; nothing verified",
                job.destination
            ),
            Exit::Fatal,
        ));
    }
    // On the filesystem the job recorded (a share unmounted leaves another
    // one in its place, which would look all missing); `require_mounts` too.
    runner::check_filesystem(
        job,
        Some(db),
        JobRoot::Destination,
        &job.destination,
        runner::Record::No,
    )
    .map_err(|e| fail(runner::describe(&e, job), e.exit()))?;
    Ok(())
}

pub fn verify(args: &VerifyArgs) -> Result<Exit, Failure> {
    let mut opened = open(args)?;
    let job = &opened.job;
    let style = Style::pick(args.quiet, job.progress_interval);
    let progress = Progress::default();
    let reporter = Reporter::start(&progress, style);
    let say = |l: &str| reporter.say(l);

    let todo = plan_todo(args, &opened.db, &say)?;
    let rec = start(job, args, &opened.db, &mut opened.audit, &todo)?;
    say_start(&say, &rec, &todo);
    let mut found = Found {
        rec,
        ..Found::default()
    };
    progress.set_backlog(todo.files, todo.bytes);
    progress.set_limit(crate::throttle::limit_code(job.bwlimit.limit_now()));
    progress.set_phase(Phase::Transfer);
    let mut ctx = RunCtx {
        job,
        db: &mut opened.db,
        audit: &mut opened.audit,
        progress: &progress,
        stop: &opened.stop,
        limit: LiveLimit::polite(job.bwlimit.clone(), job.polite_target),
        source_at_start: None,
        dry_run: false,
        say: &say,
    };
    let result = verify::run(&mut ctx, todo.plan, &mut found);
    progress.set_phase(Phase::Idle);
    drop(reporter);
    finish(&mut opened, &mut found, &result, todo.intact)
}

/// What a verify holds from its start to its end. Fields drop in this
/// order: the audit log, the DB, then the lock.
struct Opened {
    audit: AuditLog,
    db: StateDb,
    _lock: JobLock,
    stop: Arc<AtomicBool>,
    /// Taken before the lock: the summary's time includes waiting for it.
    started: Instant,
    job: Job,
    /// `--json`: the summary as one object.
    json: bool,
}

/// Loads the job, arms SIGINT/SIGTERM, takes the job's lock, opens the DB
/// (checking the roots it records) and the audit log.
fn open(args: &VerifyArgs) -> Result<Opened, Failure> {
    let job = load(&args.common)?;
    if !job.db.exists() {
        return Err(fail(
            format!(
                "no state DB at `{}` yet: the job has never run, nothing to verify",
                job.db
            ),
            Exit::Usage,
        ));
    }
    super::reopen_on_sigusr1();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let started = Instant::now();
    let lock = JobLock::acquire(&job).map_err(|e| {
        let exit = match e {
            LockError::Locked { .. } => Exit::Locked,
            LockError::Lock { .. } => Exit::Fatal,
        };
        fail(e, exit)
    })?;
    let db = StateDb::open(&job.db).map_err(db_failure)?;
    db.check_roots(&job.source, &job.destination, &runner::same_folder)
        .map_err(db_failure)?;
    check_root(&job, &db)?;
    let mut audit = AuditLog::open(&job.log).map_err(|e| fail(e, Exit::Fatal))?;
    audit.set_db(db.id());
    Ok(Opened {
        audit,
        db,
        _lock: lock,
        stop,
        started,
        job,
        json: args.json,
    })
}

/// This verify's plan and what it leaves to read.
struct Todo {
    plan: Plan,
    /// When the verify started (ns).
    now: i64,
    /// Files and bytes to read (an adopted file's both sides).
    files: u64,
    bytes: u64,
    /// Of `files`, adopted ones: no recorded hash, compared with the source.
    adopted: u64,
    /// Synced files, and of them those without a recorded hash.
    synced: u64,
    no_hash: u64,
    /// Synced files found intact since `plan.since_ns` (by this verify's
    /// predecessor, or within `--since`): skipped, already compared.
    intact: u64,
}

/// Plans the verify: since when files found intact are skipped (`--since`,
/// or the start of an unfinished verify, which is resumed), which files the
/// sample takes, and what that leaves to read.
fn plan_todo(args: &VerifyArgs, db: &StateDb, say: &dyn Fn(&str)) -> Result<Todo, Failure> {
    let now = now_ns();
    let unfinished = db.unfinished_verify().map_err(db_failure)?;
    let since_ns = match (args.since, &unfinished) {
        (Some(d), _) => now.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        (None, Some(u)) => {
            say(&format!(
                "resuming verify {} (started {}, not finished): files it found intact are skipped",
                u.id, u.started_at
            ));
            // A resumed verify resumed again keeps the first one's start.
            u.since_ns.unwrap_or(u.started_ns)
        }
        (None, None) => now,
    };
    let sample = args
        .sample
        .map(|p| (p, args.seed.unwrap_or_else(fresh_seed)));
    let plan = Plan {
        since_ns,
        sample,
        repair: args.repair,
    };
    let (hashed, no_hash) = db.synced_files().map_err(db_failure)?;
    let (mut files, mut bytes, mut adopted, mut listed) = (0u64, 0u64, 0u64, 0u64);
    db.verify_todo_sizes(since_ns, |id, size, is_adopted| {
        listed += 1;
        if plan.wants(id) {
            files += 1;
            adopted += u64::from(is_adopted);
            bytes += if is_adopted { size * 2 } else { size };
        }
    })
    .map_err(db_failure)?;
    let synced = hashed + no_hash;
    Ok(Todo {
        plan,
        now,
        files,
        bytes,
        adopted,
        synced,
        no_hash,
        intact: synced.saturating_sub(listed),
    })
}

/// Records the verify's `verifies` row and writes its `verify_start` audit
/// line. Returns the row, to be filled in as the verify goes.
fn start(
    job: &Job,
    args: &VerifyArgs,
    db: &StateDb,
    audit: &mut AuditLog,
    todo: &Todo,
) -> Result<VerifyRecord, Failure> {
    let (now, since_ns, sample) = (todo.now, todo.plan.since_ns, todo.plan.sample);
    let mut rec = VerifyRecord {
        started_at: now_rfc3339(),
        started_ns: now,
        since_ns: (since_ns < now).then_some(since_ns),
        sample: sample.map(|s| s.0),
        seed: sample.map(|s| s.1),
        repair: args.repair,
        skipped: todo.synced.saturating_sub(todo.files),
        no_hash: todo.no_hash,
        ..VerifyRecord::default()
    };
    rec.id = db.start_verify(&rec).map_err(db_failure)?;
    let bwlimit = job.bwlimit.audit_text(job.bwlimit.limit_now());
    audit
        .write(&VerifyStart {
            status: "verify_start",
            verify: rec.id,
            job: job.manifest.as_str(),
            destination: job.destination.as_str(),
            files: todo.files,
            bytes: todo.bytes,
            skipped: rec.skipped,
            no_hash: todo.no_hash,
            adopted: todo.adopted,
            since: rec.since_ns.map(rfc3339_ns),
            sample: rec.sample,
            seed: rec.seed,
            repair: args.repair,
            bwlimit,
            transfers: job.transfers,
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
        })
        .map_err(|e| fail(e, Exit::Fatal))?;
    Ok(rec)
}

/// The user's lines before the reading starts: the sample's seed (to repeat
/// it), then what is to be read, skipped, and compared with the source.
fn say_start(say: &dyn Fn(&str), rec: &VerifyRecord, todo: &Todo) {
    let sample = todo.plan.sample;
    if let Some((p, seed)) = sample {
        say(&format!(
            "sample: {p}% of the files, seed {seed} (repeat it with --sample {p} --seed {seed})"
        ));
    }
    let skipped = if rec.skipped == 0 {
        String::new()
    } else if sample.is_some() && rec.since_ns.is_none() {
        format!(", {} skipped (not in the sample)", rec.skipped)
    } else {
        let since: String = rfc3339_ns(todo.plan.since_ns).chars().take(19).collect();
        format!(", {} skipped (found intact since {since})", rec.skipped)
    };
    let adopted = if todo.adopted > 0 {
        format!(
            "; {} adopted (found in place by a scan, no recorded hash): compared with the \
             source byte for byte, both sides read",
            count(todo.adopted, "file", "files")
        )
    } else {
        String::new()
    };
    say(&format!(
        "verify: {} ({}) to read{skipped}{adopted}",
        count(todo.files, "file", "files"),
        human_bytes(todo.bytes),
    ));
}

/// Ends the verify: its exit, the `verifies` row completed, the
/// `verify_end` audit line, and on stdout the files that did not verify
/// by name and the summary line (printed, or handed to the failure to
/// print after its message). `intact`: files skipped as found intact
/// since the plan's instant (compared by an earlier verify).
fn finish(
    opened: &mut Opened,
    found: &mut Found,
    result: &Result<(), VerifyError>,
    intact: u64,
) -> Result<Exit, Failure> {
    let rec = &mut found.rec;
    let (exit, error) = match result {
        Ok(()) if rec.mismatched + rec.missing + rec.failed > 0 => (Exit::FilesFailed, None),
        // Nothing compared, and nothing found intact lately: "all
        // verified" would be said of files nobody compared.
        Ok(()) if rec.ok == 0 && intact == 0 => (Exit::FilesFailed, None),
        Ok(()) => (Exit::Ok, None),
        Err(VerifyError::Interrupted) => (Exit::Interrupted, None),
        Err(e) => (Exit::Fatal, Some(e.to_string())),
    };
    rec.ended_at = Some(now_rfc3339());
    rec.exit_code = Some(i32::from(exit.code()));
    rec.error.clone_from(&error);
    let recorded = opened.db.update_verify(rec).map_err(|e| e.to_string());
    let ended = opened
        .audit
        .write(&VerifyEnd {
            status: "verify_end",
            verify: rec.id,
            job: opened.job.manifest.as_str(),
            files: rec.files,
            bytes: rec.bytes,
            verified: rec.ok,
            mismatch: rec.mismatched,
            missing: rec.missing,
            failed: rec.failed,
            skipped: rec.skipped,
            no_hash: rec.no_hash,
            adopted: rec.adopted,
            adopted_mismatch: rec.adopted_mismatched,
            exit: exit.code(),
            reason: reason(rec, exit),
            error: error.as_deref(),
        })
        .map_err(|e| e.to_string());
    let problem = error.or(recorded.err()).or(ended.err());
    let text = if opened.json {
        super::json(&VerifyJson {
            record: rec,
            seconds: (opened.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            exit: exit.code(),
            reason: reason(rec, exit),
            not_verified: found.bad.lines(),
            problem: problem.as_deref(),
        })?
    } else {
        let mut text = String::new();
        for l in found.bad.lines() {
            text.push_str(&l);
            text.push('\n');
        }
        text.push_str(&summary_line(rec, opened.started.elapsed(), exit));
        text.push('\n');
        text
    };
    match problem {
        Some(message) => Err(Failure {
            message,
            exit: Exit::Fatal,
            stdout: Stdout::After(text),
        }),
        None => {
            out(&text);
            Ok(exit)
        }
    }
}

/// `jobrun: verify: 12 files, 3.0 MiB read in 1.2s (2.5 MiB/s mean): 11
/// verified, 1 mismatch, 0 missing, 0 failed, 4 skipped, exit 1 (…)`; with
/// adopted files, `; 3 adopted files compared byte for byte with the
/// source, 1 mismatched` before the exit.
pub fn summary_line(v: &VerifyRecord, elapsed: Duration, exit: Exit) -> String {
    let secs = elapsed.as_secs_f64();
    let took = if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        crate::progress::fmt_duration(elapsed)
    };
    let mean = if secs > 0.0 {
        v.bytes as f64 / secs
    } else {
        0.0
    };
    let repaired = if v.repair && v.mismatched + v.missing > 0 {
        format!(" ({} set back to pending)", v.mismatched + v.missing)
    } else {
        String::new()
    };
    let adopted = if v.adopted > 0 {
        format!(
            "; {} compared byte for byte with the source, {} mismatched",
            count(v.adopted, "adopted file", "adopted files"),
            v.adopted_mismatched
        )
    } else {
        String::new()
    };
    format!(
        "jobrun: verify: {}, {} read in {took} ({} mean): {} verified, {} mismatch, {} missing{repaired}, {} failed, {} skipped{adopted}, exit {} ({})",
        count(v.files, "file", "files"),
        human_bytes(v.bytes),
        HumanRate(mean),
        v.ok,
        v.mismatched,
        v.missing,
        v.failed,
        v.skipped,
        exit.code(),
        reason(v, exit),
    )
}
