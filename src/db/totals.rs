//! Running totals of `files` (v10): per (status, kind), the entries, the
//! sum of their sizes and how many carry a hash. Triggers keep them in the
//! transaction of every write to `files` (a kill loses both or neither),
//! so counts that would read every row read nine: the startup backlog,
//! `status`, `status --json`, verify's synced files. A DB before v10 (a
//! read-only `status` of an older DB) is counted row by row as before.

use super::files::{RowStatus, StatusCount};
use super::{Result, StateDb};

/// The v10 migration: the table, its nine rows filled from `files` (one
/// pass), and
/// the triggers. `status` and `kind` take three values each (the CHECKs of
/// v1), so every row exists from the start and the triggers only UPDATE.
pub(super) const V10: &str = r#"
CREATE TABLE totals (
    status  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    entries INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    hashed  INTEGER NOT NULL,
    PRIMARY KEY (status, kind)
) WITHOUT ROWID;
INSERT INTO totals (status, kind, entries, bytes, hashed)
    SELECT status, kind, count(*), coalesce(sum(size), 0), count(hash)
    FROM files GROUP BY status, kind;
INSERT OR IGNORE INTO totals (status, kind, entries, bytes, hashed)
    SELECT s.value, k.value, 0, 0, 0
    FROM json_each('["pending","synced","failed"]') s,
         json_each('["file","dir","symlink"]') k;
CREATE TRIGGER files_totals_insert AFTER INSERT ON files BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + new.size,
        hashed = hashed + (new.hash IS NOT NULL)
    WHERE status = new.status AND kind = new.kind;
END;
CREATE TRIGGER files_totals_delete AFTER DELETE ON files BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - old.size,
        hashed = hashed - (old.hash IS NOT NULL)
    WHERE status = old.status AND kind = old.kind;
END;
CREATE TRIGGER files_totals_update AFTER UPDATE OF status, kind, size, hash ON files
WHEN old.status IS NOT new.status OR old.kind IS NOT new.kind OR old.size IS NOT new.size
    OR (old.hash IS NULL) IS NOT (new.hash IS NULL)
BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - old.size,
        hashed = hashed - (old.hash IS NOT NULL)
    WHERE status = old.status AND kind = old.kind;
    UPDATE totals SET entries = entries + 1, bytes = bytes + new.size,
        hashed = hashed + (new.hash IS NOT NULL)
    WHERE status = new.status AND kind = new.kind;
END;
"#;

/// One (status, kind) total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Total {
    entries: u64,
    bytes: u64,
    hashed: u64,
}

/// The totals query, from `totals` at v10, from the rows before.
fn totals_sql(version: i64) -> &'static str {
    if version >= 10 {
        "SELECT status, kind, entries, bytes, hashed FROM totals"
    } else {
        "SELECT status, kind, count(*), coalesce(sum(size), 0), count(hash)
         FROM files GROUP BY status, kind"
    }
}

