//! The report as one self-contained HTML page: text, tables and inline SVG
//! charts, with its style inline; no script and no link to anything
//! outside the file. Every text from the DB, the log or a file name is
//! escaped.

use std::fmt::Write as _;
use std::time::Duration;

use super::svg::{self, Chart, Steps};
use super::{Keep, ReportData};
use crate::app::status::verify_line;
use crate::progress;
use crate::timetable;
use crate::units::{HumanRate, human_bytes};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}\
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176b2c}.bad{color:#a31515;font-weight:bold}.note{color:#555}\
code{font-size:0.95em}svg.chart{display:block;max-width:100%;height:auto}\
.grid{stroke:#e4e4e4}.tick{stroke:#999}.axis{font-size:11px;fill:#555}\
.bar{fill:#4a7fc1}.limit{fill:none;stroke:#d2691e;stroke-width:2}\
.backlog{fill:none;stroke:#6a3d9a;stroke-width:2}\
.key{display:inline-block;width:12px;height:12px;margin-left:12px;vertical-align:middle}\
.key.bar{background:#4a7fc1}.key.limit{background:#d2691e}.key.backlog{background:#6a3d9a}";

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The whole page.
pub fn render(r: &ReportData) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>jobrun report: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>jobrun report: <code>{}</code></h1>\n\
         <p class=\"note\">Written {} (UTC) by jobrun {} from the job's state DB and audit log only.</p>\n",
        esc(&r.manifest),
        esc(&r.manifest),
        esc(&r.generated_at),
        esc(r.version)
    );
    job(&mut o, r);
    totals(&mut o, r);
    runs(&mut o, r);
    rate(&mut o, r);
    backlog(&mut o, r);
    failures(&mut o, r);
    verify(&mut o, r);
    fidelity(&mut o, &r.keeps);
    o.push_str("</body></html>\n");
    o
}

fn section(o: &mut String, id: &str, title: &str) {
    let _ = writeln!(o, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
}

fn job(o: &mut String, r: &ReportData) {
    section(o, "job", "The job");
    o.push_str("<table>");
    for (k, v) in &r.settings {
        let _ = write!(
            o,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        );
    }
    o.push_str("</table></section>\n");
}

fn totals(o: &mut String, r: &ReportData) {
    let s = &r.status;
    section(o, "totals", "Entries and bytes per status");
    o.push_str(
        "<table><tr><th>status</th><th class=\"n\">entries</th><th class=\"n\">bytes</th></tr>",
    );
    for c in &s.counts {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.status.to_string()),
            c.files,
            esc(&human_bytes(c.bytes))
        );
    }
    o.push_str("</table>");
    let backlog = if s.backlog_files == 0 {
        "<p class=\"ok\">Backlog empty: the next run scans both trees for changes.</p>".to_string()
    } else {
        let eta = s
            .eta_seconds
            .map_or("unknown (no run has copied data yet)".into(), |e| {
                progress::fmt_duration(Duration::from_secs(e))
            });
        format!(
            "<p>Backlog: {} entries, {}; ETA {} of run time at the recent rate.</p>",
            s.backlog_files,
            esc(&human_bytes(s.backlog_bytes)),
            esc(&eta)
        )
    };
    let _ = writeln!(o, "{backlog}</section>");
}

fn runs(o: &mut String, r: &ReportData) {
    section(o, "runs", &format!("Every run ({})", r.runs.len()));
    if r.runs.is_empty() {
        o.push_str("<p>No run yet.</p></section>\n");
        return;
    }
    o.push_str(
        "<table><tr><th class=\"n\">run</th><th>started (UTC)</th><th class=\"n\">took</th>\
         <th>mode</th><th class=\"n\">files</th><th class=\"n\">bytes</th>\
         <th class=\"n\">mean rate</th><th>limit at start</th><th class=\"n\">failed</th><th>exit</th></tr>",
    );
    for (run, limit) in r.runs.iter().zip(&r.run_limits) {
        let row = &run.row;
        let took = run.seconds.map_or("-".into(), |s| {
            progress::fmt_duration(Duration::from_secs_f64(s))
        });
        let rate = run
            .seconds
            .filter(|s| *s > 0.0)
            .map(|s| row.bytes_done as f64 / s);
        let rate_text = rate.map_or("-".into(), |v| HumanRate(v).to_string());
        let against = match (rate, limit) {
            (Some(v), Some(l)) if *l > 0.0 => format!(" ({:.2}×)", v / l),
            _ => String::new(),
        };
        let limit_text = limit.map_or("off".into(), |l| {
            if l > 0.0 {
                HumanRate(l).to_string()
            } else {
                "pause".into()
            }
        });
        let exit = row
            .exit_code
            .map_or(run.state.clone(), |c| format!("{c} {}", run.state));
        let cls = if row.exit_code == Some(0) {
            "ok"
        } else if row.exit_code.is_some() {
            "bad"
        } else {
            "note"
        };
        let started: String = row.started_at.replace('T', " ").chars().take(19).collect();
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"{cls}\">{}</td></tr>",
            row.id,
            esc(&started),
            esc(&took),
            esc(&row.mode),
            if row.dry_run { " (dry run)" } else { "" },
            row.files_done,
            esc(&human_bytes(row.bytes_done)),
            esc(&rate_text),
            esc(&against),
            esc(&limit_text),
            row.failures,
            esc(&exit)
        );
    }
    o.push_str("</table><p class=\"note\">Limit at start: today's <code>bwlimit</code> at the local time the run started.</p></section>\n");
}

fn x_labels(r: &ReportData) -> Vec<(usize, String)> {
    let Some(t) = &r.timeline else {
        return Vec::new();
    };
    let n = t.bytes.len();
    if n == 0 {
        return Vec::new();
    }
    let picks = [0, n / 2, n.saturating_sub(1)];
    let mut out: Vec<(usize, String)> = picks
        .iter()
        .map(|&i| (i, timetable::local_minute(t.at(i))))
        .collect();
    out.dedup_by_key(|p| p.0);
    out
}

fn log_missing(o: &mut String, r: &ReportData) -> bool {
    if let Some(note) = &r.log_note {
        let _ = write!(o, "<p class=\"bad\">{}</p>", esc(note));
    }
    match &r.timeline {
        Some(t) if !t.bytes.is_empty() => false,
        Some(_) => {
            o.push_str("<p>The audit log has no synced file yet: nothing to draw.</p></section>\n");
            true
        }
        None => {
            o.push_str("</section>\n");
            true
        }
    }
}

fn rate(o: &mut String, r: &ReportData) {
    section(o, "rate", "Copy rate over time, against the limit");
    if log_missing(o, r) {
        return;
    }
    let Some(t) = &r.timeline else { return };
    let secs = t.bucket_secs as f64;
    let bars: Vec<f64> = t.bytes.iter().map(|&b| b as f64 / secs).collect();
    let y = |v: f64| HumanRate(v).to_string();
    let bar_label = format!(
        "bytes of the files whose copy ended in each {}, per second",
        progress::fmt_duration(Duration::from_secs(t.bucket_secs.unsigned_abs()))
    );
    let label = format!("bwlimit in force by today's manifest ({})", r.limit_text);
    let chart = Chart {
        title: "copy rate over time",
        bars: Some(&bars),
        bar_label: &bar_label,
        lines: vec![Steps {
            values: &r.limits,
            class: "limit",
            label: &label,
        }],
        x_labels: x_labels(r),
        y_text: &y,
        n: bars.len(),
    };
    let _ = writeln!(
        o,
        "{}<p class=\"note\">Times in local time ({}). {} file lines synced, {} lines read{}.</p></section>",
        svg::render(&chart),
        esc(&timetable::local_zone_name()),
        t.synced_files,
        t.lines,
        if t.unreadable > 0 {
            format!(", {} unreadable (torn) lines skipped", t.unreadable)
        } else {
            String::new()
        }
    );
}

fn backlog(o: &mut String, r: &ReportData) {
    section(o, "backlog", "Backlog over time");
    if log_missing(o, r) {
        return;
    }
    let Some(t) = &r.timeline else { return };
    let left: Vec<Option<f64>> = t
        .bytes_after()
        .iter()
        .map(|&b| Some((b + r.status.backlog_bytes) as f64))
        .collect();
    let y = |v: f64| human_bytes(v as u64);
    let chart = Chart {
        title: "backlog over time",
        bars: None,
        bar_label: "",
        lines: vec![Steps {
            values: &left,
            class: "backlog",
            label: "bytes left to copy",
        }],
        x_labels: x_labels(r),
        y_text: &y,
        n: left.len(),
    };
    let _ = writeln!(
        o,
        "{}<p class=\"note\">Read back from today: the backlog now ({}) plus the bytes synced after each \
         moment. Files that later scans found new or changed raised the real backlog when they were \
         found; this line counts them from the start.</p></section>",
        svg::render(&chart),
        esc(&human_bytes(r.status.backlog_bytes))
    );
}

fn failures(o: &mut String, r: &ReportData) {
    let total = r.status.failed_total;
    section(o, "failures", &format!("Failed files ({total})"));
    if total == 0 {
        o.push_str("<p class=\"ok\">No file is failed.</p></section>\n");
        return;
    }
    o.push_str("<table><tr><th>path</th><th class=\"n\">runs in a row</th><th>error</th></tr>");
    for f in &r.failures {
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&f.path),
            f.runs_in_a_row,
            esc(&f.error)
        );
    }
    o.push_str("</table>");
    if total > r.failures.len() as u64 {
        let _ = write!(
            o,
            "<p>… and {} more (<code>sqlite3</code> on the state DB lists them all).</p>",
            total - r.failures.len() as u64
        );
    }
    o.push_str("<p class=\"note\">Every failed file is retried by the next scan.</p></section>\n");
}

