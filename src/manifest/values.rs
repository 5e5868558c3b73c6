//! Manifest value types, each validated while it is deserialized so that
//! `toml` can point at the line of a bad value and figment can name the
//! flag or variable that set it.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::{
    MAX_BLOCK_SIZE, MAX_MODIFY_WINDOW, MAX_POLITE_TARGET, MAX_PROGRESS_INTERVAL, MAX_TRANSFERS,
    MIN_POLITE_TARGET, MIN_PROGRESS_INTERVAL,
};
use crate::decide::MaxDelete;
use crate::throttle::{Limit, Schedule};
use crate::units;

/// `symlinks`: the policy for source symlinks (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymlinkPolicy {
    /// Recreate each symlink as a symlink with the same target and its own
    /// mtime; the target is never followed.
    #[default]
    Copy,
    /// Leave symlinks out of the job entirely (logged at scan).
    Skip,
}

impl std::fmt::Display for SymlinkPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Copy => "copy",
            Self::Skip => "skip",
        })
    }
}

/// Deserializes a value that may be written as an integer or a string.
fn int_or_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, String>,
    from_int: fn(i64) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        from_str: fn(&str) -> Result<T, String>,
        from_int: fn(i64) -> Result<T, String>,
    }
    impl<T> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.from_str)(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            (self.from_int)(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            let v = i64::try_from(v).map_err(|_| E::custom("number too large"))?;
            (self.from_int)(v).map_err(E::custom)
        }
        // A TOML float is read as the same digits in a string would be, so
        // `1.5` and `"1.5"` are both accepted or both refused.
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            (self.from_str)(&format!("{v:?}")).map_err(E::custom)
        }
    }
    d.deserialize_any(V {
        expecting,
        from_str,
        from_int,
    })
}

/// `block_size`: a byte size between 1 byte and 1 GiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BlockSize(pub u64);

impl BlockSize {
    fn check(n: u64) -> Result<Self, String> {
        if n == 0 || n > MAX_BLOCK_SIZE {
            Err(format!(
                "block size must be between 1 byte and 1GiB, got {n}"
            ))
        } else {
            Ok(Self(n))
        }
    }
}

impl<'de> Deserialize<'de> for BlockSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(
            d,
            "a byte size like \"5MiB\"",
            |s| {
                units::parse_size(s)
                    .map_err(|e| e.to_string())
                    .and_then(Self::check)
            },
            |n| {
                u64::try_from(n)
                    .map_err(|_| "size must not be negative".into())
                    .and_then(Self::check)
            },
        )
    }
}

/// A bounded integer key, written as a number or a string.
fn bounded_int<'de, D: Deserializer<'de>, const MAX: i64>(
    d: D,
    what: &'static str,
) -> Result<u64, D::Error> {
    let n = int_or_str(
        d,
        "an integer >= 1",
        |s| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("invalid integer `{s}`"))
        },
        Ok,
    )?;
    if (1..=MAX).contains(&n) {
        Ok(n as u64)
    } else {
        Err(de::Error::custom(format!(
            "{what} must be between 1 and {MAX}, got {n}"
        )))
    }
}

/// `transfers`: an integer in 1 ..= [`MAX_TRANSFERS`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Transfers(pub u64);

impl<'de> Deserialize<'de> for Transfers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded_int::<D, { MAX_TRANSFERS as i64 }>(d, "transfers").map(Transfers)
    }
}

/// `queue_capacity`: an integer of at least 1.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueueCapacity(pub u64);

impl<'de> Deserialize<'de> for QueueCapacity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded_int::<D, 1_000_000>(d, "queue capacity").map(QueueCapacity)
    }
}

/// `bwlimit`: a byte rate, `0`/`off` for none, `pause`, or a weekly
/// timetable (`"Mon-08:00,10M 19:00,off Sat-00:00,pause"`), parsed here so
/// that a bad entry is reported with the key and the manifest line.
#[derive(Debug, Clone, Serialize)]
pub struct Bwlimit(pub Schedule);

impl<'de> Deserialize<'de> for Bwlimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(
            d,
            "a byte rate like \"20M\", \"off\", \"pause\", or a timetable like \"Mon-08:00,10M 19:00,off\"",
            |s| Schedule::parse(s).map(Bwlimit),
            |n| match u64::try_from(n) {
                Ok(r) => units::check_rate(r, &n.to_string())
                    .map(|r| Bwlimit(Schedule::Fixed(Limit::from_rate(r))))
                    .map_err(|e| e.to_string()),
                Err(_) => Err("rate must not be negative".into()),
            },
        )
    }
}

/// `max_delete`: a count (`500`), a percentage of the destination's
/// entries (`10%`, `2.5%`, two decimals at most), or `off`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MaxDel(pub MaxDelete);

impl MaxDel {
    fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(Self(MaxDelete::Off));
        }
        let bad = || {
            format!("invalid `{s}`, expected a count like `500`, a percentage like `10%`, or `off`")
        };
        let Some(p) = t.strip_suffix('%') else {
            return t
                .parse::<u64>()
                .map(|n| Self(MaxDelete::Count(n)))
                .map_err(|_| bad());
        };
        let (int, frac) = p.trim().split_once('.').unwrap_or((p.trim(), ""));
        if int.is_empty() && frac.is_empty()
            || frac.len() > 2
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let int: u32 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        match int.checked_mul(100).and_then(|h| h.checked_add(frac)) {
            Some(h) if h <= 10_000 => Ok(Self(MaxDelete::Percent(h))),
            _ => Err(format!("invalid `{s}`: a percentage must be at most 100%")),
        }
    }
}

