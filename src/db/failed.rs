//! Failed rows as `status` reports them: a few with their errors, the
//! longest runs-in-a-row first (`fail_streak`, v8: one more each time a row
//! is marked failed, 0 once synced; see `files`), and how many keep failing.

use std::path::PathBuf;

use super::path_from;
use super::{Result, StateDb, keyed};

/// SQL: the failed rows with their extra columns (`x`), by `extra_failed`.
const FAILED: &str = "entry_extra x JOIN entries e ON e.folder = x.folder AND e.name = x.name
    WHERE x.error IS NOT NULL AND e.status = 2";

impl StateDb {
    /// Up to `n` failed rows with their error text and the runs in a row
    /// they failed, for `status`: the longest streaks first.
    /// (`status` reads without migrating: before v8 each counts 1.)
    pub fn failed_sample(&self, n: usize) -> Result<Vec<(PathBuf, String, u64)>> {
        let version = self.schema_version()?;
        if version >= 13 {
            return self.failed_sample_keyed(n);
        }
        let streak = self.fail_streak_column()?;
        let mut st = self.conn.prepare(&if version >= 12 {
            "SELECT path, coalesce(error, ''), fail_streak FROM entries
             WHERE status = 2 ORDER BY fail_streak DESC, rowid LIMIT ?1"
                .to_owned()
        } else {
            format!(
                "SELECT source_path, coalesce(error, ''), {streak} FROM files
                 WHERE status = 'failed' ORDER BY {streak} DESC, rowid LIMIT ?1",
            )
        })?;
        let rows = st.query_map([n as i64], |r| {
            Ok((
                if version >= 12 {
                    self.source_of(r.get_ref(0)?)?
                } else {
                    path_from(r.get_ref(0)?)?
                },
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Failed rows that failed in 2 or more runs in a row, and the longest
    /// streak of any.
    pub fn fail_streaks(&self) -> Result<(u64, u64)> {
        if self.schema_version()? >= 13 {
            // Lookups of `extra_failed`, not a pass over the failed rows.
            let (n, max): (i64, Option<i64>) = self.conn.query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM {FAILED} AND x.fail_streak >= 2),
                            (SELECT x.fail_streak FROM {FAILED}
                             ORDER BY x.fail_streak DESC, x.id LIMIT 1)"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            return Ok((n as u64, max.unwrap_or(0) as u64));
        }
        if self.schema_version()? >= 12 {
            // Two lookups of `entries_failed`, not a pass over the failed rows.
            let (n, max): (i64, Option<i64>) = self.conn.query_row(
                "SELECT (SELECT count(*) FROM entries WHERE status = 2 AND fail_streak >= 2),
                        (SELECT max(fail_streak) FROM entries WHERE status = 2)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            return Ok((n as u64, max.unwrap_or(0) as u64));
        }
        let streak = self.fail_streak_column()?;
        let rows = "files WHERE status = 'failed'";
        Ok(self.conn.query_row(
            &format!(
                "SELECT count(CASE WHEN {streak} >= 2 THEN 1 END), coalesce(max({streak}), 0)
                 FROM {rows}"
            ),
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// [`StateDb::failed_sample`] on v13 rows: by `extra_failed`.
    fn failed_sample_keyed(&self, n: usize) -> Result<Vec<(PathBuf, String, u64)>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {cols}, xf.error, xf.fail_streak
             FROM entry_extra xf JOIN entries e ON e.folder = xf.folder AND e.name = xf.name
                 LEFT JOIN folders f ON f.id = e.folder LEFT JOIN entry_extra x ON x.id = e.id
             WHERE xf.error IS NOT NULL AND e.status = 2
             ORDER BY xf.fail_streak DESC, xf.id LIMIT ?1",
            cols = keyed::COLS,
        ))?;
        let rows = st.query_map([n as i64], |r| {
            let d = keyed::Decoded::read(r, 0)?;
            Ok((self.paths_of(&d).0, r.get(23)?, r.get::<_, i64>(24)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The `fail_streak` column, or before v8 an expression that is 1 on
    /// failed rows (not the literal `1`: `ORDER BY 1` names a column).
    fn fail_streak_column(&self) -> Result<&'static str> {
        Ok(if self.schema_version()? >= 8 {
            "fail_streak"
        } else {
            "(status = 'failed')"
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::FAILED;

    use crate::db::{RowStatus, Synced};

    #[test]
    fn fail_streaks_count_runs_in_a_row_and_reset_when_synced() {
        let (_dir, _path, mut db) = crate::db::tests::temp_db();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let s1 = db.begin_scan().unwrap();
        let tx = db.begin().unwrap();
        let (a, b) = (
            crate::db::files::tests::entry("/s/a", 1, 10),
            crate::db::files::tests::entry("/s/b", 2, 20),
        );
        let ia = tx
            .insert_source(&a, Path::new("/d/a"), RowStatus::Pending, s1)
            .unwrap();
        let ib = tx
            .insert_source(&b, Path::new("/d/b"), RowStatus::Pending, s1)
            .unwrap();
        for _ in 0..3 {
            tx.mark_failed(ia, "changed").unwrap();
        }
        assert!(
            tx.mark_failed_path(Path::new("/s/b"), "unreadable")
                .unwrap()
        );
        tx.commit().unwrap();
        assert_eq!(db.fail_streaks().unwrap(), (1, 3));
        let sample = db.failed_sample(5).unwrap();
        assert_eq!(
            sample.iter().map(|s| s.2).collect::<Vec<_>>(),
            [3, 1],
            "longest streak first"
        );
        // Synced by the transfer, or found in place by a scan: reset.
        let tx = db.begin().unwrap();
        tx.mark_synced(&Synced {
            id: ia,
            hash: Some("h"),
            algorithm: Some("sha256"),
            size: 1,
            modified_ns: 10,
            changed_ns: Some(11),
            after_copy: None,
        })
        .unwrap();
        tx.update_source(ib, &b, RowStatus::Synced, true, s1)
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(db.fail_streaks().unwrap(), (0, 0));
        let streaks: Vec<(i64, i64)> = db
            .conn
            .prepare("SELECT fail_streak, changed_ns FROM files ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(streaks, [(0, 11), (0, 20)], "the ctime read is recorded");
    }

    /// `status` reads the failed rows through their index, never all of
    /// them (500,000 failed rows at 50M took seconds).
    #[test]
    fn the_streaks_are_read_through_their_index() {
        let (_dir, _path, db) = crate::db::tests::temp_db();
        for sql in [
            "SELECT xf.error, xf.fail_streak
             FROM entry_extra xf JOIN entries e ON e.folder = xf.folder AND e.name = xf.name
             WHERE xf.error IS NOT NULL AND e.status = 2
             ORDER BY xf.fail_streak DESC, xf.id LIMIT 5"
                .to_owned(),
            format!("SELECT count(*) FROM {FAILED} AND x.fail_streak >= 2"),
            format!("SELECT x.fail_streak FROM {FAILED} ORDER BY x.fail_streak DESC, x.id LIMIT 1"),
        ] {
            let plan: Vec<String> = db
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join(" | ");
            assert!(plan.contains("INDEX extra_failed"), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }
}
