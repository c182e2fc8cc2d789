//! v1 metainfo (BEP 3): the info dictionary (single-file, or multi-file as read from
//! others' torrents), its info-hash, the `.torrent` around it, piece hashing, and
//! info-hashes in hex. Every count and length read is bounded.

use sha1::{Digest as _, Sha1};

use super::bencode::{self, Value};
use crate::layout::CHUNK_SIZE;

/// A SHA-1 hash: pieces and info-hashes.
pub type Sha1Hash = [u8; 20];

/// Smallest and largest piece length chosen on export.
pub const MIN_PIECE_LENGTH: u32 = 256 * 1024;
pub const MAX_PIECE_LENGTH: u32 = 4 * 1024 * 1024;
/// Piece lengths accepted from others' torrents (BEP 3 only asks for a power of two; 16 KiB
/// is the block size, and more than 64 MiB per piece is unheard of).
const PIECE_LENGTH_RANGE: std::ops::RangeInclusive<u64> = 16 * 1024..=64 * 1024 * 1024;
/// Most files a multi-file torrent may list, path components per file, and bytes in
/// all (with at most 1 Mi pieces: 20 MiB of hashes, the most a `.torrent` body holds).
pub const MAX_FILES: usize = 10_000;
pub const MAX_PATH_DEPTH: usize = 32;
pub const MAX_TOTAL_LENGTH: u64 = 1 << 40;
pub const MAX_PIECES: u64 = 1 << 20;
/// Pieces aimed at on export before the piece length grows.
const TARGET_PIECES: u64 = 1500;

/// Why a metainfo was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error(transparent)]
    Bencode(#[from] bencode::BencodeError),
    #[error("metainfo: {0}")]
    Bad(&'static str),
}

/// The info dictionary of a v1 torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    /// Bytes in all (the sum of `files` for a multi-file torrent).
    pub length: u64,
    pub piece_length: u32,
    pub pieces: Vec<Sha1Hash>,
    /// A multi-file torrent's files, in the order their bytes follow one another;
    /// empty for a single-file torrent (the file is `name`, `length` bytes).
    pub files: Vec<TorrentFile>,
}

/// One file of a multi-file torrent: its path below the torrent's name, as sent (each
/// component unchecked; see [`super::files`] for what may be stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentFile {
    pub path: Vec<String>,
    pub length: u64,
}

/// The piece length export picks for a file of `size` bytes: a power of two from 256 KiB
/// to 4 MiB, growing until the file has about [`TARGET_PIECES`] pieces. Each is a
/// whole number of torronto's 64 KiB chunks.
pub fn piece_length_for(size: u64) -> u32 {
    let mut len = MIN_PIECE_LENGTH;
    while len < MAX_PIECE_LENGTH && size.div_ceil(u64::from(len)) > TARGET_PIECES {
        len *= 2;
    }
    debug_assert_eq!(len % CHUNK_SIZE as u32, 0);
    len
}

/// Number of pieces of `length` bytes cut into `piece_length` pieces.
pub fn piece_count(length: u64, piece_length: u32) -> u64 {
    length.div_ceil(u64::from(piece_length))
}

impl Info {
    pub fn piece_count(&self) -> u32 {
        // Checked at decode and by `PieceHasher`: one hash per piece.
        self.pieces.len() as u32
    }

