//! Permission bits and owners of created entries (docs/tree-fidelity.md "Permissions and
//! owners"): nothing arrives more open than it left. The tests run as root
//! (root bypasses permission checks, but not the modes it creates); the
//! non-root cases drop to `nobody` in the child, and the refusing-share case
//! runs in a user namespace where the source's owners do not exist.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::env::{Out, TestEnv};
use crate::support::require_root;

const NOBODY: u32 = 65534;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn chmod(p: &Path, bits: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(bits)).unwrap();
}

fn mkdir(p: &Path, bits: u32) {
    std::fs::create_dir_all(p).unwrap();
    chmod(p, bits);
}

/// Runs `jobrun` under `umask`, optionally as `uid` (and its gid, no groups).
fn run_as(env: &TestEnv, umask: u32, uid: Option<u32>, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.args(args).arg(&env.manifest);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            if let Some(id) = uid
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(id) != 0
                    || libc::setuid(id) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().expect("spawn jobrun").into()
}

fn chown_tree(root: &Path, uid: u32) {
    std::os::unix::fs::lchown(root, Some(uid), Some(uid)).unwrap();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.symlink_metadata().unwrap().is_dir() {
            chown_tree(&p, uid);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
        }
    }
}

/// The `/usr/share` and HR-share cases of the field trial: a private folder
/// and its private file stay private, scripts keep their execute bit, a
/// shared sticky folder stays sticky, setuid is dropped, folders created
/// for a file before their own row get their own bits, and the umask is
/// taken off (rsync without `-p`).
#[test]
fn created_entries_get_the_source_bits_less_the_umask() {
    for (umask, want_notes, want_script, want_grp) in
        [(0o022, 0o644, 0o755, 0o750), (0o027, 0o640, 0o750, 0o750)]
    {
        let env = TestEnv::new();
        env.src_file("hr/salaries.txt", b"secret");
        chmod(&env.src.join("hr/salaries.txt"), 0o600);
        chmod(&env.src.join("hr"), 0o700);
        env.src_file("bin/run.sh", b"#!/bin/sh\n");
        chmod(&env.src.join("bin/run.sh"), 0o755);
        env.src_file("notes.txt", b"n");
        chmod(&env.src.join("notes.txt"), 0o664);
        env.src_file("shared/f", b"f");
        chmod(&env.src.join("shared/f"), 0o666);
        chmod(&env.src.join("shared"), 0o1777);
        env.src_file("grp/deep/x.bin", b"x");
        chmod(&env.src.join("grp/deep/x.bin"), 0o640);
        chmod(&env.src.join("grp/deep"), 0o710);
        chmod(&env.src.join("grp"), 0o750);
        env.src_file("suid", b"s");
        chmod(&env.src.join("suid"), 0o4755);
        mkdir(&env.src.join("sgid"), 0o2775);
        std::os::unix::fs::symlink("notes.txt", env.src.join("link")).unwrap();
        chmod(&env.src, 0o750);

        run_as(&env, umask, None, &[]).assert_code(0);
        let d = |rel: &str| mode(&env.dst.join(rel));
        let ctx = format!("umask {umask:o}");
        assert_eq!(d(""), 0o750 & !umask, "{ctx}: destination root");
        assert_eq!(d("hr"), 0o700, "{ctx}");
        assert_eq!(d("hr/salaries.txt"), 0o600, "{ctx}");
        assert_eq!(d("bin/run.sh"), want_script, "{ctx}");
        assert_eq!(d("notes.txt"), want_notes, "{ctx}");
        assert_eq!(d("shared"), 0o1777 & !umask, "{ctx}: sticky kept");
        assert_eq!(d("shared/f"), 0o666 & !umask, "{ctx}");
        assert_eq!(d("grp"), want_grp, "{ctx}: created as a parent");
        assert_eq!(d("grp/deep"), 0o710, "{ctx}: created as a parent");
        assert_eq!(d("grp/deep/x.bin"), 0o640, "{ctx}");
        assert_eq!(d("suid"), 0o755 & !umask, "{ctx}: setuid dropped");
        assert_eq!(d("sgid"), 0o775 & !umask, "{ctx}: setgid dropped");
        assert!(
            env.dst
                .join("link")
                .symlink_metadata()
                .unwrap()
                .is_symlink()
        );
        env.assert_trees_equal();
    }
}

