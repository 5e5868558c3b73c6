//! v12: `files` rows stored compactly in `entries` (issue 26 item 1), and
//! the view `files` that shows them as SPEC §4 describes them.
//!
//! What `entries` saves over the v1–v10 `files` table (369 bytes a row at
//! 1M rows of the bench tree):
//! - `path` is the source path below the source root (`''` for the root
//!   itself), TEXT when UTF-8 and a BLOB of the raw bytes otherwise; a path
//!   not below the recorded root (or with no root recorded yet) is stored
//!   whole. The root is in `meta` once.
//! - `dest` is NULL where the destination path is the destination root
//!   joined with `path` (always, today), else the whole path.
//! - `kind` and `status` are small integers ([`KINDS`], [`STATUSES`]).
//! - `hash` and `verified_hash` are BLOBs of the digest (lowercase hex
//!   text reads back the same; text that is not hex is kept as TEXT).
//! - `hash_algorithm` is 1 for `sha256` (other names kept as TEXT).
//! - Only the rows not synced are in the status index (`entries_todo`);
//!   the failed ones by their runs in a row (`entries_failed`: `status`
//!   reads the longest streaks and their count without reading every
//!   failed row).
//!
//! The view `files` has the v10 table's columns and values (full paths,
//! text statuses and kinds, hex hashes), plus `rowid`; writes through it
//! (INSTEAD OF triggers) land in `entries`, so `sqlite3` users and scripts
//! keep working. The product's hot paths use `entries` directly.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::Transaction;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// `kind` codes, by index: 0 file, 1 dir, 2 symlink.
pub(super) const KINDS: [&str; 3] = ["file", "dir", "symlink"];
/// `status` codes, by index: 0 pending, 1 synced, 2 failed.
pub(super) const STATUSES: [&str; 3] = ["pending", "synced", "failed"];
/// `hash_algorithm` codes, by index from 1.
const ALGORITHMS: [&str; 1] = ["sha256"];

/// SQL: the recorded source root.
pub(super) const SOURCE_ROOT: &str = "(SELECT value FROM meta WHERE key = 'source')";
/// SQL: the recorded destination root.
pub(super) const DEST_ROOT: &str = "(SELECT value FROM meta WHERE key = 'destination')";

/// The `entries` table (created empty; the hook fills it).
pub(super) const TABLE: &str = "
CREATE TABLE entries (
    path                   NOT NULL,
    dest,
    kind                   INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    status                 INTEGER NOT NULL CHECK (status IN (0, 1, 2)),
    size                   INTEGER NOT NULL,
    modified_ns            INTEGER NOT NULL,
    accessed_ns            INTEGER NOT NULL,
    changed_ns             INTEGER NOT NULL,
    created_ns             INTEGER,
    mode                   INTEGER NOT NULL,
    uid                    INTEGER NOT NULL,
    gid                    INTEGER NOT NULL,
    hash,
    hash_algorithm,
    after_copy_size        INTEGER,
    after_copy_modified_ns INTEGER,
    scan_id                INTEGER NOT NULL,
    error                  TEXT,
    fail_streak            INTEGER NOT NULL DEFAULT 0,
    verified_at            INTEGER,
    verify_result          TEXT,
    verified_hash,
    link_dev               INTEGER,
    link_ino               INTEGER
);";

/// The columns both `files` (v10) and `entries` have, in order, after the
/// first five (path, dest, kind, status, size) and without the hashes.
const PLAIN: [&str; 14] = [
    "modified_ns",
    "accessed_ns",
    "changed_ns",
    "created_ns",
    "mode",
    "uid",
    "gid",
    "after_copy_size",
    "after_copy_modified_ns",
    "scan_id",
    "error",
    "fail_streak",
    "verified_at",
    "verify_result",
];

