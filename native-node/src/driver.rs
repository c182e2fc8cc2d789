//! The event loop that drives one `torronto_core::Node` with tokio, TCP and the disk.
//!
//! One task owns the node. Connection tasks (TCP peers, and WebSocket sessions from
//! the `--ws` listener of [`crate::web`]) decode frames and send it [`Input`]s;
//! [`crate::storage`] does file I/O and hashing off this thread and sends its results
//! back the same way. After each batch of inputs the loop drains the node's outputs:
//! messages go to the connections' writer tasks, storage commands to the storage.

mod admission;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use torronto_core::{
    Config, ConnId, ConnInfo, Envelope, Event, Message, Millis, NetCommand, Node, NodeId, PeerAddr, PeerMessage,
    StorageCommand, StorageEvent, Tuning,
};
use torronto_net::{
    tune, Decoder, FrameRead, SecureFrameReader, SecureFrameWriter, Secured, TcpFrameReader, TcpFrameWriter,
};

use crate::connection::{dial, read_loop, write_loop, ConnWrite, Outgoing, OUTGOING_LIMIT};
use crate::events::EventLog;
use crate::input::{Input, Link};
use crate::limits::Limiter;
use crate::metrics::Metrics;
pub use crate::options::NodeOptions;
use crate::private::{load_identity, Accepted, Private};
use crate::registry::Registration;
use crate::shared::SharedFolder;
use crate::slots::{is_local, Slots};
use crate::storage::{SendFile, Storage};
use crate::store::Store;
use crate::tasks::Tasks;
use crate::web::{panel_url, WebListener};

/// How long a graceful shutdown may spend leaving the network.
const SHUTDOWN_LEAVE_LIMIT: Duration = Duration::from_secs(35);
/// How long connections may take to send what the node said last before they close.
const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct ConnHandle {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Messages in `outgoing` not yet written (see [`OUTGOING_LIMIT`]).
    queued: Arc<AtomicUsize>,
    reader: AbortHandle,
    writer: AbortHandle,
    /// Chunks served on this connection go straight from their files (TCP).
    sends_files: bool,
    /// The remote address it counts against ([`PER_ADDRESS`]), for accepted TCP.
    ip: Option<IpAddr>,
    /// The chunk trace has said which peer this is (`owd conn N peer ADDR`).
    named_in_trace: bool,
}

/// A node bound to its port and folder, ready to run.
#[derive(Debug)]
pub struct Driver {
    node: Node,
    storage: Storage,
    tasks: Tasks,
    listener: TcpListener,
    web: Option<WebListener>,
    web_addr: Option<PeerAddr>,
    conns: HashMap<ConnId, ConnHandle>,
    inputs_tx: mpsc::Sender<Input>,
    inputs: mpsc::Receiver<Input>,
    next_conn: u64,
    start: Instant,
    token: String,
    /// Removed with the driver, when the node stops cleanly.
    _registration: Option<Registration>,
    log: EventLog,
    /// Set in a private network.
    private: Option<Arc<Private>>,
    /// Accepted connections still in their handshake (counted against the limit).
    handshaking: usize,
    /// Counters for `--metrics`; none are kept without it.
    metrics: Option<Metrics>,
    metrics_listener: Option<TcpListener>,
    /// `--bittorrent`, until `run` starts serving it.
    bittorrent_listener: Option<TcpListener>,
    /// Accepted TCP connections by remote address, and who may use the reserved slots.
    slots: Slots,
    /// The bandwidth limits every connection's reader and writer wait on.
    limiter: Arc<Limiter>,
    shared: Option<SharedFolder>,
}

