//! `transfers = N`: several lanes at once, one DB writer.

use crate::env::{TestEnv, bytes};

/// Many small files in many folders, with source times set on files and
/// folders: every lane count gives the same tree, rows and audit log.
#[test]
#[ignore = "slow tier (5 s)"]
fn many_lanes_copy_everything_once_with_times() {
    for lanes in [2, 5] {
        let env = TestEnv::new();
        env.manifest(&format!("transfers = {lanes}\nblock_size = \"4KiB\""));
        let mut n = 0;
        for d in 0..6 {
            for f in 0..25 {
                let size = (d * 25 + f) * 397 % 20_000;
                let p = env.src_file(&format!("d{d}/f{f:02}.bin"), &bytes(size, n));
                TestEnv::set_mtime(&p, 1_600_000_000 + n as i64, 7);
                n += 1;
            }
            TestEnv::set_mtime(&env.src.join(format!("d{d}")), 1_500_000_000 + d as i64, 3);
        }
        let out = env.run(&[]);
        out.assert_code(0);
        env.assert_trees_equal();
        for d in 0..6 {
            let md = std::fs::metadata(env.dst.join(format!("d{d}"))).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000 + d as i64, 3));
        }
        let rows = env.rows();
        assert_eq!(rows.len(), n as usize);
        assert!(rows.values().all(|(s, h)| s == "synced" && h.is_some()));
        // Exactly one audit line per file, whatever lane copied it.
        let synced = env.log_with_status("synced");
        let mut paths: Vec<_> = synced.iter().map(|v| v["source"].to_string()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), n as usize, "lanes={lanes}");
        assert_eq!(synced.len(), n as usize, "lanes={lanes}");
        // And nothing left to do.
        let again = env.run(&[]);
        again.assert_code(0);
        assert!(again.stdout.contains(" 0 files,"), "{}", again.stdout);
    }
}
