//! Charts as inline SVG: bars for a quantity per time bucket, and step
//! lines over them (the limit in force, the backlog left). No script, no
//! font or style from elsewhere: the file draws the same offline.

use std::fmt::Write as _;

use super::html::esc;

const W: f64 = 900.0;
const H: f64 = 260.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 40.0;

/// One line over the bars: a value per bucket, `None` where it has none
/// (the limit `off`), drawn as steps.
pub struct Steps<'a> {
    pub values: &'a [Option<f64>],
    /// CSS class (its colour) and the legend's words.
    pub class: &'a str,
    pub label: &'a str,
}

/// A chart over `n` buckets.
pub struct Chart<'a> {
    /// What the chart shows, for a screen reader and the legend.
    pub title: &'a str,
    pub bars: Option<&'a [f64]>,
    pub bar_label: &'a str,
    pub lines: Vec<Steps<'a>>,
    /// Labels on the time axis: bucket index and text.
    pub x_labels: Vec<(usize, String)>,
    /// Text of a value on the y axis (`1.5 MiB/s`).
    pub y_text: &'a dyn Fn(f64) -> String,
    pub n: usize,
}

fn top_value(c: &Chart<'_>) -> f64 {
    let bars = c.bars.unwrap_or(&[]).iter().copied();
    let lines = c
        .lines
        .iter()
        .flat_map(|l| l.values.iter().flatten().copied());
    let max = bars
        .chain(lines)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if max > 0.0 { max * 1.1 } else { 1.0 }
}

/// The chart as an `<svg>` element.
pub fn render(c: &Chart<'_>) -> String {
    let n = c.n.max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let top = top_value(c);
    let x = |i: f64| LEFT + plot_w * i / n;
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(c.title)
    );
    // Axes and four grid lines with their values.
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let yy = y(v);
        let _ = write!(
            o,
            r#"<line class="grid" x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&(c.y_text)(v))
        );
    }
    for (i, label) in &c.x_labels {
        let xx = x(*i as f64);
        let _ = write!(
            o,
            r#"<line class="tick" x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}"/><text class="axis" x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 18.0,
            esc(label)
        );
    }
    if let Some(bars) = c.bars {
        let bw = (plot_w / n).max(0.5);
        for (i, &v) in bars.iter().enumerate().filter(|(_, v)| **v > 0.0) {
            let (x0, y0) = (x(i as f64), y(v));
            let _ = write!(
                o,
                r#"<rect class="bar" x="{x0:.2}" y="{y0:.2}" width="{bw:.2}" height="{:.2}"/>"#,
                (H - BOTTOM - y0).max(0.5)
            );
        }
    }
    for l in &c.lines {
        for run in step_runs(l.values) {
            let mut pts = String::new();
            for (i, v) in run {
                let yy = y(v);
                let _ = write!(
                    pts,
                    "{:.2},{yy:.2} {:.2},{yy:.2} ",
                    x(i as f64),
                    x(i as f64 + 1.0)
                );
            }
            let _ = write!(
                o,
                r#"<polyline class="{}" points="{}"/>"#,
                esc(l.class),
                pts.trim_end()
            );
        }
    }
    o.push_str("</svg>");
    let _ = write!(o, r#"<p class="legend">"#);
    if c.bars.is_some() {
        let _ = write!(o, r#"<span class="key bar"></span> {} "#, esc(c.bar_label));
    }
    for l in &c.lines {
        let _ = write!(
            o,
            r#"<span class="key {}"></span> {} "#,
            esc(l.class),
            esc(l.label)
        );
    }
    o.push_str("</p>");
    o
}

/// The stretches of consecutive buckets that have a value.
fn step_runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs = Vec::new();
    let mut cur = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => cur.push((i, *v)),
            _ if !cur.is_empty() => runs.push(std::mem::take(&mut cur)),
            _ => {}
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart<'a>(
        bars: &'a [f64],
        lines: Vec<Steps<'a>>,
        y_text: &'a dyn Fn(f64) -> String,
    ) -> Chart<'a> {
        Chart {
            title: "rate <&>",
            bars: Some(bars),
            bar_label: "copied",
            lines,
            x_labels: vec![(0, "Mon <1>".into())],
            y_text,
            n: bars.len(),
        }
    }

    #[test]
    fn bars_scale_to_the_tallest_and_zero_draws_nothing() {
        let f = |v: f64| format!("{v:.0}");
        let svg = render(&chart(&[0.0, 50.0, 100.0], vec![], &f));
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        // The tallest bar reaches 1/1.1 of the plot's height.
        let plot_h = H - TOP - BOTTOM;
        let y_top = TOP + plot_h * (1.0 - 1.0 / 1.1);
        assert!(svg.contains(&format!(r#"y="{y_top:.2}""#)), "{svg}");
        assert!(svg.contains("rate &lt;&amp;&gt;"), "{svg}");
        assert!(svg.contains("Mon &lt;1&gt;"), "{svg}");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn a_line_breaks_where_it_has_no_value() {
        let f = |v: f64| format!("{v:.0}");
        let limit = [Some(10.0), Some(10.0), None, Some(20.0)];
        let svg = render(&chart(
            &[1.0, 2.0, 3.0, 4.0],
            vec![Steps {
                values: &limit,
                class: "limit",
                label: "limit",
            }],
            &f,
        ));
        assert_eq!(
            svg.matches(r#"<polyline class="limit""#).count(),
            2,
            "{svg}"
        );
        // The line counts in the scale: 20 is the top value, not 4.
        assert!(svg.contains(">22<"), "{svg}");
    }

    #[test]
    fn nothing_to_draw_still_draws_axes() {
        let f = |v: f64| format!("{v:.1}");
        let svg = render(&chart(&[], vec![], &f));
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
        assert!(svg.contains(">1.0<"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 0);
    }

    #[test]
    fn step_runs_split_on_gaps() {
        let r = step_runs(&[
            None,
            Some(1.0),
            Some(2.0),
            None,
            Some(f64::INFINITY),
            Some(3.0),
        ]);
        assert_eq!(r, vec![vec![(1, 1.0), (2, 2.0)], vec![(5, 3.0)]]);
    }
}
