//! Manifest errors (exit 2, one line naming key, file and line, nothing
//! created), layering precedence, and every shipped example manifest.

use crate::env::TestEnv;

/// Runs a manifest body and returns the redacted stderr; asserts exit 2 and
/// that nothing was created.
fn bad(body: &str) -> String {
    let env = TestEnv::new();
    std::fs::write(&env.manifest, body).unwrap();
    let out = env.run(&[]);
    out.assert_code(2);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(!env.db_path().exists() && !env.log_path().exists() && !env.dst.exists());
    assert!(!env.root().join("job.db.lock").exists());
    out.stderr.replace(env.root().to_str().unwrap(), "[TMP]")
}

#[test]
fn manifest_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "unknown_key",
            "source = \"src\"\ndestination = \"dst\"\nbandwith = \"20M\"\n",
        ),
        (
            "wrong_type",
            "source = \"src\"\ndestination = \"dst\"\ndelete_extras = \"yes\"\n",
        ),
        (
            "bad_size",
            "source = \"src\"\ndestination = \"dst\"\n\nblock_size = \"4 foo\"\n",
        ),
        (
            "zero_block_size",
            "source = \"src\"\ndestination = \"dst\"\nblock_size = 0\n",
        ),
        (
            "bad_rate",
            "source = \"src\"\ndestination = \"dst\"\nbwlimit = \"fast\"\n",
        ),
        (
            "bad_checksum",
            "source = \"src\"\ndestination = \"dst\"\nchecksum = \"sha512\"\n",
        ),
        (
            "zero_queue",
            "source = \"src\"\ndestination = \"dst\"\nqueue_capacity = 0\n",
        ),
        ("missing_source", "destination = \"dst\"\n"),
        (
            "bad_exclude_pattern",
            "source = \"src\"\ndestination = \"dst\"\nexclude = [\".snapshot/\", \"[z-a]\"]\n",
        ),
        ("not_toml", "source = \"src\ndestination = \"dst\"\n"),
        (
            "dest_inside_source",
            "source = \"src\"\ndestination = \"src/copy\"\n",
        ),
        (
            "bad_duration",
            "source = \"src\"\ndestination = \"dst\"\nmodify_window = \"soon\"\n",
        ),
        (
            "zero_progress_interval",
            "source = \"src\"\ndestination = \"dst\"\nprogress_interval = \"0s\"\n",
        ),
        (
            "rate_rounds_to_zero",
            "source = \"src\"\ndestination = \"dst\"\nbwlimit = \"0.4B\"\n",
        ),
        (
            "bad_max_delete",
            "source = \"src\"\ndestination = \"dst\"\nmax_delete = \"150%\"\n",
        ),
        (
            "rate_above_the_largest",
            "source = \"src\"\ndestination = \"dst\"\nbwlimit = \"18446744073709551615\"\n",
        ),
        (
            "number_with_exponent",
            "source = \"src\"\ndestination = \"dst\"\nbwlimit = 1e-400\n",
        ),
        (
            "duration_in_months",
            "source = \"src\"\ndestination = \"dst\"\nmodify_window = \"2M\"\n",
        ),
        (
            "duration_without_unit_among_others",
            "source = \"src\"\ndestination = \"dst\"\nmodify_window = \"1 5m\"\n",
        ),
        (
            "duration_above_its_bound",
            "source = \"src\"\ndestination = \"dst\"\nprogress_interval = \"200d\"\n",
        ),
        (
            "metrics_file_is_the_lock",
            "source = \"src\"\ndestination = \"dst\"\nmetrics_file = \"job.db.lock\"\n",
        ),
        (
            "log_is_the_manifest",
            "source = \"src\"\ndestination = \"dst\"\nlog = \"job.toml\"\n",
        ),
        (
            "db_is_a_device",
            "source = \"src\"\ndestination = \"dst\"\ndb = \"/dev/null\"\n",
        ),
        (
            "bad_element_of_a_multi_line_array",
            "source = \"src\"\ndestination = \"dst\"\nexclude = [\n  \"a\",\n  3,\n]\n",
        ),
    ];
    for (name, body) in cases {
        insta::assert_snapshot!(format!("manifest_error_{name}"), bad(body));
    }
}

#[test]
fn missing_manifest_file() {
    let env = TestEnv::new();
    let out = env.cmd().arg("nope.toml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("jobrun: cannot read manifest `nope.toml`"),
        "{err}"
    );
}

