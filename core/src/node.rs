//! The node state machine: every protocol decision a participant makes.
//!
//! Drivers feed it inputs (`handle_*`, with the current time in milliseconds from any
//! fixed origin) and after each input drain its outputs until empty:
//! [`Node::poll_net`] (messages to send, connections to open or close),
//! [`Node::poll_storage`] (chunks to read or write, files to import or finalise),
//! [`Node::poll_event`] (for logs and user interfaces) and [`Node::poll_timeout`]
//! (when to call [`Node::handle_timeout`]). It never blocks, reads a clock or does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use crate::bitset::ChunkSet;
use crate::files::FileState;
use crate::manifest::{ChunkHash, Manifest};
use crate::name::FileName;
use crate::status::Status;
use crate::wire::{
    have_entry_len, ChunkRef, Code, Envelope, FileEntry, FileRef, HaveEntry, Message, PeerAddr, Reply, HEADER_LIMIT,
};

/// Milliseconds since an origin of the driver's choosing.
pub type Millis = u64;
/// A connection, numbered by the driver.
pub type ConnId = u64;

/// Limits and timings; the defaults suit loopback and LAN alike.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Chunk requests in flight to one peer.
    pub requests_per_peer: usize,
    /// A request unanswered this long is given up and the chunk asked of someone else.
    pub request_timeout: Millis,
    /// A manifest request unanswered this long is retried.
    pub manifest_timeout: Millis,
    /// Join answers once every peer has answered or this long has passed.
    pub join_timeout: Millis,
    /// Leave waits this long for its pushed chunks to be confirmed.
    pub leave_timeout: Millis,
    /// Verified chunks waiting for storage; past this, fetching waits, so a disk
    /// slower than the network throttles requests instead of filling memory.
    pub max_writing: usize,
    /// Chunks pushed to one peer during Leave and not yet confirmed.
    pub push_window: usize,
    /// Chunk reads outstanding for one connection; a peer asking for more is cut off.
    pub serve_limit: usize,
    /// Bad chunks from one peer before it is disconnected.
    pub max_strikes: u32,
    /// First and largest wait before dialling a lost peer again.
    pub redial_min: Millis,
    pub redial_max: Millis,
    /// Pause in fetching after a write fails (a full disk, say).
    pub storage_backoff: Millis,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            requests_per_peer: 32,
            request_timeout: 30_000,
            manifest_timeout: 10_000,
            join_timeout: 5_000,
            leave_timeout: 30_000,
            max_writing: 64,
            push_window: 24,
            serve_limit: 256,
            max_strikes: 3,
            redial_min: 1_000,
            redial_max: 30_000,
            storage_backoff: 1_000,
        }
    }
}

/// What a node is told at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our identity: the address peers dial.
    pub me: PeerAddr,
    /// Peers to connect to on Join (ours is skipped).
    pub peers: Vec<PeerAddr>,
    /// Control token for connections that are not trusted (see [`ConnInfo`]).
    pub token: Option<String>,
    /// Seeds the choice among equally rare chunks.
    pub seed: u64,
    pub tuning: Tuning,
}

/// What the driver knows about a new connection.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The peer we dialled, for outgoing connections.
    pub dialed: Option<PeerAddr>,
    /// Control actions are allowed without a token (TCP from loopback).
    pub trusted: bool,
}

/// Network work for the driver.
#[derive(Clone, Debug)]
pub enum NetCommand {
    Send {
        conn: ConnId,
        envelope: Envelope,
    },
    /// Open a connection and report it with `handle_connected` or `handle_dial_failed`.
    Dial(PeerAddr),
    Close(ConnId),
}

/// Storage work for the driver; each is answered with a [`StorageEvent`] where noted.
#[derive(Clone, Debug)]
pub enum StorageCommand {
    /// Copy the file at `path` (on this machine) aside and compute its manifest;
    /// answer `Imported`.
    Import { id: u64, path: String, name: FileName },
    /// Publish an imported copy as `name`, keeping its manifest; answer `Committed`.
    Commit { id: u64, name: FileName, manifest: Manifest },
    /// Drop an imported copy.
    Discard { id: u64 },
    /// Make room for a file being fetched and keep its manifest.
    Prepare { file: FileName, manifest: Manifest },
    /// Read a chunk we hold to send it on `conn`: answer `Read` with its bytes (the node
    /// then sends the Upload), or send the Upload yourself, straight from storage, and
    /// answer `Sent` (see [`crate::Envelope::upload_header`]).
    Read { conn: ConnId, chunk: ChunkRef, push: bool },
    /// Store a verified chunk; answer `Written`.
    Write { chunk: ChunkRef, data: Bytes },
    /// Every chunk is written: make the file visible under its name.
    Finalize { file: FileName },
}

/// A storage failure, with the code a user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    pub code: Code,
    pub message: String,
}

/// Results of [`StorageCommand`]s.
#[derive(Clone, Debug)]
pub enum StorageEvent {
    Imported {
        id: u64,
        result: Result<Manifest, StorageError>,
    },
    Committed {
        id: u64,
        result: Result<(), StorageError>,
    },
    Read {
        conn: ConnId,
        chunk: ChunkRef,
        push: bool,
        result: Result<Bytes, StorageError>,
    },
    /// The driver sent the chunk of a `Read` as an Upload itself (or could not).
    Sent {
        conn: ConnId,
        chunk: ChunkRef,
        push: bool,
        result: Result<(), StorageError>,
    },
    Written {
        chunk: ChunkRef,
        result: Result<(), StorageError>,
    },
}

