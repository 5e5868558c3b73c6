//! Every manifest key, defined once: its name, its type and default as the
//! docs' key table writes them, the one line of help its flag prints, the
//! docs section that explains it, a value the parser accepts, and the flag
//! and `JOBRUN_*` variable that override it.
//!
//! The table feeds the flags' help (`cli::Overrides`), `check`'s lines
//! (their names and order), the unknown-key detection of the environment
//! layer ([`KEYS`]) and the tests that hold the other places to it: the
//! manifest parser (`RawManifest`), the flags (`Cli::command()`), the
//! environment, and the docs' key table (every key with its type and its
//! default, and that default the real one).
//!
//! Adding a key: one row here, its field in `RawManifest`, `Overrides` and
//! `Job`, and its resolution in `resolve`; the tests below name whatever is
//! missing. `check` shows a key it has no line of its own for as the `Job`
//! serializes it.

/// One manifest key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The name written in the manifest; also the field's name in
    /// `RawManifest`, `Overrides` and `Job`.
    pub name: &'static str,
    /// Its type, as the docs' key table writes it.
    pub kind: &'static str,
    /// Its default, as the docs' key table writes it (`required` when it has
    /// none). Written in backticks, it is a spelling the parser reads as the
    /// default itself (a test holds it to that).
    pub default: &'static str,
    /// One line: the help of its flag.
    pub help: &'static str,
    /// The docs section that explains the key: its page, from the
    /// repository's root, and its heading's anchor as GitHub makes it.
    pub anchor: &'static str,
    /// A TOML value the parser accepts, other than the default.
    pub example: &'static str,
    /// The flag that overrides it, without its `--`.
    pub flag: Option<&'static str>,
    /// The environment variable that overrides it.
    pub env: Option<&'static str>,
}

/// [`Key::kind`] of a path: taken as written from the environment,
/// resolved against the manifest's folder or the working directory.
pub const PATH: &str = "path";

/// The docs section that holds the docs' key table (every key with its
/// type, default and meaning).
pub const KEYS_ANCHOR: &str = "docs/manifest.md#manifest-keys";

