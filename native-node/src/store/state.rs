//! State files: each file's state under a hash of its name, the manifest file format,
//! atomic writes, and moving state kept the old way (under the name itself).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest as _, Sha256};
use torronto_core::layout::chunk_count;
use torronto_core::manifest::ChunkHash;
use torronto_core::{FileName, ImportId, Manifest};

use super::Store;

const MANIFEST_MAGIC_V1: &[u8; 8] = b"TRNTMF01";
/// Version 2 keeps the name: state files are named by its hash.
const MANIFEST_MAGIC: &[u8; 8] = b"TRNTMF02";

impl Store {
    /// The state file of `name` with `suffix` (`manifest`, `partial`, `published`),
    /// relative to the state folder of files.
    pub(super) fn state_file(name: &FileName, suffix: &str) -> String {
        let key: String = Sha256::digest(name.as_str().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!("{key}.{suffix}")
    }

    pub(super) fn state_path(&self, name: &FileName, suffix: &str) -> PathBuf {
        self.files.path().join(Self::state_file(name, suffix))
    }

    pub(super) fn import_path(&self, id: ImportId) -> PathBuf {
        self.state.join("import").join(id.to_string())
    }

    /// Where in DIR the complete `name` was put, if it was.
    pub(super) fn published(&self, name: &FileName) -> Option<String> {
        let at = fs::read_to_string(self.state_path(name, "published")).ok()?;
        // Written by us, but the folder may have been tampered with: only plain names.
        FileName::new(&at).ok().map(|n| n.as_str().to_owned())
    }
}

/// The complete copy of `name` in the folder `dir` of a node (running or not), as the
/// node published it; `None` while the node holds no complete copy. For readers beside
/// the node (BitTorrent export): nothing is created or changed.
pub fn open_published(dir: &Path, name: &FileName) -> io::Result<Option<fs::File>> {
    let record = dir.join(torronto_core::name::STATE_DIR).join("files").join(Store::state_file(name, "published"));
    let at = match fs::read_to_string(record) {
        Ok(at) => at,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(at) = FileName::new(&at) else { return Ok(None) };
    match crate::beneath::Folder::open(dir)?.open_file(at.as_str(), false) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Moves state kept under the file's name (`manifests/<name>.manifest`,
    /// `partial/<name>`) to the hashed layout. A state file that cannot be moved is
    /// left where it is, and said so.
    pub(super) fn migrate_v1(&self) {
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
pub(super) fn write_manifest(path: &Path, name: &FileName, manifest: &Manifest) -> io::Result<()> {
    let name = name.as_str().as_bytes();
    let mut data = Vec::with_capacity(26 + name.len() + manifest.chunk_count() as usize * 32);
    data.extend_from_slice(MANIFEST_MAGIC);
    data.extend_from_slice(&(name.len() as u16).to_le_bytes());
    data.extend_from_slice(name);
    data.extend_from_slice(&manifest.size().to_le_bytes());
    data.extend_from_slice(&manifest.to_body());
    write_atomic(path, &data, 0o644)
}

pub(super) fn read_manifest(path: &Path) -> anyhow::Result<(FileName, Manifest)> {
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
    use crate::store::tests::manifest_of;
    use crate::store::write_chunk;
    use torronto_core::ChunkIndex;

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
}
