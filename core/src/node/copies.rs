//! This node's own copies in its folder: which complete file is where, and a copy
//! that went from the folder behind the node's back (deleted by hand), which is
//! fetched again so that an accident heals.
//!
//! Keyed on the node's file table alone: a file the node no longer knows (removed from
//! the network, say) is not restored.

use super::{Event, Membership, Millis, Node, StorageCommand};
use crate::bitset::ChunkSet;
use crate::name::FileName;
use crate::wire::PeerMessage;

impl Node {
    /// Whether the node is a member of the network with its join finished: it then
    /// knows what the network has (a driver adopts files found in its folder only then,
    /// so as never to publish one over a file of the network's).
    pub fn is_member(&self) -> bool {
        matches!(self.membership, Membership::Joined)
    }

    /// The files this node holds complete at `path` in its folder (relative, `/`
    /// separated) or beneath it when `path` is a folder (`""`: all of them): under their
    /// names, or as conflict copies.
    pub fn held_at(&self, path: &str) -> Vec<FileName> {
        let beneath = |at: &str| {
            path.is_empty() || at == path || (at.starts_with(path) && at.as_bytes().get(path.len()) == Some(&b'/'))
        };
        self.files
            .iter()
            .filter(|(name, f)| {
                f.manifest.is_some() && f.have.is_complete() && beneath(f.stored_as.as_deref().unwrap_or(name.as_str()))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The node's complete copy of `file` is gone from its folder: forgets that it holds
    /// it (telling its peers, so no one counts on that copy), and fetches it again.
    /// Does nothing, and returns false, for a file the node does not hold complete.
    pub fn local_copy_gone(&mut self, now: Millis, file: &FileName) -> bool {
        let Some(f) = self.files.get_mut(file) else { return false };
        let Some(manifest) = f.manifest.clone() else { return false };
        if !f.have.is_complete() || f.preparing {
            return false;
        }
        f.forget_held();
        f.requested = ChunkSet::new(f.chunk_count());
        f.stored_as = None;
        f.preparing = true;
        self.storage.push_back(StorageCommand::Prepare { file: file.clone(), manifest });
        if f.have.is_complete() {
            // An empty file: complete as soon as it exists again.
            self.storage.push_back(StorageCommand::Finalize { file: file.clone(), digest: f.digest });
        }
        self.events.push_back(Event::Restoring { file: file.clone() });
        // Add on an open connection replaces what we claimed before (docs/protocol.md).
        let files = self.file_list();
        let conns: Vec<_> = self.peers.values().map(|p| p.conn).collect();
        for conn in conns {
            self.send(conn, PeerMessage::Add { files: files.clone() });
        }
        self.after_input(now);
        true
    }
}
