//! What a driver talking to a torrent's peers asks of the session that decides what to
//! say: the info dictionary being fetched ([`super::metadata::MetadataFetch`], for a
//! magnet link) or the pieces ([`super::leech::Leech`]). One driver loop serves both.

use super::wire::PeerMessage;

/// The driver's name for one peer connection.
pub type PeerKey = u64;
/// Milliseconds since an origin of the driver's choosing.
pub type Millis = u64;

/// A peer that leaves a request unanswered this long is cut off.
pub const REQUEST_TIMEOUT: Millis = 30_000;

pub trait Swarm {
    /// A peer finished the handshake; `extensions`: its handshake has the BEP 10 bit.
    fn peer_connected(&mut self, peer: PeerKey, extensions: bool);
    /// The connection to `peer` is gone: what it was asked goes back to be asked again.
    fn peer_gone(&mut self, peer: PeerKey);
    /// Takes in one message from `peer`; one that breaks the rules has the peer cut off
    /// ([`Swarm::poll_close`]).
    fn on_message(&mut self, now: Millis, peer: PeerKey, msg: PeerMessage);
    /// Requests older than [`REQUEST_TIMEOUT`] cut their peer off.
    fn handle_timeout(&mut self, now: Millis);
    fn poll_message(&mut self) -> Option<(PeerKey, PeerMessage)>;
    /// A peer to close, and why (it is already forgotten).
    fn poll_close(&mut self) -> Option<(PeerKey, String)>;
    /// Bytes verified so far (the driver's sign of progress).
    fn verified(&self) -> u64;
    /// Bytes still wanted, as a tracker's `left`.
    fn left(&self) -> u64;
}
