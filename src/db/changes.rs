//! The `type_changes` table: the source entries whose destination
//! counterpart the last scan found as another type across the folder line
//! (a folder where the source has a file or symlink, or a file or symlink
//! where the source has a folder). The scan writes it; the transfer acts on
//! it (replaces a non-folder, waits for the mirror to remove a folder, or
//! fails the entry) and forgets each one it settled; the mirror adds the
//! folders that must go to its candidates. Usually empty.

use std::path::{Path, PathBuf};

use rusqlite::params;

use super::times::Ns;
use super::{Result, RowId, RowStatus, StateDb, Tx, kind_of, path_from, path_value};
use crate::decide::{EntryKind, Stamp};

/// One type change with its source row as it stands now.
#[derive(Debug, Clone)]
pub struct TypeChange {
    pub id: RowId,
    pub source: PathBuf,
    pub dest: PathBuf,
    /// The source row's kind now.
    pub kind: EntryKind,
    pub status: RowStatus,
    pub size: u64,
    pub modified_ns: i128,
    /// The destination entry as the scan saw it.
    pub dest_stamp: Stamp,
}

impl StateDb {
    /// Every recorded type change whose source row still exists.
    pub fn type_changes(&self) -> Result<Vec<TypeChange>> {
        let mut st = self.conn.prepare(
            "SELECT source_path, dest_kind, dest_size, dest_modified_ns FROM type_changes
             ORDER BY source_path",
        )?;
        let noted = st
            .query_map([], |r| {
                Ok((
                    path_from(r.get_ref(0)?)?,
                    Stamp {
                        kind: kind_of(r.get_ref(1)?)?,
                        size: r.get::<_, i64>(2)? as u64,
                        modified_ns: r.get::<_, Ns>(3)?.0,
                    },
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut found = Vec::new();
        for (source, dest_stamp) in noted {
            let Some(d) = self.decoded(&source)? else {
                continue;
            };
            let (_, dest) = self.paths_of(&d);
            found.push(TypeChange {
                id: RowId(d.id),
                source,
                dest,
                kind: kind_of(rusqlite::types::ValueRef::Integer(d.kind))?,
                status: rusqlite::types::FromSql::column_result(
                    rusqlite::types::ValueRef::Integer(d.status),
                )
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Integer,
                        Box::new(e),
                    )
                })?,
                size: d.size as u64,
                modified_ns: d.modified,
                dest_stamp,
            });
        }
        Ok(found)
    }

    /// Adds to the mirror's candidates the destination folders that must
    /// go because their source is now a file or a symlink, as listed (the
    /// folder's contents have no source row and are candidates already).
    /// Returns how many.
    pub fn add_type_change_candidates(&mut self) -> Result<u64> {
        Ok(self.conn.execute(
            "INSERT OR REPLACE INTO temp.mirror_candidates (path, kind, size, modified_ns)
             SELECT d.path, d.kind, d.size, d.modified_ns
             FROM type_changes t JOIN dest_entries d ON d.path = t.dest_path
             WHERE t.dest_kind = 'dir' AND d.kind = 'dir'",
            [],
        )? as u64)
    }
}

/// The scan's and the transfer's writes: each in the caller's batch.
impl Tx<'_> {
    /// Forgets every type change (a scan records them afresh).
    pub fn clear_type_changes(&self) -> Result<()> {
        self.conn.execute("DELETE FROM type_changes", [])?;
        Ok(())
    }

    /// Records that the destination counterpart `dest` of `source` is
    /// `found` (another type across the folder line).
    pub fn note_type_change(&self, source: &Path, dest: &Path, found: &Stamp) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO type_changes
                     (source_path, dest_path, dest_kind, dest_size, dest_modified_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                path_value(source),
                path_value(dest),
                found.kind.as_str(),
                found.size as i64,
                Ns(found.modified_ns)
            ])?;
        Ok(())
    }

    /// Forgets the type change of `source` (settled).
    pub fn forget_type_change(&self, source: &Path) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM type_changes WHERE source_path = ?1")?
            .execute([path_value(source)])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::files::tests::entry;

    #[test]
    fn recorded_changes_join_their_rows_and_are_forgotten() {
        let (_dir, _path, db) = crate::db::tests::temp_db();
        let tx = db.begin().unwrap();
        let e = entry("/s/e", 3, 3);
        tx.insert_source(&e, Path::new("/d/e"), RowStatus::Pending, 1)
            .unwrap();
        let found = Stamp {
            kind: EntryKind::Dir,
            size: 4096,
            modified_ns: 7,
        };
        tx.note_type_change(Path::new("/s/e"), Path::new("/d/e"), &found)
            .unwrap();
        // A change whose row is gone (dropped by the scan) is not listed.
        tx.note_type_change(Path::new("/s/gone"), Path::new("/d/gone"), &found)
            .unwrap();
        tx.commit().unwrap();
        let all = db.type_changes().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].dest_stamp, found);
        assert_eq!(all[0].kind, EntryKind::File);
        assert_eq!(all[0].dest, Path::new("/d/e"));
        let tx = db.begin().unwrap();
        tx.forget_type_change(Path::new("/s/e")).unwrap();
        tx.commit().unwrap();
        assert!(db.type_changes().unwrap().is_empty());
    }
}
