//! The tree, not only the bytes (issue 25): holes (`sparse`) and hard
//! links (`hard_links`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::env::{TestEnv, bytes};
use crate::support::{Running, try_rows, wait_for};

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

/// Relative path → (inode, link count) of the regular files under `root`.
fn inodes(root: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let md = e.metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            (rel, (md.ino(), md.nlink()))
        })
        .collect()
}

/// The names grouped by inode (each group sorted, groups sorted), with
/// each group's link count.
fn link_groups(root: &Path) -> BTreeSet<(Vec<PathBuf>, u64)> {
    let mut by_ino: BTreeMap<u64, (Vec<PathBuf>, u64)> = BTreeMap::new();
    for (rel, (ino, nlink)) in inodes(root) {
        let g = by_ino.entry(ino).or_default();
        g.0.push(rel);
        g.1 = nlink;
    }
    by_ino.into_values().collect()
}

fn total_blocks(root: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap())
        .filter(|md| seen.insert(md.ino()))
        .map(|md| md.blocks())
        .sum()
}

/// A snapshot-style tree: `inodes` files of `len` bytes, each with
/// `names` names, one per `snap-N/` folder (`snap-N/f-I`).
fn snapshot_tree(env: &TestEnv, inodes: usize, names: usize, len: usize) {
    for i in 0..inodes {
        let first = env.src_file(&format!("snap-0/f-{i}"), &bytes(len, 100 + i as u64));
        for n in 1..names {
            let p = env.src.join(format!("snap-{n}/f-{i}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::hard_link(&first, &p).unwrap();
        }
    }
}

#[test]
fn a_snapshot_tree_arrives_with_its_hard_links_and_a_new_name_is_linked() {
    let env = TestEnv::new();
    snapshot_tree(&env, 5, 20, 256 * 1024);
    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
    let src = link_groups(&env.src);
    assert_eq!(src.len(), 5);
    assert_eq!(link_groups(&env.dst), src, "link structure differs");
    let (s, d) = (total_blocks(&env.src), total_blocks(&env.dst));
    assert!(d <= s + s / 10, "destination takes {d} blocks, source {s}");
    // A name added later is linked to the copy made, not copied again.
    std::fs::create_dir(env.src.join("snap-new")).unwrap();
    std::fs::hard_link(env.src.join("snap-0/f-3"), env.src.join("snap-new/f-3")).unwrap();
    env.run(&[]).assert_code(0);
    let dst = inodes(&env.dst);
    assert_eq!(
        dst[Path::new("snap-new/f-3")].0,
        dst[Path::new("snap-0/f-3")].0,
        "the new name is a link to the copy already made"
    );
    assert_eq!(link_groups(&env.dst), link_groups(&env.src));
    let (_, hash) = &env.rows()[env.src.join("snap-new/f-3").to_str().unwrap()];
    let (_, first) = &env.rows()[env.src.join("snap-0/f-3").to_str().unwrap()];
    assert!(
        hash.is_some() && hash == first,
        "the link records its group's hash"
    );
}

#[test]
fn a_rewritten_name_leaves_its_group_and_hard_links_false_copies_every_name() {
    let env = TestEnv::new();
    snapshot_tree(&env, 2, 3, 10_000);
    env.run(&[]).assert_code(0);
    // One name rewritten as a new file: it is no longer the same inode.
    let p = env.src.join("snap-1/f-0");
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, b"new content").unwrap();
    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
    assert_eq!(link_groups(&env.dst), link_groups(&env.src));

    let env = TestEnv::new();
    env.manifest("hard_links = false");
    snapshot_tree(&env, 2, 3, 10_000);
    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
    let dst = inodes(&env.dst);
    assert!(dst.values().all(|&(_, nlink)| nlink == 1), "{dst:?}");
}

#[test]
#[ignore = "slow tier (8 s)"]
fn a_run_killed_mid_group_ends_linked_on_resume() {
    let env = TestEnv::new();
    snapshot_tree(&env, 3, 8, 1 << 20);
    env.manifest("block_size = \"64K\"\nqueue_capacity = 8\nbwlimit = \"1M\"\ntransfers = 2\n");
    let run = Running::start(&env, &[]);
    wait_for("a first synced file", Duration::from_secs(30), || {
        try_rows(&env).is_ok_and(|rows| {
            rows.iter()
                .filter(|r| r.kind == "file" && r.status == "synced")
                .count()
                >= 2
        })
    });
    run.kill();
    env.manifest("block_size = \"64K\"\ntransfers = 2\n");
    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
    assert_eq!(link_groups(&env.dst), link_groups(&env.src));
}

#[test]
#[ignore = "needs root, dosfstools and vfat or fusefat"]
fn a_destination_refusing_hard_links_gets_copies_and_one_warning() {
    let mut env = TestEnv::new();
    let mnt = env.root().join("mnt");
    let Some(_mount) = crate::hostile::mount_vfat(&env.root().join("fat.img"), &mnt) else {
        return;
    };
    env.dst = mnt.join("dst");
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"mnt/dst\"\n",
    )
    .unwrap();
    snapshot_tree(&env, 2, 3, 10_000);
    let out = env.run(&[]);
    out.assert_code(0);
    for (rel, _) in inodes(&env.src) {
        assert_eq!(
            std::fs::read(env.dst.join(&rel)).unwrap(),
            std::fs::read(env.src.join(&rel)).unwrap(),
            "{rel:?}"
        );
    }
    let line = "4 hard-linked names copied instead of linked";
    assert_eq!(out.stderr.matches(line).count(), 1, "{}", out.stderr);
}

