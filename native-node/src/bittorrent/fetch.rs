//! `torronto add`: downloading a torrent from BitTorrent peers (its http trackers'
//! and those given with `--peer`) into `DIR/.torronto/bittorrent/adds/<id>/<n>`, the
//! n-th file of the torrent under a number (no name from the torrent touches the disk).
//! What to ask whom and what to keep is core's [`Leech`]; this dials, moves the bytes
//! and writes the verified pieces. The node then inserts the files and has the folder
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
use torronto_core::bittorrent::leech::{Leech, PeerKey};
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

/// Downloads AddTorrent `id` and tells the node how it went.
pub async fn fetch(dir: PathBuf, id: ImportId, torrent: Bytes, peers: Vec<String>, inputs: mpsc::Sender<Input>) {
    let result = download(&dir, id, &torrent, peers).await.map_err(|e| {
        tracing::warn!("torrent add {id} failed: {e:#}");
        StorageError { code: Code::FileMissing, message: format!("the torrent could not be downloaded: {e:#}") }
    });
    let _ = inputs.send(Input::Storage(StorageEvent::TorrentFetched { id, result })).await;
}

/// What a peer's task (or a tracker's answer) tells the download.
enum PeerEvent {
    /// Peers a tracker named.
    Candidates(Vec<String>),
    Connected(PeerKey, mpsc::UnboundedSender<PeerMessage>),
    Message(PeerKey, PeerMessage),
    /// The connection failed or ended (`connected`: after the handshake).
    Gone {
        key: PeerKey,
        addr: String,
        connected: bool,
        why: String,
    },
}

async fn download(dir: &Path, id: ImportId, torrent: &[u8], given: Vec<String>) -> anyhow::Result<Vec<String>> {
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
    let trackers: Vec<String> = t.trackers.iter().filter(|u| u.starts_with("http://")).cloned().collect();
    let port = super::listen_addr(dir).and_then(|a| a.rsplit(':').next()?.parse().ok()).unwrap_or(6881);
    let peer_id = super::serve::our_peer_id();
    let started = Instant::now();
    let mut leech = Leech::new(t.info.clone());
    let (events_tx, mut events) = mpsc::channel::<PeerEvent>(256);
    let mut writers: HashMap<PeerKey, mpsc::UnboundedSender<PeerMessage>> = HashMap::new();
    let mut dialing: HashSet<PeerKey> = HashSet::new();
    let mut tried: HashSet<String> = HashSet::new();
    let mut candidates: VecDeque<String> = given.into();
    // The last few reasons peers were lost, for the error if the download fails.
    let mut failures: VecDeque<String> = VecDeque::new();
    let mut failed = |why: String| {
        if failures.len() == MAX_FAILURES_KEPT {
            failures.pop_front();
        }
        failures.push_back(why);
    };
    let (mut next_key, mut next_announce, mut last_piece) = (0, Instant::now(), Instant::now());
    let mut first_announce = true;
    while !leech.is_complete() {
        if !trackers.is_empty() && Instant::now() >= next_announce {
            // Asked in the background: a slow tracker must not hold up the peers' messages.
            let left = t.info.length - leech.progress().0;
            let event = first_announce.then_some("started");
            for url in &trackers {
                let query = announce_query(&t.info_hash, &peer_id, port, 0, left, event);
                let (url, events) = (url.clone(), events_tx.clone());
                tokio::spawn(async move {
                    let _ = events.send(PeerEvent::Candidates(announce(&url, &query).await)).await;
                });
            }
            first_announce = false;
            next_announce = Instant::now() + ANNOUNCE_EVERY;
        }
        while writers.len() + dialing.len() < MAX_PEERS {
            let Some(addr) = candidates.pop_front() else { break };
            if !tried.insert(addr.clone()) {
                continue;
            }
            let key = next_key;
            next_key += 1;
            dialing.insert(key);
            tokio::spawn(peer(key, addr, t.info_hash, peer_id, events_tx.clone()));
        }
        if writers.is_empty() && dialing.is_empty() && trackers.is_empty() {
            bail!("no BitTorrent peer left to download from ({})", Vec::from(failures).join("; "));
        }
        if last_piece.elapsed() > STALL {
            bail!("no piece came in for {}s ({})", STALL.as_secs(), Vec::from(failures).join("; "));
        }
        let now = || started.elapsed().as_millis() as u64;
        tokio::select! {
            Some(event) = events.recv() => match event {
                PeerEvent::Candidates(found) => candidates.extend(found),
                PeerEvent::Connected(key, tx) => {
                    dialing.remove(&key);
                    writers.insert(key, tx);
                    leech.peer_connected(key);
                }
                PeerEvent::Message(key, msg) => leech.on_message(now(), key, msg),
                PeerEvent::Gone { key, addr, connected, why } => {
                    dialing.remove(&key);
                    writers.remove(&key);
                    leech.peer_gone(key);
                    tracing::debug!("torrent add {id}: {addr} (connected: {connected}): {why}");
                    failed(format!("{addr}: {why}"));
                    // Candidates come back from trackers; a lost one may be tried again.
                    tried.remove(&addr);
                }
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => leech.handle_timeout(now()),
        }
        while let Some((key, why)) = leech.poll_close() {
            tracing::info!("torrent add {id}: cut a peer off: {why}");
            failed(why.to_string());
            writers.remove(&key);
        }
        while let Some((key, msg)) = leech.poll_message() {
            if let Some(w) = writers.get(&key) {
                let _ = w.send(msg);
            }
        }
        while let Some((index, data)) = leech.poll_piece() {
            let offset = u64::from(index) * u64::from(t.info.piece_length);
            let (files, handles) = (files.clone(), handles.clone());
            tokio::task::spawn_blocking(move || write_piece(&files, &handles, offset, &data)).await??;
            last_piece = Instant::now();
        }
    }
    tracing::info!("downloaded torrent {} in {:.1}s", t.info.name, started.elapsed().as_secs_f64());
    Ok(paths)
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
    if Handshake::decode(&hs)?.info_hash != info_hash {
        bail!("answered for another torrent");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    events.send(PeerEvent::Connected(key, tx)).await?;
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
