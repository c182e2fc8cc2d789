//! The Query answer: every file this node knows, counted over every participant of the
//! network (links from their announcements, the rest from gossip; see `overlay`).

use super::Node;
use crate::name::FileName;
use crate::status::{ChunkMap, Status};

impl Node {
    /// The Query answer (docs/protocol.md, "Query").
    pub fn status(&self) -> Status {
        let mut status = Status {
            node: self.config.me.to_string(),
            joined: self.is_joined(),
            peers: self.peers.keys().map(ToString::to_string).collect(),
            participants: self.participant_count(),
            id: self.config.private.map(|id| id.to_string()),
            chunks_fetched: self.chunks_fetched,
            chunks_served: self.chunks_served,
            bytes_fetched: self.bytes_fetched,
            bytes_served: self.bytes_served,
            upload_limit: self.limits.upload,
            download_limit: self.limits.download,
            inserting: self.import_progress(),
            adding: self.add_progress(),
            ..Status::default()
        };
        if self.config.private.is_some() {
            status.peer_ids = self.peers.values().map(|p| p.id.map(|id| id.to_string()).unwrap_or_default()).collect();
        }
        for (name, f) in self.files.iter().filter(|(_, f)| f.is_known()) {
            status.push_file(name, f);
        }
        status
    }

    /// How many participants hold each chunk of `name`, summarised for drawing.
    pub fn chunk_map(&self, name: &FileName) -> Option<ChunkMap> {
        let f = self.files.get(name).filter(|f| f.is_known())?;
        Some(ChunkMap::of(name, f))
    }
}
