//! One BitTorrent peer downloading from us, a seeder of the whole file: what to answer
//! each message, and which blocks to send. The driver reads the bytes and writes them.

use std::collections::VecDeque;

use super::metainfo::Info;
use super::wire::{full_bitfield, BlockRef, PeerMessage};

/// Most requests a peer may have queued with us; more is a peer ignoring our pace (common
/// clients keep well under this), and the connection is closed.
pub const MAX_QUEUED: usize = 256;

/// Why a peer was cut off.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("request outside the file: {0:?}")]
    OutOfRange(BlockRef),
    #[error("more than {MAX_QUEUED} requests queued")]
    TooManyRequests,
    #[error("a seeder was sent a piece")]
    UnexpectedPiece,
}

/// A block to send: `length` bytes of the file at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub block: BlockRef,
    pub offset: u64,
}

#[derive(Debug)]
pub struct SeedSession {
    piece_length: u32,
    pieces: u32,
    length: u64,
    queue: VecDeque<BlockRef>,
}

impl SeedSession {
    pub fn new(info: &Info) -> Self {
        SeedSession {
            piece_length: info.piece_length,
            pieces: info.piece_count(),
            length: info.length,
            queue: VecDeque::new(),
        }
    }

    /// What follows our handshake: every piece is held, and the peer may ask at once
    /// (every peer is unchoked: the node serves all it admits).
    pub fn opening(&self) -> [PeerMessage; 2] {
        [PeerMessage::Bitfield(full_bitfield(self.pieces)), PeerMessage::Unchoke]
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
            // A leecher's interest, haves and bitfield change nothing for a seeder that
            // unchokes everyone; unknown extensions are ignored as BEP 3 asks.
            _ => {}
        }
        Ok(())
    }

    /// The next block to send, in the order asked.
    pub fn next_block(&mut self) -> Option<Block> {
        let b = self.queue.pop_front()?;
        Some(Block { block: b, offset: self.locate(b).expect("checked when queued") })
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
    use super::*;

    fn info() -> Info {
        // Three pieces of 32 KiB, the last one 100 bytes.
        let pieces = vec![[0; 20]; 3];
        Info { name: "f".into(), length: 2 * 32768 + 100, piece_length: 32768, pieces, files: Vec::new() }
    }

    fn req(index: u32, begin: u32, length: u32) -> PeerMessage {
        PeerMessage::Request(BlockRef { index, begin, length })
    }

    #[test]
    fn serves_requests_in_order_and_honours_cancel() {
        let mut s = SeedSession::new(&info());
        assert_eq!(s.opening()[0], PeerMessage::Bitfield(full_bitfield(3)));
        s.on_message(PeerMessage::Interested).unwrap();
        s.on_message(req(1, 16384, 16384)).unwrap();
        s.on_message(req(2, 0, 100)).unwrap();
        s.on_message(req(0, 0, 16384)).unwrap();
        s.on_message(PeerMessage::Cancel(BlockRef { index: 0, begin: 0, length: 16384 })).unwrap();
        assert_eq!(s.next_block().unwrap().offset, 32768 + 16384);
        assert_eq!(s.next_block().unwrap().offset, 65536);
        assert_eq!(s.next_block(), None);
    }

    #[test]
    fn refuses_anything_outside_the_file() {
        let mut s = SeedSession::new(&info());
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
        let mut s = SeedSession::new(&info());
        for _ in 0..MAX_QUEUED {
            s.on_message(req(0, 0, 16)).unwrap();
        }
        assert_eq!(s.on_message(req(0, 0, 16)), Err(SeedError::TooManyRequests));
    }
}
