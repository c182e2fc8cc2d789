//! The metadata exchange (BEP 9, `ut_metadata`) over the extension protocol (BEP 10):
//! how the info dictionary of a magnet link comes from peers. A seeder answers requests
//! for 16 KiB pieces of it ([`answer`]); [`MetadataFetch`] asks one peer at a time for
//! all of it and hands it out only once its SHA-1 is the info-hash. Every size a peer
//! states is checked against [`MAX_METADATA`] before anything is allocated.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest as _, Sha1};

use super::bencode::{self, Value};
use super::metainfo::Sha1Hash;
use super::swarm::{Millis, PeerKey, Swarm, REQUEST_TIMEOUT};
use super::wire::PeerMessage;

/// The id we give `ut_metadata` in our extension handshake: peers send its messages to
/// us under it.
pub const UT_METADATA: u8 = 1;
/// The extended message id of the extension handshake itself.
pub const EXTENSION_HANDSHAKE: u8 = 0;
/// Bytes in a metadata piece (the last one may be short).
pub const METADATA_PIECE: usize = 16 * 1024;
/// Largest info dictionary fetched: 16 MiB (a torrent of 800,000 pieces; a larger one
/// needs its `.torrent`). What a peer states is checked against it before allocating.
pub const MAX_METADATA: u64 = 16 << 20;
/// Requests in flight to the peer being asked.
const IN_FLIGHT: usize = 16;
/// `left` reported to trackers while the size is unknown (what libtorrent does too).
const LEFT_UNKNOWN: u64 = METADATA_PIECE as u64;

/// Why a peer's metadata messages were refused; the peer is cut off.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Bencode(#[from] bencode::BencodeError),
    #[error("metadata message: {0}")]
    Bad(&'static str),
    #[error("does not speak the extension protocol (BEP 10)")]
    NoExtensions,
    #[error("offers no metadata (ut_metadata, metadata_size)")]
    NoMetadata,
    #[error("metadata of {0} bytes is over the limit of {MAX_METADATA}")]
    TooLarge(u64),
    #[error("refused metadata piece {0}")]
    Rejected(u32),
    #[error("sent metadata whose SHA-1 is not the info-hash")]
    WrongMetadata,
    #[error("left a metadata request unanswered for {}s", REQUEST_TIMEOUT / 1000)]
    Timeout,
}

/// The BEP 10 extension handshake, as far as the metadata exchange needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// The id the sender wants `ut_metadata` messages sent under (none: not spoken).
    pub ut_metadata: Option<u8>,
    /// Bytes in the info dictionary, from a side that has it.
    pub metadata_size: Option<u64>,
}

impl ExtensionHandshake {
    pub fn encode(&self) -> Bytes {
        let mut m = BTreeMap::new();
        if let Some(id) = self.ut_metadata {
            m.insert(b"ut_metadata".to_vec(), Value::Int(id.into()));
        }
        let mut top = BTreeMap::new();
        top.insert(b"m".to_vec(), Value::Dict(m));
        if let Some(size) = self.metadata_size {
            top.insert(b"metadata_size".to_vec(), Value::Int(size as i64));
        }
        top.insert(b"v".to_vec(), Value::bytes(&b"torronto"[..]));
        Value::Dict(top).encode().into()
    }

    /// Reads a peer's handshake; extensions other than `ut_metadata` are ignored, and
    /// id 0 means the extension is off (BEP 10).
    pub fn decode(payload: &[u8]) -> Result<Self, MetadataError> {
        let v = bencode::decode(payload)?;
        let id = v.get("m").and_then(|m| m.get("ut_metadata")).and_then(Value::as_int);
        let ut_metadata = match id {
            None | Some(0) => None,
            Some(id) => Some(u8::try_from(id).map_err(|_| MetadataError::Bad("ut_metadata id out of range"))?),
        };
        let metadata_size = match v.get("metadata_size").and_then(Value::as_int) {
            None => None,
            Some(size) => Some(u64::try_from(size).map_err(|_| MetadataError::Bad("negative metadata_size"))?),
        };
        Ok(ExtensionHandshake { ut_metadata, metadata_size })
    }
}

