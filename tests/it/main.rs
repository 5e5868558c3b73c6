//! One integration-test binary: every module runs the real `jobrun` binary
//! on temporary trees.

mod env;

mod core;
mod manifest;
mod scan;
mod transfers;
