//! No path escapes its roots, even in a race: a thread swaps a folder for a
//! symlink to a canary folder outside both roots, in a tight loop, while a
//! run reads the source, writes the destination, or the mirror deletes.
//! The canaries must stay unopened (inotify sees every open, read, write,
//! create, delete, attribute change and rename of an entry in the folder,
//! `O_NOATIME` or not), unchanged, undeleted, and their atimes as set.
//!
//! Every run is repeated, alternating `openat2` with the per-component
//! fallback (`JOBRUN_TEST_NO_OPENAT2`, debug builds). On the code before
//! `beneath` (path checks with a 2 s cache, then path opens) each of these
//! tests escaped in its first iteration: canaries read and copied, written
//! over by the rename of a temporary, deleted.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;

use crate::env::{Out, TestEnv};
use crate::support::require_debug_hooks;
use crate::support::{Paused, all_rows};

/// Files per sub-folder, and sub-folders of the swapped folder: each
/// sub-folder a lane moves to is resolved again through the swapped one.
const FILES: usize = 10;
const SUBDIRS: usize = 20;
const ITERATIONS: usize = 6;
const CANARY: &[u8] = b"CANARY: outside both roots";
/// The canaries' atime, far in the past: any read would move it.
const OLD_ATIME: i64 = 1_000_000_000;

/// A watch on the canary folder: every event on an entry in it.
struct Watch {
    fd: i32,
}

impl Watch {
    fn new(dir: &Path) -> Self {
        // SAFETY: plain syscalls; the path is NUL-terminated.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_ALL_EVENTS) };
        assert!(wd >= 0, "inotify_add_watch");
        Watch { fd }
    }

    /// Names of the entries something touched since the last call (events
    /// on the folder itself, e.g. a listing, carry no name). A close alone
    /// is left out: the test's own threads open the canaries (to make and
    /// check them), and a child another test forks at that moment inherits
    /// the descriptor and closes it at its `exec`, later, as a `jobrun`
    /// (seen with fatrace under load: a `CW` on a canary by a `jobrun` of
    /// another test, before it opened its own manifest). Any use of a
    /// canary by a run opens it first, and the open is kept.
    fn touched(&self) -> Vec<(OsString, u32)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads into a buffer we own, of the length given.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut at = 0usize;
            while at + 16 <= n as usize {
                let field =
                    |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let (mask, len) = (field(4), field(12) as usize);
                let name = &buf[at + 16..at + 16 + len];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(len)];
                let close_only =
                    mask & !libc::IN_ISDIR & !(libc::IN_CLOSE_WRITE | libc::IN_CLOSE_NOWRITE) == 0;
                if !name.is_empty() && !close_only {
                    out.push((std::ffi::OsStr::from_bytes(name).to_os_string(), mask));
                }
                at += 16 + len;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this struct owns, once.
        unsafe { libc::close(self.fd) };
    }
}

/// A canary folder outside both roots: `names` (relative paths), each
/// with its content and the given mtime, atime far in the past; every
/// folder watched from now on.
struct Canaries {
    dir: PathBuf,
    names: Vec<String>,
    watches: Vec<Watch>,
    mtime: i64,
}

impl Canaries {
    fn new(dir: PathBuf, names: &[String], mtime: i64, content: &dyn Fn(usize) -> Vec<u8>) -> Self {
        std::fs::create_dir(&dir).unwrap();
        for (i, n) in names.iter().enumerate() {
            let p = dir.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content(i)).unwrap();
            filetime::set_file_times(
                &p,
                filetime::FileTime::from_unix_time(OLD_ATIME, 0),
                filetime::FileTime::from_unix_time(mtime, 0),
            )
            .unwrap();
        }
        // Listed before any watch exists: the listing is an event too.
        let dirs: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_dir())
            .map(walkdir::DirEntry::into_path)
            .collect();
        let watches = dirs.iter().map(|d| Watch::new(d)).collect();
        Canaries {
            dir,
            names: names.to_vec(),
            watches,
            mtime,
        }
    }

    /// Every entry event since the last call, on any watched folder.
    fn touched(&self) -> Vec<(OsString, u32)> {
        self.watches.iter().flat_map(Watch::touched).collect()
    }

    /// Nothing touched, nothing gone, nothing added, nothing changed.
    #[track_caller]
    fn assert_untouched(&self, what: &str, content: &dyn Fn(usize) -> Vec<u8>) {
        let touched = self.touched();
        assert!(
            touched.is_empty(),
            "{what}: canaries outside the roots were touched (inotify name, mask): {:?}",
            &touched[..touched.len().min(20)]
        );
        // Listed without reading a byte: atimes are checked next.
        let mut listed: Vec<String> = walkdir::WalkDir::new(&self.dir)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| !e.file_type().is_dir())
            .map(|e| {
                let rel = e.path().strip_prefix(&self.dir).unwrap();
                rel.to_string_lossy().into_owned()
            })
            .collect();
        listed.sort();
        let mut want = self.names.clone();
        want.sort();
        assert_eq!(listed, want, "{what}: canary folder changed");
        for (i, n) in self.names.iter().enumerate() {
            let p = self.dir.join(n);
            let md = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(md.atime(), OLD_ATIME, "{what}: {n} was read");
            assert_eq!(md.mtime(), self.mtime, "{what}: {n} was modified");
            assert_eq!(std::fs::read(&p).unwrap(), content(i), "{what}: {n}");
        }
        // The checks above read the canaries: back to the old atime.
        for n in &self.names {
            let p = self.dir.join(n);
            let m = std::fs::symlink_metadata(&p).unwrap();
            filetime::set_file_times(
                &p,
                filetime::FileTime::from_unix_time(OLD_ATIME, 0),
                filetime::FileTime::from_unix_time(m.mtime(), 0),
            )
            .unwrap();
        }
        self.touched();
    }
}

