//! The shipped systemd units (`deploy/systemd/`): `systemd-analyze verify`
//! accepts an instance of each, with no warning; the exit codes that mean
//! "try later" are not failures; the timer catches up after downtime.

use std::path::Path;
use std::process::Command;

use crate::env::BIN;

fn shipped(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/systemd")
            .join(name),
    )
    .unwrap()
}

/// The value of `key=` in a unit's text (the last one, as systemd reads).
fn value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

#[test]
fn the_service_takes_try_later_exits_as_success_and_the_timer_catches_up() {
    let service = shipped("jobrun@.service");
    // 3: the job's lock is held by another run; 130: stopped cleanly by
    // SIGTERM (systemctl stop). Not 1, 2 or 4: those need a person.
    let mut codes: Vec<u8> = value(&service, "SuccessExitStatus")
        .unwrap()
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, [3, 130]);
    assert_eq!(
        value(&service, "ExecStart").unwrap(),
        "/usr/bin/jobrun --quiet /etc/jobrun/%i.toml"
    );
    let timer = shipped("jobrun@.timer");
    assert_eq!(value(&timer, "Persistent").as_deref(), Some("true"));
    assert!(value(&timer, "OnCalendar").is_some());
    // The timer starts its own service (no Unit= pointing elsewhere).
    assert_eq!(value(&timer, "Unit"), None);
}

#[test]
#[ignore = "needs systemd-analyze (Debian's systemd)"]
fn systemd_analyze_verifies_an_instance_of_each_unit() {
    let dir = tempfile::tempdir().unwrap();
    // The units as installed, but for the binary's place; their
    // Documentation=man:jobrun(1) is looked up in the generated pages.
    for name in ["jobrun@.service", "jobrun@.timer"] {
        let text = shipped(name).replace("/usr/bin/jobrun", BIN);
        std::fs::write(dir.path().join(name), text).unwrap();
        let instance = name.replace('@', "@demo");
        std::os::unix::fs::symlink(name, dir.path().join(instance)).unwrap();
    }
    let man = dir.path().join("man");
    let out = Command::new(BIN)
        .arg("generate-man")
        .arg(man.join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(["./jobrun@demo.service", "./jobrun@demo.timer"])
        .current_dir(dir.path())
        .env("MANPATH", &man)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze not found ({e}); apt-get install systemd"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    assert!(err.trim().is_empty(), "systemd-analyze verify warns: {err}");
}
