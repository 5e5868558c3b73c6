//! The state DB's `files` rows, paths byte-exact.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::env::TestEnv;

fn path_of(v: rusqlite::types::ValueRef<'_>) -> PathBuf {
    match v {
        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
            PathBuf::from(OsStr::from_bytes(b))
        }
        other => panic!("path column holds {other:?}"),
    }
}

/// One `files` row, paths byte-exact.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub kind: String,
    pub status: String,
    pub error: Option<String>,
}

pub fn all_rows(env: &TestEnv) -> Vec<Row> {
    try_rows(env).expect("read files rows")
}

/// `files` rows, or an error while the DB is still being created.
pub fn try_rows(env: &TestEnv) -> rusqlite::Result<Vec<Row>> {
    let db = env.try_db()?;
    let mut st = db.prepare(
        "SELECT rowid, source_path, dest_path, kind, status, error FROM files ORDER BY rowid",
    )?;
    st.query_map([], |r| {
        Ok(Row {
            id: r.get(0)?,
            source: path_of(r.get_ref(1)?),
            dest: path_of(r.get_ref(2)?),
            kind: r.get(3)?,
            status: r.get(4)?,
            error: r.get(5)?,
        })
    })?
    .collect()
}

/// Row of the file `rel` under the source root.
#[track_caller]
pub fn row(env: &TestEnv, rel: &str) -> Row {
    let p = env.src.join(rel);
    all_rows(env)
        .into_iter()
        .find(|r| r.source == p)
        .unwrap_or_else(|| panic!("no row for {p:?}"))
}

/// Status → number of file rows.
pub fn status_counts(env: &TestEnv) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in all_rows(env).into_iter().filter(|r| r.kind == "file") {
        *m.entry(r.status).or_insert(0) += 1;
    }
    m
}
