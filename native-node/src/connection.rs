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
//! carries it, where it is sealed. The writer stamps each chunk with when it goes to the
//! socket (`SentAt`), for the receivers' one-way delays (core's `uplink`).

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use torronto_core::layout::{chunk_len, chunk_range};
use torronto_core::{ChunkRef, ConnId, Envelope, Message, PeerAddr, PeerMessage, StorageEvent};
use torronto_net::{
    limit_unsent, monotonic_us, tune, wall_clock_us, write_encoded, Decoder, FrameKind, FrameRead, FrameWrite,
    Incoming, SecureFrameWriter, TcpFrameWriter,
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
    /// Who it is from: the header is encoded as it goes out, with its `SentAt`.
    pub from: PeerAddr,
    /// Its `SentAt`, set by the writer ([`stamp`]).
    pub sent_at: u64,
    pub file: Arc<File>,
    pub chunk: ChunkRef,
    pub push: bool,
}

impl StoredUpload {
    fn header(&self) -> Bytes {
        Envelope::upload_header(&self.from, &self.chunk, Some(self.sent_at))
    }
}

/// A connection's sending half: frames, and where the transport allows, chunk bodies
/// straight from files.
pub trait ConnWrite: FrameWrite {
    /// Whether [`ConnWrite::write_stored`] works; for other connections the storage reads
    /// chunks into memory and the node sends them as messages.
    const SENDS_FILES: bool;
    /// Writes `upload`'s header, then its body.
    fn write_stored(&mut self, upload: &StoredUpload) -> impl Future<Output = io::Result<()>> + Send;

    /// Lets at most about `bytes` wait unsent in the kernel ([`UnsentLimit`]), where the
    /// transport has such a bound.
    fn limit_unsent(&self, _bytes: u32) {}
}

impl ConnWrite for TcpFrameWriter<OwnedWriteHalf> {
    const SENDS_FILES: bool = true;
    async fn write_stored(&mut self, upload: &StoredUpload) -> io::Result<()> {
        let r = chunk_range(upload.chunk.size, upload.chunk.index);
        self.write_frame(FrameKind::Header, upload.header()).await?;
        self.write_file_frame(&upload.file, r.start, (r.end - r.start) as usize).await
    }

    fn limit_unsent(&self, bytes: u32) {
        let _ = limit_unsent(self.get_ref().as_ref(), bytes);
    }
}

// Chunks pass through the cipher: each body is read from its file straight into its
// place in a record and sealed there.
impl ConnWrite for SecureFrameWriter<OwnedWriteHalf> {
    const SENDS_FILES: bool = true;
    async fn write_stored(&mut self, upload: &StoredUpload) -> io::Result<()> {
        let r = chunk_range(upload.chunk.size, upload.chunk.index);
        self.write_frame(FrameKind::Header, upload.header()).await?;
        self.write_file_frame(&upload.file, r.start, (r.end - r.start) as usize).await
    }