impl Driver {
    /// Opens the folder, restores what it holds, and binds the listening port.
    pub async fn bind(opts: NodeOptions) -> anyhow::Result<Self> {
        let store = Store::open_with(&opts.dir, opts.space)?;
        let token = store.token(opts.token)?;
        let insert_from = opts
            .insert_from
            .iter()
            .map(|d| match d.canonicalize() {
                Ok(d) if d.is_dir() => Ok(d.to_string_lossy().into_owned()),
                Ok(_) => anyhow::bail!("--insert-from {}: not a folder", d.display()),
                Err(e) => anyhow::bail!("--insert-from {}: {e}", d.display()),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let files = store.load()?;
        let listener = TcpListener::bind((opts.listen.host.as_str(), opts.listen.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
        // At once, under the port the CLI dials: `torronto join` right after start works.
        let port = listener.local_addr().map_or(opts.listen.port, |a| a.port());
        let registration = opts.registry.and_then(|dir| match Registration::create(&dir, port, &token) {
            Ok(r) => {
                tracing::info!("control token registered for this user's CLI in {}", r.path().display());
                Some(r)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot register the control token in {}: {e}; the CLI needs TORRONTO_TOKEN",
                    dir.display()
                );
                None
            }
        });
        let web = match opts.web {
            Some(web) => Some(WebListener::bind(web).await?),
            None => None,
        };
        let web_addr = web.as_ref().map(|w| w.addr().clone());
        let metrics_listener = bind_if(opts.metrics.as_ref(), "metrics").await?;
        let bittorrent_listener = bind_if(opts.bittorrent.as_ref(), "BitTorrent").await?;
        let bittorrent_addr = bittorrent_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .zip(opts.bittorrent.as_ref())
            .map(|(bound, asked)| PeerAddr::new(asked.host.clone(), bound.port()).to_string());
        crate::bittorrent::set_listen_addr(&opts.dir, bittorrent_addr.as_deref())
            .map_err(|e| anyhow::anyhow!("cannot record the --bittorrent address: {e}"))?;
        let me = opts
            .advertise
            .unwrap_or_else(|| PeerAddr::new(opts.listen.host, listener.local_addr().map_or(0, |a| a.port())));
        // Pins are checked in the handshake when we dial, and by core on every proven
        // connection (so also on those peers open to us).
        let pins: Vec<(PeerAddr, NodeId)> = opts.pins.iter().map(|(a, id)| (a.clone(), *id)).collect();
        let private = match opts.secret {
            Some(secret) => Some(Arc::new(Private::new(load_identity(&store.state_dir())?, secret, &me, opts.pins))),
            None => None,
        };
        let slots = Slots::new(opts.peers.iter().filter_map(|p| p.host.parse::<IpAddr>().ok()).collect());
        let mut node = Node::new(Config {
            me,
            peers: opts.peers,
            token: Some(token.clone()),
            insert_from,
            seed: rand::random(),
            tuning: Tuning {
                max_links: opts.max_links,
                auto_upload_limit: opts.auto_upload_limit,
                ..Tuning::default()
            },
            private: private.as_ref().map(|p| p.node_id()),
        });
        let (complete, partial) =
            files.iter().fold((0, 0), |(c, p), f| if f.have.is_complete() { (c + 1, p) } else { (c, p + 1) });
        if !files.is_empty() {
            tracing::info!("restored {complete} complete and {partial} partial files from {}", store.dir().display());
        }
        // Before the files, which they may kill.
        node.set_unix_origin(crate::store::unix_millis());
        for t in store.load_tombstones() {
            node.restore_tombstone(0, t);
        }
        for f in files {
            node.add_local_file(f);
        }
        for (addr, id) in pins {
            node.pin(addr, id);
        }
        node.set_limits(opts.limits);
        let (inputs_tx, inputs) = mpsc::channel(1024);
        let shared =
            opts.settle.map(|settle| SharedFolder::start(store.dir(), settle, inputs_tx.clone())).transpose()?;
        let storage = Storage::start(store, inputs_tx.clone())?;
        let start = Instant::now();
        if opts.join {
            node.join(0);
        }
        Ok(Self {
            node,
            storage,
            tasks: Tasks::default(),
            listener,
            web,
            web_addr,
            conns: HashMap::new(),
            inputs_tx,
            inputs,
            next_conn: 1,
            start,
            token,
            _registration: registration,
            log: EventLog::default(),
            private,
            handshaking: 0,
            metrics: metrics_listener.as_ref().map(|_| Metrics::default()),
            metrics_listener,
            bittorrent_listener,
            slots,
            limiter: Limiter::new(opts.limits),
            shared,
        })
    }

    pub fn addr(&self) -> &PeerAddr {
        self.node.me()
    }

    /// The node's ID, in a private network.
    pub fn node_id(&self) -> Option<NodeId> {
        self.private.as_ref().map(|p| p.node_id())
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn dir(&self) -> &std::path::Path {
        self.storage.store().dir()
    }

    /// Where `--ws` serves, with the port actually bound.
    pub fn web_addr(&self) -> Option<&PeerAddr> {
        self.web_addr.as_ref()
    }

    /// The control panel's URL, token (and in a private network the secret) included,
    /// when `--ws` is on.
    pub fn panel_url(&self) -> Option<String> {
        let secret = self.private.as_ref().map(|p| p.secret());
        self.web_addr.as_ref().map(|a| panel_url(a, &self.token, secret))
    }

    /// Runs until `shutdown` completes; then leaves the network gracefully if joined.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        // The web listener runs beside the loop: handshakes and file answers take
        // round trips the node should not wait for; finished sessions come as inputs.
        if let Some(web) = self.web.take() {
            self.tasks.spawn(web.serve(self.inputs_tx.clone(), self.tasks.clone(), self.private.clone()));
        }
        if let Some(listener) = self.metrics_listener.take() {
            self.tasks.spawn(crate::metrics::serve(listener, self.inputs_tx.clone()));
        }
        if let Some(listener) = self.bittorrent_listener.take() {
            use crate::bittorrent::{announce::announce, serve};
            let (dir, peer_id) = (self.dir().to_path_buf(), serve::our_peer_id());
            if let Ok(bound) = listener.local_addr() {
                self.tasks.spawn(announce(dir.clone(), bound.port(), peer_id));
            }
            self.tasks.spawn(serve::serve(listener, dir, peer_id, self.limiter.clone(), self.tasks.clone()));
        }
        let mut leave_deadline: Option<Instant> = None;
        self.drain_outputs();
        loop {
            let wake = until(self.node.poll_timeout().map(|t| self.start + Duration::from_millis(t)));
            let settled = until(self.shared.as_ref().and_then(|s| s.next_check(&self.node)));
            tokio::select! {
                () = &mut shutdown, if leave_deadline.is_none() => {
                    if !self.node.is_joined() {
                        break;
                    }
                    tracing::info!("shutting down: leaving the network first (pushing chunks only we hold)");
                    self.node.leave(self.now());
                    leave_deadline = Some(Instant::now() + SHUTDOWN_LEAVE_LIMIT);
                }
                Some(input) = self.inputs.recv() => {
                    self.handle_input(input);
                    // Take what else is waiting, so outputs (Have above all) go out in batches.
                    for _ in 0..64 {
                        match self.inputs.try_recv() {
                            Ok(input) => self.handle_input(input),
                            Err(_) => break,
                        }
                    }
                }
                (stream, from) = torronto_net::accept(&self.listener, "peers") => self.admit(stream, from),
                () = wake => self.node.handle_timeout(self.now()),
                () = settled => {
                    let now = self.now();
                    if let Some(shared) = &mut self.shared {
                        shared.settled(&mut self.node, now);
                    }
                }
            }
            self.drain_outputs();
            // Connection tasks share this thread: let writers send what was just queued
            // before taking more input, or data leaves in bursts and peers sit idle.
            tokio::task::yield_now().await;
            if let Some(deadline) = leave_deadline {
                if !self.node.is_joined() || Instant::now() > deadline {
                    break;
                }
            }
        }
        self.shut_down().await;
        Ok(())
    }

    /// Lets connections send what the node said last (Remove, above all) and close,
    /// ends every other task, and waits until they and the storage thread have ended.
    async fn shut_down(mut self) {
        // Dropping its queue ends each writer once it has flushed.
        self.conns.clear();
        let storage = self.storage.stop();
        // Meanwhile readers go on taking what peers send, so no socket closes with
        // unread data (which resets it and can lose what we sent); the node hears none.
        let flushed = self.tasks.flush_writers(SHUTDOWN_FLUSH_LIMIT);
        tokio::pin!(flushed);
        loop {
            tokio::select! {
                () = &mut flushed => break,
                _ = self.inputs.recv() => {}
            }
        }
        // Tasks sending the node inputs now get an error rather than wait for room.
        self.inputs.close();
        self.tasks.shut_down().await;
        storage.await;
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Registers an accepted connection; in a private network, first lets its own task
    /// see what it speaks and run the handshake.
    fn accept(&mut self, stream: TcpStream, from: SocketAddr, local: bool) {
        tune(&stream);
        let Some(private) = self.private.clone() else {
            let info = ConnInfo { dialed: None, local, peer: None };
            return self.register_tcp(stream, BytesMut::new(), info, Some(from.ip()));
        };
        self.handshaking += 1;
        let inputs = self.inputs_tx.clone();
        self.tasks.spawn(async move {
            let result = private.accept(stream).await;
            let _ = inputs.send(Input::Accepted { from, result }).await;
        });
    }

    fn register_tcp(&mut self, stream: TcpStream, received: BytesMut, info: ConnInfo, ip: Option<IpAddr>) {
        let (read, write) = stream.into_split();
        self.register(TcpFrameReader::with_buffered(read, received), TcpFrameWriter::new(write), info, ip);
    }

    fn register_secure(&mut self, stream: TcpStream, secured: Secured, mut info: ConnInfo, ip: Option<IpAddr>) {
        let Secured { channel, peer, leftover } = secured;
        let (sealer, opener) = channel.split();
        let (read, write) = stream.into_split();
        match SecureFrameReader::new(read, opener, leftover) {
            Ok(frames_in) => {
                info.peer = Some(peer);
                self.register(frames_in, SecureFrameWriter::new(write, sealer), info, ip);
            }
            Err(e) => {
                tracing::debug!("closing a connection from node {}: {e}", peer.id);
                self.slots.release(ip);
            }
        }
    }

    fn register_link(&mut self, link: Link, info: ConnInfo) {
        match link {
            Link::Plain(stream) => self.register_tcp(stream, BytesMut::new(), info, None),
            Link::Secure(stream, secured) => self.register_secure(stream, *secured, info, None),
        }
    }

    /// Starts a connection's reader and writer tasks, whatever the transport.
    fn register<W: ConnWrite + 'static>(
        &mut self,
        frames_in: impl FrameRead + 'static,
        frames_out: W,
        info: ConnInfo,
        ip: Option<IpAddr>,
    ) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let (outgoing, queue) = mpsc::unbounded_channel();
        // On a private node only a proven member speaks the protocol; anyone else may make
        // control requests only, and is cut off before the node reads anything more.
        let decoder = if self.private.is_some() && info.peer.is_none() {
            Decoder::control_only(frames_in)
        } else {
            Decoder::new(frames_in)
        };
        let limiter = self.limiter.clone();
        let reader = self.tasks.spawn(read_loop(conn, decoder, self.inputs_tx.clone(), limiter.clone())).abort_handle();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = write_loop(conn, frames_out, queue, queued.clone(), self.inputs_tx.clone(), limiter);
        let writer = self.tasks.spawn_writer(writer).abort_handle();
        self.conns.insert(
            conn,
            ConnHandle { outgoing, queued, reader, writer, sends_files: W::SENDS_FILES, ip, named_in_trace: false },
        );
        self.node.handle_connected(self.now(), conn, info);
    }

    /// Says once in the chunk trace which peer `conn` is: the writer's lines on the chunks
    /// it sends there (`owd sent`) name only the connection.
    fn name_in_trace(&mut self, conn: ConnId) {
        if !tracing::enabled!(target: "torronto::chunks", tracing::Level::TRACE) {
            return;
        }
        let (Some(handle), Some(peer)) = (self.conns.get_mut(&conn), self.node.peer_of(conn)) else { return };
        if !std::mem::replace(&mut handle.named_in_trace, true) {
            tracing::trace!(target: "torronto::chunks", "owd conn {} peer {peer}", conn.0);
        }
    }

    fn handle_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Dialed { addr, result: Ok(link) } => {
                self.register_link(link, ConnInfo { dialed: Some(addr), local: false, peer: None })
            }
            Input::Accepted { from, result } => {
                self.handshaking -= 1;
                match result {
                    Ok(Accepted::Secure(stream, secured)) => {
                        let local = is_local(&stream, from);
                        let info = ConnInfo { dialed: None, local, peer: None };
                        self.register_secure(stream, secured, info, Some(from.ip()))
                    }
                    Ok(Accepted::Plain(stream, received)) => {
                        let local = is_local(&stream, from);
                        self.register_tcp(
                            stream,
                            received,
                            ConnInfo { dialed: None, local, peer: None },
                            Some(from.ip()),
                        )
                    }
                    // Debug only: anyone can connect, and a scanner must not flood the log.
                    Err(e) => {
                        tracing::debug!("closing a connection from {from}: {e}");
                        self.slots.release(Some(from.ip()));
                    }
                }
            }
            Input::WebSocket { from, session } => self.admit_ws(from, *session),
            Input::Dialed { addr, result: Err(e) } => {
                tracing::debug!("cannot reach {addr}: {e}");
                self.node.handle_dial_failed(now, &addr);
            }
            Input::Message { conn, envelope } => {
                trace_chunk(&self.node, conn, &envelope.message, true);
                if matches!(envelope.message, Message::Peer(PeerMessage::Download { .. })) {
                    self.name_in_trace(conn);
                }
                match &mut self.metrics {
                    Some(metrics) => {
                        let query = metrics.incoming(self.node.peer_of(conn), conn, &envelope.message);
                        self.node.handle_message(now, conn, envelope);
                        if let Some(started) = query {
                            metrics.query_answered(started.elapsed());
                        }
                    }
                    None => self.node.handle_message(now, conn, envelope),
                }
            }
            Input::Malformed { conn, reason } => self.node.handle_malformed(now, conn, reason),
            Input::Disconnected { conn } => {
                if let Some(metrics) = &mut self.metrics {
                    metrics.forget(conn);
                }
                if let Some(c) = self.conns.remove(&conn) {
                    self.slots.release(c.ip);
                    self.node.handle_disconnected(now, conn);
                }
            }
            Input::Storage(event) => {
                if let (Some(metrics), StorageEvent::Sent { conn, chunk, result: Ok(()), .. }) =
                    (&mut self.metrics, &event)
                {
                    metrics.sent(self.node.peer_of(*conn), chunk);
                    let header = Envelope::upload_header(self.node.me(), chunk, Some(torronto_net::monotonic_us()));
                    metrics.upload_header_sent(header.len());
                }
                self.node.handle_storage(now, event)
            }
            Input::Folder(changes) => {
                if let Some(shared) = &mut self.shared {
                    shared.changed(&self.node, changes);
                }
            }
            Input::Metrics(reply) => {
                if let Some(metrics) = &self.metrics {
                    let _ = reply.send(metrics.render(&self.node.status()));
                }
            }
        }
    }

