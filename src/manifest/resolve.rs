//! From the layered [`RawManifest`] to a [`Job`], in the steps it takes:
//! where each value came from (so that an error names the flag, the
//! variable or the manifest's line that set it), the two roots placed and
//! resolved, the job's own state files judged, the values with their
//! defaults, and the memory budget of the FIFOs.
//!
//! The state files (`db`, its `-wal`, `-shm` and `.lock`, `log`,
//! `metrics_file`) are regular files or absent, never reached through a
//! symlink where jobrun creates them (`-wal`, `-shm`, `.lock`), distinct
//! from each other and from the manifest, and outside both trees. Aimed at
//! each other they defeated the lock, truncated or deleted the log, wiped
//! the DB at a kill, destroyed the manifest, or wrote into the source.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use super::{
    DEFAULT_BLOCK_SIZE, DEFAULT_PROGRESS_INTERVAL, DEFAULT_QUEUE_CAPACITY, DEFAULT_TRANSFERS, Job,
    ManifestError, Patterns, RawManifest, env_name, line_of_key, normalize,
};
use crate::cli::Overrides;
use crate::decide;
use crate::filter::Filter;
use crate::roots::{self, Resolved};
use crate::units;

/// Where the values came from: the manifest's text, the flags, the
/// environment's layer.
pub(super) struct Origins<'a> {
    pub manifest: &'a Utf8Path,
    pub text: &'a str,
    pub overrides: &'a Overrides,
    pub env: &'a toml::Table,
}

impl Origins<'_> {
    /// Whether `key` was set by a flag or a `JOBRUN_*` variable.
    fn set_outside(&self, key: &str) -> bool {
        self.overrides.given(key) || self.env.contains_key(key)
    }

    /// `key`'s value is refused for `reason`: named by the flag or the
    /// variable that set it, else by the manifest's line.
    pub fn invalid(&self, key: &'static str, reason: String) -> ManifestError {
        if self.overrides.given(key) {
            ManifestError::Override {
                key: key.into(),
                origin: format!("flag `{}`", super::keys::flag_name(key)),
                message: reason,
            }
        } else if self.env.contains_key(key) {
            ManifestError::Override {
                key: key.into(),
                origin: format!("environment variable `{}`", env_name(key)),
                message: reason,
            }
        } else {
            ManifestError::Invalid {
                path: self.manifest.to_owned(),
                line: line_of_key(self.text, key),
                key,
                reason,
            }
        }
    }

    /// A path given by a flag or JOBRUN_* is relative to where the command
    /// ran; one written in the manifest is relative to the manifest.
    fn place(&self, key: &'static str, value: String) -> Result<Utf8PathBuf, ManifestError> {
        if value.trim().is_empty() {
            return Err(self.invalid(key, "empty path".into()));
        }
        let p = Utf8PathBuf::from(value);
        let base = if p.is_absolute() {
            Utf8PathBuf::new()
        } else if self.set_outside(key) {
            Utf8PathBuf::from_path_buf(std::env::current_dir().unwrap_or_else(|_| "/".into()))
                .map_err(|_| self.invalid(key, "working directory is not UTF-8".into()))?
        } else {
            self.manifest
                .parent()
                .unwrap_or(Utf8Path::new("/"))
                .to_owned()
        };
        Ok(base.join(p))
    }

    fn required(&self, key: &'static str, v: Option<String>) -> Result<String, ManifestError> {
        v.ok_or(ManifestError::Missing {
            path: self.manifest.to_owned(),
            key,
        })
    }

    fn real(&self, key: &'static str, p: &Utf8Path) -> Result<Resolved, ManifestError> {
        roots::resolve(p).map_err(|e| self.invalid(key, e))
    }
}

/// The job's paths, resolved.
struct Places {
    source: Utf8PathBuf,
    destination: Utf8PathBuf,
    db: Utf8PathBuf,
    log: Utf8PathBuf,
    metrics_file: Option<Utf8PathBuf>,
}

