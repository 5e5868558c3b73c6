//! `bwlimit` as the manifest writes it (SPEC §6): one [`Limit`] or a weekly
//! timetable in rclone's syntax, and the local clock it is read against.
//! The only module that imports `jiff` (local time, time zones, DST).
//!
//! rclone's meaning: each entry `[DAY-]HH:MM,LIMIT` holds from its instant
//! until the next entry of the week; an entry without a day stands for the
//! same time on all seven days; before the week's first entry the week's
//! last one holds (the table goes round). Entries may come in any order.
//! Times are the wall clock of the local zone, read at each check: on the
//! day the clocks go forward an entry inside the skipped hour takes effect
//! when the clock jumps past it; on the day they go back the repeated hour
//! follows its entries twice (rclone reads the wall clock the same way).

use std::fmt;

use jiff::ZonedDateTime;

use crate::units::{self, HumanRate};

pub const DAY_SECS: u32 = 24 * 3600;
pub const WEEK_SECS: u32 = 7 * DAY_SECS;
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const ENTRY_HELP: &str = "expected entries like `Mon-08:00,10M 18:00,off` \
     ([DAY-]HH:MM,RATE; DAY Mon…Sun; RATE may also be `off`, `pause` or `auto`)";

/// What an entry (or a plain `bwlimit`) sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit (`off`, `0`).
    Off,
    /// Bytes per second, at least 1.
    Rate(u64),
    /// No file bytes move until the next entry (`pause`).
    Pause,
    /// The rate follows the delay the run's own I/O sees (`auto`, `auto,
    /// 60M`: see `polite`), at most the ceiling when one is given.
    Auto(Option<u64>),
}

impl Limit {
    /// `pause`, `auto` (optionally `auto, CEILING`), or a rate as
    /// [`units::parse_rate`] reads it.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("pause") {
            return Ok(Limit::Pause);
        }
        if let Some(rest) = strip_auto(s) {
            let rest = rest.trim_start();
            let Some(ceiling) = rest.strip_prefix(',') else {
                return if rest.is_empty() {
                    Ok(Limit::Auto(None))
                } else {
                    Err(format!(
                        "invalid `{}`: expected `auto` or `auto, CEILING` (e.g. `auto, 60M`)",
                        s.trim()
                    ))
                };
            };
            return match units::parse_rate(ceiling) {
                Ok(c) => Ok(Limit::Auto(c)),
                Err(e) => Err(format!("the ceiling of `{}`: {e}", s.trim())),
            };
        }
        units::parse_rate(s).map(Self::from_rate).map_err(|e| {
            e.to_string().replace(
                "(optionally with `/s`), or `off`",
                "(optionally with `/s`), `off` or `pause`",
            )
        })
    }

    /// `None` (unlimited) or a rate.
    pub fn from_rate(rate: Option<u64>) -> Self {
        rate.map_or(Limit::Off, Limit::Rate)
    }

    /// The limit as the audit log writes it: `20971520 B/s`, `off`, `pause`.
    pub fn audit_text(self) -> String {
        match self {
            Limit::Rate(r) => format!("{r} B/s"),
            Limit::Auto(Some(c)) => format!("auto, {c} B/s"),
            other => other.to_string(),
        }
    }
}

impl Limit {
    /// A rate shared by `n` runs (at least 1 B/s); `auto`'s ceiling is
    /// shared the same way; `off` and `pause` stay.
    pub fn divided(self, n: u64) -> Self {
        match self {
            Limit::Rate(r) => Limit::Rate((r / n.max(1)).max(1)),
            Limit::Auto(Some(c)) => Limit::Auto(Some((c / n.max(1)).max(1))),
            other => other,
        }
    }
}

/// A timetable's entries: words split at white space, joined again where
/// a comma ends one or starts the next (`08:00,auto, 5M` is one entry, as
/// `bwlimit = "auto, 5M"` is one limit).
fn entry_texts(input: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for word in input.split_whitespace() {
        match entries.last_mut() {
            Some(last) if last.ends_with(',') || word.starts_with(',') => last.push_str(word),
            _ => entries.push(word.to_string()),
        }
    }
    entries
}

