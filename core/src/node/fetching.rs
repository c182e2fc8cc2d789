//! Fetching: which manifests and chunks to ask for and from whom (rarest first,
//! spread over peers), verifying what arrives, handing it to storage, and giving up
//! on requests that time out.

use bytes::Bytes;

use super::peers::{PeerState, PickCursor};
use super::serving::HAVE_BATCH;
use super::{envelope, Event, Membership, Millis, NetCommand, Node, StorageCommand, StorageError, Timer, Tuning};
use crate::files::FileState;
use crate::layout::{chunk_len, ChunkIndex, CHUNK_SIZE};
use crate::manifest::{ChunkHash, Digest, Manifest};
use crate::name::FileName;
use crate::wire::{ChunkRef, Code, FileRef, HaveEntry, PeerAddr, PeerMessage};

impl Node {
    /// After every input: ask for whatever can be asked for now.
    pub(super) fn after_input(&mut self, now: Millis) {
        self.save_tombstones();
        let member = matches!(self.membership, Membership::Joined | Membership::Joining { .. });
        if member && !self.timers.is_set(&Timer::FetchPause) {
            self.request_manifests(now);
            self.request_chunks(now);
        }
    }

    pub(super) fn wants(&self, file: &FileName) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(file))
    }

    fn request_manifests(&mut self, now: Millis) {
        let deadline = now + self.config.tuning.manifest_timeout;
        let most = self.config.tuning.manifest_requests_per_peer;
        let wanted: Vec<FileName> = self
            .files
            .iter()
            .filter(|(n, f)| f.manifest.is_none() && f.manifest_from.is_none() && f.refused.is_none() && self.wants(n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in wanted {
            // A peer that has delivered is asked first; one that stalls is not asked.
            let holder = self
                .peers
                .iter_mut()
                .filter(|(_, p)| {
                    p.files.contains_key(&name) && p.stalled_until <= now && p.manifest_requests.len() < most
                })
                .min_by_key(|(_, p)| (p.delivered == 0, p.manifest_requests.len() + p.requests.len()));
            let Some((addr, peer)) = holder else { continue };
            peer.manifest_requests.insert(name.clone());
            self.timers.set(Timer::ManifestRequest { peer: addr.clone(), file: name.clone() }, deadline);
            let conn = peer.conn;
            self.files.get_mut(&name).expect("listed above").manifest_from = Some(addr.clone());
            self.send(conn, PeerMessage::GetManifest { file: name });
        }
    }

    /// Fills every peer's request window, a chunk per peer per round so that the load
    /// spreads; each pick is the rarest chunk that peer can give us. Peers that have
    /// delivered the most pick first; one that has delivered nothing gets a small window
    /// and a short timeout, and one that stalls is asked nothing for a while, so claims
    /// that never deliver cannot hold the chunks they claim.
    fn request_chunks(&mut self, now: Millis) {
        if self.writing >= self.config.tuning.max_writing {
            return;
        }
        // A copy (plain numbers): picking below needs the node mutably.
        let tuning = self.config.tuning.clone();
        let mut unproven_in_flight: usize =
            self.peers.values().filter(|p| p.delivered == 0).map(|p| p.requests.len()).sum();
        // Peers whose window is full now stay full this round: leaving them out at once
        // spares a copy and sort of every peer's address on every input (most inputs find
        // every window full), and changes no pick.
        let mut open: Vec<PeerAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.requests.len() < request_window(p, now, unproven_in_flight, &tuning).0)
            .map(|(a, _)| a.clone())
            .collect();
        open.sort_by_key(|a| std::cmp::Reverse(self.peers[a].delivered));
        while !open.is_empty() {
            open.retain(|addr| {
                let peer = &self.peers[addr];
                let (window, deadline) = request_window(peer, now, unproven_in_flight, &tuning);
                if peer.requests.len() >= window {
                    return false;
                }
                let Some((name, i)) = self.pick_for(now, addr) else {
                    return false;
                };
                let f = self.files.get_mut(&name).expect("picked from files");
                f.requested.insert(i);
                f.first_asked_at.get_or_insert(now);
                let chunk = ChunkRef { file: name.clone(), size: f.size, index: i };
                self.timers.set(Timer::Request { peer: addr.clone(), file: name.clone(), index: i }, deadline);
                let peer = self.peers.get_mut(addr).expect("listed above");
                peer.requests.insert((name, i));
                if peer.delivered == 0 {
                    unproven_in_flight += 1;
                }
                let conn = peer.conn;
                let uplink_delay = self.uplink_delay_of(now, conn);
                self.net.push_back(NetCommand::Send {
                    conn,
                    envelope: envelope(&self.config.me, PeerMessage::Download { chunk, uplink_delay }.into()),
                });
                true
            });
        }
    }

    /// The next chunk to ask `addr` for. Picks go on along a run of chunks only that
    /// peer has; when the run ends, the rarest chunk it can give us, scanning on from
    /// there. A seeder (a peer holding the whole file) is the scarce one, since every
    /// fetcher waits on its uplink, and fetchers do not see each other's requests: so
    /// the chunks only it has are split into stripes, one per fetcher ([`Node::stripes`]),
    /// each asking for its own, then helping with those left ([`Stripes::help`]); and,
    /// while it serves us no faster than our other peers and some chunk has a single
    /// holder, it is not asked for a chunk a fellow fetcher holds while they have our
    /// requests. On links where the seeder is the bottleneck it then sends each chunk
    /// about once.
    fn pick_for(&mut self, now: Millis, addr: &PeerAddr) -> Option<(FileName, ChunkIndex)> {
        let dice = self.random();
        let peer = &self.peers[addr];
        let walking = peer.cursor.file.clone();
        if let Some(name) = &walking {
            let next = ChunkIndex(peer.cursor.next);
            let f = self.files.get(name).filter(|f| self.fetchable(name, f));
            let on = !peer.cursor.crossed && f.zip(peer.files.get(name)).is_some_and(|(f, h)| f.sole_wanted(h, next));
            // A walk goes on through a seeder's chunks only in our stripe (helping with
            // another's picks afresh each time: `Stripes::help`).
            let seeder = peer.files.get(name).is_some_and(|h| h.is_complete());
            let go = on && (!seeder || self.stripes(now, addr, name).mine().contains(&next.get()));
            if go {
                let cursor = &mut self.peers.get_mut(addr).expect("looked up above").cursor;
                cursor.next += 1;
                return Some((name.clone(), next));
            }
        }
        let mut best: Option<(FileName, ChunkIndex, u16)> = None;
        for (name, held) in &peer.files {
            let Some(f) = self.files.get(name) else {
                continue;
            };
            if held.count() == 0 || !self.fetchable(name, f) {
                continue;
            }
            let words = held.word_count().max(1) as u64;
            let start = match walking.as_ref() == Some(name) {
                true => u64::from(peer.cursor.next % f.chunk_count().max(1)) / 64,
                false => dice,
            } % words;
            let Some((mut i, count)) = f.rarest_wanted(held, start as usize) else {
                continue;
            };
            if count <= 1 && held.is_complete() {
                // A seeder's chunk: asked for in our stripe, then in those that lag.
                // With none to ask for, this file waits for the other fetchers here;
                // other files need not.
                let walking_here = walking.as_ref() == Some(name);
                let Some(mine) = self.stripe_pick(now, addr, name, i, walking_here, dice) else {
                    continue;
                };
                i = mine;
            }
            if best.as_ref().is_none_or(|b| count < b.2) {
                best = Some((name.clone(), i, count));
                if count <= 1 {
                    break;
                }
            }
        }
        let (name, i, count) = best?;
        if count > 1 && peer.files[&name].is_complete() && self.files[&name].has_sole_chunks() {
            // A fetcher like us may have it too. While some chunk has a single holder (the
            // seeder, as a rule), a seeder that serves us no faster than others do is the
            // scarce one (every fetcher waits on its uplink): keep it for what only it has
            // while the others serve us. One faster has room for more; and once every chunk
            // has a second holder, it is one peer among others (with a wide uplink it must
            // go on serving: on links where it holds a quarter of all uplink, kept idle
            // from then on it sent 1.6–1.9 copies where the bound asks for 2).
            let others = || self.peers.iter().filter(|(a, _)| *a != addr).map(|(_, p)| p);
            let fastest_other = others().filter_map(|p| p.rate.per_second()).max();
            let scarce = peer.rate.per_second().is_none_or(|r| fastest_other.is_some_and(|o| r <= o));
            if scarce
                && others().map(|p| p.requests.len()).sum::<usize>() >= MIN_WINDOW
                && others().any(|p| p.files.get(&name).is_some_and(|h| !h.is_complete() && h.contains(i)))
            {
                return None;
            }
        }
        let cursor = &mut self.peers.get_mut(addr).expect("looked up above").cursor;
        *cursor = PickCursor { file: Some(name.clone()), next: i.get() + 1, run_start: i.get(), crossed: false };
        Some((name, i))
    }

    /// Which of the chunks only `seeder` holds of `name` to ask it for (`scanned` being
    /// the scan's pick): the first in our stripe that we still want; once our stripe is
    /// asked for, one of a stripe that lags ([`Stripes::help`]), or none (the rest are
    /// others', who would ask for the same chunks unseen). Fetching them alone, anywhere,
    /// starting at a random chunk so that those starting together do not all ask for
    /// the first ones, then in order.
    fn stripe_pick(
        &self,
        now: Millis,
        seeder: &PeerAddr,
        name: &FileName,
        scanned: ChunkIndex,
        walking_here: bool,
        dice: u64,
    ) -> Option<ChunkIndex> {
        let f = self.files.get(name)?;
        let held = self.peers.get(seeder)?.files.get(name)?;
        let stripes = self.stripes(now, seeder, name);
        if stripes.parts > 1 {
            let mine = stripes.mine();
            if let Some(c) = mine.clone().map(ChunkIndex).find(|&c| f.sole_wanted(held, c)) {
                return Some(c);
            }
            // Outside our class of helped chunks, where other helpers may be asking too,
            // one request at a time.
            let beyond = |(n, c): &&(FileName, ChunkIndex)| n == name && !mine.contains(&c.get());
            let astray = self.peers.get(seeder)?.requests.iter().filter(beyond).any(|(_, c)| !stripes.in_class(*c));
            // The last few of a stripe are its fetcher's, unless it has gone quiet.
            let helpable = |r: u64, left: usize| left >= HELP_MIN || self.stripe_quiet(now, seeder, name, &stripes, r);
            return stripes.help(f, held, dice, !astray, helpable);
        }
        if stripes.parts == 0 {
            return None;
        }
        if walking_here {
            return Some(scanned);
        }
        let mut rng = dice;
        let n = f.chunk_count().max(1);
        let mut probes = std::iter::repeat_with(|| ChunkIndex(xorshift(&mut rng) as u32 % n)).take(32);
        Some(probes.find(|&c| f.sole_wanted(held, c)).unwrap_or(scanned))
    }

    /// How the chunks of `name` that `seeder` holds are split into stripes, one per
    /// fetcher. The file is split evenly, in address order, among those fetching chunks
    /// only a seeder has: the links (other than `seeder`) that announced such a chunk in
    /// the last [`SOLE_NEWS_FRESH`], at first all those that do not hold the whole file
    /// ([`Node::fellow_fetchers`]), and us while we store such chunks (or have not yet, or
    /// have heard from no fellow). Fetchers linked alike hear the same, so they draw the
    /// same stripes and, until they help with each other's, none asks the seeder for a
    /// chunk another asks for; one that stops (it left, or stalled) drops out after
    /// [`SOLE_NEWS_FRESH`] and the others share what is left. Where views differ (links
    /// coming up; a node relaying a seeder's chunks to us from a peer we do not see looks
    /// like their fetcher), the stripes differ too, until that news goes stale.
    fn stripes(&self, now: Millis, seeder: &PeerAddr, name: &FileName) -> Stripes {
        let Some(f) = self.files.get(name) else {
            return Stripes::NONE;
        };
        let (mut before_me, mut others, mut heard) = (0u64, 0u64, 0u64);
        for (a, at) in self.fellow_fetchers(now, seeder, name, f) {
            others += 1;
            heard += u64::from(at.is_some());
            before_me += u64::from(*a < self.config.me);
        }
        // Having stopped storing such chunks, we leave them to those still announcing
        // theirs; not to fellows only presumed to fetch, who may think the same of us.
        if !(f.sole_stored_at.is_none_or(|at| now < at + SOLE_NEWS_FRESH) || heard == 0) {
            return Stripes::NONE;
        }
        Stripes { chunks: u64::from(f.chunk_count()), parts: others + 1, me: before_me }
    }

    /// The other fetchers of `seeder`'s chunks of `name`, in address order, each with when
    /// it last announced one (see [`Node::stripes`]): the links that did so in the last
    /// [`SOLE_NEWS_FRESH`], and, for [`PRESUMED_FOR`] after our first request for the
    /// file, those that have not (no time). Presumed to fetch from the start, all draw the
    /// same stripes from the first pick, where counting fetchers only as their news came
    /// in made the first second's picks cross (26 chunks asked of the seeder twice on
    /// shaped links). A presumed fellow's stripe is quiet ([`Node::stripe_quiet`]), so if
    /// it does not fetch (it wants other files, or has no link to the seeder) others help
    /// with it; after [`PRESUMED_FOR`] only fellows heard from count.
    fn fellow_fetchers<'a>(
        &'a self,
        now: Millis,
        seeder: &'a PeerAddr,
        name: &'a FileName,
        f: &'a FileState,
    ) -> impl Iterator<Item = (&'a PeerAddr, Option<Millis>)> + 'a {
        let presuming = f.first_asked_at.is_none_or(|at| now < at + PRESUMED_FOR);
        self.peers.iter().filter_map(move |(a, p)| {
            let fetching = a != seeder && !p.leaving && !p.files.get(name).is_some_and(|h| h.is_complete());
            match f.sole_news.get(a) {
                _ if !fetching => None,
                None => presuming.then_some((a, None)),
                Some(&at) => (now < at + SOLE_NEWS_FRESH).then_some((a, Some(at))),
            }
        })
    }

    /// Whether the fetcher of stripe `r` has announced none of the seeder's chunks for
    /// [`STRIPE_QUIET`]: what is left of its stripe is anyone's to help with, however
    /// little (views of who fetches differ for a while; a stripe nobody thinks is theirs
    /// would otherwise wait until that news goes stale).
    fn stripe_quiet(&self, now: Millis, seeder: &PeerAddr, name: &FileName, stripes: &Stripes, r: u64) -> bool {
        let Some(f) = self.files.get(name) else { return false };
        // Fellows come in address order, as stripes are drawn; ours is not among them.
        let fellow = match r.cmp(&stripes.me) {
            std::cmp::Ordering::Equal => return false,
            std::cmp::Ordering::Less => r,
            std::cmp::Ordering::Greater => r - 1,
        };
        let mut fellows = self.fellow_fetchers(now, seeder, name, f);
        fellows.nth(fellow as usize).is_some_and(|(_, at)| at.is_none_or(|at| now >= at + STRIPE_QUIET))
    }

    /// Whether chunks of `name` are fetched now: its manifest is here, storage has made
    /// room, it is wanted and not complete.
    fn fetchable(&self, name: &FileName, f: &FileState) -> bool {
        f.manifest.is_some() && !f.preparing && f.refused.is_none() && !f.have.is_complete() && self.wants(name)
    }

    /// The next number of the node's xorshift generator (seeded from its config).
    pub(super) fn random(&mut self) -> u64 {
        xorshift(&mut self.rng)
    }

    // -----------------------------------------------------------------------------
    // Requests ending without an answer.

    /// Forgets our request of chunk `i` of `file` from `addr`, so that the chunk may be
    /// asked of anyone again; returns whether there was one.
    pub(super) fn forget_request(&mut self, addr: &PeerAddr, file: &FileName, i: ChunkIndex) -> bool {
        if !self.peers.get_mut(addr).is_some_and(|p| p.requests.remove(&(file.clone(), i))) {
            return false;
        }
        self.timers.cancel(Timer::Request { peer: addr.clone(), file: file.clone(), index: i });
        if let Some(f) = self.files.get_mut(file) {
            f.requested.remove(i);
        }
        true
    }

    /// Forgets our request of the manifest of `file` from `addr`; returns whether there
    /// was one.
    fn forget_manifest_request(&mut self, addr: &PeerAddr, file: &FileName) -> bool {
        if !self.peers.get_mut(addr).is_some_and(|p| p.manifest_requests.remove(file)) {
            return false;
        }
        self.timers.cancel(Timer::ManifestRequest { peer: addr.clone(), file: file.clone() });
        true
    }

    /// Drops the requests in flight for `only` (a file removed from the network: chunks
    /// and manifest), or every chunk request when `None` (leaving: no more chunks are
    /// wanted; a manifest asked for is still taken when it comes, so it is no surprise).
    pub(super) fn forget_requests_for(&mut self, only: Option<&FileName>) {
        let of_it = |file: &FileName| only.is_none_or(|o| o == file);
        for (addr, peer) in &mut self.peers {
            let dropped: Vec<(FileName, ChunkIndex)> =
                peer.requests.iter().filter(|(f, _)| of_it(f)).cloned().collect();
            for (file, i) in dropped {
                peer.requests.remove(&(file.clone(), i));
                self.timers.cancel(Timer::Request { peer: addr.clone(), file: file.clone(), index: i });
                if let Some(f) = self.files.get_mut(&file) {
                    f.requested.remove(i);
                }
            }
            if let Some(file) = only.filter(|f| peer.manifest_requests.remove(*f)) {
                self.timers.cancel(Timer::ManifestRequest { peer: addr.clone(), file: file.clone() });
                if let Some(f) = self.files.get_mut(file) {
                    f.manifest_from = None;
                }
            }
        }
    }

    /// A manifest request went unanswered: the manifest may be asked of anyone again.
    pub(super) fn manifest_request_expired(&mut self, now: Millis, addr: &PeerAddr, file: &FileName) {
        if self.forget_manifest_request(addr, file) {
            if let Some(f) = self.files.get_mut(file) {
                f.manifest_from = None;
            }
            self.stall(now, addr);
        }
    }

    /// `addr` let a request time out: its other chunk requests are given up too, so that
    /// others may be asked, and it is asked nothing for a while (longer each time).
    pub(super) fn stall(&mut self, now: Millis, addr: &PeerAddr) {
        let (min, max) = (self.config.tuning.stall_min, self.config.tuning.stall_max);
        let Some(peer) = self.peers.get_mut(addr) else {
            return;
        };
        let rest = min.saturating_mul(1 << peer.stalls.min(16)).min(max);
        peer.stalls += 1;
        peer.stalled_until = now + rest;
        let pending: Vec<(FileName, ChunkIndex)> = peer.requests.iter().cloned().collect();
        for (file, i) in pending {
            self.forget_request(addr, &file, i);
        }
        self.timers.set(Timer::Stalled(addr.clone()), now + rest);
    }

    /// `addr` answered ErrFileMissing about a file or chunk we asked it for.
    pub(super) fn not_held(&mut self, addr: &PeerAddr, about: FileRef) {
        if !self.peers.contains_key(addr) {
            return;
        }
        match about.chunk {
            Some((_, i)) => {
                if self.forget_request(addr, &about.name, i) {
                    // It does not hold it after all: stop counting it there.
                    let peer = self.peers.get_mut(addr).expect("checked above");
                    if let Some(f) = self.files.get_mut(&about.name) {
                        if peer.files.get_mut(&about.name).is_some_and(|s| s.remove(i)) {
                            f.remove_claim(i);
                        }
                        if let Some(proven) = peer.proven.get_mut(&about.name) {
                            proven.remove(i);
                        }
                    }
                }
            }
            None => {
                self.forget_manifest_request(addr, &about.name);
                if let Some(f) = self.files.get_mut(&about.name) {
                    f.manifest_from = None;
                }
            }
        }
    }

    // -----------------------------------------------------------------------------
    // Answers.

    pub(super) fn on_manifest(&mut self, addr: &PeerAddr, file: FileName, size: u64, digest: Digest, hashes: &[u8]) {
        let asked = self.forget_manifest_request(addr, &file);
        if asked {
            if let Some(f) = self.files.get_mut(&file) {
                f.manifest_from = None;
            }
        }
        // Answering our request, or pushed by a leaving peer, which announced the file
        // before. Any other manifest is not taken: it would make us keep its hashes and
        // prepare room for a file nobody offered. A file this node does not fetch (a
        // download dropped while its manifest was on the way) takes one only from a
        // peer that is leaving.
        let announced = self.peers.get(addr).is_some_and(|p| p.files.contains_key(&file));
        let pushed = announced && (self.wants(&file) || self.peers.get(addr).is_some_and(|p| p.leaving));
        if !asked && !pushed {
            self.events.push_back(Event::ManifestIgnored { peer: addr.clone(), file });
            return;
        }
        // Either way it must be consistent with its digest and with what we already
        // know of the file.
        if !self.may_announce(addr, &file, size) || !self.learn_file(addr, &file, size, Some(digest)) {
            return;
        }
        self.peer_holds_file(addr, &file);
        let f = self.files.get_mut(&file).expect("learn_file tracks it");
        if f.manifest.is_some() {
            return;
        }
        match Manifest::from_body(size, digest, hashes) {
            Ok(manifest) => {
                f.manifest = Some(manifest.clone());
                f.preparing = true;
                self.storage.push_back(StorageCommand::Prepare { file: file.clone(), manifest });
                if f.have.is_complete() {
                    // An empty file is complete as soon as it exists; the others are told
                    // once storage has kept it (`on_prepared`).
                    self.storage.push_back(StorageCommand::Finalize { file: file.clone(), digest });
                    self.events.push_back(Event::FileComplete { file: file.clone(), size });
                }
            }
            Err(_) => self.strike(addr),
        }
    }

    pub(super) fn on_upload(
        &mut self,
        now: Millis,
        addr: &PeerAddr,
        chunk: ChunkRef,
        data: Bytes,
        hash: Option<ChunkHash>,
    ) {
        let i = chunk.index;
        if !self.peers.contains_key(addr) {
            return;
        }
        self.forget_request(addr, &chunk.file, i);
        let Some(f) = self.files.get_mut(&chunk.file) else {
            return;
        };
        if matches!(self.membership, Membership::Leaving(_)) || f.size != chunk.size || f.refused.is_some() {
            return;
        }
        let Some(manifest) = &f.manifest else { return };
        if f.have.contains(i) {
            // Pushed by a leaving peer that could not know we hold it: say so, or its
            // leave waits for a confirmation that never comes.
            let have = PeerMessage::Have(vec![HaveEntry { chunk, digest: Some(f.digest) }]);
            let conn = self.peers[addr].conn;
            self.send(conn, have);
            return;
        }
        if f.writing.contains(i) {
            return;
        }
        let verified = match hash {
            Some(hash) => manifest.verify_hashed(i, data.len(), &hash),
            None => manifest.verify(i, &data),
        };
        if !verified {
            self.events.push_back(Event::ChunkRejected { peer: addr.clone(), chunk });
            self.strike(addr);
            return;
        }
        f.writing.insert(i);
        self.writing += 1;
        let peer = self.peers.get_mut(addr).expect("checked above");
        peer.delivered += data.len() as u64;
        peer.rate.record(now, data.len() as u64);
        peer.stalls = 0;
        self.proves(addr, &chunk.file, i);
        self.haves.sources.insert((chunk.file.clone(), i), addr.clone());
        self.storage.push_back(StorageCommand::Write { chunk, data });
    }

    pub(super) fn on_written(&mut self, now: Millis, chunk: ChunkRef, result: Result<(), StorageError>) {
        let Some(f) = self.files.get_mut(&chunk.file) else {
            return;
        };
        // A write for other content (the file was removed, and the name taken again
        // since) is none of this file's.
        if !f.writing.remove(chunk.index) {
            return;
        }
        self.writing -= 1;
        let source = self.haves.sources.remove(&(chunk.file.clone(), chunk.index));
        if let Err(e) = result {
            self.timers.set(Timer::FetchPause, now + self.config.tuning.storage_backoff);
            self.events.push_back(Event::StorageFailed { file: chunk.file, message: e.message });
            return;
        }
        if !f.mark_held(chunk.index) {
            return;
        }
        self.chunks_fetched += 1;
        self.bytes_fetched += chunk_len(chunk.size, chunk.index) as u64;
        if self.haves.pending.is_empty() && self.config.tuning.have_delay > 0 {
            self.timers.set(Timer::Have, now + self.config.tuning.have_delay);
        }
        self.haves.pending.push((HaveEntry { chunk: chunk.clone(), digest: Some(f.digest) }, source));

        if f.have.is_complete() {
            let (size, digest) = (f.size, f.digest);
            self.storage.push_back(StorageCommand::Finalize { file: chunk.file.clone(), digest });
            self.events.push_back(Event::FileComplete { file: chunk.file.clone(), size });
        }
        // A fast download fills a batch long before the delay: no need to wait then. A
        // chunk only its source held is news that cannot wait: until others hear of it,
        // they may ask that source for it too (typically a seeder, whose uplink is the
        // swarm's scarcest resource).
        let news = f.peer_count(chunk.index) <= 1;
        if news {
            f.sole_stored_at = Some(now);
        }
        if news || self.haves.pending.len() >= HAVE_BATCH {
            self.timers.cancel(Timer::Have);
            self.flush_have();
        }
        self.plan_more(&chunk.file, [chunk.index]);
    }
}

