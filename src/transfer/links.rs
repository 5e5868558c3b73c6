//! Hard links (`hard_links`): the names of one source inode (a link count
//! above 1; the scan records its (device, inode), see `fsmeta::to_entry`)
//! arrive as one inode.
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
    /// copy (`row.link_to`), as a copy when it is its group's first name in
    /// this round; held back (false) otherwise. One DB query per name of a
    /// group, none for any other row.
    pub fn route(&mut self, db: &StateDb, row: &mut PendingFile) -> Result<bool, DbError> {
        let Some(key) = row.link.filter(|_| self.on) else {
            return Ok(true);
        };
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
