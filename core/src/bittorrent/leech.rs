//! Downloading a torrent from BitTorrent peers (`torronto add`): which blocks to ask
//! whom, pieces put together and checked against their SHA-1, peers that time out or
//! lie cut off. Sans-IO: the driver reports connections and messages with the time,
//! and takes out messages to send, verified pieces to write, and peers to close.
//!
//! Pieces are taken in order, 16 KiB blocks, at most [`REQUESTS_PER_PEER`] in flight
//! to one unchoked peer; partly received pieces are held in memory, at most
//! [`MAX_PARTIAL_BYTES`] of them (one piece at least), so memory is bounded whatever
//! the torrent. A piece that fails its hash is dropped, and a peer that sent all of
//! it is cut off (one that sent part of it, after [`MAX_STRIKES`] such pieces).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use sha1::{Digest as _, Sha1};

use super::metainfo::Info;
use super::swarm::{Millis, PeerKey, Swarm, REQUEST_TIMEOUT};
use super::wire::{BlockRef, PeerMessage};

/// Bytes asked for in one request (what every client serves).
pub const BLOCK: u32 = 16 * 1024;
/// Requests in flight to one peer.
pub const REQUESTS_PER_PEER: usize = 16;
/// Partly received pieces held at once, in bytes.
pub const MAX_PARTIAL_BYTES: u64 = 32 << 20;
/// Bad pieces a peer may have had a hand in before it is cut off.
pub const MAX_STRIKES: u32 = 2;

/// Why a peer was cut off.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeechError {
    #[error("bitfield of {0} bytes for a torrent of another size")]
    BadBitfield(usize),
    #[error("have for piece {0}, past the end")]
    BadHave(u32),
    #[error("sent piece {0}, which fails its SHA-1")]
    BadPiece(u32),
    #[error("left a request unanswered for {}s", REQUEST_TIMEOUT / 1000)]
    Timeout,
}

/// A piece being put together.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    /// Per block: received, or asked of whom since when.
    blocks: Vec<BlockState>,
    missing: usize,
    /// Peers that sent any of it.
    from: BTreeSet<PeerKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockState {
    Wanted,
    Asked(PeerKey, Millis),
    Got,
}

#[derive(Debug, Default)]
struct Peer {
    has: Vec<bool>,
    choked: bool,
    /// Blocks asked of it: (piece, begin).
    asked: BTreeSet<(u32, u32)>,
    strikes: u32,
}

#[derive(Debug)]
pub struct Leech {
    info: Info,
    done: Vec<bool>,
    done_count: u32,
    done_bytes: u64,
    /// No piece below this is missing and unstarted (where picking starts).
    first_missing: u32,
    partial: BTreeMap<u32, Partial>,
    peers: BTreeMap<PeerKey, Peer>,
    out: VecDeque<(PeerKey, PeerMessage)>,
    verified: VecDeque<(u32, Bytes)>,
    closing: VecDeque<(PeerKey, LeechError)>,
}