    fn drain_outputs(&mut self) {
        loop {
            let mut moved = false;
            while let Some(cmd) = self.node.poll_net() {
                moved = true;
                match cmd {
                    NetCommand::Send { conn, envelope } => {
                        if let Some(metrics) = &mut self.metrics {
                            metrics.outgoing(self.node.peer_of(conn), conn, &envelope);
                        }
                        let Some(c) = self.conns.get(&conn) else { continue };
                        if c.queued.fetch_add(1, Ordering::Relaxed) < OUTGOING_LIMIT {
                            trace_chunk(&self.node, conn, &envelope.message, false);
                            let _ = c.outgoing.send(Outgoing::Message(envelope));
                        } else {
                            // It does not read: what is queued is dropped, not flushed.
                            tracing::warn!(%conn, "closing connection: {OUTGOING_LIMIT} messages queued and unread");
                            c.writer.abort();
                            self.close(conn);
                        }
                    }
                    NetCommand::Dial(addr) => {
                        let inputs = self.inputs_tx.clone();
                        let private = self.private.clone();
                        self.tasks.spawn(async move {
                            let result = dial(&addr, private.as_deref()).await;
                            let _ = inputs.send(Input::Dialed { addr, result }).await;
                        });
                    }
                    NetCommand::Close(conn) => self.close(conn),
                }
            }
            while let Some(cmd) = self.node.poll_storage() {
                moved = true;
                self.storage(cmd);
            }
            while let Some(event) = self.node.poll_event() {
                if let Some(metrics) = &mut self.metrics {
                    metrics.event(&event);
                }
                if matches!(event, Event::LimitsChanged(_) | Event::AutoUploadLimit { .. }) {
                    self.limiter.set(self.node.limits_in_force());
                }
                if let Some(shared) = &mut self.shared {
                    shared.event(&event);
                }
                self.log.record(event);
            }
            if !moved {
                break;
            }
        }
    }

