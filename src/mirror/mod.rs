//! Mirror stage (SPEC §7): deletes destination entries that have no source
//! counterpart, and is built so that an unmounted, empty or half-readable
//! source can never empty the destination.
//!
//! Flow: check the source root → take the destination listing (the last
//! scan's, or a fresh walk when the run resumed without scanning) → keep the
//! entries with no source row as candidates → judge the run-level rails
//! (`decide::may_mirror`) → for each candidate, deepest first, re-stat its
//! source path and itself and let `decide::mirror_verdict` decide → delete
//! (`unlink`, or `rmdir`, which only removes an empty directory, both below
//! the destination root's descriptor through no symlink: `beneath`),
//! then audit line, then forget the listing row.
//!
//! The runner only starts this stage after a transfer that ended without a
//! fatal error and without a stop request. This module never deletes
//! anything recursively and never touches the source tree.
//!
//! This file holds the stage's entry point (`run`: the source root, the
//! run-level rails, the report and the closing note); `listing` gathers the
//! candidates, `delete` judges and deletes them one by one.

mod delete;
mod listing;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use tracing::info;

use crate::audit::AuditError;
use crate::db::{DbError, StateDb};
use crate::decide::{self, MirrorPolicy, MirrorRun, Refusal, SourceRoot};
use crate::manifest::Job;
use crate::progress::Phase;
use crate::relpath::relative;
use crate::roots::{RootId, RootNow};
use crate::stage::RunCtx;
use crate::units::human_bytes;

use delete::delete_pass;
use listing::list_candidates;

