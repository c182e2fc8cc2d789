//! Private networks over TCP: core's sans-IO [`Handshake`] run on a byte stream, then the
//! open protocol's frames carried inside the [`SecureChannel`]'s records.
//!
//! The reader and the writer run as separate tasks, so each takes one half of the split
//! channel. The writer gathers frames in a plaintext buffer and seals it once per batch
//! (a record holds up to 64 KiB, so a chunk's Upload and the small frames around it share
//! records); the reader decrypts what arrives into a plaintext buffer and splits frames
//! off it with core's `FrameDecoder`, under the same limits as plaintext TCP.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use torronto_core::secure::{AuthenticatedPeer, Opener, Sealer};
use torronto_core::wire::{frame_prefix, FrameDecoder};
use torronto_core::{Handshake, SecureChannel, SecureError};

use crate::frames::{FrameKind, FrameRead, FrameWrite, ReadError, BODY_TIMEOUT};

/// A finished handshake: the channel, whom it reaches, and the bytes that came behind the
/// handshake (the channel's first records).
#[derive(Debug)]
pub struct Secured {
    pub channel: SecureChannel,
    pub peer: AuthenticatedPeer,
    pub leftover: BytesMut,
}

/// Why a handshake did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Secure(#[from] SecureError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error("the handshake did not finish within {0:?}")]
    Timeout(Duration),
}

/// Runs `handshake` on `stream` until both sides are proven, within `limit`. `received`
/// holds bytes already read from the stream (a first look at what the peer speaks).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    handshake: Handshake,
    received: BytesMut,
    limit: Duration,
) -> Result<Secured, HandshakeError> {
    tokio::time::timeout(limit, run_handshake(stream, handshake, received))
        .await
        .map_err(|_| HandshakeError::Timeout(limit))?
}

async fn run_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut handshake: Handshake,
    mut buf: BytesMut,
) -> Result<Secured, HandshakeError> {
    let mut out = BytesMut::new();
    loop {
        let used = handshake.handle_input(&buf)?;
        buf.advance(used);
        handshake.write_output(&mut out);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if handshake.is_finished() {
            break;
        }
        // Handshake records are small: a quiet buffer is plenty.
        buf.reserve(4096);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
    let (channel, peer) = handshake.finish()?;
    Ok(Secured { channel, peer, leftover: buf })
}

fn secure_read_error(e: SecureError) -> ReadError {
    ReadError::Transport { what: "secure channel", source: Box::new(e) }
}

fn secure_write_error(e: SecureError) -> io::Error {
    io::Error::other(e)
}

/// Reads frames from inside a secure channel's records.
#[derive(Debug)]
pub struct SecureFrameReader<R> {
    stream: R,
    opener: Opener,
    /// Records as they arrive, at most one partial one between reads.
    sealed: BytesMut,
    /// What they decrypted to: the open protocol's byte stream.
    plain: BytesMut,
}

/// Bytes asked of the kernel per read.
const READ_BUFFER: usize = 256 * 1024;

impl<R: AsyncRead + Unpin + Send> SecureFrameReader<R> {
    /// `leftover`: what came behind the handshake.
    pub fn new(stream: R, mut opener: Opener, mut leftover: BytesMut) -> Result<Self, ReadError> {
        let mut plain = BytesMut::new();
        opener.open_buf(&mut leftover, &mut plain).map_err(secure_read_error)?;
        Ok(Self { stream, opener, sealed: leftover, plain })
    }
}

impl<R: AsyncRead + Unpin + Send> FrameRead for SecureFrameReader<R> {
    async fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        let mut deadline = None;
        loop {
            if let Some(frame) = FrameDecoder::decode(&mut self.plain, limit)? {
                return Ok(Some(frame));
            }
            if self.sealed.capacity() - self.sealed.len() < READ_BUFFER / 4 {
                self.sealed.reserve(READ_BUFFER);
            }
            let mid_frame = !self.plain.is_empty() || !self.sealed.is_empty();
            let read = self.stream.read_buf(&mut self.sealed);
            let n = if !mid_frame {
                read.await?
            } else {
                let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + BODY_TIMEOUT);
                tokio::time::timeout_at(at, read).await.map_err(|_| ReadError::Timeout)??
            };
            if n == 0 {
                return match mid_frame {
                    false => Ok(None),
                    true => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                };
            }
            // One allocation per read rather than per record.
            self.plain.reserve(self.sealed.len());
            self.opener.open_buf(&mut self.sealed, &mut self.plain).map_err(secure_read_error)?;
        }
    }
}

/// Frames gathered for sealing in one go: what the secure writers share (TCP here,
/// WebSocket in `torronto-ws-bridge`).
#[derive(Debug)]
pub struct SealBatch {
    sealer: Sealer,
    /// Frames waiting to be sealed, with their length prefixes.
    plain: BytesMut,
}

/// Plaintext gathered at which a writer seals and sends rather than gather more.
const WRITE_AT: usize = 256 * 1024;

