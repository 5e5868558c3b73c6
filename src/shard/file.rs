//! The plan file, `<manifest stem>.plan.toml`: for each shard its
//! subtrees, the folders whose rest it holds, its entries and bytes; and
//! the fingerprint of the roots and filters it was made for. Paths are
//! relative to the source root, `.` the root itself.

use std::path::{Path, PathBuf};

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use super::pack::{Packing, Unit};

/// One shard of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanShard {
    pub units: Vec<Unit>,
    pub entries: u64,
    pub bytes: u64,
}

/// A plan as written and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub fingerprint: String,
    /// `scan` (the job's DB) or `walk`.
    pub sizes_from: String,
    pub made_at: String,
    pub shards: Vec<PlanShard>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanToml {
    shards: usize,
    fingerprint: String,
    sizes_from: String,
    made_at: String,
    shard: Vec<ShardToml>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardToml {
    index: usize,
    entries: u64,
    bytes: u64,
    subtrees: Vec<String>,
    /// Split folders whose rest (entries directly in them, and below
    /// those, that no other part holds) this shard holds.
    rest_of: Vec<String>,
}

fn spell(p: &Path) -> Result<String, String> {
    if p.as_os_str().is_empty() {
        return Ok(".".into());
    }
    p.to_str().map(str::to_owned).ok_or_else(|| {
        format!(
            "`{}` is not UTF-8: a plan cannot name it (plan fewer shards, so its folder stays whole)",
            p.display()
        )
    })
}

fn read_path(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if s == "." {
        return Ok(PathBuf::new());
    }
    let plain = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if s.is_empty() || !plain {
        return Err(format!("`{s}` is not a path below the source root"));
    }
    Ok(p.to_path_buf())
}

impl Plan {
    pub fn new(p: Packing, fingerprint: String, sizes_from: &str, made_at: String) -> Self {
        Self {
            fingerprint,
            sizes_from: sizes_from.into(),
            made_at,
            shards: p
                .shards
                .into_iter()
                .map(|s| PlanShard {
                    units: s.units,
                    entries: s.size.entries,
                    bytes: s.size.bytes,
                })
                .collect(),
        }
    }

    /// The TOML text, or the path it cannot spell.
    pub fn to_toml(&self) -> Result<String, String> {
        let mut shard = Vec::new();
        for (index, s) in self.shards.iter().enumerate() {
            let (mut subtrees, mut rest_of) = (Vec::new(), Vec::new());
            for u in &s.units {
                match u {
                    Unit::Subtree(p) => subtrees.push(spell(p)?),
                    Unit::Rest(p) => rest_of.push(spell(p)?),
                }
            }
            shard.push(ShardToml {
                index,
                entries: s.entries,
                bytes: s.bytes,
                subtrees,
                rest_of,
            });
        }
        let t = PlanToml {
            shards: self.shards.len(),
            fingerprint: self.fingerprint.clone(),
            sizes_from: self.sizes_from.clone(),
            made_at: self.made_at.clone(),
            shard,
        };
        let body = crate::manifest::to_toml(&t)?;
        Ok(format!(
            "# jobrun shard plan: made by `jobrun plan`; run each shard with `jobrun --shard K`.\n\
             # Paths are relative to the source root (`.` is the root). Do not edit: plan again.\n{body}"
        ))
    }

    /// Reads a plan file: `Ok(None)` when there is none.
    pub fn read(path: &Utf8Path) -> Result<Option<Self>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the plan `{path}`: {e}")),
        };
        Self::parse(&text).map(Some).map_err(|e| {
            format!(
                "the plan `{path}` is not a jobrun plan ({e}): make it again with `jobrun plan`"
            )
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let t: PlanToml = crate::manifest::from_toml(text)?;
        if t.shards == 0 || t.shard.len() != t.shards {
            return Err(format!(
                "{} shards listed, `shards = {}`",
                t.shard.len(),
                t.shards
            ));
        }
        let mut shards = Vec::with_capacity(t.shards);
        for (i, s) in t.shard.into_iter().enumerate() {
            if s.index != i {
                return Err(format!("shard {i} is listed as index {}", s.index));
            }
            let mut units = Vec::new();
            for p in &s.subtrees {
                let p = read_path(p)?;
                if p.as_os_str().is_empty() {
                    return Err("the root is not a subtree".into());
                }
                units.push(Unit::Subtree(p));
            }
            for p in &s.rest_of {
                units.push(Unit::Rest(read_path(p)?));
            }
            units.sort();
            shards.push(PlanShard {
                units,
                entries: s.entries,
                bytes: s.bytes,
            });
        }
        Ok(Self {
            fingerprint: t.fingerprint,
            sizes_from: t.sizes_from,
            made_at: t.made_at,
            shards,
        })
    }

    /// A digest of the parts (which shard holds what): a shard DB's rows
    /// are filtered again when it changes.
    pub fn units_digest(&self) -> String {
        let mut h = crate::checksum::HashAlgo::Sha256.hasher();
        for (i, s) in self.shards.iter().enumerate() {
            h.update(format!("{i}:{:?}\n", s.units).as_bytes());
        }
        let mut hex = h.finish_hex();
        hex.truncate(16);
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::pack::{Shard, Size};

    #[test]
    fn round_trips_and_refuses_what_is_not_a_plan() {
        let packing = Packing {
            shards: vec![
                Shard {
                    units: vec![Unit::Subtree("a/b".into()), Unit::Rest("".into())],
                    size: Size {
                        entries: 3,
                        bytes: 10,
                    },
                },
                Shard {
                    units: vec![Unit::Rest("a".into())],
                    size: Size {
                        entries: 1,
                        bytes: 0,
                    },
                },
            ],
            split: vec![],
        };
        let plan = Plan::new(packing, "f00".into(), "walk", "2026-12-06T00:00:00Z".into());
        let text = plan.to_toml().unwrap();
        assert!(text.contains("rest_of = [\".\"]"), "{text}");
        assert_eq!(Plan::parse(&text).unwrap(), plan);
        for bad in [
            text.replace("shards = 2", "shards = 3"),
            text.replace("\"a/b\"", "\"../x\""),
            text.replace("\"a/b\"", "\"/etc\""),
            text.replace("index = 1", "index = 0"),
            "shards = 1".into(),
        ] {
            assert!(Plan::parse(&bad).is_err(), "{bad}");
        }
    }
}
