//! jobrun: migrate huge file trees between two mounted shares, resumably.
//!
//! Data flows one way:
//! `cli` → `manifest` (TOML + env + flags → [`manifest::Job`]) → `runner`
//! (lock, DB, run mode, stage plan) → stages `scan` → `transfer` (→ `mirror`),
//! which talk to each other only through the state DB (`db`) and write the
//! audit log (`audit`). The scan pairs its two walks, and the mirror its
//! listing with the rows, through one merge of sorted listings (`merge`);
//! `exclude`/`include` are matched in `filter`. Pure decisions live in `decide`; hashing in
//! `checksum`; bandwidth in `throttle` (the `bwlimit` value and its weekly
//! timetable in `timetable`); what the operator sees in `progress`; beside a
//! run, SIGHUP reloads of `bwlimit` in `retune` and the Prometheus textfile
//! in `metrics`. Every path below a root is opened, created, renamed, timed
//! and deleted through `beneath`, never through a symlink; the roots
//! themselves are resolved and compared in `roots`.

pub mod app;
pub mod audit;
pub mod beneath;
pub mod checksum;
pub mod cli;
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
pub mod progress;
pub mod retune;
pub mod roots;
pub mod runner;
pub mod scan;
pub mod sumfile;
pub mod throttle;
pub mod timetable;
pub mod transfer;
pub mod units;
pub mod verify;