impl SealBatch {
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer, plain: BytesMut::new() }
    }

    /// Adds a frame; true once so much has gathered that it should be sealed and sent now.
    #[must_use = "a full batch is to be sealed and sent"]
    pub fn push(&mut self, frame: &[u8]) -> bool {
        self.plain.extend_from_slice(&frame_prefix(frame.len()));
        self.plain.extend_from_slice(frame);
        self.plain.len() >= WRITE_AT
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty()
    }

    /// Stream form: seals what gathered into length-prefixed records appended to `out`.
    pub fn seal(&mut self, out: &mut BytesMut) -> io::Result<()> {
        self.sealer.seal(&self.plain, out).map_err(secure_write_error)?;
        self.plain.clear();
        Ok(())
    }

    /// Message form: seals what gathered into records, one per message.
    pub fn seal_records(&mut self) -> io::Result<Vec<Bytes>> {
        let records = self.sealer.seal_records(&self.plain).map_err(secure_write_error)?;
        self.plain.clear();
        Ok(records)
    }
}

/// Writes frames into a secure channel's records, sealing once per batch.
#[derive(Debug)]
pub struct SecureFrameWriter<W> {
    stream: W,
    batch: SealBatch,
    sealed: BytesMut,
}

impl<W: AsyncWrite + Unpin + Send> SecureFrameWriter<W> {
    pub fn new(stream: W, sealer: Sealer) -> Self {
        Self { stream, batch: SealBatch::new(sealer), sealed: BytesMut::new() }
    }

    async fn write_out(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch.seal(&mut self.sealed)?;
        self.stream.write_all(&self.sealed).await?;
        self.sealed.clear();
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin + Send> FrameWrite for SecureFrameWriter<W> {
    async fn write_frame(&mut self, _kind: FrameKind, frame: Bytes) -> io::Result<()> {
        if self.batch.push(&frame) {
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

/// What a connection's first bytes say it speaks, in a node that accepts both secure peers
/// and plaintext control clients on one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// A Noise first record: a length, then a suite byte (1 or 2).
    Secure,
    /// Anything else: an open-protocol header frame is a length, then `{` or whitespace.
    Plain,
}

/// Bytes [`FirstBytes::of`] needs.
pub const SNIFF_LEN: usize = 5;

impl FirstBytes {
    pub fn of(first: &[u8; SNIFF_LEN]) -> Self {
        match first[4] {
            1 | 2 => FirstBytes::Secure,
            _ => FirstBytes::Plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torronto_core::secure::Hello;
    use torronto_core::{Identity, NetworkSecret, SecureConfig};

    fn config(seed: u8, secret: u8, hello: Hello) -> SecureConfig {
        SecureConfig::new(
            Identity::from_random_bytes([seed; 32]),
            NetworkSecret::from_random_bytes([secret; 32]),
            hello,
        )
    }

    #[tokio::test]
    async fn frames_cross_a_secure_stream_byte_identical() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let dialer = Handshake::initiator(&config(1, 9, Hello::listening_at("a:1")), [3; 32]).unwrap();
        let acceptor = Handshake::responder(&config(2, 9, Hello::listening_at("b:2")), [4; 32]).unwrap();
        let limit = Duration::from_secs(5);
        let (dialled, accepted) = tokio::join!(
            handshake(&mut a, dialer, BytesMut::new(), limit),
            handshake(&mut b, acceptor, BytesMut::new(), limit)
        );
        let (dialled, accepted) = (dialled.unwrap(), accepted.unwrap());
        assert_eq!(dialled.peer.hello, Hello::listening_at("b:2"));
        assert_eq!(accepted.peer.hello, Hello::listening_at("a:1"));
        let (sealer, _) = dialled.channel.split();
        let (_, opener) = accepted.channel.split();
        let frames: Vec<Bytes> =
            [0, 1, 5000, 65536, 300_000, 7].iter().map(|&n| (0..n).map(|i| (i % 251) as u8).collect()).collect();
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            let mut out = SecureFrameWriter::new(a, sealer);
            for frame in sent {
                out.write_frame(FrameKind::Body, frame).await.unwrap();
            }
            out.close().await.unwrap();
        });
        let mut input = SecureFrameReader::new(b, opener, accepted.leftover).unwrap();
        for want in &frames {
            assert_eq!(input.read_frame(1 << 20).await.unwrap().as_ref(), Some(want));
        }
        assert!(input.read_frame(1 << 20).await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn another_secret_fails_the_handshake() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let dialer = Handshake::initiator(&config(1, 9, Hello::default()), [3; 32]).unwrap();
        let acceptor = Handshake::responder(&config(2, 8, Hello::default()), [4; 32]).unwrap();
        let limit = Duration::from_secs(5);
        let accepted = async {
            let result = handshake(&mut b, acceptor, BytesMut::new(), limit).await;
            drop(b);
            result
        };
        let (dialled, accepted) = tokio::join!(handshake(&mut a, dialer, BytesMut::new(), limit), accepted);
        assert!(matches!(accepted, Err(HandshakeError::Secure(_))), "{accepted:?}");
        assert!(dialled.is_err());
    }

    #[test]
    fn first_bytes_tell_a_noise_record_from_a_json_header() {
        assert_eq!(FirstBytes::of(&[0, 0, 0, 49, 1]), FirstBytes::Secure);
        assert_eq!(FirstBytes::of(&[0, 0, 0, 49, 2]), FirstBytes::Secure);
        assert_eq!(FirstBytes::of(&[0, 0, 0, 30, b'{']), FirstBytes::Plain);
        assert_eq!(FirstBytes::of(&[0, 0, 0, 30, b' ']), FirstBytes::Plain);
    }
}
