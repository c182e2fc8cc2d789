//! The browser peer: core's `Node` driven by WebSockets, IndexedDB and timers.
//!
//! This is the wasm counterpart of native-node's driver: inputs go into the node with
//! the current time, then every output is drained — messages to sockets, storage
//! commands to IndexedDB (chunk writes and reads batched into transactions), the next
//! timeout to a timer. All protocol decisions stay in core.
//!
//! The page's node is joined from the start and fetches only what the user asks for
//! (`fetch_on_request`). A peer session is a WebSocket to a native node that the node
//! treats as a dialled connection, so core introduces itself with Add and the native
//! node answers with Files, exactly as between two TCP peers.
//!
//! The engine runs in a dedicated worker (`worker`), off the page's thread: the page
//! only renders. [`crate::worker`] turns the page's commands into calls of the intent
//! methods; the engine sends [`Report`]s back through the `post` it was started with —
//! a [`PeerView`] at most every [`NOTIFY_EVERY_MS`], from a timer, and the Blob of a
//! file to save.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use gloo_timers::callback::Timeout;
use serde::{Deserialize, Serialize};
use torronto_core::layout::{chunk_count, chunk_range};
use torronto_core::manifest::ChunkHash;
use torronto_core::wire::ChunkRef;
use torronto_core::{
    ChunkIndex, Code, Config, ConnId, ConnInfo, Envelope, Event, FileName, ImportId, ManifestBuilder, Message, Millis,
    NetCommand, Node, PeerAddr, PeerMessage, Refusal, StorageCommand, StorageError, StorageEvent, Tuning,
};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::bridge::Report;
use crate::digest::Hasher;
use crate::socket::{Socket, SocketEvent};
use crate::store::Store;
use crate::util::{js_error, now_ms, random_hex, random_u64};

/// How often the user interface may be told to re-render.
const NOTIFY_EVERY_MS: u32 = 250;
/// Chunk writes gathered into one transaction before it is started anyway: one
/// IndexedDB record (see `store`), which costs about what a single chunk would.
const WRITE_BATCH: usize = crate::store::RECORD_CHUNKS;
/// How long a chunk may wait for others to share its record...
const WRITE_DELAY_MS: u64 = 100;
/// ...unless no other chunk came for this long (the end of a download, say).
const WRITE_IDLE_MS: u64 = 20;
/// Verified chunks waiting for IndexedDB before fetching pauses: several records, so
/// that the next record fills while the last one is being written.
const MAX_WRITING: usize = 4 * WRITE_BATCH;
/// A peer session to a node is not reopened sooner than this after the last try.
const REOPEN_AFTER_MS: u64 = 3_000;
/// Chunk requests in flight to one node (a node serves up to 256 per connection).
const REQUESTS_PER_PEER: usize = 160;
/// Bytes of a picked file read at once while hashing or storing it.
const SLICE: u64 = 4 << 20;

/// Sends a report, with its Blob if any, to the page.
pub type Post = Rc<dyn Fn(&Report, Option<&JsValue>)>;

/// The engine, owned by the worker's message handler and its own callbacks.
#[derive(Clone, Debug)]
pub struct EngineHandle(pub Rc<RefCell<Engine>>);

/// Where the saved copy of a file is, once assembled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Save {
    Assembling,
    /// The whole file went to the page as a Blob ([`Report::Saved`]).
    Ready,
    Failed(String),
}

/// Something to tell the user, newest last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub id: u64,
    pub ok: bool,
    #[serde(with = "code_number")]
    pub code: Option<Code>,
    pub text: String,
}

/// A reply code crosses to the page as its number.
mod code_number {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use torronto_core::Code;

    pub fn serialize<S: Serializer>(code: &Option<Code>, s: S) -> Result<S::Ok, S::Error> {
        code.map(|c| c as u8).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Code>, D::Error> {
        Ok(Option::<u8>::deserialize(d)?.and_then(|n| Code::from_number(n.into())))
    }
}

/// One file as the browser peer sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerFile {
    pub name: String,
    pub size: u64,
    pub local: f64,
    pub system: f64,
    pub least: u32,
    pub average: f64,
    pub requested: bool,
    /// Bytes per second arriving, while downloading.
    pub rate: Option<f64>,
    pub save: Option<Save>,
}

