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
//! ```
//!
//! `<key>` is the SHA-256 of the name in hex: every name gets state files of one short
//! length in one folder, so `a` and `a/b`, `r` and `r.manifest/x`, or a 255-byte name
//! cannot clash with each other or hit the length limit. (Before, state was kept under
//! the name itself in `manifests/` and `partial/`; [`Store::load`] moves such state.)
//!
//! A file appears under its name only by an atomic rename once every chunk is
//! verified, so nobody sees a torn file. Paths in DIR are walked without following
//! symlinks, and the rename never replaces anything ([`crate::beneath`]): if a file
//! torronto does not manage has the name, the network's copy becomes a conflict copy
//! beside it ([`conflict_name`]). Manifests are written to a temporary name and renamed,
//! too. At start, a partial file's chunks are re-hashed against its manifest: what was
//! verified and written survives a crash.
//!
//! A file is taken only if it fits: `--max-store` bounds what the folder holds, and
//! `--min-free` keeps space free on its file system ([`Space`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use torronto_core::layout::{chunk_count, chunk_range};
use torronto_core::manifest::{ChunkHash, Digest};
use torronto_core::name::{MAX_COMPONENT_LEN, STATE_DIR};
use torronto_core::{
    check_insert_source, ChunkIndex, ChunkSet, Code, FileName, ImportId, LocalFile, Manifest, ManifestBuilder,
    StorageError,
};

use crate::beneath::Folder;
use crate::client::human_size;

const MANIFEST_MAGIC_V1: &[u8; 8] = b"TRNTMF01";
/// Version 2 keeps the name: state files are named by its hash.
const MANIFEST_MAGIC: &[u8; 8] = b"TRNTMF02";

/// How much of the disk the node may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Free space to leave on the folder's file system.
    pub min_free: MinFree,
    /// Most bytes of files the folder may hold (complete and being fetched).
    pub max_store: Option<u64>,
}

/// `--min-free`: bytes, or a share of the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    Bytes(u64),
    Percent(u8),
}

impl Default for Space {
    /// Keep 5 % of the file system free, but never ask for more than 1 GiB: enough for
    /// the system and other programs to go on working (ext4 keeps 5 % for root for the
    /// same reason), without refusing everything on a small disk.
    fn default() -> Self {
        Self { min_free: MinFree::Percent(5), max_store: None }
    }
}

impl MinFree {
    const CAP: u64 = 1 << 30;

    /// Bytes to keep free on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (total / 100 * u64::from(p)).min(Self::CAP),
        }
    }
}

/// A size as given on the command line: bytes, or with a binary unit (`64K`, `500M`,
/// `1G`, `2T`; `MiB` and `GB` read the same).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a size (like 500M or 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    Ok((number * (1u64 << shift) as f64) as u64)
}

impl std::str::FromStr for MinFree {
    type Err = String;

    /// A size ([`parse_size`]) or a share of the file system (`5%`).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MinFree::Percent(p)),
                _ => Err(format!("{text:?}: a share is 0% to 100%")),
            },
            None => parse_size(text).map(MinFree::Bytes),
        }
    }
}