pub(super) fn resolve(o: &Origins<'_>, mut raw: RawManifest) -> Result<Job, ManifestError> {
    let places = places(o, &mut raw)?;
    let patterns = |p: Option<Patterns>| p.map(|p| p.0).unwrap_or_default();
    let (exclude, include) = (patterns(raw.exclude), patterns(raw.include));
    let filter = Filter::new(&exclude, &include).map_err(|(key, p, e)| {
        if p.is_empty() {
            // Each pattern compiled alone: only the set is too large.
            o.invalid(
                key,
                format!(
                    "the {} `exclude` and {} `include` patterns together are too large to \
                     compile ({}); no single pattern is wrong: write fewer or simpler ones \
                     (one `**/name*` for many names)",
                    exclude.len(),
                    include.len(),
                    e.trim()
                ),
            )
        } else {
            o.invalid(key, format!("bad pattern `{p}`: {e}"))
        }
    })?;
    let job = Job {
        manifest: o.manifest.to_owned(),
        source: places.source,
        destination: places.destination,
        db: places.db,
        log: places.log,
        checksum: raw.checksum.unwrap_or_default(),
        block_size: raw.block_size.map_or(DEFAULT_BLOCK_SIZE, |b| b.0) as usize,
        queue_capacity: raw.queue_capacity.map_or(DEFAULT_QUEUE_CAPACITY, |q| q.0) as usize,
        transfers: raw.transfers.map_or(DEFAULT_TRANSFERS, |t| t.0) as usize,
        bwlimit: raw.bwlimit.map(|b| b.0).unwrap_or_default(),
        delete_extras: raw.delete_extras.unwrap_or(false),
        max_delete: raw.max_delete.map_or(decide::DEFAULT_MAX_DELETE, |m| m.0),
        inplace: raw.inplace.unwrap_or(false),
        modify_window: raw.modify_window.map_or(Duration::ZERO, |d| d.0),
        symlinks: raw.symlinks.unwrap_or_default(),
        permissions: raw.permissions.unwrap_or_default(),
        owners: raw.owners.unwrap_or(false),
        xattrs: raw.xattrs.unwrap_or(false),
        acls: raw.acls.unwrap_or(false),
        require_mounts: raw.require_mounts.unwrap_or(false),
        sparse: raw.sparse.unwrap_or(true),
        hard_links: raw.hard_links.unwrap_or(true),
        progress_interval: raw
            .progress_interval
            .map_or(DEFAULT_PROGRESS_INTERVAL, |d| d.0),
        metrics_file: places.metrics_file,
        filter,
        notices: Vec::new(),
    };
    check_memory(o, &job, raw.block_size.is_some())?;
    Ok(job)
}

/// The roots and the state files, placed, resolved and judged.
fn places(o: &Origins<'_>, raw: &mut RawManifest) -> Result<Places, ManifestError> {
    let dir = o.manifest.parent().unwrap_or(Utf8Path::new("/"));
    let stem = o.manifest.file_stem().unwrap_or("job");
    let source = o.place("source", o.required("source", raw.source.take())?)?;
    let destination = o.place(
        "destination",
        o.required("destination", raw.destination.take())?,
    )?;
    let db = match raw.db.take() {
        Some(v) => o.place("db", v)?,
        None => dir.join(format!("{stem}.db")),
    };
    let log = match raw.log.take() {
        Some(v) => o.place("log", v)?,
        None => dir.join(format!("{stem}.log")),
    };
    let metrics = raw
        .metrics_file
        .take()
        .map(|v| o.place("metrics_file", v))
        .transpose()?;
    let (src, dst) = roots_apart(o, &source, &destination)?;
    let state = state_files(o, &src, &dst, &db, &log, metrics.as_deref())?;
    Ok(Places {
        source: src.path,
        destination: dst.path,
        db: state.0,
        log: state.1,
        metrics_file: state.2,
    })
}

/// Resolves the two roots to what they are (`roots::resolve`) and refuses
/// overlaps, judged by canonical path and by folder identity (a symlink or
/// a bind mount is no way around it).
fn roots_apart(
    o: &Origins<'_>,
    source: &Utf8Path,
    destination: &Utf8Path,
) -> Result<(Resolved, Resolved), ManifestError> {
    let (src, dst) = (
        o.real("source", source)?,
        o.real("destination", destination)?,
    );
    let (s, d) = (named(&src, source), named(&dst, destination));
    let refuse = |key, why| Err(o.invalid(key, why));
    match roots::overlap(&src, &dst) {
        None => Ok((src, dst)),
        Some(roots::Overlap::Same) => refuse(
            "destination",
            format!("{d} is the source {s} itself; the destination may not lie inside the source"),
        ),
        Some(roots::Overlap::Contains) => {
            refuse("destination", format!("{d} lies inside the source {s}"))
        }
        Some(roots::Overlap::Inside) => {
            refuse("source", format!("{s} lies inside the destination {d}"))
        }
    }
}

/// A root by what it is, and by how it was written when that differs.
fn named(r: &Resolved, written: &Utf8Path) -> String {
    let written = normalize(written);
    if written == r.path {
        format!("`{}`", r.path)
    } else {
        format!("`{}` (written `{written}`)", r.path)
    }
}

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
fn state_files(
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

/// Refuses FIFOs that would hold more than half of this machine's memory.
fn check_memory(o: &Origins<'_>, job: &Job, block_size_set: bool) -> Result<(), ManifestError> {
    let Some(total) = machine_memory() else {
        return Ok(());
    };
    if job.fifo_bytes() <= total / 2 {
        return Ok(());
    }
    Err(o.invalid(
        if block_size_set {
            "block_size"
        } else {
            "queue_capacity"
        },
        format!(
            "the block FIFOs would hold up to {} (block_size × blocks per lane × transfers), \
             more than half of this machine's {} of memory; lower `block_size` or `queue_capacity`",
            units::human_bytes(job.fifo_bytes()),
            units::human_bytes(total)
        ),
    ))
}

/// This machine's memory in bytes (`sysinfo`), `None` if it cannot be read.
fn machine_memory() -> Option<u64> {
    let info = rustix::system::sysinfo();
    (info.totalram > 0).then(|| info.totalram as u64 * u64::from(info.mem_unit.max(1)))
}
