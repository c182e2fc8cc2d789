//! One BitTorrent peer downloading from us, a seeder of the whole file: what to answer
//! each message (the info dictionary itself to a peer that came by a magnet link, BEP 9),
//! and which blocks to send, laid out as piece messages in a [`PieceBatch`]. The driver
//! reads the blocks' bytes into their places and writes the batch.

use std::collections::VecDeque;

use bytes::Bytes;

use super::metadata::{answer, ExtensionHandshake, MetadataError, MetadataMessage, EXTENSION_HANDSHAKE, UT_METADATA};
use super::metainfo::Info;
use super::wire::{full_bitfield, piece_header, BlockRef, PeerMessage, MAX_BLOCK};

/// Most requests a peer may have queued with us; more is a peer ignoring our pace (common
/// clients keep well under this), and the connection is closed.
pub const MAX_QUEUED: usize = 256;

/// Most block bytes sent as one batch: one read pass and one write per batch instead of
/// per block, and the most memory a peer holds of ours while it is sent.
pub const BATCH_BYTES: usize = 256 * 1024;
const _: () = assert!(MAX_BLOCK as usize <= BATCH_BYTES);

/// Why a peer was cut off.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("request outside the file: {0:?}")]
    OutOfRange(BlockRef),
    #[error("more than {MAX_QUEUED} requests queued")]
    TooManyRequests,
    #[error("a seeder was sent a piece")]
    UnexpectedPiece,
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// Piece messages sent together, laid end to end in one buffer kept from batch to batch:
/// each header in place, each block's bytes to be read from the file into its slot.
#[derive(Debug, Default)]
pub struct PieceBatch {
    /// Never shrinks, so a reused buffer is not zeroed again; `used` bytes are this batch.
    buf: Vec<u8>,
    used: usize,
    slots: Vec<Slot>,
}

/// One block of a batch: `len` bytes of the file at `offset`, into `buf[at..at + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    offset: u64,
    at: usize,
    len: usize,
}

impl PieceBatch {
    fn clear(&mut self) {
        self.used = 0;
        self.slots.clear();
    }

    fn push(&mut self, b: BlockRef, offset: u64) {
        let (at, len) = (self.used + 13, b.length as usize);
        if self.buf.len() < at + len {
            self.buf.resize(at + len, 0);
        }
        self.buf[self.used..at].copy_from_slice(&piece_header(b.index, b.begin, b.length));
        self.slots.push(Slot { offset, at, len });
        self.used = at + len;
    }

    /// Fills every block's slot with `read(offset, slot)`, which must fill it whole with
    /// the file's bytes at `offset`.
    pub fn fill<E>(&mut self, mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>) -> Result<(), E> {
        for s in &self.slots {
            read(s.offset, &mut self.buf[s.at..s.at + s.len])?;
        }
        Ok(())
    }

