//! The `dest_entries` table (the destination listing of the last scan) and
//! the mirror's candidate table: the entries with no source row.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{Connection, params};

use super::times::Ns;
use super::{Result, ScanEntry, StateDb, Tx, kind_of, path_from, path_value};
use crate::decide::Stamp;

/// One destination listing row (or mirror candidate).
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: PathBuf,
    pub stamp: Stamp,
}

/// Empties the destination listing, on `conn` (a connection or a
/// transaction on it).
pub(super) fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM dest_entries", [])?;
    Ok(())
}

impl StateDb {
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
        Ok(clear(&self.conn)?)
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
        let before = before.map_or(ToSqlOutput::Owned(Value::Null), path_value);
        let rows = st.query_map(params![before, limit as i64], |r| {
            Ok(Listed {
                path: path_from(r.get_ref(0)?)?,
                stamp: Stamp {
                    kind: kind_of(r.get_ref(1)?)?,
                    size: r.get::<_, i64>(2)? as u64,
                    modified_ns: r.get::<_, Ns>(3)?.0,
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
    /// The listing is read in pages of its index, and each of its paths
    /// looked up by key (folder, name): the folder's id once for a run of
    /// entries of one folder, then one seek in the rows' own order.
    pub fn collect_dest_only(
        &mut self,
        dest_root: &Path,
        source_root: &Path,
        page: usize,
    ) -> Result<u64> {
        let mut dest_last = None::<PathBuf>;
        let mut count = 0u64;
        let mut folder: Option<(Vec<u8>, Option<i64>)> = None;
        loop {
            let dest = self.paths_after("dest_entries", "path", dest_last.as_deref(), page)?;
            let Some(last) = dest.last() else { break };
            dest_last = Some(last.clone());
            let mut found = Vec::new();
            {
                let mut exists = self
                    .conn
                    .prepare_cached("SELECT 1 FROM entries WHERE folder = ?1 AND name = ?2")?;
                for d in dest {
                    let Some(rel) = crate::relpath::strictly_below(&d, dest_root) else {
                        continue;
                    };
                    // The stored form of the source path at the same place.
                    let source = if rel.as_os_str().is_empty() {
                        source_root.to_path_buf()
                    } else {
                        source_root.join(rel)
                    };
                    let stored = self.key(&source).as_os_str().as_bytes().to_vec();
                    let (parent, name) = super::keyed::split(&stored);
                    let id = match (parent, &folder) {
                        (None, _) => Some(0),
                        (Some(p), Some((f, id))) if f.as_slice() == p => *id,
                        (Some(p), _) => {
                            let id = super::keyed::folder_id(&self.conn, Some(p))?;
                            folder = Some((p.to_vec(), id));
                            id
                        }
                    };
                    let known = match id {
                        Some(id) => exists.exists(params![id, super::keyed::bytes_value(name)])?,
                        None => false,
                    };
                    if !known {
                        found.push(d);
                    }
                }
            }
            count += self.add_candidates_from_listing(&found)?;
        }
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
        let after = after.map_or(ToSqlOutput::Owned(Value::Null), path_value);
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

    /// Takes the destination folder `folder` and everything below it out
    /// of the candidates (a nested mount of the source that went away: its
    /// copy is not judged). Returns how many left.
    pub fn hold_candidates_below(&self, folder: &Path) -> Result<u64> {
        let bounds = super::mounts::Subtree::of(folder);
        let sql = format!(
            "DELETE FROM temp.mirror_candidates WHERE {}",
            super::mounts::Subtree::WHERE
        );
        let n = self
            .conn
            .prepare_cached(&sql)?
            .execute(bounds.params(folder))?;
        Ok(n as u64)
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
                    Ns(c.stamp.modified_ns)
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
}

/// The listing's writes: each in the caller's batch.
impl Tx<'_> {
    /// Inserts a batch of destination entries (the listing of this scan,
    /// kept for the mirror stage).
    pub fn insert_dest(&self, batch: &[ScanEntry]) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO dest_entries (path, kind, size, modified_ns) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for e in batch {
            st.execute(params![
                path_value(&e.path),
                e.kind.as_str(),
                e.size as i64,
                Ns(e.modified_ns)
            ])?;
        }
        Ok(())
    }

    /// Forgets a deleted (or vanished) destination entry.
    pub fn forget_dest(&self, path: &Path) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM dest_entries WHERE path = ?1")?
            .execute([path_value(path)])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::RowStatus;
    use crate::db::files::tests::entry;

    use std::ffi::OsStr;

    #[test]
    fn dest_only_merges_text_and_blob_paths_across_pages() {
        let (_dir, _path, mut db) = crate::db::tests::temp_db();
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
        let tx = db.begin().unwrap();
        for e in &rows {
            let rel = e.path.strip_prefix("/s").unwrap();
            tx.insert_source(e, &Path::new("/d").join(rel), RowStatus::Pending, id)
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
        tx.insert_dest(&rows).unwrap();
        tx.commit().unwrap();
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
}
