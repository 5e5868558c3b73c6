//! The `files` table: one row per source entry — the scan's inserts and
//! updates, the transfer's pending pages and outcomes, counts per status,
//! and the writes that record hashes (`lookup`: the scan's reads; `hashed`:
//! the recorded hashes as verify and hashes read them).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};

use super::compact::{self, Algorithm, algorithm_opt, hash_opt, hash_read};
use super::times::{self, Ns};
use super::{Result, StateDb, Tx, kind_code, kind_of, path_value};
use crate::decide::{EntryKind, Stamp};

/// The id of a `files` row (its rowid). Only the DB hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowId(pub(super) i64);

impl RowId {
    /// The rowid as a number (bitsets, samples, temporary names, logs).
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for RowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ToSql for RowId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for RowId {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(v).map(Self)
    }
}

/// Keyset paging: rows after `after`, from the first row when `None`.
pub(super) fn after_value(after: Option<RowId>) -> i64 {
    after.map_or(0, RowId::get)
}

/// Where a row stands (`files.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    /// To copy (or, for a folder, to have its times restored).
    Pending,
    /// Durable at the destination as the row describes it.
    Synced,
    /// The last attempt failed; `files.error` says why.
    Failed,
}

impl RowStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Synced, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Its code in `entries.status` (see `compact`).
    pub(super) fn code(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Synced => 1,
            Self::Failed => 2,
        }
    }
}

impl std::fmt::Display for RowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl ToSql for RowStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RowStatus {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        if let ValueRef::Integer(i) = v {
            return Self::ALL
                .into_iter()
                .find(|st| st.code() == i)
                .ok_or(FromSqlError::OutOfRange(i));
        }
        let s = v.as_str()?;
        Self::parse(s).ok_or_else(|| FromSqlError::Other(format!("unknown status `{s}`").into()))
    }
}

/// One walked entry, source or destination side.
#[derive(Debug, Clone)]
pub struct ScanEntry {
    pub path: PathBuf,
    pub kind: EntryKind,
    pub size: u64,
    pub modified_ns: i128,
    pub accessed_ns: i128,
    pub changed_ns: i128,
    pub created_ns: Option<i128>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// (device, inode) of a file with a link count above 1: its hard-link
    /// group (see `transfer::links`).
    pub link: Option<(u64, u64)>,
}

/// A backlog row as the transfer stage needs it.
#[derive(Debug, Clone)]
pub struct PendingFile {
    pub id: RowId,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub kind: EntryKind,
    pub size: u64,
    pub modified_ns: i128,
    pub accessed_ns: i128,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Its hard-link group, as the scan recorded it.
    pub link: Option<(u64, u64)>,
    /// The copy of its group already made, to link to instead of copying
    /// (set by the transfer's feed, see `transfer::links`).
    pub link_to: Option<LinkedCopy>,
    /// The copy recorded for the content the row still has (its size and
    /// mtime unchanged since): kept while pending, so that a change of
    /// attributes alone can be settled without copying the bytes again.
    pub copied: Option<RecordedCopy>,
}

/// A copy recorded with its hash and the destination's stamp after it.
#[derive(Debug, Clone)]
pub struct RecordedCopy {
    pub hash: String,
    pub algorithm: String,
    /// The destination's size and mtime right after the copy.
    pub after_copy: (u64, i128),
}

/// A synced member of a hard-link group: its destination and hash.
#[derive(Debug, Clone)]
pub struct LinkedCopy {
    pub dest: PathBuf,
    /// Its hash when recorded with `algorithm`.
    pub hash: Option<String>,
    /// The size and mtime the destination showed right after the copy
    /// (the source's where none was recorded): the copy is still that one.
    pub stamp: (u64, i128),
}

