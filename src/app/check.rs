//! `jobrun check JOB.toml`: the resolved settings, the run mode and stage
//! plan, and what a run would refuse, with its line and exit code. Touches
//! nothing.

use super::{Failure, load_runnable};
use serde::Serialize;

use crate::cli::JsonArgs;
use crate::db::StateDb;
use crate::decide;
use crate::filter::Filter;
use crate::modes::Permissions;
use crate::runner::{self, Exit};
use crate::throttle::{Limit, Schedule};
use crate::timetable;
use crate::units::human_bytes;

/// What `check` found, printed as text or, with `--json`, as this object.
#[derive(Debug, Serialize)]
struct Checked {
    /// Each setting as resolved, with its unit or meaning, in `check`'s
    /// order (the manifest first).
    #[serde(serialize_with = "in_order")]
    settings: Vec<(&'static str, String)>,
    /// What the next run does, and why (`scan (no state DB yet)`); absent
    /// when the DB was refused.
    mode: Option<String>,
    /// The stages the next run takes, in order.
    plan: Vec<&'static str>,
    /// What the source holds that the keys leave out (a quick probe).
    left_out: Vec<String>,
    warnings: Vec<String>,
    /// The exit code a run would start with: 0, or the code of what it
    /// would refuse (`error`).
    exit: u8,
    error: Option<String>,
}

/// The settings as one JSON object, keys in `check`'s order.
fn in_order<S: serde::Serializer>(v: &[(&'static str, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

impl Checked {
    fn text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.settings {
            out.push_str(&format!("{k:<18} {v}\n"));
        }
        let Some(mode) = &self.mode else { return out };
        out.push_str(&format!("{:<18} {mode}\n", "mode"));
        out.push_str(&format!("{:<18} {}\n", "plan", self.plan.join(" -> ")));
        for l in &self.left_out {
            out.push_str(&format!("{:<18} {l}\n", "left out"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

pub fn check(args: &JsonArgs) -> Result<Exit, Failure> {
    let job = load_runnable(&args.common.job, &args.common.overrides)?;
    let mut found = Checked {
        settings: settings(&job),
        mode: None,
        plan: Vec::new(),
        left_out: Vec::new(),
        warnings: Vec::new(),
        exit: 0,
        error: None,
    };
    let refused = match plan(&job) {
        Ok((mode, stages)) => {
            found.mode = Some(mode);
            found.plan = stages;
            found.left_out.extend(left_out_probe(&job));
            found.left_out.extend(tree_probe(&job));
            if !job.destination.exists() {
                found.warnings.push(format!(
                    "destination root `{}` does not exist (yet); a run creates it",
                    job.destination
                ));
            }
            // What a run would refuse about the roots, with its line and
            // exit code, in the run's order: their filesystems (against the
            // DB's record, read only), then what they are.
            let db = StateDb::open_existing_read_only(&job.db).ok().flatten();
            runner::check_filesystems(&job, db.as_ref(), runner::Record::No)
                .and_then(|()| runner::preflight(&job))
                .err()
                .map(|e| Failure::new(runner::describe(&e, &job), e.exit()))
        }
        Err(f) => Some(f),
    };
    if let Some(f) = &refused {
        found.exit = f.exit.code();
        found.error = Some(f.message.clone());
    }
    let text = if args.json {
        super::json(&found)?
    } else {
        found.text()
    };
    // The settings first, then the refusal's line on stderr (with
    // `--json` the object says it too: nothing more goes to stdout).
    super::out(&text);
    match refused {
        Some(f) => Err(Failure {
            then: Some(String::new()),
            ..f
        }),
        None => Ok(Exit::Ok),
    }
}

/// Entries `check` looks at for attributes left out: the root and this many.
const PROBE_ENTRIES: usize = 300;

/// What the source holds that the keys leave out, from a quick look at its
/// root and first entries (`crate::xattrs::probe`); empty when nothing.
fn left_out_probe(job: &crate::manifest::Job) -> Vec<String> {
    let keep = crate::xattrs::Attrs::new(job.xattrs, job.acls).keep;
    let (seen, xattrs, acls) = crate::xattrs::probe(job.source.as_std_path(), keep, PROBE_ENTRIES);
    let mut out = Vec::new();
    if acls > 0 {
        out.push(format!(
            "{acls} of the first {seen} source entries carry ACLs that are not copied: acls = false"
        ));
    }
    if xattrs > 0 {
        out.push(format!(
            "{xattrs} of the first {seen} source entries carry extended attributes that are not copied: xattrs = false"
        ));
    }
    out
}

/// The hard links and holes among the source's first entries that
/// `hard_links = false`/`sparse = false` leave out; empty when none (or
/// both keys on: nothing is looked at).
fn tree_probe(job: &crate::manifest::Job) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if job.hard_links && job.sparse {
        return None;
    }
    let (mut seen, mut linked, mut sparse) = (0, 0, 0);
    let mut folders = vec![job.source.as_std_path().to_path_buf()];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if seen >= PROBE_ENTRIES {
                break;
            }
            seen += 1;
            let Ok(md) = entry.metadata() else { continue };
            if md.is_dir() {
                folders.push(entry.path());
            } else if md.is_file() {
                linked += u64::from(!job.hard_links && md.nlink() > 1);
                sparse += u64::from(!job.sparse && md.blocks().saturating_mul(512) < md.len());
            }
        }
    }
    crate::fsmeta::tree_left_out_line(linked, sparse)
        .map(|line| format!("among the first {seen} source entries: {line}"))
}

/// Each setting as resolved, with its unit or meaning.
fn settings(job: &crate::manifest::Job) -> Vec<(&'static str, String)> {
    vec![
        ("manifest", job.manifest.to_string()),
        ("source", job.source.to_string()),
        ("destination", job.destination.to_string()),
        ("db", job.db.to_string()),
        ("log", job.log.to_string()),
        ("checksum", job.checksum.to_string()),
        (
            "block_size",
            format!(
                "{} ({} bytes)",
                human_bytes(job.block_size as u64),
                job.block_size
            ),
        ),
        (
            "queue_capacity",
            format!(
                "{} (FIFO memory up to {})",
                job.queue_capacity,
                human_bytes(job.fifo_bytes())
            ),
        ),
        (
            "transfers",
            format!(
                "{} (files at once; {} queued blocks each)",
                job.transfers,
                job.lane_capacity()
            ),
        ),
        (
            "bwlimit",
            match &job.bwlimit {
                Schedule::Fixed(Limit::Rate(b)) => {
                    format!("{}/s ({b} bytes/s)", human_bytes(*b))
                }
                Schedule::Fixed(Limit::Pause) => {
                    "pause (no file bytes move; edit and reload to go on)".into()
                }
                Schedule::Fixed(l) => l.to_string(),
                t @ Schedule::Timetable(tt) => {
                    let now = timetable::local_week_secs();
                    let zone = timetable::local_zone_name();
                    format!(
                        "timetable {t} (now {})\n{}",
                        tt.limit_at(now),
                        tt.week_table(now, &zone, &" ".repeat(19))
                    )
                }
            },
        ),
    ]
    .into_iter()
    .chain(later_settings(job))
    .collect()
}

/// `sparse` and `hard_links` in [`settings`].
fn tree_settings(job: &crate::manifest::Job) -> [(&'static str, String); 2] {
    [
        (
            "sparse",
            if job.sparse {
                "true (holes kept; zero blocks written as holes)".into()
            } else {
                "false (holes arrive as written zeros)".into()
            },
        ),
        (
            "hard_links",
            if job.hard_links {
                "true (names of one source inode arrive as one inode)".into()
            } else {
                "false (every name arrives as a copy of its own)".into()
            },
        ),
    ]
}

/// [`settings`] from `delete_extras` on.
fn later_settings(job: &crate::manifest::Job) -> Vec<(&'static str, String)> {
    let [sparse, hard_links] = tree_settings(job);
    vec![
        ("delete_extras", job.delete_extras.to_string()),
        (
            "max_delete",
            match job.max_delete {
                decide::MaxDelete::Percent(_) => {
                    format!("{} of the destination's entries per run", job.max_delete)
                }
                decide::MaxDelete::Count(_) => format!("{} entries per run", job.max_delete),
                decide::MaxDelete::Off => "off (no cap)".into(),
            },
        ),
        ("inplace", job.inplace.to_string()),
        (
            "modify_window",
            humantime::format_duration(job.modify_window).to_string(),
        ),
        ("symlinks", job.symlinks.to_string()),
        (
            "permissions",
            match job.permissions {
                Permissions::Masked => {
                    "masked (the source's bits less the umask, given at creation)".into()
                }
                Permissions::Preserve => {
                    "preserve (the source's exact bits, set after the write; best-effort)".into()
                }
            },
        ),
        (
            "owners",
            if job.owners {
                "true (the source's owner and group; best-effort)".into()
            } else {
                "false (created entries belong to the user running jobrun)".into()
            },
        ),
        (
            "xattrs",
            if job.xattrs {
                "true (user.* attributes, and trusted.* as root; best-effort)".into()
            } else {
                "false (extended attributes are not copied)".into()
            },
        ),
        (
            "acls",
            if job.acls {
                "true (ACLs of the roots' model; best-effort)".into()
            } else {
                "false (not copied; group bits no wider than the ACL's owning group)".into()
            },
        ),
        (
            "require_mounts",
            if job.require_mounts {
                "true (a root not on a network filesystem is refused)".into()
            } else {
                "false".into()
            },
        ),
        sparse,
        hard_links,
        (
            "progress_interval",
            humantime::format_duration(job.progress_interval).to_string(),
        ),
        (
            "metrics_file",
            job.metrics_file.as_ref().map_or_else(
                || "off".into(),
                |p| format!("{p} (Prometheus textfile, rewritten every second while a run goes)"),
            ),
        ),
        ("exclude", Filter::describe(job.filter.exclude())),
        (
            "include",
            match job.filter.include() {
                [] => "none".into(),
                _ if job.filter.is_empty() => format!(
                    "{} (no effect: nothing is excluded)",
                    Filter::describe(job.filter.include())
                ),
                l => format!("{} (kept although excluded)", Filter::describe(l)),
            },
        ),
    ]
}

/// The run mode (said with its reason) and stage plan the next run would
/// take, from the DB read only; a DB of another job is refused as a run
/// refuses it.
fn plan(job: &crate::manifest::Job) -> Result<(String, Vec<&'static str>), Failure> {
    let next = StateDb::open_existing_read_only(&job.db).and_then(|db| match db {
        None => Ok(None),
        Some(db) => {
            db.verify_roots(&job.source, &job.destination, &runner::same_folder)?;
            runner::next_mode(job, &db, false).map(Some)
        }
    });
    let (mode, mode_said) = match next {
        // A DB of another job: a run refuses it, so does `check`.
        Err(e @ crate::db::DbError::RootsDiffer { .. }) => {
            return Err(Failure::new(e, Exit::Usage));
        }
        // A DB a run cannot use: the run stops with exit 4, so does `check`.
        Err(e) => return Err(Failure::new(e, Exit::Fatal)),
        Ok(None) => (
            decide::RunMode::Scan,
            runner::mode_line(decide::RunMode::Scan, false),
        ),
        Ok(Some(next)) => next,
    };
    let stages = runner::plan(job, mode).iter().map(|s| s.name()).collect();
    Ok((mode_said, stages))
}
