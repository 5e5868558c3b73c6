//! Hash algorithms chosen at run time (SPEC §2 `checksum`). The only module
//! that imports the digest crates, so a crate upgrade touches one file.

use std::fmt;

use digest::DynDigest;
use serde::{Deserialize, Serialize};

/// The `checksum` manifest key. Spelled in the DB and the audit log exactly
/// as the manifest spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgo {
    Md5,
    Sha1,
    #[default]
    Sha256,
    /// BLAKE2b-512, the same digest as coreutils `b2sum`.
    Blake2b,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Blake2b];

    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Blake2b => "blake2b",
        }
    }

    /// A fresh incremental hasher. sha1/sha256 pick the CPU's SHA extensions
    /// at run time (cpufeatures), so no build flag is needed for speed.
    pub fn hasher(self) -> Hasher {
        let inner: Box<dyn DynDigest + Send> = match self {
            Self::Md5 => Box::new(md5::Md5::default()),
            Self::Sha1 => Box::new(sha1::Sha1::default()),
            Self::Sha256 => Box::new(sha2::Sha256::default()),
            Self::Blake2b => Box::new(blake2::Blake2b512::default()),
        };
        Hasher { inner }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Incremental hasher fed block by block by the transfer reader.
pub struct Hasher {
    inner: Box<dyn DynDigest + Send>,
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// Lowercase hex digest, as stored in the DB and the audit log.
    pub fn finish_hex(self) -> String {
        use std::fmt::Write;
        let out = self.inner.finalize();
        let mut s = String::with_capacity(out.len() * 2);
        for b in out.iter() {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(algo: HashAlgo, data: &[u8]) -> String {
        let mut h = algo.hasher();
        h.update(data);
        h.finish_hex()
    }

    #[test]
    fn known_vectors_for_abc() {
        assert_eq!(
            hex(HashAlgo::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hex(HashAlgo::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(HashAlgo::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hex(HashAlgo::Blake2b, b"abc").starts_with("ba80a53f981c4d0d6a2797b69f12f6e9"));
        assert_eq!(hex(HashAlgo::Blake2b, b"abc").len(), 128);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for algo in HashAlgo::ALL {
            let mut h = algo.hasher();
            for chunk in data.chunks(777) {
                h.update(chunk);
            }
            assert_eq!(h.finish_hex(), hex(algo, &data), "{algo}");
        }
    }

    #[test]
    fn names_round_trip_through_serde() {
        for algo in HashAlgo::ALL {
            let s = serde_json::to_string(&algo).unwrap();
            assert_eq!(s, format!("\"{}\"", algo.name()));
        }
    }
}
