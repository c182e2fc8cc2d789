//! torronto-ws-bridge: protocol frames over WebSockets, the same frame stream as TCP.
//!
//! The frame stream itself (the `FrameRead`/`FrameWrite` traits, TCP framing, the
//! message decoder) lives in `torronto-net`; this crate adds the WebSocket transport
//! and the relay.
//!
//! Layout:
//! - [`ws`]: the WebSocket implementation of `torronto-net`'s frame traits: the server
//!   handshake with its Origin check and size limits, and the reader/writer halves
//!   (one WebSocket message per frame: header as text, body as binary).
//! - [`secure`]: private networks over a session: core's handshake one record per
//!   binary message, then the open protocol's frame stream inside the channel's records
//!   ([`SecureWsReader`]/[`SecureWsWriter`]); [`opening`] tells a member's first record
//!   from a plaintext client's first frame.
//! - [`origin`]: which browser origins may open a session.
//! - [`relay`]: the standalone relay (`ws-bridge` binary): browser sessions forwarded to
//!   a node's TCP port (the node checks the token; the relay refuses insert by path).
//!
//! Nothing here knows the protocol beyond framing: headers are parsed by
//! `torronto_core::wire` only.

pub mod origin;
pub mod relay;
pub mod secure;
pub mod ws;

pub use origin::OriginPolicy;
pub use secure::{opening, split_secure, Opening, SecureWsReader, SecureWsWriter};
pub use ws::{accept, split, split_after, AcceptError, WsSession};