    /// Bytes in piece `index` (the last one may be short).
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = u64::from(index) * u64::from(self.piece_length);
        (self.length.saturating_sub(start)).min(u64::from(self.piece_length)) as u32
    }

    pub fn to_value(&self) -> Value {
        let pieces: Vec<u8> = self.pieces.concat();
        let dict = |entries: Vec<(&str, Value)>| {
            Value::Dict(entries.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
        };
        let size = if self.files.is_empty() {
            ("length", Value::Int(self.length as i64))
        } else {
            let file = |f: &TorrentFile| {
                let path = f.path.iter().map(|c| Value::bytes(c.as_bytes())).collect();
                dict(vec![("length", Value::Int(f.length as i64)), ("path", Value::List(path))])
            };
            ("files", Value::List(self.files.iter().map(file).collect()))
        };
        dict(vec![
            size,
            ("name", Value::bytes(self.name.as_bytes())),
            ("piece length", Value::Int(i64::from(self.piece_length))),
            ("pieces", Value::Bytes(pieces)),
        ])
    }

    /// The bencoded info dictionary; its SHA-1 is the info-hash.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    pub fn info_hash(&self) -> Sha1Hash {
        Sha1::digest(self.encode()).into()
    }

    /// Reads an info dictionary, single- or multi-file, checking that every piece has
    /// its hash and nothing else, and every count and length against the bounds above.
    pub fn decode(encoded: &[u8]) -> Result<Info, MetainfoError> {
        let v = bencode::decode(encoded)?;
        let name = v.get("name").and_then(text).ok_or(MetainfoError::Bad("no name, or not UTF-8"))?;
        let (length, files) = match v.get("files") {
            Some(list) => {
                let files = decode_files(list)?;
                (files.iter().map(|f| f.length).sum(), files)
            }
            None => (length_of(&v)?, Vec::new()),
        };
        let piece_length =
            v.get("piece length").and_then(Value::as_int).ok_or(MetainfoError::Bad("no piece length"))?;
        let piece_length = u64::try_from(piece_length)
            .ok()
            .filter(|p| PIECE_LENGTH_RANGE.contains(p))
            .ok_or(MetainfoError::Bad("piece length out of range"))? as u32;
        let raw = v.get("pieces").and_then(Value::as_bytes).ok_or(MetainfoError::Bad("no pieces"))?;
        if piece_count(length, piece_length) > MAX_PIECES {
            return Err(MetainfoError::Bad("more pieces than a torrent may have (1 Mi)"));
        }
        if raw.len() % 20 != 0 || (raw.len() / 20) as u64 != piece_count(length, piece_length) {
            return Err(MetainfoError::Bad("pieces do not match the length"));
        }
        let pieces = raw.chunks_exact(20).map(|c| c.try_into().expect("20 bytes")).collect();
        Ok(Info { name, length, piece_length, pieces, files })
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes().and_then(|b| String::from_utf8(b.to_vec()).ok())
}

/// A `length` entry: not negative, and no more than a torrent may hold.
fn length_of(v: &Value) -> Result<u64, MetainfoError> {
    let length = v.get("length").and_then(Value::as_int).ok_or(MetainfoError::Bad("no length"))?;
    u64::try_from(length)
        .ok()
        .filter(|l| *l <= MAX_TOTAL_LENGTH)
        .ok_or(MetainfoError::Bad("length negative or over 1 TiB"))
}

/// A multi-file torrent's `files`: at most [`MAX_FILES`], each with a non-empty `path`
/// of at most [`MAX_PATH_DEPTH`] UTF-8 components.
fn decode_files(list: &Value) -> Result<Vec<TorrentFile>, MetainfoError> {
    let Value::List(list) = list else { return Err(MetainfoError::Bad("files is not a list")) };
    if list.is_empty() || list.len() > MAX_FILES {
        return Err(MetainfoError::Bad("files: none, or more than 10,000"));
    }
    let mut total: u64 = 0;
    let mut files = Vec::with_capacity(list.len());
    for f in list {
        let length = length_of(f)?;
        total = total.saturating_add(length);
        if total > MAX_TOTAL_LENGTH {
            return Err(MetainfoError::Bad("more bytes than a torrent may have (1 TiB)"));
        }
        let Some(Value::List(parts)) = f.get("path") else { return Err(MetainfoError::Bad("a file without path")) };
        if parts.is_empty() || parts.len() > MAX_PATH_DEPTH {
            return Err(MetainfoError::Bad("a file path empty or deeper than 32"));
        }
        let path = parts.iter().map(text).collect::<Option<Vec<_>>>();
        files.push(TorrentFile { path: path.ok_or(MetainfoError::Bad("a file path is not UTF-8"))?, length });
    }
    Ok(files)
}

/// A `.torrent` file: trackers around an info dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torrent {
    pub info: Info,
    pub trackers: Vec<String>,
    pub info_hash: Sha1Hash,
}