/// Every key, in the order `check` prints them.
pub const TABLE: &[Key] = &[
    Key {
        name: "source",
        kind: PATH,
        default: "required",
        help: "Source root (a directory)",
        anchor: KEYS_ANCHOR,
        example: "\"/srv/a\"",
        flag: Some("source"),
        env: Some("JOBRUN_SOURCE"),
    },
    Key {
        name: "destination",
        kind: PATH,
        default: "required",
        help: "Destination root",
        anchor: KEYS_ANCHOR,
        example: "\"/srv/b\"",
        flag: Some("destination"),
        env: Some("JOBRUN_DESTINATION"),
    },
    Key {
        name: "db",
        kind: PATH,
        default: "`<manifest stem>.db` beside the manifest",
        help: "State DB path (default: <manifest stem>.db beside the manifest)",
        anchor: "docs/state-db-and-audit-log.md#the-state-db",
        example: "\"/var/tmp/jobrun-keys/t.db\"",
        flag: Some("db"),
        env: Some("JOBRUN_DB"),
    },
    Key {
        name: "log",
        kind: PATH,
        default: "`<manifest stem>.log` beside the manifest",
        help: "Audit log path (default: <manifest stem>.log beside the manifest)",
        anchor: "docs/state-db-and-audit-log.md#the-audit-log",
        example: "\"/var/tmp/jobrun-keys/t.log\"",
        flag: Some("log"),
        env: Some("JOBRUN_LOG"),
    },
    Key {
        name: "checksum",
        kind: "`md5` `sha1` `sha256` `blake2b`",
        default: "`sha256`",
        help: "Hash computed while reading: md5, sha1, sha256, blake2b",
        anchor: "docs/verify-and-hashes.md#verifying-a-migration",
        example: "\"blake2b\"",
        flag: Some("checksum"),
        env: Some("JOBRUN_CHECKSUM"),
    },
    Key {
        name: "block_size",
        kind: "byte size",
        default: "`128KiB`",
        help: "Bytes per queued block (e.g. 5MiB, 1M, 65536)",
        anchor: KEYS_ANCHOR,
        example: "\"1MiB\"",
        flag: Some("block-size"),
        env: Some("JOBRUN_BLOCK_SIZE"),
    },
    Key {
        name: "queue_capacity",
        kind: "integer ≥ 1",
        default: "`160`",
        help: "Blocks the FIFO holds (>= 1)",
        anchor: KEYS_ANCHOR,
        example: "20",
        flag: Some("queue-capacity"),
        env: Some("JOBRUN_QUEUE_CAPACITY"),
    },
    Key {
        name: "transfers",
        kind: "integer 1–64",
        default: "`8`",
        help: "Files streamed at once (1..=64), sharing the limit and the FIFO budget",
        anchor: KEYS_ANCHOR,
        example: "4",
        flag: Some("transfers"),
        env: Some("JOBRUN_TRANSFERS"),
    },
    Key {
        name: "bwlimit",
        kind: "byte rate, `0`/`off` = none, `pause`, `auto` / `\"auto, 60M\"`, or a weekly \
               timetable `\"08:00,auto 19:00,off Sat-00:00,off\"`",
        default: "off",
        help: "Max copy rate per direction (e.g. 20M, 20MB/s, off, pause, auto, \"auto, 60M\"), \
               or a weekly timetable (\"Mon-08:00,10M 19:00,off Sat-00:00,off\")",
        anchor: "docs/bandwidth.md#bandwidth-limit",
        example: "\"20M\"",
        flag: Some("bwlimit"),
        env: Some("JOBRUN_BWLIMIT"),
    },
    Key {
        name: "polite_target",
        kind: "duration 1ms–1s",
        default: "`2ms`",
        help: "Under bwlimit auto: the queuing delay allowed above the link's floor before the \
               rate backs off (e.g. 2ms)",
        anchor: "docs/bandwidth.md#polite-mode-bwlimit--auto",
        example: "\"5ms\"",
        flag: Some("polite-target"),
        env: Some("JOBRUN_POLITE_TARGET"),
    },
    Key {
        name: "shard_bwlimit",
        kind: "as `bwlimit`",
        default: "`<bwlimit>` ÷ shards",
        help: "Each shard's limit (`--shard K`), a rate or a timetable as bwlimit; default: bwlimit \
               divided by the number of shards",
        anchor: "docs/more-than-one-machine.md#a-shard-is-one-run",
        example: "\"5M\"",
        flag: Some("shard-bwlimit"),
        env: Some("JOBRUN_SHARD_BWLIMIT"),
    },
    Key {
        name: "delete_extras",
        kind: "bool",
        default: "`false`",
        help: "Mirror: delete destination entries that have no source",
        anchor: "docs/mirror-and-safety.md#mirror-delete_extras",
        example: "true",
        flag: Some("delete-extras"),
        env: Some("JOBRUN_DELETE_EXTRAS"),
    },
    Key {
        name: "max_delete",
        kind: "count, `N%`, or `off`",
        default: "`10%`",
        help: "Mirror: most entries deleted per run: a count, a percentage of the destination's \
               entries (e.g. 10%), or off",
        anchor: "docs/mirror-and-safety.md#mirror-delete_extras",
        example: "\"5%\"",
        flag: Some("max-delete"),
        env: Some("JOBRUN_MAX_DELETE"),
    },
    Key {
        name: "inplace",
        kind: "bool",
        default: "`false`",
        help: "Write straight to the destination file instead of a temporary sibling",
        anchor: KEYS_ANCHOR,
        example: "true",
        flag: Some("inplace"),
        env: Some("JOBRUN_INPLACE"),
    },
    Key {
        name: "modify_window",
        kind: "duration",
        default: "`0s`",
        help: "Two mtimes this close count as equal for a destination jobrun did not write \
               (e.g. 2s)",
        anchor: KEYS_ANCHOR,
        example: "\"2s\"",
        flag: Some("modify-window"),
        env: Some("JOBRUN_MODIFY_WINDOW"),
    },
    Key {
        name: "symlinks",
        kind: "`copy` `skip`",
        default: "`copy`",
        help: "Source symlinks: copy (as symlinks) or skip",
        anchor: KEYS_ANCHOR,
        example: "\"skip\"",
        flag: Some("symlinks"),
        env: Some("JOBRUN_SYMLINKS"),
    },
    Key {
        name: "permissions",
        kind: "`masked` `preserve`",
        default: "`masked`",
        help: "Permission bits of created entries: masked (the source's less the umask) or \
               preserve (exact)",
        anchor: "docs/tree-fidelity.md#permissions-and-owners",
        example: "\"preserve\"",
        flag: Some("permissions"),
        env: Some("JOBRUN_PERMISSIONS"),
    },
    Key {
        name: "owners",
        kind: "bool",
        default: "`false`",
        help: "Give created entries the source's owner and group (root only; best-effort)",
        anchor: "docs/tree-fidelity.md#permissions-and-owners",
        example: "true",
        flag: Some("owners"),
        env: Some("JOBRUN_OWNERS"),
    },
    Key {
        name: "xattrs",
        kind: "bool",
        default: "`false`",
        help: "Copy user.* (and as root trusted.*) extended attributes with files and folders",
        anchor: "docs/tree-fidelity.md#extended-attributes-and-acls",
        example: "true",
        flag: Some("xattrs"),
        env: Some("JOBRUN_XATTRS"),
    },
    Key {
        name: "acls",
        kind: "bool",
        default: "`false`",
        help: "Copy ACLs (POSIX, NFSv4 or SMB; both roots of the same model)",
        anchor: "docs/tree-fidelity.md#extended-attributes-and-acls",
        example: "true",
        flag: Some("acls"),
        env: Some("JOBRUN_ACLS"),
    },
    Key {
        name: "require_mounts",
        kind: "bool",
        default: "`false`",
        help: "Refuse a root not on a network filesystem (NFS, SMB/CIFS, FUSE), even at the \
               first run",
        anchor: KEYS_ANCHOR,
        example: "true",
        flag: Some("require-mounts"),
        env: Some("JOBRUN_REQUIRE_MOUNTS"),
    },
    Key {
        name: "sparse",
        kind: "bool",
        default: "`true`",
        help: "Keep holes: source holes are neither read nor written, zero blocks are written \
               as holes",
        anchor: "docs/tree-fidelity.md#hard-links-and-holes",
        example: "false",
        flag: Some("sparse"),
        env: Some("JOBRUN_SPARSE"),
    },
    Key {
        name: "hard_links",
        kind: "bool",
        default: "`true`",
        help: "Keep hard links: names of one source inode arrive as one inode",
        anchor: "docs/tree-fidelity.md#hard-links-and-holes",
        example: "false",
        flag: Some("hard-links"),
        env: Some("JOBRUN_HARD_LINKS"),
    },
    Key {
        name: "progress_interval",
        kind: "duration",
        default: "`1m`",
        help: "How often a plain progress line is printed when stderr is not a terminal \
               (e.g. 1m)",
        anchor: "docs/running.md#what-you-see-while-it-runs",
        example: "\"30s\"",
        flag: Some("progress-interval"),
        env: Some("JOBRUN_PROGRESS_INTERVAL"),
    },
    Key {
        name: "metrics_file",
        kind: PATH,
        default: "off",
        help: "Prometheus textfile written while a run goes and at its end (default: none)",
        anchor: "docs/metrics.md#metrics",
        example: "\"/var/tmp/jobrun-keys/t.prom\"",
        flag: Some("metrics-file"),
        env: Some("JOBRUN_METRICS_FILE"),
    },
    Key {
        name: "exclude",
        kind: "list of patterns",
        default: "none",
        help: "Leave out entries matching this gitignore-style pattern, e.g. '.snapshot/', \
               '*.tmp' (repeatable; adds to the manifest's list)",
        anchor: "docs/manifest.md#filters",
        example: "[\"*.tmp\", \".snapshot/\"]",
        flag: Some("exclude"),
        env: Some("JOBRUN_EXCLUDE"),
    },
    Key {
        name: "include",
        kind: "list of patterns",
        default: "none",
        help: "Keep entries matching this pattern although an exclude matches them \
               (repeatable; adds to the manifest's list)",
        anchor: "docs/manifest.md#filters",
        example: "[\"keep.tmp\"]",
        flag: Some("include"),
        env: Some("JOBRUN_INCLUDE"),
    },
];

