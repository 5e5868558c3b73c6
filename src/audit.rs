//! Audit log (SPEC §8): JSON Lines, appended, one object per entry outcome
//! plus run-level lines. Field order is stable so logs diff and grep well;
//! docs/state-db-and-audit-log.md lists every field and which statuses carry it.
//!
//! Every line starts with `ts`, `run` (the `runs` row id) and `db_id` (the
//! state DB's id: run ids restart at 1 in a DB made afresh, the DB id tells
//! the two apart), added here so no stage has to carry them. Each line is written with one `write(2)` on
//! an `O_APPEND` descriptor: concurrent writers cannot interleave inside a
//! line, and a killed writer leaves at most its last line torn. A log that
//! does not end in a newline (a writer killed mid-line, by an older jobrun or
//! anything else) is ended with one when it is opened, so the next line
//! starts on a line of its own.
//!
//! Paths that are not valid UTF-8 are written twice: `source`/`dest` as text
//! with each invalid byte escaped as `\xNN` (readable, greppable), and
//! `source_b64`/`dest_b64` with the exact bytes (standard base64), so the
//! log alone can always name the file byte-exact.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("cannot write audit log `{path}`: {source}")]
pub struct AuditError {
    pub path: Utf8PathBuf,
    pub source: io::Error,
}

/// The outcome of one entry, as logged (`synced`, `failed`, `deleted`,
/// `skipped`). `ts` and `run` are added by [`AuditLog::write`].
#[derive(Debug, Serialize)]
pub struct FileRecord<'a> {
    pub status: &'a str,
    /// `file`, `dir`, `symlink`; for `skipped`: also `fifo`, `socket`,
    /// `block device`, `char device`. Absent when unknown (an entry the
    /// scan could not stat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_b64: Option<String>,
    pub dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_b64: Option<String>,
    pub size: u64,
    /// The entry's mtime (RFC 3339 UTC, ns): the source version copied (or
    /// that failed, or was skipped); the destination entry deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    /// A symlink's target, as stored in the link (never followed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Why a `skipped` entry is left out of the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

impl<'a> FileRecord<'a> {
    pub fn new(status: &'a str, source: &Path, dest: &Path, size: u64) -> Self {
        let (source, source_b64) = encode_path(source);
        let (dest, dest_b64) = encode_path(dest);
        Self {
            status,
            kind: None,
            source,
            source_b64,
            dest,
            dest_b64,
            size,
            mtime: None,
            target: None,
            target_b64: None,
            hash: None,
            algorithm: None,
            error: None,
            reason: None,
        }
    }

    /// Adds the entry's kind and mtime (ns since the epoch).
    #[must_use]
    pub fn entry(mut self, kind: &'a str, modified_ns: i128) -> Self {
        self.kind = Some(kind);
        self.mtime = Some(rfc3339_ns(modified_ns));
        self
    }

    /// Adds a symlink's target.
    #[must_use]
    pub fn target(mut self, target: &Path) -> Self {
        let (text, b64) = encode_path(target);
        self.target = Some(text);
        self.target_b64 = b64;
        self
    }
}

pub use crate::clock::now_rfc3339;