/// A file the folder holds, as the space checks count it.
#[derive(Debug, Clone, Copy)]
struct Held {
    size: u64,
    /// Still being fetched: its partial file will take up to `size` on the disk.
    fetching: bool,
}

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
        Ok(Self { dir, state, folder, files, import, space, held: Arc::default(), handles: Arc::default() })
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

    /// The state file of `name` with `suffix` (`manifest`, `partial`, `published`),
    /// relative to the state folder of files.
    fn state_file(name: &FileName, suffix: &str) -> String {
        let key: String = Sha256::digest(name.as_str().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!("{key}.{suffix}")
    }

    fn state_path(&self, name: &FileName, suffix: &str) -> PathBuf {
        self.files.path().join(Self::state_file(name, suffix))
    }

    fn import_path(&self, id: ImportId) -> PathBuf {
        self.state.join("import").join(id.to_string())
    }

    /// Where in DIR the complete `name` was put, if it was.
    fn published(&self, name: &FileName) -> Option<String> {
        let at = fs::read_to_string(self.state_path(name, "published")).ok()?;
        // Written by us, but the folder may have been tampered with: only plain names.
        FileName::new(&at).ok().map(|n| n.as_str().to_owned())
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
            let complete = self.folder.stat(&at).ok().flatten().is_some_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
                    && st.st_size as u64 == manifest.size()
            });
            if complete {
                self.held().insert(name.clone(), Held { size: manifest.size(), fetching: false });
                let stored_as = (at != name.as_str()).then_some(at);
                return Ok(LocalFile { name, have: ChunkSet::full(n), manifest, stored_as });
            }
        }
        let mut have = ChunkSet::new(n);
        if let Ok(file) = File::open(self.state_path(&name, "partial")) {
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
        self.held().insert(name.clone(), Held { size: manifest.size(), fetching: true });
        Ok(LocalFile { name, have, manifest, stored_as: None })
    }

    /// Moves state kept under the file's name (`manifests/<name>.manifest`,
    /// `partial/<name>`) to the hashed layout. A state file that cannot be moved is
    /// left where it is, and said so.
    fn migrate_v1(&self) {
        let (old_manifests, old_partial) = (self.state.join("manifests"), self.state.join("partial"));
        let mut stack = vec![old_manifests.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                    continue;
                }
                let Some(rel) = path.strip_prefix(&old_manifests).ok().and_then(|r| r.to_str()) else { continue };
                let Some(name) = rel.strip_suffix(".manifest").and_then(|n| FileName::new(n).ok()) else { continue };
                match self.migrate_one(&name, &path, &old_partial.join(name.as_str())) {
                    Ok(()) => tracing::info!("moved the state of {name} to {}", self.files.path().display()),
                    Err(e) => tracing::warn!("cannot move the state of {name} from {}: {e:#}", path.display()),
                }
            }
        }
        // Only empty folders go: whatever could not be moved stays.
        for root in [old_manifests, old_partial] {
            remove_empty_dirs(&root);
        }
    }

    fn migrate_one(&self, name: &FileName, old_manifest: &Path, old_partial: &Path) -> anyhow::Result<()> {
        let data = fs::read(old_manifest)?;
        anyhow::ensure!(data.len() >= 16 && data[..8] == MANIFEST_MAGIC_V1[..], "not a manifest file");
        let manifest = parse_manifest_body(&data[8..])?;
        // The old layout took a file of the right size under its name as complete.
        let at_name = self.folder.stat(name.as_str()).ok().flatten();
        if at_name.is_some_and(|st| st.st_size as u64 == manifest.size()) {
            write_atomic(&self.state_path(name, "published"), name.as_str().as_bytes(), 0o644)?;
        }
        if old_partial.is_file() {
            fs::rename(old_partial, self.state_path(name, "partial"))?;
        }
        write_manifest(&self.state_path(name, "manifest"), name, &manifest)?;
        fs::remove_file(old_manifest)?;
        Ok(())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<FileName, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a file of `size` bytes (`name`, replacing the file `replacing`) fits:
    /// under `--max-store`, and leaving `--min-free` on the file system once it and
    /// every other file being fetched are written. `allocated` is what it takes already.
    fn check_space(
        &self,
        replacing: Option<&FileName>,
        name: &str,
        size: u64,
        allocated: u64,
    ) -> Result<(), StorageError> {
        let others: Vec<(FileName, Held)> =
            self.held().iter().filter(|(n, _)| Some(*n) != replacing).map(|(n, h)| (n.clone(), *h)).collect();
        if let Some(max) = self.space.max_store {
            let held: u64 = others.iter().map(|(_, h)| h.size).sum();
            if held + size > max {
                return Err(no_space(format!(
                    "{name} ({}) does not fit: the folder holds {} of its --max-store {}",
                    human_size(size),
                    human_size(held),
                    human_size(max)
                )));
            }
        }
        // Partial files are sparse: what the others still have to write is promised.
        let promised: u64 = others
            .iter()
            .filter(|(_, h)| h.fetching)
            .map(|(n, h)| h.size.saturating_sub(allocated_bytes(&self.state_path(n, "partial"))))
            .sum();
        let need = size.saturating_sub(allocated).saturating_add(promised);
        let vfs = rustix::fs::statvfs(self.dir.as_path()).map_err(|e| io_error("the folder", &e.into()))?;
        let frsize = vfs.f_frsize as u64;
        let (free, total) = (vfs.f_bavail.saturating_mul(frsize), vfs.f_blocks.saturating_mul(frsize));
        let keep = self.space.min_free.bytes(total);
        if free < need.saturating_add(keep) {
            let promised = match promised {
                0 => String::new(),
                p => format!(" ({} of it promised to files being fetched)", human_size(p)),
            };
            return Err(no_space(format!(
                "{name} ({}) does not fit: {} free on the disk of {}{promised}, and {} is kept free (--min-free)",
                human_size(size),
                human_size(free),
                self.dir.display(),
                human_size(keep)
            )));
        }
        Ok(())
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
                        "{} appeared in the folder while {name} was being published; the network's copy is kept                          aside",
                        self.dir.join(&at).display()
                    )),
                    _ => e,
                };
                Err(io_error(name.as_str(), &e))
            }
        }
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