/// Everything after the rows are in: indexes, the view, its triggers and
/// the running totals' triggers (on `entries` now).
fn after_rows() -> String {
    let (src, dst) = (SOURCE_ROOT, DEST_ROOT);
    let plain = PLAIN.map(|c| format!("e.{c} AS {c}")).join(", ");
    let set_plain = PLAIN.map(|c| format!("{c} = NEW.{c}")).join(", ");
    // A view has no defaults: an INSERT that leaves `fail_streak` out gets
    // the table's 0, not NULL.
    let new_plain = PLAIN
        .map(|c| match c {
            "fail_streak" => "coalesce(NEW.fail_streak, 0)".to_owned(),
            c => format!("NEW.{c}"),
        })
        .join(", ");
    let cols = PLAIN.join(", ");
    format!(
        "
CREATE UNIQUE INDEX entries_path ON entries (path);
CREATE INDEX entries_todo ON entries (status) WHERE status <> 1;
CREATE INDEX entries_failed ON entries (fail_streak DESC) WHERE status = 2;
CREATE INDEX entries_link ON entries (link_ino, link_dev) WHERE link_ino IS NOT NULL;
CREATE VIEW files AS SELECT
    e.rowid AS rowid,
    {full_src} AS source_path,
    coalesce(e.dest, {full_dst}) AS dest_path,
    {kind} AS kind,
    e.size AS size,
    {plain},
    {hash} AS hash,
    CASE e.hash_algorithm WHEN 1 THEN 'sha256' ELSE e.hash_algorithm END AS hash_algorithm,
    {status} AS status,
    {vhash} AS verified_hash,
    e.link_dev AS link_dev,
    e.link_ino AS link_ino
FROM entries e;
CREATE TRIGGER files_insert INSTEAD OF INSERT ON files BEGIN
    INSERT INTO entries (path, dest, kind, status, size, {cols}, hash, hash_algorithm,
        verified_hash, link_dev, link_ino)
    VALUES ({rel_new}, NEW.dest_path, {kind_new}, {status_new}, NEW.size, {new_plain},
        NEW.hash, {alg_new}, NEW.verified_hash, NEW.link_dev, NEW.link_ino);
END;
CREATE TRIGGER files_update INSTEAD OF UPDATE ON files BEGIN
    UPDATE entries SET
        path = CASE WHEN NEW.source_path IS OLD.source_path THEN path ELSE {rel_new} END,
        dest = CASE WHEN NEW.dest_path IS OLD.dest_path THEN dest ELSE NEW.dest_path END,
        kind = {kind_new}, status = {status_new}, size = NEW.size, {set_plain},
        hash = CASE WHEN NEW.hash IS OLD.hash THEN hash ELSE NEW.hash END,
        hash_algorithm = {alg_new},
        verified_hash = CASE WHEN NEW.verified_hash IS OLD.verified_hash
            THEN verified_hash ELSE NEW.verified_hash END,
        link_dev = NEW.link_dev, link_ino = NEW.link_ino
    WHERE rowid = OLD.rowid;
END;
CREATE TRIGGER files_delete INSTEAD OF DELETE ON files BEGIN
    DELETE FROM entries WHERE rowid = OLD.rowid;
END;
{totals}",
        full_src = full_sql("e.path", src),
        full_dst = full_sql("e.path", dst),
        kind = name_of("e.kind", &KINDS),
        status = name_of("e.status", &STATUSES),
        hash = hex_of("e.hash"),
        vhash = hex_of("e.verified_hash"),
        rel_new = rel_sql("NEW.source_path", src),
        kind_new = code_of("NEW.kind", &KINDS),
        status_new = code_of("NEW.status", &STATUSES),
        alg_new = "CASE NEW.hash_algorithm WHEN 'sha256' THEN 1 ELSE NEW.hash_algorithm END",
        totals = totals_triggers(),
    )
}

/// The triggers that keep `totals` (v10) in the transaction of every write
/// to `entries` (v12's table and v13's alike).
pub(super) fn totals_triggers() -> String {
    format!(
        "CREATE TRIGGER entries_totals_insert AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + new.size,
        hashed = hashed + (new.hash IS NOT NULL)
    WHERE status = {status_n} AND kind = {kind_n};
END;
CREATE TRIGGER entries_totals_delete AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - old.size,
        hashed = hashed - (old.hash IS NOT NULL)
    WHERE status = {status_o} AND kind = {kind_o};
END;
CREATE TRIGGER entries_totals_update AFTER UPDATE OF status, kind, size, hash ON entries
WHEN old.status IS NOT new.status OR old.kind IS NOT new.kind OR old.size IS NOT new.size
    OR (old.hash IS NULL) IS NOT (new.hash IS NULL)
BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - old.size,
        hashed = hashed - (old.hash IS NOT NULL)
    WHERE status = {status_o} AND kind = {kind_o};
    UPDATE totals SET entries = entries + 1, bytes = bytes + new.size,
        hashed = hashed + (new.hash IS NOT NULL)
    WHERE status = {status_n} AND kind = {kind_n};
END;",
        status_n = name_of("new.status", &STATUSES),
        kind_n = name_of("new.kind", &KINDS),
        status_o = name_of("old.status", &STATUSES),
        kind_o = name_of("old.kind", &KINDS),
    )
}

