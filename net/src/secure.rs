//! Private networks over TCP: core's sans-IO [`Handshake`] run on a byte stream, then the
//! open protocol's frames carried inside the [`SecureChannel`]'s records.
//!
//! The reader and the writer run as separate tasks, so each takes one half of the split
//! channel. The writer puts frames straight into records at the end of its output and
//! seals each record where it lies ([`SealBatch`]); a chunk served from a file is read
//! into its place there, so a served chunk is copied once (file to record) before the
//! kernel takes it. The reader opens records where they arrived, in its one read buffer,
//! and splits frames off the plaintext with core's `FrameDecoder`, under the same limits
//! as plaintext TCP.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use torronto_core::secure::{AuthenticatedPeer, Opener, Sealer, MAX_TRANSPORT_PLAINTEXT, RECORD_PREFIX_LEN};
use torronto_core::wire::{frame_prefix, FrameDecoder};
use torronto_core::{Handshake, SecureChannel, SecureError};

use crate::frames::{FrameKind, FrameRead, FrameWrite, ReadError, SpareBuffers, BODY_TIMEOUT};

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
///
/// One buffer holds it all: the plaintext opened so far (`..plain`), spent prefixes and
/// tags, then records as they arrive (`sealed..`). Records are opened where they arrived,
/// each moved down behind the plaintext before it as it is decrypted, and frames are split
/// off the plaintext without a copy. A full buffer is read into again once its frames are
/// gone ([`SpareBuffers`]).
#[derive(Debug)]
pub struct SecureFrameReader<R> {
    stream: R,
    opener: Opener,
    buf: BytesMut,
    spare: SpareBuffers,
    /// End of the opened plaintext in `buf`.
    plain: usize,
    /// Start of the records not yet opened in `buf`.
    sealed: usize,
}

/// Bytes asked of the kernel per read.
const READ_BUFFER: usize = 256 * 1024;

impl<R: AsyncRead + Unpin + Send> SecureFrameReader<R> {
    /// `leftover`: what came behind the handshake.
    pub fn new(stream: R, opener: Opener, leftover: BytesMut) -> Result<Self, ReadError> {
        let mut reader = Self { stream, opener, buf: leftover, spare: SpareBuffers::default(), plain: 0, sealed: 0 };
        reader.open()?;
        Ok(reader)
    }

    fn open(&mut self) -> Result<(), ReadError> {
        self.opener.open_in_place(&mut self.buf, &mut self.plain, &mut self.sealed).map_err(secure_read_error)
    }

    /// The next whole frame in the opened plaintext, if there is one.
    fn decode(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        if self.plain == 0 {
            // Only spent prefixes and tags (of empty records) before the records to come.
            self.buf.advance(self.sealed);
            self.sealed = 0;
            return Ok(None);
        }
        let rest = self.buf.split_off(self.plain);
        let decoded = FrameDecoder::decode(&mut self.buf, limit);
        let left = self.buf.len();
        if left == 0 {
            // All plaintext taken: the spent bytes go too.
            self.buf = rest;
            self.buf.advance(self.sealed - self.plain);
            self.sealed = 0;
        } else {
            self.buf.unsplit(rest);
            self.sealed -= self.plain - left;
        }
        self.plain = left;
        Ok(decoded?)
    }
}

impl<R: AsyncRead + Unpin + Send> FrameRead for SecureFrameReader<R> {
    async fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        let mut deadline = None;
        loop {
            if let Some(frame) = self.decode(limit)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
                // Offsets count from the buffer's start, which moves with what it holds.
                self.spare.renew(&mut self.buf, READ_BUFFER);
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
                return match mid_frame {
                    false => Ok(None),
                    true => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                };
            }
            self.open()?;
        }
    }
}

/// Frames sealed where they lie: what the secure writers share (TCP here, WebSocket in
/// `torronto-ws-bridge`).
///
/// Each frame is put (once) into the record being filled at the end of the output, and a
/// record is sealed in place once it holds [`RECORD_AT`] bytes or the batch goes out. A
/// frame that does not fit what is left of the open record starts a new one, so a 64 KiB
/// chunk's Upload (header and body) travels in one record, its body read straight into
/// place from its file ([`SealBatch::push_file`]); only frames over
/// [`MAX_TRANSPORT_PLAINTEXT`] are split across records.
#[derive(Debug)]
pub struct SealBatch {
    sealer: Sealer,
    /// Sealed records, then the record being filled: room for its prefix and its plaintext.
    out: BytesMut,
    /// Where the record being filled starts in `out`.
    open: Option<usize>,
}

/// Sealed bytes gathered at which a writer sends rather than gather more.
const WRITE_AT: usize = 256 * 1024;
/// Plaintext at which the record being filled is sealed.
const RECORD_AT: usize = 64 * 1024;