/// A `ut_metadata` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMessage {
    Request(u32),
    Data {
        piece: u32,
        total_size: u64,
        data: Bytes,
    },
    Reject(u32),
    /// A message type BEP 9 does not define: ignored, as it asks.
    Other,
}

impl MetadataMessage {
    pub fn encode(&self) -> Bytes {
        let header = |msg_type: i64, piece: u32, total_size: Option<u64>| {
            let mut d = BTreeMap::new();
            d.insert(b"msg_type".to_vec(), Value::Int(msg_type));
            d.insert(b"piece".to_vec(), Value::Int(piece.into()));
            if let Some(size) = total_size {
                d.insert(b"total_size".to_vec(), Value::Int(size as i64));
            }
            Value::Dict(d).encode()
        };
        match self {
            MetadataMessage::Request(piece) => header(0, *piece, None).into(),
            MetadataMessage::Data { piece, total_size, data } => {
                let mut out = BytesMut::from(&header(1, *piece, Some(*total_size))[..]);
                out.put_slice(data);
                out.freeze()
            }
            MetadataMessage::Reject(piece) => header(2, *piece, None).into(),
            MetadataMessage::Other => header(3, 0, None).into(),
        }
    }

    /// Reads one message: a dictionary, followed (in a data message only) by at most
    /// [`METADATA_PIECE`] bytes of the info dictionary.
    pub fn decode(payload: Bytes) -> Result<Self, MetadataError> {
        let (v, used) = bencode::decode_prefix(&payload)?;
        let int = |key: &str| v.get(key).and_then(Value::as_int);
        let piece = int("piece").and_then(|p| u32::try_from(p).ok()).ok_or(MetadataError::Bad("no piece"))?;
        let rest = payload.slice(used..);
        let nothing_after = |m: MetadataMessage| {
            if rest.is_empty() {
                Ok(m)
            } else {
                Err(MetadataError::Bad("bytes after the message"))
            }
        };
        match int("msg_type") {
            Some(0) => nothing_after(MetadataMessage::Request(piece)),
            Some(1) => {
                let total_size =
                    int("total_size").and_then(|s| u64::try_from(s).ok()).ok_or(MetadataError::Bad("no total_size"))?;
                if rest.len() > METADATA_PIECE {
                    return Err(MetadataError::Bad("data longer than a metadata piece"));
                }
                Ok(MetadataMessage::Data { piece, total_size, data: rest })
            }
            Some(2) => nothing_after(MetadataMessage::Reject(piece)),
            Some(_) => Ok(MetadataMessage::Other),
            None => Err(MetadataError::Bad("no msg_type")),
        }
    }
}

/// Pieces of `size` bytes of metadata.
fn piece_count(size: u64) -> u32 {
    size.div_ceil(METADATA_PIECE as u64) as u32
}

/// Bytes in metadata piece `piece` of `size` bytes of metadata.
fn piece_len(size: u64, piece: u32) -> usize {
    (size - u64::from(piece) * METADATA_PIECE as u64).min(METADATA_PIECE as u64) as usize
}

/// A seeder's answer to a request for `piece` of its info dictionary `metadata`.
pub fn answer(metadata: &Bytes, piece: u32) -> MetadataMessage {
    if piece >= piece_count(metadata.len() as u64) {
        return MetadataMessage::Reject(piece);
    }
    let start = piece as usize * METADATA_PIECE;
    let data = metadata.slice(start..start + piece_len(metadata.len() as u64, piece));
    MetadataMessage::Data { piece, total_size: metadata.len() as u64, data }
}

/// The info dictionary being fetched from one peer.
#[derive(Debug)]
struct Source {
    peer: PeerKey,
    /// Its id for `ut_metadata`.
    id: u8,
    data: Vec<u8>,
    /// Pieces not asked yet start here.
    next: u32,
    /// Pieces asked, since when.
    asked: BTreeMap<u32, Millis>,
    received: u64,
}

