//! A fixed-size set of chunk indices, one bit per chunk.

use crate::layout::ChunkIndex;

/// Which chunks of one file a participant holds (or is fetching).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSet {
    /// Empty while the set is (so a set costs nothing until something is in it: a peer
    /// may announce huge files it holds nothing of); otherwise one bit per chunk.
    words: Vec<u64>,
    len: u32,
    ones: u32,
}

impl ChunkSet {
    pub fn new(len: u32) -> Self {
        Self { words: Vec::new(), len, ones: 0 }
    }

    pub fn full(len: u32) -> Self {
        let mut set = Self::new(len);
        for i in ChunkIndex::all(len) {
            set.insert(i);
        }
        set
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of members.
    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    pub fn contains(&self, ChunkIndex(i): ChunkIndex) -> bool {
        i < self.len && self.words.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds `i`; returns whether it was new. Indices past the end are ignored.
    pub fn insert(&mut self, index: ChunkIndex) -> bool {
        let i = index.get();
        if i >= self.len || self.contains(index) {
            return false;
        }
        if self.words.is_empty() {
            self.words = vec![0; self.word_count()];
        }
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.ones += 1;
        true
    }

    /// Removes `i`; returns whether it was present.
    pub fn remove(&mut self, index: ChunkIndex) -> bool {
        let i = index.get();
        if !self.contains(index) {
            return false;
        }
        self.words[(i / 64) as usize] &= !(1 << (i % 64));
        self.ones -= 1;
        if self.ones == 0 {
            self.words = Vec::new();
        }
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = ChunkIndex> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| word_chunks(w, bits))
    }

    /// Word `w` of the set: members `64·w` to `64·w + 63`, lowest first.
    pub(crate) fn word(&self, w: usize) -> u64 {
        self.words.get(w).copied().unwrap_or(0)
    }

    /// Word `w` of the members that are in `self` but in neither `a` nor `b`.
    /// Used by the scheduler to skip 64 chunks at a time.
    pub(crate) fn word_minus(&self, w: usize, a: &ChunkSet, b: &ChunkSet) -> u64 {
        self.word(w) & !a.word(w) & !b.word(w)
    }

    pub(crate) fn word_count(&self) -> usize {
        (self.len as usize).div_ceil(64)
    }
}

/// The chunks whose bits are set in `bits`, word `w` of a set, lowest first.
pub(crate) fn word_chunks(w: usize, mut bits: u64) -> impl Iterator<Item = ChunkIndex> {
    std::iter::from_fn(move || {
        (bits != 0).then(|| {
            let i = ChunkIndex(w as u32 * 64 + bits.trailing_zeros());
            bits &= bits - 1;
            i
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn insert_remove_iterate() {
        let i = ChunkIndex;
        let mut s = ChunkSet::new(130);
        assert!(s.insert(i(0)) && s.insert(i(64)) && s.insert(i(129)));
        assert!(!s.insert(i(129)));
        assert!(!s.insert(i(130)), "out of range is ignored");
        assert_eq!(s.count(), 3);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![i(0), i(64), i(129)]);
        assert!(s.remove(i(64)) && !s.remove(i(64)));
        assert_eq!(s.count(), 2);
        assert!(ChunkSet::full(130).is_complete());
        assert!(ChunkSet::new(0).is_complete());
        // Emptied again, it is the set it started as.
        assert!(s.remove(i(0)) && s.remove(i(129)));
        assert_eq!(s, ChunkSet::new(130));
    }
}
