//! A connection as a stream of frames, whatever carries it.
//!
//! TCP frames carry a 4-byte big-endian length; WebSocket frames are whole messages
//! ([`crate::ws`]). Both are read with a limit that [`Decoder`] takes from core's
//! `MessageReader` for the next frame, so an over-long frame is refused before it is
//! allocated (TCP) or as soon as it is complete (WebSocket, where tungstenite already
//! caps every message at the largest body a frame may have).

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use torronto_core::wire::{frame_prefix, Encoded, FrameDecoder, MessageReader, WireError};
use torronto_core::Envelope;

/// A frame's bytes must arrive within this once its length has (TCP).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which part of a message a frame is. TCP does not mark it; a WebSocket sends headers
/// as text messages and bodies as binary ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Header,
    Body,
}

/// Why a connection stopped being readable.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Over a size limit: the stream can no longer be trusted.
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("frame body did not arrive within {BODY_TIMEOUT:?}")]
    Timeout,
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// The receiving half of a connection.
pub trait FrameRead: Send {
    /// The next frame, refused if over `limit`; `None` at a clean end of the stream.
    fn read_frame(&mut self, limit: usize) -> impl Future<Output = Result<Option<Bytes>, ReadError>> + Send;
}

/// The sending half of a connection.
pub trait FrameWrite: Send {
    /// Queues one frame; it may sit in a buffer until [`FrameWrite::flush`].
    fn write_frame(&mut self, kind: FrameKind, frame: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Flushes and ends the stream (TCP shutdown, WebSocket close frame).
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Queues a message's frames: the header, then its body if it has one.
pub async fn write_encoded(out: &mut impl FrameWrite, encoded: &Encoded) -> io::Result<()> {
    out.write_frame(FrameKind::Header, encoded.header.clone()).await?;
    if let Some(body) = &encoded.body {
        out.write_frame(FrameKind::Body, body.clone()).await?;
    }
    Ok(())
}

/// Reads length-prefixed frames from a TCP stream (or any byte stream).
///
/// Bytes land once in a large buffer and each frame is split off it without a copy
/// (chunk bodies go on to storage as they are), using core's decoder, which checks a
/// frame's length against the limit before buffering it.
#[derive(Debug)]
pub struct TcpFrameReader<R> {
    stream: R,
    buf: BytesMut,
    /// The last read brought more than a quiet connection's buffer holds.
    busy: bool,
}

/// Bytes asked of the kernel per read while chunks stream in: several chunks at once.
const READ_BUFFER: usize = 256 * 1024;
/// The buffer of a quiet connection (control clients, idle peers, a flood of sockets),
/// so that a thousand of them cost a few MiB.
const QUIET_READ_BUFFER: usize = 8 * 1024;

impl<R: AsyncRead + Unpin + Send> TcpFrameReader<R> {
    pub fn new(stream: R) -> Self {
        Self { stream, buf: BytesMut::new(), busy: false }
    }
}

impl<R: AsyncRead + Unpin + Send> FrameRead for TcpFrameReader<R> {
    async fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        // Once a frame has begun, all of it must arrive within BODY_TIMEOUT, however
        // slowly the bytes trickle in.
        let mut deadline = None;
        loop {
            if let Some(frame) = FrameDecoder::decode(&mut self.buf, limit)? {
                return Ok(Some(frame));
            }
            let want = if self.busy { READ_BUFFER } else { QUIET_READ_BUFFER };
            if self.buf.capacity() - self.buf.len() < want / 4 {
                self.buf.reserve(want);
            }
            let mid_frame = !self.buf.is_empty();
            let read = self.stream.read_buf(&mut self.buf);
            let n = if !mid_frame {
                read.await?
            } else {
                let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + BODY_TIMEOUT);
                tokio::time::timeout_at(at, read).await.map_err(|_| ReadError::Timeout)??
            };
            self.busy = n >= QUIET_READ_BUFFER;
            if n == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                };
            }
        }
    }
}

/// Writes length-prefixed frames to a TCP stream (or any byte stream).
///
/// Large frames (chunk bodies) are not copied: they wait in a queue as they are and go
/// out with the small frames around them in one vectored write. Small frames and every
/// length prefix are gathered in one staging buffer, so a run of headers is one slice.
#[derive(Debug)]
pub struct TcpFrameWriter<W> {
    stream: W,
    staged: BytesMut,
    queue: VecDeque<Bytes>,
    queued: usize,
}

