//! `torronto add`: downloading a torrent from BitTorrent peers (its http trackers'
//! and those given with `--peer`) into `DIR/.torronto/bittorrent/adds/<id>/<n>`, the
//! n-th file of the torrent under a number (no name from the torrent touches the disk);
//! for a magnet link, first its info dictionary (BEP 9). What to ask whom and what to
//! keep is core's [`Leech`] and [`MetadataFetch`]; this dials, moves the bytes and
//! writes the verified pieces. The node then inserts the files and has the folder
//! removed ([`remove_staging`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use torronto_core::bittorrent::files::{network_files, spans, NetworkFile};
use torronto_core::bittorrent::leech::Leech;
use torronto_core::bittorrent::magnet::{is_magnet, Magnet};
use torronto_core::bittorrent::metadata::MetadataFetch;
use torronto_core::bittorrent::metainfo::hex;
use torronto_core::bittorrent::swarm::{PeerKey, Swarm};
use torronto_core::bittorrent::tracker::announce_query;
use torronto_core::bittorrent::wire::{decode_message, Handshake, PeerMessage, HANDSHAKE_LEN};
use torronto_core::bittorrent::{Sha1Hash, Torrent};
use torronto_core::{Code, ImportId, StorageError, StorageEvent};

use crate::input::Input;

/// Peers connected (or being dialled) at once.
const MAX_PEERS: usize = 16;
/// Connecting and exchanging handshakes with one peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connected peer silent this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the trackers are asked again while the download runs.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
/// Reasons for lost peers kept for the error message.
const MAX_FAILURES_KEPT: usize = 8;
/// How often the node hears how far a download has got (Query's `adding`).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// The download fails when no piece has come in this long.
const STALL: Duration = Duration::from_secs(300);

/// Where `torronto add` downloads torrents to, one folder per add.
pub fn adds_dir(dir: &Path) -> PathBuf {
    super::state_dir(dir).join("adds")
}

/// Where AddTorrent `id` downloads to.
pub fn staging(dir: &Path, id: ImportId) -> PathBuf {
    adds_dir(dir).join(id.to_string())
}

/// Drops what AddTorrent `id` downloaded (its files are inserted, or failed).
pub fn remove_staging(dir: &Path, id: ImportId) {
    if let Err(e) = fs::remove_dir_all(staging(dir, id)) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove the download of torrent add {id}: {e}");
        }
    }
}

/// Downloads AddTorrent `id` (or, for a magnet link, fetches its info dictionary) and
/// tells the node how it went.
pub async fn fetch(dir: PathBuf, id: ImportId, torrent: Bytes, peers: Vec<String>, inputs: mpsc::Sender<Input>) {
    let failed = |what: &str, e: anyhow::Error| {
        tracing::warn!("torrent add {id} failed: {e:#}");
        StorageError { code: Code::FileMissing, message: format!("{what}: {e:#}") }
    };
    let event = if is_magnet(&torrent) {
        let result = fetch_metadata(&dir, id, &torrent, peers).await;
        StorageEvent::TorrentMetadata {
            id,
            result: result.map_err(|e| failed("the magnet link's metadata could not be fetched", e)),
        }
    } else {
        let result = download(&dir, id, &torrent, peers, &inputs).await;
        StorageEvent::TorrentFetched {
            id,
            result: result.map_err(|e| failed("the torrent could not be downloaded", e)),
        }
    };
    let _ = inputs.send(Input::Storage(event)).await;
}

/// What a peer's task (or a tracker's answer) tells the download.
enum PeerEvent {
    /// Peers a tracker named.
    Candidates(Vec<String>),
    /// The handshakes are done; `extensions`: the peer speaks BEP 10.
    Connected {
        key: PeerKey,
        writer: mpsc::UnboundedSender<PeerMessage>,
        extensions: bool,
    },
    Message(PeerKey, PeerMessage),
    /// The connection failed or ended (`connected`: after the handshake).
    Gone {
        key: PeerKey,
        addr: String,
        connected: bool,
        why: String,
    },
}

/// The info dictionary of magnet link `link`, verified against its info-hash, from
/// `given` peers (with the link's `x.pe`s, added by the node) and its http trackers'; as
/// a `.torrent` naming the link's trackers.
async fn fetch_metadata(dir: &Path, id: ImportId, link: &[u8], given: Vec<String>) -> anyhow::Result<Bytes> {
    let magnet = Magnet::parse(std::str::from_utf8(link)?)?;
    tracing::info!("torrent add {id}: fetching the metadata of {}", hex(&magnet.info_hash));
    let mut session = MetadataFetch::new(magnet.info_hash);
    let mut peers = Connections::new(dir, id, magnet.info_hash, &magnet.trackers, given);
    loop {
        peers.step(&mut session).await?;
        if let Some(info) = session.poll_done() {
            tracing::info!("torrent add {id}: metadata of {} bytes fetched", info.len());
            return Ok(Torrent::encode_raw(&info, &magnet.trackers).into());
        }
    }
}

