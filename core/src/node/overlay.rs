//! The overlay: a bounded number of links per node, and gossip over them, so that the
//! network scales without a full mesh and every node still counts every participant.
//!
//! - Links: a node dials peers (from its peers file at Join, then from gossip) until it
//!   has `link_target` links, adds one to a far holder of a file no link has, and never
//!   keeps more than [`super::Tuning::max_links`]: a newcomer past the limit is handed
//!   our records and unlinked (Remove), so it knows where else to go.
//! - Gossip: every `gossip_interval` a node sends its summary to one random link; where
//!   summaries differ the two trade digests (in a large network, only of the parts
//!   of the summary that differ), then the records each lacks ([`crate::gossip`]). A node raises its own version when it loses or completes a
//!   file (at most once per `record_interval`), when its progress changes, a file
//!   begun included (at most once per `record_interval` × participants / 32), when it
//!   joins or leaves, and to refute a suspicion.
//! - Failure detection: a link that breaks without a Remove, or a dial that fails, makes
//!   the participant `Suspect`, and so does a record not renewed for `lease` (each node
//!   renews its own every `refresh_interval`); unrefuted after `suspect_timeout` it is
//!   `Left`. Only `Alive` records are counted: a suspect's holdings make no file look
//!   safer until it refutes. Departures are forgotten after `left_keep`.
//! - Counting: each far participant's record is applied to the files' counts
//!   (`FileState::set_far`); a participant we are linked to is counted from its own
//!   announcements instead, never twice.

use std::collections::{BTreeMap, BTreeSet};

use super::{ConnId, Membership, Millis, NetCommand, Node, Timer};
use crate::gossip::{
    part_of, ranges_of, stamp_hash, DigestEntry, Gossip, Holding, Known, Liveness, Record, Stamp, View, SUMMARY_PARTS,
};
use crate::name::FileName;
use crate::wire::{PeerAddr, PeerMessage};

/// How long a participant that unlinked us is not dialled again.
const UNLINKED_PAUSE: Millis = 60_000;
/// How long an address whose dial failed is not dialled again.
const DIAL_FAILED_PAUSE: Millis = 10_000;
/// Participants per `record_interval` between records that only report progress.
const PROGRESS_PER: u64 = 32;
/// Dials for links in flight at once.
const DIALS_AT_ONCE: usize = 4;

#[derive(Debug, Default)]
pub(super) struct Overlay {
    pub view: View,
    version: u64,
    liveness: Option<Liveness>,
    /// Our holdings as our record last published them.
    published: Vec<Holding>,
    last_bump: Millis,
    /// Addresses dialled for a link, not yet answered.
    dialing: BTreeSet<PeerAddr>,
    /// Participants not to dial before a time: they unlinked us, or a dial failed.
    not_before: BTreeMap<PeerAddr, Millis>,
    /// Participants we banned: neither counted nor dialled, whatever gossip says.
    shunned: BTreeSet<PeerAddr>,
}

impl Node {
    /// Links worth dialling for: half the limit, at least 2 (a graph where each node
    /// picks one other at random falls apart into pairs; with two it holds together)
    /// and at most 8 (a random graph of degree 8 among thousands of nodes is connected
    /// with a diameter of 4 or 5).
    pub(super) fn link_target(&self) -> usize {
        let max = self.config.tuning.max_links;
        (max / 2).clamp(2, 8).min(max)
    }

    /// Links to diallable peers (browser peers, which cannot be dialled, do not count).
    pub(super) fn link_count(&self) -> usize {
        self.peers.keys().filter(|a| a.is_diallable()).count()
    }

    /// Participants of the network: this node, its links, and those gossip counts.
    pub(super) fn participant_count(&self) -> usize {
        let far = self.overlay.view.iter().filter(|(a, k)| self.counts_far(a, &k.record)).count();
        1 + self.peers.len() + far
    }

