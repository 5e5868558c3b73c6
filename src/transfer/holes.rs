//! Holes (`sparse`): where a source file's holes are ([`Regions`], for
//! the reader: `SEEK_DATA`/`SEEK_HOLE`, asked only of a file whose blocks
//! do not cover its size), and which block-aligned runs of a data block are
//! all zeros ([`segments`], for the writer: written as holes, as
//! `rsync -S` does, where the source cannot report its holes).

use std::fs::File;
use std::io::{self, Seek};

use rustix::fs::SeekFrom;

/// Granularity of the zero runs written as holes: one filesystem block.
pub const HOLE_BLOCK: u64 = 4096;

/// What lies at an offset of the source file, and up to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Data { end: u64 },
    Hole { end: u64 },
}

/// The data and hole regions of one open source file, found one boundary
/// at a time (`SEEK_DATA`, `SEEK_HOLE` and a seek back per region), or
/// `None`: all data.
#[derive(Debug)]
pub struct Regions {
    /// The data region known to hold the reader's offset.
    data_end: u64,
    size: u64,
}

impl Regions {
    /// Holes are looked for only when asked for and when the file's blocks
    /// do not cover its size (a dense file costs no extra system call).
    pub fn new(sparse: bool, size: u64, blocks: u64) -> Option<Self> {
        (sparse && blocks.saturating_mul(512) < size).then_some(Self { data_end: 0, size })
    }

    /// The region at `offset`; the file's position is left at `offset`.
    /// A filesystem that cannot tell (EINVAL, ENOTSUP) reports all data.
    pub fn at(&mut self, f: &mut File, offset: u64) -> io::Result<Region> {
        if offset < self.data_end {
            return Ok(Region::Data { end: self.data_end });
        }
        let region = match rustix::fs::seek(&*f, SeekFrom::Data(offset)) {
            Ok(d) if d > offset => Region::Hole {
                end: d.min(self.size),
            },
            Ok(_) => {
                let h = rustix::fs::seek(&*f, SeekFrom::Hole(offset)).map_err(io::Error::from)?;
                let end = h.min(self.size).max(offset + 1).min(self.size);
                self.data_end = end;
                Region::Data { end }
            }
            // Past the last data: a hole up to the end.
            Err(rustix::io::Errno::NXIO) => Region::Hole { end: self.size },
            Err(_) => {
                self.data_end = self.size;
                Region::Data { end: self.size }
            }
        };
        f.seek(io::SeekFrom::Start(offset))?;
        Ok(region)
    }
}

/// Feeds `len` zero bytes to `update` without reading them.
pub fn feed_zeros(len: u64, update: &mut dyn FnMut(&[u8])) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        update(&ZEROS[..n]);
        left -= n as u64;
    }
}

/// `data`, to be written at file offset `at`, cut into runs: `(start,
/// end, zero)` within `data`, where a zero run covers whole aligned
/// [`HOLE_BLOCK`]s only (its edges stay data).
pub fn segments(data: &[u8], at: u64) -> Vec<(usize, usize, bool)> {
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    let mut push = |s: usize, e: usize, zero: bool| {
        if s == e {
            return;
        }
        match out.last_mut() {
            Some(last) if last.2 == zero && last.1 == s => last.1 = e,
            _ => out.push((s, e, zero)),
        }
    };
    // The first whole block starts at the next aligned file offset.
    let head = ((HOLE_BLOCK - at % HOLE_BLOCK) % HOLE_BLOCK) as usize;
    let head = head.min(data.len());
    push(0, head, false);
    let mut s = head;
    while s < data.len() {
        let e = (s + HOLE_BLOCK as usize).min(data.len());
        let whole = e - s == HOLE_BLOCK as usize;
        push(s, e, whole && is_zero(&data[s..e]));
        s = e;
    }
    out
}

/// All zeros, compared 16 bytes at a time.
fn is_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(16);
    let rest = words.remainder();
    words
        .map(|c| u128::from_ne_bytes(c.try_into().expect("16 bytes")))
        .all(|w| w == 0)
        && rest.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_aligned_on_the_file_become_holes_and_edges_stay_data() {
        let mut d = vec![1u8; 3 * 4096];
        d[4096..8192].fill(0);
        assert_eq!(
            segments(&d, 0),
            vec![(0, 4096, false), (4096, 8192, true), (8192, 12288, false)]
        );
        // Shifted by 100 bytes in the file: no whole aligned zero block.
        assert_eq!(segments(&d, 100), vec![(0, 12288, false)]);
        let z = vec![0u8; 8192 + 10];
        assert_eq!(segments(&z, 0), vec![(0, 8192, true), (8192, 8202, false)]);
        assert_eq!(segments(&[], 0), vec![]);
    }

    #[test]
    fn dense_files_are_not_asked_for_holes() {
        assert!(Regions::new(true, 4096, 8).is_none());
        assert!(Regions::new(false, 1 << 30, 0).is_none());
        assert!(Regions::new(true, 1 << 30, 8).is_some());
    }
}
