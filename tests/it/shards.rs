//! Shards (`jobrun plan`, `--shard K`, `jobrun mirror`): the plan, each
//! shard's own run over its part of the tree, and the one mirror.

use std::collections::BTreeMap;

use crate::env::{Out, TestEnv, bytes};

/// A tree of four folders of different sizes, one split folder's worth of
/// depth, and a file in the root.
fn tree(env: &TestEnv) {
    env.src_file("top.txt", b"root file");
    for (dir, n, len) in [
        ("a", 6, 3000),
        ("b", 4, 5000),
        ("c", 8, 1000),
        ("d/e", 3, 40_000),
    ] {
        for i in 0..n {
            env.src_file(&format!("{dir}/f{i}"), &bytes(len + i, i as u64));
        }
    }
    env.src_file("d/x", b"x");
}

fn plan(env: &TestEnv, n: &str) -> Out {
    let mut c = env.cmd();
    c.args(["plan", "--shards", n]).arg(&env.manifest);
    c.output().unwrap().into()
}

fn plan_path(env: &TestEnv) -> std::path::PathBuf {
    env.root().join("job.plan.toml")
}

fn status(env: &TestEnv, json: bool) -> String {
    let mut c = env.cmd();
    c.arg("status").arg(&env.manifest);
    if json {
        c.arg("--json");
    }
    let out: Out = c.output().unwrap().into();
    out.assert_code(0);
    out.stdout
}

fn shard(env: &TestEnv, k: &str) -> Out {
    env.run(&["--shard", k])
}

/// `(source path relative to the source, kind)` of every row of a shard DB.
fn shard_rows(env: &TestEnv, k: usize) -> BTreeMap<String, String> {
    let db = rusqlite::Connection::open(env.root().join(format!("job.shard-{k}.db"))).unwrap();
    let src = env.src.canonicalize().unwrap();
    let mut st = db
        .prepare("SELECT CAST(source_path AS TEXT), kind, status FROM files")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .map(|(p, kind, status)| {
        assert_eq!(status, "synced", "{p}");
        let rel = std::path::Path::new(&p).strip_prefix(&src).unwrap();
        (rel.to_string_lossy().into_owned(), kind)
    })
    .collect()
}

