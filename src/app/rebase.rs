//! `jobrun rebase JOB.toml`: a share mounted elsewhere keeps its job's
//! state. After the admin edits `source` or `destination`, the new roots
//! are checked against what the DB recorded — a sample of synced entries
//! (kind, size, mtime; at the destination as it showed right after the
//! copy) and the filesystem recorded for each root (type and mount source;
//! the mount point may differ) — and the DB is pointed at them: every row,
//! hash and run kept (paths are stored below their roots, v12), one
//! `rebase` audit line. Any mismatch refuses with the first ones (exit 2),
//! the DB unchanged.

use std::path::Path;

use serde::Serialize;

use super::{Failure, load};
use crate::audit::AuditLog;
use crate::cli::RebaseArgs;
use crate::db::{DbError, JobRoot, RecordedEntry, StateDb};
use crate::decide::EntryKind;
use crate::exit::Exit;
use crate::lock::{JobLock, LockError};
use crate::roots::Filesystem;

/// How many mismatches the refusal names.
const SHOWN: usize = 5;

/// The `rebase` audit line.
#[derive(Serialize)]
struct RebaseLine<'a> {
    status: &'static str,
    job: &'a str,
    old_source: &'a str,
    source: &'a str,
    old_destination: &'a str,
    destination: &'a str,
    checked: usize,
    version: &'static str,
    pid: u32,
}

fn fail(e: impl std::fmt::Display, exit: Exit) -> Failure {
    Failure::new(e, exit)
}

pub fn rebase(args: &RebaseArgs) -> Result<Exit, Failure> {
    let job = load(&args.common)?;
    if !job.db.exists() {
        return Err(fail(
            format!(
                "no state DB at `{}` yet: the job has never run, nothing to rebase",
                job.db
            ),
            Exit::Usage,
        ));
    }
    let _lock = JobLock::acquire(&job).map_err(|e| {
        let exit = match e {
            LockError::Locked { .. } => Exit::Locked,
            LockError::Lock { .. } => Exit::Fatal,
        };
        fail(e, exit)
    })?;
    let db = StateDb::open(&job.db).map_err(|e| fail(e, Exit::Fatal))?;
    let fatal = |e: DbError| fail(e, Exit::Fatal);
    let (old_src, old_dst) = db.recorded_roots().map_err(fatal)?;
    let (old_src, old_dst) = (old_src.unwrap_or_default(), old_dst.unwrap_or_default());
    let moved = [
        old_src != job.source.as_str(),
        old_dst != job.destination.as_str(),
    ];
    if moved == [false, false] {
        println!("jobrun: rebase: the state DB's roots are the manifest's already; nothing to do");
        return Ok(Exit::Ok);
    }
    let sample = db.sample_synced(args.sample).map_err(fatal)?;
    let mut wrong = Vec::new();
    for (i, (root, new)) in JobRoot::BOTH
        .into_iter()
        .zip([&job.source, &job.destination])
        .enumerate()
    {
        if moved[i] {
            wrong.extend(filesystem_mismatch(&db, root, new.as_std_path()));
            wrong.extend(entry_mismatches(&sample, root, new.as_std_path()));
        }
    }
    if !wrong.is_empty() {
        let n = wrong.len();
        wrong.truncate(SHOWN);
        return Err(fail(
            format!(
                "rebase refused: the new roots do not hold the recorded tree ({n} mismatch{} in \
                 {} sampled entries; the state DB is unchanged): {}",
                if n == 1 { "" } else { "es" },
                sample.len(),
                wrong.join("; ")
            ),
            Exit::Usage,
        ));
    }
    db.move_roots(&job.source, &job.destination)
        .map_err(fatal)?;
    for (i, (root, new)) in JobRoot::BOTH
        .into_iter()
        .zip([&job.source, &job.destination])
        .enumerate()
    {
        if moved[i]
            && db.root_filesystem(root).map_err(fatal)?.is_some()
            && let Ok(fs) = Filesystem::of(new.as_std_path())
        {
            db.set_root_filesystem(root, &fs.to_meta()).map_err(fatal)?;
        }
    }
    let mut audit = AuditLog::open(&job.log).map_err(|e| fail(e, Exit::Fatal))?;
    audit.set_db(db.id());
    audit
        .write(&RebaseLine {
            status: "rebase",
            job: job.manifest.as_str(),
            old_source: &old_src,
            source: job.source.as_str(),
            old_destination: &old_dst,
            destination: job.destination.as_str(),
            checked: sample.len(),
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
        })
        .map_err(|e| fail(e, Exit::Fatal))?;
    println!(
        "jobrun: rebased: source `{old_src}` → `{}`, destination `{old_dst}` → `{}` ({} entries checked; every row and hash kept)",
        job.source,
        job.destination,
        sample.len()
    );
    Ok(Exit::Ok)
}

/// The recorded filesystem of `root` against the one `new` is on: type
/// and mount source must agree (the mount point may differ).
fn filesystem_mismatch(db: &StateDb, root: JobRoot, new: &Path) -> Option<String> {
    let recorded = db
        .root_filesystem(root)
        .ok()
        .flatten()
        .and_then(|t| Filesystem::from_meta(&t))?;
    let name = root.name();
    match Filesystem::of(new) {
        Ok(now) if now.fstype == recorded.fstype && now.source == recorded.source => None,
        Ok(now) => Some(format!(
            "{name} root `{}` is on {} `{}`, the job's was on {} `{}`",
            new.display(),
            now.fstype,
            now.source,
            recorded.fstype,
            recorded.source
        )),
        Err(e) => Some(format!("{name} root `{}`: {e}", new.display())),
    }
}

/// Each sampled entry at the new `root`: there, of its kind, with its
/// recorded size and mtime (at the destination: as it showed right after
/// the copy where that was recorded).
fn entry_mismatches(sample: &[RecordedEntry], root: JobRoot, new: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in sample {
        let below = match root {
            JobRoot::Source => &e.below_source,
            JobRoot::Destination => &e.below_dest,
        };
        let Some(below) = below else { continue };
        let at = new.join(below);
        let (size, mtime) = match (root, e.after_copy) {
            (JobRoot::Destination, Some(after)) => after,
            _ => (e.size, e.modified_ns),
        };
        if let Some(why) = differs(&at, e.kind, size, mtime) {
            out.push(format!("`{}` {why}", at.display()));
        }
    }
    out
}

/// How the entry at `at` differs from what was recorded, if it does.
fn differs(at: &Path, kind: EntryKind, size: u64, mtime: i128) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = match std::fs::symlink_metadata(at) {
        Ok(md) => md,
        Err(e) => return Some(format!("cannot be read ({e})")),
    };
    let found = if md.file_type().is_symlink() {
        EntryKind::Symlink
    } else if md.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    if found != kind {
        return Some(format!(
            "is a {}, recorded a {}",
            found.as_str(),
            kind.as_str()
        ));
    }
    let now = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
    if kind == EntryKind::File && md.len() != size {
        return Some(format!("has {} bytes, recorded {size}", md.len()));
    }
    if kind == EntryKind::File && now != mtime {
        return Some(format!(
            "was modified at {}, recorded {}",
            crate::audit::rfc3339_ns(now),
            crate::audit::rfc3339_ns(mtime)
        ));
    }
    None
}
