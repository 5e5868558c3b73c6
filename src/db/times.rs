//! File times as SQL values, without loss: ns since the epoch as an
//! INTEGER where they fit 64 bits (1677-09-21 to 2262-04-11, every row
//! written before v10 among them), and as the text `@SECS.NNNNNNNNN`
//! (seconds and nanoseconds apart, GNU `date`'s `@` form) beyond, so a
//! source mtime of 2446-05-10 (ext4 keeps it) is stored as it is. The text
//! is no numeric literal: SQLite's INTEGER affinity keeps it as TEXT.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

const S: i128 = 1_000_000_000;

/// A file time (ns since the epoch) as it is bound and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ns(pub i128);

impl ToSql for Ns {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match i64::try_from(self.0) {
            Ok(i) => ToSqlOutput::from(i),
            Err(_) => ToSqlOutput::from(text(self.0)),
        })
    }
}

impl FromSql for Ns {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v {
            ValueRef::Integer(i) => Ok(Ns(i128::from(i))),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .ok()
                .and_then(parse)
                .map(Ns)
                .ok_or(FromSqlError::InvalidType),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// `ns` as `@SECS.NNNNNNNNN` (nanoseconds always 0 to 999999999).
pub(super) fn text(ns: i128) -> String {
    format!("@{}.{:09}", ns.div_euclid(S), ns.rem_euclid(S))
}

fn parse(t: &str) -> Option<i128> {
    let (secs, nanos) = t.strip_prefix('@')?.split_once('.')?;
    if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(i128::from(secs.parse::<i64>().ok()?) * S + nanos.parse::<i128>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_sqlite_over_any_range() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        let cases = [
            0,
            -1,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::from(i64::MAX) + 1,
            i128::from(i64::MIN) - 1,
            15_032_385_535 * S,
            -2_147_483_648 * S - 1,
            32_503_680_000 * S + 250,
        ];
        for ns in cases {
            c.execute("DELETE FROM t", []).unwrap();
            c.execute("INSERT INTO t VALUES (?1)", [Ns(ns)]).unwrap();
            let (back, ty): (Ns, String) = c
                .query_row("SELECT v, typeof(v) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!(back, Ns(ns), "{ns} stored as {ty}");
            let fits = i64::try_from(ns).is_ok();
            assert_eq!(ty, if fits { "integer" } else { "text" }, "{ns}");
            let same: bool = c
                .query_row("SELECT v = ?1 FROM t", [Ns(ns)], |r| r.get(0))
                .unwrap();
            assert!(same, "{ns}: equal in SQL");
        }
        assert_eq!(text(-S - 1), "@-2.999999999");
    }

    #[test]
    fn malformed_stored_times_are_errors_not_panics() {
        for t in ["", "@", "@1", "@1.-5", "@1.1000000000", "@x.1", "1.5"] {
            let r = Ns::column_result(ValueRef::Text(t.as_bytes()));
            assert!(r.is_err(), "{t:?}");
        }
    }
}
