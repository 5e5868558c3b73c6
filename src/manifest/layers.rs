//! The layers under the figment merge, read by us rather than by
//! figment's own providers, so that one spelling means one thing in every
//! layer:
//! - the manifest's numbers: a TOML float reaches serde as an `f64`, where
//!   `1e-400` is already `0.0` ("no limit") and `1e3` is `1000.0`, while the
//!   same text in a string is refused. The raw text of every float is
//!   judged here, with its line: no exponents, nothing that underflows.
//! - the environment: each `JOBRUN_<KEY>` value is read as the same text
//!   written after `key = ` in the manifest (a TOML value: a number, a
//!   boolean, an array, a quoted string), and as a string when it is not
//!   one (`20M`); path keys are always taken as written. figment's own
//!   parser accepted spellings the manifest refuses and panicked on a
//!   non-ASCII character before a backslash. A `JOBRUN_*` variable that
//!   names no key is reported (a mistyped `JOBRUN_BWLIMT` used to be
//!   ignored without a word); `JOBRUN_TEST_*` and `JOBRUN_BENCH_*` are
//!   reserved for the test suite and the benches.

use std::ffi::OsString;

use toml::de::{DeTable, DeValue};

use super::ManifestError;
use super::keys;

/// `JOBRUN_*` prefixes that are not keys and not mistakes.
const RESERVED: &[&str] = &["JOBRUN_TEST_", "JOBRUN_BENCH_"];

/// What is wrong with a float written `raw` that reads as `value`, if
/// anything.
pub(super) fn float_problem(raw: &str, value: Option<f64>) -> Option<String> {
    let t = raw.trim();
    let lower = t.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None; // refused by every key as text
    }
    if lower.contains('e') {
        return Some(format!(
            "`{t}`: a number with an exponent is not accepted; write its digits (`1000`) or a unit (`1K`)"
        ));
    }
    let nonzero = t.bytes().any(|b| (b'1'..=b'9').contains(&b));
    match value {
        Some(v) if nonzero && v == 0.0 => Some(format!("`{t}` is too small to be read")),
        _ => None,
    }
}

/// Refuses a float in the manifest that [`float_problem`] judges, with its
/// key and line. A document that does not parse is left to the pass that
/// reports it.
pub(super) fn check_floats(manifest: &camino::Utf8Path, text: &str) -> Result<(), ManifestError> {
    let Ok(doc) = DeTable::parse(text) else {
        return Ok(());
    };
    for (key, value) in doc.get_ref().iter() {
        if let DeValue::Float(f) = value.get_ref() {
            let raw = &text[value.span()];
            if let Some(message) = float_problem(raw, f.as_str().parse().ok()) {
                return Err(ManifestError::Syntax {
                    path: manifest.to_owned(),
                    line: super::line_at(text, value.span().start),
                    key: Some(key.get_ref().to_string()),
                    message,
                });
            }
        }
    }
    Ok(())
}

/// The top-level key whose value holds byte `at` of the manifest (an
/// element of a multi-line array names its key).
pub(super) fn key_at(text: &str, at: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    doc.get_ref()
        .iter()
        .find(|(k, v)| k.span().start <= at && at < v.span().end.max(k.span().end))
        .map(|(k, _)| k.get_ref().to_string())
}

/// The environment's layer: every `JOBRUN_<KEY>` as a TOML value, and the
/// names of `JOBRUN_*` variables that are no key.
pub(super) struct EnvLayer {
    pub table: toml::Table,
    pub unknown: Vec<String>,
}

