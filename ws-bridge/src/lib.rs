//! torronto-ws-bridge: protocol frames over WebSockets, the same frame stream as TCP.
//!
//! Layout:
//! - [`frames`]: the transport-neutral frame stream: [`frames::FrameRead`] and
//!   [`frames::FrameWrite`], their TCP implementation (4-byte length prefix), and
//!   [`frames::Decoder`], which runs frames through core's `MessageReader`. The node's
//!   connections and the relay both read and write through these, whatever the transport.
//! - [`ws`]: the WebSocket implementation: the server handshake with its Origin check
//!   and size limits, and the reader/writer halves (one WebSocket message per frame:
//!   header as text, body as binary).
//! - [`origin`]: which browser origins may open a session.
//! - [`relay`]: the standalone relay (`ws-bridge` binary): browser sessions forwarded to
//!   a node's TCP port, with the control token enforced by the relay.
//!
//! Nothing here knows the protocol beyond framing: headers are parsed by
//! `torronto_core::wire` only.

pub mod frames;
pub mod origin;
pub mod relay;
pub mod ws;

pub use frames::{write_encoded, Decoder, FrameKind, FrameRead, FrameWrite, Incoming, ReadError, Step};
pub use origin::OriginPolicy;
pub use ws::{accept, split, AcceptError, WsSession};
