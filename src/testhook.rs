//! Pause points for tests (debug builds only): with
//! `JOBRUN_TEST_<POINT>_PAUSE=<path>`, the run creates `<path>.ready` at
//! that point, then waits (up to 60 s) for `<path>` to exist, so a test can
//! change the world at an exact moment of the run. Release builds compile
//! every point to nothing.

/// The pause at `point` (`MIRROR`: the mirror's candidates listed and the
/// rails passed, before the live checks; `ROOTS`: the roots checked at the
/// run's start, before the scan).
pub fn pause(point: &str) {
    #[cfg(debug_assertions)]
    if let Some(p) = std::env::var_os(format!("JOBRUN_TEST_{point}_PAUSE")) {
        use std::time::{Duration, Instant};
        let p = std::path::PathBuf::from(p);
        let mut ready = p.clone().into_os_string();
        ready.push(".ready");
        let _ = std::fs::write(&ready, b"");
        let until = Instant::now() + Duration::from_secs(60);
        while !p.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
