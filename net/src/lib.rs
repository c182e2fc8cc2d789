//! torronto-net: protocol frames over byte streams, shared by the node, the relay, the
//! control client and the tests' raw client. Only framing lives here: headers and
//! bodies are parsed by `torronto_core::wire`, and this crate runs them through it.
//!
//! Layout:
//! - [`frames`]: the transport-neutral frame stream: the [`FrameRead`] and
//!   [`FrameWrite`] traits (implemented for TCP here and for WebSocket in
//!   `torronto-ws-bridge`), [`FrameKind`], [`ReadError`] and [`write_encoded`]; and the
//!   spare read buffers both TCP readers fill again once their frames are dropped.
//! - [`tcp`]: the TCP implementation (4-byte big-endian length prefix):
//!   [`TcpFrameReader`] splits frames off one buffer without copying, with a body
//!   timeout, finishing the frame begun before it moves to the next buffer;
//!   [`TcpFrameWriter`] gathers small frames and sends large ones as they are, in
//!   vectored writes.
//! - [`sendfile`]: `TcpFrameWriter::write_file_frame`, a frame straight from a file to
//!   the socket, for serving chunks, its header held back (`MSG_MORE`) to go with it.
//! - [`decoder`]: [`Decoder`], frames into messages through core's `MessageReader`.
//! - [`blocking`]: the same framing over `std::io`, for synchronous clients.
//! - [`socket`]: [`tune`], the socket options of the node's connections, and
//!   [`accept`], a listener's next connection whatever errors come first.
//! - [`secure`]: private networks: core's handshake run on a stream ([`handshake`]), and
//!   [`SecureFrameReader`]/[`SecureFrameWriter`], frames inside the encrypted channel;
//!   [`SealBatch`], frames (and chunk bodies read from files) sealed where they lie in
//!   records, shared with the WebSocket form.

pub mod blocking;
pub mod decoder;
pub mod frames;
pub mod secure;
pub mod sendfile;
pub mod socket;
pub mod tcp;

pub use decoder::{monotonic_us, wall_clock_us, Decoder, Incoming, Step};
pub use frames::{write_encoded, FrameKind, FrameRead, FrameWrite, ReadError, BODY_TIMEOUT};
pub use secure::{
    handshake, FirstBytes, HandshakeError, SealBatch, SecureFrameReader, SecureFrameWriter, Secured, SNIFF_LEN,
};
pub use socket::{accept, limit_unsent, tune};
pub use tcp::{TcpFrameReader, TcpFrameWriter};
