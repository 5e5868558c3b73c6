//! `jobrun verify`'s records: the verify columns of `files` and the
//! `verifies` table (one row per verify).

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::compact;
use super::keyed::{self, RowKey};
use super::{Result, RowId, StateDb, Tx};

/// What a verify found for one row (`files.verify_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyResult {
    Ok,
    Mismatch,
    Missing,
    /// The destination file could not be read (an I/O error): nothing is
    /// known about its content.
    Failed,
}

impl VerifyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Mismatch => "mismatch",
            Self::Missing => "missing",
            Self::Failed => "failed",
        }
    }
}

/// A synced file as `verify` checks it: with the hash recorded when jobrun
/// read its source, or without one (*adopted*: found in place by a scan,
/// taken as synced on size and mtime, never read by jobrun).
#[derive(Debug, Clone)]
pub struct VerifyRow {
    pub id: RowId,
    /// Where the row is (the cursor of [`StateDb::verify_page`]).
    pub key: RowKey,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub size: u64,
    pub modified_ns: i128,
    /// The recorded hash (lowercase hex) and its algorithm; `None` for an
    /// adopted file.
    pub recorded: Option<(String, String)>,
}

impl VerifyRow {
    /// Adopted: no recorded hash, so both sides are read and compared.
    pub fn adopted(&self) -> bool {
        self.recorded.is_none()
    }

    /// Bytes a verify reads for it: the destination, and for an adopted
    /// file the source too.
    pub fn to_read(&self) -> u64 {
        if self.adopted() {
            self.size.saturating_mul(2)
        } else {
            self.size
        }
    }
}

/// One row of the `verifies` table: one `jobrun verify`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyRecord {
    pub id: i64,
    pub started_at: String,
    /// `started_at` in ns since the epoch (a resumed verify skips what its
    /// unfinished predecessor found `ok` after this instant).
    pub started_ns: i64,
    pub ended_at: Option<String>,
    /// Rows found `ok` after this instant were skipped (`--since`, or the
    /// start of the unfinished verify this one resumed).
    pub since_ns: Option<i64>,
    /// `--sample` percentage and its seed.
    pub sample: Option<f64>,
    pub seed: Option<u64>,
    pub repair: bool,
    /// Files checked and bytes read by this verify.
    pub files: u64,
    pub bytes: u64,
    pub ok: u64,
    pub mismatched: u64,
    pub missing: u64,
    pub failed: u64,
    /// Synced files skipped: found `ok` since `since_ns`, or left out of
    /// the sample.
    pub skipped: u64,
    /// Synced files without a recorded hash when the verify started
    /// (adopted: found already in place by a scan, never read by jobrun).
    pub no_hash: u64,
    /// Adopted files this verify compared with their source byte for byte
    /// (both sides read), and how many of them differed.
    pub adopted: u64,
    pub adopted_mismatched: u64,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

/// The rows a verify checks: synced files, except those found `ok` at or
/// after `?1` for the hash they still carry. Adopted files (no hash) are
/// always checked: one found equal to its source gets the source's hash.
const VERIFY_TODO: &str = "e.status = 1 AND e.kind = 0
    AND NOT (e.hash IS NOT NULL AND x.verify_result IS 'ok' AND x.verified_at >= ?1
             AND x.verified_hash IS e.hash)";

impl StateDb {
    /// Calls `f(id, size, adopted)` for every row a verify with
    /// `since_ns` would check, in key order, from one statement (constant
    /// memory).
    pub fn verify_todo_sizes(
        &self,
        since_ns: i64,
        mut f: impl FnMut(RowId, u64, bool),
    ) -> Result<()> {
        let mut st = self.conn.prepare(&format!(
            "SELECT e.id, e.size, e.hash IS NULL
             FROM entries e LEFT JOIN entry_extra x ON x.id = e.id WHERE {VERIFY_TODO}"
        ))?;
        let mut rows = st.query([since_ns])?;
        while let Some(r) = rows.next()? {
            f(RowId(r.get(0)?), r.get::<_, i64>(1)? as u64, r.get(2)?);
        }
        Ok(())
    }