    /// Closes `conn`: dropping the sender ends the writer once it has flushed.
    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            c.reader.abort();
            self.slots.release(c.ip);
        }
        self.node.handle_disconnected(self.now(), conn);
    }

    /// Hands a storage command to the storage. A chunk to be sent on a connection that
    /// sends files goes from its file to that connection's writer, which answers `Sent`.
    fn storage(&mut self, command: StorageCommand) {
        if let StorageCommand::AddTorrent { id, torrent, peers } = command {
            let fetch =
                crate::bittorrent::fetch::fetch(self.dir().to_path_buf(), id, torrent, peers, self.inputs_tx.clone());
            self.tasks.spawn(fetch);
            return;
        }
        let send_file = match &command {
            StorageCommand::Read { conn, .. } => self
                .conns
                .get(conn)
                .filter(|c| c.sends_files)
                .map(|c| SendFile { from: self.node.me().clone(), writer: c.outgoing.clone() }),
            _ => None,
        };
        self.storage.submit(command, send_file);
    }
}

/// Logs, at trace level under the target `torronto::chunks`, each chunk request we send
/// (`ask PEER INDEX FILE`), each we receive (`wanted ...`: PEER wants it from us) and each
/// chunk we receive (`got ...`): what `tests/bench/chunk_timeline.py` reads from the nodes'
/// logs to show where a transfer's time went.
fn trace_chunk(node: &Node, conn: ConnId, message: &Message, incoming: bool) {
    if !tracing::enabled!(target: "torronto::chunks", tracing::Level::TRACE) {
        return;
    }
    let (what, chunk) = match (message, incoming) {
        (Message::Peer(PeerMessage::Download { chunk, .. }), false) => ("ask", chunk),
        (Message::Peer(PeerMessage::Download { chunk, .. }), true) => ("wanted", chunk),
        (Message::Peer(PeerMessage::Upload { chunk, .. }), true) => ("got", chunk),
        _ => return,
    };
    if let Some(peer) = node.peer_of(conn) {
        tracing::trace!(target: "torronto::chunks", "{what} {peer} {} {}", chunk.index.get(), chunk.file);
    }
}

/// Completes at `at`, or never.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A listener on `addr` if one is asked for (`--metrics`, `--bittorrent`), serving `what`.
async fn bind_if(addr: Option<&PeerAddr>, what: &str) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve {what} on {addr}: {e}"))?;
    Ok(Some(listener))
}
