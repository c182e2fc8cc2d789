//! Integrity: chunk hashes, a file's manifest and digest.
//!
//! A chunk's hash is SHA-256 of its bytes; a file's digest is SHA-256 of its chunk
//! hashes concatenated in order; the manifest is that concatenation.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::layout::{chunk_count, ChunkIndex, CHUNK_SIZE, MAX_FILE_SIZE};

/// SHA-256 of one chunk.
pub type ChunkHash = [u8; 32];

/// SHA-256 of a chunk's bytes.
pub fn hash_chunk(data: &[u8]) -> ChunkHash {
    Sha256::digest(data).into()
}

/// A file's identity beside its name and size: SHA-256 over its chunk hashes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    fn of_hashes<H: AsRef<[u8]>>(hashes: impl IntoIterator<Item = H>) -> Self {
        let mut h = Sha256::new();
        for c in hashes {
            h.update(c.as_ref());
        }
        Digest(h.finalize().into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of 64 characters: digests are written into every file list, Have
        // and gossip record, and a formatter call per byte showed in profiles.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        f.write_str(std::str::from_utf8(&out).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, ManifestError> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(ManifestError::BadDigest);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(ManifestError::BadDigest)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(ManifestError::BadDigest)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a manifest or digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("digest is not 64 hex digits")]
    BadDigest,
    #[error("file size {0} is over the limit of {MAX_FILE_SIZE} bytes")]
    TooLarge(u64),
    #[error("manifest has {got} bytes, a file of this size needs {want}")]
    WrongLength { got: usize, want: usize },
    #[error("manifest does not match the announced digest")]
    DigestMismatch,
}

/// The chunk hashes of one file, with its size and digest. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    size: u64,
    digest: Digest,
    /// The chunk hashes concatenated, which is also the Manifest body: every answer to
    /// GetManifest shares this one buffer instead of copying it (up to 16 MiB).
    body: Bytes,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("size", &self.size)
            .field("chunks", &self.chunk_count())
            .field("digest", &self.digest)
            .finish()
    }
}

impl Manifest {
    /// Builds a manifest from hashes computed locally.
    pub fn from_hashes(size: u64, hashes: Vec<ChunkHash>) -> Result<Self, ManifestError> {
        if size > MAX_FILE_SIZE {
            return Err(ManifestError::TooLarge(size));
        }
        let want = chunk_count(size) as usize;
        if hashes.len() != want {
            return Err(ManifestError::WrongLength { got: hashes.len() * 32, want: want * 32 });
        }
        let digest = Digest::of_hashes(&hashes);
        Ok(Self { size, digest, body: Bytes::from(hashes.concat()) })
    }

    /// Parses a Manifest body received for a file of `size` bytes and checks it
    /// against the `digest` it was announced with.
    pub fn from_body(size: u64, digest: Digest, body: &[u8]) -> Result<Self, ManifestError> {
        if size > MAX_FILE_SIZE {
            return Err(ManifestError::TooLarge(size));
        }
        let want = chunk_count(size) as usize * 32;
        if body.len() != want {
            return Err(ManifestError::WrongLength { got: body.len(), want });
        }
        if Digest::of_hashes(body.chunks_exact(32)) != digest {
            return Err(ManifestError::DigestMismatch);
        }
        Ok(Self { size, digest, body: Bytes::copy_from_slice(body) })
    }

    /// The Manifest body: the chunk hashes concatenated.
    pub fn to_body(&self) -> Bytes {
        self.body.clone()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn chunk_count(&self) -> u32 {
        (self.body.len() / 32) as u32
    }

    pub fn chunk_hash(&self, index: ChunkIndex) -> Option<&ChunkHash> {
        let at = index.slot() * 32;
        self.body.get(at..at + 32).map(|h| h.try_into().expect("a 32-byte slice"))
    }

    /// Whether `data` is exactly chunk `index` of this file.
    pub fn verify(&self, index: ChunkIndex, data: &[u8]) -> bool {
        self.chunk_hash(index).is_some() && self.verify_hashed(index, data.len(), &hash_chunk(data))
    }

    /// Whether bytes of length `len` hashing to `hash` are exactly chunk `index`.
    pub fn verify_hashed(&self, index: ChunkIndex, len: usize, hash: &ChunkHash) -> bool {
        self.chunk_hash(index).is_some_and(|want| len == crate::layout::chunk_len(self.size, index) && hash == want)
    }
}

/// Computes a manifest from a file's bytes fed in pieces of any size.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    size: u64,
    partial: Vec<u8>,
    hashes: Vec<ChunkHash>,
}

impl ManifestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let room = CHUNK_SIZE as usize - self.partial.len();
            let take = room.min(data.len());
            if self.partial.is_empty() && take == CHUNK_SIZE as usize {
                // Whole chunk available: hash in place without copying.
                self.hashes.push(hash_chunk(&data[..take]));
            } else {
                self.partial.extend_from_slice(&data[..take]);
                if self.partial.len() == CHUNK_SIZE as usize {
                    self.hashes.push(hash_chunk(&self.partial));
                    self.partial.clear();
                }
            }
            data = &data[take..];
        }
    }

    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        if !self.partial.is_empty() {
            self.hashes.push(hash_chunk(&self.partial));
        }
        Manifest::from_hashes(self.size, self.hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn builder_matches_whole_and_piecewise() {
        let data = sample(3 * CHUNK_SIZE as usize + 17);
        let mut whole = ManifestBuilder::new();
        whole.update(&data);
        let whole = whole.finish().unwrap();
        let mut pieces = ManifestBuilder::new();
        for piece in data.chunks(1000) {
            pieces.update(piece);
        }
        assert_eq!(whole, pieces.finish().unwrap());
        assert_eq!(whole.chunk_count(), 4);
        assert!(whole.verify(ChunkIndex(3), &data[3 * CHUNK_SIZE as usize..]));
        assert!(!whole.verify(ChunkIndex(2), &data[3 * CHUNK_SIZE as usize..]));
    }

    #[test]
    fn empty_file_digest_is_hash_of_nothing() {
        let m = ManifestBuilder::new().finish().unwrap();
        assert_eq!(m.chunk_count(), 0);
        assert_eq!(m.digest().to_string(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn body_round_trip_and_checks() {
        let mut b = ManifestBuilder::new();
        b.update(&sample(100_000));
        let m = b.finish().unwrap();
        let body = m.to_body();
        assert_eq!(Manifest::from_body(m.size(), m.digest(), &body).unwrap(), m);
        assert_eq!(Manifest::from_body(m.size(), Digest([0; 32]), &body).unwrap_err(), ManifestError::DigestMismatch);
        assert!(matches!(
            Manifest::from_body(m.size() + CHUNK_SIZE, m.digest(), &body),
            Err(ManifestError::WrongLength { .. })
        ));
        assert!(matches!(Manifest::from_body(MAX_FILE_SIZE + 1, m.digest(), &body), Err(ManifestError::TooLarge(_))));
    }

    #[test]
    fn digest_hex_round_trip() {
        let d = Digest([0xab; 32]);
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("zz".parse::<Digest>().is_err());
        assert!("g".repeat(64).parse::<Digest>().is_err());
    }
}