    /// Up to `limit` rows to verify after row `after`, in key order.
    pub fn verify_page(
        &self,
        since_ns: i64,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<VerifyRow>> {
        let start = RowKey {
            folder: -1,
            name: Vec::new(),
        };
        let after = after.unwrap_or(&start);
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {cols} FROM {from}
             WHERE {VERIFY_TODO} AND (e.folder, e.name) > (?2, ?3)
             ORDER BY e.folder, e.name LIMIT ?4",
            cols = keyed::COLS,
            from = keyed::FROM,
        ))?;
        let rows = st.query_map(
            params![since_ns, after.folder, after.name_value(), limit as i64],
            |r| {
                let d = keyed::Decoded::read(r, 0)?;
                let (source, dest) = self.paths_of(&d);
                Ok(VerifyRow {
                    id: RowId(d.id),
                    key: d.key,
                    source,
                    dest,
                    size: d.size as u64,
                    modified_ns: d.modified,
                    recorded: d.hash.map(|h| (h, d.algorithm.unwrap_or_default())),
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last verify, if it did not get through its plan: killed (no end
    /// recorded), stopped by a signal (130) or aborted (4).
    pub fn unfinished_verify(&self) -> Result<Option<VerifyRecord>> {
        Ok(self
            .last_verify()?
            .filter(|v| v.ended_at.is_none() || matches!(v.exit_code, Some(4 | 130))))
    }

    pub fn start_verify(&self, v: &VerifyRecord) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO verifies (started_at, started_ns, since_ns, sample, seed, repair)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                v.started_at,
                v.started_ns,
                v.since_ns,
                v.sample,
                v.seed.map(|s| s as i64),
                v.repair
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Brings the `verifies` row up to date (counts; end, exit and error
    /// once known). Inside a batch it is committed with the rows it counts.
    pub fn update_verify(&self, v: &VerifyRecord) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE verifies SET ended_at = ?2, files = ?3, bytes = ?4, ok = ?5,
                    mismatched = ?6, missing = ?7, failed = ?8, skipped = ?9, no_hash = ?10,
                    exit_code = ?11, error = ?12, adopted = ?13, adopted_mismatched = ?14
                 WHERE id = ?1",
            )?
            .execute(params![
                v.id,
                v.ended_at,
                v.files as i64,
                v.bytes as i64,
                v.ok as i64,
                v.mismatched as i64,
                v.missing as i64,
                v.failed as i64,
                v.skipped as i64,
                v.no_hash as i64,
                v.exit_code,
                v.error,
                v.adopted as i64,
                v.adopted_mismatched as i64
            ])?;
        Ok(())
    }

    /// The newest `verifies` row; `None` when the job was never verified
    /// (or the DB predates verify: `status` reads without migrating).
    pub fn last_verify(&self) -> Result<Option<VerifyRecord>> {
        let version = self.schema_version()?;
        if version < 3 {
            return Ok(None);
        }
        // `status` reads an older DB without migrating it.
        let adopted = if version < 5 {
            "0, 0"
        } else {
            "adopted, adopted_mismatched"
        };
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT id, started_at, started_ns, ended_at, since_ns, sample, seed, repair,
                        files, bytes, ok, mismatched, missing, failed, skipped, no_hash,
                        exit_code, error, {adopted}
                     FROM verifies ORDER BY id DESC LIMIT 1"
                ),
                [],
                |r| {
                    let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
                    Ok(VerifyRecord {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        started_ns: r.get(2)?,
                        ended_at: r.get(3)?,
                        since_ns: r.get(4)?,
                        sample: r.get(5)?,
                        seed: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
                        repair: r.get(7)?,
                        files: n(8)?,
                        bytes: n(9)?,
                        ok: n(10)?,
                        mismatched: n(11)?,
                        missing: n(12)?,
                        failed: n(13)?,
                        skipped: n(14)?,
                        no_hash: n(15)?,
                        exit_code: r.get(16)?,
                        error: r.get(17)?,
                        adopted: n(18)?,
                        adopted_mismatched: n(19)?,
                    })
                },
            )
            .optional()?)
    }
}

impl Tx<'_> {
    /// Records what a verify found for row `id` at `key` (compared with
    /// `hash`), at `at_ns`. `repair` with a mismatch or a missing file puts
    /// the row back to `pending`, so the next run copies it again.
    pub fn record_verify(
        &self,
        id: RowId,
        key: &RowKey,
        hash: &str,
        result: VerifyResult,
        at_ns: i64,
        repair: bool,
    ) -> Result<()> {
        let back = repair && matches!(result, VerifyResult::Mismatch | VerifyResult::Missing);
        if back {
            self.conn
                .prepare_cached("UPDATE entries SET status = 0 WHERE folder = ?1 AND name = ?2")?
                .execute(params![key.folder, key.name_value()])?;
        }
        self.record_found(id, key, Some(hash), result, at_ns, back)
    }

