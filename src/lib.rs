//! jobrun: migrate huge file trees between two mounted shares, resumably.
//!
//! Data flows one way:
//! `cli` → `manifest` (TOML + env + flags → [`manifest::Job`]) → `runner`
//! (lock, DB, run mode, stage plan) → stages `scan` → `transfer` (→ `mirror`),
//! which talk to each other only through the state DB (`db`) and write the
//! audit log (`audit`). Pure decisions live in `decide`; hashing in
//! `checksum`; bandwidth in `throttle`; what the operator sees in `progress`.
//! Every path below a root is opened, created, renamed, timed and deleted
//! through `beneath`, never through a symlink.

pub mod app;
pub mod audit;
pub mod beneath;
pub mod checksum;
pub mod cli;
pub mod db;
pub mod decide;
pub mod exit;
pub mod lock;
pub mod manifest;
pub mod mirror;
pub mod modes;
pub mod progress;
pub mod roots;
pub mod runner;
pub mod scan;
pub mod throttle;
pub mod transfer;
pub mod units;
