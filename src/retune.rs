//! Retuning a running job (SIGHUP, `jobrun reload`): the manifest is read
//! again as a run would read it, and only `bwlimit` is taken; any other key
//! that changed is named as applying at the next run. A manifest that does
//! not load keeps the limit in force. Each reload is one `reload` audit
//! line and one note for the operator.

use std::path::Path;

use serde::Serialize;

use crate::cli::Overrides;
use crate::manifest::{self, Job};
use crate::throttle::{LiveLimit, Schedule};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The new `bwlimit` is in force.
    Applied {
        from: Schedule,
        to: Schedule,
        later: Vec<String>,
    },
    /// `bwlimit` did not change (or a flag or variable sets it, named in
    /// `overridden`, which wins over the manifest).
    Unchanged {
        limit: Schedule,
        later: Vec<String>,
        overridden: Option<&'static str>,
    },
    /// The manifest does not load: the limit in force stays.
    Refused { kept: Schedule, error: String },
}

/// The `reload` audit line.
#[derive(Debug, Serialize)]
pub struct ReloadRecord<'a> {
    pub status: &'static str,
    pub job: &'a str,
    /// Whether the new `bwlimit` is in force.
    pub applied: bool,
    /// `bwlimit` in force after the reload, as `run_start` writes it.
    pub bwlimit: String,
    /// `bwlimit` in force before it.
    pub previous: String,
    /// Other keys whose change applies at the next run.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub later: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// Reads `path` again with the run's `overrides`, compares it with the
/// `running` job and applies a changed `bwlimit` to `limit`.
pub fn reload(path: &Path, overrides: &Overrides, running: &Job, limit: &LiveLimit) -> Reload {
    let current = limit.get();
    let new = match manifest::load(path, overrides) {
        Ok(j) => crate::shard::as_running_shard(j, running),
        Err(e) => {
            return Reload::Refused {
                kept: current,
                error: e.to_string(),
            };
        }
    };
    let later = changed_keys(running, &new);
    let overridden = if overrides.given("bwlimit") {
        Some("flag `--bwlimit`")
    } else if std::env::var_os("JOBRUN_BWLIMIT").is_some() {
        Some("environment variable `JOBRUN_BWLIMIT`")
    } else {
        None
    };
    if new.bwlimit == current || overridden.is_some() {
        return Reload::Unchanged {
            limit: current,
            later,
            overridden,
        };
    }
    limit.set(new.bwlimit.clone());
    Reload::Applied {
        from: current,
        to: new.bwlimit,
        later,
    }
}

/// Keys other than `bwlimit` whose resolved value differs.
fn changed_keys(a: &Job, b: &Job) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    a.iter()
        .filter(|(k, v)| k.as_str() != "bwlimit" && b.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

impl Reload {
    /// The operator's note (progress, stderr).
    pub fn note(&self) -> String {
        let later = |keys: &[String]| {
            if keys.is_empty() {
                String::new()
            } else {
                format!("; changed, applies at the next run: {}", keys.join(", "))
            }
        };
        match self {
            Reload::Applied { from, to, later: l } => format!(
                "reload: bwlimit {from} -> {to} (now {}){}",
                to.limit_now(),
                later(l)
            ),
            Reload::Unchanged {
                limit,
                later: l,
                overridden: Some(by),
            } => format!(
                "reload: bwlimit stays {limit}: the {by} sets it and wins over the manifest{}",
                later(l)
            ),
            Reload::Unchanged {
                limit, later: l, ..
            } => {
                format!("reload: bwlimit unchanged ({limit}){}", later(l))
            }
            Reload::Refused { kept, error } => {
                format!("reload: manifest not applied, bwlimit stays {kept}: {error}")
            }
        }
    }

    /// The audit line.
    pub fn record<'a>(&'a self, job: &'a str) -> ReloadRecord<'a> {
        let text = |s: &Schedule| s.audit_text(s.limit_now());
        let (applied, before, after, later, error) = match self {
            Reload::Applied { from, to, later } => (true, from, to, &later[..], None),
            Reload::Unchanged { limit, later, .. } => (false, limit, limit, &later[..], None),
            Reload::Refused { kept, error } => (false, kept, kept, &[][..], Some(error.as_str())),
        };
        ReloadRecord {
            status: "reload",
            job,
            applied,
            bwlimit: text(after),
            previous: text(before),
            later,
            error,
        }
    }
}
