//! Filters (manifest `exclude` and `include`): which entries below a root
//! the job leaves out. The only module that imports `ignore`; a leaf (no
//! I/O), used by the scan's walkers, the mirror's fresh listing and the
//! pruning of rows a filter edit left out.
//!
//! Each pattern is one gitignore line (gitignore(5)), matched on the path
//! relative to the root, as raw bytes (a name need not be UTF-8): `*`, `?`
//! and `[...]` stay within one name, `**` spans folders, a trailing `/`
//! matches folders only, a `/` at the start or in the middle anchors the
//! pattern at the root, and a pattern without `/` matches a name at any
//! depth. Unlike a gitignore file, a leading `#` is a name, not a comment,
//! and trailing spaces are kept. An `include` pattern is an exception: an
//! entry it matches is not excluded, whatever `exclude` says (rsync's
//! `--include` before its `--exclude`s). An excluded folder is not walked,
//! so nothing below it can be re-included unless the folder itself is.

use std::path::Path;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The folder names under which NAS and ZFS shares expose their snapshots.
pub const SNAPSHOT_DIRS: &[&str] = &[".snapshot", "~snapshot", ".zfs"];

/// The job's filters, compiled once.
#[derive(Debug, Clone)]
pub struct Filter {
    exclude: Vec<String>,
    include: Vec<String>,
    matcher: Gitignore,
    /// A shard's part of the tree (`shard`): what is outside it is left
    /// out as if excluded.
    scope: Option<std::sync::Arc<dyn Scope>>,
}

/// A part of the tree a run is limited to (a shard's subtrees): entries
/// outside it are left out, folders outside it not entered.
pub trait Scope: std::fmt::Debug + Send + Sync {
    /// Whether the entry at `rel` (not the root) is inside, its parent
    /// folders being inside.
    fn keeps(&self, rel: &Path, is_dir: bool) -> bool;
    /// A stable text of the part, for [`Filter::fingerprint`].
    fn fingerprint(&self) -> String;
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            exclude: Vec::new(),
            include: Vec::new(),
            matcher: Gitignore::empty(),
            scope: None,
        }
    }
}

/// The gitignore line of one pattern, or why it is refused.
fn line(pattern: &str) -> Result<String, String> {
    if pattern.trim().is_empty() {
        return Err("empty pattern".into());
    }
    if pattern.starts_with('!') {
        return Err(
            "a leading `!` is not supported: put the exception in `include` \
                    (write `\\!` for a name that starts with `!`)"
                .into(),
        );
    }
    let mut line = String::with_capacity(pattern.len() + 2);
    if pattern.starts_with('#') {
        line.push('\\');
    }
    line.push_str(pattern);
    if line.ends_with(' ') && !line.ends_with("\\ ") {
        line.pop();
        line.push_str("\\ ");
    }
    Ok(line)
}

