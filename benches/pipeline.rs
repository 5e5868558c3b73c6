//! The copy path through the library on a temp tree: `jobrun::scan::run`
//! then `jobrun::transfer::run` (reader → bounded FIFO → writer, hashing with
//! sha256, temp sibling + rename, DB commits, audit log), each iteration into
//! a fresh destination and state DB (the runner's lock, mode line and runs
//! row are left out). Sweeps `block_size` × `queue_capacity` on one
//! large file, and runs the default settings on many small files.
//!
//!   cargo bench --bench pipeline
//!   cargo bench --bench pipeline -- large/5MiB     # one block size
//!
//! Source and destination are on the same local disk (the temp dir; set
//! TMPDIR to move it), so the figures measure jobrun's own overhead, not a
//! network share. Short measurement windows: 2 shared cores.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use camino::Utf8Path;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jobrun::audit::AuditLog;
use jobrun::cli::Overrides;
use jobrun::db::StateDb;
use jobrun::manifest::{Job, load_str};
use jobrun::progress::Progress;
use jobrun::stage::RunCtx;
use jobrun::{scan, transfer};

const LARGE: usize = 32 << 20;
const SMALL_FILES: usize = 256;
const SMALL: usize = 16 << 10;

fn fill(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, bytes).expect("write source file");
}

fn job(root: &Utf8Path, src: &str, block: &str, queue: usize) -> Job {
    let text = format!(
        "source = \"{src}\"\ndestination = \"dst\"\nblock_size = \"{block}\"\nqueue_capacity = {queue}\n"
    );
    load_str(&root.join("job.toml"), &text, &Overrides::default()).expect("valid manifest")
}

/// Fresh destination and state: the next run copies everything.
fn reset(job: &Job) {
    let _ = std::fs::remove_dir_all(&job.destination);
    for p in [job.db.as_str(), job.log.as_str()] {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{p}{suffix}"));
        }
    }
}

fn copy(job: &Job) {
    std::fs::create_dir_all(&job.destination).expect("destination root");
    let mut db = StateDb::open(&job.db).expect("state DB");
    let mut audit = AuditLog::open(&job.log).expect("audit log");
    let (progress, stop) = (Progress::default(), AtomicBool::new(false));
    let mut ctx = RunCtx {
        job,
        db: &mut db,
        audit: &mut audit,
        progress: &progress,
        stop: &stop,
        limit: jobrun::throttle::LiveLimit::new(job.bwlimit.clone()),
        source_at_start: None,
        dry_run: false,
        say: &|_| {},
    };
    let s = scan::run(&mut ctx).expect("scan");
    assert!(s.pending_files > 0, "nothing to copy: {s:?}");
    let t = transfer::run(&mut ctx).expect("transfer");
    assert_eq!(t.failed, 0);
}

fn pipeline(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = Utf8Path::from_path(tmp.path()).expect("UTF-8 temp dir");
    std::fs::create_dir_all(root.join("large")).unwrap();
    fill(root.join("large/file.bin").as_std_path(), LARGE, 1);
    std::fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..SMALL_FILES {
        fill(
            root.join(format!("small/f{i:04}")).as_std_path(),
            SMALL,
            i as u64 + 2,
        );
    }

    let mut g = c.benchmark_group("pipeline");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    g.throughput(Throughput::Bytes(LARGE as u64));
    for block in ["64KiB", "1MiB", "5MiB"] {
        for queue in [1, 4, 20] {
            let job = job(root, "large", block, queue);
            g.bench_function(BenchmarkId::new(format!("large/{block}"), queue), |b| {
                b.iter_batched(|| reset(&job), |()| copy(&job), BatchSize::PerIteration)
            });
        }
    }
    g.throughput(Throughput::Bytes((SMALL_FILES * SMALL) as u64));
    let job = job(root, "small", "5MiB", 20);
    g.bench_function(
        BenchmarkId::new(format!("{SMALL_FILES}x16KiB"), "5MiB-q20"),
        |b| b.iter_batched(|| reset(&job), |()| copy(&job), BatchSize::PerIteration),
    );
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
