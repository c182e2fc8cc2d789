//! Connections and the peers behind them: introductions (Add, Files), what each peer
//! holds, leaving and losing peers, strikes and bans, and dialling lost peers again.

use std::collections::{BTreeMap, BTreeSet};

use super::{ConnId, Event, Membership, Millis, NetCommand, Node, Timer};
use crate::bitset::ChunkSet;
use crate::files::FileState;
use crate::layout::ChunkIndex;
use crate::manifest::Digest;
use crate::name::FileName;
use crate::secure::{AuthenticatedPeer, NodeId};
use crate::wire::{Code, FileEntry, HaveEntry, PeerAddr, PeerMessage, Reply};

#[derive(Debug)]
pub(super) struct ConnState {
    pub peer: Option<PeerAddr>,
    /// Who the secure handshake proved is at the other end (private networks).
    pub proven: Option<Proven>,
    pub dialed: Option<PeerAddr>,
    /// TCP from this machine (see [`super::ConnInfo::local`]).
    pub local: bool,
    /// A user's client has spoken on it: keep it open when leaving.
    pub control: bool,
    /// Chunk reads outstanding for it.
    pub serving: usize,
    /// Control requests with a wrong token (see `control`).
    pub token_failures: u32,
}

/// A peer as its key proved it: the connection speaks for `addr` and nobody else.
#[derive(Clone, Debug)]
pub(super) struct Proven {
    pub id: NodeId,
    /// Its `Hello` listen address, or `browser-<short ID>` for a peer that accepts none.
    pub addr: PeerAddr,
}

impl Proven {
    pub(super) fn of(peer: &AuthenticatedPeer) -> Self {
        let listen = peer.hello.listen.as_deref().and_then(|l| l.parse::<PeerAddr>().ok());
        let addr = listen.unwrap_or_else(|| PeerAddr::new(format!("browser-{}", peer.id.short()), 0));
        Proven { id: peer.id, addr }
    }
}

#[derive(Debug)]
pub(super) struct PeerState {
    /// The key behind it, in a private network: another key may not take its address.
    pub id: Option<NodeId>,
    /// Where messages to this peer go; other connections may exist and stay usable.
    pub conn: ConnId,
    pub conns: BTreeSet<ConnId>,
    /// What it claims to hold (file lists, Have): good enough to ask it for chunks.
    /// It told us it has begun to leave: its proofs do not make a chunk safe.
    pub leaving: bool,
    pub files: BTreeMap<FileName, ChunkSet>,
    /// The total size of `files`, held within [`super::Tuning::max_peer_bytes`].
    pub announced_bytes: u64,
    /// What it has proven to hold: chunks it served us verified, or announced after we
    /// sent them to it. Only these count when a leave plan decides what is safe
    /// elsewhere; a claim costs nothing to make.
    pub proven: BTreeMap<FileName, ChunkSet>,
    /// Chunks we sent it (served or pushed) that it has not announced since.
    pub sent: BTreeMap<FileName, ChunkSet>,
    /// Our chunk requests to it; each has a [`Timer::Request`].
    pub requests: BTreeSet<(FileName, ChunkIndex)>,
    /// Our manifest requests to it; each has a [`Timer::ManifestRequest`].
    pub manifest_requests: BTreeSet<FileName>,
    pub pushes: usize,
    pub strikes: u32,
    /// Bytes of verified chunks it has served us: peers are asked in this order, and
    /// one that has delivered nothing gets only a small window.
    pub delivered: u64,
    /// Bytes of chunks we sent it (served or pushed), for the Query's `links`.
    pub served: u64,
    /// Requests it let time out since it last delivered; it is asked nothing before
    /// `stalled_until`.
    pub stalls: u32,
    pub stalled_until: Millis,
    /// Where picks from this peer go on: consecutive requests take consecutive chunks,
    /// so files are written in runs rather than scattered 64 KiB at a time (scattered
    /// writes cost the filesystem dearly).
    pub cursor: PickCursor,
    pub rate: DeliveryRate,
}

/// How fast a peer delivers the chunks we ask of it, measured over slots of a quarter
/// second in which it delivered any (an idle slot says nothing of the link).
#[derive(Debug, Default)]
pub(super) struct DeliveryRate {
    slot_start: Millis,
    slot_bytes: u64,
    /// Bytes per second, smoothed; None until a slot has passed.
    per_second: Option<u64>,
}

impl DeliveryRate {
    const SLOT: Millis = 250;

