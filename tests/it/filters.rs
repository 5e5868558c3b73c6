//! `exclude` / `include`: what is walked, copied, kept from the mirror,
//! and what a filter edit between runs does to the DB's rows.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::env::TestEnv;
use crate::support::{chown_tree, require_setpriv, run_as_nobody};

/// Every `files` row's source path relative to the source root.
fn row_paths(env: &TestEnv) -> Vec<Vec<u8>> {
    let db = env.db();
    let mut st = db
        .prepare("SELECT CAST(source_path AS BLOB) FROM files ORDER BY 1")
        .unwrap();
    let src = env.src.as_os_str().as_bytes().to_vec();
    st.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter_map(|p| p.strip_prefix(src.as_slice()).map(<[u8]>::to_vec))
        .collect()
}

fn has_row(env: &TestEnv, rel: &str) -> bool {
    row_paths(env).contains(&format!("/{rel}").into_bytes())
}

#[test]
fn excluded_snapshot_tree_is_not_walked_copied_or_mirrored() {
    excluded_snapshot_tree(false);
}

/// The same, with the excluded folders unreadable to the run (jobrun runs
/// as nobody): a walk that went in would fail (exit 1, a failed row).
#[test]
#[ignore = "needs root"]
fn excluded_unreadable_snapshot_folders_are_never_opened() {
    require_setpriv();
    excluded_snapshot_tree(true);
}

fn excluded_snapshot_tree(as_nobody: bool) {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("d/b.txt", b"bravo");
    env.src_file(".snapshot/hourly.0/a.txt", b"old alpha");
    env.src_file("d/.snapshot/hourly.0/b.txt", b"old bravo");
    // Destination: an excluded snapshot folder of its own (the mirror must
    // leave it), and a true extra (the mirror deletes it: it did run).
    env.dst_file(
        ".snapshot/hourly.0/kept.txt",
        b"the new share's own snapshot",
    );
    env.dst_file("stale.txt", b"extra");
    env.manifest("exclude = [\".snapshot/\"]\ndelete_extras = true\nmax_delete = \"off\"");
    let out = if as_nobody {
        // The excluded folders cannot be listed: a walk that went in would
        // fail (exit 1, a failed row); an excluded one is never opened.
        chown_tree(env.root(), 65534);
        for p in [".snapshot/hourly.0", "d/.snapshot/hourly.0"] {
            std::fs::set_permissions(env.src.join(p), std::fs::Permissions::from_mode(0o000))
                .unwrap();
        }
        run_as_nobody(&env, &["-v"])
    } else {
        env.run(&["-v"])
    };
    out.assert_code(0);
    assert!(!out.stderr.contains("cannot read"), "{}", out.stderr);
    assert!(!out.stderr.contains("snapshot folder"), "{}", out.stderr);
    assert!(out.stderr.contains("excluded=2"), "{}", out.stderr);
    assert_eq!(
        row_paths(&env),
        [&b""[..], b"/a.txt", b"/d", b"/d/b.txt"],
        "no row below an excluded folder"
    );
    assert!(!env.dst.join("d/.snapshot").exists());
    assert!(!env.dst.join(".snapshot/hourly.0/a.txt").exists());
    assert!(
        env.dst.join(".snapshot/hourly.0/kept.txt").exists(),
        "excluded: never a mirror candidate"
    );
    assert!(!env.dst.join("stale.txt").exists());
    assert_eq!(std::fs::read(env.dst.join("d/b.txt")).unwrap(), b"bravo");
    assert!(
        env.log_with_status("deleted")
            .iter()
            .all(|l| !l["path"].as_str().unwrap_or_default().contains(".snapshot"))
    );

    // A run that resumes a backlog (no scan) walks the destination afresh
    // for the mirror: the excluded folder is still no candidate.
    env.src_file("new.txt", b"new");
    env.dst_file("stale2.txt", b"extra");
    env.run(&["--dry-run"]).assert_code(0);
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains("mode resume"), "{}", out.stdout);
    assert!(env.dst.join("new.txt").exists());
    assert!(!env.dst.join("stale2.txt").exists(), "the mirror ran");
    assert!(env.dst.join(".snapshot/hourly.0/kept.txt").exists());
}

#[test]
fn a_non_utf8_name_is_matched_by_a_glob() {
    let env = TestEnv::new();
    env.src_file("keep.txt", b"kept");
    let raw = env.src.join(OsStr::from_bytes(b"caf\xe9.tmp"));
    std::fs::write(&raw, b"scratch").unwrap();
    let deep = env.src.join(OsStr::from_bytes(b"d\xff/x\xfe.tmp"));
    std::fs::create_dir_all(deep.parent().unwrap()).unwrap();
    std::fs::write(&deep, b"scratch").unwrap();
    env.manifest("exclude = [\"*.tmp\"]");
    env.run(&[]).assert_code(0);
    assert!(env.dst.join("keep.txt").exists());
    assert!(!env.dst.join(OsStr::from_bytes(b"caf\xe9.tmp")).exists());
    assert!(env.dst.join(OsStr::from_bytes(b"d\xff")).is_dir());
    assert!(!env.dst.join(OsStr::from_bytes(b"d\xff/x\xfe.tmp")).exists());
    assert!(!row_paths(&env).iter().any(|p| p.ends_with(b".tmp")));
}

