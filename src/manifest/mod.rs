//! Job manifest (SPEC §2): TOML file → `JOBRUN_*` environment → flags,
//! layered with figment into one [`RawManifest`], then resolved into a
//! [`Job`] that every stage may trust. Nothing here creates anything on disk.
//!
//! The file is first parsed on its own with `toml`, because only `toml`
//! reports the line of a bad key or value; figment then layers the
//! environment and the flags on top (it names the key and the source, but
//! has no line numbers to give).

use std::path::{Path, PathBuf};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod fuzz;
pub mod keys;
mod layers;
mod resolve;
mod values;

pub use keys::KEYS;
use keys::env_name;
pub use values::{
    BlockSize, Bwlimit, Dur, Interval, MaxDel, Patterns, PoliteTarget, QueueCapacity,
    SymlinkPolicy, Transfers, parse_duration,
};

use crate::checksum::HashAlgo;
use crate::cli::Overrides;
use crate::decide::MaxDelete;
use crate::filter::Filter;
use crate::modes::Permissions;
use crate::throttle::Schedule;

/// Default `block_size`: 128 KiB, not the seed's 5 MiB. Whole 5 MiB blocks
/// reach the writer in lumps that it writes at link rate, saturating the
/// outbound direction in bursts; the reads' requests and TCP ACKs then wait
/// behind them and the two directions take turns (netlab, one 384 MiB file
/// over sshfs: 5 MiB blocks 1.38× the time of `cp -a`, 512 KiB 1.17×,
/// 128 KiB 1.0×; benches/README.md "Performance").
pub const DEFAULT_BLOCK_SIZE: u64 = 128 << 10;
/// Default `queue_capacity`: 160 blocks, the same 20 MiB FIFO budget as the
/// seed's 20 blocks of 1 MiB would be, and 40 blocks per lane at 4 lanes.
pub const DEFAULT_QUEUE_CAPACITY: u64 = 160;
/// Default `transfers`: file streams at once. Chosen from the netlab curve
/// (benches/README.md "Performance"): on small files 8 lanes beat 4 in each of three
/// sessions (0.80/0.97/0.87 × rclone's time against 0.91/1.02/0.98), and
/// cost nothing on big ones (`mixed`: 0.92 × `cp -a` against 0.95).
pub const DEFAULT_TRANSFERS: u64 = 8;
/// Largest accepted `transfers`.
pub const MAX_TRANSFERS: u64 = 64;
/// Largest accepted `block_size`; the FIFO holds `queue_capacity` of them in RAM.
pub const MAX_BLOCK_SIZE: u64 = 1 << 30;
/// Default `progress_interval` for plain (non-terminal) progress lines.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest accepted `progress_interval`.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest accepted `progress_interval`: a day (a cron mail a day still
/// gets its line; centuries once panicked the progress thread).
pub const MAX_PROGRESS_INTERVAL: Duration = Duration::from_secs(86_400);
/// Longest accepted `modify_window`: 2 hours, room for FAT's 2 s and a
/// one-hour daylight-saving shift; a window of months once kept changed
/// files from ever being copied again.
pub const MAX_MODIFY_WINDOW: Duration = Duration::from_secs(7_200);
/// Shortest accepted `polite_target`: below it a call's own jitter is a queue.
pub const MIN_POLITE_TARGET: Duration = Duration::from_millis(1);
/// Longest accepted `polite_target`: a second of queue is no politeness.
pub const MAX_POLITE_TARGET: Duration = Duration::from_secs(1);

/// Errors of manifest loading; every one maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Syntax {
        path: Utf8PathBuf,
        line: usize,
        key: Option<String>,
        message: String,
    },
    #[error("`{key}` from {origin}: {message}")]
    Override {
        key: String,
        origin: String,
        message: String,
    },
    #[error("{path}: missing required key `{key}` (set it in the manifest, with {flag} or {env})", flag = keys::flag_name(key), env = env_name(key))]
    Missing {
        path: Utf8PathBuf,
        key: &'static str,
    },
    #[error("{path}{}: `{key}`: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: Utf8PathBuf,
        line: Option<usize>,
        key: &'static str,
        reason: String,
    },
}

