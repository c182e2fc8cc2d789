//! A connection as a stream of frames, whatever carries it: the traits every transport
//! implements (TCP here in [`crate::tcp`], WebSocket in `torronto-ws-bridge`) and what
//! goes wrong reading one.
//!
//! TCP frames carry a 4-byte big-endian length; WebSocket frames are whole messages.
//! Both are read with a limit that [`crate::Decoder`] takes from core's `MessageReader`
//! for the next frame, so an over-long frame is refused before it is allocated (TCP) or
//! as soon as it is complete (WebSocket, where tungstenite already caps every message
//! at the largest body a frame may have).

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
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
