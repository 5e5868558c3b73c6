//! The audit log read once, line by line, into what the report draws: the
//! bytes synced per time bucket, the runs' starts, and how many lines could
//! not be read. A file counts in the bucket its `synced` line fell in (when
//! its copy ended), so buckets are never shorter than a minute: shorter
//! ones would show a large file's bytes as a burst above the limit that
//! the wire never carried. Memory stays bounded on a log of 50M lines: the
//! buckets coarsen (1 min → 1 h → 1 day) whenever more than [`MAX_KEYS`]
//! of them are held.

use std::collections::BTreeMap;
use std::io::BufRead;

/// Buckets held at most while reading.
const MAX_KEYS: usize = 50_000;
/// Bars drawn at most: the bucket width is the smallest step of
/// [`STEPS`] that fits the log's span in this many.
pub const MAX_BARS: i64 = 400;
/// Bucket widths, seconds.
const STEPS: [i64; 12] = [
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];
/// How the buckets coarsen while reading.
const COARSEN: [i64; 3] = [60, 3600, 86400];

/// What the audit log says over time.
#[derive(Debug, Default, PartialEq)]
pub struct Timeline {
    /// Start of the first bucket, Unix seconds (a multiple of `bucket_secs`).
    pub start: i64,
    /// Width of each bucket, seconds (0 when nothing was synced).
    pub bucket_secs: i64,
    /// File bytes synced in each bucket, by the `ts` of their `synced` line.
    pub bytes: Vec<u64>,
    /// `synced` file lines read.
    pub synced_files: u64,
    /// Lines read in all.
    pub lines: u64,
    /// Lines that are not a JSON object with a readable `ts` (a torn line).
    pub unreadable: u64,
    /// Each `run_start`: Unix seconds and its run id.
    pub run_starts: Vec<(i64, i64)>,
}

impl Timeline {
    /// Bucket `i`'s start, Unix seconds.
    pub fn at(&self, i: usize) -> i64 {
        self.start + self.bucket_secs * i as i64
    }

    /// Bytes synced after bucket `i` ended.
    pub fn bytes_after(&self) -> Vec<u64> {
        let mut after = vec![0; self.bytes.len()];
        let mut sum = 0u64;
        for i in (0..self.bytes.len()).rev() {
            after[i] = sum;
            sum = sum.saturating_add(self.bytes[i]);
        }
        after
    }
}

#[derive(serde::Deserialize)]
struct Line<'a> {
    ts: Option<&'a str>,
    status: Option<&'a str>,
    kind: Option<&'a str>,
    size: Option<u64>,
    run: Option<i64>,
}

/// Unix seconds of an RFC 3339 time (`None` when it does not parse).
fn unix_secs(ts: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(ts).ok()?;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    }
}

/// Reads the log. An I/O error stops the reading and is returned with
/// what was read before it.
pub fn read(log: impl BufRead) -> (Timeline, Option<std::io::Error>) {
    let mut held: BTreeMap<i64, u64> = BTreeMap::new();
    let mut coarse = 0usize;
    let mut t = Timeline::default();
    let mut first_last: Option<(i64, i64)> = None;
    let mut err = None;
    for line in log.split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                err = Some(e);
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        t.lines += 1;
        let Some((at, parsed)) = serde_json::from_slice::<Line<'_>>(&line)
            .ok()
            .and_then(|l| Some((unix_secs(l.ts?)?, l)))
        else {
            t.unreadable += 1;
            continue;
        };
        first_last = Some(first_last.map_or((at, at), |(a, b)| (a.min(at), b.max(at))));
        match (parsed.status, parsed.kind) {
            (Some("run_start"), _) => t.run_starts.push((at, parsed.run.unwrap_or(0))),
            (Some("synced"), Some("file")) => {
                t.synced_files += 1;
                let step = COARSEN[coarse];
                *held.entry(at.div_euclid(step) * step).or_default() += parsed.size.unwrap_or(0);
                if held.len() > MAX_KEYS && coarse + 1 < COARSEN.len() {
                    coarse += 1;
                    held = rekey(held, COARSEN[coarse]);
                }
            }
            _ => {}
        }
    }
    if let Some((first, last)) = first_last {
        place(&mut t, &held, first, last, COARSEN[coarse]);
    }
    (t, err)
}

fn rekey(held: BTreeMap<i64, u64>, step: i64) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in held {
        *out.entry(k.div_euclid(step) * step).or_default() += v;
    }
    out
}

