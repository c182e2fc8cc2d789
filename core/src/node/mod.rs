//! The node state machine: every protocol decision a participant makes.
//!
//! Drivers feed it inputs (`handle_*`, with the current time in milliseconds from any
//! fixed origin) and after each input drain its outputs until empty:
//! [`Node::poll_net`] (messages to send, connections to open or close),
//! [`Node::poll_storage`] (chunks to read or write, files to import or finalise),
//! [`Node::poll_event`] (for logs and user interfaces) and [`Node::poll_timeout`]
//! (when to call [`Node::handle_timeout`]). It never blocks, reads a clock or does I/O.
//!
//! This module holds the public API and dispatches each input to the room that
//! decides on it:
//! - `api`: the inputs and outputs ([`Config`], [`NetCommand`], [`StorageCommand`],
//!   [`StorageEvent`], [`Event`]…);
//! - `membership`: Join, Leave and the leave plan that pushes away sole-held chunks; peers
//!   introducing themselves (Add, Files) and leaving (Remove);
//! - `overlay`: bounded links and gossip: which peers to link to, every participant's
//!   record, failure detection, and far participants counted in the status;
//! - `query`: the Query answer;
//! - `peers`: connections and peers — introductions, file lists, strikes, bans, redials;
//! - `fetching`: manifests and chunks we ask for, their verification and timeouts;
//! - `serving`: chunks and manifests peers ask of us, and what we tell them we hold;
//! - `identities`: in a private network, which key may speak for which address (pins,
//!   first use) and which keys are banned;
//! - `control`: who may control the node (the token) and the throttling of guesses;
//! - `limits`: the bandwidth limits a control client sets (the driver enforces them);
//! - `uplink`: the automatic upload limit, from the one-way delays peers measure;
//! - `imports`: Insert, from a control client or the driver ([`Node::insert`]), and
//!   where a remote client may insert from; adopting a file found in the folder;
//! - `copies`: this node's own copies in its folder: where each is, and one deleted by
//!   hand, fetched again ([`Node::local_copy_gone`]);
//! - `removal`: Delete (remove a file network-wide) and the tombstones that keep it
//!   removed;
//! - `exports`: control Torrent, a file held complete handed to the driver to export to
//!   BitTorrent;
//! - `adds`: control AddTorrent, a torrent the driver downloads, its files inserted;
//! - `timers`: every deadline, in order.

mod adds;
mod api;
mod control;
mod copies;
mod exports;
mod fetching;
mod identities;
mod imports;
mod limits;
mod membership;
mod overlay;
mod peers;
mod query;
mod removal;
mod serving;
mod timers;
mod uplink;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use api::{
    Config, ConnId, ConnInfo, Event, ImportId, LocalFile, Millis, NetCommand, Refusal, StorageCommand, StorageError,
    StorageEvent, Tuning,
};
use control::Guesses;
use identities::Identities;
pub use imports::check_insert_source;
use imports::{InsertFrom, PendingImport};
use membership::Membership;
use overlay::Overlay;
use peers::{ConnState, PeerState, Proven, Redial};
use removal::Graveyard;
use serving::PendingHaves;
use timers::{Timer, Timers};

use crate::files::{FileState, FileTable};
use crate::manifest::ChunkHash;
use crate::name::FileName;
use crate::wire::{Code, Control, Envelope, Message, PeerAddr, PeerMessage, RateLimits, Reply};

/// A participant of the network. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    config: Config,
    membership: Membership,
    overlay: Overlay,
    files: FileTable,
    conns: BTreeMap<ConnId, ConnState>,
    peers: BTreeMap<PeerAddr, PeerState>,
    /// Peers banned by address (open networks; private ones ban keys, in `identities`).
    banned: BTreeSet<PeerAddr>,
    identities: Identities,
    guesses: Guesses,
    /// Lost peers to dial again.
    redial: BTreeMap<PeerAddr, Redial>,
    /// Accepted connections that have not introduced themselves yet, oldest first; each
    /// has a [`Timer::Introduction`].
    unintroduced: BTreeSet<ConnId>,
    imports: BTreeMap<ImportId, PendingImport>,
    adds: BTreeMap<ImportId, adds::PendingAdd>,
    graveyard: Graveyard,
    next_import: u64,
    haves: PendingHaves,
    /// Files to fetch; `None` means every file the network has.
    wanted: Option<BTreeSet<FileName>>,
    /// Chunks handed to storage and not yet written, across files.
    writing: usize,
    chunks_fetched: u64,
    chunks_served: u64,
    bytes_fetched: u64,
    bytes_served: u64,
    /// Enforced by the driver; kept here to answer Limit and Query.
    limits: RateLimits,
    uplink: uplink::Uplink,
    rng: u64,
    timers: Timers,
    net: VecDeque<NetCommand>,
    storage: VecDeque<StorageCommand>,
    events: VecDeque<Event>,
}

