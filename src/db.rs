//! State DB (SPEC §4): the only module that speaks SQL. SQLite in WAL mode,
//! schema versioned by rusqlite_migration, writes batched in transactions.
//!
//! Paths are stored as full paths: TEXT when the name is valid UTF-8, a BLOB
//! of the raw bytes otherwise, so nothing is ever lost to lossy conversion.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use camino::{Utf8Path, Utf8PathBuf};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use crate::decide::{EntryKind, Stamp};

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
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
        // v2: what a run was and why it ended (issue 12): `dry_run` (1 for
        // `--dry-run`) and `error`, the fatal condition that ended it (NULL
        // when none). Rows of older runs get 0 and NULL.
        M::up(
            "ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE runs ADD COLUMN error TEXT;",
        ),
        // v3: `jobrun verify` (issue 15). Per file row: when its destination
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
        // each of its commits (see "files in flight" below) so that `status`
        // can show them without writing. path: TEXT, or BLOB for non-UTF-8.
        M::up(
            "CREATE TABLE in_flight (
                 lane   INTEGER PRIMARY KEY,
                 run_id INTEGER NOT NULL,
                 path   NOT NULL,
                 size   INTEGER NOT NULL,
                 done   INTEGER NOT NULL
             );",
        ),
    ])
});

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open state DB `{path}`: {source}")]
    Open {
        path: Utf8PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot migrate state DB `{path}`: {source}")]
    Migrate {
        path: Utf8PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error(
        "state DB `{path}` belongs to another job: its {which} root is `{recorded}`, the manifest says `{wanted}`"
    )]
    RootsDiffer {
        path: Utf8PathBuf,
        which: &'static str,
        recorded: String,
        wanted: String,
    },
    #[error("state DB: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// What a DB says of one of the job's roots.
enum Recorded {
    /// A new DB: the root is recorded now.
    Nothing,
    Same,
    /// Another spelling of the same folder: rows move to the new one.
    Respelled(String),
}

/// A path as an SQL value: TEXT when UTF-8, BLOB of the raw bytes otherwise.
pub fn path_value(p: &Path) -> Value {
    match p.to_str() {
        Some(s) => Value::Text(s.to_owned()),
        None => Value::Blob(p.as_os_str().as_bytes().to_vec()),
    }
}

/// Inverse of [`path_value`].
pub fn path_from(v: ValueRef<'_>) -> rusqlite::Result<PathBuf> {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => Ok(PathBuf::from(OsStr::from_bytes(b))),
        other => Err(rusqlite::types::FromSqlError::InvalidType.into_with(other)),
    }
}