/// A snapshot for rendering.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerView {
    pub me: String,
    pub ready: bool,
    pub storage_error: Option<String>,
    pub peers: Vec<String>,
    pub files: Vec<PeerFile>,
    /// Files being inserted from this computer: name, bytes done, total.
    pub inserting: Vec<(String, u64, u64)>,
    pub notices: Vec<Notice>,
    pub chunks_fetched: u64,
    pub chunks_served: u64,
    /// Downloaded chunks are hashed with WebCrypto (else in wasm, by core).
    pub webcrypto: bool,
}

#[derive(Debug)]
struct PeerConn {
    addr: PeerAddr,
    socket: Socket,
    open: bool,
    /// Messages received and not yet handed to core, in arrival order.
    inbox: VecDeque<Inbound>,
    next_seq: u64,
}

/// A peer's message waiting its turn: an Upload waits for its WebCrypto digest, and
/// whatever came after it on the same socket waits behind it.
#[derive(Debug)]
struct Inbound {
    seq: u64,
    envelope: Envelope,
    /// An Upload's body as the socket received it (see `Engine::upload_body`).
    body: Option<js_sys::ArrayBuffer>,
    /// The digest is being computed.
    waiting: bool,
    hash: Option<ChunkHash>,
}

/// Arrival of a file's chunks, for the rate shown while it downloads.
#[derive(Debug, Default)]
struct Meter {
    samples: std::collections::VecDeque<(u64, u64)>,
}

impl Meter {
    fn record(&mut self, at: u64, bytes: u64) {
        self.samples.push_back((at, bytes));
        while self.samples.front().is_some_and(|&(t, _)| at - t > 3_000) {
            self.samples.pop_front();
        }
    }

    fn rate(&self, now: u64) -> Option<f64> {
        let (first, _) = *self.samples.front()?;
        if now.saturating_sub(first) > 4_000 {
            return None;
        }
        let total: u64 = self.samples.iter().map(|&(_, b)| b).sum();
        Some(total as f64 * 1000.0 / (now - first).max(250) as f64)
    }
}

/// The browser peer's driver.
pub struct Engine {
    node: Node,
    me: PeerAddr,
    weak: Weak<RefCell<Engine>>,
    store: Option<Store>,
    storage_error: Option<String>,
    ready: bool,
    peers: HashMap<ConnId, PeerConn>,
    /// Where to reach each native node we were pointed at, for core's redials.
    dial_urls: HashMap<PeerAddr, String>,
    last_open: HashMap<PeerAddr, u64>,
    next_conn: u64,
    /// Inserts asked of core and not yet answered, with the file's name.
    inserts: HashMap<ImportId, String>,
    /// Files chosen with the picker, by the "path" core is given for them.
    picked: HashMap<String, web_sys::File>,
    imports: HashMap<ImportId, String>,
    inserting: BTreeMap<String, (u64, u64)>,
    requested: BTreeSet<FileName>,
    saves: HashMap<String, Save>,
    meters: HashMap<FileName, Meter>,
    /// Chunks to store, each already a JS object (a Blob part).
    writes: Vec<(ChunkRef, JsValue)>,
    /// The body of the Upload being handled, as the socket received it: the chunk's
    /// bytes in JS, stored as they are if core verifies it and asks for a write.
    upload_body: Option<(ChunkRef, js_sys::ArrayBuffer)>,
    /// WebCrypto, where the context has it: it verifies downloaded chunks.
    hasher: Option<Hasher>,
    write_flush: Option<Timeout>,
    /// When the first and the last of `writes` came.
    write_first: u64,
    write_last: u64,
    reads: Vec<(ConnId, ChunkRef, bool)>,
    read_flush: Option<Timeout>,
    /// Storage results produced while draining, fed back in the same drain.
    ready_events: Vec<StorageEvent>,
    timer: Option<(Millis, Timeout)>,
    notices: Vec<Notice>,
    next_notice: u64,
    post: Option<Post>,
    notify_timer: Option<Timeout>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("me", &self.me).finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// A new browser peer with a fresh identity; call [`EngineHandle::start`] to
    /// open its storage.
    pub fn new() -> Self {
        let me = PeerAddr::new(format!("browser-{}", random_hex(8)), 0);
        // A deeper request window than between native nodes: the page's event loop
        // also hashes and stores every chunk, so its round trips are longer.
        let tuning = Tuning { requests_per_peer: REQUESTS_PER_PEER, max_writing: MAX_WRITING, ..Tuning::default() };
        let mut node = Node::new(Config { me: me.clone(), peers: Vec::new(), token: None, seed: random_u64(), tuning });
        node.fetch_on_request();
        let engine = Rc::new_cyclic(|weak| {
            RefCell::new(Engine {
                node,
                me,
                weak: weak.clone(),
                store: None,
                storage_error: None,
                ready: false,
                peers: HashMap::new(),
                dial_urls: HashMap::new(),
                last_open: HashMap::new(),
                next_conn: 1,
                inserts: HashMap::new(),
                picked: HashMap::new(),
                imports: HashMap::new(),
                inserting: BTreeMap::new(),
                requested: BTreeSet::new(),
                saves: HashMap::new(),
                meters: HashMap::new(),
                writes: Vec::new(),
                upload_body: None,
                hasher: Hasher::new(),
                write_flush: None,
                write_first: 0,
                write_last: 0,
                reads: Vec::new(),
                read_flush: None,
                ready_events: Vec::new(),
                timer: None,
                notices: Vec::new(),
                next_notice: 0,
                post: None,
                notify_timer: None,
            })
        });
        EngineHandle(engine)
    }

