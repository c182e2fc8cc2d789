//! What can go wrong in a secure connection, and in reading the key files.
//!
//! Messages never quote key material: a secret file passed where an identity file was
//! expected must not end up in a log.

use super::node_id::NodeId;

/// A handshake or channel failure. Every one is fatal: the driver drops the connection,
/// and the `Handshake` or `SecureChannel` refuses any further use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecureError {
    #[error("record of {len} bytes is over the limit of {limit}")]
    RecordTooLong { len: usize, limit: usize },
    #[error(
        "handshake failed: the peer does not hold this network's secret, speaks another protocol \
         (an open-mode node?), or the bytes were altered"
    )]
    HandshakeFailed,
    #[error("peer presented node ID {presented}, but {pinned} is pinned for it")]
    PeerMismatch { pinned: NodeId, presented: NodeId },
    #[error("peer's static key is of low order: it proves no identity")]
    WeakPeerKey,
    #[error("bad hello: {0}")]
    BadHello(String),
    #[error("record failed authentication: tampered, replayed, reordered or truncated")]
    Decrypt,
    #[error("out of order: {0}")]
    Sequence(&'static str),
    #[error("unusable after an earlier error")]
    Poisoned,
    #[error("noise: {0}")]
    Noise(String),
}

impl From<snow::Error> for SecureError {
    fn from(err: snow::Error) -> Self {
        match err {
            snow::Error::Decrypt => SecureError::Decrypt,
            other => SecureError::Noise(other.to_string()),
        }
    }
}

/// A key file (identity or network secret) that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("no `{tag} <64 hex digits>` line found")]
    Missing { tag: &'static str },
    #[error("line {line}: this is a `{found}` file, not a `{tag}` file")]
    WrongKind { line: usize, found: String, tag: &'static str },
    #[error("line {line}: expected `{tag} <64 hex digits>`")]
    Malformed { line: usize, tag: &'static str },
    #[error("line {line}: the key must be 64 hex digits, found {found} characters")]
    BadLength { line: usize, found: usize },
    #[error("line {line}: the key may hold only hex digits 0-9 a-f")]
    NotHex { line: usize },
    #[error("line {line}: a second key line; a file holds exactly one")]
    Duplicate { line: usize },
}
