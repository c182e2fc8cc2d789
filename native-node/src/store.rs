//! The node's folder on disk.
//!
//! ```text
//! DIR/<FileName>                        complete, verified files (what users see)
//! DIR/.torronto/token                   control token, owner-only
//! DIR/.torronto/identity                the node's key pair (private networks), owner-only
//! DIR/.torronto/manifests/<FileName>.manifest   chunk hashes of every file we hold or fetch
//! DIR/.torronto/partial/<FileName>      data of files still being fetched
//! DIR/.torronto/import/<id>             an inserted file being copied and hashed
//! ```
//!
//! A file appears under its name only by an atomic rename once every chunk is
//! verified, so nobody sees a torn file. Manifests are written to a temporary name
//! and renamed, too. At start, a partial file's chunks are re-hashed against its
//! manifest: what was verified and written survives a crash.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use torronto_core::layout::{chunk_count, chunk_range};
use torronto_core::manifest::ChunkHash;
use torronto_core::name::STATE_DIR;
use torronto_core::{
    check_insert_source, ChunkIndex, ChunkSet, Code, FileName, ImportId, LocalFile, Manifest, ManifestBuilder,
    StorageError,
};

const MANIFEST_MAGIC: &[u8; 8] = b"TRNTMF01";

/// Paths and open handles of one node's folder. Blocking: once the node runs, only
/// [`crate::storage`] calls it, from the storage thread or the blocking pool.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    state: PathBuf,
    /// Open handles of files we read or write chunks of. A handle stays valid across
    /// the rename that publishes a finished file.
    handles: Arc<Mutex<HashMap<FileName, Arc<File>>>>,
    /// Files whose [`Store::prepare`] failed (a full disk, say), retried when a chunk of
    /// theirs is next read or written, so that they complete once space is freed.
    unprepared: Arc<Mutex<HashMap<FileName, Manifest>>>,
}

impl Store {
    /// Opens (creating if needed) the folder and its state directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
        let dir = dir.canonicalize().with_context(|| format!("cannot open folder {}", dir.display()))?;
        let state = dir.join(STATE_DIR);
        for sub in ["manifests", "partial", "import"] {
            fs::create_dir_all(state.join(sub))
                .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
        }
        // Leftovers of inserts interrupted by a crash are of no use.
        for entry in fs::read_dir(state.join("import"))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(Self { dir, state, handles: Arc::default(), unprepared: Arc::default() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's state directory (`DIR/.torronto`).
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone()
    }

    /// The control token: `given`, or the one kept in the folder (refused if others may
    /// read it), or a new one from OS randomness.
    pub fn token(&self, given: Option<String>) -> anyhow::Result<String> {
        let path = self.state.join("token");
        if let Some(t) = given {
            return Ok(t);
        }
        match fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => {
                crate::owner::check_owner_only(&path)
                    .map_err(|e| anyhow::anyhow!("{e}: chmod 600 it, or delete it for a new token"))?;
                return Ok(t.trim().to_owned());
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let token: String = crate::private::os_random().iter().map(|b| format!("{b:02x}")).collect();
        write_atomic(&path, token.as_bytes(), 0o600).context("cannot save the control token")?;
        Ok(token)
    }

    fn final_path(&self, name: &FileName) -> PathBuf {
        join_name(&self.dir, name, "")
    }

    fn partial_path(&self, name: &FileName) -> PathBuf {
        join_name(&self.state.join("partial"), name, "")
    }

    fn manifest_path(&self, name: &FileName) -> PathBuf {
        join_name(&self.state.join("manifests"), name, ".manifest")
    }

    fn import_path(&self, id: ImportId) -> PathBuf {
        self.state.join("import").join(id.to_string())
    }

    /// Every file with a manifest, with the chunks found verified on disk.
    pub fn load(&self) -> anyhow::Result<Vec<LocalFile>> {
        let root = self.state.join("manifests");
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir)?.flatten() {
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Some(rel) = path.strip_prefix(&root).ok().and_then(|r| r.to_str()) else { continue };
                let Some(rel) = rel.strip_suffix(".manifest") else { continue };
                let Ok(name) = FileName::new(rel) else { continue };
                match self.load_one(&name, &path) {
                    Ok(Some(file)) => found.push(file),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("ignoring {}: {e:#}", path.display()),
                }
            }
        }
        Ok(found)
    }