    /// Opens IndexedDB, restores the chunks kept there and joins (the page's network
    /// is whatever nodes it is pointed at). `post` sends reports to the page.
    pub fn start(&self, post: Post) {
        self.0.borrow_mut().post = Some(post);
        let weak = Rc::downgrade(&self.0);
        spawn_local(async move {
            let opened = Store::open().await;
            let loaded = match &opened {
                Ok(store) => store.load().await,
                Err(e) => Err(e.clone()),
            };
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let now = now_ms();
            match loaded {
                Ok(files) => {
                    for f in files {
                        // A partial file was being downloaded when the page closed: carry on.
                        if !f.have.is_complete() {
                            e.requested.insert(f.name.clone());
                        }
                        e.node.add_local_file(f);
                    }
                    e.store = opened.ok();
                }
                Err(err) => e.storage_error = Some(err),
            }
            e.ready = true;
            e.node.join(now);
            let wanted: Vec<FileName> = e.requested.iter().cloned().collect();
            for f in wanted {
                e.node.request_file(now, &f);
            }
            e.drain();
        });
    }

    pub fn borrow(&self) -> std::cell::Ref<'_, Engine> {
        self.0.borrow()
    }

    pub fn borrow_mut(&self) -> std::cell::RefMut<'_, Engine> {
        self.0.borrow_mut()
    }
}

