//! Byte sizes and byte rates as the manifest spells them (SPEC §2).
//!
//! Hand-written on purpose: `bytesize` and `parse-size` both read `5M` as
//! 5,000,000, while SPEC §2 (like rsync) wants `K`/`M`/`G` to be powers of 1024
//! and only the explicit `KB`/`MB`/`GB` to be powers of 1000. The grammar is
//! small enough that a table here is clearer than bending a crate.

use std::fmt;

/// Why a size or rate did not parse; shown after the key and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

/// Largest accepted rate: 1 PiB/s (`1024T`), far above any link, so that
/// every limit written is a limit. Above it a value could reach the
/// throttle's internal pause code (`u64::MAX`) and stop the copy forever.
pub const MAX_RATE: u64 = 1 << 50;

const SIZE_EXAMPLES: &str = "expected e.g. `1048576`, `512K`, `5M`, `5MB` or `5MiB`";

/// Parses a byte count: `1048576`, `512K`, `5M`, `1G`, `2T` (powers of 1024),
/// `5KB`/`5MB`/`5GB`/`5TB` (powers of 1000), `5KiB`…`5TiB` (1024), `10B`.
/// Case-insensitive, optional space before the unit, decimals allowed (`1.5G`)
/// and rounded to whole bytes; a value above zero that rounds to 0 bytes
/// (`0.4B`) is refused rather than read as 0.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    match parse_bytes(input) {
        Ok(n) => Ok(n),
        Err(Bad::Syntax) => Err(UnitError(format!(
            "invalid size `{input}`, {SIZE_EXAMPLES}"
        ))),
        Err(Bad::RoundsToZero) => Err(UnitError(format!(
            "size `{input}` rounds to 0 bytes; write a whole number of bytes"
        ))),
        Err(Bad::TooLarge) => Err(UnitError(format!("size `{input}` is too large"))),
    }
}

/// Parses a byte rate: a size with an optional `/s`; `0` or `off` mean
/// "no limit" and yield `None`. A rate above zero that rounds to 0 bytes/s
/// (`0.4B`) is an error, never "no limit".
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
        Ok(n) => check_rate(n, input),
        Err(Bad::TooLarge) => check_rate(u64::MAX, input),
        Err(Bad::Syntax) => Err(UnitError(format!(
            "invalid rate `{input}`, {SIZE_EXAMPLES} (optionally with `/s`), or `off`"
        ))),
        Err(Bad::RoundsToZero) => Err(UnitError(format!(
            "rate `{input}` rounds to 0 bytes/s; write at least `1B`, or `off` for no limit"
        ))),
    }
}

/// A rate given as a byte count per second: `0` = no limit; above
/// [`MAX_RATE`] refused (`input` is how it was written, for the message).
pub fn check_rate(n: u64, input: &str) -> Result<Option<u64>, UnitError> {
    match n {
        0 => Ok(None),
        n if n > MAX_RATE => Err(UnitError(format!(
            "rate `{input}` is above the largest limit, 1024T (1 PiB/s); write `off` for no limit"
        ))),
        n => Ok(Some(n)),
    }
}

enum Bad {
    Syntax,
    /// A number above zero whose byte count rounds to 0.
    RoundsToZero,
    /// More bytes than 64 bits hold.
    TooLarge,
}

fn parse_bytes(input: &str) -> Result<u64, Bad> {
    let t = input.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(Bad::Syntax);
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
        _ => return Err(Bad::Syntax),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or(Bad::TooLarge);
    }
    let f: f64 = num.parse().map_err(|_| Bad::Syntax)?;
    let v = f * mult as f64;
    if !(v.is_finite() && v >= 0.0) {
        return Err(Bad::Syntax);
    }
    if v >= u64::MAX as f64 {
        return Err(Bad::TooLarge);
    }
    match v.round() as u64 {
        0 if v > 0.0 => Err(Bad::RoundsToZero),
        n => Ok(n),
    }
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
        assert_eq!(parse_rate("0.0"), Ok(None));
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_rate("1024T"), Ok(Some(MAX_RATE)));
        for r in ["1025T", "18446744073709551615", "16777216T"] {
            let e = parse_rate(r).unwrap_err().to_string();
            assert!(e.contains("above the largest limit"), "{r}: {e}");
        }
    }

    #[test]
    fn a_rate_or_size_that_rounds_to_zero_is_refused() {
        for r in ["0.4B", "0.4", "0.4/s", "0.0001K"] {
            let e = parse_rate(r).unwrap_err().to_string();
            assert!(e.contains("rounds to 0 bytes/s"), "{r}: {e}");
        }
        assert_eq!(parse_rate("0.5B"), Ok(Some(1)));
        let e = parse_size("0.4B").unwrap_err().to_string();
        assert!(e.contains("rounds to 0 bytes"), "{e}");
    }

    #[test]
    fn human_output() {
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(HumanRate(f64::NAN).to_string(), "0 B/s");
    }
}
