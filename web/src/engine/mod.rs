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
//! a [`PeerView`](crate::bridge::PeerView) at most every [`NOTIFY_EVERY_MS`], from a
//! timer, and the Blob of a file to save.
//!
//! Layout: this file holds the engine's state, its start and the drain loop that hands
//! every output of core to its room; [`intents`] the page's commands and the view;
//! [`peers`] the peer sessions (sockets in, messages out, WebCrypto in between);
//! [`storage`] the storage commands, batched into IndexedDB transactions; [`picked`]
//! files the user shares from this computer.

mod intents;
mod peers;
mod picked;
mod storage;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use torronto_core::wire::ChunkRef;
use torronto_core::{
    Code, Config, ConnId, Event, FileName, ImportId, Millis, NetworkSecret, Node, PeerAddr, SecureConfig, StorageEvent,
    Tuning,
};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;

use crate::bridge::{Notice, PeerIdentity, Report, Save};
use crate::digest::Hasher;
use crate::error::WebError;
use crate::rates::RateMeter;
use crate::socket::{page_member, page_member_with};
use crate::store::Store;
use crate::util::{now_ms, random_hex, random_u64};
use peers::PeerConn;

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

/// The browser peer's engine as the worker holds it: shared by the worker's message
/// handler and the engine's own callbacks (sockets, timers, IndexedDB).
#[derive(Clone, Debug)]
pub struct PeerEngine(pub Rc<RefCell<Engine>>);

/// The browser peer's driver.
pub struct Engine {
    node: Node,
    me: PeerAddr,
    /// In a private network: this page's key pair and the secret, for every peer session.
    secure: Option<SecureConfig>,
    weak: Weak<RefCell<Engine>>,
    store: Option<Store>,
    storage_error: Option<WebError>,
    ready: bool,
    peers: HashMap<ConnId, PeerConn>,
    /// Where to reach each native node we were pointed at, for core's redials.
    dial_urls: HashMap<PeerAddr, String>,
    last_open: HashMap<PeerAddr, u64>,
    next_conn: u64,
    /// In-page control connections carrying one Insert each, with the file's name.
    inserts: HashMap<ImportId, String>,
    /// Files chosen with the picker, by the "path" core is given for them.
    picked: HashMap<String, web_sys::File>,
    imports: HashMap<ImportId, String>,
    inserting: BTreeMap<String, (u64, u64)>,
    requested: BTreeSet<FileName>,
    saves: HashMap<String, Save>,
    /// The node's byte counters over the last seconds: the card's and each file's rates.
    rates: RateMeter,
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

impl PeerEngine {
    /// A new browser peer, with the identity the page remembers (or a fresh one); call
    /// [`PeerEngine::start`] to open its storage. With `secret` it is a member of that private network: every
    /// peer session runs the secure handshake, and core takes peer messages only from
    /// proven members (as a private native node does).
    pub fn new(secret: Option<NetworkSecret>, identity: Option<PeerIdentity>) -> Self {
        let identity = identity.and_then(|i| i.parts());
        let name =
            identity.as_ref().map(|(name, _)| name.clone()).unwrap_or_else(|| format!("browser-{}", random_hex(8)));
        let me = PeerAddr::new(name, 0);
        let mut notices = Vec::new();
        let member = |secret: &NetworkSecret| match &identity {
            Some((_, key)) => Ok(page_member_with(secret, key.clone())),
            None => page_member(secret),
        };
        let secure = secret.and_then(|secret| match member(&secret) {
            Ok(config) => Some(config),
            Err(e) => {
                notices.push(Notice {
                    id: 1,
                    ok: false,
                    code: None,
                    text: format!("cannot join the private network: {e}"),
                });
                None
            }
        });
        // A deeper request window than between native nodes: the page's event loop
        // also hashes and stores every chunk, so its round trips are longer.
        let tuning = Tuning { requests_per_peer: REQUESTS_PER_PEER, max_writing: MAX_WRITING, ..Tuning::default() };
        let mut node = Node::new(Config {
            me: me.clone(),
            peers: Vec::new(),
            token: None,
            insert_from: Vec::new(),
            seed: random_u64(),
            tuning,
            private: secure.as_ref().map(|c| c.identity.node_id()),
        });
        node.fetch_on_request();
        let engine = Rc::new_cyclic(|weak| {
            RefCell::new(Engine {
                node,
                me,
                secure,
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
                rates: RateMeter::default(),
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
                next_notice: notices.len() as u64,
                notices,
                post: None,
                notify_timer: None,
            })
        });
        PeerEngine(engine)
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
            // Nodes the panel saw joined while storage was still opening: their
            // `ensure_peer` came too early and will not come again.
            let waiting: Vec<PeerAddr> = e.dial_urls.keys().cloned().collect();
            for addr in waiting {
                if !e.peers.values().any(|p| p.addr == addr) {
                    e.open_peer(addr);
                }
            }
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

impl Default for PeerEngine {
    /// An open-network peer.
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl Engine {
    fn on_timer(&mut self) {
        self.timer = None;
        self.node.handle_timeout(now_ms());
        self.drain();
    }

    pub(super) fn on_storage(&mut self, event: StorageEvent) {
        self.node.handle_storage(now_ms(), event);
        self.drain();
    }

    /// Hands every output of core to its room — messages to [`peers`], storage
    /// commands to [`storage`], events to the notices — until core has nothing more
    /// to say, then sets the next timer and schedules a view for the page.
    pub(super) fn drain(&mut self) {
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

    fn event(&mut self, event: Event) {
        match event {
            Event::FileComplete { file, size } if self.requested.remove(&file) => {
                let text =
                    format!("{file} ({}) is complete and verified in this browser", torronto_core::human_size(size));
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
            Event::FileRemoved { file, .. } => {
                self.requested.remove(&file);
                self.notice(true, None, format!("{file} was removed from the network; this browser keeps no copy"));
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

    pub(super) fn notice(&mut self, ok: bool, code: Option<Code>, text: String) {
        self.next_notice += 1;
        self.notices.push(Notice { id: self.next_notice, ok, code, text });
        if self.notices.len() > 5 {
            self.notices.remove(0);
        }
        // News (a download complete, an insert answered) is shown at once.
        self.notify_in(0);
    }

    /// Sends the page a fresh [`PeerView`](crate::bridge::PeerView) soon, at most every
    /// [`NOTIFY_EVERY_MS`]: progress needs no more, and each view costs the page a render.
    pub(super) fn changed(&mut self) {
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
                let view = e.view();
                // While bytes move, views keep coming, so the rates fall to zero when they stop.
                let moving = view.down > 0.0 || view.up > 0.0;
                post(&Report::View(Box::new(view)), None);
                if moving {
                    e.changed();
                }
            }
        }));
    }
}
