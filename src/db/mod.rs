//! State DB (SPEC §4): the only module that speaks SQL. Owns the connection
//! (open, reopen, tuning), the error type, and paths as SQL values; each
//! table has its own file. SQLite in WAL mode, schema versioned by
//! rusqlite_migration (`schema`), writes batched in transactions.
//!
//! Paths are TEXT when the name is valid UTF-8, a BLOB of the raw bytes
//! otherwise, so nothing is ever lost to lossy conversion. `files` rows are
//! stored in `entries` with their paths below the recorded roots (v12,
//! `compact`); the view `files` shows them whole.
//! File times are ns since the epoch, without loss over any `stat` time
//! (`times`: an INTEGER where 64 bits hold it, `@SECS.NNNNNNNNN` beyond).
//!
//! Where each rule lives: the write transaction ([`Tx`]) here; the
//! migrations in `schema`; every `meta` key in `meta`; the recorded roots in
//! `roots`; `files` rows with their [`RowStatus`] and [`RowId`] in `files`,
//! the failed ones as `status` shows them in `failed`; the destination
//! listing and mirror candidates in `listing`; the source's mount points in
//! `mounts`; the type changes the last scan found in `changes`; `runs` in
//! `runs`; verify results in `verifies`.

mod changes;
mod compact;
mod failed;
mod files;
mod hashed;
mod in_flight;
mod keyed;
mod links;
mod listing;
mod lookup;
mod meta;
mod mounts;
mod roots;
mod runs;
mod schema;
mod shards;
mod times;
mod totals;
mod verifies;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use camino::{Utf8Path, Utf8PathBuf};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use schema::MIGRATIONS;

use crate::decide::EntryKind;

pub use changes::TypeChange;
pub use files::{
    KnownRow, LinkedCopy, PendingFile, RecordedCopy, RowId, RowStatus, ScanEntry, StatusCount,
    Synced,
};
pub use hashed::HashedFile;
pub use in_flight::{InFlight, InFlightFile};
pub use keyed::RowKey;
pub use listing::Listed;
pub use lookup::SourceLookup;
pub use meta::JobRoot;
pub use mounts::MountPoint;
pub use roots::RecordedEntry;
pub use runs::{RunCounts, RunLimit, RunRow};
pub use verifies::{VerifyRecord, VerifyResult, VerifyRow};

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
        "state DB `{path}` belongs to another job: its {which} root is `{recorded}`, the manifest says `{wanted}` (a share mounted elsewhere: `jobrun rebase` checks the new root and keeps the state)"
    )]
    RootsDiffer {
        path: Utf8PathBuf,
        which: &'static str,
        recorded: String,
        wanted: String,
    },
    #[error(
        "state DB `{path}` was deleted or replaced while this run used it; stopped (what the run \
         recorded since went with the old file)"
    )]
    Lost { path: Utf8PathBuf },
    #[error(
        "state DB `{path}` is unusable ({why}); nothing was changed: move it aside and run with --rescan (docs/state-db-and-audit-log.md, \"An unusable state DB\")"
    )]
    Unusable { path: Utf8PathBuf, why: String },
    #[error("state DB: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Makes a new DB file at `path` whole or not at all. SQLite creates its
/// file empty and writes the header a moment later: a run killed between
/// the two left an empty file, which [`existing_db`] refuses. The file is
/// made under a name of its own, given its header, and linked into place
/// (never over a file that appeared meanwhile).
fn create_whole(path: &Utf8Path) -> Result<()> {
    let tmp = Utf8PathBuf::from(format!("{path}.{}.new", std::process::id()));
    let clean = || {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{tmp}{suffix}"));
        }
    };
    clean();
    let made = Connection::open(&tmp).and_then(|conn| {
        conn.pragma_update(None, "page_size", 8192)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.close().map_err(|(_, e)| e)
    });
    let linked = made
        .map_err(|source| DbError::Open {
            path: path.to_owned(),
            source,
        })
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| match std::fs::hard_link(&tmp, path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    // No hard links here (FAT, some shares): a rename, under
                    // the job's lock.
                    Err(_) if !path.exists() => std::fs::rename(&tmp, path),
                    Err(e) => Err(e),
                })
                .map_err(|e| DbError::Unusable {
                    path: path.to_owned(),
                    why: format!("cannot create it: {e}"),
                })
        });
    clean();
    linked
}

