//! Serving: the chunks and manifests peers ask of us, and telling peers what we hold
//! (file lists, announcements of new files, batched Haves).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{ConnId, Event, Membership, Millis, NetCommand, Node, StorageCommand, StorageError};
use crate::files::FileState;
use crate::layout::{chunk_len, ChunkIndex};
use crate::name::FileName;
use crate::wire::{
    have_entry_len, ChunkRef, Code, FileEntry, FileRef, HaveEntry, PeerAddr, PeerMessage, Reply, HEADER_LIMIT,
};

impl Node {
    pub(super) fn on_download(&mut self, conn: ConnId, chunk: ChunkRef) {
        let held = self.files.get(&chunk.file).is_some_and(|f| f.size == chunk.size && f.have.contains(chunk.index));
        if !held {
            let about = FileRef { name: chunk.file.clone(), chunk: Some((chunk.size, chunk.index)) };
            self.reply(conn, Reply { about: Some(about), ..Reply::code(Code::FileMissing) });
            return;
        }
        let limit = self.config.tuning.serve_limit;
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if state.serving >= limit {
            // Far more than any well-behaved peer keeps in flight.
            self.net.push_back(NetCommand::Close(conn));
            return;
        }
        state.serving += 1;
        if let Some(peer) = state.peer.clone() {
            self.sent_to(&peer, &chunk.file, chunk.index);
        }
        self.storage.push_back(StorageCommand::Read { conn, chunk, push: false });
    }

    /// A chunk read for `conn` is done: `Some` bytes to send, or `None` when the driver
    /// has sent them itself.
    pub(super) fn on_read(
        &mut self,
        now: Millis,
        conn: ConnId,
        chunk: ChunkRef,
        push: bool,
        result: Result<Option<Bytes>, StorageError>,
    ) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if !push {
            state.serving = state.serving.saturating_sub(1);
        }
        if result.is_ok() {
            self.uplink.served(now, conn);
        }
        match result {
            Ok(data) => {
                let len = chunk_len(chunk.size, chunk.index) as u64;
                self.chunks_served += 1;
                self.bytes_served += len;
                if let Some(peer) = state.peer.as_ref().and_then(|addr| self.peers.get_mut(addr)) {
                    peer.served += len;
                }
                if let Some(data) = data {
                    self.send(conn, PeerMessage::upload(chunk, data));
                }
            }
            Err(e) => {
                self.events.push_back(Event::StorageFailed { file: chunk.file.clone(), message: e.message });
                let about = FileRef { name: chunk.file, chunk: Some((chunk.size, chunk.index)) };
                self.reply(conn, Reply { about: Some(about), ..Reply::code(Code::FileMissing) });
            }
        }
    }

    pub(super) fn on_get_manifest(&mut self, conn: ConnId, file: FileName) {
        match self.files.get(&file).and_then(|f| f.manifest.as_ref()) {
            Some(m) => {
                let message = PeerMessage::Manifest { file, size: m.size(), digest: m.digest(), hashes: m.to_body() };
                self.send(conn, message);
            }
            None => self.reply(
                conn,
                Reply { about: Some(FileRef { name: file, chunk: None }), ..Reply::code(Code::FileMissing) },
            ),
        }
    }

    /// Our file list, for Add and Files.
    pub(super) fn file_list(&self) -> Vec<FileEntry> {
        self.files.iter().filter_map(|(name, f)| listed(name, f)).collect()
    }

    /// Tells every peer about one file we hold.
    pub(super) fn announce(&mut self, name: &FileName) {
        let Some(entry) = self.files.get(name).and_then(|f| listed(name, f)) else {
            return;
        };
        for conn in self.listening_conns() {
            self.send(conn, PeerMessage::Files { files: vec![entry.clone()] });
        }
    }

    /// Where news of what we hold goes: each peer, and each connection we dialled
    /// whose peer has not answered our Add yet. That Add listed what we held when it
    /// was sent; without this, what we store or insert before the answer comes would
    /// never reach that peer, which would count our copies short for good.
    pub(super) fn listening_conns(&self) -> Vec<ConnId> {
        // In ConnId order, the map's.
        let introducing = self.conns.iter().filter(|(_, c)| c.dialed.is_some() && c.peer.is_none()).map(|(&id, _)| id);
        self.peers.values().map(|p| p.conn).chain(introducing).collect()
    }

    /// Sends the chunks stored since the last flush to every peer. With batching on
    /// (`have_delay` > 0), a link that already claims a chunk, and did not send it to
    /// us (that Have is the proof its leave plan counts on), learns from its Have only
    /// that we count as a copy: that entry waits for the next gossip round and goes out
    /// with the others stored meanwhile, in one message instead of one per batch
    /// (at 256 nodes, Haves were the largest share of the control bytes).
    pub(super) fn flush_have(&mut self) {
        if self.haves.pending.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.haves.pending);
        // Held entries go with the gossip round, which runs only while we are joined.
        let joined = matches!(self.membership, Membership::Joined | Membership::Joining { .. });
        let hold = self.config.tuning.have_delay > 0 && joined;
        for conn in self.listening_conns() {
            let addr = self.conns.get(&conn).and_then(|c| c.peer.clone());
            let peer = addr.as_ref().and_then(|a| self.peers.get(a));
            let claims = |e: &HaveEntry| {
                peer.and_then(|p| p.files.get(&e.chunk.file)).is_some_and(|held| held.contains(e.chunk.index))
            };
            let (mut now, mut later) = (Vec::new(), Vec::new());
            for (e, source) in &entries {
                let wait = hold && claims(e) && source.as_ref() != addr.as_ref();
                if wait { &mut later } else { &mut now }.push(e.clone());
            }
            if let (Some(addr), false) = (addr, later.is_empty()) {
                self.haves.held.entry(addr).or_default().extend(later);
            }
            self.send_have(conn, now);
        }
    }

    /// Sends the Haves held back for links that claimed their chunks (the gossip round).
    pub(super) fn flush_held_have(&mut self) {
        for (addr, entries) in std::mem::take(&mut self.haves.held) {
            if let Some(conn) = self.peers.get(&addr).map(|p| p.conn) {
                self.send_have(conn, entries);
            }
        }
    }

    /// `entries` to `conn`, in as few Have messages as the header limit allows.
    fn send_have(&mut self, conn: ConnId, entries: Vec<HaveEntry>) {
        // A peer that announced a file knows its digest, left out where it tells nothing
        // (a peer that has not may have ignored our last entry that carried it: refused
        // for its limits, or a name it had taken, so each of our Haves carries it again).
        let peer = self.conns.get(&conn).and_then(|c| c.peer.as_ref()).and_then(|a| self.peers.get(a));
        let knows = |e: &HaveEntry| peer.is_some_and(|p| p.files.contains_key(&e.chunk.file));
        let mut batches: Vec<Vec<HaveEntry>> = Vec::new();
        let mut len = HEADER_LIMIT;
        for e in entries {
            let e = HaveEntry { digest: e.digest.filter(|_| !knows(&e)), ..e };
            let l = have_entry_len(&e);
            if len + l > HEADER_LIMIT / 2 {
                batches.push(Vec::new());
                len = 0;
            }
            len += l;
            batches.last_mut().expect("pushed above").push(e);
        }
        for batch in batches {
            self.send(conn, PeerMessage::Have(batch));
        }
    }
}