/// Swaps `folder` for a symlink to `target` and back, in a tight loop,
/// until dropped; leaves the real folder in place.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Swapper {
    fn start(folder: &Path, target: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let (folder, target) = (folder.to_path_buf(), target.to_path_buf());
        let aside = folder.with_extension("real");
        let thread = {
            let (stop, swaps) = (stop.clone(), swaps.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    match std::fs::rename(&folder, &aside) {
                        Ok(()) => {}
                        // The mirror removed the folder once it had emptied
                        // it (a pass that ran whole while the folder was
                        // real, as happens on a loaded machine): nothing
                        // is left to swap.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e) => panic!("cannot move `{}` aside: {e}", folder.display()),
                    }
                    // A writer may have created the folder anew in the
                    // meantime (it creates missing folders): that one goes.
                    while let Err(e) = std::os::unix::fs::symlink(&target, &folder) {
                        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
                        let _ = std::fs::remove_dir_all(&folder);
                    }
                    std::thread::yield_now();
                    std::fs::remove_file(&folder).unwrap();
                    while std::fs::rename(&aside, &folder).is_err() {
                        let _ = std::fs::remove_dir_all(&folder);
                    }
                    swaps.fetch_add(1, Relaxed);
                    std::thread::yield_now();
                }
            })
        };
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    /// Stops swapping; returns how many swaps were made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("swapper panicked");
        self.swaps.load(Relaxed)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sNN/<prefix>MMM`, [`SUBDIRS`] × [`FILES`].
fn names(prefix: &str) -> Vec<String> {
    (0..SUBDIRS)
        .flat_map(|d| (0..FILES).map(move |i| format!("s{d:02}/{prefix}{i:03}")))
        .collect()
}

/// `jobrun ARGS job.toml`, with the per-component fallback on odd iterations.
fn run(env: &TestEnv, args: &[&str], iteration: usize) -> Out {
    let mut c = env.cmd();
    if iteration % 2 == 1 {
        c.env("JOBRUN_TEST_NO_OPENAT2", "1");
    }
    c.args(args).arg(&env.manifest);
    c.output().expect("spawn jobrun").into()
}

/// Failed rows whose error names the refusal, and the count of all failed.
fn refusals(env: &TestEnv) -> (usize, usize) {
    let failed: Vec<_> = all_rows(env)
        .into_iter()
        .filter(|r| r.status == "failed")
        .collect();
    let refused = failed
        .iter()
        .filter(|r| {
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("symlink in path; not followed"))
        })
        .count();
    (refused, failed.len())
}

#[test]
#[ignore = "needs the debug build's test hooks; slow tier (9 s)"]
fn a_source_folder_swapped_for_a_symlink_in_a_loop_never_leads_outside() {
    require_debug_hooks();
    let env = TestEnv::new();
    let files = names("f");
    for (i, n) in files.iter().enumerate() {
        env.src_file(&format!("d/{n}"), format!("real {i}\n").as_bytes());
    }
    env.src_file("top.txt", b"top");
    let canary = |_: usize| CANARY.to_vec();
    let canaries = Canaries::new(env.root().join("outside"), &files, 1_600_000_000, &canary);
    env.manifest("transfers = 4\n");
    let mut refused = 0;
    for it in 0..ITERATIONS {
        // The backlog is scanned with no swapping (a dry run scans and
        // keeps it), so that every file of d/ is pending; the run then
        // resumes it (no scan) while d/ keeps turning into a symlink.
        let _ = std::fs::remove_dir_all(&env.dst);
        let _ = std::fs::remove_file(env.db_path());
        run(&env, &["-n"], it).assert_code(0);
        let swapper = Swapper::start(&env.src.join("d"), &canaries.dir);
        let out = run(&env, &[], it);
        let swaps = swapper.stop();
        assert!(matches!(out.code, 0 | 1), "{out:?}");
        assert!(out.stderr.contains("resuming backlog"), "{}", out.stderr);
        assert!(swaps > 0);
        canaries.assert_untouched(&format!("iteration {it}"), &canary);
        for (rel, (data, _)) in crate::env::files_under(&env.dst) {
            assert!(
                !data.starts_with(b"CANARY"),
                "iteration {it}: {rel:?} holds a canary's bytes"
            );
        }
        refused += refusals(&env).0;
    }
    // The race was run, not dodged: some opens met the symlink and failed.
    assert!(refused > 0, "no open ever met the swapped folder");
}

#[test]
#[ignore = "needs the debug build's test hooks; slow tier (10 s)"]
fn a_destination_folder_swapped_for_a_symlink_in_a_loop_is_never_written_through() {
    require_debug_hooks();
    let env = TestEnv::new();
    let files = names("f");
    for (i, n) in files.iter().enumerate() {
        env.src_file(&format!("d/{n}"), format!("v0 {i}\n").as_bytes());
    }
    env.manifest("transfers = 4\n");
    env.run(&[]).assert_code(0);
    // Same names, sizes and mtimes as the destination's copies: nothing
    // but the path tells them apart.
    let canary = |i: usize| format!("C! {i}\n").into_bytes();
    let canaries = Canaries::new(env.root().join("outside"), &files, 1_600_000_000, &canary);
    let mut refused = 0;
    for it in 0..ITERATIONS {
        // A new version of every source file, queued with no swapping.
        for (i, n) in files.iter().enumerate() {
            let p = env.src_file(&format!("d/{n}"), format!("v{} {i}\n", it + 1).as_bytes());
            TestEnv::set_mtime(&p, 1_700_000_000 + it as i64, 0);
        }
        run(&env, &["-n"], it).assert_code(0);
        let swapper = Swapper::start(&env.dst.join("d"), &canaries.dir);
        let out = run(&env, &[], it);
        swapper.stop();
        assert!(matches!(out.code, 0 | 1), "{out:?}");
        assert!(out.stderr.contains("resuming backlog"), "{}", out.stderr);
        canaries.assert_untouched(&format!("iteration {it}"), &canary);
        refused += refusals(&env).0;
    }
    assert!(refused > 0, "no create ever met the swapped folder");
    // With the folder left alone, the next runs converge.
    env.run(&[]);
    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
}

#[test]
#[ignore = "needs the debug build's test hooks; slow tier (7 s)"]
fn a_destination_folder_swapped_for_a_symlink_while_the_mirror_deletes_loses_nothing_outside() {
    require_debug_hooks();
    let env = TestEnv::new();
    env.src_file("keep.txt", b"keep");
    env.manifest("delete_extras = true\nmax_delete = \"off\"\ntransfers = 2\n");
    env.run(&[]).assert_code(0);
    let extras = names("x");
    let mtime = 1_600_000_000;
    let body = |i: usize| format!("extra {i:03}\n").into_bytes();
    // The canaries look exactly like the extras (name, size, mtime), so the
    // live check cannot tell them apart either: only the path can.
    let canaries = Canaries::new(env.root().join("outside"), &extras, mtime, &body);
    let mut kept_total = 0;
    for it in 0..ITERATIONS {
        for (i, n) in extras.iter().enumerate() {
            let p = env.dst_file(&format!("d/{n}"), &body(i));
            TestEnv::set_mtime(&p, mtime, 0);
        }
        let mut c = env.cmd();
        if it % 2 == 1 {
            c.env("JOBRUN_TEST_NO_OPENAT2", "1");
        }
        c.arg(&env.manifest);
        let paused = Paused::start(&env, c, "MIRROR");
        // Candidates listed with d/ a real folder; now it keeps swapping.
        let swapper = Swapper::start(&env.dst.join("d"), &canaries.dir);
        let out = paused.release();
        swapper.stop();
        assert!(matches!(out.code, 0 | 1), "{out:?}");
        canaries.assert_untouched(&format!("iteration {it}"), &body);
        // Which deletions met the symlink (and kept their extra) depends on
        // the schedule: a pass can run whole while the folder is a symlink.
        if env.dst.join("d").exists() {
            kept_total += crate::env::files_under(&env.dst.join("d")).len();
        }
    }
    assert!(kept_total > 0, "no deletion ever met the swapped folder");
    // Left alone, the folder's extras all go, and only they.
    env.run(&[]).assert_code(0);
    assert!(!env.dst.join("d").exists());
    canaries.assert_untouched("after the swaps", &body);
}
