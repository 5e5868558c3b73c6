//! Synthesises and probes a state DB of N rows through the product's own
//! write and read paths (`jobrun::db`), for `benches/scale-db.sh` (issue
//! 26 item 3). Paths are shaped like `benches/gen-tree.py`'s tree:
//! `dNNN/eNN/fNNNNNNN.dat`, 1,000 files per leaf folder.
//!
//!   scale_db synth DB SRC DST FROM N   rows FROM..N (files, and their
//!       folders), through `Tx::insert_source`, `mark_synced` and
//!       `mark_failed`: 90% synced with a sha256, 9% pending, 1% failed
//!   scale_db lookup DB SRC N SAMPLE    ns per `SourceLookup::find` of
//!       SAMPLE paths in walk order (a no-op rescan's per-entry lookup)
//!   scale_db drop DB [NN]              `drop_rows_where` dropping the
//!       names ending in `NN.dat` (default 00: 1%), as a filter edit's
//!       pass does
//!   scale_db size DB                   bytes per file row after a checkpoint
//!   scale_db migrate DB                opens (and so migrates) DB, timed

use std::path::{Path, PathBuf};
use std::time::Instant;

use camino::Utf8PathBuf;
use jobrun::db::{RowStatus, ScanEntry, StateDb, Synced};
use jobrun::decide::EntryKind;

const T: i128 = 1_704_067_200 * 1_000_000_000;

fn rel(i: u64) -> PathBuf {
    PathBuf::from(format!(
        "d{:03}/e{:02}/f{i:07}.dat",
        i / 100_000,
        (i / 1000) % 100
    ))
}

fn entry(path: PathBuf, kind: EntryKind, size: u64) -> ScanEntry {
    ScanEntry {
        path,
        kind,
        size,
        modified_ns: T,
        accessed_ns: T,
        changed_ns: T,
        created_ns: None,
        mode: if kind == EntryKind::Dir {
            0o40755
        } else {
            0o100644
        },
        uid: 0,
        gid: 0,
        link: None,
    }
}

fn open(db: &str) -> StateDb {
    StateDb::open(&Utf8PathBuf::from(db)).expect("open the state DB")
}

fn synth(db: &str, src: &Path, dst: &Path, from: u64, n: u64) {
    let db = open(db);
    let started = Instant::now();
    let hash = "ab".repeat(32);
    let mut i = from;
    while i < n {
        let tx = db.begin().expect("begin");
        let end = n.min(i + 50_000);
        for j in i..end {
            let r = rel(j);
            if j % 1000 == 0 || j == from {
                for d in [r.parent().unwrap(), r.parent().unwrap().parent().unwrap()] {
                    if j % 100_000 == 0 || d == r.parent().unwrap() {
                        let e = entry(src.join(d), EntryKind::Dir, 4096);
                        tx.insert_source(&e, &dst.join(d), RowStatus::Synced, 1)
                            .expect("insert a folder");
                    }
                }
            }
            let size = (j * 2_654_435_761) % 4096;
            let e = entry(src.join(&r), EntryKind::File, size);
            let id = tx
                .insert_source(&e, &dst.join(&r), RowStatus::Pending, 1)
                .expect("insert");
            match j % 100 {
                0 => tx.mark_failed(id, "synthetic failure").expect("fail"),
                1..=9 => {}
                _ => tx
                    .mark_synced(&Synced {
                        id,
                        hash: Some(&hash),
                        algorithm: Some("sha256"),
                        size,
                        modified_ns: T,
                        changed_ns: Some(T),
                        after_copy: None,
                    })
                    .expect("synced"),
            }
        }
        tx.commit().expect("commit");
        i = end;
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "synth rows={} s={s:.1} rows_per_s={:.0}",
        n - from,
        (n - from) as f64 / s
    );
}

fn lookup(db: &str, src: &Path, n: u64, sample: u64) {
    let db = open(db);
    // Inside a write transaction, as the scan looks rows up (outside one,
    // each lookup would take and drop the file's locks).
    let tx = db.begin().expect("begin");
    let mut l = db.source_lookup(true).expect("lookup");
    // Walk order over a window in the middle of the tree: a no-op rescan
    // meets its rows one folder after another.
    let start = (n / 2).saturating_sub(sample / 2);
    let started = Instant::now();
    let mut found = 0u64;
    for i in start..(start + sample).min(n) {
        if l.find(&src.join(rel(i))).expect("find").is_some() {
            found += 1;
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / sample as f64;
    drop(l);
    drop(tx);
    println!("lookup rows={n} sample={sample} found={found} ns_per_entry={ns:.0}");
}

fn drop_pct(db: &str, ending: &str) {
    let mut db = open(db);
    let started = Instant::now();
    let ending = format!("{ending}.dat");
    let gone = db
        .drop_rows_where(|p, _| {
            p.as_os_str()
                .as_encoded_bytes()
                .ends_with(ending.as_bytes())
        })
        .expect("drop");
    println!(
        "filter_edit dropped={gone} s={:.2}",
        started.elapsed().as_secs_f64()
    );
}

fn size(db: &str) {
    let c = rusqlite_free_size(db);
    println!("{c}");
}

/// DB bytes per file row after a checkpoint (the last connection closed).
fn rusqlite_free_size(db: &str) -> String {
    let d = open(db);
    let rows = d.count_files().expect("count");
    drop(d);
    let bytes = std::fs::metadata(db).expect("stat").len();
    format!(
        "db_bytes={bytes} rows={rows} bytes_per_row={:.0}",
        bytes as f64 / rows as f64
    )
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or_default();
    let num = |i: usize| arg(i).parse::<u64>().expect("a number");
    match arg(1) {
        "synth" => synth(arg(2), Path::new(arg(3)), Path::new(arg(4)), num(5), num(6)),
        "lookup" => lookup(arg(2), Path::new(arg(3)), num(4), num(5)),
        "drop" => drop_pct(arg(2), std::env::args().nth(3).as_deref().unwrap_or("00")),
        "size" => size(arg(2)),
        "migrate" => {
            let started = Instant::now();
            drop(open(arg(2)));
            println!("migrate s={:.2}", started.elapsed().as_secs_f64());
        }
        _ => {
            eprintln!("usage: scale_db synth|lookup|drop|size … (see the source)");
            std::process::exit(2);
        }
    }
}