/// Fetching the info dictionary of `info_hash` from the peers of a magnet link. Peers
/// that offer it (their extension handshake names `ut_metadata` and a size within
/// [`MAX_METADATA`]) are asked one at a time, [`IN_FLIGHT`] pieces at once; one that
/// refuses a piece, leaves one unanswered for [`REQUEST_TIMEOUT`] or sends metadata
/// whose SHA-1 is not the info-hash is cut off, and the next one is asked.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: Sha1Hash,
    peers: BTreeSet<PeerKey>,
    /// Peers that offer the metadata: their `ut_metadata` id and its size.
    offers: BTreeMap<PeerKey, (u8, u64)>,
    source: Option<Source>,
    out: VecDeque<(PeerKey, PeerMessage)>,
    closing: VecDeque<(PeerKey, MetadataError)>,
    done: Option<Bytes>,
}

impl MetadataFetch {
    pub fn new(info_hash: Sha1Hash) -> Self {
        MetadataFetch {
            info_hash,
            peers: BTreeSet::new(),
            offers: BTreeMap::new(),
            source: None,
            out: VecDeque::new(),
            closing: VecDeque::new(),
            done: None,
        }
    }

    /// The info dictionary, once fetched and verified (its SHA-1 is the info-hash).
    pub fn poll_done(&mut self) -> Option<Bytes> {
        self.done.take()
    }

