//! Lines of a checksum file as GNU coreutils writes and `sha256sum -c`
//! (`md5sum`, `sha1sum`, `b2sum`) reads them: `<hex>  <name>`, or the BSD
//! tag form `SHA256 (<name>) = <hex>`. Pure byte formatting; names are raw
//! bytes (not necessarily UTF-8), written as they are.
//!
//! GNU escaping (coreutils `digest.c`, 9.x): a name holding a backslash,
//! a newline or a carriage return is written with `\\` for `\`, `\n` for a
//! newline and `\r` for a carriage return, and the whole line then starts
//! with one `\`, which tells `-c` to unescape the name. Other names are
//! written byte for byte.

use crate::checksum::HashAlgo;

/// The name as GNU writes it, and whether the line needs the `\` prefix.
pub fn escape(name: &[u8]) -> (bool, Vec<u8>) {
    if !name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r')) {
        return (false, name.to_vec());
    }
    let mut out = Vec::with_capacity(name.len() + 8);
    for &b in name {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    (true, out)
}

/// `<hex>  <name>\n` (two spaces: text mode, what `sha256sum` writes).
pub fn coreutils_line(out: &mut Vec<u8>, hex: &str, name: &[u8]) {
    let (escaped, name) = escape(name);
    if escaped {
        out.push(b'\\');
    }
    out.extend_from_slice(hex.as_bytes());
    out.extend_from_slice(b"  ");
    out.extend_from_slice(&name);
    out.push(b'\n');
}

/// The tag `--tag` writes for an algorithm (`b2sum --tag` says `BLAKE2b`
/// for its default 512-bit digest).
pub fn bsd_tag(algo: HashAlgo) -> &'static str {
    match algo {
        HashAlgo::Md5 => "MD5",
        HashAlgo::Sha1 => "SHA1",
        HashAlgo::Sha256 => "SHA256",
        HashAlgo::Blake2b => "BLAKE2b",
    }
}

/// `SHA256 (<name>) = <hex>\n`, escaped as [`coreutils_line`].
pub fn bsd_line(out: &mut Vec<u8>, tag: &str, hex: &str, name: &[u8]) {
    let (escaped, name) = escape(name);
    if escaped {
        out.push(b'\\');
    }
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b" (");
    out.extend_from_slice(&name);
    out.extend_from_slice(b") = ");
    out.extend_from_slice(hex.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        coreutils_line(&mut v, "ab", name);
        v
    }

    #[test]
    fn plain_names_are_written_as_they_are() {
        assert_eq!(line(b"a b/c.txt"), b"ab  a b/c.txt\n");
        assert_eq!(line(b"caf\xe9"), b"ab  caf\xe9\n");
    }

    #[test]
    fn gnu_escapes_backslash_newline_and_carriage_return() {
        // As `sha256sum` 9.1 writes them (checked by hand on this machine).
        assert_eq!(line(b"a\\b"), b"\\ab  a\\\\b\n");
        assert_eq!(line(b"n\nl"), b"\\ab  n\\nl\n");
        assert_eq!(line(b"c\rr"), b"\\ab  c\\rr\n");
    }

    #[test]
    fn bsd_lines() {
        let mut v = Vec::new();
        bsd_line(&mut v, "SHA256", "ab", b"sp ace");
        bsd_line(&mut v, "BLAKE2b", "cd", b"n\nl");
        assert_eq!(v, b"SHA256 (sp ace) = ab\n\\BLAKE2b (n\\nl) = cd\n");
    }
}