    /// A suspect is not counted: a node that may be gone must not make a file look
    /// safer than it is (it counts again as soon as it refutes).
    fn counts_far(&self, addr: &PeerAddr, record: &Record) -> bool {
        record.liveness == Liveness::Alive
            && !self.peers.contains_key(addr)
            && *addr != self.config.me
            && !self.overlay.shunned.contains(addr)
    }

    /// We banned `addr`: what it holds no longer counts, and it is not dialled.
    pub(super) fn shun(&mut self, addr: &PeerAddr) {
        self.overlay.shunned.insert(addr.clone());
        self.far_recount(addr);
    }

    fn my_stamp(&self) -> Stamp {
        Stamp { version: self.overlay.version, liveness: self.overlay.liveness.unwrap_or(Liveness::Left) }
    }

    fn my_record(&self) -> Record {
        let s = self.my_stamp();
        Record {
            addr: self.config.me.clone(),
            version: s.version,
            liveness: s.liveness,
            files: self.overlay.published.clone(),
        }
    }

    fn summary(&self) -> u64 {
        self.overlay.view.summary() ^ stamp_hash(&self.config.me, self.my_stamp())
    }

    /// What this node holds, as its record says it.
    fn own_holdings(&self) -> Vec<Holding> {
        self.files
            .iter()
            .filter(|(_, f)| f.manifest.is_some() && (f.chunk_count() == 0 || f.have.count() > 0))
            .map(|(name, f)| Holding {
                name: name.clone(),
                size: f.size,
                digest: f.digest,
                ranges: ranges_of(f.have.iter().map(|i| i.0)),
            })
            .collect()
    }

    /// Whether our holdings changed enough, `since_bump` after our last record, for a
    /// new one. A file completed or lost is news for every node's least replication;
    /// progress within a file, a file begun included, goes out less often the larger
    /// the network, or every node's every step would reach every other (at 256 nodes,
    /// 3 % of the payload).
    fn record_due(&self, since_bump: Millis) -> bool {
        let holdings = self.own_holdings();
        if holdings == self.overlay.published {
            return false;
        }
        let complete = |h: &[Holding]| h.iter().filter(|h| h.is_complete()).map(|h| h.name.clone()).collect::<Vec<_>>();
        let lost = self.overlay.published.iter().any(|p| !holdings.iter().any(|h| h.name == p.name));
        let progress_interval =
            self.config.tuning.record_interval * (self.participant_count() as u64 / PROGRESS_PER).max(1);
        lost || complete(&holdings) != complete(&self.overlay.published) || since_bump >= progress_interval
    }

    /// A new incarnation of our record: joining, leaving, or refuting.
    fn bump(&mut self, now: Millis, liveness: Liveness) {
        self.overlay.version += 1;
        self.overlay.liveness = Some(liveness);
        self.overlay.published = self.own_holdings();
        self.overlay.last_bump = now;
    }

    /// Joining: we are alive again, and gossip starts.
    pub(super) fn overlay_joined(&mut self, now: Millis) {
        self.bump(now, Liveness::Alive);
        self.timers.set(Timer::Gossip, now + self.config.tuning.gossip_interval);
    }

    /// Leaving: every link hears it from us first, so gossip spreads it at once.
    pub(super) fn overlay_leaving(&mut self, now: Millis) {
        self.bump(now, Liveness::Left);
        self.timers.cancel(Timer::Gossip);
        let conns: Vec<ConnId> = self.peers.values().map(|p| p.conn).collect();
        let mine = self.my_record();
        for conn in conns {
            self.send_gossip(conn, Gossip { records: vec![mine.clone()], ..Gossip::default() });
        }
    }

    /// The participants whose records `keep` picks.
    fn known_where(&self, keep: impl Fn(&Known) -> bool) -> Vec<PeerAddr> {
        self.overlay.view.iter().filter(|(_, k)| keep(k)).map(|(a, _)| a.clone()).collect()
    }

    fn send_gossip(&mut self, conn: ConnId, gossip: Gossip) {
        self.send(conn, PeerMessage::Gossip(Box::new(gossip)));
    }