/// `auto` and its ceiling: `auto`, `AUTO, 60M`.
fn strip_auto(s: &str) -> Option<&str> {
    let t = s.trim_start();
    t.get(..4)
        .filter(|a| a.eq_ignore_ascii_case("auto"))
        .map(|_| &t[4..])
}

/// `20.0 MiB/s`, `off`, `pause`, `auto` or `auto, 60.0 MiB/s`.
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Off => f.write_str("off"),
            Limit::Pause => f.write_str("pause"),
            Limit::Rate(r) => write!(f, "{}", HumanRate(*r as f64)),
            Limit::Auto(None) => f.write_str("auto"),
            Limit::Auto(Some(c)) => write!(f, "auto, {}", HumanRate(*c as f64)),
        }
    }
}

/// One entry as written: `day` 0 = Monday, `None` = every day; `at` in
/// seconds after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub day: Option<u8>,
    pub at: u32,
    pub limit: Limit,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = self.day {
            write!(f, "{}-", DAYS[d as usize])?;
        }
        write!(f, "{},{}", hhmm(self.at), self.limit)
    }
}

/// A weekly timetable: the entries as written (for display) and the
/// instants of the week they make (sorted, one limit per instant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    entries: Vec<Entry>,
    /// (seconds after Monday 00:00, limit), strictly increasing, not empty.
    week: Vec<(u32, Limit)>,
}

impl Timetable {
    /// Parses space-separated `[DAY-]HH:MM,LIMIT` entries.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        // (instant of the week, limit, from a weekday entry, the entry's text)
        let mut points: Vec<(u32, Limit, bool, String)> = Vec::new();
        for text in entry_texts(input) {
            let text = text.as_str();
            let bad =
                |why: String| format!("invalid timetable entry `{text}`: {why}; {ENTRY_HELP}");
            let (when, limit) = text
                .split_once(',')
                .ok_or_else(|| bad("missing `,RATE`".into()))?;
            let (day, time) = match when.split_once('-') {
                Some((d, t)) => (
                    Some(parse_day(d).ok_or_else(|| {
                        bad(format!(
                            "`{d}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"
                        ))
                    })?),
                    t,
                ),
                None => (None, when),
            };
            let at =
                parse_hhmm(time).ok_or_else(|| bad(format!("`{time}` is not a time HH:MM")))?;
            let limit = Limit::parse(limit).map_err(bad)?;
            let entry = Entry { day, at, limit };
            for d in day.map_or(0..7, |d| d..d + 1) {
                let t = u32::from(d) * DAY_SECS + at;
                match points.iter_mut().find(|p| p.0 == t) {
                    // A weekday entry is more precise than a daily one at
                    // the same instant, whichever comes first.
                    Some(p) if !p.2 && day.is_some() => *p = (t, limit, true, text.into()),
                    Some(p) if p.2 && day.is_none() => {}
                    Some(p) => {
                        return Err(bad(format!("`{when}` is already given by `{}`", p.3)));
                    }
                    None => points.push((t, limit, day.is_some(), text.into())),
                }
            }
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err("empty timetable; write a rate like `20M` or `off`".into());
        }
        points.sort_by_key(|p| p.0);
        let week = points.into_iter().map(|(t, l, _, _)| (t, l)).collect();
        Ok(Self { entries, week })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The limit in force at `t` seconds after Monday 00:00 (local).
    pub fn limit_at(&self, t: u32) -> Limit {
        let t = t % WEEK_SECS;
        let i = self.week.partition_point(|p| p.0 <= t);
        // Before the week's first instant, the week's last one holds.
        self.week[if i == 0 { self.week.len() } else { i } - 1].1
    }

    /// The next instant after `t` where the limit changes, and the limit
    /// then; `None` when it never changes.
    pub fn next_change(&self, t: u32) -> Option<(u32, Limit)> {
        let t = t % WEEK_SECS;
        let now = self.limit_at(t);
        let (i, n) = (self.week.partition_point(|p| p.0 <= t), self.week.len());
        (0..n).map(|k| self.week[(i + k) % n]).find(|p| p.1 != now)
    }

