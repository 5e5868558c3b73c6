//! The `runs` table: one row per run, kept up to date by each batch commit.

use rusqlite::{Connection, params};

use super::{Result, StateDb};

/// One row of the `runs` table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub mode: String,
    pub files_done: u64,
    pub bytes_done: u64,
    pub failures: u64,
    pub exit_code: Option<i32>,
    /// A `--dry-run`: nothing was copied or deleted.
    pub dry_run: bool,
    /// The fatal condition that ended the run (exit 4, or 130 for a
    /// stopped scan); `None` otherwise.
    pub error: Option<String>,
    /// The limit in force, as `run_end` says it (`2097152 B/s`, `off`,
    /// `pause`, `auto, 9751756 B/s`): the last one while the run goes, the
    /// one it ended with after. `None` for runs before schema v11.
    pub bwlimit: Option<String>,
}

/// Reads a run's counters `(files_done, bytes_done, failures)`; see
/// [`StateDb::track_run`].
pub type RunCounts = Box<dyn Fn() -> (u64, u64, u64) + Send>;

/// Reads the limit in force for the run's row; see [`StateDb::track_limit`].
pub type RunLimit = Box<dyn Fn() -> String + Send>;

/// Brings run `id`'s counters `(files_done, bytes_done, failures)` up to
/// date, inside the transaction that commits the rows they count.
pub(super) fn record_progress(
    conn: &Connection,
    id: i64,
    counts: (u64, u64, u64),
    limit: Option<&str>,
) -> Result<()> {
    let (files, bytes, failures) = counts;
    conn.prepare_cached(
        "UPDATE runs SET files_done = ?2, bytes_done = ?3, failures = ?4,
             bwlimit = coalesce(?5, bwlimit)
         WHERE id = ?1 AND ended_at IS NULL",
    )?
    .execute(params![
        id,
        files as i64,
        bytes as i64,
        failures as i64,
        limit
    ])?;
    Ok(())
}

impl StateDb {
    pub fn start_run(&self, started_at: &str, mode: &str, dry_run: bool) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (started_at, mode, dry_run) VALUES (?1, ?2, ?3)",
            params![started_at, mode, dry_run],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// From now on every batch commit also records run `id`'s progress
    /// (read from `counts`), so a run killed before [`Self::finish_run`]
    /// still counts in the totals, and `status` shows a running run's
    /// progress. Costs one small UPDATE per batch.
    pub fn track_run(&mut self, id: i64, counts: RunCounts) {
        self.run = Some((id, counts));
        self.committed.set((0, 0, 0));
    }

    /// The tracked run's counters `(files_done, bytes_done, failures)` as
    /// the last commit recorded them with the rows they count: what the
    /// run's summary, `run_end` and `runs` row say, whatever happened to
    /// outcomes counted after it (a batch whose commit failed).
    /// From now on every batch commit also records the limit in force
    /// (read from `limit`) in the tracked run's row, for `status`.
    pub fn track_limit(&mut self, limit: RunLimit) {
        self.run_limit = Some(limit);
    }

    pub fn committed_counts(&self) -> (u64, u64, u64) {
        self.committed.get()
    }

    pub fn finish_run(&mut self, row: &RunRow) -> Result<()> {
        self.run = None;
        self.run_limit = None;
        self.check_file()?;
        self.untrack_in_flight()?;
        self.conn.execute(
            "UPDATE runs SET ended_at = ?2, files_done = ?3, bytes_done = ?4, failures = ?5,
                 exit_code = ?6, error = ?7, bwlimit = coalesce(?8, bwlimit)
             WHERE id = ?1",
            params![
                row.id,
                row.ended_at,
                row.files_done as i64,
                row.bytes_done as i64,
                row.failures as i64,
                row.exit_code,
                row.error,
                row.bwlimit
            ],
        )?;
        Ok(())
    }

    /// The last `n` runs, newest first.
    pub fn last_runs(&self, n: usize) -> Result<Vec<RunRow>> {
        // `status` reads without migrating: a DB last used by an older
        // jobrun has no v2 columns yet.
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let extra = match version {
            11.. => "dry_run, error, bwlimit",
            2.. => "dry_run, error, NULL",
            _ => "0, NULL, NULL",
        };
        let mut st = self.conn.prepare(&format!(
            "SELECT id, started_at, ended_at, mode, files_done, bytes_done, failures, exit_code,
                    {extra}
             FROM runs ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map([n as i64], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                ended_at: r.get(2)?,
                mode: r.get(3)?,
                files_done: r.get::<_, i64>(4)? as u64,
                bytes_done: r.get::<_, i64>(5)? as u64,
                failures: r.get::<_, i64>(6)? as u64,
                exit_code: r.get(7)?,
                dry_run: r.get(8)?,
                error: r.get(9)?,
                bwlimit: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Total bytes copied by all runs so far (progress "in total").
    pub fn bytes_copied_all_runs(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(sum(bytes_done), 0) FROM runs", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::schema::MIGRATIONS;
    use camino::Utf8PathBuf;
    use rusqlite::Connection;

    /// A DB last used by the version before `runs.dry_run`/`runs.error`:
    /// `status` reads it as it is, a run migrates it, old rows keep.
    #[test]
    fn a_v1_db_reads_as_it_is_and_migrates_keeping_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("v1.db")).unwrap();
        {
            let mut c = Connection::open(&path).unwrap();
            MIGRATIONS.to_version(&mut c, 1).unwrap();
            c.execute(
                "INSERT INTO runs (started_at, mode, files_done, exit_code) VALUES ('t1', 'scan', 3, 0)",
                [],
            )
            .unwrap();
        }
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        let runs = ro.last_runs(5).unwrap();
        assert_eq!((runs[0].files_done, runs[0].dry_run), (3, false));
        assert_eq!(runs[0].error, None);
        drop(ro);
        let mut db = StateDb::open(&path).unwrap();
        assert_eq!(db.last_runs(5).unwrap()[0].files_done, 3);
        let id = db.start_run("t2", "resume", true).unwrap();
        db.finish_run(&RunRow {
            id,
            started_at: String::new(),
            ended_at: Some("t3".into()),
            mode: "resume".into(),
            files_done: 0,
            bytes_done: 0,
            failures: 0,
            exit_code: Some(4),
            dry_run: true,
            error: Some("cannot create destination root".into()),
            bwlimit: None,
        })
        .unwrap();
        let runs = db.last_runs(5).unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].dry_run && !runs[1].dry_run);
        assert_eq!(
            runs[0].error.as_deref(),
            Some("cannot create destination root")
        );
        assert_eq!(runs[1].error, None);
    }
}