    // -----------------------------------------------------------------------------
    // The round.

    pub(super) fn gossip_due(&mut self, now: Millis) {
        if !matches!(self.membership, Membership::Joined | Membership::Joining { .. }) {
            return;
        }
        let tuning = self.config.tuning.clone();
        self.timers.set(Timer::Gossip, now + tuning.gossip_interval);
        let since_bump = now.saturating_sub(self.overlay.last_bump);
        if since_bump >= tuning.refresh_interval
            || (since_bump >= tuning.record_interval && self.record_due(since_bump))
        {
            self.bump(now, Liveness::Alive);
        }
        // Suspected: records not renewed within their lease, and, when we are cut off
        // and can vouch for nobody, everyone (gossip says otherwise once we are linked).
        let cut_off = self.peers.is_empty();
        let age = |k: &Known| now.saturating_sub(k.since);
        for addr in self.known_where(|k| k.record.liveness == Liveness::Alive && (cut_off || age(k) >= tuning.lease)) {
            self.suspect(now, &addr);
        }
        for addr in self.known_where(|k| k.record.liveness == Liveness::Suspect && age(k) >= tuning.suspect_timeout) {
            self.overlay.view.mark(now, &addr, Liveness::Left);
            self.far_recount(&addr);
        }
        // Left records are no longer counted, so nothing is applied from them.
        self.overlay.view.forget_left(now, tuning.left_keep);
        self.overlay.not_before.retain(|_, at| *at > now);
        self.flush_held_have();
        if !self.peers.is_empty() {
            let k = (self.random() % self.peers.len() as u64) as usize;
            let conn = self.peers.values().nth(k).expect("k < len").conn;
            let summary = Some(self.summary());
            self.send_gossip(conn, Gossip { summary, ..Gossip::default() });
        }
        self.dial_for_links();
    }

    pub(super) fn on_gossip(&mut self, now: Millis, conn: ConnId, gossip: Gossip) {
        let Gossip { summary, parts, digest, digest_of, records, want } = gossip;
        for record in records {
            if record.addr == self.config.me {
                self.refute(now, record.stamp());
            } else {
                let addr = record.addr.clone();
                if self.overlay.view.offer(now, record) {
                    self.far_recount(&addr);
                }
            }
        }
        if let Some(digest) = digest {
            self.answer_digest(now, conn, digest, digest_of.as_deref());
        }
        if let Some(theirs) = parts {
            let ours = self.summary_parts();
            let differ: Vec<u8> = (0..SUMMARY_PARTS).filter(|&p| theirs[p] != ours[p]).map(|p| p as u8).collect();
            if !differ.is_empty() {
                let digest = Some(self.digest_of(|p| differ.contains(&(p as u8))));
                self.send_gossip(conn, Gossip { digest, digest_of: Some(differ), ..Gossip::default() });
            }
        }
        if !want.is_empty() {
            let records = want
                .iter()
                .filter_map(|a| match a == &self.config.me {
                    true => Some(self.my_record()),
                    false => self.overlay.view.get(a).map(|k| k.record.clone()),
                })
                .collect();
            self.send_gossip(conn, Gossip { records, ..Gossip::default() });
        }
        if summary.is_some_and(|s| s != self.summary()) {
            // In a large network two views differ in a few parts at a time: comparing
            // the parts first spares the digest of the rest (at 256 participants a whole
            // digest is about 7 KB, the parts 0.3 KB).
            let reply = if self.participant_count() > self.config.tuning.summary_parts_from {
                Gossip { parts: Some(self.summary_parts().to_vec()), ..Gossip::default() }
            } else {
                Gossip { digest: Some(self.digest_of(|_| true)), ..Gossip::default() }
            };
            self.send_gossip(conn, reply);
        }
    }

    /// The summary of each part, our own record mixed in.
    fn summary_parts(&self) -> [u64; SUMMARY_PARTS] {
        let mut parts = self.overlay.view.parts();
        parts[part_of(&self.config.me)] ^= stamp_hash(&self.config.me, self.my_stamp());
        parts
    }