/// Not root: a read-only source folder is created writable for its owner
/// (or its files could not be written), then given its own bits after its
/// contents; and `owners` is refused at load.
#[test]
fn non_root_fills_read_only_folders_then_closes_them() {
    let env = TestEnv::new();
    env.src_file("ro/f", b"f");
    env.src_file("ro/sub/g", b"g");
    chmod(&env.src.join("ro/f"), 0o444);
    chmod(&env.src.join("ro/sub/g"), 0o400);
    chmod(&env.src.join("ro/sub"), 0o555);
    chmod(&env.src.join("ro"), 0o500);
    chown_tree(env.root(), NOBODY);

    run_as(&env, 0o022, Some(NOBODY), &[]).assert_code(0);
    let d = |rel: &str| mode(&env.dst.join(rel));
    assert_eq!(d("ro"), 0o500);
    assert_eq!(d("ro/sub"), 0o555);
    assert_eq!(d("ro/f"), 0o444);
    assert_eq!(d("ro/sub/g"), 0o400);
    assert_eq!(std::fs::read(env.dst.join("ro/sub/g")).unwrap(), b"g");

    // `owners` is refused for a run and for `check`, not for `status`,
    // which only reads the DB.
    env.manifest("owners = true");
    for args in [&[][..], &["check"]] {
        let out = run_as(&env, 0o022, Some(NOBODY), args);
        out.assert_code(2);
        assert!(
            out.stderr.contains(
                "job.toml: `owners`: only root can give files the source's owners (running as uid 65534)"
            ),
            "{args:?}: {}",
            out.stderr
        );
    }
    run_as(&env, 0o022, Some(NOBODY), &["status"]).assert_code(0);
}

/// `permissions = "preserve"`: the exact bits, whatever the umask; setuid
/// and setgid only where the destination has the source's owner or group,
/// so a program setuid to another user never becomes setuid root.
/// `owners = true` gives the owners, and then the setuid bit with them.
#[test]
fn preserve_gives_exact_bits_and_setid_only_with_the_owner() {
    let setup = |env: &TestEnv| {
        env.src_file("notes.txt", b"n");
        chmod(&env.src.join("notes.txt"), 0o644);
        env.src_file("suid_root", b"r");
        chmod(&env.src.join("suid_root"), 0o4755);
        env.src_file("suid_alice", b"a");
        std::os::unix::fs::chown(env.src.join("suid_alice"), Some(1234), Some(1234)).unwrap();
        chmod(&env.src.join("suid_alice"), 0o6750);
        env.src_file("team/doc", b"d");
        std::os::unix::fs::chown(env.src.join("team"), Some(1234), Some(1234)).unwrap();
        chmod(&env.src.join("team"), 0o2770);
        mkdir(&env.src.join("drop"), 0o1733);
        std::os::unix::fs::symlink("notes.txt", env.src.join("link")).unwrap();
        std::os::unix::fs::lchown(env.src.join("link"), Some(1234), Some(1234)).unwrap();
    };
    let env = TestEnv::new();
    setup(&env);
    env.manifest("permissions = \"preserve\"");
    run_as(&env, 0o077, None, &[]).assert_code(0);
    let md = |rel: &str| env.dst.join(rel).symlink_metadata().unwrap();
    let d = |rel: &str| mode(&env.dst.join(rel));
    assert_eq!(d("notes.txt"), 0o644, "exact despite umask 077");
    assert_eq!(d("suid_root"), 0o4755);
    assert_eq!(d("suid_alice"), 0o750, "root-owned copy: no setuid/setgid");
    assert_eq!(md("suid_alice").uid(), 0);
    assert_eq!(d("team"), 0o770, "root-group copy: no setgid");
    assert_eq!(d("drop"), 0o1733);

    let env = TestEnv::new();
    setup(&env);
    env.manifest("permissions = \"preserve\"\nowners = true");
    run_as(&env, 0o077, None, &[]).assert_code(0);
    let md = |rel: &str| env.dst.join(rel).symlink_metadata().unwrap();
    let d = |rel: &str| mode(&env.dst.join(rel));
    assert_eq!(
        (md("suid_alice").uid(), md("suid_alice").gid()),
        (1234, 1234)
    );
    assert_eq!(d("suid_alice"), 0o6750);
    assert_eq!((md("team").uid(), md("team").gid()), (1234, 1234));
    assert_eq!(d("team"), 0o2770);
    assert_eq!(md("link").uid(), 1234, "symlinks get their owner");
    assert_eq!(md("notes.txt").uid(), 0);

    // `owners` alone: the owners, and the masked bits (the temporary was
    // created owner-only and opened up after its chown).
    let env = TestEnv::new();
    setup(&env);
    env.manifest("owners = true");
    run_as(&env, 0o022, None, &[]).assert_code(0);
    let md = |rel: &str| env.dst.join(rel).symlink_metadata().unwrap();
    assert_eq!(md("suid_alice").uid(), 1234);
    assert_eq!(mode(&env.dst.join("suid_alice")), 0o750);
    assert_eq!(mode(&env.dst.join("notes.txt")), 0o644);
    assert_eq!(
        (md("team").uid(), mode(&env.dst.join("team"))),
        (1234, 0o750)
    );
}