#[test]
fn plan_packs_whole_subtrees_and_refuses_more_shards_than_parts() {
    let env = TestEnv::new();
    tree(&env);
    let out = plan(&env, "3");
    out.assert_code(0);
    assert!(
        out.stdout.contains("plan: 3 shards, sizes from the walk"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("spread (largest/smallest): bytes "),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(plan_path(&env)).unwrap();
    assert!(
        text.contains("rest_of = [\".\""),
        "root files on shard 0:\n{text}"
    );
    let first: Vec<&str> = text.lines().filter(|l| !l.starts_with("made_at")).collect();
    // Same tree, same plan.
    plan(&env, "3").assert_code(0);
    let again = std::fs::read_to_string(plan_path(&env)).unwrap();
    let second: Vec<&str> = again
        .lines()
        .filter(|l| !l.starts_with("made_at"))
        .collect();
    assert_eq!(first, second);
    // 24 files below four folders (and d split into e and its rest): a few parts only.
    let out = plan(&env, "40");
    out.assert_code(2);
    assert!(out.stderr.contains("ask for at most"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(plan_path(&env)).unwrap(),
        again,
        "kept"
    );
}

#[test]
fn each_shard_copies_its_part_once_and_the_mirror_runs_after_all() {
    let env = TestEnv::new();
    env.manifest("delete_extras = true");
    tree(&env);
    env.dst_file("extra/old", b"gone after the mirror");
    plan(&env, "3").assert_code(0);
    let text = std::fs::read_to_string(plan_path(&env)).unwrap();
    assert!(
        text.contains("\"d/e\""),
        "d, too big for one shard, is split:\n{text}"
    );
    // The whole of a sharded job is refused, saying how to run it.
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("--shard K") && out.stderr.contains("jobrun mirror"),
        "{}",
        out.stderr
    );
    shard(&env, "0").assert_code(0);
    // Not yet: shards 1 and 2 never ran.
    let mut c = env.cmd();
    let out: Out = c.arg("mirror").arg(&env.manifest).output().unwrap().into();
    out.assert_code(4);
    assert!(
        out.stderr
            .contains("shard 1 (never ran), shard 2 (never ran)"),
        "{}",
        out.stderr
    );
    assert!(env.dst.join("extra/old").exists());
    // A shard with a backlog (a dry run scanned, copied nothing) holds it too.
    env.run(&["--shard", "1", "--dry-run"]).assert_code(0);
    let text = status(&env, false);
    assert!(text.contains("not finished: shards 1, 2"), "{text}");
    let mut c = env.cmd();
    let out: Out = c.arg("mirror").arg(&env.manifest).output().unwrap().into();
    out.assert_code(4);
    assert!(
        out.stderr.contains("shard 1 (") && out.stderr.contains("entries pending)"),
        "{}",
        out.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&status(&env, true)).unwrap();
    assert_eq!(json["unfinished"], serde_json::json!([1, 2]));
    assert_eq!(json["shards"][0]["state"], "finished");
    assert_eq!(json["shards"][1]["state"], "backlog");
    assert_eq!(json["shards"][2]["state"], "never ran");
    let pending = json["shards"][1]["backlog_files"].as_u64().unwrap();
    assert!(pending > 0);
    assert_eq!(json["total"]["backlog_files"].as_u64(), Some(pending));
    shard(&env, "1").assert_code(0);
    let mut c = env.cmd();
    c.env("SLURM_ARRAY_TASK_ID", "2");
    let out: Out = c
        .args(["--shard", "auto"])
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    for k in 0..3 {
        assert!(env.root().join(format!("job.shard-{k}.log")).exists());
    }
    // Every file recorded by exactly one shard; folders above parts of a
    // split folder by each shard with a part below them.
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for k in 0..3 {
        let rows = shard_rows(&env, k);
        assert!(
            rows.values().any(|kind| kind == "file"),
            "shard {k} copied nothing"
        );
        for (p, kind) in rows {
            if kind == "file" {
                assert_eq!(owner.insert(p.clone(), k), None, "{p} copied by two shards");
            }
        }
    }
    assert_eq!(owner.len(), 21 + 2, "{owner:?}");
    assert_eq!(owner["top.txt"], 0, "root files on shard 0");
    assert!(env.dst.join("extra/old").exists(), "no shard mirrors");
    let text = status(&env, false);
    assert!(text.contains("every shard finished"), "{text}");
    let mut c = env.cmd();
    let out: Out = c.arg("mirror").arg(&env.manifest).output().unwrap().into();
    out.assert_code(0);
    assert!(!env.dst.join("extra").exists(), "{}", out.stdout);
    env.assert_trees_equal();
    // It says what it did: a mirror, in its summary, `runs` row and audit.
    assert!(out.stdout.contains("mode mirror"), "{}", out.stdout);
    let mode: String = env
        .db()
        .query_row("SELECT mode FROM runs ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, "mirror");
    assert_eq!(
        env.log_with_status("run_start").last().unwrap()["mode"],
        "mirror"
    );
    // A shard run again resumes from its own DB and copies nothing.
    shard(&env, "1").assert_copied_nothing();
}

#[test]
fn shard_numbers_outside_the_plan_and_stale_plans_are_refused() {
    let env = TestEnv::new();
    tree(&env);
    let out = shard(&env, "0");
    out.assert_code(2);
    assert!(out.stderr.contains("has no plan"), "{}", out.stderr);
    plan(&env, "2").assert_code(0);
    let out = shard(&env, "2");
    out.assert_code(2);
    assert!(out.stderr.contains("shards 0 to 1"), "{}", out.stderr);
    let out = shard(&env, "auto");
    out.assert_code(2);
    assert!(out.stderr.contains("SLURM_ARRAY_TASK_ID"), "{}", out.stderr);
    env.manifest("exclude = [\"*.tmp\"]");
    let out = shard(&env, "0");
    out.assert_code(2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("plan again"), "{}", out.stderr);
    assert!(!env.root().join("job.shard-0.db").exists());
}

#[test]
fn each_shard_takes_its_part_of_the_limit() {
    let env = TestEnv::new();
    env.manifest("bwlimit = \"08:00,20M 19:00,off\"");
    tree(&env);
    plan(&env, "4").assert_code(0);
    let out = env.check(&["--shard", "1"]);
    out.assert_code(0);
    assert!(out.stdout.contains("08:00,5.0 MiB/s"), "{}", out.stdout);
    env.manifest("bwlimit = \"20M\"\nshard_bwlimit = \"7M\"");
    plan(&env, "4").assert_code(0);
    let out = env.check(&["--shard", "3"]);
    assert!(out.stdout.contains("7.0 MiB/s"), "{}", out.stdout);
    let out = env.check(&[]);
    assert!(out.stdout.contains("20.0 MiB/s"), "{}", out.stdout);
}

/// A reload of a running shard applies its part of the new limit, and
/// says nothing of the shard's own state files as changed keys.
#[test]
#[ignore = "slow tier (4 s)"]
fn a_reload_gives_a_running_shard_its_part_of_the_new_limit() {
    use std::process::Stdio;
    let env = TestEnv::new();
    env.src_file("a/big.bin", &bytes(8 << 20, 1));
    env.src_file("b/big.bin", &bytes(8 << 20, 2));
    env.manifest("bwlimit = \"512K\"");
    plan(&env, "2").assert_code(0);
    let child = env
        .cmd()
        .args(["--shard", "0"])
        .arg(&env.manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = env.root().join("job.shard-0.log");
    let lines = |status: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["status"] == status)
            .collect()
    };
    crate::support::wait_for(
        "the shard to start",
        std::time::Duration::from_secs(30),
        || !lines("run_start").is_empty(),
    );
    assert_eq!(lines("run_start")[0]["bwlimit"], "262144 B/s");
    env.manifest("bwlimit = \"8M\"");
    let mut c = env.cmd();
    let out: Out = c
        .args(["reload", "--shard", "0"])
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    crate::support::wait_for("the reload line", std::time::Duration::from_secs(5), || {
        !lines("reload").is_empty()
    });
    let line = &lines("reload")[0];
    assert_eq!(line["applied"], true, "{line}");
    assert_eq!(line["bwlimit"], "4194304 B/s", "{line}");
    let out: Out = child.wait_with_output().unwrap().into();
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("reload: bwlimit 256.0 KiB/s -> 4.0 MiB/s")
            && !out.stderr.contains("next run"),
        "{}",
        out.stderr
    );
}

/// Shards started at once, as an array starts them, each making the
/// missing destination root: none fails for another having made it.
#[test]
fn shards_started_at_once_share_the_destination_root() {
    let env = TestEnv::new();
    tree(&env);
    plan(&env, "4").assert_code(0);
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&env.dst);
        for k in 0..4 {
            let _ = std::fs::remove_file(env.root().join(format!("job.shard-{k}.db")));
        }
        let children: Vec<_> = (0..4)
            .map(|k| {
                env.cmd()
                    .args(["--shard", &k.to_string()])
                    .arg(&env.manifest)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out: Out = c.wait_with_output().unwrap().into();
            out.assert_code(0);
        }
        env.assert_trees_equal();
    }
}

