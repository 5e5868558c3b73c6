//! Extended attributes and ACLs (docs/tree-fidelity.md "Extended attributes and ACLs"):
//! never more open than the source's ACL allows, `xattrs` and `acls`
//! copied when asked, never left out silently. The ACLs are written as the
//! kernel's binary `system.posix_acl_access` value (what `setfacl` writes),
//! on the test's own filesystem (ext4 or tmpfs under /tmp: both keep POSIX
//! ACLs and `user.*` attributes).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::env::TestEnv;
use crate::support::{Mount, require_root};

const ACCESS: &str = "system.posix_acl_access";

/// The binary form of a POSIX ACL: version 2, then `{tag, perm, id}`.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// What `setfacl -m u:nobody:<perm>` leaves on a `0600`/`0700` entry: the
/// owner's bits, nobody's entry, no bits for the owning group, a mask
/// that `stat` shows as the group bits, nothing for others.
fn nobody_acl(owner: u16, perm: u16) -> Vec<u8> {
    acl(&[
        (0x01, owner, u32::MAX),
        (0x02, perm, 65534),
        (0x04, 0, u32::MAX),
        (0x10, perm, u32::MAX),
        (0x20, 0, u32::MAX),
    ])
}

fn set_acl(p: &Path, value: &[u8]) {
    rustix::fs::setxattr(p, ACCESS, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting an ACL on {}: {e}", p.display()));
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// The `0600` file with `user:nobody:rw` (shown `0660`) and the `0700`
/// folder with `user:nobody:rwx` (shown `0770`) of issue 25.
fn acl_tree(env: &TestEnv) {
    let f = env.src_file("private/salaries.txt", b"secret");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    set_acl(&f, &nobody_acl(6, 6));
    let d = env.src.join("private");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    set_acl(&d, &nobody_acl(7, 7));
    assert_eq!(mode(&f), 0o660, "stat shows the mask as the group bits");
    assert_eq!(mode(&d), 0o770);
}

/// Item 5: with `acls = false` (the default) the group bits of a copy are
/// no wider than the ACL's owning-group entry (none here), not the mask,
/// under both `permissions` settings: the group the source denied cannot
/// read the copy.
#[test]
fn an_acl_mask_never_widens_the_group_bits_of_a_copy() {
    for permissions in ["masked", "preserve"] {
        let env = TestEnv::new();
        acl_tree(&env);
        env.manifest(&format!("permissions = \"{permissions}\""));
        env.run(&[]).assert_code(0);
        let (f, d) = (
            env.dst.join("private/salaries.txt"),
            env.dst.join("private"),
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
        assert_eq!(mode(&f) & 0o070, 0, "{permissions}: file group bits");
        assert_eq!(mode(&d) & 0o070, 0, "{permissions}: folder group bits");
        if permissions == "preserve" {
            assert_eq!(mode(&f), 0o600);
            assert_eq!(mode(&d), 0o700);
        }
    }
}

/// The same, read as a member of the file's group (not its owner): denied
/// at the destination as at the source.
#[test]
#[ignore = "needs root"]
fn a_group_the_source_acl_denies_cannot_read_the_copy() {
    require_root();
    let env = TestEnv::new();
    acl_tree(&env);
    env.manifest("permissions = \"preserve\"");
    env.run(&[]).assert_code(0);
    for p in [env.root(), env.dst.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let f = env.dst.join("private/salaries.txt");
    let gid = std::fs::metadata(&f).unwrap().gid();
    let read_as_group = |path: &Path| {
        Command::new("setpriv")
            .args(["--reuid=12345", &format!("--regid={gid}"), "--clear-groups"])
            .arg("cat")
            .arg(path)
            .output()
            .expect("setpriv")
    };
    // The folder denies the group too: give the group a way in to prove
    // the file's own bits deny it.
    let d = env.dst.join("private");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
    let out = read_as_group(&f);
    assert!(
        !out.status.success(),
        "the group read the copy: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    rustix::fs::lgetxattr(p, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting {name} on {}: {e}", p.display()));
}

/// Item 3: `user.*` attributes of files and folders arrive with
/// `xattrs = true` (`--xattrs`, `JOBRUN_XATTRS`), and not without.
#[test]
fn user_xattrs_arrive_with_files_and_folders_when_asked() {
    let tree = |env: &TestEnv| {
        let f = env.src_file("docs/a.txt", b"hello");
        set_xattr(&f, "user.color", b"blue");
        set_xattr(&env.src.join("docs"), "user.project", b"apollo");
    };
    let env = TestEnv::new();
    tree(&env);
    env.run(&[]).assert_code(0);
    assert_eq!(xattr(&env.dst.join("docs/a.txt"), "user.color"), None);
    for how in ["manifest", "flag", "env"] {
        let env = TestEnv::new();
        tree(&env);
        let out = match how {
            "manifest" => env.manifest("xattrs = true").run(&[]),
            "flag" => env.run(&["--xattrs"]),
            _ => {
                let mut c = env.cmd();
                c.env("JOBRUN_XATTRS", "true").arg(&env.manifest);
                c.output().unwrap().into()
            }
        };
        out.assert_code(0);
        let got = |rel: &str, name: &str| xattr(&env.dst.join(rel), name);
        assert_eq!(
            got("docs/a.txt", "user.color").as_deref(),
            Some(&b"blue"[..]),
            "{how}"
        );
        assert_eq!(
            got("docs", "user.project").as_deref(),
            Some(&b"apollo"[..]),
            "{how}"
        );
        assert_eq!(std::fs::read(env.dst.join("docs/a.txt")).unwrap(), b"hello");
    }
}

/// Item 4: with `acls = true` the access ACL of a file and the access and
/// default ACLs of a folder arrive as they left (the group bits the mask,
/// as at the source), and the owning group is still denied.
#[test]
fn posix_acls_arrive_with_acls_true() {
    let env = TestEnv::new();
    acl_tree(&env);
    let d = env.src.join("private");
    set_xattr(&d, "system.posix_acl_default", &nobody_acl(7, 7));
    env.manifest("acls = true\npermissions = \"preserve\"");
    env.run(&[]).assert_code(0);
    let (f, dd) = (
        env.dst.join("private/salaries.txt"),
        env.dst.join("private"),
    );
    assert_eq!(xattr(&f, ACCESS), Some(nobody_acl(6, 6)));
    assert_eq!(xattr(&dd, ACCESS), Some(nobody_acl(7, 7)));
    assert_eq!(
        xattr(&dd, "system.posix_acl_default"),
        Some(nobody_acl(7, 7))
    );
    assert_eq!(mode(&f), 0o660, "the mask, with the ACL that limits it");
    assert_eq!(xattr(&f, "user.none"), None);
}

/// Item 3: a destination that keeps no attributes (ramfs) keeps the files,
/// with one warning for the run and the count.
#[test]
#[ignore = "needs root"]
fn a_destination_refusing_xattrs_keeps_the_files_and_warns_once() {
    require_root();
    let env = TestEnv::new();
    for i in 0..3 {
        let f = env.src_file(&format!("f{i}.txt"), b"x");
        set_xattr(&f, "user.n", &[b'0' + i]);
    }
    std::fs::create_dir(&env.dst).unwrap();
    let st = Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&env.dst)
        .status();
    assert!(st.is_ok_and(|s| s.success()), "cannot mount ramfs here");
    let out = env.manifest("xattrs = true").run(&[]);
    let _ = Command::new("umount").arg(&env.dst).status();
    out.assert_code(0);
    let warned = out.stderr.matches("refused extended attributes").count();
    assert_eq!(warned, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("3 entries kept without their extended attributes"),
        "{}",
        out.stderr
    );
}

/// `acls = true` from a source that cannot show ACLs (ramfs keeps no
/// attributes at all, as an NFS server without ACLs answers "not
/// supported"): one line in `check` and one per run, naming the source;
/// the files are copied all the same. With `acls = false`, or from a
/// source that keeps ACLs, no such line.
#[test]
#[ignore = "needs root"]
fn acls_true_from_a_source_that_cannot_show_acls_is_said_once_per_run() {
    require_root();
    let env = TestEnv::new();
    let st = Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&env.src)
        .status();
    assert!(st.is_ok_and(|s| s.success()), "cannot mount ramfs here");
    let _mounted = Mount(env.src.clone());
    env.src_file("a.txt", b"a");
    env.src_file("d/b.txt", b"b");
    let line = "shows no POSIX ACLs (system.posix_acl_access: not supported by its \
                filesystem or server): acls = true copies none from it";
    let said = |o: &crate::env::Out| format!("{}{}", o.stdout, o.stderr).matches(line).count();
    env.manifest("acls = true");
    let check = env.check(&[]);
    check.assert_code(0);
    assert_eq!(said(&check), 1, "{}{}", check.stdout, check.stderr);
    for _ in 0..2 {
        let out = env.run(&[]);
        out.assert_code(0);
        assert_eq!(said(&out), 1, "{}", out.stderr);
    }
    env.assert_trees_equal();
    env.manifest("");
    let (check, out) = (env.check(&[]), env.run(&[]));
    assert_eq!(
        said(&check) + said(&out),
        0,
        "{}{}",
        check.stdout,
        out.stderr
    );
    let keeps = TestEnv::new();
    keeps.src_file("a.txt", b"a");
    keeps.manifest("acls = true");
    let (check, out) = (keeps.check(&[]), keeps.run(&[]));
    assert_eq!(
        said(&check) + said(&out),
        0,
        "{}{}",
        check.stdout,
        out.stderr
    );
}

/// Item 6: what the keys leave out is never silent: `check` says so from
/// a look at the source's first entries, the run with its counts, and
/// `status` keeps them. With both keys on, none of it.
#[test]
fn attributes_left_out_are_counted_by_check_the_run_and_status() {
    let env = TestEnv::new();
    acl_tree(&env);
    let f = env.src_file("docs/a.txt", b"hello");
    set_xattr(&f, "user.color", b"blue");
    let check = env.check(&[]);
    check.assert_code(0);
    for want in [
        "2 of the first 5 source entries carry ACLs that are not copied: acls = false",
        "1 of the first 5 source entries carry extended attributes that are not copied: xattrs = false",
    ] {
        assert!(check.stdout.contains(want), "{want}: {}", check.stdout);
    }
    let out = env.run(&[]);
    out.assert_code(0);
    let line = "entries copied: 2 carry ACLs that are not copied: acls = false; \
                1 carry extended attributes that are not copied: xattrs = false";
    assert_eq!(out.stderr.matches(line).count(), 1, "{}", out.stderr);
    let status = env.run(&["status"]);
    status.assert_code(0);
    assert!(status.stdout.contains(line), "{}", status.stdout);
    // A copy that keeps them says nothing of the kind.
    let env2 = TestEnv::new();
    acl_tree(&env2);
    set_xattr(
        &env2.src_file("docs/a.txt", b"hello"),
        "user.color",
        b"blue",
    );
    env2.manifest("acls = true\nxattrs = true");
    let check = env2.check(&[]);
    let out = env2.run(&[]);
    out.assert_code(0);
    assert!(!check.stdout.contains("left out"), "{}", check.stdout);
    assert!(!out.stderr.contains("not copied"), "{}", out.stderr);
}

/// Item 3: with `xattrs = true` a change of attributes alone (the bytes
/// and mtime unchanged; only ctime moves) reaches the destination at the
/// next run, and an attribute removed at the source is removed there.
#[test]
fn an_attribute_change_alone_follows_at_the_next_run() {
    let env = TestEnv::new();
    let f = env.src_file("a.txt", b"hello");
    set_xattr(&f, "user.color", b"blue");
    set_xattr(&f, "user.gone", b"soon");
    env.manifest("xattrs = true");
    env.run(&[]).assert_code(0);
    let d = env.dst.join("a.txt");
    assert_eq!(xattr(&d, "user.color").as_deref(), Some(&b"blue"[..]));
    let mtime = std::fs::metadata(&f).unwrap().mtime();
    set_xattr(&f, "user.color", b"red");
    rustix::fs::removexattr(&f, "user.gone").unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().mtime(), mtime);
    env.run(&[]).assert_code(0);
    assert_eq!(xattr(&d, "user.color").as_deref(), Some(&b"red"[..]));
    assert_eq!(xattr(&d, "user.gone"), None);
    assert_eq!(std::fs::read(&d).unwrap(), b"hello");
    // Nothing changed since: the next run copies nothing.
    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(
        env.log_with_status("synced").len(),
        2,
        "one copy per change"
    );
}

