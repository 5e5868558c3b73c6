//! The job's recorded roots: remembered on first use, checked on every
//! open, and stored paths moved when a root is recorded under another
//! spelling of the same folder.

use std::path::PathBuf;

use camino::Utf8Path;
use rusqlite::{OptionalExtension, params};

use super::{DbError, JobRoot, Result, StateDb, path_from, path_value};

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

    /// Stores below the newly recorded source root the rows written whole
    /// before it was (none in a DB the product made: roots come first).
    fn relativize(&self) -> Result<()> {
        let whole: Vec<(i64, PathBuf)> = self
            .conn
            .prepare(
                "SELECT rowid, path FROM entries WHERE CAST(substr(path, 1, 1) AS TEXT) = '/'",
            )?
            .query_map([], |r| Ok((r.get(0)?, path_from(r.get_ref(1)?)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut update = self
            .conn
            .prepare("UPDATE OR IGNORE entries SET path = ?2 WHERE rowid = ?1")?;
        for (id, p) in &whole {
            let at = self.key(p);
            if at != p {
                update.execute(params![id, path_value(at)])?;
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
            &[("entries", "path")]
        } else {
            &[("entries", "dest"), ("dest_entries", "path")]
        };
        let tx = self.begin()?;
        (|| -> Result<()> {
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
                            // A source path whole (written before v12 or
                            // through the view) is stored below the new root.
                            let at = if *column == "path" {
                                super::compact::stored(Some(new.as_std_path()), &moved)
                            } else {
                                &moved
                            };
                            update.execute(params![id, path_value(at)])?;
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

    /// Up to `n` synced files and symlinks spread evenly over the rows (one
    /// rowid seek each).
    pub fn sample_synced(&self, n: usize) -> Result<Vec<RecordedEntry>> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT min(rowid), max(rowid) FROM entries", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Vec::new());
        };
        let mut st = self.conn.prepare(
            "SELECT rowid, path, dest, kind, size, modified_ns, after_copy_size,
                    after_copy_modified_ns
             FROM entries WHERE rowid >= ?1 AND status = 1 AND kind <> 1 ORDER BY rowid LIMIT 1",
        )?;
        let dest_root = self.roots.borrow()[1].clone();
        let (mut out, mut last) = (Vec::new(), i64::MIN);
        for i in 0..n as i64 {
            let at = lo + (hi - lo) * i / (n as i64).max(1);
            let row = st
                .query_row([at.max(last + 1)], |r| {
                    let stored = path_from(r.get_ref(1)?)?;
                    let dest: Option<PathBuf> = match r.get_ref(2)? {
                        rusqlite::types::ValueRef::Null => None,
                        v => Some(path_from(v)?),
                    };
                    let below_source = stored.is_relative().then(|| stored.clone());
                    let below_dest = match dest {
                        None => below_source.clone(),
                        Some(d) => dest_root
                            .as_deref()
                            .and_then(|root| d.strip_prefix(root).ok())
                            .map(PathBuf::from),
                    };
                    let after = match (
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<super::times::Ns>>(7)?,
                    ) {
                        (Some(s), Some(m)) => Some((s as u64, m.0)),
                        _ => None,
                    };
                    Ok((
                        r.get::<_, i64>(0)?,
                        RecordedEntry {
                            below_source,
                            below_dest,
                            kind: super::kind_of(r.get_ref(3)?)?,
                            size: r.get::<_, i64>(4)? as u64,
                            modified_ns: r.get::<_, super::times::Ns>(5)?.0,
                            after_copy: after,
                        },
                    ))
                })
                .optional()?;
            let Some((id, e)) = row else { break };
            if id > last {
                last = id;
                out.push(e);
            }
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
