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

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use walkdir::WalkDir;

use crate::audit::{AuditError, AuditLog, FileRecord};
use crate::beneath::{DirCache, Root};
use crate::db::{DbError, Listed, ScanEntry, StateDb, Tx};
use crate::decide::{
    self, DestNow, EntryKind, KeepReason, Live, MirrorPolicy, MirrorRun, MirrorVerdict, Refusal,
    SourceNow, SourceRoot, Stamp,
};
use crate::filter::Filter;
use crate::fsmeta::{is_temp_name, to_entry};
use crate::manifest::Job;
use crate::progress::{Phase, Progress};
use crate::roots::{DeleteGuard, RootId, RootNow};
use crate::units::human_bytes;

/// Rows per DB page and per batch of inserted listing rows.
const PAGE: usize = 5_000;
/// Commit the DB (and flush the audit log) after this many deletions...
const COMMIT_DELETES: usize = 512;
/// ...or this much time, whichever comes first.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

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
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
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
pub struct MirrorOptions {
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

/// Runs the mirror stage. `say` receives user-facing lines (the dry-run
/// listing and the closing note).
pub fn run(
    job: &Job,
    db: &mut StateDb,
    audit: &mut AuditLog,
    progress: &Progress,
    stop: &AtomicBool,
    opts: MirrorOptions,
    say: &dyn Fn(&str),
) -> Result<MirrorReport, MirrorError> {
    progress.set_phase(Phase::Mirror);
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
    let refused = |refusal, deleted| MirrorError::Refused {
        refusal,
        source_root: job.source.to_string(),
        deleted,
    };

    // 1. The source root, before anything else is even listed.
    let RootNow {
        state: root_state,
        id: root_id,
        ..
    } = RootNow::look(source_root, None);
    if !matches!(root_state, SourceRoot::Dir { .. }) {
        return Err(refused(Refusal::SourceRoot(root_state), 0));
    }

    // 2. The listing, and the candidates in it.
    if opts.fresh_listing && !opts.dry_run {
        relist_destination(db, dest_root, &job.filter, stop)?;
    }
    let (candidates, dest_entries) = if opts.fresh_listing && opts.dry_run {
        // A dry run leaves the stored listing alone: the walk goes straight
        // into the (connection-private) candidate table.
        fresh_candidates(db, source_root, dest_root, &job.filter, stop)?
    } else {
        let n = collect_candidates(db, source_root, dest_root)?;
        (n, db.dest_listing_len(dest_root)?)
    };
    if stop.load(Relaxed) {
        // A listing cut short by a stop request judges nothing.
        return Ok(MirrorReport::default());
    }
    let mut run = MirrorRun {
        source_root: root_state,
        source_entries: db.source_entries(source_root)?,
        source_walk_errors: db.scan_source_errors()?,
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

    // 3. Run-level rails. A dry run over the cap still lists what it would
    //    delete: that list is what the operator needs to raise the cap.
    if let Err(refusal) = decide::may_mirror(&run, &policy) {
        let list_anyway = opts.dry_run && matches!(refusal, Refusal::OverCap { .. });
        if !list_anyway {
            return Err(refused(refusal, 0));
        }
        let unlimited = MirrorPolicy {
            max_delete: decide::MaxDelete::Off,
        };
        delete_pass(
            db,
            audit,
            stop,
            opts,
            say,
            &mut run,
            &unlimited,
            (source_root, dest_root, root_id),
            &mut report,
        )?;
        say(&format!(
            "dry run: would delete {} entries ({}), but a real run would refuse",
            report.deleted,
            human_bytes(report.deleted_bytes)
        ));
        return Err(refused(refusal, 0));
    }
    test_pause();

    // 4. One candidate at a time, deepest first, each re-checked live.
    let outcome = delete_pass(
        db,
        audit,
        stop,
        opts,
        say,
        &mut run,
        &policy,
        (source_root, dest_root, root_id),
        &mut report,
    );
    if let Err(MirrorError::Refused { refusal, .. }) = outcome {
        return Err(refused(refusal, report.deleted));
    }
    outcome?;
    info!(
        deleted = report.deleted,
        kept = report.kept,
        failed = report.failed,
        dry_run = opts.dry_run,
        "mirror done"
    );
    let verb = if opts.dry_run {
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
    Ok(report)
}

/// Replaces the listing with a walk of the destination as it is now.
fn relist_destination(
    db: &mut StateDb,
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
) -> Result<(), DbError> {
    db.clear_dest_listing()?;
    let mut batch = Vec::with_capacity(PAGE);
    for_each_dest_entry(dest_root, filter, stop, |e| {
        batch.push(e);
        if batch.len() >= PAGE {
            let tx = db.begin()?;
            tx.insert_dest(&std::mem::take(&mut batch))?;
            tx.commit()?;
        }
        Ok(())
    })?;
    let tx = db.begin()?;
    tx.insert_dest(&batch)?;
    tx.commit()
}

/// Walks the destination (root, jobrun temporaries, FIFOs, sockets and
/// devices excluded; unreadable parts skipped, hence never deleted).
/// Entries the job's filters exclude are not walked (never candidates).
fn for_each_dest_entry(
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
    mut f: impl FnMut(ScanEntry) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let walk = WalkDir::new(dest_root).follow_links(false).min_depth(1);
    let kept = |e: &walkdir::DirEntry| {
        let rel = e.path().strip_prefix(dest_root).unwrap_or(e.path());
        !filter.excludes(rel, e.file_type().is_dir())
    };
    for entry in walk.into_iter().filter_entry(kept) {
        if stop.load(Relaxed) {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "mirror: cannot read destination entry; kept");
                continue;
            }
        };
        if is_temp_name(entry.file_name()) {
            continue;
        }
        let Ok(md) = entry.metadata() else { continue };
        if let Some(e) = to_entry(entry.into_path(), &md) {
            f(e)?;
        }
    }
    Ok(())
}

/// The source path matching a destination path, or `None` for the
/// destination root itself, a path outside it, and jobrun's temporaries.
fn source_of(dest: &Path, dest_root: &Path, source_root: &Path) -> Option<PathBuf> {
    let rel = dest.strip_prefix(dest_root).ok()?;
    if rel.as_os_str().is_empty() || dest.file_name().is_some_and(is_temp_name) {
        return None;
    }
    Some(source_root.join(rel))
}

/// Fills the candidate table from the listing: rows whose source path has
/// no row in `files`. Returns how many.
fn collect_candidates(
    db: &mut StateDb,
    source_root: &Path,
    dest_root: &Path,
) -> Result<u64, DbError> {
    db.reset_candidates()?;
    db.collect_dest_only(dest_root, source_root, PAGE)
}

/// A dry run that resumed: walks the destination straight into the
/// candidate table, leaving the persistent listing untouched. Returns
/// (candidates, destination entries).
fn fresh_candidates(
    db: &mut StateDb,
    source_root: &Path,
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
) -> Result<(u64, u64), DbError> {
    db.reset_candidates()?;
    let (mut entries, mut count) = (0u64, 0u64);
    let mut batch = Vec::new();
    for_each_dest_entry(dest_root, filter, stop, |e| {
        entries += 1;
        if let Some(src) = source_of(&e.path, dest_root, source_root)
            && !db.has_source(&src)?
        {
            count += 1;
            batch.push(Listed {
                path: e.path,
                stamp: Stamp {
                    kind: e.kind,
                    size: e.size,
                    modified_ns: e.modified_ns,
                },
            });
            if batch.len() >= PAGE {
                db.add_candidates(&std::mem::take(&mut batch))?;
            }
        }
        Ok(())
    })?;
    db.add_candidates(&batch)?;
    Ok((count, entries))
}

/// The two roots, held open for the delete pass: every live check and
/// deletion is resolved below them through no symlink (`beneath`), so a
/// destination folder swapped for a symlink to `/etc` between the listing
/// and the deletion fails that one deletion instead of reaching `/etc`.
/// A root that cannot be opened leaves its checks `Unknown`: nothing is
/// deleted on its word.
struct Held {
    source: Option<Root>,
    dest: Option<Root>,
    source_dirs: DirCache,
    dest_dirs: DirCache,
}

fn live(root: &Option<Root>) -> Option<&Root> {
    root.as_ref().filter(|r| !r.moved())
}

impl Held {
    fn open(source_root: &Path, dest_root: &Path) -> Self {
        let open = |p: &Path| {
            Root::open(p)
                .inspect_err(|e| warn!(path = %p.display(), error = %e, "mirror: cannot open root; nothing deleted on its side"))
                .ok()
        };
        Held {
            source: open(source_root),
            dest: open(dest_root),
            source_dirs: DirCache::default(),
            dest_dirs: DirCache::default(),
        }
    }

