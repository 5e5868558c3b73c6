//! v13: `files` rows keyed by (folder, name) in a `WITHOUT ROWID` table
//! (issue 26 item 1: ≤ 100 bytes a row), and the view `files` that shows
//! them as SPEC §4 describes them.
//!
//! What v13 saves over v12's `entries` (147 B a row at 1M rows):
//! - No rowid table plus path index: the table *is* the index on
//!   (`folder`, `name`), so a path is stored once, as its last name and
//!   the id of its folder (`folders`: one row per folder, its stored path
//!   as v12 stored entries' paths, below the source root).
//! - `id` is the row's id (the v12 rowid, kept by the migration): the order
//!   rows were found in, the scan's bitset, samples, names. Only rows not
//!   synced are found by it (`entries_todo`); the rest by their key.
//! - Times: the mtime as seconds and nanoseconds; the atime and ctime as
//!   differences from it, the birth time from the ctime, the after-copy
//!   mtime from the mtime (usually 0, stored in no byte); a difference
//!   beyond 64 bits is stored as the whole time in `times`' text form.
//! - `mode` with its kind's type bits flipped off (a 2-byte value).
//! - The rarely set columns (explicit destination, error and streak, the
//!   verify result, hard-link identity) in `entry_extra`, by `id`, with the
//!   row's key.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::compact::{self, KINDS, STATUSES, code_of, hex_of, name_of};
use super::times::{self, Ns};

/// The tables, created empty (the hook fills them from v12's `entries`).
pub(super) const TABLES: &str = "
DROP VIEW files;
DROP TRIGGER IF EXISTS entries_totals_insert;
DROP TRIGGER IF EXISTS entries_totals_delete;
DROP TRIGGER IF EXISTS entries_totals_update;
ALTER TABLE entries RENAME TO entries_v12;
CREATE TABLE folders (
    id   INTEGER PRIMARY KEY,
    path NOT NULL UNIQUE
);
CREATE TABLE entry_ids (next INTEGER NOT NULL);
INSERT INTO entry_ids VALUES (1);
CREATE TABLE entries (
    folder     INTEGER NOT NULL,
    name       NOT NULL,
    id         INTEGER NOT NULL,
    kind       INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    status     INTEGER NOT NULL CHECK (status IN (0, 1, 2)),
    size       INTEGER NOT NULL,
    mtime      INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    atime_d    NOT NULL,
    ctime_d    NOT NULL,
    birth_d,
    mode_x     INTEGER NOT NULL,
    owner      NOT NULL,
    hash,
    after_d,
    scan_id    INTEGER NOT NULL,
    PRIMARY KEY (folder, name)
) WITHOUT ROWID;
CREATE TABLE entry_extra (
    id            INTEGER PRIMARY KEY,
    folder        INTEGER NOT NULL,
    name          NOT NULL,
    dest,
    error         TEXT,
    fail_streak   INTEGER NOT NULL DEFAULT 0,
    verified_at   INTEGER,
    verify_result TEXT,
    verified_hash,
    link_dev      INTEGER,
    link_ino      INTEGER,
    hash_algorithm TEXT,
    after_size    INTEGER
);
";

/// The file type bits of each kind (`KINDS` order), flipped off in
/// `mode_x`.
const TYPE_BITS: [u32; 3] = [0o100000, 0o040000, 0o120000];

/// `mode` as stored for a row of kind code `kind`.
pub(super) fn mode_x(kind: i64, mode: u32) -> i64 {
    i64::from(mode ^ TYPE_BITS.get(kind as usize).copied().unwrap_or(0))
}

/// The mode of a stored `mode_x`.
pub(super) fn mode_of(kind: i64, x: i64) -> u32 {
    (x as u32) ^ TYPE_BITS.get(kind as usize).copied().unwrap_or(0)
}

const S: i128 = 1_000_000_000;

/// (uid, gid) as one value: `uid * 65536 + gid` when both are below 65536
/// (0 bytes for root's, 4 for 1000/1000), `-(uid << 32 | gid) - 1` for a
/// uid below 2^31, else the text `UID:GID`.
pub(super) fn owner(uid: u32, gid: u32) -> ToSqlOutput<'static> {
    let (u, g) = (i64::from(uid), i64::from(gid));
    if uid < 65536 && gid < 65536 {
        ToSqlOutput::from(u * 65536 + g)
    } else if uid < 1 << 31 {
        ToSqlOutput::from(-((u << 32) | g) - 1)
    } else {
        ToSqlOutput::from(format!("{uid}:{gid}"))
    }
}

/// Inverse of [`owner`].
pub(super) fn owner_of(v: ValueRef<'_>) -> rusqlite::Result<(u32, u32)> {
    let bad = || rusqlite::Error::FromSqlConversionFailure(0, v.data_type(), "not an owner".into());
    match v {
        ValueRef::Integer(o) if o >= 0 => Ok(((o >> 16) as u32, (o & 0xffff) as u32)),
        ValueRef::Integer(o) => {
            let w = -(o + 1);
            Ok(((w >> 32) as u32, (w & 0xffff_ffff) as u32))
        }
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.split_once(':'))
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A time as (seconds, nanoseconds 0..1e9).
pub(super) fn split_ns(ns: i128) -> (i64, i64) {
    (
        i64::try_from(ns.div_euclid(S)).unwrap_or(i64::MAX),
        ns.rem_euclid(S) as i64,
    )
}

/// The time of stored (seconds, nanoseconds).
pub(super) fn join_ns(secs: i64, ns: i64) -> i128 {
    i128::from(secs) * S + i128::from(ns)
}

/// `t` stored against `base`: the difference where 64 bits hold it, else
/// the whole time as text.
pub(super) fn delta(base: i128, t: i128) -> ToSqlOutput<'static> {
    match i64::try_from(t - base) {
        Ok(d) => ToSqlOutput::from(d),
        Err(_) => ToSqlOutput::from(times::text(t)),
    }
}

