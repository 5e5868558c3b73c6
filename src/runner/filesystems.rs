//! The roots' filesystems against the ones the DB recorded at the job's
//! first run (see [`roots::fs_check`]): the one mount rail of the roots,
//! for the run, `check` and `verify`.

use camino::Utf8Path;

use super::RunError;
use crate::db::{JobRoot, StateDb};
use crate::manifest::Job;
use crate::roots::{self, Filesystem, FsCheck};

/// Whether to record a root's filesystem on first sight (a run) or only
/// compare (`check`, `verify`: they write nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Yes,
    No,
}

/// Checks both roots: each must be on the filesystem recorded (or, first
/// sighted, is recorded now), and on a network filesystem when
/// `require_mounts` is on. `db`: `None` when there is no DB yet (`check`).
pub fn check_filesystems(job: &Job, db: Option<&StateDb>, record: Record) -> Result<(), RunError> {
    for (which, root) in JobRoot::BOTH
        .into_iter()
        .zip([&job.source, &job.destination])
    {
        check_filesystem(job, db, which, root, record)?;
    }
    Ok(())
}

/// [`check_filesystems`] for one root.
pub fn check_filesystem(
    job: &Job,
    db: Option<&StateDb>,
    which: JobRoot,
    root: &Utf8Path,
    record: Record,
) -> Result<(), RunError> {
    let now = Filesystem::of(root.as_std_path()).map_err(|source| RunError::FsUnknown {
        which: which.name(),
        path: root.to_owned(),
        source,
    })?;
    let (recorded, legacy) = match db {
        Some(db) => (
            db.root_filesystem(which)?
                .as_deref()
                .and_then(Filesystem::from_meta),
            db.mount_point(which)?,
        ),
        None => (None, None),
    };
    let check = roots::fs_check(
        recorded.as_ref(),
        legacy,
        root.as_std_path(),
        &now,
        job.require_mounts,
    );
    match check {
        FsCheck::Same => Ok(()),
        FsCheck::Record => {
            if let (Some(db), Record::Yes) = (db, record) {
                db.set_root_filesystem(which, &now.to_meta())?;
            }
            Ok(())
        }
        FsCheck::Moved { recorded } => Err(RunError::OtherFilesystem {
            which: which.name(),
            path: root.to_owned(),
            recorded,
            now: now.to_string(),
        }),
        FsCheck::NotNetwork => Err(RunError::NotNetwork {
            which: which.name(),
            path: root.to_owned(),
            now: now.to_string(),
        }),
    }
}
