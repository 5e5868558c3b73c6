//! The `in_flight` table: the files the running run's lanes are copying,
//! for `status` (which only reads). Rewritten at each commit of the run, in
//! the same transaction as its rows and its `runs` row; emptied when the run
//! ends. A killed run leaves its last rows behind: `status` shows them only
//! while their run holds the lock.

use std::path::PathBuf;

use rusqlite::{Connection, params};

use super::{Result, StateDb, path_from, path_value};

/// A file a lane of the running run is copying, as of the run's last commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightFile {
    pub lane: u32,
    /// As the display shows it: relative to the destination root.
    pub path: PathBuf,
    pub size: u64,
    /// Bytes written so far.
    pub done: u64,
}

/// Reads the files in flight now; see [`StateDb::track_in_flight`].
pub type InFlight = Box<dyn Fn() -> Vec<InFlightFile> + Send>;

impl StateDb {
    /// From now on every commit records run `run_id`'s files in flight, as
    /// `files` reads them. Clears what an earlier (killed) run left.
    pub fn track_in_flight(&mut self, run_id: i64, files: InFlight) -> Result<()> {
        self.conn.execute("DELETE FROM in_flight", [])?;
        self.in_flight = Some((run_id, files));
        Ok(())
    }

    pub(super) fn untrack_in_flight(&mut self) -> Result<()> {
        if self.in_flight.take().is_some() {
            self.conn.execute("DELETE FROM in_flight", [])?;
        }
        Ok(())
    }

    /// The files in flight run `run_id` recorded at its last commit, by
    /// lane; none for a DB no run of this version has used (`status` reads
    /// without migrating).
    pub fn in_flight(&self, run_id: i64) -> Result<Vec<InFlightFile>> {
        if self.schema_version()? < 4 {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare(
            "SELECT lane, path, size, done FROM in_flight WHERE run_id = ?1 ORDER BY lane",
        )?;
        let rows = st.query_map([run_id], |r| {
            Ok(InFlightFile {
                lane: r.get(0)?,
                path: path_from(r.get_ref(1)?)?,
                size: r.get::<_, i64>(2)? as u64,
                done: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Inside a commit's transaction: the tracked run's files in flight, at
/// most one row per lane.
pub(super) fn record(conn: &Connection, tracked: Option<&(i64, InFlight)>) -> Result<()> {
    let Some((run_id, files)) = tracked else {
        return Ok(());
    };
    conn.prepare_cached("DELETE FROM in_flight")?.execute([])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO in_flight (lane, run_id, path, size, done) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for f in files() {
        insert.execute(params![
            f.lane,
            run_id,
            path_value(&f.path),
            f.size as i64,
            f.done as i64
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::RunRow;

    #[test]
    fn files_in_flight_are_recorded_at_each_commit_and_cleared_at_the_end() {
        use std::os::unix::ffi::OsStrExt;
        let (_dir, path, mut db) = crate::db::tests::temp_db();
        let run = db.start_run("2026-01-01T00:00:00Z", "scan", false).unwrap();
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"caf\xe9.bin"));
        let files = vec![
            InFlightFile {
                lane: 0,
                path: "a/big.bin".into(),
                size: 200,
                done: 120,
            },
            InFlightFile {
                lane: 3,
                path: odd.clone(),
                size: 5,
                done: 0,
            },
        ];
        let shown = files.clone();
        db.track_in_flight(run, Box::new(move || shown.clone()))
            .unwrap();
        assert!(
            db.in_flight(run).unwrap().is_empty(),
            "nothing before a commit"
        );
        db.begin().unwrap().commit().unwrap();
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        assert_eq!(ro.in_flight(run).unwrap(), files, "raw names kept");
        assert!(
            ro.in_flight(run + 1).unwrap().is_empty(),
            "another run's rows are not shown"
        );
        db.finish_run(&RunRow {
            id: run,
            started_at: String::new(),
            ended_at: Some("t".into()),
            mode: "scan".into(),
            files_done: 0,
            bytes_done: 0,
            failures: 0,
            exit_code: Some(0),
            dry_run: false,
            error: None,
            bwlimit: None,
        })
        .unwrap();
        assert!(ro.in_flight(run).unwrap().is_empty());
    }
}