impl Leech {
    pub fn new(info: Info) -> Self {
        let n = info.pieces.len();
        Leech {
            info,
            done: vec![false; n],
            done_count: 0,
            done_bytes: 0,
            first_missing: 0,
            partial: BTreeMap::new(),
            peers: BTreeMap::new(),
            out: VecDeque::new(),
            verified: VecDeque::new(),
            closing: VecDeque::new(),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done_count as usize == self.done.len()
    }

    /// Bytes verified, of how many.
    pub fn progress(&self) -> (u64, u64) {
        (self.done_bytes, self.info.length)
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn message(&mut self, now: Millis, peer: PeerKey, msg: PeerMessage) -> Result<(), LeechError> {
        let n = self.done.len();
        let Some(p) = self.peers.get_mut(&peer) else { return Ok(()) };
        match msg {
            PeerMessage::Bitfield(bits) => {
                if bits.len() != n.div_ceil(8) {
                    return Err(LeechError::BadBitfield(bits.len()));
                }
                for (i, has) in p.has.iter_mut().enumerate() {
                    *has = bits[i / 8] & (0x80 >> (i % 8)) != 0;
                }
            }
            PeerMessage::Have(i) => *p.has.get_mut(i as usize).ok_or(LeechError::BadHave(i))? = true,
            PeerMessage::Choke => {
                p.choked = true;
                let asked = std::mem::take(&mut p.asked);
                self.release(&asked);
            }
            PeerMessage::Unchoke => p.choked = false,
            PeerMessage::Piece { index, begin, block } if p.asked.remove(&(index, begin)) => {
                self.on_block(peer, index, begin, &block)?;
            }
            // A piece not asked (any more) is dropped: it cost no memory beyond the
            // message. We serve nothing while downloading; extensions are ignored.
            _ => {}
        }
        self.fill(now, peer);
        Ok(())
    }

    /// A verified piece to write: its index and bytes.
    pub fn poll_piece(&mut self) -> Option<(u32, Bytes)> {
        self.verified.pop_front()
    }

    fn cut_off(&mut self, peer: PeerKey, why: LeechError) {
        if self.peers.contains_key(&peer) {
            self.peer_gone(peer);
            self.closing.push_back((peer, why));
        }
    }

    fn release(&mut self, asked: &BTreeSet<(u32, u32)>) {
        for &(index, begin) in asked {
            if let Some(b) = self.partial.get_mut(&index).and_then(|p| p.blocks.get_mut((begin / BLOCK) as usize)) {
                if matches!(b, BlockState::Asked(..)) {
                    *b = BlockState::Wanted;
                }
            }
        }
    }

    fn on_block(&mut self, peer: PeerKey, index: u32, begin: u32, block: &[u8]) -> Result<(), LeechError> {
        let size = self.info.piece_size(index) as usize;
        let Some(part) = self.partial.get_mut(&index) else { return Ok(()) };
        let slot = (begin / BLOCK) as usize;
        let want = BLOCK.min(size as u32 - begin) as usize;
        if block.len() != want || part.blocks[slot] == BlockState::Got {
            // The wrong length for what was asked: asked again of someone.
            part.blocks[slot] = BlockState::Wanted;
            return Ok(());
        }
        part.data[begin as usize..begin as usize + want].copy_from_slice(block);
        part.blocks[slot] = BlockState::Got;
        part.missing -= 1;
        part.from.insert(peer);
        if part.missing > 0 {
            return Ok(());
        }
        let part = self.partial.remove(&index).expect("looked up above");
        if <[u8; 20]>::from(Sha1::digest(&part.data)) == self.info.pieces[index as usize] {
            self.done[index as usize] = true;
            self.done_count += 1;
            self.done_bytes += size as u64;
            self.verified.push_back((index, Bytes::from(part.data)));
            return Ok(());
        }
        // Sent all of it: a liar. Had a hand in it: a strike.
        if part.from.len() == 1 {
            return Err(LeechError::BadPiece(index));
        }
        for other in part.from {
            let out = self.peers.get_mut(&other).is_some_and(|p| {
                p.strikes += 1;
                p.strikes >= MAX_STRIKES
            });
            if out {
                self.cut_off(other, LeechError::BadPiece(index));
            }
        }
        Ok(())
    }

    /// Asks `peer` for more, if it is unchoked and has what we lack.
    fn fill(&mut self, now: Millis, peer: PeerKey) {
        loop {
            let Some(p) = self.peers.get(&peer) else { return };
            if p.choked || p.asked.len() >= REQUESTS_PER_PEER {
                return;
            }
            let Some((index, slot)) = self.pick(peer) else { return };
            let size = self.info.piece_size(index);
            let begin = slot as u32 * BLOCK;
            let length = BLOCK.min(size - begin);
            self.partial.get_mut(&index).expect("picked").blocks[slot] = BlockState::Asked(peer, now);
            self.peers.get_mut(&peer).expect("looked up above").asked.insert((index, begin));
            self.out.push_back((peer, PeerMessage::Request(BlockRef { index, begin, length })));
        }
    }

    /// The next block to ask `peer` for: in a piece already started, else the first
    /// piece it has that nobody is on, if memory allows another.
    fn pick(&mut self, peer: PeerKey) -> Option<(u32, usize)> {
        let has = &self.peers[&peer].has;
        for (&index, part) in &self.partial {
            if has[index as usize] {
                if let Some(slot) = part.blocks.iter().position(|b| *b == BlockState::Wanted) {
                    return Some((index, slot));
                }
            }
        }
        let held = self.partial.len() as u64 * u64::from(self.info.piece_length);
        if !self.partial.is_empty() && held + u64::from(self.info.piece_length) > MAX_PARTIAL_BYTES {
            return None;
        }
        while (self.first_missing as usize) < self.done.len() && self.done[self.first_missing as usize] {
            self.first_missing += 1;
        }
        let index = (self.first_missing..self.done.len() as u32)
            .find(|&i| has[i as usize] && !self.done[i as usize] && !self.partial.contains_key(&i))?;
        let size = self.info.piece_size(index);
        let blocks = size.div_ceil(BLOCK) as usize;
        let part = Partial {
            data: vec![0; size as usize],
            blocks: vec![BlockState::Wanted; blocks],
            missing: blocks,
            from: BTreeSet::new(),
        };
        self.partial.insert(index, part);
        Some((index, 0))
    }
}

impl Swarm for Leech {
    /// We are interested (and stay choking it: we serve nothing while downloading).
    fn peer_connected(&mut self, peer: PeerKey, _extensions: bool) {
        let has = vec![false; self.done.len()];
        self.peers.insert(peer, Peer { has, choked: true, ..Peer::default() });
        self.out.push_back((peer, PeerMessage::Interested));
    }

    fn peer_gone(&mut self, peer: PeerKey) {
        if let Some(p) = self.peers.remove(&peer) {
            self.release(&p.asked);
        }
    }

    fn on_message(&mut self, now: Millis, peer: PeerKey, msg: PeerMessage) {
        if let Err(e) = self.message(now, peer, msg) {
            self.cut_off(peer, e);
        }
    }

    fn handle_timeout(&mut self, now: Millis) {
        let mut late = BTreeSet::new();
        for part in self.partial.values() {
            for b in &part.blocks {
                if let BlockState::Asked(peer, at) = b {
                    if now.saturating_sub(*at) >= REQUEST_TIMEOUT {
                        late.insert(*peer);
                    }
                }
            }
        }
        for peer in late {
            self.cut_off(peer, LeechError::Timeout);
        }
        let peers: Vec<PeerKey> = self.peers.keys().copied().collect();
        peers.into_iter().for_each(|p| self.fill(now, p));
    }

    fn poll_message(&mut self) -> Option<(PeerKey, PeerMessage)> {
        self.out.pop_front()
    }

    fn poll_close(&mut self) -> Option<(PeerKey, String)> {
        self.closing.pop_front().map(|(peer, why)| (peer, why.to_string()))
    }

    fn verified(&self) -> u64 {
        self.done_bytes
    }

    fn left(&self) -> u64 {
        self.info.length - self.done_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bittorrent::metainfo::PieceHasher;
    use crate::bittorrent::wire::full_bitfield;

    fn torrent(len: usize) -> (Vec<u8>, Info) {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let mut h = PieceHasher::new(32768);
        h.update(&data);
        (data, h.finish("t".into()))
    }

    /// Answers every request `peer` was sent with `data` (bytes at `corrupt` flipped).
    fn serve(l: &mut Leech, now: Millis, data: &[u8], corrupt: Option<usize>) -> Vec<(PeerKey, String)> {
        while let Some((peer, msg)) = l.poll_message() {
            if let PeerMessage::Request(b) = msg {
                let start = b.index as usize * 32768 + b.begin as usize;
                let mut block = data[start..start + b.length as usize].to_vec();
                if let Some(at) = corrupt.filter(|at| (start..start + block.len()).contains(at)) {
                    block[at - start] ^= 1;
                }
                let piece = PeerMessage::Piece { index: b.index, begin: b.begin, block: block.into() };
                l.on_message(now, peer, piece);
            }
        }
        std::iter::from_fn(|| l.poll_close()).collect()
    }

    fn seeder(l: &mut Leech, peer: PeerKey, pieces: u32) {
        l.peer_connected(peer, false);
        l.on_message(0, peer, PeerMessage::Bitfield(full_bitfield(pieces)));
        l.on_message(0, peer, PeerMessage::Unchoke);
    }

    fn assembled(l: &mut Leech, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        while let Some((i, bytes)) = l.poll_piece() {
            out[i as usize * 32768..i as usize * 32768 + bytes.len()].copy_from_slice(&bytes);
        }
        out
    }

    #[test]
    fn downloads_from_an_honest_seeder() {
        let (data, info) = torrent(5 * 32768 + 1000);
        let mut l = Leech::new(info);
        seeder(&mut l, 1, 6);
        assert_eq!(l.poll_message(), Some((1, PeerMessage::Interested)));
        while !l.is_complete() {
            assert!(serve(&mut l, 0, &data, None).is_empty());
        }
        assert_eq!(l.progress(), (data.len() as u64, data.len() as u64));
        assert_eq!(assembled(&mut l, data.len()), data);
    }

    #[test]
    fn a_lying_seeder_is_cut_off_and_its_bytes_never_come_out() {
        let (data, info) = torrent(3 * 32768);
        let mut l = Leech::new(info);
        seeder(&mut l, 1, 3);
        let closed = serve(&mut l, 0, &data, Some(40_000));
        assert_eq!(closed, [(1, LeechError::BadPiece(1).to_string())]);
        assert_eq!(l.peer_count(), 0);
        // Piece 0 came out, piece 1 did not; an honest peer finishes it.
        seeder(&mut l, 2, 3);
        while !l.is_complete() {
            assert!(serve(&mut l, 0, &data, None).is_empty());
        }
        assert_eq!(assembled(&mut l, data.len()), data);
    }

    #[test]
    fn choke_and_timeouts_give_blocks_back() {
        let (data, info) = torrent(2 * 32768);
        let mut l = Leech::new(info);
        seeder(&mut l, 1, 2);
        let asked = std::iter::from_fn(|| l.poll_message()).filter(|(_, m)| matches!(m, PeerMessage::Request(_)));
        assert_eq!(asked.count(), 4);
        l.on_message(0, 1, PeerMessage::Choke);
        seeder(&mut l, 2, 2);
        // Peer 2 gets every block peer 1 gave back, then sits on them.
        let asked =
            std::iter::from_fn(|| l.poll_message()).filter(|(p, m)| *p == 2 && matches!(m, PeerMessage::Request(_)));
        assert_eq!(asked.count(), 4);
        l.handle_timeout(REQUEST_TIMEOUT);
        assert_eq!(l.poll_close(), Some((2, LeechError::Timeout.to_string())));
        l.on_message(REQUEST_TIMEOUT, 1, PeerMessage::Unchoke);
        while !l.is_complete() {
            assert!(serve(&mut l, REQUEST_TIMEOUT, &data, None).is_empty());
        }
    }

    #[test]
    fn bad_bitfields_haves_and_unasked_pieces() {
        let (_, info) = torrent(10 * 32768);
        let mut l = Leech::new(info);
        for peer in 1..=3 {
            l.peer_connected(peer, false);
        }
        l.on_message(0, 1, PeerMessage::Bitfield(full_bitfield(20)));
        assert_eq!(l.poll_close(), Some((1, LeechError::BadBitfield(3).to_string())));
        l.on_message(0, 2, PeerMessage::Have(10));
        assert_eq!(l.poll_close(), Some((2, LeechError::BadHave(10).to_string())));
        let stray = PeerMessage::Piece { index: 0, begin: 0, block: Bytes::from(vec![0; 16384]) };
        l.on_message(0, 3, stray);
        assert_eq!((l.poll_close(), l.poll_piece(), l.peer_count()), (None, None, 1));
    }

    #[test]
    fn partial_pieces_are_bounded() {
        // 16 MiB pieces (1,024 blocks), and peers enough to ask for 200 × 16 blocks.
        let pieces = vec![[0; 20]; 10];
        let info = Info { name: "t".into(), length: 10 * (16 << 20), piece_length: 16 << 20, pieces, files: vec![] };
        let mut l = Leech::new(info);
        for peer in 0..200 {
            seeder(&mut l, peer, 10);
        }
        assert_eq!(l.partial.len() as u64, MAX_PARTIAL_BYTES / (16 << 20));
    }
}