/// Chunks stored that are announced at once, without waiting for `have_delay`.
pub(super) const HAVE_BATCH: usize = 16;

/// Chunks stored that links have not been told of yet.
#[derive(Debug, Default)]
pub(super) struct PendingHaves {
    /// Stored since the last flush (`Timer::Have`), for every link, each with the peer
    /// that sent it.
    pub pending: Vec<(HaveEntry, Option<PeerAddr>)>,
    /// Held back for links that already claim the chunks, until the next gossip round.
    pub held: BTreeMap<PeerAddr, Vec<HaveEntry>>,
    /// Who sent each chunk being written.
    pub sources: BTreeMap<(FileName, ChunkIndex), PeerAddr>,
}

impl PendingHaves {
    /// The file's content is gone here: none of its chunks is announced any more.
    pub fn forget_file(&mut self, name: &FileName) {
        self.pending.retain(|(h, _)| h.chunk.file != *name);
        self.sources.retain(|(file, _), _| file != name);
        self.held.values_mut().for_each(|held| held.retain(|h| h.chunk.file != *name));
    }
}

/// Our entry for `name` in a file list, if we can serve it. An empty file is listed only
/// once storage has kept it (prepared, not refused): listing one is all a leaving peer
/// asks as proof that we hold it (`peer_holds_file`), as a Have, sent once a chunk is
/// written, is for a chunk.
fn listed(name: &FileName, f: &FileState) -> Option<FileEntry> {
    let unstored = f.chunk_count() == 0 && (f.preparing || f.refused.is_some());
    if unstored {
        None
    } else {
        f.entry(name)
    }
}
