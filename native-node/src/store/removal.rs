//! Removed files: deleting a file the network removed (only the copy torronto wrote,
//! never a file of the user's), and the tombstones kept in `DIR/.torronto/tombstones`
//! so that a restart still knows what was removed.

use std::fs::{self, File};
use std::io;

use serde::{Deserialize, Serialize};
use torronto_core::manifest::Digest;
use torronto_core::{ChunkIndex, FileName, Manifest, Tombstone};

use super::state::{read_manifest, write_atomic};
use super::{read_chunk, Store};

/// Now, in Unix milliseconds: the node's removes are dated with it.
pub fn unix_millis() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A tombstone as saved.
#[derive(Serialize, Deserialize)]
struct Saved {
    #[serde(rename = "FileName")]
    file: String,
    #[serde(rename = "Digest")]
    digest: String,
    #[serde(rename = "Removed")]
    time: u64,
}

/// The saved tombstones file is read only up to this size (10,000 tombstones of long
/// names fit): it is ours, but a damaged one must not exhaust memory.
const TOMBSTONES_LIMIT: u64 = 16 << 20;

impl Store {
    /// Deletes the copy of `name` with content `digest` that torronto wrote (at
    /// `stored_as` when it went to a conflict copy) and its state. The file at that
    /// place is left alone unless it is still the network's copy (its size and first
    /// and last chunks match the manifest): the user may have put their own there.
    pub fn delete(&self, name: &FileName, digest: Digest, stored_as: Option<&str>) -> io::Result<()> {
        let manifest_path = self.state_path(name, "manifest");
        let manifest = match read_manifest(&manifest_path) {
            Ok((_, m)) if m.digest() == digest => m,
            // State of other content (inserted again since), or none: nothing of ours.
            _ => return Ok(()),
        };
        self.handles().remove(name);
        self.held().remove(name);
        if let Some(at) = self.published(name).or_else(|| stored_as.map(str::to_owned)) {
            let removed = self.folder.remove_file_if(&at, |f| still_network_copy(f, &manifest))?;
            if !removed {
                tracing::warn!("{name} was removed from the network; {at} in the folder is not its copy and is kept");
            }
        }
        for suffix in ["published", "partial", "manifest"] {
            match fs::remove_file(self.state_path(name, suffix)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn tombstones_path(&self) -> std::path::PathBuf {
        self.state.join("tombstones")
    }

    /// Saves every tombstone the node keeps, replacing the previous list.
    pub fn save_tombstones(&self, list: &[Tombstone]) -> io::Result<()> {
        let saved: Vec<Saved> = list
            .iter()
            .map(|t| Saved { file: t.file.as_str().to_owned(), digest: t.digest.to_string(), time: t.time })
            .collect();
        let json = serde_json::to_vec(&saved).map_err(io::Error::other)?;
        write_atomic(&self.tombstones_path(), &json, 0o644)
    }

    /// The tombstones saved before; none if there is no list, and a damaged list or
    /// entry is skipped with a warning.
    pub fn load_tombstones(&self) -> Vec<Tombstone> {
        let path = self.tombstones_path();
        let read = File::open(&path).and_then(|f| {
            let mut data = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(f, TOMBSTONES_LIMIT), &mut data).map(|_| data)
        });
        let data = match read {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                return Vec::new();
            }
        };
        let saved: Vec<Saved> = match serde_json::from_slice(&data) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                return Vec::new();
            }
        };
        saved
            .into_iter()
            .filter_map(|s| {
                let parsed = FileName::new(&s.file).ok().zip(s.digest.parse::<Digest>().ok());
                if parsed.is_none() {
                    tracing::warn!("ignoring a damaged tombstone in {}", path.display());
                }
                parsed.map(|(file, digest)| Tombstone { file, digest, time: s.time })
            })
            .collect()
    }
}

/// Whether `file` is still the content `manifest` describes, as far as its size and its
/// first and last chunks tell (cheap, and enough to tell a user's file from ours).
fn still_network_copy(file: &File, manifest: &Manifest) -> bool {
    let size = manifest.size();
    if !file.metadata().is_ok_and(|m| m.len() == size) {
        return false;
    }
    let n = manifest.chunk_count();
    (0..n)
        .filter(|&i| i == 0 || i == n - 1)
        .map(ChunkIndex)
        .all(|i| read_chunk(file, size, i).is_ok_and(|data| manifest.verify(i, &data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::manifest_of;
    use crate::store::write_chunk;

    #[test]
    fn only_the_networks_copy_is_deleted_and_tombstones_come_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let data = vec![7u8; 100_000];
        let m = manifest_of(&data);
        let name = FileName::new("sub/a.bin").unwrap();
        let publish = |store: &Store| {
            store.prepare(&name, &m).unwrap();
            let h = store.handle(&name).unwrap();
            write_chunk(&h, m.size(), ChunkIndex(0), &data[..65_536]).unwrap();
            write_chunk(&h, m.size(), ChunkIndex(1), &data[65_536..]).unwrap();
            store.finalize(&name, m.digest()).unwrap();
        };
        publish(&store);
        // Another digest: not ours to delete.
        store.delete(&name, manifest_of(b"other").digest(), None).unwrap();
        assert!(tmp.path().join("sub/a.bin").exists());
        store.delete(&name, m.digest(), None).unwrap();
        assert!(!tmp.path().join("sub/a.bin").exists());
        assert!(Store::open(tmp.path()).unwrap().load().unwrap().is_empty(), "its state is gone");

        // The user replaced the published file with their own: it is kept.
        publish(&store);
        fs::write(tmp.path().join("sub/a.bin"), b"the user's own").unwrap();
        store.delete(&name, m.digest(), None).unwrap();
        assert_eq!(fs::read(tmp.path().join("sub/a.bin")).unwrap(), b"the user's own");

        let t = Tombstone { file: name.clone(), digest: m.digest(), time: 1_700_000_000_000 };
        store.save_tombstones(std::slice::from_ref(&t)).unwrap();
        assert_eq!(Store::open(tmp.path()).unwrap().load_tombstones(), vec![t]);
    }
}
