//! Hard-link groups found among the rows: on a source whose names of one
//! file show one inode with a link count of 1 (the SMB client), every
//! file's row records its (device, inode), and a group is the rows that
//! share one. Found by the `extra_link` index alone (`entries_link` in v12, `files_link` before) (covering: only file
//! rows have a key, see `fsmeta::link_key`), never by a map in memory.

use rusqlite::params;

use super::{Result, RowId, StateDb};

impl StateDb {
    /// Whether a row other than `id` records the hard-link key `link`.
    pub fn link_shared(&self, link: (u64, u64), id: RowId) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM entry_extra
                 WHERE link_ino = ?2 AND link_dev = ?1 AND id <> ?3)",
        )?;
        Ok(st.query_row(params![link.0 as i64, link.1 as i64, id.0], |r| r.get(0))?)
    }

    /// The file rows on device `dev` whose hard-link key another row
    /// shares: the names of the hard-link groups found there, in one pass
    /// over the index.
    pub fn shared_link_names(&self, dev: u64) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(n), 0) FROM (
                 SELECT COUNT(*) AS n FROM entry_extra
                 WHERE link_ino IS NOT NULL AND link_dev = ?1
                 GROUP BY link_ino HAVING n > 1)",
            [dev as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ScanEntry;
    use crate::db::RowStatus;
    use crate::decide::EntryKind;
    use crate::fsmeta::link_key;
    use std::path::{Path, PathBuf};

    /// A file row as the scan makes it from a stat on the SMB client: a
    /// link count of 1, grouped by inode number on `dev`.
    fn smb_file(name: &str, ino: u64) -> ScanEntry {
        let dev = 40;
        ScanEntry {
            path: PathBuf::from("/src").join(name),
            kind: EntryKind::File,
            size: 5,
            modified_ns: 1_000_000_000,
            accessed_ns: 1_000_000_000,
            changed_ns: 1_000_000_000,
            created_ns: None,
            mode: 0o100_644,
            uid: 0,
            gid: 0,
            link: link_key(true, 1, (dev, ino), Some(dev)),
        }
    }

    #[test]
    fn groups_are_the_rows_sharing_an_inode_whatever_the_link_count() {
        let (_dir, _, mut db) = super::super::tests::temp_db();
        assert_eq!(db.shared_link_names(40).unwrap(), 0);
        let scan = db.begin_scan().unwrap();
        let mut ids = Vec::new();
        let tx = db.begin().unwrap();
        for (name, ino) in [
            ("a1", 7),
            ("a2", 7),
            ("a3", 7),
            ("b", 8),
            ("c1", 9),
            ("c2", 9),
        ] {
            let e = smb_file(name, ino);
            let to = Path::new("/dst").join(name);
            ids.push(tx.insert_source(&e, &to, RowStatus::Pending, scan).unwrap());
        }
        tx.commit().unwrap();
        assert!(db.link_shared((40, 7), ids[0]).unwrap());
        assert!(db.link_shared((40, 9), ids[5]).unwrap());
        // A file alone with its inode: a plain copy.
        assert!(!db.link_shared((40, 8), ids[3]).unwrap());
        // Same inode number on another device: another file.
        assert!(!db.link_shared((41, 7), ids[0]).unwrap());
        assert_eq!(db.shared_link_names(40).unwrap(), 5);
        assert_eq!(db.shared_link_names(41).unwrap(), 0, "another device's");
    }
}
