//! What this node knows of each file: its identity, what is held here, what is being
//! fetched, and how many connected peers hold each chunk. The Query status and the
//! rarest-first pick are computed from this. A file costs nothing per chunk until a
//! chunk of it is held or claimed, and its status summary is kept as chunks change, so
//! a peer announcing huge files does not make Query slow or the node large. The
//! [`FileTable`] holding them refuses a name that could not live beside the ones it
//! has: the same name after case folding and Unicode normalisation, or a file where
//! another needs a folder (`a` and `a/b`).

use std::collections::BTreeMap;
use std::ops::{Deref, Range};

use crate::bitset::{word_chunks, ChunkSet};
use crate::layout::{chunk_count, ChunkIndex};
use crate::manifest::{Digest, Manifest};
use crate::name::FileName;
use crate::wire::{FileEntry, PeerAddr};
use crate::Millis;

/// How many of the least claimed counts [`FileState`] keeps as chunk sets as well.
const RARE_LEVELS: usize = 4;

/// One file as this node sees it.
#[derive(Debug)]
pub(crate) struct FileState {
    pub size: u64,
    pub digest: Digest,
    /// Known once fetched (or computed at insert); chunks are fetched only after it.
    pub manifest: Option<Manifest>,
    /// Verified chunks on disk.
    pub have: ChunkSet,
    /// Chunks requested from a peer and not yet answered.
    pub requested: ChunkSet,
    /// Verified chunks being written.
    pub writing: ChunkSet,
    /// When each link last announced a chunk of this file we lacked and only one peer
    /// held (a seeder's, most often): those fetching from a seeder, who split its chunks
    /// into stripes (see `Node::stripes`).
    pub sole_news: BTreeMap<PeerAddr, Millis>,
    /// When we last stored such a chunk.
    pub sole_stored_at: Option<Millis>,
    /// When we first asked a peer for a chunk of the file.
    pub first_asked_at: Option<Millis>,
    /// For each chunk, how many connected peers claim it; empty until one claims any.
    peer_counts: Vec<u16>,
    /// The same counts as sets, for the rarest-first pick to find the rarest chunk a peer
    /// can give us 64 chunks at a time rather than one by one (a pass over every chunk
    /// per pick cost a fetching node 5 % of its CPU on loopback): `rare[0]` holds the
    /// chunks one peer at most claims, `rare[k]` those `k + 1` claim, up to
    /// [`RARE_LEVELS`]; chunks claimed more widely are in none. Empty with `peer_counts`.
    rare: Vec<ChunkSet>,
    /// `levels[r]`: how many chunks have replication `r` (claiming peers plus this node).
    levels: Vec<u32>,
    /// Connected peers that announced the file (even with no chunks).
    pub announcers: u32,
    /// Participants we are not linked to that hold some of the file, by their gossip
    /// record: the chunk ranges each holds. Those holding all of it are counted in
    /// `far_complete` (once for every chunk); the others per chunk in `peer_counts`.
    far: BTreeMap<PeerAddr, Vec<(u32, u32)>>,
    far_complete: u32,
    /// The peer a manifest request is outstanding with.
    pub manifest_from: Option<PeerAddr>,
    /// Where in the node's folder the complete file is, when not under its name: a
    /// conflict copy, because a file torronto does not manage had the name.
    pub stored_as: Option<String>,
    /// Storage has been asked to make room for the file and has not answered yet; no
    /// chunk is asked for meanwhile.
    pub preparing: bool,
    /// Why this node does not store the file (no space, a symlink in the way…); it is
    /// not fetched while this is set.
    pub refused: Option<String>,
}

impl FileState {
    pub fn new(size: u64, digest: Digest) -> Self {
        let n = chunk_count(size);
        Self {
            size,
            digest,
            manifest: None,
            have: ChunkSet::new(n),
            requested: ChunkSet::new(n),
            writing: ChunkSet::new(n),
            sole_news: BTreeMap::new(),
            sole_stored_at: None,
            first_asked_at: None,
            peer_counts: Vec::new(),
            rare: Vec::new(),
            levels: vec![n],
            announcers: 0,
            far: BTreeMap::new(),
            far_complete: 0,
            manifest_from: None,
            preparing: false,
            stored_as: None,
            refused: None,
        }
    }

