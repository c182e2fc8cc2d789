//! The Query answer: every file this node knows, counted over every participant of the
//! network (links from their announcements, the rest from gossip; see `overlay`).

use super::peers::PeerState;
use super::Node;
use crate::bitset::ChunkSet;
use crate::layout::{chunk_count, chunk_len, ChunkIndex, CHUNK_SIZE};
use crate::name::FileName;
use crate::status::{ChunkMap, LinkStatus, Status};

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
            auto_upload_limit: self.uplink.limit,
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
        status.links = self.peers.iter().map(|(addr, p)| self.link_status(addr.to_string(), p)).collect();
        status
    }

    /// A peer as the Query's `links` show it: what it announced holding of the files
    /// listed (as the replication figures count it), and the bytes moved each way.
    fn link_status(&self, peer: String, p: &PeerState) -> LinkStatus {
        let held = p
            .files
            .iter()
            .filter_map(|(name, chunks)| {
                self.files.get(name).filter(|f| f.is_known()).map(|f| held_bytes(f.size, chunks))
            })
            .sum();
        LinkStatus { peer, held, fetched: p.delivered, served: p.served }
    }

    /// How many participants hold each chunk of `name`, summarised for drawing.
    pub fn chunk_map(&self, name: &FileName) -> Option<ChunkMap> {
        let f = self.files.get(name).filter(|f| f.is_known())?;
        Some(ChunkMap::of(name, f))
    }
}

/// The bytes of a file of `size` bytes in the chunks `held`.
fn held_bytes(size: u64, held: &ChunkSet) -> u64 {
    let Some(last) = chunk_count(size).checked_sub(1).map(ChunkIndex) else { return 0 };
    // Every chunk is whole but the last.
    let short = if held.contains(last) { CHUNK_SIZE - chunk_len(size, last) as u64 } else { 0 };
    (u64::from(held.count()) * CHUNK_SIZE).saturating_sub(short)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Config, ConnId, ConnInfo, StorageEvent};
    use super::*;
    use crate::manifest::ManifestBuilder;
    use crate::wire::{ChunkRef, Envelope, FileEntry, PeerAddr, PeerMessage};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn held_bytes_counts_the_short_last_chunk_once() {
        let size = 3 * CHUNK_SIZE + 100;
        let mut held = ChunkSet::new(4);
        assert_eq!(held_bytes(size, &held), 0);
        held.insert(ChunkIndex(3));
        assert_eq!(held_bytes(size, &held), 100);
        held.insert(ChunkIndex(0));
        assert_eq!(held_bytes(size, &held), CHUNK_SIZE + 100);
        assert_eq!(held_bytes(size, &ChunkSet::full(4)), size);
        assert_eq!(held_bytes(0, &ChunkSet::new(0)), 0);
    }

    /// Peer 1 announces all of a 200,000-byte file, peer 2 its first chunk; the node
    /// reads a chunk for peer 2.
    #[test]
    fn links_say_what_each_peer_holds_and_what_went_to_it() {
        let mut node = Node::new(Config::for_tests(PeerAddr::new("10.0.0.100", 7000)));
        node.join(0);
        let file = FileName::new("f").unwrap();
        let mut b = ManifestBuilder::new();
        b.update(&[7; 200_000]);
        let digest = b.finish().unwrap().digest();
        for (p, chunks) in [(1u8, vec![0, 1, 2, 3]), (2, vec![0])] {
            let conn = ConnId(u64::from(p));
            node.handle_connected(0, conn, ConnInfo::default());
            let chunks = chunks.into_iter().map(ChunkIndex).collect();
            let files = vec![FileEntry { name: file.clone(), size: 200_000, digest, chunks }];
            let from = Some(PeerAddr::new(format!("10.0.0.{p}"), 7000));
            node.handle_message(0, conn, Envelope { from, token: None, message: PeerMessage::Add { files }.into() });
        }
        let chunk = ChunkRef { file: file.clone(), size: 200_000, index: ChunkIndex(3) };
        let data = Bytes::from(vec![7; 200_000 - 3 * CHUNK_SIZE as usize]);
        node.handle_storage(0, StorageEvent::Read { conn: ConnId(2), chunk, push: false, result: Ok(data) });

        let status = node.status();
        assert_eq!(status.peers, ["10.0.0.1:7000", "10.0.0.2:7000"]);
        let links: Vec<_> = status.links.iter().map(|l| (l.peer.as_str(), l.held, l.fetched, l.served)).collect();
        assert_eq!(links, [("10.0.0.1:7000", 200_000, 0, 0), ("10.0.0.2:7000", CHUNK_SIZE, 0, 3392)]);
        assert_eq!(status.links[0].completion(status.total_bytes()), 1.0);
        assert_eq!(status.links[1].completion(status.total_bytes()), CHUNK_SIZE as f64 / 200_000.0);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json["links"][1],
            serde_json::json!({"peer": "10.0.0.2:7000", "held": 65536, "fetched": 0, "served": 3392})
        );
    }
}
