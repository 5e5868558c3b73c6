//! The run's own audit lines (`run_start`, `run_end`) and who ran it (host,
//! user).

use serde::Serialize;

/// The `run_start` audit line: what an auditor needs to know about the run
/// before it touches anything (the roots actually used, flags included).
#[derive(Serialize)]
pub(super) struct RunStart<'a> {
    pub(super) status: &'static str,
    pub(super) job: &'a str,
    pub(super) mode: &'a str,
    pub(super) dry_run: bool,
    pub(super) rescan: bool,
    pub(super) source: &'a str,
    pub(super) destination: &'a str,
    pub(super) db: &'a str,
    pub(super) log: &'a str,
    pub(super) checksum: &'a str,
    pub(super) bwlimit: String,
    pub(super) transfers: usize,
    pub(super) delete_extras: bool,
    pub(super) version: &'static str,
    pub(super) host: String,
    pub(super) user: String,
    pub(super) uid: u32,
    pub(super) pid: u32,
    /// Present (true) when the log's last line was torn and was ended.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) torn_line_ended: bool,
}

/// The `run_end` audit line: the same figures as the summary line and the
/// `runs` row.
#[derive(Serialize)]
pub(super) struct RunEnd<'a> {
    pub(super) status: &'static str,
    pub(super) job: &'a str,
    pub(super) mode: &'a str,
    pub(super) dry_run: bool,
    pub(super) files: u64,
    pub(super) bytes: u64,
    pub(super) failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deleted: Option<u64>,
    pub(super) exit: u8,
    pub(super) reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<&'a str>,
    /// Under `bwlimit = "auto"`: the rate it held last (`auto, 23068672
    /// B/s`); absent for any other limit (`run_start` says those).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bwlimit: Option<String>,
}

/// The host name (`uname`'s node name), empty if it cannot be read.
pub(super) fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The user the run runs as: its uid and the name the password database
/// gives it (the uid as text when it has none).
pub(super) fn user() -> (u32, String) {
    let uid = rustix::process::getuid().as_raw();
    (
        uid,
        crate::sys::user_name(uid).unwrap_or_else(|| uid.to_string()),
    )
}