    fn load_one(&self, name: &FileName, manifest_path: &Path) -> anyhow::Result<Option<LocalFile>> {
        let manifest = read_manifest(manifest_path)?;
        let n = manifest.chunk_count();
        let complete = self.final_path(name);
        if fs::metadata(&complete).is_ok_and(|m| m.is_file() && m.len() == manifest.size()) {
            return Ok(Some(LocalFile { name: name.clone(), have: ChunkSet::full(n), manifest }));
        }
        let mut have = ChunkSet::new(n);
        if let Ok(file) = File::open(self.partial_path(name)) {
            // Keep every chunk that still matches its hash; the rest is fetched again.
            let mut buf = vec![0u8; torronto_core::layout::CHUNK_SIZE as usize];
            for i in ChunkIndex::all(n) {
                let r = chunk_range(manifest.size(), i);
                let len = (r.end - r.start) as usize;
                if file.read_exact_at(&mut buf[..len], r.start).is_ok() && manifest.verify(i, &buf[..len]) {
                    have.insert(i);
                }
            }
        }
        Ok(Some(LocalFile { name: name.clone(), have, manifest }))
    }

    /// Makes room for a file to be fetched and keeps its manifest.
    pub fn prepare(&self, name: &FileName, manifest: &Manifest) -> io::Result<()> {
        let result = self.try_prepare(name, manifest);
        let mut unprepared = self.unprepared.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(()) => unprepared.remove(name),
            Err(_) => unprepared.insert(name.clone(), manifest.clone()),
        };
        result
    }

    fn try_prepare(&self, name: &FileName, manifest: &Manifest) -> io::Result<()> {
        write_manifest(&self.manifest_path(name), manifest)?;
        let path = self.partial_path(name);
        create_parent(&path)?;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        file.set_len(manifest.size())?;
        self.handles().insert(name.clone(), Arc::new(file));
        Ok(())
    }

    /// The open handle of `name`, opening the complete or partial file as it is.
    pub fn handle(&self, name: &FileName) -> io::Result<Arc<File>> {
        if let Some(h) = self.handles().get(name) {
            return Ok(h.clone());
        }
        let unprepared = self.unprepared.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        if let Some(manifest) = unprepared {
            self.prepare(name, &manifest)?;
            if let Some(h) = self.handles().get(name) {
                return Ok(h.clone());
            }
        }
        let complete = self.final_path(name);
        let file = match OpenOptions::new().read(true).open(&complete) {
            Ok(f) => f,
            Err(_) => OpenOptions::new().read(true).write(true).open(self.partial_path(name))?,
        };
        let file = Arc::new(file);
        self.handles().insert(name.clone(), file.clone());
        Ok(file)
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<FileName, Arc<File>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a fetched file under its name.
    pub fn finalize(&self, name: &FileName) -> io::Result<()> {
        let target = self.final_path(name);
        create_parent(&target)?;
        fs::rename(self.partial_path(name), &target)
    }

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
        if source.starts_with(&self.state) {
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
        if real.starts_with(&self.state) {
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
            let mut builder = ManifestBuilder::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut done = 0u64;
            loop {
                let n = input.read(&mut buf).map_err(|e| io_error(path, &e))?;
                if n == 0 {
                    break;
                }
                builder.update(&buf[..n]);
                output.write_all(&buf[..n]).map_err(|e| io_error(&target.display().to_string(), &e))?;
                done += n as u64;
                progress(done, meta.len());
            }
            builder.finish().map_err(|e| storage_error(Code::BadRequest, e.to_string()))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&target);
        }
        result
    }

    /// Publishes an imported copy as `name`.
    pub fn commit(&self, id: ImportId, name: &FileName, manifest: &Manifest) -> Result<(), StorageError> {
        let source = self.import_path(id);
        let target = self.final_path(name);
        let result = (|| {
            if target.exists() {
                return Err(storage_error(
                    Code::FileExists,
                    format!("{} already exists in the node's folder", target.display()),
                ));
            }
            write_manifest(&self.manifest_path(name), manifest).map_err(|e| io_error("manifest", &e))?;
            create_parent(&target).map_err(|e| io_error(&target.display().to_string(), &e))?;
            fs::rename(&source, &target).map_err(|e| io_error(&target.display().to_string(), &e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&source);
        }
        result
    }

    pub fn discard(&self, id: ImportId) {
        let _ = fs::remove_file(self.import_path(id));
    }
}

/// The canonical path of the open file `file` (opened as `path`): from the kernel
/// where it tells (`/proc/self/fd`), else by resolving `path` again.
fn opened_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| path.canonicalize())
}

