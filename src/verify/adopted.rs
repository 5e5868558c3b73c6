//! Adopted files: found in place by a scan and taken as synced on size and
//! mtime, so no hash was ever recorded for them. A verify compares such a
//! file with its source byte for byte, reading both sides in step under the
//! limit, and hashes the source's bytes as it goes: when the two are equal
//! that hash is recorded, and later verifies read the destination only.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::Outcome;
use super::read::{Paced, open_below, open_dest_file, read_full};
use crate::beneath::{Root, Turn, ns};
use crate::checksum::HashAlgo;
use crate::db::VerifyRow;
use crate::progress::Lane;

/// The two roots an adopted file is read below. `source` is the held
/// source root, or why it could not be held (the old share gone: an
/// adopted file cannot be compared then, and is never called verified).
pub(super) struct Roots<'a> {
    pub dest: Option<&'a Root>,
    pub source: Result<&'a Root, &'a str>,
}

/// What the source showed: a changed one is not what the row adopted.
#[derive(PartialEq, Eq)]
struct SourceStamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

fn stamp(md: &Metadata) -> SourceStamp {
    SourceStamp {
        size: md.len(),
        mtime_ns: ns(md.mtime(), md.mtime_nsec()),
        ctime_ns: ns(md.ctime(), md.ctime_nsec()),
        ino: md.ino(),
    }
}

/// Opens the source file `path` and checks it is still the file the scan
/// adopted: a regular file of the row's `size` and mtime `modified_ns`.
fn open_source(
    root: Result<&Root, &str>,
    path: &Path,
    (size, modified_ns): (u64, i128),
    stop: &AtomicBool,
) -> Result<(Turn, File, SourceStamp), Outcome> {
    let failed = |error: String| Outcome::Failed { error };
    let root = root.map_err(|why| {
        failed(format!(
            "adopted (no recorded hash), so it is compared with its source, and the source \
             root cannot be opened: {why}"
        ))
    })?;
    let src = path.display();
    let open = open_below(Some(root), path, stop).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => failed(format!(
            "adopted (no recorded hash), and its source `{src}` is gone: nothing to compare with"
        )),
        _ => failed(format!("cannot read the source `{src}`: {e}")),
    })?;
    let (turn, f) = open.ok_or(Outcome::Stopped)?;
    let md = f
        .metadata()
        .map_err(|e| failed(format!("cannot read the source `{src}`: {e}")))?;
    let st = stamp(&md);
    if !md.file_type().is_file() || st.size != size || st.mtime_ns != modified_ns {
        return Err(changed(path, "since the last scan"));
    }
    Ok((turn, f, st))
}

/// The outcome for a source that is not (or no longer) what the row says.
fn changed(source: &Path, when: &str) -> Outcome {
    Outcome::Failed {
        error: format!(
            "the source changed {when} (`{}`); the next scan takes it up",
            source.display()
        ),
    }
}

/// Two buffers for reading both sides in step.
#[derive(Default)]
pub(super) struct Bufs {
    pub source: Vec<u8>,
    pub dest: Vec<u8>,
}