impl Node {
    /// Storage answered a Prepare: a file that does not fit is asked again later, one
    /// that cannot be stored at all (a symlink in its way…) is refused for good; either
    /// way nothing of it is fetched meanwhile.
    pub(super) fn on_prepared(&mut self, now: Millis, file: FileName, result: Result<(), StorageError>) {
        let Some(f) = self.files.get_mut(&file) else { return };
        f.preparing = false;
        match result {
            Ok(()) => {
                f.refused = None;
                if f.chunk_count() == 0 {
                    // All there is of an empty file is kept now: it may be listed.
                    self.announce(&file);
                }
            }
            Err(e) => {
                if e.code == Code::NoSpace {
                    self.timers.set(Timer::SpaceRetry(file.clone()), now + self.config.tuning.space_retry);
                }
                self.refuse(&file, e.message);
            }
        }
    }

    pub(super) fn prepare_again(&mut self, file: &FileName) {
        let Some(f) = self.files.get_mut(file) else { return };
        let Some(manifest) = f.manifest.clone() else { return };
        f.preparing = true;
        self.storage.push_back(StorageCommand::Prepare { file: file.clone(), manifest });
    }

    pub(super) fn on_finalized(&mut self, file: FileName, result: Result<Option<String>, StorageError>) {
        let Some(f) = self.files.get_mut(&file) else { return };
        match result {
            Ok(None) => {}
            Ok(Some(path)) => {
                f.stored_as = Some(path.clone());
                self.events.push_back(Event::StoredAsConflictCopy { file, path });
            }
            Err(e) => self.refuse(&file, e.message),
        }
    }