    /// The stamps, ours included, of the parts `parts` picks.
    fn digest_of(&self, parts: impl Fn(usize) -> bool) -> Vec<DigestEntry> {
        let s = self.my_stamp();
        let mut digest = self.overlay.view.digest(&parts);
        if parts(part_of(&self.config.me)) {
            digest.push(DigestEntry(self.config.me.clone(), s.version, s.liveness));
        }
        digest
    }

    /// Sends the records the digest's sender lacks and asks for those it has newer;
    /// a digest of some parts (`of`) says nothing of the others.
    fn answer_digest(&mut self, now: Millis, conn: ConnId, digest: Vec<DigestEntry>, of: Option<&[u8]>) {
        // By insert, not collect: a collect into a B-tree sorts first, one more copy of the
        // stable sort in the browser's bundle. Equal keys: the last wins either way.
        let mut theirs: BTreeMap<&PeerAddr, Stamp> = BTreeMap::new();
        theirs.extend(digest.iter().map(|e| (&e.0, e.stamp())));
        if let Some(&about_me) = theirs.get(&self.config.me) {
            self.refute(now, about_me);
        }
        let covered = |a: &PeerAddr| of.is_none_or(|of| of.contains(&(part_of(a) as u8)));
        let mut records: Vec<Record> = self
            .overlay
            .view
            .iter()
            .filter(|(a, k)| covered(a) && theirs.get(a).is_none_or(|s| *s < k.record.stamp()))
            .map(|(_, k)| k.record.clone())
            .collect();
        if covered(&self.config.me) && theirs.get(&self.config.me).is_none_or(|s| *s < self.my_stamp()) {
            records.push(self.my_record());
        }
        let want: Vec<PeerAddr> = digest
            .iter()
            .filter(|e| e.0 != self.config.me)
            .filter(|e| self.overlay.view.get(&e.0).is_none_or(|k| k.record.stamp() < e.stamp()))
            .map(|e| e.0.clone())
            .collect();
        if !records.is_empty() || !want.is_empty() {
            self.send_gossip(conn, Gossip { records, want, ..Gossip::default() });
        }
    }

    /// Someone holds a record of us newer than ours (a suspicion, a departure, or a
    /// record from before we restarted): a new incarnation says what is true now.
    fn refute(&mut self, now: Millis, about_me: Stamp) {
        if about_me > self.my_stamp() {
            let liveness = self.overlay.liveness.unwrap_or(Liveness::Left);
            self.overlay.version = about_me.version;
            self.bump(now, liveness);
        }
    }

    // -----------------------------------------------------------------------------
    // Counting far participants.

    /// Applies `addr`'s record to the files' counts, or withdraws it: it counts while it
    /// is not `Left`, not us, and not linked (a link counts from its own announcements).
    pub(super) fn far_recount(&mut self, addr: &PeerAddr) {
        let Some(known) = self.overlay.view.get_mut(addr) else { return };
        let applied = std::mem::take(&mut known.applied);
        let record = &self.overlay.view.get(addr).expect("present").record;
        let holdings = if self.counts_far(addr, record) { record.files.clone() } else { Vec::new() };
        for name in &applied {
            if let Some(f) = self.files.get_mut(name) {
                f.remove_far(addr);
            }
        }
        // A far record may make us track as much as a link's announcements may.
        let (mut files, mut bytes) = (0usize, 0u64);
        let mut now_applied = BTreeSet::new();
        for h in holdings {
            bytes = bytes.saturating_add(h.size);
            files += 1;
            if files > self.config.tuning.max_peer_files || bytes > self.config.tuning.max_peer_bytes {
                break;
            }
            if !self.learn_file(addr, &h.name, h.size, Some(h.digest)) {
                continue;
            }
            if let Some(f) = self.files.get_mut(&h.name) {
                f.set_far(addr, &h.ranges);
                now_applied.insert(h.name);
            }
        }
        // Files only this record kept known are forgotten (not a pass over every file:
        // this runs for each record gossip brings).
        for name in applied.difference(&now_applied) {
            if self.files.get(name).is_some_and(|f| !f.is_known()) {
                self.files.remove(name);
            }
        }
        if let Some(known) = self.overlay.view.get_mut(addr) {
            known.applied = now_applied;
        }
    }

