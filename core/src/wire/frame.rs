//! Frames: the length-prefixed units a TCP connection carries, their size limits,
//! and the errors that refuse bytes from the network.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the length prefix of a TCP frame.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Largest header frame.
pub const HEADER_LIMIT: usize = 64 * 1024;
/// Largest file-list (Add, Files) or manifest body.
pub const LIST_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Why bytes from the network were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The connection must be dropped: the stream can no longer be trusted.
    #[error("frame of {len} bytes is over the limit of {limit}")]
    FrameTooLong { len: u64, limit: usize },
    /// A connection that may carry control requests only (a plaintext connection to a
    /// private node) announced a body: it is closed before the body is read.
    #[error("only control requests, which have no body, are accepted on this connection")]
    ControlOnly,
    /// Answer ErrBadRequest; the stream stays usable.
    #[error("{0}")]
    BadRequest(String),
}

impl WireError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, WireError::FrameTooLong { .. } | WireError::ControlOnly)
    }
}

pub(super) fn bad(msg: impl Into<String>) -> WireError {
    WireError::BadRequest(msg.into())
}

/// Length prefix of a TCP frame.
pub fn frame_prefix(len: usize) -> [u8; 4] {
    // Every frame we send is within LIST_BODY_LIMIT, far below u32::MAX.
    (len as u32).to_be_bytes()
}

/// A message encoded for sending: the header frame and the optional body frame.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub header: Bytes,
    pub body: Option<Bytes>,
}

impl Encoded {
    /// The frames, as WebSocket messages carry them: (header, body).
    pub fn frames(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.header).chain(self.body.as_ref())
    }

    /// Appends the length-prefixed TCP form to `out`.
    pub fn write_tcp(&self, out: &mut BytesMut) {
        for frame in self.frames() {
            out.extend_from_slice(&frame_prefix(frame.len()));
            out.extend_from_slice(frame);
        }
    }

    /// Bytes on the wire in TCP form.
    pub fn tcp_len(&self) -> usize {
        self.frames().map(|f| FRAME_PREFIX_LEN + f.len()).sum()
    }
}

/// Splits a TCP byte stream into frames, refusing any over `limit` before buffering it.
#[derive(Debug, Default)]
pub struct FrameDecoder;

impl FrameDecoder {
    /// Takes one whole frame off the front of `buf` if there is one.
    pub fn decode(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, WireError> {
        if buf.len() < FRAME_PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..FRAME_PREFIX_LEN].try_into().expect("4 bytes")) as usize;
        if len > limit {
            return Err(WireError::FrameTooLong { len: len as u64, limit });
        }
        if buf.len() < FRAME_PREFIX_LEN + len {
            // Making room for the rest is the reader's: it knows which buffers it can
            // reuse (a reserve here allocated anew while earlier frames were held).
            return Ok(None);
        }
        buf.advance(FRAME_PREFIX_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }
}