/// Downloads `torrent` into the staging folder of AddTorrent `id`, telling the node how
/// far it has got (at most every [`PROGRESS_EVERY`]); the path of each file.
async fn download(
    dir: &Path,
    id: ImportId,
    torrent: &[u8],
    given: Vec<String>,
    inputs: &mpsc::Sender<Input>,
) -> anyhow::Result<Vec<String>> {
    let t = Torrent::decode(torrent)?;
    let files = network_files(&t.info).map_err(|e| anyhow::anyhow!(e))?;
    let stage = staging(dir, id);
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).with_context(|| format!("cannot create {}", stage.display()))?;
    let mut handles = Vec::with_capacity(files.len());
    let mut paths = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let path = stage.join(i.to_string());
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.set_len(f.size)?;
        handles.push(file);
        paths.push(path.to_string_lossy().into_owned());
    }
    tracing::info!("downloading torrent {} ({} files, {} bytes)", t.info.name, files.len(), t.info.length);
    let handles = Arc::new(handles);
    let files = Arc::new(files);
    let started = Instant::now();
    let mut leech = Leech::new(t.info.clone());
    let mut peers = Connections::new(dir, id, t.info_hash, &t.trackers, given);
    let mut told = Instant::now();
    while !leech.is_complete() {
        peers.step(&mut leech).await?;
        while let Some((index, data)) = leech.poll_piece() {
            let offset = u64::from(index) * u64::from(t.info.piece_length);
            let (files, handles) = (files.clone(), handles.clone());
            tokio::task::spawn_blocking(move || write_piece(&files, &handles, offset, &data)).await??;
        }
        if told.elapsed() >= PROGRESS_EVERY || leech.is_complete() {
            let (done, total) = leech.progress();
            let _ = inputs.send(Input::Storage(StorageEvent::TorrentProgress { id, done, total })).await;
            told = Instant::now();
        }
    }
    tracing::info!("downloaded torrent {} in {:.1}s", t.info.name, started.elapsed().as_secs_f64());
    Ok(paths)
}

/// The connections to one torrent's peers: found through its http trackers (asked
/// again every [`ANNOUNCE_EVERY`]) and given, dialled up to [`MAX_PEERS`] at once,
/// their messages handed to a [`Swarm`] session and its messages to them.
struct Connections {
    id: ImportId,
    info_hash: Sha1Hash,
    peer_id: [u8; 20],
    port: u16,
    trackers: Vec<String>,
    started: Instant,
    events_tx: mpsc::Sender<PeerEvent>,
    events: mpsc::Receiver<PeerEvent>,
    writers: HashMap<PeerKey, mpsc::UnboundedSender<PeerMessage>>,
    dialing: HashSet<PeerKey>,
    tried: HashSet<String>,
    candidates: VecDeque<String>,
    /// The last few reasons peers were lost, for the error if the download fails.
    failures: VecDeque<String>,
    next_key: PeerKey,
    next_announce: Instant,
    first_announce: bool,
    /// Bytes verified when progress was last seen, and when.
    progress: (u64, Instant),
}

impl Connections {
    fn new(dir: &Path, id: ImportId, info_hash: Sha1Hash, trackers: &[String], given: Vec<String>) -> Self {
        let (events_tx, events) = mpsc::channel::<PeerEvent>(256);
        Connections {
            id,
            info_hash,
            peer_id: super::serve::our_peer_id(),
            port: super::listen_addr(dir).and_then(|a| a.rsplit(':').next()?.parse().ok()).unwrap_or(6881),
            trackers: trackers.iter().filter(|u| u.starts_with("http://")).cloned().collect(),
            started: Instant::now(),
            events_tx,
            events,
            writers: HashMap::new(),
            dialing: HashSet::new(),
            tried: HashSet::new(),
            candidates: given.into(),
            failures: VecDeque::new(),
            next_key: 0,
            next_announce: Instant::now(),
            first_announce: true,
            progress: (0, Instant::now()),
        }
    }

    fn failed(&mut self, why: String) {
        if self.failures.len() == MAX_FAILURES_KEPT {
            self.failures.pop_front();
        }
        self.failures.push_back(why);
    }

