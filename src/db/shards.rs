//! What the shards of a job (`shard`) read from and gather into DBs: the
//! sizes of an earlier scan (the plan), and the union of the shard DBs'
//! rows in the job's own DB (the one mirror after every shard finished).

use std::path::Path;

use camino::Utf8Path;
use rusqlite::params;

use super::{Result, StateDb, kind_of, path_from};
use crate::decide::EntryKind;

impl StateDb {
    /// Whether a scan ran and reached its end last (none ran: false).
    pub fn scan_finished(&self) -> Result<bool> {
        Ok(self.last_scan_complete()?
            && self.conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'scan_complete' AND value = '1')",
                [],
                |r| r.get::<_, bool>(0),
            )?)
    }

    /// Calls `f(source_path, kind, size)` for every row, in pages.
    pub fn for_each_source_row(&self, mut f: impl FnMut(&Path, EntryKind, u64)) -> Result<()> {
        const PAGE: i64 = 50_000;
        let mut last = 0i64;
        let mut st = self.conn.prepare(
            "SELECT rowid, source_path, kind, size FROM files WHERE rowid > ?1
             ORDER BY rowid LIMIT ?2",
        )?;
        loop {
            let mut rows = st.query(params![last, PAGE])?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                n += 1;
                last = r.get(0)?;
                f(
                    &path_from(r.get_ref(1)?)?,
                    kind_of(r.get_ref(2)?)?,
                    r.get::<_, i64>(3)? as u64,
                );
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Replaces the rows and recorded mount points with the union of the
    /// shard DBs' (a path two shards recorded, a folder above both their
    /// parts, once), and records the sum of their scans' unreadable source
    /// entries: the DB the job's one mirror runs on.
    pub fn gather_shards(&mut self, shards: &[&Utf8Path]) -> Result<()> {
        let cols: Vec<String> = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('files')")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let cols = cols.join(", ");
        // What `jobrun verify JOB.toml` found in this DB since the last
        // gather: kept below for the copies the shards did not touch.
        self.conn.execute_batch(
            "DROP TABLE IF EXISTS temp.found;
             CREATE TEMP TABLE found AS
                 SELECT source_path, size, modified_ns, hash, hash_algorithm,
                        after_copy_size, after_copy_modified_ns,
                        verified_at, verify_result, verified_hash
                 FROM main.files
                 WHERE verified_at IS NOT NULL AND status = 'synced';",
        )?;
        self.conn.execute("DELETE FROM entries", [])?;
        self.conn.execute("DELETE FROM mount_points", [])?;
        let mut errors = 0u64;
        for path in shards {
            // Read-only (an SQLite URI: `%`, `?` and `#` escaped).
            let uri = format!(
                "file:{}?mode=ro",
                path.as_str()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23")
            );
            self.conn.execute("ATTACH DATABASE ?1 AS shard", [uri])?;
            let copied = (|| -> Result<u64> {
                self.conn.execute(
                    &format!(
                        "INSERT OR IGNORE INTO main.files ({cols}) SELECT {cols} FROM shard.files"
                    ),
                    [],
                )?;
                self.conn.execute(
                    "INSERT OR IGNORE INTO main.mount_points (path, entries, gone)
                     SELECT path, entries, gone FROM shard.mount_points",
                    [],
                )?;
                let e: Option<String> = self
                    .conn
                    .query_row(
                        "SELECT value FROM shard.meta WHERE key = 'scan_source_errors'",
                        [],
                        |r| r.get(0),
                    )
                    .ok();
                Ok(e.and_then(|s| s.parse().ok()).unwrap_or(0))
            })();
            self.conn.execute("DETACH DATABASE shard", [])?;
            errors += copied?;
        }
        self.keep_findings()?;
        self.set_scan_source_errors(errors)
    }

    /// Puts back the verify's findings (and the hash a verify learned of
    /// an adopted file) on the gathered rows that still describe the same
    /// copy: synced, same source size and mtime, same size and mtime after
    /// the copy, same hash or none yet. A shard's newer copy starts afresh.
    fn keep_findings(&self) -> Result<()> {
        self.conn.execute_batch(
            "UPDATE main.files AS f
             SET verified_at = o.verified_at, verify_result = o.verify_result,
                 verified_hash = o.verified_hash,
                 hash = coalesce(f.hash, o.hash),
                 hash_algorithm = coalesce(f.hash_algorithm, o.hash_algorithm)
             FROM temp.found AS o
             WHERE o.source_path = f.source_path AND f.status = 'synced'
               AND f.verified_at IS NULL
               AND o.size = f.size AND o.modified_ns IS f.modified_ns
               AND o.after_copy_size IS f.after_copy_size
               AND o.after_copy_modified_ns IS f.after_copy_modified_ns
               AND (f.hash IS o.hash
                    OR (f.hash IS NULL AND o.verify_result = 'ok' AND o.verified_hash IS o.hash));
             DROP TABLE temp.found;",
        )?;
        Ok(())
    }
}
