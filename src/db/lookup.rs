//! The scan's lookup of each source entry's row: one statement prepared
//! for the whole scan, the row decoded as the merge compares it.

use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;

use super::files::link_of;
use super::times::Ns;
use super::{KnownRow, Result, ScanEntry, StateDb, kind_of, path_value};
use crate::decide::Stamp;

impl StateDb {
    /// The scan's lookup of source rows by path (see [`SourceLookup`]).
    pub fn source_lookup(&self) -> Result<SourceLookup<'_>> {
        Ok(SourceLookup {
            st: self.conn.prepare(FIND_SOURCE)?,
            db: self,
        })
    }
}

const FIND_SOURCE: &str =
    "SELECT rowid, kind, size, modified_ns, accessed_ns, changed_ns, created_ns,
            mode, uid, gid, status, after_copy_size, after_copy_modified_ns, hash IS NOT NULL,
            link_dev, link_ino
     FROM entries WHERE path = ?1";

/// The row of each source path the scan meets, on one statement prepared
/// for the whole scan: a rescan looks up every source entry, and the
/// statement cache's hashing of the SQL text and its bookkeeping cost
/// about as much as the lookup itself.
pub struct SourceLookup<'db> {
    st: rusqlite::Statement<'db>,
    db: &'db StateDb,
}

impl SourceLookup<'_> {
    /// The row of `path`; `None` when new.
    pub fn find(&mut self, path: &Path) -> Result<Option<KnownRow>> {
        Ok(self
            .st
            .query_row([path_value(self.db.key(path))], known_row)
            .optional()?)
    }
}

fn known_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KnownRow> {
    let kind = kind_of(r.get_ref(1)?)?;
    let after = match (r.get::<_, Option<i64>>(11)?, r.get::<_, Option<Ns>>(12)?) {
        (Some(size), Some(m)) => Some(Stamp {
            kind,
            size: size as u64,
            modified_ns: m.0,
        }),
        _ => None,
    };
    Ok(KnownRow {
        id: r.get(0)?,
        entry: ScanEntry {
            path: PathBuf::new(),
            kind,
            size: r.get::<_, i64>(2)? as u64,
            modified_ns: r.get::<_, Ns>(3)?.0,
            accessed_ns: r.get::<_, Ns>(4)?.0,
            changed_ns: r.get::<_, Ns>(5)?.0,
            created_ns: r.get::<_, Option<Ns>>(6)?.map(|t| t.0),
            mode: r.get(7)?,
            uid: r.get(8)?,
            gid: r.get(9)?,
            link: link_of(r.get(14)?, r.get(15)?),
        },
        status: r.get(10)?,
        after_copy: after,
        hashed: r.get(13)?,
    })
}