/// SQL: the name of code `col` (`names` by index).
pub(super) fn name_of(col: &str, names: &[&str]) -> String {
    let whens: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!(" WHEN {i} THEN '{n}'"))
        .collect();
    format!("CASE {col}{whens} END")
}

/// SQL: the code of name `col` (a code or anything else passes unchanged,
/// and the table's CHECK refuses what is no code).
pub(super) fn code_of(col: &str, names: &[&str]) -> String {
    let whens: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!(" WHEN '{n}' THEN {i}"))
        .collect();
    format!("CASE {col}{whens} ELSE {col} END")
}

/// SQL: a hash as lowercase hex, whichever way it is stored.
pub(super) fn hex_of(col: &str) -> String {
    format!("CASE typeof({col}) WHEN 'blob' THEN lower(hex({col})) ELSE {col} END")
}

/// SQL: the whole path of stored `p` below root `r` (see [`full_path`]).
pub(super) fn full_sql(p: &str, r: &str) -> String {
    format!(
        "CASE WHEN {r} IS NULL OR CAST(substr({p}, 1, 1) AS TEXT) = '/' THEN {p}
              WHEN {p} = '' THEN {r}
              WHEN typeof({p}) = 'blob' THEN CAST({r} || '/' || {p} AS BLOB)
              ELSE {r} || '/' || {p} END"
    )
}

/// SQL: the stored form of whole path `x` below root `r` (see [`stored`]).
pub(super) fn rel_sql(x: &str, r: &str) -> String {
    let (xb, rb) = (format!("CAST({x} AS BLOB)"), format!("CAST({r} AS BLOB)"));
    format!(
        "CASE WHEN {r} IS NULL THEN {x}
              WHEN {xb} = {rb} THEN ''
              WHEN length({xb}) > length({rb}) + 1
                   AND substr({xb}, 1, length({rb}) + 1) = CAST({r} || '/' AS BLOB)
                   AND substr({xb}, length({rb}) + 2, 1) <> X'2F'
                THEN CASE typeof({x}) WHEN 'blob' THEN substr({xb}, length({rb}) + 2)
                     ELSE CAST(substr({xb}, length({rb}) + 2) AS TEXT) END
              ELSE {x} END"
    )
}

/// The stored form of `p` below `root`: the part below it (`""` for the
/// root itself), or `p` whole when it is not strictly below it (or there is
/// no root). A part that would start with `/` is never made.
pub(super) fn stored<'a>(root: Option<&Path>, p: &'a Path) -> &'a Path {
    let Some(root) = root else { return p };
    let (pb, rb) = (p.as_os_str().as_bytes(), root.as_os_str().as_bytes());
    if pb == rb {
        return Path::new("");
    }
    match pb.strip_prefix(rb).and_then(|r| r.strip_prefix(b"/")) {
        Some(rest) if !rest.is_empty() && rest[0] != b'/' => Path::new(OsStr::from_bytes(rest)),
        _ => p,
    }
}

/// The whole path of stored `s` below `root` (inverse of [`stored`]).
pub(super) fn full_path(root: Option<&Path>, s: &[u8]) -> PathBuf {
    match root {
        Some(r) if s.is_empty() => r.to_path_buf(),
        Some(r) if s[0] != b'/' => {
            let mut b = r.as_os_str().as_bytes().to_vec();
            b.push(b'/');
            b.extend_from_slice(s);
            PathBuf::from(OsStr::from_bytes(&b).to_owned())
        }
        _ => PathBuf::from(OsStr::from_bytes(s)),
    }
}

/// A recorded hash as it is bound and read: lowercase hex in Rust, the
/// digest's bytes in SQL (anything else as TEXT, unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hash<'a>(pub Cow<'a, str>);

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

impl ToSql for Hash<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match unhex(&self.0) {
            Some(b) => ToSqlOutput::from(b),
            None => ToSqlOutput::from(self.0.as_ref()),
        })
    }
}

impl FromSql for Hash<'static> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v {
            ValueRef::Blob(b) => Ok(Hash(Cow::Owned(hex(b)))),
            ValueRef::Text(_) => Ok(Hash(Cow::Owned(v.as_str()?.to_owned()))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// A hash as stored (its bytes for lowercase hex, else the text).
pub(super) fn hash_value(h: &str) -> rusqlite::types::Value {
    match unhex(h) {
        Some(b) => rusqlite::types::Value::Blob(b),
        None => rusqlite::types::Value::Text(h.to_owned()),
    }
}

/// An optional hash for binding.
pub(super) fn hash_opt(h: Option<&str>) -> Option<Hash<'_>> {
    h.map(|h| Hash(Cow::Borrowed(h)))
}

