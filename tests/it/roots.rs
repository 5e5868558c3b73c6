//! Roots compared by what they are, not by how they are spelled: symlinks,
//! `..`, trailing slashes and bind mounts never let the two trees (or the
//! job's DB and log) overlap, and a symlinked root is followed.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::{Out, TestEnv, files_under};
use crate::support::require_root;

/// Writes `job.toml` with these exact lines (roots included).
fn manifest(env: &TestEnv, text: &str) {
    std::fs::write(&env.manifest, text).unwrap();
}

/// The refusal every spelling must get, in a run, in `check` and in a dry
/// run: exit 2, one `jobrun:` line naming both roots, nothing created.
#[track_caller]
fn assert_refused(env: &TestEnv, names: &[&Path]) {
    let before = files_under(env.root());
    for out in [env.run(&[]), env.check(&[]), env.run(&["--dry-run"])] {
        out.assert_code(2);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("jobrun: "))
            .collect();
        assert_eq!(lines.len(), 1, "one error line: {}", out.stderr);
        assert!(lines[0].contains("inside"), "{}", lines[0]);
        for n in names {
            let real = std::fs::canonicalize(n).unwrap_or_else(|_| n.to_path_buf());
            assert!(
                lines[0].contains(&*real.to_string_lossy()),
                "{} does not name {}",
                lines[0],
                real.display()
            );
        }
        assert!(out.stdout.is_empty(), "no summary: {}", out.stdout);
    }
    assert!(!env.db_path().exists(), "no DB created");
    assert!(!env.log_path().exists(), "no log created");
    assert_eq!(files_under(env.root()), before, "nothing touched");
}

/// The field trial's data loss: `link -> root/projects`, source
/// `link/alpha`, destination `root`, mirror on without a cap. The mirror
/// deleted `root/projects/alpha/*`, the source.
#[test]
fn source_inside_the_destination_through_a_symlink_is_refused() {
    let env = TestEnv::new();
    let alpha = env.root().join("root/projects/alpha");
    std::fs::create_dir_all(&alpha).unwrap();
    std::fs::write(alpha.join("precious.txt"), b"the only copy").unwrap();
    symlink(env.root().join("root/projects"), env.root().join("link")).unwrap();
    manifest(
        &env,
        "source = \"link/alpha\"\ndestination = \"root\"\ndelete_extras = true\nmax_delete = \"off\"\n",
    );
    assert_refused(&env, &[&alpha, &env.root().join("root")]);
    assert_eq!(
        std::fs::read(alpha.join("precious.txt")).unwrap(),
        b"the only copy"
    );
}

/// Destination a symlink to a folder inside the source: every cron run
/// nested one more copy (`data/copy/copy/copy/x`).
#[test]
fn destination_symlink_into_the_source_is_refused() {
    let env = TestEnv::new();
    env.src_file("copy/x", b"x");
    symlink(env.src.join("copy"), env.root().join("dlink")).unwrap();
    manifest(&env, "source = \"src\"\ndestination = \"dlink\"\n");
    assert_refused(&env, &[&env.src, &env.src.join("copy")]);
}

/// Destination a symlink to the source itself: files copied onto themselves.
#[test]
fn destination_symlink_to_the_source_itself_is_refused() {
    let env = TestEnv::new();
    env.src_file("f", b"data");
    symlink(&env.src, env.root().join("dlink")).unwrap();
    manifest(&env, "source = \"src\"\ndestination = \"dlink\"\n");
    assert_refused(&env, &[&env.src]);
}

/// Symlinks on both sides, `..` and a trailing slash: all the same folder.
#[test]
fn every_spelling_of_an_overlap_is_refused() {
    let env = TestEnv::new();
    env.src_file("sub/f", b"data");
    symlink(&env.src, env.root().join("l1")).unwrap();
    symlink(env.src.join("sub"), env.root().join("l2")).unwrap();
    for (source, destination) in [
        ("l1", "l2"),                // both through symlinks: sub inside src
        ("l2/..", "src/new"),        // `..` after a symlink: src itself
        ("src/sub/..", "src/"),      // `..` and a trailing slash
        ("src/", "l1/sub/new/../x"), // a missing tail under a symlink
        ("l2", "l1"),                // source inside destination
    ] {
        manifest(
            &env,
            &format!("source = \"{source}\"\ndestination = \"{destination}\"\n"),
        );
        assert_refused(&env, &[]);
    }
    assert_eq!(std::fs::read(env.src.join("sub/f")).unwrap(), b"data");
}

/// The DB and the log may not lie in a tree, however it is reached.
#[test]
fn db_or_log_inside_a_tree_through_a_symlink_is_refused() {
    let env = TestEnv::new();
    env.src_file("f", b"data");
    symlink(&env.src, env.root().join("l1")).unwrap();
    for key in ["db", "log"] {
        manifest(
            &env,
            &format!("source = \"src\"\ndestination = \"dst\"\n{key} = \"l1/state.{key}\"\n"),
        );
        // `check` and the run alike: neither may create the state file.
        for out in [env.check(&[]), env.run(&[])] {
            out.assert_code(2);
            assert!(
                out.stderr.contains(&format!("`{key}`")) && out.stderr.contains("outside"),
                "{}",
                out.stderr
            );
        }
        assert!(
            !env.src.join(format!("state.{key}")).exists(),
            "{key} created in the source"
        );
    }
    assert_eq!(files_under(&env.src).len(), 1, "the source gained files");
    assert!(files_under(&env.dst).is_empty(), "something was copied");
}

/// A bind mount of `target` at `at`, unmounted (quietly) on drop.
struct Bind(PathBuf);

