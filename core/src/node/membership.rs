//! Membership: joining the network, peers introducing themselves and leaving, and
//! leaving it ourselves without losing data — chunks only we hold are pushed to peers
//! and confirmed before we go (the leave plan).

use std::collections::{BTreeMap, BTreeSet};

use super::{envelope, ConnId, Event, Millis, NetCommand, Node, StorageCommand, Timer};
use crate::bitset::ChunkSet;
use crate::layout::ChunkIndex;
use crate::name::FileName;
use crate::wire::{ChunkRef, Code, FileEntry, PeerAddr, PeerMessage, Reply};

#[derive(Debug)]
pub(super) enum Membership {
    NotJoined,
    /// Until every peer dialled has answered, or [`Timer::Join`].
    Joining {
        reply_to: Option<ConnId>,
        waiting: BTreeSet<PeerAddr>,
    },
    Joined,
    /// Until every chunk in the plan is confirmed, or [`Timer::Leave`].
    Leaving(LeavePlan),
}

/// The chunks only we hold, and who they were pushed to, while leaving.
#[derive(Debug)]
pub(super) struct LeavePlan {
    reply_to: Option<ConnId>,
    /// Chunks no connected peer has proven to hold (see `PeerState::proven`).
    todo: BTreeSet<(FileName, ChunkIndex)>,
    /// Chunks pushed and not yet confirmed, by receiver.
    pushed: BTreeMap<(FileName, ChunkIndex), PeerAddr>,
    /// Files whose manifest has been pushed to a peer.
    manifests_sent: BTreeSet<(PeerAddr, FileName)>,
    /// Peers told we are leaving that have not answered yet. Until each has, we cannot
    /// know it is not leaving too, counting on us as we count on it.
    awaiting: BTreeSet<PeerAddr>,
}

impl LeavePlan {
    /// Forgets what was pushed to a peer that is gone, so it is pushed elsewhere.
    pub(super) fn forget_peer(&mut self, addr: &PeerAddr) {
        self.pushed.retain(|_, to| to != addr);
        self.manifests_sent.retain(|(to, _)| to != addr);
        self.awaiting.remove(addr);
    }
}

impl LeavePlan {
    /// Forgets a file removed while leaving; returns the peers pushes of it went to.
    pub(super) fn forget_file(&mut self, name: &FileName) -> Vec<PeerAddr> {
        self.todo.retain(|(f, _)| f != name);
        self.manifests_sent.retain(|(_, f)| f != name);
        let receivers = self.pushed.iter().filter(|((f, _), _)| f == name).map(|(_, to)| to.clone()).collect();
        self.pushed.retain(|(f, _), _| f != name);
        receivers
    }
}

