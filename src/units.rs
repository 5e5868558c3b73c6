//! Byte sizes and byte rates as the manifest spells them (SPEC §2).
//!
//! Hand-written on purpose: `bytesize` and `parse-size` both read `5M` as
//! 5,000,000, while SPEC §2 (like rsync) wants `K`/`M`/`G` to be powers of 1024
//! and only the explicit `KB`/`MB`/`GB` to be powers of 1000. The grammar is
//! small enough that a table here is clearer than bending a crate.

use std::fmt;

/// Why a size or rate did not parse; shown after the key and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`, expected e.g. `1048576`, `512K`, `5M`, `5MB` or `5MiB`{extra}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    extra: &'static str,
}

/// Parses a byte count: `1048576`, `512K`, `5M`, `1G`, `2T` (powers of 1024),
/// `5KB`/`5MB`/`5GB`/`5TB` (powers of 1000), `5KiB`…`5TiB` (1024), `10B`.
/// Case-insensitive, optional space before the unit, decimals allowed (`1.5G`).
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    parse_bytes(input).ok_or_else(|| UnitError {
        what: "size",
        input: input.to_string(),
        extra: "",
    })
}

/// Parses a byte rate: a size with an optional `/s`; `0` or `off` mean
/// "no limit" and yield `None`.
pub fn parse_rate(input: &str) -> Result<Option<u64>, UnitError> {
    let t = input.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let body = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("/S"))
        .unwrap_or(t);
    match parse_bytes(body) {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Err(UnitError {
            what: "rate",
            input: input.to_string(),
            extra: " (optionally with `/s`), or `off`",
        }),
    }
}

fn parse_bytes(input: &str) -> Option<u64> {
    let t = input.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let mult: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    let v = f * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then(|| v.round() as u64)
}

/// Formats bytes for people, binary units (`5.0 MiB`), as the progress and
/// `check` output show them.
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// A rate in bytes per second, for display (`20.0 MiB/s`).
pub struct HumanRate(pub f64);

impl fmt::Display for HumanRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() && self.0 > 0.0 {
            self.0
        } else {
            0.0
        };
        write!(f, "{}/s", human_bytes(v as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_spec_units() {
        let cases: &[(&str, u64)] = &[
            ("1048576", 1_048_576),
            ("512K", 512 * 1024),
            ("5M", 5 << 20),
            ("1G", 1 << 30),
            ("5MB", 5_000_000),
            ("5MiB", 5 << 20),
            ("5 MiB", 5 << 20),
            ("5m", 5 << 20),
            ("1.5G", 1_610_612_736),
            ("10B", 10),
            ("0", 0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for bad in [
            "",
            "M",
            "5X",
            "5 foo",
            "-1",
            "1.",
            ".5M",
            "5MiBs",
            "99999999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn rates_accept_per_second_and_off() {
        assert_eq!(parse_rate("20M"), Ok(Some(20 << 20)));
        assert_eq!(parse_rate("20MB/s"), Ok(Some(20_000_000)));
        assert_eq!(parse_rate("5MiB/s"), Ok(Some(5 << 20)));
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("OFF"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn human_output() {
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(HumanRate(f64::NAN).to_string(), "0 B/s");
    }
}