/// An optional [`delta`].
pub(super) fn delta_opt(base: i128, t: Option<i128>) -> Option<ToSqlOutput<'static>> {
    t.map(|t| delta(base, t))
}

/// The birth time stored against the ctime (itself stored against the
/// mtime): the whole time as text when the ctime's difference is text, so
/// that SQL can always read it back.
pub(super) fn birth_delta(
    mtime: i128,
    changed: i128,
    birth: Option<i128>,
) -> Option<ToSqlOutput<'static>> {
    let birth = birth?;
    Some(match i64::try_from(changed - mtime) {
        Ok(_) => delta(changed, birth),
        Err(_) => ToSqlOutput::from(times::text(birth)),
    })
}

/// Inverse of [`delta`].
pub(super) fn undelta(base: i128, v: ValueRef<'_>) -> rusqlite::Result<i128> {
    match v {
        ValueRef::Integer(d) => Ok(base + i128::from(d)),
        other => Ok(rusqlite::types::FromSql::column_result(other)
            .map(|t: Ns| t.0)
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, other.data_type(), e.into())
            })?),
    }
}

/// Inverse of [`delta_opt`].
pub(super) fn undelta_opt(base: i128, v: ValueRef<'_>) -> rusqlite::Result<Option<i128>> {
    match v {
        ValueRef::Null => Ok(None),
        v => undelta(base, v).map(Some),
    }
}

/// A row's times as stored in the five columns `mtime, mtime_ns, atime_d,
/// ctime_d, birth_d` from column `at` on.
pub(super) struct Times {
    pub modified: i128,
    pub accessed: i128,
    pub changed: i128,
    pub created: Option<i128>,
}

impl Times {
    pub fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        let modified = join_ns(r.get(at)?, r.get(at + 1)?);
        let changed = undelta(modified, r.get_ref(at + 3)?)?;
        Ok(Self {
            modified,
            accessed: undelta(modified, r.get_ref(at + 2)?)?,
            changed,
            created: undelta_opt(changed, r.get_ref(at + 4)?)?,
        })
    }
}

/// A stored path (below the source root, or whole) as its folder's stored
/// path and its name; `None` for a path with no folder (the root `''`, or
/// `/`).
pub(super) fn split(stored: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if stored.is_empty() || stored == b"/" {
        return (None, stored);
    }
    match stored.iter().rposition(|&b| b == b'/') {
        None => (Some(b""), stored),
        Some(0) => (Some(b"/"), &stored[1..]),
        Some(i) => (Some(&stored[..i]), &stored[i + 1..]),
    }
}

/// A stored path back from its folder's path and its name.
pub(super) fn join(folder: Option<&[u8]>, name: &[u8]) -> Vec<u8> {
    match folder {
        None | Some(b"") => name.to_vec(),
        Some(b"/") => [b"/", name].concat(),
        Some(f) => [f, b"/", name].concat(),
    }
}

/// Bytes as a path value (TEXT when UTF-8).
pub(super) fn bytes_value(b: &[u8]) -> ToSqlOutput<'_> {
    super::path_value(Path::new(OsStr::from_bytes(b)))
}

/// The bytes of a TEXT or BLOB value.
pub(super) fn bytes_of(v: ValueRef<'_>) -> rusqlite::Result<&[u8]> {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => Ok(b),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            other.data_type(),
            "not a path".into(),
        )),
    }
}

/// A row's key: its folder's id (0: none) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub(super) folder: i64,
    pub(super) name: Vec<u8>,
}

impl RowKey {
    /// The name as bound (TEXT when UTF-8).
    pub(super) fn name_value(&self) -> ToSqlOutput<'_> {
        bytes_value(&self.name)
    }
}

/// The id of folder `path` (stored form), if recorded.
pub(super) fn folder_id(conn: &Connection, path: Option<&[u8]>) -> rusqlite::Result<Option<i64>> {
    let Some(path) = path else { return Ok(Some(0)) };
    conn.prepare_cached("SELECT id FROM folders WHERE path = ?1")?
        .query_row([bytes_value(path)], |r| r.get(0))
        .optional()
}

/// The stored path of folder `id` (not 0), if recorded.
pub(super) fn folder_path(conn: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT path FROM folders WHERE id = ?1")?
        .query_row([id], |r| Ok(bytes_of(r.get_ref(0)?)?.to_vec()))
        .optional()
}

/// The id of folder `path`, recorded now if new.
pub(super) fn folder_id_or_new(conn: &Connection, path: Option<&[u8]>) -> rusqlite::Result<i64> {
    if let Some(id) = folder_id(conn, path)? {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO folders (path) VALUES (?1)")?
        .execute([bytes_value(path.unwrap_or_default())])?;
    Ok(conn.last_insert_rowid())
}

/// The key of stored path `stored`, if its folder is recorded.
pub(super) fn key_of(conn: &Connection, stored: &[u8]) -> rusqlite::Result<Option<RowKey>> {
    let (folder, name) = split(stored);
    Ok(folder_id(conn, folder)?.map(|folder| RowKey {
        folder,
        name: name.to_vec(),
    }))
}

/// The key of stored path `stored`, its folder recorded now if new.
pub(super) fn key_or_new(conn: &Connection, stored: &[u8]) -> rusqlite::Result<RowKey> {
    let (folder, name) = split(stored);
    Ok(RowKey {
        folder: folder_id_or_new(conn, folder)?,
        name: name.to_vec(),
    })
}

/// The next row id, taken.
pub(super) fn next_id(conn: &Connection) -> rusqlite::Result<i64> {
    // Not `UPDATE … RETURNING`: SQLite gathers RETURNING rows in a
    // temporary table, which cost a sixth of a row's insert.
    let id = conn
        .prepare_cached("SELECT next FROM entry_ids")?
        .query_row([], |r| r.get(0))?;
    conn.prepare_cached("UPDATE entry_ids SET next = ?1")?
        .execute([id + 1i64])?;
    Ok(id)
}

/// SQL: the stored path of entry alias `e` with its folder alias `f`
/// (LEFT JOINed on `f.id = e.folder`).
pub(super) fn stored_sql(e: &str, f: &str) -> String {
    format!(
        "(CASE WHEN {e}.folder = 0 OR {f}.path = '' THEN {e}.name
              WHEN typeof({e}.name) = 'blob' OR typeof({f}.path) = 'blob'
                THEN CAST(CASE WHEN {f}.path = '/' THEN '' ELSE {f}.path END || '/' || {e}.name AS BLOB)
              WHEN {f}.path = '/' THEN '/' || {e}.name
              ELSE {f}.path || '/' || {e}.name END)"
    )
}

