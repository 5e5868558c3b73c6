//! `jobrun check JOB.toml`: the resolved settings, the run mode and stage
//! plan, and what a run would refuse, with its line and exit code. Touches
//! nothing.

use super::{Failure, Stdout, load_runnable};
use serde::Serialize;

use crate::cli::JsonArgs;
use crate::db::StateDb;
use crate::decide;
use crate::filter::Filter;
use crate::manifest::{Job, keys};
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
    let job = super::shard::pick(job, args.common.shard.as_deref(), false)?;
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
            let probed = crate::xattrs::first_entries(job.source.as_std_path(), PROBE_ENTRIES);
            found.left_out.extend(left_out_probe(&job, &probed));
            found.left_out.extend(tree_probe(&job, &probed));
            if job.acls {
                found
                    .warnings
                    .extend(crate::xattrs::acls_unseen(job.source.as_std_path()));
            }
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
            stdout: Stdout::Printed,
            ..f
        }),
        None => Ok(Exit::Ok),
    }
}

/// Entries `check` looks at for what the keys leave out: the root and
/// this many.
const PROBE_ENTRIES: usize = 300;

/// One entry `check` looked at: its path and `lstat`.
type Probed = (std::path::PathBuf, Option<std::fs::Metadata>);

/// What the source holds that the keys leave out, from a quick look at its
/// root and first entries; empty when nothing.
fn left_out_probe(job: &Job, probed: &[Probed]) -> Vec<String> {
    let keep = crate::xattrs::Attrs::new(job.xattrs, job.acls).keep;
    let (xattrs, acls) =
        crate::xattrs::left_out_among(probed.iter().map(|(p, _)| p.as_path()), keep);
    let seen = probed.len();
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

/// The hard links and holes among the source's first entries (the root
/// aside) that `hard_links = false`/`sparse = false` leave out; none when
/// none (or both keys on).
fn tree_probe(job: &Job, probed: &[Probed]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if job.hard_links && job.sparse {
        return None;
    }
    let entries = probed.get(1..).unwrap_or_default();
    // On the SMB client a file's names show a link count of 1 and one
    // inode: the names seen sharing one are its hard links.
    let by_inode = !job.hard_links
        && crate::roots::Filesystem::names_share_inode(job.source.as_std_path()).unwrap_or(false);
    let mut inodes = std::collections::HashMap::<(u64, u64), u64>::new();
    let (mut linked, mut sparse) = (0, 0);
    for md in entries
        .iter()
        .filter_map(|(_, md)| md.as_ref())
        .filter(|m| m.is_file())
    {
        if by_inode {
            *inodes.entry((md.dev(), md.ino())).or_default() += 1;
        }
        linked += u64::from(!job.hard_links && !by_inode && md.nlink() > 1);
        sparse += u64::from(!job.sparse && md.blocks().saturating_mul(512) < md.len());
    }
    linked += inodes.values().filter(|&&n| n > 1).sum::<u64>();
    crate::fsmeta::tree_left_out_line(linked, sparse)
        .map(|line| format!("among the first {} source entries: {line}", entries.len()))
}

/// Each setting as resolved, with its unit or meaning: the manifest, then
/// every key in the key table's order.
fn settings(job: &Job) -> Vec<(&'static str, String)> {
    std::iter::once(("manifest", job.manifest.to_string()))
        .chain(keys::TABLE.iter().map(|k| (k.name, shown(job, k.name))))
        .collect()
}

/// `key`'s resolved value with its unit or meaning; a key with no line of
/// its own here as the [`Job`] serializes it.
fn shown(job: &Job, key: &str) -> String {
    paths_and_streams(job, key)
        .or_else(|| mirror_and_metadata(job, key))
        .or_else(|| tree_and_reporting(job, key))
        .or_else(|| serialized(job, key))
        .unwrap_or_default()
}

/// A key's field of the serialized [`Job`]: a string as written, anything
/// else as JSON.
fn serialized(job: &Job, key: &str) -> Option<String> {
    let value = serde_json::to_value(job).ok()?.get(key)?.clone();
    Some(match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// The roots, the state files and the copy streams' keys.
fn paths_and_streams(job: &Job, key: &str) -> Option<String> {
    Some(match key {
        "source" => job.source.to_string(),
        "destination" => job.destination.to_string(),
        "db" => job.db.to_string(),
        "log" => job.log.to_string(),
        "checksum" => job.checksum.to_string(),
        "block_size" => format!(
            "{} ({} bytes)",
            human_bytes(job.block_size as u64),
            job.block_size
        ),
        "queue_capacity" => format!(
            "{} (FIFO memory up to {})",
            job.queue_capacity,
            human_bytes(job.fifo_bytes())
        ),
        "transfers" => format!(
            "{} (files at once; {} queued blocks each)",
            job.transfers,
            job.lane_capacity()
        ),
        "bwlimit" => match job.shard {
            Some((k, n)) => format!("{} (shard {k} of {n})", bwlimit(&job.bwlimit)),
            None => bwlimit(&job.bwlimit),
        },
        "polite_target" => format!(
            "{} (queuing delay allowed under bwlimit auto)",
            humantime::format_duration(job.polite_target)
        ),
        "shard_bwlimit" => match &job.shard_bwlimit {
            Some(s) => bwlimit(s),
            None => "bwlimit ÷ shards (for `--shard K`)".into(),
        },
        _ => return None,
    })
}

/// `bwlimit`: a rate, a pause, or the week's timetable under the line.
fn bwlimit(limit: &Schedule) -> String {
    match limit {
        Schedule::Fixed(Limit::Rate(b)) => format!("{}/s ({b} bytes/s)", human_bytes(*b)),
        Schedule::Fixed(Limit::Pause) => {
            "pause (no file bytes move; edit and reload to go on)".into()
        }
        Schedule::Fixed(Limit::Auto(_)) => format!(
            "{} (the rate follows the delay the run's own I/O sees)",
            limit
        ),
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
    }
}

/// `on` or `off`, each with what it means.
fn either(on: bool, yes: &str, no: &str) -> String {
    if on { yes } else { no }.to_string()
}

/// The mirror's keys and what created entries get.
fn mirror_and_metadata(job: &Job, key: &str) -> Option<String> {
    Some(match key {
        "delete_extras" => job.delete_extras.to_string(),
        "max_delete" => match job.max_delete {
            decide::MaxDelete::Percent(_) => {
                format!("{} of the destination's entries per run", job.max_delete)
            }
            decide::MaxDelete::Count(_) => format!("{} entries per run", job.max_delete),
            decide::MaxDelete::Off => "off (no cap)".into(),
        },
        "inplace" => job.inplace.to_string(),
        "modify_window" => humantime::format_duration(job.modify_window).to_string(),
        "symlinks" => job.symlinks.to_string(),
        "permissions" => match job.permissions {
            Permissions::Masked => {
                "masked (the source's bits less the umask, given at creation)".into()
            }
            Permissions::Preserve => {
                "preserve (the source's exact bits, set after the write; best-effort)".into()
            }
        },
        "owners" => either(
            job.owners,
            "true (the source's owner and group; best-effort)",
            "false (created entries belong to the user running jobrun)",
        ),
        "xattrs" => either(
            job.xattrs,
            "true (user.* attributes, and trusted.* as root; best-effort)",
            "false (extended attributes are not copied)",
        ),
        "acls" => either(
            job.acls,
            "true (ACLs of the roots' model; best-effort)",
            "false (not copied; group bits no wider than the ACL's owning group)",
        ),
        "require_mounts" => either(
            job.require_mounts,
            "true (a root not on a network filesystem is refused)",
            "false",
        ),
        _ => return None,
    })
}

/// Holes and links, progress and metrics, the filters.
fn tree_and_reporting(job: &Job, key: &str) -> Option<String> {
    Some(match key {
        "sparse" => either(
            job.sparse,
            "true (holes kept; zero blocks written as holes)",
            "false (holes arrive as written zeros)",
        ),
        "hard_links" => either(
            job.hard_links,
            "true (names of one source inode arrive as one inode)",
            "false (every name arrives as a copy of its own)",
        ),
        "progress_interval" => humantime::format_duration(job.progress_interval).to_string(),
        "metrics_file" => job.metrics_file.as_ref().map_or_else(
            || "off".into(),
            |p| format!("{p} (Prometheus textfile, rewritten every second while a run goes)"),
        ),
        "exclude" => Filter::describe(job.filter.exclude()),
        "include" => match job.filter.include() {
            [] => "none".into(),
            _ if job.filter.exclude().is_empty() => format!(
                "{} (no effect: nothing is excluded)",
                Filter::describe(job.filter.include())
            ),
            l => format!("{} (kept although excluded)", Filter::describe(l)),
        },
        _ => return None,
    })
}

/// The run mode (said with its reason) and stage plan the next run would
/// take, from the DB read only; a DB of another job is refused as a run
/// refuses it.
fn plan(job: &Job) -> Result<(String, Vec<&'static str>), Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Overrides;

    fn job(body: &str) -> Job {
        let text = format!("source = \"/a\"\ndestination = \"/b\"\n{body}\n");
        crate::manifest::load_str("/jobs/t.toml".into(), &text, &Overrides::default()).unwrap()
    }

    /// One line per key, named and ordered by the key table, each saying
    /// something, with its default and with the table's example.
    #[test]
    fn every_key_has_its_line_in_the_tables_order() {
        let examples: String = keys::TABLE
            .iter()
            .filter(|k| !matches!(k.name, "source" | "destination"))
            .map(|k| format!("{} = {}\n", k.name, k.example))
            .collect();
        for job in [job(""), job(&examples)] {
            let lines = settings(&job);
            let names: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
            let mut want = vec!["manifest"];
            want.extend(keys::KEYS);
            assert_eq!(names, want);
            for (k, v) in &lines {
                assert!(!v.trim().is_empty(), "`{k}` shows nothing");
            }
        }
    }

    #[test]
    fn a_key_without_a_line_of_its_own_shows_as_the_job_serializes_it() {
        let job = job("");
        assert_eq!(serialized(&job, "transfers").as_deref(), Some("8"));
        assert_eq!(serialized(&job, "source").as_deref(), Some("/a"));
        assert_eq!(serialized(&job, "no_such_key"), None);
    }
}
