//! Files beneath the node's folder, reached without following symlinks.
//!
//! Every path the network names is opened, created and renamed into through a handle
//! on the folder, one component at a time with `O_NOFOLLOW` (what `openat2`'s
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` does, without needing Linux 5.6): a symlink
//! anywhere on the way (`DIR/shared -> /elsewhere` for the name `shared/x`) stops the
//! walk with an error naming it, instead of leading out of the folder. Publishing
//! never replaces what is there (`RENAME_NOREPLACE`), so a file torronto did not put
//! in the folder is never overwritten. The shared folder is walked the same way
//! ([`Folder::walk`]): a symlink is never followed, so nothing outside is shared.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};
use rustix::io::Errno;

/// What says a file did not change: the same inode, size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
}

impl Stamp {
    pub fn of(st: &Stat) -> Self {
        #[allow(clippy::unnecessary_cast)] // the field types differ between targets
        Self {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        }
    }

    pub fn size(&self) -> u64 {
        self.size as u64
    }
}

/// What a walk of the folder found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Folders (relative, `/` separated; `""` for the folder itself), the first first.
    pub dirs: Vec<String>,
    /// Regular files (relative).
    pub files: Vec<String>,
    /// Symbolic links and names that are not UTF-8, skipped (full paths).
    pub skipped: Vec<PathBuf>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// A folder held open, and paths beneath it.
#[derive(Debug)]
pub struct Folder {
    fd: OwnedFd,
    path: PathBuf,
}

impl Folder {
    /// Opens the folder at `path` (which may itself be reached through a symlink: the
    /// owner chose it).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Self { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the last component of `rel` (plain components separated by
    /// `/`), created on the way if `create`, and that last component.
    fn parent<'a>(&self, rel: &'a str, create: bool) -> io::Result<(OwnedFd, &'a str)> {
        let (dirs, last) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut dir = rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?;
        let mut walked = self.path.clone();
        for c in dirs.split('/').filter(|c| !c.is_empty()) {
            walked.push(c);
            let mut opened = rfs::openat(&dir, c, DIR_FLAGS, Mode::empty());
            if matches!(opened, Err(Errno::NOENT)) && create {
                match rfs::mkdirat(&dir, c, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.explain(e, &dir, c, &walked)),
                }
                opened = rfs::openat(&dir, c, DIR_FLAGS, Mode::empty());
            }
            dir = opened.map_err(|e| self.explain(e, &dir, c, &walked))?;
        }
        Ok((dir, last))
    }

    /// Every folder and regular file at and beneath `rel` (`""` for the whole folder),
    /// leaving out `skip` (names directly in the folder) and never following a symlink.
    pub fn walk(&self, rel: &str, skip: &str) -> io::Result<Walked> {
        let mut walked = Walked::default();
        let mut todo = vec![rel.to_owned()];
        while let Some(dir) = todo.pop() {
            let fd = match dir.as_str() {
                "" => rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?,
                _ => {
                    let (parent, last) = self.parent(&dir, false)?;
                    match rfs::openat(&parent, last, DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => fd,
                        // Gone, or not a folder (any more): nothing beneath it.
                        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let at = |name: &str| if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
            for entry in rfs::Dir::read_from(&fd)? {
                let entry = entry?;
                let raw = entry.file_name().to_bytes();
                if raw == b"." || raw == b".." || (dir.is_empty() && raw == skip.as_bytes()) {
                    continue;
                }
                let Ok(name) = std::str::from_utf8(raw) else {
                    walked.skipped.push(self.path.join(&dir).join(std::ffi::OsStr::from_bytes(raw)));
                    continue;
                };
                let kind = match entry.file_type() {
                    FileType::Unknown => rfs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| FileType::from_raw_mode(st.st_mode))?,
                    kind => kind,
                };
                match kind {
                    FileType::Directory => todo.push(at(name)),
                    FileType::RegularFile => walked.files.push(at(name)),
                    FileType::Symlink => walked.skipped.push(self.path.join(at(name))),
                    _ => {}
                }
            }
            walked.dirs.push(dir);
        }
        Ok(walked)
    }

    /// What is at `rel`, not following a symlink there; `None` if nothing is (or a
    /// folder on the way is missing).
    pub fn stat(&self, rel: &str) -> io::Result<Option<Stat>> {
        let (dir, last) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match rfs::statat(&dir, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the regular file at `rel` for reading (and writing, with `write`).
    pub fn open_file(&self, rel: &str, write: bool) -> io::Result<File> {
        let (dir, last) = self.parent(rel, false)?;
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let fd = rfs::openat(&dir, last, access | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| self.explain(e, &dir, last, &self.path.join(rel)))?;
        if FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(format!("{} is not a regular file", self.path.join(rel).display())));
        }
        Ok(File::from(fd))
    }

    /// Creates (or opens) the regular file `name` directly in this folder.
    pub fn create_file(&self, name: &str) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| self.explain(e, &self.fd, name, &self.path.join(name)))?;
        Ok(File::from(fd))
    }

    /// Moves `from` (directly in the folder `src`) to `rel` beneath this folder,
    /// creating folders on the way; fails with `AlreadyExists` rather than replace
    /// anything at `rel`.
    pub fn publish(&self, src: &Folder, from: &str, rel: &str) -> io::Result<()> {
        let (dir, last) = self.parent(rel, true)?;
        match rfs::renameat_with(&src.fd, from, &dir, last, RenameFlags::NOREPLACE) {
            // A file system without RENAME_NOREPLACE: a hard link fails the same way
            // when the target exists.
            Err(Errno::INVAL | Errno::NOSYS) => {
                rfs::linkat(&src.fd, from, &dir, last, AtFlags::empty())?;
                rfs::unlinkat(&src.fd, from, AtFlags::empty())?;
                Ok(())
            }
            result => result.map_err(|e| self.explain(e, &dir, last, &self.path.join(rel))),
        }
    }

    /// Removes the regular file at `rel` if `ours` says, of it opened, that it is the
    /// one to remove; returns whether it was removed. A symlink there, or a file swapped
    /// in after the check, is left alone.
    pub fn remove_file_if(&self, rel: &str, ours: impl FnOnce(&File) -> bool) -> io::Result<bool> {
        let file = match self.open_file(rel, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if !ours(&file) {
            return Ok(false);
        }
        let (dir, last) = self.parent(rel, false)?;
        let (opened, there) = (rfs::fstat(&file)?, rfs::statat(&dir, last, AtFlags::SYMLINK_NOFOLLOW)?);
        if (opened.st_dev, opened.st_ino) != (there.st_dev, there.st_ino) {
            return Ok(false);
        }
        rfs::unlinkat(&dir, last, AtFlags::empty())?;
        Ok(true)
    }

    /// An error of the walk at `name` in `dir` (full path `path`), saying what stood in
    /// the way when it was a symlink or a file.
    fn explain(&self, e: Errno, dir: &OwnedFd, name: &str, path: &Path) -> io::Error {
        if !matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::MLINK) {
            return e.into();
        }
        let what = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map(|st| FileType::from_raw_mode(st.st_mode));
        let message = match what {
            Ok(FileType::Symlink) => {
                format!("{} is a symbolic link; torronto never writes or reads through one", path.display())
            }
            Ok(_) => format!("{} is a file, where a folder is needed", path.display()),
            Err(_) => return e.into(),
        };
        io::Error::new(io::ErrorKind::InvalidInput, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_walk_leads_through_a_symlink_and_nothing_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        std::fs::create_dir_all(root.join("state")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("shared")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        let folder = Folder::open(&root).unwrap();
        let state = Folder::open(&root.join("state")).unwrap();
        state.create_file("p").unwrap();

        let e = folder.publish(&state, "p", "shared/x").unwrap_err();
        assert!(e.to_string().contains("shared is a symbolic link"), "{e}");
        assert!(!outside.join("x").exists());
        assert!(folder.open_file("shared/secret", false).unwrap_err().to_string().contains("symbolic link"));
        assert!(folder.open_file("link", false).unwrap_err().to_string().contains("link is a symbolic link"));

        std::fs::write(root.join("taken"), b"user's").unwrap();
        assert_eq!(folder.publish(&state, "p", "taken").unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(root.join("taken")).unwrap(), b"user's");
        let e = folder.publish(&state, "p", "taken/below").unwrap_err();
        assert!(e.to_string().contains("taken is a file, where a folder is needed"), "{e}");

        let walked = folder.walk("", "state").unwrap();
        let files: Vec<&str> = walked.files.iter().map(String::as_str).collect();
        assert_eq!(files, ["taken"], "symlinks not followed, the skipped folder left out");
        assert_eq!(walked.skipped.len(), 2, "{:?}", walked.skipped);

        folder.publish(&state, "p", "new/deep/file").unwrap();
        assert!(root.join("new/deep/file").is_file());
        assert!(folder.stat("new/deep/file").unwrap().is_some());
        assert!(folder.stat("nothing/here").unwrap().is_none());
    }
}
