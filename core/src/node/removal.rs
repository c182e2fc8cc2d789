//! Remove: taking a file out of the network. The owner's Delete (a control action)
//! buries the file here and sends a tombstone (name, digest, time) to every peer; a
//! node that learns a tombstone new to it buries its own copy and passes it on, so
//! removal floods the network once. Tombstones are kept (and saved by the driver) and
//! sent at every introduction, before the file list, so a node that was away learns of
//! the removal before anything it announces is counted, and deletes its copy instead of
//! bringing it back. A tombstone kills one content: a file of the same name with
//! another digest (inserted again later) is left alone, and replicates as usual.
//!
//! Bounds: at most [`Tuning::max_tombstones`] are kept (the oldest go first), at most
//! [`Tuning::max_peer_tombstones`] of them learned from any one peer, and each lives
//! [`Tuning::tombstone_lifetime`] from its time (a time in the future counts as now).

use std::collections::BTreeMap;

use super::{ConnId, Event, Membership, Millis, Node, StorageCommand, Timer, Tuning};
use crate::manifest::Digest;
use crate::name::FileName;
use crate::wire::{tombstone_len, Code, PeerAddr, PeerMessage, Reply, Tombstone, HEADER_LIMIT};

/// A tombstone as kept: when, and which peer told us (`None`: our owner, or a restart).
#[derive(Debug)]
struct Kept {
    time: u64,
    from: Option<PeerAddr>,
}

/// The tombstones a node keeps, by name and the digest they kill.
#[derive(Debug, Default)]
pub(super) struct Graveyard {
    kept: BTreeMap<(FileName, Digest), Kept>,
    /// Changed since the driver last saved them.
    dirty: bool,
    /// The Unix time (ms) at which the driver's `now` was 0.
    unix_origin: u64,
}

impl Graveyard {
    fn list(&self) -> Vec<Tombstone> {
        self.kept
            .iter()
            .map(|((file, digest), k)| Tombstone { file: file.clone(), digest: *digest, time: k.time })
            .collect()
    }

    /// Keeps `t` unless it is known, expired, or past `from`'s share; returns whether it
    /// is new.
    fn keep(&mut self, tuning: &Tuning, unix_now: u64, t: &Tombstone, from: Option<&PeerAddr>) -> bool {
        let key = (t.file.clone(), t.digest);
        let time = t.time.min(unix_now);
        if self.kept.contains_key(&key) || time.saturating_add(tuning.tombstone_lifetime) <= unix_now {
            return false;
        }
        if let Some(peer) = from {
            if self.kept.values().filter(|k| k.from.as_ref() == Some(peer)).count() >= tuning.max_peer_tombstones {
                return false;
            }
        }
        self.kept.retain(|_, k| k.time.saturating_add(tuning.tombstone_lifetime) > unix_now);
        while self.kept.len() >= tuning.max_tombstones.max(1) {
            let oldest = self.kept.iter().min_by_key(|(_, k)| k.time).map(|(key, _)| key.clone());
            self.kept.remove(&oldest.expect("not empty"));
        }
        self.kept.insert(key, Kept { time, from: from.cloned() });
        self.dirty = true;
        true
    }

    fn buries(&self, name: &FileName, digest: Digest) -> bool {
        self.kept.contains_key(&(name.clone(), digest))
    }
}

impl Node {
    /// Tells the node the Unix time (ms) at which its `now` was 0, to date the
    /// tombstones of its removes and to let them expire. Without it `now` is taken as
    /// Unix time (simulations).
    pub fn set_unix_origin(&mut self, origin: u64) {
        self.graveyard.unix_origin = origin;
    }

    fn unix_now(&self, now: Millis) -> u64 {
        self.graveyard.unix_origin.saturating_add(now)
    }

    /// Registers a tombstone saved before a restart; call before
    /// [`Node::add_local_file`], which then deletes a copy it kills.
    pub fn restore_tombstone(&mut self, now: Millis, t: Tombstone) {
        let unix_now = self.unix_now(now);
        let dirty = self.graveyard.dirty;
        self.graveyard.keep(&self.config.tuning, unix_now, &t, None);
        self.graveyard.dirty = dirty;
    }

    /// The tombstones kept, for a driver to show or save.
    pub fn tombstones(&self) -> Vec<Tombstone> {
        self.graveyard.list()
    }

    /// Whether a tombstone kills the content `digest` of `name`.
    pub(super) fn buried(&self, name: &FileName, digest: Digest) -> bool {
        self.graveyard.buries(name, digest)
    }

