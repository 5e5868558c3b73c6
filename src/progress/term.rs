//! The terminal under the live display: its size, and its echo of control
//! keys while the display is up.

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcgetpgrp, tcsetattr};

/// While the live display is up, the terminal does not echo control keys
/// as `^C`. indicatif leaves the cursor at the right edge of the display's
/// last line, so the two characters of a `^C` wrapped onto a new line and
/// every later redraw (and the final clear) landed one line too low,
/// leaving the display's first line behind after Ctrl-C. Restored on drop.
pub(super) struct QuietControlEcho(Termios);

impl QuietControlEcho {
    pub(super) fn start() -> Option<Self> {
        let stderr = std::io::stderr();
        // Only in the terminal's foreground: a background run (`&`) gets
        // no keys from it.
        if tcgetpgrp(&stderr).ok()? != rustix::process::getpgrp() {
            return None;
        }
        let mut t = tcgetattr(&stderr).ok()?;
        if !t.local_modes.contains(LocalModes::ECHOCTL) {
            return None;
        }
        let saved = t.clone();
        t.local_modes.remove(LocalModes::ECHOCTL);
        set_termios(&t).then_some(Self(saved))
    }
}

impl Drop for QuietControlEcho {
    fn drop(&mut self) {
        set_termios(&self.0);
    }
}

/// `tcsetattr` on stderr with SIGTTOU blocked, so that a run moved to the
/// background in between (Ctrl-Z, `bg`) is not stopped by it.
fn set_termios(t: &Termios) -> bool {
    crate::sys::without_sigttou(|| tcsetattr(std::io::stderr(), OptionalActions::Now, t).is_ok())
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
