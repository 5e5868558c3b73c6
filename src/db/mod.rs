//! State DB (SPEC §4): the only module that speaks SQL. Owns the connection
//! (open, reopen, tuning), the error type, and paths as SQL values; each
//! table has its own file. SQLite in WAL mode, schema versioned by
//! rusqlite_migration (`schema`), writes batched in transactions.
//!
//! Paths are stored as full paths: TEXT when the name is valid UTF-8, a BLOB
//! of the raw bytes otherwise, so nothing is ever lost to lossy conversion.

mod files;
mod listing;
mod meta;
mod roots;
mod runs;
mod schema;
mod verifies;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use camino::{Utf8Path, Utf8PathBuf};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, params};

use schema::MIGRATIONS;

use crate::decide::EntryKind;

pub use files::{HashedFile, KnownRow, PendingFile, ScanEntry, StatusCount, Synced};
pub use listing::Listed;
pub use meta::JobRoot;
pub use runs::{RunCounts, RunRow};
pub use verifies::{VerifyRecord, VerifyResult};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open state DB `{path}`: {source}")]
    Open {
        path: Utf8PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot migrate state DB `{path}`: {source}")]
    Migrate {
        path: Utf8PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error(
        "state DB `{path}` belongs to another job: its {which} root is `{recorded}`, the manifest says `{wanted}`"
    )]
    RootsDiffer {
        path: Utf8PathBuf,
        which: &'static str,
        recorded: String,
        wanted: String,
    },
    #[error("state DB: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A path as an SQL value: TEXT when UTF-8, BLOB of the raw bytes otherwise.
pub fn path_value(p: &Path) -> Value {
    match p.to_str() {
        Some(s) => Value::Text(s.to_owned()),
        None => Value::Blob(p.as_os_str().as_bytes().to_vec()),
    }
}

/// Inverse of [`path_value`].
pub fn path_from(v: ValueRef<'_>) -> rusqlite::Result<PathBuf> {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => Ok(PathBuf::from(OsStr::from_bytes(b))),
        other => Err(rusqlite::types::FromSqlError::InvalidType.into_with(other)),
    }
}

trait IntoWith {
    fn into_with(self, v: ValueRef<'_>) -> rusqlite::Error;
}
impl IntoWith for rusqlite::types::FromSqlError {
    fn into_with(self, v: ValueRef<'_>) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(0, v.data_type(), Box::new(self))
    }
}

/// The open state DB.
pub struct StateDb {
    conn: Connection,
    path: Utf8PathBuf,
    /// The run whose `runs` row each [`StateDb::commit`] brings up to date.
    run: Option<(i64, RunCounts)>,
}

fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL: a commit survives a process kill; only a power cut may
    // lose the last transactions, and those files are simply copied again.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl StateDb {
    /// Opens (creating if needed) and migrates the DB.
    pub fn open(path: &Utf8Path) -> Result<Self> {
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        tune(&conn).map_err(open_err)?;
        MIGRATIONS
            .to_latest(&mut conn)
            .map_err(|source| DbError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            run: None,
        })
    }

    /// Opens an existing DB for reading only (`check`, `status`); `None`
    /// when there is no DB file yet. Never creates or migrates anything.
    pub fn open_existing_read_only(path: &Utf8Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| DbError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Some(Self {
            conn,
            path: path.to_owned(),
            run: None,
        }))
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// A second connection to the same DB, for a thread of its own.
    pub fn reopen(&self) -> Result<Self> {
        let conn = Connection::open(&self.path).map_err(|source| DbError::Open {
            path: self.path.clone(),
            source,
        })?;
        tune(&conn)?;
        Ok(Self {
            conn,
            path: self.path.clone(),
            run: None,
        })
    }

    /// Opens a write transaction that groups many per-file updates; see
    /// [`Self::commit`]. Batching keeps fsyncs off the per-file path.
    pub fn begin(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Drops the open batch: its rows keep their previous status.
    pub fn rollback(&self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK")?;
        Ok(())
    }

    pub fn commit(&self) -> Result<()> {
        // A tracked run's `runs` row is updated in the same transaction, so
        // the row always matches the rows committed (see `track_run`).
        if let Some((id, counts)) = &self.run {
            let (files, bytes, failures) = counts();
            self.conn
                .prepare_cached(
                    "UPDATE runs SET files_done = ?2, bytes_done = ?3, failures = ?4
                     WHERE id = ?1 AND ended_at IS NULL",
                )?
                .execute(params![id, files as i64, bytes as i64, failures as i64])?;
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Raw access for tests and the status command's extra queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

fn status_of(v: ValueRef<'_>) -> rusqlite::Result<&'static str> {
    match v.as_str()? {
        "pending" => Ok("pending"),
        "synced" => Ok("synced"),
        "failed" => Ok("failed"),
        s => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown status `{s}`").into(),
        )),
    }
}

fn kind_of(v: ValueRef<'_>) -> rusqlite::Result<EntryKind> {
    let s = v.as_str()?;
    EntryKind::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown entry kind `{s}`").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_round_trip() {
        let p = PathBuf::from(OsStr::from_bytes(b"/src/caf\xe9/\xff.bin"));
        let v = path_value(&p);
        assert!(matches!(v, Value::Blob(_)));
        let back = path_from(ValueRef::from(&v)).unwrap();
        assert_eq!(back, p);
        let u = PathBuf::from("/src/ok.txt");
        assert!(matches!(path_value(&u), Value::Text(_)));
    }
}
