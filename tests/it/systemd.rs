//! The shipped units (`deploy/systemd/jobrun@.service`, `jobrun@.timer`)
//! under a real, booted systemd: this machine's own root filesystem under a
//! throw-away overlay (writes land in a temporary folder in /var/tmp),
//! booted by `systemd-nspawn --boot` (Debian's systemd-container) into
//! `basic.target` with a private network. The host needs no systemd of its
//! own (this one has none as PID 1, and cgroup v1). The units are copied
//! unchanged; one drop-in makes the timer fire every 5 s instead of every
//! 15 min, with no random delay, so the test sees several firings.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::env::{BIN, bytes};
use crate::support::{require_root, wait_for_every};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd");
const MANIFEST: &str = "source = \"/srv/src\"\ndestination = \"/srv/dst\"\n\
    db = \"/var/lib/jobrun/demo.db\"\nlog = \"/var/log/jobrun/demo.log\"\n\
    bwlimit = \"2M\"\n";
const EVERY_5S: &str =
    "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/5\nRandomizedDelaySec=0\nAccuracySec=1s\n";

/// A booted container; dropping it halts it and removes its overlay.
struct Container {
    base: tempfile::TempDir,
    nspawn: Child,
    init: String,
}

fn nspawn_program() -> &'static str {
    let p = "/usr/bin/systemd-nspawn";
    assert!(
        Path::new(p).exists(),
        "`systemd-nspawn` is not installed: apt-get install systemd-container"
    );
    p
}

impl Container {
    fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }

    /// Lays the overlay, puts the binary, the units, the manifest and a
    /// source tree in it, and boots it.
    fn boot() -> Self {
        let base = tempfile::Builder::new()
            .prefix("jobrun-nspawn-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let b = base.path();
        for d in ["root", "upper", "work"] {
            std::fs::create_dir(b.join(d)).unwrap();
        }
        let opts = format!(
            "lowerdir=/,upperdir={},workdir={}",
            b.join("upper").display(),
            b.join("work").display()
        );
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(b.join("root"))
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount an overlay of / ({opts})");
        let r = b.join("root");
        // nspawn mounts its own /dev and wants an empty folder there.
        for e in std::fs::read_dir(r.join("dev")).unwrap() {
            let p = e.unwrap().path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
        std::fs::copy(BIN, r.join("usr/bin/jobrun")).unwrap();
        let sys = r.join("etc/systemd/system");
        for unit in ["jobrun@.service", "jobrun@.timer"] {
            std::fs::copy(Path::new(UNITS).join(unit), sys.join(unit)).unwrap();
        }
        std::fs::create_dir_all(sys.join("jobrun@demo.timer.d")).unwrap();
        std::fs::write(sys.join("jobrun@demo.timer.d/every-5s.conf"), EVERY_5S).unwrap();
        std::fs::create_dir_all(r.join("etc/jobrun")).unwrap();
        std::fs::write(r.join("etc/jobrun/demo.toml"), MANIFEST).unwrap();
        add_files(&r, "a", 12);
        // In a cgroup of its own (name=systemd, v1): nspawn lays the
        // container's tree below the cgroup it starts in, and two
        // containers laid in one place fight over their units' cgroups.
        let cgroup = Path::new(CGROUPS).join(b.file_name().unwrap());
        std::fs::create_dir(&cgroup).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
            .arg(&cgroup)
            .arg(nspawn_program())
            .arg("-D")
            .arg(&r)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
            ])
            .args([
                "--machine=jobrun-test",
                "--console=pipe",
                "--",
                "--unit=basic.target",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let nspawn = cmd.spawn().unwrap();
        let mut c = Container {
            base,
            nspawn,
            init: String::new(),
        };
        let children = format!("/proc/{0}/task/{0}/children", c.nspawn.id());
        wait_for_every(
            "the container's init",
            Duration::from_secs(30),
            MS200,
            || {
                c.init = std::fs::read_to_string(&children)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                !c.init.is_empty()
            },
        );
        wait_for_every(
            "the container to boot",
            Duration::from_secs(90),
            MS200,
            || {
                let s = c.systemctl(&["is-system-running"]);
                matches!(s.trim(), "running" | "degraded")
            },
        );
        c
    }

    /// A command inside the container (all its namespaces).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init, "-a"]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn systemctl(&self, args: &[&str]) -> String {
        let mut all = vec!["systemctl", "--no-pager"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.run(&all).stdout).into_owned()
    }

    /// `systemctl show -p KEY --value jobrun@demo.service`.
    fn service(&self, key: &str) -> String {
        self.systemctl(&["show", "-p", key, "--value", "jobrun@demo.service"])
            .trim()
            .to_string()
    }

    fn journal(&self) -> String {
        let out = self.run(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "jobrun@demo.service",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The audit log's `run_start`/`run_end` lines, in order: (status, run, exit).
    fn runs(&self) -> Vec<(String, u64, Option<i64>)> {
        let log = self.root().join("var/log/jobrun/demo.log");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| matches!(v["status"].as_str(), Some("run_start" | "run_end")))
            .map(|v| {
                (
                    v["status"].as_str().unwrap().to_string(),
                    v["run"].as_u64().unwrap(),
                    v["exit"].as_i64(),
                )
            })
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM: nspawn halts the container; then its init if it lingers.
        let pid = self.nspawn.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let t0 = Instant::now();
        while self.nspawn.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.init, &pid])
                    .status();
                let _ = self.nspawn.wait();
                break;
            }
            std::thread::sleep(MS200);
        }
        let _ = Command::new("umount").arg(self.root()).status();
        // The container's cgroups, deepest first (each is empty now).
        let cgroup = Path::new(CGROUPS).join(self.base.path().file_name().unwrap());
        let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(&cgroup)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_dir())
            .map(walkdir::DirEntry::into_path)
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            // A task that just exited may leave its cgroup a moment later.
            for _ in 0..25 {
                if std::fs::remove_dir(&d).is_ok() {
                    break;
                }
                std::thread::sleep(MS200);
            }
        }
    }
}