    /// The week as rows `(day, from, to, limit)`: each day cut where the
    /// limit changes, seconds after that day's midnight (`to` 86400 = 24:00).
    pub fn week_rows(&self) -> Vec<(&'static str, u32, u32, Limit)> {
        let mut rows = Vec::new();
        for d in 0..7u32 {
            let start = d * DAY_SECS;
            let mut from = 0;
            let mut limit = self.limit_at(start);
            for &(t, l) in self
                .week
                .iter()
                .filter(|p| p.0 > start && p.0 < start + DAY_SECS)
            {
                if l != limit {
                    rows.push((DAYS[d as usize], from, t - start, limit));
                    (from, limit) = (t - start, l);
                }
            }
            rows.push((DAYS[d as usize], from, DAY_SECS, limit));
        }
        rows
    }
}

impl Timetable {
    /// What `check` prints under the `bwlimit` line: the limit in force at
    /// `now` (seconds after Monday 00:00 in `zone`) and until when, then
    /// the week, one row per stretch of one limit, each line led by `indent`.
    pub fn week_table(&self, now: u32, zone: &str, indent: &str) -> String {
        let limit = self.limit_at(now);
        let mut out = format!("{indent}now {} ({zone}): {limit}", week_time(now));
        match self.next_change(now) {
            Some((t, l)) => out.push_str(&format!(" until {}, then {l}", week_time(t))),
            None => out.push_str(" all week"),
        }
        let mut last_day = "";
        for (day, from, to, l) in self.week_rows() {
            let shown = if day == last_day { "   " } else { day };
            last_day = day;
            out.push_str(&format!(
                "\n{indent}{shown}  {}-{}  {l}",
                hhmm(from),
                hhmm(to)
            ));
        }
        out
    }
}

/// `bwlimit` as resolved: one limit, or a weekly timetable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fixed(Limit),
    Timetable(Timetable),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Fixed(Limit::Off)
    }
}

impl Schedule {
    /// Parses a rate (`20M`, `20MB/s`, `0`, `off`), `pause`, `auto`
    /// (`auto, 60M` with a ceiling), or a timetable
    /// (`Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off`).
    pub fn parse(input: &str) -> Result<Self, String> {
        let t = input.trim();
        if (!t.contains(',') || strip_auto(t).is_some()) && !t.contains(':') {
            return Limit::parse(t).map(Schedule::Fixed);
        }
        Timetable::parse(t).map(Schedule::Timetable)
    }

    /// The limit in force at `t` seconds after Monday 00:00, local time.
    pub fn limit_at(&self, t: u32) -> Limit {
        match self {
            Schedule::Fixed(l) => *l,
            Schedule::Timetable(tt) => tt.limit_at(t),
        }
    }

    /// The limit in force now (local time).
    pub fn limit_now(&self) -> Limit {
        match self {
            Schedule::Fixed(l) => *l,
            Schedule::Timetable(tt) => tt.limit_at(local_week_secs()),
        }
    }

    /// The schedule shared by `n` runs: each limit divided (a timetable
    /// entry by entry).
    pub fn divided(&self, n: u64) -> Self {
        match self {
            Schedule::Fixed(l) => Schedule::Fixed(l.divided(n)),
            Schedule::Timetable(t) => Schedule::Timetable(Timetable {
                entries: t
                    .entries
                    .iter()
                    .map(|e| Entry {
                        limit: e.limit.divided(n),
                        ..*e
                    })
                    .collect(),
                week: t.week.iter().map(|&(at, l)| (at, l.divided(n))).collect(),
            }),
        }
    }

    /// True when nothing ever limits or pauses.
    pub fn is_off(&self) -> bool {
        match self {
            Schedule::Fixed(l) => *l == Limit::Off,
            Schedule::Timetable(tt) => tt.week.iter().all(|p| p.1 == Limit::Off),
        }
    }

    /// The `bwlimit` of `run_start` and of a `bwlimit` audit line: the limit
    /// in force (bytes/s, `off`, `pause`), and for a timetable the table
    /// (`20971520 B/s (timetable 08:00,10.0 MiB/s 12:00,20.0 MiB/s)`).
    pub fn audit_text(&self, now: Limit) -> String {
        match self {
            Schedule::Fixed(_) => now.audit_text(),
            Schedule::Timetable(_) => format!("{} (timetable {self})", now.audit_text()),
        }
    }
}

