//! `/proc/self/mountinfo`'s lines, as [`super::Filesystem`] reads them,
//! and what a mount's type and options say of its inode numbers.

use super::Filesystem;

/// One line of `/proc/self/mountinfo`:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
pub(super) struct MountLine {
    pub(super) id: u64,
    pub(super) dev: String,
    pub(super) fs: Filesystem,
    /// The filesystem's own options (after the source): `rw,vers=3.1.1,…`.
    pub(super) opts: String,
}

impl MountLine {
    pub(super) fn parse(line: &str) -> Option<Self> {
        let (head, tail) = line.split_once(" - ")?;
        let mut h = head.split(' ');
        let id = h.next()?.parse().ok()?;
        let _parent = h.next()?;
        let dev = h.next()?.to_string();
        let root = unescape(h.next()?);
        let mount_point = unescape(h.next()?);
        let mut t = tail.split(' ');
        let fstype = unescape(t.next()?);
        let source = unescape(t.next()?);
        let opts = t.next().unwrap_or_default().to_string();
        Some(Self {
            id,
            dev,
            fs: Filesystem {
                fstype,
                source,
                mount_point,
                root,
            },
            opts,
        })
    }
}

/// Whether a mount of type `fstype` with options `opts` shows one inode
/// number for every name of a file while its link count says 1: the
/// kernel's SMB client with `serverino` (the server's file ids; Linux
/// shows the option whenever it is in force, and drops it when the server
/// gives no ids). Without it the client numbers inodes itself: a file's
/// names differ and the numbers are not kept across mounts.
pub(super) fn names_share_inode(fstype: &str, opts: &str) -> bool {
    matches!(fstype, "cifs" | "smb3") && opts.split(',').any(|o| o == "serverino")
}

/// mountinfo's octal escapes (`\040` a space, `\011` a tab, `\012` a
/// newline, `\134` a backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(o)) => {
                let v = o.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_read_and_a_lone_backslash_kept() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/mnt/t\\011x\\134y"), "/mnt/t\tx\\y");
        assert_eq!(unescape("/x\\"), "/x\\");
    }

    #[test]
    fn only_the_smb_client_with_server_inode_numbers_shares_a_files_inode() {
        let line = "52 27 0:60 / /mnt/kernlab/smb/src rw,relatime shared:30 - cifs //198.18.1.1/src \
                    rw,vers=3.1.1,cache=strict,username=root,uid=0,noforceuid,gid=0,noforcegid,\
                    addr=198.18.1.1,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,\
                    rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1,closetimeo=1";
        let l = MountLine::parse(line).unwrap();
        assert_eq!(l.fs.fstype, "cifs");
        assert!(names_share_inode(&l.fs.fstype, &l.opts));
        assert!(!names_share_inode(
            "cifs",
            "rw,vers=3.1.1,noserverino,mapposix"
        ));
        assert!(names_share_inode("smb3", "rw,serverino"));
        // NFS and local disks report real link counts: grouped by those.
        assert!(!names_share_inode("nfs4", "rw,vers=4.1,serverino"));
        assert!(!names_share_inode("ext4", "rw,relatime"));
        // A line without options parses, and shares nothing.
        let bare = MountLine::parse("1 0 0:1 / / rw - tmpfs none").unwrap();
        assert!(!names_share_inode(&bare.fs.fstype, &bare.opts));
    }
}
