//! The `meta` table, its only reader and writer: each key is a [`Key`]
//! variant (the job's roots and the filesystems they were on, the DB's
//! id, the scan counter and the state of the last scan), read and written
//! here only.

use rusqlite::{Connection, OptionalExtension};

use super::{Result, StateDb, listing};

/// One of the job's two roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRoot {
    Source,
    Destination,
}

impl JobRoot {
    pub const BOTH: [Self; 2] = [Self::Source, Self::Destination];

    /// `source` or `destination`, as messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// A row of the `meta` table.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// The root's path as the job first used it (canonical).
    Root(JobRoot),
    /// `1` when the root was a mount point when the job started, else `0`
    /// (DBs made before [`Key::Filesystem`]; read, no longer written).
    MountPoint(JobRoot),
    /// The filesystem the root was on when the job started (JSON of
    /// `roots::Filesystem`).
    Filesystem(JobRoot),
    /// This DB's id, made when it was created (or first opened by a jobrun
    /// that gives ids): every audit line carries it.
    DbId,
    /// The id of the last scan begun.
    ScanId,
    /// `0` from the start of a scan until it reaches its end, then `1`.
    ScanComplete,
    /// Source entries the last scan could not read.
    ScanSourceErrors,
    /// The fingerprint of the filters the `files` rows were last filtered
    /// with.
    Filters,
    /// Entries copied, over every run, without the extended attributes
    /// (`xattrs = false`) or the ACLs (`acls = false`) they carry.
    LeftOutXattrs,
    LeftOutAcls,
    LeftOutHardLinks,
    LeftOutSparse,
}

impl Key {
    fn as_str(self) -> &'static str {
        match self {
            Self::Root(JobRoot::Source) => "source",
            Self::Root(JobRoot::Destination) => "destination",
            Self::MountPoint(JobRoot::Source) => "source_mount_point",
            Self::MountPoint(JobRoot::Destination) => "destination_mount_point",
            Self::Filesystem(JobRoot::Source) => "source_filesystem",
            Self::Filesystem(JobRoot::Destination) => "destination_filesystem",
            Self::DbId => "db_id",
            Self::ScanId => "scan_id",
            Self::ScanComplete => "scan_complete",
            Self::ScanSourceErrors => "scan_source_errors",
            Self::Filters => "filters",
            Self::LeftOutXattrs => "left_out_xattrs",
            Self::LeftOutAcls => "left_out_acls",
            Self::LeftOutHardLinks => "left_out_hard_links",
            Self::LeftOutSparse => "left_out_sparse",
        }
    }
}

/// A new DB id: 128 random bits from the kernel, in hex (time and pid
/// when `/dev/urandom` cannot be read).
fn new_db_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The value of `key`, on `conn` (a connection or a transaction on it).
fn get(conn: &Connection, key: Key) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key.as_str()], |r| r.get(0))
        .optional()
}

/// Sets `key` to `value`, on `conn` (a connection or a transaction on it).
fn set(conn: &Connection, key: Key, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key.as_str(), value])?;
    Ok(())
}

impl StateDb {
    /// The path recorded for `root`; `None` in a new DB.
    pub(super) fn recorded_root_path(&self, root: JobRoot) -> Result<Option<String>> {
        Ok(get(&self.conn, Key::Root(root))?)
    }

    /// Records the path of `root`.
    pub(super) fn record_root_path(&self, root: JobRoot, path: &str) -> Result<()> {
        set(&self.conn, Key::Root(root), path)?;
        self.load_roots()
    }

    /// Whether `root` was a mount point when the job started, as a DB made
    /// before filesystems were recorded says; `None` in any other.
    pub fn mount_point(&self, root: JobRoot) -> Result<Option<bool>> {
        Ok(get(&self.conn, Key::MountPoint(root))?.map(|v| v == "1"))
    }

    /// The filesystem recorded for `root` (as `roots::Filesystem::to_meta`
    /// wrote it); `None` until recorded.
    pub fn root_filesystem(&self, root: JobRoot) -> Result<Option<String>> {
        Ok(get(&self.conn, Key::Filesystem(root))?)
    }

    pub fn set_root_filesystem(&self, root: JobRoot, value: &str) -> Result<()> {
        Ok(set(&self.conn, Key::Filesystem(root), value)?)
    }

