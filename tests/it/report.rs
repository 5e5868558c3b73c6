//! `jobrun report JOB.toml --html FILE`: one self-contained page built from
//! the state DB and the audit log; every section there, the figures the
//! DB's, nothing fetched from elsewhere, and a page a browser draws.

use std::path::{Path, PathBuf};

use scraper::{Html, Selector};

use crate::env::TestEnv;
use crate::support::{all_rows, chown_tree, require_setpriv, run_as_nobody};

const SECTIONS: [&str; 8] = [
    "job", "totals", "runs", "rate", "backlog", "failures", "verify", "fidelity",
];

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn report(env: &TestEnv) -> (crate::env::Out, PathBuf) {
    let page = env.root().join("report.html");
    let out = env.run(&["report", "--html", page.to_str().unwrap()]);
    (out, page)
}

fn page(path: &Path) -> (String, Html) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = Html::parse_document(&text);
    (text, doc)
}

/// The text of `section`'s table cells, row by row.
fn table(doc: &Html, section: &str) -> Vec<Vec<String>> {
    doc.select(&sel(&format!("section#{section} table tr")))
        .map(|tr| {
            tr.select(&sel("td"))
                .map(|td| td.text().collect::<String>())
                .collect()
        })
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

/// Nothing in the page loads from elsewhere or runs.
#[track_caller]
fn assert_self_contained(text: &str, doc: &Html) {
    assert!(doc.select(&sel("script")).next().is_none(), "a script");
    if let Some(el) = doc.select(&sel("[src], [href]")).next() {
        panic!("refers elsewhere: {:?}", el.value());
    }
    assert!(!text.contains("url("), "a CSS url");
}

#[test]
fn a_report_holds_every_section_with_the_dbs_figures() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.src_file(&format!("d/f{i:02}"), &vec![b'x'; 1000 * (i + 1)]);
    }
    env.src_file("odd <b>&'name\".txt", b"markup in a name");
    env.manifest("bwlimit = \"50M\"");
    env.run(&[]).assert_code(0);
    env.src_file("later.txt", b"a second run copies this");
    env.run(&[]).assert_code(0);

    let (out, path) = report(&env);
    out.assert_code(0);
    assert!(out.stdout.contains("report written to"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2 runs, 0 failed files"),
        "{}",
        out.stdout
    );
    let (text, doc) = page(&path);
    assert_self_contained(&text, &doc);
    for id in SECTIONS {
        assert!(
            doc.select(&sel(&format!("section#{id} h2")))
                .next()
                .is_some(),
            "no section {id}"
        );
    }
    // Entries per status: the DB's counts, row for row.
    let mut counts = std::collections::BTreeMap::new();
    for r in all_rows(&env) {
        *counts.entry(r.status).or_insert(0usize) += 1;
    }
    let totals = table(&doc, "totals");
    assert_eq!(totals.len(), 3, "{totals:?}");
    for row in &totals {
        let want = counts.get(&row[0]).copied().unwrap_or(0);
        assert_eq!(
            row[1].parse::<usize>().unwrap(),
            want,
            "{row:?} vs {counts:?}"
        );
    }
    assert_eq!(counts["synced"], 24, "{counts:?}");
    // Every run, newest first, with its exit.
    let runs = table(&doc, "runs");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0][0].as_str(), runs[1][0].as_str()), ("2", "1"));
    assert!(runs.iter().all(|r| r[9].starts_with("0 ")), "{runs:?}");
    assert!(runs.iter().all(|r| r[7] == "50.0 MiB/s"), "{runs:?}");
    // The rate chart draws bars and the limit's line.
    assert!(
        doc.select(&sel("section#rate svg rect.bar"))
            .next()
            .is_some()
    );
    assert!(
        doc.select(&sel("section#rate svg polyline.limit"))
            .next()
            .is_some()
    );
    assert!(
        doc.select(&sel("section#backlog svg polyline.backlog"))
            .next()
            .is_some()
    );
    // Never verified, no failures, and what the job leaves out is said.
    let verify: String = doc
        .select(&sel("section#verify p"))
        .flat_map(|p| p.text())
        .collect();
    assert!(verify.contains("Never verified"), "{verify}");
    let failures: String = doc
        .select(&sel("section#failures"))
        .flat_map(|p| p.text())
        .collect();
    assert!(failures.contains("No file is failed"), "{failures}");
    let fidelity = table(&doc, "fidelity");
    let xattrs = fidelity
        .iter()
        .find(|r| r[0] == "extended attributes")
        .unwrap();
    assert_eq!(xattrs[1], "left out", "{fidelity:?}");
    let links = fidelity.iter().find(|r| r[0] == "hard links").unwrap();
    assert_eq!(links[1], "kept", "{fidelity:?}");
    // A verify shows in the report.
    env.run(&["verify"]).assert_code(0);
    let (_, doc) = page(&report(&env).1);
    let verify: String = doc
        .select(&sel("section#verify p.ok"))
        .flat_map(|p| p.text())
        .collect();
    assert!(verify.contains("22 verified"), "{verify}");
}