/// Frames shorter than this are copied into the staging buffer; longer ones are queued.
const COPY_BELOW: usize = 4 * 1024;
/// Queued bytes at which `write_frame` writes them out rather than queueing more.
const WRITE_AT: usize = 256 * 1024;
/// Slices per vectored write (Linux takes up to 1024).
const MAX_SLICES: usize = 64;

impl<W: AsyncWrite + Unpin + Send> TcpFrameWriter<W> {
    pub fn new(stream: W) -> Self {
        Self { stream, staged: BytesMut::with_capacity(COPY_BELOW), queue: VecDeque::new(), queued: 0 }
    }

    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Writes everything queued and staged.
    async fn write_out(&mut self) -> io::Result<()> {
        let staged = self.staged.split().freeze();
        self.push(staged);
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.queue.len().min(MAX_SLICES);
            for (slice, bytes) in slices.iter_mut().zip(&self.queue) {
                *slice = IoSlice::new(bytes);
            }
            let mut written = self.stream.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.queued -= written;
            while written > 0 {
                let front = self.queue.front_mut().expect("written bytes were queued");
                if written < front.len() {
                    front.advance(written);
                    break;
                }
                written -= front.len();
                self.queue.pop_front();
            }
        }
        Ok(())
    }
}

impl TcpFrameWriter<OwnedWriteHalf> {
    /// Sends `len` bytes of `file` from `offset` as the next frame, straight from the
    /// page cache to the socket (sendfile): the bytes are neither read into memory nor
    /// copied into the socket buffer. An error once the body has begun leaves the
    /// stream unusable (the peer would read a short frame): close it.
    pub async fn write_file_frame(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.staged.extend_from_slice(&frame_prefix(len));
        self.write_out().await?;
        let socket: &TcpStream = self.stream.as_ref();
        let mut offset = offset;
        let mut left = len;
        while left > 0 {
            socket.writable().await?;
            let sent =
                socket.try_io(Interest::WRITABLE, || Ok(rustix::fs::sendfile(socket, file, Some(&mut offset), left)?));
            match sent {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than the frame"))
                }
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin + Send> FrameWrite for TcpFrameWriter<W> {
    async fn write_frame(&mut self, _kind: FrameKind, frame: Bytes) -> io::Result<()> {
        self.staged.extend_from_slice(&frame_prefix(frame.len()));
        if frame.len() < COPY_BELOW {
            self.staged.extend_from_slice(&frame);
        } else {
            let staged = self.staged.split().freeze();
            self.push(staged);
            self.push(frame);
        }
        if self.queued + self.staged.len() >= WRITE_AT {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.stream.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.stream.shutdown().await
    }
}

/// What one frame did to the message being read.
#[derive(Debug)]
pub enum Step {
    /// A header whose body comes next, or the body of a refused header (skipped).
    Partial,
    /// A message is complete.
    Message(Envelope),
    /// A message was refused; the stream stays usable (answer ErrBadRequest).
    Malformed(String),
}

/// A message, or why one was refused.
#[derive(Debug)]
pub enum Incoming {
    Message(Envelope),
    Malformed(String),
}

/// Turns a frame stream into messages with core's `MessageReader`: the one place the
/// node's connections and the relay decode what they receive.
#[derive(Debug)]
pub struct Decoder<R> {
    frames: R,
    reader: MessageReader,
    body_next: bool,
}

impl<R: FrameRead> Decoder<R> {
    pub fn new(frames: R) -> Self {
        Self { frames, reader: MessageReader::new(), body_next: false }
    }

    /// The next frame, its place in its message and what it completed, for code that
    /// forwards frames as they are. `None` at the end of the stream; an error means
    /// the connection must be closed.
    ///
    /// The kind is exact for well-formed traffic; after a refused header that announces
    /// a body, the skipped body is reported as a header (its `Step` is `Partial`).
    pub async fn next_frame(&mut self) -> Result<Option<(FrameKind, Bytes, Step)>, ReadError> {
        let Some(frame) = self.frames.read_frame(self.reader.frame_limit()).await? else {
            return Ok(None);
        };
        let kind = if self.body_next { FrameKind::Body } else { FrameKind::Header };
        let step = match self.reader.push_frame(frame.clone()) {
            Ok(Some(envelope)) => Step::Message(envelope),
            Ok(None) => Step::Partial,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => Step::Malformed(e.to_string()),
        };
        self.body_next = kind == FrameKind::Header && matches!(step, Step::Partial);
        Ok(Some((kind, frame, step)))
    }

    /// The next message or refusal; `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            match self.next_frame().await? {
                None => return Ok(None),
                Some((_, _, Step::Partial)) => {}
                Some((_, _, Step::Message(envelope))) => return Ok(Some(Incoming::Message(envelope))),
                Some((_, _, Step::Malformed(reason))) => return Ok(Some(Incoming::Malformed(reason))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torronto_core::wire::HEADER_LIMIT;
    use torronto_core::{Control, PeerAddr, PeerMessage};

    #[tokio::test]
    async fn tcp_frames_decode_and_refuse_long_prefixes() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut out = TcpFrameWriter::new(client);
        let env =
            Envelope { from: Some(PeerAddr::new("h", 1)), token: None, message: Control::Query { file: None }.into() };
        write_encoded(&mut out, &env.encode()).await.unwrap();
        out.write_frame(FrameKind::Header, Bytes::from(vec![b' '; HEADER_LIMIT + 1])).await.unwrap();
        out.flush().await.unwrap();
        let mut decoder = Decoder::new(TcpFrameReader::new(server));
        match decoder.next().await.unwrap() {
            Some(Incoming::Message(got)) => assert_eq!(got, env),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decoder.next().await, Err(ReadError::Wire(WireError::FrameTooLong { .. }))));
    }

    #[tokio::test]
    async fn small_and_large_frames_arrive_whole_through_short_writes() {
        // A tiny pipe makes every vectored write partial, splitting slices anywhere.
        let (client, server) = tokio::io::duplex(1000);
        let sizes = [0, 1, 17, COPY_BELOW - 1, COPY_BELOW, 65536, 3, WRITE_AT + 5, 65536, 2];
        let frames: Vec<Bytes> =
            sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect()).collect();
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            let mut out = TcpFrameWriter::new(client);
            for frame in sent {
                out.write_frame(FrameKind::Body, frame).await.unwrap();
            }
            out.close().await.unwrap();
        });
        let mut input = TcpFrameReader::new(server);
        for want in &frames {
            assert_eq!(input.read_frame(1 << 20).await.unwrap().as_ref(), Some(want));
        }
        assert!(input.read_frame(1 << 20).await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn file_frames_go_out_between_queued_frames_and_a_short_file_is_an_error() {
        use std::io::Write;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Larger than the socket buffers, so sendfile has to wait for the reader.
        let data: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let (_, write) = client.into_split();
        let len = data.len();
        let writer = tokio::spawn(async move {
            let mut out = TcpFrameWriter::new(write);
            out.write_frame(FrameKind::Header, Bytes::from_static(b"first")).await.unwrap();
            out.write_file_frame(&file, 1000, 65536).await.unwrap();
            out.write_frame(FrameKind::Header, Bytes::from_static(b"second")).await.unwrap();
            out.write_file_frame(&file, 0, len).await.unwrap();
            out.write_frame(FrameKind::Header, Bytes::from_static(b"third")).await.unwrap();
            out.flush().await.unwrap();
            let err = out.write_file_frame(&file, len as u64 - 10, 65536).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        });
        let mut input = TcpFrameReader::new(server);
        let want: [&[u8]; 5] = [b"first", &data[1000..1000 + 65536], b"second", &data, b"third"];
        for frame in want {
            assert_eq!(input.read_frame(8 << 20).await.unwrap().unwrap(), frame);
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn frame_kinds_follow_the_message_structure() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut out = TcpFrameWriter::new(client);
        let add = Envelope {
            from: Some(PeerAddr::new("h", 1)),
            token: None,
            message: PeerMessage::Add { files: vec![] }.into(),
        };
        write_encoded(&mut out, &add.encode()).await.unwrap();
        out.write_frame(FrameKind::Header, Bytes::from_static(b"not json")).await.unwrap();
        out.close().await.unwrap();
        let mut decoder = Decoder::new(TcpFrameReader::new(server));
        let (kind, _, step) = decoder.next_frame().await.unwrap().unwrap();
        assert_eq!(kind, FrameKind::Header);
        assert!(matches!(step, Step::Partial));
        let (kind, _, step) = decoder.next_frame().await.unwrap().unwrap();
        assert_eq!(kind, FrameKind::Body);
        assert!(matches!(step, Step::Message(_)));
        let (kind, _, step) = decoder.next_frame().await.unwrap().unwrap();
        assert_eq!(kind, FrameKind::Header);
        assert!(matches!(step, Step::Malformed(_)));
        assert!(decoder.next_frame().await.unwrap().is_none());
    }
}