    fn limit_unsent(&self, bytes: u32) {
        let _ = limit_unsent(self.get_ref().as_ref(), bytes);
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
/// Our requests and Haves go before the chunk bodies queued ahead of them, and on while
/// chunk bodies wait for the upload limit (other messages keep their place); little
/// waits unsent in the kernel ([`UnsentLimit`]), so that our requests to a peer we
/// upload to are not held up behind our uploads.
pub async fn write_loop(
    conn: ConnId,
    mut frames: impl ConnWrite,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
    inputs: mpsc::Sender<Input>,
    limiter: Arc<Limiter>,
) {
    // What was taken off the queue ahead of its turn, in order: chunk bodies, and the
    // messages that may not overtake them (`queue_behind`). Our requests do not wait
    // here, or our downloads would slow down with our uploads.
    let mut later = VecDeque::new();
    let mut unsent = UnsentLimit::new(&frames);
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
        let Some(body) = chunk_body(&item) else {
            if !send(conn, &mut frames, item, &queued, &inputs).await {
                return;
            }
            continue;
        };
        // Our requests and Haves queued behind it go first: a peer we upload to would
        // otherwise hear of them only after our uploads. Anything else keeps its place,
        // and so does what came after it.
        later.push_front(item);
        let mut parked = later.iter().any(|i| chunk_body(i).is_none());
        while !parked {
            let Ok(other) = outgoing.try_recv() else { break };
            if let Some(now) = queue_behind(&mut later, &mut parked, other) {
                if !send(conn, &mut frames, now, &queued, &inputs).await {
                    return;
                }
            }
        }
        let item = later.pop_front().expect("pushed above");
        if limiter.upload.is_limited() {
            if frames.flush().await.is_err() {
                return;
            }
            let paced = limiter.upload.take(body);
            tokio::pin!(paced);
            loop {
                tokio::select! {
                    biased;
                    () = &mut paced => break,
                    Some(other) = outgoing.recv() => {
                        let Some(now) = queue_behind(&mut later, &mut parked, other) else { continue };
                        if !send(conn, &mut frames, now, &queued, &inputs).await || frames.flush().await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let started = Instant::now();
        let item = stamp(item, monotonic_us());
        if !send(conn, &mut frames, item, &queued, &inputs).await {
            return;
        }
        unsent.wrote(&frames, body, started.elapsed());
    }
    let _ = frames.close().await;
}

/// How much of what a connection sends may wait unsent in the kernel: about
/// [`UnsentLimit::TIME`] of the connection's own pace, so that a message written behind
/// chunk bodies (a request to the peer we upload to) waits about that long, however slow
/// the link. Left to itself the kernel kept 200–500 KB unsent per connection on 100
/// Mbit/s links shared by eight: a third of a second before a request even left. The
/// pace is what the writer wrote over the time it spent writing (waiting on the socket
/// included); on fast links it comes to megabytes, and writes go on as before.
struct UnsentLimit {
    bytes: u64,
    busy: Duration,
    set: u32,
}

impl UnsentLimit {
    const TIME: Duration = Duration::from_millis(10);
    /// Where every connection starts: a quarter of a chunk.
    const LEAST: u32 = 16 << 10;
    const MOST: u32 = 4 << 20;
    /// The pace is measured again after this much writing, or this many bytes.
    const MEASURE_TIME: Duration = Duration::from_millis(250);
    const MEASURE_BYTES: u64 = 4 << 20;

    fn new(frames: &impl ConnWrite) -> Self {
        frames.limit_unsent(Self::LEAST);
        Self { bytes: 0, busy: Duration::ZERO, set: Self::LEAST }
    }

    /// `bytes` of chunk body written, in `took`.
    fn wrote(&mut self, frames: &impl ConnWrite, bytes: u64, took: Duration) {
        self.bytes += bytes;
        self.busy += took;
        if self.bytes < Self::MEASURE_BYTES && self.busy < Self::MEASURE_TIME {
            return;
        }
        let per_second = u128::from(self.bytes) * 1_000_000 / self.busy.as_micros().max(1);
        let want = (per_second * Self::TIME.as_micros() / 1_000_000).clamp(Self::LEAST.into(), Self::MOST.into());
        let want = want as u32;
        if want != self.set {
            frames.limit_unsent(want);
            self.set = want;
        }
        (self.bytes, self.busy) = (0, Duration::ZERO);
    }
}

/// `item`, taken off the queue while chunk bodies wait in `later`: returned to be sent at
/// once if it may overtake them ([`PeerMessage::may_overtake_uploads`]) and nothing
/// `parked` keeps its place there; otherwise queued behind them, and a message queued
/// so parks what comes after it too.
fn queue_behind(later: &mut VecDeque<Outgoing>, parked: &mut bool, item: Outgoing) -> Option<Outgoing> {
    let overtakes = match &item {
        Outgoing::Message(Envelope { message: Message::Peer(message), .. }) => message.may_overtake_uploads(),
        _ => false,
    };
    if overtakes && !*parked {
        return Some(item);
    }
    *parked |= chunk_body(&item).is_none();
    later.push_back(item);
    None
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
            if let Message::Peer(PeerMessage::Upload { chunk, .. }) = &envelope.message {
                trace_header_sent(conn, chunk);
            }
            if write_encoded(frames, &envelope.encode()).await.is_err() {
                return false;
            }
            queued.fetch_sub(1, Ordering::Relaxed);
            true
        }
        Outgoing::Stored(upload) => {
            trace_header_sent(conn, &upload.chunk);
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

/// `item`, a chunk, with its `SentAt`: `at` (in [`monotonic_us`]), as it goes to the
/// socket. (Stamped instead with when it should leave the socket, reckoned from the
/// connection's pace and what waits unsent, the automatic limit did worse on shaped
/// links: 1.30–1.34 × the bound where every link was 100 Mbit/s, against 1.15–1.21.)
fn stamp(mut item: Outgoing, at: u64) -> Outgoing {
    match &mut item {
        Outgoing::Message(Envelope { message: Message::Peer(PeerMessage::Upload { stamps, .. }), .. }) => {
            stamps.sent = Some(at)
        }
        Outgoing::Message(_) => {}
        Outgoing::Stored(upload) => upload.sent_at = at,
    }
    item
}

/// When a chunk's header goes to the socket, for the chunk trace's one-way delays (the
/// driver names the connection's peer: `owd conn N peer ADDR`).
fn trace_header_sent(conn: ConnId, chunk: &ChunkRef) {
    tracing::trace!(target: "torronto::chunks", "owd sent conn {} index {} us {}", conn.0, chunk.index, wall_clock_us());
}

fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | TimedOut)
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use torronto_core::layout::ChunkIndex;
    use torronto_core::{FileName, RateLimits};
    use torronto_net::TcpFrameReader;

    use super::*;

    fn chunk(index: u32) -> ChunkRef {
        let size = 4 * torronto_core::layout::CHUNK_SIZE;
        ChunkRef { file: FileName::new("a.bin").unwrap(), size, index: ChunkIndex(index) }
    }

    /// What a peer reads, in order, when a writer is handed `items` at once: uploads,
    /// requests and Removes, by chunk index.
    async fn delivered(items: Vec<PeerMessage>) -> Vec<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_keep_open, write_half) = client.into_split();
        let (read_half, _unused) = server.into_split();
        let (to_writer, queue) = mpsc::unbounded_channel();
        let count = items.len();
        for message in items {
            to_writer.send(Outgoing::Message(Envelope { from: None, token: None, message: message.into() })).unwrap();
        }
        drop(to_writer);

        let limiter = Limiter::new(RateLimits::default());
        let (inputs, mut received) = mpsc::channel(16);
        let queued = Arc::new(AtomicUsize::new(count));
        let writer = TcpFrameWriter::new(write_half);
        tokio::spawn(write_loop(ConnId(1), writer, queue, queued, inputs.clone(), limiter.clone()));
        tokio::spawn(read_loop(ConnId(2), Decoder::new(TcpFrameReader::new(read_half)), inputs, limiter));
        let mut order = Vec::new();
        while order.len() < count {
            match received.recv().await.expect("the reader reports every message") {
                Input::Message { envelope, .. } => order.push(match envelope.message {
                    Message::Peer(PeerMessage::Upload { chunk, .. }) => format!("upload {}", chunk.index.get()),
                    Message::Peer(PeerMessage::Download { chunk, .. }) => format!("request {}", chunk.index.get()),
                    Message::Peer(PeerMessage::Remove) => "remove".into(),
                    other => panic!("unexpected {other:?}"),
                }),
                Input::Disconnected { .. } => panic!("the stream ended after {order:?}"),
                _ => {}
            }
        }
        order
    }

    fn upload(index: u32) -> PeerMessage {
        let data = Bytes::from(vec![index as u8; torronto_core::layout::CHUNK_SIZE as usize]);
        PeerMessage::upload(chunk(index), data)
    }

    /// A request queued behind chunk bodies leaves before them: on a link where our
    /// uploads to a peer fill the pipe, our requests to it would otherwise wait for them.
    #[tokio::test]
    async fn requests_go_before_the_chunk_bodies_queued_with_them() {
        let order = delivered(vec![upload(0), upload(1), upload(2), PeerMessage::download(chunk(3))]).await;
        assert_eq!(order, ["request 3", "upload 0", "upload 1", "upload 2"]);
    }

    /// A Remove queued behind uploads stays behind them, and so does what follows it: the
    /// peer would drop uploads arriving after our Remove (a leave's last pushes among them).
    #[tokio::test]
    async fn a_remove_keeps_its_place_behind_the_uploads_queued_before_it() {
        let items = vec![upload(0), upload(1), PeerMessage::Remove, PeerMessage::download(chunk(2))];
        assert_eq!(delivered(items).await, ["upload 0", "upload 1", "remove", "request 2"]);
    }

    /// What may wait unsent follows the pace a connection's writes go at: a quarter of a
    /// chunk at first, 10 ms of a 100 Mbit/s link's worth there, megabytes on loopback.
    #[tokio::test]
    async fn what_may_wait_unsent_follows_the_pace_of_the_link() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (_read_half, write_half) = client.into_split();
        let frames = TcpFrameWriter::new(write_half);
        let lowat = |frames: &TcpFrameWriter<OwnedWriteHalf>| {
            socket2::SockRef::from(frames.get_ref().as_ref()).tcp_notsent_lowat().unwrap()
        };
        let mut unsent = UnsentLimit::new(&frames);
        assert_eq!(lowat(&frames), 16 << 10);
        // 100 Mbit/s: 12.5 MB a second, 125 kB in 10 ms (measured after 250 ms).
        for _ in 0..3 {
            unsent.wrote(&frames, 1_250_000, Duration::from_millis(100));
        }
        assert_eq!(lowat(&frames), 125_000);
        // 2 GB/s, as on loopback: capped (measured after 4 MiB).
        for _ in 0..2 {
            unsent.wrote(&frames, 2_500_000, Duration::from_micros(1_250));
        }
        assert_eq!(lowat(&frames), 4 << 20);
        // 1 Mbit/s: never below a quarter of a chunk.
        unsent.wrote(&frames, 40_000, Duration::from_millis(320));
        assert_eq!(lowat(&frames), 16 << 10);
    }
}