#[test]
fn bad_env_and_flag_values_name_their_origin() {
    let env = TestEnv::new();
    let out: crate::env::Out = env
        .cmd()
        .env("JOBRUN_BLOCK_SIZE", "huge")
        .arg("check")
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("`block_size` from environment variable `JOBRUN_BLOCK_SIZE`"),
        "{}",
        out.stderr
    );
    let out = env.check(&["--queue-capacity", "0"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("`queue_capacity` from flag `--queue-capacity`"),
        "{}",
        out.stderr
    );
}

#[test]
fn value_spellings_agree_across_layers() {
    let env = TestEnv::new();
    // A flag is always a string: `--bwlimit 0.4B` used to round to `off`.
    let out = env.run(&["--bwlimit", "0.4B"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("`bwlimit` from flag `--bwlimit`: rate `0.4B` rounds to 0 bytes/s"),
        "{}",
        out.stderr
    );
    assert!(!env.db_path().exists() && !env.dst.exists());
    let out = env.run(&["--progress-interval", "0s"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`progress_interval` from flag"),
        "{}",
        out.stderr
    );
    // Whole seconds as digits, from the manifest (string and number), the
    // environment and a flag.
    let line = |out: &crate::env::Out| {
        out.assert_code(0);
        out.stdout
            .lines()
            .find(|l| l.starts_with("modify_window"))
            .unwrap()
            .to_string()
    };
    env.manifest("modify_window = \"2\"");
    assert!(line(&env.check(&[])).ends_with(" 2s"));
    env.manifest("modify_window = 2");
    assert!(line(&env.check(&[])).ends_with(" 2s"));
    assert!(line(&env.check(&["--modify-window", "3"])).ends_with(" 3s"));
    let out: crate::env::Out = env
        .cmd()
        .env("JOBRUN_MODIFY_WINDOW", "4")
        .arg("check")
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    assert!(line(&out).ends_with(" 4s"));
}

#[test]
fn flag_beats_env_beats_manifest() {
    let env = TestEnv::new();
    env.manifest("bwlimit = \"1M\"\nchecksum = \"md5\"");
    let check = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = env.cmd();
        c.envs(envs.iter().copied())
            .arg("check")
            .arg(&env.manifest)
            .args(args);
        let out: crate::env::Out = c.output().unwrap().into();
        out.assert_code(0);
        out.stdout
    };
    let line = |s: &str, key: &str| s.lines().find(|l| l.starts_with(key)).unwrap().to_string();
    let s = check(&[], &[]);
    assert!(line(&s, "bwlimit").contains("1048576 bytes/s"), "{s}");
    assert!(line(&s, "checksum").ends_with("md5"));
    let s = check(
        &[("JOBRUN_BWLIMIT", "2M"), ("JOBRUN_CHECKSUM", "sha1")],
        &[],
    );
    assert!(line(&s, "bwlimit").contains("2097152 bytes/s"), "{s}");
    assert!(line(&s, "checksum").ends_with("sha1"));
    let s = check(
        &[("JOBRUN_BWLIMIT", "2M")],
        &["--bwlimit", "3M", "--checksum", "blake2b"],
    );
    assert!(line(&s, "bwlimit").contains("3145728 bytes/s"), "{s}");
    assert!(line(&s, "checksum").ends_with("blake2b"));
    // Paths from flags resolve against the working directory.
    let s = check(&[], &["--destination", "elsewhere"]);
    assert!(
        line(&s, "destination").ends_with(&format!("{}/elsewhere", env.root().display())),
        "{s}"
    );
}

#[test]
fn every_shipped_manifest_loads() {
    let jobs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    let mut n = 0;
    for entry in std::fs::read_dir(&jobs).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let out: crate::env::Out = std::process::Command::new(crate::env::BIN)
                .arg("check")
                .arg(&p)
                .output()
                .unwrap()
                .into();
            // Loads (exit 2 would be a bad manifest); an example whose
            // shares are not mounted here gets the run's own refusal.
            if out.code != 0 {
                out.assert_code(4);
                assert!(out.stderr.contains("source root"), "{}", out.stderr);
                assert!(out.stdout.contains("plan "), "{}", out.stdout);
            }
            n += 1;
        }
    }
    assert!(n >= 2, "expected demo.toml and archive.toml");
}

#[test]
fn check_output_snapshot() {
    let env = TestEnv::new();
    env.manifest("bwlimit = \"20M\"\nblock_size = \"1MiB\"\nqueue_capacity = 8");
    let out = env.check(&[]);
    out.assert_code(0);
    insta::assert_snapshot!(out.stdout.replace(env.root().to_str().unwrap(), "[TMP]"));
}

#[test]
fn help_snapshot() {
    let out = std::process::Command::new(crate::env::BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}
