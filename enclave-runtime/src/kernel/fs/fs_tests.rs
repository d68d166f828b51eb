use std::sync::Arc;

use super::*;
use crate::kernel::file::FileOps;

fn entry(path: &str, mode: u32, data: &[u8]) -> TreeEntry {
    TreeEntry {
        path: path.to_string(),
        mode,
        data: data.to_vec(),
    }
}

pub(crate) fn sample_tree() -> ImageTree {
    ImageTree::new(vec![
        entry("init", libc::S_IFREG | 0o755, b"\x7fELF"),
        entry("etc/hostname", libc::S_IFREG | 0o644, b"enclave\n"),
        entry("etc/alias", libc::S_IFLNK | 0o777, b"hostname"),
        entry("etc/abs", libc::S_IFLNK | 0o777, b"/etc/hostname"),
        entry("etc/dirlink", libc::S_IFLNK | 0o777, b"../usr/lib"),
        entry("usr/lib/libc.so", libc::S_IFREG | 0o644, b"lib"),
        entry("loop1", libc::S_IFLNK | 0o777, b"loop2"),
        entry("loop2", libc::S_IFLNK | 0o777, b"/loop1"),
        entry("dangling", libc::S_IFLNK | 0o777, b"nowhere"),
        entry("usr", libc::S_IFDIR | 0o700, b""),
    ])
    .unwrap()
}

fn look(t: &ImageTree, p: &str) -> Result<Ino, Errno> {
    t.lookup(ROOT_INO, p.as_bytes(), true)
}

#[test]
fn builds_parents_and_synthetic_dev() {
    let t = sample_tree();
    assert!(t.is_dir(look(&t, "/usr/lib").unwrap()));
    assert!(t.is_dir(look(&t, "/dev").unwrap()));
    assert_eq!(look(&t, "/proc"), Err(Errno::ENOENT));
    assert_eq!(look(&t, "/sys/kernel"), Err(Errno::ENOENT));
    assert_eq!(look(&t, "/tmp"), Err(Errno::ENOENT));
    // The explicit "usr" entry after its implicit creation updates the mode.
    let usr = look(&t, "/usr").unwrap();
    assert_eq!(t.stat(usr).unwrap().mode, libc::S_IFDIR | 0o700);
    assert_eq!(
        t.path_of(look(&t, "/usr/lib/libc.so").unwrap()),
        "/usr/lib/libc.so"
    );
    assert_eq!(t.path_of(ROOT_INO), "/");
}

#[test]
fn rejects_bad_entries() {
    let bad = ImageTree::new(vec![entry("a/../b", libc::S_IFREG, b"")]);
    assert!(matches!(bad, Err(FsError::BadPath(_))));
    let dup = ImageTree::new(vec![
        entry("a", libc::S_IFREG, b""),
        entry("a", libc::S_IFDIR, b""),
    ]);
    assert!(matches!(dup, Err(FsError::Duplicate(_))));
    let under_file = ImageTree::new(vec![
        entry("a", libc::S_IFREG, b""),
        entry("a/b", libc::S_IFREG, b""),
    ]);
    assert!(matches!(under_file, Err(FsError::ParentNotDirectory(_))));
    // Devices are skipped, the root entry "." only changes the root's mode.
    let t = ImageTree::new(vec![
        entry(".", libc::S_IFDIR | 0o711, b""),
        entry("dev/console", libc::S_IFCHR | 0o600, b""),
    ])
    .unwrap();
    assert_eq!(t.stat(ROOT_INO).unwrap().mode, libc::S_IFDIR | 0o711);
    assert_eq!(look(&t, "/dev/console"), Err(Errno::ENOENT));
}

#[test]
fn normalizes_paths() {
    let t = sample_tree();
    let host = look(&t, "/etc/hostname").unwrap();
    assert_eq!(look(&t, "//etc///./hostname"), Ok(host));
    assert_eq!(look(&t, "/../../etc/../etc/hostname"), Ok(host));
    let etc = look(&t, "/etc").unwrap();
    assert_eq!(t.lookup(etc, b"hostname", true), Ok(host));
    assert_eq!(t.lookup(etc, b"../etc/./hostname", true), Ok(host));
    assert_eq!(t.lookup(etc, b"/init", true), look(&t, "/init"));
    assert_eq!(look(&t, "/"), Ok(ROOT_INO));
    assert_eq!(look(&t, ""), Err(Errno::ENOENT));
    assert_eq!(look(&t, "/etc/hostname/"), Err(Errno::ENOTDIR));
    assert_eq!(look(&t, "/etc/hostname/x"), Err(Errno::ENOTDIR));
    assert_eq!(look(&t, "/init/.."), Err(Errno::ENOTDIR));
    assert_eq!(look(&t, "/missing/x"), Err(Errno::ENOENT));
    let long = format!("/{}", "a".repeat(300));
    assert_eq!(look(&t, &long), Err(Errno::ENAMETOOLONG));
}

