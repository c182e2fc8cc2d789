//! The event loop that drives one `torronto_core::Node` with tokio, TCP and the disk.
//!
//! One task owns the node. Connection tasks (TCP peers, and WebSocket sessions from
//! the `--ws` listener of [`crate::web`]) decode frames and send it [`Input`]s;
//! blocking tasks do file I/O and hashing and send their results back the same way.
//! After each batch of inputs the loop drains the node's outputs: messages go to the
//! connections' writer tasks, storage commands to the blocking pool.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use torronto_core::{
    Config, ConnId, ConnInfo, Envelope, Event, Millis, NetCommand, Node, PeerAddr, StorageCommand, StorageEvent, Tuning,
};

use torronto_ws_bridge::frames::{FrameRead, TcpFrameReader, TcpFrameWriter};
use torronto_ws_bridge::WsSession;

use crate::connection::{read_loop, tune, write_loop, ConnWrite, Outgoing, StoredUpload};
use crate::storage_worker::{StorageJob, StorageWorker};
use crate::store::{io_error, read_chunk, write_chunk, Store};
use crate::web::{panel_url, WebListener, WebOptions};

/// Connections (TCP and WebSocket together) beyond this are refused at accept, so a
/// flood cannot exhaust memory.
const MAX_CONNECTIONS: usize = 1024;
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a graceful shutdown may spend leaving the network.
const SHUTDOWN_LEAVE_LIMIT: Duration = Duration::from_secs(35);

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The address to listen on, which is also the node's identity.
    pub listen: PeerAddr,
    pub dir: PathBuf,
    pub peers: Vec<PeerAddr>,
    pub join: bool,
    pub token: Option<String>,
    /// Serve the control panel and the WebSocket endpoint (`--ws`).
    pub web: Option<WebOptions>,
}

/// What the node's tasks tell the loop.
#[derive(Debug)]
pub enum Input {
    Dialed {
        addr: PeerAddr,
        result: std::io::Result<TcpStream>,
    },
    /// A browser (or other WebSocket client) finished the handshake on `--ws`.
    WebSocket(Box<WsSession>),
    Message {
        conn: ConnId,
        envelope: Envelope,
    },
    Malformed {
        conn: ConnId,
        reason: String,
    },
    Disconnected {
        conn: ConnId,
    },
    Storage(StorageEvent),
}

#[derive(Debug)]
struct ConnHandle {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    reader: AbortHandle,
    /// Chunks served on this connection go straight from their files (TCP).
    sends_files: bool,
}

/// A node bound to its port and folder, ready to run.
#[derive(Debug)]
pub struct Driver {
    node: Node,
    store: Store,
    storage: StorageWorker,
    listener: TcpListener,
    web: Option<WebListener>,
    web_addr: Option<PeerAddr>,
    conns: HashMap<ConnId, ConnHandle>,
    inputs_tx: mpsc::Sender<Input>,
    inputs: mpsc::Receiver<Input>,
    next_conn: u64,
    start: Instant,
    token: String,
    storage_errors: ErrorDigest,
}

/// Storage errors come once per chunk (hundreds a minute on a full disk): log the
/// first at once, then how many more there were, at most every few seconds.
#[derive(Debug, Default)]
struct ErrorDigest {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ErrorDigest {
    const EVERY: Duration = Duration::from_secs(5);