/// A source row as a rescan compares it with the walked entry.
#[derive(Debug, Clone)]
pub struct KnownRow {
    pub id: RowId,
    /// The recorded source stamp (`path` left empty).
    pub entry: ScanEntry,
    pub status: RowStatus,
    pub after_copy: Option<Stamp>,
    /// A hash is recorded (jobrun read the source for it).
    pub hashed: bool,
}

/// Files and bytes in one status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusCount {
    pub status: RowStatus,
    pub files: u64,
    pub bytes: u64,
}

/// What the writer records for a synced file.
pub struct Synced<'a> {
    pub id: RowId,
    pub hash: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub size: u64,
    pub modified_ns: i128,
    /// The source's ctime when read (None: the row's stays).
    pub changed_ns: Option<i128>,
    pub after_copy: Option<Stamp>,
}

impl StateDb {
    /// Deletes every row whose id `seen` rejects (rows of entries the scan
    /// did not find), in chunks of rowids; returns how many.
    pub fn drop_unseen(&mut self, seen: impl Fn(RowId) -> bool) -> Result<u64> {
        self.drop_rows_by(|id, _, _| !seen(id))
    }

    /// Deletes the `files` rows for which `drop(source_path, kind)` holds
    /// (entries a filter edit leaves out of the job); returns how many.
    /// Listing rows and the destination are untouched.
    pub fn drop_rows_where(&mut self, drop: impl Fn(&Path, EntryKind) -> bool) -> Result<u64> {
        self.drop_rows_by(|_, path, kind| drop(path, kind))
    }