    /// The verify columns of row `id`.
    fn record_found(
        &self,
        id: RowId,
        key: &RowKey,
        hash: Option<&str>,
        result: VerifyResult,
        at_ns: i64,
        back: bool,
    ) -> Result<()> {
        keyed::Extra::change(&self.conn, id.0, key, |x| {
            x.verified_at = Some(at_ns);
            x.verify_result = Some(result.as_str().to_owned());
            x.verified_hash = hash.map(compact::hash_value);
            if back {
                x.error = None;
            }
        })?;
        Ok(())
    }

    /// Records what a verify found for the adopted row `id` at `key` (no
    /// recorded hash): with `ok`, `source_hash` (the source's hash and
    /// algorithm, read while both sides were compared) becomes the row's
    /// hash, so the next verify reads the destination only. Other results
    /// record no hash; `repair` as in [`Tx::record_verify`].
    pub fn record_adopted(
        &self,
        id: RowId,
        key: &RowKey,
        source_hash: Option<(&str, &str)>,
        result: VerifyResult,
        at_ns: i64,
        repair: bool,
    ) -> Result<()> {
        let back = repair && matches!(result, VerifyResult::Mismatch | VerifyResult::Missing);
        let hash = source_hash.filter(|_| result == VerifyResult::Ok);
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE entries SET hash = ?3, status = CASE WHEN ?4 THEN 0 ELSE status END
                 WHERE folder = ?1 AND name = ?2 AND hash IS NULL",
            )?
            .execute(params![
                key.folder,
                key.name_value(),
                compact::hash_opt(hash.map(|h| h.0)),
                back
            ])?;
        if changed > 0 {
            keyed::Extra::change(&self.conn, id.0, key, |x| {
                x.algorithm = hash
                    .map(|h| h.1)
                    .filter(|a| *a != "sha256")
                    .map(str::to_owned);
            })?;
            self.record_found(id, key, hash.map(|h| h.0), result, at_ns, back)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::schema::MIGRATIONS;
    use camino::Utf8PathBuf;
    use rusqlite::Connection;

    #[test]
    fn a_v2_db_keeps_its_rows_when_verify_columns_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("old.db")).unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            MIGRATIONS
                .to_version(&mut conn, 2)
                .expect("the v2 schema as the previous release left it");
            conn.execute(
                "INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                    changed_ns, mode, uid, gid, hash, hash_algorithm, status, scan_id)
                 VALUES ('/s/a', '/d/a', 'file', 1, 2, 3, 4, 420, 0, 0, 'ab', 'sha256', 'synced', 1)",
                [],
            )
            .unwrap();
        }
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        assert!(ro.last_verify().unwrap().is_none(), "status reads a v2 DB");
        assert_eq!(ro.synced_files().unwrap(), (1, 0), "counted row by row");
        assert_eq!(ro.status_counts().unwrap()[1].bytes, 1);
        drop(ro);
        let db = StateDb::open(&path).unwrap();
        assert_eq!(
            db.schema_version().unwrap(),
            crate::db::schema::LATEST,
            "migrated to the latest"
        );
        assert_eq!(db.synced_files().unwrap(), (1, 0), "totals filled in place");
        assert_eq!(
            (db.count_files().unwrap(), db.backlog().unwrap()),
            (1, (0, 0))
        );
        let mut todo = Vec::new();
        db.verify_todo_sizes(0, |id, size, adopted| todo.push((id, size, adopted)))
            .unwrap();
        assert_eq!(todo, vec![(RowId(1), 1, false)]);
        let rows = db.verify_page(0, None, 10).unwrap();
        let tx = db.begin().unwrap();
        tx.record_verify(rows[0].id, &rows[0].key, "ab", VerifyResult::Ok, 10, false)
            .unwrap();
        tx.commit().unwrap();
        let mut todo = Vec::new();
        db.verify_todo_sizes(10, |id, _, _| todo.push(id)).unwrap();
        assert!(todo.is_empty(), "found ok at 10: skipped since 10");
        db.verify_todo_sizes(11, |id, _, _| todo.push(id)).unwrap();
        assert_eq!(todo, vec![RowId(1)]);
    }

    #[test]
    fn an_adopted_row_gets_the_source_hash_only_when_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("v4.db")).unwrap();
        {
            // As the previous release left it: a verify without the
            // adopted columns, and two rows adopted without a hash.
            let mut conn = Connection::open(&path).unwrap();
            MIGRATIONS.to_version(&mut conn, 4).unwrap();
            conn.execute_batch(
                "INSERT INTO verifies (started_at, started_ns, files, ok, exit_code)
                 VALUES ('2026-01-01T00:00:00Z', 1, 7, 7, 0);
                 INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                    changed_ns, mode, uid, gid, status, scan_id)
                 VALUES ('/s/a', '/d/a', 'file', 1, 2, 3, 4, 420, 0, 0, 'synced', 1),
                        ('/s/b', '/d/b', 'file', 1, 2, 3, 4, 420, 0, 0, 'synced', 1);",
            )
            .unwrap();
        }
        let ro = StateDb::open_existing_read_only(&path).unwrap().unwrap();
        let last = ro.last_verify().unwrap().expect("status reads a v4 DB");
        assert_eq!(
            (last.files, last.adopted, last.adopted_mismatched),
            (7, 0, 0)
        );
        drop(ro);
        let db = StateDb::open(&path).unwrap();
        let mut todo = Vec::new();
        db.verify_todo_sizes(i64::MAX, |id, _, adopted| todo.push((id, adopted)))
            .unwrap();
        assert_eq!(todo, vec![(RowId(1), true), (RowId(2), true)]);
        let rows = db.verify_page(i64::MAX, None, 10).unwrap();
        let tx = db.begin().unwrap();
        tx.record_adopted(
            rows[0].id,
            &rows[0].key,
            Some(("ab", "sha256")),
            VerifyResult::Ok,
            10,
            true,
        )
        .unwrap();
        tx.record_adopted(
            rows[1].id,
            &rows[1].key,
            Some(("cd", "sha256")),
            VerifyResult::Mismatch,
            10,
            true,
        )
        .unwrap();
        tx.commit().unwrap();
        let row = |id: i64| {
            db.conn
                .query_row(
                    "SELECT hash, hash_algorithm, verified_hash, verify_result, status
                     FROM files WHERE rowid = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    },
                )
                .unwrap()
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            row(1),
            (s("ab"), s("sha256"), s("ab"), "ok".into(), "synced".into())
        );
        assert_eq!(
            row(2),
            (None, None, None, "mismatch".into(), "pending".into()),
            "no hash for a copy that differs; --repair puts it back"
        );
        // Found ok at 10 with the hash it now carries: skipped since 10.
        let mut todo = Vec::new();
        db.verify_todo_sizes(10, |id, _, _| todo.push(id)).unwrap();
        assert!(todo.is_empty(), "{todo:?}");
    }
}