    /// Records why `file` is not stored here and stops fetching it.
    fn refuse(&mut self, file: &FileName, reason: String) {
        let Some(f) = self.files.get_mut(file) else { return };
        if f.refused.as_ref() != Some(&reason) {
            f.refused = Some(reason.clone());
            self.events.push_back(Event::FileRefused { file: file.clone(), reason });
        }
    }
}

/// The fewest of a seeder's chunks a stripe must have left to be helped with
/// ([`Stripes::help`]): fewer are its fetcher's, most of them asked for already...
const HELP_MIN: usize = 16;
/// ...unless that fetcher has announced none of the seeder's chunks this long.
const STRIPE_QUIET: Millis = 1_000;
/// Requests in flight to a peer that has delivered, however slow it is.
pub(super) const MIN_WINDOW: usize = 4;
/// How long after our first request for a file its linked peers are presumed to fetch
/// its seeder's chunks without having announced one ([`Node::fellow_fetchers`]): long
/// enough for fetchers' first such chunks to arrive and be announced, short enough that
/// links that never fetch do not hold stripes for long.
const PRESUMED_FOR: Millis = 2_000;
/// How long after announcing a chunk only a seeder held a participant still counts as
/// fetching from it, with a stripe of its own ([`Node::stripes`]). Fetchers announce such
/// chunks many times a second; one done with its stripe keeps its place this long, so
/// stripes do not move under the others while most are still at work; one that stalled
/// has its stripe shared out after this long.
const SOLE_NEWS_FRESH: Millis = 10_000;