    fn report(&mut self, file: &torronto_core::FileName, message: &str) {
        let now = Instant::now();
        if self.last_logged.is_some_and(|t| now - t < Self::EVERY) {
            self.suppressed += 1;
            return;
        }
        match std::mem::take(&mut self.suppressed) {
            0 => tracing::error!("storage failed for {file}: {message}"),
            n => tracing::error!("storage failed for {file}: {message} (and {n} more failures in the last seconds)"),
        }
        self.last_logged = Some(now);
    }
}

impl Driver {
    /// Opens the folder, restores what it holds, and binds the listening port.
    pub async fn bind(opts: NodeOptions) -> anyhow::Result<Self> {
        let store = Store::open(&opts.dir)?;
        let token = store.token(opts.token)?;
        let files = store.load()?;
        let listener = TcpListener::bind((opts.listen.host.as_str(), opts.listen.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
        let web = match opts.web {
            Some(web) => Some(WebListener::bind(web).await?),
            None => None,
        };
        let web_addr = web.as_ref().map(|w| w.addr().clone());
        let mut me = opts.listen.clone();
        me.port = listener.local_addr()?.port();
        let mut node = Node::new(Config {
            me,
            peers: opts.peers,
            token: Some(token.clone()),
            seed: rand::random(),
            tuning: Tuning::default(),
        });
        let (complete, partial) =
            files.iter().fold((0, 0), |(c, p), f| if f.have.is_complete() { (c + 1, p) } else { (c, p + 1) });
        if !files.is_empty() {
            tracing::info!("restored {complete} complete and {partial} partial files from {}", store.dir().display());
        }
        for f in files {
            node.add_local_file(f);
        }
        let (inputs_tx, inputs) = mpsc::channel(1024);
        let storage = StorageWorker::start(store.clone(), inputs_tx.clone())?;
        let start = Instant::now();
        if opts.join {
            node.join(0);
        }
        Ok(Self {
            storage_errors: ErrorDigest::default(),
            node,
            store,
            storage,
            listener,
            web,
            web_addr,
            conns: HashMap::new(),
            inputs_tx,
            inputs,
            next_conn: 1,
            start,
            token,
        })
    }

    pub fn addr(&self) -> &PeerAddr {
        self.node.me()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    /// Where `--ws` serves, with the port actually bound.
    pub fn web_addr(&self) -> Option<&PeerAddr> {
        self.web_addr.as_ref()
    }

    /// The control panel's URL, token included, when `--ws` is on.
    pub fn panel_url(&self) -> Option<String> {
        self.web_addr.as_ref().map(|a| panel_url(a, &self.token))
    }

    /// Runs until `shutdown` completes; then leaves the network gracefully if joined.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        // The web listener runs beside the loop: handshakes and file answers take
        // round trips the node should not wait for; finished sessions come as inputs.
        let web = self.web.take().map(|w| tokio::spawn(w.serve(self.inputs_tx.clone())).abort_handle());
        let mut leave_deadline: Option<Instant> = None;
        self.drain_outputs();
        loop {
            let timeout = self.node.poll_timeout().map(|t| self.start + Duration::from_millis(t));
            let wake = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
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
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, from)) if self.conns.len() < MAX_CONNECTIONS => {
                        self.register_tcp(stream, ConnInfo { dialed: None, trusted: from.ip().is_loopback() });
                    }
                    Ok((_, from)) => tracing::warn!("refusing connection from {from}: {MAX_CONNECTIONS} already open"),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = wake => self.node.handle_timeout(self.now()),
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
        if let Some(web) = web {
            web.abort();
        }
        // Let writer tasks flush what the node said last (Remove, above all).
        self.conns.clear();
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    fn register_tcp(&mut self, stream: TcpStream, info: ConnInfo) {
        tune(&stream);
        let (read, write) = stream.into_split();
        self.register(TcpFrameReader::new(read), TcpFrameWriter::new(write), info);
    }

    /// Starts a connection's reader and writer tasks, whatever the transport.
    fn register<W: ConnWrite + 'static>(&mut self, frames_in: impl FrameRead + 'static, frames_out: W, info: ConnInfo) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let (outgoing, queue) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(conn, frames_in, self.inputs_tx.clone())).abort_handle();
        tokio::spawn(write_loop(conn, frames_out, queue, self.inputs_tx.clone()));
        self.conns.insert(conn, ConnHandle { outgoing, reader, sends_files: W::SENDS_FILES });
        self.node.handle_connected(self.now(), conn, info);
    }