    /// The owner's Delete: the file this node knows under `file` is removed here and,
    /// through its tombstone, everywhere.
    pub(super) fn delete(&mut self, now: Millis, conn: ConnId, file: FileName) {
        let Some(digest) = self.files.get(&file).filter(|f| f.is_known()).map(|f| f.digest) else {
            let reason = format!("{file} is not in the network (`query` lists the files this node knows)");
            self.reply(conn, Reply { reason: Some(reason), ..Reply::code(Code::FileMissing) });
            return;
        };
        let t = Tombstone { file, digest, time: self.unix_now(now) };
        self.graveyard.keep(&self.config.tuning, t.time, &t, None);
        self.bury(&t.file, digest, None);
        let conns = self.listening_conns();
        for c in conns {
            self.send_tombstone_batches(c, std::slice::from_ref(&t));
        }
        self.reply(conn, Reply::code(Code::Ok));
    }

    /// Tombstones from `addr` (on `conn`): the new ones bury their files here and go on
    /// to every other peer.
    pub(super) fn on_tombstones(&mut self, now: Millis, conn: ConnId, addr: &PeerAddr, list: Vec<Tombstone>) {
        let unix_now = self.unix_now(now);
        let mut new = Vec::new();
        for t in list {
            if self.graveyard.keep(&self.config.tuning, unix_now, &t, Some(addr)) {
                self.bury(&t.file, t.digest, Some(addr));
                new.push(t);
            }
        }
        if new.is_empty() {
            return;
        }
        for c in self.listening_conns().into_iter().filter(|&c| c != conn) {
            self.send_tombstone_batches(c, &new);
        }
    }

    /// Sends every tombstone we keep on `conn` (before an Add or a Files answering one).
    pub(super) fn send_tombstones(&mut self, conn: ConnId) {
        let list = self.graveyard.list();
        self.send_tombstone_batches(conn, &list);
    }

    fn send_tombstone_batches(&mut self, conn: ConnId, list: &[Tombstone]) {
        let mut batch = Vec::new();
        let mut len = 0;
        for t in list {
            let l = tombstone_len(t);
            if len + l > HEADER_LIMIT / 2 && !batch.is_empty() {
                self.send(conn, PeerMessage::Tombstones(std::mem::take(&mut batch)));
                len = 0;
            }
            len += l;
            batch.push(t.clone());
        }
        if !batch.is_empty() {
            self.send(conn, PeerMessage::Tombstones(batch));
        }
    }

    /// The tombstones changed: the driver saves them all.
    pub(super) fn save_tombstones(&mut self) {
        if std::mem::take(&mut self.graveyard.dirty) {
            self.storage.push_back(StorageCommand::SaveTombstones(self.graveyard.list()));
        }
    }

    /// Removes the content `digest` of `name` from this node, if it has it: whatever is
    /// fetched of it is given up, peers' claims of it forgotten, and storage deletes it.
    fn bury(&mut self, name: &FileName, digest: Digest, by: Option<&PeerAddr>) {
        if !self.files.get(name).is_some_and(|f| f.digest == digest) {
            return;
        }
        for (addr, peer) in &mut self.peers {
            for i in peer.requests.iter().filter(|(f, _)| f == name).map(|(_, i)| *i).collect::<Vec<_>>() {
                peer.requests.remove(&(name.clone(), i));
                self.timers.cancel(Timer::Request { peer: addr.clone(), file: name.clone(), index: i });
            }
            if peer.manifest_requests.remove(name) {
                self.timers.cancel(Timer::ManifestRequest { peer: addr.clone(), file: name.clone() });
            }
            if peer.files.remove(name).is_some() {
                peer.announced_bytes = peer.announced_bytes.saturating_sub(self.files[name].size);
            }
            peer.proven.remove(name);
            peer.sent.remove(name);
        }
        self.timers.cancel(Timer::SpaceRetry(name.clone()));
        self.pending_have.retain(|h| h.chunk.file != *name);
        let state = self.files.remove(name).expect("checked above");
        // Writes in flight are answered for a file no longer known, and not counted then.
        self.writing -= state.writing.count() as usize;
        if let Membership::Leaving(plan) = &mut self.membership {
            for receiver in plan.forget_file(name) {
                if let Some(p) = self.peers.get_mut(&receiver) {
                    p.pushes = p.pushes.saturating_sub(1);
                }
            }
        }
        // Nothing is stored of a file before its manifest.
        if state.manifest.is_some() {
            self.storage.push_back(StorageCommand::Delete { file: name.clone(), digest, stored_as: state.stored_as });
        }
        self.events.push_back(Event::FileRemoved { file: name.clone(), by: by.cloned() });
        self.pump_leave();
    }

    /// A file found on disk at start that a tombstone kills: deleted, not registered.
    pub(super) fn buried_at_start(&mut self, name: &FileName, digest: Digest, stored_as: Option<String>) -> bool {
        if !self.buried(name, digest) {
            return false;
        }
        self.storage.push_back(StorageCommand::Delete { file: name.clone(), digest, stored_as });
        self.events.push_back(Event::FileRemoved { file: name.clone(), by: None });
        true
    }
}
