//! Folder listings fetched ahead of the walk: a few threads per tree list
//! the folders the walk will enter next, so that the round trips of a
//! network share (open, list, stat each entry) overlap instead of adding
//! up, folder after folder. The walk itself still yields entries one
//! folder at a time, in merge order; only where the listings come from
//! changes.
//!
//! A listing is a folder's children sorted by name, each stat'ed from the
//! listing's descriptor, and, for each sub-folder the filter keeps, a
//! [`Slot`] its own listing will be put in. Slots wait in a queue ordered
//! by their place in the walk (pre-order), so the listers always take
//! the folder the depth-first walk needs soonest, however the folders
//! listed at once finish: five sibling folders listed together must not
//! have the last one's sub-folders listed before the first one's. How far
//! ahead they may run is bounded ([`AHEAD_DIRS`], [`AHEAD_ENTRIES`]), so
//! memory stays flat whatever the tree's width.
//!
//! The walk never waits on a listing no lister has started: it takes such
//! a slot and lists the folder itself. So a walk cannot stall on the bound,
//! and with no listers at all it is the plain serial walk.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::mounts::{Gone, Recorded};
use crate::beneath::Dir;
use crate::decide;
use crate::filter::Filter;
use crate::relpath::relative;

/// Listing threads per tree: what rclone's default of 8 checkers lists at
/// once.
pub const LISTERS: usize = 8;
/// Folders listed (or being listed) ahead of the walk, at most.
const AHEAD_DIRS: usize = 64;
/// Entries held in listings ahead of the walk, at most (one folder of more
/// is still listed when nothing else is ahead).
const AHEAD_ENTRIES: usize = 100_000;

/// One child of a listed folder.
pub(super) struct Child {
    pub(super) name: OsString,
    /// `lstat` of the entry, from its folder's descriptor, taken with the
    /// listing: a folder's too, before it is listed itself (on NFS its
    /// attributes came with its parent's listing: no round trip). Listing a
    /// folder may then raise its atime; the merge does not take a folder's
    /// atime alone for a change (see `merge::same_row`).
    pub(super) meta: io::Result<std::fs::Metadata>,
    /// Left out by the filter (counted by the walk; a folder not entered).
    pub(super) excluded: bool,
    /// A folder the walk enters: where its listing comes.
    pub(super) sub: Option<Arc<Slot>>,
    /// A folder on another device than the folder it is in: a mount point
    /// (from the two `lstat`s the walk has anyway; a bind mount of the
    /// same filesystem is not seen).
    pub(super) mount: bool,
    /// A folder recorded as a mount point (`Some`: whether it held
    /// entries then) by the last scan of this tree.
    pub(super) was_mount: Option<bool>,
    /// A recorded mount point that is one no longer: not entered.
    pub(super) gone: Option<Gone>,
}

/// A listed folder: its descriptor and its children sorted by name.
pub(super) struct Listing {
    pub(super) dir: Arc<Dir>,
    pub(super) children: Vec<Child>,
}

/// Where one folder's listing comes: waiting for a lister, being listed,
/// or listed.
pub(super) struct Slot {
    /// The folder's place in the walk: listers take the earliest first.
    place: Place,
    state: Mutex<State>,
    done: Condvar,
}

enum State {
    /// Not started: the folder `name` in `parent`, at `path`.
    Waiting {
        parent: Arc<Dir>,
        name: OsString,
        path: PathBuf,
        /// The folder's device, as its parent's listing found it.
        dev: u64,
    },
    /// Being listed; `true` once the walk waits for it (then, and only
    /// then, the lister wakes it: every wake is a system call).
    Listing(bool),
    Listed(io::Result<Listing>),
    /// Taken by the walk.
    Taken,
}

/// A folder's place in the walk: the index of each folder on the way to
/// it among its siblings, from the root (`[]`). Pre-order is the
/// lexicographic order of places.
pub(super) type Place = Arc<[u32]>;

/// A slot in the queue, ordered by its folder's place in the walk.
struct Queued(Arc<Slot>);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.0.place == other.0.place
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.place.cmp(&other.0.place)
    }
}