#[test]
fn follows_symlinks() {
    let t = sample_tree();
    let host = look(&t, "/etc/hostname").unwrap();
    assert_eq!(look(&t, "/etc/alias"), Ok(host));
    assert_eq!(look(&t, "/etc/abs"), Ok(host));
    let alias = t.lookup(ROOT_INO, b"/etc/alias", false).unwrap();
    assert_ne!(alias, host);
    assert_eq!(t.stat(alias).unwrap().mode & libc::S_IFMT, libc::S_IFLNK);
    // Intermediate symlinks are always followed, and ".." after one is physical.
    assert_eq!(
        t.lookup(ROOT_INO, b"/etc/dirlink/libc.so", false),
        look(&t, "/usr/lib/libc.so")
    );
    assert_eq!(look(&t, "/etc/dirlink/.."), look(&t, "/usr"));
    // A trailing slash follows a final symlink even without follow.
    assert_eq!(
        t.lookup(ROOT_INO, b"/etc/dirlink/", false),
        look(&t, "/usr/lib")
    );
    assert_eq!(look(&t, "/loop1"), Err(Errno::ELOOP));
    assert!(t.lookup(ROOT_INO, b"/loop1", false).is_ok());
    assert_eq!(look(&t, "/dangling"), Err(Errno::ENOENT));
    assert_eq!(t.lookup_for_create(ROOT_INO, b"/dangling", true), Ok(None));
    assert_eq!(
        t.lookup_for_create(ROOT_INO, b"/nope/x", true),
        Err(Errno::ENOENT)
    );
}

#[test]
fn image_file_reads_seeks_and_lists() {
    let t = Arc::new(sample_tree());
    let host = look(&t, "/etc/hostname").unwrap();
    let f = ImageFile::new(t.clone(), host, libc::O_RDONLY);
    let mut buf = [0u8; 4];
    assert_eq!(f.read(&mut buf), Ok(4));
    assert_eq!(&buf, b"encl");
    assert_eq!(f.pread(&mut buf, 6), Ok(2));
    assert_eq!(f.lseek(-1, libc::SEEK_END), Ok(7));
    assert_eq!(f.lseek(-8, libc::SEEK_CUR), Err(Errno::EINVAL));
    assert_eq!(f.lseek(i64::MAX, libc::SEEK_CUR), Err(Errno::EINVAL));
    assert_eq!(f.lseek(0, libc::SEEK_DATA), Ok(0));
    assert_eq!(f.lseek(3, libc::SEEK_HOLE), Ok(8));
    assert_eq!(f.lseek(8, libc::SEEK_DATA), Err(Errno::ENXIO));
    assert_eq!(f.lseek(0, 42), Err(Errno::EINVAL));
    assert_eq!(f.lseek(100, libc::SEEK_SET), Ok(100));
    assert_eq!(f.read(&mut buf), Ok(0));
    assert_eq!(f.pwrite(b"x", 0), Err(Errno::EBADF));
    assert_eq!(f.write(b"x"), Err(Errno::EBADF));

    let d = ImageFile::new(t.clone(), look(&t, "/etc").unwrap(), libc::O_RDONLY);
    assert_eq!(d.read(&mut buf), Err(Errno::EISDIR));
    let mut out = Vec::new();
    let mut names = Vec::new();
    loop {
        out.clear();
        let n = d.getdents64(&mut out, 64).unwrap();
        if n == 0 {
            break;
        }
        let mut at = 0usize;
        while at < out.len() {
            let reclen = usize::from(u16::from_le_bytes([out[at + 16], out[at + 17]]));
            let name = &out[at + 19..at + reclen];
            let end = name.iter().position(|&b| b == 0).unwrap();
            names.push(String::from_utf8(name[..end].to_vec()).unwrap());
            at += reclen;
        }
    }
    assert_eq!(names, [".", "..", "abs", "alias", "dirlink", "hostname"]);
    assert_eq!(d.lseek(0, libc::SEEK_SET), Ok(0));
    assert_eq!(d.getdents64(&mut out, 10), Err(Errno::EINVAL));
    assert_eq!(f.getdents64(&mut out, 4096), Err(Errno::ENOTDIR));
}