/// The manifest as written (and as overridden): shapes and units checked,
/// nothing resolved. Values are validated while deserializing so that `toml`
/// can point at the offending line.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub source: Option<String>,
    pub destination: Option<String>,
    pub db: Option<String>,
    pub log: Option<String>,
    pub checksum: Option<HashAlgo>,
    pub block_size: Option<BlockSize>,
    pub queue_capacity: Option<QueueCapacity>,
    pub transfers: Option<Transfers>,
    pub bwlimit: Option<Bwlimit>,
    pub polite_target: Option<PoliteTarget>,
    pub shard_bwlimit: Option<Bwlimit>,
    pub delete_extras: Option<bool>,
    pub max_delete: Option<MaxDel>,
    pub inplace: Option<bool>,
    pub modify_window: Option<Dur>,
    pub symlinks: Option<SymlinkPolicy>,
    pub permissions: Option<Permissions>,
    pub owners: Option<bool>,
    pub xattrs: Option<bool>,
    pub acls: Option<bool>,
    pub require_mounts: Option<bool>,
    pub sparse: Option<bool>,
    pub hard_links: Option<bool>,
    pub progress_interval: Option<Interval>,
    pub metrics_file: Option<String>,
    pub exclude: Option<Patterns>,
    pub include: Option<Patterns>,
}

/// A job ready to run: absolute paths, sizes in bytes, defaults filled in
/// (each key's default: [`keys::TABLE`]).
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Absolute path of the manifest this job came from.
    pub manifest: Utf8PathBuf,
    /// Source root (absolute). Must be a directory when a run starts.
    pub source: Utf8PathBuf,
    /// Destination root (absolute). Created by a run if missing (its parent must exist).
    pub destination: Utf8PathBuf,
    /// State DB (SQLite). Default `<manifest stem>.db` beside the manifest.
    pub db: Utf8PathBuf,
    /// Audit log (JSON Lines, appended). Default `<manifest stem>.log` beside the manifest.
    pub log: Utf8PathBuf,
    /// Hash computed while reading.
    pub checksum: HashAlgo,
    /// Bytes per queued block (1 ..= 1 GiB).
    pub block_size: usize,
    /// Blocks the FIFO holds (>= 1). Peak FIFO memory is
    /// `block_size × (queue_capacity + 2)`, shared by all `transfers` lanes
    /// (see [`Job::lane_capacity`]).
    pub queue_capacity: usize,
    /// Files streamed at once (1 ..= 64). Each lane is one reader
    /// and one writer thread; they share the bandwidth limit, the FIFO
    /// memory budget and the one DB writer.
    pub transfers: usize,
    /// Copy rate cap in bytes/s for reads and for writes, each: one limit
    /// (`Fixed(Limit::Off)` = unlimited, the default; `Limit::Pause`) or a
    /// weekly timetable in local time whose limit in force changes while a
    /// run goes (and which a reload may replace, see `retune`).
    pub bwlimit: Schedule,
    /// Under `bwlimit = "auto"`: the queuing delay allowed above the
    /// floor the run's own I/O measures before the rate backs off
    /// (`polite`). Default [`crate::polite::DEFAULT_TARGET`].
    pub polite_target: Duration,
    /// Each shard's own limit (`jobrun --shard K`); `None`: the job's
    /// `bwlimit` divided by the number of shards (see [`crate::shard`]).
    pub shard_bwlimit: Option<Schedule>,
    /// Mirror stage on: delete destination entries without a source.
    pub delete_extras: bool,
    /// Most destination entries the mirror stage may delete in one run
    /// (directories count): a count, a percentage of the destination's
    /// entries, or off. Over it, nothing is deleted. Default 10%
    /// ([`crate::decide::DEFAULT_MAX_DELETE`]).
    pub max_delete: MaxDelete,
    /// Write straight to the destination file (no temporary sibling).
    pub inplace: bool,
    /// mtimes this close count as equal when comparing with a destination
    /// file jobrun did not write itself (FAT keeps 2 s). Default 0.
    pub modify_window: Duration,
    /// What to do with source symlinks: copy them as symlinks (default, as
    /// `rsync -a`) or skip them (never recorded, never created).
    pub symlinks: SymlinkPolicy,
    /// Permission bits of created files and folders: the source's less the
    /// umask, at creation (default), or the source's exact bits, set
    /// best-effort after the write. Never wider than the source (see
    /// [`crate::modes`]).
    pub permissions: Permissions,
    /// Give created entries the source's uid and gid (best-effort chown).
    /// Root only: refused at load for any other user.
    pub owners: bool,
    /// Copy `user.*` (and as root `trusted.*`) extended attributes with
    /// files and folders (see [`crate::xattrs`]).
    pub xattrs: bool,
    /// Copy ACLs (POSIX, NFSv4 or SMB: the two roots' model must match).
    pub acls: bool,
    /// Refuse a root that is not on a network filesystem (NFS, SMB/CIFS,
    /// FUSE), even at the job's first run: a share not mounted yet is then
    /// never taken for the local folder under its mount point. Default off.
    pub require_mounts: bool,
    /// Holes stay holes: those the source reports are neither read nor
    /// written, and runs of zeros of a whole 4 KiB block are written as
    /// holes (see `transfer::holes`).
    pub sparse: bool,
    /// Names of one source inode arrive as one inode (see `transfer::links`).
    pub hard_links: bool,
    /// Interval of plain progress lines when stderr is not a terminal.
    pub progress_interval: Duration,
    /// Prometheus textfile (node exporter's textfile collector) rewritten
    /// atomically while a run goes and at its end; `None` = off (default).
    pub metrics_file: Option<Utf8PathBuf>,
    /// `exclude` and `include` patterns, compiled: entries left out of the
    /// scan, the copy and the mirror, on both sides (see [`crate::filter`]).
    /// Default: none.
    #[serde(skip)]
    pub filter: Filter,
    /// `Some((k, n))`: this is shard `k` of `n` (`--shard`, see
    /// [`crate::shard::shard_job`]); `None` when loaded from the manifest.
    #[serde(skip)]
    pub shard: Option<(usize, usize)>,
    /// Warnings of loading (a `JOBRUN_*` variable that is no key), one
    /// line each, for the command to print.
    #[serde(skip)]
    pub notices: Vec<String>,
}

