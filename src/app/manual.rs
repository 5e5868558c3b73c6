//! `jobrun generate-man DIR` and `jobrun completions SHELL` (both hidden,
//! for packagers and the install step): the manual pages and the shell
//! completions, made from the same clap definition as `--help`. Owns
//! `clap_mangen`, `roff` (the sections clap does not know: EXIT STATUS,
//! ENVIRONMENT, FILES, SEE ALSO) and `clap_complete`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use roff::{Roff, bold, italic, roman};

use super::Failure;
use crate::cli::{Cli, CompletionShell};
use crate::exit::Exit;

/// Exit codes of one page: `(code, meaning)`.
type Codes = &'static [(&'static str, &'static str)];

const RUN: Codes = &[
    ("0", "The run finished and no file failed."),
    (
        "1",
        "The run finished and some files failed; each is `failed` in the state DB and has a line in the audit log. The next scan retries them.",
    ),
    (
        "2",
        "Bad invocation or manifest, or a state DB that belongs to another job. Nothing was touched.",
    ),
    (
        "3",
        "Another run or verify of this job holds its lock (DB.lock). Nothing was touched; try later.",
    ),
    (
        "4",
        "Aborted by a fatal condition: source root missing, destination full or read-only, a root not on the filesystem it was on, state DB unusable, a mirror safety rail refused. The backlog is kept.",
    ),
    (
        "130",
        "Stopped by SIGINT or SIGTERM after a clean stop; the next run resumes.",
    ),
];
const CHECK: Codes = &[
    (
        "0",
        "The manifest is valid and a run would start; the settings and stage plan are printed.",
    ),
    (
        "2",
        "A run would refuse to start: bad manifest, overlapping roots, a source that is not a readable folder, a state DB of another job, owners = true when not root.",
    ),
    (
        "4",
        "A run would abort before touching anything: the state DB cannot be read, a root not on a network filesystem under require_mounts.",
    ),
];
const STATUS: Codes = &[
    ("0", "The state DB was read and its report printed."),
    (
        "2",
        "Bad manifest, no state DB yet (the job never ran), or a DB of another job.",
    ),
    ("4", "The state DB cannot be read."),
];
const HASHES: Codes = &[
    ("0", "Every synced file's hash was printed."),
    (
        "2",
        "Bad manifest, no state DB yet, a DB of another job, or --format coreutils for a job whose files were hashed with two algorithms.",
    ),
    ("4", "The state DB cannot be read."),
];
const VERIFY: Codes = &[
    ("0", "Every file checked matched."),
    (
        "1",
        "Some file mismatched, was missing or could not be read or compared, or nothing was compared at all.",
    ),
    (
        "2",
        "Bad invocation or manifest, no state DB yet, or a DB of another job.",
    ),
    ("3", "A run or verify of this job holds its lock."),
    (
        "4",
        "Aborted: destination root missing, not a folder, on another filesystem than the job recorded, or changed mid-verify; state DB or log unusable.",
    ),
    (
        "130",
        "Stopped by SIGINT or SIGTERM; the next verify resumes.",
    ),
];
const RELOAD: Codes = &[
    ("0", "The run holding the job's lock was sent SIGHUP."),
    (
        "2",
        "The edited manifest would be refused by the run; nothing was signalled.",
    ),
    ("3", "No run of this job is going."),
    ("4", "The run could not be signalled."),
];

const REOPEN: Codes = &[
    (
        "0",
        "The run or verify holding the job's lock was sent SIGUSR1; it reopens the audit log at its path before its next line.",
    ),
    ("2", "Bad manifest; nothing was signalled."),
    (
        "3",
        "No run of this job is going (the next run opens the log anew).",
    ),
    ("4", "The run could not be signalled."),
];

const REPORT: Codes = &[
    ("0", "The HTML file was written whole."),
    (
        "1",
        "The HTML file was written but is incomplete: the audit log is missing, could not be read to its end, or no longer holds the oldest runs (rotated away), so the rate and backlog charts are missing or partial (the page and stderr say so).",
    ),
    (
        "2",
        "Bad manifest, no state DB yet (the job never ran), or a DB of another job.",
    ),
    (
        "4",
        "The state DB cannot be read, or the HTML file cannot be written.",
    ),
];

/// The pages: (subcommand, or `None` for jobrun(1); its exit codes).
const PAGES: &[(Option<&str>, Codes)] = &[
    (None, RUN),
    (Some("check"), CHECK),
    (Some("status"), STATUS),
    (Some("verify"), VERIFY),
    (Some("hashes"), HASHES),
    (Some("report"), REPORT),
    (Some("reload"), RELOAD),
    (Some("reopen"), REOPEN),
];

