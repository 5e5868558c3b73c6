//! The one clock: every "now" the product records or prints comes from
//! here, in the unit its reader wants. A leaf (std and humantime only).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch (0 before it, `i64::MAX` past 2262).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Seconds since the epoch, as Prometheus timestamps are written.
pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339 UTC timestamp with microseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}