#[test]
#[ignore = "needs root"]
fn failures_are_listed_by_name_escaped() {
    require_setpriv();
    let env = TestEnv::new();
    env.src_file("fine.txt", b"readable");
    let locked = env.src_file("locked <i>.bin", b"nobody may read this");
    chown_tree(env.root(), 65534);
    std::os::unix::fs::lchown(&locked, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    run_as_nobody(&env, &[]).assert_code(1);

    let (out, path) = report(&env);
    out.assert_code(0);
    let (text, doc) = page(&path);
    assert!(text.contains("locked &lt;i&gt;.bin"), "name not escaped");
    let failed = table(&doc, "failures");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0][0].ends_with("locked <i>.bin"), "{failed:?}");
    assert!(failed[0][2].contains("Permission denied"), "{failed:?}");
    let runs = table(&doc, "runs");
    assert!(runs[0][9].starts_with("1 "), "{runs:?}");
}

#[test]
fn without_its_audit_log_the_report_says_what_is_missing() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.run(&[]).assert_code(0);
    std::fs::remove_file(env.log_path()).unwrap();

    // Written, but incomplete: a script that files the page can tell.
    let (out, path) = report(&env);
    out.assert_code(1);
    assert!(out.stderr.contains("cannot be read"), "{}", out.stderr);
    assert!(out.stdout.contains("incomplete"), "{}", out.stdout);
    let (_, doc) = page(&path);
    let rate: String = doc
        .select(&sel("section#rate p.bad"))
        .flat_map(|p| p.text())
        .collect();
    assert!(rate.contains("no rate or backlog chart"), "{rate}");
    assert!(doc.select(&sel("section#rate svg")).next().is_none());
    // The DB's tables are still there.
    assert_eq!(table(&doc, "runs").len(), 1);
}

#[test]
fn a_job_that_never_ran_has_no_report() {
    let env = TestEnv::new();
    let (out, path) = report(&env);
    out.assert_code(2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("never run"), "{}", out.stderr);
    assert!(!path.exists());
    assert!(!env.db_path().exists());
}

#[test]
#[ignore = "slow tier (chromium, 3 s)"]
fn chromium_draws_the_page() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("needs Debian's chromium (apt-get install chromium); .ci/run installs it");
    let env = TestEnv::new();
    for i in 0..30 {
        env.src_file(&format!("f{i}"), &vec![7; 5000 * (i + 1)]);
    }
    env.run(&[]).assert_code(0);
    let (out, path) = report(&env);
    out.assert_code(0);
    let png = env.root().join("report.png");
    let profile = env.root().join("chromium-profile");
    let shot = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", path.display()))
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let ink = pixels
        .iter()
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    // The bars' blue, drawn by the SVG.
    let blue = pixels
        .iter()
        .filter(|p| p[2] > 150 && p[0] < 110 && p[1] > 100 && p[1] < 150)
        .count();
    assert!(
        ink * 100 > pixels.len(),
        "a blank page: {ink} of {} pixels inked",
        pixels.len()
    );
    assert!(blue > 200, "no bars drawn: {blue} blue pixels");
}

/// The log rotated away (logrotate keeps `LOG.1`, `LOG.2.gz`, …): the
/// charts would show the last runs only; the report says which runs are
/// missing from them and exits 1, written but incomplete.
#[test]
fn a_log_rotated_away_is_said_and_the_report_is_incomplete() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.run(&[]).assert_code(0);
    env.src_file("b.txt", b"bravo");
    env.run(&[]).assert_code(0);
    let rotated = env.log_path().with_extension("log.1");
    std::fs::rename(env.log_path(), rotated).unwrap();
    env.src_file("c.txt", b"charlie");
    env.run(&[]).assert_code(0);

    let (out, path) = report(&env);
    out.assert_code(1);
    assert!(out.stderr.contains("runs 1–2"), "{}", out.stderr);
    assert!(out.stdout.contains("incomplete"), "{}", out.stdout);
    let (text, doc) = page(&path);
    assert!(text.contains("rotated away"), "the page says it");
    assert_eq!(table(&doc, "runs").len(), 3, "the DB's runs are all there");
    // The lines put back together: complete again.
    let rotated = env.log_path().with_extension("log.1");
    let whole = [
        std::fs::read(&rotated).unwrap(),
        std::fs::read(env.log_path()).unwrap(),
    ]
    .concat();
    std::fs::write(env.log_path(), whole).unwrap();
    let (out, _) = report(&env);
    out.assert_code(0);
    assert!(!out.stderr.contains("rotated"), "{}", out.stderr);
}
