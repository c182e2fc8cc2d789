//! Insert: a file on this machine becomes one of the network's. The driver copies it
//! aside and hashes it (Import), then publishes it (Commit); the outcome goes to
//! whoever asked — a control client as a reply, the driver itself as an event.
//!
//! Adopt is the same insert for a file already in the node's folder (the shared
//! folder, [`Node::adopt`]): hashed where it is, never copied, and never published
//! over a file the network has under its name with other content — the user's file is
//! then left alone, and the network's copy goes beside it as a conflict copy.
//!
//! Insert by path reads a file on the node's machine with the node's rights, so only
//! the owner's CLI there (a [`super::ConnInfo::local`] connection) may name any file.
//! A remote client (a WebSocket session, TCP from elsewhere) may name only files under
//! the `--insert-from` folders ([`super::Config::insert_from`]). The driver checks
//! with [`check_insert_source`] the canonical path of the file it actually opened, so
//! neither symlinks nor `..` lead out, and nothing can be swapped in after the check.

use super::{ConnId, Event, ImportId, Node, Refusal, StorageCommand, StorageError};
use crate::bitset::ChunkSet;
use std::collections::BTreeMap;

use crate::files::{collision_among, FileState};
use crate::layout::ChunkIndex;
use crate::manifest::Manifest;
use crate::name::FileName;
use crate::status::InsertProgress;
use crate::wire::{Code, Reply};

/// Who asked for an insert, and so is told how it ended.
#[derive(Clone, Debug)]
pub(super) enum InsertFrom {
    /// A control client's Insert, answered with a reply on its connection.
    Client(ConnId),
    /// [`Node::insert`], answered with [`Event::Inserted`].
    Driver,
    /// [`Node::adopt`] of this file in the folder, answered with [`Event::Adopted`].
    Folder(FileName),
    /// One file of AddTorrent `id`, answered once all of them are (`adds`).
    Torrent(ImportId),
}

#[derive(Debug)]
pub(super) struct PendingImport {
    from: InsertFrom,
    name: FileName,
    /// Known once hashed; the file is ours once the driver has committed it.
    manifest: Option<Manifest>,
    /// Bytes copied and hashed so far, of how many, as the driver last reported.
    progress: (u64, u64),
}

fn already_in_network(name: &FileName) -> Refusal {
    Refusal { code: Code::FileExists, reason: format!("{name} is already in the network") }
}

impl Node {
    /// A fresh id for an insert, an adoption or an add.
    pub(super) fn new_import_id(&mut self) -> ImportId {
        self.next_import += 1;
        ImportId(self.next_import - 1)
    }

    pub(super) fn start_insert(&mut self, from: InsertFrom, path: String) -> ImportId {
        match FileName::from_path_base(&path) {
            Ok(name) => self.start_insert_as(from, path, name),
            Err(e) => {
                let id = self.new_import_id();
                let refusal = Refusal { code: Code::BadRequest, reason: format!("{path:?}: {e}") };
                self.insert_done(from, id, Err(refusal));
                id
            }
        }
    }

    /// Inserts the file at `path` as `name`.
    pub(super) fn start_insert_as(&mut self, from: InsertFrom, path: String, name: FileName) -> ImportId {
        let id = self.new_import_id();
        if let Some(refusal) = self.name_refusal(&name, None) {
            self.insert_done(from, id, Err(refusal));
            return id;
        }
        let within = self.insert_confinement(&from);
        if within.as_ref().is_some_and(Vec::is_empty) {
            let refusal = Refusal { code: Code::BadPermission, reason: outside_insert_folders(&path, &[]) };
            self.insert_done(from, id, Err(refusal));
            return id;
        }
        self.imports.insert(id, PendingImport { from, name: name.clone(), manifest: None, progress: (0, 0) });
        self.storage.push_back(StorageCommand::Import { id, path, name, within, in_place: false });
        id
    }

    /// Starts adopting the file `name` found in the node's folder. Refused at once if
    /// this node holds a file of that name already (its own copy, or the network's
    /// kept as a conflict copy beside the user's) or is inserting one; a name the
    /// network has but this node does not hold yet is hashed first: the same content
    /// becomes this node's copy, other content is refused.
    pub(super) fn start_adopt(&mut self, name: FileName) -> ImportId {
        let id = self.new_import_id();
        let from = InsertFrom::Folder(name.clone());
        let held = self.files.get(&name).is_some_and(|f| f.manifest.is_some() && f.have.is_complete());
        let inserting = self.imports.values().any(|i| i.name == name);
        let refusal = if held || inserting {
            Some(already_in_network(&name))
        } else if self.files.get(&name).is_some_and(FileState::is_known) {
            None
        } else {
            self.name_refusal(&name, None)
        };
        if let Some(refusal) = refusal {
            self.insert_done(from, id, Err(refusal));
            return id;
        }
        self.imports.insert(id, PendingImport { from, name: name.clone(), manifest: None, progress: (0, 0) });
        let path = name.as_str().to_owned();
        self.storage.push_back(StorageCommand::Import { id, path, name, within: None, in_place: true });
        id
    }

