//! The terminal under the live display: its size, and its echo of control
//! keys while the display is up. The only place in `progress` with `unsafe`.

/// While the live display is up, the terminal does not echo control keys
/// as `^C`. indicatif leaves the cursor at the right edge of the display's
/// last line, so the two characters of a `^C` wrapped onto a new line and
/// every later redraw (and the final clear) landed one line too low,
/// leaving the display's first line behind after Ctrl-C. Restored on drop.
pub(super) struct QuietControlEcho(libc::termios);

impl QuietControlEcho {
    pub(super) fn start() -> Option<Self> {
        // SAFETY: plain termios calls on stderr; `t` is written by tcgetattr
        // before it is read.
        unsafe {
            // Only in the terminal's foreground: a background run (`&`) gets
            // no keys from it.
            if libc::tcgetpgrp(2) != libc::getpgrp() {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(2, &mut t) != 0 || t.c_lflag & libc::ECHOCTL == 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHOCTL;
            set_termios(&t).then_some(Self(saved))
        }
    }
}

impl Drop for QuietControlEcho {
    fn drop(&mut self) {
        set_termios(&self.0);
    }
}

/// `tcsetattr` on stderr with SIGTTOU blocked, so that a run moved to the
/// background in between (Ctrl-Z, `bg`) is not stopped by it.
fn set_termios(t: &libc::termios) -> bool {
    // SAFETY: signal-mask calls on this thread only, restored right after;
    // `t` is a valid termios.
    unsafe {
        let (mut block, mut old): (libc::sigset_t, libc::sigset_t) =
            (std::mem::zeroed(), std::mem::zeroed());
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let ok = libc::tcsetattr(2, libc::TCSANOW, t) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        ok
    }
}

/// Columns the live display may use: one less than the terminal has (a
/// line that fills the last column wraps on some terminals).
pub(super) fn width() -> usize {
    let (_, cols) = console::Term::stderr().size();
    usize::from(cols).saturating_sub(1).max(20)
}

/// Rows of the terminal: the live display never grows past them.
pub(super) fn height() -> usize {
    let (rows, _) = console::Term::stderr().size();
    usize::from(rows).max(4)
}