/// Checks one pattern alone (the manifest does it while reading each key).
pub fn check(pattern: &str) -> Result<(), String> {
    let mut b = GitignoreBuilder::new(".");
    b.allow_unclosed_class(false);
    b.add_line(None, &line(pattern)?)
        .map_err(|e| one_line(&e.to_string()))?;
    let g = b.build().map_err(|e| one_line(&e.to_string()))?;
    if g.num_ignores() == 0 {
        return Err("the pattern matches nothing".into());
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

impl Filter {
    /// Compiles the patterns; an error names the key and the pattern.
    pub fn new(
        exclude: &[String],
        include: &[String],
    ) -> Result<Self, (&'static str, String, String)> {
        let mut b = GitignoreBuilder::new(".");
        b.allow_unclosed_class(false);
        for (key, list, neg) in [("exclude", exclude, ""), ("include", include, "!")] {
            for p in list {
                let bad = |reason: String| (key, p.clone(), reason);
                check(p).map_err(bad)?;
                let l = format!("{neg}{}", line(p).map_err(bad)?);
                b.add_line(None, &l).map_err(|e| bad(e.to_string()))?;
            }
        }
        let matcher = b
            .build()
            .map_err(|e| ("exclude", String::new(), e.to_string()))?;
        Ok(Self {
            exclude: exclude.to_vec(),
            include: include.to_vec(),
            matcher,
            scope: None,
        })
    }

    /// The same filter, limited to `scope` as well.
    pub fn scoped(mut self, scope: std::sync::Arc<dyn Scope>) -> Self {
        self.scope = Some(scope);
        self
    }

    /// No `exclude` pattern and no scope: nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.exclude.is_empty() && self.scope.is_none()
    }

    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }

    pub fn include(&self) -> &[String] {
        &self.include
    }

    /// Whether the entry at `rel` (relative to its root, not the root
    /// itself) is excluded, its parent folders being known not to be (a
    /// walk, which does not enter an excluded folder).
    pub fn excludes(&self, rel: &Path, is_dir: bool) -> bool {
        if self.is_empty() || rel.as_os_str().is_empty() {
            return false;
        }
        if self.scope.as_ref().is_some_and(|s| !s.keeps(rel, is_dir)) {
            return true;
        }
        !self.exclude.is_empty() && matches!(self.matcher.matched(rel, is_dir), Match::Ignore(_))
    }

    /// Whether `rel` or one of its parent folders is excluded: the same
    /// answer a walk gives, for a path met without walking (a DB row).
    pub fn excludes_path(&self, rel: &Path, is_dir: bool) -> bool {
        if self.is_empty() {
            return false;
        }
        // Any excluded parent will do, in whatever order (no allocation:
        // this runs once per DB row when the filters change).
        rel.ancestors().skip(1).any(|p| self.excludes(p, true)) || self.excludes(rel, is_dir)
    }

    /// A stable text of the patterns, to tell whether they changed since
    /// the DB's rows were last filtered.
    pub fn fingerprint(&self) -> String {
        match &self.scope {
            None => serde_json::json!({ "exclude": self.exclude, "include": self.include }),
            Some(s) => serde_json::json!({
                "exclude": self.exclude,
                "include": self.include,
                "scope": s.fingerprint(),
            }),
        }
        .to_string()
    }

    /// One line for `check` and the run's start: the patterns, or `none`.
    pub fn describe(list: &[String]) -> String {
        if list.is_empty() {
            "none".into()
        } else {
            list.iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// Whether a folder's name is a NAS or ZFS snapshot folder's.
pub fn is_snapshot_dir(name: &std::ffi::OsStr) -> bool {
    SNAPSHOT_DIRS.iter().any(|s| name == *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn filter(exclude: &[&str], include: &[&str]) -> Filter {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new(&v(exclude), &v(include)).unwrap()
    }

    #[test]
    fn nas_patterns() {
        let f = filter(
            &[
                ".snapshot/",
                "~snapshot/",
                "@eaDir/",
                "#recycle/",
                ".DS_Store",
                "*.tmp",
                "/scratch/",
            ],
            &[],
        );
        let x = |p: &str, dir| f.excludes(Path::new(p), dir);
        assert!(x(".snapshot", true) && x("a/b/.snapshot", true));
        assert!(!x(".snapshot", false), "folders only");
        assert!(x("~snapshot", true) && x("p/@eaDir", true) && x("#recycle", true));
        assert!(x(".DS_Store", false) && x("a/.DS_Store", false));
        assert!(x("a.tmp", false) && x("d/e/a.tmp", false) && !x("a.tmpx", false));
        assert!(x("scratch", true) && !x("a/scratch", true), "anchored");
        assert!(!x("a/b.txt", false));
        assert!(f.excludes_path(Path::new("a/.snapshot/hourly.0/x"), false));
        assert!(!f.excludes_path(Path::new("a/snapshot/x"), false));
    }

    #[test]
    fn raw_bytes_match() {
        let f = filter(&["*.tmp", "caf?.txt"], &[]);
        let p = |b: &[u8]| Path::new(OsStr::from_bytes(b)).to_path_buf();
        assert!(f.excludes(&p(b"d\xff/n\xfe\xff.tmp"), false));
        assert!(f.excludes(&p(b"caf\xe9.txt"), false));
        assert!(!f.excludes(&p(b"caf\xe9\xe9.txt"), false));
    }

    #[test]
    fn include_is_an_exception() {
        let f = filter(&["*.tmp", "/scratch/"], &["keep.tmp"]);
        assert!(!f.excludes(Path::new("a/keep.tmp"), false));
        assert!(f.excludes(Path::new("a/other.tmp"), false));
        // Nothing below an excluded folder comes back.
        assert!(f.excludes_path(Path::new("scratch/keep.tmp"), false));
        assert!(filter(&[], &["x"]).is_empty());
    }

    #[test]
    fn bad_patterns() {
        for p in ["", "  ", "[z-a]", "[abc", "a\\", "{a,b", "!x", "/"] {
            assert!(check(p).is_err(), "{p:?} must be refused");
        }
        for p in ["#recycle/", "a b ", "\\!x", "**/x", "a/**"] {
            assert!(check(p).is_ok(), "{p:?}: {:?}", check(p));
        }
        let e = Filter::new(&[], &["[z-a]".into()]).unwrap_err();
        assert_eq!((e.0, e.1.as_str()), ("include", "[z-a]"));
    }
}