/// Whether the DB's write-ahead log is absent or empty (everything is in
/// the DB file itself).
fn wal_is_empty(db: &Utf8Path) -> bool {
    std::fs::metadata(format!("{db}-wal")).map_or(true, |m| m.len() == 0)
}

/// `path` for an SQLite `file:` URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Utf8Path) -> String {
    path.as_str()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether a DB file is at `path`, judged before SQLite sees it: SQLite
/// takes an empty or one-byte file for a new database, and a run on it
/// started a new job with every hash and run forgotten. Anything there
/// that is not an SQLite database file is refused; only an absent file
/// means "no DB yet".
fn existing_db(path: &Utf8Path) -> Result<bool> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let unusable = |why: String| DbError::Unusable {
        path: path.to_owned(),
        why,
    };
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unusable(e.to_string())),
    };
    if !md.is_file() {
        return Err(unusable("not a regular file".into()));
    }
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut head))
        .map_err(|e| unusable(e.to_string()))?;
    if head.len() < SQLITE_HEADER.len() {
        return Err(unusable(format!(
            "{} bytes long, too short for an SQLite database (truncated?)",
            md.len()
        )));
    }
    if head != SQLITE_HEADER {
        return Err(unusable("no SQLite header: not an SQLite database".into()));
    }
    Ok(true)
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A path as an SQL value: TEXT when UTF-8, BLOB of the raw bytes
/// otherwise; borrowed (bound without a copy of the path).
pub fn path_value(p: &Path) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match p.to_str() {
        Some(s) => ValueRef::Text(s.as_bytes()),
        None => ValueRef::Blob(p.as_os_str().as_bytes()),
    })
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

/// The open state DB.
pub struct StateDb {
    conn: Connection,
    path: Utf8PathBuf,
    /// The DB file's (device, inode) when opened: each commit checks the
    /// path still names it (see [`StateDb::check_file`]). `None` read-only.
    file: Option<(u64, u64)>,
    /// The DB's id (`meta` `db_id`); `None` in a read-only DB without one.
    id: Option<String>,
    /// The run whose `runs` row each [`Tx::commit`] brings up to date.
    run: Option<(i64, RunCounts)>,
    /// The limit in force that each commit records in the run's row.
    run_limit: Option<RunLimit>,
    /// The run's counters as last committed (see [`StateDb::committed_counts`]).
    committed: std::cell::Cell<(u64, u64, u64)>,
    /// The run whose files in flight each commit records (`in_flight`).
    in_flight: Option<(i64, InFlight)>,
    /// The recorded source and destination roots (`entries` paths are
    /// stored below them), as last read from `meta`.
    roots: std::cell::RefCell<[Option<PathBuf>; 2]>,
}

