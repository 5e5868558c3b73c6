//! Hard links (`hard_links`): the names of one source inode (a link count
//! above 1, or any file on the SMB client, whose names of one file show one
//! inode with a link count of 1; the scan records its (device, inode), see
//! `fsmeta::link_key`) arrive as one inode.
//!
//! The state DB holds the groups: the feed ([`Groups::route`]) sends a
//! pending name whose group already has a synced copy (this run, an
//! earlier one, another lane, a resumed one) as a link to that copy; the
//! first name of a group not yet copied is copied, and the group's other
//! names are held back for a next round of lanes in the same run, which
//! links them (`transfer::lanes`). A destination that refuses `link()`
//! gets copies of the copy made ([`refused`]), counted and said once per
//! run ([`report`]).

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tracing::warn;

use crate::db::{DbError, PendingFile, StateDb};
use crate::manifest::Job;

/// What the feed knows of the groups in one round of lanes.
pub struct Groups {
    on: bool,
    algorithm: &'static str,
    /// Groups whose first name this round copies.
    claimed: HashSet<(u64, u64)>,
    /// Names held back for the next round: their group's copy is being made.
    pub held: u64,
}

impl Groups {
    pub fn new(job: &Job) -> Self {
        Self {
            on: job.hard_links,
            algorithm: job.checksum.name(),
            claimed: HashSet::new(),
            held: 0,
        }
    }

    /// Whether the feed sends `row` now: as a link when its group has a
    /// copy (`row.link_to`), as a copy when it is alone with its key or its
    /// group's first name in this round; held back (false) otherwise. One
    /// DB query per row alone with its key, two per name of a group, none
    /// for a row without a key; only the groups of more than one row are
    /// claimed (on the SMB client every file has a key: memory follows the
    /// groups, not the files).
    pub fn route(&mut self, db: &StateDb, row: &mut PendingFile) -> Result<bool, DbError> {
        let Some(key) = row.link.filter(|_| self.on) else {
            return Ok(true);
        };
        // Alone with its key (most files on the SMB client): one query.
        if !self.claimed.contains(&key) && !db.link_shared(key, row.id)? {
            return Ok(true);
        }
        if let Some(copy) = db.linked_copy(key, row.size, row.modified_ns, self.algorithm)? {
            row.link_to = Some(copy);
            return Ok(true);
        }
        if self.claimed.insert(key) {
            return Ok(true);
        }
        self.held += 1;
        Ok(false)
    }
}

/// A destination that cannot hold this hard link: the name gets a copy.
pub fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::ENOTSUP | libc::EMLINK | libc::EXDEV | libc::ENOSYS)
    )
}

/// The run's one line when the destination refused hard links.
pub fn report(refused: &AtomicU64) {
    let n = refused.load(Relaxed);
    if n > 0 {
        warn!(
            count = n,
            "{n} hard-linked names copied instead of linked: the destination refuses hard links"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::db::{RowStatus, ScanEntry, Synced};
    use crate::decide::EntryKind;
    use crate::fsmeta::link_key;

    /// The row the scan makes of a stat on the SMB client: link count 1,
    /// inode `ino` on its device, keyed by inode number.
    fn smb_stat(name: &str, ino: u64) -> ScanEntry {
        let dev = 40;
        ScanEntry {
            path: PathBuf::from("/src").join(name),
            kind: EntryKind::File,
            size: 5,
            modified_ns: 7,
            accessed_ns: 7,
            changed_ns: 7,
            created_ns: None,
            mode: 0o100_644,
            uid: 0,
            gid: 0,
            link: link_key(true, 1, (dev, ino), Some(dev)),
        }
    }

    fn groups() -> Groups {
        Groups {
            on: true,
            algorithm: "sha256",
            claimed: HashSet::new(),
            held: 0,
        }
    }

    /// Names of one inode with a link count of 1 (the SMB client) form a
    /// group: the first is copied, the others held back and, once its copy
    /// is synced, linked to it; a file alone with its inode is a plain
    /// copy that claims nothing (memory follows the groups, not the files).
    #[test]
    fn names_sharing_an_inode_with_a_link_count_of_1_are_one_group() {
        let t = tempfile::tempdir().unwrap();
        let path = camino::Utf8PathBuf::from_path_buf(t.path().join("s.db")).unwrap();
        let mut db = StateDb::open(&path).unwrap();
        let scan = db.begin_scan().unwrap();
        let tx = db.begin().unwrap();
        for (name, ino) in [("a1", 7), ("a2", 7), ("b", 8), ("c", 9), ("a3", 7)] {
            let to = Path::new("/dst").join(name);
            tx.insert_source(&smb_stat(name, ino), &to, RowStatus::Pending, scan)
                .unwrap();
        }
        tx.commit().unwrap();
        let mut g = groups();
        let mut sent = Vec::new();
        for mut row in db.pending_page(None, 100).unwrap() {
            if g.route(&db, &mut row).unwrap() {
                assert!(row.link_to.is_none(), "nothing is synced yet");
                sent.push(row);
            }
        }
        let names: Vec<_> = sent.iter().map(|r| r.source.clone()).collect();
        let src = |n: &str| PathBuf::from("/src").join(n);
        assert_eq!(names, [src("a1"), src("b"), src("c")]);
        assert_eq!(g.held, 2, "a2 and a3 wait for a1's copy");
        assert_eq!(
            g.claimed,
            HashSet::from([(40, 7)]),
            "singletons claim nothing"
        );
        // a1's copy synced: the next round links a2 and a3 to it.
        let tx = db.begin().unwrap();
        tx.mark_synced(&Synced {
            id: sent[0].id,
            hash: Some("ab"),
            algorithm: Some("sha256"),
            size: 5,
            modified_ns: 7,
            changed_ns: None,
            after_copy: None,
        })
        .unwrap();
        tx.commit().unwrap();
        let mut g = groups();
        for mut row in db.pending_page(None, 100).unwrap() {
            assert!(g.route(&db, &mut row).unwrap());
            let to = row.link_to.as_ref().map(|c| c.dest.clone());
            let grouped = row.source.ends_with("a2") || row.source.ends_with("a3");
            assert_eq!(to, grouped.then(|| PathBuf::from("/dst/a1")), "{row:?}");
        }
        assert!(g.claimed.is_empty());
    }
}