impl Torrent {
    /// The `.torrent` bytes: `announce` is the first tracker, `announce-list` (BEP 12)
    /// has each tracker in a tier of its own.
    pub fn encode(info: &Info, trackers: &[String]) -> Vec<u8> {
        Torrent::encode_raw(&info.encode(), trackers)
    }

    /// The `.torrent` around an info dictionary kept as it was encoded (one fetched by
    /// the metadata exchange: re-encoding could drop keys and change the info-hash).
    pub fn encode_raw(info: &[u8], trackers: &[String]) -> Vec<u8> {
        let mut top = std::collections::BTreeMap::new();
        if let Some(first) = trackers.first() {
            top.insert(b"announce".to_vec(), Value::bytes(first.as_bytes()));
            let tiers = trackers.iter().map(|t| Value::List(vec![Value::bytes(t.as_bytes())])).collect();
            top.insert(b"announce-list".to_vec(), Value::List(tiers));
        }
        top.insert(b"created by".to_vec(), Value::bytes(&b"torronto"[..]));
        // "info" sorts after every other key: the dictionary ends with it, spliced in.
        let mut out = Value::Dict(top).encode();
        out.pop();
        out.extend_from_slice(b"4:info");
        out.extend_from_slice(info);
        out.push(b'e');
        out
    }

    /// Reads a `.torrent`; the info-hash is taken over the info dictionary as sent.
    pub fn decode(bytes: &[u8]) -> Result<Torrent, MetainfoError> {
        let raw = bencode::raw_entry(bytes, b"info")?.ok_or(MetainfoError::Bad("no info dictionary"))?;
        let info = Info::decode(raw)?;
        let top = bencode::decode(bytes)?;
        let mut trackers: Vec<String> = Vec::new();
        if let Some(Value::List(tiers)) = top.get("announce-list") {
            for tier in tiers {
                if let Value::List(urls) = tier {
                    trackers.extend(urls.iter().filter_map(text));
                }
            }
        }
        if let Some(url) = top.get("announce").and_then(text) {
            if !trackers.contains(&url) {
                trackers.insert(0, url);
            }
        }
        Ok(Torrent { info, trackers, info_hash: Sha1::digest(raw).into() })
    }
}

/// SHA-1 of each piece, fed the file's bytes in order in slices of any size (one pass).
#[derive(Debug)]
pub struct PieceHasher {
    piece_length: u32,
    in_piece: u32,
    total: u64,
    current: Sha1,
    pieces: Vec<Sha1Hash>,
}

impl PieceHasher {
    pub fn new(piece_length: u32) -> Self {
        assert!(piece_length > 0);
        PieceHasher { piece_length, in_piece: 0, total: 0, current: Sha1::new(), pieces: Vec::new() }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = data.len().min((self.piece_length - self.in_piece) as usize);
            self.current.update(&data[..take]);
            self.in_piece += take as u32;
            self.total += take as u64;
            data = &data[take..];
            if self.in_piece == self.piece_length {
                self.pieces.push(std::mem::take(&mut self.current).finalize().into());
                self.in_piece = 0;
            }
        }
    }

    /// The info dictionary of the `name`d file whose bytes were fed.
    pub fn finish(mut self, name: String) -> Info {
        if self.in_piece > 0 {
            self.pieces.push(self.current.finalize().into());
        }
        Info { name, length: self.total, piece_length: self.piece_length, pieces: self.pieces, files: Vec::new() }
    }
}

