//! The BEP 3 peer wire: the 68-byte handshake, then length-prefixed messages. Every
//! length is checked before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::metainfo::Sha1Hash;

/// Bytes of a handshake: length 19, "BitTorrent protocol", 8 reserved, info-hash, peer id.
pub const HANDSHAKE_LEN: usize = 68;
const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Largest block a peer may request or send: clients ask for 16 KiB; 128 KiB is the most
/// any asks for, and a request for more is refused (BEP 3's own advice).
pub const MAX_BLOCK: u32 = 128 * 1024;
/// Largest message: a piece message of [`MAX_BLOCK`], or a bitfield of 1 Mi pieces.
pub const MAX_MESSAGE: usize = 9 + MAX_BLOCK as usize;

/// Why bytes from a BitTorrent peer were refused; the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerWireError {
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    #[error("message of {0} bytes is over the limit")]
    TooLong(u64),
    #[error("message {id} has the wrong length {len}")]
    BadLength { id: u8, len: usize },
    #[error("block of {0} bytes is over the limit of {MAX_BLOCK}")]
    BlockTooLarge(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: Sha1Hash,
    pub peer_id: [u8; 20],
}

/// The reserved bit of BEP 10's extension protocol (byte 5, 0x10).
const EXTENSION_BYTE: usize = 5;
const EXTENSION_BIT: u8 = 0x10;

impl Handshake {
    /// Ours: the extension protocol (BEP 10, for BEP 9's metadata exchange) and no
    /// other bit (no DHT, no fast extension).
    pub fn new(info_hash: Sha1Hash, peer_id: [u8; 20]) -> Self {
        let mut reserved = [0; 8];
        reserved[EXTENSION_BYTE] = EXTENSION_BIT;
        Handshake { reserved, info_hash, peer_id }
    }

    /// Whether this side speaks the extension protocol (BEP 10).
    pub fn supports_extensions(&self) -> bool {
        self.reserved[EXTENSION_BYTE] & EXTENSION_BIT != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    pub fn decode(bytes: &[u8; HANDSHAKE_LEN]) -> Result<Self, PeerWireError> {
        if bytes[0] != 19 || &bytes[1..20] != PROTOCOL {
            return Err(PeerWireError::BadHandshake);
        }
        let mut h = Handshake { reserved: [0; 8], info_hash: [0; 20], peer_id: [0; 20] };
        h.reserved.copy_from_slice(&bytes[20..28]);
        h.info_hash.copy_from_slice(&bytes[28..48]);
        h.peer_id.copy_from_slice(&bytes[48..68]);
        Ok(h)
    }
}

/// The message id of BEP 10 extension messages.
const EXTENDED: u8 = 20;

/// A block of a piece: `length` bytes at `begin` in piece `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// A message after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        block: Bytes,
    },
    Cancel(BlockRef),
    /// A BEP 10 extension message: `id` 0 is the extension handshake, others are the
    /// ids the receiver gave its extensions; the payload is the rest of the message.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// An id this side does not speak (DHT port, fast extension): read whole and skipped.
    Unknown {
        id: u8,
    },
}

impl PeerMessage {
    pub fn encode(&self, out: &mut BytesMut) {
        let fixed = |out: &mut BytesMut, id: u8, ints: &[u32]| {
            out.put_u32(1 + 4 * ints.len() as u32);
            out.put_u8(id);
            ints.iter().for_each(|&i| out.put_u32(i));
        };
        match self {
            PeerMessage::KeepAlive => out.put_u32(0),
            PeerMessage::Choke => fixed(out, 0, &[]),
            PeerMessage::Unchoke => fixed(out, 1, &[]),
            PeerMessage::Interested => fixed(out, 2, &[]),
            PeerMessage::NotInterested => fixed(out, 3, &[]),
            PeerMessage::Have(i) => fixed(out, 4, &[*i]),
            PeerMessage::Bitfield(bits) => {
                out.put_u32(1 + bits.len() as u32);
                out.put_u8(5);
                out.put_slice(bits);
            }
            PeerMessage::Request(b) => fixed(out, 6, &[b.index, b.begin, b.length]),
            PeerMessage::Piece { index, begin, block } => {
                out.put_slice(&piece_header(*index, *begin, block.len() as u32));
                out.put_slice(block);
            }
            PeerMessage::Cancel(b) => fixed(out, 8, &[b.index, b.begin, b.length]),
            PeerMessage::Extended { id, payload } => {
                out.put_u32(2 + payload.len() as u32);
                out.put_u8(EXTENDED);
                out.put_u8(*id);
                out.put_slice(payload);
            }
            PeerMessage::Unknown { id } => fixed(out, *id, &[]),
        }
    }
}