    fn adopting(&self, id: ImportId) -> bool {
        self.imports.get(&id).is_some_and(|i| matches!(i.from, InsertFrom::Folder(_)))
    }

    /// Whether adoption `id` found the content this node holds already under `name`
    /// (fetched while it was hashed): nothing left to do.
    fn adopted_already(&self, id: ImportId, name: &FileName, manifest: &Manifest) -> bool {
        let held = |f: &FileState| f.have.is_complete() && f.matches(manifest.size(), manifest.digest());
        self.adopting(id) && self.files.get(name).is_some_and(held)
    }

    /// Why a hashed import may not be committed: for an adoption, only a file the
    /// network has with other content (or a name that cannot live beside its files).
    fn commit_refusal(&self, id: ImportId, name: &FileName, manifest: &Manifest) -> Option<Refusal> {
        match self.files.get(name) {
            Some(f) if self.adopting(id) && f.is_known() => {
                (!f.matches(manifest.size(), manifest.digest())).then(|| Refusal {
                    code: Code::FileExists,
                    reason: format!("the network has another {name} (different content); this one is not shared"),
                })
            }
            _ => self.name_refusal(name, Some(id)),
        }
        .or_else(|| self.buried_refusal(name, manifest))
    }

    /// The folders an insert must come from, or `None` for anywhere (the owner's CLI
    /// on this machine, or the driver itself).
    fn insert_confinement(&self, from: &InsertFrom) -> Option<Vec<String>> {
        match from {
            InsertFrom::Client(conn) if !self.conns.get(conn).is_some_and(|c| c.local) => {
                Some(self.config.insert_from.clone())
            }
            _ => None,
        }
    }

    /// Why `name` may not be inserted (besides by insert `except`, itself): it is in
    /// the network, being inserted, or cannot live beside a file that is.
    pub(super) fn name_refusal(&self, name: &FileName, except: Option<ImportId>) -> Option<Refusal> {
        let others = || self.imports.iter().filter(move |(id, _)| Some(**id) != except).map(|(_, i)| &i.name);
        if self.files.get(name).is_some_and(FileState::is_known) || others().any(|n| n == name) {
            return Some(already_in_network(name));
        }
        // By insert, not collect (which sorts first: a copy of the sort in the browser's
        // bundle). Equal keys: the last wins either way.
        let mut inserting: BTreeMap<String, FileName> = BTreeMap::new();
        inserting.extend(others().map(|n| (n.folded(), n.clone())));
        let collision = self.files.collision(name).or_else(|| collision_among(&inserting, name))?;
        Some(Refusal { code: Code::FileExists, reason: collision.explain(name) })
    }

    /// Why this very content may not come back under `name`: it was removed, and peers
    /// keeping the tombstone would ignore it.
    fn buried_refusal(&self, name: &FileName, manifest: &Manifest) -> Option<Refusal> {
        self.buried(name, manifest.digest()).then(|| Refusal {
            code: Code::FileExists,
            reason: format!(
                "{name} with this very content was removed from the network, and its tombstone still stands; \
                 insert it under another name, or changed content under this one"
            ),
        })
    }

    /// Tells whoever asked for insert `id` how it ended.
    fn insert_done(&mut self, from: InsertFrom, id: ImportId, result: Result<(), Refusal>) {
        match from {
            InsertFrom::Folder(file) => self.events.push_back(Event::Adopted { id, file, result }),
            InsertFrom::Client(conn) => {
                let reply = match result {
                    Ok(()) => Reply::code(Code::Ok),
                    Err(refusal) => Reply { reason: Some(refusal.reason), ..Reply::code(refusal.code) },
                };
                self.reply(conn, reply);
            }
            InsertFrom::Driver => self.events.push_back(Event::Inserted { id, result }),
            InsertFrom::Torrent(add) => self.add_file_done(add, result),
        }
    }

    pub(super) fn on_import_progress(&mut self, id: ImportId, done: u64, total: u64) {
        if let Some(import) = self.imports.get_mut(&id) {
            import.progress = (done.min(total), total);
        }
    }

    /// Inserts under way, for the status, in the order they were asked for (the map's
    /// order: import IDs count up).
    pub(super) fn import_progress(&self) -> Vec<InsertProgress> {
        self.imports
            .values()
            .map(|import| {
                let (done, size) = import.progress;
                InsertProgress { file: import.name.to_string(), done, size }
            })
            .collect()
    }