/// An optional recorded hash, as hex.
pub(super) fn hash_read(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(r.get::<_, Option<Hash<'static>>>(i)?
        .map(|h| h.0.into_owned()))
}

/// An algorithm name as it is bound and read (a code where it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Algorithm(pub String);

impl ToSql for Algorithm {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match ALGORITHMS.iter().position(|a| *a == self.0) {
            Some(i) => ToSqlOutput::from(i as i64 + 1),
            None => ToSqlOutput::from(self.0.as_str()),
        })
    }
}

impl FromSql for Algorithm {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v {
            ValueRef::Integer(i) => usize::try_from(i - 1)
                .ok()
                .and_then(|i| ALGORITHMS.get(i))
                .map(|a| Algorithm((*a).to_owned()))
                .ok_or(FromSqlError::OutOfRange(i)),
            _ => Ok(Algorithm(v.as_str()?.to_owned())),
        }
    }
}

/// The v12 migration: `entries` filled from `files` row by row (paths made
/// relative with the same rule as every later write), then `files` dropped
/// and made a view. One transaction (rusqlite_migration's); a line on
/// stderr every few seconds for a big DB.
pub(super) fn migrate(tx: &Transaction<'_>) -> rusqlite_migration::HookResult {
    migrate_every(tx, Progress::EVERY, &mut say)
}

/// Rows from which a migration is big: its lines go to stderr whatever the
/// verbosity (a rewrite of millions of rows takes minutes); below, to the
/// log at `info` (`-v`).
const BIG: u64 = 100_000;

/// Whether the last v12 rewrite in this process was big (see [`BIG`]).
static WAS_BIG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records whether the rewrite of `total` rows is big (see [`BIG`]).
pub(super) fn set_big(total: u64) {
    WAS_BIG.store(total >= BIG, std::sync::atomic::Ordering::Relaxed);
}

/// One line about a migration: on stderr for a big one, else in the log.
pub(super) fn say(line: String) {
    if WAS_BIG.load(std::sync::atomic::Ordering::Relaxed) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "jobrun: {line}");
    } else {
        tracing::info!("{line}");
    }
}

/// [`migrate`] with a progress line every `every`.
fn migrate_every(
    tx: &Transaction<'_>,
    every: std::time::Duration,
    say: &mut dyn FnMut(String),
) -> rusqlite_migration::HookResult {
    let root = |k: &str| -> rusqlite::Result<Option<PathBuf>> {
        let v: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .ok();
        Ok(v.map(PathBuf::from))
    };
    let (src, dst) = (root("source")?, root("destination")?);
    let total: i64 = tx.query_row("SELECT count(*) FROM files", [], |r| r.get(0))?;
    set_big(total as u64);
    let mut progress = Progress::new(12, total as u64, every, say);
    let mut read = tx.prepare(&format!(
        "SELECT rowid, source_path, dest_path, kind, status, size, {}, hash, hash_algorithm,
                verified_hash, link_dev, link_ino FROM files ORDER BY rowid",
        PLAIN.join(", ")
    ))?;
    let mut write = tx.prepare(&format!(
        "INSERT INTO entries (rowid, path, dest, kind, status, size, {}, hash, hash_algorithm,
             verified_hash, link_dev, link_ino)
         VALUES ({})",
        PLAIN.join(", "),
        (1..=25)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let source = super::path_from(r.get_ref(1)?)?;
        let dest = super::path_from(r.get_ref(2)?)?;
        let at = stored(src.as_deref(), &source);
        let derived = at.is_relative()
            && dst
                .as_deref()
                .map(|d| full_path(Some(d), at.as_os_str().as_bytes()))
                == Some(dest.clone());
        let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(25);
        values.push(r.get(0)?);
        values.push(value_of(super::path_value(at)));
        values.push(if derived {
            rusqlite::types::Value::Null
        } else {
            value_of(super::path_value(&dest))
        });
        values.push(code(r.get_ref(3)?, &KINDS)?);
        values.push(code(r.get_ref(4)?, &STATUSES)?);
        for i in 5..20 {
            values.push(r.get(i)?);
        }
        values.push(rehash(r.get_ref(20)?));
        values.push(match r.get::<_, Option<Algorithm>>(21)? {
            Some(a) => value_of(a.to_sql()?),
            None => rusqlite::types::Value::Null,
        });
        values.push(rehash(r.get_ref(22)?));
        values.push(r.get(23)?);
        values.push(r.get(24)?);
        write.execute(rusqlite::params_from_iter(values))?;
        progress.step();
    }
    drop(rows);
    drop((read, write));
    tx.execute_batch(&format!("DROP TABLE files;\n{}", after_rows()))?;
    progress.done();
    Ok(())
}

