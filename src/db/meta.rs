//! The `meta` table: the job's recorded roots and the state of the last scan.

use rusqlite::OptionalExtension;

use super::{Result, StateDb};

impl StateDb {
    /// A value of the `meta` table.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Sets a value of the `meta` table.
    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Starts a scan: a new scan id, and an empty destination listing.
    pub fn begin_scan(&mut self) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let last: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'scan_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let id = last.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('scan_id', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [id.to_string()],
        )?;
        tx.execute("DELETE FROM dest_entries", [])?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('scan_complete', '0')
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Records that the scan begun by [`Self::begin_scan`] reached its end.
    pub fn finish_scan(&mut self) -> Result<()> {
        self.conn.execute(
            "UPDATE meta SET value = '1' WHERE key = 'scan_complete'",
            [],
        )?;
        Ok(())
    }

    /// False when the last scan was cut short: its pending rows are then
    /// not a trustworthy backlog, and the next run scans again.
    pub fn last_scan_complete(&self) -> Result<bool> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'scan_complete'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.as_deref() != Some("0"))
    }

    /// Remembers how many source entries the current scan could not read:
    /// the mirror stage refuses to delete after an incomplete source walk,
    /// also in later runs that resume without scanning.
    pub fn set_scan_source_errors(&self, n: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('scan_source_errors', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [n.to_string()],
        )?;
        Ok(())
    }

    /// See [`Self::set_scan_source_errors`]; 0 when never recorded.
    pub fn scan_source_errors(&self) -> Result<u64> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'scan_source_errors'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }
}