    pub fn record(&mut self, now: Millis, bytes: u64) {
        if self.slot_bytes == 0 {
            self.slot_start = now;
        } else if now >= self.slot_start + Self::SLOT {
            let rate = self.slot_bytes * 1000 / (now - self.slot_start);
            self.per_second = Some(self.per_second.map_or(rate, |old| (old + rate) / 2));
            self.slot_start = now;
            self.slot_bytes = 0;
        }
        self.slot_bytes += bytes;
    }

    pub fn per_second(&self) -> Option<u64> {
        self.per_second
    }
}

/// The file and chunk the next pick from a peer tries first.
#[derive(Debug, Default)]
pub(super) struct PickCursor {
    /// None until the first pick; a pick in another file starts afresh: in our stripe of
    /// a seeder's chunks, or at a random place, so that fetchers start apart.
    pub file: Option<FileName>,
    pub next: u32,
    /// Where the current run of picks began.
    pub run_start: u32,
    /// Another peer announced a chunk of the current run that it did not get from us:
    /// it is fetching the same chunks from the same place (neither sees the other's
    /// requests), and would go on doing so in step with us; the next pick starts afresh.
    pub crossed: bool,
}

impl Node {
    /// Ties `conn` to peer `addr`; returns false if the peer is refused.
    pub(super) fn register_peer(&mut self, conn: ConnId, addr: PeerAddr) -> bool {
        if self.banned.contains(&addr) || addr == self.config.me {
            self.net.push_back(NetCommand::Close(conn));
            return false;
        }
        // Which key may hold this address was decided when the connection was proven
        // (`identities`), so its key is the address's.
        let id = self.conns.get(&conn).and_then(|c| c.proven.as_ref()).map(|p| p.id);
        // A connection speaks for one peer. One that introduces itself under another
        // name stops speaking for the old one, which is forgotten if that was its last
        // connection: otherwise one connection could pose as any number of peers, and
        // the old names would stay counted in the status after it closed.
        let previous = self.conns.get(&conn).and_then(|c| c.peer.clone()).filter(|p| *p != addr);
        if let Some(old) = previous {
            if self.detach(&old, conn) {
                self.drop_peer(&old, false);
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(addr.clone());
        }
        self.introduced(conn);
        self.stop_redial(&addr);
        match self.peers.get_mut(&addr) {
            Some(peer) => {
                // We speak on the newest connection: an older one may be dead without
                // our knowing yet (the peer restarted; its last words still arrive).
                peer.conns.insert(conn);
                peer.conn = *peer.conns.last().expect("just inserted");
            }
            None => {
                // By insert, not BTreeSet::from: that collects, and a collect into a B-tree
                // sorts first, one more copy of the stable sort in the browser's bundle.
                let mut conns = BTreeSet::new();
                conns.insert(conn);
                self.peers.insert(
                    addr.clone(),
                    PeerState {
                        id,
                        conn,
                        conns,
                        leaving: false,
                        files: BTreeMap::new(),
                        announced_bytes: 0,
                        proven: BTreeMap::new(),
                        sent: BTreeMap::new(),
                        requests: BTreeSet::new(),
                        manifest_requests: BTreeSet::new(),
                        pushes: 0,
                        strikes: 0,
                        delivered: 0,
                        served: 0,
                        stalls: 0,
                        stalled_until: 0,
                        cursor: PickCursor::default(),
                        rate: DeliveryRate::default(),
                    },
                );
                self.events.push_back(Event::PeerJoined(addr));
            }
        }
        true
    }

    /// Stops sending to `addr` over `conn`; returns whether that was its last
    /// connection (the caller then forgets the peer).
    pub(super) fn detach(&mut self, addr: &PeerAddr, conn: ConnId) -> bool {
        self.peers.get_mut(addr).is_some_and(|p| {
            p.conns.remove(&conn);
            if let Some(&newest) = p.conns.last() {
                p.conn = newest;
            }
            p.conns.is_empty()
        })
    }

    /// Forgets a peer and everything it held.
    pub(super) fn drop_peer(&mut self, addr: &PeerAddr, graceful: bool) {
        let Some(peer) = self.peers.remove(addr) else {
            return;
        };
        for (name, held) in &peer.files {
            if let Some(f) = self.files.get_mut(name) {
                for i in held.iter() {
                    f.remove_claim(i);
                }
                f.announcers -= 1;
                f.sole_news.remove(addr);
            }
        }
        for (name, i) in peer.requests {
            self.timers.cancel(Timer::Request { peer: addr.clone(), file: name.clone(), index: i });
            if let Some(f) = self.files.get_mut(&name) {
                f.requested.remove(i);
            }
        }
        self.timers.cancel(Timer::Stalled(addr.clone()));
        for name in peer.manifest_requests {
            self.timers.cancel(Timer::ManifestRequest { peer: addr.clone(), file: name.clone() });
            if let Some(f) = self.files.get_mut(&name) {
                f.manifest_from = None;
            }
        }
        self.files.retain(|_, f| f.is_known());
        if let Membership::Leaving(plan) = &mut self.membership {
            plan.forget_peer(addr);
        }
        self.replan_leave(&peer.proven);
        self.events.push_back(Event::PeerLeft { peer: addr.clone(), graceful });
        // Counted from its gossip record again, if it is still in the network.
        self.far_recount(addr);
        self.pump_leave();
    }

    /// Ends our link to `addr` politely: a Remove on each of its connections, which
    /// are then closed (a user's client on one stays), and the peer forgotten.
    pub(super) fn say_goodbye(&mut self, addr: &PeerAddr) {
        let Some(peer) = self.peers.get(addr) else { return };
        let conns: Vec<ConnId> = peer.conns.iter().copied().collect();
        for &conn in &conns {
            self.send(conn, PeerMessage::Remove);
        }
        for conn in conns {
            if self.conns.get(&conn).is_some_and(|c| !c.control) {
                self.net.push_back(NetCommand::Close(conn));
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.peer = None;
            }
        }
        self.drop_peer(addr, true);
    }

    /// Records a peer's file list; `replace` forgets what it announced before.
    pub(super) fn apply_file_list(&mut self, addr: &PeerAddr, entries: Vec<FileEntry>, replace: bool) {
        let Some(peer) = self.peers.get_mut(addr) else {
            return;
        };
        if replace {
            peer.announced_bytes = 0;
            for (name, held) in std::mem::take(&mut peer.files) {
                if let Some(f) = self.files.get_mut(&name) {
                    for i in held.iter() {
                        f.remove_claim(i);
                    }
                    f.announcers -= 1;
                }
            }
        }
        let mut ignored = 0;
        for entry in entries {
            if !self.may_announce(addr, &entry.name, entry.size) {
                ignored += 1;
                continue;
            }
            if !self.learn_file(addr, &entry.name, entry.size, Some(entry.digest)) {
                continue;
            }
            for i in entry.chunks {
                self.peer_holds(addr, &entry.name, i);
            }
            if entry.size == 0 {
                self.peer_holds_file(addr, &entry.name);
            }
        }
        if replace {
            // A proof stands only for what the peer still claims.
            if let Some(peer) = self.peers.get_mut(addr) {
                let claims = &peer.files;
                peer.proven.retain(|name, proven| {
                    let claimed = claims.get(name);
                    let gone: Vec<ChunkIndex> =
                        proven.iter().filter(|&i| !claimed.is_some_and(|c| c.contains(i))).collect();
                    for i in gone {
                        proven.remove(i);
                    }
                    proven.count() > 0
                });
            }
        }
        self.files.retain(|_, f| f.is_known());
        self.announcements_ignored(addr, ignored);
    }

    /// Whether `addr` may announce `name` of `size` bytes: it already does, or it stays
    /// within the files and bytes one peer may make us track.
    pub(super) fn may_announce(&self, addr: &PeerAddr, name: &FileName, size: u64) -> bool {
        let Some(peer) = self.peers.get(addr) else {
            return false;
        };
        let tuning = &self.config.tuning;
        peer.files.contains_key(name)
            || (peer.files.len() < tuning.max_peer_files
                && peer.announced_bytes.saturating_add(size) <= tuning.max_peer_bytes)
    }

    fn announcements_ignored(&mut self, addr: &PeerAddr, ignored: usize) {
        if ignored > 0 {
            self.events.push_back(Event::AnnouncementsIgnored { peer: addr.clone(), ignored });
        }
    }

    /// Makes sure we track `name` as announced by `addr`; false on a conflict.
    pub(super) fn learn_file(&mut self, addr: &PeerAddr, name: &FileName, size: u64, digest: Option<Digest>) -> bool {
        match (self.files.get(name), digest) {
            (Some(f), Some(d)) if !f.matches(size, d) => {
                self.events.push_back(Event::Conflict { peer: addr.clone(), file: name.clone() });
                false
            }
            (Some(f), None) if f.size != size => false,
            (Some(_), _) => true,
            // Removed from the network: not brought back.
            (None, Some(d)) if self.buried(name, d) => false,
            (None, Some(d)) => {
                if let Some(collision) = self.files.collision(name) {
                    let reason = collision.explain(name);
                    self.events.push_back(Event::NameRefused { peer: addr.clone(), file: name.clone(), reason });
                    return false;
                }
                self.files.insert(name.clone(), FileState::new(size, d));
                self.events.push_back(Event::FileAnnounced { file: name.clone(), size });
                true
            }
            // A Have for a file we do not know, without its digest: nothing to check it by.
            (None, None) => false,
        }
    }

    pub(super) fn peer_holds_file(&mut self, addr: &PeerAddr, name: &FileName) -> bool {
        let (Some(peer), Some(f)) = (self.peers.get_mut(addr), self.files.get_mut(name)) else {
            return false;
        };
        if !peer.files.contains_key(name) {
            peer.files.insert(name.clone(), ChunkSet::new(f.chunk_count()));
            peer.announced_bytes += f.size;
            f.announcers += 1;
            if f.chunk_count() == 0 {
                // Listing an empty file is all there is to hold of it (see `start_leave`).
                self.leave_confirmed(name, ChunkIndex(0));
            }
        }
        true
    }

    fn peer_holds(&mut self, addr: &PeerAddr, name: &FileName, i: ChunkIndex) {
        if !self.peer_holds_file(addr, name) {
            return;
        }
        let peer = self.peers.get_mut(addr).expect("checked by peer_holds_file");
        let f = self.files.get_mut(name).expect("checked by peer_holds_file");
        if peer.files.get_mut(name).expect("inserted by peer_holds_file").insert(i) {
            f.add_claim(i);
        }
        // Announcing a chunk we sent it proves it holds it.
        if peer.sent.get_mut(name).is_some_and(|s| s.remove(i)) {
            self.proves(addr, name, i);
        } else if f.requested.contains(i) || f.have.contains(i) {
            // It got elsewhere a chunk we fetched too.
            for p in self.peers.values_mut() {
                let c = &mut p.cursor;
                if c.file.as_ref() == Some(name) && (c.run_start..c.next).contains(&i.get()) {
                    c.crossed = true;
                }
            }
        }
    }

    /// `addr` has proven it holds chunk `i` of `name`.
    pub(super) fn proves(&mut self, addr: &PeerAddr, name: &FileName, i: ChunkIndex) {
        let (Some(peer), Some(f)) = (self.peers.get_mut(addr), self.files.get(name)) else {
            return;
        };
        let n = f.chunk_count();
        if peer.proven.entry(name.clone()).or_insert_with(|| ChunkSet::new(n)).insert(i) {
            self.leave_confirmed(name, i);
        }
    }

    /// We handed chunk `i` of `name` to `addr`: its next announcement of it is a proof.
    pub(super) fn sent_to(&mut self, addr: &PeerAddr, name: &FileName, i: ChunkIndex) {
        let (Some(peer), Some(f)) = (self.peers.get_mut(addr), self.files.get(name)) else {
            return;
        };
        let n = f.chunk_count();
        peer.sent.entry(name.clone()).or_insert_with(|| ChunkSet::new(n)).insert(i);
    }

    /// Whether a connected peer other than `except` has proven it holds chunk `i` of `name`.
    pub(super) fn proven_elsewhere(&self, name: &FileName, i: ChunkIndex, except: Option<&PeerAddr>) -> bool {
        self.peers
            .iter()
            .any(|(a, p)| Some(a) != except && !p.leaving && p.proven.get(name).is_some_and(|s| s.contains(i)))
    }

    pub(super) fn on_have(&mut self, now: Millis, addr: &PeerAddr, entries: Vec<HaveEntry>) {
        let mut ignored = 0;
        for HaveEntry { chunk, digest } in entries {
            if !self.may_announce(addr, &chunk.file, chunk.size) {
                ignored += 1;
            } else if self.learn_file(addr, &chunk.file, chunk.size, digest) {
                if let Some(f) = self.files.get_mut(&chunk.file).filter(|f| f.sole_wanted_anew(chunk.index)) {
                    f.sole_news.insert(addr.clone(), now);
                }
                self.peer_holds(addr, &chunk.file, chunk.index);
            }
        }
        self.announcements_ignored(addr, ignored);
    }

    /// A reply to one of our requests (or to our Add).
    pub(super) fn on_reply(&mut self, conn: ConnId, reply: Reply) {
        let addr = self.conns.get(&conn).and_then(|c| c.peer.clone().or_else(|| c.dialed.clone()));
        let Some(addr) = addr else { return };
        match reply.code_or_ok() {
            // The peer has not joined: it will introduce itself when it does.
            Code::Disconnected => {
                self.join_answered(&addr);
                // As a Remove, it speaks for its own connection: one that arrives late on
                // an old connection must not end the peer back on a newer one.
                if self.peers.get(&addr).is_some_and(|p| p.conns.contains(&conn)) && self.detach(&addr, conn) {
                    self.drop_peer(&addr, true);
                }
                self.stop_redial(&addr);
                if self.conns.get(&conn).is_some_and(|c| !c.control) {
                    self.net.push_back(NetCommand::Close(conn));
                }
            }
            Code::FileMissing => {
                if let Some(about) = reply.about {
                    self.not_held(&addr, about);
                }
            }
            Code::Ok => self.leaving_answered(&addr),
            _ => {}
        }
    }

    /// Counts a bad chunk or manifest against `addr`; past the limit, bans it: by its key
    /// in a private network (so it cannot come back under another address, and nobody
    /// gets it banned by writing its address), by its address in an open one.
    pub(super) fn strike(&mut self, addr: &PeerAddr) {
        let max = self.config.tuning.max_strikes;
        let Some(peer) = self.peers.get_mut(addr) else {
            return;
        };
        peer.strikes += 1;
        if peer.strikes >= max {
            let conns: Vec<ConnId> = peer.conns.iter().copied().collect();
            match peer.id {
                Some(id) => self.identities.ban(id),
                None => {
                    self.banned.insert(addr.clone());
                }
            }
            for conn in conns {
                self.net.push_back(NetCommand::Close(conn));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = None;
                }
            }
            self.drop_peer(addr, false);
            self.shun(addr);
            self.events.push_back(Event::PeerBanned(addr.clone()));
        }
    }