    /// Whether `path` exists in the source now. `ENOENT` and `ENOTDIR` (a
    /// parent is not a directory) prove absence; a symlink on the way, or
    /// any other error, proves nothing.
    fn source_now(&mut self, path: &Path) -> SourceNow {
        let Some(root) = &self.source else {
            return SourceNow::Unknown;
        };
        let at = root
            .split(path)
            .and_then(|(dir, name)| self.source_dirs.dir(root, dir)?.stat(name));
        match at {
            Ok(_) => SourceNow::Present,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                SourceNow::Absent
            }
            Err(e) => {
                self.source_dirs.clear();
                warn!(path = %path.display(), error = %e, "mirror: cannot check source path; destination entry kept");
                SourceNow::Unknown
            }
        }
    }

    /// The destination root, unless its path no longer leads to the folder
    /// held open (renamed away, unmounted): then nothing more is deleted.
    fn dest_root(&self) -> Option<&Root> {
        live(&self.dest)
    }

    fn dest_now(&mut self, path: &Path) -> DestNow {
        let Some(root) = live(&self.dest) else {
            return DestNow::Unknown;
        };
        let at = root
            .split(path)
            .and_then(|(dir, name)| self.dest_dirs.dir(root, dir)?.stat(name));
        match at {
            Ok(md) => md.stamp().map_or(DestNow::Unknown, DestNow::Is),
            Err(e) if e.kind() == ErrorKind::NotFound => DestNow::Gone,
            Err(e) => {
                self.dest_dirs.clear();
                debug!(path = %path.display(), error = %e, "mirror: cannot check destination entry; kept");
                DestNow::Unknown
            }
        }
    }