/// Puts `path`'s atime and mtime back to those of `md` (`touch -r`).
fn put_times_back(path: &Path, md: &std::fs::Metadata) {
    let (a, m) = (
        filetime::FileTime::from_last_access_time(md),
        filetime::FileTime::from_last_modification_time(md),
    );
    filetime::set_file_times(path, a, m).unwrap();
}

fn last_run_bytes(env: &TestEnv) -> u64 {
    env.log_with_status("run_end").pop().unwrap()["bytes"]
        .as_u64()
        .unwrap()
}

/// Item 3, without the bytes: an attribute change alone updates the copy
/// in place (same inode, nothing written; the source is read once to
/// vouch that its content is still the one copied), while an edit whose
/// mtime was put back, with or without an attribute change, is copied.
#[test]
fn an_attribute_change_alone_writes_no_bytes_but_an_edit_with_its_mtime_put_back_is_copied() {
    use std::os::unix::fs::FileExt;
    let env = TestEnv::new();
    let data = crate::env::bytes(4 << 20, 3);
    let f = env.src_file("a.bin", &data);
    set_xattr(&f, "user.color", b"blue");
    env.manifest("xattrs = true");
    env.run(&[]).assert_code(0);
    let d = env.dst.join("a.bin");
    let ino = std::fs::metadata(&d).unwrap().ino();
    // Attributes alone.
    set_xattr(&f, "user.color", b"red");
    env.run(&[]).assert_code(0);
    assert_eq!(xattr(&d, "user.color").as_deref(), Some(&b"red"[..]));
    assert_eq!(
        std::fs::metadata(&d).unwrap().ino(),
        ino,
        "updated in place"
    );
    assert_eq!(last_run_bytes(&env), 0, "no byte written for attributes");
    assert_eq!(env.rows()[f.to_str().unwrap()].0, "synced");
    // An edit of the same size, its mtime put back, and an attribute change.
    let md = std::fs::metadata(&f).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all_at(b"EDITED", 1000)
        .unwrap();
    put_times_back(&f, &md);
    set_xattr(&f, "user.color", b"green");
    env.run(&[]).assert_code(0);
    assert_eq!(std::fs::read(&d).unwrap(), std::fs::read(&f).unwrap());
    assert_eq!(xattr(&d, "user.color").as_deref(), Some(&b"green"[..]));
    assert_eq!(last_run_bytes(&env), 4 << 20, "the edit is copied");
    // The same edit alone (ctime moves, nothing else).
    let md = std::fs::metadata(&f).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all_at(b"AGAIN!", 2000)
        .unwrap();
    put_times_back(&f, &md);
    env.run(&[]).assert_code(0);
    assert_eq!(std::fs::read(&d).unwrap(), std::fs::read(&f).unwrap());
}