    /// One round: trackers asked if due, peers dialled, one event (or a second's wait)
    /// handed to `session`, and what it has to send sent. Fails when no peer is left to
    /// try, or nothing was verified for [`STALL`].
    async fn step(&mut self, session: &mut impl Swarm) -> anyhow::Result<()> {
        if !self.trackers.is_empty() && Instant::now() >= self.next_announce {
            // Asked in the background: a slow tracker must not hold up the peers' messages.
            let event = self.first_announce.then_some("started");
            for url in &self.trackers {
                let query = announce_query(&self.info_hash, &self.peer_id, self.port, 0, session.left(), event);
                let (url, events) = (url.clone(), self.events_tx.clone());
                tokio::spawn(async move {
                    let _ = events.send(PeerEvent::Candidates(announce(&url, &query).await)).await;
                });
            }
            self.first_announce = false;
            self.next_announce = Instant::now() + ANNOUNCE_EVERY;
        }
        while self.writers.len() + self.dialing.len() < MAX_PEERS {
            let Some(addr) = self.candidates.pop_front() else { break };
            if !self.tried.insert(addr.clone()) {
                continue;
            }
            let key = self.next_key;
            self.next_key += 1;
            self.dialing.insert(key);
            tokio::spawn(peer(key, addr, self.info_hash, self.peer_id, self.events_tx.clone()));
        }
        let failures = || Vec::from(self.failures.clone()).join("; ");
        if self.writers.is_empty() && self.dialing.is_empty() && self.trackers.is_empty() {
            bail!("no BitTorrent peer left to download from ({})", failures());
        }
        if session.verified() != self.progress.0 {
            self.progress = (session.verified(), Instant::now());
        } else if self.progress.1.elapsed() > STALL {
            bail!("nothing came in for {}s ({})", STALL.as_secs(), failures());
        }
        let now = || self.started.elapsed().as_millis() as u64;
        tokio::select! {
            Some(event) = self.events.recv() => match event {
                PeerEvent::Candidates(found) => self.candidates.extend(found),
                PeerEvent::Connected { key, writer, extensions } => {
                    self.dialing.remove(&key);
                    self.writers.insert(key, writer);
                    session.peer_connected(key, extensions);
                }
                PeerEvent::Message(key, msg) => session.on_message(now(), key, msg),
                PeerEvent::Gone { key, addr, connected, why } => {
                    self.dialing.remove(&key);
                    self.writers.remove(&key);
                    session.peer_gone(key);
                    tracing::debug!("torrent add {}: {addr} (connected: {connected}): {why}", self.id);
                    self.failed(format!("{addr}: {why}"));
                    // Candidates come back from trackers; a lost one may be tried again.
                    self.tried.remove(&addr);
                }
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => session.handle_timeout(now()),
        }
        while let Some((key, why)) = session.poll_close() {
            tracing::info!("torrent add {}: cut a peer off: {why}", self.id);
            self.failed(why);
            self.writers.remove(&key);
        }
        while let Some((key, msg)) = session.poll_message() {
            if let Some(w) = self.writers.get(&key) {
                let _ = w.send(msg);
            }
        }
        Ok(())
    }
}

fn write_piece(files: &[NetworkFile], handles: &[File], offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut at = 0usize;
    for (i, in_file, len) in spans(files, offset, data.len() as u64) {
        handles[i].write_all_at(&data[at..at + len as usize], in_file)?;
        at += len as usize;
    }
    Ok(())
}

/// Asks an http tracker for peers; none if it does not answer well.
async fn announce(url: &str, query: &str) -> Vec<String> {
    match super::announce::ask(url, query).await {
        Ok(answer) => {
            answer.peers.iter().map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(*ip))).collect()
        }
        Err(why) => {
            tracing::warn!("tracker {url}: {why}");
            Vec::new()
        }
    }
}

/// One peer connection: dial, handshakes, then messages both ways until either side ends.
async fn peer(key: PeerKey, addr: String, info_hash: Sha1Hash, peer_id: [u8; 20], events: mpsc::Sender<PeerEvent>) {
    let mut connected = false;
    let why = match talk(key, &addr, info_hash, peer_id, &events, &mut connected).await {
        Ok(()) => "closed".to_owned(),
        Err(e) => format!("{e:#}"),
    };
    let _ = events.send(PeerEvent::Gone { key, addr, connected, why }).await;
}

async fn talk(
    key: PeerKey,
    addr: &str,
    info_hash: Sha1Hash,
    peer_id: [u8; 20],
    events: &mpsc::Sender<PeerEvent>,
    connected: &mut bool,
) -> anyhow::Result<()> {
    let mut stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await.context("connect timed out")??;
    stream.write_all(&Handshake::new(info_hash, peer_id).encode()).await?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    timeout(CONNECT_TIMEOUT, stream.read_exact(&mut hs)).await.context("no handshake")??;
    let theirs = Handshake::decode(&hs)?;
    if theirs.info_hash != info_hash {
        bail!("answered for another torrent");
    }
    let (writer, mut rx) = mpsc::unbounded_channel();
    events.send(PeerEvent::Connected { key, writer, extensions: theirs.supports_extensions() }).await?;
    *connected = true;
    let (mut input, mut out) = (BytesMut::with_capacity(32 * 1024), BytesMut::new());
    loop {
        tokio::select! {
            msg = rx.recv() => {
                // The download dropped us (done, or this peer was cut off).
                let Some(msg) = msg else { return Ok(()) };
                out.clear();
                msg.encode(&mut out);
                while let Ok(more) = rx.try_recv() {
                    more.encode(&mut out);
                }
                stream.write_all(&out).await?;
            }
            read = timeout(IDLE_TIMEOUT, stream.read_buf(&mut input)) => {
                if read.context("silent too long")?? == 0 {
                    bail!("the peer closed the connection");
                }
                while let Some(msg) = decode_message(&mut input)? {
                    events.send(PeerEvent::Message(key, msg)).await?;
                }
                input.reserve(16 * 1024);
            }
        }
    }
}
