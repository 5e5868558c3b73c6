//! The Slurm example (`deploy/slurm/jobrun-array.sbatch`) for real, on a
//! single-node cluster this test starts itself: `munged` as the `munge`
//! user, `slurmctld -D` and `slurmd -D` (Debian's slurmctld, slurmd,
//! slurm-client and munge; `.ci/run` installs them), on ports of their own,
//! all stopped by their PIDs at the end, a failed assertion included.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::env::{BIN, TestEnv, bytes};
use crate::support::{require_root, wait_for_every};

const SBATCH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/slurm/jobrun-array.sbatch"
);

/// A running single-node cluster; dropping it stops its daemons.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

fn program(name: &str) -> PathBuf {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: apt-get install slurmctld slurmd slurm-client munge")
    })
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "munge"]).output().unwrap();
    assert!(
        out.status.success(),
        "no `munge` user: apt-get install munge"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn short_host() -> String {
    let out = Command::new("hostname").arg("-s").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let munge_dir = d.join("munge");
        std::fs::create_dir(&munge_dir).unwrap();
        let (uid, gid) = (id_of("-u"), id_of("-g"));
        std::os::unix::fs::chown(&munge_dir, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut c = Cluster {
            conf: d.join("slurm.conf"),
            daemons: Vec::new(),
            dir,
        };
        let socket = munge_dir.join("munge.sock");
        let munged = Command::new(program("munged"))
            .arg("-F")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                munge_dir.join("munged.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                munge_dir.join("munged.log").display()
            ))
            .arg(format!(
                "--seed-file={}",
                munge_dir.join("munged.seed").display()
            ))
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        c.daemons.push(("munged", munged));
        wait_for_every(
            "munged's socket",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || socket.exists(),
        );
        c.write_conf(&socket);
        for (name, prog) in [("slurmctld", "slurmctld"), ("slurmd", "slurmd")] {
            let log = std::fs::File::create(c.dir.path().join(format!("{name}.out"))).unwrap();
            let child = Command::new(program(prog))
                .args(["-D", "-f"])
                .arg(&c.conf)
                .env("SLURM_CONF", &c.conf)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            c.daemons.push((name, child));
        }
        wait_for_every(
            "the node to be idle",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                c.try_run("sinfo", &["-h", "-o", "%T"])
                    .is_some_and(|s| s.trim() == "idle")
            },
        );
        c
    }

    fn write_conf(&self, socket: &Path) {
        let d = self.dir.path().display();
        let host = short_host();
        let text = format!(
            "ClusterName=jobruntest\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort=16817\nSlurmdPort=16818\n\
             AuthType=auth/munge\nAuthInfo=socket={socket}\nCredType=cred/munge\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
             AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none\n\
             JobCompType=jobcomp/none\nMpiDefault=none\nSwitchType=switch/none\n\
             ReturnToService=2\nJobRequeue=1\nMinJobAge=600\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             NodeName={host} CPUs={cpus} State=UNKNOWN\n\
             PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            socket = socket.display(),
            cpus = std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        for sub in ["state", "spool"] {
            std::fs::create_dir(self.dir.path().join(sub)).unwrap();
        }
        std::fs::write(&self.conf, text).unwrap();
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(program(prog));
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn try_run(&self, prog: &str, args: &[&str]) -> Option<String> {
        let out = self.cmd(prog).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[track_caller]
    fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = self.cmd(prog).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `JobState` and `Reason` of a job as `scontrol` shows it.
    fn job(&self, id: &str) -> (String, String) {
        let text = self.run("scontrol", &["show", "job", id]);
        let field = |k: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or("")
                .to_string()
        };
        (field("JobState="), field("Reason="))
    }

    /// Waits until none of `ids` is pending or running.
    fn wait_gone(&self, ids: &[&str], limit: Duration) {
        let list = ids.join(",");
        wait_for_every("the jobs to end", limit, Duration::from_millis(500), || {
            self.try_run("squeue", &["-h", "-j", &list])
                .is_some_and(|s| s.trim().is_empty())
        });
    }

    /// Submits the example for the env's job; (array job id, mirror job id).
    fn submit(&self, env: &TestEnv, at_once: &str) -> (String, String) {
        let out = Command::new("bash")
            .arg(SBATCH)
            .args(["submit", "job.toml", "4", at_once])
            .current_dir(env.root())
            .env("SLURM_CONF", &self.conf)
            .env("JOBRUN", BIN)
            .env(
                "PATH",
                format!(
                    "/usr/sbin:/usr/bin:/sbin:/bin:{}",
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = text.lines().last().unwrap_or_default();
        let words: Vec<&str> = last.split_whitespace().collect();
        // "array job A (4 shards, N at once), mirror job M"
        assert_eq!(words.first(), Some(&"array"), "{text}");
        (words[2].to_string(), words[words.len() - 1].to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (name, child) in self.daemons.iter_mut().rev() {
            // SAFETY: plain syscall on a child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let t0 = std::time::Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if t0.elapsed() > Duration::from_secs(10) {
                    eprintln!("{name} (pid {}) ignored SIGTERM: killed", child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Eight folders of three files each, and a file in the root.
fn tree(env: &TestEnv) {
    env.src_file("top.txt", b"root");
    for d in 0..8 {
        for f in 0..3 {
            env.src_file(
                &format!("d{d}/f{f}"),
                &bytes(200_000 + d * 7 + f, (d * 3 + f) as u64),
            );
        }
    }
}

/// (relative path, kind, status) of every row of shard `k`'s DB.
fn shard_rows(env: &TestEnv, k: usize) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open(env.root().join(format!("job.shard-{k}.db"))).unwrap();
    let complete: String = db
        .query_row(
            "SELECT value FROM meta WHERE key = 'scan_complete'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(complete, "1", "shard {k}'s last scan did not finish");
    let src = env.src.canonicalize().unwrap();
    let mut st = db
        .prepare("SELECT CAST(source_path AS TEXT), kind, status FROM files")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(p, kind, status)| {
            let rel = Path::new(&p).strip_prefix(&src).unwrap_or(Path::new(""));
            (rel.to_string_lossy().into_owned(), kind, status)
        })
        .collect()
}

fn synced_files(env: &TestEnv, k: usize) -> usize {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        env.root().join(format!("job.shard-{k}.db")),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return 0;
    };
    db.query_row(
        "SELECT count(*) FROM files WHERE kind = 'file' AND status = 'synced'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_or(0, |n| n as usize)
}

fn audit(env: &TestEnv, k: usize, status: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.root().join(format!("job.shard-{k}.log")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["status"] == status)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn the_slurm_example_runs_every_shard_then_the_mirror() {
    require_root();
    let cluster = Cluster::start();

    // 1. Four shards (two at once), one of them requeued mid-copy.
    let env = TestEnv::new();
    // One lane: a shard's files end one after another (eight lanes under
    // one limit end them all at once, and the requeue could come too late).
    env.manifest("delete_extras = true\nbwlimit = \"1M\"\ntransfers = 1");
    tree(&env);
    env.dst_file("extra/old", b"not in the source");
    let (array, mirror) = cluster.submit(&env, "2");
    let task1 = format!("{array}_1");
    wait_for_every(
        "shard 1 to be mid-copy",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || synced_files(&env, 1) >= 1,
    );
    assert!(
        synced_files(&env, 1) < 6,
        "shard 1 finished before the requeue"
    );
    cluster.run("scontrol", &["requeue", &task1]);
    // A requeued job waits two minutes before it may start again: now
    // (refused once it runs).
    wait_for_every(
        "the requeued task to start",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let _ = cluster.try_run(
                "scontrol",
                &["update", &format!("JobId={task1}"), "StartTime=now"],
            );
            audit(&env, 1, "run_start").len() >= 2
        },
    );
    cluster.wait_gone(&[&array, &mirror], Duration::from_secs(300));
    let (state, reason) = cluster.job(&mirror);
    assert_eq!(state, "COMPLETED", "mirror job: {reason}");
    let ends = audit(&env, 1, "run_end");
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(
        ends[0]["exit"], 130,
        "the requeue stopped the first run: {ends:?}"
    );
    assert_eq!(ends[1]["exit"], 0);
    assert!(ends[0]["files"].as_u64().unwrap() >= 1 && ends[1]["files"].as_u64().unwrap() >= 1);
    env.assert_trees_equal();
    assert!(
        !env.dst.join("extra").exists(),
        "the mirror deleted the extra"
    );
    let mut seen = std::collections::BTreeMap::new();
    for k in 0..4 {
        let rows = shard_rows(&env, k);
        assert!(
            rows.iter().any(|r| r.1 == "file"),
            "shard {k} copied nothing"
        );
        for (path, kind, status) in rows {
            assert_eq!(status, "synced", "shard {k}: {path}");
            if kind == "file" {
                assert_eq!(
                    seen.insert(path.clone(), k),
                    None,
                    "{path} copied by two shards"
                );
            }
        }
    }
    assert_eq!(seen.len(), 25);

    // 2. A shard that fails (its lock held: exit 3): the mirror never starts.
    let env = TestEnv::new();
    env.manifest("delete_extras = true");
    tree(&env);
    env.dst_file("extra/old", b"not in the source");
    let mut c = Command::new(BIN);
    c.args(["plan", "--shards", "4"]).arg(&env.manifest);
    assert!(c.output().unwrap().status.success());
    let lock = std::fs::File::create(env.root().join("job.shard-2.db.lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let (array, mirror) = cluster.submit(&env, "4");
    cluster.wait_gone(&[&array, &mirror], Duration::from_secs(120));
    let (state, reason) = cluster.job(&mirror);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("CANCELLED", "DependencyNeverSatisfied")
    );
    let (state, _) = cluster.job(&format!("{array}_2"));
    assert_eq!(state, "FAILED");
    assert!(env.dst.join("extra/old").exists(), "no mirror ran");
    assert!(
        !env.root().join("job.db").exists(),
        "the mirror never started"
    );
    drop(lock);
}
