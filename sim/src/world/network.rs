//! The simulated network: connections that keep each direction in order, dials,
//! partitions and extra delay, messages through the real wire encoder and decoder,
//! and the liar's driver that corrupts what it sends and claims what it lacks.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use torronto_core::layout::ChunkIndex;
use torronto_core::manifest::hash_chunk;
use torronto_core::wire::{FrameDecoder, HaveEntry};
use torronto_core::{
    ChunkRef, ConnId, ConnInfo, Envelope, FileName, Message, Millis, NetCommand, PeerAddr, PeerMessage,
};

use super::{Ev, World};
use crate::schedule::Role;

/// One end of a connection and where what is sent on it arrives.
#[derive(Clone, Copy, Debug)]
pub(super) struct Half {
    pub(super) to: (usize, ConnId),
    /// Nothing sent this way arrives before this: TCP keeps a connection's order.
    pub(super) floor: Millis,
}

impl World {
    /// Breaks every connection between machines `x` and `y` for which `which(x, y)`:
    /// each end hears of it a little later, after what was already on its way to it.
    pub(super) fn cut(&mut self, which: impl Fn(usize, usize) -> bool) {
        let mut ends: Vec<(usize, ConnId)> =
            self.links.iter().filter(|(from, half)| which(from.0, half.to.0)).map(|(&from, _)| from).collect();
        ends.sort();
        for end in ends {
            // The other end learns of it after the data already on its way to it; an
            // end whose partner closed already is not listed, so it is told here too.
            let half = self.links[&end];
            let at = (self.now + self.latency()).max(half.floor);
            self.at(at, Ev::Hangup { to: half.to });
            if !self.links.contains_key(&half.to) {
                let own = self.now + self.latency();
                self.at(own, Ev::Hangup { to: end });
            }
        }
    }

