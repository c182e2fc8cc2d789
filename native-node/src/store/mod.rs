//! The node's folder on disk.
//!
//! ```text
//! DIR/<FileName>                        complete, verified files (what users see)
//! DIR/.torronto/token                   control token, owner-only
//! DIR/.torronto/identity                the node's key pair (private networks), owner-only
//! DIR/.torronto/files/<key>.manifest    a file's name and chunk hashes (every file we hold or fetch)
//! DIR/.torronto/files/<key>.partial     data of a file still being fetched
//! DIR/.torronto/files/<key>.published   where in DIR the complete file was put
//! DIR/.torronto/import/<id>             an inserted file being copied and hashed
//! DIR/.torronto/tombstones              files removed from the network (JSON list)
//! ```
//!
//! `<key>` is the SHA-256 of the name in hex: every name gets state files of one short
//! length in one folder, so `a` and `a/b`, `r` and `r.manifest/x`, or a 255-byte name
//! cannot clash with each other or hit the length limit. (Before, state was kept under
//! the name itself in `manifests/` and `partial/`; [`Store::load`] moves such state.)
//!
//! A file appears under its name only by an atomic rename once every chunk is
//! verified, so nobody sees a torn file. A published file deleted from the folder is
//! fetched again: [`Store::load`] finds it gone at start, [`crate::shared`] while running. Paths in DIR are walked without following
//! symlinks, and the rename never replaces anything ([`crate::beneath`]): if a file
//! torronto does not manage has the name, the network's copy becomes a conflict copy
//! beside it ([`conflict_name`]). Manifests are written to a temporary name and renamed,
//! too. At start, a partial file's chunks are re-hashed against its manifest: what was
//! verified and written survives a crash.
//!
//! A file is taken only if it fits: `--max-store` bounds what the folder holds, and
//! `--min-free` keeps space free on its file system ([`Space`]).
//!
//! Layout, one idea per module:
//! - this module: [`Store`], its folders and handles, loading what a restart finds,
//!   preparing, publishing and chunk I/O;
//! - `state`: state files under a hash of the name, the manifest file format, atomic
//!   writes, and moving state of the old layout;
//! - `space`: `--min-free` and `--max-store`, and whether a file fits;
//! - `import`: inserted files copied in while hashed, then committed; files found in
//!   the folder (the shared folder) hashed in place, committed only if unchanged;
//! - `conflict`: the name of a conflict copy, telling one by its name, and a name that
//!   holds the network's content already (taken as the node's copy, no conflict copy);
//! - `removal`: deleting a removed file's copy and state, and the saved tombstones;
//! - `write_behind`: chunk writes pushed to the disk and out of the page cache soon
//!   after, so a fetching node reuses warm pages and leaves the cache as it found it;
//! - `error`: I/O failures as the storage errors users see (ENOSPC is no space).

mod conflict;
mod error;
mod import;
mod removal;
mod space;
mod state;
mod write_behind;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use torronto_core::layout::chunk_range;
use torronto_core::manifest::Digest;
use torronto_core::name::STATE_DIR;
use torronto_core::{ChunkIndex, ChunkSet, FileName, ImportId, LocalFile, Manifest, StorageError};

use crate::beneath::{Folder, Stamp};
use space::allocated_bytes;
use space::Held;
use state::{read_manifest, write_manifest};

pub use conflict::{conflict_name, is_conflict_copy};
pub use error::io_error;
pub use removal::unix_millis;
pub use space::{parse_size, MinFree, Space};
pub use state::open_published;
pub(crate) use state::write_atomic;
pub use write_behind::ChunkWriter;

/// Paths and open handles of one node's folder. Blocking: once the node runs, only
/// [`crate::storage`] calls it, from the storage thread or the blocking pool.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    state: PathBuf,
    /// The folder and the state folder of hashed files, walked without symlinks.
    folder: Arc<Folder>,
    files: Arc<Folder>,
    import: Arc<Folder>,
    space: Space,
    /// Every file the folder holds or is fetching, for the space checks.
    held: Arc<Mutex<HashMap<FileName, Held>>>,
    /// Open handles of files we read or write chunks of. A handle stays valid across
    /// the rename that publishes a finished file.
    handles: Arc<Mutex<HashMap<FileName, Arc<File>>>>,
    /// Files of the folder hashed in place, by import, as they were when hashed.
    adopted: Arc<Mutex<HashMap<ImportId, Stamp>>>,
}

