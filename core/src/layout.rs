//! Chunk arithmetic: how a file of a given size splits into 64 KiB chunks.

use std::ops::Range;

/// Size of every chunk but possibly the last.
pub const CHUNK_SIZE: u64 = 64 * 1024;
/// Largest file the protocol carries: its manifest (32 bytes a chunk) stays within
/// [`crate::wire::LIST_BODY_LIMIT`].
pub const MAX_FILE_SIZE: u64 = 32 * 1024 * 1024 * 1024;

/// Number of chunks of a file of `size` bytes (0 for an empty file).
pub fn chunk_count(size: u64) -> u32 {
    // MAX_FILE_SIZE / CHUNK_SIZE fits a u32 with room to spare; callers bound `size` first.
    u32::try_from(size.div_ceil(CHUNK_SIZE)).unwrap_or(u32::MAX)
}

/// Byte range of chunk `index` in a file of `size` bytes.
pub fn chunk_range(size: u64, index: u32) -> Range<u64> {
    let start = u64::from(index) * CHUNK_SIZE;
    start..(start + CHUNK_SIZE).min(size)
}

/// Length of chunk `index` in a file of `size` bytes.
pub fn chunk_len(size: u64, index: u32) -> usize {
    let r = chunk_range(size, index);
    // A chunk is at most CHUNK_SIZE, which fits any usize.
    (r.end.saturating_sub(r.start)) as usize
}

/// Whether `index` names a chunk of a file of `size` bytes.
pub fn is_valid_chunk(size: u64, index: u32) -> bool {
    index < chunk_count(size)
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
        assert_eq!(chunk_range(CHUNK_SIZE + 1, 1), CHUNK_SIZE..CHUNK_SIZE + 1);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, 0), CHUNK_SIZE as usize);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, 1), 1);
        assert!(is_valid_chunk(1, 0));
        assert!(!is_valid_chunk(1, 1));
        assert!(!is_valid_chunk(0, 0));
    }
}
