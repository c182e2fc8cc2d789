//! One connection, TCP or WebSocket: dialling a peer (with the handshake of a private
//! network), a reader task turning frames into messages for the driver, and a writer
//! task encoding the driver's messages into frames.
//!
//! Both transports go through `torronto_net` (the frame stream and the
//! decoder around core's `MessageReader`), so the size limits, the decoding and the
//! [`Input`]s the driver sees are the same whichever way a peer came in. Decoding
//! happens here, on the connection's own task, so the driver only sees typed messages.
//! On TCP the writer also sends chunk bodies straight from their files (sendfile),
//! sparing a read into memory and a copy into the socket for every chunk served; in a
//! private network it reads each body from its file straight into the record that
//! carries it, where it is sealed.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use torronto_core::layout::{chunk_len, chunk_range};
use torronto_core::{ChunkRef, ConnId, Envelope, Message, PeerAddr, PeerMessage, StorageEvent};
use torronto_net::{
    tune, write_encoded, Decoder, FrameKind, FrameRead, FrameWrite, Incoming, SecureFrameWriter, TcpFrameWriter,
};
use torronto_ws_bridge::ws::WsFrameWriter;
use torronto_ws_bridge::SecureWsWriter;

use crate::input::{Input, Link};
use crate::limits::Limiter;
use crate::private::Private;
use crate::store::io_error;

const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to `addr` and, in a private network, runs the handshake as initiator.
pub async fn dial(addr: &PeerAddr, private: Option<&Private>) -> std::io::Result<Link> {
    let connect = TcpStream::connect((addr.host.as_str(), addr.port));
    let mut stream = match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    };
    tune(&stream);
    let Some(private) = private else {
        return Ok(Link::Plain(stream));
    };
    match private.dial(&mut stream, addr).await {
        Ok(secured) => Ok(Link::Secure(stream, Box::new(secured))),
        Err(e) => {
            // A pinned peer with another key is worth a warning; the rest is the usual
            // unreachable peer, retried.
            if matches!(e, torronto_net::HandshakeError::Secure(torronto_core::SecureError::PeerMismatch { .. })) {
                tracing::warn!("refusing {addr}: {e}");
            }
            Err(std::io::Error::other(e))
        }
    }
}

/// What a connection's writer is handed: messages by the driver, stored Uploads by
/// the storage thread.
#[derive(Debug)]
pub enum Outgoing {
    Message(Envelope),
    /// An Upload whose body goes straight from its file (where [`ConnWrite::SENDS_FILES`]).
    Stored(StoredUpload),
}

/// A chunk to send as an Upload from an open file, answering core's `Read` with `Sent`.
#[derive(Debug)]
pub struct StoredUpload {
    /// From `Envelope::upload_header`.
    pub header: Bytes,
    pub file: Arc<File>,
    pub chunk: ChunkRef,
    pub push: bool,
}

/// A connection's sending half: frames, and where the transport allows, chunk bodies
/// straight from files.
pub trait ConnWrite: FrameWrite {
    /// Whether [`ConnWrite::write_stored`] works; for other connections the storage reads
    /// chunks into memory and the node sends them as messages.
    const SENDS_FILES: bool;
    fn write_stored(&mut self, upload: &StoredUpload) -> impl Future<Output = io::Result<()>> + Send;
}

impl ConnWrite for TcpFrameWriter<OwnedWriteHalf> {
    const SENDS_FILES: bool = true;
    async fn write_stored(&mut self, upload: &StoredUpload) -> io::Result<()> {
        let r = chunk_range(upload.chunk.size, upload.chunk.index);
        self.write_frame(FrameKind::Header, upload.header.clone()).await?;
        self.write_file_frame(&upload.file, r.start, (r.end - r.start) as usize).await
    }
}