    /// Deletes `path` (an empty folder, or anything else by unlink), below
    /// the destination root through no symlink.
    fn remove(&mut self, path: &Path, kind: EntryKind) -> std::io::Result<()> {
        let Some(root) = live(&self.dest) else {
            return Err(std::io::Error::other(
                "destination root is no longer the folder this stage opened",
            ));
        };
        let (dir, name) = root.split(path)?;
        let dir = self.dest_dirs.dir(root, dir)?;
        match kind {
            EntryKind::Dir => dir.rmdir(name),
            EntryKind::File | EntryKind::Symlink => dir.unlink(name),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn delete_pass(
    db: &mut StateDb,
    audit: &mut AuditLog,
    stop: &AtomicBool,
    opts: MirrorOptions,
    say: &dyn Fn(&str),
    run: &mut MirrorRun,
    policy: &MirrorPolicy,
    (source_root, dest_root, root_id): (&Path, &Path, Option<RootId>),
    report: &mut MirrorReport,
) -> Result<(), MirrorError> {
    let initial_root = run.source_root;
    let write = !opts.dry_run;
    let Some(source_id) = root_id else {
        // The stage refused before this pass: no identity, no deletion.
        return Ok(());
    };
    let mut guard =
        DeleteGuard::new(dest_root, source_id).map_err(|source| MirrorError::DestRoot {
            path: dest_root.display().to_string(),
            source,
        })?;
    // One warning per run for entries kept by the guard; each at debug.
    let mut guard_warned = false;
    // Checks and deletions below the held roots through no symlink; the
    // guard above is checked too, before each deletion.
    let mut held = Held::open(source_root, dest_root);
    let mut tx = if write { Some(db.begin()?) } else { None };
    let (mut since_commit, mut last_commit) = (0usize, Instant::now());
    let mut before: Option<PathBuf> = None;
    // Folders that lost an entry: their mtime moved, and is put back below.
    let mut touched = BTreeSet::new();
    let result = 'pages: loop {
        let page = match db.candidate_page(before.as_deref(), PAGE) {
            Ok(p) => p,
            Err(e) => break Err(e.into()),
        };
        let Some(last) = page.last() else {
            break Ok(());
        };
        before = Some(last.path.clone());
        for cand in page {
            if stop.load(Relaxed) {
                break 'pages Ok(());
            }
            let Some(src) = source_of(&cand.path, dest_root, source_root) else {
                continue;
            };
            // The source root again, for every candidate: a root that
            // vanished or was unmounted mid-stage stops the stage before
            // the next deletion.
            run.source_root = match RootNow::stat(source_root, root_id) {
                SourceRoot::Dir { .. } => initial_root,
                other => other,
            };
            let live = Live {
                source: held.source_now(&src),
                dest: held.dest_now(&cand.path),
            };
            let dest = &cand.path;
            match decide::mirror_verdict(run, &cand.stamp, &live, policy) {
                MirrorVerdict::Refuse(refusal) => {
                    break 'pages Err(MirrorError::Refused {
                        refusal,
                        source_root: String::new(),
                        deleted: report.deleted,
                    });
                }
                MirrorVerdict::Keep(KeepReason::DestGone) => {
                    if let Some(tx) = &tx
                        && let Err(e) = tx.forget_dest(dest)
                    {
                        break 'pages Err(e.into());
                    }
                }
                MirrorVerdict::Keep(why) => {
                    debug!(path = %dest.display(), reason = ?why, "mirror: kept");
                    report.kept += 1;
                }
                MirrorVerdict::Delete if let Err(why) = guard.check(dest) => {
                    if !guard_warned {
                        warn!(error = %why, "mirror: kept, never deleted across a symlink, a mount or into the source (further ones at debug level)");
                        guard_warned = true;
                    }
                    debug!(path = %dest.display(), error = %why, "mirror: kept by the guard");
                    report.kept += 1;
                }
                MirrorVerdict::Delete if !write => {
                    say(&format!(
                        "dry run: would delete {} `{}`",
                        cand.stamp.kind.as_str(),
                        dest.display()
                    ));
                    count_deleted(report, &cand.stamp);
                }
                MirrorVerdict::Delete => {
                    let removed = held.remove(dest, cand.stamp.kind);
                    let size = if cand.stamp.kind == EntryKind::Dir {
                        0
                    } else {
                        cand.stamp.size
                    };
                    let logged = match removed {
                        Ok(()) => {
                            count_deleted(report, &cand.stamp);
                            if let Some(parent) = dest.parent() {
                                touched.insert(parent.to_path_buf());
                            }
                            audit
                                .write(
                                    &FileRecord::new("deleted", &src, dest, size)
                                        .entry(cand.stamp.kind.as_str(), cand.stamp.modified_ns),
                                )
                                .map_err(MirrorError::from)
                                .and_then(|()| forget(&tx, dest))
                        }
                        // Something appeared inside since the listing (or a
                        // child was kept): the directory stays, by design.
                        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                            debug!(path = %dest.display(), "mirror: directory not empty; kept");
                            report.kept += 1;
                            Ok(())
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => forget(&tx, dest),
                        Err(e) => {
                            warn!(path = %dest.display(), error = %e, "mirror: cannot delete");
                            report.failed += 1;
                            let text = format!("cannot delete: {e}");
                            let mut rec = FileRecord::new("failed", &src, dest, size)
                                .entry(cand.stamp.kind.as_str(), cand.stamp.modified_ns);
                            rec.error = Some(&text);
                            audit.write(&rec).map_err(Into::into)
                        }
                    };
                    if let Err(e) = logged {
                        break 'pages Err(e);
                    }
                    since_commit += 1;
                    if since_commit >= COMMIT_DELETES || last_commit.elapsed() >= COMMIT_EVERY {
                        if let Err(e) = commit(db, &mut tx, audit, true) {
                            break 'pages Err(e);
                        }
                        since_commit = 0;
                        last_commit = Instant::now();
                    }
                }
            }
        }
    };
    if write {
        // Whatever stopped the pass, what was deleted is recorded.
        commit(db, &mut tx, audit, false)?;
        restore_folder_times(db, &touched, source_root, &held)?;
    }
    result
}