    fn handle_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Dialed { addr, result: Ok(stream) } => {
                self.register_tcp(stream, ConnInfo { dialed: Some(addr), trusted: false })
            }
            // A WebSocket session is never trusted: any web page can reach loopback,
            // so control actions need the token (the Origin check came first).
            Input::WebSocket(session) if self.conns.len() < MAX_CONNECTIONS => {
                let (frames_in, frames_out) = torronto_ws_bridge::split(*session);
                self.register(frames_in, frames_out, ConnInfo { dialed: None, trusted: false });
            }
            Input::WebSocket(_) => {
                tracing::warn!("refusing a WebSocket session: {MAX_CONNECTIONS} connections already open")
            }
            Input::Dialed { addr, result: Err(e) } => {
                tracing::debug!("cannot reach {addr}: {e}");
                self.node.handle_dial_failed(now, &addr);
            }
            Input::Message { conn, envelope } => self.node.handle_message(now, conn, envelope),
            Input::Malformed { conn, reason } => self.node.handle_malformed(now, conn, reason),
            Input::Disconnected { conn } => {
                if self.conns.remove(&conn).is_some() {
                    self.node.handle_disconnected(now, conn);
                }
            }
            Input::Storage(event) => self.node.handle_storage(now, event),
        }
    }

    fn drain_outputs(&mut self) {
        loop {
            let mut moved = false;
            while let Some(cmd) = self.node.poll_net() {
                moved = true;
                match cmd {
                    NetCommand::Send { conn, envelope } => {
                        if let Some(c) = self.conns.get(&conn) {
                            let _ = c.outgoing.send(Outgoing::Message(envelope));
                        }
                    }
                    NetCommand::Dial(addr) => {
                        let inputs = self.inputs_tx.clone();
                        tokio::spawn(async move {
                            let connect = TcpStream::connect((addr.host.as_str(), addr.port));
                            let result = match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
                                Ok(r) => r,
                                Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
                            };
                            let _ = inputs.send(Input::Dialed { addr, result }).await;
                        });
                    }
                    NetCommand::Close(conn) => {
                        // Dropping the sender ends the writer once it has flushed.
                        if let Some(c) = self.conns.remove(&conn) {
                            c.reader.abort();
                        }
                        self.node.handle_disconnected(self.now(), conn);
                    }
                }
            }
            while let Some(cmd) = self.node.poll_storage() {
                moved = true;
                self.storage(cmd);
            }
            while let Some(event) = self.node.poll_event() {
                self.log_event(event);
            }
            if !moved {
                break;
            }
        }
    }

    /// Carries out a storage command: quick metadata work inline, chunk I/O on the
    /// storage thread, long imports on the blocking pool; results come back as inputs.
    fn storage(&mut self, cmd: StorageCommand) {
        let store = self.store.clone();
        let inputs = self.inputs_tx.clone();
        let worker = self.storage.clone();
        let chunk_io = move |job: StorageJob| worker.run(job);
        let blocking = move |work: StorageJob| {
            tokio::task::spawn_blocking(move || {
                if let Some(event) = work(&store) {
                    let _ = inputs.blocking_send(Input::Storage(event));
                }
            });
        };
        match cmd {
            StorageCommand::Import { id, path, name } => blocking(Box::new(move |store| {
                tracing::info!("inserting {path} as {name}");
                let next_report = std::cell::Cell::new(0u64);
                let result = store.import(id, &path, |done, total| {
                    // Progress for large files, every tenth.
                    if total >= 64 << 20 && done >= next_report.get() {
                        tracing::info!("hashing {name}: {}%", done * 100 / total);
                        next_report.set(next_report.get() + total / 10);
                    }
                });
                Some(StorageEvent::Imported { id, result })
            })),
            StorageCommand::Commit { id, name, manifest } => blocking(Box::new(move |store| {
                Some(StorageEvent::Committed { id, result: store.commit(id, &name, &manifest) })
            })),
            StorageCommand::Discard { id } => blocking(Box::new(move |store| {
                store.discard(id);
                None
            })),
            StorageCommand::Prepare { file, manifest } => {
                if let Err(e) = self.store.prepare(&file, &manifest) {
                    tracing::error!("cannot make room for {file}: {e}");
                }
            }
            StorageCommand::Read { conn, chunk, push } if self.conns.get(&conn).is_some_and(|c| c.sends_files) => {
                // The connection's writer sends it from the file and answers `Sent`.
                // The handle is open already unless this is the file's first chunk.
                match self.store.handle(&chunk.file) {
                    Ok(file) => {
                        let header = Envelope::upload_header(self.node.me(), &chunk);
                        let upload = StoredUpload { header, file, chunk, push };
                        let _ = self.conns[&conn].outgoing.send(Outgoing::Stored(upload));
                    }
                    Err(e) => {
                        let result = Err(io_error(chunk.file.as_str(), &e));
                        self.node.handle_storage(self.now(), StorageEvent::Sent { conn, chunk, push, result });
                    }
                }
            }
            StorageCommand::Read { conn, chunk, push } => chunk_io(Box::new(move |store| {
                let result = store
                    .handle(&chunk.file)
                    .and_then(|h| read_chunk(&h, chunk.size, chunk.index))
                    .map_err(|e| io_error(chunk.file.as_str(), &e));
                Some(StorageEvent::Read { conn, chunk, push, result })
            })),
            StorageCommand::Write { chunk, data } => chunk_io(Box::new(move |store| {
                let result = store
                    .handle(&chunk.file)
                    .and_then(|h| write_chunk(&h, chunk.size, chunk.index, &data))
                    .map_err(|e| io_error(chunk.file.as_str(), &e));
                Some(StorageEvent::Written { chunk, result })
            })),
            StorageCommand::Finalize { file } => chunk_io(Box::new(move |store| {
                if let Err(e) = store.finalize(&file) {
                    tracing::error!("cannot publish {file}: {e}");
                }
                None
            })),
        }
    }
}