    /// The batch's piece messages, to write as they are once filled.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.used]
    }

    /// The length of each block in the batch (what an upload pacer counts, block by block).
    pub fn block_lengths(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().map(|s| s.len as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[derive(Debug)]
pub struct SeedSession {
    piece_length: u32,
    pieces: u32,
    length: u64,
    queue: VecDeque<BlockRef>,
    /// The info dictionary as hashed, for the metadata exchange.
    metadata: Bytes,
    /// The peer's id for `ut_metadata`, once its extension handshake named one.
    their_ut_metadata: Option<u8>,
    /// Metadata answers to send, at most [`MAX_QUEUED`].
    replies: VecDeque<PeerMessage>,
}

impl SeedSession {
    /// A session seeding `info`, whose encoding (as hashed) is `metadata`.
    pub fn new(info: &Info, metadata: Bytes) -> Self {
        SeedSession {
            piece_length: info.piece_length,
            pieces: info.piece_count(),
            length: info.length,
            queue: VecDeque::new(),
            metadata,
            their_ut_metadata: None,
            replies: VecDeque::new(),
        }
    }

    /// What follows our handshake: every piece is held, the info dictionary is offered
    /// to a peer that speaks the extension protocol (`extensions`), and the peer may
    /// ask at once (every peer is unchoked: the node serves all it admits).
    pub fn opening(&self, extensions: bool) -> Vec<PeerMessage> {
        let mut out = vec![PeerMessage::Bitfield(full_bitfield(self.pieces))];
        if extensions {
            let ours =
                ExtensionHandshake { ut_metadata: Some(UT_METADATA), metadata_size: Some(self.metadata.len() as u64) };
            out.push(PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload: ours.encode() });
        }
        out.push(PeerMessage::Unchoke);
        out
    }

    /// The next message to send before any block (a metadata answer).
    pub fn poll_message(&mut self) -> Option<PeerMessage> {
        self.replies.pop_front()
    }

    /// Takes in one message from the peer.
    pub fn on_message(&mut self, msg: PeerMessage) -> Result<(), SeedError> {
        match msg {
            PeerMessage::Request(b) => {
                self.locate(b)?;
                if self.queue.len() >= MAX_QUEUED {
                    return Err(SeedError::TooManyRequests);
                }
                self.queue.push_back(b);
            }
            PeerMessage::Cancel(b) => self.queue.retain(|q| *q != b),
            PeerMessage::Piece { .. } => return Err(SeedError::UnexpectedPiece),
            PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload } => {
                self.their_ut_metadata = ExtensionHandshake::decode(&payload)?.ut_metadata;
            }
            PeerMessage::Extended { id: UT_METADATA, payload } => {
                // A request from a peer that named no id for the answer goes unanswered.
                let (MetadataMessage::Request(piece), Some(id)) =
                    (MetadataMessage::decode(payload)?, self.their_ut_metadata)
                else {
                    return Ok(());
                };
                if self.replies.len() >= MAX_QUEUED {
                    return Err(SeedError::TooManyRequests);
                }
                self.replies.push_back(PeerMessage::Extended { id, payload: answer(&self.metadata, piece).encode() });
            }
            // A leecher's interest, haves and bitfield change nothing for a seeder that
            // unchokes everyone; unknown messages and extensions are ignored as BEP 3 asks.
            _ => {}
        }
        Ok(())
    }

    /// Lays the next blocks to send, in the order asked, into `batch` (emptied first): at
    /// most [`BATCH_BYTES`] of them, and none when none is queued.
    pub fn next_batch(&mut self, batch: &mut PieceBatch) {
        batch.clear();
        let mut bytes = 0;
        while let Some(&b) = self.queue.front() {
            bytes += b.length as usize;
            if bytes > BATCH_BYTES {
                break;
            }
            self.queue.pop_front();
            batch.push(b, self.locate(b).expect("checked when queued"));
        }
    }

    /// Where block `b` starts in the file, if it lies wholly inside one piece of it.
    fn locate(&self, b: BlockRef) -> Result<u64, SeedError> {
        let piece_start = u64::from(b.index) * u64::from(self.piece_length);
        let piece_size = self.length.saturating_sub(piece_start).min(u64::from(self.piece_length));
        let end = u64::from(b.begin) + u64::from(b.length);
        if b.index >= self.pieces || b.length == 0 || end > piece_size {
            return Err(SeedError::OutOfRange(b));
        }
        Ok(piece_start + u64::from(b.begin))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::bittorrent::wire::decode_message;

    fn info() -> Info {
        // Three pieces of 32 KiB, the last one 100 bytes.
        let pieces = vec![[0; 20]; 3];
        Info { name: "f".into(), length: 2 * 32768 + 100, piece_length: 32768, pieces, files: Vec::new() }
    }

    fn req(index: u32, begin: u32, length: u32) -> PeerMessage {
        PeerMessage::Request(BlockRef { index, begin, length })
    }

    fn session() -> SeedSession {
        let info = info();
        SeedSession::new(&info, info.encode().into())
    }

    #[test]
    fn serves_requests_in_order_and_honours_cancel() {
        let mut s = session();
        assert_eq!(s.opening(false), [PeerMessage::Bitfield(full_bitfield(3)), PeerMessage::Unchoke]);
        s.on_message(PeerMessage::Interested).unwrap();
        s.on_message(req(1, 16384, 16384)).unwrap();
        s.on_message(req(2, 0, 100)).unwrap();
        s.on_message(req(0, 0, 16384)).unwrap();
        s.on_message(PeerMessage::Cancel(BlockRef { index: 0, begin: 0, length: 16384 })).unwrap();
        let mut batch = PieceBatch::default();
        let blocks = [BlockRef { index: 1, begin: 16384, length: 16384 }, BlockRef { index: 2, begin: 0, length: 100 }];
        assert_eq!(sent(&mut s, &mut batch), blocks);
        assert_eq!(sent(&mut s, &mut batch), []);
    }

    /// The blocks of the next batch (laid into `batch`, as the driver reuses it), read back from its piece messages, each block filled
    /// from a file whose every byte is the low byte of its offset and checked against it.
    fn sent(s: &mut SeedSession, batch: &mut PieceBatch) -> Vec<BlockRef> {
        s.next_batch(batch);
        batch
            .fill(|offset, slot| {
                slot.iter_mut().zip(offset..).for_each(|(b, at)| *b = at as u8);
                Ok::<_, ()>(())
            })
            .unwrap();
        let (mut bytes, mut blocks) = (BytesMut::from(batch.bytes()), Vec::new());
        while let Some(msg) = decode_message(&mut bytes).unwrap() {
            let PeerMessage::Piece { index, begin, block } = msg else { panic!("{msg:?}") };
            let offset = u64::from(index) * u64::from(s.piece_length) + u64::from(begin);
            assert!(block.iter().zip(offset..).all(|(b, at)| *b == at as u8), "block {index} {begin}");
            blocks.push(BlockRef { index, begin, length: block.len() as u32 });
        }
        assert!(bytes.is_empty(), "a batch is whole piece messages");
        assert!(batch.block_lengths().eq(blocks.iter().map(|b| u64::from(b.length))));
        assert_eq!(batch.is_empty(), blocks.is_empty());
        blocks
    }

    #[test]
    fn batches_are_bounded_and_reuse_their_buffer() {
        let pieces = vec![[0; 20]; 4];
        let info = Info { name: "f".into(), length: 4 << 20, piece_length: 1 << 20, pieces, files: Vec::new() };
        let mut s = SeedSession::new(&info, info.encode().into());
        let per_batch = (BATCH_BYTES / 16384) as u32;
        let blocks: Vec<_> =
            (0..2 * per_batch + 1).map(|i| BlockRef { index: i / 64, begin: i % 64 * 16384, length: 16384 }).collect();
        blocks.iter().for_each(|b| s.on_message(PeerMessage::Request(*b)).unwrap());
        let mut batch = PieceBatch::default();
        assert_eq!(sent(&mut s, &mut batch), blocks[..per_batch as usize]);
        assert_eq!(sent(&mut s, &mut batch), blocks[per_batch as usize..2 * per_batch as usize]);
        assert_eq!(sent(&mut s, &mut batch), blocks[2 * per_batch as usize..]);
        s.next_batch(&mut batch);
        assert!(batch.is_empty() && batch.bytes().is_empty());
        // Blocks of any size up to the limit: a batch stops before the one that would pass it.
        let big = BlockRef { index: 3, begin: 0, length: MAX_BLOCK };
        let small = BlockRef { index: 2, begin: 5, length: 100 };
        [small, big, big].iter().for_each(|b| s.on_message(PeerMessage::Request(*b)).unwrap());
        assert_eq!(sent(&mut s, &mut batch), [small, big]);
        assert_eq!(sent(&mut s, &mut batch), [big]);
    }

    #[test]
    fn refuses_anything_outside_the_file() {
        let mut s = session();
        for (i, b, l) in
            [(3, 0, 1), (2, 0, 101), (2, 100, 1), (0, 32768, 1), (0, 16384, 16385), (0, 0, 0), (0, u32::MAX, 2)]
        {
            assert!(matches!(s.on_message(req(i, b, l)), Err(SeedError::OutOfRange(_))), "{i} {b} {l}");
        }
        let piece = PeerMessage::Piece { index: 0, begin: 0, block: bytes::Bytes::new() };
        assert_eq!(s.on_message(piece), Err(SeedError::UnexpectedPiece));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut s = session();
        for _ in 0..MAX_QUEUED {
            s.on_message(req(0, 0, 16)).unwrap();
        }
        assert_eq!(s.on_message(req(0, 0, 16)), Err(SeedError::TooManyRequests));
    }

    #[test]
    fn serves_the_info_dictionary_to_peers_that_ask() {
        let mut s = session();
        let metadata = Bytes::from(info().encode());
        let opening = s.opening(true);
        let PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload } = &opening[1] else { panic!("{opening:?}") };
        let ours = ExtensionHandshake::decode(payload).unwrap();
        assert_eq!((ours.ut_metadata, ours.metadata_size), (Some(UT_METADATA), Some(metadata.len() as u64)));
        let ask = |piece| PeerMessage::Extended { id: UT_METADATA, payload: MetadataMessage::Request(piece).encode() };
        // Before the peer names its id, nothing can be answered.
        s.on_message(ask(0)).unwrap();
        assert_eq!(s.poll_message(), None);
        let theirs = ExtensionHandshake { ut_metadata: Some(9), metadata_size: None };
        s.on_message(PeerMessage::Extended { id: EXTENSION_HANDSHAKE, payload: theirs.encode() }).unwrap();
        s.on_message(ask(0)).unwrap();
        s.on_message(ask(1)).unwrap();
        let data = MetadataMessage::Data { piece: 0, total_size: metadata.len() as u64, data: metadata.clone() };
        assert_eq!(s.poll_message(), Some(PeerMessage::Extended { id: 9, payload: data.encode() }));
        assert_eq!(
            s.poll_message(),
            Some(PeerMessage::Extended { id: 9, payload: MetadataMessage::Reject(1).encode() })
        );
        let junk = PeerMessage::Extended { id: UT_METADATA, payload: Bytes::from_static(b"x") };
        assert!(matches!(s.on_message(junk), Err(SeedError::Metadata(_))));
        for _ in 0..MAX_QUEUED {
            s.on_message(ask(0)).unwrap();
        }
        assert_eq!(s.on_message(ask(0)), Err(SeedError::TooManyRequests));
    }
}
