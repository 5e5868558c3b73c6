//! The job's recorded roots: remembered on first use, checked on every
//! open, and stored paths moved when a root is recorded under another
//! spelling of the same folder.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use camino::Utf8Path;
use rusqlite::{OptionalExtension, params};

use super::{DbError, JobRoot, Result, RowKey, StateDb, keyed, path_from, path_value};

/// What a DB says of one of the job's roots.
enum Recorded {
    /// A new DB: the root is recorded now.
    Nothing,
    Same,
    /// Another spelling of the same folder: rows move to the new one.
    Respelled(String),
}

impl StateDb {
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
        for (root, wanted) in JobRoot::BOTH.into_iter().zip([source, destination]) {
            match self.recorded_root(root, wanted, same_folder)? {
                Recorded::Nothing => {
                    self.record_root_path(root, wanted.as_str())?;
                    if root == JobRoot::Source {
                        self.relativize()?;
                    }
                }
                Recorded::Same => {}
                Recorded::Respelled(r) => self.rebase_root(root, &r, wanted)?,
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
        for (root, wanted) in JobRoot::BOTH.into_iter().zip([source, destination]) {
            self.recorded_root(root, wanted, same_folder)?;
        }
        Ok(())
    }

    fn recorded_root(
        &self,
        root: JobRoot,
        wanted: &Utf8Path,
        same_folder: &dyn Fn(&str, &Utf8Path) -> bool,
    ) -> Result<Recorded> {
        Ok(match self.recorded_root_path(root)? {
            None => Recorded::Nothing,
            Some(r) if r == wanted.as_str() => Recorded::Same,
            Some(r) if same_folder(&r, wanted) => Recorded::Respelled(r),
            Some(recorded) => {
                return Err(DbError::RootsDiffer {
                    path: self.path.clone(),
                    which: root.name(),
                    recorded,
                    wanted: wanted.to_string(),
                });
            }
        })
    }

    /// The rows whose source path is stored whole (not below the source
    /// root): id, key and stored path. One pass over the rows; none in a
    /// DB the product made (roots come first).
    fn stored_whole(&self) -> Result<Vec<(i64, RowKey, PathBuf)>> {
        let mut st = self.conn.prepare(
            "SELECT e.id, e.folder, e.name, f.path
             FROM entries e LEFT JOIN folders f ON f.id = e.folder
             WHERE (e.folder = 0 AND CAST(substr(e.name, 1, 1) AS TEXT) = '/')
                OR CAST(substr(f.path, 1, 1) AS TEXT) = '/'",
        )?;
        let rows = st.query_map([], |r| {
            let folder: i64 = r.get(1)?;
            let name = keyed::bytes_of(r.get_ref(2)?)?.to_vec();
            let fpath = match r.get_ref(3)? {
                rusqlite::types::ValueRef::Null => None,
                v => Some(keyed::bytes_of(v)?.to_vec()),
            };
            let stored = keyed::join(if folder == 0 { None } else { fpath.as_deref() }, &name);
            Ok((
                r.get(0)?,
                RowKey { folder, name },
                PathBuf::from(std::ffi::OsStr::from_bytes(&stored)),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Moves row `id` from `key` to stored path `to` (kept where another
    /// row has it already, as `UPDATE OR IGNORE` does).
    fn rekey(&self, id: i64, key: &RowKey, to: &Path) -> Result<()> {
        let new = keyed::key_or_new(&self.conn, to.as_os_str().as_bytes())?;
        let moved = self
            .conn
            .prepare_cached(
                "UPDATE OR IGNORE entries SET folder = ?3, name = ?4
                 WHERE folder = ?1 AND name = ?2",
            )?
            .execute(params![
                key.folder,
                key.name_value(),
                new.folder,
                new.name_value()
            ])?;
        if moved > 0 {
            self.conn
                .prepare_cached("UPDATE entry_extra SET folder = ?2, name = ?3 WHERE id = ?1")?
                .execute(params![id, new.folder, new.name_value()])?;
        }
        Ok(())
    }

    /// Stores below the newly recorded source root the rows written whole
    /// before it was (none in a DB the product made: roots come first).
    fn relativize(&self) -> Result<()> {
        for (id, key, p) in self.stored_whole()? {
            let at = self.key(&p);
            if at != p {
                self.rekey(id, &key, at)?;
            }
        }
        Ok(())
    }

    /// Rewrites the stored paths below root `which` from `old` to `new`.
    /// Pages by rowid, so memory stays flat whatever the row count.
    fn rebase_root(&self, which: JobRoot, old: &str, new: &Utf8Path) -> Result<()> {
        const PAGE: i64 = 10_000;
        // `entries` paths are stored below the source root, and its
        // destinations derived from the destination root where they can be
        // (v12): only whole paths move.
        let columns: &[(&str, &str)] = if which == JobRoot::Source {
            &[]
        } else {
            &[("entry_extra", "dest"), ("dest_entries", "path")]
        };
        let tx = self.begin()?;
        (|| -> Result<()> {
            if which == JobRoot::Source {
                // Only the rows stored whole (not below the old root) move.
                for (id, key, path) in self.stored_whole()? {
                    if let Ok(rel) = path.strip_prefix(old) {
                        let moved = if rel.as_os_str().is_empty() {
                            new.as_std_path().to_path_buf()
                        } else {
                            new.as_std_path().join(rel)
                        };
                        let at = super::compact::stored(Some(new.as_std_path()), &moved);
                        self.rekey(id, &key, at)?;
                    }
                }
            }
            for (table, column) in columns {
                let mut after = 0i64;
                loop {
                    let page: Vec<(i64, PathBuf)> = self
                        .conn
                        .prepare(&format!(
                            "SELECT rowid, {column} FROM {table} WHERE rowid > ?1 AND {column} IS NOT NULL
                             AND CAST(substr({column}, 1, 1) AS TEXT) = '/'
                             ORDER BY rowid LIMIT ?2"
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
            self.record_root_path(which, new.as_str())
        })()?;
        // On an error above, dropping `tx` rolls back.
        tx.commit()
    }
}

/// A synced entry as `jobrun rebase` checks it at a new root: where it is
/// below each root, and what the DB recorded of it.
#[derive(Debug, Clone)]
pub struct RecordedEntry {
    /// Below the source root (`None`: recorded whole, not below it).
    pub below_source: Option<PathBuf>,
    /// Below the destination root (`None`: recorded elsewhere).
    pub below_dest: Option<PathBuf>,
    pub kind: crate::decide::EntryKind,
    pub size: u64,
    pub modified_ns: i128,
    /// What the destination showed right after the copy, if recorded.
    pub after_copy: Option<(u64, i128)>,
}

impl StateDb {
    /// The recorded (source, destination) roots.
    pub fn recorded_roots(&self) -> Result<(Option<String>, Option<String>)> {
        Ok((
            self.recorded_root_path(JobRoot::Source)?,
            self.recorded_root_path(JobRoot::Destination)?,
        ))
    }

    /// Up to `n` synced files and symlinks spread evenly over the folders
    /// (one key seek each).
    pub fn sample_synced(&self, n: usize) -> Result<Vec<RecordedEntry>> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT min(folder), max(folder) FROM entries", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Vec::new());
        };
        let mut st = self.conn.prepare(&format!(
            "SELECT {} FROM {} WHERE (e.folder, e.name) > (?1, ?2) AND e.status = 1
                 AND e.kind <> 1 ORDER BY e.folder, e.name LIMIT 1",
            keyed::COLS,
            keyed::FROM
        ))?;
        let dest_root = self.roots.borrow()[1].clone();
        let mut out = Vec::new();
        let mut last: Option<RowKey> = None;
        for i in 0..n as i64 {
            let at = RowKey {
                folder: lo + (hi - lo) * i / (n as i64).max(1),
                name: Vec::new(),
            };
            // From the spread point, or past the last one taken.
            let from = match last {
                Some(l) if (l.folder, &l.name) >= (at.folder, &at.name) => l,
                _ => at,
            };
            let row = st
                .query_row(params![from.folder, from.name_value()], |r| {
                    keyed::Decoded::read(r, 0)
                })
                .optional()?;
            let Some(d) = row else { break };
            last = Some(d.key.clone());
            let stored = PathBuf::from(std::ffi::OsStr::from_bytes(&d.stored));
            let below_source = stored.is_relative().then(|| stored.clone());
            let below_dest = match &d.dest {
                None => below_source.clone(),
                Some(p) => dest_root
                    .as_deref()
                    .and_then(|root| p.strip_prefix(root).ok())
                    .map(PathBuf::from),
            };
            out.push(RecordedEntry {
                below_source,
                below_dest,
                kind: super::kind_of(rusqlite::types::ValueRef::Integer(d.kind))?,
                size: d.size as u64,
                modified_ns: d.modified,
                after_copy: d.after.map(|(s, m)| (s as u64, m)),
            });
        }
        Ok(out)
    }

    /// Points the DB at new roots (`jobrun rebase`, after its checks):
    /// every row, hash and run kept; only paths stored whole move.
    pub fn move_roots(&self, source: &Utf8Path, destination: &Utf8Path) -> Result<()> {
        for (root, wanted) in JobRoot::BOTH.into_iter().zip([source, destination]) {
            match self.recorded_root_path(root)? {
                Some(old) if old != wanted.as_str() => self.rebase_root(root, &old, wanted)?,
                Some(_) => {}
                None => self.record_root_path(root, wanted.as_str())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::RowStatus;
    use crate::db::files::tests::entry;

    use std::path::Path;

    #[test]
    fn a_root_spelled_otherwise_has_its_rows_moved() {
        let (_dir, _path, mut db) = crate::db::tests::temp_db();
        db.check_roots("/link/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let s1 = db.begin_scan().unwrap();
        let tx = db.begin().unwrap();
        for e in [entry("/link/s", 0, 1), entry("/link/s/a", 1, 10)] {
            let to = Path::new("/d").join(e.path.strip_prefix("/link/s").unwrap());
            tx.insert_source(&e, &to, RowStatus::Pending, s1).unwrap();
        }
        tx.commit().unwrap();
        db.check_roots("/real/s".into(), "/d".into(), &|r, w| {
            r == "/link/s" && w == "/real/s"
        })
        .unwrap();
        assert_eq!(
            db.recorded_root_path(JobRoot::Source).unwrap().as_deref(),
            Some("/real/s")
        );
        assert!(db.has_source(Path::new("/real/s/a")).unwrap());
        assert!(db.has_source(Path::new("/real/s")).unwrap());
        assert!(!db.has_source(Path::new("/link/s/a")).unwrap());
    }

    #[test]
    fn roots_are_remembered_and_checked() {
        let (_dir, _path, db) = crate::db::tests::temp_db();
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
}