/// SQL: a time of (seconds, ns) expressions, as `Ns` stores it (an
/// INTEGER where 64 bits hold it, `@SECS.NNNNNNNNN` beyond).
fn ns_sql(secs: &str, ns: &str) -> String {
    // i64 ns reach -9223372037 s + 145224192 ns and 9223372036 s +
    // 854775807 ns; a negative second is summed from its upper neighbour
    // so that the lowest one does not overflow.
    format!(
        "(CASE WHEN ({secs} > -9223372037 OR ({secs} = -9223372037 AND {ns} >= 145224192))
                AND ({secs} < 9223372036 OR ({secs} = 9223372036 AND {ns} <= 854775807))
              THEN CASE WHEN {secs} < 0 THEN ({secs} + 1) * 1000000000 + ({ns} - 1000000000)
                        ELSE {secs} * 1000000000 + {ns} END
              ELSE printf('@%d.%09d', {secs}, {ns}) END)"
    )
}

/// SQL: a time stored whole as text (`@SECS.NNNNNNNNN`), as `Ns` shows it.
fn text_sql(d: &str) -> String {
    ns_sql(
        &format!("CAST(substr({d}, 2, instr({d}, '.') - 2) AS INTEGER)"),
        &format!("CAST(substr({d}, instr({d}, '.') + 1) AS INTEGER)"),
    )
}

/// SQL: (seconds, ns) of the time (seconds, ns) moved by integer `d`:
/// secs + d / 1e9 + carry, without overflowing (d / 1e9 and d % 1e9 apart).
fn moved_sql(secs: &str, ns: &str, d: &str) -> (String, String) {
    let sum = format!("({ns} + {d} % 1000000000)");
    let rem = format!("((({sum} % 1000000000) + 1000000000) % 1000000000)");
    let secs2 = format!("({secs} + {d} / 1000000000 + ({sum} - {rem}) / 1000000000)");
    (secs2, rem)
}

/// SQL: the time stored as [`delta`] `d` against the time (seconds, ns).
fn undelta_sql(secs: &str, ns: &str, d: &str) -> String {
    let (s2, n2) = moved_sql(secs, ns, d);
    format!(
        "(CASE WHEN {d} IS NULL THEN NULL WHEN typeof({d}) <> 'integer' THEN {}
              ELSE {} END)",
        text_sql(d),
        ns_sql(&s2, &n2)
    )
}

/// SQL: the birth time (see [`birth_delta`]).
fn birth_sql() -> String {
    let (cs, cn) = moved_sql("e.mtime", "e.mtime_ns", "e.ctime_d");
    let (bs, bn) = moved_sql(&cs, &cn, "e.birth_d");
    format!(
        "(CASE WHEN e.birth_d IS NULL THEN NULL WHEN typeof(e.birth_d) <> 'integer' THEN {}
              ELSE {} END)",
        text_sql("e.birth_d"),
        ns_sql(&bs, &bn)
    )
}

/// SQL: `mode_x` as the mode (`kind` the code).
fn mode_sql(kind: &str, x: &str) -> String {
    let bits = format!(
        "CASE {kind} WHEN 0 THEN {} WHEN 1 THEN {} WHEN 2 THEN {} ELSE 0 END",
        TYPE_BITS[0], TYPE_BITS[1], TYPE_BITS[2]
    );
    format!("(({x} | ({bits})) & ~({x} & ({bits})))")
}