/// Writes `jobrun.1` and `jobrun-COMMAND.1` for each command into `dir`
/// (created if missing) and names each file on stdout.
pub fn generate_man(dir: &Path) -> Result<Exit, Failure> {
    let fail = |e: std::io::Error| Failure::new(format!("`{}`: {e}", dir.display()), Exit::Fatal);
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    for (sub, codes) in PAGES {
        let cmd = match sub {
            None => top.clone(),
            Some(name) => top
                .find_subcommand(name)
                .cloned()
                .ok_or_else(|| Failure::new(format!("no command `{name}`"), Exit::Fatal))?,
        };
        let name = sub.map_or_else(|| "jobrun".to_string(), |s| format!("jobrun-{s}"));
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        render(cmd, &name, codes, sub.is_none(), &mut page).map_err(fail)?;
        std::fs::write(&path, page).map_err(fail)?;
        super::out(&format!("{}\n", path.display()));
    }
    Ok(Exit::Ok)
}

/// One page: clap's title, NAME, SYNOPSIS, DESCRIPTION, OPTIONS (and
/// COMMANDS on jobrun(1)), then ours, then VERSION.
fn render(
    cmd: clap::Command,
    name: &str,
    codes: Codes,
    top: bool,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    // The top page's after_help (exit codes, JOBRUN_*) is in our sections.
    let cmd = cmd
        .after_help(None::<&str>)
        .after_long_help(None::<&str>)
        .version(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name)
        .manual("jobrun manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if top {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::new();
    exit_status(&mut roff, codes);
    if top {
        environment(&mut roff);
    }
    files(&mut roff);
    see_also(&mut roff, name);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

fn exit_status(roff: &mut Roff, codes: Codes) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in codes {
        roff.control("TP", [])
            .text([bold(*code)])
            .text([roman(*meaning)]);
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    let vars: Codes = &[
        (
            "JOBRUN_<KEY>",
            "Sets a manifest key (JOBRUN_BWLIMIT=20M, JOBRUN_DELETE_EXTRAS=true). Precedence: flag > environment > manifest > default. A JOBRUN_* variable that is no key is named in a warning and ignored.",
        ),
        (
            "RUST_LOG",
            "Diagnostics filter on stderr, overriding -v (e.g. RUST_LOG=jobrun::transfer=debug).",
        ),
        (
            "TZ",
            "Time zone of a bwlimit timetable (else the system's).",
        ),
    ];
    for (var, meaning) in vars {
        roff.control("TP", [])
            .text([bold(*var)])
            .text([roman(*meaning)]);
    }
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    let files: Codes = &[
        (
            "JOB.toml",
            "The job manifest: source, destination and every key (see jobrun(1) OPTIONS; one flag per key).",
        ),
        (
            "STEM.db",
            "The state DB (SQLite; key db, default the manifest's stem with .db beside it), with its STEM.db-wal and STEM.db-shm. Keep it on a local disk.",
        ),
        (
            "STEM.db.lock",
            "The job's lock, held by the run or verify that is going; it holds that process's pid (reload signals it).",
        ),
        (
            "STEM.log",
            "The audit log (key log): one JSON object per line, appended.",
        ),
        (
            "/var/lib/jobrun/, /var/log/jobrun/",
            "Where the Debian package expects state DBs and audit logs; the systemd unit jobrun@NAME runs /etc/jobrun/NAME.toml.",
        ),
    ];
    for (file, meaning) in files {
        roff.control("TP", [])
            .text([italic(*file)])
            .text([roman(*meaning)]);
    }
}

fn see_also(roff: &mut Roff, name: &str) {
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = PAGES
        .iter()
        .map(|(sub, _)| sub.map_or_else(|| "jobrun".to_string(), |s| format!("jobrun-{s}")))
        .filter(|p| p != name)
        .map(|p| format!("{p}(1)"))
        .chain(["rsync(1)".to_string(), "rclone(1)".to_string()])
        .collect();
    roff.text([roman(pages.join(", "))]);
    roff.control("PP", []).text([roman(
        "The documentation pages in /usr/share/doc/jobrun/ (docs/ in the source tree).",
    )]);
}

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: CompletionShell) -> Result<Exit, Failure> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    // The same command without the hidden ones (clap_complete offers
    // every subcommand it is given).
    let full = Cli::command();
    let mut cmd = clap::Command::new("jobrun")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "jobrun", &mut script);
    super::out(&String::from_utf8_lossy(&script));
    Ok(Exit::Ok)
}
