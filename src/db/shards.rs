//! What the shards of a job (`shard`) read from and gather into DBs: the
//! sizes of an earlier scan (the plan), and the union of the shard DBs'
//! rows in the job's own DB (the one mirror after every shard finished).

use std::path::{Path, PathBuf};

use camino::Utf8Path;
use rusqlite::params;

use super::times::Ns;
use super::{Result, StateDb, compact, keyed, kind_of, path_from};
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

    /// Calls `f(source_path, kind, size)` for every row, in key order,
    /// from one statement.
    pub fn for_each_source_row(&self, mut f: impl FnMut(&Path, EntryKind, u64)) -> Result<()> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {} FROM {}", keyed::COLS, keyed::FROM))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let d = keyed::Decoded::read(r, 0)?;
            f(
                &self.paths_of(&d).0,
                kind_of(rusqlite::types::ValueRef::Integer(d.kind))?,
                d.size as u64,
            );
        }
        Ok(())
    }

    /// Replaces the rows and recorded mount points with the union of the
    /// shard DBs' (a path two shards recorded, a folder above both their
    /// parts, once), and records the sum of their scans' unreadable source
    /// entries: the DB the job's one mirror runs on.
    pub fn gather_shards(&mut self, shards: &[&Utf8Path]) -> Result<()> {
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
        self.conn.execute("DELETE FROM entry_extra", [])?;
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
                self.copy_shard_rows()?;
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

    /// Adds the attached shard's rows (a path already here kept as it is).
    fn copy_shard_rows(&self) -> Result<()> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {}, x.error, x.fail_streak, x.verified_at, x.verify_result, x.verified_hash
             FROM shard.entries e LEFT JOIN shard.folders f ON f.id = e.folder
                 LEFT JOIN shard.entry_extra x ON x.id = e.id",
            keyed::COLS
        ))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let d = keyed::Decoded::read(r, 0)?;
            let extra = keyed::Extra {
                dest: d
                    .dest
                    .as_deref()
                    .map(|p| compact::value_of(super::path_value(p))),
                error: r.get(23)?,
                fail_streak: r.get::<_, Option<i64>>(24)?.unwrap_or(0),
                verified_at: r.get(25)?,
                verify_result: r.get(26)?,
                verified_hash: r.get(27)?,
                link: d.link,
                algorithm: d
                    .algorithm
                    .clone()
                    .filter(|a| d.hash.is_some() && a != "sha256"),
                after_size: d.after.map(|(s, _)| s).filter(|s| *s != d.size),
            };
            keyed::insert_decoded(&self.conn, &d, &extra)?;
        }
        Ok(())
    }

    /// Puts back the verify's findings (and the hash a verify learned of
    /// an adopted file) on the gathered rows that still describe the same
    /// copy: synced, same source size and mtime, same size and mtime after
    /// the copy, same hash or none yet. A shard's newer copy starts afresh.
    fn keep_findings(&self) -> Result<()> {
        type Found = (
            PathBuf,
            i64,
            Ns,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<Ns>,
            i64,
            String,
            Option<String>,
        );
        let found: Vec<Found> = self
            .conn
            .prepare(
                "SELECT source_path, size, modified_ns, hash, hash_algorithm, after_copy_size,
                        after_copy_modified_ns, verified_at, verify_result, verified_hash
                 FROM temp.found",
            )?
            .query_map([], |r| {
                Ok((
                    path_from(r.get_ref(0)?)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        self.conn.execute_batch("DROP TABLE temp.found;")?;
        for (source, size, m, hash, alg, asize, am, at, result, vhash) in found {
            let Some(d) = self.decoded(&source)? else {
                continue;
            };
            let x = keyed::Extra::load(&self.conn, d.id)?;
            let after = d.after.map(|(s, t)| (s, Ns(t)));
            let same = d.status == 1
                && x.verified_at.is_none()
                && d.size == size
                && d.modified == m.0
                && after == asize.zip(am)
                && (d.hash == hash
                    || (d.hash.is_none() && result == "ok" && vhash.is_some() && vhash == hash));
            if !same {
                continue;
            }
            if d.hash.is_none() && hash.is_some() {
                self.conn
                    .prepare_cached("UPDATE entries SET hash = ?3 WHERE folder = ?1 AND name = ?2")?
                    .execute(params![
                        d.key.folder,
                        d.key.name_value(),
                        compact::hash_opt(hash.as_deref())
                    ])?;
            }
            let learned = d.hash.is_none() && hash.is_some();
            keyed::Extra::change(&self.conn, d.id, &d.key, |x| {
                if learned {
                    x.algorithm = alg.clone().filter(|a| a != "sha256");
                }
                x.verified_at = Some(at);
                x.verify_result = Some(result.clone());
                x.verified_hash = vhash.as_deref().map(compact::hash_value);
            })?;
        }
        Ok(())
    }
}
