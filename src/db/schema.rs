//! The schema: its migrations (rusqlite_migration) and the version a DB is at.

use std::sync::LazyLock;

use rusqlite_migration::{M, Migrations};

use super::{Result, StateDb};

/// The version the last migration brings a DB to.
pub(super) const LATEST: i64 = 13;

pub(super) static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(
            r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
-- One row per source entry. source_path/dest_path: TEXT, or BLOB for non-UTF-8 names.
CREATE TABLE files (
    source_path            PRIMARY KEY NOT NULL,
    dest_path              NOT NULL,
    kind                   TEXT NOT NULL CHECK (kind IN ('file', 'dir', 'symlink')),
    size                   INTEGER NOT NULL,
    modified_ns            INTEGER NOT NULL,
    accessed_ns            INTEGER NOT NULL,
    changed_ns             INTEGER NOT NULL,
    created_ns             INTEGER,
    mode                   INTEGER NOT NULL,
    uid                    INTEGER NOT NULL,
    gid                    INTEGER NOT NULL,
    hash                   TEXT,
    hash_algorithm         TEXT,
    status                 TEXT NOT NULL CHECK (status IN ('pending', 'synced', 'failed')),
    error                  TEXT,
    -- size and mtime the destination showed right after jobrun wrote it
    -- (coarse-timestamp skip rule); NULL once the source changes.
    after_copy_size        INTEGER,
    after_copy_modified_ns INTEGER,
    scan_id                INTEGER NOT NULL
);
CREATE INDEX files_status ON files (status);
-- The destination listing of the last scan (skip rule, mirror).
CREATE TABLE dest_entries (
    path        PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    modified_ns INTEGER NOT NULL
);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    mode        TEXT NOT NULL,
    files_done  INTEGER NOT NULL DEFAULT 0,
    bytes_done  INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER
);
"#,
        ),
        // No v2 on purpose: a partial covering index for the startup backlog
        // total (`(kind, size) WHERE status = 'pending'`) halved that query
        // at 1M pending rows (0.45 → 0.23 s), but its random-order inserts
        // made the first scan of 1M files slower (47 → 66 s, one run each on
        // a loaded machine) and slowed the committer (peak RSS 13 → 90 MB
        // while outcomes queued up).
        // v2: what a run was and why it ended: `dry_run` (1 for
        // `--dry-run`) and `error`, the fatal condition that ended it (NULL
        // when none). Rows of older runs get 0 and NULL.
        M::up(
            "ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE runs ADD COLUMN error TEXT;",
        ),
        // v3: `jobrun verify`. Per file row: when its destination
        // was last verified (ns since the epoch), the result (`ok`,
        // `mismatch`, `missing`, `failed`) and the recorded hash it was
        // compared with, so a row recopied since (new hash) counts as not
        // verified without the copy path knowing about verify. `verifies`
        // has one row per verify, as `runs` has per run. Columns added with
        // NULL defaults: no existing row is rewritten.
        M::up(
            "ALTER TABLE files ADD COLUMN verified_at INTEGER;
             ALTER TABLE files ADD COLUMN verify_result TEXT;
             ALTER TABLE files ADD COLUMN verified_hash TEXT;
             CREATE TABLE verifies (
                 id          INTEGER PRIMARY KEY,
                 started_at  TEXT NOT NULL,
                 started_ns  INTEGER NOT NULL,
                 ended_at    TEXT,
                 since_ns    INTEGER,
                 sample      REAL,
                 seed        INTEGER,
                 repair      INTEGER NOT NULL DEFAULT 0,
                 files       INTEGER NOT NULL DEFAULT 0,
                 bytes       INTEGER NOT NULL DEFAULT 0,
                 ok          INTEGER NOT NULL DEFAULT 0,
                 mismatched  INTEGER NOT NULL DEFAULT 0,
                 missing     INTEGER NOT NULL DEFAULT 0,
                 failed      INTEGER NOT NULL DEFAULT 0,
                 skipped     INTEGER NOT NULL DEFAULT 0,
                 no_hash     INTEGER NOT NULL DEFAULT 0,
                 exit_code   INTEGER,
                 error       TEXT
             );",
        ),
        // v4: the files the running run's lanes are copying, rewritten at
        // each of its commits (see `in_flight.rs`) so that `status` can show
        // them without writing. path: TEXT, or BLOB for non-UTF-8.
        M::up(
            "CREATE TABLE in_flight (
                 lane   INTEGER PRIMARY KEY,
                 run_id INTEGER NOT NULL,
                 path   NOT NULL,
                 size   INTEGER NOT NULL,
                 done   INTEGER NOT NULL
             );",
        ),
        // v5: adopted files in `jobrun verify` (files a scan found in place
        // and took as synced without reading, which a verify compares with
        // their source): how many a verify compared, and how many of those
        // differed. Older rows get 0.
        M::up(
            "ALTER TABLE verifies ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE verifies ADD COLUMN adopted_mismatched INTEGER NOT NULL DEFAULT 0;",
        ),
        // v6: the source's mount points below its root, as the last scan
        // found them (`mounts.rs`): a folder on another device than its
        // parent. path: relative to the source root, TEXT, or BLOB for
        // non-UTF-8; entries: it held any; gone: recorded as a mount point
        // and found not one (or empty) by the last scan.
        M::up(
            "CREATE TABLE mount_points (
                 path    PRIMARY KEY NOT NULL,
                 entries INTEGER NOT NULL,
                 gone    INTEGER NOT NULL DEFAULT 0
             );",
        ),
        // v7: the type changes the last scan found (see `changes.rs`): a
        // source entry whose destination counterpart is a folder where the
        // source has none, or a non-folder where the source has a folder.
        // The destination entry's stamp as the scan saw it, so that only
        // that very entry is ever replaced. Paths: TEXT, or BLOB for non-UTF-8.
        M::up(
            "CREATE TABLE type_changes (
                 source_path      PRIMARY KEY NOT NULL,
                 dest_path        NOT NULL,
                 dest_kind        TEXT NOT NULL,
                 dest_size        INTEGER NOT NULL,
                 dest_modified_ns INTEGER NOT NULL
             );",
        ),
        // v8: per row, the runs in a row it failed (`status` names the files
        // that keep failing, e.g. a log written all the time); 0 once synced.
        M::up("ALTER TABLE files ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;"),
        // v9: hard links (`hard_links`): a source file with a link count
        // above 1 records its (device, inode), NULL otherwise; the rows of
        // one inode are one group, linked at the destination to the one
        // copied first (see `transfer::links`).
        M::up(
            "ALTER TABLE files ADD COLUMN link_dev INTEGER;
             ALTER TABLE files ADD COLUMN link_ino INTEGER;
             CREATE INDEX files_link ON files (link_ino, link_dev) WHERE link_ino IS NOT NULL;",
        ),
        // v10: running totals (see `totals.rs`): entries, bytes and hashed
        // entries per (status, kind), kept by triggers in the transaction
        // of every write to `files`, so that the startup backlog, `status`
        // and `status --json` read nine rows instead of every row (50M rows
        // took minutes). Filled from the rows in place.
        M::up(super::totals::V10),
        // v11: the limit a run follows (`bwlimit` as `run_end` writes it:
        // `2097152 B/s`, `off`, `pause`, `auto`, `auto, 9751756 B/s` for
        // the rate `auto` holds), brought up to date with each commit and
        // at the end, so `status` shows the rate in force. NULL: older runs.
        M::up("ALTER TABLE runs ADD COLUMN bwlimit TEXT;"),
        // v12: the rows stored compactly in `entries` (paths below their
        // roots, hashes as bytes, codes for kinds and statuses; see
        // `compact.rs`), rewritten row by row with a progress line, and
        // `files` a view showing them as before.
        M::up_with_hook(super::compact::TABLE, super::compact::migrate),
        // v13: the rows keyed by (folder, name) in a WITHOUT ROWID table,
        // times as differences, the rarely set columns apart (see
        // `keyed.rs`), rewritten row by row with a progress line; `files`
        // the same view.
        M::up_with_hook(super::keyed::TABLES, super::keyed::migrate),
    ])
});

impl StateDb {
    pub(super) fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        MIGRATIONS.to_latest(&mut c).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, LATEST);
    }
}