/// `inplace`: an existing destination file keeps its bits (rsync without
/// `-p`) less any the source does not grant, taken off before the new
/// content goes in; a new file gets the source's bits less the umask.
#[test]
fn inplace_keeps_existing_bits_less_what_the_source_does_not_grant() {
    let env = TestEnv::new();
    env.src_file("secret", b"new salaries");
    chmod(&env.src.join("secret"), 0o600);
    env.dst_file("secret", b"old");
    chmod(&env.dst.join("secret"), 0o644);
    env.src_file("kept", b"new");
    chmod(&env.src.join("kept"), 0o755);
    env.dst_file("kept", b"old");
    chmod(&env.dst.join("kept"), 0o640);
    env.src_file("fresh", b"f");
    chmod(&env.src.join("fresh"), 0o640);
    env.manifest("inplace = true");
    run_as(&env, 0o022, None, &[]).assert_code(0);
    assert_eq!(mode(&env.dst.join("secret")), 0o600);
    assert_eq!(
        std::fs::read(env.dst.join("secret")).unwrap(),
        b"new salaries"
    );
    assert_eq!(mode(&env.dst.join("kept")), 0o640, "kept, not widened");
    assert_eq!(mode(&env.dst.join("fresh")), 0o640);
}

/// A share that refuses the source's owners (here: ids that do not exist in
/// a user namespace, as on a root-squashed or id-mapped share) costs one
/// warning per run, not one per file, and no file fails.
#[test]
fn refused_owners_warn_once_and_fail_nothing() {
    assert!(
        std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "true"])
            .status()
            .is_ok_and(|s| s.success()),
        "this test needs user namespaces (`unshare --user --map-root-user` failed here)"
    );
    let env = TestEnv::new();
    for i in 0..20 {
        let p = env.src_file(&format!("d{}/f{i}", i % 3), b"x");
        std::os::unix::fs::chown(&p, Some(1234), Some(1234)).unwrap();
    }
    env.manifest("owners = true");
    let mut c = std::process::Command::new("unshare");
    c.args(["--user", "--map-root-user", crate::env::BIN])
        .arg(&env.manifest)
        .current_dir(env.root())
        .env_remove("RUST_LOG");
    let out: Out = c.output().unwrap().into();
    out.assert_code(0);
    let warnings = out
        .stderr
        .matches("refused the source's owner and group")
        .count();
    assert_eq!(warnings, 1, "{}", out.stderr);
    // Named by the destination path, not the temporary's.
    assert!(
        out.stderr.contains("path=") && out.stderr.contains("/dst/d"),
        "{}",
        out.stderr
    );
    assert_warned_by_name_and_synced(&env, &out);
    assert_eq!(mode(&env.dst.join("d0/f0")), 0o644);
    env.assert_trees_equal();
}