/// Every key's name, in [`TABLE`]'s order.
pub const KEYS: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].name;
        i += 1;
    }
    names
};

/// The key called `name`.
pub fn get(name: &str) -> Option<&'static Key> {
    TABLE.iter().find(|k| k.name == name)
}

/// The key the environment variable `var` sets (the name after `JOBRUN_`
/// in any case: `JOBRUN_BwLimit` sets `bwlimit`).
pub fn by_env(var: &str) -> Option<&'static Key> {
    let tail = var.strip_prefix("JOBRUN_")?;
    TABLE.iter().find(|k| {
        k.env
            .and_then(|e| e.strip_prefix("JOBRUN_"))
            .is_some_and(|e| e.eq_ignore_ascii_case(tail))
    })
}

/// The help line of `name`'s flag (empty for no key: a test holds every
/// flag to the table).
pub fn help(name: &str) -> &'static str {
    get(name).map_or("", |k| k.help)
}

/// `--flag` that sets `key` (its conventional spelling for no key).
pub fn flag_name(key: &str) -> String {
    match get(key).and_then(|k| k.flag) {
        Some(f) => format!("--{f}"),
        None => format!("--{}", key.replace('_', "-")),
    }
}

/// The `JOBRUN_*` variable that sets `key` (its conventional spelling for
/// no key).
pub fn env_name(key: &str) -> String {
    match get(key).and_then(|k| k.env) {
        Some(e) => e.to_string(),
        None => format!("JOBRUN_{}", key.to_ascii_uppercase()),
    }
}

#[cfg(test)]
mod tests;
