//! The recorded hashes of synced files, as `verify` checks them and
//! `hashes` lists them.

use std::path::PathBuf;

use super::times::Ns;
use super::{DbError, Result, RowId, StateDb, path_from};

/// A synced file as `verify` checks it and `hashes` lists it.
#[derive(Debug, Clone)]
pub struct HashedFile {
    pub id: RowId,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub size: u64,
    pub modified_ns: i128,
    /// Lowercase hex, as recorded when the file was read from the source.
    pub hash: String,
    /// As the manifest spells it (`sha256`, …).
    pub algorithm: String,
}

impl StateDb {
    /// The algorithms of the recorded hashes of synced files.
    pub fn hash_algorithms(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT hash_algorithm FROM files
             WHERE status = 'synced' AND kind = 'file' AND hash IS NOT NULL
             ORDER BY hash_algorithm",
        )?;
        let rows = st.query_map([], |r| r.get::<_, Option<String>>(0))?;
        Ok(rows
            .filter_map(|r| r.transpose())
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Calls `f` for every synced file with a recorded hash, in rowid order,
    /// from one statement: memory stays constant however many rows there
    /// are. An error from `f` stops the walk and is returned.
    pub fn for_each_hashed<E: From<DbError>>(
        &self,
        mut f: impl FnMut(HashedFile) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut st = self
            .conn
            .prepare(
                "SELECT rowid, source_path, dest_path, size, modified_ns, hash, hash_algorithm
                 FROM files WHERE status = 'synced' AND kind = 'file' AND hash IS NOT NULL
                 ORDER BY rowid",
            )
            .map_err(DbError::from)?;
        let mut rows = st.query([]).map_err(DbError::from)?;
        while let Some(r) = rows.next().map_err(DbError::from)? {
            f(hashed_file(r).map_err(DbError::from)?)?;
        }
        Ok(())
    }
}

pub(super) fn hashed_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<HashedFile> {
    Ok(HashedFile {
        id: r.get(0)?,
        source: path_from(r.get_ref(1)?)?,
        dest: path_from(r.get_ref(2)?)?,
        size: r.get::<_, i64>(3)? as u64,
        modified_ns: r.get::<_, Ns>(4)?.0,
        hash: r.get(5)?,
        algorithm: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
    })
}
