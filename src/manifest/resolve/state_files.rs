//! The job's own state files judged: `db`, its `-wal`, `-shm` and `.lock`,
//! `log` and `metrics_file` are regular files or absent, never reached
//! through a symlink where jobrun creates them (`-wal`, `-shm`, `.lock`),
//! distinct from each other and from the manifest, and outside both trees.
//! Aimed at each other they defeated the lock, truncated or deleted the
//! log, wiped the DB at a kill, destroyed the manifest, or wrote into the
//! source.

use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};

use super::{Origins, named};
use crate::manifest::ManifestError;
use crate::roots::{self, Resolved};

/// One state file: the key that places it, what it is, where it resolves,
/// and whether jobrun creates it beside the DB (never through a symlink).
struct StateFile {
    key: &'static str,
    what: String,
    path: Resolved,
    beside_db: bool,
}

const STATE_RULE: &str = "state files (db, its -wal/-shm/.lock, log, metrics_file) are regular \
     files or absent, distinct from each other, the manifest and both trees";

/// Judges the state files (see the module doc); gives the resolved `db`,
/// `log` and `metrics_file`.
pub(super) fn state_files(
    o: &Origins<'_>,
    src: &Resolved,
    dst: &Resolved,
    db: &Utf8Path,
    log: &Utf8Path,
    metrics: Option<&Utf8Path>,
) -> Result<(Utf8PathBuf, Utf8PathBuf, Option<Utf8PathBuf>), ManifestError> {
    let dbr = o.real("db", db)?;
    let logr = o.real("log", log)?;
    let mr = metrics.map(|m| o.real("metrics_file", m)).transpose()?;
    let mut files = vec![StateFile {
        key: "db",
        what: "the `db`".into(),
        path: dbr.clone(),
        beside_db: false,
    }];
    for (suffix, what) in [
        ("-wal", "the DB's write-ahead log"),
        ("-shm", "the DB's shared-memory index"),
        (".lock", "the job's lock file"),
    ] {
        files.push(StateFile {
            key: "db",
            what: what.into(),
            path: Resolved {
                path: format!("{}{suffix}", dbr.path).into(),
                exists: false,
            },
            beside_db: true,
        });
    }
    files.push(StateFile {
        key: "log",
        what: "the `log`".into(),
        path: logr.clone(),
        beside_db: false,
    });
    if let Some(m) = &mr {
        files.push(StateFile {
            key: "metrics_file",
            what: "the `metrics_file`".into(),
            path: m.clone(),
            beside_db: false,
        });
    }
    let (s, d) = (named(src, &src.path), named(dst, &dst.path));
    let manifest = roots::resolve(o.manifest).map_or_else(|_| o.manifest.to_owned(), |r| r.path);
    for (i, f) in files.iter().enumerate() {
        let p = &f.path.path;
        if roots::file_inside(&f.path, dst) || roots::file_inside(&f.path, src) {
            return Err(o.invalid(
                f.key,
                format!("`{p}` must lie outside the source {s} and destination {d} trees"),
            ));
        }
        judge_kind(f).map_err(|why| o.invalid(f.key, format!("{why}: {STATE_RULE}")))?;
        if same_file(p, &manifest) {
            return Err(o.invalid(
                f.key,
                format!("`{p}` ({}) is the manifest: {STATE_RULE}", f.what),
            ));
        }
        if let Some(other) = files[..i].iter().find(|e| same_file(&e.path.path, p)) {
            return Err(o.invalid(
                f.key,
                format!("`{p}` is also {} ({STATE_RULE})", other.what),
            ));
        }
    }
    Ok((dbr.path, logr.path, mr.map(|m| m.path)))
}

/// A state file that exists is a regular file; one jobrun creates beside
/// the DB is not a symlink.
fn judge_kind(f: &StateFile) -> Result<(), String> {
    let p = f.path.path.as_std_path();
    let md = match std::fs::symlink_metadata(p) {
        Ok(md) => md,
        Err(_) => return Ok(()),
    };
    if md.file_type().is_symlink() {
        if f.beside_db {
            return Err(format!(
                "`{}` ({}) is a symlink, never followed",
                f.path.path, f.what
            ));
        }
        return Ok(()); // resolved already: `path` is its target
    }
    if md.is_file() {
        return Ok(());
    }
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(format!("`{}` ({}) is {kind}", f.path.path, f.what))
}

/// The same path, or (both existing) the same file by device and inode: a
/// hard link or a bind mount is no way around it.
fn same_file(a: &Utf8Path, b: &Utf8Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