    // -----------------------------------------------------------------------------
    // Redialling lost peers.

    /// Whether a lost peer is worth dialling again although the peers file does not
    /// name it: in a private network its key proved it a member; in an open one it
    /// served us a verified chunk or proved it holds one. Anyone can send an Add naming
    /// any address, and must not make us dial it.
    pub(super) fn proved_itself(&self, addr: &PeerAddr) -> bool {
        self.peers.get(addr).is_some_and(|p| {
            if self.config.private.is_some() {
                p.id.is_some()
            } else {
                p.delivered > 0 || !p.proven.is_empty()
            }
        })
    }

    /// A peer was lost: dial it again later, while we are in the network, if the peers
    /// file names it or it proved itself (`trusted`).
    pub(super) fn schedule_redial(&mut self, now: Millis, addr: PeerAddr, trusted: bool) {
        let member = matches!(self.membership, Membership::Joined | Membership::Joining { .. });
        let listed = self.config.peers.contains(&addr);
        if member && (listed || trusted) && addr.is_diallable() && !self.redial.contains_key(&addr) {
            let backoff = self.config.tuning.redial_min;
            self.timers.set(Timer::Redial(addr.clone()), now + backoff);
            self.redial.insert(addr, Redial { backoff, tries: 0, since: now, listed });
        }
    }