fn owned(v: ValueRef<'_>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

pub(super) fn value_of(v: ToSqlOutput<'_>) -> rusqlite::types::Value {
    match v {
        ToSqlOutput::Borrowed(r) => owned(r),
        ToSqlOutput::Owned(v) => v,
        _ => rusqlite::types::Value::Null,
    }
}

/// A hex hash as its bytes; anything else unchanged.
fn rehash(v: ValueRef<'_>) -> rusqlite::types::Value {
    match v {
        ValueRef::Text(t) => match std::str::from_utf8(t).ok().and_then(unhex) {
            Some(b) => rusqlite::types::Value::Blob(b),
            None => owned(v),
        },
        _ => owned(v),
    }
}

/// The code of a v10 text value (`names` by index).
fn code(v: ValueRef<'_>, names: &[&str]) -> rusqlite::Result<rusqlite::types::Value> {
    let s = v.as_str().map_err(|e| super::IntoWith::into_with(e, v))?;
    names
        .iter()
        .position(|n| *n == s)
        .map(|i| rusqlite::types::Value::Integer(i as i64))
        .ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown value `{s}`").into(),
            )
        })
}

/// The migration's progress on stderr (through the log, as every other
/// line): the rows to rewrite at the start, then every [`Progress::EVERY`].
pub(super) struct Progress<'a> {
    version: u32,
    say: &'a mut dyn FnMut(String),
    every: std::time::Duration,
    total: u64,
    done: u64,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl<'a> Progress<'a> {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    pub(super) fn new(
        version: u32,
        total: u64,
        every: std::time::Duration,
        say: &'a mut dyn FnMut(String),
    ) -> Self {
        if total > 0 {
            say(format!(
                "state DB v{version}: rewriting {total} rows compactly ({})",
                if version == 12 {
                    "paths below their roots"
                } else {
                    "keyed by folder and name"
                }
            ));
        }
        let now = std::time::Instant::now();
        Self {
            version,
            say,
            every,
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    pub(super) fn step(&mut self) {
        self.done += 1;
        if self.done.is_multiple_of(4096) && self.last.elapsed() >= self.every {
            self.last = std::time::Instant::now();
            let line = self.line();
            (self.say)(line);
        }
    }

    /// `rewritten D of T rows (P%), S s`.
    pub(super) fn line(&self) -> String {
        format!(
            "state DB v{}: rewritten {} of {} rows ({}%), {:.0} s",
            self.version,
            self.done,
            self.total,
            (self.done * 100).checked_div(self.total).unwrap_or(100),
            self.started.elapsed().as_secs_f64()
        )
    }

    pub(super) fn done(&mut self) {
        if self.total > 0 {
            let line = self.line();
            (self.say)(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_stored_below_its_root_and_read_back_whole() {
        let r = Some(Path::new("/s/root"));
        let cases: [(&[u8], &[u8]); 6] = [
            (b"/s/root", b""),
            (b"/s/root/a/b.txt", b"a/b.txt"),
            (b"/s/root/caf\xe9/\xff", b"caf\xe9/\xff"),
            (b"/s/rootx/a", b"/s/rootx/a"),
            (b"/s/root//a", b"/s/root//a"),
            (b"/elsewhere", b"/elsewhere"),
        ];
        for (whole, at) in cases {
            let p = Path::new(OsStr::from_bytes(whole));
            assert_eq!(stored(r, p).as_os_str().as_bytes(), at, "{p:?}");
            assert_eq!(full_path(r, at), p, "{p:?}");
        }
        assert_eq!(stored(None, Path::new("/a")), Path::new("/a"));
        assert_eq!(full_path(None, b"/a"), Path::new("/a"));
    }

    /// The SQL of the view and its triggers follows the Rust rule.
    #[test]
    fn the_sql_rules_are_the_rust_rules() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for (whole, at) in [
            (&b"/s/root"[..], &b""[..]),
            (b"/s/root/a/b.txt", b"a/b.txt"),
            (b"/s/root/caf\xe9/\xff", b"caf\xe9/\xff"),
            (b"/s/rootx/a", b"/s/rootx/a"),
            (b"/s/root//a", b"/s/root//a"),
        ] {
            let p = Path::new(OsStr::from_bytes(whole));
            let v = super::super::path_value(p);
            let back: Vec<u8> = c
                .query_row(
                    &format!("SELECT CAST({} AS BLOB)", rel_sql("?1", "'/s/root'")),
                    [&v],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(back, at, "{p:?}");
            let s = super::super::path_value(Path::new(OsStr::from_bytes(at)));
            let (ty, whole_back): (String, Vec<u8>) = c
                .query_row(
                    &format!(
                        "SELECT typeof(x), CAST(x AS BLOB) FROM (SELECT {} AS x)",
                        full_sql("?1", "'/s/root'")
                    ),
                    [&s],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(whole_back, whole, "{p:?}");
            let want = if p.to_str().is_some() { "text" } else { "blob" };
            assert_eq!(ty, want, "{p:?}");
        }
    }

    #[test]
    fn hashes_are_stored_as_bytes_and_read_as_hex() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for (h, ty) in [
            ("ab01ff", "blob"),
            ("AB", "text"),
            ("abc", "text"),
            ("x", "text"),
        ] {
            let (t, back): (String, Hash<'static>) = c
                .query_row("SELECT typeof(?1), ?1", [Hash(h.into())], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((t.as_str(), back.0.as_ref()), (ty, h));
        }
        let a: Algorithm = c
            .query_row("SELECT ?1", [Algorithm("sha256".into())], |r| r.get(0))
            .unwrap();
        assert_eq!(a.0, "sha256");
    }

    #[test]
    fn the_progress_line_says_rows_done_of_all() {
        let mut sink = |_| {};
        let mut p = Progress::new(12, 200, Progress::EVERY, &mut sink);
        for _ in 0..50 {
            p.step();
        }
        assert!(
            p.line()
                .starts_with("state DB v12: rewritten 50 of 200 rows (25%), "),
            "{}",
            p.line()
        );
    }

    /// A v10 DB of 20,000 rows migrates with a line at the start, lines on
    /// the way (here after every 4,096 rows) and one at the end, and every
    /// row reads back through the view as it was.
    #[test]
    fn the_migration_says_how_far_it_got() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::super::schema::MIGRATIONS
            .to_version(&mut c, 10)
            .unwrap();
        c.execute_batch(
            "INSERT INTO meta VALUES ('source', '/s'), ('destination', '/d');
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                 changed_ns, mode, uid, gid, hash, hash_algorithm, status, scan_id)
             SELECT '/s/f' || i, '/d/f' || i, 'file', i, 1, 2, 3, 420, 0, 0,
                 CASE WHEN i % 2 THEN 'ab' || printf('%04x', i) END,
                 CASE WHEN i % 2 THEN 'sha256' END,
                 CASE WHEN i % 2 THEN 'synced' ELSE 'pending' END, 1 FROM n;",
        )
        .unwrap();
        let before: Vec<(String, String, Option<String>, String)> = c
            .prepare("SELECT source_path, dest_path, hash, status FROM files ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut lines = Vec::new();
        let tx = c.transaction().unwrap();
        tx.execute_batch(TABLE).unwrap();
        migrate_every(&tx, std::time::Duration::ZERO, &mut |l| lines.push(l)).unwrap();
        tx.commit().unwrap();
        let text = lines.join("\n");
        assert!(
            text.contains("state DB v12: rewriting 20000 rows compactly"),
            "{text}"
        );
        for done in [4096, 8192, 12288, 16384] {
            let pct = done * 100 / 20000;
            assert!(
                text.contains(&format!("rewritten {done} of 20000 rows ({pct}%)")),
                "{text}"
            );
        }
        assert!(
            text.contains("rewritten 20000 of 20000 rows (100%)"),
            "{text}"
        );
        let after: Vec<(String, String, Option<String>, String)> = c
            .prepare("SELECT source_path, dest_path, hash, status FROM files ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(after, before, "the view shows every row as it was");
        let (whole, texts, dests): (i64, i64, i64) = c
            .query_row(
                "SELECT count(CASE WHEN CAST(substr(path, 1, 1) AS TEXT) = '/' THEN 1 END),
                        count(CASE WHEN typeof(hash) = 'text' THEN 1 END), count(dest)
                 FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (whole, texts, dests),
            (0, 0, 0),
            "paths below the roots, hashes as bytes"
        );
    }
}
