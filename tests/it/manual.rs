//! The manual pages (`jobrun generate-man DIR`) and the shell completions
//! (`jobrun completions SHELL`) come from the CLI itself: every command has
//! a page that `man` renders with EXIT STATUS and FILES, and bash
//! completion offers the commands.

use std::path::Path;
use std::process::Command;

use crate::env::BIN;

const COMMANDS: [&str; 7] = [
    "check", "status", "verify", "hashes", "report", "reload", "reopen",
];

fn generate(dir: &Path) -> Vec<String> {
    let out = Command::new(BIN)
        .arg("generate-man")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate-man: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn generate_man_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut want: Vec<String> = COMMANDS
        .iter()
        .map(|c| format!("jobrun-{c}.1"))
        .chain(["jobrun.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(generate(dir.path()), want);
    for page in &want {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            "EXIT STATUS",
            ".SH FILES",
        ] {
            assert!(text.contains(section), "{page} lacks {section}");
        }
    }
}

/// `man -l` renders each page without a warning, and the text has its
/// sections and its exit codes.
#[test]
#[ignore = "needs man (Debian's man-db)"]
fn man_renders_every_page() {
    let dir = tempfile::tempdir().unwrap();
    for page in generate(dir.path()) {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.path().join(&page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap_or_else(|e| panic!("man not found ({e}); apt-get install man-db"));
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {page}: {err}");
        assert!(err.trim().is_empty(), "man -l {page} warns: {err}");
        for section in [
            "NAME",
            "SYNOPSIS",
            "OPTIONS",
            "EXIT STATUS",
            "FILES",
            "SEE ALSO",
        ] {
            assert!(
                text.lines().any(|l| l == section),
                "{page} renders without {section}:\n{text}"
            );
        }
        assert!(
            text.contains("STEM.db.lock"),
            "{page}: FILES names the lock"
        );
    }
    let top = Command::new("man")
        .args(["-l"])
        .arg(dir.path().join("jobrun.1"))
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    for c in COMMANDS {
        assert!(
            text.contains(&format!("jobrun-{c}(1)")),
            "jobrun(1) names {c}"
        );
    }
    for code in ["0", "1", "2", "3", "4", "130"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "jobrun(1) EXIT STATUS has {code}:\n{text}"
        );
    }
}

fn completion_script(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "completions {shell}");
    String::from_utf8(out.stdout).unwrap()
}

/// Sources the bash script and asks it what follows `jobrun ` and
/// `jobrun verify --`, as bash's programmable completion would.
fn bash_complete(script: &Path, words: &str) -> Vec<String> {
    let cmd = format!(
        "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
         _jobrun jobrun \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_lists_the_commands_and_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("jobrun.bash");
    std::fs::write(&script, completion_script("bash")).unwrap();
    let first = bash_complete(&script, "jobrun ''");
    for c in COMMANDS {
        assert!(
            first.iter().any(|w| w == c),
            "`jobrun <TAB>` offers {c}: {first:?}"
        );
    }
    for hidden in ["generate-man", "completions"] {
        assert!(
            !first.iter().any(|w| w == hidden),
            "{hidden} is not offered"
        );
    }
    let verify = bash_complete(&script, "jobrun verify --");
    for flag in ["--since", "--sample", "--repair", "--bwlimit"] {
        assert!(
            verify.iter().any(|w| w == flag),
            "`jobrun verify --<TAB>` offers {flag}: {verify:?}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_name_the_commands() {
    for shell in ["zsh", "fish"] {
        let script = completion_script(shell);
        for c in COMMANDS {
            assert!(script.contains(c), "{shell} completion names {c}");
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
