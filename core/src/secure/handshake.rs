//! `Handshake`: Noise XXpsk0 between two nodes, driven by bytes in and bytes out.
//!
//! ```text
//!   initiator                                   responder
//!   suite byte, -> psk, e         (empty payload, keyed by the network secret)
//!                                 <- e, ee, s, es  (payload: responder's Hello)
//!   -> s, se                      (payload: initiator's Hello)
//! ```
//! The first record opens with one byte naming the initiator's [`Suite`]; the responder
//! starts its Noise state with that suite.
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

use super::channel::SecureChannel;
use super::config::{Hello, SecureConfig};
use super::error::SecureError;
use super::identity::Identity;
use super::node_id::NodeId;
use super::noise::{self, Providers, Suite, HANDSHAKE_ENTROPY_LEN};
use super::record::{put_prefix, Flow, RecordReader, MAX_RECORD_LEN};
use super::secret::NetworkSecret;
use super::transport;
use super::x25519;

/// Largest handshake record: a suite byte, keys, tags and a `Hello`, with room to spare.
pub const HANDSHAKE_RECORD_LIMIT: usize = 2048;

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
    /// A responder's makings of its Noise state, until the first record names the suite.
    start: Option<Start>,
    noise: Option<(snow::HandshakeState, Suite)>,
    /// Where the transport cipher comes from, as for the handshake's.
    providers: Providers,
    /// Our `Hello`, encoded, for our second message (the first carries nothing).
    hello: Vec<u8>,
    pinned: Option<NodeId>,
    outgoing: VecDeque<Bytes>,
    peer: Option<AuthenticatedPeer>,
}

struct Start {
    identity: Identity,
    secret: NetworkSecret,
    providers: Providers,
    entropy: [u8; HANDSHAKE_ENTROPY_LEN],
}

impl Start {
    fn noise(self, initiator: bool, suite: Suite) -> Result<(snow::HandshakeState, Suite), SecureError> {
        let state =
            noise::handshake_state(initiator, suite, self.providers, &self.identity, &self.secret, self.entropy)?;
        Ok((state, suite))
    }
}

impl Handshake {
    /// Dials: the first record is ready at once. `entropy` must be fresh cryptographic
    /// randomness from the driver, never reused: it becomes this connection's ephemeral key.
    pub fn initiator(config: &SecureConfig, entropy: [u8; HANDSHAKE_ENTROPY_LEN]) -> Result<Self, SecureError> {
        let mut handshake = Self::new(Role::Initiator, config, entropy)?;
        let start = handshake.progress.start.take().expect("just made");
        let (mut state, suite) = start.noise(true, config.suite)?;
        let mut first = vec![0u8; 1 + MAX_RECORD_LEN];
        first[0] = suite.id();
        let len = state.write_message(&[], &mut first[1..])?;
        first.truncate(1 + len);
        handshake.progress.outgoing.push_back(first.into());
        handshake.progress.noise = Some((state, suite));
        Ok(handshake)
    }

    /// Accepts: waits for the initiator's first record. `entropy` as for `initiator`.
    pub fn responder(config: &SecureConfig, entropy: [u8; HANDSHAKE_ENTROPY_LEN]) -> Result<Self, SecureError> {
        Self::new(Role::Responder, config, entropy)
    }

    fn new(role: Role, config: &SecureConfig, entropy: [u8; HANDSHAKE_ENTROPY_LEN]) -> Result<Self, SecureError> {
        let start = Start {
            identity: config.identity.clone(),
            secret: config.secret.clone(),
            providers: config.providers,
            entropy,
        };
        let progress = Progress {
            start: Some(start),
            noise: None,
            providers: config.providers,
            hello: config.hello.encode()?,
            pinned: None,
            outgoing: VecDeque::new(),
            peer: None,
        };
        Ok(Handshake { reader: RecordReader::default(), progress, role, failed: false })
    }

    /// Whether a message can open a handshake: it starts with a suite byte. On a
    /// WebSocket this tells a member's first record from a plaintext client's frame (a
    /// JSON header opens with `{` or whitespace).
    pub fn is_first_record(message: &[u8]) -> bool {
        message.first().is_some_and(|&id| Suite::from_id(id).is_some())
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
    /// those past the last handshake record are the channel's, for
    /// [`SecureChannel::open_buf`] (or `open`).
    #[must_use = "bytes past the handshake belong to the channel"]
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, SecureError> {
        self.check_usable()?;
        if self.progress.is_complete() {
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
        !self.failed && self.progress.is_complete() && self.progress.outgoing.is_empty()
    }

    /// The suite in use, once known (at once when dialling, from the first record when
    /// accepting).
    pub fn suite(&self) -> Option<Suite> {
        self.progress.noise.as_ref().map(|(_, suite)| *suite)
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
        let (mut state, suite) = self.progress.noise.expect("a finished handshake has a Noise state");
        let (send, receive) = transport::transport_ciphers(&mut state, suite, self.progress.providers)?;
        Ok((SecureChannel::new(send, receive, suite), peer))
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
    fn is_complete(&self) -> bool {
        self.noise.as_ref().is_some_and(|(state, _)| state.is_handshake_finished())
    }

    /// Reads one handshake record and answers it; `Stop` once the handshake is complete.
    fn read(&mut self, mut record: &[u8]) -> Result<Flow, SecureError> {
        if let Some(start) = self.start.take() {
            // A responder's first record: the initiator's suite byte, then Noise.
            let (&id, rest) = record.split_first().ok_or(SecureError::HandshakeFailed)?;
            let suite = Suite::from_id(id).ok_or(SecureError::HandshakeFailed)?;
            self.noise = Some(start.noise(false, suite)?);
            record = rest;
        }
        let (state, _) = self.noise.as_mut().expect("started above or when dialling");
        if state.is_handshake_finished() || state.is_my_turn() {
            return Err(SecureError::Sequence("a handshake record out of turn"));
        }
        let mut payload = vec![0u8; record.len()];
        // Whatever snow objects to (a bad tag, a short message), the cause is the same for
        // the user: the peer is not a member, or not speaking this protocol.
        let len = state.read_message(record, &mut payload).map_err(|_| SecureError::HandshakeFailed)?;
        payload.truncate(len);
        if self.peer.is_none() {
            if let Some(remote) = state.get_remote_static() {
                let remote = remote.try_into().expect("X25519 keys have 32 bytes");
                self.peer = Some(self.authenticate(remote, &payload)?);
            }
        }
        let (state, _) = self.noise.as_mut().expect("started");
        if state.is_handshake_finished() {
            return Ok(Flow::Stop);
        }
        let mut message = vec![0u8; MAX_RECORD_LEN];
        let len = state.write_message(&self.hello, &mut message)?;
        message.truncate(len);
        self.outgoing.push_back(message.into());
        Ok(if state.is_handshake_finished() { Flow::Stop } else { Flow::Continue })
    }

    fn authenticate(&self, public_key: [u8; 32], hello: &[u8]) -> Result<AuthenticatedPeer, SecureError> {
        if x25519::is_low_order(&public_key) {
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
