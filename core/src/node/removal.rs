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

use super::{ConnId, Event, Membership, Millis, Node, Refusal, StorageCommand, Timer, Tuning};
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
    /// How many of `kept` each peer told us.
    per_peer: BTreeMap<PeerAddr, usize>,
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
        let expired = |time: u64| time.saturating_add(tuning.tombstone_lifetime) <= unix_now;
        if self.kept.contains_key(&key) || expired(time) {
            return false;
        }
        if from.is_some_and(|p| self.per_peer.get(p).copied().unwrap_or(0) >= tuning.max_peer_tombstones) {
            return false;
        }
        if self.kept.len() >= tuning.max_tombstones.max(1) {
            let gone: Vec<_> = self.kept.iter().filter(|(_, k)| expired(k.time)).map(|(key, _)| key.clone()).collect();
            for key in gone {
                self.forget(&key);
            }
        }
        while self.kept.len() >= tuning.max_tombstones.max(1) {
            let oldest = self.kept.iter().min_by_key(|(_, k)| k.time).map(|(key, _)| key.clone());
            self.forget(&oldest.expect("not empty"));
        }
        if let Some(p) = from {
            *self.per_peer.entry(p.clone()).or_default() += 1;
        }
        self.kept.insert(key, Kept { time, from: from.cloned() });
        self.dirty = true;
        true
    }

    fn forget(&mut self, key: &(FileName, Digest)) {
        let Some(Kept { from: Some(peer), .. }) = self.kept.remove(key) else { return };
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
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
        let reply = match self.remove_file(now, &file) {
            Ok(()) => Reply::code(Code::Ok),
            Err(refusal) => Reply { reason: Some(refusal.reason), ..Reply::code(refusal.code) },
        };
        self.reply(conn, reply);
    }

    /// Removes `file` from the network as the owner's Delete would, for a driver that
    /// is its own user (the simulator).
    pub fn remove(&mut self, now: Millis, file: &FileName) -> Result<(), Refusal> {
        let result = self.remove_file(now, file);
        self.after_input(now);
        result
    }

    fn remove_file(&mut self, now: Millis, file: &FileName) -> Result<(), Refusal> {
        let Some(digest) = self.files.get(file).filter(|f| f.is_known()).map(|f| f.digest) else {
            let reason = format!("{file} is not in the network (`query` lists the files this node knows)");
            return Err(Refusal { code: Code::FileMissing, reason });
        };
        let t = Tombstone { file: file.clone(), digest, time: self.unix_now(now) };
        self.graveyard.keep(&self.config.tuning, t.time, &t, None);
        self.bury(&t.file, digest, None);
        for c in self.listening_conns() {
            self.send_tombstone_batches(c, std::slice::from_ref(&t));
        }
        Ok(())
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
        if self.files.get(name).is_none_or(|f| f.digest != digest) {
            return;
        }
        self.forget_requests_for(Some(name));
        for peer in self.peers.values_mut() {
            if peer.files.remove(name).is_some() {
                peer.announced_bytes = peer.announced_bytes.saturating_sub(self.files[name].size);
            }
            peer.proven.remove(name);
            peer.sent.remove(name);
        }
        self.timers.cancel(Timer::SpaceRetry(name.clone()));
        // Asked for by a browser peer's user: new content under the name is asked anew.
        if let Some(wanted) = &mut self.wanted {
            wanted.remove(name);
        }
        self.haves.forget_file(name);
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

#[cfg(test)]
mod tests {
    use super::super::{Config, ConnInfo, NetCommand};
    use super::*;
    use crate::layout::ChunkIndex;
    use crate::manifest::ManifestBuilder;
    use crate::wire::Control;
    use crate::wire::{Envelope, FileEntry, Message};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const DAY: u64 = 24 * 3_600_000;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    fn digest(seed: u8) -> Digest {
        let mut b = ManifestBuilder::new();
        b.update(&[seed; 1000]);
        b.finish().unwrap().digest()
    }

    /// A joined node with peers on connections 1.. (peer i at 10.0.0.i), each having
    /// announced `files` (name, digest) of 200 kB.
    fn node_with_peers(peers: u8, files: &[(&str, Digest)]) -> Node {
        let mut node = Node::new(Config::for_tests(PeerAddr::new("10.0.0.100", 7000)));
        node.set_unix_origin(1_000 * DAY);
        node.join(0);
        for p in 1..=peers {
            let conn = ConnId(u64::from(p));
            node.handle_connected(0, conn, ConnInfo::default());
            let files = files
                .iter()
                .map(|(n, d)| FileEntry { name: name(n), size: 200_000, digest: *d, chunks: vec![ChunkIndex(0)] })
                .collect();
            node.handle_message(0, conn, from(p, PeerMessage::Add { files }.into()));
        }
        node
    }

    fn from(p: u8, message: Message) -> Envelope {
        Envelope { from: Some(PeerAddr::new(format!("10.0.0.{p}"), 7000)), token: None, message }
    }

    fn tombstones(node: &mut Node, p: u8, list: Vec<Tombstone>) {
        node.handle_message(0, ConnId(u64::from(p)), from(p, PeerMessage::Tombstones(list).into()));
    }

    fn sent_tombstones(node: &mut Node) -> Vec<(ConnId, usize)> {
        std::iter::from_fn(|| node.poll_net())
            .filter_map(|c| match c {
                NetCommand::Send {
                    conn,
                    envelope: Envelope { message: Message::Peer(PeerMessage::Tombstones(l)), .. },
                } => Some((conn, l.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_tombstone_kills_its_digest_only_cancels_fetching_and_is_passed_on_once() {
        let (old, new) = (digest(1), digest(2));
        let mut node = node_with_peers(2, &[("a", old), ("b", new)]);
        assert!(node.files[&name("a")].manifest_from.is_some(), "its manifest is being fetched");
        while node.poll_net().is_some() {}
        let t = Tombstone { file: name("a"), digest: old, time: 1_000 * DAY };
        tombstones(&mut node, 1, vec![t.clone()]);
        assert!(!node.status().files.contains(&"a".to_string()), "a left the status");
        assert!(node
            .peers
            .values()
            .all(|p| !p.manifest_requests.contains(&name("a")) && !p.files.contains_key(&name("a"))));
        assert!(node
            .events
            .iter()
            .any(|e| matches!(e, Event::FileRemoved { file, by: Some(_) } if *file == name("a"))));
        assert_eq!(sent_tombstones(&mut node), vec![(ConnId(2), 1)], "passed on to the other peer only");
        assert!(matches!(node.poll_storage(), Some(StorageCommand::SaveTombstones(l)) if l == vec![t.clone()]));
        // Known now: not passed on again, and the content is not taken back.
        tombstones(&mut node, 2, vec![t]);
        assert_eq!(sent_tombstones(&mut node), vec![]);
        let files = vec![FileEntry { name: name("a"), size: 200_000, digest: old, chunks: vec![ChunkIndex(0)] }];
        node.handle_message(0, ConnId(2), from(2, PeerMessage::Files { files }.into()));
        assert!(!node.files.contains_key(&name("a")), "removed content is not brought back");
        // A stale tombstone for b's name names other content: b stays.
        tombstones(&mut node, 1, vec![Tombstone { file: name("b"), digest: old, time: 1_000 * DAY }]);
        assert!(node.files.contains_key(&name("b")));
        // New content under a's name is taken as usual.
        let files = vec![FileEntry { name: name("a"), size: 200_000, digest: new, chunks: vec![ChunkIndex(0)] }];
        node.handle_message(0, ConnId(2), from(2, PeerMessage::Files { files }.into()));
        assert!(node.files.contains_key(&name("a")));
    }

    #[test]
    fn tombstones_are_bounded_per_peer_in_all_and_in_time() {
        let mut node = node_with_peers(2, &[]);
        let now = 1_000 * DAY;
        let many = |from: u32, n: u32, time: u64| -> Vec<Tombstone> {
            (from..from + n).map(|i| Tombstone { file: name(&format!("f{i}")), digest: digest(0), time }).collect()
        };
        tombstones(&mut node, 1, many(0, 1_500, now));
        assert_eq!(node.tombstones().len(), 1_000, "one peer's share");
        tombstones(&mut node, 2, many(5_000, 10, now - 91 * DAY));
        assert_eq!(node.tombstones().len(), 1_000, "expired ones are not kept");
        tombstones(&mut node, 2, many(6_000, 1, u64::MAX));
        let future = node.tombstones().into_iter().find(|t| t.file == name("f6000")).unwrap();
        assert_eq!(future.time, now, "a time in the future counts as now");

        let mut node = node_with_peers(12, &[]);
        node.config.tuning.max_tombstones = 3_000;
        for p in 1..=4 {
            tombstones(&mut node, p, many(u32::from(p) * 1_000, 1_000, now - 10 + u64::from(p)));
        }
        let kept = node.tombstones();
        assert_eq!(kept.len(), 3_000);
        assert!(kept.iter().all(|t| t.time > now - 9), "the oldest went first");
    }

    #[test]
    fn delete_of_an_unknown_name_is_refused_and_a_known_one_spreads() {
        let d = digest(3);
        let mut node = node_with_peers(1, &[("x", d)]);
        while node.poll_net().is_some() {}
        node.handle_connected(0, ConnId(50), ConnInfo { local: true, ..ConnInfo::default() });
        let delete = |f: &str| Envelope {
            from: None,
            token: Some("t".into()),
            message: Control::Delete { file: name(f) }.into(),
        };
        node.handle_message(5, ConnId(50), delete("nope"));
        let replies: Vec<NetCommand> = std::iter::from_fn(|| node.poll_net()).collect();
        assert!(
            matches!(&replies[..], [NetCommand::Send { envelope: Envelope { message: Message::Reply(r), .. }, .. }]
                if r.code == Some(Code::FileMissing) && r.reason.as_deref().is_some_and(|r| r.contains("not in the network"))),
            "{replies:?}"
        );
        node.handle_message(5, ConnId(50), delete("x"));
        assert_eq!(node.tombstones(), vec![Tombstone { file: name("x"), digest: d, time: 1_000 * DAY + 5 }]);
        assert!(!node.files.contains_key(&name("x")));
    }

    #[test]
    fn tombstones_go_before_the_file_list_so_a_returning_node_judges_it_by_them() {
        let mut node = node_with_peers(0, &[]);
        node.restore_tombstone(0, Tombstone { file: name("gone"), digest: digest(5), time: 1_000 * DAY });
        let actions = |node: &mut Node| -> Vec<Option<u8>> {
            std::iter::from_fn(|| node.poll_net())
                .filter_map(|c| match c {
                    NetCommand::Send { envelope, .. } => Some(envelope.message.action().map(u8::from)),
                    _ => None,
                })
                .collect()
        };
        // A peer introduces itself: our tombstones, then our Files.
        node.handle_connected(0, ConnId(1), ConnInfo::default());
        node.handle_message(0, ConnId(1), from(1, PeerMessage::Add { files: vec![] }.into()));
        // (then the gossip a new link gets: Action 18)
        assert_eq!(actions(&mut node), vec![Some(13), Some(6), Some(18)]);
        // We dial a peer: our tombstones, then our Add.
        let dialed = ConnInfo { dialed: Some(PeerAddr::new("10.0.0.7", 7000)), ..ConnInfo::default() };
        node.handle_connected(0, ConnId(2), dialed);
        assert_eq!(actions(&mut node), vec![Some(13), Some(4)]);
    }
}
