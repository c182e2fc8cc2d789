//! Length-prefixed frames over a TCP stream (or any async byte stream): a reader that
//! splits frames off one large buffer without copying them, and a writer that sends
//! small frames gathered and large ones as they are, in vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use torronto_core::layout::CHUNK_SIZE;
use torronto_core::wire::{frame_prefix, FrameDecoder, FRAME_PREFIX_LEN};

use crate::frames::{FrameKind, FrameRead, FrameWrite, ReadError, SpareBuffers, BODY_TIMEOUT};

/// Reads length-prefixed frames from a TCP stream (or any byte stream).
///
/// Bytes land once in a large buffer and each frame is split off it without a copy
/// (chunk bodies go on to storage as they are), using core's decoder, which checks a
/// frame's length against the limit before buffering it. A full buffer is read into
/// again once its frames are gone ([`SpareBuffers`]).
#[derive(Debug)]
pub struct TcpFrameReader<R> {
    stream: R,
    buf: BytesMut,
    spare: SpareBuffers,
    /// The last read brought more than a quiet connection's buffer holds.
    busy: bool,
}

/// Bytes asked of the kernel per read while chunks stream in: several chunks at once.
const READ_BUFFER: usize = 256 * 1024;
/// The buffer of a quiet connection (control clients, idle peers, a flood of sockets),
/// so that a thousand of them cost a few MiB.
const QUIET_READ_BUFFER: usize = 8 * 1024;
/// Room a busy connection's buffer keeps at its end to finish the frame begun there: a
/// chunk's body (with its length prefix), or its header.
const FINISH_ROOM: usize = CHUNK_SIZE as usize + 4 * 1024;

impl<R: AsyncRead + Unpin + Send> TcpFrameReader<R> {
    pub fn new(stream: R) -> Self {
        Self::with_buffered(stream, BytesMut::new())
    }

    /// A reader for a stream whose first bytes were already read (to see what it speaks).
    pub fn with_buffered(stream: R, buf: BytesMut) -> Self {
        Self { stream, buf, spare: SpareBuffers::default(), busy: false }
    }

    /// Makes room for the next read and returns how many bytes it may bring. A busy
    /// connection's reads stop [`FINISH_ROOM`] short of the buffer's end, and that room
    /// is then read into only up to the end of the frame begun, so that the next buffer
    /// starts with a frame and nothing is copied over; the next one has room for a read
    /// of a quarter of `want` at least, and for the frame begun.
    fn make_room(&mut self, want: usize) -> usize {
        let keep = if self.busy { FINISH_ROOM } else { 0 };
        let (len, free) = (self.buf.len(), self.buf.capacity() - self.buf.len());
        let begun = match self.buf.get(..FRAME_PREFIX_LEN) {
            // Its length was checked against the limit when the decoder saw it.
            Some(prefix) => FRAME_PREFIX_LEN + u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize,
            None => 0,
        };
        let rest = begun.saturating_sub(len);
        if rest <= free {
            if free >= want / 4 + keep {
                return free - keep;
            }
            if rest > 0 {
                return rest;
            }
        }
        if !self.busy {
            self.spare.clear();
        }
        // What is copied over: at most a frame's first bytes, or a frame larger than the
        // room that was left.
        self.spare.renew(&mut self.buf, want.max(rest) + keep);
        self.buf.capacity() - self.buf.len() - keep
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
            let most = self.make_room(if self.busy { READ_BUFFER } else { QUIET_READ_BUFFER });
            let mid_frame = !self.buf.is_empty();
            let mut room = (&mut self.buf).limit(most);
            let read = self.stream.read_buf(&mut room);
            let n = if !mid_frame {
                read.await?
            } else {
                let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + BODY_TIMEOUT);
                tokio::time::timeout_at(at, read).await.map_err(|_| ReadError::Timeout)??
            };
            // A read cut short at a frame's end says nothing of how busy we are.
            if most >= QUIET_READ_BUFFER {
                self.busy = n >= QUIET_READ_BUFFER;
            }
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
/// On a TCP write half, chunk bodies can also go straight from a file
/// ([`crate::sendfile`]).
#[derive(Debug)]
pub struct TcpFrameWriter<W> {
    pub(crate) stream: W,
    pub(crate) staged: BytesMut,
    pub(crate) queue: VecDeque<Bytes>,
    queued: usize,
}

/// The front of a writer's queue, as slices for one vectored write.
pub(crate) fn front_slices(queue: &VecDeque<Bytes>) -> ([IoSlice<'_>; MAX_SLICES], usize) {
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let count = queue.len().min(MAX_SLICES);
    for (slice, bytes) in slices.iter_mut().zip(queue) {
        *slice = IoSlice::new(bytes);
    }
    (slices, count)
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

    /// The stream the frames go to.
    pub fn get_ref(&self) -> &W {
        &self.stream
    }

    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Writes everything queued and staged.
    pub(crate) async fn write_out(&mut self) -> io::Result<()> {
        self.stage_out();
        while !self.queue.is_empty() {
            let (slices, count) = front_slices(&self.queue);
            let written = self.stream.write_vectored(&slices[..count]).await?;
            self.written(written)?;
        }
        Ok(())
    }

    /// Queues what is staged, to go out next.
    pub(crate) fn stage_out(&mut self) {
        let staged = self.staged.split().freeze();
        self.push(staged);
    }

    /// Takes `written` bytes off the front of the queue.
    pub(crate) fn written(&mut self, mut written: usize) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `frames` to `stream` as body frames, then closes it.
    fn write_all(stream: tokio::io::DuplexStream, frames: Vec<Bytes>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut out = TcpFrameWriter::new(stream);
            for frame in frames {
                out.write_frame(FrameKind::Body, frame).await.unwrap();
            }
            out.close().await.unwrap();
        })
    }

    /// Chunk-sized frames read through full buffers, the last few held as storage holds
    /// those it has not written yet: buffers are read into again rather than allocated
    /// anew, and frames still held are never written over.
    #[tokio::test]
    async fn buffers_are_reused_once_their_frames_are_dropped_and_never_before() {
        let frames: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 65536 + usize::from(i) * 7])).collect();
        for lag in [3, frames.len()] {
            let (client, server) = tokio::io::duplex(8 << 20);
            let writer = write_all(client, frames.clone());
            let mut input = TcpFrameReader::new(server);
            crate::frames::read_holding(&mut input, &frames, lag).await;
            writer.await.unwrap();
            // 4 MiB of frames fill 256 KiB buffers 20 times or so; all held, each fill is
            // a buffer of its own.
            let most = if lag < frames.len() { 6 } else { frames.len() / 2 };
            assert!(
                input.spare.allocated <= most,
                "{} buffers allocated with {lag} frames held",
                input.spare.allocated
            );
        }
    }

    #[tokio::test]
    async fn small_and_large_frames_arrive_whole_through_short_writes() {
        // A tiny pipe makes every vectored write partial, splitting slices anywhere.
        let (client, server) = tokio::io::duplex(1000);
        let sizes = [0, 1, 17, COPY_BELOW - 1, COPY_BELOW, 65536, 3, WRITE_AT + 5, 65536, 2];
        let frames: Vec<Bytes> =
            sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect()).collect();
        let writer = write_all(client, frames.clone());
        let mut input = TcpFrameReader::new(server);
        for want in &frames {
            assert_eq!(input.read_frame(1 << 20).await.unwrap().as_ref(), Some(want));
        }
        assert!(input.read_frame(1 << 20).await.unwrap().is_none());
        writer.await.unwrap();
    }
}
