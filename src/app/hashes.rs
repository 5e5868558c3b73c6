//! `jobrun hashes JOB.toml`: every synced file's recorded hash, streamed
//! from the state DB (one statement, constant memory at any row count),
//! as a coreutils checksum file (`sha256sum -c` run in the destination
//! root checks it), BSD tag lines or JSON Lines. Read-only, like `status`:
//! no lock, no migration.

use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use super::{Failure, load};
use crate::audit::encode_path;
use crate::checksum::HashAlgo;
use crate::cli::{HashFormat, HashesArgs, RelativeTo};
use crate::db::{DbError, HashedFile};
use crate::exit::Exit;
use crate::sumfile;

#[derive(Serialize)]
struct JsonLine<'a> {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_b64: Option<String>,
    algorithm: &'a str,
    hash: &'a str,
    size: u64,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_b64: Option<String>,
    dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_b64: Option<String>,
}

/// Why the stream stopped early.
enum Stop {
    Db(DbError),
    /// stdout closed (`| head`): not an error worth a message.
    Closed,
    Write(std::io::Error),
}

impl From<DbError> for Stop {
    fn from(e: DbError) -> Self {
        Stop::Db(e)
    }
}

pub fn hashes(args: &HashesArgs) -> Result<Exit, Failure> {
    let job = load(&args.common)?;
    let db = super::job_db(&job)?;
    let fatal = |e: DbError| Failure::new(e, Exit::Fatal);
    let algos = db.hash_algorithms().map_err(fatal)?;
    if args.format == HashFormat::Coreutils && algos.len() > 1 {
        // One checksum file is read by one tool: `sha256sum -c` cannot
        // check md5 lines.
        return Err(Failure::new(
            format!(
                "the synced files carry hashes of {} algorithms ({}); the coreutils format \
                 holds one: use --format bsd or --format json",
                algos.len(),
                algos.join(", ")
            ),
            Exit::Usage,
        ));
    }
    let root = match args.relative_to {
        RelativeTo::Destination => job.destination.as_std_path(),
        RelativeTo::Source => job.source.as_std_path(),
    };
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut buf = Vec::with_capacity(512);
    let written = db.for_each_hashed(|f: HashedFile| {
        buf.clear();
        let full = match args.relative_to {
            RelativeTo::Destination => &f.dest,
            RelativeTo::Source => &f.source,
        };
        let rel = crate::relpath::relative(full, root).unwrap_or(full);
        format_line(&mut buf, args.format, &f, rel);
        out.write_all(&buf).map_err(closed_or)
    });
    let flushed = written.and_then(|()| out.flush().map_err(closed_or));
    match flushed {
        Ok(()) | Err(Stop::Closed) => Ok(Exit::Ok),
        Err(Stop::Db(e)) => Err(fatal(e)),
        Err(Stop::Write(e)) => Err(Failure::new(
            format!("cannot write the hash list: {e}"),
            Exit::Fatal,
        )),
    }
}

fn closed_or(e: std::io::Error) -> Stop {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Stop::Closed
    } else {
        Stop::Write(e)
    }
}

fn format_line(buf: &mut Vec<u8>, format: HashFormat, f: &HashedFile, rel: &Path) {
    match format {
        HashFormat::Coreutils => sumfile::coreutils_line(buf, &f.hash, rel.as_os_str().as_bytes()),
        HashFormat::Bsd => {
            let tag: &str = match HashAlgo::ALL.into_iter().find(|a| a.name() == f.algorithm) {
                Some(a) => sumfile::bsd_tag(a),
                None => &f.algorithm,
            };
            sumfile::bsd_line(buf, tag, &f.hash, rel.as_os_str().as_bytes());
        }
        HashFormat::Json => {
            let (path, path_b64) = encode_path(rel);
            let (source, source_b64) = encode_path(&f.source);
            let (dest, dest_b64) = encode_path(&f.dest);
            let line = JsonLine {
                path,
                path_b64,
                algorithm: &f.algorithm,
                hash: &f.hash,
                size: f.size,
                source,
                source_b64,
                dest,
                dest_b64,
            };
            // Serializing plain strings and numbers cannot fail.
            let _ = serde_json::to_writer(&mut *buf, &line);
            buf.push(b'\n');
        }
    }
}