    pub fn chunk_count(&self) -> u32 {
        self.have.len()
    }

    /// Worth listing in the status: held here, announced by a connected peer, or held
    /// by a participant further away.
    pub fn is_known(&self) -> bool {
        self.manifest.is_some() || self.announcers > 0 || !self.far.is_empty()
    }

    pub fn matches(&self, size: u64, digest: Digest) -> bool {
        self.size == size && self.digest == digest
    }

    /// Our entry for a file list (Add, Files), if we can serve the file at all.
    pub fn entry(&self, name: &FileName) -> Option<FileEntry> {
        self.manifest.as_ref()?;
        Some(FileEntry { name: name.clone(), size: self.size, digest: self.digest, chunks: self.have.iter().collect() })
    }

    /// Participants other than this node claiming chunk `i`, leaving out those far
    /// away that hold the whole file.
    pub fn peer_count(&self, i: ChunkIndex) -> u16 {
        self.peer_counts.get(i.slot()).copied().unwrap_or(0)
    }

    /// Participants holding chunk `i`: connected peers, those further away, and this node.
    pub fn replication(&self, i: ChunkIndex) -> u32 {
        u32::from(self.peer_count(i)) + self.far_complete + u32::from(self.have.contains(i))
    }

    /// A participant we are not linked to holds `ranges` of the file (replacing what it
    /// held before).
    pub fn set_far(&mut self, addr: &PeerAddr, ranges: &[(u32, u32)]) {
        self.remove_far(addr);
        let n = self.chunk_count();
        if n > 0 && ranges == [(0, n)] {
            // Every chunk's replication rises by one: the histogram shifts up.
            self.far_complete += 1;
            self.levels.insert(0, 0);
        } else {
            for &(a, b) in ranges {
                for i in a..b.min(n) {
                    self.add_claim(ChunkIndex(i));
                }
            }
        }
        self.far.insert(addr.clone(), ranges.to_vec());
    }

    /// A far participant's holding no longer counts (it left, linked to us, or changed).
    pub fn remove_far(&mut self, addr: &PeerAddr) {
        let Some(ranges) = self.far.remove(addr) else { return };
        let n = self.chunk_count();
        if n > 0 && ranges == [(0, n)] {
            self.far_complete -= 1;
            debug_assert_eq!(self.levels[0], 0, "a complete holder gave every chunk a copy");
            self.levels.remove(0);
        } else {
            for (a, b) in ranges {
                for i in a..b.min(n) {
                    self.remove_claim(ChunkIndex(i));
                }
            }
        }
    }

    /// One chunk's replication went from `from` to `to`.
    fn moved(&mut self, from: u32, to: u32) {
        self.levels[from as usize] -= 1;
        if self.levels.len() <= to as usize {
            self.levels.resize(to as usize + 1, 0);
        }
        self.levels[to as usize] += 1;
    }

    /// A connected peer claims chunk `i` (counted once per peer by the caller).
    pub fn add_claim(&mut self, i: ChunkIndex) {
        if self.peer_counts.is_empty() {
            let n = self.chunk_count();
            self.peer_counts = vec![0; n as usize];
            self.rare = (0..RARE_LEVELS).map(|k| if k == 0 { ChunkSet::full(n) } else { ChunkSet::new(n) }).collect();
        }
        let r = self.replication(i);
        self.set_peer_count(i, self.peer_count(i) + 1);
        self.moved(r, r + 1);
    }

    /// A peer's claim of chunk `i` is withdrawn (it left, or said it does not hold it).
    pub fn remove_claim(&mut self, i: ChunkIndex) {
        let r = self.replication(i);
        self.set_peer_count(i, self.peer_count(i) - 1);
        self.moved(r, r - 1);
    }

