//! The fault tests' trees and invariants: a slow job, a tree to kill runs
//! in, what must hold after any kill, and convergence.

use std::time::Duration;

use super::{all_rows, is_temp, temps, wait_for};
use crate::env::{TestEnv, bytes};

/// The kill-safety invariants, checked while no run is active:
/// 1. every regular file under its real name in the destination has
///    exactly its source's bytes (nothing half-written is visible);
/// 2. every `synced` file row's destination has its source's bytes;
/// 3. the running totals (`totals`) agree with the rows.
///
/// Valid as long as the test does not change the source tree.
#[track_caller]
pub fn assert_kill_invariants(env: &TestEnv, context: &str) {
    for e in walkdir::WalkDir::new(&env.dst)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !e.file_type().is_file() || is_temp(e.file_name()) {
            continue;
        }
        let rel = e.path().strip_prefix(&env.dst).unwrap();
        let src = env.src.join(rel);
        let d = std::fs::read(e.path()).unwrap();
        let s =
            std::fs::read(&src).unwrap_or_else(|_| panic!("{context}: extra dest file {rel:?}"));
        assert!(
            d == s,
            "{context}: {rel:?} is half-written or wrong ({} of {} bytes)",
            d.len(),
            s.len()
        );
    }
    assert_totals_agree(env, context);
    for r in all_rows(env) {
        if r.kind == "file" && r.status == "synced" {
            let d = std::fs::read(&r.dest).unwrap_or_else(|e| {
                panic!("{context}: synced {:?} has no destination: {e}", r.dest)
            });
            assert!(
                d == std::fs::read(&r.source).unwrap(),
                "{context}: synced {:?} differs from its source",
                r.dest
            );
        }
    }
}

/// The running totals (entries, bytes, hashed per status and kind) are
/// what the rows add up to.
#[track_caller]
pub fn assert_totals_agree(env: &TestEnv, context: &str) {
    let db = env.db();
    let q = |sql: &str| -> Vec<(String, String, i64, i64, i64)> {
        let mut st = db.prepare(sql).unwrap();
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(
        q(
            "SELECT status, kind, entries, bytes, hashed FROM totals WHERE entries != 0 ORDER BY 1, 2"
        ),
        q(
            "SELECT status, kind, count(*), sum(size), count(hash) FROM files GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        "{context}: the running totals differ from the rows"
    );
}

/// Runs until a run exits 0 (at most `max` runs), then once more (a scan,
/// which removes leftover temporaries) which must copy nothing; then the
/// trees are identical, every row synced and no temporary is left.
#[track_caller]
pub fn assert_converges(env: &TestEnv, args: &[&str], max: usize) {
    let mut last = None;
    for _ in 0..max {
        let out = env.run(args);
        if out.code == 0 {
            last = Some(out);
            break;
        }
        assert!(
            out.code == 1 || out.code == 130,
            "converging run failed: {out:?}"
        );
    }
    assert!(last.is_some(), "no clean run in {max} attempts");
    let out = env.run(args);
    out.assert_code(0);
    assert!(
        out.stdout.contains("jobrun: 0 files, 0 B copied"),
        "a converged job copied again: {}",
        out.stdout
    );
    env.assert_trees_equal();
    assert!(
        temps(&env.dst).is_empty(),
        "temporaries left: {:?}",
        temps(&env.dst)
    );
    let rows = all_rows(env);
    let not_synced: Vec<_> = rows.iter().filter(|r| r.status != "synced").collect();
    assert!(not_synced.is_empty(), "rows not synced: {not_synced:?}");
}

/// Seeded xorshift for reproducible "random" kill instants.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A tree of `small` tiny files in folders of 50 plus `big` multi-block files.
pub fn populate_kill_tree(env: &TestEnv, small: usize, big: usize) {
    for i in 0..small {
        env.src_file(
            &format!("d{:02}/s{i:04}.txt", i / 50),
            &bytes(i % 700, i as u64),
        );
    }
    for i in 0..big {
        let len = 150_000 + (i * 37_501) % 500_000;
        env.src_file(&format!("big/b{i:03}.bin"), &bytes(len, 10_000 + i as u64));
    }
    std::fs::create_dir_all(env.src.join("empty/deeper")).unwrap();
}

/// A slow job: `n` files of `len` bytes read at 1 MB/s in 64 KiB blocks.
pub fn slow_env(n: usize, len: usize) -> TestEnv {
    let env = TestEnv::new();
    for i in 0..n {
        env.src_file(&format!("f{i}.bin"), &bytes(len, i as u64 + 1));
    }
    env.manifest("block_size = \"64K\"\nqueue_capacity = 8\nbwlimit = \"1M\"\n");
    env
}

/// Waits until the writer has a temporary in the destination: one named
/// after its row id, not a root probe's (`.jobrun-0<pid>.tmp`, made by the
/// scan and the transfer's start; row ids have no leading zero).
pub fn wait_for_transfer(env: &TestEnv) {
    wait_for(
        "a temporary in the destination",
        Duration::from_secs(20),
        || {
            temps(&env.dst).iter().any(|t| {
                !t.file_name()
                    .is_some_and(|n| n.as_encoded_bytes().starts_with(b".jobrun-0"))
            })
        },
    );
}