/// The view `files`, its triggers, the indexes and the totals' triggers.
pub(super) fn after_rows() -> String {
    let (src, dst) = (compact::SOURCE_ROOT, compact::DEST_ROOT);
    let stored = stored_sql("e", "f");
    let m = ns_sql("e.mtime", "e.mtime_ns");
    let changed = undelta_sql("e.mtime", "e.mtime_ns", "e.ctime_d");
    format!(
        "
CREATE INDEX entries_todo ON entries (id) WHERE status <> 1;
CREATE INDEX extra_failed ON entry_extra (fail_streak DESC, id) WHERE error IS NOT NULL;
CREATE INDEX extra_link ON entry_extra (link_ino, link_dev) WHERE link_ino IS NOT NULL;
CREATE VIEW files AS SELECT
    e.id AS rowid,
    {full_src} AS source_path,
    coalesce(e.x_dest, {full_dst}) AS dest_path,
    {kind} AS kind,
    e.size AS size,
    {m} AS modified_ns,
    {accessed} AS accessed_ns,
    {changed} AS changed_ns,
    {birth} AS created_ns,
    {mode} AS mode,
    CASE WHEN typeof(e.owner) = 'integer' AND e.owner >= 0 THEN e.owner / 65536
         WHEN typeof(e.owner) = 'integer' THEN (-(e.owner + 1)) / 4294967296
         ELSE CAST(substr(e.owner, 1, instr(e.owner, ':') - 1) AS INTEGER) END AS uid,
    CASE WHEN typeof(e.owner) = 'integer' AND e.owner >= 0 THEN e.owner % 65536
         WHEN typeof(e.owner) = 'integer' THEN (-(e.owner + 1)) % 4294967296
         ELSE CAST(substr(e.owner, instr(e.owner, ':') + 1) AS INTEGER) END AS gid,
    CASE WHEN e.after_d IS NULL THEN NULL ELSE coalesce(e.x_after_size, e.size) END
        AS after_copy_size,
    {after} AS after_copy_modified_ns,
    e.scan_id AS scan_id,
    e.x_error AS error,
    coalesce(e.x_fail_streak, 0) AS fail_streak,
    e.x_verified_at AS verified_at,
    e.x_verify_result AS verify_result,
    {hash} AS hash,
    CASE WHEN e.hash IS NOT NULL THEN coalesce(e.x_hash_algorithm, 'sha256') END
        AS hash_algorithm,
    {status} AS status,
    {vhash} AS verified_hash,
    e.x_link_dev AS link_dev,
    e.x_link_ino AS link_ino,
    e.folder AS key_folder,
    e.name AS key_name
FROM (SELECT e.*, {stored} AS p, x.dest AS x_dest, x.error AS x_error,
          x.fail_streak AS x_fail_streak, x.verified_at AS x_verified_at,
          x.verify_result AS x_verify_result, x.verified_hash AS x_verified_hash,
          x.link_dev AS x_link_dev, x.link_ino AS x_link_ino,
          x.hash_algorithm AS x_hash_algorithm, x.after_size AS x_after_size
      FROM entries e LEFT JOIN folders f ON f.id = e.folder
          LEFT JOIN entry_extra x ON x.id = e.id) e;
CREATE TRIGGER entries_extra_delete AFTER DELETE ON entries BEGIN
    DELETE FROM entry_extra WHERE id = old.id;
END;
CREATE TRIGGER entries_ids AFTER INSERT ON entries WHEN new.id >= (SELECT next FROM entry_ids)
BEGIN
    UPDATE entry_ids SET next = new.id + 1;
END;
{view_triggers}
{totals}",
        full_src = compact::full_sql("e.p", src),
        full_dst = compact::full_sql("e.p", dst),
        kind = name_of("e.kind", &KINDS),
        birth = birth_sql(),
        accessed = undelta_sql("e.mtime", "e.mtime_ns", "e.atime_d"),
        mode = mode_sql("e.kind", "e.mode_x"),
        after = undelta_sql("e.mtime", "e.mtime_ns", "e.after_d"),
        hash = hex_of("e.hash"),
        vhash = hex_of("e.x_verified_hash"),
        status = name_of("e.status", &STATUSES),
        view_triggers = view_triggers(),
        totals = compact::totals_triggers(),
    )
}

/// SQL: the (seconds, ns) of a view time value `v` (INTEGER ns or text).
fn secs_of(v: &str) -> (String, String) {
    // Text times (beyond 64 bits) keep their whole value in `mtime` as far
    // as SQL can compute; the product never writes through the view.
    let rem = format!("((({v} % 1000000000) + 1000000000) % 1000000000)");
    (format!("(({v} - {rem}) / 1000000000)"), rem)
}

/// The view's INSTEAD OF triggers: writes through `files` (scripts, the
/// tests) land in `entries` and `entry_extra`. Hashes are kept as the
/// writer gives them (hex text reads back the same); only functions every
/// `sqlite3` since 3.35 has are used.
fn view_triggers() -> String {
    let src = compact::SOURCE_ROOT;
    let rel = compact::rel_sql("NEW.source_path", src);
    let (ms, mn) = secs_of("NEW.modified_ns");
    let kind_new = code_of("NEW.kind", &KINDS);
    let status_new = code_of("NEW.status", &STATUSES);
    let alg_new = "CASE WHEN NEW.hash IS NOT NULL AND NEW.hash_algorithm IS NOT 'sha256'
        THEN NEW.hash_algorithm END";
    let after_size_new = "CASE WHEN NEW.after_copy_modified_ns IS NOT NULL
        AND NEW.after_copy_size IS NOT NEW.size THEN NEW.after_copy_size END";
    // `k`: the stored path `r` of NEW.source_path, its folder's path `p`
    // (up to its last `/`; NULL for none) and its name `n`, each computed
    // once in a derived table.
    let c = "length(CAST(rtrim(CAST(r AS BLOB), replace(CAST(r AS BLOB), '/', '')) AS BLOB))";
    let key = format!(
        "(SELECT r,
            CASE WHEN CAST(r AS BLOB) IN (X'', X'2F') THEN NULL
                 WHEN {c} = 0 THEN ''
                 WHEN {c} = 1 THEN '/'
                 WHEN typeof(r) = 'blob' THEN substr(CAST(r AS BLOB), 1, {c} - 1)
                 ELSE CAST(substr(CAST(r AS BLOB), 1, {c} - 1) AS TEXT) END AS p,
            CASE WHEN CAST(r AS BLOB) IN (X'', X'2F') THEN r
                 WHEN typeof(r) = 'blob' THEN substr(CAST(r AS BLOB), {c} + 1)
                 ELSE CAST(substr(CAST(r AS BLOB), {c} + 1) AS TEXT) END AS n
          FROM (SELECT {rel} AS r)) AS k"
    );
    let folder = "coalesce((SELECT id FROM folders WHERE path = k.p), 0)";
    let bits = format!(
        "CASE {kind_new} WHEN 0 THEN {} WHEN 1 THEN {} WHEN 2 THEN {} ELSE 0 END",
        TYPE_BITS[0], TYPE_BITS[1], TYPE_BITS[2]
    );
    let values = |id: &str| {
        format!(
            "{folder}, k.n, {id}, {kind_new}, {status_new}, NEW.size, {ms}, {mn},
             NEW.accessed_ns - NEW.modified_ns, NEW.changed_ns - NEW.modified_ns,
             NEW.created_ns - NEW.changed_ns, (NEW.mode | ({bits})) & ~(NEW.mode & ({bits})),
             CASE WHEN NEW.uid < 65536 AND NEW.gid < 65536 THEN NEW.uid * 65536 + NEW.gid
                  WHEN NEW.uid < 2147483648 THEN -(NEW.uid * 4294967296 + NEW.gid) - 1
                  ELSE NEW.uid || ':' || NEW.gid END,
             {hash}, NEW.after_copy_modified_ns - NEW.modified_ns,
             coalesce(NEW.scan_id, 0)",
            hash = "NEW.hash",
        )
    };
    let cols = "folder, name, id, kind, status, size, mtime, mtime_ns, atime_d, ctime_d, birth_d,
        mode_x, owner, hash, after_d, scan_id";
    let any = format!(
        "(NEW.error IS NOT NULL OR coalesce(NEW.fail_streak, 0) <> 0
          OR ({alg_new}) IS NOT NULL OR ({after_size_new}) IS NOT NULL
          OR NEW.verified_at IS NOT NULL OR NEW.verify_result IS NOT NULL
          OR NEW.verified_hash IS NOT NULL OR NEW.link_dev IS NOT NULL
          OR NEW.link_ino IS NOT NULL
          OR (NEW.dest_path IS NOT NULL AND NEW.dest_path IS NOT {derived}))",
        derived = compact::full_sql("k.r", compact::DEST_ROOT),
    );
    let extra = |id: &str| {
        format!(
            "INSERT OR REPLACE INTO entry_extra (id, folder, name, dest, error, fail_streak,
                 verified_at, verify_result, verified_hash, link_dev, link_ino,
                 hash_algorithm, after_size)
             SELECT {id}, {folder}, k.n,
                 CASE WHEN NEW.dest_path IS NOT {derived} THEN NEW.dest_path END,
                 NEW.error, coalesce(NEW.fail_streak, 0), NEW.verified_at, NEW.verify_result,
                 {vh}, NEW.link_dev, NEW.link_ino, {alg_new}, {after_size_new}
             FROM {key} WHERE {any};
             DELETE FROM entry_extra WHERE id = {id} AND NOT (SELECT {any} FROM {key});",
            vh = "NEW.verified_hash",
            derived = compact::full_sql("k.r", compact::DEST_ROOT),
        )
    };
    let new_id = "coalesce(NEW.rowid, (SELECT next FROM entry_ids))";
    format!(
        "
CREATE TRIGGER files_insert INSTEAD OF INSERT ON files BEGIN
    INSERT OR IGNORE INTO folders (path) SELECT k.p FROM {key} WHERE k.p IS NOT NULL;
    INSERT INTO entries ({cols}) SELECT {vals_new} FROM {key};
    {extra_new}
END;
CREATE TRIGGER files_update INSTEAD OF UPDATE ON files BEGIN
    INSERT OR IGNORE INTO folders (path) SELECT k.p FROM {key} WHERE k.p IS NOT NULL;
    DELETE FROM entries WHERE folder = OLD.key_folder AND name = OLD.key_name;
    INSERT INTO entries ({cols}) SELECT {vals_upd} FROM {key};
    {extra_upd}
END;
CREATE TRIGGER files_delete INSTEAD OF DELETE ON files BEGIN
    DELETE FROM entries WHERE folder = OLD.key_folder AND name = OLD.key_name;
END;
",
        vals_new = values(new_id),
        extra_new = extra("coalesce(NEW.rowid, (SELECT next - 1 FROM entry_ids))"),
        vals_upd = values("OLD.rowid"),
        extra_upd = extra("OLD.rowid"),
    )
}