    fn set_peer_count(&mut self, i: ChunkIndex, count: u16) {
        let level = |count: u16| usize::from(count.max(1) - 1);
        let (from, to) = (level(self.peer_count(i)), level(count));
        self.peer_counts[i.slot()] = count;
        if from != to {
            if let Some(set) = self.rare.get_mut(from) {
                set.remove(i);
            }
            if let Some(set) = self.rare.get_mut(to) {
                set.insert(i);
            }
        }
    }

    /// Chunk `i` is verified on disk here; false if it already was.
    pub fn mark_held(&mut self, i: ChunkIndex) -> bool {
        let r = self.replication(i);
        if !self.have.insert(i) {
            return false;
        }
        self.moved(r, r + 1);
        true
    }

    /// This node no longer holds any chunk of the file (its copy is gone).
    pub fn forget_held(&mut self) {
        let held: Vec<ChunkIndex> = self.have.iter().collect();
        for i in held {
            let r = self.replication(i);
            self.have.remove(i);
            self.moved(r, r - 1);
        }
    }

    /// The least replication of any chunk, how many chunks are held somewhere, and the
    /// sum of all chunks' replication: the status of the file, without a pass over its
    /// chunks.
    pub fn replication_summary(&self) -> (u32, u32, u64) {
        let least = self.levels.iter().position(|&n| n > 0).unwrap_or(0) as u32;
        let present = self.chunk_count() - self.levels[0];
        let total = self.levels.iter().enumerate().map(|(r, &n)| r as u64 * u64::from(n)).sum();
        (least, present, total)
    }

    /// Whether some chunk has a single holder, anywhere we know of: typically a seeder's
    /// chunk no fetcher has yet, so its uplink is still the only way to it.
    pub fn has_sole_chunks(&self) -> bool {
        self.levels.get(1).is_some_and(|&n| n > 0)
    }

    /// Participants holding an empty file: it is complete wherever it is known.
    pub fn empty_file_holders(&self) -> u32 {
        self.announcers + self.far.len() as u32 + u32::from(self.manifest.is_some())
    }

    /// The rarest chunk worth requesting from a peer holding `peer_has`, scanning from
    /// word `start` so that different fetchers pick different chunks among equals.
    /// Returns the chunk and how many peers hold it: of those held by the fewest, the
    /// first in the scan.
    pub fn rarest_wanted(&self, peer_has: &ChunkSet, start: usize) -> Option<(ChunkIndex, u16)> {
        let words = peer_has.word_count();
        let wanted = |w: usize| peer_has.word_minus(w, &self.have, &self.requested) & !self.writing_word(w);
        let first = |word: &dyn Fn(usize) -> u64| {
            (0..words).map(|step| (start + step) % words).find_map(|w| word_chunks(w, word(w)).next())
        };
        // Nothing is rarer than a chunk one peer holds at most (with no claims yet, that is
        // every chunk), then two, …
        for level in 0..self.rare.len().max(1) {
            let rare = |w| if level == 0 { self.sole_word(w) } else { self.rare[level].word(w) };
            if let Some(i) = first(&|w| wanted(w) & rare(w)) {
                return Some((i, self.peer_count(i)));
            }
        }
        // Every chunk worth asking for is claimed more widely: the least claimed.
        let mut best: Option<(ChunkIndex, u16)> = None;
        for step in 0..words {
            let w = (start + step) % words;
            for i in word_chunks(w, wanted(w)) {
                let count = self.peer_count(i);
                if best.is_none_or(|(_, c)| count < c) {
                    best = Some((i, count));
                }
            }
        }
        best
    }

    /// Whether chunk `i` is worth requesting from a peer holding `peer_has` and held by
    /// no other peer: it can come from there only.
    pub fn sole_wanted(&self, peer_has: &ChunkSet, i: ChunkIndex) -> bool {
        i.get() < self.chunk_count()
            && peer_has.contains(i)
            && !self.have.contains(i)
            && !self.requested.contains(i)
            && !self.writing.contains(i)
            && self.peer_count(i) <= 1
    }