/// Things worth telling a user or a log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Joined { peers: usize },
    Left { unconfirmed: u64 },
    PeerJoined(PeerAddr),
    PeerLeft { peer: PeerAddr, graceful: bool },
    FileAnnounced { file: FileName, size: u64 },
    FileInserted { file: FileName, size: u64 },
    FileComplete { file: FileName, size: u64 },
    ChunkRejected { peer: PeerAddr, chunk: ChunkRef },
    PeerBanned(PeerAddr),
    Conflict { peer: PeerAddr, file: FileName },
    StorageFailed { file: FileName, message: String },
    BadRequest { conn: ConnId, reason: String },
}

/// A file this node holds at start-up, as found on disk by the driver.
#[derive(Clone, Debug)]
pub struct LocalFile {
    pub name: FileName,
    pub manifest: Manifest,
    pub have: ChunkSet,
}

#[derive(Debug)]
enum Membership {
    NotJoined,
    Joining { reply_to: Option<ConnId>, waiting: BTreeSet<PeerAddr>, deadline: Millis },
    Joined,
    Leaving(LeavePlan),
}

/// The chunks only we hold, and who they were pushed to, while leaving.
#[derive(Debug)]
struct LeavePlan {
    reply_to: Option<ConnId>,
    deadline: Millis,
    /// Chunks still to be confirmed by a peer's Have.
    todo: BTreeSet<(FileName, u32)>,
    /// Chunks pushed and not yet confirmed, by receiver.
    pushed: HashMap<(FileName, u32), PeerAddr>,
    /// Files whose manifest has been pushed to a peer.
    manifests_sent: BTreeSet<(PeerAddr, FileName)>,
}

#[derive(Debug)]
struct ConnState {
    peer: Option<PeerAddr>,
    dialed: Option<PeerAddr>,
    trusted: bool,
    /// A user's client has spoken on it: keep it open when leaving.
    control: bool,
    /// Chunk reads outstanding for it.
    serving: usize,
}

#[derive(Debug)]
struct PeerState {
    /// Where messages to this peer go; other connections may exist and stay usable.
    conn: ConnId,
    conns: BTreeSet<ConnId>,
    files: HashMap<FileName, ChunkSet>,
    /// Our chunk requests to it, with their deadlines.
    requests: HashMap<(FileName, u32), Millis>,
    /// Our manifest requests to it, with their deadlines.
    manifest_requests: HashMap<FileName, Millis>,
    pushes: usize,
    strikes: u32,
    /// Where picks from this peer go on (a word of its chunk bitmap): consecutive
    /// requests take consecutive chunks, so files are written in runs rather than
    /// scattered 64 KiB at a time (scattered writes cost the filesystem dearly).
    /// Random at first, so that different fetchers start in different places.
    cursor: u64,
}

#[derive(Debug)]
struct Redial {
    at: Millis,
    backoff: Millis,
}

#[derive(Debug)]
struct PendingImport {
    conn: ConnId,
    name: FileName,
    /// Known once hashed; the file is ours once the driver has committed it.
    manifest: Option<Manifest>,
}

/// A participant of the network. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    config: Config,
    membership: Membership,
    files: BTreeMap<FileName, FileState>,
    conns: HashMap<ConnId, ConnState>,
    peers: BTreeMap<PeerAddr, PeerState>,
    banned: BTreeSet<PeerAddr>,
    redial: BTreeMap<PeerAddr, Redial>,
    imports: HashMap<u64, PendingImport>,
    next_import: u64,
    pending_have: Vec<HaveEntry>,
    /// Files to fetch; `None` means every file the network has.
    wanted: Option<BTreeSet<FileName>>,
    fetch_paused_until: Millis,
    /// Chunks handed to storage and not yet written, across files.
    writing: usize,
    chunks_fetched: u64,
    chunks_served: u64,
    rng: u64,
    net: VecDeque<NetCommand>,
    storage: VecDeque<StorageCommand>,
    events: VecDeque<Event>,
}