    fn message(&mut self, peer: PeerKey, msg: PeerMessage) -> Result<(), MetadataError> {
        let PeerMessage::Extended { id, payload } = msg else { return Ok(()) };
        match id {
            EXTENSION_HANDSHAKE => {
                let theirs = ExtensionHandshake::decode(&payload)?;
                let (Some(id), Some(size)) = (theirs.ut_metadata, theirs.metadata_size.filter(|s| *s > 0)) else {
                    return Err(MetadataError::NoMetadata);
                };
                if size > MAX_METADATA {
                    return Err(MetadataError::TooLarge(size));
                }
                self.offers.insert(peer, (id, size));
            }
            UT_METADATA => match MetadataMessage::decode(payload)? {
                MetadataMessage::Data { piece, total_size, data } => self.on_data(peer, piece, total_size, &data)?,
                MetadataMessage::Reject(piece) if self.source.as_ref().is_some_and(|s| s.peer == peer) => {
                    return Err(MetadataError::Rejected(piece));
                }
                // We serve nothing while fetching; a peer asking goes unanswered.
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn on_data(&mut self, peer: PeerKey, piece: u32, total_size: u64, data: &[u8]) -> Result<(), MetadataError> {
        let Some(source) = self.source.as_mut().filter(|s| s.peer == peer) else { return Ok(()) };
        if source.asked.remove(&piece).is_none() {
            return Ok(());
        }
        let size = source.data.len() as u64;
        if total_size != size || data.len() != piece_len(size, piece) {
            return Err(MetadataError::Bad("data of another size than asked"));
        }
        let start = piece as usize * METADATA_PIECE;
        source.data[start..start + data.len()].copy_from_slice(data);
        source.received += data.len() as u64;
        if source.received < size {
            return Ok(());
        }
        let source = self.source.take().expect("looked up above");
        if <[u8; 20]>::from(Sha1::digest(&source.data)) != self.info_hash {
            return Err(MetadataError::WrongMetadata);
        }
        self.done = Some(source.data.into());
        Ok(())
    }

    fn cut_off(&mut self, peer: PeerKey, why: MetadataError) {
        if self.peers.contains(&peer) {
            self.peer_gone(peer);
            self.closing.push_back((peer, why));
        }
    }

    /// Picks a peer to ask if none is being asked, and keeps [`IN_FLIGHT`] requests
    /// with it.
    fn fill(&mut self, now: Millis) {
        if self.done.is_some() {
            return;
        }
        if self.source.is_none() {
            let Some((&peer, &(id, size))) = self.offers.iter().next() else { return };
            // `size` is within MAX_METADATA: checked when it was offered.
            let data = vec![0; size as usize];
            self.source = Some(Source { peer, id, data, next: 0, asked: BTreeMap::new(), received: 0 });
        }
        let source = self.source.as_mut().expect("set above");
        let count = piece_count(source.data.len() as u64);
        while source.asked.len() < IN_FLIGHT && source.next < count {
            source.asked.insert(source.next, now);
            let payload = MetadataMessage::Request(source.next).encode();
            self.out.push_back((source.peer, PeerMessage::Extended { id: source.id, payload }));
            source.next += 1;
        }
    }
}

impl Swarm for MetadataFetch {
    /// We send our extension handshake; a peer without the extension protocol cannot help.
    fn peer_connected(&mut self, peer: PeerKey, extensions: bool) {
        if !extensions {
            self.closing.push_back((peer, MetadataError::NoExtensions));
            return;
        }
        self.peers.insert(peer);
        let ours = ExtensionHandshake { ut_metadata: Some(UT_METADATA), metadata_size: None };
        self.out.push_back((peer, PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload: ours.encode() }));
    }

    fn peer_gone(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
        self.offers.remove(&peer);
        if self.source.as_ref().is_some_and(|s| s.peer == peer) {
            self.source = None;
        }
    }

    fn on_message(&mut self, now: Millis, peer: PeerKey, msg: PeerMessage) {
        if self.done.is_some() || !self.peers.contains(&peer) {
            return;
        }
        if let Err(e) = self.message(peer, msg) {
            self.cut_off(peer, e);
        }
        self.fill(now);
    }

    fn handle_timeout(&mut self, now: Millis) {
        let late =
            self.source.as_ref().filter(|s| s.asked.values().any(|at| now.saturating_sub(*at) >= REQUEST_TIMEOUT));
        if let Some(peer) = late.map(|s| s.peer) {
            self.cut_off(peer, MetadataError::Timeout);
        }
        self.fill(now);
    }

    fn poll_message(&mut self) -> Option<(PeerKey, PeerMessage)> {
        self.out.pop_front()
    }

    fn poll_close(&mut self) -> Option<(PeerKey, String)> {
        self.closing.pop_front().map(|(peer, why)| (peer, why.to_string()))
    }

    /// Bytes of the info dictionary received from the current source: what tells the
    /// driver's stall check that the fetch moves (`done` is taken as soon as it is set).
    fn verified(&self) -> u64 {
        self.source.as_ref().map_or(0, |s| s.received)
    }

    fn left(&self) -> u64 {
        LEFT_UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An info dictionary of `len` bytes (its contents do not matter to the exchange).
    fn metadata(len: usize) -> (Bytes, Sha1Hash) {
        let data: Bytes = (0..len).map(|i| (i * 31 % 253) as u8).collect::<Vec<u8>>().into();
        let hash = Sha1::digest(&data).into();
        (data, hash)
    }

    fn offer(size: u64) -> PeerMessage {
        let hs = ExtensionHandshake { ut_metadata: Some(7), metadata_size: Some(size) };
        PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload: hs.encode() }
    }

    /// Answers each request sent to a peer from its metadata in `peers`. Returns the
    /// peers cut off.
    fn serve(f: &mut MetadataFetch, peers: &[(PeerKey, &Bytes)]) -> Vec<(PeerKey, String)> {
        while let Some((to, msg)) = f.poll_message() {
            let PeerMessage::Extended { id: 7, payload } = msg else { continue };
            let MetadataMessage::Request(piece) = MetadataMessage::decode(payload).unwrap() else { panic!() };
            if let Some((_, metadata)) = peers.iter().find(|(p, _)| *p == to) {
                let payload = answer(metadata, piece).encode();
                f.on_message(0, to, PeerMessage::Extended { id: UT_METADATA, payload });
            }
        }
        std::iter::from_fn(|| f.poll_close()).collect()
    }

    #[test]
    fn messages_round_trip() {
        let hs = ExtensionHandshake { ut_metadata: Some(3), metadata_size: Some(31235) };
        assert_eq!(ExtensionHandshake::decode(&hs.encode()), Ok(hs));
        let (data, _) = metadata(20_000);
        for m in [MetadataMessage::Request(1), MetadataMessage::Reject(2), answer(&data, 0), answer(&data, 1)] {
            assert_eq!(MetadataMessage::decode(m.encode()), Ok(m));
        }
        assert_eq!(answer(&data, 1), MetadataMessage::Data { piece: 1, total_size: 20_000, data: data.slice(16384..) });
        assert_eq!(answer(&data, 2), MetadataMessage::Reject(2));
        // BEP 9's own example of a request.
        let request = MetadataMessage::decode(Bytes::from_static(b"d8:msg_typei0e5:piecei0ee"));
        assert_eq!(request, Ok(MetadataMessage::Request(0)));
    }

    #[test]
    fn refuses_malformed_messages() {
        let bad = |b: &'static [u8]| MetadataMessage::decode(Bytes::from_static(b)).is_err();
        assert!(bad(b"d5:piecei0ee"));
        assert!(bad(b"d8:msg_typei0ee"));
        assert!(bad(b"d8:msg_typei0e5:piecei-1ee"));
        assert!(bad(b"d8:msg_typei0e5:piecei0eextra"));
        assert!(bad(b"d8:msg_typei1e5:piecei0ee"));
        let long = [&b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee"[..], &[0; METADATA_PIECE + 1]].concat();
        assert!(MetadataMessage::decode(long.into()).is_err());
        assert!(ExtensionHandshake::decode(b"d1:md11:ut_metadatai256eee").is_err());
        assert!(ExtensionHandshake::decode(b"d13:metadata_sizei-1ee").is_err());
        let off = ExtensionHandshake::decode(b"d1:md11:ut_metadatai0eee").unwrap();
        assert_eq!(off.ut_metadata, None);
    }

    #[test]
    fn fetches_and_verifies_from_an_honest_peer() {
        let (data, hash) = metadata(3 * METADATA_PIECE + 100);
        let mut f = MetadataFetch::new(hash);
        f.peer_connected(1, true);
        let (_, ours) = f.poll_message().unwrap();
        let PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload } = ours else { panic!("{ours:?}") };
        assert_eq!(ExtensionHandshake::decode(&payload).unwrap().ut_metadata, Some(UT_METADATA));
        f.on_message(0, 1, offer(data.len() as u64));
        assert!(serve(&mut f, &[(1, &data)]).is_empty());
        assert_eq!(f.poll_done(), Some(data));
    }

    #[test]
    fn a_liar_is_cut_off_and_the_next_peer_asked() {
        let (data, hash) = metadata(2 * METADATA_PIECE);
        let mut f = MetadataFetch::new(hash);
        for peer in [1, 2] {
            f.peer_connected(peer, true);
            f.on_message(0, peer, offer(data.len() as u64));
        }
        let mut lie = data.to_vec();
        lie[5] ^= 1;
        let closed = serve(&mut f, &[(1, &lie.into()), (2, &data)]);
        assert_eq!(closed, [(1, MetadataError::WrongMetadata.to_string())]);
        assert_eq!(f.poll_done(), Some(data));
    }

    #[test]
    fn sizes_refusals_and_timeouts_cut_peers_off() {
        let (data, hash) = metadata(100);
        let mut f = MetadataFetch::new(hash);
        f.peer_connected(1, false);
        f.peer_connected(2, true);
        f.peer_connected(3, true);
        f.peer_connected(4, true);
        f.on_message(0, 2, offer(MAX_METADATA + 1));
        f.on_message(0, 3, PeerMessage::Extended { id: 0, payload: Bytes::from_static(b"d1:mdee") });
        let closed: Vec<_> = std::iter::from_fn(|| f.poll_close()).collect();
        let want = [
            (1, MetadataError::NoExtensions),
            (2, MetadataError::TooLarge(MAX_METADATA + 1)),
            (3, MetadataError::NoMetadata),
        ]
        .map(|(p, e)| (p, e.to_string()));
        assert_eq!(closed, want);
        // Peer 4 sits on the request, then refuses it when asked again.
        f.on_message(0, 4, offer(100));
        f.handle_timeout(REQUEST_TIMEOUT);
        assert_eq!(f.poll_close(), Some((4, MetadataError::Timeout.to_string())));
        f.peer_connected(5, true);
        f.on_message(0, 5, offer(100));
        f.on_message(0, 5, PeerMessage::Extended { id: UT_METADATA, payload: MetadataMessage::Reject(0).encode() });
        assert_eq!(f.poll_close(), Some((5, MetadataError::Rejected(0).to_string())));
        // Data nobody asked for, or of the wrong size, gives nothing out.
        f.peer_connected(6, true);
        f.on_message(0, 6, offer(100));
        let wrong = MetadataMessage::Data { piece: 0, total_size: 100, data: data.slice(..99) };
        f.on_message(0, 6, PeerMessage::Extended { id: UT_METADATA, payload: wrong.encode() });
        assert!(f.poll_close().is_some());
        assert_eq!(f.poll_done(), None);
    }
}