/// `check` shows both choices, from the manifest and from flags; a value
/// that is not one of the two is refused naming the key.
#[test]
fn check_shows_permissions_and_owners() {
    let env = TestEnv::new();
    env.manifest("permissions = \"preserve\"");
    let out = env.check(&["--owners"]);
    out.assert_code(0);
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` row: {}", out.stdout))
            .to_string()
    };
    assert_eq!(
        line("permissions"),
        "permissions        preserve (the source's exact bits, set after the write; best-effort)"
    );
    assert_eq!(
        line("owners"),
        "owners             true (the source's owner and group; best-effort)"
    );
    env.manifest("permissions = \"exact\"");
    let out = env.check(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(
            ":3: `permissions`: unknown variant `exact`, expected `masked` or `preserve`"
        ),
        "{}",
        out.stderr
    );
}

/// Spawns a run as `uid` (None: root) and returns the child.
fn spawn_as(env: &TestEnv, uid: Option<u32>, args: &[&str]) -> std::process::Child {
    let mut c = env.cmd();
    c.args(args)
        .arg(&env.manifest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::umask(0o022);
            if let Some(id) = uid
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(id) != 0
                    || libc::setuid(id) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().expect("spawn jobrun")
}

/// The modes of every temporary seen in `dir` while `child` runs.
fn temp_modes_while_running(
    dir: &Path,
    child: &mut std::process::Child,
) -> std::collections::BTreeSet<u32> {
    let mut seen = std::collections::BTreeSet::new();
    while child.try_wait().unwrap().is_none() {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(".jobrun-")
                && let Ok(md) = e.path().symlink_metadata()
            {
                seen.insert(md.mode() & 0o7777);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    seen
}

/// Not even while it is written: the temporary of a `600` file is `600`
/// from its creation (never created wider and narrowed later); with
/// `owners`, a `640` file's temporary stays owner-only until its chown
/// (and has the source's bits only after it).
#[test]
#[ignore = "slow tier (9 s)"]
fn the_temporary_is_never_wider_than_the_source() {
    for (extra, src_bits, want_tmp) in [("", 0o600, 0o600), ("owners = true", 0o640, 0o600)] {
        let env = TestEnv::new();
        // About 3 s at the limit: the temporary is there long enough to be
        // seen by a poller on a loaded machine.
        env.src_file("hr/salaries.bin", &crate::env::bytes(1536 << 10, 1));
        chmod(&env.src.join("hr/salaries.bin"), src_bits);
        env.manifest(&format!("bwlimit = \"512K\"\n{extra}"));
        let mut child = spawn_as(&env, None, &[]);
        let seen = temp_modes_while_running(&env.dst.join("hr"), &mut child);
        assert!(child.wait().unwrap().success(), "{extra}: the run failed");
        assert!(!seen.is_empty(), "{extra}: no temporary seen");
        // With `owners`, the source's own bits follow its chown on the
        // temporary, which a poller may see in the moment before the rename
        // (its fsync included): that is the source's own openness, with the
        // source's owner and group.
        let after_chown = |m: u32| !extra.is_empty() && m == src_bits;
        assert!(seen.contains(&want_tmp), "{extra}: never seen owner-only");
        assert!(
            seen.iter().all(|m| *m == want_tmp || after_chown(*m)),
            "{extra}: {:?}",
            seen.iter().map(|m| format!("{m:o}")).collect::<Vec<_>>()
        );
        assert_eq!(mode(&env.dst.join("hr/salaries.bin")), src_bits, "{extra}");
    }
}

/// Not root, a run killed after creating a read-only folder with its
/// owner's `rwx` added (to write into it) and before the folder's own row:
/// the next run takes them off.
#[test]
fn non_root_run_killed_mid_folder_leaves_it_fixed_by_the_next() {
    let env = TestEnv::new();
    env.src_file("ro/big.bin", &crate::env::bytes(2 << 20, 2));
    chmod(&env.src.join("ro"), 0o555);
    env.manifest("bwlimit = \"256K\"");
    chown_tree(env.root(), NOBODY);
    let mut child = spawn_as(&env, Some(NOBODY), &[]);
    let ro = env.dst.join("ro");
    let t0 = std::time::Instant::now();
    while !ro.exists() && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(mode(&ro), 0o755, "created writable for its owner");
    run_as(&env, 0o022, Some(NOBODY), &["--bwlimit", "off"]).assert_code(0);
    assert_eq!(mode(&ro), 0o555);
    assert_eq!(
        std::fs::read(ro.join("big.bin")).unwrap(),
        crate::env::bytes(2 << 20, 2)
    );
}

/// Not root, a later run adds a file to a folder that arrived read-only:
/// the folder is opened for its owner for the write and closed again once
/// its row is applied (a read-only folder did not block updates while every
/// folder arrived `755`; it must not now).
#[test]
fn non_root_adds_files_to_a_read_only_folder_on_a_later_run() {
    let env = TestEnv::new();
    env.src_file("ro/f", b"f");
    chmod(&env.src.join("ro"), 0o555);
    chown_tree(env.root(), NOBODY);
    run_as(&env, 0o022, Some(NOBODY), &[]).assert_code(0);
    assert_eq!(mode(&env.dst.join("ro")), 0o555);

    chmod(&env.src.join("ro"), 0o755);
    env.src_file("ro/new", b"new");
    std::fs::write(env.src.join("ro/f"), b"changed").unwrap();
    chmod(&env.src.join("ro"), 0o555);
    chown_tree(env.root(), NOBODY);
    run_as(&env, 0o022, Some(NOBODY), &[]).assert_code(0);
    assert_eq!(std::fs::read(env.dst.join("ro/new")).unwrap(), b"new");
    assert_eq!(std::fs::read(env.dst.join("ro/f")).unwrap(), b"changed");
    assert_eq!(mode(&env.dst.join("ro")), 0o555);
}

/// `preserve` and `owners` act through the held destination folders like
/// everything else (beneath): a destination symlink to a folder outside
/// both roots, where the source now has a folder, is replaced by a real
/// folder (the link itself removed, issue 24 item 7), and neither the
/// outside folder nor anything in it gets the source's bits or owners.
#[test]
fn preserve_and_owners_never_reach_through_a_destination_symlink() {
    let env = TestEnv::new();
    let outside = env.root().join("outside");
    mkdir(&outside, 0o755);
    std::fs::write(outside.join("x.txt"), b"precious").unwrap();
    chmod(&outside.join("x.txt"), 0o644);
    env.src_file("a.txt", b"a");
    std::os::unix::fs::symlink("../outside", env.src.join("sub")).unwrap();
    env.manifest("permissions = \"preserve\"\nowners = true");
    run_as(&env, 0o022, None, &[]).assert_code(0);
    // The source replaces its symlink with a private folder of another user.
    std::fs::remove_file(env.src.join("sub")).unwrap();
    env.src_file("sub/x.txt", b"would overwrite the link's target");
    env.src_file("sub/deep/y.txt", b"would land in the link's target");
    for (rel, bits) in [("sub", 0o2700), ("sub/deep", 0o700), ("sub/x.txt", 0o4755)] {
        std::os::unix::fs::chown(env.src.join(rel), Some(1234), Some(1234)).unwrap();
        chmod(&env.src.join(rel), bits);
    }
    let md = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    let owners = |p: &Path| (md(p).uid(), md(p).gid());
    let before = (owners(&outside), owners(&outside.join("x.txt")));
    run_as(&env, 0o022, None, &[]).assert_code(0);
    assert_eq!(mode(&outside), 0o755);
    assert_eq!(mode(&outside.join("x.txt")), 0o644);
    assert_eq!(before, (owners(&outside), owners(&outside.join("x.txt"))));
    assert_eq!(std::fs::read(outside.join("x.txt")).unwrap(), b"precious");
    assert!(!outside.join("deep").exists());
    let sub = env.dst.join("sub");
    assert!(md(&sub).is_dir(), "the link replaced by a folder");
    assert_eq!(mode(&sub), 0o2700);
    assert_eq!(owners(&sub), (1234, 1234));
    assert_eq!(mode(&sub.join("x.txt")), 0o4755);
}

/// A seccomp filter that makes `chmod` and `chown` in all their forms
/// return 0 without doing anything: what the kernel's SMB client does on a
/// share without POSIX extensions (`nounix`, its default), which answers
/// every `chmod`/`chown` with success and keeps showing its mount's
/// `file_mode`, `dir_mode`, `uid` and `gid`. Installed in the child before
/// exec; x86-64 only (syscall numbers).
#[cfg(target_arch = "x86_64")]
fn ignore_chmod_chown(c: &mut std::process::Command) {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO_0: u32 = 0x0005_0000;
    // chmod, fchmod, chown, fchown, lchown, fchownat, fchmodat, fchmodat2.
    const CALLS: [u32; 8] = [90, 91, 92, 93, 94, 260, 268, 452];
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let n = CALLS.len() as u8;
    let mut prog = vec![
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 0, n + 1, AUDIT_ARCH_X86_64),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
    ];
    for (i, nr) in CALLS.iter().enumerate() {
        // Matched: jump over the remaining tests and the allow.
        prog.push(op(JEQ_K, n - i as u8, 0, *nr));
    }
    prog.push(op(RET_K, 0, 0, RET_ALLOW));
    prog.push(op(RET_K, 0, 0, RET_ERRNO_0));
    let prog = Box::leak(prog.into_boxed_slice());
    let fprog = Box::leak(Box::new(libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    }));
    // An address, not a reference: the closure must be `Send`.
    let fprog = fprog as *const libc::sock_fprog as usize;
    // SAFETY: only async-signal-safe syscalls between fork and exec; the
    // program is leaked, so it outlives the child's use of it.
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A share that accepts `chmod`/`chown` and keeps nothing (SMB without
/// POSIX extensions; seccomp here) must not be taken at its word: one
/// warning per run and kind says the bits and the owners were not kept, no
/// file fails, and what was created stays as created (the temporaries were
/// created owner-only for `owners`, so here nothing is wider than its
/// source). The same tree without the filter warns nothing.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "needs root"]
fn accepted_but_ignored_bits_and_owners_warn_once_and_fail_nothing() {
    require_root();
    let setup = |env: &TestEnv| {
        for i in 0..12 {
            let p = env.src_file(&format!("d{}/f{i}", i % 3), b"x");
            std::os::unix::fs::chown(&p, Some(1234), Some(1234)).unwrap();
            chmod(&p, 0o640);
        }
        env.src_file("hr/salaries", b"s");
        chmod(&env.src.join("hr/salaries"), 0o600);
        chmod(&env.src.join("hr"), 0o700);
        env.manifest("permissions = \"preserve\"\nowners = true");
    };
    let bits = "accepted permission bits but did not keep them";
    let owners = "accepted the source's owner and group but did not keep them";

    let env = TestEnv::new();
    setup(&env);
    let out = run_as(&env, 0o022, None, &[]);
    out.assert_code(0);
    assert!(!out.stderr.contains("did not keep"), "{}", out.stderr);
    assert_eq!(mode(&env.dst.join("d0/f0")), 0o640);

    let env = TestEnv::new();
    setup(&env);
    let mut c = env.cmd();
    c.arg(&env.manifest);
    ignore_chmod_chown(&mut c);
    let out: Out = c.output().expect("spawn jobrun").into();
    out.assert_code(0);
    assert_eq!(out.stderr.matches(bits).count(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.matches(owners).count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("refused"), "{}", out.stderr);
    // Named by the destination path, with what was asked and what shows.
    assert!(
        out.stderr.contains("asked=1234:1234 shown=0:0"),
        "{}",
        out.stderr
    );
    assert_warned_by_name_and_synced(&env, &out);
    env.assert_trees_equal();
    let md = env.dst.join("d0/f0").symlink_metadata().unwrap();
    assert_eq!((md.uid(), mode(&env.dst.join("d0/f0"))), (0, 0o600));
    assert_eq!(mode(&env.dst.join("hr/salaries")), 0o600);
    // The second run copies nothing: bits and owners are not compared.
    let mut c = env.cmd();
    c.arg(&env.manifest);
    ignore_chmod_chown(&mut c);
    let out: Out = c.output().expect("spawn jobrun").into();
    out.assert_code(0);
    out.assert_copied_nothing();
}

/// A warning about modes or owners names the destination, never the
/// temporary the file was written as, and fails no file.
fn assert_warned_by_name_and_synced(env: &TestEnv, out: &Out) {
    assert!(!out.stderr.contains(".jobrun-"), "{}", out.stderr);
    let rows = env.rows();
    assert!(
        rows.values().all(|(status, _)| status == "synced"),
        "{rows:?}"
    );
}
