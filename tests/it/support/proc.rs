//! Processes: a started `jobrun`, signals, waiting on a condition, root
//! and another user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{BIN, Out, TestEnv};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A started `jobrun` whose stdout/stderr go to files in the env folder.
pub struct Running {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    pub fn start(env: &TestEnv, args: &[&str]) -> Self {
        Self::start_cmd(env, env.cmd(), args)
    }

    pub fn start_cmd(env: &TestEnv, mut c: Command, args: &[&str]) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let out = env.root().join(format!("out-{n}.txt"));
        let err = env.root().join(format!("err-{n}.txt"));
        c.args(args)
            .arg(&env.manifest)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        Running {
            child: c.spawn().expect("spawn jobrun"),
            out,
            err,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid (not yet reaped).
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `limit`; on timeout the child is SIGKILLed and the
    /// test fails (e.g. a FIFO that hung the run).
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> Out {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let out = self.out_with(st.code().unwrap_or(-1));
                let _ = std::fs::remove_file(&self.out);
                let _ = std::fs::remove_file(&self.err);
                return out;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "jobrun did not finish within {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn out_with(&self, code: i32) -> Out {
        Out {
            code,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: self.stderr(),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGKILL and reap; returns the stderr written so far.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let e = self.stderr();
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
        e
    }
}

/// Polls `cond` every 5 ms for up to `limit`.
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    wait_for_every(what, limit, Duration::from_millis(5), cond);
}

/// Polls `cond` every `every` for up to `limit`.
#[track_caller]
pub fn wait_for_every(
    what: &str,
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

/// Runs jobrun as nobody (65534) with no groups.
pub fn run_as_nobody(env: &TestEnv, args: &[&str]) -> Out {
    let mut c = Command::new("setpriv");
    c.current_dir(env.root())
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args)
        .arg(&env.manifest)
        .env_remove("RUST_LOG");
    c.output().expect("setpriv").into()
}

/// Whether jobrun can run as nobody here (root, setpriv, a binary nobody
/// can execute). A test that needs it calls [`require_setpriv`].
pub fn can_setpriv() -> bool {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        return false;
    }
    // The checkout may sit where nobody cannot reach the binary (/root).
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--version",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A test that runs jobrun as nobody fails, never passes, where it cannot.
#[track_caller]
pub fn require_setpriv() {
    require_root();
    assert!(
        can_setpriv(),
        "cannot run `{BIN}` as user 65534 with setpriv (util-linux)"
    );
}

pub fn chown_tree(root: &Path, uid: u32) {
    for e in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(uid)).unwrap();
    }
}

/// A test that needs root fails, never passes, without it (such tests are
/// also `#[ignore = "needs root"]`: the full tier runs them, as root in CI).
#[track_caller]
pub fn require_root() {
    assert!(
        is_root(),
        "needs root (it mounts filesystems or runs jobrun as another user): \
         run the full tier as root"
    );
}

/// A test that needs the debug build's hooks (`JOBRUN_TEST_*`) fails, never
/// passes, in a release build.
#[track_caller]
pub fn require_debug_hooks() {
    #[cfg(not(debug_assertions))]
    panic!("needs the debug build's test hooks (JOBRUN_TEST_*): run without --release");
}

/// A `jobrun` held at one of its test pause points (`src/testhook.rs`,
/// debug builds only) until [`Paused::release`].
pub struct Paused {
    child: Child,
    gate: PathBuf,
}

impl Paused {
    /// Starts `c` (args and manifest already on it) with the pause at
    /// `point` (`MIRROR`, `ROOTS`) and waits until the run is there.
    #[track_caller]
    pub fn start(env: &TestEnv, mut c: Command, point: &str) -> Self {
        require_debug_hooks();
        let gate = env.root().join(format!("gate-{point}"));
        let ready = env.root().join(format!("gate-{point}.ready"));
        let _ = std::fs::remove_file(&gate);
        let _ = std::fs::remove_file(&ready);
        c.env(format!("JOBRUN_TEST_{point}_PAUSE"), &gate)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn jobrun");
        let until = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let out: Out = child.wait_with_output().unwrap().into();
                panic!("jobrun ended ({status}) before its {point} pause: {out:?}");
            }
            assert!(
                Instant::now() < until,
                "jobrun never reached its {point} pause"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Paused { child, gate }
    }

    /// Lets the run go on and waits for its end.
    pub fn release(self) -> Out {
        std::fs::write(&self.gate, b"").unwrap();
        self.child.wait_with_output().unwrap().into()
    }
}
