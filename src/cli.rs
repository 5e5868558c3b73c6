//! Command line (SPEC §1). Parsed by clap into plain values; nothing here
//! touches the filesystem. Every manifest key has a flag in [`Overrides`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::manifest::keys;

/// Migrate a huge file tree between two mounted shares: scan into SQLite,
/// stream through a bounded FIFO with on-the-fly hashing, resume after any kill.
#[derive(Debug, Parser)]
#[command(
    name = "jobrun",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 ok, 1 some files failed, 2 bad invocation or manifest, \
                  3 job locked by another run, 4 fatal (run aborted, backlog kept), 130 interrupted.\n\
                  Every manifest key can also be set as JOBRUN_<KEY> (e.g. JOBRUN_BWLIMIT=20M).\n\
                  Precedence: flag > environment > manifest > default."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the manifest, print the resolved settings and the stage plan; touch nothing.
    Check(JsonArgs),
    /// Read the state DB only: files and bytes per status.
    Status(StatusArgs),
    /// Apply an edit of `bwlimit` to the running job: send SIGHUP to the run holding its lock (exit 3 if none runs).
    Reload(JsonArgs),
    /// Make the running job reopen its audit log at its path (after logrotate moved it): send SIGUSR1 to the run or verify holding its lock (exit 3 if none runs).
    Reopen(JsonArgs),
    /// Re-read the destination and compare every synced file with the size and hash recorded when it was read from the source (a file adopted without a hash: with its source, byte for byte).
    Verify(VerifyArgs),
    /// Print the recorded hash of every synced file (coreutils `*sum -c`, BSD tag or JSON Lines format).
    Hashes(HashesArgs),
    /// Write one self-contained HTML report of the job (runs, rates against the limit, backlog, failures, last verify, what is kept) from its state DB and audit log.
    Report(ReportArgs),
    /// Split the source into N shards of whole subtrees (near-equal bytes and entries) and write `<stem>.plan.toml` beside the manifest; each shard then runs as `jobrun --shard K`.
    Plan(PlanArgs),
    /// The mirror stage alone, over the whole destination, once every shard of a sharded job finished (exit 4 naming the shards that did not).
    Mirror(MirrorArgs),
    /// After `source` or `destination` was edited (a share mounted elsewhere): check that the new roots hold the recorded tree (a sample of synced entries' kinds, sizes and mtimes, and the recorded filesystem), then point the state DB at them, keeping every row, hash and run (exit 2 with the first mismatches).
    Rebase(RebaseArgs),
    /// Write the manual pages (jobrun.1, jobrun-COMMAND.1) into DIR (for packagers).
    #[command(name = "generate-man", hide = true)]
    GenerateMan {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on stdout (bash, zsh, fish).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: CompletionShell,
    },
}

/// `jobrun completions SHELL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to write the HTML file (replaced whole).
    #[arg(long, value_name = "FILE")]
    pub html: camino::Utf8PathBuf,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The job manifest (TOML).
    #[arg(value_name = "JOB.toml")]
    pub job: PathBuf,
    /// How many shards.
    #[arg(long, value_name = "N")]
    pub shards: usize,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// The job manifest (TOML).
    #[arg(value_name = "JOB.toml")]
    pub job: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Only print what would be deleted; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print only errors and the final summary.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Re-verify only files not found intact within this time (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Verify a random sample of this percentage of the files (e.g. 5, 0.5); the seed is printed.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub sample: Option<f64>,
    /// Seed of the sample, to repeat an earlier one (with --sample).
    #[arg(long, value_name = "N", requires = "sample")]
    pub seed: Option<u64>,
    /// Put mismatched and missing files back to `pending`, so the next run copies them again.
    #[arg(long)]
    pub repair: bool,
    /// Print only errors and the final summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the verify's summary and the files that did not verify as one JSON object on stdout (fields: docs/verify-and-hashes.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HashesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = HashFormat::Coreutils)]
    pub format: HashFormat,
    /// Root the printed paths are relative to.
    #[arg(long, value_enum, value_name = "ROOT", default_value_t = RelativeTo::Destination)]
    pub relative_to: RelativeTo,
}

/// `jobrun hashes --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HashFormat {
    /// `<hex>  <path>`, as sha256sum, md5sum, sha1sum, b2sum write and `-c` reads.
    Coreutils,
    /// `SHA256 (path) = <hex>`, as `--tag` writes (one algorithm per line).
    Bsd,
    /// One JSON object per file.
    Json,
}

/// `jobrun hashes --relative-to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelativeTo {
    Destination,
    Source,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration `{s}` ({e}); expected e.g. `7d`, `12h`, `30m`"))
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("invalid percentage `{s}`; expected e.g. `5` or `0.5`"))?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!("percentage `{s}` must be above 0 and at most 100"))
    }
}