    /// Deletes the rows for which `drop(id, source_path, kind)` holds, in
    /// chunks of one transaction each; returns how many.
    fn drop_rows_by(&mut self, drop: impl Fn(RowId, &Path, EntryKind) -> bool) -> Result<u64> {
        const CHUNK: i64 = 50_000;
        let (mut last, mut dropped) = (0i64, 0u64);
        let root = self.roots.borrow()[0].clone();
        loop {
            let tx = self.conn.transaction()?;
            let mut n = 0;
            let mut gone = Vec::new();
            {
                let mut st = tx.prepare_cached(
                    "SELECT rowid, path, kind FROM entries WHERE rowid > ?1
                     ORDER BY rowid LIMIT ?2",
                )?;
                let mut rows = st.query(params![last, CHUNK])?;
                while let Some(r) = rows.next()? {
                    n += 1;
                    last = r.get(0)?;
                    if drop(
                        RowId(last),
                        &compact::full_path(
                            root.as_deref(),
                            super::path_from(r.get_ref(1)?)?.as_os_str().as_bytes(),
                        ),
                        kind_of(r.get_ref(2)?)?,
                    ) {
                        gone.push(last);
                    }
                }
                let mut del = tx.prepare_cached("DELETE FROM entries WHERE rowid = ?1")?;
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

    /// Up to `limit` pending rows with rowid above `after`, in rowid order;
    /// a row whose destination is a folder the mirror must remove first
    /// (a recorded type change, see `changes.rs`) waits for it.
    pub fn pending_page(&self, after: Option<RowId>, limit: usize) -> Result<Vec<PendingFile>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT rowid, path, dest, kind, size, modified_ns, accessed_ns, mode,
                    uid, gid, link_dev, link_ino, hash, hash_algorithm, after_copy_size,
                    after_copy_modified_ns
             FROM entries e WHERE status <> 1 AND status = 0 AND rowid > ?1
                 AND NOT EXISTS (SELECT 1 FROM type_changes t
                     WHERE t.dest_kind = 'dir' AND t.source_path = {})
             ORDER BY rowid LIMIT ?2",
            compact::full_sql("e.path", compact::SOURCE_ROOT)
        ))?;
        let rows = st.query_map(params![after_value(after), limit as i64], |r| {
            Ok(PendingFile {
                id: r.get(0)?,
                source: self.source_of(r.get_ref(1)?)?,
                dest: self.dest_of(r.get_ref(2)?, r.get_ref(1)?)?,
                kind: kind_of(r.get_ref(3)?)?,
                size: r.get::<_, i64>(4)? as u64,
                modified_ns: r.get::<_, Ns>(5)?.0,
                accessed_ns: r.get::<_, Ns>(6)?.0,
                mode: r.get(7)?,
                uid: r.get(8)?,
                gid: r.get(9)?,
                link: link_of(r.get(10)?, r.get(11)?),
                link_to: None,
                copied: match (
                    hash_read(r, 12)?,
                    r.get::<_, Option<Algorithm>>(13)?.map(|a| a.0),
                    r.get::<_, Option<i64>>(14)?,
                    r.get::<_, Option<Ns>>(15)?,
                ) {
                    (Some(hash), Some(algorithm), Some(size), Some(mtime)) => Some(RecordedCopy {
                        hash,
                        algorithm,
                        after_copy: (size as u64, mtime.0),
                    }),
                    _ => None,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The copy already made of hard-link group `link`: a synced file row
    /// of that (device, inode) with the same size and mtime (the same
    /// content, as the scan saw it), if any; its hash only when recorded
    /// with `algorithm`.
    pub fn linked_copy(
        &self,
        link: (u64, u64),
        size: u64,
        modified_ns: i128,
        algorithm: &str,
    ) -> Result<Option<LinkedCopy>> {
        let mut st = self.conn.prepare_cached(
            "SELECT dest, path, CASE WHEN hash_algorithm = ?5 THEN hash END,
                    COALESCE(after_copy_size, size), COALESCE(after_copy_modified_ns, modified_ns)
             FROM entries
             WHERE link_ino = ?2 AND link_dev = ?1 AND status = 1 AND kind = 0
                 AND size = ?3 AND modified_ns = ?4
             ORDER BY rowid LIMIT 1",
        )?;
        Ok(st
            .query_row(
                params![
                    link.0 as i64,
                    link.1 as i64,
                    size as i64,
                    Ns(modified_ns),
                    Algorithm(algorithm.to_owned())
                ],
                |r| {
                    Ok(LinkedCopy {
                        dest: self.dest_of(r.get_ref(0)?, r.get_ref(1)?)?,
                        hash: hash_read(r, 2)?,
                        stamp: (r.get::<_, i64>(3)? as u64, r.get::<_, Ns>(4)?.0),
                    })
                },
            )
            .optional()?)
    }

    /// Directory rows waiting for their mtime, deepest paths first.
    pub fn pending_dirs(&self) -> Result<Vec<PendingFile>> {
        let mut st = self.conn.prepare(
            "SELECT rowid, path, dest, kind, size, modified_ns, accessed_ns, mode,
                    uid, gid
             FROM entries WHERE status <> 1 AND status = 0 AND kind = 1 ORDER BY path DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(PendingFile {
                id: r.get(0)?,
                source: self.source_of(r.get_ref(1)?)?,
                dest: self.dest_of(r.get_ref(2)?, r.get_ref(1)?)?,
                kind: EntryKind::Dir,
                size: r.get::<_, i64>(4)? as u64,
                modified_ns: r.get::<_, Ns>(5)?.0,
                accessed_ns: r.get::<_, Ns>(6)?.0,
                mode: r.get(7)?,
                uid: r.get(8)?,
                gid: r.get(9)?,
                link: None,
                link_to: None,
                copied: None,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Source rows other than the source root itself.
    pub fn source_entries(&self, source_root: &Path) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM entries WHERE path != ?1",
            [path_value(self.key(source_root))],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Whether the DB has a row for this source path.
    pub fn has_source(&self, source_path: &Path) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM entries WHERE path = ?1")?
            .exists([path_value(self.key(source_path))])?)
    }

    /// (accessed_ns, modified_ns) of a directory row, by source path.
    pub fn dir_times(&self, source_path: &Path) -> Result<Option<(i128, i128)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT accessed_ns, modified_ns FROM entries WHERE path = ?1 AND kind = 1",
            )?
            .query_row([path_value(self.key(source_path))], |r| {
                Ok((r.get::<_, Ns>(0)?.0, r.get::<_, Ns>(1)?.0))
            })
            .optional()?)
    }
}

/// The writes of the scan and the transfer: each in the caller's batch.
impl Tx<'_> {
    /// Inserts a new source row with its decided status; returns its id.
    pub fn insert_source(
        &self,
        e: &ScanEntry,
        dest: &Path,
        status: RowStatus,
        scan_id: i64,
    ) -> Result<RowId> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO entries (path, dest, kind, size, modified_ns, accessed_ns,
                changed_ns, created_ns, mode, uid, gid, status, scan_id, link_dev, link_ino)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        let at = self.key(&e.path);
        st.execute(params![
            path_value(at),
            self.dest_value(at, dest),
            kind_code(e.kind),
            e.size as i64,
            Ns(e.modified_ns),
            Ns(e.accessed_ns),
            Ns(e.changed_ns),
            times::opt(e.created_ns),
            e.mode,
            e.uid,
            e.gid,
            status.code(),
            scan_id,
            e.link.map(|l| l.0 as i64),
            e.link.map(|l| l.1 as i64),
        ])?;
        Ok(RowId(self.conn.last_insert_rowid()))
    }

    /// Rewrites a known row after a rescan: the new source stamp and status.
    /// `same_content` (size, mtime and kind unchanged) keeps the hash and the
    /// after-copy stamp; otherwise both are cleared. A status change clears
    /// the error. `scan_id` records the scan that last changed the row.
    pub fn update_source(
        &self,
        id: RowId,
        e: &ScanEntry,
        status: RowStatus,
        same_content: bool,
        scan_id: i64,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE entries SET kind = ?2, size = ?3, modified_ns = ?4, accessed_ns = ?5,
                changed_ns = ?6, created_ns = ?7, mode = ?8, uid = ?9, gid = ?10,
                error = CASE WHEN status = ?11 THEN error END, status = ?11,
                fail_streak = CASE WHEN ?11 = 1 THEN 0 ELSE fail_streak END,
                hash = CASE WHEN ?12 THEN hash END,
                hash_algorithm = CASE WHEN ?12 THEN hash_algorithm END,
                after_copy_size = CASE WHEN ?12 THEN after_copy_size END,
                after_copy_modified_ns = CASE WHEN ?12 THEN after_copy_modified_ns END,
                scan_id = ?13, link_dev = ?14, link_ino = ?15
             WHERE rowid = ?1",
        )?;
        st.execute(params![
            id,
            kind_code(e.kind),
            e.size as i64,
            Ns(e.modified_ns),
            Ns(e.accessed_ns),
            Ns(e.changed_ns),
            times::opt(e.created_ns),
            e.mode,
            e.uid,
            e.gid,
            status.code(),
            same_content,
            scan_id,
            e.link.map(|l| l.0 as i64),
            e.link.map(|l| l.1 as i64),
        ])?;
        Ok(())
    }

    /// Marks a row synced with its hash, the source stamp the copy was made
    /// from, and what the destination showed right after the copy. A new
    /// copy has not been verified, even when its hash is the old one.
    pub fn mark_synced(&self, done: &Synced<'_>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE entries SET status = 1, error = NULL, hash = ?2, hash_algorithm = ?3,
                size = ?4, modified_ns = ?5, after_copy_size = ?6, after_copy_modified_ns = ?7,
                changed_ns = coalesce(?8, changed_ns), fail_streak = 0,
                verified_at = NULL, verify_result = NULL, verified_hash = NULL
             WHERE rowid = ?1",
        )?;
        st.execute(params![
            done.id,
            hash_opt(done.hash),
            algorithm_opt(done.algorithm),
            done.size as i64,
            Ns(done.modified_ns),
            done.after_copy.map(|s| s.size as i64),
            done.after_copy.map(|s| Ns(s.modified_ns)),
            times::opt(done.changed_ns),
        ])?;
        Ok(())
    }

    /// Marks a row failed, one more run in a row (a row fails at most once
    /// a run: it is not pending after).
    pub fn mark_failed(&self, id: RowId, error: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE entries SET status = 2, error = ?2, fail_streak = fail_streak + 1
                 WHERE rowid = ?1",
            )?
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
                "UPDATE entries SET status = 2, error = ?2, fail_streak = fail_streak + 1
                 WHERE path = ?1",
            )?
            .execute(params![path_value(self.key(source)), error])?
            > 0)
    }

    /// Marks the directory row for `source_dir` pending again: writing into
    /// a directory changes its mtime, which must be restored afterwards.
    pub fn touch_dir(&self, source_dir: &Path) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE entries SET status = 0 WHERE path = ?1 AND kind = 1 AND status = 1",
            )?
            .execute([path_value(self.key(source_dir))])?;
        Ok(())
    }
}

