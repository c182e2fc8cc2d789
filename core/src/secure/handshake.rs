//! `Handshake`: Noise XXpsk0 between two nodes, driven by bytes in and bytes out.
//!
//! ```text
//!   initiator                                   responder
//!   -> psk, e                     (empty payload, keyed by the network secret)
//!                                 <- e, ee, s, es  (payload: responder's Hello)
//!   -> s, se                      (payload: initiator's Hello)
//! ```
//! The initiator checks the responder's key (against a pinned ID, if any) before it sends
//! its own, so it never reveals itself to the wrong node. Each side's `Hello` is encrypted
//! and bound to its static key, so the advertised address comes from the key's owner.
//!
//! Drivers: on a stream, `handle_input` takes any piece of the byte stream and says how
//! much it consumed (bytes after the last handshake record belong to the channel), and
//! `write_output` appends the prefixed records to send. On a WebSocket, `handle_record`
//! takes one binary message and `poll_record` gives one to send. Time-outs are the
//! driver's: a peer that stops half way just never finishes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::channel::SecureChannel;
use super::error::SecureError;
use super::identity::Identity;
use super::node_id::NodeId;
use super::noise::{self, HANDSHAKE_ENTROPY_LEN};
use super::record::{put_prefix, Flow, RecordReader, MAX_RECORD_LEN};
use super::secret::NetworkSecret;

/// Largest encoded `Hello`.
pub const MAX_HELLO_LEN: usize = 1024;
/// Largest handshake record: keys, tags and a `Hello`, with room to spare.
pub const HANDSHAKE_RECORD_LIMIT: usize = 2048;

/// What a node tells its peer about itself inside the handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Where the sender accepts connections (`host:port`, `[v6]:port`); none for a browser.
    #[serde(rename = "Listen", default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Hello {
    pub fn listening_at(listen: impl Into<String>) -> Self {
        Hello { listen: Some(listen.into()) }
    }

    fn encode(&self) -> Result<Vec<u8>, SecureError> {
        let bytes = serde_json::to_vec(self).expect("a Hello always serialises");
        if bytes.len() > MAX_HELLO_LEN {
            return Err(SecureError::BadHello(format!("{} bytes, over {MAX_HELLO_LEN}", bytes.len())));
        }
        Ok(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, SecureError> {
        if bytes.len() > MAX_HELLO_LEN {
            return Err(SecureError::BadHello(format!("{} bytes, over {MAX_HELLO_LEN}", bytes.len())));
        }
        serde_json::from_slice(bytes).map_err(|err| SecureError::BadHello(err.to_string()))
    }
}

/// The peer as the handshake proved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedPeer {
    pub id: NodeId,
    pub public_key: [u8; 32],
    /// What the peer's `Hello` said, authenticated by its key; its truth is not checked.
    pub hello: Hello,
}

/// Which side of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Dialled out.
    Initiator,
    /// Accepted.
    Responder,
}

/// One handshake in progress.
pub struct Handshake {
    reader: RecordReader,
    progress: Progress,
    role: Role,
    failed: bool,
}

/// Everything but the stream reader, so a record handler can borrow it while the reader
/// holds the record.
struct Progress {
    noise: snow::HandshakeState,
    /// Our `Hello`, encoded, for our second message (the first carries nothing).
    hello: Vec<u8>,
    pinned: Option<NodeId>,
    outgoing: VecDeque<Bytes>,
    peer: Option<AuthenticatedPeer>,
}

impl Handshake {
    /// Starts a handshake. `entropy` must be fresh cryptographic randomness from the
    /// driver, never reused: it becomes this connection's ephemeral key.
    pub fn new(
        role: Role,
        identity: &Identity,
        secret: &NetworkSecret,
        hello: &Hello,
        entropy: [u8; HANDSHAKE_ENTROPY_LEN],
    ) -> Result<Self, SecureError> {
        let mut progress = Progress {
            noise: noise::handshake_state(role == Role::Initiator, identity, secret, entropy)?,
            hello: hello.encode()?,
            pinned: None,
            outgoing: VecDeque::new(),
            peer: None,
        };
        if role == Role::Initiator {
            progress.send(&[])?;
        }
        Ok(Handshake { reader: RecordReader::default(), progress, role, failed: false })
    }