/// The (device, inode) of the file at `path`.
fn file_id(path: &Utf8Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
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

/// Brings the DB to the latest schema in place (rusqlite_migration: one
/// transaction; a kill leaves the old version whole). A DB that had rows
/// gets a line before and after: a migration may rewrite every row.
fn migrate(conn: &mut Connection, path: &Utf8Path) -> Result<()> {
    let version = |c: &Connection| -> i64 {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap_or(0)
    };
    let (from, started) = (version(conn), std::time::Instant::now());
    let latest = schema::LATEST;
    if from > 0 && from < latest {
        tracing::info!(db = %path, "state DB at v{from}: migrating in place to v{latest}");
    }
    MIGRATIONS
        .to_latest(conn)
        .map_err(|source| DbError::Migrate {
            path: path.to_owned(),
            source,
        })?;
    if from > 0 && from < 13 {
        // v12 and v13 rewrote every row: the old table's pages are
        // free but still in the file until a VACUUM gives them back. A
        // failure (no room for its copy) leaves the DB whole and as large.
        compact::say("state DB: giving back the old rows' space (VACUUM)".into());
        if let Err(e) = conn.execute_batch("VACUUM") {
            tracing::warn!(db = %path, "state DB kept its free pages: VACUUM failed: {e}");
        }
    }
    if from > 0 && from < latest {
        compact::say(format!(
            "state DB `{path}` migrated to v{latest} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

impl StateDb {
    /// Opens (creating if needed) and migrates the DB.
    pub fn open(path: &Utf8Path) -> Result<Self> {
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        if !existing_db(path)? {
            create_whole(path)?;
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        tune(&conn).map_err(open_err)?;
        migrate(&mut conn, path)?;
        let mut db = Self {
            conn,
            path: path.to_owned(),
            file: None,
            id: None,
            run: None,
            committed: std::cell::Cell::default(),
            in_flight: None,
            run_limit: None,
            roots: std::cell::RefCell::default(),
        };
        db.load_roots()?;
        db.file = Some(file_id(path).map_err(|_| DbError::Lost {
            path: path.to_owned(),
        })?);
        db.id = Some(db.ensure_db_id()?);
        Ok(db)
    }

    /// Opens an existing DB for reading only (`check`, `status`); `None`
    /// when there is no DB file yet. Never creates or migrates anything.
    pub fn open_existing_read_only(path: &Utf8Path) -> Result<Option<Self>> {
        if !existing_db(path)? {
            return Ok(None);
        }
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        // A WAL database needs its `-shm` index, which SQLite creates beside
        // it even to read: on a read-only or full disk it cannot. With no
        // write-ahead log holding anything (the last run ended, or none is
        // going), the DB file alone is the whole DB: read it as immutable.
        let conn = match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
            Ok(()) => conn,
            Err(e) if wal_is_empty(path) => {
                drop(conn);
                Connection::open_with_flags(
                    format!("file:{}?immutable=1", uri_path(path)),
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(|_| open_err(e))?
            }
            Err(e) => return Err(open_err(e)),
        };
        let mut db = Self {
            conn,
            path: path.to_owned(),
            file: None,
            id: None,
            run: None,
            committed: std::cell::Cell::default(),
            in_flight: None,
            run_limit: None,
            roots: std::cell::RefCell::default(),
        };
        db.load_roots()?;
        db.id = db.read_db_id().ok().flatten();
        Ok(Some(db))
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// This DB's id, carried by every audit line (`db_id`): run ids of two
    /// DBs (one lost, one made afresh) are never confused. Given when the
    /// DB is created, or first opened by a jobrun that gives ids.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// `Err(Lost)` when the DB's path no longer names the file this
    /// connection opened: deleted (with its `-wal`, everything since would
    /// go to an unlinked file) or replaced. One `stat` per commit.
    pub fn check_file(&self) -> Result<()> {
        match (self.file, file_id(&self.path)) {
            (None, _) => Ok(()),
            (Some(opened), Ok(now)) if opened == now => Ok(()),
            _ => Err(DbError::Lost {
                path: self.path.clone(),
            }),
        }
    }

    /// A second connection to the same DB, for a thread of its own.
    pub fn reopen(&self) -> Result<Self> {
        let conn = Connection::open(&self.path).map_err(|source| DbError::Open {
            path: self.path.clone(),
            source,
        })?;
        tune(&conn)?;
        let db = Self {
            conn,
            path: self.path.clone(),
            file: self.file,
            id: self.id.clone(),
            run: None,
            committed: std::cell::Cell::default(),
            in_flight: None,
            run_limit: None,
            roots: std::cell::RefCell::default(),
        };
        db.load_roots()?;
        // Replaced before this connection opened: it has the new file.
        db.check_file()?;
        Ok(db)
    }

    /// Opens a write transaction (`BEGIN IMMEDIATE`) that groups many
    /// per-file updates; see [`Tx`]. Batching keeps fsyncs off the per-file
    /// path.
    pub fn begin(&self) -> Result<Tx<'_>> {
        let conn = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        Ok(Tx { db: self, conn })
    }
}

/// An open write transaction on a [`StateDb`]: the writes that must be
/// grouped with others (row outcomes, scan inserts, listing changes) are
/// methods of `Tx`, so none can run outside one; every read of the DB goes
/// through `Deref`. [`Tx::commit`] consumes it; dropping it (an error on
/// the way) rolls back, so the rows keep their previous status.
///
/// The transfer commits only after its durability barrier (see the
/// writer's batch): a row says `synced` only once its file is durable.
pub struct Tx<'db> {
    db: &'db StateDb,
    conn: Transaction<'db>,
}

impl Tx<'_> {
    /// Commits. A tracked run's `runs` row is updated in the same
    /// transaction, so the row always matches the rows committed (see
    /// [`StateDb::track_run`]).
    pub fn commit(self) -> Result<()> {
        self.db.check_file()?;
        let counts = self.db.run.as_ref().map(|(id, counts)| (*id, counts()));
        if let Some((id, counts)) = counts {
            let limit = self.db.run_limit.as_ref().map(|f| f());
            runs::record_progress(&self.conn, id, counts, limit.as_deref())?;
        }
        in_flight::record(&self.conn, self.db.in_flight.as_ref())?;
        self.conn.commit()?;
        if let Some((_, counts)) = counts {
            self.db.committed.set(counts);
        }
        Ok(())
    }

    /// Drops the batch: its rows keep their previous status.
    pub fn rollback(self) -> Result<()> {
        self.conn.rollback()?;
        Ok(())
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = StateDb;

    fn deref(&self) -> &StateDb {
        self.db
    }
}

impl StateDb {
    /// Reads the recorded roots again (after one is recorded).
    fn load_roots(&self) -> Result<()> {
        let read = |root| -> Result<Option<PathBuf>> {
            Ok(self
                .recorded_root_path(root)
                .ok()
                .flatten()
                .map(PathBuf::from))
        };
        let both = [read(JobRoot::Source)?, read(JobRoot::Destination)?];
        *self.roots.borrow_mut() = both;
        Ok(())
    }

    /// Source path `p` as `entries.path` stores it.
    fn key<'a>(&self, p: &'a Path) -> &'a Path {
        compact::stored(self.roots.borrow()[0].as_deref(), p)
    }

    /// The whole source path of a stored `entries.path`.
    fn source_of(&self, v: ValueRef<'_>) -> rusqlite::Result<PathBuf> {
        let stored = path_from(v)?;
        Ok(compact::full_path(
            self.roots.borrow()[0].as_deref(),
            stored.as_os_str().as_bytes(),
        ))
    }

    /// The destination path of a row from its `dest` and `path` columns.
    fn dest_value<'a>(&self, at: &Path, dest: &'a Path) -> Option<ToSqlOutput<'a>> {
        let derived = at.is_relative()
            && self.roots.borrow()[1]
                .as_deref()
                .is_some_and(|d| compact::full_path(Some(d), at.as_os_str().as_bytes()) == dest);
        (!derived).then(|| path_value(dest))
    }
}

/// The code of a kind in `entries.kind`.
fn kind_code(k: EntryKind) -> i64 {
    compact::KINDS
        .iter()
        .position(|n| *n == k.as_str())
        .map_or(-1, |i| i as i64)
}

fn kind_of(v: ValueRef<'_>) -> rusqlite::Result<EntryKind> {
    if let ValueRef::Integer(i) = v
        && let Some(k) = usize::try_from(i)
            .ok()
            .and_then(|i| compact::KINDS.get(i))
            .and_then(|n| EntryKind::parse(n))
    {
        return Ok(k);
    }
    let s = v.as_str()?;
    EntryKind::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown entry kind `{s}`").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_round_trip() {
        let p = PathBuf::from(OsStr::from_bytes(b"/src/caf\xe9/\xff.bin"));
        let ToSqlOutput::Borrowed(v) = path_value(&p) else {
            panic!("a path is bound borrowed")
        };
        assert!(matches!(v, ValueRef::Blob(_)));
        let back = path_from(v).unwrap();
        assert_eq!(back, p);
        let u = PathBuf::from("/src/ok.txt");
        assert!(matches!(
            path_value(&u),
            ToSqlOutput::Borrowed(ValueRef::Text(_))
        ));
    }

    /// A new DB in a temporary folder (kept while the first value lives),
    /// for the tests of every table.
    pub(super) fn temp_db() -> (tempfile::TempDir, Utf8PathBuf, StateDb) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("t.db")).unwrap();
        let db = StateDb::open(&path).unwrap();
        (dir, path, db)
    }

    fn insert(tx: &Tx<'_>, path: &str) {
        let e = files::tests::entry(path, 1, 1);
        tx.insert_source(&e, Path::new("/d/x"), RowStatus::Pending, 1)
            .unwrap();
    }

    #[test]
    fn a_dropped_tx_rolls_back_and_a_committed_one_records_the_run() {
        let (_dir, _, mut db) = temp_db();
        let run = db.start_run("t0", "scan", false).unwrap();
        db.track_run(run, Box::new(|| (7, 70, 1)));
        insert(&db.begin().unwrap(), "/s/dropped");
        assert_eq!(db.count_files().unwrap(), 0, "dropped: rolled back");
        assert_eq!(db.last_runs(1).unwrap()[0].files_done, 0);
        let tx = db.begin().unwrap();
        insert(&tx, "/s/kept");
        tx.commit().unwrap();
        assert_eq!(db.count_files().unwrap(), 1);
        let row = &db.last_runs(1).unwrap()[0];
        assert_eq!((row.files_done, row.bytes_done, row.failures), (7, 70, 1));
        let tx = db.begin().unwrap();
        insert(&tx, "/s/rolled");
        tx.rollback().unwrap();
        assert!(!db.has_source(Path::new("/s/rolled")).unwrap());
    }

    #[test]
    fn a_db_has_one_id_kept_across_opens() {
        let (_dir, path, db) = temp_db();
        let id = db.id().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        drop(db);
        assert_eq!(StateDb::open(&path).unwrap().id(), Some(id.as_str()));
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        assert_eq!(ro.id(), Some(id.as_str()));
        let (_d2, _, other) = temp_db();
        assert_ne!(other.id(), Some(id.as_str()));
    }

    #[test]
    fn a_deleted_or_replaced_db_fails_the_next_commit_and_counts_stay_committed() {
        let (dir, path, mut db) = temp_db();
        let run = db.start_run("t0", "scan", false).unwrap();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
        let seen = n.clone();
        db.track_run(
            run,
            Box::new(move || (seen.load(std::sync::atomic::Ordering::Relaxed), 10, 0)),
        );
        db.begin().unwrap().commit().unwrap();
        assert_eq!(db.committed_counts(), (1, 10, 0));
        n.store(5, std::sync::atomic::Ordering::Relaxed);
        // Replaced: another file at the same path.
        let other = dir.path().join("other.db");
        std::fs::copy(&path, &other).unwrap();
        std::fs::rename(&other, &path).unwrap();
        let err = db.begin().unwrap().commit().unwrap_err();
        assert!(matches!(err, DbError::Lost { .. }), "{err}");
        assert!(err.to_string().contains(path.as_str()), "{err}");
        assert_eq!(
            db.committed_counts(),
            (1, 10, 0),
            "the failed commit is not counted"
        );
        assert!(matches!(db.reopen(), Err(DbError::Lost { .. })));
        // Deleted.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            db.begin().unwrap().commit(),
            Err(DbError::Lost { .. })
        ));
    }
}
