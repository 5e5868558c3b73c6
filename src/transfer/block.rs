//! The FIFO's message type. A [`Block`] carries the seed's fields (SPEC §5):
//! data, offset, destination path, source times and mode, a last-block flag,
//! and on the last block the file hash. Per-file fields live in one shared
//! [`FileTask`] so a 10 GiB file does not clone its paths 2,000 times.

use std::path::PathBuf;
use std::sync::Arc;

use crate::db::RowId;
use crate::decide::EntryKind;

/// One file (or symlink) on its way through the pipeline, as the reader saw
/// it when it opened the source.
#[derive(Debug)]
pub struct FileTask {
    /// Row id in `files`.
    pub id: RowId,
    pub source: PathBuf,
    pub dest: PathBuf,
    /// Size at open, in bytes.
    pub size: u64,
    pub modified_ns: i128,
    pub accessed_ns: i128,
    /// Source mode, uid and gid as the reader found them when it opened the
    /// source (the scanned row's for a failed entry): the bits and owners
    /// the destination entry is created with (see `crate::modes`).
    pub mode: u32,
    /// `File` or `Symlink` (folders never travel through the FIFO).
    pub kind: EntryKind,
    /// A symlink's target as the reader found it, for the audit line.
    pub link_target: Option<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    /// The source's creation time at open, where its filesystem reports one
    /// (applied where the destination takes it: `Root::set_created`).
    pub created_ns: Option<i128>,
    /// The source's extended attributes and ACLs that the job copies
    /// (`xattrs`, `acls`), read on the open source (see `crate::xattrs`).
    pub attrs: Vec<crate::xattrs::Attr>,
    /// The source's ctime at open (a file's; recorded in its row when synced).
    pub changed_ns: Option<i128>,
}

/// A slice of a file's bytes.
#[derive(Debug)]
pub struct Block {
    pub file: Arc<FileTask>,
    /// Where `data` goes in the destination file.
    pub offset: u64,
    pub data: Vec<u8>,
    /// A hole of this many bytes at `offset` (`sparse`): neither read nor
    /// written, `data` is empty.
    pub hole: u64,
    pub last: bool,
    /// Lowercase hex, only on the last block.
    pub hash: Option<String>,
}

#[derive(Debug)]
pub enum Msg {
    Block(Block),
    /// A symlink to recreate with this target.
    Symlink {
        file: Arc<FileTask>,
        target: PathBuf,
    },
    /// A hard link to `to`, the copy already made of the file's group
    /// (`transfer::links`).
    Link {
        file: Arc<FileTask>,
        to: crate::db::LinkedCopy,
    },
    /// A file whose content is still the copy at the destination (the
    /// hash of the source read now is the one recorded, the destination
    /// still shows `after_copy`): only its owners, bits and attributes are
    /// given to the copy, in place; no byte is written.
    Settle {
        file: Arc<FileTask>,
        hash: String,
        after_copy: (u64, i128),
    },
    /// The reader could not produce this file; the writer discards any
    /// partial temp, marks the row failed and logs it.
    Failed {
        file: Arc<FileTask>,
        error: String,
    },
    /// The run is stopping: drop this file's partial temp, keep the row pending.
    Abandon {
        file: Arc<FileTask>,
    },
}

/// What travels through the FIFO: one or more messages in order (see
/// `reader::packer::Packer`).
pub type Parcel = Vec<Msg>;