/// Arguments of a run (the default command).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job manifest (TOML).
    #[arg(value_name = "JOB.toml", required = true)]
    pub job: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Force a full scan even when the DB holds a backlog.
    #[arg(long)]
    pub rescan: bool,
    /// Scan (or resume), then only print what would be copied and deleted; copy and delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print only errors and the final summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the run's summary as one JSON object on stdout instead of its line (fields: docs/running.md).
    #[arg(long)]
    pub json: bool,
    /// Run shard K of the job's plan (`jobrun plan`), or `auto`: K from SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or OMPI_COMM_WORLD_RANK.
    #[arg(long, value_name = "K|auto")]
    pub shard: Option<String>,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The job manifest (TOML).
    #[arg(value_name = "JOB.toml")]
    pub job: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Shard K of the job's plan (its DB, log, lock and limit), or `auto` (see the run's `--shard`).
    #[arg(long, value_name = "K|auto")]
    pub shard: Option<String>,
}

/// `jobrun rebase`.
#[derive(Debug, Args)]
pub struct RebaseArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How many synced entries to check at the new roots, spread over the rows.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub sample: usize,
}

/// A command's job and `--json`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print one JSON object on stdout instead of text (fields: docs/running.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// One flag per manifest key, its help from the key table
/// ([`keys::TABLE`]). Serialized into the top figment layer, so a flag that
/// is not given must serialize to nothing (never to a null that would wipe
/// the manifest's value).
#[derive(Debug, Default, Clone, Args, Serialize)]
pub struct Overrides {
    #[arg(long, value_name = "PATH", help = keys::help("source"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[arg(long, value_name = "PATH", help = keys::help("destination"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[arg(long, value_name = "PATH", help = keys::help("db"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[arg(long, value_name = "PATH", help = keys::help("log"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[arg(long, value_name = "ALGO", help = keys::help("checksum"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[arg(long, value_name = "SIZE", help = keys::help("block_size"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<String>,
    #[arg(long, value_name = "N", help = keys::help("queue_capacity"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<u64>,
    #[arg(long, value_name = "N", help = keys::help("transfers"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfers: Option<u64>,
    #[arg(long, value_name = "RATE", help = keys::help("bwlimit"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<String>,
    #[arg(long, value_name = "DURATION", help = keys::help("polite_target"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polite_target: Option<String>,
    #[arg(long, value_name = "RATE", help = keys::help("shard_bwlimit"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_bwlimit: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("delete_extras"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_extras: Option<bool>,
    #[arg(long, value_name = "N|PCT%|off", help = keys::help("max_delete"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("inplace"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inplace: Option<bool>,
    #[arg(long, value_name = "DURATION", help = keys::help("modify_window"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modify_window: Option<String>,
    #[arg(long, value_name = "POLICY", help = keys::help("symlinks"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlinks: Option<String>,
    #[arg(long, value_name = "MODE", help = keys::help("permissions"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("owners"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners: Option<bool>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("xattrs"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<bool>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("acls"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acls: Option<bool>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("require_mounts"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_mounts: Option<bool>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("sparse"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse: Option<bool>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help = keys::help("hard_links"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_links: Option<bool>,
    #[arg(long, value_name = "DURATION", help = keys::help("progress_interval"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_interval: Option<String>,
    #[arg(long, value_name = "PATH", help = keys::help("metrics_file"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<String>,
    #[arg(long, value_name = "PATTERN", help = keys::help("exclude"))]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[arg(long, value_name = "PATTERN", help = keys::help("include"))]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
}

impl Overrides {
    /// The flag that sets `key`, if it was given (used to name it in errors
    /// and to resolve relative paths against the working directory).
    pub fn given(&self, key: &str) -> bool {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get(key).cloned())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_command() {
        let cli =
            Cli::try_parse_from(["jobrun", "x.toml", "--rescan", "--bwlimit", "20M"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.run.rescan);
        assert_eq!(cli.run.overrides.bwlimit.as_deref(), Some("20M"));
        assert!(cli.run.overrides.given("bwlimit"));
        assert!(!cli.run.overrides.given("source"));
    }

    #[test]
    fn bool_flags_do_not_swallow_the_manifest() {
        let cli = Cli::try_parse_from(["jobrun", "--delete-extras", "x.toml"]).unwrap();
        assert_eq!(cli.run.overrides.delete_extras, Some(true));
        assert_eq!(cli.run.job.as_deref(), Some(std::path::Path::new("x.toml")));
        let cli = Cli::try_parse_from(["jobrun", "--delete-extras=false", "x.toml"]).unwrap();
        assert_eq!(cli.run.overrides.delete_extras, Some(false));
    }

    #[test]
    fn check_takes_overrides() {
        let cli = Cli::try_parse_from(["jobrun", "check", "x.toml", "--delete-extras"]).unwrap();
        match cli.command {
            Some(Command::Check(c)) => assert_eq!(c.common.overrides.delete_extras, Some(true)),
            other => panic!("{other:?}"),
        }
    }
}
