//! Helpers every test module may use, one room each: `proc` (a started
//! `jobrun`, signals, one `wait_for`, root and another user), `db` (the
//! state DB's rows), `fs` (temporaries, FIFOs, tmpfs mounts, owners),
//! `kill` (the fault tests' trees, invariants and convergence).

mod db;
mod fs;
mod kill;
mod proc;

pub use db::*;
pub use fs::*;
pub use kill::*;
pub use proc::*;