impl Node {
    pub fn new(mut config: Config) -> Self {
        let me = config.me.clone();
        config.peers.retain(|p| *p != me);
        config.peers.dedup();
        // Mixed (splitmix64's finaliser): seeds that differ in a bit, as a simulation's
        // numbered nodes, must not start the same or correlated xorshift streams.
        let mut z = config.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let rng = (z ^ (z >> 31)) | 1;
        Self {
            config,
            membership: Membership::NotJoined,
            overlay: Overlay::default(),
            files: FileTable::default(),
            conns: BTreeMap::new(),
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            identities: Identities::default(),
            guesses: Guesses::default(),
            redial: BTreeMap::new(),
            unintroduced: BTreeSet::new(),
            imports: BTreeMap::new(),
            adds: BTreeMap::new(),
            graveyard: Graveyard::default(),
            next_import: 0,
            haves: PendingHaves::default(),
            wanted: None,
            writing: 0,
            chunks_fetched: 0,
            chunks_served: 0,
            bytes_fetched: 0,
            bytes_served: 0,
            limits: RateLimits::default(),
            uplink: uplink::Uplink::default(),
            rng,
            timers: Timers::default(),
            net: VecDeque::new(),
            storage: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn me(&self) -> &PeerAddr {
        &self.config.me
    }

    /// The peer `conn` speaks for, once it has said (or its key proved) who it is.
    pub fn peer_of(&self, conn: ConnId) -> Option<&PeerAddr> {
        self.conns.get(&conn)?.peer.as_ref()
    }

    pub fn is_joined(&self) -> bool {
        !matches!(self.membership, Membership::NotJoined)
    }

    /// Registers a file found on disk at start-up (or, if a tombstone restored with
    /// [`Node::restore_tombstone`] kills it, has storage delete it).
    pub fn add_local_file(&mut self, file: LocalFile) {
        if self.buried_at_start(&file.name, file.manifest.digest(), file.stored_as.clone()) {
            return;
        }
        let mut state = FileState::new(file.manifest.size(), file.manifest.digest());
        for i in file.have.iter() {
            state.mark_held(i);
        }
        if state.have.is_complete() && !file.published {
            let digest = file.manifest.digest();
            self.storage.push_back(StorageCommand::Finalize { file: file.name.clone(), digest });
        }
        state.manifest = Some(file.manifest);
        state.stored_as = file.stored_as;
        self.files.insert(file.name, state);
    }

    /// Fetches only files asked for with [`Node::request_file`] (a browser peer, whose
    /// storage is small), instead of every file the network has.
    pub fn fetch_on_request(&mut self) {
        self.wanted.get_or_insert_with(BTreeSet::new);
    }

    /// Fetches `file` (with [`Node::fetch_on_request`]; otherwise everything is fetched).
    pub fn request_file(&mut self, now: Millis, file: &FileName) {
        if let Some(wanted) = &mut self.wanted {
            wanted.insert(file.clone());
        }
        self.after_input(now);
    }

    /// Leaves as if the owner's client had asked (for a graceful shutdown); watch
    /// [`Node::is_joined`] to see it finish.
    pub fn leave(&mut self, now: Millis) {
        if matches!(self.membership, Membership::Joined | Membership::Joining { .. }) {
            self.finish_join();
            self.start_leave(now, None);
        }
    }

    /// Joins as if the owner's client had asked (for `--join` at start).
    pub fn join(&mut self, now: Millis) {
        if !self.is_joined() {
            self.start_join(now, None);
        }
    }

    /// Inserts the file at `path` as the owner's local client's Insert would, for a driver
    /// that is its own user (the browser peer); the outcome comes out as
    /// [`Event::Inserted`] with the id returned here.
    pub fn insert(&mut self, now: Millis, path: String) -> ImportId {
        let id = self.start_insert(InsertFrom::Driver, path);
        self.after_input(now);
        id
    }

    /// Adopts the file `name` found in the node's own folder (a shared folder): hashed
    /// in place and published like an insert, unless the network has other content
    /// under the name (the user's file is then left alone). The outcome comes out as
    /// [`Event::Adopted`] with the id returned here.
    pub fn adopt(&mut self, now: Millis, name: FileName) -> ImportId {
        let id = self.start_adopt(name);
        self.after_input(now);
        id
    }

    // -----------------------------------------------------------------------------
    // Outputs.

    pub fn poll_net(&mut self) -> Option<NetCommand> {
        if self.net.is_empty() && self.config.tuning.have_delay == 0 {
            self.flush_have();
        }
        self.net.pop_front()
    }

    pub fn poll_storage(&mut self) -> Option<StorageCommand> {
        self.storage.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// The oldest accepted connection that has not introduced itself, if any: a driver
    /// out of connection slots closes it to make room for a new one, so idle connections
    /// cannot lock the owner's client out.
    pub fn oldest_unintroduced(&self) -> Option<ConnId> {
        self.unintroduced.first().copied()
    }

    /// `conn` has said who it is (an Add, or a control request with the right token):
    /// it may stay open however quiet it becomes.
    fn introduced(&mut self, conn: ConnId) {
        if self.unintroduced.remove(&conn) {
            self.timers.cancel(Timer::Introduction(conn));
        }
    }

    // -----------------------------------------------------------------------------
    // Inputs.

    pub fn handle_connected(&mut self, now: Millis, conn: ConnId, info: ConnInfo) {
        let dialed = info.dialed.clone();
        let proven = info.peer.as_ref().map(Proven::of);
        if let Some(p) = &proven {
            if !self.admit_key(&p.addr, p.id) {
                // Told nothing: it never becomes a connection of ours.
                self.net.push_back(NetCommand::Close(conn));
                if let Some(addr) = &dialed {
                    self.join_answered(addr);
                }
                self.after_input(now);
                return;
            }
        }
        self.conns.insert(
            conn,
            ConnState {
                peer: None,
                proven,
                dialed: info.dialed,
                local: info.local,
                control: false,
                serving: 0,
                token_failures: 0,
            },
        );
        if dialed.is_none() {
            self.unintroduced.insert(conn);
            self.timers.set(Timer::Introduction(conn), now + self.config.tuning.intro_timeout);
        }
        if let Some(addr) = dialed {
            if matches!(self.membership, Membership::Joining { .. } | Membership::Joined | Membership::Leaving(_))
                && !self.banned.contains(&addr)
            {
                // Tombstones first: what the peer announces next is judged by them.
                self.send_tombstones(conn);
                let files = self.file_list();
                self.send(conn, PeerMessage::Add { files });
            } else {
                self.net.push_back(NetCommand::Close(conn));
            }
        }
        self.after_input(now);
    }

    pub fn handle_dial_failed(&mut self, now: Millis, addr: &PeerAddr) {
        self.join_answered(addr);
        self.dial_answered(now, addr, true);
        // A peer the peers file names that was down when we joined is tried again, as
        // one we lost is: otherwise two nodes started apart would never meet.
        self.schedule_redial(now, addr.clone(), false);
        self.after_input(now);
    }

    pub fn handle_disconnected(&mut self, now: Millis, conn: ConnId) {
        self.introduced(conn);
        self.uplink.forget(conn);
        if let Some(state) = self.conns.remove(&conn) {
            if let Some(addr) = &state.dialed {
                self.join_answered(addr);
                self.dial_answered(now, addr, false);
            }
            if let Some(addr) = state.peer {
                if self.detach(&addr, conn) {
                    let trusted = self.proved_itself(&addr);
                    self.drop_peer(&addr, false);
                    self.suspect(now, &addr);
                    self.schedule_redial(now, addr, trusted);
                } else {
                    self.restate_holdings(&addr);
                }
            }
        }
        self.after_input(now);
    }

    /// A message that could not be decoded: answer ErrBadRequest.
    pub fn handle_malformed(&mut self, now: Millis, conn: ConnId, reason: String) {
        self.events.push_back(Event::BadRequest { conn, reason: reason.clone() });
        self.reply(conn, Reply { reason: Some(reason), ..Reply::code(Code::BadRequest) });
        self.after_input(now);
    }

    pub fn handle_message(&mut self, now: Millis, conn: ConnId, envelope: Envelope) {
        self.handle_message_hashed(now, conn, envelope, None);
    }

    /// [`Node::handle_message`] for a driver that hashes chunk data itself, elsewhere
    /// (a browser, with WebCrypto off its thread): `chunk_hash` is the SHA-256 of the
    /// data of the Upload in `envelope`, compared with the manifest instead of hashing
    /// the data here. Ignored for other messages.
    pub fn handle_message_hashed(
        &mut self,
        now: Millis,
        conn: ConnId,
        envelope: Envelope,
        chunk_hash: Option<ChunkHash>,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let Envelope { from, token, message } = envelope;
        match message {
            Message::Control(control) => self.handle_control(now, conn, token, control),
            Message::Peer(message) => self.handle_peer_message(now, conn, from, message, chunk_hash),
            Message::Reply(reply) => self.on_reply(conn, reply),
        }
        self.after_input(now);
    }

    pub fn handle_storage(&mut self, now: Millis, event: StorageEvent) {
        match event {
            StorageEvent::ImportProgress { id, done, total } => self.on_import_progress(id, done, total),
            StorageEvent::Imported { id, result } => self.on_imported(id, result),
            StorageEvent::Committed { id, result } => self.on_committed(id, result),
            StorageEvent::Read { conn, chunk, push, result } => self.on_read(now, conn, chunk, push, result.map(Some)),
            StorageEvent::Sent { conn, chunk, push, result } => {
                self.on_read(now, conn, chunk, push, result.map(|()| None))
            }
            StorageEvent::Written { chunk, result } => self.on_written(now, chunk, result),
            StorageEvent::Prepared { file, result } => self.on_prepared(now, file, result),
            StorageEvent::Finalized { file, result } => self.on_finalized(file, result),
            StorageEvent::Torrent { conn, file, result } => self.on_torrent(conn, file, result),
            StorageEvent::TorrentMetadata { id, result } => self.on_torrent_metadata(id, result),
            StorageEvent::TorrentProgress { id, done, total } => self.on_torrent_progress(id, done, total),
            StorageEvent::TorrentFetched { id, result } => self.on_torrent_fetched(id, result),
        }
        self.after_input(now);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        for timer in self.timers.take_due(now) {
            match timer {
                Timer::Join => self.finish_join(),
                Timer::Leave => self.finish_leave(),
                Timer::LeavingAnswers => self.leaving_unanswered(),
                Timer::Request { peer, file, index } => {
                    if self.forget_request(&peer, &file, index) {
                        self.stall(now, &peer);
                    }
                }
                Timer::ManifestRequest { peer, file } => self.manifest_request_expired(now, &peer, &file),
                // Nothing to do but fetch again, which `after_input` does.
                Timer::Stalled(_) => {}
                Timer::Redial(addr) => self.redial_due(now, addr),
                Timer::Introduction(conn) => {
                    if self.unintroduced.remove(&conn) {
                        self.net.push_back(NetCommand::Close(conn));
                    }
                }
                // No longer set: `after_input` fetches again.
                Timer::FetchPause => {}
                Timer::SpaceRetry(file) => self.prepare_again(&file),
                Timer::TokenRefusal { conn, attempt } => self.token_refusal_due(conn, attempt),
                Timer::Gossip => self.gossip_due(now),
                Timer::Have => self.flush_have(),
                Timer::Uplink => self.uplink_tick(now),
            }
        }
        self.after_input(now);
    }

    // -----------------------------------------------------------------------------
    // Dispatch.

    fn handle_control(&mut self, now: Millis, conn: ConnId, token: Option<String>, control: Control) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.control = true;
        if !self.authorise_control(now, conn, token.as_deref()) {
            return;
        }
        self.introduced(conn);
        match control {
            Control::Join => {
                if self.is_joined() {
                    self.reply(conn, Reply::code(Code::Connected));
                } else {
                    self.start_join(now, Some(conn));
                }
            }
            Control::Leave => match self.membership {
                Membership::NotJoined | Membership::Leaving(_) => self.reply(conn, Reply::code(Code::Disconnected)),
                _ => {
                    self.finish_join();
                    self.start_leave(now, Some(conn));
                }
            },
            Control::Insert { path } => {
                self.start_insert(InsertFrom::Client(conn), path);
            }
            Control::Delete { file } => self.delete(now, conn, file),
            Control::Query { file } => {
                let mut status = self.status();
                status.chunk_map = file.and_then(|f| self.chunk_map(&f));
                self.reply(conn, Reply { status: Some(Box::new(status)), ..Reply::code(Code::Ok) });
            }
            Control::Limit { upload, download } => self.limit(conn, upload, download),
            Control::Torrent { file, trackers } => self.export_torrent(conn, file, trackers),
            Control::AddTorrent { torrent, peers } => self.start_add(conn, torrent, peers),
        }
    }

    fn handle_peer_message(
        &mut self,
        now: Millis,
        conn: ConnId,
        from: Option<PeerAddr>,
        message: PeerMessage,
        chunk_hash: Option<ChunkHash>,
    ) {
        // In a private network the handshake, not the header, says who speaks: a
        // plaintext connection may carry control actions only, and learns nothing.
        let proven = self.conns.get(&conn).and_then(|c| c.proven.as_ref()).map(|p| p.addr.clone());
        if self.config.private.is_some() && proven.is_none() {
            self.reply(conn, Reply::code(Code::BadPermission));
            return;
        }
        let from = proven.clone().or(from);
        if !self.is_joined() {
            if !matches!(message, PeerMessage::Remove) {
                self.reply(conn, Reply::code(Code::Disconnected));
            }
            return;
        }
        let known = self.conns.get(&conn).and_then(|c| c.peer.clone());
        match (message, known) {
            (PeerMessage::Add { files }, _) => match from {
                Some(addr) => self.on_add(conn, addr, files),
                None => self.handle_malformed(now, conn, "Add needs HostName and PortNumber".into()),
            },
            (PeerMessage::Files { files }, known) => {
                // The answer to our Add: the peer is who proved its key, or who we dialled.
                let dialed = self.conns.get(&conn).and_then(|c| c.dialed.clone());
                match known.or(proven).or(dialed).or(from) {
                    Some(addr) => self.on_files(conn, addr, files),
                    None => self.handle_malformed(now, conn, "Files needs HostName and PortNumber".into()),
                }
            }
            (PeerMessage::Tombstones(list), known) => {
                // Sent before the Add or Files that introduces the peer.
                let dialed = self.conns.get(&conn).and_then(|c| c.dialed.clone());
                match known.or(proven).or(dialed).or(from) {
                    Some(addr) => self.on_tombstones(now, conn, &addr, list),
                    None => self.handle_malformed(now, conn, "Tombstones needs HostName and PortNumber".into()),
                }
            }
            (_, None) => self.reply(
                conn,
                Reply { reason: Some("introduce yourself with Add first".into()), ..Reply::code(Code::BadRequest) },
            ),
            (PeerMessage::Remove, Some(addr)) => self.on_remove(now, conn, &addr),
            (PeerMessage::Gossip(gossip), Some(_)) => self.on_gossip(now, conn, *gossip),
            (PeerMessage::Leaving, Some(addr)) => self.on_leaving(conn, &addr),
            (PeerMessage::Have(entries), Some(addr)) => self.on_have(now, &addr, entries),
            (PeerMessage::Download { chunk, uplink_delay }, Some(_)) => {
                self.uplink_reported(now, conn, uplink_delay);
                self.on_download(conn, chunk)
            }
            (PeerMessage::Upload { chunk, data, stamps }, Some(addr)) => {
                self.uplink.heard(now, conn, stamps);
                self.on_upload(now, &addr, chunk, data, chunk_hash)
            }
            (PeerMessage::GetManifest { file }, Some(_)) => self.on_get_manifest(conn, file),
            (PeerMessage::Manifest { file, size, digest, hashes }, Some(addr)) => {
                self.on_manifest(&addr, file, size, digest, &hashes)
            }
        }
    }

    // -----------------------------------------------------------------------------
    // Sending.

    fn send(&mut self, conn: ConnId, message: impl Into<Message>) {
        // In a private network only a proven member learns where we are: a plaintext
        // client gets its answer without HostName and PortNumber.
        let anonymous = self.config.private.is_some() && self.conns.get(&conn).is_none_or(|c| c.proven.is_none());
        let mut envelope = envelope(&self.config.me, message.into());
        if anonymous {
            envelope.from = None;
        }
        self.net.push_back(NetCommand::Send { conn, envelope });
    }

    fn reply(&mut self, conn: ConnId, reply: Reply) {
        self.send(conn, reply);
    }
}

fn envelope(me: &PeerAddr, message: Message) -> Envelope {
    Envelope { from: Some(me.clone()), token: None, message }
}

/// Whether `given` is the control token `want`; with no token configured nothing is.
/// Compared in constant time, so timing does not reveal where a guess goes wrong.
pub fn control_token_matches(want: Option<&str>, given: Option<&str>) -> bool {
    let (Some(want), Some(given)) = (want, given) else {
        return false;
    };
    let (a, b) = (want.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::control_token_matches;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(control_token_matches(Some("abc"), Some("abc")));
        assert!(!control_token_matches(Some("abc"), Some("abd")));
        assert!(!control_token_matches(Some("abc"), Some("ab")));
        assert!(!control_token_matches(Some("abc"), None));
        assert!(!control_token_matches(None, Some("")));
    }
}
