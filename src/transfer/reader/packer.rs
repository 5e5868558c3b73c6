//! Packing the reader's messages into parcels for the FIFO.

use flume::Sender;

use crate::transfer::TransferError;
use crate::transfer::block::{Msg, Parcel};

/// Packs messages into parcels for the FIFO. Sending every small file's
/// message on its own costs a futex wake-up per file, which dominated the
/// profile on 4 KiB files; a parcel carries up to `block_size` bytes of
/// data (at most 64 messages), so FIFO memory stays bounded by
/// `queue_capacity × block_size`. A parcel leaves at once when the FIFO is
/// empty, so a slow source never keeps a waiting writer idle.
pub(super) struct Packer<'a> {
    pub(super) tx: &'a Sender<Parcel>,
    pub(super) msgs: Parcel,
    pub(super) bytes: usize,
    pub(super) limit: usize,
}

impl Packer<'_> {
    const MAX_MSGS: usize = 64;

    pub(super) fn push(&mut self, msg: Msg) -> Result<(), TransferError> {
        let len = match &msg {
            Msg::Block(b) => b.data.len(),
            _ => 0,
        };
        if self.bytes + len > self.limit {
            self.flush()?;
        }
        self.bytes += len;
        self.msgs.push(msg);
        if self.msgs.len() >= Self::MAX_MSGS || self.bytes >= self.limit || self.tx.is_empty() {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), TransferError> {
        if self.msgs.is_empty() {
            return Ok(());
        }
        let parcel = std::mem::take(&mut self.msgs);
        self.bytes = 0;
        self.tx.send(parcel).map_err(|_| TransferError::WriterGone)
    }
}