impl Store {
    /// Opens (creating if needed) the folder and its state directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(dir, Space::default())
    }

    pub fn open_with(dir: &Path, space: Space) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
        let dir = dir.canonicalize().with_context(|| format!("cannot open folder {}", dir.display()))?;
        let state = dir.join(STATE_DIR);
        for sub in ["files", "import"] {
            fs::create_dir_all(state.join(sub))
                .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
        }
        // Leftovers of inserts interrupted by a crash are of no use.
        for entry in fs::read_dir(state.join("import"))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let folder = Arc::new(Folder::open(&dir).with_context(|| format!("cannot open {}", dir.display()))?);
        let files = Arc::new(Folder::open(&state.join("files"))?);
        let import = Arc::new(Folder::open(&state.join("import"))?);
        let (held, handles, adopted) = (Arc::default(), Arc::default(), Arc::default());
        Ok(Self { dir, state, folder, files, import, space, held, handles, adopted })
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

    /// Every file with a manifest, with the chunks found verified on disk. State kept
    /// the old way (under the name) is moved to the hashed layout first.
    pub fn load(&self) -> anyhow::Result<Vec<LocalFile>> {
        self.migrate_v1();
        let mut found = Vec::new();
        for entry in fs::read_dir(self.files.path())?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "manifest") {
                continue;
            }
            match self.load_one(&path) {
                Ok(file) => found.push(file),
                Err(e) => tracing::warn!("ignoring {}: {e:#}", path.display()),
            }
        }
        Ok(found)
    }

    fn load_one(&self, manifest_path: &Path) -> anyhow::Result<LocalFile> {
        let (name, manifest) = read_manifest(manifest_path)?;
        anyhow::ensure!(
            self.state_path(&name, "manifest") == manifest_path,
            "it holds the manifest of {name}, which belongs elsewhere"
        );
        let n = manifest.chunk_count();
        if let Some(at) = self.published(&name) {
            let found = self.folder.stat(&at).ok().flatten();
            if found.is_none() && !self.state_path(&name, "partial").exists() {
                // Published, then deleted from the folder by hand: fetched again.
                tracing::warn!(
                    "restoring {name} from the network: {} was deleted from the folder",
                    self.dir.join(&at).display()
                );
                self.prepare(&name, &manifest).map_err(|e| anyhow::anyhow!("{}", e.message))?;
                return Ok(LocalFile { name, have: ChunkSet::new(n), manifest, stored_as: None, published: false });
            }
            let complete = found.is_some_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
                    && st.st_size as u64 == manifest.size()
            });
            if complete {
                self.held().insert(name.clone(), Held { size: manifest.size(), fetching: false });
                let stored_as = (at != name.as_str()).then_some(at);
                return Ok(LocalFile { name, have: ChunkSet::full(n), manifest, stored_as, published: true });
            }
        }
        let mut have = ChunkSet::new(n);
        if let Ok(file) = File::open(self.state_path(&name, "partial")) {
            // Keep every chunk that still matches its hash; the rest is fetched again.
            // Chunks never written are holes in the sparse file: not read at all, so a
            // huge file prepared but barely fetched costs nothing at the next start.
            let mut buf = vec![0u8; torronto_core::layout::CHUNK_SIZE as usize];
            for i in written_chunks(&file, manifest.size(), n) {
                let r = chunk_range(manifest.size(), i);
                let len = (r.end - r.start) as usize;
                if file.read_exact_at(&mut buf[..len], r.start).is_ok() && manifest.verify(i, &buf[..len]) {
                    have.insert(i);
                }
            }
        }
        self.held().insert(name.clone(), Held { size: manifest.size(), fetching: true });
        Ok(LocalFile { name, have, manifest, stored_as: None, published: false })
    }

    /// Makes room for a file to be fetched and keeps its manifest; ErrNoSpace if it
    /// does not fit.
    pub fn prepare(&self, name: &FileName, manifest: &Manifest) -> Result<(), StorageError> {
        let partial_path = self.state_path(name, "partial");
        self.check_space(Some(name), name.as_str(), manifest.size(), allocated_bytes(&partial_path))?;
        let what = |e: io::Error| io_error(name.as_str(), &e);
        // A symlink or a file where the name needs a folder: refused before fetching
        // anything (the walk is repeated when publishing, in case it changed).
        self.folder.stat(name.as_str()).map_err(what)?;
        write_manifest(&self.state_path(name, "manifest"), name, manifest).map_err(what)?;
        // A file fetched again (its copy was deleted from the folder) is no longer where
        // it was published.
        match fs::remove_file(self.state_path(name, "published")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(what(e)),
            _ => {}
        }
        let file = self.files.create_file(&Self::state_file(name, "partial")).map_err(what)?;
        file.set_len(manifest.size()).map_err(what)?;
        self.held().insert(name.clone(), Held { size: manifest.size(), fetching: true });
        self.handles().insert(name.clone(), Arc::new(file));
        Ok(())
    }

    /// The open handle of `name`, opening the complete or partial file as it is.
    pub fn handle(&self, name: &FileName) -> io::Result<Arc<File>> {
        if let Some(h) = self.handles().get(name) {
            return Ok(h.clone());
        }
        let file = match self.published(name) {
            Some(at) => self.folder.open_file(&at, false)?,
            None => self.files.open_file(&Self::state_file(name, "partial"), true)?,
        };
        let file = Arc::new(file);
        self.handles().insert(name.clone(), file.clone());
        Ok(file)
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<FileName, Arc<File>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a fetched file under its name, or, when something torronto does not
    /// manage is there already, as a conflict copy beside it: returns its path then.
    pub fn finalize(&self, name: &FileName, digest: Digest) -> Result<Option<String>, StorageError> {
        let taken = self.folder.stat(name.as_str()).map_err(|e| io_error(name.as_str(), &e))?.is_some();
        if taken && self.holds_already(name, digest) {
            return Ok(None);
        }
        let at = if taken { conflict_name(name, digest) } else { name.as_str().to_owned() };
        let published = self.state_path(name, "published");
        // Recorded first: after a crash between the two, the record points at nothing
        // (or at a file of the wrong size) and the partial data is still used.
        let result = write_atomic(&published, at.as_bytes(), 0o644)
            .and_then(|()| self.folder.publish(&self.files, &Self::state_file(name, "partial"), &at));
        match result {
            Ok(()) => {
                if let Some(held) = self.held().get_mut(name) {
                    held.fetching = false;
                }
                Ok(taken.then_some(at))
            }
            Err(e) => {
                let _ = fs::remove_file(&published);
                let e = match e.kind() {
                    io::ErrorKind::AlreadyExists => io::Error::other(format!(
                        "{} appeared in the folder while {name} was being published; the network's copy is kept aside",
                        self.dir.join(&at).display()
                    )),
                    _ => e,
                };
                Err(io_error(name.as_str(), &e))
            }
        }
    }

    pub fn discard(&self, id: ImportId) {
        self.adopted().remove(&id);
        let _ = fs::remove_file(self.import_path(id));
    }
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

/// The chunks of a partial file that hold any written byte, in order. Data and holes
/// come from `SEEK_DATA`/`SEEK_HOLE`; where the file system cannot tell (or the file
/// was filled without holes), every chunk counts as written.
fn written_chunks(file: &File, size: u64, count: u32) -> Vec<ChunkIndex> {
    use rustix::fs::{seek, SeekFrom as At};
    let chunk = torronto_core::layout::CHUNK_SIZE;
    let mut written = Vec::new();
    let mut offset = 0;
    while offset < size {
        let start = match seek(file, At::Data(offset)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break, // only holes from here on
            Err(_) => return ChunkIndex::all(count).collect(),
        };
        let end = seek(file, At::Hole(start)).unwrap_or(size).min(size);
        let first = (start / chunk) as u32;
        let last = end.div_ceil(chunk).min(u64::from(count)) as u32;
        for i in first..last {
            // A chunk holding the end of one data range and the start of the next.
            if written.last() != Some(&ChunkIndex(i)) {
                written.push(ChunkIndex(i));
            }
        }
        offset = end.max(start + 1);
    }
    written
}

/// Writes one chunk through an open handle. Runs on a blocking thread.
pub fn write_chunk(file: &File, size: u64, index: ChunkIndex, data: &[u8]) -> io::Result<()> {
    file.write_all_at(data, chunk_range(size, index).start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use torronto_core::ManifestBuilder;

    pub(super) fn manifest_of(data: &[u8]) -> Manifest {
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
        assert_eq!(store.finalize(&name, m.digest()).unwrap(), None, "published under its name");
        assert_eq!(fs::read(tmp.path().join("sub/f.bin")).unwrap(), data);
        assert_eq!(read_chunk(&h, m.size(), ChunkIndex(3)).unwrap(), &data[196_608..]);
        let loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        assert!(loaded[0].have.is_complete());
    }

    #[test]
    fn a_restart_reads_only_chunks_that_were_written() {
        // A 32 GiB file prepared but barely fetched (an unsolicited-manifest attack
        // left 1.9 TiB of such files): only its two written chunks are looked at.
        let tmp = tempfile::tempdir().unwrap();
        let file = File::create(tmp.path().join("big.partial")).unwrap();
        let size = torronto_core::layout::MAX_FILE_SIZE;
        file.set_len(size).unwrap();
        let count = torronto_core::layout::chunk_count(size);
        let chunk = vec![7u8; 65536];
        write_chunk(&file, size, ChunkIndex(3), &chunk).unwrap();
        write_chunk(&file, size, ChunkIndex(count - 1), &chunk).unwrap();
        assert_eq!(written_chunks(&file, size, count), vec![ChunkIndex(3), ChunkIndex(count - 1)]);

        // A range of data that ends inside a chunk and resumes in the next counts each once.
        write_chunk(&file, size, ChunkIndex(4), &chunk).unwrap();
        assert_eq!(written_chunks(&file, size, count), vec![ChunkIndex(3), ChunkIndex(4), ChunkIndex(count - 1)]);
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
}
