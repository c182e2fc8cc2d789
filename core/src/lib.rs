//! torronto-core: the portable, sans-IO protocol engine of torronto.
//!
//! Layout, one idea per module:
//! - [`name`]: `FileName`, the only way a string becomes a path;
//! - [`layout`]: chunk arithmetic (64 KiB chunks) and `ChunkIndex`;
//! - [`manifest`]: chunk hashes, the manifest and the file digest;
//! - [`bitset`]: `ChunkSet`, which chunks of a file a participant holds;
//! - [`wire`]: frames and their limits, the typed vocabulary (control requests, peer
//!   messages, replies), header decoding and encoding;
//! - [`gossip`]: participants' records of what they hold, the view of the whole network
//!   and its anti-entropy exchange;
//! - [`status`]: the Query answer, computed per file and read back row by row;
//! - `files`: per-file bookkeeping (held, fetching, replication counts, rarest pick);
//! - [`node`]: the state machine the native node and the browser peer both drive,
//!   carved into rooms: membership, peers, fetching, serving, imports, copies, removal, control,
//!   exports, timers;
//! - [`secure`]: private networks: identities, node IDs, the network secret, and the
//!   Noise handshake and encrypted channel the open protocol's frames travel in;
//! - [`bittorrent`]: speaking to standard BitTorrent clients: bencode, v1 metainfo and
//!   info-hash, magnet links, the BEP 3 peer wire, the BEP 9/10 metadata exchange, a
//!   seeding and a leeching session;
//! - [`units`]: sizes as people read them (`1.5 MiB`), for every driver's output.
//!
//! Nothing here does I/O, reads a clock, draws randomness or spawns: drivers pass time
//! and random bytes in and carry out the commands that come out (see [`node::Node`]).

pub mod bitset;
pub mod bittorrent;
mod files;
pub mod gossip;
pub mod layout;
pub mod manifest;
pub mod name;
pub mod node;
pub mod secure;
pub mod status;
pub mod units;
pub mod wire;

pub use bitset::ChunkSet;
pub use layout::ChunkIndex;
pub use manifest::{Digest, Manifest, ManifestBuilder};
pub use name::FileName;
pub use node::{
    check_insert_source, control_token_matches, Config, ConnId, ConnInfo, Event, ImportId, LocalFile, Millis,
    NetCommand, Node, Refusal, StorageCommand, StorageError, StorageEvent, Tuning,
};
pub use secure::{Handshake, Identity, NetworkSecret, NodeId, SecureChannel, SecureConfig, SecureError};
pub use status::{ChunkMap, FileRow, InsertProgress, LinkStatus, Status};
pub use units::human_size;
pub use wire::{ChunkRef, Code, Control, Envelope, Message, PeerAddr, PeerMessage, RateLimits, Stamps, Tombstone};