/// Puts back the source mtime (and atime) of destination folders that lost
/// entries, so that the next scan finds them unchanged instead of queueing
/// them again. Folders without a source row (extras that could not be
/// removed) are left as they are; a failure only costs that next scan a
/// folder to redo.
fn restore_folder_times(
    db: &StateDb,
    touched: &BTreeSet<PathBuf>,
    source_root: &Path,
    held: &Held,
) -> Result<(), DbError> {
    let Some(dest) = held.dest_root() else {
        return Ok(());
    };
    let dest_root = dest.path();
    for dir in touched.iter().rev() {
        let src = if dir == dest_root {
            source_root.to_path_buf()
        } else {
            match source_of(dir, dest_root, source_root) {
                Some(s) => s,
                None => continue,
            }
        };
        let Some((accessed_ns, modified_ns)) = db.dir_times(&src)? else {
            continue;
        };
        if let Err(e) = dest.set_times(dir, accessed_ns, modified_ns)
            && e.kind() != ErrorKind::NotFound
        {
            debug!(path = %dir.display(), error = %e, "mirror: cannot restore folder times");
        }
    }
    Ok(())
}

fn count_deleted(report: &mut MirrorReport, stamp: &Stamp) {
    report.deleted += 1;
    if stamp.kind == EntryKind::File {
        report.deleted_bytes += stamp.size;
    }
}