impl Default for EngineHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    // -----------------------------------------------------------------------------
    // Intents from the interface.

    /// Makes sure there is a peer session to the native node `addr`, reachable at the
    /// WebSocket `url`. Called whenever a control session sees that node joined.
    pub fn ensure_peer(&mut self, url: &str, addr: PeerAddr) {
        self.dial_urls.insert(addr.clone(), url.to_string());
        if self.peers.values().any(|p| p.addr == addr) || !self.ready {
            return;
        }
        let now = now_ms();
        if self.last_open.get(&addr).is_some_and(|&t| now < t + REOPEN_AFTER_MS) {
            return;
        }
        self.open_peer(addr);
        self.drain();
    }

    /// Closes the peer sessions to the node at `url` and stops redialling it.
    pub fn forget_node(&mut self, url: &str) {
        self.dial_urls.retain(|_, u| u != url);
        let conns: Vec<ConnId> =
            self.peers.iter().filter(|(_, p)| !self.dial_urls.contains_key(&p.addr)).map(|(&c, _)| c).collect();
        let now = now_ms();
        for conn in conns {
            if let Some(p) = self.peers.remove(&conn) {
                if p.open {
                    self.node.handle_disconnected(now, conn);
                }
            }
        }
        self.drain();
    }

    /// Shares a file chosen with the picker: core inserts it as a node's Insert would,
    /// and the storage commands read it from the `File`.
    pub fn insert_file(&mut self, file: web_sys::File) {
        let path = file.name();
        if self.picked.contains_key(&path) {
            self.notice(false, None, format!("{path} is already being inserted"));
            return;
        }
        if !self.ready {
            self.notice(false, None, "the browser's storage is not open yet; try again in a moment".into());
            return;
        }
        self.picked.insert(path.clone(), file);
        let id = self.node.insert(now_ms(), path.clone());
        self.inserts.insert(id, path);
        self.drain();
    }

    /// Fetches a network file into the page.
    pub fn download(&mut self, name: &str) {
        let Ok(file) = FileName::new(name) else { return };
        self.requested.insert(file.clone());
        self.node.request_file(now_ms(), &file);
        self.drain();
    }

    /// Assembles a file held completely from IndexedDB into a Blob and sends it to
    /// the page, which offers it for saving (a link; `auto` also clicks it). The page
    /// keeps the Blob, so this happens once per file.
    pub fn save(&mut self, name: &str, auto: bool) {
        let Ok(file) = FileName::new(name) else { return };
        let Some(store) = self.store.clone() else { return };
        let Some(size) = self.node.status().rows().find(|r| r.name == name).and_then(|r| r.size) else { return };
        if matches!(self.saves.get(name), Some(Save::Assembling | Save::Ready)) {
            return;
        }
        self.saves.insert(name.to_string(), Save::Assembling);
        self.changed();
        let weak = self.weak.clone();
        spawn_local(async move {
            let result = store.file_blob(&file, size, chunk_count(size)).await;
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let save = match result {
                Ok(blob) => {
                    if let Some(post) = &e.post {
                        post(&Report::Saved { name: file.to_string(), auto }, Some(&blob));
                    }
                    Save::Ready
                }
                Err(err) => Save::Failed(err),
            };
            e.saves.insert(file.to_string(), save);
            e.changed();
        });
    }

    /// Forgets every chunk the page holds (IndexedDB is cleared); the page reloads.
    pub fn clear_storage(&mut self) {
        let Some(store) = self.store.clone() else { return };
        let post = self.post.clone();
        spawn_local(async move {
            let _ = store.clear().await;
            if let Some(post) = post {
                post(&Report::Reload, None);
            }
        });
    }

    pub fn dismiss(&mut self, id: u64) {
        self.notices.retain(|n| n.id != id);
        self.changed();
    }

    pub fn view(&self) -> PeerView {
        let status = self.node.status();
        let now = now_ms();
        let files = status
            .rows()
            .map(|row| {
                let file = FileName::new(row.name).ok();
                let requested = file.as_ref().is_some_and(|f| self.requested.contains(f));
                PeerFile {
                    name: row.name.to_string(),
                    size: row.size.unwrap_or(0),
                    local: row.local,
                    system: row.system,
                    least: row.least,
                    average: row.average,
                    requested,
                    rate: file.and_then(|f| self.meters.get(&f)).and_then(|m| m.rate(now)),
                    save: self.saves.get(row.name).cloned(),
                }
            })
            .collect();
        PeerView {
            me: self.me.host.clone(),
            ready: self.ready,
            storage_error: self.storage_error.clone(),
            peers: status.peers.clone(),
            files,
            inserting: self.inserting.iter().map(|(n, &(d, t))| (n.clone(), d, t)).collect(),
            notices: self.notices.clone(),
            chunks_fetched: status.chunks_fetched,
            chunks_served: status.chunks_served,
            webcrypto: self.hasher.is_some(),
        }
    }

    // -----------------------------------------------------------------------------
    // Inputs.

    fn open_peer(&mut self, addr: PeerAddr) {
        let now = now_ms();
        let Some(url) = self.dial_urls.get(&addr).cloned() else {
            self.node.handle_dial_failed(now, &addr);
            return;
        };
        self.last_open.insert(addr.clone(), now);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let weak = self.weak.clone();
        let opened = Socket::open(&url, move |event| {
            if let Some(engine) = weak.upgrade() {
                engine.borrow_mut().on_socket(conn, event);
            }
        });
        match opened {
            Ok(socket) => {
                self.peers.insert(conn, PeerConn { addr, socket, open: false, inbox: VecDeque::new(), next_seq: 0 });
            }
            Err(_) => self.node.handle_dial_failed(now, &addr),
        }
    }

    fn on_socket(&mut self, conn: ConnId, event: SocketEvent) {
        let now = now_ms();
        match event {
            SocketEvent::Open => {
                let Some(p) = self.peers.get_mut(&conn) else { return };
                p.open = true;
                let addr = p.addr.clone();
                self.node.handle_connected(now, conn, ConnInfo { dialed: Some(addr), trusted: false });
            }
            SocketEvent::Message(envelope, body) => {
                self.receive(conn, envelope, body);
                return;
            }
            SocketEvent::Malformed(reason) => self.node.handle_malformed(now, conn, reason),
            SocketEvent::Closed(_) => {
                // What arrived before the close still counts; core hashes what WebCrypto
                // has not.
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.inbox.iter_mut().for_each(|m| m.waiting = false);
                }
                self.deliver(conn);
                let Some(p) = self.peers.remove(&conn) else { return };
                if p.open {
                    self.node.handle_disconnected(now, conn);
                } else {
                    self.node.handle_dial_failed(now, &p.addr);
                }
            }
        }
        self.drain();
    }

    /// Queues a peer's message; an Upload's body goes to WebCrypto first.
    fn receive(&mut self, conn: ConnId, envelope: Envelope, body: Option<js_sys::ArrayBuffer>) {
        let body = match &envelope.message {
            Message::Peer(PeerMessage::Upload { data, .. }) => body.filter(|b| b.byte_length() as usize == data.len()),
            _ => None,
        };
        let digest = self.hasher.as_ref().zip(body.as_ref()).map(|(hasher, body)| hasher.digest(body));
        let Some(p) = self.peers.get_mut(&conn) else { return };
        let seq = p.next_seq;
        p.next_seq += 1;
        p.inbox.push_back(Inbound { seq, envelope, body, waiting: digest.is_some(), hash: None });
        if let Some(digest) = digest {
            let weak = self.weak.clone();
            spawn_local(async move {
                let hash = digest.await;
                if let Some(engine) = weak.upgrade() {
                    engine.borrow_mut().on_digest(conn, seq, hash);
                }
            });
        }
        self.deliver(conn);
    }

    fn on_digest(&mut self, conn: ConnId, seq: u64, hash: Option<ChunkHash>) {
        let Some(p) = self.peers.get_mut(&conn) else { return };
        if let Some(m) = p.inbox.iter_mut().find(|m| m.seq == seq) {
            m.waiting = false;
            m.hash = hash;
        }
        self.deliver(conn);
    }

    /// Hands core the messages at the head of `conn`'s inbox that are ready.
    fn deliver(&mut self, conn: ConnId) {
        loop {
            let Some(p) = self.peers.get_mut(&conn) else { return };
            if p.inbox.front().is_none_or(|m| m.waiting) {
                return;
            }
            let Inbound { envelope, body, hash, .. } = p.inbox.pop_front().expect("checked above");
            let now = now_ms();
            if let Message::Peer(PeerMessage::Upload { chunk, data }) = &envelope.message {
                self.meters.entry(chunk.file.clone()).or_default().record(now, data.len() as u64);
                self.upload_body = body.map(|body| (chunk.clone(), body));
            }
            self.node.handle_message_hashed(now, conn, envelope, hash);
            self.drain();
            // Not verified, or not wanted: core asked for no write.
            self.upload_body = None;
        }
    }

    fn on_timer(&mut self) {
        self.timer = None;
        self.node.handle_timeout(now_ms());
        self.drain();
    }

    fn on_storage(&mut self, event: StorageEvent) {
        self.node.handle_storage(now_ms(), event);
        self.drain();
    }

    // -----------------------------------------------------------------------------
    // Outputs.

    fn drain(&mut self) {
        loop {
            let mut moved = false;
            while let Some(cmd) = self.node.poll_net() {
                moved = true;
                self.net(cmd);
            }
            while let Some(cmd) = self.node.poll_storage() {
                moved = true;
                self.storage(cmd);
            }
            while let Some(event) = self.node.poll_event() {
                self.event(event);
            }
            for event in std::mem::take(&mut self.ready_events) {
                moved = true;
                self.node.handle_storage(now_ms(), event);
            }
            if !moved {
                break;
            }
        }
        self.schedule_timer();
        self.changed();
    }

    fn net(&mut self, cmd: NetCommand) {
        let now = now_ms();
        match cmd {
            NetCommand::Send { conn, envelope } => {
                if let Some(p) = self.peers.get(&conn) {
                    if p.socket.send(&envelope).is_err() {
                        // The close event follows and reports the disconnection.
                    }
                }
            }
            NetCommand::Dial(addr) => {
                if self.peers.values().any(|p| p.addr == addr) {
                    // Already connected or connecting: that session is the answer.
                    return;
                }
                self.open_peer(addr);
            }
            NetCommand::Close(conn) => {
                if self.peers.remove(&conn).is_some() {
                    self.node.handle_disconnected(now, conn);
                }
            }
        }
    }

    fn insert_answered(&mut self, id: ImportId, result: Result<(), Refusal>) {
        let Some(path) = self.inserts.remove(&id) else { return };
        self.picked.remove(&path);
        self.inserting.remove(&path);
        let (code, text) = match result {
            Ok(()) => (Code::Ok, format!("{path} is shared: the network can fetch it from this browser")),
            Err(Refusal { code, reason }) => (code, format!("{path}: {reason}")),
        };
        self.notice(code == Code::Ok, Some(code), text);
    }

    fn storage(&mut self, cmd: StorageCommand) {
        let Some(store) = self.store.clone() else {
            self.storage_unavailable(cmd);
            return;
        };
        match cmd {
            StorageCommand::Import { id, path, .. } => {
                self.imports.insert(id, path.clone());
                let Some(file) = self.picked.get(&path).cloned() else {
                    let error = StorageError { code: Code::FileMissing, message: format!("{path} was not picked") };
                    self.ready_events.push(StorageEvent::Imported { id, result: Err(error) });
                    return;
                };
                self.inserting.insert(path.clone(), (0, file.size() as u64));
                let weak = self.weak.clone();
                spawn_local(async move {
                    let result = hash_file(&weak, &path, &file).await;
                    if let Some(e) = weak.upgrade() {
                        e.borrow_mut().on_storage(StorageEvent::Imported { id, result });
                    }
                });
            }
            StorageCommand::Commit { id, name, manifest } => {
                let path = self.imports.remove(&id).unwrap_or_default();
                let file = self.picked.get(&path).cloned();
                let weak = self.weak.clone();
                spawn_local(async move {
                    let result = match file {
                        Some(file) => store_file(&weak, &store, &path, &file, &name, &manifest).await,
                        None => Err(format!("{path} was not picked")),
                    };
                    let result = result.map_err(|message| StorageError { code: Code::BadPermission, message });
                    if let Some(e) = weak.upgrade() {
                        e.borrow_mut().on_storage(StorageEvent::Committed { id, result });
                    }
                });
            }
            StorageCommand::Discard { id } => {
                if let Some(path) = self.imports.remove(&id) {
                    self.inserting.remove(&path);
                }
            }
            StorageCommand::Prepare { file, manifest } => {
                let weak = self.weak.clone();
                spawn_local(async move {
                    if let Err(err) = store.put_manifest(&file, &manifest).await {
                        if let Some(e) = weak.upgrade() {
                            e.borrow_mut().notice(false, None, format!("cannot keep {file} in the browser: {err}"));
                        }
                    }
                });
            }
            StorageCommand::Read { conn, chunk, push } => {
                self.reads.push((conn, chunk, push));
                if self.read_flush.is_none() {
                    let weak = self.weak.clone();
                    self.read_flush = Some(Timeout::new(0, move || {
                        if let Some(e) = weak.upgrade() {
                            e.borrow_mut().flush_reads();
                        }
                    }));
                }
            }
            StorageCommand::Write { chunk, data } => {
                let part = match self.upload_body.take() {
                    Some((c, body)) if c == chunk => JsValue::from(body),
                    _ => js_sys::Uint8Array::from(&data[..]).into(),
                };
                self.writes.push((chunk, part));
                self.write_last = now_ms();
                if self.writes.len() == 1 {
                    self.write_first = self.write_last;
                }
                if self.writes.len() >= WRITE_BATCH {
                    self.flush_writes();
                } else if self.write_flush.is_none() {
                    self.write_due();
                }
            }
            StorageCommand::Finalize { .. } => {}
        }
    }

    /// Without IndexedDB the page can still be a control panel, but holds nothing.
    fn storage_unavailable(&mut self, cmd: StorageCommand) {
        let error = || StorageError {
            code: Code::BadPermission,
            message: "the browser's storage (IndexedDB) is not available".into(),
        };
        let event = match cmd {
            StorageCommand::Import { id, .. } => StorageEvent::Imported { id, result: Err(error()) },
            StorageCommand::Commit { id, .. } => StorageEvent::Committed { id, result: Err(error()) },
            StorageCommand::Read { conn, chunk, push } => {
                StorageEvent::Read { conn, chunk, push, result: Err(error()) }
            }
            StorageCommand::Write { chunk, .. } => StorageEvent::Written { chunk, result: Err(error()) },
            StorageCommand::Discard { .. } | StorageCommand::Prepare { .. } | StorageCommand::Finalize { .. } => return,
        };
        self.ready_events.push(event);
    }

    /// Writes the gathered chunks if they waited long enough, else sets the timer for
    /// when they will have (one timer at a time, not one per chunk).
    fn write_due(&mut self) {
        self.write_flush = None;
        if self.writes.is_empty() {
            return;
        }
        let due = (self.write_last + WRITE_IDLE_MS).min(self.write_first + WRITE_DELAY_MS);
        let now = now_ms();
        if now >= due {
            self.flush_writes();
            return;
        }
        let weak = self.weak.clone();
        self.write_flush = Some(Timeout::new((due - now) as u32, move || {
            if let Some(e) = weak.upgrade() {
                e.borrow_mut().write_due();
            }
        }));
    }

    fn flush_writes(&mut self) {
        self.write_flush = None;
        let batch = std::mem::take(&mut self.writes);
        let Some(store) = self.store.clone() else { return };
        if batch.is_empty() {
            return;
        }
        let weak = self.weak.clone();
        spawn_local(async move {
            let rows: Vec<(String, u64, u32, JsValue)> =
                batch.iter().map(|(c, d)| (c.file.to_string(), c.size, c.index.get(), d.clone())).collect();
            let result = store.write_chunks(&rows).await;
            drop(rows);
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let now = now_ms();
            for (chunk, _) in batch {
                let result = result.clone().map_err(|message| StorageError { code: Code::BadPermission, message });
                e.node.handle_storage(now, StorageEvent::Written { chunk, result });
            }
            e.drain();
        });
    }

    fn flush_reads(&mut self) {
        self.read_flush = None;
        let batch = std::mem::take(&mut self.reads);
        let Some(store) = self.store.clone() else { return };
        let weak = self.weak.clone();
        spawn_local(async move {
            let keys: Vec<(String, u32)> = batch.iter().map(|(_, c, _)| (c.file.to_string(), c.index.get())).collect();
            let results = store.read_chunks(&keys).await;
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let now = now_ms();
            for (i, (conn, chunk, push)) in batch.into_iter().enumerate() {
                let result = match &results {
                    Ok(all) => all[i].clone(),
                    Err(err) => Err(err.clone()),
                };
                let result = result.map_err(|message| StorageError { code: Code::FileMissing, message });
                e.node.handle_storage(now, StorageEvent::Read { conn, chunk, push, result });
            }
            e.drain();
        });
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::FileComplete { file, size } if self.requested.remove(&file) => {
                self.meters.remove(&file);
                let text = format!("{file} ({}) is complete and verified in this browser", crate::util::bytes(size));
                self.notice(true, None, text);
            }
            Event::Inserted { id, result } => self.insert_answered(id, result),
            Event::StorageFailed { file, message } => self.notice(false, None, format!("{file}: {message}")),
            Event::ChunkRejected { peer, chunk } => self.notice(
                false,
                None,
                format!("{peer} sent a corrupt chunk {} of {}; it was dropped", chunk.index, chunk.file),
            ),
            Event::PeerBanned(peer) => {
                self.notice(false, None, format!("disconnected {peer}: it kept sending corrupt chunks"))
            }
            Event::Conflict { peer, file } => {
                self.notice(false, None, format!("{peer} offers other content under the name {file}; ignored"))
            }
            _ => {}
        }
    }

    fn schedule_timer(&mut self) {
        let Some(at) = self.node.poll_timeout() else {
            self.timer = None;
            return;
        };
        // A timer due no later is kept: firing early is harmless (core acts only on what
        // is due and names the next deadline), while replacing the timer on every message
        // (each request moves the earliest deadline) cost the page measurably.
        if self.timer.as_ref().is_some_and(|(t, _)| *t <= at) {
            return;
        }
        let delay = at.saturating_sub(now_ms()).min(u64::from(u32::MAX)) as u32;
        let weak = self.weak.clone();
        let timeout = Timeout::new(delay, move || {
            if let Some(e) = weak.upgrade() {
                e.borrow_mut().on_timer();
            }
        });
        self.timer = Some((at, timeout));
    }

    fn notice(&mut self, ok: bool, code: Option<Code>, text: String) {
        self.next_notice += 1;
        self.notices.push(Notice { id: self.next_notice, ok, code, text });
        if self.notices.len() > 5 {
            self.notices.remove(0);
        }
        // News (a download complete, an insert answered) is shown at once.
        self.notify_in(0);
    }

    /// Sends the page a fresh [`PeerView`] soon, at most every [`NOTIFY_EVERY_MS`]:
    /// progress needs no more, and each view costs the page a render.
    fn changed(&mut self) {
        if self.notify_timer.is_none() {
            self.notify_in(NOTIFY_EVERY_MS);
        }
    }

    /// Sends the page a fresh view after `delay` ms (sooner than planned, if it was).
    fn notify_in(&mut self, delay: u32) {
        let weak = self.weak.clone();
        self.notify_timer = Some(Timeout::new(delay, move || {
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            e.notify_timer = None;
            if let Some(post) = e.post.clone() {
                post(&Report::View(Box::new(e.view())), None);
            }
        }));
    }
}