/// What the listers of one tree share.
pub(super) struct Listers {
    /// The tree's root: the filter sees paths relative to it.
    base: PathBuf,
    filter: Filter,
    /// Siblings sorted by folded name (a case-insensitive destination).
    fold: bool,
    /// The mount points the last scan recorded in this tree.
    mounts: Recorded,
    /// Listing threads at most (0: the walk lists every folder itself).
    max_threads: usize,
    queue: Mutex<Queue>,
    /// A slot was pushed, room ahead was freed, or the walk ended.
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Slots not taken yet, the one the walk needs soonest first (some
    /// may have been taken by the walk meanwhile: skipped).
    queue: BinaryHeap<Reverse<Queued>>,
    /// Listings started by a lister and not yet taken by the walk, and the
    /// entries of those done.
    ahead_dirs: usize,
    ahead_entries: usize,
    threads: usize,
    /// Listers asleep, waiting for a slot or for room: each new slot or
    /// freed room wakes one of them, not all (no thundering herd).
    idle: usize,
    /// The walk is over: listers leave.
    closed: bool,
}

impl Queue {
    fn room(&self) -> bool {
        self.ahead_dirs < AHEAD_DIRS && self.ahead_entries < AHEAD_ENTRIES
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Listers {
    pub(super) fn new(
        base: &Path,
        filter: &Filter,
        fold: bool,
        mounts: Recorded,
        max_threads: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            base: base.to_path_buf(),
            filter: filter.clone(),
            fold,
            mounts,
            max_threads,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        })
    }

    /// Ends the listers (the walk is done or dropped); listings under way
    /// finish and are dropped.
    pub(super) fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake.notify_all();
    }