impl Bind {
    fn new(target: &Path, at: &Path) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(target)
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Bind(at.to_path_buf()))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A bind mount for a test marked `needs root`: it fails, never passes,
/// where it cannot be made.
fn bind_or_skip(target: &Path, at: &Path) -> Option<Bind> {
    require_root();
    let b = Bind::new(target, at);
    assert!(b.is_some(), "bind mounts are not permitted here");
    b
}

/// A bind mount of the source is another path to the same folder: a
/// destination below it is inside the source.
#[test]
#[ignore = "needs root"]
fn destination_inside_a_bind_mount_of_the_source_is_refused() {
    let env = TestEnv::new();
    env.src_file("f", b"data");
    let at = env.dir.path().join("mnt");
    let Some(_bind) = bind_or_skip(&env.src, &at) else {
        return;
    };
    manifest(&env, "source = \"src\"\ndestination = \"mnt/copy\"\n");
    let out = env.check(&[]);
    out.assert_code(2);
    assert!(out.stderr.contains("inside"), "{}", out.stderr);
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(
        !env.src.join("copy").exists(),
        "nothing nested in the source"
    );
}

/// The source bind-mounted *inside* the destination: the paths do not
/// overlap, the trees do. The destination walk meets the source root and
/// the run stops before anything is copied or deleted.
#[test]
#[ignore = "needs root"]
fn source_bind_mounted_inside_the_destination_stops_the_scan() {
    let env = TestEnv::new();
    env.src_file("precious.txt", b"the only copy");
    std::fs::create_dir(&env.dst).unwrap();
    let Some(_bind) = bind_or_skip(&env.src, &env.dst.join("mnt")) else {
        return;
    };
    env.manifest("delete_extras = true\nmax_delete = \"off\"");
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("is the source root") && out.stderr.contains("bind mount"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(env.src.join("precious.txt")).unwrap(),
        b"the only copy"
    );
    assert!(!env.dst.join("precious.txt").exists(), "nothing copied");
}

/// A source *subfolder* bind-mounted inside the destination: its entries
/// are destination extras (no source counterpart at that path), and
/// deleting them would delete source files. The mirror never deletes
/// across a mount inside the destination.
#[test]
#[ignore = "needs root"]
fn mirror_never_deletes_through_a_mount_inside_the_destination() {
    let env = TestEnv::new();
    env.src_file("keep/precious.txt", b"the only copy");
    env.src_file("other.txt", b"x");
    std::fs::create_dir(&env.dst).unwrap();
    let Some(_bind) = bind_or_skip(&env.src.join("keep"), &env.dst.join("extra")) else {
        return;
    };
    std::fs::write(env.dst.join("stale.txt"), b"an extra").unwrap();
    env.manifest("delete_extras = true\nmax_delete = \"off\"");
    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(
        std::fs::read(env.src.join("keep/precious.txt")).unwrap(),
        b"the only copy",
        "{}",
        out.stderr
    );
    assert!(
        !env.dst.join("stale.txt").exists(),
        "a real extra is deleted"
    );
    assert!(
        out.stderr.contains("another mount inside the destination"),
        "{}",
        out.stderr
    );
}

/// A source root reached through a symlink is followed (as `rsync link/`):
/// its content is copied, not the link. Same for the destination root.
#[test]
fn symlinked_roots_are_followed() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("sub/b.txt", b"beta");
    symlink(env.src.join("a.txt"), env.src.join("inner-link")).unwrap();
    let real_dst = env.root().join("real-dst");
    std::fs::create_dir(&real_dst).unwrap();
    symlink(&env.src, env.root().join("slink")).unwrap();
    symlink(&real_dst, env.root().join("dlink")).unwrap();
    manifest(
        &env,
        "source = \"slink\"\ndestination = \"dlink\"\ndelete_extras = true\n",
    );
    let out: Out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(std::fs::read(real_dst.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(real_dst.join("sub/b.txt")).unwrap(), b"beta");
    // Symlinks below the root keep their policy: recreated, not followed.
    let md = std::fs::symlink_metadata(real_dst.join("inner-link")).unwrap();
    assert!(md.file_type().is_symlink());
    assert!(
        std::fs::symlink_metadata(env.root().join("dlink"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the destination link is left as it was"
    );
    // A second run finds nothing to do.
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.starts_with("jobrun: 0 files"), "{}", out.stdout);
}

/// A DB made before roots were recorded as canonical paths holds the
/// root as it was spelled (through a symlink): the next run moves its rows
/// to the canonical spelling instead of calling it another job's DB, and
/// finds everything already copied.
#[test]
fn a_db_with_a_root_spelled_through_a_symlink_is_moved_not_refused() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("sub/b.txt", b"beta");
    env.run(&[]).assert_code(0);
    symlink(env.root(), env.root().join("via")).unwrap();
    let real = std::fs::canonicalize(&env.src).unwrap();
    let spelled = env.root().join("via/src");
    {
        // What an older jobrun wrote for `source = "via/src"`.
        let db = env.db();
        let (real, spelled) = (real.to_str().unwrap(), spelled.to_str().unwrap());
        db.execute(
            "UPDATE files SET source_path = ?2 || substr(source_path, length(?1) + 1)",
            [real, spelled],
        )
        .unwrap();
        db.execute("UPDATE meta SET value = ?1 WHERE key = 'source'", [spelled])
            .unwrap();
    }
    manifest(&env, "source = \"via/src\"\ndestination = \"dst\"\n");
    let out = env.run(&["--rescan"]);
    out.assert_code(0);
    assert!(out.stdout.starts_with("jobrun: 0 files"), "{}", out.stdout);
    let rows = env.rows();
    assert!(
        rows.keys().all(|k| k.starts_with(real.to_str().unwrap())),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
}
