//! One integration-test binary: every module runs the real `jobrun` binary
//! on temporary trees.

mod env;

mod bwlimit;
mod core;
mod edges;
mod faults;
mod hostile;
mod manifest;
mod mirror;
mod progress;
mod race;
mod scan;
mod transfers;
