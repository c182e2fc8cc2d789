//! A node's folder, simulated: what native-node's `store` keeps on disk, and what a
//! restart reads back from it (`Store::load`).
//!
//! Like the real store, a fetched file lives as a partial file (sized up front, so
//! unwritten chunks read as zeros) until every chunk is written and it is renamed into
//! place; its manifest is kept beside it; a restart keeps the chunks of a partial file
//! that still match their hashes and trusts a published file of the right size. What
//! can fail fails the same way: a full disk refuses writes and preparing (the store
//! then retries preparing on the file's next read or write, from memory), a crash
//! loses queued commands and may tear the write in progress, and the retry list and
//! interrupted inserts are gone after a restart.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use torronto_core::layout::{chunk_len, ChunkIndex};
use torronto_core::{
    ChunkSet, Code, FileName, ImportId, LocalFile, Manifest, StorageCommand, StorageError, StorageEvent, Tombstone,
};

use crate::content::FileSpec;

/// A file's data on disk, chunk by chunk (absent chunks were never written).
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// Renamed into place: visible to users under its name.
    pub published: bool,
    pub chunks: BTreeMap<u32, Bytes>,
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub manifests: BTreeMap<FileName, Manifest>,
    pub files: BTreeMap<FileName, Stored>,
    /// Inserted files copied aside, not yet published (lost on restart).
    imports: BTreeMap<ImportId, FileSpec>,
    /// Files whose preparing failed, retried on their next read or write (in memory).
    unprepared: BTreeMap<FileName, Manifest>,
    /// Writes fail with ENOSPC.
    pub full: bool,
    /// Files whose Finalize found no partial file to rename (its preparing had failed).
    pub unpublished: BTreeSet<FileName>,
    /// The tombstones saved last (`DIR/.torronto/tombstones`), restored at a restart.
    pub tombstones: Vec<Tombstone>,
}

fn enospc(what: &str) -> StorageError {
    // What `store::io_error` makes of ENOSPC.
    StorageError { code: Code::NoSpace, message: format!("{what}: No space left on device (os error 28)") }
}

fn missing(what: &str) -> StorageError {
    StorageError { code: Code::FileMissing, message: format!("{what}: No such file or directory (os error 2)") }
}

impl Disk {
    /// Carries out one storage command, as `native-node/src/storage.rs::execute` does.
    pub fn execute(&mut self, command: StorageCommand, catalog: &[FileSpec]) -> Option<StorageEvent> {
        Some(match command {
            StorageCommand::Import { id, path, .. } => {
                let result = match catalog.iter().find(|f| f.path() == path) {
                    None => Err(missing(&path)),
                    Some(_) if self.full => Err(enospc(&path)),
                    Some(spec) => {
                        self.imports.insert(id, spec.clone());
                        Ok(spec.manifest.clone())
                    }
                };
                StorageEvent::Imported { id, result }
            }
            StorageCommand::Commit { id, name, manifest } => {
                let result = match self.imports.remove(&id) {
                    None => Err(missing("import")),
                    Some(_) if self.files.get(&name).is_some_and(|f| f.published) => Err(StorageError {
                        code: Code::FileExists,
                        message: format!("{name} already exists in the node's folder"),
                    }),
                    Some(_) if self.full => Err(enospc("manifest")),
                    Some(spec) => {
                        let chunks =
                            ChunkIndex::all(spec.manifest.chunk_count()).map(|i| (i.get(), spec.chunk(i))).collect();
                        self.manifests.insert(name.clone(), manifest);
                        self.files.insert(name, Stored { published: true, chunks });
                        Ok(())
                    }
                };
                StorageEvent::Committed { id, result }
            }
            StorageCommand::Discard { id } => {
                self.imports.remove(&id);
                return None;
            }
            StorageCommand::Torrent { conn, file, .. } => StorageEvent::no_bittorrent(conn, file),
            StorageCommand::AddTorrent { id, .. } => StorageEvent::no_bittorrent_add(id),
            StorageCommand::AddFinished { .. } => return None,
            StorageCommand::Prepare { file, manifest } => {
                let result = if self.prepare(file.clone(), manifest) { Ok(()) } else { Err(enospc(file.as_str())) };
                StorageEvent::Prepared { file, result }
            }
            StorageCommand::Read { conn, chunk, push } => {
                let result = self.read(&chunk.file, chunk.index, chunk.size);
                StorageEvent::Read { conn, chunk, push, result }
            }
            StorageCommand::Write { chunk, data } => {
                let result = self.write(&chunk.file, chunk.index, data);
                StorageEvent::Written { chunk, result }
            }
            StorageCommand::Finalize { file, .. } => {
                // The sim has no files the node does not manage: never a conflict copy.
                let result = match self.files.get_mut(&file) {
                    Some(f) => {
                        f.published = true;
                        Ok(None)
                    }
                    None => {
                        self.unpublished.insert(file.clone());
                        Err(missing(file.as_str()))
                    }
                };
                StorageEvent::Finalized { file, result }
            }
            StorageCommand::Delete { file, digest, .. } => {
                // `Store::delete`: only the state of that content.
                if self.manifests.get(&file).is_some_and(|m| m.digest() == digest) {
                    self.manifests.remove(&file);
                    self.files.remove(&file);
                }
                self.unprepared.remove(&file);
                return None;
            }
            StorageCommand::SaveTombstones(list) => {
                self.tombstones = list;
                return None;
            }
        })
    }