impl Driver {
    fn log_event(&mut self, event: Event) {
        match event {
            Event::Joined { peers } => tracing::info!("joined the network ({peers} peers answered)"),
            Event::Left { unconfirmed: 0 } => {
                tracing::info!("left the network; every chunk we held alone is now held elsewhere")
            }
            Event::Left { unconfirmed } => {
                tracing::warn!(
                    "left the network; {unconfirmed} chunks held only here were not confirmed elsewhere in time"
                )
            }
            Event::PeerJoined(p) => tracing::info!("peer {p} connected"),
            Event::PeerLeft { peer, graceful: true } => tracing::info!("peer {peer} left"),
            Event::PeerLeft { peer, graceful: false } => tracing::info!("peer {peer} disconnected"),
            Event::FileAnnounced { file, size } => tracing::info!("new file in the network: {file} ({size} bytes)"),
            Event::FileInserted { file, size } => tracing::info!("inserted {file} ({size} bytes)"),
            Event::FileComplete { file, size } => tracing::info!("complete: {file} ({size} bytes, verified)"),
            Event::ChunkRejected { peer, chunk } => {
                tracing::warn!("rejected chunk {} of {} from {peer}: hash mismatch", chunk.index, chunk.file)
            }
            Event::PeerBanned(p) => tracing::warn!("disconnected {p}: it kept sending corrupt chunks"),
            Event::Conflict { peer, file } => {
                tracing::warn!("{peer} announces other content under the name {file}; ignored")
            }
            Event::StorageFailed { file, message } => self.storage_errors.report(&file, &message),
            Event::BadRequest { conn, reason } => tracing::debug!(%conn, "bad request: {reason}"),
            // The native node inserts through control connections only.
            Event::Inserted { .. } => {}
        }
    }
}