/// The bucket width for a span: the smallest step that draws it in at most
/// [`MAX_BARS`] bars, and never finer than what was held.
pub fn bucket_for(span: i64, held_step: i64) -> i64 {
    STEPS
        .iter()
        .copied()
        .find(|&s| s >= held_step && span / s < MAX_BARS)
        .unwrap_or_else(|| {
            // Longer than 400 days: whole days, as many as it takes.
            let days = (span / 86_400 / MAX_BARS + 1).max(1);
            (days * 86_400).max(held_step)
        })
}

fn place(t: &mut Timeline, held: &BTreeMap<i64, u64>, first: i64, last: i64, held_step: i64) {
    let width = bucket_for(last - first, held_step);
    t.bucket_secs = width;
    t.start = first.div_euclid(width) * width;
    let n = (last.div_euclid(width) * width - t.start) / width + 1;
    t.bytes = vec![0; usize::try_from(n).unwrap_or(0)];
    for (&k, &v) in held {
        let i = usize::try_from((k.div_euclid(width) * width - t.start) / width).unwrap_or(0);
        if let Some(b) = t.bytes.get_mut(i) {
            *b += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, status: &str, kind: &str, size: u64) -> String {
        format!(
            r#"{{"ts":"{ts}","run":3,"db_id":"x","status":"{status}","kind":"{kind}","size":{size}}}"#
        )
    }

    #[test]
    fn synced_file_bytes_fall_in_their_minute() {
        let log = [
            r#"{"ts":"2026-12-06T10:00:00.000001Z","run":3,"db_id":"x","status":"run_start"}"#
                .to_string(),
            line("2026-12-06T10:00:00.5Z", "synced", "file", 100),
            line("2026-12-06T10:00:59.2Z", "synced", "file", 7),
            line("2026-12-06T10:02:01.2Z", "synced", "file", 9),
            line("2026-12-06T10:02:01.9Z", "synced", "dir", 4096),
            line("2026-12-06T10:02:02.0Z", "failed", "file", 50),
            "{\"ts\":\"2026-12-06T10:00:0".into(),
            String::new(),
        ]
        .join("\n");
        let (t, err) = read(log.as_bytes());
        assert!(err.is_none());
        let start = unix_secs("2026-12-06T10:00:00Z").unwrap();
        assert_eq!(t.start, start);
        assert_eq!(t.bucket_secs, 60);
        assert_eq!(t.bytes, vec![107, 0, 9]);
        assert_eq!(t.synced_files, 3);
        assert_eq!(t.lines, 7);
        assert_eq!(t.unreadable, 1);
        assert_eq!(t.run_starts, vec![(start, 3)]);
        assert_eq!(t.bytes_after(), vec![9, 9, 0]);
    }

    #[test]
    fn a_month_of_lines_draws_in_few_bars_and_keeps_every_byte() {
        let start = unix_secs("2026-11-01T00:00:00Z").unwrap();
        let mut log = String::new();
        let mut total = 0u64;
        // One file every 37 s for 30 days: 43,200 minutes held.
        let mut at = start;
        while at < start + 30 * 86_400 {
            let ts = humantime::format_rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(at as u64),
            );
            log.push_str(&line(&ts.to_string(), "synced", "file", 1000));
            log.push('\n');
            total += 1000;
            at += 37;
        }
        let (t, _) = read(log.as_bytes());
        assert!(t.bytes.len() as i64 <= MAX_BARS, "{} bars", t.bytes.len());
        assert_eq!(t.bucket_secs, 7200);
        assert_eq!(t.bytes.iter().sum::<u64>(), total);
        assert_eq!(t.start % t.bucket_secs, 0);
    }

    #[test]
    fn bucket_widths_fit_the_span() {
        assert_eq!(bucket_for(0, 60), 60);
        assert_eq!(bucket_for(399 * 60, 60), 60);
        assert_eq!(bucket_for(400 * 60, 60), 120);
        assert_eq!(bucket_for(3600, 60), 60);
        assert_eq!(bucket_for(30 * 86_400, 60), 7200);
        assert_eq!(bucket_for(30 * 86_400, 86_400), 86_400);
        assert_eq!(bucket_for(1000 * 86_400, 60), 3 * 86_400);
    }

    #[test]
    fn an_empty_or_unreadable_log_has_no_buckets() {
        let (t, _) = read(&b""[..]);
        assert_eq!(t, Timeline::default());
        let (t, _) = read(&b"not json\n{}\n"[..]);
        assert_eq!((t.lines, t.unreadable, t.bytes.len()), (2, 2, 0));
    }
}
