//! A connection as a stream of frames, whatever carries it.
//!
//! TCP frames carry a 4-byte big-endian length; WebSocket frames are whole messages
//! ([`crate::ws`]). Both are read with a limit that [`Decoder`] takes from core's
//! `MessageReader` for the next frame, so an over-long frame is refused before it is
//! allocated (TCP) or as soon as it is complete (WebSocket, where tungstenite already
//! caps every message at the largest body a frame may have).

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
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
}

/// Bytes asked of the kernel per read: a 64 KiB chunk and its header usually fit.
const READ_BUFFER: usize = 256 * 1024;

impl<R: AsyncRead + Unpin + Send> TcpFrameReader<R> {
    pub fn new(stream: R) -> Self {
        Self { stream, buf: BytesMut::with_capacity(READ_BUFFER) }
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
            if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
                self.buf.reserve(READ_BUFFER);
            }
            let mid_frame = !self.buf.is_empty();
            let read = self.stream.read_buf(&mut self.buf);
            let n = if !mid_frame {
                read.await?
            } else {
                let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + BODY_TIMEOUT);
                tokio::time::timeout_at(at, read).await.map_err(|_| ReadError::Timeout)??
            };
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
#[derive(Debug)]
pub struct TcpFrameWriter<W: AsyncWrite> {
    stream: BufWriter<W>,
}

impl<W: AsyncWrite + Unpin + Send> TcpFrameWriter<W> {
    pub fn new(stream: W) -> Self {
        Self { stream: BufWriter::with_capacity(256 * 1024, stream) }
    }
}

impl<W: AsyncWrite + Unpin + Send> FrameWrite for TcpFrameWriter<W> {
    async fn write_frame(&mut self, _kind: FrameKind, frame: Bytes) -> io::Result<()> {
        self.stream.write_all(&frame_prefix(frame.len())).await?;
        self.stream.write_all(&frame).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
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
    use torronto_core::{Message, PeerAddr};

    #[tokio::test]
    async fn tcp_frames_decode_and_refuse_long_prefixes() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut out = TcpFrameWriter::new(client);
        let env = Envelope { from: Some(PeerAddr::new("h", 1)), token: None, message: Message::Query { file: None } };
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
    async fn frame_kinds_follow_the_message_structure() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut out = TcpFrameWriter::new(client);
        let add = Envelope { from: Some(PeerAddr::new("h", 1)), token: None, message: Message::Add { files: vec![] } };
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