    pub(super) fn stop_redial(&mut self, addr: &PeerAddr) {
        if self.redial.remove(addr).is_some() {
            self.timers.cancel(Timer::Redial(addr.clone()));
        }
    }

    pub(super) fn stop_redials(&mut self) {
        for addr in std::mem::take(&mut self.redial).into_keys() {
            self.timers.cancel(Timer::Redial(addr));
        }
    }

    /// Dials a lost peer again, and waits twice as long (up to a limit) before the next
    /// try; an address learned from the network is given up after a few tries.
    pub(super) fn redial_due(&mut self, now: Millis, addr: PeerAddr) {
        let tuning = &self.config.tuning;
        let wants_links = self.wants_links();
        let Some(r) = self.redial.get_mut(&addr) else {
            return;
        };
        if !wants_links {
            // Links enough: it is tried again later, if we still need it then.
            self.timers.set(Timer::Redial(addr), now + r.backoff);
            return;
        }
        if !r.listed && (r.tries >= tuning.redial_tries || now.saturating_sub(r.since) >= tuning.redial_give_up) {
            let tries = r.tries;
            self.redial.remove(&addr);
            self.events.push_back(Event::RedialGaveUp { peer: addr, tries });
            return;
        }
        r.tries += 1;
        r.backoff = (r.backoff * 2).min(tuning.redial_max);
        self.timers.set(Timer::Redial(addr.clone()), now + r.backoff);
        self.net.push_back(NetCommand::Dial(addr));
    }
}

