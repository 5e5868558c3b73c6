//! The tree, not only the bytes (issue 25): holes (`sparse`) and hard
//! links (`hard_links`).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::env::{TestEnv, bytes};

const MIB: u64 = 1 << 20;

/// A sparse file of `size` bytes holding `chunks` (offset, bytes) and
/// holes elsewhere.
fn sparse_file(p: &Path, size: u64, chunks: &[(u64, Vec<u8>)]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = File::create(p).unwrap();
    for (at, data) in chunks {
        f.write_all_at(data, *at).unwrap();
    }
    f.set_len(size).unwrap();
}

/// The data ranges the filesystem reports (`SEEK_DATA`/`SEEK_HOLE`).
fn data_ranges(p: &Path) -> Vec<(u64, u64)> {
    let f = File::open(p).unwrap();
    let size = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let Ok(d) = rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(at)) else {
            break;
        };
        let h = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(d)).unwrap();
        out.push((d, h));
        at = h;
    }
    out
}

/// Same size and same bytes, read only where either file holds data
/// (everywhere else both are holes, so zeros).
#[track_caller]
fn assert_same_content(a: &Path, b: &Path) {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    for (s, e) in data_ranges(a).into_iter().chain(data_ranges(b)) {
        let mut at = s;
        while at < e {
            let n = (e - at).min(MIB) as usize;
            let (mut x, mut y) = (vec![0; n], vec![0; n]);
            fa.read_exact_at(&mut x, at).unwrap();
            fb.read_exact_at(&mut y, at).unwrap();
            assert!(x == y, "bytes differ in [{at}, {})", at + n as u64);
            at += n as u64;
        }
    }
}

/// sha256 of a sparse file's whole content, its holes hashed as zeros.
fn sha256_of(size: u64, chunks: &[(u64, Vec<u8>)]) -> String {
    let mut h = sha2::Sha256::new();
    let zeros = vec![0u8; MIB as usize];
    let mut at = 0;
    let feed_zeros = |h: &mut sha2::Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(MIB);
            h.update(&zeros[..k as usize]);
            n -= k;
        }
    };
    for (o, d) in chunks {
        feed_zeros(&mut h, o - at);
        h.update(d);
        at = o + d.len() as u64;
    }
    feed_zeros(&mut h, size - at);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn blocks(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks()
}

fn sparse_case(size: u64) {
    let env = TestEnv::new();
    env.manifest("checksum = \"sha256\"");
    let chunks = vec![
        (0, bytes(MIB as usize, 1)),
        (size / 4 + 12_345, bytes(2 * MIB as usize, 2)),
        (size / 2, bytes(MIB as usize + 7, 3)),
    ];
    let src = env.src.join("vm.img");
    sparse_file(&src, size, &chunks);
    let t = Instant::now();
    env.run(&[]).assert_code(0);
    let took = t.elapsed();
    let dst = env.dst.join("vm.img");
    assert_same_content(&src, &dst);
    let (s, d) = (blocks(&src), blocks(&dst));
    assert!(
        d <= s + 64,
        "copy takes {d} blocks of 512 bytes, source {s}: holes were written"
    );
    assert!(d * 2 >= s, "copy takes {d} blocks, source {s}");
    let (_, hash) = &env.rows()[src.to_str().unwrap()];
    assert_eq!(hash.as_deref(), Some(sha256_of(size, &chunks).as_str()));
    eprintln!("{size} bytes sparse copied in {took:?}");
}

#[test]
fn a_sparse_file_arrives_with_its_holes_and_the_hash_of_its_whole_content() {
    sparse_case(64 * MIB);
}

#[test]
#[ignore = "slow tier (6 s)"]
fn a_4_gib_sparse_file_arrives_with_its_holes_fast() {
    let t = Instant::now();
    sparse_case(4 << 30);
    // Generous: 4 GiB of zeros are hashed, never read nor written.
    assert!(t.elapsed() < Duration::from_secs(120));
}

/// A dense file holding a zero run (the source reports no hole, as on
/// NFSv3): whole zero blocks are written as holes with `sparse = true`,
/// as written zeros with `sparse = false`.
#[test]
fn zero_runs_become_holes_unless_sparse_is_false() {
    for (sparse, holes) in [("true", true), ("false", false)] {
        let env = TestEnv::new();
        env.manifest(&format!("sparse = {sparse}"));
        let mut data = bytes(10_000, 4);
        data.extend(vec![0; 4 * MIB as usize]);
        data.extend(bytes(5_000, 5));
        let src = env.src_file("dense.bin", &data);
        assert!(blocks(&src) * 512 >= data.len() as u64, "source is dense");
        env.run(&[]).assert_code(0);
        let dst = env.dst.join("dense.bin");
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        let used = blocks(&dst) * 512;
        if holes {
            assert!(used < 2 * MIB, "sparse = true: {used} bytes used");
        } else {
            assert!(used >= 4 * MIB, "sparse = false: {used} bytes used");
        }
    }
}

/// A file that ends in a hole keeps its size.
#[test]
fn a_file_ending_in_zeros_keeps_its_size() {
    let env = TestEnv::new();
    let mut data = bytes(100, 6);
    data.extend(vec![0; 64 * 1024]);
    env.src_file("tail.bin", &data);
    let big = env.src.join("tail-hole.bin");
    sparse_file(&big, 8 * MIB, &[(0, bytes(4096, 7))]);
    env.run(&[]).assert_code(0);
    assert_eq!(std::fs::read(env.dst.join("tail.bin")).unwrap(), data);
    assert_same_content(&big, &env.dst.join("tail-hole.bin"));
}
