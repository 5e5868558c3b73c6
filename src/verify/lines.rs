//! What a verify says about each file: its audit line, and for a file that
//! did not verify, a console line naming it (the first
//! [`BadFiles::SHOWN`], then how many more, as `rclone check` does).

use std::path::Path;

use serde::Serialize;

use super::Outcome;
use crate::audit::{encode_path, rfc3339_ns};
use crate::db::{RowId, VerifyRecord, VerifyRow};
use crate::progress::printable;

/// One audit line of a verify: `verified`, `mismatch`, `missing` or `failed`.
#[derive(Serialize)]
pub(super) struct VerifyLine<'a> {
    status: &'static str,
    verify: i64,
    kind: &'static str,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_b64: Option<String>,
    dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_b64: Option<String>,
    size: u64,
    mtime: String,
    /// The hash's algorithm: the recorded one, or for an adopted file the
    /// job's `checksum`, with which the source was hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    algorithm: Option<&'a str>,
    /// The hash recorded when the file was read from the source; for an
    /// adopted file the source's hash this verify read (and recorded),
    /// present when it read the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    found: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    found_size: Option<u64>,
    /// Adopted file: the first byte offset where the destination differs
    /// from the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    differs_at: Option<u64>,
    /// No recorded hash: compared with the source byte for byte.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    adopted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// `--repair` put the row back to `pending`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repaired: bool,
}

/// The audit line of `row`'s outcome `o`; `algo` is the job's checksum
/// (what an adopted file's source was hashed with).
pub(super) fn audit_line<'a>(
    rec: &VerifyRecord,
    row: &'a VerifyRow,
    o: &'a Outcome,
    algo: &'a str,
    repair: bool,
) -> VerifyLine<'a> {
    let (source, source_b64) = encode_path(&row.source);
    let (dest, dest_b64) = encode_path(&row.dest);
    let recorded = row.recorded.as_ref();
    let mut l = VerifyLine {
        status: "verified",
        verify: rec.id,
        kind: "file",
        source,
        source_b64,
        dest,
        dest_b64,
        size: row.size,
        mtime: rfc3339_ns(row.modified_ns),
        algorithm: recorded.map(|r| r.1.as_str()),
        expected: recorded.map(|r| r.0.as_str()),
        found: None,
        found_size: None,
        differs_at: None,
        adopted: row.adopted(),
        reason: None,
        error: None,
        repaired: false,
    };
    match o {
        Outcome::Verified { source_hash } => {
            if let Some(h) = source_hash {
                l.algorithm = Some(algo);
                l.expected = Some(h);
            }
        }
        Outcome::Stopped => {}
        Outcome::Mismatch {
            found_size,
            found,
            differs_at,
        } => {
            l.status = "mismatch";
            l.found = found.as_deref();
            l.found_size = *found_size;
            l.differs_at = *differs_at;
            l.repaired = repair;
        }
        Outcome::Missing { reason } => {
            l.status = "missing";
            l.reason = reason.as_deref();
            l.repaired = repair;
        }
        Outcome::Failed { error } => {
            l.status = "failed";
            l.error = Some(error);
        }
    }
    l
}

/// The console's line for a file that did not verify (`None` for one that
/// did): what, which (relative to the destination root, control
/// characters shown as `?`) and why.
pub(super) fn console_line(rel: &Path, size: u64, o: &Outcome) -> Option<String> {
    let (what, why) = match o {
        Outcome::Verified { .. } | Outcome::Stopped => return None,
        Outcome::Mismatch {
            found_size: Some(n),
            ..
        } => ("mismatch", format!("size {n}, expected {size}")),
        Outcome::Mismatch {
            differs_at: Some(at),
            ..
        } => (
            "mismatch",
            format!("differs from the source at byte offset {at}"),
        ),
        Outcome::Mismatch { .. } => (
            "mismatch",
            "its content differs from the hash recorded when it was copied".into(),
        ),
        Outcome::Missing { reason } => ("missing", reason.clone().unwrap_or_default()),
        Outcome::Failed { error } => ("failed", error.clone()),
    };
    let name = printable(&rel.to_string_lossy());
    Some(if why.is_empty() {
        format!("jobrun: verify: {what} `{name}`")
    } else {
        format!("jobrun: verify: {what} `{name}`: {}", printable(&why))
    })
}

/// The files a verify found bad, by name: the first [`BadFiles::SHOWN`]
/// kept, the rest counted (every one has its audit line).
#[derive(Debug, Default)]
pub struct BadFiles {
    /// (row id, line)
    shown: Vec<(i64, String)>,
    more: u64,
}

impl BadFiles {
    pub const SHOWN: usize = 20;

    pub(super) fn note(&mut self, id: RowId, line: String) {
        self.note_id(id.get(), line);
    }

    fn note_id(&mut self, id: i64, line: String) {
        if self.shown.len() < Self::SHOWN {
            self.shown.push((id, line));
        } else {
            self.more += 1;
        }
    }

    /// The console's lines: the files kept, in row order, then how many more.
    pub fn lines(&self) -> Vec<String> {
        let mut shown: Vec<&(i64, String)> = self.shown.iter().collect();
        shown.sort_by_key(|(id, _)| *id);
        let mut out: Vec<String> = shown.into_iter().map(|(_, l)| l.clone()).collect();
        if self.more > 0 {
            out.push(format!(
                "jobrun: verify: and {} more files mismatched, missing or not compared (each \
                 has its line in the audit log)",
                self.more
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_say_what_which_and_why() {
        let line = |o: &Outcome| console_line(Path::new("sub/a\x1bb"), 5, o);
        assert_eq!(line(&Outcome::Verified { source_hash: None }), None);
        assert_eq!(line(&Outcome::Stopped), None);
        assert_eq!(
            line(&Outcome::Missing { reason: None }).unwrap(),
            "jobrun: verify: missing `sub/a?b`"
        );
        let m = |found_size, found, differs_at| Outcome::Mismatch {
            found_size,
            found,
            differs_at,
        };
        assert_eq!(
            line(&m(Some(4), None, None)).unwrap(),
            "jobrun: verify: mismatch `sub/a?b`: size 4, expected 5"
        );
        assert_eq!(
            line(&m(None, None, Some(7))).unwrap(),
            "jobrun: verify: mismatch `sub/a?b`: differs from the source at byte offset 7"
        );
        assert!(
            line(&m(None, Some("ab".into()), None))
                .unwrap()
                .ends_with("differs from the hash recorded when it was copied")
        );
        let failed = Outcome::Failed {
            error: "cannot read `x\ny`".into(),
        };
        assert_eq!(
            line(&failed).unwrap(),
            "jobrun: verify: failed `sub/a?b`: cannot read `x?y`"
        );
    }

    #[test]
    fn the_first_20_by_name_then_a_count() {
        let mut bad = BadFiles::default();
        assert!(bad.lines().is_empty());
        for id in (1..=25).rev() {
            bad.note_id(id, format!("f{id}"));
        }
        let lines = bad.lines();
        assert_eq!(lines.len(), 21);
        assert_eq!(lines[0], "f6", "kept in arrival order, shown in row order");
        assert_eq!(lines[19], "f25");
        assert!(
            lines[20].starts_with("jobrun: verify: and 5 more "),
            "{}",
            lines[20]
        );
    }
}