/// Rows per DB page and per batch of inserted listing rows.
const PAGE: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A safety rail refused (exit 4).
    #[error("{}", refused_text(.refusal, .source_root, *.deleted))]
    Refused {
        refusal: Refusal,
        source_root: String,
        /// Deletions already done (and audited) before a mid-stage refusal.
        deleted: u64,
    },
    #[error("cannot check the destination root `{path}`: {source}")]
    DestRoot {
        path: String,
        source: std::io::Error,
    },
    /// Source folders recorded as mount points went away (share not
    /// mounted?): nothing below them was judged; the rest was (exit 4).
    #[error("{}", mounts_gone_text(.folders, *.deleted, *.dry_run))]
    MountsGone {
        /// Each folder (source path) and what it is now.
        folders: Vec<(PathBuf, &'static str)>,
        /// Deletions done elsewhere (or, in a dry run, that would be).
        deleted: u64,
        dry_run: bool,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

fn mounts_gone_text(folders: &[(PathBuf, &'static str)], deleted: u64, dry_run: bool) -> String {
    let Some((first, what)) = folders.first() else {
        return String::new();
    };
    let more = match folders.len() - 1 {
        0 => String::new(),
        1 => " (and 1 more such folder)".into(),
        n => format!(" (and {n} more such folders)"),
    };
    let verb = if dry_run { "would delete" } else { "deleted" };
    format!(
        "mirror: nothing deleted below `{}`, which {what} (share not mounted?){more}; \
         {verb} {deleted} other extra entries",
        first.display()
    )
}

fn refused_text(refusal: &Refusal, root: &str, deleted: u64) -> String {
    let head = if deleted == 0 {
        "mirror refused, nothing deleted".to_string()
    } else {
        format!("mirror stopped after {deleted} deletions")
    };
    match refusal {
        Refusal::SourceRoot(_) => format!("{head}: {refusal} (`{root}`)"),
        _ => format!("{head}: {refusal}"),
    }
}

/// How the stage runs this time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MirrorOptions {
    /// Walk the destination now instead of trusting the last scan's listing
    /// (the run resumed without scanning).
    pub fresh_listing: bool,
    /// Report what would be deleted; delete nothing, change no DB row.
    pub dry_run: bool,
}

/// What the stage did.
#[derive(Debug, Clone, Default)]
pub struct MirrorReport {
    /// Listed destination entries with no source row.
    pub candidates: u64,
    /// Entries deleted (or, in a dry run, that would be).
    pub deleted: u64,
    /// Bytes of the regular files among them.
    pub deleted_bytes: u64,
    /// Candidates kept by the live check (source present again, entry
    /// changed, or a directory that is not empty).
    pub kept: u64,
    /// Deletions that failed (each a `failed` audit line); exit 1.
    pub failed: u64,
    /// `deleted` only counts what a real run would delete.
    pub dry_run: bool,
}

/// Runs the mirror stage. `fresh_listing`: walk the destination now
/// instead of trusting the last scan's listing (the run resumed without
/// scanning). User-facing lines (the dry-run listing and the closing note)
/// go to the context's `say`.
pub fn run(ctx: &mut RunCtx<'_>, fresh_listing: bool) -> Result<MirrorReport, MirrorError> {
    let (job, stop, say) = (ctx.job, ctx.stop, ctx.say);
    let opts = MirrorOptions {
        fresh_listing,
        dry_run: ctx.dry_run,
    };
    ctx.progress.set_phase(Phase::Mirror);
    info!(
        fresh_listing = opts.fresh_listing,
        dry_run = opts.dry_run,
        "mirror start"
    );
    let source_root = job.source.as_std_path();
    let dest_root = job.destination.as_std_path();
    let policy = MirrorPolicy {
        max_delete: job.max_delete,
    };

    // 1. The source root, before anything else is even listed.
    let (root_state, root_id) =
        source_root_now(source_root).map_err(|refusal| refused(job, refusal, 0))?;

    // 2. The listing, and the candidates in it, but none below a nested
    // mount of the source that went away.
    let (mut candidates, dest_entries) = list_candidates(ctx.db, job, opts, stop)?;
    if stop.load(Relaxed) {
        // A listing cut short by a stop request judges nothing.
        return Ok(MirrorReport::default());
    }
    let gone = mounts_gone(ctx.db, source_root)?;
    for (folder, _) in &gone {
        if let Some(rel) = relative(folder, source_root) {
            candidates -= ctx.db.hold_candidates_below(&dest_root.join(rel))?;
        }
    }
    let mut run = MirrorRun {
        source_root: root_state,
        source_entries: ctx.db.source_entries(source_root)?,
        source_walk_errors: ctx.db.scan_source_errors()?,
        dest_entries,
        candidates,
    };
    let mut report = MirrorReport {
        candidates: run.candidates,
        dry_run: opts.dry_run,
        ..Default::default()
    };
    info!(
        candidates = run.candidates,
        dest_entries = run.dest_entries,
        source_entries = run.source_entries,
        "mirror candidates listed"
    );
    let mut pass = |run: &mut MirrorRun, policy: &MirrorPolicy, report: &mut MirrorReport| {
        delete_pass(ctx, run, policy, (source_root, dest_root, root_id), report)
    };

    // 3. Run-level rails.
    check_rails(job, &mut run, &policy, opts, &mut report, say, &mut pass)?;
    crate::testhook::pause("MIRROR");

    // 4. One candidate at a time, deepest first, each re-checked live.
    let outcome = pass(&mut run, &policy, &mut report);
    if let Err(MirrorError::Refused { refusal, .. }) = outcome {
        return Err(refused(job, refusal, report.deleted));
    }
    outcome?;
    close(&report, say);
    if !gone.is_empty() {
        return Err(MirrorError::MountsGone {
            folders: gone,
            deleted: report.deleted,
            dry_run: report.dry_run,
        });
    }
    Ok(report)
}

/// The source's nested mount points that went away: recorded by the
/// scans, each found gone by the last scan or now (a run that resumed
/// without a scan, or a share unmounted since the scan). Sorted by path.
fn mounts_gone(db: &StateDb, source_root: &Path) -> Result<Vec<(PathBuf, &'static str)>, DbError> {
    let mut gone = Vec::new();
    for m in db.mount_points()? {
        let path = source_root.join(&m.rel);
        let what = match crate::walk::look_mount(&path, m.entries) {
            Some(why) => why.what(),
            None if m.gone => "was found gone by the last scan",
            None => continue,
        };
        gone.push((path, what));
    }
    Ok(gone)
}

/// The refusal the stage returns, naming the job's source root.
fn refused(job: &Job, refusal: Refusal, deleted: u64) -> MirrorError {
    MirrorError::Refused {
        refusal,
        source_root: job.source.to_string(),
        deleted,
    }
}

/// The source root as it is now, and its identity, unless it is not a
/// folder (missing, unreadable, not mounted...): then the stage refuses.
fn source_root_now(source_root: &Path) -> Result<(SourceRoot, Option<RootId>), Refusal> {
    let RootNow {
        state: root_state,
        id: root_id,
        ..
    } = RootNow::look(source_root, None);
    if !matches!(root_state, SourceRoot::Dir { .. }) {
        return Err(Refusal::SourceRoot(root_state));
    }
    Ok((root_state, root_id))
}

/// The run-level rails (`decide::may_mirror`). A dry run over the cap
/// still lists what it would delete (that list is what the operator needs
/// to raise the cap), then refuses as a real run would.
fn check_rails(
    job: &Job,
    run: &mut MirrorRun,
    policy: &MirrorPolicy,
    opts: MirrorOptions,
    report: &mut MirrorReport,
    say: &dyn Fn(&str),
    pass: &mut impl FnMut(&mut MirrorRun, &MirrorPolicy, &mut MirrorReport) -> Result<(), MirrorError>,
) -> Result<(), MirrorError> {
    let Err(refusal) = decide::may_mirror(run, policy) else {
        return Ok(());
    };
    let list_anyway = opts.dry_run && matches!(refusal, Refusal::OverCap { .. });
    if !list_anyway {
        return Err(refused(job, refusal, 0));
    }
    let unlimited = MirrorPolicy {
        max_delete: decide::MaxDelete::Off,
    };
    pass(run, &unlimited, report)?;
    say(&format!(
        "dry run: would delete {} entries ({}), but a real run would refuse",
        report.deleted,
        human_bytes(report.deleted_bytes)
    ));
    Err(refused(job, refusal, 0))
}

/// The stage's last log line and its closing note.
fn close(report: &MirrorReport, say: &dyn Fn(&str)) {
    info!(
        deleted = report.deleted,
        kept = report.kept,
        failed = report.failed,
        dry_run = report.dry_run,
        "mirror done"
    );
    let verb = if report.dry_run {
        "dry run: would delete"
    } else {
        "mirror: deleted"
    };
    say(&format!(
        "{verb} {} of {} extra entries ({}); {} kept by the live check{}",
        report.deleted,
        report.candidates,
        human_bytes(report.deleted_bytes),
        report.kept,
        if report.failed > 0 {
            format!(", {} failed", report.failed)
        } else {
            String::new()
        }
    ));
}