/// Lowercase hex of a hash (a magnet link's `btih`, the node's file names).
pub fn hex(hash: &Sha1Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 40 hex digits.
pub fn from_hex(text: &str) -> Option<Sha1Hash> {
    if text.len() != 40 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, piece_length: u32) -> (Vec<u8>, Info) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = PieceHasher::new(piece_length);
        // Odd slices, so pieces straddle updates.
        data.chunks(1000).for_each(|c| h.update(c));
        (data.clone(), h.finish("a b.bin".into()))
    }

    #[test]
    fn pieces_are_sha1_of_each_piece() {
        let (data, info) = sample(3 * 16384 + 5, 16384);
        assert_eq!(info.length, data.len() as u64);
        assert_eq!(info.pieces.len(), 4);
        for (i, piece) in data.chunks(16384).enumerate() {
            assert_eq!(info.pieces[i], <[u8; 20]>::from(Sha1::digest(piece)));
        }
        assert_eq!(info.piece_size(3), 5);
        assert_eq!(info.piece_size(0), 16384);
        let (_, empty) = sample(0, 16384);
        assert!(empty.pieces.is_empty());
    }

    #[test]
    fn known_info_hash() {
        // The SHA-1 of the literal encoding, computed independently: keys sorted, the
        // piece length as an integer, the pieces as one byte string.
        let info =
            Info { name: "x".into(), length: 1, piece_length: 16384, pieces: vec![[0xab; 20]], files: Vec::new() };
        let expected = [&b"d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:"[..], &[0xab; 20], b"e"].concat();
        assert_eq!(info.encode(), expected);
        assert_eq!(info.info_hash(), <[u8; 20]>::from(Sha1::digest(&expected)));
    }

    #[test]
    fn torrent_round_trips() {
        let (_, info) = sample(100_000, 16384);
        let trackers = vec!["http://t.example/announce".to_string(), "udp://u.example:80".to_string()];
        let bytes = Torrent::encode(&info, &trackers);
        let t = Torrent::decode(&bytes).unwrap();
        assert_eq!(t.info, info);
        assert_eq!(t.trackers, trackers);
        assert_eq!(t.info_hash, info.info_hash());
        // An info dictionary with a key this side does not read keeps its info-hash.
        let mut raw = info.encode();
        raw.pop();
        raw.extend_from_slice(b"7:privatei0e6:source1:xe");
        let spliced = Torrent::decode(&Torrent::encode_raw(&raw, &[])).unwrap();
        assert_eq!((spliced.info, spliced.info_hash), (info, <[u8; 20]>::from(Sha1::digest(&raw))));
    }

    #[test]
    fn refuses_inconsistent_info() {
        let (_, info) = sample(100_000, 16384);
        let mut short = info.clone();
        short.pieces.pop();
        assert_eq!(Info::decode(&short.encode()), Err(MetainfoError::Bad("pieces do not match the length")));
        let mut tiny = info.clone();
        tiny.piece_length = 1;
        tiny.pieces = vec![[0; 20]; 100_000];
        assert_eq!(Info::decode(&tiny.encode()), Err(MetainfoError::Bad("piece length out of range")));
        assert!(Info::decode(b"d4:name1:xe").is_err());
        assert!(Torrent::decode(b"d8:announce1:xe").is_err());
        assert!(Info::decode(b"d5:filesle4:name1:xe").is_err());
        // A multi-file dictionary whose file lacks a path, or has a negative length.
        assert!(Info::decode(b"d5:filesld6:lengthi1eee4:name1:x12:piece lengthi16384e6:pieces0:e").is_err());
        assert!(Info::decode(b"d5:filesld6:lengthi-1e4:pathl1:aeee4:name1:xe").is_err());
    }

    #[test]
    fn multi_file_round_trips() {
        let (_, single) = sample(40_000, 16384);
        let files = vec![
            TorrentFile { path: vec!["a.txt".into()], length: 30_000 },
            TorrentFile { path: vec!["sub".into(), "b.bin".into()], length: 10_000 },
        ];
        let info = Info { files, ..single };
        let decoded = Info::decode(&info.encode()).unwrap();
        assert_eq!(decoded, info);
        assert_eq!(decoded.length, 40_000);
        let bytes = Torrent::encode(&info, &[]);
        assert_eq!(Torrent::decode(&bytes).unwrap().info_hash, info.info_hash());
    }

    #[test]
    fn piece_length_grows_with_size() {
        assert_eq!(piece_length_for(0), MIN_PIECE_LENGTH);
        assert_eq!(piece_length_for(5 << 20), MIN_PIECE_LENGTH);
        assert_eq!(piece_length_for(1 << 30), 1 << 20);
        assert_eq!(piece_length_for(1 << 40), MAX_PIECE_LENGTH);
    }
}