    pub(super) fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition.is_some_and(|side| (side >> a) & 1 != (side >> b) & 1)
    }

    pub(super) fn latency(&mut self) -> Millis {
        let extra = if self.extra_delay > 0 { self.rng.below(self.extra_delay) } else { 0 };
        self.rng.between(1, 20) + extra
    }

    pub(super) fn connect(&mut self, from: usize, epoch: u64, addr: PeerAddr) {
        let now = self.now;
        if self.machines[from].epoch != epoch || !self.machines[from].running() {
            return;
        }
        let target = (0..self.machines.len())
            .find(|&to| self.machines[to].addr == addr && self.machines[to].role != Role::Browser)
            .filter(|&to| self.machines[to].running() && !self.partitioned(from, to));
        let Some(to) = target else {
            self.log(|| format!("m{from}: dial {addr} failed"));
            if let Some(node) = self.machines[from].node.as_mut() {
                node.handle_dial_failed(now, &addr);
            }
            self.drain(from);
            return;
        };
        let (a, b) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
        self.next_conn += 2;
        self.links.insert((from, a), Half { to: (to, b), floor: now });
        self.links.insert((to, b), Half { to: (from, a), floor: now });
        self.log(|| format!("m{from}: conn {a} to m{to} (conn {b})"));
        self.machines[to].node.as_mut().expect("running").handle_connected(now, b, ConnInfo::default());
        self.drain(to);
        if let Some(node) = self.machines[from].node.as_mut() {
            node.handle_connected(now, a, ConnInfo { dialed: Some(addr), local: false, peer: None });
        }
        self.drain(from);
    }

    fn send(&mut self, m: usize, conn: ConnId, envelope: Envelope) {
        let Some(half) = self.links.get(&(m, conn)).copied() else {
            return;
        };
        self.stats.messages += 1;
        crate::check::sent(self, m, &envelope);
        self.log(|| {
            format!("m{m} -> m{} (conn {} -> {}): {}", half.to.0, conn, half.to.1, describe(&envelope.message))
        });
        let mut buf = BytesMut::new();
        envelope.encode().write_tcp(&mut buf);
        let at = (self.now + self.latency()).max(half.floor);
        self.links.get_mut(&(m, conn)).expect("looked up above").floor = at;
        self.at(at, Ev::Deliver { to: half.to, bytes: buf.freeze() });
    }

    pub(super) fn deliver(&mut self, to: (usize, ConnId), bytes: Bytes) {
        if !self.links.contains_key(&to) {
            return;
        }
        let (m, conn) = to;
        let reader = self.readers.entry(to).or_default();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut inputs = Vec::new();
        loop {
            match FrameDecoder::decode(&mut buf, reader.frame_limit()) {
                Ok(Some(frame)) => match reader.push_frame(frame) {
                    Ok(Some(envelope)) => inputs.push(Ok(envelope)),
                    Ok(None) => {}
                    Err(e) => inputs.push(Err(e.to_string())),
                },
                Ok(None) => break,
                Err(e) => {
                    inputs.push(Err(e.to_string()));
                    break;
                }
            }
        }
        let now = self.now;
        let browser = self.machines[m].role == Role::Browser;
        for input in inputs {
            let Some(node) = self.machines[m].node.as_mut() else { return };
            match input {
                Ok(envelope) if browser => {
                    // The page hashes uploads itself (WebCrypto) and hands core the hash.
                    let hash = match &envelope.message {
                        Message::Peer(PeerMessage::Upload { data, .. }) => Some(hash_chunk(data)),
                        _ => None,
                    };
                    node.handle_message_hashed(now, conn, envelope, hash);
                }
                Ok(envelope) => node.handle_message(now, conn, envelope),
                Err(reason) => node.handle_malformed(now, conn, reason),
            }
        }
        self.drain(m);
    }

    pub(super) fn net_command(&mut self, m: usize, command: NetCommand) {
        match command {
            NetCommand::Send { conn, mut envelope } => {
                if self.machines[m].role == Role::Liar {
                    self.lie(m, conn, &mut envelope);
                }
                self.send(m, conn, envelope);
            }
            NetCommand::Dial(addr) => {
                let at = self.now + self.latency();
                let epoch = self.machines[m].epoch;
                self.at(at, Ev::Connect { from: m, epoch, addr });
            }
            NetCommand::Close(conn) => {
                // What was sent goes out first; then the other end sees the close.
                if let Some(half) = self.links.remove(&(m, conn)) {
                    self.readers.remove(&(m, conn));
                    let at = (self.now + self.latency()).max(half.floor);
                    self.at(at, Ev::Hangup { to: half.to });
                }
                let now = self.now;
                self.machines[m].node.as_mut().expect("draining").handle_disconnected(now, conn);
            }
        }
    }

    /// A liar's driver: corrupts chunks and manifests, and claims chunks it lacks.
    fn lie(&mut self, m: usize, conn: ConnId, envelope: &mut Envelope) {
        match &mut envelope.message {
            Message::Peer(PeerMessage::Upload { data, .. }) if !data.is_empty() && self.rng.chance(70) => {
                let mut bad = data.to_vec();
                bad[0] ^= 0x5a;
                *data = Bytes::from(bad);
            }
            Message::Peer(PeerMessage::Manifest { hashes, .. }) if !hashes.is_empty() && self.rng.chance(70) => {
                let mut bad = hashes.to_vec();
                bad[0] ^= 0x5a;
                *hashes = Bytes::from(bad);
            }
            _ if self.rng.chance(20) && !self.inserted.is_empty() => {
                let to = self.links.get(&(m, conn)).map(|h| h.to.0);
                let k =
                    *self.inserted.iter().nth(self.rng.below(self.inserted.len() as u64) as usize).expect("not empty");
                let spec = &self.schedule.files[k];
                let have = self.machines[m].disk.files.get(&spec.name);
                let mut entries = Vec::new();
                for i in ChunkIndex::all(spec.manifest.chunk_count()) {
                    if have.is_none_or(|s| !s.chunks.contains_key(&i.get())) {
                        let chunk = ChunkRef { file: spec.name.clone(), size: spec.size(), index: i };
                        entries.push(HaveEntry { chunk, digest: Some(spec.manifest.digest()) });
                        if let Some(to) = to {
                            self.false_haves.insert((to, spec.name.clone(), i.get()));
                        }
                    }
                }
                if !entries.is_empty() {
                    let from = envelope.from.clone();
                    let claim = Envelope { from, token: None, message: PeerMessage::Have(entries).into() };
                    self.send(m, conn, claim);
                }
            }
            _ => {}
        }
    }

    pub fn false_have(&self, m: usize, file: &FileName, index: u32) -> bool {
        self.false_haves.contains(&(m, file.clone(), index))
    }

    // -----------------------------------------------------------------------------
    // For the checks.

    /// The machines at the other end of `m`'s connections.
    pub fn linked(&self, m: usize) -> BTreeSet<usize> {
        self.links.iter().filter(|(from, _)| from.0 == m).map(|(_, half)| half.to.0).collect()
    }

    /// Forgets one connection without telling either end (planted fault).
    pub fn lose_link_silently(&mut self) {
        let mut ends: Vec<(usize, ConnId)> = self.links.keys().copied().collect();
        ends.sort();
        if let Some(&end) = ends.first() {
            let other = self.links.remove(&end).expect("listed").to;
            self.links.remove(&other);
        }
    }
}

fn describe(message: &Message) -> String {
    match message {
        Message::Peer(PeerMessage::Upload { chunk, data, .. }) => {
            format!("Upload {}#{} ({} bytes)", chunk.file, chunk.index, data.len())
        }
        Message::Peer(PeerMessage::Download { chunk, .. }) => format!("Download {}#{}", chunk.file, chunk.index),
        Message::Peer(PeerMessage::Have(entries)) => {
            let list: Vec<String> = entries.iter().map(|e| format!("{}#{}", e.chunk.file, e.chunk.index)).collect();
            format!("Have [{}]", list.join(" "))
        }
        Message::Peer(PeerMessage::Manifest { file, .. }) => format!("Manifest {file}"),
        Message::Peer(PeerMessage::Add { files }) | Message::Peer(PeerMessage::Files { files }) => {
            let kind = if matches!(message, Message::Peer(PeerMessage::Add { .. })) { "Add" } else { "Files" };
            let list: Vec<String> = files.iter().map(|f| format!("{}:{}", f.name, f.chunks.len())).collect();
            format!("{kind} [{}]", list.join(" "))
        }
        Message::Peer(other) => format!("{other:?}"),
        Message::Reply(reply) => format!("Reply {:?}", reply.code_or_ok()),
        Message::Control(c) => format!("{c:?}"),
    }
}