    /// Whether chunk `i`, which we lack, is held by one peer at most: one announcing it
    /// now got it from the only holder (typically a seeder).
    pub fn sole_wanted_anew(&self, i: ChunkIndex) -> bool {
        !self.have.contains(i) && self.peer_count(i) <= 1
    }

    /// How many chunks in `range` we lack that one peer at most holds: those
    /// [`FileState::sole_wanted_anew`] is true of.
    pub fn count_sole_anew(&self, range: Range<u32>) -> usize {
        self.range_words(range)
            .map(|(w, mask)| (self.sole_word(w) & !self.have.word(w) & mask).count_ones() as usize)
            .sum()
    }

    /// The chunks in `range` [`FileState::sole_wanted`] is true of, in order.
    pub fn sole_wanted_in(&self, peer_has: &ChunkSet, range: Range<u32>) -> Vec<ChunkIndex> {
        self.range_words(range)
            .flat_map(|(w, mask)| {
                let wanted = peer_has.word_minus(w, &self.have, &self.requested) & !self.writing_word(w);
                word_chunks(w, wanted & self.sole_word(w) & mask)
            })
            .collect()
    }

    /// The words covering `range` (cut to the file), each with the mask of its bits in it.
    fn range_words(&self, range: Range<u32>) -> impl Iterator<Item = (usize, u64)> {
        let (start, end) = (range.start, range.end.min(self.chunk_count()));
        let first = (start / 64) as usize;
        let last = (end.div_ceil(64) as usize).max(first);
        (first..last).filter(move |_| start < end).map(move |w| {
            let (lo, hi) = ((w as u32 * 64).max(start), (w as u32 * 64 + 64).min(end));
            let bits = hi - lo;
            let mask = if bits == 64 { u64::MAX } else { ((1u64 << bits) - 1) << (lo % 64) };
            (w, mask)
        })
    }

    /// Word `w` of the chunks one peer at most holds.
    fn sole_word(&self, w: usize) -> u64 {
        self.rare.first().map_or(u64::MAX, |set| set.word(w))
    }

    fn writing_word(&self, w: usize) -> u64 {
        // `writing` has the same length as `have`; its words line up.
        self.writing.word_minus(w, &ChunkSet::default(), &ChunkSet::default())
    }
}

/// Every file a node knows, by name, with an index of their folded names
/// ([`FileName::folded`]) to find names that collide with a new one.
///
/// Reads go through `Deref` to the map; changes go through the methods here, which keep
/// the index in step.
#[derive(Debug, Default)]
pub(crate) struct FileTable {
    files: BTreeMap<FileName, FileState>,
    folded: BTreeMap<String, FileName>,
}

/// Why a name cannot join a [`FileTable`]: the known file it collides with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Collision {
    /// The same name after case folding and normalisation (`README`, `readme`).
    Folded(FileName),
    /// A known file is where the new name needs a folder (`a` for `a/b`).
    FileAbove(FileName),
    /// The new name is where a known file needs a folder (`a/b` for `a`).
    FileBelow(FileName),
}

impl Collision {
    /// One line for a user: what `name` collides with, and why that matters.
    pub fn explain(&self, name: &FileName) -> String {
        match self {
            Collision::Folded(other) => format!(
                "{name} differs from the file {other} only in case or Unicode normalisation; \
                 the two cannot live side by side on every system"
            ),
            Collision::FileAbove(other) => {
                format!("{name} cannot be stored: {other} is a file, and {name} would need it to be a folder")
            }
            Collision::FileBelow(other) => {
                format!("{name} cannot be stored: the file {other} needs {name} to be a folder")
            }
        }
    }
}

impl Deref for FileTable {
    type Target = BTreeMap<FileName, FileState>;

    fn deref(&self) -> &Self::Target {
        &self.files
    }
}

impl FileTable {
    pub fn get_mut(&mut self, name: &FileName) -> Option<&mut FileState> {
        self.files.get_mut(name)
    }

