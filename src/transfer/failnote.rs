//! What a run says on stderr about files that failed. Each failure is in
//! the DB and the audit log in full; stderr gets the first [`WARN_EACH`] one
//! by one, then one summary line at the end (a share refusing 10,000 names
//! must not print 10,000 warnings). Failures that mean the destination
//! cannot take a whole kind of entry get one hint per run: symlinks on a
//! share without symlink support (SMB without `mfsymlinks`, FAT), and names
//! the destination refuses (SMB: `\`, names that are not UTF-8). Pure text
//! decisions plus `tracing`; the committer calls [`FailureNotes::note`].

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tracing::warn;

/// Failed files warned about one by one; the rest are counted.
pub const WARN_EACH: u64 = 10;

/// The `(os error N)` std appends to an I/O error's text.
fn os_error(error: &str) -> Option<i32> {
    let start = error.rfind("(os error ")? + "(os error ".len();
    error[start..].split(')').next()?.parse().ok()
}

/// Why a destination would not take this entry as a whole kind, if it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// The destination takes no symlinks (EOPNOTSUPP, ENOSYS, EPERM).
    Symlinks,
    /// The destination refuses this name (EINVAL, ENOENT, EPERM, EILSEQ,
    /// ENAMETOOLONG on a name SMB or FAT cannot store).
    Name,
}

/// Whether `name` holds what SMB or FAT cannot store: `\`, a character
/// FAT forbids, bytes that are not UTF-8, or more than 255 bytes.
pub fn odd_name(name: &[u8]) -> bool {
    name.len() > 255
        || std::str::from_utf8(name).is_err()
        || name.iter().any(|b| b"\\:*?|<>\"".contains(b))
}

/// Classifies one failure of the entry at `dest` with `error`.
pub fn unsupported(dest: &Path, error: &str) -> Option<Unsupported> {
    let errno = os_error(error)?;
    if error.contains("symlink") && matches!(errno, libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM) {
        return Some(Unsupported::Symlinks);
    }
    let name = dest.file_name()?.as_bytes();
    (odd_name(name)
        && matches!(
            errno,
            libc::EINVAL | libc::ENOENT | libc::EPERM | libc::EILSEQ | libc::ENAMETOOLONG
        ))
    .then_some(Unsupported::Name)
}

/// Bytes `name` takes on an SMB server behind the kernel client's
/// `mapposix`: each of `: * ? | < > "`, and a trailing dot or space, is
/// sent as a private-use character, which the server stores in UTF-8 as
/// three bytes.
pub fn smb_stored_len(name: &[u8]) -> usize {
    let mapped = name.iter().filter(|b| b":*?|<>\"".contains(b)).count()
        + usize::from(matches!(name.last(), Some(b'.' | b' ')));
    name.len() + 2 * mapped
}

/// The error recorded for a failure: `error`, with the reason in front when
/// the destination refuses the name (ENOENT alone would say nothing).
pub fn explain(dest: &Path, error: String) -> String {
    let long = dest.file_name().map_or(0, |n| smb_stored_len(n.as_bytes()));
    match unsupported(dest, &error) {
        Some(Unsupported::Name) if long > 255 => format!(
            "the destination refuses this name: too long ({long} bytes as an SMB share stores \
             it, where `: * ? | < > \"` and a trailing dot or space take 3 bytes each; most \
             servers take 255): {error}"
        ),
        Some(Unsupported::Name) => format!(
            "the destination refuses this name (SMB takes no `\\` and only UTF-8 names; \
             FAT also no `: * ? | < > \"`): {error}"
        ),
        Some(Unsupported::Symlinks) => format!(
            "the destination does not support symlinks (set `symlinks = \"skip\"`, or mount \
             SMB with `mfsymlinks`): {error}"
        ),
        None => error,
    }
}

/// The stderr side of a run's failures.
#[derive(Debug, Default)]
pub struct FailureNotes {
    failed: u64,
    links_hinted: bool,
    names: u64,
}

impl FailureNotes {
    /// One failed file: warned while fewer than [`WARN_EACH`] were, plus a
    /// hint the first time its destination refuses a kind of entry.
    pub fn note(&mut self, source: &Path, dest: &Path, error: &str) {
        self.failed += 1;
        if self.failed <= WARN_EACH {
            warn!(path = %source.display(), %error, "file failed; run continues");
        }
        match unsupported(dest, error) {
            Some(Unsupported::Symlinks) if !self.links_hinted => {
                self.links_hinted = true;
                warn!(
                    "the destination does not support symlinks: each one fails; set \
                     `symlinks = \"skip\"` to leave them out, or mount SMB with `-o mfsymlinks`"
                );
            }
            Some(Unsupported::Name) => self.names += 1,
            _ => {}
        }
    }

    /// The summary line, when some failures were not warned one by one.
    pub fn finish(&self) {
        if self.failed > WARN_EACH {
            warn!(
                failed = self.failed,
                refused_names = self.names,
                "{} more files failed (not listed here; the audit log and `jobrun status` have each one)",
                self.failed - WARN_EACH
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_read_from_the_text() {
        assert_eq!(
            os_error("cannot x `a`: Invalid argument (os error 22)"),
            Some(22)
        );
        assert_eq!(os_error("no number"), None);
    }

    #[test]
    fn refused_names_and_symlinks_are_told_apart_from_other_failures() {
        let d = |n: &[u8]| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(n));
        let e = |n: i32| format!("cannot rename `x`: msg (os error {n})");
        assert_eq!(unsupported(&d(b"a\\b"), &e(22)), Some(Unsupported::Name));
        assert_eq!(unsupported(&d(b"a\xffb"), &e(2)), Some(Unsupported::Name));
        assert_eq!(unsupported(&d(b"a:b"), &e(1)), Some(Unsupported::Name));
        assert_eq!(
            unsupported(&d(&[b'a'; 300]), &e(36)),
            Some(Unsupported::Name)
        );
        // An ordinary name missing is an ordinary failure.
        assert_eq!(unsupported(&d(b"plain"), &e(2)), None);
        assert_eq!(unsupported(&d(b"a\\b"), &e(5)), None);
        let link = "cannot create symlink `l`: Operation not supported (os error 95)";
        assert_eq!(unsupported(&d(b"l"), link), Some(Unsupported::Symlinks));
        assert!(explain(&d(b"l"), link.into()).contains("symlinks = \"skip\""));
        assert!(explain(&d(b"a\\b"), e(22)).starts_with("the destination refuses this name"));
        assert_eq!(explain(&d(b"plain"), e(5)), e(5));
    }

    #[test]
    fn a_name_too_long_for_the_share_says_so() {
        let d = |n: &[u8]| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(n));
        let e = |n: i32| format!("cannot rename into `x`: msg (os error {n})");
        assert_eq!(smb_stored_len(b"plain"), 5);
        assert_eq!(smb_stored_len(b"a:b."), 8);
        // 250 bytes here, 270 on the server: refused however the share says it.
        let long = [[b'x'; 240].as_slice(), &[b':'; 10]].concat();
        assert_eq!(smb_stored_len(&long), 270);
        for errno in [libc::ENAMETOOLONG, libc::ENOENT, libc::EINVAL] {
            let why = explain(&d(&long), e(errno));
            assert!(
                why.starts_with("the destination refuses this name: too long (270 bytes"),
                "{why}"
            );
        }
        // A plain name in a path past PATH_MAX is not the name's fault.
        assert_eq!(unsupported(&d(&[b'a'; 200]), &e(libc::ENAMETOOLONG)), None);
        assert!(!explain(&d(b"a\\b"), e(22)).contains("too long"));
    }
}