impl Node {
    pub(super) fn start_join(&mut self, now: Millis, reply_to: Option<ConnId>) {
        // Filled by insert, not collect: a collect into a B-tree sorts first, one more copy
        // of the stable sort in the browser's bundle.
        let mut connected = BTreeSet::new();
        connected.extend(self.conns.values().filter_map(|c| c.dialed.clone()));
        // A few peers of the peers file, at random, are enough: gossip finds the rest.
        let mut listed: Vec<PeerAddr> = self.config.peers.iter().filter(|p| !connected.contains(*p)).cloned().collect();
        let mut waiting = BTreeSet::new();
        while waiting.len() < self.link_target() && !listed.is_empty() {
            let k = (self.random() % listed.len() as u64) as usize;
            waiting.insert(listed.swap_remove(k));
        }
        for addr in &waiting {
            self.net.push_back(NetCommand::Dial(addr.clone()));
        }
        // Connections we dialled before (while not joined) are introduced now.
        let open: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.dialed.is_some()).map(|(&id, _)| id).collect();
        for conn in open {
            self.send_tombstones(conn);
            let files = self.file_list();
            self.send(conn, PeerMessage::Add { files });
        }
        self.membership = Membership::Joining { reply_to, waiting };
        self.overlay_joined(now);
        self.timers.set(Timer::Join, now + self.config.tuning.join_timeout);
        self.maybe_finish_join();
    }

    /// A peer we dialled on Join has answered (or failed, or closed).
    pub(super) fn join_answered(&mut self, addr: &PeerAddr) {
        if let Membership::Joining { waiting, .. } = &mut self.membership {
            waiting.remove(addr);
            self.maybe_finish_join();
        }
    }

    fn maybe_finish_join(&mut self) {
        if matches!(&self.membership, Membership::Joining { waiting, .. } if waiting.is_empty()) {
            self.finish_join();
        }
    }

    /// Ends Joining (nothing otherwise): answers the client that asked.
    pub(super) fn finish_join(&mut self) {
        let Membership::Joining { reply_to, .. } = &mut self.membership else {
            return;
        };
        let reply_to = reply_to.take();
        self.membership = Membership::Joined;
        self.timers.cancel(Timer::Join);
        self.events.push_back(Event::Joined { peers: self.peers.len() });
        if let Some(conn) = reply_to {
            self.reply(conn, Reply::code(Code::Ok));
        }
    }

    // -----------------------------------------------------------------------------
    // Peers coming and going.

    /// A peer introduces itself with its file list; we answer with ours (after our
    /// tombstones, so that it forgets what we removed before counting what it holds).
    pub(super) fn on_add(&mut self, conn: ConnId, addr: PeerAddr, files: Vec<FileEntry>) {
        // An Add on a connection older than one the peer already speaks on was sent
        // before what came on the newer one (the peer restarted or dialled again): it
        // adds to what we know but replaces nothing.
        let fresh = self.peers.get(&addr).is_none_or(|p| conn >= p.conn);
        if self.register_peer(conn, addr.clone()) {
            if fresh {
                // Back after a leave (its Remove may still be on its way elsewhere).
                self.peers.get_mut(&addr).expect("registered").leaving = false;
            }
            self.apply_file_list(&addr, files, fresh);
            self.send_tombstones(conn);
            let files = self.file_list();
            self.send(conn, PeerMessage::Files { files });
            self.linked(conn, &addr);
            self.enforce_link_limit(&addr, conn);
        }
    }

    /// One of a peer's connections ended while it stays linked on another: what we
    /// announced there since the peer stopped reading it (a Have sent after its Remove)
    /// is lost, so our file list goes again on the connection that remains.
    pub(super) fn restate_holdings(&mut self, addr: &PeerAddr) {
        if let Some(conn) = self.peers.get(addr).map(|p| p.conn) {
            let files = self.file_list();
            self.send(conn, PeerMessage::Files { files });
        }
    }

    /// A peer answered our Add with its file list.
    pub(super) fn on_files(&mut self, conn: ConnId, addr: PeerAddr, files: Vec<FileEntry>) {
        if self.register_peer(conn, addr.clone()) {
            self.apply_file_list(&addr, files, false);
            self.join_answered(&addr);
            self.linked(conn, &addr);
            self.enforce_link_limit(&addr, conn);
        }
    }

    /// A peer has begun to leave: what only it proved is no longer safe for a leave of
    /// ours, and it is no receiver for our pushes. The answer, after anything we sent
    /// before, tells it whether we are leaving too.
    pub(super) fn on_leaving(&mut self, conn: ConnId, addr: &PeerAddr) {
        let Some(peer) = self.peers.get_mut(addr) else { return };
        peer.leaving = true;
        let proven = peer.proven.clone();
        self.replan_leave(&proven);
        self.reply(conn, Reply::code(Code::Ok));
        self.pump_leave();
    }

    /// A peer answered our Leaving: had it been leaving, its own Leaving came first.
    pub(super) fn leaving_answered(&mut self, addr: &PeerAddr) {
        if let Membership::Leaving(plan) = &mut self.membership {
            if plan.awaiting.remove(addr) {
                self.pump_leave();
            }
        }
    }

    /// Peers that did not answer our Leaving in time are not waited for any more: one
    /// that does not know the message (a third-party client) cannot tell us it leaves
    /// either, and counts as it did before Leaving existed.
    pub(super) fn leaving_unanswered(&mut self) {
        let Membership::Leaving(plan) = &mut self.membership else { return };
        plan.awaiting.clear();
        self.pump_leave();
    }

    /// A peer leaves. It speaks for this connection only: a Remove that arrives late on
    /// an old connection must not end the peer that has since come back on a new one. A
    /// leaving peer says it on each of its connections.
    pub(super) fn on_remove(&mut self, now: Millis, conn: ConnId, addr: &PeerAddr) {
        if self.detach(addr, conn) {
            self.drop_peer(addr, true);
            self.unlinked_by(now, addr);
        } else {
            self.restate_holdings(addr);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = None;
        }
    }

    pub(super) fn start_leave(&mut self, now: Millis, reply_to: Option<ConnId>) {
        // Stop fetching: what is in flight is no longer wanted.
        self.forget_requests_for(None);
        // A peer's claim to hold a chunk is not enough: only a proof counts.
        let mut todo = BTreeSet::new();
        for (name, f) in self.files.iter() {
            if f.manifest.is_some() {
                let held = plan_units(f.chunk_count(), f.have.iter());
                todo.extend(held.filter(|&i| !self.safe_elsewhere(name, i)).map(|i| (name.clone(), i)));
            }
        }
        self.stop_redials();
        self.overlay_leaving(now);
        // Two holders of a chunk leaving at once would each count on the other: tell
        // every peer, and finish only once each peer we count on has answered.
        let peers: Vec<(PeerAddr, ConnId, bool)> =
            self.peers.iter().map(|(a, p)| (a.clone(), p.conn, p.proven.values().any(|s| s.count() > 0))).collect();
        let mut awaiting = BTreeSet::new();
        for (addr, conn, counted_on) in peers {
            self.send(conn, PeerMessage::Leaving);
            if counted_on {
                awaiting.insert(addr);
            }
        }
        let pushed = BTreeMap::new();
        let manifests_sent = BTreeSet::new();
        self.membership = Membership::Leaving(LeavePlan { reply_to, todo, pushed, manifests_sent, awaiting });
        self.timers.set(Timer::Leave, now + self.config.tuning.leave_timeout);
        self.timers.set(Timer::LeavingAnswers, now + self.config.tuning.leaving_answer_timeout);
        self.pump_leave();
    }

    /// Pushes sole-held chunks to the least-loaded peers, a window at a time.
    pub(super) fn pump_leave(&mut self) {
        let Membership::Leaving(plan) = &mut self.membership else {
            return;
        };
        if plan.todo.is_empty() && plan.awaiting.is_empty() {
            self.finish_leave();
            return;
        }
        if self.peers.is_empty() {
            // Nobody to hand our chunks to: link to someone first, if anyone is there.
            if !self.link_for_leave() {
                self.finish_leave();
            }
            return;
        }
        let window = self.config.tuning.push_window;
        let unassigned: Vec<(FileName, ChunkIndex)> =
            plan.todo.iter().filter(|k| !plan.pushed.contains_key(*k)).cloned().collect();
        for key in unassigned {
            // Least-loaded receiver; the browser peers too, as they hold chunks as well.
            let Some((addr, peer)) =
                self.peers.iter_mut().filter(|(_, p)| p.pushes < window && !p.leaving).min_by_key(|(_, p)| p.pushes)
            else {
                break;
            };
            peer.pushes += 1;
            let conn = peer.conn;
            let file = &self.files[&key.0];
            let empty = file.chunk_count() == 0;
            // Its next announcement of this chunk proves the push arrived.
            if !empty {
                peer.sent.entry(key.0.clone()).or_insert_with(|| ChunkSet::new(file.chunk_count())).insert(key.1);
            }
            if plan.manifests_sent.insert((addr.clone(), key.0.clone())) {
                let m = file.manifest.as_ref().expect("only files with a manifest are planned");
                let message = PeerMessage::Manifest {
                    file: key.0.clone(),
                    size: m.size(),
                    digest: m.digest(),
                    hashes: m.to_body(),
                };
                self.net.push_back(NetCommand::Send { conn, envelope: envelope(&self.config.me, message.into()) });
            }
            if !empty {
                let chunk = ChunkRef { file: key.0.clone(), size: file.size, index: key.1 };
                self.storage.push_back(StorageCommand::Read { conn, chunk, push: true });
            }
            plan.pushed.insert(key, addr.clone());
        }
    }

    /// Whether chunk `i` of `name` is safe without us: a peer proved it holds it. An
    /// empty file has no chunk to prove; a peer that lists it holds all there is.
    fn safe_elsewhere(&self, name: &FileName, i: ChunkIndex) -> bool {
        match self.files.get(name) {
            Some(f) if f.chunk_count() == 0 => self.peers.values().any(|p| !p.leaving && p.files.contains_key(name)),
            _ => self.proven_elsewhere(name, i, None),
        }
    }

    /// Chunks we came to hold while leaving (an insert that finished, a write already
    /// in flight): planned like the rest, so that the leave's answer covers them too.
    pub(super) fn plan_more(&mut self, name: &FileName, chunks: impl IntoIterator<Item = ChunkIndex>) {
        if !matches!(self.membership, Membership::Leaving(_)) {
            return;
        }
        let count = self.files.get(name).map_or(0, |f| f.chunk_count());
        let more: Vec<(FileName, ChunkIndex)> = plan_units(count, chunks.into_iter())
            .filter(|&i| !self.safe_elsewhere(name, i))
            .map(|i| (name.clone(), i))
            .collect();
        if let Membership::Leaving(plan) = &mut self.membership {
            plan.todo.extend(more);
        }
        self.pump_leave();
    }

    /// A peer that proved chunks is gone: those it alone proved are planned again.
    pub(super) fn replan_leave(&mut self, gone: &BTreeMap<FileName, ChunkSet>) {
        if !matches!(self.membership, Membership::Leaving(_)) {
            return;
        }
        let mut again = Vec::new();
        for (name, proven) in gone {
            let Some(f) = self.files.get(name) else { continue };
            again.extend(
                proven
                    .iter()
                    .filter(|&i| f.have.contains(i) && !self.proven_elsewhere(name, i, None))
                    .map(|i| (name.clone(), i)),
            );
        }
        if let Membership::Leaving(plan) = &mut self.membership {
            plan.todo.extend(again);
        }
    }

    /// A chunk only we held has been proven held elsewhere too.
    pub(super) fn leave_confirmed(&mut self, file: &FileName, i: ChunkIndex) {
        let Membership::Leaving(plan) = &mut self.membership else {
            return;
        };
        let key = (file.clone(), i);
        if plan.todo.remove(&key) {
            if let Some(addr) = plan.pushed.remove(&key) {
                if let Some(p) = self.peers.get_mut(&addr) {
                    p.pushes = p.pushes.saturating_sub(1);
                }
            }
            self.pump_leave();
        }
    }

    /// Ends Leaving (nothing otherwise): says goodbye to every peer and answers the
    /// client that asked.
    pub(super) fn finish_leave(&mut self) {
        let plan = match std::mem::replace(&mut self.membership, Membership::NotJoined) {
            Membership::Leaving(plan) => plan,
            other => {
                self.membership = other;
                return;
            }
        };
        self.timers.cancel(Timer::Leave);
        self.timers.cancel(Timer::LeavingAnswers);
        let unconfirmed = plan.todo.len() as u64;
        let peers: Vec<PeerAddr> = self.peers.keys().cloned().collect();
        for addr in peers {
            self.say_goodbye(&addr);
        }
        self.stop_redials();
        self.events.push_back(Event::Left { unconfirmed });
        if let Some(conn) = plan.reply_to {
            let unconfirmed = (unconfirmed > 0).then_some(unconfirmed);
            self.reply(conn, Reply { unconfirmed, ..Reply::code(Code::Ok) });
        }
    }
}

/// What a leave plans for a file of `count` chunks of which we hold `held`: those chunks;
/// for an empty file, which has no chunk but is data too, chunk 0, which stands for its
/// manifest (handed over alone, and safe once a peer lists the file).
fn plan_units(count: u32, held: impl Iterator<Item = ChunkIndex>) -> impl Iterator<Item = ChunkIndex> {
    let empty = (count == 0).then_some(ChunkIndex(0));
    held.chain(empty)
}
