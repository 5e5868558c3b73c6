//! The racy-file rule's second look (SPEC §5): the bytes a reader hashed
//! are the file's only if nothing of size, mtime and ctime moved while they
//! were read, and a racy file (see [`decide::racy_window`]) reads the same
//! again once its window has passed.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use tracing::debug;

use super::Reader;
use super::source::ReadAhead;
use crate::beneath::ns;
use crate::decide::{self, ReadStamp};
use crate::transfer::holes::{Regions, feed_zeros};

impl Reader<'_> {
    /// Whether the bytes just read (hash `hash`) are the file's: nothing of
    /// size, mtime and ctime moved while they were read, and a racy file
    /// (see [`decide::racy_window`]) reads the same again once its window
    /// has passed since the first read began. Only racy files pay a wait
    /// and a second read (under the same limit).
    pub(super) fn vouch(
        &self,
        f: &mut File,
        before: &ReadStamp,
        started: (Instant, i64),
        hash: &str,
    ) -> Vouch {
        if let Some(why) = moved(f, before) {
            return Vouch::Changed(why);
        }
        let Some(window) = decide::racy_window(before, started.1) else {
            return Vouch::Same;
        };
        let until = started.0 + window;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if self.stopping() {
                return Vouch::Stopping;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        debug!(size = before.size, ?window, "racy: reading it again");
        let again = match self.hash_again(f, before.size) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && self.stopping() => {
                return Vouch::Stopping;
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Vouch::Changed(
                    "source changed while being read (it shrank); retried next run".into(),
                );
            }
            Err(e) => return Vouch::Changed(format!("cannot read source again: {e}")),
            Ok(h) => h,
        };
        if let Some(why) = moved(f, before) {
            return Vouch::Changed(why);
        }
        if again != hash {
            let granule = match decide::time_granularity(before.modified_ns) {
                Duration::ZERO => "a clock tick".to_string(),
                g => format!("{} s", g.as_secs()),
            };
            return Vouch::Changed(format!(
                "source changed while being read, its times unmoved: a second read, once \
                 they could have moved ({granule}), differs; retried next run"
            ));
        }
        Vouch::Same
    }

    /// The hash of the first `size` bytes of `f`, read again from its start,
    /// its holes skipped as the first read skipped them (`sparse`: zeros
    /// fed to the hasher, not read).
    pub(super) fn hash_again(&self, f: &mut File, size: u64) -> io::Result<String> {
        f.seek(SeekFrom::Start(0))?;
        let mut hasher = self.ctx.job.checksum.hasher();
        let mut buf = vec![0; self.ctx.job.block_size];
        let mut ra = ReadAhead::Default;
        let blocks = f.metadata()?.blocks();
        let mut regions = Regions::new(self.ctx.job.sparse, size, blocks);
        let mut offset = 0;
        while offset < size {
            let (want, hole) = self.span(regions.as_mut(), f, offset, size)?;
            feed_zeros(hole, &mut |z| hasher.update(z));
            self.fill(f, &mut buf[..want], &mut ra)?;
            hasher.update(&buf[..want]);
            offset += want as u64 + hole;
        }
        Ok(hasher.finish_hex())
    }
}

/// What [`Reader::vouch`] found.
pub(super) enum Vouch {
    Same,
    Changed(String),
    Stopping,
}

pub(super) fn read_stamp(md: &std::fs::Metadata) -> ReadStamp {
    ReadStamp {
        size: md.len(),
        modified_ns: ns(md.mtime(), md.mtime_nsec()),
        changed_ns: ns(md.ctime(), md.ctime_nsec()),
    }
}

/// What moved since `before` on the open file, as a failure text.
fn moved(f: &File, before: &ReadStamp) -> Option<String> {
    match f.metadata() {
        Ok(after) => decide::moved_during_read(before, &read_stamp(&after)).map(|what| {
            format!("source changed while being read ({what} moved); retried next run")
        }),
        Err(e) => Some(format!(
            "source changed while being read? cannot stat it after reading: {e}; retried next run"
        )),
    }
}
