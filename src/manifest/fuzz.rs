//! The parsers under attack (issue 24): whole manifests, sizes, rates,
//! durations and timetables fed grammar-aware junk, which must come back
//! as a value or an error, never a panic. Bounded (a fixed case count and
//! seed-free shrinking off), so CI spends a few seconds here; the cases the
//! attack campaign found are kept as a plain table ([`CORPUS`]).

use camino::Utf8Path;
use proptest::prelude::*;

use super::{load_str, parse_duration};
use crate::cli::Overrides;
use crate::throttle::Schedule;
use crate::units;

/// Pieces that the grammars are made of, and what broke them.
const TOKENS: &[&str] = &[
    "0",
    "1",
    "9",
    "18446744073709551615",
    "1e3",
    "1e-400",
    "E",
    ".",
    "-",
    "+",
    "_",
    " ",
    "\t",
    "\n",
    ",",
    ":",
    "/s",
    "%",
    "k",
    "K",
    "M",
    "MiB",
    "MB",
    "T",
    "P",
    "y",
    "w",
    "d",
    "h",
    "m",
    "s",
    "ms",
    "ns",
    "µs",
    "off",
    "pause",
    "Mon",
    "Sun",
    "08:00",
    "24:00",
    "-",
    "é",
    "\\",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    "#",
    "nan",
    "inf",
    "\u{1b}",
    "\0",
];

/// Every key of the key table, and two shapes that are no key.
fn lines() -> Vec<String> {
    super::keys::TABLE
        .iter()
        .map(|k| format!("{} = ", k.name))
        .chain(["[x]\n".to_string(), "a.b = ".to_string()])
        .collect()
}

/// Each case the attack campaign reported, as a manifest body after the
/// two roots.
const CORPUS: &[&str] = &[
    "bwlimit = \"18446744073709551615\"",
    "bwlimit = 18446744073709551615",
    "bwlimit = 1e-400",
    "bwlimit = \"1e-400\"",
    "bwlimit = \"Mon-08:00,16777216T 19:00,off\"",
    "bwlimit = \"Mon-25:00,1M\"",
    "modify_window = \"2M\"",
    "modify_window = \"1 5m\"",
    "modify_window = \"99999999999999999999999h\"",
    "progress_interval = \"300000000000y\"",
    "progress_interval = 9223372036854775807",
    "block_size = 1e3",
    "block_size = \"1e3\"",
    "block_size = inf",
    "block_size = nan",
    "transfers = -0",
    "max_delete = \"1e2%\"",
    "exclude = [[[[[[[[[[]]]]]]]]]]",
    "exclude = [\n  \"a\",\n  3,\n]",
    "log = \"t.db.lock\"",
    "metrics_file = \"t.toml\"",
    "db = \"/dev/null\"",
    "db = \"\"",
    "source = \"\u{1b}[31m\"",
];

fn load(body: &str) -> Result<super::Job, super::ManifestError> {
    load_str(
        Utf8Path::new("/nonexistent-jobrun-fuzz/t.toml"),
        &format!("source = \"/a\"\ndestination = \"/b\"\n{body}\n"),
        &Overrides::default(),
    )
}

#[test]
fn the_attack_corpus_is_refused_without_a_panic() {
    for body in CORPUS {
        assert!(load(body).is_err(), "accepted: {body:?}");
    }
    // figment's own parser panicked on this from `JOBRUN_EXCLUDE`; the
    // manifest always read it.
    assert!(load("exclude = [\"café\\\\*.tmp\"]").is_ok());
    for value in [
        "18446744073709551615",
        "1e-400",
        "1 5m",
        "2M",
        "300000000000y",
    ] {
        let _ = units::parse_size(value);
        let _ = units::parse_rate(value);
        let _ = Schedule::parse(value);
        assert!(parse_duration(value).is_err() || value == "18446744073709551615");
    }
}

fn junk(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..max).prop_map(|v| v.concat())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn value_parsers_never_panic(s in junk(12)) {
        let _ = units::parse_size(&s);
        let _ = units::parse_rate(&s);
        let _ = Schedule::parse(&s);
        let _ = parse_duration(&s);
    }

    #[test]
    fn manifests_never_panic(lines in prop::collection::vec((prop::sample::select(lines()), junk(8)), 0..4)) {
        let body: String = lines.iter().map(|(k, v)| format!("{k}{v}\n")).collect();
        let _ = load(&body);
        // The same values quoted: strings reach every parser.
        let quoted: String = lines
            .iter()
            .map(|(k, v)| format!("{k}\"{}\"\n", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let _ = load(&quoted);
    }
}