// Chunks pass through the cipher: each body is read from its file straight into its
// place in a record and sealed there.
impl ConnWrite for SecureFrameWriter<OwnedWriteHalf> {
    const SENDS_FILES: bool = true;
    async fn write_stored(&mut self, upload: &StoredUpload) -> io::Result<()> {
        let r = chunk_range(upload.chunk.size, upload.chunk.index);
        self.write_frame(FrameKind::Header, upload.header.clone()).await?;
        self.write_file_frame(&upload.file, r.start, (r.end - r.start) as usize).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ConnWrite for WsFrameWriter<S> {
    const SENDS_FILES: bool = false;
    async fn write_stored(&mut self, _: &StoredUpload) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ConnWrite for SecureWsWriter<S> {
    const SENDS_FILES: bool = false;
    async fn write_stored(&mut self, _: &StoredUpload) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Reads messages until the stream ends or breaks the protocol, then reports the
/// disconnection.
/// Chunk bodies wait for the download limit before the loop reads on.
pub async fn read_loop(
    conn: ConnId,
    mut decoder: Decoder<impl FrameRead>,
    inputs: mpsc::Sender<Input>,
    limiter: Arc<Limiter>,
) {
    loop {
        let input = match decoder.next().await {
            Ok(Some(Incoming::Message(envelope))) => {
                if let Message::Peer(PeerMessage::Upload { data, .. }) = &envelope.message {
                    limiter.download.take(data.len() as u64).await;
                }
                Input::Message { conn, envelope }
            }
            Ok(Some(Incoming::Malformed(reason))) => Input::Malformed { conn, reason },
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%conn, "closing connection: {e}");
                break;
            }
        };
        if inputs.send(input).await.is_err() {
            return;
        }
    }
    let _ = inputs.send(Input::Disconnected { conn }).await;
}

/// Messages waiting in one connection's queue before the driver closes it: a peer that
/// does not read what it asks for must not make the node hold its answers without end.
/// Stored Uploads are not counted: the node's serving limit bounds them.
pub const OUTGOING_LIMIT: usize = 4096;

/// Writes what the driver sends until it drops the sender (a Close) or the peer
/// goes away; flushes whenever the queue runs dry. Each stored Upload is reported to
/// the node once it is on its way (`Sent`), which frees its place in the serving limit.
/// `queued` counts the messages the driver has queued and this has not yet written.
/// Chunk bodies wait for the upload limit; other messages go on meanwhile.
pub async fn write_loop(
    conn: ConnId,
    mut frames: impl ConnWrite,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
    inputs: mpsc::Sender<Input>,
    limiter: Arc<Limiter>,
) {
    // Chunks taken off the queue while another waited for the upload limit: the limit
    // holds back chunk bodies only, not what else the node tells this peer (its own
    // requests above all, or our downloads would slow down with our uploads).
    let mut later = VecDeque::new();
    loop {
        let item = match later.pop_front() {
            Some(item) => item,
            None => match outgoing.try_recv() {
                Ok(item) => item,
                Err(TryRecvError::Empty) => {
                    if frames.flush().await.is_err() {
                        return;
                    }
                    match outgoing.recv().await {
                        Some(item) => item,
                        None => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            },
        };
        if let Some(bytes) = chunk_body(&item).filter(|_| limiter.upload.is_limited()) {
            if frames.flush().await.is_err() {
                return;
            }
            let paced = limiter.upload.take(bytes);
            tokio::pin!(paced);
            loop {
                tokio::select! {
                    biased;
                    () = &mut paced => break,
                    Some(other) = outgoing.recv() => {
                        if chunk_body(&other).is_some() {
                            later.push_back(other);
                        } else if !send(conn, &mut frames, other, &queued, &inputs).await || frames.flush().await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if !send(conn, &mut frames, item, &queued, &inputs).await {
            return;
        }
    }
    let _ = frames.close().await;
}

/// The size of the chunk body `item` carries, if it carries one.
fn chunk_body(item: &Outgoing) -> Option<u64> {
    match item {
        Outgoing::Message(Envelope { message: Message::Peer(PeerMessage::Upload { data, .. }), .. }) => {
            Some(data.len() as u64)
        }
        Outgoing::Message(_) => None,
        Outgoing::Stored(upload) => Some(chunk_len(upload.chunk.size, upload.chunk.index) as u64),
    }
}

/// Writes one item; false once the connection cannot go on.
async fn send(
    conn: ConnId,
    frames: &mut impl ConnWrite,
    item: Outgoing,
    queued: &AtomicUsize,
    inputs: &mpsc::Sender<Input>,
) -> bool {
    match item {
        Outgoing::Message(envelope) => {
            if write_encoded(frames, &envelope.encode()).await.is_err() {
                return false;
            }
            queued.fetch_sub(1, Ordering::Relaxed);
            true
        }
        Outgoing::Stored(upload) => {
            let result = frames.write_stored(&upload).await;
            if let Err(e) = &result {
                tracing::debug!(%conn, "closing connection: sending {}: {e}", upload.chunk.file);
            }
            // A peer gone away is the reader's to report; a file that failed, ours.
            if result.as_ref().is_err_and(is_disconnect) {
                return false;
            }
            let failed = result.is_err();
            let result = result.map_err(|e| io_error(upload.chunk.file.as_str(), &e));
            let StoredUpload { chunk, push, .. } = upload;
            let sent = Input::Storage(StorageEvent::Sent { conn, chunk, push, result });
            // Part of a frame may be out: the stream cannot go on after a failure.
            inputs.send(sent).await.is_ok() && !failed
        }
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | TimedOut)
}