/// The name=systemd cgroup v1 hierarchy (this machine has no unified one).
const CGROUPS: &str = "/sys/fs/cgroup/systemd";

const MS200: Duration = Duration::from_millis(200);

/// `n` files of 2 MB each: at `bwlimit = "2M"` a run lasts about `n` s.
fn add_files(root: &Path, prefix: &str, n: u64) {
    let src = root.join("srv/src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..n {
        std::fs::write(src.join(format!("{prefix}{i}")), bytes(2_000_000, i + 1)).unwrap();
    }
}

/// How many jobrun processes run inside the container.
fn jobruns(c: &Container) -> usize {
    let out = c.run(&["pgrep", "-x", "jobrun"]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Every `run_start` is followed by its own `run_end` before the next
/// `run_start`: no two runs of the job overlapped.
fn assert_sequential(runs: &[(String, u64, Option<i64>)]) {
    for pair in runs.chunks(2) {
        assert!(
            pair.len() == 2
                && pair[0].0 == "run_start"
                && pair[1].0 == "run_end"
                && pair[0].1 == pair[1].1,
            "runs overlap or did not end: {runs:?}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn the_shipped_timer_runs_the_job_under_systemd_one_run_at_a_time() {
    require_root();
    let t0 = Instant::now();
    let c = Container::boot();
    eprintln!("container booted in {:.1} s", t0.elapsed().as_secs_f64());
    let enabled = c.run(&["systemctl", "enable", "--now", "jobrun@demo.timer"]);
    assert!(enabled.status.success(), "{enabled:?}");
    let timers = c.systemctl(&["list-timers", "--all"]);
    assert!(
        timers.contains("jobrun@demo.timer") && timers.contains("jobrun@demo.service"),
        "list-timers does not show the job's timer:\n{timers}"
    );
    // The first run copies 12 files at 2 MB/s (~12 s): two or three firings
    // of the timer come and go meanwhile. Never two jobruns at once.
    wait_for_every(
        "the timer's first run",
        Duration::from_secs(30),
        MS200,
        || !c.runs().is_empty(),
    );
    let t0 = Instant::now();
    let mut most = 0;
    while !c.runs().iter().any(|r| r.0 == "run_end") {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the first run never ended"
        );
        most = most.max(jobruns(&c));
        std::thread::sleep(MS200);
    }
    assert_eq!(most, 1, "a firing during the run started a second jobrun");
    let first = c.runs();
    assert_eq!(first[1].2, Some(0), "the first run's exit: {first:?}");
    // Persistent=true: the timer keeps its last firing on disk, so a
    // firing missed while the machine was off happens at boot.
    let stamp = c
        .root()
        .join("var/lib/systemd/timers/stamp-jobrun@demo.timer");
    assert!(stamp.exists(), "no {}", stamp.display());
    for i in 0..12 {
        let rel = format!("srv/src/a{i}");
        let dst = c.root().join(rel.replace("src", "dst"));
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            bytes(2_000_000, i + 1),
            "{rel}"
        );
    }
    // Later firings start later runs (nothing left to copy), one at a time,
    // each a success for systemd, and none refused on the lock (exit 3).
    wait_for_every("two more runs", Duration::from_secs(30), MS200, || {
        c.runs().len() >= 6
    });
    let runs = c.runs();
    assert_sequential(&runs);
    assert!(runs.iter().all(|r| r.2.is_none_or(|e| e == 0)), "{runs:?}");
    let journal = c.journal();
    assert!(
        !journal.contains("locked by another run"),
        "a run met another's lock:\n{journal}"
    );
    assert!(journal.contains("12 files, 22.9 MiB copied"), "{journal}");
    try_later_exits_are_success(&c);
}

/// A run started by hand holds the lock: the timer's run exits 3, which
/// the unit takes as success; `systemctl stop` during a run: 130, success.
fn try_later_exits_are_success(c: &Container) {
    let stopped = c.run(&["systemctl", "stop", "jobrun@demo.timer"]);
    assert!(stopped.status.success(), "{stopped:?}");
    wait_for_every(
        "the service to stop",
        Duration::from_secs(30),
        MS200,
        || c.service("ActiveState") == "inactive",
    );
    add_files(&c.root(), "b", 12);
    let before = c.runs().len();
    let mut by_hand = c
        .cmd(&["/usr/bin/jobrun", "--quiet", "/etc/jobrun/demo.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_every(
        "the hand run to start",
        Duration::from_secs(30),
        MS200,
        || c.runs().len() > before,
    );
    let started = c.run(&["systemctl", "start", "jobrun@demo.timer"]);
    assert!(started.status.success(), "{started:?}");
    wait_for_every(
        "a firing refused on the lock",
        Duration::from_secs(30),
        MS200,
        || c.journal().contains("locked by another run"),
    );
    // What systemd made of that exit: the journal's next word on the unit.
    let mut verdict = String::new();
    wait_for_every(
        "the refused run's end",
        Duration::from_secs(30),
        MS200,
        || {
            let j = c.journal();
            let after = &j[j.rfind("locked by another run").unwrap()..];
            verdict = after
                .lines()
                .find(|l| {
                    l.contains("Deactivated successfully") || l.contains("Failed with result")
                })
                .unwrap_or_default()
                .to_string();
            !verdict.is_empty()
        },
    );
    assert!(
        verdict.contains("Deactivated successfully"),
        "exit 3: {verdict}"
    );
    assert!(by_hand.wait().unwrap().success());
    // A stop during a copy: SIGTERM, exit 130, not a failure.
    add_files(&c.root(), "c", 12);
    wait_for_every(
        "a timer run copying",
        Duration::from_secs(30),
        MS200,
        || {
            let dst = std::fs::read_dir(c.root().join("srv/dst")).unwrap();
            let copied = dst
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with('c'));
            copied && c.service("ActiveState") == "active"
        },
    );
    let stop = c.run(&[
        "systemctl",
        "stop",
        "jobrun@demo.timer",
        "jobrun@demo.service",
    ]);
    assert!(stop.status.success(), "{stop:?}");
    assert_eq!(c.service("ExecMainStatus"), "130", "{}", c.journal());
    assert_eq!(c.service("Result"), "success");
    let journal = c.journal();
    assert!(!journal.contains("Failed with result"), "{journal}");
}
