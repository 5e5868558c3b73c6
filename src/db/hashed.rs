//! The recorded hashes of synced files, as `verify` checks them and
//! `hashes` lists them.

use std::path::PathBuf;

use super::{DbError, Result, RowId, StateDb, keyed};

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

    /// Calls `f` for every synced file with a recorded hash, in key order,
    /// from one statement: memory stays constant however many rows there
    /// are. An error from `f` stops the walk and is returned.
    pub fn for_each_hashed<E: From<DbError>>(
        &self,
        mut f: impl FnMut(HashedFile) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM {} WHERE e.status = 1 AND e.kind = 0 AND e.hash IS NOT NULL",
                keyed::COLS,
                keyed::FROM
            ))
            .map_err(DbError::from)?;
        let mut rows = st.query([]).map_err(DbError::from)?;
        while let Some(r) = rows.next().map_err(DbError::from)? {
            let d = keyed::Decoded::read(r, 0).map_err(DbError::from)?;
            let (source, dest) = self.paths_of(&d);
            f(HashedFile {
                id: RowId(d.id),
                source,
                dest,
                size: d.size as u64,
                modified_ns: d.modified,
                hash: d.hash.unwrap_or_default(),
                algorithm: d.algorithm.unwrap_or_default(),
            })?;
        }
        Ok(())
    }
}