impl SealBatch {
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer, out: BytesMut::new(), open: None }
    }

    /// Adds a frame; true once so much has gathered that it should be sent now.
    #[must_use = "a full batch is to be sent"]
    pub fn push(&mut self, frame: &[u8]) -> io::Result<bool> {
        self.make_room(RECORD_PREFIX_LEN + frame.len())?;
        let mut rest: &[u8] = &frame_prefix(frame.len());
        let mut body = frame;
        loop {
            let room = MAX_TRANSPORT_PLAINTEXT - self.open_len();
            let n = room.min(rest.len());
            self.out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if rest.is_empty() {
                if body.is_empty() {
                    break;
                }
                rest = std::mem::take(&mut body);
            } else {
                // This record is full: on into the next.
                self.seal_open()?;
                self.start_record();
            }
        }
        self.after_frame()
    }

    /// Adds a frame of `len` bytes of `file` from `offset`, read straight into its place in
    /// the record (at most [`MAX_TRANSPORT_PLAINTEXT`] - 4 bytes). On an error the batch
    /// is unusable: close the connection.
    #[must_use = "a full batch is to be sent"]
    pub fn push_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<bool> {
        if RECORD_PREFIX_LEN + len > MAX_TRANSPORT_PLAINTEXT {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a file frame larger than a record"));
        }
        self.make_room(RECORD_PREFIX_LEN + len)?;
        self.out.extend_from_slice(&frame_prefix(len));
        // Zeroed first (no unsafe code here): cheap next to the read and the cipher.
        let at = self.out.len();
        self.out.resize(at + len, 0);
        file.read_exact_at(&mut self.out[at..], offset)?;
        self.after_frame()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Stream form: seals the record being filled and hands over everything sealed, as
    /// length-prefixed records (empty if nothing gathered).
    pub fn seal(&mut self) -> io::Result<BytesMut> {
        self.seal_open()?;
        Ok(self.out.split())
    }

    /// Message form: the same records without their prefixes, one per message; no copy.
    pub fn seal_records(&mut self) -> io::Result<Vec<Bytes>> {
        let mut sealed = self.seal()?.freeze();
        let mut records = Vec::new();
        while sealed.len() >= RECORD_PREFIX_LEN {
            let len = u32::from_be_bytes(sealed[..RECORD_PREFIX_LEN].try_into().expect("4 bytes")) as usize;
            sealed.advance(RECORD_PREFIX_LEN);
            records.push(sealed.split_to(len));
        }
        Ok(records)
    }

    /// Plaintext in the record being filled.
    fn open_len(&self) -> usize {
        self.open.map_or(0, |start| self.out.len() - start - RECORD_PREFIX_LEN)
    }

    fn start_record(&mut self) {
        self.open = Some(self.out.len());
        self.out.extend_from_slice(&[0; RECORD_PREFIX_LEN]);
    }

    /// Makes sure a record is being filled, a new one if `len` more bytes do not fit the
    /// one that is (and it holds something).
    fn make_room(&mut self, len: usize) -> io::Result<()> {
        if self.open.is_some() && self.open_len() > 0 && self.open_len() + len > MAX_TRANSPORT_PLAINTEXT {
            self.seal_open()?;
        }
        if self.open.is_none() {
            self.start_record();
        }
        Ok(())
    }

    fn after_frame(&mut self) -> io::Result<bool> {
        if self.open_len() >= RECORD_AT {
            self.seal_open()?;
        }
        Ok(self.out.len() >= WRITE_AT)
    }

    fn seal_open(&mut self) -> io::Result<()> {
        match self.open.take() {
            Some(start) => self.sealer.seal_in_place(&mut self.out, start).map_err(secure_write_error),
            None => Ok(()),
        }
    }
}

/// Writes frames into a secure channel's records, sealing once per batch.
#[derive(Debug)]
pub struct SecureFrameWriter<W> {
    stream: W,
    batch: SealBatch,
}

impl<W: AsyncWrite + Unpin + Send> SecureFrameWriter<W> {
    pub fn new(stream: W, sealer: Sealer) -> Self {
        Self { stream, batch: SealBatch::new(sealer) }
    }

    /// The stream the records go to.
    pub fn get_ref(&self) -> &W {
        &self.stream
    }

