//! Inserted files: copied into the state folder while hashed, then published. A file
//! found in the folder itself (the shared folder) is hashed where it is instead — no
//! copy, no doubled disk use — and published only if it did not change meanwhile.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use torronto_core::{check_insert_source, Code, FileName, ImportId, Manifest, ManifestBuilder, StorageError};

use super::error::storage_error;
use super::space::Held;
use super::state::{write_atomic, write_manifest};
use super::{io_error, Store};
use crate::beneath::Stamp;

impl Store {
    /// Copies the file at `path` aside while hashing it. With `within` (a remote
    /// client's insert), the file actually opened must lie inside one of those
    /// folders ([`check_insert_source`]). The copy is no more readable than the source.
    /// Runs on a blocking thread.
    pub fn import(
        &self,
        id: ImportId,
        path: &str,
        within: Option<&[String]>,
        progress: impl Fn(u64, u64),
    ) -> Result<Manifest, StorageError> {
        let source = Path::new(path);
        let private =
            || storage_error(Code::BadPermission, format!("{path} is inside the node's private state folder"));
        // Except torrents downloaded for `torronto add`, inserted from there.
        let adds = crate::bittorrent::fetch::adds_dir(&self.dir);
        let private_path = |p: &Path| p.starts_with(&self.state) && !p.starts_with(&adds);
        if private_path(source) {
            return Err(private());
        }
        // Checked before opening, so that a FIFO or device is not opened at all.
        let meta = fs::metadata(source).map_err(|e| io_error(path, &e))?;
        if !meta.is_file() {
            return Err(storage_error(Code::FileMissing, format!("{path} is not a regular file")));
        }
        let mut input = File::open(source).map_err(|e| io_error(path, &e))?;
        // What was opened, not what the path says now: no symlink or swap leads out.
        let real = opened_path(&input, source).map_err(|e| io_error(path, &e))?;
        if private_path(&real) {
            return Err(private());
        }
        if let Some(within) = within {
            check_insert_source(&real.to_string_lossy(), within)?;
        }
        let meta = input.metadata().map_err(|e| io_error(path, &e))?;
        if !meta.is_file() {
            return Err(storage_error(Code::FileMissing, format!("{path} is not a regular file")));
        }
        if meta.len() > torronto_core::layout::MAX_FILE_SIZE {
            return Err(storage_error(Code::BadRequest, format!("{path} is larger than the 32 GiB limit")));
        }
        self.check_space(None, path, meta.len(), 0)?;
        let target = self.import_path(id);
        let result = (|| {
            // Created with the source's read and write bits (never execute, never more).
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mode = meta.permissions().mode() & 0o666;
            let mut output = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&target)
                .map_err(|e| io_error(&target.display().to_string(), &e))?;
            hash(&mut input, path, meta.len(), &progress, |data| {
                output.write_all(data).map_err(|e| io_error(&target.display().to_string(), &e))
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&target);
        }
        result
    }

    /// Hashes the file `name` in the folder where it is. Fails if it changed while
    /// hashed (inode, size or modification time, or another file now has the name).
    /// Runs on a blocking thread.
    pub fn import_in_place(
        &self,
        id: ImportId,
        name: &FileName,
        progress: impl Fn(u64, u64),
    ) -> Result<Manifest, StorageError> {
        let path = self.dir.join(name.as_str()).display().to_string();
        let mut input = self.folder.open_file(name.as_str(), false).map_err(|e| io_error(&path, &e))?;
        let stamp =
            |file: &File| rustix::fs::fstat(file).map(|st| Stamp::of(&st)).map_err(|e| io_error(&path, &e.into()));
        let before = stamp(&input)?;
        if before.size() > torronto_core::layout::MAX_FILE_SIZE {
            return Err(storage_error(Code::BadRequest, format!("{path} is larger than the 32 GiB limit")));
        }
        // Already on the disk: only --max-store can refuse it.
        self.check_space(None, &path, before.size(), before.size())?;
        let manifest = hash(&mut input, &path, before.size(), &progress, |_| Ok(()))?;
        let at_name = self.folder.stat(name.as_str()).map_err(|e| io_error(&path, &e))?.map(|st| Stamp::of(&st));
        if stamp(&input)? != before || at_name != Some(before) {
            return Err(changed(&path));
        }
        self.adopted().insert(id, before);
        Ok(manifest)
    }

    /// Whether import `id` is a file of the folder hashed in place (and not committed).
    pub fn hashed_in_place(&self, id: ImportId) -> bool {
        self.adopted().contains_key(&id)
    }

    pub(super) fn adopted(&self) -> std::sync::MutexGuard<'_, HashMap<ImportId, Stamp>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.adopted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an imported copy as `name` (or records a file hashed in place).
    pub fn commit(&self, id: ImportId, name: &FileName, manifest: &Manifest) -> Result<(), StorageError> {
        let in_place = self.adopted().remove(&id);
        if let Some(stamp) = in_place {
            return self.commit_in_place(name, manifest, stamp);
        }
        let published = self.state_path(name, "published");
        let result = write_manifest(&self.state_path(name, "manifest"), name, manifest)
            .and_then(|()| write_atomic(&published, name.as_str().as_bytes(), 0o644))
            .and_then(|()| self.folder.publish(&self.import, &id.to_string(), name.as_str()));
        match result {
            Ok(()) => {
                self.held().insert(name.clone(), Held { size: manifest.size(), fetching: false });
                Ok(())
            }
            Err(e) => {
                for suffix in ["published", "manifest"] {
                    let _ = fs::remove_file(self.state_path(name, suffix));
                }
                let _ = fs::remove_file(self.import_path(id));
                let target = self.dir.join(name.as_str());
                Err(match e.kind() {
                    io::ErrorKind::AlreadyExists => storage_error(
                        Code::FileExists,
                        format!("{} already exists in the node's folder", target.display()),
                    ),
                    _ => io_error(&target.display().to_string(), &e),
                })
            }
        }
    }
}

impl Store {
    /// Records the file hashed in place as `name`'s complete copy, if it is still what
    /// was hashed; a partial copy being fetched meanwhile is dropped.
    fn commit_in_place(&self, name: &FileName, manifest: &Manifest, stamp: Stamp) -> Result<(), StorageError> {
        let path = self.dir.join(name.as_str()).display().to_string();
        let now = self.folder.stat(name.as_str()).map_err(|e| io_error(&path, &e))?.map(|st| Stamp::of(&st));
        if now != Some(stamp) {
            return Err(changed(&path));
        }
        let published = self.state_path(name, "published");
        let result = write_manifest(&self.state_path(name, "manifest"), name, manifest)
            .and_then(|()| write_atomic(&published, name.as_str().as_bytes(), 0o644));
        if let Err(e) = result {
            for suffix in ["published", "manifest"] {
                let _ = fs::remove_file(self.state_path(name, suffix));
            }
            return Err(io_error(&path, &e));
        }
        self.handles().remove(name);
        let _ = fs::remove_file(self.state_path(name, "partial"));
        self.held().insert(name.clone(), Held { size: manifest.size(), fetching: false });
        Ok(())
    }
}

/// Reads `input` (`path`, `total` bytes) to its end, hashing it and handing each piece
/// to `copy`.
pub(super) fn hash(
    input: &mut File,
    path: &str,
    total: u64,
    progress: &impl Fn(u64, u64),
    mut copy: impl FnMut(&[u8]) -> Result<(), StorageError>,
) -> Result<Manifest, StorageError> {
    let mut builder = ManifestBuilder::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| io_error(path, &e))?;
        if n == 0 {
            break;
        }
        builder.update(&buf[..n]);
        copy(&buf[..n])?;
        done += n as u64;
        progress(done, total);
    }
    builder.finish().map_err(|e| storage_error(Code::BadRequest, e.to_string()))
}