/// The v13 migration: every v12 row rewritten under its key, with its
/// extra columns where it has any, then the old table dropped. One
/// transaction; progress lines as v12's.
pub(super) fn migrate(tx: &Transaction<'_>) -> rusqlite_migration::HookResult {
    migrate_every(tx, std::time::Duration::from_secs(5), &mut compact::say)
}

fn migrate_every(
    tx: &Transaction<'_>,
    every: std::time::Duration,
    say: &mut dyn FnMut(String),
) -> rusqlite_migration::HookResult {
    let dest_root: Option<std::path::PathBuf> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'destination'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .map(Into::into);
    let total: i64 = tx.query_row("SELECT count(*) FROM entries_v12", [], |r| r.get(0))?;
    compact::set_big(total as u64);
    let mut progress = compact::Progress::new(13, total as u64, every, say);
    let mut read = tx.prepare(
        "SELECT rowid, path, dest, kind, status, size, modified_ns, accessed_ns, changed_ns,
                created_ns, mode, uid, gid, hash, hash_algorithm, after_copy_size,
                after_copy_modified_ns, scan_id, error, fail_streak, verified_at,
                verify_result, verified_hash, link_dev, link_ino
         FROM entries_v12 ORDER BY rowid",
    )?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let key = key_or_new(tx, bytes_of(r.get_ref(1)?)?)?;
        let kind: i64 = r.get(3)?;
        let m: Ns = r.get(6)?;
        let (secs, ns) = split_ns(m.0);
        let changed: Ns = r.get(8)?;
        let after_size: Option<i64> = r.get(15)?;
        let after_m: Option<Ns> = r.get(16)?;
        let size: i64 = r.get(5)?;
        tx.prepare_cached(
            "INSERT INTO entries (folder, name, id, kind, status, size, mtime, mtime_ns,
                 atime_d, ctime_d, birth_d, mode_x, owner, hash, after_d, scan_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            key.folder,
            bytes_value(&key.name),
            id,
            kind,
            r.get::<_, i64>(4)?,
            size,
            secs,
            ns,
            delta(m.0, r.get::<_, Ns>(7)?.0),
            delta(m.0, changed.0),
            birth_delta(m.0, changed.0, r.get::<_, Option<Ns>>(9)?.map(|t| t.0)),
            mode_x(kind, r.get(10)?),
            owner(r.get(11)?, r.get(12)?),
            ToSqlOutput::Borrowed(r.get_ref(13)?),
            delta_opt(m.0, after_m.map(|t| t.0)),
            r.get::<_, i64>(17)?,
        ])?;
        let hash_algorithm = match r.get_ref(13)? {
            ValueRef::Null => None,
            _ => r
                .get::<_, Option<compact::Algorithm>>(14)?
                .map(|a| a.0)
                .filter(|a| a != "sha256"),
        };
        // A destination written whole where it is derived (through v12's
        // view) is dropped: derived again from the path.
        let stored = bytes_of(r.get_ref(1)?)?;
        let derived = match (r.get_ref(2)?, &dest_root) {
            (ValueRef::Null, _) => true,
            (v, Some(root)) if stored.first() != Some(&b'/') => {
                bytes_of(v)?
                    == compact::full_path(Some(root), stored)
                        .as_os_str()
                        .as_bytes()
            }
            _ => false,
        };
        let extra = Extra {
            dest: (!derived).then(|| r.get(2)).transpose()?,
            error: r.get(18)?,
            fail_streak: r.get(19)?,
            verified_at: r.get(20)?,
            verify_result: r.get(21)?,
            verified_hash: r.get(22)?,
            link: match (r.get(23)?, r.get(24)?) {
                (Some(d), Some(i)) => Some((d, i)),
                _ => None,
            },
            algorithm: hash_algorithm,
            after_size: after_m.and(after_size).filter(|s| *s != size),
        };
        if extra != Extra::default() {
            extra.store(tx, id, &key)?;
        }
        progress.step();
    }
    drop(rows);
    drop(read);
    tx.execute_batch(&format!(
        "UPDATE entry_ids SET next = (SELECT coalesce(max(rowid), 0) + 1 FROM entries_v12);
         DROP TABLE entries_v12;\n{}",
        after_rows()
    ))?;
    progress.done();
    Ok(())
}

