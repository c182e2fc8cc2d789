//! Private networks in the native node: the node's identity file, the network secret, and
//! each TCP connection's handshake, run in the connection's own task (never on the loop).
//!
//! An accepted connection is told apart by its first bytes: a Noise first record (a
//! member) gets the handshake; anything else is a plaintext control client, which core
//! lets send control actions only. Dialled connections always start the handshake.
//! A WebSocket session on `--ws` is told apart the same way by its first message: a
//! Noise first record (the browser peer holding the secret) gets the handshake in
//! message form; anything else is a plaintext control session.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use rand::TryRngCore;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use torronto_core::secure::{AuthenticatedPeer, Hello, HANDSHAKE_ENTROPY_LEN};
use torronto_core::{Handshake, Identity, NetworkSecret, NodeId, PeerAddr, SecureChannel, SecureConfig};
use torronto_net::{handshake, FirstBytes, HandshakeError, Secured, SNIFF_LEN};
use torronto_ws_bridge::{opening, Opening, WsSession};

/// A handshake (or a first look at an accepted connection) must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// 32 bytes from the operating system's cryptographic generator.
pub fn os_random() -> [u8; HANDSHAKE_ENTROPY_LEN] {
    let mut bytes = [0u8; HANDSHAKE_ENTROPY_LEN];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// A fresh network secret's file text (`torronto secret new`).
pub fn new_secret_text() -> String {
    NetworkSecret::from_random_bytes(os_random()).to_file_text()
}

/// Reads a network secret file (`--secret FILE`).
pub fn read_secret(path: &Path) -> anyhow::Result<NetworkSecret> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read secret file {}", path.display()))?;
    NetworkSecret::from_file_text(&text).with_context(|| format!("in secret file {}", path.display()))
}

/// The node's identity in `state/identity`: made from OS randomness at first start and
/// written owner-only; refused if others may read it.
pub fn load_identity(state: &Path) -> anyhow::Result<Identity> {
    let path = state.join("identity");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            crate::owner::check_owner_only(&path)
                .map_err(|e| anyhow::anyhow!("{e}: chmod 600 it, or delete it for a new identity"))?;
            Identity::from_file_text(&text).with_context(|| format!("in identity file {}", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let identity = Identity::from_random_bytes(os_random());
            crate::store::write_atomic(&path, identity.to_file_text().as_bytes(), 0o600)
                .with_context(|| format!("cannot save the node identity in {}", path.display()))?;
            Ok(identity)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A node's part in its private network, shared by its connection tasks.
#[derive(Debug)]
pub struct Private {
    config: SecureConfig,
    /// Node IDs pinned in the peers file (`host:port#ID`), by address.
    pins: HashMap<PeerAddr, NodeId>,
}

/// An accepted connection, once it has shown what it speaks.
#[derive(Debug)]
pub enum Accepted {
    /// A member, proven.
    Secure(TcpStream, Secured),
    /// A plaintext control client; `received` holds its first bytes.
    Plain(TcpStream, BytesMut),
}

/// An accepted WebSocket session, once its first message showed what it speaks.
#[derive(Debug)]
pub enum AcceptedWs {
    /// A member (the browser peer), proven; records follow.
    Secure(WsSession, SecureChannel, AuthenticatedPeer),
    /// A plaintext control client; `first` is its first frame, still to be read.
    Plain(WsSession, Option<bytes::Bytes>),
}

impl Private {
    /// `me`: the advertised address, sent to peers in the `Hello`.
    pub fn new(identity: Identity, secret: NetworkSecret, me: &PeerAddr, pins: HashMap<PeerAddr, NodeId>) -> Self {
        Private { config: SecureConfig::new(identity, secret, Hello::listening_at(me.to_string())), pins }
    }

    pub fn node_id(&self) -> NodeId {
        self.config.identity.node_id()
    }

    /// The network secret, for the panel URL printed to the owner.
    pub fn secret(&self) -> &NetworkSecret {
        &self.config.secret
    }

    pub async fn accept(&self, mut stream: TcpStream) -> Result<Accepted, HandshakeError> {
        let mut first = [0u8; SNIFF_LEN];
        tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut first))
            .await
            .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))??;
        let received = BytesMut::from(&first[..]);
        if FirstBytes::of(&first) == FirstBytes::Plain {
            return Ok(Accepted::Plain(stream, received));
        }
        let responder = Handshake::responder(&self.config, os_random())?;
        let secured = handshake(&mut stream, responder, received, HANDSHAKE_TIMEOUT).await?;
        Ok(Accepted::Secure(stream, secured))
    }

    pub async fn accept_ws(&self, mut session: WsSession) -> Result<AcceptedWs, HandshakeError> {
        match opening(&mut session, HANDSHAKE_TIMEOUT).await? {
            Opening::Plain(first) => Ok(AcceptedWs::Plain(session, first)),
            Opening::Handshake(first) => {
                let responder = Handshake::responder(&self.config, os_random())?;
                let (channel, peer) =
                    torronto_ws_bridge::secure::handshake(&mut session, responder, Some(first), HANDSHAKE_TIMEOUT)
                        .await?;
                Ok(AcceptedWs::Secure(session, channel, peer))
            }
        }
    }

    /// Runs the handshake on a connection dialled to `addr`, requiring its pinned ID if any.
    pub async fn dial(&self, stream: &mut TcpStream, addr: &PeerAddr) -> Result<Secured, HandshakeError> {
        let mut initiator = Handshake::initiator(&self.config, os_random())?;
        if let Some(&pin) = self.pins.get(addr) {
            initiator = initiator.require_peer(pin);
        }
        handshake(stream, initiator, BytesMut::new(), HANDSHAKE_TIMEOUT).await
    }
}

/// A control client's side: a throwaway identity, so its token never crosses in clear.
pub async fn dial_as_client(stream: &mut TcpStream, secret: NetworkSecret) -> Result<Secured, HandshakeError> {
    let config = SecureConfig::new(Identity::from_random_bytes(os_random()), secret, Hello::default());
    let initiator = Handshake::initiator(&config, os_random())?;
    handshake(stream, initiator, BytesMut::new(), HANDSHAKE_TIMEOUT).await
}