    /// Adds or replaces `name`; returns its state.
    pub fn insert(&mut self, name: FileName, state: FileState) -> &mut FileState {
        self.folded.entry(name.folded()).or_insert_with(|| name.clone());
        self.files.insert(name.clone(), state);
        self.files.get_mut(&name).expect("inserted above")
    }

    pub fn remove(&mut self, name: &FileName) -> Option<FileState> {
        let state = self.files.remove(name)?;
        let key = name.folded();
        if self.folded.get(&key) == Some(name) {
            self.folded.remove(&key);
        }
        Some(state)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&FileName, &mut FileState) -> bool) {
        let folded = &mut self.folded;
        self.files.retain(|name, f| {
            let kept = keep(name, f);
            if !kept {
                let key = name.folded();
                if folded.get(&key) == Some(name) {
                    folded.remove(&key);
                }
            }
            kept
        });
    }

    /// The known file `name` collides with, if any (never `name` itself).
    pub fn collision(&self, name: &FileName) -> Option<Collision> {
        collision_among(&self.folded, name)
    }
}

/// The name in `folded` (folded name → name) that `name` collides with, if any.
pub(crate) fn collision_among(folded: &BTreeMap<String, FileName>, name: &FileName) -> Option<Collision> {
    let key = name.folded();
    if let Some(other) = folded.get(&key) {
        return (other != name).then(|| Collision::Folded(other.clone()));
    }
    for (at, _) in key.match_indices('/') {
        if let Some(other) = folded.get(&key[..at]) {
            return Some(Collision::FileAbove(other.clone()));
        }
    }
    let below = format!("{key}/");
    let (_, other) = folded.range(below.clone()..).next().filter(|(k, _)| k.starts_with(&below))?;
    Some(Collision::FileBelow(other.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestBuilder;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table(names: &[&str]) -> FileTable {
        let digest = ManifestBuilder::new().finish().unwrap().digest();
        let mut t = FileTable::default();
        for n in names {
            t.insert(FileName::new(n).unwrap(), FileState::new(0, digest));
        }
        t
    }

    /// The word-at-a-time picks agree with a pass over every chunk, whatever the claims
    /// (up to twice the levels kept as sets), holdings, requests and ranges.
    #[test]
    fn rare_chunk_sets_pick_as_a_pass_over_every_chunk_does() {
        let digest = ManifestBuilder::new().finish().unwrap().digest();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..60 {
            let n = 1 + next(700) as u32;
            let mut f = FileState::new(u64::from(n) * crate::layout::CHUNK_SIZE, digest);
            let peer = ChunkSet::full(n);
            let mut peer_has = ChunkSet::new(n);
            // Some rounds leave every chunk unclaimed: the sets are not there yet.
            let claims = if round % 5 == 0 { 0 } else { next(3 * u64::from(n)) };
            for _ in 0..claims {
                f.add_claim(ChunkIndex(next(u64::from(n)) as u32));
            }
            for _ in 0..next(u64::from(n)) {
                let i = ChunkIndex(next(u64::from(n)) as u32);
                if f.peer_count(i) > 0 {
                    f.remove_claim(i);
                }
            }
            for i in ChunkIndex::all(n) {
                match next(6) {
                    0 => drop(f.mark_held(i)),
                    1 => drop(f.requested.insert(i)),
                    2 => drop(f.writing.insert(i)),
                    _ => {}
                }
                if next(3) > 0 {
                    peer_has.insert(i);
                }
            }
            for has in [&peer, &peer_has] {
                let start = next(64) as usize;
                let words = has.word_count();
                let scan = (0..words).map(|s| (start + s) % words).flat_map(|w| w as u32 * 64..(w as u32 + 1) * 64);
                let wanted = |&i: &u32| {
                    i < n
                        && has.contains(ChunkIndex(i))
                        && !f.have.contains(ChunkIndex(i))
                        && !f.requested.contains(ChunkIndex(i))
                        && !f.writing.contains(ChunkIndex(i))
                };
                let least = scan.clone().filter(wanted).map(|i| f.peer_count(ChunkIndex(i)).max(1)).min();
                let expected = least.and_then(|least| {
                    scan.clone().filter(wanted).map(ChunkIndex).find(|&i| f.peer_count(i).max(1) == least)
                });
                let picked = f.rarest_wanted(has, start);
                assert_eq!(picked.map(|p| p.0), expected, "round {round}");
                assert_eq!(picked.map(|p| p.1), expected.map(|i| f.peer_count(i)), "round {round}");

                let (a, b) = (next(u64::from(n) + 1) as u32, next(u64::from(n) + 70) as u32);
                let range = a.min(b)..a.max(b);
                let anew = range.clone().filter(|&c| c < n && f.sole_wanted_anew(ChunkIndex(c))).count();
                assert_eq!(f.count_sole_anew(range.clone()), anew, "round {round}, {range:?}");
                let sole: Vec<ChunkIndex> = range.clone().map(ChunkIndex).filter(|&c| f.sole_wanted(has, c)).collect();
                assert_eq!(f.sole_wanted_in(has, range.clone()), sole, "round {round}, {range:?}");
            }
        }
    }

    #[test]
    fn a_copy_forgotten_counts_only_the_peers_holding_it() {
        let digest = ManifestBuilder::new().finish().unwrap().digest();
        let mut f = FileState::new(3 * crate::layout::CHUNK_SIZE, digest);
        for i in ChunkIndex::all(3) {
            f.mark_held(i);
        }
        f.add_claim(ChunkIndex(1));
        assert_eq!(f.replication_summary(), (1, 3, 4));
        f.forget_held();
        assert_eq!((f.have.count(), f.replication_summary()), (0, (0, 1, 1)));
        assert!(f.mark_held(ChunkIndex(0)), "held again once fetched");
    }

    #[test]
    fn far_holders_count_whole_files_at_once_and_parts_per_chunk() {
        let digest = ManifestBuilder::new().finish().unwrap().digest();
        let mut f = FileState::new(4 * crate::layout::CHUNK_SIZE, digest);
        let (a, b) = (PeerAddr::new("a", 1), PeerAddr::new("b", 1));
        f.mark_held(ChunkIndex(0));
        f.set_far(&a, &[(0, 4)]);
        assert_eq!(f.replication_summary(), (1, 4, 5));
        f.set_far(&b, &[(1, 3)]);
        assert_eq!(f.replication_summary(), (1, 4, 7));
        f.set_far(&a, &[(3, 4)]);
        assert_eq!(f.replication_summary(), (1, 4, 4), "replaced: 0 here, 1 and 2 by b only, 3 by a");
        f.remove_far(&b);
        f.remove_far(&a);
        assert_eq!(f.replication_summary(), (0, 1, 1));
        assert!(!f.is_known(), "no manifest here and nobody else holds it");
    }

    #[test]
    fn names_that_cannot_live_beside_known_files_collide() {
        let t = table(&["readme", "a", "dir/x", "Caf\u{e9}"]);
        let name = |s: &str| FileName::new(s).unwrap();
        let check = |s: &str| t.collision(&name(s));
        assert_eq!(check("README"), Some(Collision::Folded(name("readme"))));
        assert_eq!(check("cafe\u{301}"), Some(Collision::Folded(name("Caf\u{e9}"))));
        assert_eq!(check("a/b"), Some(Collision::FileAbove(name("a"))));
        assert_eq!(check("A/b/c"), Some(Collision::FileAbove(name("a"))));
        assert_eq!(check("dir"), Some(Collision::FileBelow(name("dir/x"))));
        for fine in ["readme", "a.txt", "ab", "dir/y", "dir.x", "dirx/x", "r.manifest/x"] {
            assert_eq!(check(fine), None, "{fine}");
        }
        let mut t = t;
        t.remove(&name("a"));
        assert_eq!(t.collision(&name("a/b")), None, "forgotten with its file");
        t.retain(|n, _| n.as_str() != "readme");
        assert_eq!(t.collision(&name("README")), None);
    }
}