    /// Sends `len` bytes of `file` from `offset` as the next frame: read from the file
    /// into its place in a record and sealed there. An error leaves the stream unusable.
    pub async fn write_file_frame(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        if self.batch.push_file(file, offset, len)? {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let sealed = self.batch.seal()?;
        self.stream.write_all(&sealed).await
    }
}

impl<W: AsyncWrite + Unpin + Send> FrameWrite for SecureFrameWriter<W> {
    async fn write_frame(&mut self, _kind: FrameKind, frame: Bytes) -> io::Result<()> {
        if self.batch.push(&frame)? {
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

    async fn secured_pair() -> (Secured, Secured) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let dialer = Handshake::initiator(&config(1, 9, Hello::default()), [3; 32]).unwrap();
        let acceptor = Handshake::responder(&config(2, 9, Hello::default()), [4; 32]).unwrap();
        let limit = Duration::from_secs(5);
        let (dialled, accepted) = tokio::join!(
            handshake(&mut a, dialer, BytesMut::new(), limit),
            handshake(&mut b, acceptor, BytesMut::new(), limit)
        );
        (dialled.unwrap(), accepted.unwrap())
    }

    #[tokio::test]
    async fn chunks_read_from_files_into_records_arrive_whole_one_record_each() {
        let (dialled, accepted) = secured_pair().await;
        let (sealer, _) = dialled.channel.split();
        let (_, opener) = accepted.channel.split();
        let contents: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &contents).unwrap();
        let mut batch = SealBatch::new(sealer);
        // Header and body of three chunks, and a large frame split over records.
        let header = Bytes::from_static(b"{\"Upload\":1}");
        for at in [0, 65_536, 131_072] {
            let _ = batch.push(&header).unwrap();
            let _ = batch.push_file(&file, at, 65_536).unwrap();
        }
        let big = Bytes::from(contents[..MAX_TRANSPORT_PLAINTEXT + 10].to_vec());
        let _ = batch.push(&big).unwrap();
        let wire = batch.seal().unwrap();
        // Records: one per chunk (its header with it), then the large frame in two.
        let mut records = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            records.push(len);
            rest = &rest[4 + len..];
        }
        let chunk_record = 2 * RECORD_PREFIX_LEN + header.len() + 65_536 + 16;
        assert_eq!(&records[..3], &[chunk_record; 3]);
        assert_eq!(records.len(), 5, "{records:?}");
        // A file shorter than the frame is an error.
        assert!(batch.push_file(&file, 290_000, 65_536).is_err());
        let mut input = SecureFrameReader::new(&wire[..], opener, BytesMut::new()).unwrap();
        for at in [0, 65_536, 131_072] {
            assert_eq!(input.read_frame(1 << 20).await.unwrap(), Some(header.clone()));
            assert_eq!(input.read_frame(1 << 20).await.unwrap().as_deref(), Some(&contents[at..at + 65_536]));
        }
        assert_eq!(input.read_frame(1 << 20).await.unwrap(), Some(big));
        assert!(input.read_frame(1 << 20).await.unwrap().is_none());
    }

    /// Chunks read through full buffers, the last few held as storage holds those it
    /// has not written yet: buffers are read into again rather than allocated anew, and
    /// frames still held are never written over (records are opened in place there).
    #[tokio::test]
    async fn buffers_are_reused_once_their_frames_are_dropped_and_never_before() {
        let frames: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 65536 + usize::from(i) * 7])).collect();
        for lag in [3, frames.len()] {
            let (dialled, accepted) = secured_pair().await;
            let (sealer, _) = dialled.channel.split();
            let (_, opener) = accepted.channel.split();
            let mut batch = SealBatch::new(sealer);
            for frame in &frames {
                let _ = batch.push(frame).unwrap();
            }
            let wire = batch.seal().unwrap();
            let mut input = SecureFrameReader::new(&wire[..], opener, BytesMut::new()).unwrap();
            crate::frames::read_holding(&mut input, &frames, lag).await;
            let most = if lag < frames.len() { 6 } else { frames.len() };
            assert!(
                input.spare.allocated <= most,
                "{} buffers allocated with {lag} frames held",
                input.spare.allocated
            );
        }
    }

    #[tokio::test]
    async fn message_form_records_open_one_per_message() {
        let (dialled, accepted) = secured_pair().await;
        let (sealer, _) = dialled.channel.split();
        let (_, mut opener) = accepted.channel.split();
        let mut batch = SealBatch::new(sealer);
        let frames: Vec<Bytes> = [3, 70_000, 0, 200_000].iter().map(|&n| vec![n as u8; n].into()).collect();
        for frame in &frames {
            let _ = batch.push(frame).unwrap();
        }
        let mut plain = BytesMut::new();
        for record in batch.seal_records().unwrap() {
            opener.open_record(&record, &mut plain).unwrap();
        }
        for frame in &frames {
            assert_eq!(FrameDecoder::decode(&mut plain, 1 << 20).unwrap().as_ref(), Some(frame));
        }
        assert!(plain.is_empty());
        assert!(batch.is_empty());
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
