//! A change of attributes alone (`xattrs`, `acls`): a pending file whose
//! size and mtime are still those of the copy recorded, at a destination
//! that still shows that copy, is read once and hashed. The same hash as
//! recorded: its content is the copy's, and only its owners, bits and
//! attributes go to the destination (`Msg::Settle`, no byte written).
//! Another hash (an edit whose mtime was put back also moves the ctime
//! alone): it is read again and copied like any file.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::vouch::{Vouch, read_stamp};
use super::{Outcome, Reader};
use crate::db::PendingFile;
use crate::decide::EntryKind;
use crate::transfer::TransferError;
use crate::transfer::block::{FileTask, Msg};

impl Reader<'_> {
    /// `Some` when the file was settled without its bytes (or failed or
    /// was abandoned on the way); `None`: copy it, from its start.
    pub(super) fn settle(
        &self,
        row: &PendingFile,
        f: &mut File,
        (before, started): (&std::fs::Metadata, (Instant, i64)),
        file: &Arc<FileTask>,
        send: &mut super::SendMsg<'_>,
    ) -> Result<Option<Outcome>, TransferError> {
        let Some(copy) = row.copied.as_ref() else {
            return Ok(None);
        };
        let intact = |size: u64, mtime: i128| (size, mtime) == copy.after_copy;
        let dest_intact = self
            .ctx
            .dest
            .stat(&row.dest)
            .is_ok_and(|md| md.kind == Some(EntryKind::File) && intact(md.len, md.modified_ns));
        if !self.ctx.modes.attrs.keep.any()
            || copy.algorithm != self.ctx.job.checksum.name()
            || file.size != copy.after_copy.0
            || !dest_intact
        {
            return Ok(None);
        }
        let again = |f: &mut File| match f.seek(SeekFrom::Start(0)) {
            Ok(_) => None,
            Err(e) => Some(Outcome::Failed(format!("cannot read source: {e}"))),
        };
        let hash = match self.hash_again(f, file.size) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && self.stopping() => {
                send(Msg::Abandon { file: file.clone() })?;
                return Ok(Some(Outcome::Abandoned));
            }
            // The copy reads it again and says what failed.
            Err(_) => return Ok(again(f)),
        };
        match self.vouch(f, &read_stamp(before), started, &hash) {
            Vouch::Same if hash == copy.hash => {
                debug!(id = row.id.get(), "content unchanged: attributes only");
                send(Msg::Settle {
                    file: file.clone(),
                    hash,
                    after_copy: copy.after_copy,
                })?;
                Ok(Some(Outcome::Sent))
            }
            Vouch::Same => Ok(again(f)),
            Vouch::Changed(why) => Ok(Some(Outcome::Failed(why))),
            Vouch::Stopping => {
                send(Msg::Abandon { file: file.clone() })?;
                Ok(Some(Outcome::Abandoned))
            }
        }
    }
}