/// SQL: the FROM of a row read with its folder and extra columns.
pub(super) const FROM: &str =
    "entries e LEFT JOIN folders f ON f.id = e.folder LEFT JOIN entry_extra x ON x.id = e.id";

/// SQL: the columns [`Decoded::read`] reads, from column `at` on.
pub(super) const COLS: &str = "e.id, e.folder, e.name, f.path, x.dest, e.kind, e.status, e.size,
    e.mtime, e.mtime_ns, e.atime_d, e.ctime_d, e.birth_d, e.mode_x, e.owner, e.birth_d, e.hash,
    x.hash_algorithm, e.after_d, x.after_size, x.link_dev, x.link_ino, e.scan_id";

/// A row as stored, decoded (the columns of [`COLS`]).
#[derive(Debug, Clone)]
pub(super) struct Decoded {
    pub id: i64,
    pub key: RowKey,
    /// The stored path (below the source root, or whole).
    pub stored: Vec<u8>,
    /// The explicit destination, where not derived.
    pub dest: Option<std::path::PathBuf>,
    pub kind: i64,
    pub status: i64,
    pub size: i64,
    pub modified: i128,
    pub accessed: i128,
    pub changed: i128,
    pub created: Option<i128>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub hash: Option<String>,
    pub algorithm: Option<String>,
    /// The destination's (size, mtime) right after the copy.
    pub after: Option<(i64, i128)>,
    pub link: Option<(i64, i64)>,
    pub scan_id: i64,
}

impl Decoded {
    /// Reads the columns of [`COLS`] starting at column `at`.
    pub fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        let c = |i: usize| at + i;
        let folder: i64 = r.get(c(1))?;
        let name = bytes_of(r.get_ref(c(2))?)?.to_vec();
        let fpath = match r.get_ref(c(3))? {
            ValueRef::Null => None,
            v => Some(bytes_of(v)?.to_vec()),
        };
        let stored = join(if folder == 0 { None } else { fpath.as_deref() }, &name);
        let kind: i64 = r.get(c(5))?;
        let size: i64 = r.get(c(7))?;
        let t = Times::read(r, c(8))?;
        let modified = t.modified;
        let after = match r.get_ref(c(18))? {
            ValueRef::Null => None,
            d => Some((
                r.get::<_, Option<i64>>(c(19))?.unwrap_or(size),
                undelta(modified, d)?,
            )),
        };
        Ok(Self {
            id: r.get(c(0))?,
            key: RowKey { folder, name },
            stored,
            dest: match r.get_ref(c(4))? {
                ValueRef::Null => None,
                v => Some(super::path_from(v)?),
            },
            kind,
            status: r.get(c(6))?,
            size,
            modified,
            accessed: t.accessed,
            changed: t.changed,
            created: t.created,
            mode: mode_of(kind, r.get(c(13))?),
            uid: owner_of(r.get_ref(c(14))?)?.0,
            gid: owner_of(r.get_ref(c(14))?)?.1,
            hash: compact::hash_read(r, c(16))?,
            algorithm: match r.get_ref(c(16))? {
                ValueRef::Null => None,
                _ => Some(
                    r.get::<_, Option<String>>(c(17))?
                        .unwrap_or_else(|| "sha256".to_owned()),
                ),
            },
            after,
            link: match (r.get(c(20))?, r.get(c(21))?) {
                (Some(d), Some(i)) => Some((d, i)),
                _ => None,
            },
            scan_id: r.get(c(22))?,
        })
    }
}

/// The rarely set columns of a row (`entry_extra`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Extra {
    pub dest: Option<rusqlite::types::Value>,
    pub error: Option<String>,
    pub fail_streak: i64,
    pub verified_at: Option<i64>,
    pub verify_result: Option<String>,
    pub verified_hash: Option<rusqlite::types::Value>,
    pub link: Option<(i64, i64)>,
    /// The hash's algorithm where it is not `sha256`.
    pub algorithm: Option<String>,
    /// The destination's size right after the copy, where not the row's.
    pub after_size: Option<i64>,
}

