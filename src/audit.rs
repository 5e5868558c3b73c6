//! Audit log (SPEC §8): JSON Lines, appended, one object per file outcome
//! plus run-level lines. Field order is stable so logs diff and grep well.
//!
//! Paths that are not valid UTF-8 are written twice: `source`/`dest` as text
//! with each invalid byte escaped as `\xNN` (readable, greppable), and
//! `source_b64`/`dest_b64` with the exact bytes (standard base64), so the
//! log alone can always name the file byte-exact.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("cannot write audit log `{path}`: {source}")]
pub struct AuditError {
    pub path: Utf8PathBuf,
    pub source: io::Error,
}

/// The outcome of one entry, as logged.
#[derive(Debug, Serialize)]
pub struct FileRecord<'a> {
    pub ts: String,
    pub status: &'a str,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_b64: Option<String>,
    pub dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_b64: Option<String>,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl<'a> FileRecord<'a> {
    pub fn new(status: &'a str, source: &Path, dest: &Path, size: u64) -> Self {
        let (source, source_b64) = encode_path(source);
        let (dest, dest_b64) = encode_path(dest);
        Self {
            ts: now_rfc3339(),
            status,
            source,
            source_b64,
            dest,
            dest_b64,
            size,
            hash: None,
            algorithm: None,
            error: None,
        }
    }
}

/// RFC 3339 UTC timestamp with microseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
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

/// The append-only audit log. Buffered; [`AuditLog::flush`] is called
/// before each DB commit, so a line is on disk no later than its DB row.
pub struct AuditLog {
    out: BufWriter<File>,
    path: Utf8PathBuf,
}

impl AuditLog {
    pub fn open(path: &Utf8Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, file),
            path: path.to_owned(),
        })
    }

    fn err(&self, source: io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one line: any serializable object.
    pub fn write<T: Serialize>(&mut self, line: &T) -> Result<(), AuditError> {
        serde_json::to_writer(&mut self.out, line).map_err(|e| self.err(e.into()))?;
        self.out.write_all(b"\n").map_err(|e| self.err(e))
    }

    pub fn flush(&mut self) -> Result<(), AuditError> {
        self.out.flush().map_err(|e| self.err(e))
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
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
}
