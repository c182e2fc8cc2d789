//! The wire format: frames, JSON headers and typed messages.
//!
//! A connection carries frames; on TCP each is a 4-byte big-endian length and that many
//! bytes. A message is one JSON header frame, optionally followed by one body frame.
//! Limits are checked before anything is allocated: [`FrameDecoder`] refuses a length
//! prefix over the limit that [`MessageReader::frame_limit`] gives for the next frame.
//!
//! - `frame`: frame limits, the TCP [`FrameDecoder`], [`Encoded`] frames, [`WireError`];
//! - `message`: the vocabulary — [`Action`] numbers, [`Code`]s, and [`Message`], which is
//!   a [`Control`] request, a [`PeerMessage`] or a [`Reply`];
//! - `decode`: [`MessageReader`], headers as received, with every spelling of the
//!   original document (accepted there and nowhere else);
//! - `encode`: [`Envelope::encode`], headers as sent.

mod decode;
mod encode;
mod frame;
mod message;
#[cfg(test)]
mod tests;

pub use decode::{is_tracker_url, MessageReader};
pub use frame::{frame_prefix, Encoded, FrameDecoder, WireError, FRAME_PREFIX_LEN, HEADER_LIMIT, LIST_BODY_LIMIT};
pub use message::{
    have_entry_len, tombstone_len, Action, ChunkRef, Code, Control, Envelope, FileEntry, FileRef, HaveEntry, Message,
    PeerAddr, PeerMessage, RateLimits, Reply, Stamps, Tombstone, TorrentExport, MAX_ADD_PEERS, MAX_HAVE_CHUNKS,
    MAX_TRACKERS, MAX_TRACKER_LEN,
};