    pub(super) fn on_imported(&mut self, id: ImportId, result: Result<Manifest, StorageError>) {
        let Some(import) = self.imports.get(&id) else {
            return;
        };
        let from = import.from.clone();
        let name = import.name.clone();
        match result {
            Err(e) => {
                self.imports.remove(&id);
                self.insert_done(from, id, Err(e.into()));
            }
            Ok(manifest) if self.adopted_already(id, &name, &manifest) => {
                self.imports.remove(&id);
                self.storage.push_back(StorageCommand::Discard { id });
                self.insert_done(from, id, Ok(()));
            }
            Ok(manifest) => match self.commit_refusal(id, &name, &manifest) {
                // Announced by a peer while we were hashing: the same answer as before.
                Some(refusal) => {
                    self.imports.remove(&id);
                    self.storage.push_back(StorageCommand::Discard { id });
                    self.insert_done(from, id, Err(refusal));
                }
                None => {
                    self.imports.get_mut(&id).expect("looked up above").manifest = Some(manifest.clone());
                    self.storage.push_back(StorageCommand::Commit { id, name, manifest });
                }
            },
        }
    }

    pub(super) fn on_committed(&mut self, id: ImportId, result: Result<(), StorageError>) {
        let Some(import) = self.imports.remove(&id) else {
            return;
        };
        let (Ok(()), Some(manifest)) = (&result, import.manifest) else {
            let e = result
                .err()
                .unwrap_or(StorageError { code: Code::BadRequest, message: "commit without import".into() });
            self.insert_done(import.from, id, Err(e.into()));
            return;
        };
        let name = import.name;
        let (size, digest) = (manifest.size(), manifest.digest());
        // A peer may have announced other content under this name while we hashed;
        // what is now on our disk is what we count.
        if self.files.get(&name).is_some_and(|f| !f.matches(size, digest)) {
            for peer in self.peers.values_mut() {
                if peer.files.remove(&name).is_some() {
                    peer.announced_bytes -= self.files[&name].size;
                }
            }
            self.files.remove(&name);
        }
        if !self.files.contains_key(&name) {
            self.files.insert(name.clone(), FileState::new(size, digest));
        }
        let f = self.files.get_mut(&name).expect("inserted above");
        for i in ChunkIndex::all(manifest.chunk_count()) {
            f.mark_held(i);
        }
        let count = manifest.chunk_count();
        f.requested = ChunkSet::new(count);
        f.manifest = Some(manifest);
        self.events.push_back(Event::FileInserted { file: name.clone(), size });
        self.announce(&name);
        self.insert_done(import.from, id, Ok(()));
        self.plan_more(&name, ChunkIndex::all(count));
    }
}

/// Whether a remote client may insert the file whose canonical path is `canonical`:
/// only if it lies inside one of the folders `within` (canonical too). Compared by
/// whole path components, so `/srv/share` does not admit `/srv/share-private`.
pub fn check_insert_source(canonical: &str, within: &[String]) -> Result<(), StorageError> {
    let inside = |folder: &String| {
        let folder = folder.trim_end_matches('/');
        canonical.strip_prefix(folder).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if within.iter().any(inside) {
        return Ok(());
    }
    Err(StorageError { code: Code::BadPermission, message: outside_insert_folders(canonical, within) })
}

/// Why a remote client may not insert `path`, and what to do instead.
fn outside_insert_folders(path: &str, within: &[String]) -> String {
    let instead = "or upload the file with the panel's file picker";
    if within.is_empty() {
        format!(
            "{path}: remote control clients may insert by path only from folders the node was started with \
             --insert-from DIR (it has none); {instead}"
        )
    } else {
        format!("{path} is outside the node's --insert-from folders ({}); {instead}", within.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::check_insert_source;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn inserts_are_confined_to_whole_folders() {
        let within = vec!["/srv/share".to_owned(), "/data/".to_owned()];
        assert!(check_insert_source("/srv/share/a.txt", &within).is_ok());
        assert!(check_insert_source("/srv/share/deep/b", &within).is_ok());
        assert!(check_insert_source("/data/x", &within).is_ok());
        for outside in ["/srv/share-private/a", "/srv/a", "/etc/shadow", "/srv/shar"] {
            let e = check_insert_source(outside, &within).unwrap_err();
            assert!(e.message.contains("--insert-from") && e.message.contains("file picker"), "{}", e.message);
        }
        assert!(check_insert_source("/anything", &["/".to_owned()]).is_ok());
        assert!(check_insert_source("/srv/share/a", &[]).is_err());
    }
}