/// Item 6 for hard links and holes: what `hard_links = false` and
/// `sparse = false` leave out is said by `check`, once by each scan, and
/// kept by `status`; with both keys on (the default), none of it.
#[test]
fn hard_links_and_holes_left_out_are_said_by_check_the_scan_and_status() {
    let tree = |env: &TestEnv| {
        snapshot_tree(env, 2, 3, 10_000);
        sparse_file(&env.src.join("vm.img"), 8 * MIB, &[(0, bytes(4096, 9))]);
    };
    let env = TestEnv::new();
    env.manifest("hard_links = false\nsparse = false");
    tree(&env);
    let line = "6 source files are hard links, each name copied on its own: hard_links = false; \
                1 source files have holes, written as zeros: sparse = false";
    let check = env.check(&[]);
    check.assert_code(0);
    assert!(check.stdout.contains(line), "{}", check.stdout);
    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(out.stderr.matches(line).count(), 1, "{}", out.stderr);
    let status = env.run(&["status"]);
    status.assert_code(0);
    assert!(status.stdout.contains(line), "{}", status.stdout);

    let env = TestEnv::new();
    tree(&env);
    let (check, out) = (env.check(&[]), env.run(&[]));
    out.assert_code(0);
    let status = env.run(&["status"]);
    for text in [&check.stdout, &out.stderr, &status.stdout] {
        assert!(!text.contains("source files"), "{text}");
    }
}

/// The figure every report gives as copied (summary line, `run_end`, the
/// `runs` row, `status --json` and `jobrun_copied_bytes_total`): the bytes
/// written, never a linked name's or a hole's size.
#[test]
fn copied_bytes_are_the_bytes_written_not_the_holes_nor_the_linked_names() {
    let env = TestEnv::new();
    std::fs::create_dir(env.root().join("textfile")).unwrap();
    env.manifest("metrics_file = \"textfile/job.prom\"");
    let chunks = vec![
        (0, bytes(MIB as usize, 1)),
        (32 * MIB, bytes(MIB as usize, 2)),
    ];
    sparse_file(&env.src.join("vm.img"), 64 * MIB, &chunks);
    // 4 inodes of 256 KiB with 10 names each: 10 MiB of names, 1 MiB of data.
    snapshot_tree(&env, 4, 10, 256 * 1024);
    let data = 3 * MIB;
    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(link_groups(&env.dst), link_groups(&env.src));
    let end = env
        .log_with_status("run_end")
        .pop()
        .expect("a run_end line");
    let copied = end["bytes"].as_u64().unwrap();
    // The data regions the source reports are whole filesystem blocks.
    assert!(
        (data..=data + 64 * 1024).contains(&copied),
        "run_end says {copied} bytes copied; {data} bytes of data were written"
    );
    let runs: u64 = env
        .db()
        .query_row("SELECT bytes_done FROM runs ORDER BY id DESC", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|b| b as u64)
        .unwrap();
    assert_eq!(runs, copied, "the runs row");
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with("jobrun: "))
        .unwrap();
    let shown = format!(", {} copied", jobrun::units::human_bytes(copied));
    assert!(line.contains(&shown), "summary `{line}` lacks `{shown}`");
    let status = env
        .cmd()
        .arg("status")
        .arg(&env.manifest)
        .arg("--json")
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["runs"][0]["bytes_done"], copied, "status runs");
    let prom = std::fs::read_to_string(env.root().join("textfile/job.prom")).unwrap();
    let total = prom
        .lines()
        .find_map(|l| {
            l.strip_prefix("jobrun_copied_bytes_total{")?
                .split_once("} ")?
                .1
                .parse::<f64>()
                .ok()
        })
        .expect("jobrun_copied_bytes_total");
    assert_eq!(total as u64, copied, "the metric");
}

/// A racy file is read a second time once its window has passed
/// (`decide::racy_window`; a future mtime makes it racy at once): that
/// read skips the holes as the first one does, under the same limit. Read
/// in full, the 1 GiB of holes would take 500 s at 2 MB/s.
#[test]
fn the_racy_second_read_skips_the_holes_too() {
    let env = TestEnv::new();
    env.manifest("bwlimit = \"2M\"\ntransfers = 1\nchecksum = \"sha256\"");
    let size = 1 << 30;
    let chunks = vec![(0, bytes(64 * 1024, 7)), (size / 2, bytes(64 * 1024, 8))];
    let src = env.src.join("racy.img");
    sparse_file(&src, size, &chunks);
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    let secs = future
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    TestEnv::set_mtime(&src, secs as i64, 123_456_789);
    let out = Running::start(&env, &[]).wait(Duration::from_secs(60));
    out.assert_code(0);
    assert_same_content(&src, &env.dst.join("racy.img"));
    let (status, hash) = &env.rows()[src.to_str().unwrap()];
    assert_eq!(status, "synced");
    assert_eq!(hash.as_deref(), Some(sha256_of(size, &chunks).as_str()));
}