/// `20.0 MiB/s`, `off`, `pause`, or `Mon-08:00,10.0 MiB/s 19:00,off`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Fixed(l) => write!(f, "{l}"),
            Schedule::Timetable(tt) => {
                for (i, e) in tt.entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn parse_day(s: &str) -> Option<u8> {
    let l = s.to_ascii_lowercase();
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (0..7u8).find(|&i| l == DAYS[i as usize].to_ascii_lowercase() || l == full[i as usize])
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let ok = |p: &str| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || m.len() != 2 || !ok(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

/// `08:00`; `24:00` for the end of a day.
pub fn hhmm(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// `Tue 14:03` for `t` seconds after Monday 00:00.
pub fn week_time(t: u32) -> String {
    format!(
        "{} {}",
        DAYS[(t / DAY_SECS % 7) as usize],
        hhmm(t % DAY_SECS)
    )
}

/// Seconds after Monday 00:00 of `z`'s wall clock.
pub fn week_secs(z: &ZonedDateTime) -> u32 {
    let day = z.weekday().to_monday_zero_offset() as u32;
    day * DAY_SECS + z.hour() as u32 * 3600 + z.minute() as u32 * 60 + z.second() as u32
}

/// Seconds after Monday 00:00, local time (the zone of `TZ`, else the
/// system's, as jiff finds it).
pub fn local_week_secs() -> u32 {
    week_secs(&ZonedDateTime::now())
}

/// Seconds after Monday 00:00, local time, at `unix` seconds after the
/// epoch (`None` outside jiff's range): where a past instant fell in the
/// week's timetable.
pub fn local_week_secs_at(unix: i64) -> Option<u32> {
    let ts = jiff::Timestamp::from_second(unix).ok()?;
    Some(week_secs(
        &ts.to_zoned_datetime(jiff::tz::TimeZone::system()),
    ))
}

/// `2026-12-06 14:03` in local time, for people (`-` outside jiff's range).
pub fn local_minute(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(
        |_| "-".into(),
        |ts| {
            ts.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        },
    )
}

/// The local zone's name for people (`Europe/Berlin`), or `local time`.
pub fn local_zone_name() -> String {
    jiff::tz::TimeZone::system()
        .iana_name()
        .map_or_else(|| "local time".into(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    const H: u32 = 3600;
    const MIB: u64 = 1 << 20;

    fn at(day: u32, h: u32, m: u32) -> u32 {
        day * DAY_SECS + h * H + m * 60
    }

    #[test]
    fn divided_among_shards_entry_by_entry() {
        let s = Schedule::parse("08:00,10M 19:00,off Sat-00:00,pause").unwrap();
        let d = s.divided(4);
        let text: Vec<String> = match &d {
            Schedule::Timetable(t) => t.entries().iter().map(|e| e.to_string()).collect(),
            Schedule::Fixed(_) => panic!("{d:?}"),
        };
        assert_eq!(text, ["08:00,2.5 MiB/s", "19:00,off", "Sat-00:00,pause"]);
        assert_eq!(d.limit_at(9 * 3600), Limit::Rate(10 * 1024 * 1024 / 4));
        assert_eq!(d.limit_at(20 * 3600), Limit::Off);
        assert_eq!(
            Schedule::parse("3").unwrap().divided(4),
            Schedule::Fixed(Limit::Rate(1))
        );
        assert_eq!(
            Schedule::parse("off").unwrap().divided(4),
            Schedule::parse("0").unwrap()
        );
    }

    #[test]
    fn rclone_weekly_example() {
        let s = Schedule::parse("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off").unwrap();
        assert_eq!(s.limit_at(at(0, 0, 0)), Limit::Rate(512));
        assert_eq!(s.limit_at(at(2, 12, 0)), Limit::Rate(512), "Wednesday");
        assert_eq!(s.limit_at(at(4, 23, 58)), Limit::Rate(512));
        assert_eq!(s.limit_at(at(4, 23, 59)), Limit::Rate(10 * MIB));
        assert_eq!(
            s.limit_at(at(5, 9, 59)),
            Limit::Rate(10 * MIB),
            "across midnight"
        );
        assert_eq!(s.limit_at(at(5, 10, 0)), Limit::Rate(MIB));
        assert_eq!(s.limit_at(at(6, 19, 59)), Limit::Rate(MIB), "Sunday day");
        assert_eq!(s.limit_at(at(6, 20, 0)), Limit::Off);
        assert_eq!(s.limit_at(WEEK_SECS - 1), Limit::Off, "week's last second");
        assert_eq!(s.limit_at(WEEK_SECS), Limit::Rate(512), "next week");
        assert_eq!(
            s.to_string(),
            "Mon-00:00,512 B/s Fri-23:59,10.0 MiB/s Sat-10:00,1.0 MiB/s Sun-20:00,off"
        );
    }

    #[test]
    fn week_goes_round_before_the_first_entry() {
        // rclone's docs: the week's last entry holds until its first one.
        let s = Schedule::parse("Sat-10:00,1M Tue-08:00,pause").unwrap();
        assert_eq!(
            s.limit_at(at(0, 0, 0)),
            Limit::Rate(MIB),
            "Monday: last Saturday's"
        );
        assert_eq!(s.limit_at(at(1, 7, 59)), Limit::Rate(MIB));
        assert_eq!(s.limit_at(at(1, 8, 0)), Limit::Pause);
        assert_eq!(s.limit_at(at(5, 10, 0)), Limit::Rate(MIB));
        assert_eq!(s.limit_at(at(6, 23, 0)), Limit::Rate(MIB));
        let s = Schedule::parse("Mon-00:00,512 Sun-20:00,off").unwrap();
        assert_eq!(s.limit_at(at(6, 19, 0)), Limit::Rate(512));
    }

    #[test]
    fn daily_entries_repeat_and_weekday_entries_win() {
        let s = Schedule::parse("08:00,10M 19:00,off Sat-00:00,pause Sat-08:00,1M").unwrap();
        for d in 0..5 {
            assert_eq!(s.limit_at(at(d, 7, 59)), Limit::Off);
            assert_eq!(s.limit_at(at(d, 8, 0)), Limit::Rate(10 * MIB));
            assert_eq!(s.limit_at(at(d, 19, 0)), Limit::Off);
        }
        assert_eq!(s.limit_at(at(5, 0, 0)), Limit::Pause);
        assert_eq!(
            s.limit_at(at(5, 8, 0)),
            Limit::Rate(MIB),
            "Sat-08:00 beats 08:00"
        );
        assert_eq!(
            s.limit_at(at(5, 19, 0)),
            Limit::Off,
            "the daily 19:00 still applies"
        );
        assert_eq!(s.limit_at(at(6, 8, 0)), Limit::Rate(10 * MIB));
        // Order does not matter, as in rclone.
        let t = Schedule::parse("Sat-08:00,1M 19:00,off Sat-00:00,pause 08:00,10M").unwrap();
        for i in (0..WEEK_SECS).step_by(600) {
            assert_eq!(s.limit_at(i), t.limit_at(i), "{}", week_time(i));
        }
        // A day timetable means what it meant before weekdays existed.
        let d = Schedule::parse("08:00,10M 12:00,20MB/s 19:00,off").unwrap();
        assert_eq!(
            d.limit_at(at(3, 7, 59)),
            Limit::Off,
            "before 08:00: yesterday's 19:00"
        );
        assert_eq!(d.limit_at(at(3, 12, 0)), Limit::Rate(20_000_000));
        assert_eq!(d.to_string(), "08:00,10.0 MiB/s 12:00,19.1 MiB/s 19:00,off");
        assert_eq!(
            Schedule::parse(" 7:30,1K ").unwrap().limit_at(0),
            Limit::Rate(1024)
        );
        assert_eq!(
            Schedule::parse("monday-7:30,1K").unwrap().limit_at(0),
            Limit::Rate(1024)
        );
    }

    #[test]
    fn plain_values() {
        assert_eq!(
            Schedule::parse("20M").unwrap(),
            Schedule::Fixed(Limit::Rate(20 * MIB))
        );
        assert_eq!(Schedule::parse("off").unwrap(), Schedule::Fixed(Limit::Off));
        assert_eq!(Schedule::parse("0").unwrap().to_string(), "off");
        assert_eq!(
            Schedule::parse("PAUSE").unwrap(),
            Schedule::Fixed(Limit::Pause)
        );
        assert!(Schedule::parse("08:00,off 19:00,0").unwrap().is_off());
        assert!(!Schedule::parse("08:00,off 19:00,pause").unwrap().is_off());
        assert!(!Schedule::parse("pause").unwrap().is_off());
    }

    #[test]
    fn bad_timetables_say_why() {
        let cases = [
            (
                "08:00,10M 08:00,1M",
                "`08:00` is already given by `08:00,10M`",
            ),
            (
                "Sat-10:00,1M sat-10:00,2M",
                "`sat-10:00` is already given by `Sat-10:00,1M`",
            ),
            ("24:00,1M", "is not a time"),
            ("08:60,1M", "is not a time"),
            ("8h,1M", "is not a time"),
            ("Mo-08:00,1M", "`Mo` is not a day"),
            ("Sat08:00,1M", "is not a time"),
            ("08:00", "missing `,RATE`"),
            ("08:00 10M", "missing `,RATE`"),
            ("08:00,fast", "invalid rate `fast`"),
            ("08:00,-1", "invalid rate"),
            ("08:00,0.4B", "rounds to 0"),
            (",", "is not a time"),
        ];
        for (input, want) in cases {
            let e = Schedule::parse(input).unwrap_err();
            assert!(e.contains(want), "{input:?}: {e}");
            assert!(e.contains("expected entries like"), "{input:?}: {e}");
        }
        assert!(Schedule::parse("fast").is_err());
    }

    fn berlin(utc: &str) -> u32 {
        let ts: Timestamp = utc.parse().unwrap();
        week_secs(&ts.to_zoned_datetime(TimeZone::get("Europe/Berlin").unwrap()))
    }

    #[test]
    fn local_wall_clock_across_dst_days() {
        // 2026-03-29 (a Sunday): Berlin goes 02:00 CET -> 03:00 CEST.
        assert_eq!(berlin("2026-03-29T00:59:59Z"), at(6, 1, 59) + 59);
        assert_eq!(berlin("2026-03-29T01:00:00Z"), at(6, 3, 0));
        let s = Schedule::parse("Sun-02:30,pause Sun-03:30,2M Mon-00:00,off").unwrap();
        assert_eq!(s.limit_at(berlin("2026-03-29T00:59:59Z")), Limit::Off);
        // 02:30 never shows on the clock; at 03:00 it has passed.
        assert_eq!(s.limit_at(berlin("2026-03-29T01:00:00Z")), Limit::Pause);
        assert_eq!(
            s.limit_at(berlin("2026-03-29T01:30:00Z")),
            Limit::Rate(2 * MIB)
        );
        assert_eq!(
            s.limit_at(berlin("2026-03-29T22:00:00Z")),
            Limit::Off,
            "Monday 00:00 CEST"
        );
        // 2026-10-25 (a Sunday): 03:00 CEST -> 02:00 CET, 02:xx twice.
        let s = Schedule::parse("Sun-02:30,1M Sun-04:00,off Mon-00:00,off").unwrap();
        assert_eq!(
            s.limit_at(berlin("2026-10-25T00:29:00Z")),
            Limit::Off,
            "02:29 CEST"
        );
        assert_eq!(
            s.limit_at(berlin("2026-10-25T00:30:00Z")),
            Limit::Rate(MIB),
            "02:30 CEST"
        );
        assert_eq!(
            s.limit_at(berlin("2026-10-25T01:00:00Z")),
            Limit::Off,
            "02:00 CET again"
        );
        assert_eq!(
            s.limit_at(berlin("2026-10-25T01:30:00Z")),
            Limit::Rate(MIB),
            "02:30 CET"
        );
        assert_eq!(
            s.limit_at(berlin("2026-10-25T02:59:00Z")),
            Limit::Rate(MIB),
            "03:59 CET"
        );
        assert_eq!(
            s.limit_at(berlin("2026-10-25T03:00:00Z")),
            Limit::Off,
            "04:00 CET"
        );
        // Midnight and the week's end in local time, not UTC: Sunday
        // 23:30 UTC is already Monday 00:30 CET.
        let s = Schedule::parse("Mon-00:00,1M Sun-12:00,off").unwrap();
        assert_eq!(
            s.limit_at(berlin("2026-11-29T22:59:00Z")),
            Limit::Off,
            "Sun 23:59 CET"
        );
        assert_eq!(
            s.limit_at(berlin("2026-11-29T23:30:00Z")),
            Limit::Rate(MIB),
            "Mon 00:30 CET"
        );
    }

    #[test]
    fn week_rows_and_next_change() {
        let Schedule::Timetable(tt) =
            Schedule::parse("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off").unwrap()
        else {
            panic!()
        };
        let rows: Vec<String> = tt
            .week_rows()
            .iter()
            .map(|(d, f, t, l)| format!("{d} {}-{} {l}", hhmm(*f), hhmm(*t)))
            .collect();
        assert_eq!(
            rows,
            [
                "Mon 00:00-24:00 512 B/s",
                "Tue 00:00-24:00 512 B/s",
                "Wed 00:00-24:00 512 B/s",
                "Thu 00:00-24:00 512 B/s",
                "Fri 00:00-23:59 512 B/s",
                "Fri 23:59-24:00 10.0 MiB/s",
                "Sat 00:00-10:00 10.0 MiB/s",
                "Sat 10:00-24:00 1.0 MiB/s",
                "Sun 00:00-20:00 1.0 MiB/s",
                "Sun 20:00-24:00 off",
            ]
        );
        assert_eq!(
            tt.next_change(at(1, 14, 3) + 7),
            Some((at(4, 23, 59), Limit::Rate(10 * MIB)))
        );
        assert_eq!(
            tt.next_change(at(6, 21, 0)),
            Some((0, Limit::Rate(512))),
            "over the week's end"
        );
        let Schedule::Timetable(one) = Schedule::parse("12:00,1M").unwrap() else {
            panic!()
        };
        assert_eq!(one.next_change(0), None);
        insta::assert_snapshot!(tt.week_table(at(1, 14, 3) + 7, "Europe/Berlin", "  "));
    }

    #[test]
    fn auto_with_and_without_a_ceiling_and_in_a_timetable() {
        let m = 1u64 << 20;
        for (text, want) in [
            ("auto", Limit::Auto(None)),
            ("AUTO", Limit::Auto(None)),
            (" auto ", Limit::Auto(None)),
            ("auto, 60M", Limit::Auto(Some(60 * m))),
            ("auto,60M", Limit::Auto(Some(60 * m))),
            ("Auto ,60MB/s", Limit::Auto(Some(60_000_000))),
            ("auto, off", Limit::Auto(None)),
        ] {
            assert_eq!(Schedule::parse(text), Ok(Schedule::Fixed(want)), "{text}");
        }
        assert_eq!(Limit::Auto(Some(60 * m)).to_string(), "auto, 60.0 MiB/s");
        assert_eq!(Limit::Auto(None).to_string(), "auto");
        assert_eq!(Limit::Auto(Some(60 * m)).audit_text(), "auto, 62914560 B/s");
        let Ok(Schedule::Timetable(tt)) = Schedule::parse("08:00,auto 19:00,off Sat-08:00,auto,5M")
        else {
            panic!("a timetable")
        };
        assert_eq!(tt.limit_at(9 * 3600), Limit::Auto(None));
        assert_eq!(tt.limit_at(20 * 3600), Limit::Off);
        assert_eq!(
            tt.limit_at(5 * DAY_SECS + 9 * 3600),
            Limit::Auto(Some(5 * m))
        );
        for bad in ["auto 60M", "autoo", "auto, 60Q", "auto,", "08:00,auto 60M"] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains("auto") || e.contains("60"), "{bad}: {e}");
        }
        assert!(Schedule::parse("autox").unwrap_err().contains("`autox`"));
    }

    #[test]
    fn a_ceiling_in_an_entry_may_follow_a_space_as_the_issue_writes_it() {
        let tight = Schedule::parse("08:00,auto,5M 19:00,off Sat-08:00,20M").unwrap();
        for spaced in [
            "08:00,auto, 5M 19:00,off Sat-08:00,20M",
            "08:00, auto, 5M  19:00, off Sat-08:00 ,20M",
            "08:00,auto ,5M 19:00,off Sat-08:00,20M",
        ] {
            assert_eq!(Schedule::parse(spaced), Ok(tight.clone()), "{spaced}");
        }
        // An entry's text in an error is the entry as joined.
        let e = Schedule::parse("08:00,auto, 5Q 19:00,off").unwrap_err();
        assert!(e.contains("`08:00,auto,5Q`"), "{e}");
        // Without a comma between them, two words are two entries.
        assert!(
            Schedule::parse("08:00,auto 5M")
                .unwrap_err()
                .contains("`5M`")
        );
    }
}