/// A lost peer being dialled again.
#[derive(Debug)]
pub(super) struct Redial {
    /// The wait before the next try.
    pub backoff: Millis,
    /// Dials so far.
    pub tries: u32,
    /// When it was lost.
    pub since: Millis,
    /// Named in the peers file: retried for ever (with capped backoff).
    pub listed: bool,
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConnInfo, Tuning};
    use super::*;
    use crate::wire::{Envelope, PeerMessage};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn node(peers: Vec<PeerAddr>) -> Node {
        let config = Config {
            me: PeerAddr::new("10.0.0.1", 7000),
            peers,
            token: Some("t".into()),
            insert_from: Vec::new(),
            seed: 1,
            tuning: Tuning::default(),
            private: None,
        };
        let mut node = Node::new(config);
        node.join(0);
        node
    }

    /// `addr` connects, introduces itself, and (if `delivered`) serves us a chunk; then
    /// it vanishes. Returns the dials the node makes over the next hour.
    fn dials_after_losing(node: &mut Node, addr: &PeerAddr, delivered: bool) -> usize {
        let conn = ConnId(1);
        node.handle_connected(0, conn, ConnInfo::default());
        let add =
            Envelope { from: Some(addr.clone()), token: None, message: PeerMessage::Add { files: vec![] }.into() };
        node.handle_message(0, conn, add);
        if delivered {
            node.peers.get_mut(addr).expect("registered").delivered = 1;
        }
        node.handle_disconnected(0, conn);
        let mut dials = 0;
        while let Some(at) = node.poll_timeout().filter(|&t| t <= 3_600_000) {
            node.handle_timeout(at);
            while let Some(cmd) = node.poll_net() {
                if matches!(cmd, NetCommand::Dial(ref a) if a == addr) {
                    dials += 1;
                    node.handle_dial_failed(at, addr);
                }
            }
        }
        dials
    }

    #[test]
    fn only_listed_or_proven_peers_are_redialled_and_learned_ones_are_given_up() {
        let stranger = PeerAddr::new("10.0.0.9", 7009);
        // Anyone may name an address in its Add: that alone never makes us dial it.
        assert_eq!(dials_after_losing(&mut node(vec![]), &stranger, false), 0);
        // A peer that delivered a verified chunk is dialled again, but given up.
        let mut n = node(vec![]);
        assert_eq!(dials_after_losing(&mut n, &stranger, true), 5);
        assert!(n.events.iter().any(|e| matches!(e, Event::RedialGaveUp { tries: 5, .. })));
        // A peers-file address is retried for ever, at most every `redial_max` (30 s).
        let dials = dials_after_losing(&mut node(vec![stranger.clone()]), &stranger, false);
        assert!((110..=125).contains(&dials), "{dials} dials in an hour");
    }

    #[test]
    fn connections_that_never_introduce_themselves_are_closed() {
        let mut n = node(vec![]);
        for c in 1..=3 {
            n.handle_connected(0, ConnId(c), ConnInfo::default());
        }
        // 2 introduces itself as a peer, 3 as the owner's client; 1 says nothing.
        let add = PeerMessage::Add { files: vec![] }.into();
        n.handle_message(
            5,
            ConnId(2),
            Envelope { from: Some(PeerAddr::new("10.0.0.2", 1)), token: None, message: add },
        );
        let query = crate::wire::Control::Query { file: None }.into();
        n.handle_message(5, ConnId(3), Envelope { from: None, token: Some("t".into()), message: query });
        assert_eq!(n.oldest_unintroduced(), Some(ConnId(1)));
        while n.poll_net().is_some() {}
        n.handle_timeout(n.config.tuning.intro_timeout);
        let closed: Vec<NetCommand> =
            std::iter::from_fn(|| n.poll_net()).filter(|c| matches!(c, NetCommand::Close(_))).collect();
        assert!(matches!(closed[..], [NetCommand::Close(ConnId(1))]), "{closed:?}");
        assert_eq!(n.oldest_unintroduced(), None);
    }
}
