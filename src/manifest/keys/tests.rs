//! The key table against every other place a key lives: the manifest
//! parser, the flags, the environment and the docs. A key added in one
//! place only fails here, naming the place it is missing from.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

use camino::Utf8Path;
use clap::{Args, CommandFactory, Parser};

use super::{KEYS, Key, TABLE};
use crate::cli::{Cli, Overrides};
use crate::manifest::{Job, ManifestError, RawManifest, layers, load_str};

const ROOTS: &str = "source = \"/a\"\ndestination = \"/b\"\n";

/// A manifest of the two roots and `lines`, a key written there replacing
/// its root.
fn load(lines: &str, overrides: &Overrides) -> Result<Job, ManifestError> {
    let roots: String = ROOTS
        .lines()
        .filter(|l| {
            !lines
                .lines()
                .any(|m| m.split('=').next() == l.split('=').next())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    load_str(
        Utf8Path::new("/jobs/t.toml"),
        &format!("{roots}{lines}"),
        overrides,
    )
}

fn debug(job: &Job) -> String {
    format!("{job:?}")
}

fn default_job() -> String {
    debug(&load("", &Overrides::default()).unwrap())
}

#[test]
fn names_helps_flags_and_variables_are_each_one_of_a_kind() {
    let unique = |what: &str, items: Vec<&str>| {
        let set: BTreeSet<&str> = items.iter().copied().collect();
        assert_eq!(set.len(), items.len(), "a {what} twice in the key table");
    };
    unique("name", TABLE.iter().map(|k| k.name).collect());
    unique("flag", TABLE.iter().filter_map(|k| k.flag).collect());
    unique("variable", TABLE.iter().filter_map(|k| k.env).collect());
    assert_eq!(
        KEYS.to_vec(),
        TABLE.iter().map(|k| k.name).collect::<Vec<_>>()
    );
    for k in TABLE {
        // One line, as clap prints it (its doc-comment help drops a final
        // period; this help is printed as written).
        assert!(
            !k.help.is_empty() && !k.help.contains('\n') && !k.help.ends_with('.'),
            "`{}`: help {:?}",
            k.name,
            k.help
        );
        assert!(!k.kind.is_empty() && !k.default.is_empty() && !k.anchor.is_empty());
        if let Some(env) = k.env {
            assert!(
                env.starts_with("JOBRUN_")
                    && !env.starts_with("JOBRUN_TEST_")
                    && !env.starts_with("JOBRUN_BENCH_"),
                "`{}`: {env}",
                k.name
            );
        }
    }
}

/// Every key is a field of the parsed manifest and nothing else is; each
/// one's example is read, and changes the job.
#[test]
fn the_manifest_parser_reads_every_key_and_no_other() {
    let fields: BTreeSet<String> = match serde_json::to_value(RawManifest::default()).unwrap() {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("{other}"),
    };
    let table: BTreeSet<String> = KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(fields, table, "RawManifest's fields against the key table");
    let default = default_job();
    for k in TABLE {
        let line = format!("{} = {}\n", k.name, k.example);
        let job = load(&line, &Overrides::default())
            .unwrap_or_else(|e| panic!("`{}`: the example is refused: {e}", k.name));
        assert_ne!(debug(&job), default, "`{line}` changes nothing");
    }
    let all: String = TABLE
        .iter()
        .map(|k| format!("{} = {}\n", k.name, k.example))
        .collect();
    load(&all, &Overrides::default()).expect("every example at once");
}

/// A key's example as the flag's arguments.
fn flag_args(k: &Key) -> Vec<String> {
    let flag = format!("--{}", k.flag.unwrap());
    match k.example.parse::<toml::Value>() {
        Ok(toml::Value::Boolean(b)) => vec![format!("{flag}={b}")],
        Ok(toml::Value::String(s)) => vec![flag, s],
        Ok(toml::Value::Integer(i)) => vec![flag, i.to_string()],
        Ok(toml::Value::Array(a)) => a
            .iter()
            .flat_map(|v| [flag.clone(), v.as_str().unwrap().to_string()])
            .collect(),
        other => panic!("`{}`: example {other:?}", k.name),
    }
}

/// The override flags are the table's keys with flags, in its order, each
/// with the table's help, on every command that takes them; and a flag sets
/// what its key's manifest line sets.
#[test]
fn every_key_with_a_flag_has_it_and_every_override_flag_is_a_key() {
    let group = Overrides::augment_args(clap::Command::new("overrides"));
    let flags: Vec<(&str, Option<&str>, String)> = group
        .get_arguments()
        .map(|a| {
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            (a.get_id().as_str(), a.get_long(), help)
        })
        .collect();
    let want: Vec<(&str, Option<&str>, String)> = TABLE
        .iter()
        .filter(|k| k.flag.is_some())
        .map(|k| (k.name, k.flag, k.help.to_string()))
        .collect();
    assert_eq!(flags, want, "Overrides' flags against the key table");
    // A command that takes the overrides takes every one of them (the run
    // and `check` at least; `completions` takes none).
    let cli = Cli::command();
    let with_flags = TABLE.iter().filter(|k| k.flag.is_some()).count();
    for c in std::iter::once(&cli).chain(cli.get_subcommands()) {
        let missing: Vec<&str> = TABLE
            .iter()
            .filter_map(|k| k.flag)
            .filter(|f| !c.get_arguments().any(|a| a.get_long() == Some(f)))
            .collect();
        let takes_all = missing.is_empty() && with_flags > 0;
        let must = matches!(c.get_name(), "jobrun" | "check");
        assert!(
            takes_all || (!must && missing.len() == with_flags),
            "`{}` lacks {missing:?}",
            c.get_name()
        );
    }
    for k in TABLE.iter().filter(|k| k.flag.is_some()) {
        let args = flag_args(k);
        let cli = Cli::try_parse_from(["jobrun".to_string(), "x.toml".into()].iter().chain(&args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(cli.run.overrides.given(k.name), "{args:?}");
        let by_flag = load("", &cli.run.overrides).unwrap();
        let by_line = load(
            &format!("{} = {}\n", k.name, k.example),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(debug(&by_flag), debug(&by_line), "{args:?}");
    }
}

/// Each variable is read into its key, paths as written; no other
/// `JOBRUN_*` is.
#[test]
fn every_key_with_a_variable_is_read_from_it() {
    for k in TABLE {
        let Some(env) = k.env else { continue };
        // A string as its text (`JOBRUN_BWLIMIT=20M`), anything else as
        // written after `key = `.
        let text = match k.example.parse::<toml::Value>() {
            Ok(toml::Value::String(s)) => s,
            _ => k.example.to_string(),
        };
        let layer = layers::env_layer([(OsString::from(env), OsString::from(&text))].into_iter())
            .unwrap_or_else(|e| panic!("{env}={text}: {e}"));
        assert!(layer.table.contains_key(k.name), "{env}={text}");
        assert!(layer.unknown.is_empty());
        if k.kind == super::PATH {
            assert_eq!(layer.table[k.name].as_str(), Some(text.as_str()));
        }
    }
    let layer = layers::env_layer([(OsString::from("JOBRUN_NO_SUCH_KEY"), "1".into())].into_iter())
        .unwrap();
    assert!(layer.table.is_empty());
    assert_eq!(layer.unknown, ["JOBRUN_NO_SUCH_KEY"]);
}

/// A default written in backticks is a spelling of the real default;
/// `required` is required.
#[test]
fn the_documented_defaults_are_the_defaults() {
    let default = default_job();
    for k in TABLE {
        if k.default == "required" {
            let text = ROOTS
                .lines()
                .filter(|l| !l.starts_with(k.name))
                .collect::<Vec<_>>()
                .join("\n");
            let e = load_str(Utf8Path::new("/jobs/t.toml"), &text, &Overrides::default());
            assert!(
                matches!(e, Err(ManifestError::Missing { key, .. }) if key == k.name),
                "`{}` is documented as required",
                k.name
            );
            continue;
        }
        let Some(spelled) = k
            .default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .filter(|d| !d.contains('`') && !d.contains('<'))
        else {
            assert!(
                matches!(k.default, "off" | "none") || k.default.contains('<'),
                "`{}`: default {:?} is neither a spelling nor off/none",
                k.name,
                k.default
            );
            continue;
        };
        let job = load(&format!("{} = {spelled}\n", k.name), &Overrides::default())
            .or_else(|_| {
                load(
                    &format!("{} = \"{spelled}\"\n", k.name),
                    &Overrides::default(),
                )
            })
            .unwrap_or_else(|e| panic!("`{}`: default `{spelled}` is refused: {e}", k.name));
        assert_eq!(
            debug(&job),
            default,
            "`{}`: the documented default `{spelled}` is not the default",
            k.name
        );
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A docs page by its path from the repository's root.
fn page(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("docs page `{path}`: {e}"))
}

/// A heading's anchor as GitHub makes it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of `text` under the heading whose anchor is `wanted`, up to
/// the next heading; `None` without such a heading. Code blocks hold no
/// headings.
fn section<'t>(text: &'t str, wanted: &str) -> Option<Vec<&'t str>> {
    let mut fenced = false;
    let mut lines = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let heading = (!fenced).then(|| line.strip_prefix('#')).flatten();
        match heading {
            Some(_) if inside => break,
            Some(h) => inside = anchor(h.trim_start_matches('#')) == wanted,
            None if inside => lines.push(line),
            None => {}
        }
    }
    inside.then_some(lines)
}

/// The section a key table anchor (`page.md#anchor`) names.
fn docs_section(at: &str) -> Option<(String, Vec<String>)> {
    let (path, wanted) = at.split_once('#')?;
    let text = page(path);
    let lines = section(&text, wanted)?;
    Some((
        path.to_string(),
        lines.into_iter().map(String::from).collect(),
    ))
}

const TABLE_HEADER: &str = "| key | type | default |";

/// The docs' key table, in the section [`super::KEYS_ANCHOR`] names: each
/// row's key, type and default.
fn docs_table() -> (String, Vec<[String; 3]>) {
    let (path, lines) = docs_section(super::KEYS_ANCHOR)
        .unwrap_or_else(|| panic!("no docs section `{}`", super::KEYS_ANCHOR));
    let mut lines = lines.iter().skip_while(|l| !l.starts_with(TABLE_HEADER));
    assert!(
        lines.next().is_some(),
        "{path}: no `{TABLE_HEADER} …` table"
    );
    let rows = lines
        .skip(1) // |---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert!(cells.len() >= 4, "{path}: {l}");
            [cells[0], cells[1], cells[2]].map(|c| c.to_string())
        })
        .collect();
    (path, rows)
}

/// The docs list every key, and only keys, in the table's order, with the
/// table's type and default.
#[test]
fn the_docs_list_every_key_with_its_type_and_default() {
    let (page, rows) = docs_table();
    let listed: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    let want: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
    assert_eq!(listed, want, "{page}: the keys, in the table's order");
    for (k, row) in TABLE.iter().zip(&rows) {
        assert_eq!(row[1], k.kind, "{page}: type of `{}`", k.name);
        assert_eq!(row[2], k.default, "{page}: default of `{}`", k.name);
    }
}

#[test]
fn every_key_is_explained_under_its_docs_heading() {
    assert_eq!(anchor(" Mirror (`delete_extras`)"), "mirror-delete_extras");
    assert_eq!(
        section("# A\n```\n# b\n```\nx\n## C\n", "a").unwrap().len(),
        4
    );
    for k in TABLE {
        assert!(
            docs_section(k.anchor).is_some(),
            "`{}`: no docs heading at `{}`",
            k.name,
            k.anchor
        );
    }
}