/// A recorded hard-link group (both columns set), else none.
pub(super) fn link_of(dev: Option<i64>, ino: Option<i64>) -> Option<(u64, u64)> {
    Some((dev? as u64, ino? as u64))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn entry(path: &str, size: u64, m: i128) -> ScanEntry {
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
            link: None,
        }
    }

    #[test]
    fn update_keeps_hash_only_for_unchanged_content() {
        let (_dir, _path, mut db) = crate::db::tests::temp_db();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let s1 = db.begin_scan().unwrap();
        let tx = db.begin().unwrap();
        for e in [entry("/s/a", 1, 10), entry("/s/b", 2, 20)] {
            let to = Path::new("/d").join(e.path.strip_prefix("/s").unwrap());
            tx.insert_source(&e, &to, RowStatus::Pending, s1).unwrap();
        }
        for id in [1, 2] {
            tx.mark_synced(&Synced {
                id: RowId(id),
                hash: Some("h"),
                algorithm: Some("sha256"),
                size: id as u64,
                modified_ns: i128::from(id) * 10,
                changed_ns: None,
                after_copy: None,
            })
            .unwrap();
        }
        tx.commit().unwrap();
        let mut lookup = db.source_lookup().unwrap();
        let a = lookup.find(Path::new("/s/a")).unwrap().unwrap();
        assert_eq!(
            (a.id, a.status, a.entry.size),
            (RowId(1), RowStatus::Synced, 1)
        );
        assert!(lookup.find(Path::new("/s/zz")).unwrap().is_none());
        drop(lookup);
        let s2 = db.begin_scan().unwrap();
        let tx = db.begin().unwrap();
        tx.update_source(RowId(1), &entry("/s/a", 1, 10), RowStatus::Synced, true, s2)
            .unwrap();
        tx.update_source(
            RowId(2),
            &entry("/s/b", 3, 30),
            RowStatus::Pending,
            false,
            s2,
        )
        .unwrap();
        tx.commit().unwrap();
        let hashes: Vec<Option<String>> = db
            .conn
            .prepare("SELECT hash FROM files ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(hashes, vec![Some("h".to_string()), None]);
        let dest: String = db
            .conn
            .query_row("SELECT dest_path FROM files WHERE rowid = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(dest, "/d/a");
        assert_eq!(db.drop_unseen(|id| id == RowId(2)).unwrap(), 1);
        assert_eq!(db.count_files().unwrap(), 1);
    }

    #[test]
    fn row_statuses_read_back_as_written_and_pad_in_tables() {
        for st in RowStatus::ALL {
            assert_eq!(RowStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(RowStatus::parse("done"), None);
        assert_eq!(format!("[{:<8}]", RowStatus::Failed), "[failed  ]");
        let json = serde_json::to_string(&RowStatus::Synced).unwrap();
        assert_eq!(json, "\"synced\"");
    }
}