/// How many requests `peer` may have outstanding now, and the deadline of one asked now:
/// none while it stalls; one that has delivered nothing shares the unproven allowance
/// (`unproven_in_flight` of it taken) under a short timeout.
fn request_window(peer: &PeerState, now: Millis, unproven_in_flight: usize, tuning: &Tuning) -> (usize, Millis) {
    match peer.delivered {
        _ if peer.stalled_until > now => (0, now),
        0 if unproven_in_flight >= tuning.unproven_requests => (0, now),
        0 => (usize::MAX, now + tuning.unproven_request_timeout),
        _ => (window(peer, tuning.requests_per_peer, tuning.request_queue_time), now + tuning.request_timeout),
    }
}

/// Requests in flight to a peer that has delivered: growing by one with each chunk it
/// delivers at first (so a fast link opens up within a few round trips), then what it
/// delivers in `queue_time`, never more than `full`.
fn window(peer: &PeerState, full: usize, queue_time: Millis) -> usize {
    let started = MIN_WINDOW + (peer.delivered / CHUNK_SIZE) as usize;
    let paced = peer.rate.per_second().map_or(usize::MAX, |r| (r * queue_time / 1000 / CHUNK_SIZE) as usize);
    started.min(paced.max(MIN_WINDOW)).min(full)
}