    fn prepare(&mut self, file: FileName, manifest: Manifest) -> bool {
        if self.full {
            self.unprepared.insert(file, manifest);
            return false;
        }
        self.unprepared.remove(&file);
        self.manifests.insert(file.clone(), manifest);
        self.files.entry(file).or_default();
        true
    }

    /// `Store::handle`: the file, preparing it first if that failed before.
    fn handle(&mut self, file: &FileName) -> Result<&mut Stored, StorageError> {
        if let Some(manifest) = self.unprepared.get(file).cloned() {
            if !self.prepare(file.clone(), manifest) {
                return Err(enospc(file.as_str()));
            }
        }
        self.files.get_mut(file).ok_or_else(|| missing(file.as_str()))
    }

    fn read(&mut self, file: &FileName, index: ChunkIndex, size: u64) -> Result<Bytes, StorageError> {
        let stored = self.handle(file)?;
        // A chunk never written reads as the zeros of the sized partial file.
        Ok(stored.chunks.get(&index.get()).cloned().unwrap_or_else(|| Bytes::from(vec![0; chunk_len(size, index)])))
    }

    fn write(&mut self, file: &FileName, index: ChunkIndex, data: Bytes) -> Result<(), StorageError> {
        let full = self.full;
        let stored = self.handle(file)?;
        if full {
            return Err(enospc(file.as_str()));
        }
        stored.chunks.insert(index.get(), data);
        Ok(())
    }

    /// A crash: `in_progress` was being carried out and, if `torn`, left half written;
    /// everything held in memory is gone.
    pub fn crash(&mut self, in_progress: Option<&StorageCommand>, torn: bool) {
        if let (Some(StorageCommand::Write { chunk, data }), true) = (in_progress, torn) {
            if let Some(stored) = self.files.get_mut(&chunk.file).filter(|_| !self.full) {
                let mut half = data.to_vec();
                let keep = half.len() / 2;
                half[keep..].fill(0);
                stored.chunks.insert(chunk.index.get(), Bytes::from(half));
            }
        }
        self.imports.clear();
        self.unprepared.clear();
        self.unpublished.clear();
    }

    /// What a restart finds (`Store::load`): every file with a manifest, with the
    /// chunks that verify.
    pub fn load(&self) -> Vec<LocalFile> {
        self.manifests
            .iter()
            .map(|(name, manifest)| {
                let n = manifest.chunk_count();
                let stored = self.files.get(name);
                let published = stored.is_some_and(|s| s.published);
                let have = match stored {
                    Some(s) if s.published => ChunkSet::full(n),
                    Some(s) => {
                        let mut have = ChunkSet::new(n);
                        for (&i, data) in &s.chunks {
                            if manifest.verify(ChunkIndex(i), data) {
                                have.insert(ChunkIndex(i));
                            }
                        }
                        have
                    }
                    None => ChunkSet::new(n),
                };
                LocalFile { name: name.clone(), manifest: manifest.clone(), have, stored_as: None, published }
            })
            .collect()
    }

    /// Whether the node here has this file's manifest: kept on disk, or held in memory
    /// to prepare again.
    pub fn knows(&self, name: &FileName) -> bool {
        self.manifests.contains_key(name) || self.unprepared.contains_key(name)
    }

    /// Whether chunk `index` of `spec` is on this disk with the right bytes.
    pub fn holds(&self, spec: &FileSpec, index: ChunkIndex) -> bool {
        self.files.get(&spec.name).and_then(|s| s.chunks.get(&index.get())).is_some_and(|d| *d == spec.chunk(index))
    }

    /// Whether `spec` is published here, whole and exact.
    pub fn has_published(&self, spec: &FileSpec) -> bool {
        self.files.get(&spec.name).is_some_and(|s| s.published)
            && ChunkIndex::all(spec.manifest.chunk_count()).all(|i| self.holds(spec, i))
    }
}