impl<'de> Deserialize<'de> for MaxDel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(
            d,
            "a count like 500, a percentage like \"10%\", or \"off\"",
            Self::parse,
            |n| {
                u64::try_from(n)
                    .map(|n| Self(MaxDelete::Count(n)))
                    .map_err(|_| "a count must not be negative".into())
            },
        )
    }
}

/// A duration as the manifest spells it (docs/manifest.md "Durations"): whole
/// seconds alone (`2`, `"2"`), or numbers each followed by its unit, with
/// or without spaces between the groups (`"2s"`, `"500ms"`, `"1m 30s"`,
/// `"1h30m"`). Units: `ns`, `us`/`µs`, `ms`, `s`, `m` (minutes), `h`, `d`,
/// `w`, and their long forms (`sec`, `min`, `hour`, `day`, `week`, with or
/// without a plural `s`). Months and years (`M`, `y`) are refused: their
/// length varies, and `M` reads as MiB in sizes. A number without a unit
/// beside others (`"1 5m"`, once read as 15 minutes) is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration `{s}`: number too large"));
    }
    let bad = |why: String| {
        format!(
            "invalid duration `{s}`: {why}; expected whole seconds like `2` or numbers with units like `2s`, `500ms`, `1m 30s`"
        )
    };
    let mut rest = t;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err(bad("empty".into()));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(format!("expected a number at `{rest}`")));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large".into()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !(c.is_alphabetic()))
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let after = &rest[unit_len..];
        if unit.is_empty() && !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return Err(bad(format!("unexpected `{after}`")));
        }
        if unit.is_empty() {
            return Err(bad(format!(
                "`{n}` has no unit (a bare number is whole seconds only alone)"
            )));
        }
        rest = after.trim_start();
        let nanos = unit_nanos(unit).map_err(bad)?;
        total = n
            .checked_mul(nanos)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= u128::from(u64::MAX) * 1_000_000_000)
            .ok_or_else(|| bad("number too large".into()))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("number too large".into()))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Nanoseconds in one `unit`, or why it is not one.
fn unit_nanos(unit: &str) -> Result<u128, String> {
    const S: u128 = 1_000_000_000;
    Ok(match unit {
        "ns" | "nsec" | "nsecs" => 1,
        "us" | "µs" | "usec" | "usecs" => 1_000,
        "ms" | "msec" | "msecs" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => S,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * S,
        "d" | "day" | "days" => 86_400 * S,
        "w" | "week" | "weeks" => 7 * 86_400 * S,
        "M" | "month" | "months" | "y" | "year" | "years" => {
            return Err(format!(
                "`{unit}` (months or years) is not a unit here; use `d` or `w`"
            ));
        }
        other => return Err(format!("unknown unit `{other}`")),
    })
}

/// A duration key's value, read by [`parse_duration`] from a number or a
/// string.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    int_or_str(
        d,
        "a duration like 2 (seconds), \"2s\" or \"1m\"",
        parse_duration,
        |n| {
            u64::try_from(n)
                .map(Duration::from_secs)
                .map_err(|_| "duration must not be negative".into())
        },
    )
}

/// A duration in the units [`parse_duration`] reads (`200d`, `1h 30m`,
/// `500ms`): humantime would say months, which the manifest refuses.
fn spell(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = Vec::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push(format!("{}{unit}", s / len));
            s %= len;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 || out.is_empty() {
        out.push(if ms > 0 || d.is_zero() {
            format!("{ms}{}", if d.is_zero() { "s" } else { "ms" })
        } else {
            format!("{}ns", d.subsec_nanos())
        });
    }
    out.join(" ")
}

/// `d` within `min ..= max`, or the error saying the bounds.
fn within<E: de::Error>(d: Duration, min: Duration, max: Duration) -> Result<Duration, E> {
    let f = spell;
    if d < min {
        Err(E::custom(format!(
            "must be at least {}, got `{}`",
            f(min),
            f(d)
        )))
    } else if d > max {
        Err(E::custom(format!(
            "must be at most {}, got `{}`",
            f(max),
            f(d)
        )))
    } else {
        Ok(d)
    }
}

/// `modify_window`: a duration of at most [`MAX_MODIFY_WINDOW`] (a window
/// of months once kept changed files from ever being copied).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within(duration(d)?, Duration::ZERO, MAX_MODIFY_WINDOW).map(Dur)
    }
}

/// `polite_target`: a duration within [`MIN_POLITE_TARGET`] ..=
/// [`MAX_POLITE_TARGET`] (`"2ms"`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoliteTarget(pub Duration);

impl<'de> Deserialize<'de> for PoliteTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within(duration(d)?, MIN_POLITE_TARGET, MAX_POLITE_TARGET).map(PoliteTarget)
    }
}

/// `progress_interval`: a duration within [`MIN_PROGRESS_INTERVAL`] ..=
/// [`MAX_PROGRESS_INTERVAL`] (`"0s"` once printed a line every few
/// milliseconds; centuries panicked the progress thread).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interval(pub Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within(duration(d)?, MIN_PROGRESS_INTERVAL, MAX_PROGRESS_INTERVAL).map(Interval)
    }
}

/// `exclude` and `include`: a list of gitignore-style patterns (see
/// [`crate::filter`]), each checked as it is read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Patterns(pub Vec<String>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        for p in &list {
            crate::filter::check(p)
                .map_err(|e| de::Error::custom(format!("bad pattern `{p}`: {e}")))?;
        }
        Ok(Patterns(list))
    }
}
