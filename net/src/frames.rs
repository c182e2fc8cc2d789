//! A connection as a stream of frames, whatever carries it: the traits every transport
//! implements (TCP here in [`crate::tcp`], WebSocket in `torronto-ws-bridge`) and what
//! goes wrong reading one.
//!
//! TCP frames carry a 4-byte big-endian length; WebSocket frames are whole messages.
//! Both are read with a limit that [`crate::Decoder`] takes from core's `MessageReader`
//! for the next frame, so an over-long frame is refused before it is allocated (TCP) or
//! as soon as it is complete (WebSocket, where tungstenite already caps every message
//! at the largest body a frame may have).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use torronto_core::wire::{Encoded, WireError};

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
    /// The transport under the frames failed (a WebSocket protocol error); `what` names
    /// it, so this crate needs no WebSocket library to carry the error.
    #[error("{what}: {source}")]
    Transport { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

/// The buffers a reader has filled, kept to be read into again once every frame split
/// off them has been dropped (chunk bodies written to disk). Frames are split off a read
/// buffer without a copy, so it stays shared until the last goes; making room by
/// `reserve` then allocated a new buffer each time, whose pages the kernel faulted in and
/// zeroed anew (`perf`: 4-6 % of a fetching node's CPU on loopback), where a buffer
/// read into before is warm.
#[derive(Debug, Default)]
pub(crate) struct SpareBuffers {
    /// Oldest first; their frames may still be held.
    retired: VecDeque<BytesMut>,
    /// Buffers allocated so far.
    pub(crate) allocated: usize,
}

/// Buffers a busy connection keeps to read into again: room for the chunks on their way
/// to storage.
const SPARE_BUFFERS: usize = 4;

impl SpareBuffers {
    /// Moves what `buf` holds into a buffer with room for `room` more bytes (a retired
    /// one whose frames have all gone, or a new one) and retires `buf`'s.
    pub(crate) fn renew(&mut self, buf: &mut BytesMut, room: usize) {
        let size = buf.len() + room;
        let reusable = self.retired.iter_mut().position(|old| old.try_reclaim(size));
        let mut next = match reusable.and_then(|i| self.retired.remove(i)) {
            Some(old) => old,
            None => {
                self.allocated += 1;
                BytesMut::with_capacity(size)
            }
        };
        next.extend_from_slice(buf);
        let mut full = std::mem::replace(buf, next);
        full.clear();
        self.retired.push_back(full);
        if self.retired.len() > SPARE_BUFFERS {
            self.retired.pop_front();
        }
    }

    /// Lets the retired buffers go (a connection gone quiet keeps little).
    pub(crate) fn clear(&mut self) {
        self.retired.clear();
    }
}

/// Reads `frames` from `input`, checking each, holding the last `lag` as storage holds
/// the chunks it has not written yet, and checking every frame held is intact when it
/// is let go (a reader reusing its buffers must never write over one).
#[cfg(test)]
pub(crate) async fn read_holding(input: &mut impl FrameRead, frames: &[Bytes], lag: usize) {
    let mut held = VecDeque::new();
    for (i, want) in frames.iter().enumerate() {
        let got = input.read_frame(1 << 20).await.unwrap().unwrap();
        assert_eq!(&got, want);
        held.push_back((i, got));
        if held.len() > lag {
            let (i, frame) = held.pop_front().unwrap();
            assert_eq!(frame, frames[i], "frame {i} intact until dropped");
        }
    }
    for (i, frame) in held {
        assert_eq!(frame, frames[i], "frame {i} intact until dropped");
    }
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