/// The first 13 bytes of a piece message carrying `len` bytes, for a sender that writes
/// the block straight from a file after it.
pub fn piece_header(index: u32, begin: u32, len: u32) -> [u8; 13] {
    let mut h = [0u8; 13];
    h[..4].copy_from_slice(&(9 + len).to_be_bytes());
    h[4] = 7;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

/// A bitfield of `pieces` pieces, all set (a seeder's), spare bits clear as BEP 3 asks.
pub fn full_bitfield(pieces: u32) -> Bytes {
    let mut bits = vec![0xffu8; pieces.div_ceil(8) as usize];
    if pieces % 8 != 0 {
        if let Some(last) = bits.last_mut() {
            *last = 0xff << (8 - pieces % 8);
        }
    }
    Bytes::from(bits)
}

/// Takes one message off the front of `buf` once it is all there. The length prefix is
/// checked against [`MAX_MESSAGE`] before the message is waited for.
pub fn decode_message(buf: &mut BytesMut) -> Result<Option<PeerMessage>, PeerWireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_MESSAGE {
        return Err(PeerWireError::TooLong(len as u64));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut body = buf.split_to(len).freeze();
    if len == 0 {
        return Ok(Some(PeerMessage::KeepAlive));
    }
    let id = body.get_u8();
    let want = |n: usize| if body.len() == n { Ok(()) } else { Err(PeerWireError::BadLength { id, len }) };
    let block = |body: &mut Bytes| -> Result<BlockRef, PeerWireError> {
        let b = BlockRef { index: body.get_u32(), begin: body.get_u32(), length: body.get_u32() };
        if b.length > MAX_BLOCK {
            return Err(PeerWireError::BlockTooLarge(b.length));
        }
        Ok(b)
    };
    Ok(Some(match id {
        0..=3 => {
            want(0)?;
            [PeerMessage::Choke, PeerMessage::Unchoke, PeerMessage::Interested, PeerMessage::NotInterested][id as usize]
                .clone()
        }
        4 => {
            want(4)?;
            PeerMessage::Have(body.get_u32())
        }
        5 => PeerMessage::Bitfield(body),
        6 => {
            want(12)?;
            PeerMessage::Request(block(&mut body)?)
        }
        7 => {
            if body.len() < 8 {
                return Err(PeerWireError::BadLength { id, len });
            }
            let (index, begin) = (body.get_u32(), body.get_u32());
            PeerMessage::Piece { index, begin, block: body }
        }
        8 => {
            want(12)?;
            PeerMessage::Cancel(block(&mut body)?)
        }
        EXTENDED => {
            if body.is_empty() {
                return Err(PeerWireError::BadLength { id, len });
            }
            PeerMessage::Extended { id: body.get_u8(), payload: body }
        }
        _ => PeerMessage::Unknown { id },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_round_trips_and_refuses_others() {
        let h = Handshake::new([1; 20], [2; 20]);
        let bytes = h.encode();
        assert_eq!(&bytes[..20], b"\x13BitTorrent protocol");
        assert_eq!(Handshake::decode(&bytes), Ok(h));
        assert!(h.supports_extensions());
        assert_eq!(bytes[25], 0x10);
        let mut bad = bytes;
        bad[0] = 18;
        assert_eq!(Handshake::decode(&bad), Err(PeerWireError::BadHandshake));
        let mut http = [0u8; HANDSHAKE_LEN];
        http[..18].copy_from_slice(b"GET / HTTP/1.1\r\nHo");
        assert_eq!(Handshake::decode(&http), Err(PeerWireError::BadHandshake));
    }

    #[test]
    fn messages_round_trip() {
        let b = BlockRef { index: 3, begin: 16384, length: 16384 };
        let all = [
            PeerMessage::KeepAlive,
            PeerMessage::Choke,
            PeerMessage::Unchoke,
            PeerMessage::Interested,
            PeerMessage::NotInterested,
            PeerMessage::Have(7),
            PeerMessage::Bitfield(full_bitfield(11)),
            PeerMessage::Request(b),
            PeerMessage::Piece { index: 1, begin: 2, block: Bytes::from_static(b"abc") },
            PeerMessage::Cancel(b),
            PeerMessage::Extended { id: 3, payload: Bytes::from_static(b"d8:msg_typei0e5:piecei0ee") },
            PeerMessage::Unknown { id: 9 },
        ];
        let mut buf = BytesMut::new();
        all.iter().for_each(|m| m.encode(&mut buf));
        // Fed a byte at a time: nothing comes out before a message is whole.
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for byte in buf.iter() {
            input.put_u8(*byte);
            while let Some(m) = decode_message(&mut input).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, all);
    }

    #[test]
    fn refuses_bad_lengths_before_reading_them() {
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(decode_message(&mut huge), Err(PeerWireError::TooLong(0xffff_ffff)));
        let mut big_request = BytesMut::new();
        PeerMessage::Request(BlockRef { index: 0, begin: 0, length: MAX_BLOCK + 1 }).encode(&mut big_request);
        assert_eq!(decode_message(&mut big_request), Err(PeerWireError::BlockTooLarge(MAX_BLOCK + 1)));
        let mut ok_request = BytesMut::new();
        PeerMessage::Request(BlockRef { index: 0, begin: 0, length: MAX_BLOCK }).encode(&mut ok_request);
        assert!(decode_message(&mut ok_request).unwrap().is_some());
        let mut short_have = BytesMut::from(&[0, 0, 0, 2, 4, 0][..]);
        assert_eq!(decode_message(&mut short_have), Err(PeerWireError::BadLength { id: 4, len: 2 }));
        let mut long_choke = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]);
        assert_eq!(decode_message(&mut long_choke), Err(PeerWireError::BadLength { id: 0, len: 2 }));
        let mut short_piece = BytesMut::from(&[0, 0, 0, 3, 7, 0, 0][..]);
        assert_eq!(decode_message(&mut short_piece), Err(PeerWireError::BadLength { id: 7, len: 3 }));
        let mut bare_extended = BytesMut::from(&[0, 0, 0, 1, 20][..]);
        assert_eq!(decode_message(&mut bare_extended), Err(PeerWireError::BadLength { id: 20, len: 1 }));
    }

    #[test]
    fn full_bitfield_clears_spare_bits() {
        assert_eq!(&full_bitfield(8)[..], &[0xff]);
        assert_eq!(&full_bitfield(11)[..], &[0xff, 0xe0]);
        assert!(full_bitfield(0).is_empty());
    }
}
