//! The `mount_points` table: the source's mount points below its root as
//! the last scan found them (relative paths, so a root re-pointed by
//! `roots` needs no rewrite), and the rows a mount that went away holds.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{OptionalExtension, params};

use super::{Result, RowId, RowKey, StateDb, path_from, path_value};

/// One recorded mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// Relative to the source root (never empty).
    pub rel: PathBuf,
    /// It held entries when last walked.
    pub entries: bool,
    /// The last scan found it gone (not a mount point, or empty where it
    /// held entries): its rows were held, nothing below it touched.
    pub gone: bool,
}

impl StateDb {
    /// The recorded mount points, by path.
    pub fn mount_points(&self) -> Result<Vec<MountPoint>> {
        // A DB read without migrating (`check`, `status`) may predate v6.
        if self.schema_version()? < 6 {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT path, entries, gone FROM mount_points ORDER BY path")?;
        let rows = st.query_map([], |r| {
            Ok(MountPoint {
                rel: path_from(r.get_ref(0)?)?,
                entries: r.get(1)?,
                gone: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces the recorded mount points with `points` (one transaction).
    pub fn set_mount_points(&self, points: &[MountPoint]) -> Result<()> {
        let tx = self.begin()?;
        tx.conn.execute("DELETE FROM mount_points", [])?;
        {
            let mut st = tx.conn.prepare_cached(
                "INSERT OR REPLACE INTO mount_points (path, entries, gone) VALUES (?1, ?2, ?3)",
            )?;
            for p in points {
                st.execute(params![path_value(&p.rel), p.entries, p.gone])?;
            }
        }
        tx.commit()
    }

    /// Holds the rows of the source folder `folder` and of everything below
    /// it, as a mount that went away leaves them: the folder's own row and
    /// the pending rows below it are marked failed with `error` (so the
    /// transfer copies nothing into it; the next scan that finds the mount
    /// back judges them again), the others kept as they are. Returns the
    /// ids of all of them (the scan counts them seen: none is forgotten).
    pub fn hold_below(&self, folder: &Path, error: &str) -> Result<Vec<RowId>> {
        let stored = self.key(folder).to_path_buf();
        let bounds = Subtree::of(&stored);
        let tx = self.begin()?;
        // (id, key, to fail: the folder's own row or a pending one)
        let mut found: Vec<(RowId, RowKey, bool)> = Vec::new();
        if let Some(k) = tx.row_key(folder)? {
            let own: Option<i64> = tx
                .conn
                .prepare_cached("SELECT id FROM entries WHERE folder = ?1 AND name = ?2")?
                .query_row(params![k.folder, k.name_value()], |r| r.get(0))
                .optional()?;
            if let Some(id) = own {
                found.push((RowId(id), k, true));
            }
        }
        {
            let mut st = tx.conn.prepare_cached(&format!(
                "SELECT e.id, e.folder, e.name, e.status = 0
                 FROM folders fo JOIN entries e ON e.folder = fo.id WHERE {}",
                Subtree::WHERE.replace("path", "fo.path")
            ))?;
            let rows = st.query_map(bounds.params(&stored), |r| {
                Ok((
                    RowId(r.get(0)?),
                    RowKey {
                        folder: r.get(1)?,
                        name: super::keyed::bytes_of(r.get_ref(2)?)?.to_vec(),
                    },
                    r.get(3)?,
                ))
            })?;
            for row in rows {
                found.push(row?);
            }
        }
        for (id, key, fail) in &found {
            if *fail {
                tx.fail(id.0, key, error)?;
            }
        }
        tx.commit()?;
        Ok(found.into_iter().map(|(id, _, _)| id).collect())
    }
}

/// The bounds of a folder's subtree in a path column: the folder itself,
/// and the paths that start with it and a `/`. Paths are TEXT when UTF-8,
/// else BLOB, and SQLite orders every TEXT before every BLOB: one range of
/// each kind.
pub(super) struct Subtree {
    lo: Vec<u8>,
    hi: Vec<u8>,
}

impl Subtree {
    /// The condition on a column `path`, bound by [`Subtree::params`].
    pub(super) const WHERE: &str = "(path = ?1 OR (path >= ?2 AND path < ?3) \
                                    OR (path >= ?4 AND path < ?5))";

    pub(super) fn of(folder: &Path) -> Self {
        let b = folder.as_os_str().as_bytes();
        let bound = |last: u8| [b, &[last]].concat();
        Self {
            lo: bound(b'/'),
            hi: bound(b'/' + 1),
        }
    }

    pub(super) fn params<'a>(&'a self, folder: &'a Path) -> [ToSqlOutput<'a>; 5] {
        let text = |v: &[u8]| match std::str::from_utf8(v) {
            Ok(s) => ToSqlOutput::Owned(Value::Text(s.to_owned())),
            Err(_) => ToSqlOutput::Owned(Value::Null),
        };
        fn blob(v: &[u8]) -> ToSqlOutput<'_> {
            ToSqlOutput::Borrowed(ValueRef::Blob(v))
        }
        [
            path_value(folder),
            text(&self.lo),
            text(&self.hi),
            blob(&self.lo),
            blob(&self.hi),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::files::tests::entry;
    use crate::db::{RowStatus, ScanEntry};

    fn rel(b: &[u8]) -> PathBuf {
        PathBuf::from(std::ffi::OsStr::from_bytes(b))
    }

    #[test]
    fn mount_points_are_replaced_whole() {
        let (_dir, _path, db) = crate::db::tests::temp_db();
        assert!(db.mount_points().unwrap().is_empty());
        let a = MountPoint {
            rel: rel(b"projects"),
            entries: true,
            gone: false,
        };
        let b = MountPoint {
            rel: rel(b"caf\xe9/m"),
            entries: false,
            gone: true,
        };
        db.set_mount_points(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(db.mount_points().unwrap(), [a.clone(), b]);
        db.set_mount_points(std::slice::from_ref(&a)).unwrap();
        assert_eq!(db.mount_points().unwrap(), [a]);
    }

    /// The folder, every row below it (TEXT and BLOB paths), and no
    /// sibling that merely starts with its name.
    #[test]
    fn hold_below_finds_text_and_blob_rows_and_fails_only_what_would_copy() {
        let (_dir, _path, mut db) = crate::db::tests::temp_db();
        let id = db.begin_scan().unwrap();
        let tx = db.begin().unwrap();
        let rows = [
            (&b"/s/p"[..], RowStatus::Synced),
            (b"/s/p/a", RowStatus::Synced),
            (b"/s/p/b", RowStatus::Pending),
            (b"/s/p/\xff", RowStatus::Pending),
            (b"/s/p/d/e", RowStatus::Synced),
            (b"/s/p0", RowStatus::Pending),
            (b"/s/p.x", RowStatus::Pending),
            (b"/s/q", RowStatus::Pending),
            (b"/s/p\xff", RowStatus::Pending),
        ];
        for (p, status) in rows {
            let e = ScanEntry {
                path: rel(p),
                ..entry("/", 1, 1)
            };
            tx.insert_source(&e, Path::new("/d/x"), status, id).unwrap();
        }
        tx.commit().unwrap();
        let held = db.hold_below(Path::new("/s/p"), "gone").unwrap();
        assert_eq!(held.len(), 5, "{held:?}");
        let status = |p: &[u8]| -> String {
            db.conn
                .query_row(
                    "SELECT status FROM files WHERE source_path = ?1",
                    [path_value(&rel(p))],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(status(b"/s/p"), "failed");
        assert_eq!(status(b"/s/p/a"), "synced");
        assert_eq!(status(b"/s/p/b"), "failed");
        assert_eq!(status(b"/s/p/\xff"), "failed");
        assert_eq!(status(b"/s/p/d/e"), "synced");
        for sibling in [&b"/s/p0"[..], b"/s/p.x", b"/s/q", b"/s/p\xff"] {
            assert_eq!(status(sibling), "pending");
        }
    }
}
