//! Private networks: identities, the network secret, and the encrypted connection, sans-IO.
//!
//! Layout, one idea per module:
//! - [`identity`]: `Identity`, a node's static X25519 key pair, and its key file;
//! - [`node_id`]: `NodeId`, the short checkable name of a public key, and its parse errors;
//! - [`secret`]: `NetworkSecret`, what makes a network private, and its file;
//! - `keyfile`: the one-line text format both key files share;
//! - [`config`]: `SecureConfig`, a node's part in its network, and the `Hello` it sends;
//! - `noise`: the Noise suites, their providers, and randomness taken from the driver;
//! - `x25519`: public keys from private ones, and the low-order point check;
//! - [`record`]: record framing on streams (4-byte length) and WebSockets (one per message);
//! - [`handshake`]: `Handshake`, Noise XXpsk0 driven by bytes in, bytes out;
//! - `transport`: the keys derived from the handshake and the AEAD that seals records;
//! - [`channel`]: `SecureChannel`, sealing and opening the stream after the handshake,
//!   and its `Sealer`/`Opener` halves for drivers that read and write apart;
//! - [`error`]: what goes wrong, never quoting a key.
//!
//! A driver keeps one `SecureConfig`; per connection: `Handshake::initiator` or
//! `Handshake::responder` with fresh entropy; pass bytes between the
//! socket and `handle_input`/`write_output` (WebSocket: `handle_record`/`poll_record`)
//! until `is_finished`; `finish` gives the `SecureChannel` and the proven peer; bytes the
//! handshake did not consume go to `SecureChannel::open`. From then on the open protocol's
//! frames go through `seal` on the way out and come out of `open` on the way in.
//! docs/security-design.md says what this promises and why it is built this way.

pub mod channel;
pub mod config;
pub mod error;
pub mod handshake;
pub mod identity;
mod keyfile;
pub mod node_id;
mod noise;
pub mod record;
pub mod secret;
mod transport;
mod x25519;

#[cfg(test)]
mod tests;

pub use channel::{Opener, Sealer, SecureChannel};
pub use config::{Hello, SecureConfig, MAX_HELLO_LEN};
pub use error::{KeyFileError, SecureError};
pub use handshake::{AuthenticatedPeer, Handshake, Role, HANDSHAKE_RECORD_LIMIT};
pub use identity::Identity;
pub use node_id::NodeId;
pub use node_id::NodeIdError;
pub use noise::{Suite, HANDSHAKE_ENTROPY_LEN, PROLOGUE};
pub use record::{
    MAX_RECORD_LEN, MAX_RECORD_PLAINTEXT, MAX_TRANSPORT_PLAINTEXT, MAX_TRANSPORT_RECORD_LEN, RECORD_PREFIX_LEN, TAG_LEN,
};
pub use secret::NetworkSecret;