impl Extra {
    /// Row `id`'s extra columns (all empty when it has none).
    pub fn load(conn: &Connection, id: i64) -> rusqlite::Result<Self> {
        Ok(conn
            .prepare_cached(
                "SELECT dest, error, fail_streak, verified_at, verify_result, verified_hash,
                        link_dev, link_ino, hash_algorithm, after_size
                 FROM entry_extra WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok(Self {
                    dest: r.get(0)?,
                    error: r.get(1)?,
                    fail_streak: r.get(2)?,
                    verified_at: r.get(3)?,
                    verify_result: r.get(4)?,
                    verified_hash: r.get(5)?,
                    link: match (r.get(6)?, r.get(7)?) {
                        (Some(d), Some(i)) => Some((d, i)),
                        _ => None,
                    },
                    algorithm: r.get(8)?,
                    after_size: r.get(9)?,
                })
            })
            .optional()?
            .unwrap_or_default())
    }

    /// Writes row `id`'s extra columns (its row gone when all are empty).
    pub fn store(&self, conn: &Connection, id: i64, key: &RowKey) -> rusqlite::Result<()> {
        if *self == Self::default() {
            conn.prepare_cached("DELETE FROM entry_extra WHERE id = ?1")?
                .execute([id])?;
            return Ok(());
        }
        conn.prepare_cached(
            "INSERT OR REPLACE INTO entry_extra (id, folder, name, dest, error, fail_streak,
                 verified_at, verify_result, verified_hash, link_dev, link_ino, hash_algorithm,
                 after_size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            id,
            key.folder,
            key.name_value(),
            self.dest,
            self.error,
            self.fail_streak,
            self.verified_at,
            self.verify_result,
            self.verified_hash,
            self.link.map(|l| l.0),
            self.link.map(|l| l.1),
            self.algorithm,
            self.after_size,
        ])?;
        Ok(())
    }

    /// Changes row `id`'s extra columns with `f`.
    pub fn change(
        conn: &Connection,
        id: i64,
        key: &RowKey,
        f: impl FnOnce(&mut Self),
    ) -> rusqlite::Result<()> {
        let old = Self::load(conn, id)?;
        let mut new = old.clone();
        f(&mut new);
        if new != old {
            new.store(conn, id, key)?;
        }
        Ok(())
    }
}

/// Inserts decoded row `d` (from another DB) with its extra columns under
/// a new id, unless a row has its path already.
pub(super) fn insert_decoded(conn: &Connection, d: &Decoded, x: &Extra) -> rusqlite::Result<()> {
    let key = key_or_new(conn, &d.stored)?;
    let id = next_id(conn)?;
    let (secs, ns) = split_ns(d.modified);
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO main.entries (folder, name, id, kind, status, size, mtime,
                 mtime_ns, atime_d, ctime_d, birth_d, mode_x, owner, hash, after_d, scan_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            key.folder,
            key.name_value(),
            id,
            d.kind,
            d.status,
            d.size,
            secs,
            ns,
            delta(d.modified, d.accessed),
            delta(d.modified, d.changed),
            birth_delta(d.modified, d.changed, d.created),
            mode_x(d.kind, d.mode),
            owner(d.uid, d.gid),
            compact::hash_opt(d.hash.as_deref()),
            d.after.map(|(_, m)| delta(d.modified, m)),
            d.scan_id,
        ])?;
    if n > 0 && *x != Extra::default() {
        x.store(conn, id, &key)?;
    }
    Ok(())
}

