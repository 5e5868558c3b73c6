//! From the layered [`RawManifest`] to a [`Job`], in the steps it takes:
//! where each value came from (`origins`), the two roots placed and
//! resolved, the job's own state files judged (`state_files`), the values
//! with their defaults, and the memory budget of the FIFOs.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use super::{
    DEFAULT_BLOCK_SIZE, DEFAULT_PROGRESS_INTERVAL, DEFAULT_QUEUE_CAPACITY, DEFAULT_TRANSFERS, Job,
    ManifestError, Patterns, RawManifest, normalize,
};
use crate::decide;
use crate::filter::Filter;
use crate::roots::{self, Resolved};
use crate::units;

mod origins;
mod state_files;

pub(super) use origins::Origins;
use state_files::state_files;

/// The job's paths, resolved.
struct Places {
    source: Utf8PathBuf,
    destination: Utf8PathBuf,
    db: Utf8PathBuf,
    log: Utf8PathBuf,
    metrics_file: Option<Utf8PathBuf>,
}

/// The job: its places, its filter, and each key's value or default.
pub(super) fn resolve(o: &Origins<'_>, mut raw: RawManifest) -> Result<Job, ManifestError> {
    let places = places(o, &mut raw)?;
    let filter = filter(o, raw.exclude.take(), raw.include.take())?;
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
        polite_target: raw
            .polite_target
            .map_or(crate::polite::DEFAULT_TARGET, |t| t.0),
        shard_bwlimit: raw.shard_bwlimit.map(|b| b.0),
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
        shard: None,
        notices: Vec::new(),
    };
    check_memory(o, &job, raw.block_size.is_some())?;
    Ok(job)
}

/// `exclude` and `include`, compiled; a refusal names the pattern, or the
/// two lists' sizes when only the set is too large.
fn filter(
    o: &Origins<'_>,
    exclude: Option<Patterns>,
    include: Option<Patterns>,
) -> Result<Filter, ManifestError> {
    let patterns = |p: Option<Patterns>| p.map(|p| p.0).unwrap_or_default();
    let (exclude, include) = (patterns(exclude), patterns(include));
    Filter::new(&exclude, &include).map_err(|(key, p, e)| {
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
    })
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