/// Forgets a deleted (or vanished) destination entry in the pass's batch
/// (there is one unless this is a dry run, which forgets nothing).
fn forget(tx: &Option<Tx<'_>>, dest: &Path) -> Result<(), MirrorError> {
    match tx {
        Some(tx) => Ok(tx.forget_dest(dest)?),
        None => Ok(()),
    }
}

/// Audit lines reach the disk before the DB forgets their entries.
fn commit<'db>(
    db: &'db StateDb,
    tx: &mut Option<Tx<'db>>,
    audit: &mut AuditLog,
    reopen: bool,
) -> Result<(), MirrorError> {
    audit.flush()?;
    if let Some(tx) = tx.take() {
        tx.commit()?;
    }
    if reopen {
        *tx = Some(db.begin()?);
    }
    Ok(())
}

/// Test hook (debug builds only): with `JOBRUN_TEST_MIRROR_PAUSE=<path>`,
/// creates `<path>.ready` once the candidates are listed and the rails
/// passed, then waits (up to 60 s) for `<path>` to exist, so a test can
/// change the source between the listing and the live checks.
fn test_pause() {
    #[cfg(debug_assertions)]
    if let Some(p) = std::env::var_os("JOBRUN_TEST_MIRROR_PAUSE") {
        let p = PathBuf::from(p);
        let mut ready = p.clone().into_os_string();
        ready.push(".ready");
        let _ = std::fs::write(&ready, b"");
        let until = Instant::now() + Duration::from_secs(60);
        while !p.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