fn changed(path: &str) -> StorageError {
    storage_error(
        Code::BadRequest,
        format!("{path} changed while it was being hashed; it is tried again once it has settled"),
    )
}

/// The canonical path of the open file `file` (opened as `path`): from the kernel
/// where it tells (`/proc/self/fd`), else by resolving `path` again.
fn opened_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| path.canonicalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_commit_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let src = outside.path().join("in.txt");
        fs::write(&src, b"hello").unwrap();
        let store = Store::open(&tmp.path().join("node")).unwrap();
        let m = store.import(ImportId(1), src.to_str().unwrap(), None, |_, _| {}).unwrap();
        assert_eq!(m.size(), 5);
        let name = FileName::new("in.txt").unwrap();
        store.commit(ImportId(1), &name, &m).unwrap();
        assert_eq!(fs::read(tmp.path().join("node/in.txt")).unwrap(), b"hello");

        let missing = store.import(ImportId(2), "/definitely/not/here", None, |_, _| {}).unwrap_err();
        assert_eq!(missing.code, Code::FileMissing);
        let dir = store.import(ImportId(3), outside.path().to_str().unwrap(), None, |_, _| {}).unwrap_err();
        assert_eq!(dir.code, Code::FileMissing);
        let token = store.token(None).unwrap();
        let secret = tmp.path().join("node/.torronto/token");
        assert_eq!(
            store.import(ImportId(4), secret.to_str().unwrap(), None, |_, _| {}).unwrap_err().code,
            Code::BadPermission
        );
        assert_eq!(store.token(None).unwrap(), token, "the token is kept");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_file_of_the_folder_is_hashed_in_place_and_committed_only_if_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::create_dir(tmp.path().join("sub")).unwrap();
        fs::write(tmp.path().join("sub/x.bin"), b"found in the folder").unwrap();
        let name = FileName::new("sub/x.bin").unwrap();
        let m = store.import_in_place(ImportId(1), &name, |_, _| {}).unwrap();
        assert_eq!(m.size(), 19);
        assert_eq!(fs::read_dir(tmp.path().join(".torronto/import")).unwrap().count(), 0, "no copy");
        store.commit(ImportId(1), &name, &m).unwrap();
        let loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        assert!(loaded[0].have.is_complete() && loaded[0].stored_as.is_none(), "held where it is");

        // Changed between hashing and commit: refused, nothing recorded.
        fs::write(tmp.path().join("y.bin"), b"first").unwrap();
        let y = FileName::new("y.bin").unwrap();
        let m = store.import_in_place(ImportId(2), &y, |_, _| {}).unwrap();
        fs::write(tmp.path().join("y.bin"), b"first, and more").unwrap();
        let e = store.commit(ImportId(2), &y, &m).unwrap_err();
        assert!(e.message.contains("changed while it was being hashed"), "{}", e.message);
        assert_eq!(Store::open(tmp.path()).unwrap().load().unwrap().len(), 1);
    }

    #[test]
    fn remote_inserts_stay_inside_their_folders_and_copies_keep_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("node")).unwrap();
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        let secret = tmp.path().join("secret.txt");
        fs::write(&secret, b"private").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&secret, shared.join("link.txt")).unwrap();
        fs::write(shared.join("ok.txt"), b"fine").unwrap();
        let within = [shared.canonicalize().unwrap().to_string_lossy().into_owned()];
        let path = |p: &Path| p.to_str().unwrap().to_owned();

        let escape = store.import(ImportId(1), &path(&shared.join("link.txt")), Some(&within), |_, _| {});
        assert_eq!(escape.unwrap_err().code, Code::BadPermission, "a symlink out of the folder");
        let dotdot = store.import(ImportId(2), &path(&shared.join("../secret.txt")), Some(&within), |_, _| {});
        assert_eq!(dotdot.unwrap_err().code, Code::BadPermission, "a .. out of the folder");
        assert!(store.import(ImportId(3), &path(&shared.join("ok.txt")), Some(&within), |_, _| {}).is_ok());

        // The owner's own insert of a 0600 file: the copy is 0600 too.
        let m = store.import(ImportId(4), &path(&secret), None, |_, _| {}).unwrap();
        store.commit(ImportId(4), &FileName::new("secret.txt").unwrap(), &m).unwrap();
        let copy = tmp.path().join("node/secret.txt");
        assert_eq!(fs::metadata(copy).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
