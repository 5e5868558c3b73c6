//! The raw system calls rustix does not wrap, each behind a safe function
//! with its SAFETY reason: `sync_file_range(2)`, `close(2)` with its error,
//! the password database (`getpwuid_r(3)`) and `tcsetattr(3)` with SIGTTOU
//! blocked. The only `unsafe` in the product; every other call goes through
//! rustix's safe functions where the module that needs it makes it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};

/// `sync_file_range(2)` on an open file (`flags`: `libc::SYNC_FILE_RANGE_*`).
pub fn sync_file_range(f: &File, off: u64, len: u64, flags: u32) -> io::Result<()> {
    let (off, len) = (off as libc::off64_t, len as libc::off64_t);
    // SAFETY: plain syscall on an fd `f` keeps open; no memory is passed.
    if unsafe { libc::sync_file_range(f.as_raw_fd(), off, len, flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Closes `file` and returns the error `close(2)` reports, which `Drop`
/// ignores (NFS reports a failed write-back there). Linux closes the
/// descriptor even when the call is interrupted: `EINTR` is success.
pub fn close_checked(file: File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` came from `into_raw_fd`, so it is open and owned here,
    // and it is closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(e)
    }
}

/// The name the password database gives `uid`, if any.
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: `passwd` is a plain C struct that the call fills in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives the use
    // of `pwd`'s string pointers below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &raw mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string inside `buf`, which is still alive.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Runs `f` with SIGTTOU blocked on this thread (restored after), so that
/// a `tcsetattr` from a run moved to the background (Ctrl-Z, `bg`) does
/// not stop it.
pub fn without_sigttou<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: `sigset_t`s are plain C data, initialised by sigemptyset
    // before use; the mask changes this thread only.
    let old = unsafe {
        let (mut block, mut old): (libc::sigset_t, libc::sigset_t) =
            (std::mem::zeroed(), std::mem::zeroed());
        libc::sigemptyset(&raw mut block);
        libc::sigaddset(&raw mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const block, &raw mut old);
        old
    };
    let out = f();
    // SAFETY: `old` is the mask pthread_sigmask filled in above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut()) };
    out
}
