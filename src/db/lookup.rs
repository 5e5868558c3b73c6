//! The scan's lookup of each source entry's row: statements prepared for
//! the whole scan, a folder's rows read ahead in walk order, each row
//! decoded only as far as the merge compares it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::types::{FromSql, ValueRef};
use rusqlite::{OptionalExtension, params};

use super::keyed;
use super::{KnownRow, Result, RowId, RowStatus, ScanEntry, StateDb, kind_of};
use crate::decide::Stamp;

impl StateDb {
    /// The scan's lookup of source rows by path (see [`SourceLookup`]).
    /// `ordered`: the paths come in walk order, a folder's names bytewise
    /// ascending (not so on a case-insensitive destination, whose walk
    /// sorts by folded name); rows are then read ahead a window at a time.
    pub fn source_lookup(&self, ordered: bool) -> Result<SourceLookup<'_>> {
        Ok(SourceLookup {
            reads: if ordered {
                Reads::Ahead([
                    // All TEXT sorts before any BLOB (x'' the least BLOB).
                    self.conn.prepare(&format!(
                        "SELECT e.name, {LOOKUP_COLS} {LOOKUP_FROM}
                         AND e.name >= ?2 AND e.name < x'' ORDER BY e.name LIMIT {WINDOW}"
                    ))?,
                    self.conn.prepare(&format!(
                        "SELECT e.name, {LOOKUP_COLS} {LOOKUP_FROM}
                         AND e.name >= ?2 ORDER BY e.name LIMIT {WINDOW}"
                    ))?,
                ])
            } else {
                Reads::Seek(self.conn.prepare(&format!(
                    "SELECT {LOOKUP_COLS} {LOOKUP_FROM} AND e.name = ?2"
                ))?)
            },
            db: self,
            folder: None,
            windows: Default::default(),
        })
    }
}

/// SQL: what the merge compares, by key. Neither the folder's path (the
/// caller has it) nor the hash (only whether there is one) is read, and
/// nothing is decoded that the merge does not compare.
const LOOKUP_COLS: &str = "e.id, e.kind, e.status, e.size,
        e.mtime, e.mtime_ns, e.atime_d, e.ctime_d, e.birth_d,
        e.mode_x, e.owner, e.hash IS NOT NULL, e.after_d, x.after_size, x.link_dev, x.link_ino";
const LOOKUP_FROM: &str =
    "FROM entries e LEFT JOIN entry_extra x ON x.id = e.id WHERE e.folder = ?1";

/// Rows read ahead at a time.
const WINDOW: usize = 256;

/// The row of each source path the scan meets, on statements prepared for
/// the whole scan: a rescan looks up every source entry, and the statement
/// cache's hashing of the SQL text and its bookkeeping cost about as much
/// as the lookup itself. The last folder's id is kept: the walk meets a
/// folder's entries one after another.
///
/// In walk order, a folder's rows are read ahead in key order, [`WINDOW`]
/// at a time, and each path is matched against them instead of sought:
/// one query per window, not per entry. Names stored as TEXT (UTF-8) and
/// as BLOB sort apart in SQLite, so each has its own window; within each,
/// bytewise order is the walk's. A path that comes before the last one
/// asked for in its folder starts its window again (never a wrong miss).
/// The window holds rows not yet asked for; the scan writes only the row
/// of the path it asked for last, so they stay as read.
pub struct SourceLookup<'db> {
    reads: Reads<'db>,
    db: &'db StateDb,
    folder: Option<(Vec<u8>, Option<i64>)>,
    windows: [Window; 2],
}

