//! BitTorrent, beside torronto's own protocol (issue 15): what a node needs to publish a
//! file to standard clients, sans-IO like the rest of core.
//!
//! - [`bencode`]: the encoding, decoding bounded in depth, count and length;
//! - [`metainfo`]: v1 info dictionary, info-hash, `.torrent`, piece hashing;
//! - [`magnet`]: magnet links, written and read;
//! - [`wire`]: BEP 3 peer wire handshake and messages, lengths checked before reading;
//! - [`seed`]: one peer downloading from a seeder: requests checked and queued, then
//!   laid out as piece messages a batch at a time;
//! - [`swarm`]: what a driver talking to a torrent's peers asks of a session;
//! - [`metadata`]: BEP 9/10 metadata exchange: a magnet link's info dictionary served
//!   and fetched, verified against the info-hash;
//! - [`leech`]: downloading a torrent from its peers: blocks asked, pieces verified;
//! - [`files`]: a torrent's files as network files: names checked, pieces placed;
//! - [`tracker`]: HTTP tracker announces: the query, the answer read bounded.

pub mod bencode;
pub mod files;
pub mod leech;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod seed;
pub mod swarm;
pub mod tracker;
pub mod wire;

pub use metainfo::{Info, PieceHasher, Sha1Hash, Torrent, TorrentFile};