/// Reads `vars` (the process environment) into an [`EnvLayer`].
pub(super) fn env_layer(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Result<EnvLayer, ManifestError> {
    let mut layer = EnvLayer {
        table: toml::Table::new(),
        unknown: Vec::new(),
    };
    for (name, value) in vars {
        let Some(name) = name.to_str().filter(|n| n.starts_with("JOBRUN_")) else {
            continue;
        };
        let Some(key) = keys::by_env(name) else {
            if !RESERVED.iter().any(|r| name.starts_with(r)) {
                layer.unknown.push(name.to_string());
            }
            continue;
        };
        let bad = |message: String| ManifestError::Override {
            key: key.name.to_string(),
            origin: format!("environment variable `{}`", keys::env_name(key.name)),
            message,
        };
        let text = value
            .into_string()
            .map_err(|v| bad(format!("`{}` is not UTF-8", v.to_string_lossy())))?;
        let value = if key.kind == keys::PATH {
            toml::Value::String(text)
        } else {
            env_value(&text).map_err(bad)?
        };
        layer.table.insert(key.name.to_string(), value);
    }
    Ok(layer)
}

/// One environment value: the TOML value it spells, else the text itself.
fn env_value(text: &str) -> Result<toml::Value, String> {
    let Ok(parsed) = DeValue::parse(text) else {
        return Ok(toml::Value::String(text.to_string()));
    };
    if let DeValue::Float(f) = parsed.get_ref()
        && let Some(problem) = float_problem(text, f.as_str().parse().ok())
    {
        return Err(problem);
    }
    Ok(text
        .parse::<toml::Value>()
        .unwrap_or_else(|_| toml::Value::String(text.to_string())))
}

/// The line that names an unknown `JOBRUN_*` variable, with the key it
/// most likely meant.
pub(super) fn unknown_note(name: &str) -> String {
    let typed = name.to_ascii_lowercase();
    let near = keys::TABLE
        .iter()
        .filter_map(|k| {
            k.env
                .map(|e| (distance(&e.to_ascii_lowercase(), &typed), k.name, e))
        })
        .min()
        .filter(|(d, _, _)| *d <= 2)
        .map(|(_, _, e)| format!(" (did you mean `{e}`?)"))
        .unwrap_or_default();
    format!("warning: environment variable `{name}` is no manifest key and is ignored{near}")
}

/// Edit distance (Levenshtein) of two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn env_values_read_as_the_manifest_reads_them() {
        let l = env_layer(vars(&[
            ("JOBRUN_BWLIMIT", "20M"),
            ("JOBRUN_TRANSFERS", "4"),
            ("JOBRUN_DELETE_EXTRAS", "true"),
            ("JOBRUN_EXCLUDE", r#"["café\\*.tmp"]"#),
            ("JOBRUN_SOURCE", "1234"),
            ("JOBRUN_BWLIMT", "1M"),
            ("JOBRUN_TEST_MIRROR_PAUSE", "1"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        assert_eq!(l.table["bwlimit"].as_str(), Some("20M"));
        assert_eq!(l.table["transfers"].as_integer(), Some(4));
        assert_eq!(l.table["delete_extras"].as_bool(), Some(true));
        assert_eq!(
            l.table["exclude"].as_array().unwrap()[0].as_str(),
            Some("café\\*.tmp")
        );
        assert_eq!(l.table["source"].as_str(), Some("1234"));
        assert_eq!(l.unknown, vec!["JOBRUN_BWLIMT".to_string()]);
        // The name after `JOBRUN_` in any case, named as the table spells it.
        let l = env_layer(vars(&[("JOBRUN_Transfers", "4")])).unwrap();
        assert_eq!(l.table["transfers"].as_integer(), Some(4));
        let e = env_layer(vars(&[("JOBRUN_transfers", "1e3")]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("`transfers` from environment variable `JOBRUN_TRANSFERS`"),
            "{e}"
        );
        assert!(unknown_note("JOBRUN_BWLIMT").contains("did you mean `JOBRUN_BWLIMIT`?"));
        assert!(!unknown_note("JOBRUN_WHATEVER_ELSE").contains("did you mean"));
        for bad in ["1e-400", "1e3", "2E2"] {
            assert!(
                env_layer(vars(&[("JOBRUN_BWLIMIT", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn floats_are_judged_by_their_text() {
        assert!(float_problem("1e3", Some(1000.0)).is_some());
        assert!(float_problem("1e-400", Some(0.0)).is_some());
        assert!(float_problem("0.0", Some(0.0)).is_none());
        assert!(float_problem("1.5", Some(1.5)).is_none());
        let tiny = format!("0.{}1", "0".repeat(400));
        assert!(float_problem(&tiny, Some(0.0)).is_some());
        assert!(float_problem("inf", Some(f64::INFINITY)).is_none());
    }
}
