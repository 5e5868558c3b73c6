//! Issue 26 item 4: every date kept. Times over ext4's whole range
//! (1901-12-13 to 2446-05-10) are stored without loss, set exactly at the
//! destination and written exactly in the audit log; a time the destination
//! cannot hold is recorded and warned once per run, never clamped in silence.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use filetime::FileTime;

use crate::env::TestEnv;
use crate::support;

/// (name, seconds, nanoseconds, the audit log's text).
const DATES: &[(&str, i64, u32, &str)] = &[
    ("epoch", 0, 0, "1970-01-01T00:00:00.000000000Z"),
    (
        "y2100",
        4_102_444_800,
        500_000_000,
        "2100-01-01T00:00:00.500000000Z",
    ),
    (
        "y2300",
        10_413_792_000,
        123_456_789,
        "2300-01-01T00:00:00.123456789Z",
    ),
    // ext4's last second (it keeps no nanoseconds there).
    ("y2446", 15_032_385_535, 0, "2446-05-10T22:38:55.000000000Z"),
    ("y1960", -315_619_200, 7, "1960-01-01T00:00:00.000000007Z"),
    // ext4's first second.
    ("y1901", -2_147_483_648, 0, "1901-12-13T20:45:52.000000000Z"),
];

fn times(p: &Path) -> ((i64, i64), (i64, i64)) {
    let md = std::fs::symlink_metadata(p).unwrap();
    ((md.mtime(), md.mtime_nsec()), (md.atime(), md.atime_nsec()))
}

/// A stored time as ns since the epoch, whatever form the DB keeps it in
/// (an integer where it fits 64 bits, `@SECS.NNNNNNNNN` text otherwise).
fn stored_ns(v: rusqlite::types::Value) -> i128 {
    match v {
        rusqlite::types::Value::Integer(i) => i128::from(i),
        rusqlite::types::Value::Text(t) => {
            let (s, n) = t
                .strip_prefix('@')
                .and_then(|t| t.split_once('.'))
                .unwrap_or_else(|| panic!("stored time {t:?}"));
            i128::from(s.parse::<i64>().unwrap()) * 1_000_000_000 + n.parse::<i128>().unwrap()
        }
        other => panic!("stored time {other:?}"),
    }
}

fn ns(secs: i64, nanos: u32) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nanos)
}

#[test]
fn every_date_from_1901_to_2446_is_kept_in_the_db_at_the_destination_and_in_the_log() {
    let env = TestEnv::new();
    for &(name, secs, nanos, _) in DATES {
        let p = env.src_file(&format!("files/{name}"), name.as_bytes());
        let t = FileTime::from_unix_time(secs, nanos);
        filetime::set_file_times(&p, t, t).unwrap();
        assert_eq!(
            times(&p).0,
            (secs, i64::from(nanos)),
            "{name}: the source fs keeps it"
        );
    }
    std::os::unix::fs::symlink("files/y2446", env.src.join("link")).unwrap();
    let t2446 = FileTime::from_unix_time(15_032_385_535, 0);
    filetime::set_symlink_file_times(env.src.join("link"), t2446, t2446).unwrap();
    let t1901 = FileTime::from_unix_time(-2_147_483_648, 0);
    filetime::set_file_times(env.src.join("files"), t1901, t1901).unwrap();

    env.run(&[]).assert_code(0);

    for &(name, secs, nanos, text) in DATES {
        let rel = format!("files/{name}");
        let want = (secs, i64::from(nanos));
        assert_eq!(
            times(&env.dst.join(&rel)),
            (want, want),
            "{name}: destination"
        );
        let line = env
            .log_with_status("synced")
            .into_iter()
            .find(|l| l["source"].as_str().unwrap().ends_with(&rel))
            .unwrap_or_else(|| panic!("no synced line for {rel}"));
        assert_eq!(line["mtime"], text, "{name}: audit line");
        let stored: Vec<rusqlite::types::Value> = env
            .db()
            .query_row(
                "SELECT modified_ns, accessed_ns, after_copy_modified_ns FROM files
                 WHERE CAST(source_path AS TEXT) = ?1",
                [env.src.join(&rel).to_str().unwrap()],
                |r| Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?]),
            )
            .unwrap();
        for v in stored {
            assert_eq!(stored_ns(v), ns(secs, nanos), "{name}: stored");
        }
    }
    assert_eq!(
        times(&env.dst.join("link")).0,
        (15_032_385_535, 0),
        "symlink"
    );
    assert_eq!(
        times(&env.dst.join("files")).0,
        (-2_147_483_648, 0),
        "folder"
    );

    env.run(&[]).assert_code(0).assert_copied_nothing();
}

/// Source on a tmpfs (it keeps any 64-bit second), destination on ext4
/// (it clamps after 2446-05-10): the destination shows ext4's last
/// second, the DB and the audit log keep the source's time, one warning
/// says so for the run, and the next run copies nothing.
#[test]
#[ignore = "needs root"]
fn a_date_the_destination_cannot_hold_is_recorded_and_warned_once() {
    let env = TestEnv::new();
    let _m = support::tmpfs(&env.src, "4m");
    let far = [("y2500", 16_725_225_600_i64), ("y3000", 32_503_680_000)];
    for (name, secs) in far {
        let p = env.src_file(name, name.as_bytes());
        let t = FileTime::from_unix_time(secs, 250);
        filetime::set_file_times(&p, t, t).unwrap();
        assert_eq!(times(&p).0, (secs, 250), "{name}: tmpfs keeps it");
    }

    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(
        out.stderr
            .matches("the destination cannot hold the source's modification time")
            .count(),
        1,
        "one warning for the run: {}",
        out.stderr
    );
    for (name, secs) in far {
        assert_eq!(times(&env.dst.join(name)).0, (15_032_385_535, 0), "{name}");
        let (stored, after): (rusqlite::types::Value, rusqlite::types::Value) = env
            .db()
            .query_row(
                "SELECT modified_ns, after_copy_modified_ns FROM files
                 WHERE CAST(source_path AS TEXT) = ?1",
                [env.src.join(name).to_str().unwrap()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            stored_ns(stored),
            ns(secs, 250),
            "{name}: the source's, recorded"
        );
        assert_eq!(
            stored_ns(after),
            ns(15_032_385_535, 0),
            "{name}: what the destination shows"
        );
    }
    let line = env
        .log_with_status("synced")
        .into_iter()
        .find(|l| l["source"].as_str().unwrap().ends_with("y3000"))
        .unwrap();
    assert_eq!(line["mtime"], "3000-01-01T00:00:00.000000250Z");

    env.run(&[]).assert_code(0).assert_copied_nothing();
}