/// How [`SourceLookup`] reads rows.
enum Reads<'db> {
    /// One query per path (paths not in bytewise order).
    Seek(rusqlite::Statement<'db>),
    /// Windows read ahead (TEXT names, BLOB names), paths in walk order.
    Ahead([rusqlite::Statement<'db>; 2]),
}

/// Rows of one folder read ahead, names of one storage class.
#[derive(Default)]
struct Window {
    folder: i64,
    /// The name last asked for; `None`: the window is empty and unread.
    asked: Option<Vec<u8>>,
    /// Rows not yet asked for, in key order, with their names.
    rows: std::collections::VecDeque<(Vec<u8>, KnownRow)>,
    /// No row after the last one read in this folder.
    done: bool,
}

impl SourceLookup<'_> {
    /// The row of `path`; `None` when new.
    pub fn find(&mut self, path: &Path) -> Result<Option<KnownRow>> {
        let stored = self.db.key(path).as_os_str().as_bytes();
        let (parent, name) = keyed::split(stored);
        let folder = match (parent, &self.folder) {
            (None, _) => Some(0),
            (Some(p), Some((last, id))) if p == last.as_slice() && id.is_some() => *id,
            (Some(p), _) => {
                let id = keyed::folder_id(&self.db.conn, Some(p))?;
                // Only a folder found is kept: one recorded later (by this
                // scan's inserts) is looked up again.
                self.folder = Some((p.to_vec(), id));
                id
            }
        };
        let Some(folder) = folder else {
            return Ok(None);
        };
        let ahead = match &mut self.reads {
            Reads::Ahead(ahead) => ahead,
            Reads::Seek(st) => {
                return Ok(st
                    .query_row(params![folder, keyed::bytes_value(name)], |r| {
                        known_row(r, 0)
                    })
                    .optional()?);
            }
        };
        let class = usize::from(std::str::from_utf8(name).is_err());
        let w = &mut self.windows[class];
        if w.folder != folder || w.asked.as_deref().is_none_or(|a| name <= a) {
            // A new folder, or out of order: read again from this name.
            *w = Window {
                folder,
                ..Window::default()
            };
        }
        // The buffer is kept from path to path (no allocation per entry).
        match &mut w.asked {
            Some(a) => {
                a.clear();
                a.extend_from_slice(name);
            }
            None => w.asked = Some(name.to_vec()),
        }
        loop {
            while w.rows.front().is_some_and(|(n, _)| n.as_slice() < name) {
                w.rows.pop_front();
            }
            if let Some((n, _)) = w.rows.front() {
                return Ok(if n.as_slice() == name {
                    w.rows.pop_front().map(|(_, row)| row)
                } else {
                    None
                });
            }
            if w.done {
                return Ok(None);
            }
            // The window is used up (every row read is before this name):
            // read the next one, from this name.
            let mut rows = ahead[class].query(params![folder, keyed::bytes_value(name)])?;
            while let Some(r) = rows.next()? {
                let key = keyed::bytes_of(r.get_ref(0)?)?.to_vec();
                w.rows.push_back((key, known_row(r, 1)?));
            }
            w.done = w.rows.len() < WINDOW;
        }
    }
}

/// The columns of [`LOOKUP_COLS`] from column `at` on.
fn known_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<KnownRow> {
    let code: i64 = r.get(at + 1)?;
    let kind = kind_of(ValueRef::Integer(code))?;
    let size: i64 = r.get(at + 3)?;
    let t = keyed::Times::read(r, at + 4)?;
    let (uid, gid) = keyed::owner_of(r.get_ref(at + 10)?)?;
    Ok(KnownRow {
        id: RowId(r.get(at)?),
        entry: ScanEntry {
            path: PathBuf::new(),
            kind,
            size: size as u64,
            modified_ns: t.modified,
            accessed_ns: t.accessed,
            changed_ns: t.changed,
            created_ns: t.created,
            mode: keyed::mode_of(code, r.get(at + 9)?),
            uid,
            gid,
            link: match (
                r.get::<_, Option<i64>>(at + 14)?,
                r.get::<_, Option<i64>>(at + 15)?,
            ) {
                (Some(d), Some(i)) => Some((d as u64, i as u64)),
                _ => None,
            },
        },
        status: RowStatus::column_result(r.get_ref(at + 2)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                at + 2,
                rusqlite::types::Type::Integer,
                e.into(),
            )
        })?,
        after_copy: match r.get_ref(at + 12)? {
            ValueRef::Null => None,
            d => Some(Stamp {
                kind,
                size: r.get::<_, Option<i64>>(at + 13)?.unwrap_or(size) as u64,
                modified_ns: keyed::undelta(t.modified, d)?,
            }),
        },
        hashed: r.get(at + 11)?,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::db::RowStatus;
    use crate::db::files::tests::entry;

    fn path(name: &[u8]) -> PathBuf {
        Path::new("/s/d").join(OsStr::from_bytes(name))
    }

    /// Every answer of the read-ahead, in walk order and out of it, across
    /// windows and both storage classes of names, is the point lookup's.
    #[test]
    fn reading_ahead_finds_what_seeking_finds() {
        let (_dir, _path, mut db) = crate::db::tests::temp_db();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let s = db.begin_scan().unwrap();
        // Recorded: every third of 9 × WINDOW names (three windows), half of them not
        // UTF-8 (stored as BLOB), and a row in the next folder.
        let name = |i: usize| -> Vec<u8> {
            let mut n = format!("f{i:05}").into_bytes();
            if i % 2 == 1 {
                n.push(0xff);
            }
            n
        };
        let tx = db.begin().unwrap();
        tx.insert_source(
            &entry("/s/d", 0, 1),
            Path::new("/d/d"),
            RowStatus::Synced,
            s,
        )
        .unwrap();
        for i in (0..9 * WINDOW).filter(|i| i % 3 == 0) {
            let mut e = entry("", i as u64, 7);
            e.path = path(&name(i));
            tx.insert_source(&e, Path::new("/d/x"), RowStatus::Pending, s)
                .unwrap();
        }
        let mut e = entry("/s/d/g/z", 9, 7);
        e.path = Path::new("/s/d/g/z").into();
        tx.insert_source(
            &entry("/s/d/g", 0, 1),
            Path::new("/d/d/g"),
            RowStatus::Synced,
            s,
        )
        .unwrap();
        tx.insert_source(&e, Path::new("/d/d/g/z"), RowStatus::Pending, s)
            .unwrap();
        tx.commit().unwrap();

        // The walk's order: bytewise; then some paths again, out of order,
        // and one twice in a row.
        let mut asked: Vec<PathBuf> = (0..9 * WINDOW + 5).map(|i| path(&name(i))).collect();
        asked.sort();
        asked.extend([path(&name(3)), path(&name(0)), path(&name(9 * WINDOW - 3))]);
        asked.push("/s/d/g/z".into());
        asked.push(path(&name(6)));
        asked.push(path(&name(6)));
        let answers = |ordered: bool| -> Vec<Option<(RowId, u64)>> {
            let mut l = db.source_lookup(ordered).unwrap();
            asked
                .iter()
                .map(|p| l.find(p).unwrap().map(|k| (k.id, k.entry.size)))
                .collect()
        };
        let seeking = answers(false);
        assert_eq!(seeking.iter().flatten().count(), 3 * WINDOW + 6);
        assert_eq!(answers(true), seeking);
    }
}
