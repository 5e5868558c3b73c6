//! `TestEnv`: a temp dir with `src/`, `dst/` and `job.toml`, and helpers
//! to run the real `jobrun` binary on it and inspect bytes, DB rows and
//! audit-log lines.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_jobrun");

pub struct TestEnv {
    pub dir: TempDir,
    pub src: PathBuf,
    pub dst: PathBuf,
    pub manifest: PathBuf,
}

/// Exit code and text of one run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The summary says nothing was copied (a converged job's rerun).
    #[track_caller]
    pub fn assert_copied_nothing(&self) -> &Self {
        assert!(
            self.stdout.contains("jobrun: 0 files, 0 B copied"),
            "copied again: {}",
            self.stdout
        );
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl TestEnv {
    /// `src/` exists (empty), `dst/` does not; `job.toml` points at both.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let env = TestEnv {
            src,
            dst: dir.path().join("dst"),
            manifest: dir.path().join("job.toml"),
            dir,
        };
        env.manifest("");
        env
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites `job.toml`: the two roots plus `extra` lines.
    pub fn manifest(&self, extra: &str) -> &Self {
        let text = format!("source = \"src\"\ndestination = \"dst\"\n{extra}\n");
        std::fs::write(&self.manifest, text).unwrap();
        self
    }

    pub fn db_path(&self) -> PathBuf {
        self.root().join("job.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root().join("job.log")
    }

    /// Writes a source file (parents created) with a fixed, distinct mtime.
    pub fn src_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    /// Writes a destination file (parents created).
    pub fn dst_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.dst.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn set_mtime(p: &Path, secs: i64, nanos: u32) {
        let t = filetime::FileTime::from_unix_time(secs, nanos);
        filetime::set_file_mtime(p, t).unwrap();
    }

    /// A `jobrun` command in the env's folder with no `JOBRUN_*` leaking in.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.root());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("JOBRUN_") {
                c.env_remove(k);
            }
        }
        c.env_remove("RUST_LOG");
        c
    }

    /// Runs `jobrun ARGS… job.toml` (the manifest last).
    pub fn run(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args).arg(&self.manifest);
        c.output().expect("spawn jobrun").into()
    }

    pub fn check(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.arg("check").arg(&self.manifest).args(args);
        c.output().expect("spawn jobrun").into()
    }

    /// The state DB, never created here: an empty file left by a test
    /// polling before the run made the DB is an unusable DB to jobrun.
    pub fn db(&self) -> rusqlite::Connection {
        self.try_db().expect("open state DB")
    }

    pub fn try_db(&self) -> rusqlite::Result<rusqlite::Connection> {
        rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }

    /// `(source_path, status, hash)` per file row, by source path.
    pub fn rows(&self) -> BTreeMap<String, (String, Option<String>)> {
        let db = self.db();
        let mut st = db
            .prepare(
                "SELECT CAST(source_path AS TEXT), status, hash FROM files WHERE kind = 'file'",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Parsed audit-log lines.
    pub fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    pub fn log_with_status(&self, status: &str) -> Vec<serde_json::Value> {
        self.log()
            .into_iter()
            .filter(|v| v["status"] == status)
            .collect()
    }

    /// Every source file exists in dst with the same bytes and mtime (ns),
    /// and dst has no extra regular files.
    #[track_caller]
    pub fn assert_trees_equal(&self) {
        let src = files_under(&self.src);
        let dst = files_under(&self.dst);
        assert_eq!(
            src.keys().collect::<Vec<_>>(),
            dst.keys().collect::<Vec<_>>(),
            "file lists differ"
        );
        for (rel, s) in &src {
            let d = &dst[rel];
            assert_eq!(s.0, d.0, "content of {rel:?} differs");
            assert_eq!(s.1, d.1, "mtime of {rel:?} differs");
        }
    }
}

/// Relative path → (bytes, mtime ns) of regular files under `root` (none
/// when `root` does not exist).
pub fn files_under(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i64)> {
    if !root.exists() {
        return BTreeMap::new();
    }
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let md = e.metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            (
                rel,
                (
                    std::fs::read(e.path()).unwrap(),
                    md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                ),
            )
        })
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), so content differs per file.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Hex digest of `path` by the coreutils tool (an independent computation).
pub fn coreutils_hash(tool: &str, path: &Path) -> String {
    let out = Command::new(tool)
        .arg(path)
        .output()
        .expect("coreutils hash tool");
    assert!(out.status.success(), "{tool} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