impl StateDb {
    /// `(status, kind, total)` for every pair that has rows (or a row in
    /// `totals`).
    fn totals(&self) -> Result<Vec<(String, String, Total)>> {
        let mut st = self
            .conn
            .prepare_cached(totals_sql(self.schema_version()?))?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                Total {
                    entries: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                    hashed: r.get::<_, i64>(4)? as u64,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Entries and file bytes of status `status` whose kind `kind` accepts.
    fn sum_of(&self, status: &str, kind: impl Fn(&str) -> bool) -> Result<(u64, u64)> {
        let mut out = (0, 0);
        for (s, k, t) in self.totals()? {
            if s == status && kind(&k) {
                out.0 += t.entries;
                if k == "file" {
                    out.1 += t.bytes;
                }
            }
        }
        Ok(out)
    }

    /// Pending rows (every kind: folders too) and file bytes: the backlog.
    pub fn backlog(&self) -> Result<(u64, u64)> {
        self.sum_of("pending", |_| true)
    }

    /// The transfer stage's share of the backlog: pending entries other
    /// than folders (those only get their times restored) and file bytes.
    pub fn transfer_backlog(&self) -> Result<(u64, u64)> {
        self.sum_of("pending", |k| k != "dir")
    }

    /// Files and bytes per status, always listing all three.
    pub fn status_counts(&self) -> Result<Vec<StatusCount>> {
        let mut out = Vec::new();
        for status in RowStatus::ALL {
            let (files, bytes) = self.sum_of(status.as_str(), |_| true)?;
            out.push(StatusCount {
                status,
                files,
                bytes,
            });
        }
        Ok(out)
    }

    /// Rows in `files`.
    pub fn count_files(&self) -> Result<u64> {
        Ok(self.totals()?.iter().map(|(_, _, t)| t.entries).sum())
    }

    /// Synced files: `(with a hash, without one)`.
    pub fn synced_files(&self) -> Result<(u64, u64)> {
        let t = self
            .totals()?
            .into_iter()
            .find(|(s, k, _)| s == "synced" && k == "file")
            .map_or(
                Total {
                    entries: 0,
                    bytes: 0,
                    hashed: 0,
                },
                |(_, _, t)| t,
            );
        Ok((t.hashed, t.entries - t.hashed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::files::tests::entry;
    use crate::db::{RowId, Synced};

    /// The totals as the rows say, for comparing with `totals`.
    fn counted(db: &StateDb) -> Vec<(String, String, i64, i64, i64)> {
        let q = |sql: &str| -> Vec<(String, String, i64, i64, i64)> {
            let mut st = db.conn.prepare(sql).unwrap();
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        let kept = q("SELECT status, kind, entries, bytes, hashed FROM totals
                      WHERE entries != 0 ORDER BY 1, 2");
        let rows = q(
            "SELECT status, kind, count(*), sum(size), count(hash) FROM files
                      GROUP BY 1, 2 ORDER BY 1, 2",
        );
        assert_eq!(kept, rows, "totals agree with the rows");
        kept
    }

    #[test]
    fn totals_follow_every_write_and_a_rolled_back_one_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut db =
            StateDb::open(&camino::Utf8PathBuf::try_from(dir.path().join("t.db")).unwrap())
                .unwrap();
        let tx = db.begin().unwrap();
        let mut ids = Vec::new();
        for i in 0..20_u64 {
            let status = if i % 3 == 0 {
                RowStatus::Synced
            } else {
                RowStatus::Pending
            };
            let e = entry(&format!("/s/f{i}"), i * 100, 1);
            ids.push(
                tx.insert_source(&e, std::path::Path::new(&format!("/d/f{i}")), status, 1)
                    .unwrap(),
            );
        }
        tx.commit().unwrap();
        counted(&db);
        let tx = db.begin().unwrap();
        for (n, id) in ids.iter().enumerate().take(8) {
            tx.mark_synced(&Synced {
                id: *id,
                hash: (n % 2 == 0).then_some("ab"),
                algorithm: Some("sha256"),
                size: 7,
                modified_ns: 1,
                changed_ns: None,
                after_copy: None,
            })
            .unwrap();
        }
        tx.mark_failed(ids[9], "boom").unwrap();
        let e = entry("/s/f10", 5, 2);
        tx.update_source(ids[10], &e, RowStatus::Pending, false, 2)
            .unwrap();
        tx.commit().unwrap();
        let before = counted(&db);
        // A batch that never commits (a kill) leaves rows and totals as they were.
        let tx = db.begin().unwrap();
        tx.mark_failed(ids[11], "lost").unwrap();
        tx.rollback().unwrap();
        assert_eq!(counted(&db), before);
        let n = db
            .drop_rows_where(|p, _| p.to_str().unwrap().ends_with('1'))
            .unwrap();
        assert_eq!(n, 2);
        counted(&db);
        db.drop_unseen(|id: RowId| id.get() % 2 == 0).unwrap();
        counted(&db);
        let (pending, bytes) = db.backlog().unwrap();
        let rows: (i64, i64) = db
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE status = 'pending'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((pending as i64, bytes as i64), rows);
        assert_eq!(
            db.count_files().unwrap(),
            db.conn
                .query_row("SELECT count(*) FROM files", [], |r| r.get::<_, i64>(0))
                .unwrap() as u64
        );
    }
}

/// A DB made by the release before v10 (`tests/fixtures/release-v9.db`,
/// made by `tests/fixtures/make-release-db.sh`) migrates in place: every
/// table keeps every value, and the totals are the rows'.
#[cfg(test)]
mod migrate_fixture {
    use rusqlite::types::Value;

    use super::*;

    type Dump = Vec<(String, Vec<Vec<Value>>)>;

    /// Every table's columns (as `name` lists them; a view after v12).
    fn columns(c: &rusqlite::Connection, tables: &[String]) -> Vec<(String, String)> {
        tables
            .iter()
            .map(|t| {
                let cols: Vec<String> = c
                    .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                (t.clone(), cols.join(", "))
            })
            .collect()
    }

    fn dump(c: &rusqlite::Connection, tables: &[(String, String)]) -> Dump {
        tables
            .iter()
            .map(|(t, cols)| {
                let mut st = c
                    .prepare(&format!("SELECT {cols} FROM \"{t}\" ORDER BY rowid"))
                    .unwrap();
                let n = st.column_count();
                let rows = st
                    .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                (t.clone(), rows)
            })
            .collect()
    }

    #[test]
    fn a_release_db_keeps_every_fact_through_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.db");
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-v9.db");
        std::fs::copy(fixture, &path).unwrap();
        let (tables, before, counted) = {
            let c = rusqlite::Connection::open(&path).unwrap();
            let v: i64 = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, 9, "the fixture is a v9 DB");
            let mut st = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                .unwrap();
            let tables: Vec<String> = st
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let tables = columns(&c, &tables);
            let before = dump(&c, &tables);
            let counted: Vec<(String, i64, i64)> = c
                .prepare(
                    "SELECT status, count(*), sum(CASE WHEN kind = 'file' THEN size ELSE 0 END)
                     FROM files GROUP BY 1 ORDER BY 1",
                )
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (tables, before, counted)
        };
        for (status, n) in [("pending", 4), ("synced", 12), ("failed", 2)] {
            assert!(
                counted.iter().any(|c| c.0 == status && c.1 == n),
                "the fixture holds {n} {status} rows: {counted:?}"
            );
        }
        let db = StateDb::open(&camino::Utf8PathBuf::try_from(path).unwrap()).unwrap();
        assert_eq!(db.schema_version().unwrap(), crate::db::schema::LATEST);
        // Columns added after v10 (v11: `runs.bwlimit`) come empty.
        let mut after = dump(&db.conn, &tables);
        for ((_, rows), (_, old)) in after.iter_mut().zip(&before) {
            let width = old.first().map_or(0, Vec::len);
            for r in rows {
                assert!(r[width..].iter().all(|v| *v == Value::Null), "{r:?}");
                r.truncate(width);
            }
        }
        assert_eq!(after, before, "every value of every table kept");
        let mut shown: Vec<(String, i64, i64)> = db
            .status_counts()
            .unwrap()
            .into_iter()
            .filter(|c| c.files > 0)
            .map(|c| (c.status.as_str().to_owned(), c.files as i64, c.bytes as i64))
            .collect();
        shown.sort();
        assert_eq!(shown, counted, "status reads the rows' totals");
        assert_eq!(
            db.synced_files().unwrap(),
            (9, 1),
            "one adopted file without a hash"
        );
    }
}
