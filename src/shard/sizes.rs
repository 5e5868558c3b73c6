//! The sizes a plan packs: the job's DB when an earlier scan of it ran to
//! its end, else a walk of the source by the house walker (with the job's
//! filters, as a scan would walk it).

use std::path::Path;

use super::pack::Folder;
use crate::db::StateDb;
use crate::decide::EntryKind;
use crate::manifest::Job;
use crate::walk::{LISTERS, Options, Walk};

/// Where a plan's sizes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizesFrom {
    Scan,
    Walk,
}

impl SizesFrom {
    pub fn name(self) -> &'static str {
        match self {
            SizesFrom::Scan => "scan",
            SizesFrom::Walk => "walk",
        }
    }
}

/// The tree's sizes, where they came from, and how many folders a walk
/// could not read (their entries are in no part's figures; the root's
/// rest, or the part above them, still holds them).
pub struct Sizes {
    pub tree: Folder,
    pub from: SizesFrom,
    pub unreadable: u64,
}

/// The source tree's sizes for a plan.
pub fn sizes(job: &Job) -> Result<Sizes, String> {
    let db = StateDb::open_existing_read_only(&job.db).map_err(|e| e.to_string())?;
    if let Some(db) = db.filter(|db| db.scan_finished().unwrap_or(false)) {
        let mut tree = Folder::default();
        let root = job.source.as_std_path();
        db.for_each_source_row(|p, kind, size| {
            if let Some(rel) = crate::relpath::strictly_below(p, root) {
                tree.add(rel, kind == EntryKind::Dir, size);
            }
        })
        .map_err(|e| e.to_string())?;
        return Ok(Sizes {
            tree,
            from: SizesFrom::Scan,
            unreadable: 0,
        });
    }
    walk(job.source.as_std_path(), job)
}

fn walk(root: &Path, job: &Job) -> Result<Sizes, String> {
    let opts = Options {
        filter: job.filter.clone(),
        listers: LISTERS,
        ..Options::default()
    };
    let mut tree = Folder::default();
    let mut unreadable = 0;
    for node in Walk::new(root, opts) {
        let node = match node {
            Ok(n) => n,
            Err((0, path, e)) => {
                return Err(format!(
                    "cannot read the source root `{}`: {e}",
                    path.display()
                ));
            }
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let (Some(rel), Ok(md)) = (crate::relpath::strictly_below(&node.path, root), &node.meta)
        else {
            continue;
        };
        let size = if md.is_file() { md.len() } else { 0 };
        tree.add(rel, md.is_dir(), size);
    }
    Ok(Sizes {
        tree,
        from: SizesFrom::Walk,
        unreadable,
    })
}