/// ns since the epoch as RFC 3339 UTC with nanoseconds
/// (`2026-11-24T03:57:25.123456789Z`); times before 1970 too, which
/// `humantime` refuses (a source file may carry any mtime), and after 2262
/// (an i64 of ns ends there; ext4 keeps 2446). Years past 9999 take more
/// digits.
pub fn rfc3339_ns(ns: impl Into<i128>) -> String {
    let ns: i128 = ns.into();
    let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant, `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Text form of a path plus, when it is not UTF-8, its exact bytes in base64.
pub fn encode_path(p: &Path) -> (String, Option<String>) {
    let bytes = p.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => {
            let mut s = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                s.push_str(chunk.valid());
                for b in chunk.invalid() {
                    s.push_str(&format!("\\x{b:02X}"));
                }
            }
            (
                s,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )
        }
    }
}

/// What every line starts with.
#[derive(Serialize)]
struct Stamped<'a, T: Serialize> {
    ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_id: Option<&'a str>,
    #[serde(flatten)]
    line: &'a T,
}

/// Raised by SIGUSR1 (`jobrun reopen`, logrotate's postrotate): the next
/// line of every open log reopens its path first. The command registers
/// the signal on it (see `app`).
pub fn reopen_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

/// Reopens asked so far: each raise of [`reopen_flag`] counts one, seen
/// by whichever log looks first, so every open log (a verify's and a
/// run's summary alike) sees each reopen once.
fn reopen_generation() -> u64 {
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    if reopen_flag().swap(false, Ordering::AcqRel) {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
    GENERATION.load(Ordering::Acquire)
}

/// How often a log looks whether its path still leads to the file it has
/// open (a rotation that renamed it away, with no reopen asked).
const PATH_CHECK: Duration = Duration::from_secs(1);

/// The append-only audit log. Unbuffered on purpose: each line is one
/// `write(2)`, so a line is in the kernel before its DB row is committed,
/// and never split. A rotated log (renamed away, or a reopen asked) is
/// reopened at its path before the next line: a line goes whole into one
/// file or the other, never lost (logrotate without `copytruncate`).
pub struct AuditLog {
    file: File,
    path: Utf8PathBuf,
    /// (device, inode) of `file`.
    ident: (u64, u64),
    /// When the path was last compared with `ident`.
    checked: Instant,
    /// The [`reopen_generation`] this log last followed.
    reopened: u64,
    /// The run every line belongs to (see [`AuditLog::set_run`]).
    run: Option<i64>,
    /// The state DB every line belongs to (see [`AuditLog::set_db`]).
    db_id: Option<String>,
    /// Reused per line.
    buf: Vec<u8>,
    torn: bool,
}

impl AuditLog {
    /// Opens (creating) the log for appending; ends a torn last line.
    pub fn open(path: &Utf8Path) -> Result<Self, AuditError> {
        let (file, ident, torn) = open_append(path).map_err(|source| AuditError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            ident,
            checked: Instant::now(),
            reopened: reopen_generation(),
            run: None,
            db_id: None,
            buf: Vec::with_capacity(1024),
            torn,
        })
    }

    /// Whether [`AuditLog::open`] found the log's last line torn (no
    /// newline at its end) and ended it.
    pub fn ended_torn_line(&self) -> bool {
        self.torn
    }

    /// Every line written from now on carries `"run": id`.
    pub fn set_run(&mut self, id: i64) {
        self.run = Some(id);
    }

    /// Every line written from now on carries `"db_id": id`.
    pub fn set_db(&mut self, id: Option<&str>) {
        self.db_id = id.map(str::to_owned);
    }

    fn err(&self, source: io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one line: `ts`, `run`, `db_id`, then the fields of `line`,
    /// with one `write(2)`.
    pub fn write<T: Serialize>(&mut self, line: &T) -> Result<(), AuditError> {
        self.follow_rotation();
        self.buf.clear();
        let stamped = Stamped {
            ts: now_rfc3339(),
            run: self.run,
            db_id: self.db_id.as_deref(),
            line,
        };
        serde_json::to_writer(&mut self.buf, &stamped).map_err(|e| self.err(e.into()))?;
        self.buf.push(b'\n');
        // One call for a regular file, short only on a full disk or a
        // signal; `write_all` then finishes the line.
        self.file.write_all(&self.buf).map_err(|e| self.err(e))
    }

    /// Reopens the path when a reopen was asked (SIGUSR1) or, looked at
    /// once a second, the path no longer leads to the open file (renamed
    /// away, replaced, removed). A path that cannot be opened keeps the
    /// open file: its lines go on into the rotated file, one warning says so.
    fn follow_rotation(&mut self) {
        let generation = reopen_generation();
        let asked = generation != self.reopened;
        self.reopened = generation;
        if !asked && self.checked.elapsed() < PATH_CHECK {
            return;
        }
        self.checked = Instant::now();
        let moved = match std::fs::metadata(&self.path) {
            Ok(md) => (md.dev(), md.ino()) != self.ident,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        if !(asked || moved) {
            return;
        }
        match open_append(&self.path) {
            Ok((file, ident, _)) => {
                tracing::info!(path = %self.path, asked, "audit log reopened");
                self.file = file;
                self.ident = ident;
            }
            Err(e) => tracing::warn!(
                "audit log: cannot reopen `{}` ({e}); its lines go on into the file already open",
                self.path
            ),
        }
    }

    /// Kept for the callers that flush before each DB commit: every line
    /// is already in the kernel when [`AuditLog::write`] returns.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// Opens (creating) `path` for appending: the file, its (device, inode),
/// and whether its last line was torn (then ended with a newline).
fn open_append(path: &Utf8Path) -> io::Result<(File, (u64, u64), bool)> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let md = file.metadata()?;
    let len = md.len();
    let mut last = [b'\n'];
    // Only a regular file has a last byte to look at (a log sent to a
    // pipe or a terminal has none).
    if md.is_file() && len > 0 {
        file.read_exact_at(&mut last, len - 1)?;
    }
    let torn = last[0] != b'\n';
    if torn {
        file.write_all(b"\n")?;
    }
    Ok((file, (md.dev(), md.ino()), torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn non_utf8_paths_are_escaped_and_kept_exact() {
        let p = Path::new(OsStr::from_bytes(b"/s/caf\xe9.txt"));
        let (text, b64) = encode_path(p);
        assert_eq!(text, "/s/caf\\xE9.txt");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.unwrap())
            .unwrap();
        assert_eq!(raw, b"/s/caf\xe9.txt");
        assert_eq!(encode_path(Path::new("/s/ok")), ("/s/ok".to_string(), None));
    }

    #[test]
    fn lines_are_json_with_stable_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("a.log")).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        let mut rec = FileRecord::new("synced", Path::new("/s/a"), Path::new("/d/a"), 3);
        rec.hash = Some("ab");
        rec.algorithm = Some("sha256");
        log.write(&rec).unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["status"], "synced");
        assert_eq!(v["size"], 3);
        assert!(v.get("error").is_none());
        assert!(text.starts_with("{\"ts\":"));
    }

    #[test]
    fn mtimes_are_rfc3339_with_nanoseconds_before_the_epoch_too() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339_ns(1_709_210_096_123_456_789_i64),
            "2024-02-29T12:34:56.123456789Z"
        );
        // Past 2262 (no i64 of ns holds it) and ext4's whole range.
        const S: i128 = 1_000_000_000;
        for (ns, text) in [
            (15_032_385_535 * S, "2446-05-10T22:38:55.000000000Z"),
            (10_413_792_000 * S + 1, "2300-01-01T00:00:00.000000001Z"),
            (-2_147_483_648 * S, "1901-12-13T20:45:52.000000000Z"),
            (-315_619_200 * S + 7, "1960-01-01T00:00:00.000000007Z"),
            (32_503_680_000 * S, "3000-01-01T00:00:00.000000000Z"),
        ] {
            assert_eq!(rfc3339_ns(ns), text);
        }
        // Agrees with humantime wherever humantime can format.
        for secs in [951_782_400_i64, 4_102_444_799, 1_234_567_890] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
            let h = humantime::format_rfc3339_nanos(t).to_string();
            assert_eq!(rfc3339_ns(secs * 1_000_000_000), h);
        }
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("a.log")).unwrap();
        std::fs::write(&path, "{\"ts\":\"x\"}\n{\"ts\":\"2026-").unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        assert!(log.ended_torn_line());
        log.set_run(7);
        log.set_db(Some("ab12"));
        log.write(&FileRecord::new(
            "synced",
            Path::new("/s/a"),
            Path::new("/d/a"),
            1,
        ))
        .unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"ts\":\"2026-");
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["run"], 7);
        assert!(lines[2].starts_with("{\"ts\":"), "{}", lines[2]);
        assert!(
            lines[2].contains(",\"run\":7,\"db_id\":\"ab12\",\"status\":"),
            "{}",
            lines[2]
        );
        // Ended once: the next open finds a whole last line.
        assert!(!AuditLog::open(&path).unwrap().ended_torn_line());
        assert!(!AuditLog::open(&path).unwrap().ended_torn_line());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    fn synced_line(log: &mut AuditLog, name: &str) {
        log.write(&FileRecord::new(
            "synced",
            &Path::new("/s").join(name),
            &Path::new("/d").join(name),
            1,
        ))
        .unwrap();
    }

    fn names(path: &Utf8Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["source"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("/s/")
                    .to_string()
            })
            .collect()
    }

    /// A log with line `a`, then renamed away to `job.log.1` as logrotate
    /// does: (a turn, its folder, the path, the rotated path, the open log).
    ///
    /// The reopen flag is the process's own, so the tests that rotate take
    /// turns (one test's SIGUSR1 would reopen the other's log early): hold
    /// the returned guard for the whole test.
    fn rotated_after_a() -> (
        std::sync::MutexGuard<'static, ()>,
        tempfile::TempDir,
        Utf8PathBuf,
        Utf8PathBuf,
        AuditLog,
    ) {
        static ROTATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = ROTATING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reopen_flag().store(false, Ordering::Release);
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("job.log")).unwrap();
        let rotated = Utf8PathBuf::from_path_buf(dir.path().join("job.log.1")).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        synced_line(&mut log, "a");
        std::fs::rename(&path, &rotated).unwrap();
        (turn, dir, path, rotated, log)
    }

    /// logrotate renames the log away: lines already under way go on into
    /// the rotated file; within a second the log finds its path replaced
    /// and the next line starts the new file. No line lost or doubled.
    #[test]
    fn a_log_renamed_away_is_reopened_at_its_path() {
        let (_turn, _dir, path, rotated, mut log) = rotated_after_a();
        synced_line(&mut log, "b");
        log.checked -= PATH_CHECK * 2;
        synced_line(&mut log, "c");
        synced_line(&mut log, "d");
        assert_eq!(names(&rotated), ["a", "b"]);
        assert_eq!(names(&path), ["c", "d"]);
    }

    /// SIGUSR1 (`jobrun reopen`) raises the flag: the next line reopens at
    /// once, without waiting for the second's check.
    #[test]
    fn a_reopen_asked_takes_effect_at_the_next_line() {
        let (_turn, _dir, path, rotated, mut log) = rotated_after_a();
        reopen_flag().store(true, Ordering::Release);
        synced_line(&mut log, "b");
        assert_eq!(names(&rotated), ["a"]);
        assert_eq!(names(&path), ["b"]);
    }
}
