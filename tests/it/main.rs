//! One integration-test binary: every module runs the real `jobrun` binary
//! on temporary trees.

mod env;
mod support;

mod acl;
mod adopted;
mod attack;
mod audit;
mod bwlimit;
mod converge;
mod core;
mod dates;
mod deploy;
mod edges;
mod faults;
mod filters;
mod hostile;
mod json;
mod manifest;
mod manual;
mod metrics;
mod mirror;
mod modes;
mod mounts;
mod progress;
mod race;
mod racy;
mod rebase;
mod refuse;
mod report;
mod retune;
mod roots;
mod rotate;
mod scan;
mod shards;
mod slurm;
mod stateguard;
mod systemd;
mod transfers;
mod tree;
mod verify;