    /// A link broke without a goodbye, or a dial failed: the participant may be gone.
    pub(super) fn suspect(&mut self, now: Millis, addr: &PeerAddr) {
        if self.overlay.view.mark(now, addr, Liveness::Suspect) {
            self.far_recount(addr);
        }
    }

    // -----------------------------------------------------------------------------
    // Links.

    /// A peer has just been linked (it introduced itself, or answered our Add): its own
    /// announcements now count instead of its record, and the two views are compared.
    pub(super) fn linked(&mut self, conn: ConnId, addr: &PeerAddr) {
        self.overlay.dialing.remove(addr);
        self.far_recount(addr);
        self.send_gossip(conn, Gossip { digest: Some(self.digest_of(|_| true)), ..Gossip::default() });
        if matches!(self.membership, Membership::Leaving(_)) {
            // Linked to hand chunks over: it must not count on us either.
            self.send(conn, PeerMessage::Leaving);
            self.pump_leave();
        }
    }

    /// Leaving with chunks to hand over and no link: dials for one. False if there is
    /// nobody to dial (we leave at once, as a node alone in the network does).
    pub(super) fn link_for_leave(&mut self) -> bool {
        if !self.config.me.is_diallable() {
            return false;
        }
        if self.overlay.dialing.is_empty() {
            self.dial_random(DIALS_AT_ONCE);
        }
        !self.overlay.dialing.is_empty()
    }

    /// Past the link limit, unlinks one: the newcomer if it dialled us, else a random
    /// peer that dialled us (a link we chose is kept).
    pub(super) fn enforce_link_limit(&mut self, newcomer: &PeerAddr, conn: ConnId) {
        if !newcomer.is_diallable() || self.link_count() <= self.config.tuning.max_links {
            return;
        }
        let we_dialled = |node: &Node, c: ConnId| node.conns.get(&c).is_some_and(|c| c.dialed.is_some());
        let victim = if !we_dialled(self, conn) {
            Some(newcomer.clone())
        } else {
            let inbound: Vec<PeerAddr> = self
                .peers
                .iter()
                .filter(|(a, p)| *a != newcomer && a.is_diallable() && !we_dialled(self, p.conn))
                .map(|(a, _)| a.clone())
                .collect();
            match inbound.len() {
                0 => None,
                n => Some(inbound[(self.random() % n as u64) as usize].clone()),
            }
        };
        if let Some(victim) = victim {
            self.unlink(&victim);
        }
    }

    /// Ends our link to `addr` (it stays a participant): it gets our records, so that a
    /// newcomer knows whom else to dial, then a Remove on each connection.
    fn unlink(&mut self, addr: &PeerAddr) {
        let Some(conn) = self.peers.get(addr).map(|p| p.conn) else { return };
        let mut records: Vec<Record> = self
            .overlay
            .view
            .iter()
            .filter(|(_, k)| k.record.liveness != Liveness::Left)
            .map(|(_, k)| k.record.clone())
            .collect();
        records.push(self.my_record());
        self.send_gossip(conn, Gossip { records, ..Gossip::default() });
        self.say_goodbye(addr);
    }

    /// A peer unlinked us (or left): not dialled again for a while.
    pub(super) fn unlinked_by(&mut self, now: Millis, addr: &PeerAddr) {
        self.overlay.not_before.insert(addr.clone(), now + UNLINKED_PAUSE);
        // Turned away by a full node, which told us of others: link to them now.
        if matches!(self.membership, Membership::Joined | Membership::Joining { .. }) {
            self.dial_for_links();
        }
    }

