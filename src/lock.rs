//! The job's exclusive lock (`<db>.lock`): held for the whole run, taken
//! with `flock` semantics so a killed run releases it with its last file
//! descriptor; it holds the pid of the run holding it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

use camino::{Utf8Path, Utf8PathBuf};

use crate::manifest::Job;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("job is locked by another run (pid {pid}); lock file `{path}`")]
    Locked { path: Utf8PathBuf, pid: String },
    #[error("cannot use lock file `{path}`: {source}")]
    Lock {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
}

/// The job's exclusive lock, held for the whole run, released on drop.
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes `<db>.lock` or reports who holds it. `flock` semantics: a
    /// killed run releases it with its last file descriptor.
    pub fn acquire(job: &Job) -> Result<Self, LockError> {
        let path = Utf8PathBuf::from(format!("{}.lock", job.db));
        let err = |source| LockError::Lock {
            path: path.clone(),
            source,
        };
        // The DB and log folders are ours (local state): create them.
        for p in [&job.db, &job.log] {
            if let Some(parent) = p.parent().filter(|d| !d.as_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Never through a symlink (its target would be overwritten
            // with our pid), never a FIFO that blocks the open.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(err)?;
        if !file.metadata().map_err(err)?.is_file() {
            return Err(err(std::io::Error::other("not a regular file")));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Locked {
                    path: path.clone(),
                    pid: pid.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        write!(file, "{}", std::process::id()).map_err(err)?;
        Ok(Self { _file: file })
    }
}

/// The pid of the run holding the job's lock (`<db>.lock`), if one is
/// going: the pid the file holds, a process whose name starts with
/// `jobrun`, and, where its `/proc/PID/fd` is readable (same user or root),
/// one that has the lock file open. Reads only; never takes the lock (a
/// run starting at that moment would take it for another run's).
pub fn holder(db: &Utf8Path) -> Option<u32> {
    let path = format!("{db}.lock");
    let pid: u32 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
    // `comm` is the executable's name cut to 15 bytes; an installed
    // `jobrun-0.2` still starts with `jobrun`.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.starts_with("jobrun") {
        return None;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Some(pid);
    };
    let lock = std::fs::canonicalize(&path).ok()?;
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == lock))
        .then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest refuses a symlink at `<db>.lock`; one swapped in after
    /// that is still never followed.
    #[test]
    fn a_symlink_at_the_lock_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        std::fs::create_dir(root.join("s")).unwrap();
        let text = format!("source = \"{root}/s\"\ndestination = \"{root}/d\"\n");
        let job = crate::manifest::load_str(
            &root.join("t.toml"),
            &text,
            &crate::cli::Overrides::default(),
        )
        .unwrap();
        std::fs::write(root.join("victim"), "precious").unwrap();
        std::os::unix::fs::symlink(root.join("victim"), root.join("t.db.lock")).unwrap();
        assert!(matches!(
            JobLock::acquire(&job),
            Err(LockError::Lock { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(root.join("victim")).unwrap(),
            "precious"
        );
    }
}
