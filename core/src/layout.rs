//! Chunk arithmetic: how a file of a given size splits into 64 KiB chunks.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// Size of every chunk but possibly the last.
pub const CHUNK_SIZE: u64 = 64 * 1024;
/// Largest file the protocol carries: its manifest (32 bytes a chunk) stays within
/// [`crate::wire::LIST_BODY_LIMIT`].
pub const MAX_FILE_SIZE: u64 = 32 * 1024 * 1024 * 1024;

/// A chunk's place in its file, from 0; on the wire, a plain number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChunkIndex(pub u32);

impl ChunkIndex {
    /// Every chunk of a file of `count` chunks, in order.
    pub fn all(count: u32) -> impl DoubleEndedIterator<Item = ChunkIndex> + ExactSizeIterator {
        (0..count).map(ChunkIndex)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The chunk's slot in a per-chunk array.
    pub fn slot(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Number of chunks of a file of `size` bytes (0 for an empty file).
pub fn chunk_count(size: u64) -> u32 {
    // MAX_FILE_SIZE / CHUNK_SIZE fits a u32 with room to spare; callers bound `size` first.
    u32::try_from(size.div_ceil(CHUNK_SIZE)).unwrap_or(u32::MAX)
}

/// Byte range of chunk `index` in a file of `size` bytes.
pub fn chunk_range(size: u64, index: ChunkIndex) -> Range<u64> {
    let start = u64::from(index.0) * CHUNK_SIZE;
    start..(start + CHUNK_SIZE).min(size)
}

/// Length of chunk `index` in a file of `size` bytes.
pub fn chunk_len(size: u64, index: ChunkIndex) -> usize {
    let r = chunk_range(size, index);
    // A chunk is at most CHUNK_SIZE, which fits any usize.
    (r.end.saturating_sub(r.start)) as usize
}

/// Whether `index` names a chunk of a file of `size` bytes.
pub fn is_valid_chunk(size: u64, index: ChunkIndex) -> bool {
    index.0 < chunk_count(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn counts_and_ranges() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE), 1);
        assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
        assert_eq!(chunk_count(MAX_FILE_SIZE), 512 * 1024);
        assert_eq!(chunk_range(CHUNK_SIZE + 1, ChunkIndex(1)), CHUNK_SIZE..CHUNK_SIZE + 1);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, ChunkIndex(0)), CHUNK_SIZE as usize);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, ChunkIndex(1)), 1);
        assert!(is_valid_chunk(1, ChunkIndex(0)));
        assert!(!is_valid_chunk(1, ChunkIndex(1)));
        assert!(!is_valid_chunk(0, ChunkIndex(0)));
    }
}
