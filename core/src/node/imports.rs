//! Insert: a file on this machine becomes one of the network's. The driver copies it
//! aside and hashes it (Import), then publishes it (Commit); the outcome goes to
//! whoever asked — a control client as a reply, the driver itself as an event.
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
use crate::wire::{Code, Reply};

/// Who asked for an insert, and so is told how it ended.
#[derive(Clone, Copy, Debug)]
pub(super) enum InsertFrom {
    /// A control client's Insert, answered with a reply on its connection.
    Client(ConnId),
    /// [`Node::insert`], answered with [`Event::Inserted`].
    Driver,
}

#[derive(Debug)]
pub(super) struct PendingImport {
    from: InsertFrom,
    name: FileName,
    /// Known once hashed; the file is ours once the driver has committed it.
    manifest: Option<Manifest>,
}

fn already_in_network(name: &FileName) -> Refusal {
    Refusal { code: Code::FileExists, reason: format!("{name} is already in the network") }
}

impl Node {
    pub(super) fn start_insert(&mut self, from: InsertFrom, path: String) -> ImportId {
        let id = ImportId(self.next_import);
        self.next_import += 1;
        let name = match FileName::from_path_base(&path) {
            Ok(name) => name,
            Err(e) => {
                let refusal = Refusal { code: Code::BadRequest, reason: format!("{path:?}: {e}") };
                self.insert_done(from, id, Err(refusal));
                return id;
            }
        };
        if let Some(refusal) = self.name_refusal(&name, None) {
            self.insert_done(from, id, Err(refusal));
            return id;
        }
        let within = self.insert_confinement(from);
        if within.as_ref().is_some_and(Vec::is_empty) {
            let refusal = Refusal { code: Code::BadPermission, reason: outside_insert_folders(&path, &[]) };
            self.insert_done(from, id, Err(refusal));
            return id;
        }
        self.imports.insert(id, PendingImport { from, name: name.clone(), manifest: None });
        self.storage.push_back(StorageCommand::Import { id, path, name, within });
        id
    }

    /// The folders an insert must come from, or `None` for anywhere (the owner's CLI
    /// on this machine, or the driver itself).
    fn insert_confinement(&self, from: InsertFrom) -> Option<Vec<String>> {
        match from {
            InsertFrom::Client(conn) if !self.conns.get(&conn).is_some_and(|c| c.local) => {
                Some(self.config.insert_from.clone())
            }
            _ => None,
        }
    }

    /// Why `name` may not be inserted (besides by insert `except`, itself): it is in
    /// the network, being inserted, or cannot live beside a file that is.
    fn name_refusal(&self, name: &FileName, except: Option<ImportId>) -> Option<Refusal> {
        let others = || self.imports.iter().filter(move |(id, _)| Some(**id) != except).map(|(_, i)| &i.name);
        if self.files.get(name).is_some_and(FileState::is_known) || others().any(|n| n == name) {
            return Some(already_in_network(name));
        }
        let inserting: BTreeMap<String, FileName> = others().map(|n| (n.folded(), n.clone())).collect();
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
            InsertFrom::Client(conn) => {
                let reply = match result {
                    Ok(()) => Reply::code(Code::Ok),
                    Err(refusal) => Reply { reason: Some(refusal.reason), ..Reply::code(refusal.code) },
                };
                self.reply(conn, reply);
            }
            InsertFrom::Driver => self.events.push_back(Event::Inserted { id, result }),
        }
    }

    pub(super) fn on_imported(&mut self, id: ImportId, result: Result<Manifest, StorageError>) {
        let Some(import) = self.imports.get(&id) else {
            return;
        };
        let from = import.from;
        let name = import.name.clone();
        match result {
            Err(e) => {
                self.imports.remove(&id);
                self.insert_done(from, id, Err(e.into()));
            }
            Ok(manifest) => {
                match self.name_refusal(&name, Some(id)).or_else(|| self.buried_refusal(&name, &manifest)) {
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
                }
            }
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
        f.requested = ChunkSet::new(manifest.chunk_count());
        f.manifest = Some(manifest);
        self.events.push_back(Event::FileInserted { file: name.clone(), size });
        self.announce(&name);
        self.insert_done(import.from, id, Ok(()));
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