/// The storage error a user sees for an I/O failure on `what`: a full disk is
/// ErrNoSpace, never a permission problem.
pub fn io_error(what: &str, e: &io::Error) -> StorageError {
    let code = match e.kind() {
        io::ErrorKind::NotFound => Code::FileMissing,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Code::NoSpace,
        _ => Code::BadPermission,
    };
    storage_error(code, format!("{what}: {e}"))
}

fn storage_error(code: Code, message: String) -> StorageError {
    StorageError { code, message }
}

/// The bytes the file at `path` takes on the disk (0 if there is none).
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

fn no_space(message: String) -> StorageError {
    storage_error(Code::NoSpace, message)
}

/// Where the network's copy of `name` goes when a file torronto does not manage has
/// the name: beside it, as `<stem>.torronto-conflict-<first 8 digits of the
/// digest><.ext>` (after Syncthing's `.sync-conflict-…`). Named by the content, so a
/// restart finds it again, and the same content always gets the same copy.
pub fn conflict_name(name: &FileName, digest: Digest) -> String {
    let (dir, base) = name.as_str().rsplit_once('/').map_or(("", name.as_str()), |(d, b)| (d, b));
    let (stem, ext) = match base.rfind('.') {
        Some(dot) if dot > 0 => base.split_at(dot),
        _ => (base, ""),
    };
    let tag = format!(".torronto-conflict-{}", &digest.to_string()[..8]);
    // Shorten the stem (at a character boundary) to keep the component within limits.
    let room = MAX_COMPONENT_LEN.saturating_sub(tag.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let base = format!("{}{tag}{ext}", &stem[..cut]);
    if dir.is_empty() {
        base
    } else {
        format!("{dir}/{base}")
    }
}

/// Removes `root` and the folders in it, from the deepest up, as long as they are empty.
fn remove_empty_dirs(root: &Path) {
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(root);
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
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// `TRNTMF02`, the name's length (u16 LE) and bytes, the size (u64 LE), the hashes.
fn write_manifest(path: &Path, name: &FileName, manifest: &Manifest) -> io::Result<()> {
    let name = name.as_str().as_bytes();
    let mut data = Vec::with_capacity(26 + name.len() + manifest.chunk_count() as usize * 32);
    data.extend_from_slice(MANIFEST_MAGIC);
    data.extend_from_slice(&(name.len() as u16).to_le_bytes());
    data.extend_from_slice(name);
    data.extend_from_slice(&manifest.size().to_le_bytes());
    data.extend_from_slice(&manifest.to_body());
    write_atomic(path, &data, 0o644)
}

fn read_manifest(path: &Path) -> anyhow::Result<(FileName, Manifest)> {
    let data = fs::read(path)?;
    anyhow::ensure!(data.len() >= 10 && data[..8] == MANIFEST_MAGIC[..], "not a manifest file");
    let len = usize::from(u16::from_le_bytes([data[8], data[9]]));
    let name = data.get(10..10 + len).context("truncated manifest file")?;
    let name = FileName::new(std::str::from_utf8(name)?)?;
    Ok((name, parse_manifest_body(&data[10 + len..])?))
}

/// The size (u64 LE) and the chunk hashes.
fn parse_manifest_body(data: &[u8]) -> anyhow::Result<Manifest> {
    anyhow::ensure!(data.len() >= 8, "truncated manifest file");
    let size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let hashes: Vec<ChunkHash> =
        data[8..].chunks_exact(32).map(|c| c.try_into().expect("chunks_exact(32) yields 32 bytes")).collect();
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
        assert_eq!(store.finalize(&name, m.digest()).unwrap(), None, "published under its name");
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

    #[test]
    fn names_that_clashed_as_paths_get_state_files_of_their_own() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let long = "n".repeat(255);
        let names = ["a", "a/b", "r", "r.manifest/x", &long];
        for (i, n) in names.iter().enumerate() {
            let data = vec![i as u8 + 1; 70_000];
            let m = manifest_of(&data);
            let name = FileName::new(n).unwrap();
            store.prepare(&name, &m).unwrap();
            let h = store.handle(&name).unwrap();
            write_chunk(&h, m.size(), ChunkIndex(0), &data[..65_536]).unwrap();
        }
        let mut loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        loaded.sort_by(|x, y| x.name.cmp(&y.name));
        let got: Vec<(&str, u32)> = loaded.iter().map(|f| (f.name.as_str(), f.have.count())).collect();
        assert_eq!(got, vec![("a", 1), ("a/b", 1), (long.as_str(), 1), ("r", 1), ("r.manifest/x", 1)]);
    }

    #[test]
    fn state_of_the_old_layout_is_moved_and_nothing_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let complete: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let partial: Vec<u8> = (0..140_000u32).map(|i| (i / 7) as u8).collect();
        let (mc, mp) = (manifest_of(&complete), manifest_of(&partial));
        // What the previous version left: manifests and partial data under the names.
        let state = tmp.path().join(".torronto");
        let old = |path: &Path, m: &Manifest| {
            let mut data = MANIFEST_MAGIC_V1.to_vec();
            data.extend_from_slice(&m.size().to_le_bytes());
            data.extend_from_slice(&m.to_body());
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        };
        old(&state.join("manifests/done.bin.manifest"), &mc);
        old(&state.join("manifests/sub/half.bin.manifest"), &mp);
        fs::write(tmp.path().join("done.bin"), &complete).unwrap();
        let mut half = vec![0u8; partial.len()];
        half[..65_536].copy_from_slice(&partial[..65_536]);
        fs::create_dir_all(state.join("partial/sub")).unwrap();
        fs::write(state.join("partial/sub/half.bin"), &half).unwrap();

        let mut loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        loaded.sort_by(|x, y| x.name.cmp(&y.name));
        let got: Vec<(&str, u32, bool)> =
            loaded.iter().map(|f| (f.name.as_str(), f.have.count(), f.have.is_complete())).collect();
        assert_eq!(got, vec![("done.bin", 2, true), ("sub/half.bin", 1, false)]);
        assert!(!state.join("manifests").exists() && !state.join("partial").exists(), "old folders removed");
        // And again, from the new layout.
        let again = Store::open(tmp.path()).unwrap().load().unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(fs::read(tmp.path().join("done.bin")).unwrap(), complete, "the complete file is untouched");
    }

    #[test]
    fn a_file_torronto_does_not_manage_is_kept_and_the_network_copy_goes_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::create_dir(tmp.path().join("docs")).unwrap();
        fs::write(tmp.path().join("docs/notes.txt"), b"the user's own notes").unwrap();
        let data = b"the network's notes".to_vec();
        let m = manifest_of(&data);
        let name = FileName::new("docs/notes.txt").unwrap();
        store.prepare(&name, &m).unwrap();
        write_chunk(&store.handle(&name).unwrap(), m.size(), ChunkIndex(0), &data).unwrap();
        let copy = store.finalize(&name, m.digest()).unwrap().expect("a conflict copy");
        assert_eq!(copy, format!("docs/notes.torronto-conflict-{}.txt", &m.digest().to_string()[..8]));
        assert_eq!(fs::read(tmp.path().join("docs/notes.txt")).unwrap(), b"the user's own notes");
        assert_eq!(fs::read(tmp.path().join(&copy)).unwrap(), data);
        let loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        assert_eq!((loaded[0].have.is_complete(), loaded[0].stored_as.as_deref()), (true, Some(copy.as_str())));
        assert_eq!(conflict_name(&FileName::new("Makefile").unwrap(), m.digest()).len(), 8 + 27);
        let long = FileName::new(&"x".repeat(250)).unwrap();
        assert_eq!(conflict_name(&long, m.digest()).len(), 255, "shortened to fit a component");
    }

    #[test]
    fn files_that_do_not_fit_are_refused_naming_the_space() {
        let tmp = tempfile::tempdir().unwrap();
        let space = Space { min_free: MinFree::Bytes(0), max_store: Some(200_000) };
        let store = Store::open_with(tmp.path(), space).unwrap();
        let m = manifest_of(&[7u8; 150_000]);
        store.prepare(&FileName::new("first").unwrap(), &m).unwrap();
        let e = store.prepare(&FileName::new("second").unwrap(), &m).unwrap_err();
        assert_eq!(e.code, Code::NoSpace);
        assert!(e.message.contains("--max-store 195.3 KiB") && e.message.contains("146.5 KiB"), "{}", e.message);
        store.prepare(&FileName::new("first").unwrap(), &m).expect("preparing again counts the file once");

        let huge = Space { min_free: MinFree::Bytes(u64::MAX / 2), max_store: None };
        let store = Store::open_with(tmp.path(), huge).unwrap();
        let e = store.prepare(&FileName::new("third").unwrap(), &m).unwrap_err();
        assert!(e.code == Code::NoSpace && e.message.contains("kept free (--min-free)"), "{}", e.message);
        assert_eq!(MinFree::Percent(5).bytes(100 << 30), 1 << 30, "5 %, at most 1 GiB");
        assert_eq!(MinFree::Percent(5).bytes(1000), 50);
        assert_eq!("2G".parse(), Ok(MinFree::Bytes(2 << 30)));
        assert_eq!("10%".parse(), Ok(MinFree::Percent(10)));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("64k"), Ok(65_536));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err() && parse_size("5X").is_err() && "101%".parse::<MinFree>().is_err());
    }

    #[test]
    fn a_full_disk_is_reported_as_such_not_as_a_permission_problem() {
        let enospc = io::Error::from_raw_os_error(28);
        let e = io_error("big.bin", &enospc);
        assert_eq!(e.code, Code::NoSpace, "{}", e.message);
        assert!(e.message.contains("No space left on device"), "{}", e.message);
        assert_eq!(io_error("x", &io::Error::from_raw_os_error(122)).code, Code::NoSpace, "EDQUOT");
        assert_eq!(io_error("x", &io::Error::from_raw_os_error(13)).code, Code::BadPermission, "EACCES");
    }
}
