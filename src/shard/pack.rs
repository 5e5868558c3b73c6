//! The packing of a tree into shards (pure: no I/O). fpart's idea: whole
//! subtrees, bin-packed largest first; a subtree too big for one shard is
//! split into its parts (its sub-folders, and the rest of it: the entries
//! directly in it). Files directly in the root (the root's rest) go to
//! shard 0. Same tree, same plan: every choice is ordered by weight, then
//! by path. The files directly in a folder always go together (its rest
//! is one part): one shard writes files into each folder, so no shard's
//! scan takes another's temporary for a stale one, and no two shards'
//! temporaries (named after their row ids) share a folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Entries and bytes of a part of the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub entries: u64,
    pub bytes: u64,
}

impl Size {
    fn add(&mut self, o: Size) {
        self.entries += o.entries;
        self.bytes += o.bytes;
    }
}

/// A folder of the tree as the packer sees it: what is directly in it
/// (its files, and the folder entries of its sub-folders are not: those
/// count in the sub-folder) and its sub-folders.
#[derive(Debug, Clone, Default)]
pub struct Folder {
    /// Entries directly in the folder that are not folders, and their bytes.
    pub direct: Size,
    pub subs: BTreeMap<PathBuf, Folder>,
}

impl Folder {
    /// Adds one entry at `rel` (relative to the root, not empty): a
    /// folder (`is_dir`, its size ignored) or anything else.
    pub fn add(&mut self, rel: &Path, is_dir: bool, bytes: u64) {
        let mut at = self;
        let mut comps = rel.components().peekable();
        let mut path = PathBuf::new();
        while let Some(c) = comps.next() {
            path.push(c);
            let last = comps.peek().is_none();
            if last && !is_dir {
                at.direct.add(Size { entries: 1, bytes });
                return;
            }
            at = at.subs.entry(path.clone()).or_default();
        }
    }

    /// The folder's own entry, everything directly in it and below.
    fn total(&self) -> Size {
        let mut s = Size {
            entries: 1,
            bytes: 0,
        };
        s.add(self.direct);
        for f in self.subs.values() {
            s.add(f.total());
        }
        s
    }
}

/// One unit of a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// A folder (or, if it changed, whatever is at that path) and all below.
    Subtree(PathBuf),
    /// What is directly in a split folder (`""`: the root) and is neither
    /// a unit nor a split folder itself, with everything below it: its
    /// files, and folders made after the plan.
    Rest(PathBuf),
}

/// One shard: its units (sorted) and their size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard {
    pub units: Vec<Unit>,
    pub size: Size,
}

/// A packing: the shards, and the folders split into their parts (every
/// strict ancestor of a unit; `""` the root, always split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    pub shards: Vec<Shard>,
    pub split: Vec<PathBuf>,
}

/// Why a tree cannot be packed into `n` shards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("the number of shards must be at least 1")]
    Zero,
    #[error(
        "the source splits into at most {parts} parts holding entries, fewer than the {n} shards asked for: ask for at most {parts}"
    )]
    TooFew { n: usize, parts: usize },
}

/// A unit waiting to be placed: its weight, its path (for order) and, for
/// a subtree, the folder (to split it further).
struct Part<'a> {
    unit: Unit,
    size: Size,
    folder: Option<&'a Folder>,
}

/// The weight of a size against the whole: the larger of its share of the
/// entries and of the bytes, so a shard is near-equal in both.
fn weight(s: Size, total: Size) -> f64 {
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    share(s.entries, total.entries).max(share(s.bytes, total.bytes))
}

/// Packs the tree below `root` into `n` shards.
pub fn pack(root: &Folder, n: usize) -> Result<Packing, PackError> {
    if n == 0 {
        return Err(PackError::Zero);
    }
    let mut total = root.direct;
    for f in root.subs.values() {
        total.add(f.total());
    }
    let mut split = vec![PathBuf::new()];
    let mut parts = parts_of(Path::new(""), root);
    // Split the heaviest subtree while it is too big for one shard, or
    // while there are fewer parts holding entries than shards.
    let target = 1.0 / n as f64;
    loop {
        let holding = parts.iter().filter(|p| p.size.entries > 0).count();
        let heaviest = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.folder
                    .is_some_and(|f| !f.subs.is_empty() || f.direct.entries > 0)
            })
            .max_by(|(_, a), (_, b)| order(a, b, total).reverse());
        let Some((i, p)) = heaviest else { break };
        if weight(p.size, total) <= target && holding >= n {
            break;
        }
        let p = parts.swap_remove(i);
        let Unit::Subtree(path) = &p.unit else {
            unreachable!("only subtrees have a folder")
        };
        let folder = p.folder.expect("filtered on a folder above");
        split.push(path.clone());
        parts.extend(parts_of(path, folder));
    }
    let holding = parts.iter().filter(|p| p.size.entries > 0).count();
    if holding < n {
        return Err(PackError::TooFew { n, parts: holding });
    }
    split.sort();
    Ok(Packing {
        shards: place(parts, n, total),
        split,
    })
}

/// Heaviest first, then by path: the one order of every choice.
fn order(a: &Part<'_>, b: &Part<'_>, total: Size) -> std::cmp::Ordering {
    weight(b.size, total)
        .total_cmp(&weight(a.size, total))
        .then_with(|| a.unit.cmp(&b.unit))
}