    /// This DB's id; `None` in a DB opened read-only that never had one.
    pub(super) fn read_db_id(&self) -> Result<Option<String>> {
        Ok(get(&self.conn, Key::DbId)?)
    }

    /// Gives the DB its id unless it has one.
    pub(super) fn ensure_db_id(&self) -> Result<String> {
        if let Some(id) = get(&self.conn, Key::DbId)? {
            return Ok(id);
        }
        let id = new_db_id();
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute([Key::DbId.as_str(), &id])?;
        // Another process may have given it one first.
        Ok(get(&self.conn, Key::DbId)?.unwrap_or(id))
    }

    /// Starts a scan: a new scan id, and an empty destination listing.
    pub fn begin_scan(&mut self) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let last = get(&tx, Key::ScanId)?;
        let id = last.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) + 1;
        set(&tx, Key::ScanId, &id.to_string())?;
        listing::clear(&tx)?;
        set(&tx, Key::ScanComplete, "0")?;
        tx.commit()?;
        Ok(id)
    }

    /// Records that the scan begun by [`Self::begin_scan`] reached its end.
    pub fn finish_scan(&mut self) -> Result<()> {
        Ok(set(&self.conn, Key::ScanComplete, "1")?)
    }

    /// False when the last scan was cut short: its pending rows are then
    /// not a trustworthy backlog, and the next run scans again.
    pub fn last_scan_complete(&self) -> Result<bool> {
        Ok(get(&self.conn, Key::ScanComplete)?.as_deref() != Some("0"))
    }

    /// Remembers how many source entries the current scan could not read:
    /// the mirror stage refuses to delete after an incomplete source walk,
    /// also in later runs that resume without scanning.
    pub fn set_scan_source_errors(&self, n: u64) -> Result<()> {
        Ok(set(&self.conn, Key::ScanSourceErrors, &n.to_string())?)
    }

    /// See [`Self::set_scan_source_errors`]; 0 when never recorded.
    pub fn scan_source_errors(&self) -> Result<u64> {
        let v = get(&self.conn, Key::ScanSourceErrors)?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// The filters' fingerprint the rows were last filtered with; `None`
    /// until recorded.
    pub fn filters_applied(&self) -> Result<Option<String>> {
        Ok(get(&self.conn, Key::Filters)?)
    }

    /// Records the filters' fingerprint the rows are now filtered with.
    pub fn set_filters_applied(&self, fingerprint: &str) -> Result<()> {
        Ok(set(&self.conn, Key::Filters, fingerprint)?)
    }

    /// Adds a run's counts of entries copied without the extended
    /// attributes and the ACLs they carry (see [`Self::left_out`]).
    pub fn add_left_out(&self, xattrs: u64, acls: u64) -> Result<()> {
        let (x, a) = self.left_out()?;
        set(&self.conn, Key::LeftOutXattrs, &(x + xattrs).to_string())?;
        Ok(set(&self.conn, Key::LeftOutAcls, &(a + acls).to_string())?)
    }

    /// The last scan's counts of source files whose hard links and whose
    /// holes the job leaves out (see [`Self::tree_left_out`]).
    pub fn set_tree_left_out(&self, hard_linked: u64, sparse: u64) -> Result<()> {
        set(&self.conn, Key::LeftOutHardLinks, &hard_linked.to_string())?;
        Ok(set(&self.conn, Key::LeftOutSparse, &sparse.to_string())?)
    }

    /// The last scan's source files whose hard links and holes the job
    /// left out; `(0, 0)` when never recorded.
    pub fn tree_left_out(&self) -> Result<(u64, u64)> {
        let n = |k| -> Result<u64> {
            Ok(get(&self.conn, k)?
                .and_then(|s| s.parse().ok())
                .unwrap_or(0))
        };
        Ok((n(Key::LeftOutHardLinks)?, n(Key::LeftOutSparse)?))
    }

    /// Entries copied, over every run, without the extended attributes
    /// and without the ACLs they carry; `(0, 0)` when never recorded.
    pub fn left_out(&self) -> Result<(u64, u64)> {
        let n = |k| -> Result<u64> {
            Ok(get(&self.conn, k)?
                .and_then(|s| s.parse().ok())
                .unwrap_or(0))
        };
        Ok((n(Key::LeftOutXattrs)?, n(Key::LeftOutAcls)?))
    }
}