/// `jobrun mirror` gathers the shards' rows into the job's own DB, where
/// `jobrun verify JOB.toml` records what it found of each file: the next
/// mirror keeps those findings for the copies the shards did not touch
/// (it replaced every row with the shards', which never saw the verify).
#[test]
fn a_second_mirror_keeps_what_a_verify_of_the_whole_job_recorded() {
    let env = TestEnv::new();
    env.manifest("delete_extras = true");
    tree(&env);
    plan(&env, "2").assert_code(0);
    let mirror = || {
        let out: Out = env
            .cmd()
            .arg("mirror")
            .arg(&env.manifest)
            .output()
            .unwrap()
            .into();
        out.assert_code(0);
    };
    for _ in 0..2 {
        shard(&env, "0").assert_code(0);
        shard(&env, "1").assert_code(0);
    }
    mirror();
    let out: Out = env
        .cmd()
        .arg("verify")
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    let found = || -> (i64, i64) {
        env.db()
            .query_row(
                "SELECT count(*) FILTER (WHERE verify_result = 'ok'),
                        count(*) FILTER (WHERE kind = 'file' AND hash IS NULL)
                 FROM files",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let verified = found();
    assert_eq!(verified, (23, 0), "every file verified");
    // Nothing changed: the shards copy nothing, the mirror deletes nothing.
    shard(&env, "0").assert_copied_nothing();
    shard(&env, "1").assert_copied_nothing();
    mirror();
    assert_eq!(
        found(),
        verified,
        "the verify's findings after a second mirror"
    );
    // A changed file is the shard's new copy: its old finding goes.
    env.src_file("a/f0", b"changed");
    shard(&env, "0").assert_code(0);
    shard(&env, "1").assert_code(0);
    mirror();
    assert_eq!(found(), (22, 0));
}

/// Names that are not UTF-8: inside a shard's subtree and directly in the
/// root they go with their part; a folder the plan would have to name is
/// refused (a plan is TOML text), saying how to avoid it, and no plan is
/// written.
#[test]
fn names_that_are_not_utf8_go_with_their_part_or_are_refused_by_the_plan() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    env.manifest("delete_extras = true");
    tree(&env);
    let raw = |b: &[u8]| env.src.join(OsStr::from_bytes(b));
    std::fs::write(raw(b"root-caf\xe9"), b"root, not UTF-8").unwrap();
    std::fs::create_dir(raw(b"a/d\xff")).unwrap();
    std::fs::write(raw(b"a/d\xff/x\xfe"), b"inside a's subtree").unwrap();
    plan(&env, "2").assert_code(0);
    for k in ["0", "1"] {
        shard(&env, k).assert_code(0);
    }
    let out: Out = env
        .cmd()
        .arg("mirror")
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    env.assert_trees_equal();

    // A top-level folder that is not UTF-8, big enough to be a part.
    let env = TestEnv::new();
    tree(&env);
    std::fs::create_dir(raw_in(&env, b"big\xe9")).unwrap();
    for i in 0..8 {
        let name = [&b"big\xe9/f"[..], format!("{i}").as_bytes()].concat();
        std::fs::write(raw_in(&env, &name), bytes(50_000, i)).unwrap();
    }
    let out = plan(&env, "4");
    out.assert_code(2);
    assert!(
        out.stderr.contains("is not UTF-8") && out.stderr.contains("plan fewer shards"),
        "{}",
        out.stderr
    );
    assert!(!plan_path(&env).exists());
}

fn raw_in(env: &TestEnv, b: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    env.src.join(std::ffi::OsStr::from_bytes(b))
}

/// `--shard K` on `verify`, `hashes` and `reopen` works on shard K's own
/// DB, lock and log; each shard writes its own metrics file.
#[test]
fn verify_hashes_reopen_and_metrics_take_the_shard_s_own_files() {
    use crate::support::{Running, wait_for};
    use std::time::Duration;
    let env = TestEnv::new();
    env.manifest("metrics_file = \"job.prom\"");
    tree(&env);
    plan(&env, "2").assert_code(0);
    shard(&env, "0").assert_code(0);
    assert!(env.root().join("job.shard-0.prom").exists());
    assert!(!env.root().join("job.prom").exists());
    let files = |k| {
        shard_rows(&env, k)
            .into_values()
            .filter(|kind| kind == "file")
            .count()
    };
    let out: Out = env
        .cmd()
        .args(["verify", "--shard", "0", "--json"])
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ok"].as_u64(), Some(files(0) as u64), "{v}");
    let verifies = |k: usize| -> i64 {
        rusqlite::Connection::open(env.root().join(format!("job.shard-{k}.db")))
            .unwrap()
            .query_row("SELECT count(*) FROM verifies", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(verifies(0), 1);
    let out: Out = env
        .cmd()
        .args(["hashes", "--shard", "0"])
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), files(0), "{}", out.stdout);
    // Shard 1 runs (slowly): `reopen --shard 1` reaches it, `--shard 0` does not.
    let running = Running::start(&env, &["--shard", "1", "--bwlimit", "20K"]);
    wait_for("shard 1's lock", Duration::from_secs(20), || {
        env.root().join("job.shard-1.db.lock").exists()
            && env.root().join("job.shard-1.log").exists()
    });
    let reopen = |k: &str| -> Out {
        env.cmd()
            .args(["reopen", "--shard", k])
            .arg(&env.manifest)
            .output()
            .unwrap()
            .into()
    };
    reopen("0").assert_code(3);
    reopen("1").assert_code(0);
    running.signal(libc::SIGINT);
    running.wait(Duration::from_secs(30)).assert_code(130);
    assert!(env.root().join("job.shard-1.prom").exists());
    assert_eq!(verifies(1), 0, "the verify of shard 0 touched shard 1's DB");
}
