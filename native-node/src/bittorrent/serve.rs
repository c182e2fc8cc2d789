//! The `--bittorrent` listener: BEP 3 peers download exported files from this node.
//! Each connection: the peer's handshake (its info-hash must be exported, else the
//! connection is closed), ours, a full bitfield, our extension handshake offering the
//! info dictionary (BEP 9/10) and an unchoke, then requested blocks read from the
//! node's complete copy and metadata pieces. What each message means is core's
//! [`SeedSession`]; this moves the bytes: the blocks queued go out in batches
//! ([`PieceBatch`], bounded), each read in one blocking pass into a buffer the connection
//! keeps and sent in one write, rather than a read task and two writes per 16 KiB block.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use torronto_core::bittorrent::metainfo::hex;
use torronto_core::bittorrent::seed::{PieceBatch, SeedSession};
use torronto_core::bittorrent::wire::{decode_message, Handshake, HANDSHAKE_LEN};

use crate::limits::Limiter;
use crate::tasks::Tasks;

/// Most BitTorrent peers served at once; more are closed as they come.
pub const MAX_PEERS: usize = 64;
/// A peer must send its handshake this soon after connecting.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer silent this long is closed (BEP 3 keep-alives come every two minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Sending one batch of blocks may take this long before the peer is given up on.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts BitTorrent peers on `listener` and serves the exports of folder `dir` until
/// the node's tasks are shut down.
/// Blocks wait their turn on the node's upload pacer (`--upload-limit`), shared with
/// torronto's own peers.
pub async fn serve(listener: TcpListener, dir: PathBuf, peer_id: [u8; 20], limiter: Arc<Limiter>, tasks: Tasks) {
    let slots = Arc::new(Semaphore::new(MAX_PEERS));
    loop {
        let (stream, from) = torronto_net::accept(&listener, "bittorrent").await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("bittorrent: {from} refused: {MAX_PEERS} peers already");
            continue;
        };
        let (dir, limiter) = (dir.clone(), limiter.clone());
        tasks.spawn(async move {
            match peer(stream, dir, peer_id, limiter).await {
                Ok(()) => tracing::debug!("bittorrent: {from} done"),
                Err(e) => tracing::debug!("bittorrent: {from} closed: {e}"),
            }
            drop(slot);
        });
    }
}

/// The node's peer id, Azureus-style: client `TO`, version 0.1, then random bytes.
pub fn our_peer_id() -> [u8; 20] {
    let mut id = *b"-TO0010-000000000000";
    rand::fill(&mut id[8..]);
    id
}

async fn peer(mut stream: TcpStream, dir: PathBuf, peer_id: [u8; 20], limiter: Arc<Limiter>) -> anyhow::Result<()> {
    // Every write is whole messages (a batch, or our replies): nothing is gained by holding
    // a batch's last segment back for the peer's ACK.
    stream.set_nodelay(true)?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut hs)).await??;
    let theirs = Handshake::decode(&hs)?;
    let info_hash = theirs.info_hash;
    let found = tokio::task::spawn_blocking(move || super::lookup(&dir, &info_hash)).await?;
    let Some(super::Seeded { info, metadata, file }) = found else {
        anyhow::bail!("info-hash {} is not exported here", hex(&info_hash));
    };
    tracing::info!("bittorrent: {} downloading {}", stream.peer_addr()?, info.name);
    let file = Arc::new(file);
    let mut session = SeedSession::new(&info, metadata);
    // The piece hashes are not needed to seed (the info dictionary's bytes are kept for
    // the metadata exchange): not held for the connection's life.
    drop(info);
    let mut out = BytesMut::new();
    out.extend_from_slice(&Handshake::new(info_hash, peer_id).encode());
    session.opening(theirs.supports_extensions()).iter().for_each(|m| m.encode(&mut out));
    stream.write_all(&out).await?;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut batch = PieceBatch::default();
    loop {
        while let Some(msg) = decode_message(&mut input)? {
            session.on_message(msg)?;
        }
        out.clear();
        while let Some(msg) = session.poll_message() {
            msg.encode(&mut out);
        }
        if !out.is_empty() {
            timeout(SEND_TIMEOUT, stream.write_all(&out)).await??;
        }
        session.next_batch(&mut batch);
        input.reserve(16 * 1024);
        if batch.is_empty() {
            if timeout(IDLE_TIMEOUT, stream.read_buf(&mut input)).await?? == 0 {
                return Ok(());
            }
            continue;
        }
        let file = file.clone();
        batch = tokio::task::spawn_blocking(move || {
            batch.fill(|offset, slot| file.read_exact_at(slot, offset)).map(|()| batch)
        })
        .await??;
        // A turn of the pacer per block, not per batch: peers share a limited rate
        // block by block, and what passes the rate stays one block at most.
        for length in batch.block_lengths() {
            limiter.upload.take(length).await;
        }
        timeout(SEND_TIMEOUT, stream.write_all(batch.bytes())).await??;
        // Requests (and cancels) that came meanwhile count before the next batch, so
        // batches stay full while the peer keeps asking.
        match stream.try_read_buf(&mut input) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}