/// The chunks of a file split evenly, in order, into `parts` stripes, one per fetcher of
/// a seeder's chunks; ours is number `me`. No parts: we are not among its fetchers.
struct Stripes {
    chunks: u64,
    parts: u64,
    me: u64,
}

impl Stripes {
    const NONE: Stripes = Stripes { chunks: 0, parts: 0, me: 0 };

    fn range(&self, r: u64) -> std::ops::Range<u32> {
        let at = |r: u64| (self.chunks * r / self.parts.max(1)) as u32;
        at(r)..at(r + 1)
    }

    fn mine(&self) -> std::ops::Range<u32> {
        self.range(self.me)
    }

    /// With our stripe asked for: a chunk of the `helpable` stripe with the most of the
    /// seeder's chunks still to fetch. Fetchers' shares of the seeder's uplink differ
    /// (on shaped links some got a quarter of the others' rate from the start, their
    /// flows sharing one queue), so stripes finish at different times; without
    /// help, a stripe's last chunks all came through one downlink and left from one
    /// uplink to all the others, while the seeder's uplink stood half idle. Its fetcher
    /// works from the front; helpers pick at random in the back half of what is open,
    /// each in its own class of chunks ([`Stripes::in_class`]) while there are any
    /// there, and in the others (`astray_ok`) only a chunk at a time, so that two
    /// rarely ask for the same one.
    fn help(
        &self,
        f: &FileState,
        seeder_has: &crate::bitset::ChunkSet,
        dice: u64,
        astray_ok: bool,
        helpable: impl Fn(u64, usize) -> bool,
    ) -> Option<ChunkIndex> {
        let left = |r: u64| f.count_sole_anew(self.range(r));
        let (_, target) = (0..self.parts)
            .filter(|&r| r != self.me)
            .map(|r| (left(r), r))
            .filter(|&(l, r)| l > 0 && helpable(r, l))
            .max()?;
        // Only there. Looking on to the next when that one has nothing for us (our
        // class asked for) made helpers meet more: in the simulator's cut-off test the
        // seeder sent 1.44 copies instead of 1.21.
        let open = f.sole_wanted_in(seeder_has, self.range(target));
        let back = &open[open.len() / 2..];
        let ours: Vec<ChunkIndex> = back.iter().copied().filter(|&c| self.in_class(c)).collect();
        let pool = match ours.is_empty() {
            false => &ours[..],
            true if astray_ok => back,
            true => &[],
        };
        (!pool.is_empty()).then(|| pool[(dice % pool.len() as u64) as usize])
    }

    /// Whether chunk `c` is in our class of the chunks we help with. Those of another's
    /// stripe are split by index modulo the number of the other fetchers (all but its
    /// own): class k is the k-th of them in address order.
    fn in_class(&self, c: ChunkIndex) -> bool {
        if self.parts < 2 || u64::from(c.get()) >= self.chunks {
            return false;
        }
        // The last stripe starting at or before `c`: range(r) starts at ⌊chunks·r/parts⌋.
        let owner = ((u64::from(c.get()) + 1) * self.parts - 1) / self.chunks;
        owner != self.me && u64::from(c.get()) % (self.parts - 1) == self.me - u64::from(self.me > owner)
    }
}

/// One step of a xorshift generator: cheap, deterministic, good enough to spread picks.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
