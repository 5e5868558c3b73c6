//! The `files` table: one row per source entry — the scan's inserts and
//! updates, the transfer's pending pages and outcomes, counts per status,
//! and the writes that record hashes (`lookup`: the scan's reads; `hashed`:
//! the recorded hashes as verify and hashes read them).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};

use super::compact::{self, hash_opt};
use super::keyed;
use super::{Result, StateDb, Tx, kind_code, kind_of};
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
    /// did not find), in chunks; returns how many.
    pub fn drop_unseen(&mut self, seen: impl Fn(RowId) -> bool) -> Result<u64> {
        self.drop_rows_by(false, |id, _, _| !seen(id))
    }

    /// Deletes the `files` rows for which `drop(source_path, kind)` holds
    /// (entries a filter edit leaves out of the job); returns how many.
    /// Listing rows and the destination are untouched.
    pub fn drop_rows_where(&mut self, drop: impl Fn(&Path, EntryKind) -> bool) -> Result<u64> {
        self.drop_rows_by(true, |_, path, kind| drop(path, kind))
    }

    /// Deletes the rows for which `drop(id, source_path, kind)` holds, in
    /// chunks of one transaction each (in key order); returns how many.
    /// Without `with_paths` the path passed is empty and no path is built
    /// (a rescan's pass over every row needs only the ids).
    fn drop_rows_by(
        &mut self,
        with_paths: bool,
        drop: impl Fn(RowId, &Path, EntryKind) -> bool,
    ) -> Result<u64> {
        const CHUNK: i64 = 50_000;
        let mut last = keyed::RowKey {
            folder: -1,
            name: Vec::new(),
        };
        // The folder's stored path, read once per folder (rows come in key
        // order, a folder's entries one after another).
        let mut folder: Option<(i64, Option<Vec<u8>>)> = None;
        let mut dropped = 0u64;
        let root = self.roots.borrow()[0].clone();
        loop {
            let tx = self.conn.transaction()?;
            let mut n = 0;
            let mut gone = Vec::new();
            {
                let mut st = tx.prepare_cached(
                    "SELECT id, folder, name, kind FROM entries
                     WHERE (folder, name) > (?1, ?2) ORDER BY folder, name LIMIT ?3",
                )?;
                let mut rows = st.query(params![last.folder, last.name_value(), CHUNK])?;
                while let Some(r) = rows.next()? {
                    n += 1;
                    last.folder = r.get(1)?;
                    last.name.clear();
                    last.name.extend_from_slice(keyed::bytes_of(r.get_ref(2)?)?);
                    let path = if with_paths {
                        if folder.as_ref().is_none_or(|(id, _)| *id != last.folder) {
                            let p = match last.folder {
                                0 => None,
                                id => keyed::folder_path(&tx, id)?,
                            };
                            folder = Some((last.folder, p));
                        }
                        let fpath = folder.as_ref().and_then(|(_, p)| p.as_deref());
                        compact::full_path(root.as_deref(), &keyed::join(fpath, &last.name))
                    } else {
                        PathBuf::new()
                    };
                    if drop(RowId(r.get(0)?), &path, kind_of(r.get_ref(3)?)?) {
                        gone.push(last.clone());
                    }
                }
                let mut del =
                    tx.prepare_cached("DELETE FROM entries WHERE folder = ?1 AND name = ?2")?;
                for k in &gone {
                    del.execute(params![k.folder, k.name_value()])?;
                }
            }
            tx.commit()?;
            dropped += gone.len() as u64;
            if n < CHUNK {
                return Ok(dropped);
            }
        }
    }

    /// The row's source and destination paths.
    pub(super) fn paths_of(&self, d: &keyed::Decoded) -> (PathBuf, PathBuf) {
        let roots = self.roots.borrow();
        let source = compact::full_path(roots[0].as_deref(), &d.stored);
        let dest = d
            .dest
            .clone()
            .unwrap_or_else(|| compact::full_path(roots[1].as_deref(), &d.stored));
        (source, dest)
    }

    /// A decoded row as the transfer takes it.
    fn pending_file(&self, d: keyed::Decoded) -> rusqlite::Result<PendingFile> {
        let (source, dest) = self.paths_of(&d);
        Ok(PendingFile {
            id: RowId(d.id),
            source,
            dest,
            kind: kind_of(ValueRef::Integer(d.kind))?,
            size: d.size as u64,
            modified_ns: d.modified,
            accessed_ns: d.accessed,
            mode: d.mode,
            uid: d.uid,
            gid: d.gid,
            link: d.link.map(|(a, b)| (a as u64, b as u64)),
            link_to: None,
            copied: match (d.hash, d.algorithm, d.after) {
                (Some(hash), Some(algorithm), Some((size, mtime))) => Some(RecordedCopy {
                    hash,
                    algorithm,
                    after_copy: (size as u64, mtime),
                }),
                _ => None,
            },
        })
    }

    /// Up to `limit` pending rows with id above `after`, in id order (the
    /// order they were found in); a row whose destination is a folder the
    /// mirror must remove first (a recorded type change, see `changes.rs`)
    /// waits for it.
    pub fn pending_page(&self, after: Option<RowId>, limit: usize) -> Result<Vec<PendingFile>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {cols} FROM {from}
             WHERE e.status <> 1 AND e.status = 0 AND e.id > ?1
                 AND NOT EXISTS (SELECT 1 FROM type_changes t
                     WHERE t.dest_kind = 'dir' AND t.source_path = {src})
             ORDER BY e.id LIMIT ?2",
            cols = keyed::COLS,
            from = keyed::FROM,
            src = compact::full_sql(&keyed::stored_sql("e", "f"), compact::SOURCE_ROOT)
        ))?;
        let rows = st.query_map(params![after_value(after), limit as i64], |r| {
            self.pending_file(keyed::Decoded::read(r, 0)?)
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
        let (secs, ns) = keyed::split_ns(modified_ns);
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {cols} FROM entry_extra xl
                 JOIN entries e ON e.folder = xl.folder AND e.name = xl.name
                 LEFT JOIN folders f ON f.id = e.folder LEFT JOIN entry_extra x ON x.id = e.id
             WHERE xl.link_ino = ?2 AND xl.link_dev = ?1 AND e.status = 1 AND e.kind = 0
                 AND e.size = ?3 AND e.mtime = ?4 AND e.mtime_ns = ?5
             ORDER BY xl.id LIMIT 1",
            cols = keyed::COLS
        ))?;
        let found = st
            .query_row(
                params![link.0 as i64, link.1 as i64, size as i64, secs, ns],
                |r| keyed::Decoded::read(r, 0),
            )
            .optional()?;
        Ok(found.map(|d| {
            let (_, dest) = self.paths_of(&d);
            LinkedCopy {
                dest,
                hash: d.hash.filter(|_| d.algorithm.as_deref() == Some(algorithm)),
                stamp: d
                    .after
                    .map_or((d.size as u64, d.modified), |(s, m)| (s as u64, m)),
            }
        }))
    }

    /// Directory rows waiting for their mtime, deepest paths first.
    pub fn pending_dirs(&self) -> Result<Vec<PendingFile>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {cols} FROM {from} WHERE e.status <> 1 AND e.status = 0 AND e.kind = 1",
            cols = keyed::COLS,
            from = keyed::FROM
        ))?;
        let mut rows: Vec<(Vec<u8>, PendingFile)> = st
            .query_map([], |r| {
                let d = keyed::Decoded::read(r, 0)?;
                let stored = d.stored.clone();
                let mut p = self.pending_file(d)?;
                p.copied = None;
                p.link = None;
                Ok((stored, p))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(rows.into_iter().map(|(_, p)| p).collect())
    }

    /// Source rows other than the source root itself.
    pub fn source_entries(&self, source_root: &Path) -> Result<u64> {
        let all: i64 = self
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))?;
        Ok(all as u64 - u64::from(self.has_source(source_root)?))
    }

    /// The key of the row of source path `p`, when its folder is recorded.
    pub(super) fn row_key(&self, p: &Path) -> Result<Option<keyed::RowKey>> {
        Ok(keyed::key_of(
            &self.conn,
            self.key(p).as_os_str().as_bytes(),
        )?)
    }

    /// The row of source path `p`, decoded.
    pub(super) fn decoded(&self, p: &Path) -> Result<Option<keyed::Decoded>> {
        let Some(k) = self.row_key(p)? else {
            return Ok(None);
        };
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE e.folder = ?1 AND e.name = ?2",
                keyed::COLS,
                keyed::FROM
            ))?
            .query_row(params![k.folder, k.name_value()], |r| {
                keyed::Decoded::read(r, 0)
            })
            .optional()?)
    }

    /// Whether the DB has a row for this source path.
    pub fn has_source(&self, source_path: &Path) -> Result<bool> {
        let Some(k) = self.row_key(source_path)? else {
            return Ok(false);
        };
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM entries WHERE folder = ?1 AND name = ?2")?
            .exists(params![k.folder, k.name_value()])?)
    }

    /// (accessed_ns, modified_ns) of a directory row, by source path.
    pub fn dir_times(&self, source_path: &Path) -> Result<Option<(i128, i128)>> {
        let Some(k) = self.row_key(source_path)? else {
            return Ok(None);
        };
        Ok(self
            .conn
            .prepare_cached(
                "SELECT mtime, mtime_ns, atime_d FROM entries
                 WHERE folder = ?1 AND name = ?2 AND kind = 1",
            )?
            .query_row(params![k.folder, k.name_value()], |r| {
                let m = keyed::join_ns(r.get(0)?, r.get(1)?);
                Ok((keyed::undelta(m, r.get_ref(2)?)?, m))
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
        let at = self.key(&e.path);
        let key = keyed::key_or_new(&self.conn, at.as_os_str().as_bytes())?;
        let id = keyed::next_id(&self.conn)?;
        let kind = kind_code(e.kind);
        let (secs, ns) = keyed::split_ns(e.modified_ns);
        // `OR FAIL`, here and in `mark_synced`: with triggers, a statement
        // that may abort keeps a statement journal, written page by page to
        // a temporary file once past 64 KiB (a third of the synthesis's
        // time in `perf`). A failed statement fails its whole
        // transaction, which is then rolled back, so nothing is lost.
        self.conn
            .prepare_cached(
                "INSERT OR FAIL INTO entries (folder, name, id, kind, status, size, mtime, mtime_ns,
                     atime_d, ctime_d, birth_d, mode_x, owner, scan_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                key.folder,
                key.name_value(),
                id,
                kind,
                status.code(),
                e.size as i64,
                secs,
                ns,
                keyed::delta(e.modified_ns, e.accessed_ns),
                keyed::delta(e.modified_ns, e.changed_ns),
                keyed::birth_delta(e.modified_ns, e.changed_ns, e.created_ns),
                keyed::mode_x(kind, e.mode),
                keyed::owner(e.uid, e.gid),
                scan_id,
            ])?;
        let dest = self.dest_value(at, dest).map(compact::value_of);
        let link = e.link.map(|l| (l.0 as i64, l.1 as i64));
        if dest.is_some() || link.is_some() {
            keyed::Extra {
                dest,
                link,
                ..Default::default()
            }
            .store(&self.conn, id, &key)?;
        }
        Ok(RowId(id))
    }

    /// Rewrites the known row of `e.path` after a rescan: the new source
    /// stamp and status. `same_content` (size, mtime and kind unchanged)
    /// keeps the hash and the after-copy stamp; otherwise both are cleared.
    /// A status change clears the error. `scan_id` records the scan that
    /// last changed the row.
    pub fn update_source(
        &self,
        id: RowId,
        e: &ScanEntry,
        status: RowStatus,
        same_content: bool,
        scan_id: i64,
    ) -> Result<()> {
        let Some(key) = self.row_key(&e.path)? else {
            return Ok(());
        };
        let old_status: Option<i64> = self
            .conn
            .prepare_cached("SELECT status FROM entries WHERE folder = ?1 AND name = ?2")?
            .query_row(params![key.folder, key.name_value()], |r| r.get(0))
            .optional()?;
        let Some(old_status) = old_status else {
            return Ok(());
        };
        let kind = kind_code(e.kind);
        let (secs, ns) = keyed::split_ns(e.modified_ns);
        // The after-copy stamp is a difference from the mtime: kept as the
        // same time when the mtime moves (it does not with `same_content`).
        self.conn
            .prepare_cached(
                "UPDATE entries SET kind = ?3, size = ?4, mtime = ?5, mtime_ns = ?6,
                    atime_d = ?7, ctime_d = ?8, birth_d = ?9, mode_x = ?10, owner = ?11,
                    status = ?12,
                    hash = CASE WHEN ?13 THEN hash END,
                    after_d = CASE WHEN ?13 THEN after_d END,
                    scan_id = ?14
                 WHERE folder = ?1 AND name = ?2",
            )?
            .execute(params![
                key.folder,
                key.name_value(),
                kind,
                e.size as i64,
                secs,
                ns,
                keyed::delta(e.modified_ns, e.accessed_ns),
                keyed::delta(e.modified_ns, e.changed_ns),
                keyed::birth_delta(e.modified_ns, e.changed_ns, e.created_ns),
                keyed::mode_x(kind, e.mode),
                keyed::owner(e.uid, e.gid),
                status.code(),
                same_content,
                scan_id,
            ])?;
        keyed::Extra::change(&self.conn, id.0, &key, |x| {
            if old_status != status.code() {
                x.error = None;
            }
            if status == RowStatus::Synced {
                x.fail_streak = 0;
            }
            x.link = e.link.map(|l| (l.0 as i64, l.1 as i64));
            if !same_content {
                x.algorithm = None;
                x.after_size = None;
            }
        })?;
        Ok(())
    }

    /// Marks a row synced with its hash, the source stamp the copy was made
    /// from, and what the destination showed right after the copy. A new
    /// copy has not been verified, even when its hash is the old one.
    pub fn mark_synced(&self, done: &Synced<'_>) -> Result<()> {
        let Some((key, _)) = keyed::by_id(&self.conn, done.id.0)? else {
            return Ok(());
        };
        // The other times are differences from the mtime (and the ctime):
        // read them whole, then stored against the new ones.
        let times = self
            .conn
            .prepare_cached(
                "SELECT mtime, mtime_ns, atime_d, ctime_d, birth_d FROM entries
                 WHERE folder = ?1 AND name = ?2",
            )?
            .query_row(params![key.folder, key.name_value()], |r| {
                keyed::Times::read(r, 0)
            })?;
        let (accessed, created) = (times.accessed, times.created);
        let changed = done.changed_ns.unwrap_or(times.changed);
        let m = done.modified_ns;
        let (secs, ns) = keyed::split_ns(m);
        self.conn
            .prepare_cached(
                "UPDATE OR FAIL entries SET status = 1, hash = ?3, size = ?4, mtime = ?5, mtime_ns = ?6,
                    atime_d = ?7, ctime_d = ?8, birth_d = ?9, after_d = ?10
                 WHERE folder = ?1 AND name = ?2",
            )?
            .execute(params![
                key.folder,
                key.name_value(),
                hash_opt(done.hash),
                done.size as i64,
                secs,
                ns,
                keyed::delta(m, accessed),
                keyed::delta(m, changed),
                keyed::birth_delta(m, changed, created),
                done.after_copy.map(|s| keyed::delta(m, s.modified_ns)),
            ])?;
        keyed::Extra::change(&self.conn, done.id.0, &key, |x| {
            x.error = None;
            x.fail_streak = 0;
            x.verified_at = None;
            x.verify_result = None;
            x.verified_hash = None;
            x.algorithm = done
                .hash
                .and(done.algorithm)
                .filter(|a| *a != "sha256")
                .map(str::to_owned);
            x.after_size = done
                .after_copy
                .map(|s| s.size)
                .filter(|s| *s != done.size)
                .map(|s| s as i64);
        })?;
        Ok(())
    }

    /// Marks row `key` (id `id`) failed, one more run in a row.
    pub(super) fn fail(&self, id: i64, key: &keyed::RowKey, error: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE entries SET status = 2 WHERE folder = ?1 AND name = ?2")?
            .execute(params![key.folder, key.name_value()])?;
        keyed::Extra::change(&self.conn, id, key, |x| {
            x.error = Some(error.to_owned());
            x.fail_streak += 1;
        })?;
        Ok(())
    }

    /// Marks a row failed, one more run in a row (a row fails at most once
    /// a run: it is not pending after).
    pub fn mark_failed(&self, id: RowId, error: &str) -> Result<()> {
        if let Some((key, _)) = keyed::by_id(&self.conn, id.0)? {
            self.fail(id.0, &key, error)?;
        }
        Ok(())
    }

    /// Marks the row of `source` failed (a source entry the scan could not
    /// read, e.g. a folder without read permission: its contents are unknown,
    /// so it must not look synced). Returns whether such a row exists.
    pub fn mark_failed_path(&self, source: &Path, error: &str) -> Result<bool> {
        let Some(key) = self.row_key(source)? else {
            return Ok(false);
        };
        let id: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM entries WHERE folder = ?1 AND name = ?2")?
            .query_row(params![key.folder, key.name_value()], |r| r.get(0))
            .optional()?;
        match id {
            Some(id) => self.fail(id, &key, error).map(|()| true),
            None => Ok(false),
        }
    }

    /// Marks the directory row for `source_dir` pending again: writing into
    /// a directory changes its mtime, which must be restored afterwards.
    pub fn touch_dir(&self, source_dir: &Path) -> Result<()> {
        let Some(key) = self.row_key(source_dir)? else {
            return Ok(());
        };
        self.conn
            .prepare_cached(
                "UPDATE entries SET status = 0
                 WHERE folder = ?1 AND name = ?2 AND kind = 1 AND status = 1",
            )?
            .execute(params![key.folder, key.name_value()])?;
        Ok(())
    }
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
        let mut lookup = db.source_lookup(true).unwrap();
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
