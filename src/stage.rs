//! The seam between the runner and the stages: one [`RunCtx`], built once
//! per run by the runner (or per `verify` by its command), which every
//! stage's entry point takes. A stage reads the job, writes its own rows and
//! audit lines, reports progress and watches the stop flag through it, and
//! nothing else: what a stage needs from the run lives here, once, instead
//! of in parameter lists that drift apart.
//!
//! A leaf: the stages import it, it imports no stage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::audit::AuditLog;
use crate::db::StateDb;
use crate::manifest::Job;
use crate::progress::Progress;
use crate::roots::RootId;
use crate::throttle::LiveLimit;

/// What every stage of one run shares.
pub struct RunCtx<'a> {
    /// The resolved manifest, immutable for the run.
    pub job: &'a Job,
    /// The state DB: a stage is its only writer while it runs.
    pub db: &'a mut StateDb,
    /// The audit log: each stage writes its own lines.
    pub audit: &'a mut AuditLog,
    /// The operator's counters (a cheap clone of shared atomics).
    pub progress: &'a Progress,
    /// Set by SIGINT/SIGTERM: every stage stops at its next safe point.
    pub stop: &'a AtomicBool,
    /// The bandwidth limit in force (a SIGHUP reload may replace it).
    pub limit: Arc<LiveLimit>,
    /// The source root as the run found it before its first stage: a
    /// stage refuses another folder in its place (a share unmounted in
    /// between). `None` where it could not be read (the stage refuses).
    pub source_at_start: Option<RootId>,
    /// `--dry-run`: report what would be copied and deleted; change
    /// nothing at the destination.
    pub dry_run: bool,
    /// Where user-facing lines go (mode, stage notes, dry-run listings).
    pub say: &'a dyn Fn(&str),
}

impl RunCtx<'_> {
    /// Whether a stop was requested.
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Prints one user-facing line.
    pub fn say(&self, line: &str) {
        (self.say)(line);
    }
}