/// Compares the destination of the adopted `row` with its source byte for
/// byte; hashes the source's bytes with `algo`. Returns the outcome and the
/// bytes read (both sides).
pub(super) fn compare(
    roots: &Roots<'_>,
    row: &VerifyRow,
    algo: HashAlgo,
    bufs: &mut Bufs,
    paced: &mut Paced<'_>,
    progress: &Lane,
) -> (Outcome, u64) {
    // The turns keep other lanes off both inodes until the files close
    // (bound first, dropped last). The destination's first: a lane waits
    // for a source's turn holding one on the other filesystem only.
    let (_dest_turn, mut dest) = match open_dest_file(roots.dest, &row.dest, row.size, paced.stop) {
        Ok(open) => open,
        Err(o) => return (o, 0),
    };
    let stamp_of = (row.size, row.modified_ns);
    let (_source_turn, mut source, before) =
        match open_source(roots.source, &row.source, stamp_of, paced.stop) {
            Ok(s) => s,
            Err(o) => return (o, 0),
        };
    let shown = roots
        .dest
        .and_then(|r| row.dest.strip_prefix(r.path()).ok());
    progress.file_started(shown.unwrap_or(&row.dest), row.to_read());
    paced.new_file();
    // A difference found while the source changed says nothing of the copy.
    let moved =
        |source: &File| source.metadata().map(|md| stamp(&md)).ok().as_ref() != Some(&before);
    let mut hasher = algo.hasher();
    let (mut at, mut read) = (0u64, 0u64);
    loop {
        let step = step(row, (&mut source, &mut dest), bufs, paced, progress);
        let (n, got) = match step {
            Ok(Some(sizes)) => sizes,
            Ok(None) => return (Outcome::Stopped, read),
            Err(o) => return (o, read),
        };
        read += (n + got) as u64;
        let same = n.min(got);
        let (s, d) = (&bufs.source[..same], &bufs.dest[..same]);
        let differs = if s == d {
            (got != n).then_some(same)
        } else {
            s.iter().zip(d).position(|(a, b)| a != b)
        };
        if at + n as u64 > row.size || (differs.is_some() && moved(&source)) {
            return (changed(&row.source, "while it was read"), read);
        }
        if let Some(i) = differs {
            return (mismatch(at + i as u64), read);
        }
        if n == 0 {
            break;
        }
        hasher.update(s);
        at += n as u64;
    }
    if at != row.size || moved(&source) {
        return (changed(&row.source, "while it was read"), read);
    }
    let source_hash = Some(hasher.finish_hex());
    (Outcome::Verified { source_hash }, read)
}

/// Reads the next range of both sides under the limit: `(source bytes,
/// destination bytes)`. The destination is asked for as many bytes as the
/// source gave, and for one at the source's end (to see that it ends there
/// too). `None` at a stop.
fn step(
    row: &VerifyRow,
    (source, dest): (&mut File, &mut File),
    bufs: &mut Bufs,
    paced: &mut Paced<'_>,
    progress: &Lane,
) -> Result<Option<(usize, usize)>, Outcome> {
    let Some(want) = paced.next(&[&*source, &*dest], bufs.source.len()) else {
        return Ok(None);
    };
    let n = read_full(source, &mut bufs.source[..want]).map_err(|e| Outcome::Failed {
        error: format!("cannot read the source `{}`: {e}", row.source.display()),
    })?;
    progress.bytes_written(n as u64);
    let m = n.max(1);
    if !paced.take(m) {
        return Ok(None);
    }
    let got = read_full(dest, &mut bufs.dest[..m]).map_err(|e| Outcome::Failed {
        error: format!("cannot read `{}`: {e}", row.dest.display()),
    })?;
    progress.bytes_written(got as u64);
    Ok(Some((n, got)))
}

/// The destination differs from the source from byte offset `at` on (a
/// byte differs there, or one side ends there).
fn mismatch(at: u64) -> Outcome {
    Outcome::Mismatch {
        found_size: None,
        found: None,
        differs_at: Some(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_source_is_not_the_adopted_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        let md = std::fs::metadata(&p).unwrap();
        let mtime = ns(md.mtime(), md.mtime_nsec());
        let go = AtomicBool::new(false);
        let error = |r: Result<_, Outcome>| match r {
            Err(Outcome::Failed { error }) => error,
            _ => panic!("taken"),
        };
        assert!(open_source(Ok(&root), &p, (3, mtime), &go).is_ok());
        for changed in [(4, mtime), (3, mtime + 1)] {
            let e = error(open_source(Ok(&root), &p, changed, &go));
            assert!(e.contains("changed since the last scan"), "{e}");
        }
        let e = error(open_source(Err("gone"), &p, (3, mtime), &go));
        assert!(e.ends_with("cannot be opened: gone"), "{e}");
        std::fs::remove_file(&p).unwrap();
        let e = error(open_source(Ok(&root), &p, (3, mtime), &go));
        assert!(e.contains("is gone"), "{e}");
    }
}
