//! jobrun: migrate huge file trees between two mounted shares, resumably.
//!
//! Data flows one way: `main` → `cli` → `app` (one file per command; the
//! error is printed once, in `app::run`) → `manifest` (TOML + env + flags →
//! [`manifest::Job`]; every key defined once in [`manifest::keys`], whence
//! the flags' help, `check`'s lines and the docs test) → `runner` (lock, DB, run mode, stage plan, the run's
//! own audit lines and report) → the stages `scan` → `transfer` → `mirror`
//! (and `verify`, a command of its own). Stages never import each other:
//! they talk only through the state DB and use the leaves below.
//!
//! Stages, each a folder or file of its own:
//! - `scan/`: `walk` (one walk per tree on the walker below, what the scan
//!   leaves out), `merge` (the two walks paired, each pair decided and
//!   recorded), `mod` (the stage: roots, case probe, counts, vanished rows,
//!   the source's mount points);
//! - `transfer/`: per lane a `reader` and a `writer` built from one
//!   `LaneCtx`, the FIFO's `block`s, `holes` (`sparse`: where a source's
//!   holes are, which zero blocks are written as holes), `links`
//!   (`hard_links`: which names are linked to their group's copy),
//!   `writeback` pacing (its raw syscalls),
//!   the one `commit`ter with the durability barrier, `dest` path helpers,
//!   `failnote` (what stderr says of failures), `space` (one file at a time
//!   once the destination is full), `typechange` (entries that changed
//!   type, settled before the lanes start);
//! - `mirror/`: `mod` (the stage and its run-level rails), `listing` (the
//!   candidates: destination entries without a source row), `delete` (the
//!   pass that judges and deletes each, deepest first); `verify`: the
//!   destination read back against the recorded hashes (`read`), files
//!   adopted without a hash against their source (`adopted`), and what it
//!   says of each file (`lines`).
//!
//! The seam: `stage` ([`stage::RunCtx`], built once by the runner, or by
//! `verify`'s command, and taken by every stage's entry point: job, DB,
//! audit log, progress, stop flag, limit, the source root as found, dry
//! run); a leaf, since stages never import the runner.
//!
//! Leaves, each rule written once:
//! - `clock` (every "now"), `sys` (the only `unsafe`: the raw syscalls
//!   rustix does not wrap, each with its SAFETY line), `testhook` (pause
//!   points for tests, debug builds only);
//! - `walk/` (the one walker for every tree listing: folder descriptors,
//!   filters before a folder is entered, NFS silly names left out, folders
//!   listed ahead, nested mount points), `relpath` (a path below its root);
//! - `db/` (the only SQL): `schema`, `compact` (v12: rows stored in
//!   `entries` below their roots, the view `files`), `keyed` (v13: rows
//!   keyed by folder and name, times as differences, rare columns apart;
//!   the view `files` on them), `meta` (every meta
//!   key), `roots` (and `rebase`'s sample), `files` (`RowStatus`, `RowId`),
//!   `lookup` (the scan's row lookup), `links` (hard-link groups found
//!   among the rows),
//!   `hashed` (recorded hashes as `verify`/`hashes` read them), `listing`,
//!   `mounts`, `runs`,
//!   `verifies`, `in_flight`; writes that belong in a batch take a
//!   [`db::Tx`];
//! - `roots` (root identity, the filesystem a root is on, overlap, the
//!   delete guard),
//!   `beneath` (every path below a root, never through a symlink; the one
//!   nanosecond conversion; `turn`: one inode open at a time for every
//!   reader), `fsmeta` (temporaries' names, NFS silly
//!   names, lstat → row), `merge` (the merge of two sorted listings, used by
//!   the scan and by the mirror's listing), `filter` (`exclude`/`include`,
//!   and a shard's part of the tree as a scope);
//! - `shard/` (one job as N runs: `pack` the pure bin-packing of subtrees,
//!   `file` the plan beside the manifest, `sizes` from the last scan or a
//!   walk, and in `mod` a shard's job: its state files, limit and scope);
//! - `decide` (pure decisions: skip rule, run mode, mount check, mirror
//!   rails and verdicts, type changes, racy reads), `modes` (permission bits and owners), `xattrs`
//!   (extended attributes and ACLs: the group bits an ACL allows, what is
//!   copied or left out, ACL models), `checksum`,
//!   `throttle` and `timetable` (`bwlimit`), `polite` (`bwlimit = "auto"`:
//!   the delay-based controller, pure), `units`, `exit` (exit codes),
//!   `lock`, `audit` (the JSON Lines log), `sumfile` (coreutils lines);
//! - what the operator sees: `progress/` (private counters and one slot per
//!   lane; `render` pure, `reporter` the thread, `term` the terminal),
//!   `retune` (SIGHUP reloads of `bwlimit`), `metrics` (Prometheus
//!   textfile).

pub mod app;
pub mod audit;
pub mod beneath;
pub mod checksum;
pub mod cli;
pub mod clock;
pub mod db;
pub mod decide;
pub mod exit;
pub mod filter;
pub mod fsmeta;
pub mod lock;
pub mod manifest;
pub mod merge;
pub mod metrics;
pub mod mirror;
pub mod modes;
pub mod polite;
pub mod progress;
pub mod relpath;
pub mod retune;
pub mod roots;
pub mod runner;
pub mod scan;
pub mod shard;
pub mod stage;
pub mod sumfile;
pub mod sys;
pub mod testhook;
pub mod throttle;
pub mod timetable;
pub mod transfer;
pub mod units;
pub mod verify;
pub mod walk;
pub mod xattrs;
