//! Exit codes (SPEC §9, docs/running.md "Exit codes"), mapped in one place: every
//! command ends with one of these.

use serde::Serialize;

/// How a command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Exit {
    Ok = 0,
    FilesFailed = 1,
    Usage = 2,
    Locked = 3,
    Fatal = 4,
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn reason(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::FilesFailed => "some files failed",
            Exit::Usage => "bad invocation or manifest",
            Exit::Locked => "locked by another run",
            Exit::Fatal => "aborted",
            Exit::Interrupted => "interrupted",
        }
    }
}