/// Reads one chunk through an open handle. Runs on a blocking thread.
///
/// Reads into fresh capacity rather than a zeroed buffer (zeroing cost as much as the
/// copy): seek, then `read_to_end`. Only the storage thread reads chunks, so nothing
/// else depends on the handle's position.
pub fn read_chunk(file: &File, size: u64, index: ChunkIndex) -> io::Result<Bytes> {
    let r = chunk_range(size, index);
    let len = r.end - r.start;
    let mut buf = Vec::with_capacity(len as usize);
    let mut handle = file;
    handle.seek(SeekFrom::Start(r.start))?;
    handle.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from(buf))
}

/// Writes one chunk through an open handle. Runs on a blocking thread.
pub fn write_chunk(file: &File, size: u64, index: ChunkIndex, data: &[u8]) -> io::Result<()> {
    file.write_all_at(data, chunk_range(size, index).start)
}

/// The storage error a user sees for an I/O failure on `what`.
pub fn io_error(what: &str, e: &io::Error) -> StorageError {
    let code = match e.kind() {
        io::ErrorKind::NotFound => Code::FileMissing,
        _ => Code::BadPermission,
    };
    storage_error(code, format!("{what}: {e}"))
}

fn storage_error(code: Code, message: String) -> StorageError {
    StorageError { code, message }
}

fn join_name(root: &Path, name: &FileName, suffix: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    // FileName guarantees plain components: nothing here can leave `root`.
    for c in name.components() {
        path.push(c);
    }
    if !suffix.is_empty() {
        let mut s = path.into_os_string();
        s.push(suffix);
        path = s.into();
    }
    path
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p),
        None => Ok(()),
    }
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    create_parent(path)?;
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn write_manifest(path: &Path, manifest: &Manifest) -> io::Result<()> {
    let mut data = Vec::with_capacity(16 + manifest.chunk_count() as usize * 32);
    data.extend_from_slice(MANIFEST_MAGIC);
    data.extend_from_slice(&manifest.size().to_le_bytes());
    data.extend_from_slice(&manifest.to_body());
    write_atomic(path, &data, 0o644)
}

fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let data = fs::read(path)?;
    anyhow::ensure!(data.len() >= 16 && data[..8] == MANIFEST_MAGIC[..], "not a manifest file");
    let size = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    let hashes: Vec<ChunkHash> =
        data[16..].chunks_exact(32).map(|c| c.try_into().expect("chunks_exact(32) yields 32 bytes")).collect();
    anyhow::ensure!(hashes.len() == chunk_count(size) as usize, "manifest length does not match its size");
    Ok(Manifest::from_hashes(size, hashes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(data: &[u8]) -> Manifest {
        let mut b = ManifestBuilder::new();
        b.update(data);
        b.finish().unwrap()
    }

    #[test]
    fn fetched_file_appears_only_when_finalized_and_partial_chunks_survive_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let m = manifest_of(&data);
        let name = FileName::new("sub/f.bin").unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store.prepare(&name, &m).unwrap();
        let h = store.handle(&name).unwrap();
        write_chunk(&h, m.size(), ChunkIndex(1), &data[65536..131072]).unwrap();
        assert!(!tmp.path().join("sub/f.bin").exists(), "no torn file under its name");

        // A restart finds exactly the chunk that was written.
        let loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].have.iter().collect::<Vec<_>>(), vec![ChunkIndex(1)]);

        for i in [0, 2, 3].map(ChunkIndex) {
            let r = chunk_range(m.size(), i);
            write_chunk(&h, m.size(), i, &data[r.start as usize..r.end as usize]).unwrap();
        }
        store.finalize(&name).unwrap();
        assert_eq!(fs::read(tmp.path().join("sub/f.bin")).unwrap(), data);
        assert_eq!(read_chunk(&h, m.size(), ChunkIndex(3)).unwrap(), &data[196_608..]);
        let loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        assert!(loaded[0].have.is_complete());
    }

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
    fn the_token_is_random_and_refused_once_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("node")).unwrap();
        let token = store.token(None).unwrap();
        assert_eq!(token.len(), 64, "32 random bytes in hex: {token}");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let other = Store::open(&tmp.path().join("other")).unwrap();
        assert_ne!(other.token(None).unwrap(), token);
        let path = tmp.path().join("node/.torronto/token");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let refused = store.token(None).unwrap_err().to_string();
        assert!(refused.contains("readable by others (mode 644)") && refused.contains("chmod 600"), "{refused}");
        assert_eq!(store.token(Some("given".into())).unwrap(), "given", "a given token needs no file");
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