/// Loads, layers and validates a manifest. `cwd` resolves relative paths
/// given by flags or environment; manifest paths resolve against the
/// manifest's own folder.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Job, ManifestError> {
    let abs = std::path::absolute(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = std::fs::read_to_string(&abs).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let manifest = Utf8PathBuf::from_path_buf(abs).map_err(|p| ManifestError::Read {
        path: p,
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
    })?;
    load_str(&manifest, &text, overrides)
}

/// [`load`] for a manifest already read (tests, and `check` of examples).
pub fn load_str(
    manifest: &Utf8Path,
    text: &str,
    overrides: &Overrides,
) -> Result<Job, ManifestError> {
    // Pass 1: the file alone, for errors with a line number; its floats
    // judged by their text (serde sees only the f64).
    layers::check_floats(manifest, text)?;
    toml::from_str::<RawManifest>(text).map_err(|e| syntax_error(manifest, text, &e))?;
    // Pass 2: file < environment < flags. A list (`exclude`, `include`)
    // from the environment or the flags adds to the manifest's (`admerge`),
    // so a one-off `--exclude` cannot drop the manifest's snapshot rules.
    let env = layers::env_layer(std::env::vars_os())?;
    let raw: RawManifest = Figment::new()
        .merge(Toml::string(text))
        .admerge(Serialized::defaults(&env.table))
        .admerge(Serialized::defaults(overrides))
        .extract()
        .map_err(|e| override_error(&e, overrides))?;
    let origins = resolve::Origins {
        manifest,
        text,
        overrides,
        env: &env.table,
    };
    let mut job = resolve::resolve(&origins, raw)?;
    job.notices = env
        .unknown
        .iter()
        .map(|n| layers::unknown_note(n))
        .collect();
    Ok(job)
}

/// A file in the manifest's syntax that jobrun writes and reads back
/// (`jobrun plan`'s `<stem>.plan.toml`): `toml` stays this module's crate.
pub fn to_toml<T: Serialize>(value: &T) -> Result<String, String> {
    toml::to_string(value).map_err(|e| e.to_string())
}

/// Reads back what [`to_toml`] wrote; the error is `toml`'s message.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| e.message().to_string())
}

