//! Hostile trees (SPEC §10, issue 6): names that are not UTF-8 or carry
//! newlines, quotes and spaces; very long paths; symlinks (copied, or
//! skipped by policy); empty folders and folder mtimes; FIFOs, sockets and
//! devices (skipped, never opened); a coarse-timestamp VFAT destination;
//! source atimes left alone (O_NOATIME).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;

use crate::env::{TestEnv, bytes};
use crate::support::require_root;
use crate::support::{Running, all_rows, assert_converges, mkfifo, row, status_counts, temps};

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    md.mtime() * 1_000_000_000 + md.mtime_nsec()
}

fn set_times(p: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 123_456_789);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

#[test]
fn hostile_names_are_copied_byte_exact_and_logged_losslessly() {
    let env = TestEnv::new();
    let names: Vec<&[u8]> = vec![
        b"with space.txt",
        b"double\"quote.txt",
        b"single'quote.txt",
        b"new\nline.txt",
        b"tab\there.txt",
        b"back\\slash.txt",
        b"-leading-dash",
        b"\xc3\xbcn\xc3\xafc\xc3\xb6d\xc3\xa9.txt",
        b"caf\xe9-latin1.txt",
        b"\xff\xfe\x80.bin",
    ];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(env.src.join(os(n)), bytes(100 + i, i as u64)).unwrap();
    }
    // A non-UTF-8 folder with a non-UTF-8 file inside.
    let dir = env.src.join(os(b"dir\xe9"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(os(b"inner\x80.bin")), b"inside").unwrap();
    // A name of NAME_MAX (255) bytes and a path of ~3,800 bytes.
    let long = "n".repeat(255);
    env.src_file(&long, b"longest name");
    let deep: PathBuf = (0..15)
        .map(|i| format!("{i:02}{}", "d".repeat(240)))
        .collect();
    env.src_file(deep.join("leaf.txt").to_str().unwrap(), b"deep leaf");
    assert!(env.src.join(&deep).as_os_str().len() > 3_600);

    let out = env.run(&[]);
    out.assert_code(0);
    env.assert_trees_equal();

    // DB: non-UTF-8 paths as BLOBs of the exact bytes, UTF-8 ones as TEXT.
    let db = env.db();
    let latin = env.src.join(os(b"caf\xe9-latin1.txt"));
    let (ty, raw): (String, Vec<u8>) = db
        .query_row(
            "SELECT typeof(source_path), CAST(source_path AS BLOB) FROM files WHERE source_path = ?1",
            [latin.as_os_str().as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(ty, "blob");
    assert_eq!(raw, latin.as_os_str().as_bytes());
    let ty: String = db
        .query_row(
            "SELECT typeof(source_path) FROM files WHERE source_path = ?1",
            [env.src.join("new\nline.txt").to_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ty, "text");

    // Log: every line is one JSON object (newlines escaped); non-UTF-8 paths
    // carry an escaped text form and the exact bytes in base64.
    let text = std::fs::read_to_string(env.log_path()).unwrap();
    let synced = env.log_with_status("synced");
    assert_eq!(text.lines().count(), env.log().len());
    let line = synced
        .iter()
        .find(|l| {
            l["source"]
                .as_str()
                .unwrap()
                .ends_with("caf\\xE9-latin1.txt")
        })
        .expect("escaped name in log");
    let b64 = base64::engine::general_purpose::STANDARD
        .decode(line["source_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(b64, latin.as_os_str().as_bytes());
    let dest_b64 = base64::engine::general_purpose::STANDARD
        .decode(line["dest_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        dest_b64,
        env.dst
            .join(os(b"caf\xe9-latin1.txt"))
            .as_os_str()
            .as_bytes()
    );
    assert!(
        synced
            .iter()
            .any(|l| l["source"] == env.src.join("new\nline.txt").to_str().unwrap())
    );
    let utf8 = synced
        .iter()
        .find(|l| l["source"] == env.src.join("with space.txt").to_str().unwrap())
        .unwrap();
    assert!(
        utf8.get("source_b64").is_none(),
        "base64 only for non-UTF-8 paths"
    );

    // Nothing to do the second time.
    let out = env.run(&[]);
    out.assert_code(0);
    out.assert_copied_nothing();
}

#[test]
fn paths_beyond_path_max_fail_clearly_and_the_rest_syncs() {
    let env = TestEnv::new();
    env.src_file("ok.txt", b"ok");
    // 18 nested 250-byte names: the leaf's path is ~4,600 bytes, past
    // PATH_MAX (4096). Built with relative mkdir calls from a shell.
    let script = format!(
        "cd '{}' && n=$(printf 'x%.0s' $(seq 250)) && for i in $(seq 18); do mkdir $n && cd $n; done && echo deep > leaf.txt",
        env.src.display()
    );
    assert!(
        Command::new("bash")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    let out = env.run(&[]);
    out.assert_code(1);
    assert!(!out.stderr.contains("panicked"));
    assert!(out.stderr.contains("File name too long"), "{}", out.stderr);
    let failed = env.log_with_status("failed");
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|l| l["error"].as_str().unwrap().contains("File name too long")),
        "{failed:?}"
    );
    assert_eq!(row(&env, "ok.txt").status, "synced");
}

fn make_links(env: &TestEnv) -> Vec<(&'static str, &'static str)> {
    env.src_file("target.txt", b"the target");
    env.src_file("sub/inner.txt", b"inner");
    let links = vec![
        ("rel_link", "target.txt"),
        ("abs_link", "/etc/hostname"),
        ("dangling_link", "does/not/exist"),
        ("dir_link", "sub"),
        ("sub/up_link", "../target.txt"),
    ];
    for (i, (l, t)) in links.iter().enumerate() {
        let p = env.src.join(l);
        std::os::unix::fs::symlink(t, &p).unwrap();
        set_times(&p, 1_500_000_000 + i as i64);
    }
    links
}

#[test]
fn symlinks_are_copied_as_symlinks_with_their_own_mtime() {
    let env = TestEnv::new();
    let links = make_links(&env);
    let out = env.run(&[]);
    out.assert_code(0);
    for (l, t) in &links {
        let d = env.dst.join(l);
        let md = std::fs::symlink_metadata(&d).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(md.file_type().is_symlink(), "{l} is not a symlink");
        assert_eq!(std::fs::read_link(&d).unwrap(), Path::new(t), "{l}");
        let s = std::fs::symlink_metadata(env.src.join(l)).unwrap();
        assert_eq!(mtime_ns(&md), mtime_ns(&s), "{l}: mtime");
    }
    // The link to a folder was not followed: no copy of sub/ under dir_link.
    assert!(
        std::fs::symlink_metadata(env.dst.join("dir_link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    env.assert_trees_equal();
    let out = env.run(&[]);
    out.assert_code(0);
    out.assert_copied_nothing();
}

#[test]
fn a_symlink_that_became_a_folder_is_never_written_through() {
    let env = TestEnv::new();
    let outside = env.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("x.txt"), b"precious").unwrap();
    env.src_file("a.txt", b"a");
    std::os::unix::fs::symlink("../outside", env.src.join("sub")).unwrap();
    env.run(&[]).assert_code(0);
    assert!(
        env.dst
            .join("sub")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The source replaces its symlink with a real folder of the same name.
    std::fs::remove_file(env.src.join("sub")).unwrap();
    env.src_file("sub/x.txt", b"would overwrite the link's target");
    env.src_file("sub/y.txt", b"would land in the link's target");
    // The link the scan saw is replaced by a real folder (the link itself
    // removed, never followed), as rsync -a does; before issue 24 item 7
    // each entry failed on every run.
    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(std::fs::read(outside.join("x.txt")).unwrap(), b"precious");
    assert!(!outside.join("y.txt").exists());
    let sub = env.dst.join("sub").symlink_metadata().unwrap();
    assert!(sub.is_dir(), "a real folder now");
    env.assert_trees_equal();
    for rel in ["sub/x.txt", "sub/y.txt", "sub", "a.txt"] {
        assert_eq!(row(&env, rel).status, "synced", "{rel}");
    }
    assert!(temps(&env.dst).is_empty());
    env.run(&[]).assert_code(0).assert_copied_nothing();
}

#[test]
fn a_destination_file_that_is_a_symlink_is_replaced_never_written_through() {
    for inplace in [false, true] {
        let env = TestEnv::new();
        let outside = env.root().join("outside.txt");
        std::fs::write(&outside, b"precious").unwrap();
        env.src_file("x.txt", b"the source's file");
        std::fs::create_dir(&env.dst).unwrap();
        std::os::unix::fs::symlink(&outside, env.dst.join("x.txt")).unwrap();
        env.manifest(&format!("inplace = {inplace}\n"));
        let out = env.run(&[]);
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            b"precious",
            "inplace = {inplace}"
        );
        if inplace {
            // Writing in place would go through the link: refused instead.
            out.assert_code(1);
            let r = row(&env, "x.txt");
            assert_eq!(r.status, "failed");
            assert!(r.error.unwrap().contains("symbolic links"));
        } else {
            // The rename replaces the link itself, as rsync does.
            out.assert_code(0);
            env.assert_trees_equal();
        }
    }
}

#[test]
fn symlinks_skip_policy_leaves_them_out() {
    let env = TestEnv::new();
    make_links(&env);
    env.manifest("symlinks = \"skip\"\n");
    let check = env.check(&[]);
    check.assert_code(0);
    assert!(
        check.stdout.contains("symlinks           skip"),
        "{}",
        check.stdout
    );
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(!all_rows(&env).iter().any(|r| r.kind == "symlink"));
    for e in walkdir::WalkDir::new(&env.dst) {
        assert!(!e.unwrap().path_is_symlink(), "a symlink was created");
    }
    env.assert_trees_equal();
    // The flag overrides the manifest.
    let out = env.run(&["--symlinks", "copy"]);
    out.assert_code(0);
    assert!(
        env.dst
            .join("rel_link")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A bad value names the key.
    env.manifest("symlinks = \"follow\"\n");
    let out = env.check(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`symlinks`") && out.stderr.contains("follow"),
        "{}",
        out.stderr
    );
}

#[test]
fn empty_folders_and_folder_mtimes_are_restored_after_contents() {
    let env = TestEnv::new();
    env.src_file("a/b/c/file.txt", b"deep");
    std::fs::create_dir_all(env.src.join("empty/nested/empty2")).unwrap();
    std::fs::create_dir_all(env.src.join(os(b"odd\xff/empty"))).unwrap();
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(&env.src)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
    for (i, d) in dirs.iter().enumerate() {
        set_times(d, 1_400_000_000 + i as i64 * 3_600);
    }
    env.run(&[]).assert_code(0);
    for d in &dirs {
        let rel = d.strip_prefix(&env.src).unwrap();
        let md = std::fs::metadata(env.dst.join(rel)).unwrap_or_else(|e| panic!("{rel:?}: {e}"));
        assert!(md.is_dir());
        assert_eq!(
            mtime_ns(&md),
            mtime_ns(&std::fs::metadata(d).unwrap()),
            "{rel:?}: folder mtime"
        );
    }
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains("jobrun: 0 files"), "{}", out.stdout);
}

#[test]
fn fifos_and_sockets_are_skipped_never_opened() {
    specials_are_skipped_never_opened(false);
}

/// The same with a character device (/dev/null's numbers) among them: only
/// root may make one, and a refused `mknod` fails the test.
#[test]
#[ignore = "needs root"]
fn devices_are_skipped_never_opened() {
    require_root();
    specials_are_skipped_never_opened(true);
}

fn specials_are_skipped_never_opened(device: bool) {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    env.src_file("z/z.txt", b"z");
    mkfifo(&env.src.join("pipe"));
    mkfifo(&env.src.join("z/pipe2"));
    let _sock = std::os::unix::net::UnixListener::bind(env.src.join("sock")).unwrap();
    let mut specials = vec!["pipe", "z/pipe2", "sock"];
    if device {
        let c = std::ffi::CString::new(env.src.join("nulldev").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path; makedev(1, 3) is /dev/null's device number.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) };
        assert_eq!(
            rc,
            0,
            "mknod of a character device refused here: {}",
            std::io::Error::last_os_error()
        );
        specials.push("nulldev");
    }
    // A FIFO that is opened would block forever: the timeout catches it.
    let out = Running::start(&env, &[]).wait(Duration::from_secs(30));
    out.assert_code(0);
    env.assert_trees_equal();
    for s in &specials {
        assert!(
            std::fs::symlink_metadata(env.dst.join(s)).is_err(),
            "{s} was copied"
        );
        assert!(
            out.stderr.contains(&*env.src.join(s).to_string_lossy()),
            "no log line names {s}: {}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("fifo") && out.stderr.contains("socket"),
        "{}",
        out.stderr
    );
    assert!(
        !all_rows(&env)
            .iter()
            .any(|r| specials.iter().any(|s| r.source.ends_with(s)))
    );
}

// ---- coarse timestamps on a real VFAT image ------------------------------

/// A VFAT image mounted at a folder; unmounted on drop.
pub(crate) struct Vfat {
    at: PathBuf,
    fuse: bool,
}

impl Drop for Vfat {
    fn drop(&mut self) {
        // Quietly: after `fusermount -u` the `umount` finds nothing mounted.
        let quiet = |c: &mut Command| {
            let _ = c
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        if self.fuse {
            quiet(Command::new("fusermount").arg("-u").arg(&self.at));
        }
        quiet(Command::new("umount").arg(&self.at));
    }
}

fn ok(c: &mut Command) -> bool {
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Formats `image` as FAT and mounts it at `at`: the kernel's vfat driver
/// via a loop device, or else `fusefat` (kernels without vfat). None, with
/// a message, when not root or the tools are missing.
pub(crate) fn mount_vfat(image: &Path, at: &Path) -> Option<Vfat> {
    require_root();
    std::fs::File::create(image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    assert!(
        ok(Command::new("mkfs.vfat").arg(image)),
        "mkfs.vfat (dosfstools) is not available"
    );
    std::fs::create_dir_all(at).unwrap();
    if ok(Command::new("mount")
        .args(["-t", "vfat", "-o", "loop"])
        .arg(image)
        .arg(at))
    {
        return Some(Vfat {
            at: at.into(),
            fuse: false,
        });
    }
    if ok(Command::new("fusefat")
        .args(["-o", "rw+"])
        .arg(image)
        .arg(at))
    {
        eprintln!("note: kernel has no vfat; using fusefat on the same image");
        return Some(Vfat {
            at: at.into(),
            fuse: true,
        });
    }
    panic!("cannot mount a VFAT image (no vfat in the kernel, no fusefat)");
}

#[test]
#[ignore = "needs root, dosfstools and vfat or fusefat"]
fn vfat_destination_second_run_copies_nothing_and_rejects_some_entries() {
    let mut env = TestEnv::new();
    let mnt = env.root().join("mnt");
    let Some(_mount) = mount_vfat(&env.root().join("fat.img"), &mnt) else {
        return;
    };
    // A folder on the image, not its root: FAT's root folder has no
    // timestamps at all (and fusefat 1.0 dies when asked to set them).
    env.dst = mnt.join("dst");
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"mnt/dst\"\n",
    )
    .unwrap();
    // Odd seconds and nanoseconds: FAT keeps 2-second mtimes.
    let files = [
        "a.txt",
        "sub/b.bin",
        "sub/deeper/c.txt",
        "Long Name With Spaces.txt",
    ];
    for (i, f) in files.iter().enumerate() {
        let p = env.src_file(f, &bytes(1_000 + i * 70_000, i as u64));
        TestEnv::set_mtime(&p, 1_600_000_001 + i as i64 * 7, 987_654_321);
    }
    std::fs::create_dir_all(env.src.join("empty")).unwrap();
    let rejected = ["bad:colon.txt", "what?.txt"];
    for f in rejected {
        env.src_file(f, b"FAT forbids this name");
    }
    std::os::unix::fs::symlink("a.txt", env.src.join("link")).unwrap();

    let out = env.run(&[]);
    out.assert_code(1);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    for f in files {
        assert_eq!(row(&env, f).status, "synced", "{f}");
        assert_eq!(
            std::fs::read(env.dst.join(f)).unwrap(),
            std::fs::read(env.src.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(env.dst.join("empty").is_dir());
    for f in rejected.iter().chain(&["link"]) {
        let r = row(&env, f);
        assert_eq!(r.status, "failed", "{f}: {r:?}");
        let e = r.error.unwrap();
        assert!(
            e.contains(&*env.dst.to_string_lossy()),
            "error names the destination path: {e}"
        );
    }
    assert!(row(&env, "link").error.unwrap().contains("symlink"));
    assert!(temps(&env.dst).is_empty(), "{:?}", temps(&env.dst));
    // The destination really is coarse, and holds the source's mtime as
    // closely as it can (FAT: 2 s).
    for f in files {
        let d = mtime_ns(&std::fs::metadata(env.dst.join(f)).unwrap());
        let s = mtime_ns(&std::fs::metadata(env.src.join(f)).unwrap());
        assert_ne!(d, s, "{f}: FAT cannot hold ns");
        assert!(
            d.abs_diff(s) <= 2_000_000_000,
            "{f}: destination mtime {d} is not the source's {s}"
        );
    }

    // Second run: nothing is copied again (the rejected ones fail again).
    let synced_before = env.log_with_status("synced").len();
    let out = env.run(&[]);
    out.assert_code(1);
    assert_eq!(
        env.log_with_status("synced").len(),
        synced_before,
        "second run copied files again"
    );
    out.assert_copied_nothing();
    // Without the rejected entries the job is clean, and stays clean.
    for f in rejected.iter().chain(&["link"]) {
        std::fs::remove_file(env.src.join(f)).unwrap();
    }
    env.run(&[]).assert_code(0);
    let out = env.run(&[]);
    out.assert_code(0);
    out.assert_copied_nothing();
    assert_eq!(
        status_counts(&env).get("synced").copied(),
        Some(files.len())
    );
}

// ---- reading politely ----------------------------------------------------

fn atime_ns(p: &Path) -> i64 {
    let md = std::fs::metadata(p).unwrap();
    md.atime() * 1_000_000_000 + md.atime_nsec()
}

#[test]
fn copying_does_not_change_source_atimes() {
    let env = TestEnv::new();
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    let newer = filetime::FileTime::from_unix_time(1_100_000_000, 0);
    // Control: does this filesystem update atime on a plain read at all?
    let control = env.root().join("control.bin");
    std::fs::write(&control, bytes(10_000, 1)).unwrap();
    filetime::set_file_times(&control, old, newer).unwrap();
    std::fs::read(&control).unwrap();
    assert_ne!(
        atime_ns(&control),
        1_000_000_000 * 1_000_000_000,
        "the temp folder's filesystem does not update atime on read (noatime): \
         this test cannot see an atime change; run it where TMPDIR is relatime or strictatime"
    );
    let files = ["a.bin", "sub/b.bin"];
    for (i, f) in files.iter().enumerate() {
        let p = env.src_file(f, &bytes(200_000, i as u64));
        filetime::set_file_times(&p, old, newer).unwrap();
    }
    env.run(&["--block-size", "64K"]).assert_code(0);
    // (Checked before anything here reads the files.)
    for f in files {
        assert_eq!(
            atime_ns(&env.src.join(f)),
            1_000_000_000 * 1_000_000_000,
            "{f}: source atime changed"
        );
    }
    // The destination gets the source's atime.
    assert_eq!(
        atime_ns(&env.dst.join("a.bin")),
        1_000_000_000 * 1_000_000_000
    );
    env.assert_trees_equal();
    assert_converges(&env, &[], 1);
}

// ---- case collisions on a case-insensitive destination (VFAT, like SMB) ----

/// A FAT image, case-insensitive like an SMB share: two source names that
/// differ only in case are one name there. The second is `failed`, naming
/// both, and never overwrites the first; a folder that collides takes its
/// content with it; later runs copy nothing and the mirror deletes nothing
/// (a destination spelled `CASE.TXT` is the source's `case.txt`).
#[test]
#[ignore = "needs root, dosfstools and vfat or fusefat"]
fn case_collisions_on_a_case_insensitive_destination_fail_the_second_name() {
    let mut env = TestEnv::new();
    let mnt = env.root().join("mnt");
    let Some(_mount) = mount_vfat(&env.root().join("fat.img"), &mnt) else {
        return;
    };
    // Below a folder of the image: FAT's root has no times (see above); the
    // job's root does not exist yet, so the probe runs in its parent.
    std::fs::create_dir(mnt.join("jobs")).unwrap();
    env.dst = mnt.join("jobs/dst");
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"mnt/jobs/dst\"\ndelete_extras = true\n",
    )
    .unwrap();
    env.src_file("Case.txt", b"first, the upper-case one");
    env.src_file("case.txt", b"second: must not replace the first");
    env.src_file("Dir/x", b"in Dir");
    env.src_file("dir/x", b"in dir: would land in Dir");
    env.src_file("dir/y", b"only in dir");
    env.src_file("plain.txt", b"no collision");
    for f in [
        "Case.txt",
        "case.txt",
        "Dir/x",
        "dir/x",
        "dir/y",
        "plain.txt",
    ] {
        TestEnv::set_mtime(&env.src.join(f), 1_600_000_000, 0);
    }

    first_run_keeps_the_first_name(&env);

    // No flip-flop: the next runs copy nothing, delete nothing, and the
    // first file is still the first.
    for _ in 0..2 {
        let out = env.run(&[]);
        out.assert_code(1);
        out.assert_copied_nothing();
        assert!(!out.stdout.contains("deleted"), "{}", out.stdout);
        assert_eq!(
            std::fs::read(env.dst.join("Case.txt")).unwrap(),
            b"first, the upper-case one"
        );
    }
    assert_eq!(env.log_with_status("synced").len(), 3);
    assert!(env.log_with_status("deleted").is_empty());

    other_spellings_are_the_same_name(&mut env);

    // Without the losers the job is clean.
    std::fs::remove_file(env.src.join("case.txt")).unwrap();
    std::fs::remove_dir_all(env.src.join("dir")).unwrap();
    env.run(&[]).assert_code(0);
    assert_eq!(
        std::fs::read(env.dst.join("Case.txt")).unwrap(),
        b"first, the upper-case one"
    );
}

/// The first run on the collision tree: the first of each pair is copied,
/// the second `failed` with both paths named, folders with their content.
fn first_run_keeps_the_first_name(env: &TestEnv) {
    let out = env.run(&[]);
    out.assert_code(1);
    assert_eq!(
        std::fs::read(env.dst.join("Case.txt")).unwrap(),
        b"first, the upper-case one"
    );
    assert_eq!(std::fs::read(env.dst.join("Dir/x")).unwrap(), b"in Dir");
    assert_eq!(
        std::fs::read(env.dst.join("plain.txt")).unwrap(),
        b"no collision"
    );
    let names: Vec<_> = std::fs::read_dir(&env.dst)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let e = row(env, "case.txt").error.unwrap_or_default();
    assert_eq!(row(env, "case.txt").status, "failed");
    assert!(
        e.contains(&*env.src.join("case.txt").to_string_lossy())
            && e.contains(&*env.src.join("Case.txt").to_string_lossy())
            && e.contains("case-insensitive"),
        "the error names both paths: {e}"
    );
    for f in ["dir", "dir/x", "dir/y"] {
        let r = row(env, f);
        assert_eq!(r.status, "failed", "{f}: {r:?}");
        assert!(r.error.unwrap().contains("collision"), "{f}");
    }
    for f in ["Case.txt", "Dir", "Dir/x", "plain.txt"] {
        assert_eq!(row(env, f).status, "synced", "{f}");
    }
    let failed = env.log_with_status("failed");
    assert_eq!(failed.len(), 4, "audit lines: {failed:?}");
    assert!(temps(&env.dst).is_empty(), "{:?}", temps(&env.dst));
}

/// A destination spelled otherwise is the same name: `PLAIN.TXT` there is
/// the source's `plain.txt`, not an extra to delete, and the recopy of a
/// changed source lands on it.
fn other_spellings_are_the_same_name(env: &mut TestEnv) {
    std::fs::rename(env.dst.join("plain.txt"), env.dst.join("PLAIN.TXT")).unwrap();
    let out = env.run(&[]);
    out.assert_code(1);
    assert!(env.log_with_status("deleted").is_empty(), "{}", out.stdout);
    assert_eq!(
        std::fs::read(env.dst.join("plain.txt")).unwrap(),
        b"no collision"
    );
    env.src_file("plain.txt", b"edited, longer than before");
    env.run(&[]).assert_code(1);
    assert_eq!(
        std::fs::read(env.dst.join("plain.txt")).unwrap(),
        b"edited, longer than before"
    );
    let out = env.run(&[]);
    out.assert_code(1);
    out.assert_copied_nothing();
    assert!(env.log_with_status("deleted").is_empty());
}

/// Names a FAT destination refuses (as SMB refuses `\` and names that are
/// not UTF-8) and symlinks it cannot take: each row is `failed` with the
/// reason and each has its audit line, but stderr has ten warnings, one
/// summary line and one hint about symlinks, not one line per entry.
#[test]
#[ignore = "needs root, dosfstools and vfat or fusefat"]
fn many_refused_names_give_a_summary_and_symlinks_one_hint() {
    let mut env = TestEnv::new();
    let mnt = env.root().join("mnt");
    let Some(_mount) = mount_vfat(&env.root().join("fat.img"), &mnt) else {
        return;
    };
    env.dst = mnt.join("dst");
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"mnt/dst\"\ntransfers = 2\n",
    )
    .unwrap();
    env.src_file("ok.txt", b"fine");
    for i in 0..40 {
        env.src_file(&format!("bad:{i}.txt"), b"FAT refuses the colon");
    }
    for i in 0..3 {
        std::os::unix::fs::symlink("ok.txt", env.src.join(format!("link{i}"))).unwrap();
    }
    let out = env.run(&[]);
    out.assert_code(1);
    assert_eq!(std::fs::read(env.dst.join("ok.txt")).unwrap(), b"fine");
    let warned = out.stderr.matches("file failed").count();
    assert_eq!(warned, 10, "{}", out.stderr);
    assert!(
        out.stderr.contains("33 more files failed"),
        "one summary line: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .matches("does not support symlinks: each one fails")
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("symlinks = \\\"skip\\\"")
            || out.stderr.contains("symlinks = \"skip\"")
    );
    assert_eq!(env.log_with_status("failed").len(), 43);
    let e = row(&env, "bad:7.txt").error.unwrap();
    assert!(e.starts_with("the destination refuses this name"), "{e}");
    let e = row(&env, "link1").error.unwrap();
    assert!(e.contains("does not support symlinks"), "{e}");
}

// ---- NFS silly renames -----------------------------------------------------

/// `.nfsXXXX` files (an NFS client's rename of a file deleted while open)
/// are not copied from the source and are not extras at the destination.
#[test]
fn nfs_silly_rename_files_are_neither_copied_nor_deleted() {
    let env = TestEnv::new();
    env.manifest("delete_extras = true");
    env.src_file("keep.txt", b"data");
    env.src_file("sub/.nfs000000000012a4f700000001", b"deleted while open");
    env.src_file(".nfsnot-hex", b"an ordinary name");
    let theirs = env.dst_file(".nfs00000000001234ab00000002", b"open on a client");
    env.run(&[]).assert_code(0);
    assert_eq!(std::fs::read(env.dst.join("keep.txt")).unwrap(), b"data");
    assert_eq!(
        std::fs::read(env.dst.join(".nfsnot-hex")).unwrap(),
        b"an ordinary name"
    );
    assert!(!env.dst.join("sub/.nfs000000000012a4f700000001").exists());
    assert!(
        theirs.exists(),
        "the destination's silly-rename file was deleted"
    );
    assert!(
        !all_rows(&env)
            .iter()
            .any(|r| r.source.to_string_lossy().contains(".nfs0")),
        "a row for a silly-rename file"
    );
    assert!(env.log_with_status("deleted").is_empty());
    let out = env.run(&[]);
    out.assert_code(0);
    out.assert_copied_nothing();
    assert!(theirs.exists());
}
