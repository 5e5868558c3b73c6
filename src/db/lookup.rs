//! The scan's lookup of each source entry's row: one statement prepared
//! for the whole scan, the row decoded as the merge compares it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::types::{FromSql, ValueRef};
use rusqlite::{OptionalExtension, params};

use super::keyed;
use super::{KnownRow, Result, RowId, RowStatus, ScanEntry, StateDb, kind_of};
use crate::decide::Stamp;

impl StateDb {
    /// The scan's lookup of source rows by path (see [`SourceLookup`]).
    pub fn source_lookup(&self) -> Result<SourceLookup<'_>> {
        Ok(SourceLookup {
            st: self.conn.prepare(&format!(
                "SELECT {} FROM {} WHERE e.folder = ?1 AND e.name = ?2",
                keyed::COLS,
                keyed::FROM
            ))?,
            db: self,
            folder: None,
        })
    }
}

/// The row of each source path the scan meets, on one statement prepared
/// for the whole scan: a rescan looks up every source entry, and the
/// statement cache's hashing of the SQL text and its bookkeeping cost
/// about as much as the lookup itself. The last folder's id is kept: the
/// walk meets a folder's entries one after another.
pub struct SourceLookup<'db> {
    st: rusqlite::Statement<'db>,
    db: &'db StateDb,
    folder: Option<(Vec<u8>, Option<i64>)>,
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
        Ok(self
            .st
            .query_row(params![folder, keyed::bytes_value(name)], known_row)
            .optional()?)
    }
}

fn known_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KnownRow> {
    let d = keyed::Decoded::read(r, 0)?;
    let kind = kind_of(ValueRef::Integer(d.kind))?;
    Ok(KnownRow {
        id: RowId(d.id),
        entry: ScanEntry {
            path: PathBuf::new(),
            kind,
            size: d.size as u64,
            modified_ns: d.modified,
            accessed_ns: d.accessed,
            changed_ns: d.changed,
            created_ns: d.created,
            mode: d.mode,
            uid: d.uid,
            gid: d.gid,
            link: d.link.map(|(a, b)| (a as u64, b as u64)),
        },
        status: RowStatus::column_result(ValueRef::Integer(d.status)).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, e.into())
        })?,
        after_copy: d.after.map(|(size, m)| Stamp {
            kind,
            size: size as u64,
            modified_ns: m,
        }),
        hashed: d.hash.is_some(),
    })
}