trait IntoWith {
    fn into_with(self, v: ValueRef<'_>) -> rusqlite::Error;
}
impl IntoWith for rusqlite::types::FromSqlError {
    fn into_with(self, v: ValueRef<'_>) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(0, v.data_type(), Box::new(self))
    }
}

/// One walked entry, source or destination side.
#[derive(Debug, Clone)]
pub struct ScanEntry {
    pub path: PathBuf,
    pub kind: EntryKind,
    pub size: u64,
    pub modified_ns: i64,
    pub accessed_ns: i64,
    pub changed_ns: i64,
    pub created_ns: Option<i64>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A backlog row as the transfer stage needs it.
#[derive(Debug, Clone)]
pub struct PendingFile {
    pub id: i64,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub kind: EntryKind,
    pub size: u64,
    pub modified_ns: i64,
    pub accessed_ns: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A source row as a rescan compares it with the walked entry.
#[derive(Debug, Clone)]
pub struct KnownRow {
    pub id: i64,
    /// The recorded source stamp (`path` left empty).
    pub entry: ScanEntry,
    pub status: &'static str,
    pub after_copy: Option<Stamp>,
}

/// Files and bytes in one status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCount {
    pub status: String,
    pub files: u64,
    pub bytes: u64,
}

/// One row of the `runs` table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub mode: String,
    pub files_done: u64,
    pub bytes_done: u64,
    pub failures: u64,
    pub exit_code: Option<i32>,
    /// A `--dry-run`: nothing was copied or deleted.
    pub dry_run: bool,
    /// The fatal condition that ended the run (exit 4, or 130 for a
    /// stopped scan); `None` otherwise.
    pub error: Option<String>,
}

/// Reads a run's counters `(files_done, bytes_done, failures)`; see
/// [`StateDb::track_run`].
pub type RunCounts = Box<dyn Fn() -> (u64, u64, u64) + Send>;

/// The open state DB.
pub struct StateDb {
    conn: Connection,
    path: Utf8PathBuf,
    /// The run whose `runs` row each [`StateDb::commit`] brings up to date.
    run: Option<(i64, RunCounts)>,
    /// The run whose files in flight each commit records (`in_flight`).
    in_flight: Option<(i64, InFlight)>,
}

fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL: a commit survives a process kill; only a power cut may
    // lose the last transactions, and those files are simply copied again.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl StateDb {
    /// Opens (creating if needed) and migrates the DB.
    pub fn open(path: &Utf8Path) -> Result<Self> {
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        tune(&conn).map_err(open_err)?;
        MIGRATIONS
            .to_latest(&mut conn)
            .map_err(|source| DbError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            run: None,
            in_flight: None,
        })
    }

    /// Opens an existing DB for reading only (`check`, `status`); `None`
    /// when there is no DB file yet. Never creates or migrates anything.
    pub fn open_existing_read_only(path: &Utf8Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| DbError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Some(Self {
            conn,
            path: path.to_owned(),
            run: None,
            in_flight: None,
        }))
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// A second connection to the same DB, for a thread of its own.
    pub fn reopen(&self) -> Result<Self> {
        let conn = Connection::open(&self.path).map_err(|source| DbError::Open {
            path: self.path.clone(),
            source,
        })?;
        tune(&conn)?;
        Ok(Self {
            conn,
            path: self.path.clone(),
            run: None,
            in_flight: None,
        })
    }

    /// A value of the `meta` table.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Sets a value of the `meta` table.
    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Remembers the job's roots on first use; refuses a DB made for other
    /// roots. A root recorded under another spelling of the same folder
    /// (`same_folder(recorded, wanted)`: a DB made before roots were
    /// recorded as canonical paths) has its rows moved to the new spelling,
    /// in one transaction.
    pub fn check_roots(
        &self,
        source: &Utf8Path,
        destination: &Utf8Path,
        same_folder: &dyn Fn(&str, &Utf8Path) -> bool,
    ) -> Result<()> {
        for (key, wanted) in [("source", source), ("destination", destination)] {
            match self.recorded_root(key, wanted, same_folder)? {
                Recorded::Nothing => self.meta_set(key, wanted.as_str())?,
                Recorded::Same => {}
                Recorded::Respelled(r) => self.rebase_root(key, &r, wanted)?,
            }
        }
        Ok(())
    }

    /// [`Self::check_roots`] without writing: `check` on a read-only DB.
    pub fn verify_roots(
        &self,
        source: &Utf8Path,
        destination: &Utf8Path,
        same_folder: &dyn Fn(&str, &Utf8Path) -> bool,
    ) -> Result<()> {
        for (key, wanted) in [("source", source), ("destination", destination)] {
            self.recorded_root(key, wanted, same_folder)?;
        }
        Ok(())
    }

    fn recorded_root(
        &self,
        key: &'static str,
        wanted: &Utf8Path,
        same_folder: &dyn Fn(&str, &Utf8Path) -> bool,
    ) -> Result<Recorded> {
        Ok(match self.meta_get(key)? {
            None => Recorded::Nothing,
            Some(r) if r == wanted.as_str() => Recorded::Same,
            Some(r) if same_folder(&r, wanted) => Recorded::Respelled(r),
            Some(recorded) => {
                return Err(DbError::RootsDiffer {
                    path: self.path.clone(),
                    which: key,
                    recorded,
                    wanted: wanted.to_string(),
                });
            }
        })
    }

    /// Rewrites the stored paths below root `which` from `old` to `new`.
    /// Pages by rowid, so memory stays flat whatever the row count.
    fn rebase_root(&self, which: &'static str, old: &str, new: &Utf8Path) -> Result<()> {
        const PAGE: i64 = 10_000;
        let columns: &[(&str, &str)] = if which == "source" {
            &[("files", "source_path")]
        } else {
            &[("files", "dest_path"), ("dest_entries", "path")]
        };
        self.begin()?;
        let moved = (|| -> Result<()> {
            for (table, column) in columns {
                let mut after = 0i64;
                loop {
                    let page: Vec<(i64, PathBuf)> = self
                        .conn
                        .prepare(&format!(
                            "SELECT rowid, {column} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"
                        ))?
                        .query_map(params![after, PAGE], |r| Ok((r.get(0)?, path_from(r.get_ref(1)?)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    let Some((last, _)) = page.last() else { break };
                    after = *last;
                    let mut update = self.conn.prepare(&format!(
                        "UPDATE {table} SET {column} = ?2 WHERE rowid = ?1"
                    ))?;
                    for (id, path) in page {
                        if let Ok(rel) = path.strip_prefix(old) {
                            let moved = if rel.as_os_str().is_empty() {
                                new.as_std_path().to_path_buf()
                            } else {
                                new.as_std_path().join(rel)
                            };
                            update.execute(params![id, path_value(&moved)])?;
                        }
                    }
                }
            }
            self.meta_set(which, new.as_str())
        })();
        match moved {
            Ok(()) => self.commit(),
            Err(e) => {
                let _ = self.rollback();
                Err(e)
            }
        }
    }

    /// Pending files and bytes: the backlog.
    pub fn backlog(&self) -> Result<(u64, u64)> {
        let sql = "SELECT count(*), coalesce(sum(CASE WHEN kind = 'file' THEN size END), 0)
             FROM files WHERE status = 'pending'";
        Ok(self.conn.query_row(sql, [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?)
    }

    /// The transfer stage's share of the backlog: pending entries other
    /// than folders (those only get their times restored) and file bytes.
    pub fn transfer_backlog(&self) -> Result<(u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT count(*), coalesce(sum(CASE WHEN kind = 'file' THEN size END), 0)
             FROM files WHERE status = 'pending' AND kind != 'dir'",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Up to `n` failed rows with their error text, for `status`.
    pub fn failed_sample(&self, n: usize) -> Result<Vec<(PathBuf, String)>> {
        let mut st = self.conn.prepare(
            "SELECT source_path, coalesce(error, '') FROM files WHERE status = 'failed'
             ORDER BY rowid LIMIT ?1",
        )?;
        let rows = st.query_map([n as i64], |r| Ok((path_from(r.get_ref(0)?)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Files and bytes per status, always listing all three.
    pub fn status_counts(&self) -> Result<Vec<StatusCount>> {
        let mut out: Vec<StatusCount> = ["pending", "synced", "failed"]
            .iter()
            .map(|s| StatusCount {
                status: (*s).to_owned(),
                ..Default::default()
            })
            .collect();
        let mut st = self.conn.prepare(
            "SELECT status, count(*), coalesce(sum(CASE WHEN kind = 'file' THEN size END), 0)
             FROM files GROUP BY status",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (status, files, bytes) = row?;
            if let Some(c) = out.iter_mut().find(|c| c.status == status) {
                c.files = files as u64;
                c.bytes = bytes as u64;
            }
        }
        Ok(out)
    }

    // ---- scan ------------------------------------------------------------

    /// Starts a scan: a new scan id, and an empty destination listing.
    pub fn begin_scan(&mut self) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let last: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'scan_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let id = last.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('scan_id', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [id.to_string()],
        )?;
        tx.execute("DELETE FROM dest_entries", [])?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('scan_complete', '0')
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Records that the scan begun by [`Self::begin_scan`] reached its end.
    pub fn finish_scan(&mut self) -> Result<()> {
        self.conn.execute(
            "UPDATE meta SET value = '1' WHERE key = 'scan_complete'",
            [],
        )?;
        Ok(())
    }

    /// False when the last scan was cut short: its pending rows are then
    /// not a trustworthy backlog, and the next run scans again.
    pub fn last_scan_complete(&self) -> Result<bool> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'scan_complete'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.as_deref() != Some("0"))
    }

    /// The row of a source path, for the scan's comparison; `None` when new.
    pub fn find_source(&self, path: &Path) -> Result<Option<KnownRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT rowid, kind, size, modified_ns, accessed_ns, changed_ns, created_ns,
                    mode, uid, gid, status, after_copy_size, after_copy_modified_ns
             FROM files WHERE source_path = ?1",
        )?;
        Ok(st
            .query_row([path_value(path)], |r| {
                let kind = kind_of(r.get_ref(1)?)?;
                let after = match (r.get::<_, Option<i64>>(11)?, r.get::<_, Option<i64>>(12)?) {
                    (Some(size), Some(m)) => Some(Stamp {
                        kind,
                        size: size as u64,
                        modified_ns: m,
                    }),
                    _ => None,
                };
                Ok(KnownRow {
                    id: r.get(0)?,
                    entry: ScanEntry {
                        path: PathBuf::new(),
                        kind,
                        size: r.get::<_, i64>(2)? as u64,
                        modified_ns: r.get(3)?,
                        accessed_ns: r.get(4)?,
                        changed_ns: r.get(5)?,
                        created_ns: r.get(6)?,
                        mode: r.get(7)?,
                        uid: r.get(8)?,
                        gid: r.get(9)?,
                    },
                    status: status_of(r.get_ref(10)?)?,
                    after_copy: after,
                })
            })
            .optional()?)
    }

    /// Inserts a new source row with its decided status; returns its id.
    /// Runs inside the caller's transaction ([`Self::begin`]).
    pub fn insert_source(
        &self,
        e: &ScanEntry,
        dest: &Path,
        status: &str,
        scan_id: i64,
    ) -> Result<i64> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                changed_ns, created_ns, mode, uid, gid, status, scan_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        st.execute(params![
            path_value(&e.path),
            path_value(dest),
            e.kind.as_str(),
            e.size as i64,
            e.modified_ns,
            e.accessed_ns,
            e.changed_ns,
            e.created_ns,
            e.mode,
            e.uid,
            e.gid,
            status,
            scan_id,
        ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Rewrites a known row after a rescan: the new source stamp and status.
    /// `same_content` (size, mtime and kind unchanged) keeps the hash and the
    /// after-copy stamp; otherwise both are cleared. A status change clears
    /// the error. `scan_id` records the scan that last changed the row.
    /// Runs inside the caller's transaction.
    pub fn update_source(
        &self,
        id: i64,
        e: &ScanEntry,
        status: &str,
        same_content: bool,
        scan_id: i64,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE files SET kind = ?2, size = ?3, modified_ns = ?4, accessed_ns = ?5,
                changed_ns = ?6, created_ns = ?7, mode = ?8, uid = ?9, gid = ?10,
                error = CASE WHEN status = ?11 THEN error END, status = ?11,
                hash = CASE WHEN ?12 THEN hash END,
                hash_algorithm = CASE WHEN ?12 THEN hash_algorithm END,
                after_copy_size = CASE WHEN ?12 THEN after_copy_size END,
                after_copy_modified_ns = CASE WHEN ?12 THEN after_copy_modified_ns END,
                scan_id = ?13
             WHERE rowid = ?1",
        )?;
        st.execute(params![
            id,
            e.kind.as_str(),
            e.size as i64,
            e.modified_ns,
            e.accessed_ns,
            e.changed_ns,
            e.created_ns,
            e.mode,
            e.uid,
            e.gid,
            status,
            same_content,
            scan_id,
        ])?;
        Ok(())
    }

    /// Inserts a batch of destination entries (the listing of this scan,
    /// kept for the mirror stage). Runs inside the caller's transaction.
    pub fn insert_dest(&self, batch: &[ScanEntry]) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO dest_entries (path, kind, size, modified_ns) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for e in batch {
            st.execute(params![
                path_value(&e.path),
                e.kind.as_str(),
                e.size as i64,
                e.modified_ns
            ])?;
        }
        Ok(())
    }

    /// Rows in `files`.
    pub fn count_files(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM files", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Deletes every row whose id `seen` rejects (rows of entries the scan
    /// did not find), in chunks of rowids; returns how many.
    pub fn drop_unseen(&mut self, seen: impl Fn(i64) -> bool) -> Result<u64> {
        const CHUNK: i64 = 50_000;
        let (mut last, mut dropped) = (0i64, 0u64);
        loop {
            let tx = self.conn.transaction()?;
            let mut n = 0;
            let mut gone = Vec::new();
            {
                let mut st = tx.prepare_cached(
                    "SELECT rowid FROM files WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                )?;
                let mut rows = st.query(params![last, CHUNK])?;
                while let Some(r) = rows.next()? {
                    n += 1;
                    last = r.get(0)?;
                    if !seen(last) {
                        gone.push(last);
                    }
                }
                let mut del = tx.prepare_cached("DELETE FROM files WHERE rowid = ?1")?;
                for id in &gone {
                    del.execute([id])?;
                }
            }
            tx.commit()?;
            dropped += gone.len() as u64;
            if n < CHUNK {
                return Ok(dropped);
            }
        }
    }

    // ---- transfer -------------------------------------------------------

    /// Up to `limit` pending rows with rowid above `after`, in rowid order.
    pub fn pending_page(&self, after: i64, limit: usize) -> Result<Vec<PendingFile>> {
        let mut st = self.conn.prepare_cached(
            "SELECT rowid, source_path, dest_path, kind, size, modified_ns, accessed_ns, mode,
                    uid, gid
             FROM files WHERE status = 'pending' AND rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            Ok(PendingFile {
                id: r.get(0)?,
                source: path_from(r.get_ref(1)?)?,
                dest: path_from(r.get_ref(2)?)?,
                kind: kind_of(r.get_ref(3)?)?,
                size: r.get::<_, i64>(4)? as u64,
                modified_ns: r.get(5)?,
                accessed_ns: r.get(6)?,
                mode: r.get(7)?,
                uid: r.get(8)?,
                gid: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Opens a write transaction that groups many per-file updates; see
    /// [`Self::commit`]. Batching keeps fsyncs off the per-file path.
    pub fn begin(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Drops the open batch: its rows keep their previous status.
    pub fn rollback(&self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK")?;
        Ok(())
    }

    pub fn commit(&self) -> Result<()> {
        // A tracked run's `runs` row is updated in the same transaction, so
        // the row always matches the rows committed (see `track_run`).
        if let Some((id, counts)) = &self.run {
            let (files, bytes, failures) = counts();
            self.conn
                .prepare_cached(
                    "UPDATE runs SET files_done = ?2, bytes_done = ?3, failures = ?4
                     WHERE id = ?1 AND ended_at IS NULL",
                )?
                .execute(params![id, files as i64, bytes as i64, failures as i64])?;
        }
        self.record_in_flight()?;
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Marks a row synced with its hash, the source stamp the copy was made
    /// from, and what the destination showed right after the copy. A new
    /// copy has not been verified, even when its hash is the old one.
    pub fn mark_synced(&self, done: &Synced<'_>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE files SET status = 'synced', error = NULL, hash = ?2, hash_algorithm = ?3,
                size = ?4, modified_ns = ?5, after_copy_size = ?6, after_copy_modified_ns = ?7,
                verified_at = NULL, verify_result = NULL, verified_hash = NULL
             WHERE rowid = ?1",
        )?;
        st.execute(params![
            done.id,
            done.hash,
            done.algorithm,
            done.size as i64,
            done.modified_ns,
            done.after_copy.map(|s| s.size as i64),
            done.after_copy.map(|s| s.modified_ns),
        ])?;
        Ok(())
    }

    pub fn mark_failed(&self, id: i64, error: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE files SET status = 'failed', error = ?2 WHERE rowid = ?1")?
            .execute(params![id, error])?;
        Ok(())
    }

    /// Marks the row of `source` failed (a source entry the scan could not
    /// read, e.g. a folder without read permission: its contents are unknown,
    /// so it must not look synced). Returns whether such a row exists.
    pub fn mark_failed_path(&self, source: &Path, error: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE files SET status = 'failed', error = ?2 WHERE source_path = ?1",
            )?
            .execute(params![path_value(source), error])?
            > 0)
    }

    /// Marks the directory row for `source_dir` pending again: writing into
    /// a directory changes its mtime, which must be restored afterwards.
    pub fn touch_dir(&self, source_dir: &Path) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE files SET status = 'pending' WHERE source_path = ?1 AND kind = 'dir' AND status = 'synced'",
            )?
            .execute([path_value(source_dir)])?;
        Ok(())
    }

    // ---- mirror -----------------------------------------------------------

    /// Remembers how many source entries the current scan could not read:
    /// the mirror stage refuses to delete after an incomplete source walk,
    /// also in later runs that resume without scanning.
    pub fn set_scan_source_errors(&self, n: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('scan_source_errors', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [n.to_string()],
        )?;
        Ok(())
    }

    /// See [`Self::set_scan_source_errors`]; 0 when never recorded.
    pub fn scan_source_errors(&self) -> Result<u64> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'scan_source_errors'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Source rows other than the source root itself.
    pub fn source_entries(&self, source_root: &Path) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM files WHERE source_path != ?1",
            [path_value(source_root)],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Destination listing rows other than the destination root itself.
    pub fn dest_listing_len(&self, dest_root: &Path) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM dest_entries WHERE path != ?1",
            [path_value(dest_root)],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Empties the destination listing before a fresh walk refills it with
    /// [`Self::insert_dest`].
    pub fn clear_dest_listing(&self) -> Result<()> {
        self.conn.execute("DELETE FROM dest_entries", [])?;
        Ok(())
    }

    fn listed_page(&self, table: &str, before: Option<&Path>, limit: usize) -> Result<Vec<Listed>> {
        // Two statements rather than `?1 IS NULL OR path < ?1`, which would
        // keep SQLite from walking the primary-key index (keyset paging).
        let sql = match before {
            Some(_) => format!(
                "SELECT path, kind, size, modified_ns FROM {table}
                 WHERE path < ?1 ORDER BY path DESC LIMIT ?2"
            ),
            None => format!(
                "SELECT path, kind, size, modified_ns FROM {table}
                 WHERE ?1 IS NULL ORDER BY path DESC LIMIT ?2"
            ),
        };
        let mut st = self.conn.prepare_cached(&sql)?;
        let before = before.map_or(Value::Null, path_value);
        let rows = st.query_map(params![before, limit as i64], |r| {
            Ok(Listed {
                path: path_from(r.get_ref(0)?)?,
                stamp: Stamp {
                    kind: kind_of(r.get_ref(1)?)?,
                    size: r.get::<_, i64>(2)? as u64,
                    modified_ns: r.get(3)?,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Fills the mirror candidate table (see [`Self::reset_candidates`])
    /// with the listing rows that have no `files` row at the same path
    /// relative to the roots (the roots themselves excluded). Returns how
    /// many.
    ///
    /// A merge of two ordered, covering index scans (`dest_entries.path`,
    /// `files.source_path`), paged by key: O(listing + files) with no
    /// per-row lookup. SQLite orders every TEXT before every BLOB and each
    /// by memcmp; the roots are UTF-8, so a full path is a BLOB exactly when
    /// its relative part is not UTF-8, and (is BLOB, relative bytes) orders
    /// both sides as SQLite does. Were the two orders ever to disagree, an
    /// entry would only become a candidate wrongly, and the mirror stage's
    /// live check of its source path would still keep it.
    pub fn collect_dest_only(
        &mut self,
        dest_root: &Path,
        source_root: &Path,
        page: usize,
    ) -> Result<u64> {
        fn key<'a>(p: &'a Path, root: &Path) -> Option<(bool, &'a [u8])> {
            let rel = p.strip_prefix(root).ok()?.as_os_str();
            (!rel.is_empty()).then(|| (p.to_str().is_none(), rel.as_bytes()))
        }
        let mut dest = std::collections::VecDeque::new();
        let mut src = std::collections::VecDeque::new();
        let (mut dest_last, mut src_last) = (None::<PathBuf>, None::<PathBuf>);
        let (mut src_done, mut found, mut count) = (false, Vec::new(), 0u64);
        loop {
            if dest.is_empty() {
                dest.extend(self.paths_after(
                    "dest_entries",
                    "path",
                    dest_last.as_deref(),
                    page,
                )?);
                let Some(last) = dest.back() else { break };
                dest_last = Some(last.clone());
            }
            if src.is_empty() && !src_done {
                src.extend(self.paths_after("files", "source_path", src_last.as_deref(), page)?);
                match src.back() {
                    Some(last) => src_last = Some(last.clone()),
                    None => src_done = true,
                }
            }
            let d = dest.front().expect("refilled above");
            let Some(dk) = key(d, dest_root) else {
                dest.pop_front();
                continue;
            };
            if let Some(s) = src.front() {
                let Some(sk) = key(s, source_root) else {
                    src.pop_front();
                    continue;
                };
                match sk.cmp(&dk) {
                    std::cmp::Ordering::Less => {
                        src.pop_front();
                        continue;
                    }
                    std::cmp::Ordering::Equal => {
                        src.pop_front();
                        dest.pop_front();
                        continue;
                    }
                    std::cmp::Ordering::Greater => {}
                }
            }
            found.push(dest.pop_front().expect("front checked"));
            if found.len() >= page {
                count += self.add_candidates_from_listing(&std::mem::take(&mut found))?;
            }
        }
        count += self.add_candidates_from_listing(&found)?;
        Ok(count)
    }

    /// Up to `limit` values of `column` above `after`, ascending (keyset
    /// paging over the column's index).
    fn paths_after(
        &self,
        table: &str,
        column: &str,
        after: Option<&Path>,
        limit: usize,
    ) -> Result<Vec<PathBuf>> {
        let sql = match after {
            Some(_) => format!(
                "SELECT {column} FROM {table} WHERE {column} > ?1 ORDER BY {column} LIMIT ?2"
            ),
            None => {
                format!("SELECT {column} FROM {table} WHERE ?1 IS NULL ORDER BY {column} LIMIT ?2")
            }
        };
        let mut st = self.conn.prepare_cached(&sql)?;
        let after = after.map_or(Value::Null, path_value);
        let rows = st.query_map(params![after, limit as i64], |r| path_from(r.get_ref(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_candidates_from_listing(&mut self, paths: &[PathBuf]) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO temp.mirror_candidates (path, kind, size, modified_ns)
                 SELECT path, kind, size, modified_ns FROM dest_entries WHERE path = ?1",
            )?;
            for p in paths {
                n += st.execute([path_value(p)])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Whether the DB has a row for this source path.
    pub fn has_source(&self, source_path: &Path) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM files WHERE source_path = ?1")?
            .exists([path_value(source_path)])?)
    }

    /// Starts an empty candidate list for the mirror stage (a TEMP table:
    /// private to this connection, gone when it closes).
    pub fn reset_candidates(&self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS mirror_candidates (
                 path PRIMARY KEY NOT NULL, kind TEXT NOT NULL,
                 size INTEGER NOT NULL, modified_ns INTEGER NOT NULL);
             DELETE FROM temp.mirror_candidates;",
        )?;
        Ok(())
    }

    pub fn add_candidates(&mut self, batch: &[Listed]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO temp.mirror_candidates (path, kind, size, modified_ns)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for c in batch {
                st.execute(params![
                    path_value(&c.path),
                    c.stamp.kind.as_str(),
                    c.stamp.size as i64,
                    c.stamp.modified_ns
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` candidates sorted by path, descending, below `before`
    /// (from the top when `None`). Descending byte order puts every entry
    /// before its parent directory (TEXT sorts before BLOB in SQLite, and a
    /// non-UTF-8 directory only has non-UTF-8 descendants).
    pub fn candidate_page(&self, before: Option<&Path>, limit: usize) -> Result<Vec<Listed>> {
        self.listed_page("temp.mirror_candidates", before, limit)
    }

    /// (accessed_ns, modified_ns) of a directory row, by source path.
    pub fn dir_times(&self, source_path: &Path) -> Result<Option<(i64, i64)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT accessed_ns, modified_ns FROM files WHERE source_path = ?1 AND kind = 'dir'",
            )?
            .query_row([path_value(source_path)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Forgets a deleted (or vanished) destination entry.
    pub fn forget_dest(&self, path: &Path) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM dest_entries WHERE path = ?1")?
            .execute([path_value(path)])?;
        Ok(())
    }

    // ---- runs -------------------------------------------------------------

    pub fn start_run(&self, started_at: &str, mode: &str, dry_run: bool) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (started_at, mode, dry_run) VALUES (?1, ?2, ?3)",
            params![started_at, mode, dry_run],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// From now on every batch commit also records run `id`'s progress
    /// (read from `counts`), so a run killed before [`Self::finish_run`]
    /// still counts in the totals, and `status` shows a running run's
    /// progress. Costs one small UPDATE per batch.
    pub fn track_run(&mut self, id: i64, counts: RunCounts) {
        self.run = Some((id, counts));
    }

    pub fn finish_run(&mut self, row: &RunRow) -> Result<()> {
        self.run = None;
        self.untrack_in_flight()?;
        self.conn.execute(
            "UPDATE runs SET ended_at = ?2, files_done = ?3, bytes_done = ?4, failures = ?5,
                 exit_code = ?6, error = ?7
             WHERE id = ?1",
            params![
                row.id,
                row.ended_at,
                row.files_done as i64,
                row.bytes_done as i64,
                row.failures as i64,
                row.exit_code,
                row.error
            ],
        )?;
        Ok(())
    }

    /// The last `n` runs, newest first.
    pub fn last_runs(&self, n: usize) -> Result<Vec<RunRow>> {
        // `status` reads without migrating: a DB last used by an older
        // jobrun has no v2 columns yet.
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let extra = if version >= 2 {
            "dry_run, error"
        } else {
            "0, NULL"
        };
        let mut st = self.conn.prepare(&format!(
            "SELECT id, started_at, ended_at, mode, files_done, bytes_done, failures, exit_code,
                    {extra}
             FROM runs ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map([n as i64], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                ended_at: r.get(2)?,
                mode: r.get(3)?,
                files_done: r.get::<_, i64>(4)? as u64,
                bytes_done: r.get::<_, i64>(5)? as u64,
                failures: r.get::<_, i64>(6)? as u64,
                exit_code: r.get(7)?,
                dry_run: r.get(8)?,
                error: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Total bytes copied by all runs so far (progress "in total").
    pub fn bytes_copied_all_runs(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(sum(bytes_done), 0) FROM runs", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Directory rows waiting for their mtime, deepest paths first.
    pub fn pending_dirs(&self) -> Result<Vec<PendingFile>> {
        let mut st = self.conn.prepare(
            "SELECT rowid, source_path, dest_path, kind, size, modified_ns, accessed_ns, mode,
                    uid, gid
             FROM files WHERE status = 'pending' AND kind = 'dir' ORDER BY source_path DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(PendingFile {
                id: r.get(0)?,
                source: path_from(r.get_ref(1)?)?,
                dest: path_from(r.get_ref(2)?)?,
                kind: EntryKind::Dir,
                size: r.get::<_, i64>(4)? as u64,
                modified_ns: r.get(5)?,
                accessed_ns: r.get(6)?,
                mode: r.get(7)?,
                uid: r.get(8)?,
                gid: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Raw access for tests and the status command's extra queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

// ---- verify and hashes (issue 15) ----------------------------------------

/// A synced file as `verify` checks it and `hashes` lists it.
#[derive(Debug, Clone)]
pub struct HashedFile {
    pub id: i64,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub size: u64,
    pub modified_ns: i64,
    /// Lowercase hex, as recorded when the file was read from the source.
    pub hash: String,
    /// As the manifest spells it (`sha256`, …).
    pub algorithm: String,
}

/// What a verify found for one row (`files.verify_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyResult {
    Ok,
    Mismatch,
    Missing,
    /// The destination file could not be read (an I/O error): nothing is
    /// known about its content.
    Failed,
}

impl VerifyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Mismatch => "mismatch",
            Self::Missing => "missing",
            Self::Failed => "failed",
        }
    }
}

/// One row of the `verifies` table: one `jobrun verify`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyRecord {
    pub id: i64,
    pub started_at: String,
    /// `started_at` in ns since the epoch (a resumed verify skips what its
    /// unfinished predecessor found `ok` after this instant).
    pub started_ns: i64,
    pub ended_at: Option<String>,
    /// Rows found `ok` after this instant were skipped (`--since`, or the
    /// start of the unfinished verify this one resumed).
    pub since_ns: Option<i64>,
    /// `--sample` percentage and its seed.
    pub sample: Option<f64>,
    pub seed: Option<u64>,
    pub repair: bool,
    /// Files checked and bytes read by this verify.
    pub files: u64,
    pub bytes: u64,
    pub ok: u64,
    pub mismatched: u64,
    pub missing: u64,
    pub failed: u64,
    /// Synced files skipped: found `ok` since `since_ns`, or left out of
    /// the sample.
    pub skipped: u64,
    /// Synced files without a recorded hash (found already in place by a
    /// scan, never read by jobrun): nothing to compare with.
    pub no_hash: u64,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

/// The rows a verify checks: synced files with a recorded hash, except
/// those found `ok` at or after `?1` for the hash they still carry.
const VERIFY_TODO: &str = "status = 'synced' AND kind = 'file' AND hash IS NOT NULL
    AND NOT (verify_result IS 'ok' AND verified_at >= ?1 AND verified_hash IS hash)";

impl StateDb {
    fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Calls `f(rowid, size)` for every row a verify with `since_ns` would
    /// check, in rowid order, from one statement (constant memory).
    pub fn verify_todo_sizes(&self, since_ns: i64, mut f: impl FnMut(i64, u64)) -> Result<()> {
        let mut st = self.conn.prepare(&format!(
            "SELECT rowid, size FROM files WHERE {VERIFY_TODO} ORDER BY rowid"
        ))?;
        let mut rows = st.query([since_ns])?;
        while let Some(r) = rows.next()? {
            f(r.get(0)?, r.get::<_, i64>(1)? as u64);
        }
        Ok(())
    }

    /// Synced files: `(with a hash, without one)`.
    pub fn synced_files(&self) -> Result<(u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT count(hash), count(*) - count(hash) FROM files
             WHERE status = 'synced' AND kind = 'file'",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Up to `limit` rows to verify with rowid above `after`, in rowid order.
    pub fn verify_page(&self, since_ns: i64, after: i64, limit: usize) -> Result<Vec<HashedFile>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT rowid, source_path, dest_path, size, modified_ns, hash, hash_algorithm
             FROM files WHERE {VERIFY_TODO} AND rowid > ?2 ORDER BY rowid LIMIT ?3"
        ))?;
        let rows = st.query_map(params![since_ns, after, limit as i64], hashed_file)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records what a verify found for row `id` (compared with `hash`), at
    /// `at_ns`. `repair` with a mismatch or a missing file puts the row back
    /// to `pending`, so the next run copies it again. Runs inside the
    /// caller's transaction ([`Self::begin`]).
    pub fn record_verify(
        &self,
        id: i64,
        hash: &str,
        result: VerifyResult,
        at_ns: i64,
        repair: bool,
    ) -> Result<()> {
        let back = repair && matches!(result, VerifyResult::Mismatch | VerifyResult::Missing);
        self.conn
            .prepare_cached(
                "UPDATE files SET verified_at = ?2, verify_result = ?3, verified_hash = ?4,
                    status = CASE WHEN ?5 THEN 'pending' ELSE status END,
                    error = CASE WHEN ?5 THEN NULL ELSE error END
                 WHERE rowid = ?1",
            )?
            .execute(params![id, at_ns, result.as_str(), hash, back])?;
        Ok(())
    }

    /// The last verify, if it did not get through its plan: killed (no end
    /// recorded), stopped by a signal (130) or aborted (4).
    pub fn unfinished_verify(&self) -> Result<Option<VerifyRecord>> {
        Ok(self
            .last_verify()?
            .filter(|v| v.ended_at.is_none() || matches!(v.exit_code, Some(4 | 130))))
    }

    pub fn start_verify(&self, v: &VerifyRecord) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO verifies (started_at, started_ns, since_ns, sample, seed, repair)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                v.started_at,
                v.started_ns,
                v.since_ns,
                v.sample,
                v.seed.map(|s| s as i64),
                v.repair
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Brings the `verifies` row up to date (counts; end, exit and error
    /// once known). Inside a batch it is committed with the rows it counts.
    pub fn update_verify(&self, v: &VerifyRecord) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE verifies SET ended_at = ?2, files = ?3, bytes = ?4, ok = ?5,
                    mismatched = ?6, missing = ?7, failed = ?8, skipped = ?9, no_hash = ?10,
                    exit_code = ?11, error = ?12
                 WHERE id = ?1",
            )?
            .execute(params![
                v.id,
                v.ended_at,
                v.files as i64,
                v.bytes as i64,
                v.ok as i64,
                v.mismatched as i64,
                v.missing as i64,
                v.failed as i64,
                v.skipped as i64,
                v.no_hash as i64,
                v.exit_code,
                v.error
            ])?;
        Ok(())
    }

    /// The newest `verifies` row; `None` when the job was never verified
    /// (or the DB predates verify: `status` reads without migrating).
    pub fn last_verify(&self) -> Result<Option<VerifyRecord>> {
        if self.schema_version()? < 3 {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT id, started_at, started_ns, ended_at, since_ns, sample, seed, repair,
                        files, bytes, ok, mismatched, missing, failed, skipped, no_hash,
                        exit_code, error
                 FROM verifies ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
                    Ok(VerifyRecord {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        started_ns: r.get(2)?,
                        ended_at: r.get(3)?,
                        since_ns: r.get(4)?,
                        sample: r.get(5)?,
                        seed: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
                        repair: r.get(7)?,
                        files: n(8)?,
                        bytes: n(9)?,
                        ok: n(10)?,
                        mismatched: n(11)?,
                        missing: n(12)?,
                        failed: n(13)?,
                        skipped: n(14)?,
                        no_hash: n(15)?,
                        exit_code: r.get(16)?,
                        error: r.get(17)?,
                    })
                },
            )
            .optional()?)
    }

    /// The algorithms of the recorded hashes of synced files.
    pub fn hash_algorithms(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT hash_algorithm FROM files
             WHERE status = 'synced' AND kind = 'file' AND hash IS NOT NULL
             ORDER BY hash_algorithm",
        )?;
        let rows = st.query_map([], |r| r.get::<_, Option<String>>(0))?;
        Ok(rows
            .filter_map(|r| r.transpose())
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Calls `f` for every synced file with a recorded hash, in rowid order,
    /// from one statement: memory stays constant however many rows there
    /// are. An error from `f` stops the walk and is returned.
    pub fn for_each_hashed<E: From<DbError>>(
        &self,
        mut f: impl FnMut(HashedFile) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut st = self
            .conn
            .prepare(
                "SELECT rowid, source_path, dest_path, size, modified_ns, hash, hash_algorithm
                 FROM files WHERE status = 'synced' AND kind = 'file' AND hash IS NOT NULL
                 ORDER BY rowid",
            )
            .map_err(DbError::from)?;
        let mut rows = st.query([]).map_err(DbError::from)?;
        while let Some(r) = rows.next().map_err(DbError::from)? {
            f(hashed_file(r).map_err(DbError::from)?)?;
        }
        Ok(())
    }
}

fn hashed_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<HashedFile> {
    Ok(HashedFile {
        id: r.get(0)?,
        source: path_from(r.get_ref(1)?)?,
        dest: path_from(r.get_ref(2)?)?,
        size: r.get::<_, i64>(3)? as u64,
        modified_ns: r.get(4)?,
        hash: r.get(5)?,
        algorithm: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
    })
}

/// One destination listing row (or mirror candidate).
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: PathBuf,
    pub stamp: Stamp,
}

/// What the writer records for a synced file.
pub struct Synced<'a> {
    pub id: i64,
    pub hash: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub size: u64,
    pub modified_ns: i64,
    pub after_copy: Option<Stamp>,
}

fn status_of(v: ValueRef<'_>) -> rusqlite::Result<&'static str> {
    match v.as_str()? {
        "pending" => Ok("pending"),
        "synced" => Ok("synced"),
        "failed" => Ok("failed"),
        s => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown status `{s}`").into(),
        )),
    }
}

fn kind_of(v: ValueRef<'_>) -> rusqlite::Result<EntryKind> {
    let s = v.as_str()?;
    EntryKind::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown entry kind `{s}`").into(),
        )
    })
}

// ---- files in flight ---------------------------------------------------------
// What the running run's lanes are copying, for `status` (which only reads).
// Rewritten at each commit of the run, in the same transaction as its rows
// and its `runs` row; emptied when the run ends. A killed run leaves its
// last rows behind: `status` shows them only while their run holds the lock.

/// A file a lane of the running run is copying, as of the run's last commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightFile {
    pub lane: u32,
    /// As the display shows it: relative to the destination root.
    pub path: PathBuf,
    pub size: u64,
    /// Bytes written so far.
    pub done: u64,
}

/// Reads the files in flight now; see [`StateDb::track_in_flight`].
pub type InFlight = Box<dyn Fn() -> Vec<InFlightFile> + Send>;

impl StateDb {
    /// From now on every commit records run `run_id`'s files in flight, as
    /// `files` reads them. Clears what an earlier (killed) run left.
    pub fn track_in_flight(&mut self, run_id: i64, files: InFlight) -> Result<()> {
        self.conn.execute("DELETE FROM in_flight", [])?;
        self.in_flight = Some((run_id, files));
        Ok(())
    }

    fn untrack_in_flight(&mut self) -> Result<()> {
        if self.in_flight.take().is_some() {
            self.conn.execute("DELETE FROM in_flight", [])?;
        }
        Ok(())
    }

    /// Inside the commit's transaction: at most one row per lane.
    fn record_in_flight(&self) -> Result<()> {
        let Some((run_id, files)) = &self.in_flight else {
            return Ok(());
        };
        self.conn
            .prepare_cached("DELETE FROM in_flight")?
            .execute([])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO in_flight (lane, run_id, path, size, done) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for f in files() {
            insert.execute(params![
                f.lane,
                run_id,
                path_value(&f.path),
                f.size as i64,
                f.done as i64
            ])?;
        }
        Ok(())
    }

    /// The files in flight run `run_id` recorded at its last commit, by
    /// lane; none for a DB no run of this version has used (`status` reads
    /// without migrating).
    pub fn in_flight(&self, run_id: i64) -> Result<Vec<InFlightFile>> {
        if self.schema_version()? < 4 {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare(
            "SELECT lane, path, size, done FROM in_flight WHERE run_id = ?1 ORDER BY lane",
        )?;
        let rows = st.query_map([run_id], |r| {
            Ok(InFlightFile {
                lane: r.get(0)?,
                path: path_from(r.get_ref(1)?)?,
                size: r.get::<_, i64>(2)? as u64,
                done: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    /// A DB last used by the version before `runs.dry_run`/`runs.error`:
    /// `status` reads it as it is, a run migrates it, old rows keep.
    #[test]
    fn a_v1_db_reads_as_it_is_and_migrates_keeping_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("v1.db")).unwrap();
        {
            let mut c = Connection::open(&path).unwrap();
            MIGRATIONS.to_version(&mut c, 1).unwrap();
            c.execute(
                "INSERT INTO runs (started_at, mode, files_done, exit_code) VALUES ('t1', 'scan', 3, 0)",
                [],
            )
            .unwrap();
        }
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        let runs = ro.last_runs(5).unwrap();
        assert_eq!((runs[0].files_done, runs[0].dry_run), (3, false));
        assert_eq!(runs[0].error, None);
        drop(ro);
        let mut db = StateDb::open(&path).unwrap();
        assert_eq!(db.last_runs(5).unwrap()[0].files_done, 3);
        let id = db.start_run("t2", "resume", true).unwrap();
        db.finish_run(&RunRow {
            id,
            started_at: String::new(),
            ended_at: Some("t3".into()),
            mode: "resume".into(),
            files_done: 0,
            bytes_done: 0,
            failures: 0,
            exit_code: Some(4),
            dry_run: true,
            error: Some("cannot create destination root".into()),
        })
        .unwrap();
        let runs = db.last_runs(5).unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].dry_run && !runs[1].dry_run);
        assert_eq!(
            runs[0].error.as_deref(),
            Some("cannot create destination root")
        );
        assert_eq!(runs[1].error, None);
    }

    #[test]
    fn a_v2_db_keeps_its_rows_when_verify_columns_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("old.db")).unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            MIGRATIONS
                .to_version(&mut conn, 2)
                .expect("the v2 schema as the previous release left it");
            conn.execute(
                "INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                    changed_ns, mode, uid, gid, hash, hash_algorithm, status, scan_id)
                 VALUES ('/s/a', '/d/a', 'file', 1, 2, 3, 4, 420, 0, 0, 'ab', 'sha256', 'synced', 1)",
                [],
            )
            .unwrap();
        }
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        assert!(ro.last_verify().unwrap().is_none(), "status reads a v2 DB");
        drop(ro);
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), 4, "migrated to the latest");
        let mut todo = Vec::new();
        db.verify_todo_sizes(0, |id, size| todo.push((id, size)))
            .unwrap();
        assert_eq!(todo, vec![(1, 1)]);
        db.begin().unwrap();
        db.record_verify(1, "ab", VerifyResult::Ok, 10, false)
            .unwrap();
        db.commit().unwrap();
        let mut todo = Vec::new();
        db.verify_todo_sizes(10, |id, _| todo.push(id)).unwrap();
        assert!(todo.is_empty(), "found ok at 10: skipped since 10");
        db.verify_todo_sizes(11, |id, _| todo.push(id)).unwrap();
        assert_eq!(todo, vec![1]);
    }

    #[test]
    fn non_utf8_paths_round_trip() {
        let p = PathBuf::from(OsStr::from_bytes(b"/src/caf\xe9/\xff.bin"));
        let v = path_value(&p);
        assert!(matches!(v, Value::Blob(_)));
        let back = path_from(ValueRef::from(&v)).unwrap();
        assert_eq!(back, p);
        let u = PathBuf::from("/src/ok.txt");
        assert!(matches!(path_value(&u), Value::Text(_)));
    }

    fn entry(path: &str, size: u64, m: i64) -> ScanEntry {
        ScanEntry {
            path: PathBuf::from(path),
            kind: EntryKind::File,
            size,
            modified_ns: m,
            accessed_ns: m,
            changed_ns: m,
            created_ns: None,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn update_keeps_hash_only_for_unchanged_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("t.db")).unwrap();
        let mut db = StateDb::open(&path).unwrap();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let s1 = db.begin_scan().unwrap();
        db.begin().unwrap();
        for e in [entry("/s/a", 1, 10), entry("/s/b", 2, 20)] {
            let to = Path::new("/d").join(e.path.strip_prefix("/s").unwrap());
            db.insert_source(&e, &to, "pending", s1).unwrap();
        }
        for id in [1, 2] {
            db.mark_synced(&Synced {
                id,
                hash: Some("h"),
                algorithm: Some("sha256"),
                size: id as u64,
                modified_ns: id * 10,
                after_copy: None,
            })
            .unwrap();
        }
        db.commit().unwrap();
        let a = db.find_source(Path::new("/s/a")).unwrap().unwrap();
        assert_eq!((a.id, a.status, a.entry.size), (1, "synced", 1));
        assert!(db.find_source(Path::new("/s/zz")).unwrap().is_none());
        let s2 = db.begin_scan().unwrap();
        db.begin().unwrap();
        db.update_source(1, &entry("/s/a", 1, 10), "synced", true, s2)
            .unwrap();
        db.update_source(2, &entry("/s/b", 3, 30), "pending", false, s2)
            .unwrap();
        db.commit().unwrap();
        let hashes: Vec<Option<String>> = db
            .conn()
            .prepare("SELECT hash FROM files ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(hashes, vec![Some("h".to_string()), None]);
        let dest: String = db
            .conn()
            .query_row("SELECT dest_path FROM files WHERE rowid = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(dest, "/d/a");
        assert_eq!(db.drop_unseen(|id| id == 2).unwrap(), 1);
        assert_eq!(db.count_files().unwrap(), 1);
    }

    #[test]
    fn dest_only_merges_text_and_blob_paths_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("t.db")).unwrap();
        let mut db = StateDb::open(&path).unwrap();
        let p = |b: &[u8]| PathBuf::from(OsStr::from_bytes(b));
        let src = [
            &b"/s"[..],
            b"/s/a",
            b"/s/a/x",
            b"/s/b\xff",
            b"/s/c",
            b"/s/\xfe",
        ];
        let id = db.begin_scan().unwrap();
        let rows: Vec<ScanEntry> = src
            .iter()
            .map(|b| ScanEntry {
                path: p(b),
                ..entry("/", 1, 1)
            })
            .collect();
        for e in &rows {
            let rel = e.path.strip_prefix("/s").unwrap();
            db.insert_source(e, &Path::new("/d").join(rel), "pending", id)
                .unwrap();
        }
        let dst = [
            &b"/d"[..],
            b"/d/a",
            b"/d/a/x",
            b"/d/a/y",
            b"/d/a0",
            b"/d/b\xff",
            b"/d/b\xff/z",
            b"/d/c",
            b"/d/\xfe",
            b"/d/\xfe\xfe",
            b"/d/zz",
        ];
        let rows: Vec<ScanEntry> = dst
            .iter()
            .map(|b| ScanEntry {
                path: p(b),
                ..entry("/", 1, 1)
            })
            .collect();
        db.insert_dest(&rows).unwrap();
        for page in [1, 2, 3, 100] {
            db.reset_candidates().unwrap();
            let n = db
                .collect_dest_only(Path::new("/d"), Path::new("/s"), page)
                .unwrap();
            let mut got: Vec<PathBuf> = Vec::new();
            let mut before: Option<PathBuf> = None;
            loop {
                let rows = db.candidate_page(before.as_deref(), 2).unwrap();
                let Some(last) = rows.last() else { break };
                before = Some(last.path.clone());
                got.extend(rows.into_iter().map(|l| l.path));
            }
            let want: Vec<PathBuf> = [
                &b"/d/\xfe\xfe"[..],
                b"/d/b\xff/z",
                b"/d/zz",
                b"/d/a0",
                b"/d/a/y",
            ]
            .iter()
            .map(|b| p(b))
            .collect();
            assert_eq!(got, want, "page {page}");
            assert_eq!(n, 5);
        }
    }

    #[test]
    fn a_root_spelled_otherwise_has_its_rows_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("t.db")).unwrap();
        let mut db = StateDb::open(&path).unwrap();
        db.check_roots("/link/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let s1 = db.begin_scan().unwrap();
        db.begin().unwrap();
        for e in [entry("/link/s", 0, 1), entry("/link/s/a", 1, 10)] {
            let to = Path::new("/d").join(e.path.strip_prefix("/link/s").unwrap());
            db.insert_source(&e, &to, "pending", s1).unwrap();
        }
        db.commit().unwrap();
        db.check_roots("/real/s".into(), "/d".into(), &|r, w| {
            r == "/link/s" && w == "/real/s"
        })
        .unwrap();
        assert_eq!(db.meta_get("source").unwrap().as_deref(), Some("/real/s"));
        assert!(db.has_source(Path::new("/real/s/a")).unwrap());
        assert!(db.has_source(Path::new("/real/s")).unwrap());
        assert!(!db.has_source(Path::new("/link/s/a")).unwrap());
    }

    #[test]
    fn roots_are_remembered_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("t.db")).unwrap();
        let db = StateDb::open(&path).unwrap();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let err = db
            .check_roots("/s".into(), "/other".into(), &|_, _| false)
            .unwrap_err();
        assert!(
            err.to_string().contains("destination root is `/d`"),
            "{err}"
        );
    }

    // ---- files in flight ----

    #[test]
    fn files_in_flight_are_recorded_at_each_commit_and_cleared_at_the_end() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("j.db")).unwrap();
        let mut db = StateDb::open(&path).unwrap();
        let run = db.start_run("2026-01-01T00:00:00Z", "scan", false).unwrap();
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"caf\xe9.bin"));
        let files = vec![
            InFlightFile {
                lane: 0,
                path: "a/big.bin".into(),
                size: 200,
                done: 120,
            },
            InFlightFile {
                lane: 3,
                path: odd.clone(),
                size: 5,
                done: 0,
            },
        ];
        let shown = files.clone();
        db.track_in_flight(run, Box::new(move || shown.clone()))
            .unwrap();
        assert!(
            db.in_flight(run).unwrap().is_empty(),
            "nothing before a commit"
        );
        db.begin().unwrap();
        db.commit().unwrap();
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        assert_eq!(ro.in_flight(run).unwrap(), files, "raw names kept");
        assert!(
            ro.in_flight(run + 1).unwrap().is_empty(),
            "another run's rows are not shown"
        );
        db.finish_run(&RunRow {
            id: run,
            started_at: String::new(),
            ended_at: Some("t".into()),
            mode: "scan".into(),
            files_done: 0,
            bytes_done: 0,
            failures: 0,
            exit_code: Some(0),
            dry_run: false,
            error: None,
        })
        .unwrap();
        assert!(ro.in_flight(run).unwrap().is_empty());
    }
}
