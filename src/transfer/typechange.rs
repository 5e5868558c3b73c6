//! Type changes, settled before any lane starts: the entries the last scan
//! found as another type across the folder line at the destination (see
//! `db::TypeChange`). Each is judged by `decide::type_action` against what
//! is there now: a file or symlink the source replaced with a folder is
//! removed (as an overwrite replaces it; the lanes then make the folder), a
//! folder the source replaced with a file or symlink waits for the mirror
//! (which empties and removes it through its own rails, after which the
//! runner calls this stage again) or fails with a reason naming
//! `delete_extras`. Nothing here removes a folder.

use std::io;
use std::path::Path;

use tracing::{debug, warn};

use super::TransferError;
use crate::audit::FileRecord;
use crate::beneath::Root;
use crate::db::{RowStatus, TypeChange};
use crate::decide::{self, DestNow, EntryKind, TransferPass, TypeAction, TypeChangeNow};
use crate::stage::RunCtx;

/// Settles every recorded type change; returns how many entries wait for
/// the mirror (they stay pending, and the backlog feed leaves them out).
pub(super) fn settle(
    ctx: &mut RunCtx<'_>,
    source: &Root,
    dest: &Root,
    pass: TransferPass,
) -> Result<u64, TransferError> {
    let changes = ctx.db.type_changes()?;
    if changes.is_empty() {
        return Ok(0);
    }
    let delete_extras = ctx.job.delete_extras;
    let mut waiting = 0;
    let tx = ctx.db.begin()?;
    for c in &changes {
        let now = TypeChangeNow {
            kind: c.kind,
            pending: c.status == RowStatus::Pending,
            recorded: c.dest_stamp,
            dest: dest_now(dest, &c.dest),
            source_is_dir: c.dest_stamp.kind != EntryKind::Dir
                && source
                    .stat(&c.source)
                    .is_ok_and(|md| md.kind == Some(EntryKind::Dir)),
        };
        match decide::type_action(&now, delete_extras, pass) {
            TypeAction::WaitForMirror => {
                waiting += 1;
                continue;
            }
            TypeAction::Replace => replace(dest, c),
            TypeAction::Forget => {}
            TypeAction::Fail(why) => {
                let error = decide::type_refusal_text(why, &c.dest, c.kind);
                warn!(path = %c.source.display(), %error, "not copied");
                tx.mark_failed(c.id, &error)?;
                let mut rec = FileRecord::new("failed", &c.source, &c.dest, c.size)
                    .entry(c.kind.as_str(), c.modified_ns);
                rec.error = Some(&error);
                ctx.audit.write(&rec)?;
                ctx.progress.file_failed();
            }
        }
        tx.forget_type_change(&c.source)?;
    }
    // The failed lines reach the log before their rows say so.
    ctx.audit.flush()?;
    tx.commit()?;
    Ok(waiting)
}

/// What the destination holds at `path` now, below the held root through
/// no symlink.
fn dest_now(dest: &Root, path: &Path) -> DestNow {
    match dest.stat(path) {
        Ok(md) => md.stamp().map_or(DestNow::Unknown, DestNow::Is),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DestNow::Gone,
        Err(e) => {
            debug!(path = %path.display(), error = %e, "type change: destination not checked");
            DestNow::Unknown
        }
    }
}

/// Removes the file or symlink the scan saw where the source now has a
/// folder (the link itself, never what it points to). A failure is left
/// to the lanes, which then fail the folder's entries with what they meet.
fn replace(dest: &Root, c: &TypeChange) {
    let removed = dest
        .split(&c.dest)
        .and_then(|(dir, name)| dest.dir(dir)?.unlink(name));
    match removed {
        Ok(()) => debug!(
            path = %c.dest.display(),
            was = c.dest_stamp.kind.as_str(),
            "replaced by a folder"
        ),
        Err(e) => debug!(path = %c.dest.display(), error = %e, "type change: not replaced"),
    }
}