fn verify(o: &mut String, r: &ReportData) {
    section(o, "verify", "Last verify");
    match &r.status.last_verify {
        Some(v) => {
            let cls = if v.exit_code == Some(0) { "ok" } else { "bad" };
            let _ = write!(o, "<p class=\"{cls}\">{}</p>", esc(&verify_line(v)));
        }
        None => o.push_str(
            "<p class=\"bad\">Never verified: <code>jobrun verify JOB.toml</code> re-reads the \
             destination and compares every file with the hash recorded from the source.</p>",
        ),
    }
    o.push_str("</section>\n");
}

fn fidelity(o: &mut String, keeps: &[Keep]) {
    section(o, "fidelity", "What the job keeps and leaves out");
    o.push_str("<table><tr><th>what</th><th>kept</th><th>how</th></tr>");
    for k in keeps {
        let (cls, word) = if k.kept {
            ("ok", "kept")
        } else {
            ("bad", "left out")
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"{cls}\">{word}</td><td>{}</td></tr>",
            esc(k.what),
            esc(&k.how)
        );
    }
    o.push_str("</table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_reads_as_markup() {
        assert_eq!(esc(r#"<b>&"x"'"#), "&lt;b&gt;&amp;&quot;x&quot;&#39;");
        assert_eq!(esc("plain/ü"), "plain/ü");
    }
}