/// Computes a picked file's manifest, reporting progress.
async fn hash_file(
    weak: &Weak<RefCell<Engine>>,
    path: &str,
    file: &web_sys::File,
) -> Result<torronto_core::Manifest, StorageError> {
    let size = file.size() as u64;
    let mut builder = ManifestBuilder::new();
    let mut done = 0;
    while done < size {
        let end = (done + SLICE).min(size);
        let bytes = read_slice(file, done, end)
            .await
            .map_err(|message| StorageError { code: Code::FileMissing, message: format!("{path}: {message}") })?;
        builder.update(&bytes);
        done = end;
        progress(weak, path, done / 2, size);
    }
    builder.finish().map_err(|e| StorageError { code: Code::BadRequest, message: format!("{path}: {e}") })
}

/// Copies a picked file into IndexedDB chunk by chunk, checking each against the
/// manifest computed moments ago (the file may have changed on disk since).
async fn store_file(
    weak: &Weak<RefCell<Engine>>,
    store: &Store,
    path: &str,
    file: &web_sys::File,
    name: &FileName,
    manifest: &torronto_core::Manifest,
) -> Result<(), String> {
    let size = manifest.size();
    let n = chunk_count(size);
    let per_slice = (SLICE / torronto_core::layout::CHUNK_SIZE) as u32;
    let mut first = 0;
    while first < n {
        let last = (first + per_slice).min(n);
        let start = chunk_range(size, ChunkIndex(first)).start;
        let end = chunk_range(size, ChunkIndex(last - 1)).end;
        let bytes = Bytes::from(read_slice(file, start, end).await?);
        let mut rows = Vec::new();
        for i in first..last {
            let range = chunk_range(size, ChunkIndex(i));
            let data = bytes.slice((range.start - start) as usize..(range.end - start) as usize);
            if !manifest.verify(ChunkIndex(i), &data) {
                return Err(format!("{path} changed while it was being inserted; pick it again"));
            }
            rows.push((name.to_string(), size, i, js_sys::Uint8Array::from(&data[..]).into()));
        }
        store.write_chunks(&rows).await?;
        first = last;
        progress(weak, path, size / 2 + end / 2, size);
    }
    store.put_manifest(name, manifest).await
}

async fn read_slice(file: &web_sys::File, start: u64, end: u64) -> Result<Vec<u8>, String> {
    let blob = file.slice_with_f64_and_f64(start as f64, end as f64).map_err(|e| js_error(&e))?;
    let buffer = JsFuture::from(blob.array_buffer()).await.map_err(|e| js_error(&e))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

fn progress(weak: &Weak<RefCell<Engine>>, path: &str, done: u64, total: u64) {
    if let Some(engine) = weak.upgrade() {
        let mut e = engine.borrow_mut();
        e.inserting.insert(path.to_string(), (done, total));
        e.changed();
    }
}