#[test]
fn include_keeps_what_exclude_matches() {
    let env = TestEnv::new();
    env.src_file("a.tmp", b"a");
    env.src_file("keep.tmp", b"k");
    env.src_file("scratch/keep.tmp", b"below an excluded folder");
    env.manifest("exclude = [\"*.tmp\", \"/scratch/\"]\ninclude = [\"keep.tmp\"]");
    env.run(&[]).assert_code(0);
    assert!(env.dst.join("keep.tmp").exists());
    assert!(!env.dst.join("a.tmp").exists());
    assert!(!env.dst.join("scratch").exists());
}

#[test]
fn newly_excluded_leaves_the_job_and_newly_included_comes_back() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("b.tmp", b"scratch");
    env.manifest("delete_extras = true\nmax_delete = \"off\"");
    env.run(&[]).assert_code(0);
    assert!(env.dst.join("b.tmp").exists());

    // Excluded now: its row leaves; its copy stays (no --delete-excluded).
    env.manifest("exclude = [\"*.tmp\"]\ndelete_extras = true\nmax_delete = \"off\"");
    env.src_file("c.tmp", b"new while excluded");
    env.run(&["--rescan"]).assert_code(0);
    assert!(!has_row(&env, "b.tmp") && !has_row(&env, "c.tmp"));
    assert!(
        env.dst.join("b.tmp").exists(),
        "excluded copies are not deleted"
    );
    assert!(!env.dst.join("c.tmp").exists());

    // Included again: the next scan picks them up.
    env.manifest("delete_extras = true\nmax_delete = \"off\"");
    env.run(&["--rescan"]).assert_code(0);
    assert!(has_row(&env, "b.tmp") && has_row(&env, "c.tmp"));
    assert_eq!(
        std::fs::read(env.dst.join("c.tmp")).unwrap(),
        b"new while excluded"
    );
}

#[test]
fn a_resumed_run_applies_the_current_filters_to_its_backlog() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("b.tmp", b"scratch");
    env.src_file("junk/x.txt", b"junk");
    // A dry run scans: every entry is pending, nothing is copied.
    env.run(&["--dry-run"]).assert_code(0);
    assert!(has_row(&env, "b.tmp") && has_row(&env, "junk/x.txt"));
    env.manifest("exclude = [\"*.tmp\", \"/junk/\"]");
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains("mode resume"), "{}", out.stdout);
    assert!(env.dst.join("a.txt").exists());
    assert!(!env.dst.join("b.tmp").exists());
    assert!(!env.dst.join("junk").exists());
    assert!(!has_row(&env, "b.tmp") && !has_row(&env, "junk") && !has_row(&env, "junk/x.txt"));
}

#[test]
fn an_unexcluded_snapshot_folder_is_warned_about_once() {
    let env = TestEnv::new();
    env.src_file("a/.snapshot/hourly.0/x", b"x");
    env.src_file("b/~snapshot/y", b"y");
    env.src_file(".zfs/snapshot/z", b"z");
    let out = env.run(&[]);
    out.assert_code(0);
    let n = out
        .stderr
        .matches("looks like a NAS or ZFS snapshot folder")
        .count();
    assert_eq!(n, 1, "{}", out.stderr);
    // Excluded: no warning.
    env.manifest("exclude = [\".snapshot/\", \"~snapshot/\", \".zfs/\"]");
    let out = env.run(&["--rescan"]);
    out.assert_code(0);
    assert!(!out.stderr.contains("snapshot folder"), "{}", out.stderr);
}

#[test]
fn bad_patterns_exit_2_naming_key_and_pattern() {
    let env = TestEnv::new();
    env.manifest("exclude = [\".snapshot/\", \"[z-a]\"]");
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`exclude`") && out.stderr.contains("`[z-a]`"),
        "{}",
        out.stderr
    );
    env.manifest("include = [\"!x\"]");
    let out = env.check(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`include`") && out.stderr.contains("`!x`"),
        "{}",
        out.stderr
    );
    env.manifest("");
    let out = env.run(&["--exclude", "{a,b"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("--exclude") && out.stderr.contains("`{a,b`"),
        "{}",
        out.stderr
    );
}

#[test]
fn flags_and_environment_add_to_the_manifest_list_and_check_shows_it() {
    let env = TestEnv::new();
    env.manifest(
        "exclude = [\".snapshot/\", \"#recycle/\", \"/scratch/\"]\ninclude = [\"keep.tmp\"]",
    );
    let out = env
        .cmd()
        .arg("check")
        .arg(&env.manifest)
        .args(["--exclude", "*.tmp"])
        .env("JOBRUN_EXCLUDE", "[\"@eaDir/\"]")
        .output()
        .unwrap();
    let out = crate::env::Out::from(out);
    out.assert_code(0);
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("exclude") || l.starts_with("include"))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
    assert!(Path::new(&env.manifest).exists());
}