fn syntax_error(path: &Utf8Path, text: &str, e: &toml::de::Error) -> ManifestError {
    let start = e.span().map_or(0, |s| s.start);
    let line = line_at(text, start);
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    // The key whose value holds the error (an element of a multi-line
    // array), else the key written on the error's line.
    let key = e
        .span()
        .and_then(|s| layers::key_at(text, s.start))
        .or_else(|| {
            line_text
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['))
        });
    ManifestError::Syntax {
        path: path.to_owned(),
        line,
        key,
        message: one_line(e.message()),
    }
}

fn override_error(e: &figment::Error, overrides: &Overrides) -> ManifestError {
    let key = e.path.first().cloned().unwrap_or_default();
    let origin = if overrides.given(&key) {
        format!("flag `{}`", keys::flag_name(&key))
    } else {
        format!("environment variable `{}`", env_name(&key))
    };
    ManifestError::Override {
        key,
        origin,
        message: one_line(&e.kind.to_string()),
    }
}

/// The 1-based line of byte `at` of `text`.
fn line_at(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text[..at].matches('\n').count() + 1
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

/// The 1-based line where `key` is set in the manifest, if it is.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Lexical normalisation (`a/./b/../c` → `a/c`) so that nesting checks and
/// the DB's remembered roots compare equal however the path was written.
/// Symlinks are not resolved: the roots may not exist yet.
fn normalize(p: &Utf8Path) -> Utf8PathBuf {
    let mut out = Utf8PathBuf::new();
    for c in p.components() {
        match c {
            camino::Utf8Component::CurDir => {}
            camino::Utf8Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_str()),
        }
    }
    out
}

impl Job {
    /// Refuses a job this user cannot run as asked, for `run` and `check`
    /// (`status` only reads the DB): `owners = true` needs root. Refused
    /// rather than warned about: a cron job asked for owners would otherwise
    /// give every file to its own user, run after run.
    pub fn check_privileges(&self, euid: u32) -> Result<(), ManifestError> {
        if self.owners && euid != 0 {
            return Err(ManifestError::Invalid {
                path: self.manifest.clone(),
                line: None,
                key: "owners",
                reason: format!(
                    "only root can give files the source's owners (running as uid {euid}); \
                     run as root or remove `owners`"
                ),
            });
        }
        Ok(())
    }

    /// `acls = true` between roots of different ACL models (POSIX, NFSv4,
    /// SMB) is refused, for `run` and `check`: no translation.
    pub fn check_acl_models(&self) -> Result<(), ManifestError> {
        let differ = || {
            crate::xattrs::models_differ(self.source.as_std_path(), self.destination.as_std_path())
        };
        match self.acls.then(differ).flatten() {
            Some(reason) => Err(ManifestError::Invalid {
                path: self.manifest.clone(),
                line: None,
                key: "acls",
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Blocks each transfer lane's FIFO holds: the one budget of
    /// `queue_capacity + 2` blocks (queued, plus one being read and one being
    /// written) split over the lanes, each lane holding at least 1 queued
    /// block (so at least 3 in all).
    pub fn lane_capacity(&self) -> usize {
        ((self.queue_capacity + 2) / self.transfers.max(1))
            .saturating_sub(2)
            .max(1)
    }

    /// Peak memory of the block FIFOs of all lanes, for `check` and the start line.
    pub fn fifo_bytes(&self) -> u64 {
        let lanes = self.transfers.max(1) as u64;
        self.block_size as u64 * lanes * (self.lane_capacity() as u64 + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throttle::Limit;

    fn load_text(text: &str) -> Result<Job, ManifestError> {
        load_str(Utf8Path::new("/jobs/t.toml"), text, &Overrides::default())
    }

    #[test]
    fn defaults_and_relative_paths() {
        let job = load_text("source = \"src\"\ndestination = \"/mnt/dst\"\n").unwrap();
        assert_eq!(job.source, "/jobs/src");
        assert_eq!(job.destination, "/mnt/dst");
        assert_eq!(job.db, "/jobs/t.db");
        assert_eq!(job.log, "/jobs/t.log");
        assert_eq!(job.block_size, 128 << 10);
        assert_eq!(job.queue_capacity, 160);
        assert_eq!(job.bwlimit, Schedule::Fixed(Limit::Off));
        assert_eq!(job.checksum, HashAlgo::Sha256);
        assert!(!job.delete_extras && !job.inplace);
    }

    #[test]
    fn flags_beat_manifest() {
        let o = Overrides {
            bwlimit: Some("1M".into()),
            block_size: Some("64K".into()),
            ..Default::default()
        };
        let job = load_str(
            Utf8Path::new("/jobs/t.toml"),
            "source = \"/a\"\ndestination = \"/b\"\nbwlimit = \"20M\"\nblock_size = 1024\n",
            &o,
        )
        .unwrap();
        assert_eq!(job.bwlimit, Schedule::Fixed(Limit::Rate(1 << 20)));
        assert_eq!(job.block_size, 64 << 10);
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = load_text("source = \"/a\"\ndestination = \"/b\"\nblock_size = \"4 foo\"\n")
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/jobs/t.toml:3: `block_size`: invalid size `4 foo`"),
            "{msg}"
        );
        let e = load_text("source = \"/a\"\ndestination = \"/b\"\n\nbandwith = 3\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/jobs/t.toml:4: `bandwith`: unknown field"),
            "{e}"
        );
        let e = load_text("destination = \"/b\"\n").unwrap_err();
        assert!(
            e.to_string().contains("missing required key `source`"),
            "{e}"
        );
    }

    #[test]
    fn nested_roots_are_refused() {
        let e = load_text("source = \"/a\"\ndestination = \"/a/b\"\n").unwrap_err();
        assert!(e.to_string().contains("`destination`"), "{e}");
        let e = load_text("source = \"/a/b/..\"\ndestination = \"/a\"\n").unwrap_err();
        assert!(e.to_string().contains("inside"), "{e}");
        let e =
            load_text("source = \"/a\"\ndestination = \"/b\"\ndb = \"/b/state.db\"\n").unwrap_err();
        assert!(e.to_string().starts_with("/jobs/t.toml:3: `db`"), "{e}");
    }

    #[test]
    fn symlink_policy() {
        let base = "source = \"/a\"\ndestination = \"/b\"\n";
        assert_eq!(load_text(base).unwrap().symlinks, SymlinkPolicy::Copy);
        let job = load_text(&format!("{base}symlinks = \"skip\"\n")).unwrap();
        assert_eq!(job.symlinks, SymlinkPolicy::Skip);
        let o = Overrides {
            symlinks: Some("copy".into()),
            ..Default::default()
        };
        let job = load_str(
            Utf8Path::new("/jobs/t.toml"),
            &format!("{base}symlinks = \"skip\"\n"),
            &o,
        )
        .unwrap();
        assert_eq!(job.symlinks, SymlinkPolicy::Copy);
        let e = load_text(&format!("{base}symlinks = \"follow\"\n")).unwrap_err();
        assert!(
            e.to_string().starts_with("/jobs/t.toml:3: `symlinks`"),
            "{e}"
        );
    }

    #[test]
    fn max_delete_values() {
        let md = |v: &str| {
            load_text(&format!(
                "source = \"/a\"\ndestination = \"/b\"\nmax_delete = {v}\n"
            ))
            .map(|j| j.max_delete)
        };
        assert_eq!(
            load_text("source = \"/a\"\ndestination = \"/b\"\n")
                .unwrap()
                .max_delete,
            MaxDelete::Percent(1000)
        );
        assert_eq!(md("250").unwrap(), MaxDelete::Count(250));
        assert_eq!(md("\"250\"").unwrap(), MaxDelete::Count(250));
        assert_eq!(md("0").unwrap(), MaxDelete::Count(0));
        assert_eq!(md("\"10%\"").unwrap(), MaxDelete::Percent(1000));
        assert_eq!(md("\" 2.5 %\"").unwrap(), MaxDelete::Percent(250));
        assert_eq!(md("\".05%\"").unwrap(), MaxDelete::Percent(5));
        assert_eq!(md("\"100%\"").unwrap(), MaxDelete::Percent(10_000));
        assert_eq!(md("\"OFF\"").unwrap(), MaxDelete::Off);
        for bad in [
            "-1",
            "\"101%\"",
            "\"1.234%\"",
            "\"%\"",
            "\"ten\"",
            "\"1e3%\"",
            "true",
        ] {
            let e = md(bad).unwrap_err().to_string();
            assert!(e.starts_with("/jobs/t.toml:3: `max_delete`"), "{bad}: {e}");
        }
    }

    /// Integers, sizes, rates and durations: a TOML number and the same
    /// digits in a string mean the same thing, and both are refused alike.
    #[test]
    fn numbers_and_strings_are_one_spelling() {
        let base = "source = \"/a\"\ndestination = \"/b\"\n";
        let job = |kv: &str| load_text(&format!("{base}{kv}\n"));
        let same = |key: &str, v: &str| {
            let (a, b) = (
                job(&format!("{key} = {v}")),
                job(&format!("{key} = \"{v}\"")),
            );
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{key} = {v}"),
                (Err(a), Err(b)) => assert_eq!(
                    a.to_string().split_once(": `").map(|x| x.1.to_string()),
                    b.to_string().split_once(": `").map(|x| x.1.to_string()),
                    "{key} = {v}"
                ),
                (a, b) => panic!(
                    "{key} = {v}: number {:?}, string {:?}",
                    a.is_ok(),
                    b.is_ok()
                ),
            }
        };
        for (key, v) in [
            ("transfers", "8"),
            ("transfers", "8.0"),
            ("transfers", "0"),
            ("queue_capacity", "20"),
            ("block_size", "65536"),
            ("block_size", "1.5"),
            ("block_size", "0"),
            ("bwlimit", "1000"),
            ("bwlimit", "0"),
            ("bwlimit", "0.4"),
            ("max_delete", "250"),
            ("max_delete", "2.5"),
            ("modify_window", "2"),
            ("modify_window", "1.5"),
            ("progress_interval", "30"),
            ("progress_interval", "0"),
        ] {
            same(key, v);
        }
        assert_eq!(
            job("modify_window = \"2\"").unwrap().modify_window,
            Duration::from_secs(2)
        );
        assert_eq!(
            job("modify_window = 2").unwrap().modify_window,
            Duration::from_secs(2)
        );
        assert_eq!(job("transfers = \"8\"").unwrap().transfers, 8);
        assert!(job("transfers = 8.0").is_err());
        assert!(job("modify_window = 1.5").is_err());
    }

    #[test]
    fn progress_interval_under_a_second_is_refused() {
        let base = "source = \"/a\"\ndestination = \"/b\"\n";
        for v in ["\"0s\"", "0", "\"999ms\""] {
            let e = load_text(&format!("{base}progress_interval = {v}\n")).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("/jobs/t.toml:3: `progress_interval`: must be at least 1s"),
                "{v}: {e}"
            );
        }
        let job = load_text(&format!("{base}progress_interval = \"1s\"\n")).unwrap();
        assert_eq!(job.progress_interval, Duration::from_secs(1));
    }

    #[test]
    fn polite_target_and_bwlimit_auto() {
        let base = "source = \"/a\"\ndestination = \"/b\"\n";
        let job = load_text(&format!("{base}bwlimit = \"auto, 60M\"\n")).unwrap();
        assert_eq!(
            job.bwlimit,
            Schedule::Fixed(crate::throttle::Limit::Auto(Some(60 << 20)))
        );
        assert_eq!(job.polite_target, crate::polite::DEFAULT_TARGET);
        let job = load_text(&format!(
            "{base}bwlimit = \"auto\"\npolite_target = \"5ms\"\n"
        ))
        .unwrap();
        assert_eq!(job.polite_target, Duration::from_millis(5));
        for (v, why) in [
            ("\"0s\"", "must be at least 1ms"),
            ("\"500us\"", "must be at least 1ms"),
            ("\"2s\"", "must be at most 1s"),
            ("\"fast\"", ""),
        ] {
            let e = load_text(&format!("{base}polite_target = {v}\n")).unwrap_err();
            let e = e.to_string();
            assert!(
                e.starts_with("/jobs/t.toml:3: `polite_target`: "),
                "{v}: {e}"
            );
            assert!(e.contains(why), "{v}: {e}");
        }
        let e = load_text(&format!("{base}bwlimit = \"auto 60M\"\n")).unwrap_err();
        assert!(e.to_string().contains("`auto, CEILING`"), "{e}");
    }

    #[test]
    fn a_rate_that_rounds_to_zero_is_not_unlimited() {
        let o = Overrides {
            bwlimit: Some("0.4B".into()),
            ..Default::default()
        };
        let e = load_str(
            Utf8Path::new("/jobs/t.toml"),
            "source = \"/a\"\ndestination = \"/b\"\n",
            &o,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("`bwlimit` from flag `--bwlimit`: rate `0.4B` rounds to 0"),
            "{e}"
        );
        let e = load_text(
            "source = \"/a\"\ndestination = \"/b\"\nbwlimit = \"08:00,0.4B 19:00,off\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rounds to 0"), "{e}");
    }

    #[test]
    fn owners_need_root() {
        let job = load_text("source = \"/a\"\ndestination = \"/b\"\nowners = true\n").unwrap();
        assert!(job.owners);
        assert!(job.check_privileges(0).is_ok());
        let e = job.check_privileges(1000).unwrap_err().to_string();
        assert!(
            e.starts_with("/jobs/t.toml: `owners`: only root can give files the source's owners (running as uid 1000)"),
            "{e}"
        );
        let job = load_text("source = \"/a\"\ndestination = \"/b\"\n").unwrap();
        assert!(job.check_privileges(1000).is_ok());
        assert_eq!(job.permissions, Permissions::Masked);
    }

    #[test]
    fn line_lookup() {
        assert_eq!(line_of_key("a = 1\n  bwlimit= 3\n", "bwlimit"), Some(2));
        assert_eq!(line_of_key("bwlimit_x = 1\n", "bwlimit"), None);
    }
}