    /// A dial for a link has been answered, or failed.
    pub(super) fn dial_answered(&mut self, now: Millis, addr: &PeerAddr, failed: bool) {
        // Answered without becoming a link (it failed, or the other end has not joined):
        // not dialled again for a while.
        if self.overlay.dialing.remove(addr) {
            self.overlay.not_before.insert(addr.clone(), now + DIAL_FAILED_PAUSE);
            if failed {
                self.suspect(now, addr);
            }
            // A leave waiting for a link tries another, or gives up.
            self.pump_leave();
        }
    }

    /// Whether a link is worth dialling for now (a peers-file redial waits while not).
    pub(super) fn wants_links(&self) -> bool {
        self.link_count() < self.link_target()
    }

    /// Dials participants gossip told us of: random ones up to the target, and a far
    /// holder of a file we lack that none of our links holds.
    fn dial_for_links(&mut self) {
        // A browser peer reaches only the nodes its page names (through their bridge).
        if !self.config.me.is_diallable() {
            return;
        }
        let links = self.link_count();
        let mut budget = self.link_target().saturating_sub(links + self.overlay.dialing.len());
        budget = budget.min(DIALS_AT_ONCE.saturating_sub(self.overlay.dialing.len()));
        if budget > 0 {
            self.dial_random(budget);
        }
        if links < self.config.tuning.max_links && self.overlay.dialing.is_empty() {
            if let Some(addr) = self.holder_to_dial() {
                self.dial_link(addr);
            }
        }
    }

    /// Dials up to `budget` participants at random.
    pub(super) fn dial_random(&mut self, mut budget: usize) {
        // Suspects too: a node cut off suspects everyone, and must find its way back.
        // And the peers file, where gossip knows nobody (or nobody it has not given up).
        let mut candidates: Vec<PeerAddr> = self
            .overlay
            .view
            .iter()
            .filter(|(a, k)| k.record.liveness != Liveness::Left && self.may_dial(a))
            .map(|(a, _)| a.clone())
            .collect();
        if candidates.is_empty() {
            candidates = self
                .config
                .peers
                .iter()
                .filter(|a| self.may_dial(a) && !self.redial.contains_key(*a))
                .cloned()
                .collect();
        }
        while budget > 0 && !candidates.is_empty() {
            let k = (self.random() % candidates.len() as u64) as usize;
            let addr = candidates.swap_remove(k);
            self.dial_link(addr);
            budget -= 1;
        }
    }

    fn may_dial(&self, addr: &PeerAddr) -> bool {
        addr.is_diallable()
            && *addr != self.config.me
            && !self.peers.contains_key(addr)
            && !self.banned.contains(addr)
            && !self.overlay.dialing.contains(addr)
            && !self.overlay.not_before.contains_key(addr)
            && !self.overlay.shunned.contains(addr)
    }

    fn dial_link(&mut self, addr: PeerAddr) {
        self.overlay.dialing.insert(addr.clone());
        self.net.push_back(NetCommand::Dial(addr));
    }

    /// A far participant holding chunks of a wanted file that we lack and no link
    /// claims: a link to it brings the file (need-based links).
    fn holder_to_dial(&self) -> Option<PeerAddr> {
        let stranded = |name: &FileName| {
            let f = &self.files[name];
            let n = f.chunk_count();
            n > 0 && f.have.count() < n && !self.peers.values().any(|p| p.files.contains_key(name))
        };
        let wanted: Vec<&FileName> =
            self.files.keys().filter(|n| self.wants(n) && self.files[*n].refused.is_none() && stranded(n)).collect();
        for name in wanted {
            let holder = self.overlay.view.iter().find(|(a, k)| {
                k.record.liveness == Liveness::Alive
                    && self.may_dial(a)
                    && k.record.files.iter().any(|h| h.name == *name && !h.ranges.is_empty())
            });
            if let Some((addr, _)) = holder {
                return Some(addr.clone());
            }
        }
        None
    }
}