impl Node {
    pub fn new(mut config: Config) -> Self {
        let me = config.me.clone();
        config.peers.retain(|p| *p != me);
        config.peers.dedup();
        let rng = config.seed | 1;
        Self {
            config,
            membership: Membership::NotJoined,
            files: BTreeMap::new(),
            conns: HashMap::new(),
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            redial: BTreeMap::new(),
            imports: HashMap::new(),
            next_import: 0,
            pending_have: Vec::new(),
            wanted: None,
            fetch_paused_until: 0,
            writing: 0,
            chunks_fetched: 0,
            chunks_served: 0,
            rng,
            net: VecDeque::new(),
            storage: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn me(&self) -> &PeerAddr {
        &self.config.me
    }

    pub fn is_joined(&self) -> bool {
        !matches!(self.membership, Membership::NotJoined)
    }

    /// Registers a file found on disk at start-up.
    pub fn add_local_file(&mut self, file: LocalFile) {
        let mut state = FileState::new(file.manifest.size(), file.manifest.digest());
        for i in file.have.iter() {
            state.have.insert(i);
        }
        state.manifest = Some(file.manifest);
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

    fn wants(&self, file: &FileName) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(file))
    }

    /// Leaves as if a trusted client had asked (for a graceful shutdown); watch
    /// [`Node::is_joined`] to see it finish.
    pub fn leave(&mut self, now: Millis) {
        if matches!(self.membership, Membership::Joined | Membership::Joining { .. }) {
            self.finish_join();
            self.start_leave(now, None);
        }
    }

    /// Joins as if a trusted client had asked (for `--join` at start).
    pub fn join(&mut self, now: Millis) {
        if !self.is_joined() {
            self.start_join(now, None);
        }
    }

    // -----------------------------------------------------------------------------
    // Outputs.

    pub fn poll_net(&mut self) -> Option<NetCommand> {
        if self.net.is_empty() {
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
        let membership = match &self.membership {
            Membership::Joining { deadline, .. } => Some(*deadline),
            Membership::Leaving(plan) => Some(plan.deadline),
            _ => None,
        };
        let requests = self.peers.values().flat_map(|p| p.requests.values().chain(p.manifest_requests.values()));
        let redials = self.redial.values().map(|r| &r.at);
        let paused = (self.fetch_paused_until > 0).then_some(&self.fetch_paused_until);
        membership.into_iter().chain(requests.chain(redials).chain(paused).copied()).min()
    }

    // -----------------------------------------------------------------------------
    // Inputs.

    pub fn handle_connected(&mut self, now: Millis, conn: ConnId, info: ConnInfo) {
        let dialed = info.dialed.clone();
        self.conns.insert(
            conn,
            ConnState { peer: None, dialed: info.dialed, trusted: info.trusted, control: false, serving: 0 },
        );
        if let Some(addr) = dialed {
            if matches!(self.membership, Membership::Joining { .. } | Membership::Joined)
                && !self.banned.contains(&addr)
            {
                let files = self.file_list();
                self.send(conn, Message::Add { files });
            } else {
                self.net.push_back(NetCommand::Close(conn));
            }
        }
        self.after_input(now);
    }

    pub fn handle_dial_failed(&mut self, now: Millis, addr: &PeerAddr) {
        self.join_answered(addr);
        self.after_input(now);
    }

    pub fn handle_disconnected(&mut self, now: Millis, conn: ConnId) {
        if let Some(state) = self.conns.remove(&conn) {
            if let Some(addr) = &state.dialed {
                self.join_answered(addr);
            }
            if let Some(addr) = state.peer {
                if self.detach(&addr, conn) {
                    self.drop_peer(&addr, false);
                    if matches!(self.membership, Membership::Joined | Membership::Joining { .. }) && addr.is_diallable()
                    {
                        let backoff = self.config.tuning.redial_min;
                        self.redial.entry(addr).or_insert(Redial { at: now + backoff, backoff });
                    }
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
        if message.is_control() {
            self.handle_control(now, conn, token, message);
        } else {
            self.handle_peer_message(now, conn, from, message, chunk_hash);
        }
        self.after_input(now);
    }

    pub fn handle_storage(&mut self, now: Millis, event: StorageEvent) {
        match event {
            StorageEvent::Imported { id, result } => self.on_imported(id, result),
            StorageEvent::Committed { id, result } => self.on_committed(id, result),
            StorageEvent::Read { conn, chunk, push, result } => self.on_read(conn, chunk, push, result.map(Some)),
            StorageEvent::Sent { conn, chunk, push, result } => self.on_read(conn, chunk, push, result.map(|()| None)),
            StorageEvent::Written { chunk, result } => self.on_written(now, chunk, result),
        }
        self.after_input(now);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        match &self.membership {
            Membership::Joining { deadline, .. } if *deadline <= now => self.finish_join(),
            Membership::Leaving(plan) if plan.deadline <= now => self.finish_leave(),
            _ => {}
        }
        for peer in self.peers.values_mut() {
            let mut expired = Vec::new();
            peer.requests.retain(|key, deadline| {
                let keep = *deadline > now;
                if !keep {
                    expired.push(key.clone());
                }
                keep
            });
            for (file, i) in expired {
                if let Some(f) = self.files.get_mut(&file) {
                    f.requested.remove(i);
                }
            }
            let mut expired = Vec::new();
            peer.manifest_requests.retain(|file, deadline| {
                let keep = *deadline > now;
                if !keep {
                    expired.push(file.clone());
                }
                keep
            });
            for file in expired {
                if let Some(f) = self.files.get_mut(&file) {
                    f.manifest_from = None;
                }
            }
        }
        let due: Vec<PeerAddr> = self.redial.iter().filter(|(_, r)| r.at <= now).map(|(a, _)| a.clone()).collect();
        for addr in due {
            let max = self.config.tuning.redial_max;
            if let Some(r) = self.redial.get_mut(&addr) {
                r.backoff = (r.backoff * 2).min(max);
                r.at = now + r.backoff;
            }
            self.net.push_back(NetCommand::Dial(addr));
        }
        if self.fetch_paused_until <= now {
            self.fetch_paused_until = 0;
        }
        self.after_input(now);
    }

    // -----------------------------------------------------------------------------
    // Control actions.

    fn handle_control(&mut self, now: Millis, conn: ConnId, token: Option<String>, message: Message) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.control = true;
        let authorised = state.trusted || control_token_matches(self.config.token.as_deref(), token.as_deref());
        if !authorised {
            self.reply(conn, Reply::code(Code::BadPermission));
            return;
        }
        match message {
            Message::Join => {
                if self.is_joined() {
                    self.reply(conn, Reply::code(Code::Connected));
                } else {
                    self.start_join(now, Some(conn));
                }
            }
            Message::Leave => match self.membership {
                Membership::NotJoined | Membership::Leaving(_) => self.reply(conn, Reply::code(Code::Disconnected)),
                _ => {
                    self.finish_join();
                    self.start_leave(now, Some(conn));
                }
            },
            Message::Insert { path } => self.start_insert(conn, path),
            Message::Query { file } => {
                let mut status = self.status();
                status.chunk_map = file.and_then(|f| self.chunk_map(&f));
                self.reply(conn, Reply { status: Some(Box::new(status)), ..Reply::code(Code::Ok) });
            }
            _ => unreachable!("is_control() covers exactly these"),
        }
    }

    fn start_join(&mut self, now: Millis, reply_to: Option<ConnId>) {
        let connected: BTreeSet<PeerAddr> = self.conns.values().filter_map(|c| c.dialed.clone()).collect();
        let waiting: BTreeSet<PeerAddr> =
            self.config.peers.iter().filter(|p| !connected.contains(*p)).cloned().collect();
        for addr in &waiting {
            self.net.push_back(NetCommand::Dial(addr.clone()));
        }
        // Connections we dialled before (while not joined) are introduced now.
        let open: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.dialed.is_some()).map(|(&id, _)| id).collect();
        for conn in open {
            let files = self.file_list();
            self.send(conn, Message::Add { files });
        }
        self.membership = Membership::Joining { reply_to, waiting, deadline: now + self.config.tuning.join_timeout };
        self.maybe_finish_join();
    }

    /// A peer we dialled on Join has answered (or failed, or closed).
    fn join_answered(&mut self, addr: &PeerAddr) {
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

    fn finish_join(&mut self) {
        if let Membership::Joining { reply_to, .. } = std::mem::replace(&mut self.membership, Membership::Joined) {
            self.events.push_back(Event::Joined { peers: self.peers.len() });
            if let Some(conn) = reply_to {
                self.reply(conn, Reply::code(Code::Ok));
            }
        }
    }

    fn start_leave(&mut self, now: Millis, reply_to: Option<ConnId>) {
        // Stop fetching: what is in flight is no longer wanted.
        for peer in self.peers.values_mut() {
            for ((file, i), _) in peer.requests.drain() {
                if let Some(f) = self.files.get_mut(&file) {
                    f.requested.remove(i);
                }
            }
        }
        let mut todo = BTreeSet::new();
        for (name, f) in &self.files {
            if f.manifest.is_some() {
                todo.extend(f.have.iter().filter(|&i| f.peer_counts[i as usize] == 0).map(|i| (name.clone(), i)));
            }
        }
        self.redial.clear();
        self.membership = Membership::Leaving(LeavePlan {
            reply_to,
            deadline: now + self.config.tuning.leave_timeout,
            todo,
            pushed: HashMap::new(),
            manifests_sent: BTreeSet::new(),
        });
        self.pump_leave();
    }

    /// Pushes sole-held chunks to the least-loaded peers, a window at a time.
    fn pump_leave(&mut self) {
        let Membership::Leaving(plan) = &mut self.membership else {
            return;
        };
        if plan.todo.is_empty() || self.peers.is_empty() {
            self.finish_leave();
            return;
        }
        let window = self.config.tuning.push_window;
        let unassigned: Vec<(FileName, u32)> =
            plan.todo.iter().filter(|k| !plan.pushed.contains_key(*k)).cloned().collect();
        for key in unassigned {
            // Least-loaded receiver; the browser peers too, as they hold chunks as well.
            let Some((addr, peer)) =
                self.peers.iter_mut().filter(|(_, p)| p.pushes < window).min_by_key(|(_, p)| p.pushes)
            else {
                break;
            };
            peer.pushes += 1;
            let conn = peer.conn;
            let file = &self.files[&key.0];
            if plan.manifests_sent.insert((addr.clone(), key.0.clone())) {
                let m = file.manifest.as_ref().expect("only files with a manifest are planned");
                let message =
                    Message::Manifest { file: key.0.clone(), size: m.size(), digest: m.digest(), hashes: m.to_body() };
                self.net.push_back(NetCommand::Send { conn, envelope: envelope(&self.config.me, message) });
            }
            let chunk = ChunkRef { file: key.0.clone(), size: file.size, index: key.1 };
            self.storage.push_back(StorageCommand::Read { conn, chunk, push: true });
            plan.pushed.insert(key, addr.clone());
        }
    }

    /// A chunk we hold alone is now held elsewhere too.
    fn leave_confirmed(&mut self, file: &FileName, i: u32) {
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

    fn finish_leave(&mut self) {
        let Membership::Leaving(plan) = std::mem::replace(&mut self.membership, Membership::NotJoined) else {
            return;
        };
        let unconfirmed = plan.todo.len() as u64;
        let peers: Vec<PeerAddr> = self.peers.keys().cloned().collect();
        for addr in peers {
            let peer = &self.peers[&addr];
            let conns: Vec<ConnId> = peer.conns.iter().copied().collect();
            self.send(peer.conn, Message::Remove);
            for conn in conns {
                if self.conns.get(&conn).is_some_and(|c| !c.control) {
                    self.net.push_back(NetCommand::Close(conn));
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = None;
                }
            }
            self.drop_peer(&addr, true);
        }
        self.redial.clear();
        self.events.push_back(Event::Left { unconfirmed });
        if let Some(conn) = plan.reply_to {
            let unconfirmed = (unconfirmed > 0).then_some(unconfirmed);
            self.reply(conn, Reply { unconfirmed, ..Reply::code(Code::Ok) });
        }
    }

    fn start_insert(&mut self, conn: ConnId, path: String) {
        let name = match FileName::from_path_base(&path) {
            Ok(name) => name,
            Err(e) => {
                self.reply(conn, Reply { reason: Some(format!("{path:?}: {e}")), ..Reply::code(Code::BadRequest) });
                return;
            }
        };
        if self.name_taken(&name) {
            self.reply(
                conn,
                Reply { reason: Some(format!("{name} is already in the network")), ..Reply::code(Code::FileExists) },
            );
            return;
        }
        let id = self.next_import;
        self.next_import += 1;
        self.imports.insert(id, PendingImport { conn, name: name.clone(), manifest: None });
        self.storage.push_back(StorageCommand::Import { id, path, name });
    }

    fn name_taken(&self, name: &FileName) -> bool {
        self.files.get(name).is_some_and(FileState::is_known) || self.imports.values().any(|i| i.name == *name)
    }

    fn on_imported(&mut self, id: u64, result: Result<Manifest, StorageError>) {
        let Some(import) = self.imports.get(&id) else {
            return;
        };
        let conn = import.conn;
        let name = import.name.clone();
        match result {
            Err(e) => {
                self.imports.remove(&id);
                self.reply(conn, Reply { reason: Some(e.message), ..Reply::code(e.code) });
            }
            // Announced by a peer while we were hashing: same name, so the same answer.
            Ok(_) if self.files.get(&name).is_some_and(FileState::is_known) => {
                self.imports.remove(&id);
                self.storage.push_back(StorageCommand::Discard { id });
                self.reply(
                    conn,
                    Reply {
                        reason: Some(format!("{name} is already in the network")),
                        ..Reply::code(Code::FileExists)
                    },
                );
            }
            Ok(manifest) => {
                self.imports.get_mut(&id).expect("looked up above").manifest = Some(manifest.clone());
                self.storage.push_back(StorageCommand::Commit { id, name, manifest });
            }
        }
    }

    fn on_committed(&mut self, id: u64, result: Result<(), StorageError>) {
        let Some(import) = self.imports.remove(&id) else {
            return;
        };
        let (Ok(()), Some(manifest)) = (&result, import.manifest) else {
            let e = result
                .err()
                .unwrap_or(StorageError { code: Code::BadRequest, message: "commit without import".into() });
            self.reply(import.conn, Reply { reason: Some(e.message), ..Reply::code(e.code) });
            return;
        };
        let name = import.name;
        let (size, digest) = (manifest.size(), manifest.digest());
        // A peer may have announced other content under this name while we hashed;
        // what is now on our disk is what we count.
        if self.files.get(&name).is_some_and(|f| !f.matches(size, digest)) {
            for peer in self.peers.values_mut() {
                peer.files.remove(&name);
            }
            self.files.remove(&name);
        }
        let f = self.files.entry(name.clone()).or_insert_with(|| FileState::new(size, digest));
        f.have = ChunkSet::full(manifest.chunk_count());
        f.requested = ChunkSet::new(manifest.chunk_count());
        f.manifest = Some(manifest);
        self.events.push_back(Event::FileInserted { file: name.clone(), size });
        self.announce(&name);
        self.reply(import.conn, Reply::code(Code::Ok));
    }

    // -----------------------------------------------------------------------------
    // Peer messages.

    fn handle_peer_message(
        &mut self,
        now: Millis,
        conn: ConnId,
        from: Option<PeerAddr>,
        message: Message,
        chunk_hash: Option<ChunkHash>,
    ) {
        if let Message::Reply(reply) = message {
            self.on_reply(conn, reply);
            return;
        }
        if !self.is_joined() {
            if !matches!(message, Message::Remove) {
                self.reply(conn, Reply::code(Code::Disconnected));
            }
            return;
        }
        let known = self.conns.get(&conn).and_then(|c| c.peer.clone());
        match (message, known) {
            (Message::Add { files }, _) => {
                let Some(addr) = from else {
                    self.handle_malformed(now, conn, "Add needs HostName and PortNumber".into());
                    return;
                };
                if self.register_peer(conn, addr.clone()) {
                    self.apply_file_list(&addr, files, true);
                    let files = self.file_list();
                    self.send(conn, Message::Files { files });
                }
            }
            (Message::Files { files }, known) => {
                // The answer to our Add: the peer is who we dialled.
                let dialed = self.conns.get(&conn).and_then(|c| c.dialed.clone());
                let Some(addr) = known.or(dialed).or(from) else {
                    self.handle_malformed(now, conn, "Files needs HostName and PortNumber".into());
                    return;
                };
                if self.register_peer(conn, addr.clone()) {
                    self.apply_file_list(&addr, files, false);
                    self.join_answered(&addr);
                }
            }
            (_, None) => self.reply(
                conn,
                Reply { reason: Some("introduce yourself with Add first".into()), ..Reply::code(Code::BadRequest) },
            ),
            (Message::Remove, Some(addr)) => {
                self.drop_peer(&addr, true);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = None;
                }
            }
            (Message::Have(entries), Some(addr)) => self.on_have(&addr, entries),
            (Message::Download(chunk), Some(_)) => self.on_download(conn, chunk),
            (Message::Upload { chunk, data }, Some(addr)) => self.on_upload(&addr, chunk, data, chunk_hash),
            (Message::GetManifest { file }, Some(_)) => self.on_get_manifest(conn, file),
            (Message::Manifest { file, size, digest, hashes }, Some(addr)) => {
                self.on_manifest(&addr, file, size, digest, &hashes)
            }
            (
                Message::Join | Message::Leave | Message::Insert { .. } | Message::Query { .. } | Message::Reply(_),
                _,
            ) => {
                unreachable!("handled above")
            }
        }
    }

    /// Ties `conn` to peer `addr`; returns false if the peer is refused.
    fn register_peer(&mut self, conn: ConnId, addr: PeerAddr) -> bool {
        if self.banned.contains(&addr) || addr == self.config.me {
            self.net.push_back(NetCommand::Close(conn));
            return false;
        }
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
        self.redial.remove(&addr);
        match self.peers.get_mut(&addr) {
            Some(peer) => {
                peer.conn = conn;
                peer.conns.insert(conn);
            }
            None => {
                let cursor = self.random();
                self.peers.insert(
                    addr.clone(),
                    PeerState {
                        conn,
                        conns: BTreeSet::from([conn]),
                        files: HashMap::new(),
                        requests: HashMap::new(),
                        manifest_requests: HashMap::new(),
                        pushes: 0,
                        strikes: 0,
                        cursor,
                    },
                );
                self.events.push_back(Event::PeerJoined(addr));
            }
        }
        true
    }

    /// Stops sending to `addr` over `conn`; returns whether that was its last
    /// connection (the caller then forgets the peer).
    fn detach(&mut self, addr: &PeerAddr, conn: ConnId) -> bool {
        self.peers.get_mut(addr).is_some_and(|p| {
            p.conns.remove(&conn);
            if let Some(&other) = p.conns.iter().next() {
                p.conn = other;
            }
            p.conns.is_empty()
        })
    }

    /// Forgets a peer and everything it held.
    fn drop_peer(&mut self, addr: &PeerAddr, graceful: bool) {
        let Some(peer) = self.peers.remove(addr) else {
            return;
        };
        for (name, held) in &peer.files {
            if let Some(f) = self.files.get_mut(name) {
                for i in held.iter() {
                    f.peer_counts[i as usize] -= 1;
                }
                f.announcers -= 1;
            }
        }
        for (name, i) in peer.requests.keys() {
            if let Some(f) = self.files.get_mut(name) {
                f.requested.remove(*i);
            }
        }
        for name in peer.manifest_requests.keys() {
            if let Some(f) = self.files.get_mut(name) {
                f.manifest_from = None;
            }
        }
        self.files.retain(|_, f| f.is_known());
        if let Membership::Leaving(plan) = &mut self.membership {
            plan.pushed.retain(|_, to| to != addr);
            plan.manifests_sent.retain(|(to, _)| to != addr);
        }
        self.events.push_back(Event::PeerLeft { peer: addr.clone(), graceful });
        self.pump_leave();
    }

    /// Records a peer's file list; `replace` forgets what it announced before.
    fn apply_file_list(&mut self, addr: &PeerAddr, entries: Vec<FileEntry>, replace: bool) {
        let Some(peer) = self.peers.get_mut(addr) else {
            return;
        };
        if replace {
            for (name, held) in peer.files.drain() {
                if let Some(f) = self.files.get_mut(&name) {
                    for i in held.iter() {
                        f.peer_counts[i as usize] -= 1;
                    }
                    f.announcers -= 1;
                }
            }
        }
        for entry in entries {
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
        self.files.retain(|_, f| f.is_known());
    }

    /// Makes sure we track `name` as announced by `addr`; false on a conflict.
    fn learn_file(
        &mut self,
        addr: &PeerAddr,
        name: &FileName,
        size: u64,
        digest: Option<crate::manifest::Digest>,
    ) -> bool {
        match (self.files.get(name), digest) {
            (Some(f), Some(d)) if !f.matches(size, d) => {
                self.events.push_back(Event::Conflict { peer: addr.clone(), file: name.clone() });
                false
            }
            (Some(f), None) if f.size != size => false,
            (Some(_), _) => true,
            (None, Some(d)) => {
                self.files.insert(name.clone(), FileState::new(size, d));
                self.events.push_back(Event::FileAnnounced { file: name.clone(), size });
                true
            }
            // A Have for a file we do not know, without its digest: nothing to check it by.
            (None, None) => false,
        }
    }

    fn peer_holds_file(&mut self, addr: &PeerAddr, name: &FileName) -> bool {
        let (Some(peer), Some(f)) = (self.peers.get_mut(addr), self.files.get_mut(name)) else {
            return false;
        };
        if !peer.files.contains_key(name) {
            peer.files.insert(name.clone(), ChunkSet::new(f.chunk_count()));
            f.announcers += 1;
        }
        true
    }

    fn peer_holds(&mut self, addr: &PeerAddr, name: &FileName, i: u32) {
        if !self.peer_holds_file(addr, name) {
            return;
        }
        let peer = self.peers.get_mut(addr).expect("checked by peer_holds_file");
        let f = self.files.get_mut(name).expect("checked by peer_holds_file");
        if peer.files.get_mut(name).expect("inserted by peer_holds_file").insert(i) {
            f.peer_counts[i as usize] += 1;
            self.leave_confirmed(name, i);
        }
    }

    fn on_have(&mut self, addr: &PeerAddr, entries: Vec<HaveEntry>) {
        for HaveEntry { chunk, digest } in entries {
            if self.learn_file(addr, &chunk.file, chunk.size, digest) {
                self.peer_holds(addr, &chunk.file, chunk.index);
            }
        }
    }

    fn on_download(&mut self, conn: ConnId, chunk: ChunkRef) {
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
        self.storage.push_back(StorageCommand::Read { conn, chunk, push: false });
    }

    /// A chunk read for `conn` is done: `Some` bytes to send, or `None` when the driver
    /// has sent them itself.
    fn on_read(&mut self, conn: ConnId, chunk: ChunkRef, push: bool, result: Result<Option<Bytes>, StorageError>) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if !push {
            state.serving = state.serving.saturating_sub(1);
        }
        match result {
            Ok(data) => {
                self.chunks_served += 1;
                if let Some(data) = data {
                    self.send(conn, Message::Upload { chunk, data });
                }
            }
            Err(e) => {
                self.events.push_back(Event::StorageFailed { file: chunk.file.clone(), message: e.message });
                let about = FileRef { name: chunk.file, chunk: Some((chunk.size, chunk.index)) };
                self.reply(conn, Reply { about: Some(about), ..Reply::code(Code::FileMissing) });
            }
        }
    }

    fn on_upload(&mut self, addr: &PeerAddr, chunk: ChunkRef, data: Bytes, hash: Option<ChunkHash>) {
        let i = chunk.index;
        let Some(peer) = self.peers.get_mut(addr) else {
            return;
        };
        let key = (chunk.file.clone(), i);
        let requested = peer.requests.remove(&key).is_some();
        let Some(f) = self.files.get_mut(&chunk.file) else {
            return;
        };
        if requested {
            f.requested.remove(i);
        }
        if matches!(self.membership, Membership::Leaving(_)) || f.size != chunk.size {
            return;
        }
        let Some(manifest) = &f.manifest else { return };
        if f.have.contains(i) || f.writing.contains(i) {
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
        self.storage.push_back(StorageCommand::Write { chunk, data });
    }

    fn strike(&mut self, addr: &PeerAddr) {
        let max = self.config.tuning.max_strikes;
        let Some(peer) = self.peers.get_mut(addr) else {
            return;
        };
        peer.strikes += 1;
        if peer.strikes >= max {
            let conns: Vec<ConnId> = peer.conns.iter().copied().collect();
            self.banned.insert(addr.clone());
            for conn in conns {
                self.net.push_back(NetCommand::Close(conn));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = None;
                }
            }
            self.drop_peer(addr, false);
            self.events.push_back(Event::PeerBanned(addr.clone()));
        }
    }

    fn on_written(&mut self, now: Millis, chunk: ChunkRef, result: Result<(), StorageError>) {
        let Some(f) = self.files.get_mut(&chunk.file) else {
            return;
        };
        if f.writing.remove(chunk.index) {
            self.writing -= 1;
        }
        if let Err(e) = result {
            self.fetch_paused_until = now + self.config.tuning.storage_backoff;
            self.events.push_back(Event::StorageFailed { file: chunk.file, message: e.message });
            return;
        }
        if !f.have.insert(chunk.index) {
            return;
        }
        self.chunks_fetched += 1;
        self.pending_have.push(HaveEntry { chunk: chunk.clone(), digest: Some(f.digest) });
        if f.have.is_complete() {
            let size = f.size;
            self.storage.push_back(StorageCommand::Finalize { file: chunk.file.clone() });
            self.events.push_back(Event::FileComplete { file: chunk.file, size });
        }
    }

    fn on_get_manifest(&mut self, conn: ConnId, file: FileName) {
        match self.files.get(&file).and_then(|f| f.manifest.as_ref()) {
            Some(m) => {
                let message = Message::Manifest { file, size: m.size(), digest: m.digest(), hashes: m.to_body() };
                self.send(conn, message);
            }
            None => self.reply(
                conn,
                Reply { about: Some(FileRef { name: file, chunk: None }), ..Reply::code(Code::FileMissing) },
            ),
        }
    }

    fn on_manifest(
        &mut self,
        addr: &PeerAddr,
        file: FileName,
        size: u64,
        digest: crate::manifest::Digest,
        hashes: &[u8],
    ) {
        if let Some(peer) = self.peers.get_mut(addr) {
            peer.manifest_requests.remove(&file);
        }
        if let Some(f) = self.files.get_mut(&file) {
            f.manifest_from = None;
        }
        // Pushed by a leaving peer, or answering our request: either way it must be
        // consistent with its digest and with what we already know of the file.
        if !self.learn_file(addr, &file, size, Some(digest)) {
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
                self.storage.push_back(StorageCommand::Prepare { file: file.clone(), manifest });
                if f.have.is_complete() {
                    // An empty file is complete as soon as it exists; tell the others.
                    self.storage.push_back(StorageCommand::Finalize { file: file.clone() });
                    self.events.push_back(Event::FileComplete { file: file.clone(), size });
                    self.announce(&file);
                }
            }
            Err(_) => self.strike(addr),
        }
    }

    fn on_reply(&mut self, conn: ConnId, reply: Reply) {
        let addr = self.conns.get(&conn).and_then(|c| c.peer.clone().or_else(|| c.dialed.clone()));
        let Some(addr) = addr else { return };
        match reply.code_or_ok() {
            // The peer has not joined: it will introduce itself when it does.
            Code::Disconnected => {
                self.join_answered(&addr);
                if self.peers.get(&addr).is_some_and(|p| p.conns.contains(&conn)) {
                    self.drop_peer(&addr, true);
                }
                self.redial.remove(&addr);
                if self.conns.get(&conn).is_some_and(|c| !c.control) {
                    self.net.push_back(NetCommand::Close(conn));
                }
            }
            Code::FileMissing => {
                let Some(about) = reply.about else { return };
                let Some(peer) = self.peers.get_mut(&addr) else {
                    return;
                };
                match about.chunk {
                    Some((_, i)) => {
                        if peer.requests.remove(&(about.name.clone(), i)).is_some() {
                            // It does not hold it after all: stop counting it there.
                            if let Some(f) = self.files.get_mut(&about.name) {
                                f.requested.remove(i);
                                if peer.files.get_mut(&about.name).is_some_and(|s| s.remove(i)) {
                                    f.peer_counts[i as usize] -= 1;
                                }
                            }
                        }
                    }
                    None => {
                        peer.manifest_requests.remove(&about.name);
                        if let Some(f) = self.files.get_mut(&about.name) {
                            f.manifest_from = None;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------
    // Fetching.

    fn after_input(&mut self, now: Millis) {
        if matches!(self.membership, Membership::Joined | Membership::Joining { .. }) && self.fetch_paused_until == 0 {
            self.request_manifests(now);
            self.request_chunks(now);
        }
    }

    fn request_manifests(&mut self, now: Millis) {
        let deadline = now + self.config.tuning.manifest_timeout;
        let wanted: Vec<FileName> = self
            .files
            .iter()
            .filter(|(n, f)| f.manifest.is_none() && f.manifest_from.is_none() && self.wants(n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in wanted {
            let holder = self
                .peers
                .iter_mut()
                .filter(|(_, p)| p.files.contains_key(&name))
                .min_by_key(|(_, p)| p.manifest_requests.len() + p.requests.len());
            let Some((addr, peer)) = holder else { continue };
            peer.manifest_requests.insert(name.clone(), deadline);
            let conn = peer.conn;
            self.files.get_mut(&name).expect("listed above").manifest_from = Some(addr.clone());
            self.send(conn, Message::GetManifest { file: name });
        }
    }

    /// Fills every peer's request window, a chunk per peer per round so that the load
    /// spreads; each pick is the rarest chunk that peer can give us.
    fn request_chunks(&mut self, now: Millis) {
        let deadline = now + self.config.tuning.request_timeout;
        let window = self.config.tuning.requests_per_peer;
        if self.writing >= self.config.tuning.max_writing {
            return;
        }
        let addrs: Vec<PeerAddr> = self.peers.keys().cloned().collect();
        let mut open: Vec<PeerAddr> = addrs;
        while !open.is_empty() {
            open.retain(|addr| {
                let peer = &self.peers[addr];
                if peer.requests.len() >= window {
                    return false;
                }
                let Some((name, i)) = self.pick_for(addr) else {
                    return false;
                };
                let f = self.files.get_mut(&name).expect("picked from files");
                f.requested.insert(i);
                let chunk = ChunkRef { file: name.clone(), size: f.size, index: i };
                let peer = self.peers.get_mut(addr).expect("listed above");
                peer.requests.insert((name, i), deadline);
                let conn = peer.conn;
                self.net.push_back(NetCommand::Send {
                    conn,
                    envelope: envelope(&self.config.me, Message::Download(chunk)),
                });
                true
            });
        }
    }

    fn pick_for(&mut self, addr: &PeerAddr) -> Option<(FileName, u32)> {
        let peer = &self.peers[addr];
        let mut best: Option<(FileName, u32, u16)> = None;
        for (name, held) in &peer.files {
            let Some(f) = self.files.get(name) else {
                continue;
            };
            if f.manifest.is_none() || f.have.is_complete() || held.count() == 0 || !self.wants(name) {
                continue;
            }
            let start = (peer.cursor % held.word_count().max(1) as u64) as usize;
            if let Some((i, count)) = f.rarest_wanted(held, start) {
                if best.as_ref().is_none_or(|b| count < b.2) {
                    best = Some((name.clone(), i, count));
                    if count <= 1 {
                        break;
                    }
                }
            }
        }
        let (name, i, _) = best?;
        self.peers.get_mut(addr).expect("looked up above").cursor = u64::from(i / 64);
        Some((name, i))
    }

    /// The next number of the node's xorshift generator (seeded from its config).
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    // -----------------------------------------------------------------------------
    // Sending.

    fn send(&mut self, conn: ConnId, message: Message) {
        self.net.push_back(NetCommand::Send { conn, envelope: envelope(&self.config.me, message) });
    }

    fn reply(&mut self, conn: ConnId, reply: Reply) {
        self.send(conn, Message::Reply(reply));
    }

    /// Our file list, for Add and Files.
    fn file_list(&self) -> Vec<FileEntry> {
        self.files.iter().filter_map(|(name, f)| f.entry(name)).collect()
    }

    /// Tells every peer about one file we hold.
    fn announce(&mut self, name: &FileName) {
        let Some(entry) = self.files.get(name).and_then(|f| f.entry(name)) else {
            return;
        };
        let conns: Vec<ConnId> = self.peers.values().map(|p| p.conn).collect();
        for conn in conns {
            self.send(conn, Message::Files { files: vec![entry.clone()] });
        }
    }

    /// Sends the chunks stored since the last flush to every peer, in as few Have
    /// messages as the header limit allows.
    fn flush_have(&mut self) {
        if self.pending_have.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending_have);
        let mut batches: Vec<Vec<HaveEntry>> = vec![Vec::new()];
        let mut len = 0;
        for e in entries {
            let l = have_entry_len(&e);
            if len + l > HEADER_LIMIT / 2 {
                batches.push(Vec::new());
                len = 0;
            }
            len += l;
            batches.last_mut().expect("never empty").push(e);
        }
        let conns: Vec<ConnId> = self.peers.values().map(|p| p.conn).collect();
        for conn in conns {
            for batch in &batches {
                self.send(conn, Message::Have(batch.clone()));
            }
        }
    }

    // -----------------------------------------------------------------------------
    // Status.

    /// The Query answer (docs/protocol.md, "Query").
    pub fn status(&self) -> Status {
        let mut s = Status {
            node: self.config.me.to_string(),
            joined: self.is_joined(),
            peers: self.peers.keys().map(ToString::to_string).collect(),
            chunks_fetched: self.chunks_fetched,
            chunks_served: self.chunks_served,
            ..Status::default()
        };
        for (name, f) in self.files.iter().filter(|(_, f)| f.is_known()) {
            let n = f.chunk_count();
            let (local, system, least, average) = if n == 0 {
                let holders = f.empty_file_holders();
                (1.0, 1.0, holders, f64::from(holders))
            } else {
                let mut least = u32::MAX;
                let (mut present, mut total) = (0u32, 0u64);
                for i in 0..n {
                    let r = f.replication(i);
                    least = least.min(r);
                    present += u32::from(r > 0);
                    total += u64::from(r);
                }
                let n_f = f64::from(n);
                let fraction = |x: f64| (x / n_f * 1e4).round() / 1e4;
                (fraction(f64::from(f.have.count())), fraction(f64::from(present)), least, fraction(total as f64))
            };
            s.files.push(name.to_string());
            s.local.push(local);
            s.system.push(system);
            s.least_replication.push(least);
            s.weighted_least_replication.push(average);
            s.sizes.push(f.size);
            s.digests.push(f.digest.to_string());
        }
        s.num_files = s.files.len();
        s
    }

    /// How many participants hold each chunk of `name`, summarised for drawing.
    pub fn chunk_map(&self, name: &FileName) -> Option<crate::status::ChunkMap> {
        let f = self.files.get(name).filter(|f| f.is_known())?;
        let replication: Vec<u32> = (0..f.chunk_count()).map(|i| f.replication(i)).collect();
        Some(crate::status::ChunkMap::new(name.to_string(), &replication, |i| f.have.contains(i)))
    }
}

fn envelope(me: &PeerAddr, message: Message) -> Envelope {
    Envelope { from: Some(me.clone()), token: None, message }
}

/// Whether `given` is the control token `want`; with no token configured nothing is.
/// Compared in constant time, so timing does not reveal where a guess goes wrong.
/// The relay in `ws-bridge` applies the same rule to sessions it forwards.
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