/// The id and key of a row not synced, found by its id (the backlog's
/// index); a synced row by reading every row (never on a hot path).
pub(super) fn by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<(RowKey, i64)>> {
    let read = |r: &rusqlite::Row<'_>| {
        Ok((
            RowKey {
                folder: r.get(0)?,
                name: bytes_of(r.get_ref(1)?)?.to_vec(),
            },
            r.get(2)?,
        ))
    };
    if let Some(found) = conn
        .prepare_cached("SELECT folder, name, status FROM entries WHERE status <> 1 AND id = ?1")?
        .query_row([id], read)
        .optional()?
    {
        return Ok(Some(found));
    }
    conn.prepare_cached("SELECT folder, name, status FROM entries WHERE id = ?1")?
        .query_row([id], read)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_folder_and_name_and_back() {
        for (p, f, n) in [
            (&b""[..], None, &b""[..]),
            (b"/", None, b"/"),
            (b"a", Some(&b""[..]), b"a"),
            (b"a/b", Some(b"a"), b"b"),
            (b"a/b/c.txt", Some(b"a/b"), b"c.txt"),
            (b"/x", Some(b"/"), b"x"),
            (b"/x/y", Some(b"/x"), b"y"),
            (b"caf\xe9/\xff", Some(b"caf\xe9"), b"\xff"),
        ] {
            assert_eq!(split(p), (f, n), "{p:?}");
            assert_eq!(join(f, n), p, "{p:?}");
        }
    }

    #[test]
    fn modes_keep_every_bit_through_the_flip() {
        for (kind, mode) in [
            (0, 0o100644),
            (1, 0o40755),
            (2, 0o120777),
            (0, 0o644),
            (1, 0o104755),
        ] {
            assert_eq!(mode_of(kind, mode_x(kind, mode)), mode);
        }
        assert!(mode_x(0, 0o100644) < 0o10000);
        for (uid, gid) in [
            (0, 0),
            (1000, 1000),
            (65535, 65535),
            (65536, 0),
            (0, 1_000_513),
            (2_147_483_647, u32::MAX),
            (u32::MAX, 0),
            (4_294_967_294, 4_294_967_294),
        ] {
            let v = owner(uid, gid);
            let r = match &v {
                ToSqlOutput::Owned(o) => ValueRef::from(o),
                ToSqlOutput::Borrowed(b) => *b,
                _ => unreachable!(),
            };
            assert_eq!(owner_of(r).unwrap(), (uid, gid));
        }
        assert_eq!(
            owner(0, 0),
            ToSqlOutput::from(0i64),
            "root's owner takes no byte"
        );
    }

    #[test]
    fn deltas_round_trip_over_any_range() {
        let big = i128::from(i64::MAX) * 3;
        for (base, t) in [
            (0, 0),
            (5, -7),
            (-big, big),
            (big, -big),
            (1, 1 + i128::from(i64::MAX)),
        ] {
            let v = delta(base, t);
            let r = match &v {
                ToSqlOutput::Owned(o) => ValueRef::from(o),
                ToSqlOutput::Borrowed(b) => *b,
                _ => unreachable!(),
            };
            assert_eq!(undelta(base, r).unwrap(), t, "{base} {t}");
        }
        assert_eq!(split_ns(-1), (-1, 999_999_999));
        assert_eq!(join_ns(-1, 999_999_999), -1);
    }

    /// Writes through the view land in `entries` as the product writes
    /// them, and the running totals follow.
    #[test]
    fn the_view_takes_inserts_updates_and_deletes() {
        let (_dir, _path, db) = crate::db::tests::temp_db();
        db.check_roots("/s".into(), "/d".into(), &|_, _| false)
            .unwrap();
        let c = &db.conn;
        c.execute(
            "INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                changed_ns, mode, uid, gid, hash, hash_algorithm, status, scan_id)
             VALUES (CAST(X'2F732F6361FF' AS BLOB), '/d/x', 'file', 7, 1, 2, 3, 420, 0, 0,
                'ab01', 'sha256', 'synced', 1)",
            [],
        )
        .unwrap();
        let (path, ty, kind, status, extra): (Vec<u8>, String, i64, i64, i64) = c
            .query_row(
                "SELECT CAST(e.name AS BLOB), typeof(e.name), kind, status,
                        (SELECT count(*) FROM entry_extra)
                 FROM entries e JOIN folders f ON f.id = e.folder AND f.path = ''",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!((path.as_slice(), ty.as_str()), (&b"ca\xff"[..], "blob"));
        assert_eq!(
            (kind, status, extra),
            (0, 1, 1),
            "sha256 implied; apart only the destination, not the one derived"
        );
        let alg: String = c
            .query_row("SELECT hash_algorithm FROM files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(alg, "sha256");
        assert_eq!(db.synced_files().unwrap(), (1, 0), "one synced, hashed");
        assert_eq!(db.status_counts().unwrap()[1].bytes, 7);
        c.execute("UPDATE files SET status = 'failed', error = 'x'", [])
            .unwrap();
        let (status, hash): (String, String) = c
            .query_row("SELECT status, hash FROM files", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((status.as_str(), hash.as_str()), ("failed", "ab01"));
        assert_eq!(db.synced_files().unwrap(), (0, 0));
        assert_eq!(db.status_counts().unwrap()[2].files, 1);
        c.execute("DELETE FROM files", []).unwrap();
        assert_eq!(db.count_files().unwrap(), 0);
        let left: i64 = c
            .query_row("SELECT sum(entries) FROM totals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// A v12 DB with every kind of fact migrates to v13 and the view shows
    /// every row exactly as before: non-UTF-8 names, a root row, a path
    /// stored whole, failed rows with their streak, a verify result, a
    /// hard-link key, an explicit destination, times past 2262 and before
    /// 1677, a birth time, an after-copy stamp that differs.
    #[test]
    fn a_v12_db_keeps_every_fact_through_v13() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::super::schema::MIGRATIONS
            .to_version(&mut c, 12)
            .unwrap();
        c.execute_batch(
            "INSERT INTO meta VALUES ('source', '/s'), ('destination', '/d');
             INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns,
                 changed_ns, created_ns, mode, uid, gid, hash, hash_algorithm, status, scan_id,
                 after_copy_size, after_copy_modified_ns, error, fail_streak, verified_at,
                 verify_result, verified_hash, link_dev, link_ino)
             VALUES
             ('/s', '/d', 'dir', 0, 5, 5, 6, NULL, 16877, 0, 0, NULL, NULL, 'synced', 1,
                 NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL),
             ('/s/a', '/d/a', 'dir', 0, 5, 5, 6, 4, 16877, 1, 2, NULL, NULL, 'pending', 1,
                 NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL),
             ('/s/a/f.txt', '/d/a/f.txt', 'file', 7, 1704067200123456789, 1704067200123456789,
                 1796598241517002970, 1796598241517002970, 33188, 1000, 1000,
                 'ab01', 'sha256', 'synced', 2, 7, 1704067200123456700, NULL, 0,
                 1796598241, 'ok', 'ab01', 40, 7),
             (CAST(X'2F732F61FF2F62' AS BLOB), CAST(X'2F642F61FF2F62' AS BLOB), 'file', 3,
                 '@15032385535.000000001', '@-9300000000.999999999', -5, NULL, 33152, 0, 0,
                 NULL, NULL, 'failed', 3, NULL, NULL, 'EIO', 4, NULL, NULL, NULL, NULL, NULL),
             ('/elsewhere/x', '/d/x', 'symlink', 2, 0, 0, 0, NULL, 41471, 0, 0, NULL, NULL,
                 'pending', 1, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL),
             ('/s/moved', '/other/place', 'file', 9, 10, 11, 12, 13, 33188, 0, 0, 'cd', 'md5',
                 'synced', 1, 10, 10, NULL, 0, 5, 'mismatch', 'ee', NULL, NULL);",
        )
        .unwrap();
        let cols = "rowid, source_path, dest_path, kind, size, modified_ns, accessed_ns,
            changed_ns, created_ns, mode, uid, gid, after_copy_size, after_copy_modified_ns,
            scan_id, error, fail_streak, verified_at, verify_result, hash, hash_algorithm,
            status, verified_hash, link_dev, link_ino";
        let read = |c: &rusqlite::Connection| -> Vec<Vec<rusqlite::types::Value>> {
            let mut st = c
                .prepare(&format!("SELECT {cols} FROM files ORDER BY rowid"))
                .unwrap();
            let n = st.column_count();
            st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let before = read(&c);
        assert_eq!(before.len(), 6);
        let mut lines = Vec::new();
        let tx = c.transaction().unwrap();
        tx.execute_batch(TABLES).unwrap();
        migrate_every(&tx, std::time::Duration::ZERO, &mut |l| lines.push(l)).unwrap();
        tx.commit().unwrap();
        assert!(
            lines.join("\n").contains("state DB v13: rewriting 6 rows"),
            "{lines:?}"
        );
        let after = read(&c);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(a, b, "the view shows the row as v12 did");
        }
        // A new row takes the next id.
        let next: i64 = c
            .query_row("SELECT next FROM entry_ids", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, 7);
        let extra: i64 = c
            .query_row("SELECT count(*) FROM entry_extra", [], |r| r.get(0))
            .unwrap();

        assert_eq!(extra, 4, "the verified, failed, moved and whole rows only");
    }
}