    /// Requires the peer to prove the key of `id` (a peers-file pin); another key ends the
    /// handshake with [`SecureError::PeerMismatch`] before the initiator shows its own.
    pub fn require_peer(mut self, id: NodeId) -> Self {
        self.progress.pinned = Some(id);
        self
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Stream form: feeds received bytes, split anywhere. Returns how many it consumed;
    /// those past the last handshake record are the channel's, for [`SecureChannel::open`].
    #[must_use = "bytes past the handshake belong to the channel"]
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, SecureError> {
        self.check_usable()?;
        if self.progress.noise.is_handshake_finished() {
            return Ok(0);
        }
        let progress = &mut self.progress;
        let result = self.reader.feed(input, HANDSHAKE_RECORD_LIMIT, |record| progress.read(record));
        self.poison_on_error(result)
    }

    /// Message form: one whole record, as one WebSocket message carries it.
    pub fn handle_record(&mut self, record: &[u8]) -> Result<(), SecureError> {
        self.check_usable()?;
        let result = if record.len() > HANDSHAKE_RECORD_LIMIT {
            Err(SecureError::RecordTooLong { len: record.len(), limit: HANDSHAKE_RECORD_LIMIT })
        } else {
            self.progress.read(record).map(drop)
        };
        self.poison_on_error(result)
    }

    /// Stream form: appends every record due to the peer, each with its length prefix.
    pub fn write_output(&mut self, out: &mut BytesMut) {
        while let Some(record) = self.progress.outgoing.pop_front() {
            put_prefix(out, record.len());
            out.extend_from_slice(&record);
        }
    }

    /// Message form: the next record due to the peer, to send as one WebSocket message.
    pub fn poll_record(&mut self) -> Option<Bytes> {
        self.progress.outgoing.pop_front()
    }

    /// Both sides are proven and our last message has been taken for sending.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.progress.noise.is_handshake_finished() && self.progress.outgoing.is_empty()
    }

    /// The peer, once its key and `Hello` are proven (before `is_finished` on the
    /// initiator, whose last message is still to go).
    pub fn peer(&self) -> Option<&AuthenticatedPeer> {
        self.progress.peer.as_ref()
    }

    /// The channel for everything after the handshake, and whom it reaches.
    pub fn finish(self) -> Result<(SecureChannel, AuthenticatedPeer), SecureError> {
        self.check_usable()?;
        if !self.is_finished() {
            return Err(SecureError::Sequence("the handshake is not finished, or its last message not yet sent"));
        }
        let peer = self.progress.peer.expect("a finished handshake has proven its peer");
        Ok((SecureChannel::new(self.progress.noise.into_transport_mode()?), peer))
    }

    fn check_usable(&self) -> Result<(), SecureError> {
        if self.failed {
            return Err(SecureError::Poisoned);
        }
        Ok(())
    }

    fn poison_on_error<T>(&mut self, result: Result<T, SecureError>) -> Result<T, SecureError> {
        self.failed |= result.is_err();
        result
    }
}

impl Progress {
    fn send(&mut self, payload: &[u8]) -> Result<(), SecureError> {
        let mut message = vec![0u8; MAX_RECORD_LEN];
        let len = self.noise.write_message(payload, &mut message)?;
        message.truncate(len);
        self.outgoing.push_back(message.into());
        Ok(())
    }

    /// Reads one handshake record and answers it; `Stop` once the handshake is complete.
    fn read(&mut self, record: &[u8]) -> Result<Flow, SecureError> {
        if self.noise.is_handshake_finished() || self.noise.is_my_turn() {
            return Err(SecureError::Sequence("a handshake record out of turn"));
        }
        let mut payload = vec![0u8; record.len()];
        // Whatever snow objects to (a bad tag, a short message), the cause is the same for
        // the user: the peer is not a member, or not speaking this protocol.
        let len = self.noise.read_message(record, &mut payload).map_err(|_| SecureError::HandshakeFailed)?;
        payload.truncate(len);
        if self.peer.is_none() {
            if let Some(remote) = self.noise.get_remote_static() {
                self.peer = Some(self.authenticate(remote.try_into().expect("X25519 keys have 32 bytes"), &payload)?);
            }
        }
        if self.noise.is_handshake_finished() {
            return Ok(Flow::Stop);
        }
        let hello = std::mem::take(&mut self.hello);
        self.send(&hello)?;
        Ok(if self.noise.is_handshake_finished() { Flow::Stop } else { Flow::Continue })
    }

    fn authenticate(&self, public_key: [u8; 32], hello: &[u8]) -> Result<AuthenticatedPeer, SecureError> {
        if noise::is_low_order(&public_key) {
            return Err(SecureError::WeakPeerKey);
        }
        let id = NodeId::from_public_key(&public_key);
        if let Some(pinned) = self.pinned {
            if pinned != id {
                return Err(SecureError::PeerMismatch { pinned, presented: id });
            }
        }
        Ok(AuthenticatedPeer { id, public_key, hello: Hello::decode(hello)? })
    }
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("peer", &self.progress.peer)
            .field("finished", &self.is_finished())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