    /// Lists the folder `dir` at `path` on device `dev`, at `place` in the
    /// walk; its sub-folders' slots go in the queue for the listers.
    pub(super) fn list(
        self: &Arc<Self>,
        dir: Dir,
        path: &Path,
        place: &[u32],
        dev: u64,
    ) -> io::Result<Listing> {
        let mut children = dir
            .read_dir(path)?
            .map(|e| {
                let e = e?;
                Ok(Child {
                    name: e.file_name(),
                    meta: e.metadata(),
                    excluded: false,
                    sub: None,
                    mount: false,
                    was_mount: None,
                    gone: None,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        if self.fold {
            use std::os::unix::ffi::OsStrExt;
            children.sort_unstable_by(|a, b| {
                decide::cmp_names_folded(a.name.as_bytes(), b.name.as_bytes())
            });
        } else {
            children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        }
        let dir = Arc::new(dir);
        let rel = relative(path, &self.base).expect("the walk lists folders below its root");
        // One lookup per folder, and one per sub-folder only in the folders
        // that held a recorded mount point.
        let watched = self.mounts.holds_any(rel);
        let mut subs = Vec::new();
        for (i, c) in (0u32..).zip(children.iter_mut()) {
            let dir_dev = c.meta.as_ref().ok().filter(|m| m.is_dir()).map(|m| m.dev());
            c.excluded = !self.filter.is_empty()
                && self.filter.excludes(&rel.join(&c.name), dir_dev.is_some());
            let Some(child_dev) = dir_dev.filter(|_| !c.excluded) else {
                continue;
            };
            c.mount = child_dev != dev;
            if watched {
                c.was_mount = self.mounts.held_entries(&rel.join(&c.name));
                if c.was_mount.is_some() && !c.mount {
                    // Not entered: what is there now is the folder the
                    // mount covered, not the tree the rows describe.
                    c.gone = Some(Gone::NotAMount);
                    continue;
                }
            }
            let slot = Arc::new(Slot {
                place: place.iter().copied().chain([i]).collect(),
                state: Mutex::new(State::Waiting {
                    parent: dir.clone(),
                    name: c.name.clone(),
                    path: path.join(&c.name),
                    dev: child_dev,
                }),
                done: Condvar::new(),
            });
            c.sub = Some(slot.clone());
            subs.push(Reverse(Queued(slot)));
        }
        self.push(subs);
        Ok(Listing { dir, children })
    }

    fn push(self: &Arc<Self>, slots: Vec<Reverse<Queued>>) {
        let pushed = slots.len();
        let mut q = lock(&self.queue);
        q.queue.extend(slots);
        if pushed == 0 || q.closed {
            return;
        }
        // Idle listers take what they can; new ones (up to the most) take
        // the rest: a folder of many sub-folders has them listed at once.
        // Without room ahead, the idle stay asleep and the new ones wait
        // with them until the walk takes a listing.
        let idle_can_take = pushed.min(q.idle);
        let wake = if q.room() { idle_can_take } else { 0 };
        let spawn = (pushed - idle_can_take).min(self.max_threads - q.threads);
        for _ in 0..spawn {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("jobrun-list".into())
                .spawn(move || me.lister());
            if spawned.is_err() {
                // No thread: the walk lists these folders itself.
                break;
            }
            q.threads += 1;
        }
        drop(q);
        for _ in 0..wake {
            self.wake.notify_one();
        }
    }

    /// One listing thread: lists the slot needed soonest while there
    /// is room ahead of the walk.
    fn lister(self: Arc<Self>) {
        loop {
            let slot = {
                let mut q = lock(&self.queue);
                loop {
                    if q.closed {
                        return;
                    }
                    if q.room()
                        && let Some(Reverse(Queued(s))) = q.queue.pop()
                    {
                        break s;
                    }
                    q.idle += 1;
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.idle -= 1;
                }
            };
            let (parent, name, path, dev) = {
                let mut st = lock(&slot.state);
                match std::mem::replace(&mut *st, State::Listing(false)) {
                    State::Waiting {
                        parent,
                        name,
                        path,
                        dev,
                    } => (parent, name, path, dev),
                    other => {
                        // Taken by the walk meanwhile.
                        *st = other;
                        continue;
                    }
                }
            };
            lock(&self.queue).ahead_dirs += 1;
            let listed = parent
                .sub(&name)
                .and_then(|d| self.list(d, &path, &slot.place, dev));
            if let Ok(l) = &listed {
                lock(&self.queue).ahead_entries += l.children.len();
            }
            let was = std::mem::replace(&mut *lock(&slot.state), State::Listed(listed));
            if matches!(was, State::Listing(true)) {
                slot.done.notify_one();
            }
        }
    }

    /// The listing of `slot`'s folder: waited for if a lister is on it,
    /// listed here if none started it.
    pub(super) fn take(self: &Arc<Self>, slot: &Slot) -> io::Result<Listing> {
        let mut st = lock(&slot.state);
        loop {
            match std::mem::replace(&mut *st, State::Taken) {
                State::Waiting {
                    parent,
                    name,
                    path,
                    dev,
                } => {
                    drop(st);
                    return parent
                        .sub(&name)
                        .and_then(|d| self.list(d, &path, &slot.place, dev));
                }
                State::Listing(_) => {
                    *st = State::Listing(true);
                    st = slot.done.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                State::Listed(listed) => {
                    drop(st);
                    let mut q = lock(&self.queue);
                    q.ahead_dirs -= 1;
                    if let Ok(l) = &listed {
                        q.ahead_entries -= l.children.len();
                    }
                    let wake = q.idle > 0 && !q.queue.is_empty() && q.room();
                    drop(q);
                    if wake {
                        self.wake.notify_one();
                    }
                    return listed;
                }
                State::Taken => unreachable!("a folder's listing is taken once"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beneath::Root;

    impl Listers {
        /// The folders waiting for a lister, in the order listers take
        /// them (drains the queue).
        fn drain_waiting(&self) -> Vec<PathBuf> {
            let mut q = lock(&self.queue);
            std::iter::from_fn(|| q.queue.pop())
                .filter_map(|Reverse(Queued(slot))| match &*lock(&slot.state) {
                    State::Waiting { path, .. } => Some(path.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    /// Folders listed at once finish in any order; the listers still take
    /// the sub-folders in walk order: `a`'s before `b`'s even when `b`'s
    /// listing came last (a stack would have put `b/b1` first).
    #[test]
    fn listers_take_folders_in_walk_order_whatever_order_listings_finish() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for d in ["a/a1", "a/a2", "b/b1", "b/b2", "c"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let listers = Listers::new(&root, &Filter::default(), false, Recorded::default(), 0);
        let top = Root::open(&root)
            .and_then(|r| r.dir(Path::new("")))
            .unwrap();
        let dev = std::fs::metadata(&root).unwrap().dev();
        let listing = listers.list(top, &root, &[], dev).unwrap();
        let slot = |name: &str| {
            let c = listing.children.iter().find(|c| c.name == name).unwrap();
            c.sub.clone().unwrap()
        };
        // `a` is listed first, then `b`: `b`'s sub-folders are queued last.
        listers.take(&slot("a")).unwrap();
        listers.take(&slot("b")).unwrap();
        let order: Vec<_> = listers
            .drain_waiting()
            .into_iter()
            .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        let want: Vec<PathBuf> = ["a/a1", "a/a2", "b/b1", "b/b2", "c"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(order, want);
    }
}