/// The parts of a split folder: each sub-folder whole, and its rest (the
/// split folder's own entry counts in its rest).
fn parts_of<'a>(path: &Path, folder: &'a Folder) -> Vec<Part<'a>> {
    let mut rest = folder.direct;
    if !path.as_os_str().is_empty() {
        rest.entries += 1;
    }
    let mut parts = vec![Part {
        unit: Unit::Rest(path.to_path_buf()),
        size: rest,
        folder: None,
    }];
    parts.extend(folder.subs.iter().map(|(p, f)| Part {
        unit: Unit::Subtree(p.clone()),
        size: f.total(),
        folder: Some(f),
    }));
    parts
}

/// Largest first onto the shard it leaves lightest, entries and bytes
/// each counted (the root's rest onto shard 0).
fn place(mut parts: Vec<Part<'_>>, n: usize, total: Size) -> Vec<Shard> {
    parts.sort_by(|a, b| order(a, b, total));
    let mut shards = vec![Shard::default(); n];
    let root_rest = Unit::Rest(PathBuf::new());
    if let Some(i) = parts.iter().position(|p| p.unit == root_rest) {
        let p = parts.remove(i);
        shards[0].size.add(p.size);
        shards[0].units.push(p.unit);
    }
    for p in parts {
        let after = |k: usize| {
            let mut s = shards[k].size;
            s.add(p.size);
            weight(s, total)
        };
        let k = (0..n)
            .min_by(|&a, &b| {
                after(a)
                    .total_cmp(&after(b))
                    .then(weight(shards[a].size, total).total_cmp(&weight(shards[b].size, total)))
                    .then(shards[a].units.len().cmp(&shards[b].units.len()))
                    .then(a.cmp(&b))
            })
            .expect("n >= 1");
        shards[k].size.add(p.size);
        shards[k].units.push(p.unit);
    }
    for s in &mut shards {
        s.units.sort();
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, u64)]) -> Folder {
        let mut root = Folder::default();
        for (p, b) in files {
            let p = Path::new(p);
            let mut dir = PathBuf::new();
            for c in p.parent().unwrap().components() {
                dir.push(c);
                root.add(&dir, true, 0);
            }
            root.add(p, false, *b);
        }
        root
    }

    fn sub(p: &str) -> Unit {
        Unit::Subtree(p.into())
    }

    fn rest(p: &str) -> Unit {
        Unit::Rest(p.into())
    }

    #[test]
    fn whole_subtrees_largest_first_root_files_on_shard_0() {
        let t = tree(&[
            ("top.txt", 10),
            ("a/1", 100),
            ("a/2", 100),
            ("b/1", 150),
            ("b/2", 50),
            ("c/1", 90),
            ("c/2", 90),
            ("d/1", 10),
            ("d/2", 10),
        ]);
        let p = pack(&t, 2).unwrap();
        assert_eq!(p.split, vec![PathBuf::new()]);
        assert_eq!(p.shards[0].units, vec![sub("b"), sub("d"), rest("")]);
        assert_eq!(p.shards[1].units, vec![sub("a"), sub("c")]);
        assert_eq!(
            p.shards[0].size,
            Size {
                entries: 7,
                bytes: 230
            }
        );
        assert_eq!(
            p.shards[1].size,
            Size {
                entries: 6,
                bytes: 380
            }
        );
    }

    #[test]
    fn a_subtree_too_big_for_one_shard_is_split_into_its_parts() {
        let t = tree(&[
            ("big/x/1", 400),
            ("big/y/1", 400),
            ("big/f", 10),
            ("small/1", 200),
        ]);
        let p = pack(&t, 2).unwrap();
        assert_eq!(p.split, vec![PathBuf::new(), PathBuf::from("big")]);
        let all: Vec<&Unit> = p.shards.iter().flat_map(|s| &s.units).collect();
        assert!(all.contains(&&sub("big/x")) && all.contains(&&sub("big/y")));
        assert!(all.contains(&&rest("big")) && all.contains(&&rest("")));
        assert!(!all.contains(&&sub("big")));
        // 400+10 and 400+200, near-equal.
        let bytes: Vec<u64> = p.shards.iter().map(|s| s.size.bytes).collect();
        assert_eq!(bytes.iter().sum::<u64>(), 1010);
        assert!(bytes.iter().all(|&b| (400..=610).contains(&b)), "{bytes:?}");
    }

    #[test]
    fn every_entry_is_counted_once_and_the_plan_is_deterministic() {
        let mut files = Vec::new();
        for i in 0..40 {
            files.push((format!("d{}/s{}/f{i}", i % 5, i % 3), (i * 37 % 101) as u64));
        }
        let refs: Vec<(&str, u64)> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let t = tree(&refs);
        for n in 1..=6 {
            let a = pack(&t, n).unwrap();
            assert_eq!(a, pack(&t, n).unwrap());
            let entries: u64 = a.shards.iter().map(|s| s.size.entries).sum();
            let bytes: u64 = a.shards.iter().map(|s| s.size.bytes).sum();
            // 40 files, 5 + 15 folders.
            assert_eq!((entries, bytes), (60, refs.iter().map(|r| r.1).sum()));
            assert!(a.shards.iter().all(|s| s.size.entries > 0), "{n}: {a:?}");
        }
    }

    #[test]
    fn refuses_more_shards_than_parts() {
        let t = tree(&[("a/1", 1), ("b/1", 1)]);
        // a/1 and b/1 cannot be split below their folders.
        assert_eq!(pack(&t, 3), Err(PackError::TooFew { n: 3, parts: 2 }));
        assert_eq!(pack(&t, 0), Err(PackError::Zero));
        assert!(pack(&t, 2).is_ok());
    }
}
