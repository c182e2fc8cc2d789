//! The Query answer: per file, how much is here, how much exists, how well replicated;
//! computed here from what a node knows of each file, and read back row by row.

use serde::{Deserialize, Serialize};

use crate::files::FileState;
use crate::layout::ChunkIndex;
use crate::name::FileName;

/// The status object of a Query reply (docs/protocol.md, "Query").
///
/// The first six fields are the original document's; the rest are extras that
/// clients may ignore. Arrays are in the order of `files`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(rename = "numFiles")]
    pub num_files: usize,
    pub files: Vec<String>,
    /// Fraction of each file's chunks held by this node.
    pub local: Vec<f64>,
    /// Fraction of each file's chunks held by at least one participant.
    pub system: Vec<f64>,
    /// Smallest number of participants holding any one chunk.
    #[serde(rename = "leastReplication")]
    pub least_replication: Vec<u32>,
    /// Average over chunks of the number of participants holding it.
    #[serde(rename = "weightedLeastReplication")]
    pub weighted_least_replication: Vec<f64>,
    /// This node's identity, `host:port`.
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub joined: bool,
    /// Connected peers (this node's links), `host:port` each.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Participants of the network this node counts: itself, its links, and those
    /// gossip tells of; the replication figures are over all of them.
    #[serde(default)]
    pub participants: usize,
    /// In a private network: this node's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// In a private network: the node ID each of `peers` proved, in the same order (an
    /// empty string where none is known).
    #[serde(rename = "peerIds", default, skip_serializing_if = "Vec::is_empty")]
    pub peer_ids: Vec<String>,
    /// Each file's size in bytes.
    #[serde(default)]
    pub sizes: Vec<u64>,
    /// Each file's hex digest.
    #[serde(default)]
    pub digests: Vec<String>,
    /// Where each file is in this node's folder when not under its name (a conflict
    /// copy beside a file the node does not manage); `""` where it is under its name.
    #[serde(rename = "storedAs", default)]
    pub stored_as: Vec<String>,
    /// Why this node does not store each file (no space, a symlink in the way…); `""`
    /// where nothing stands in the way.
    #[serde(default)]
    pub refused: Vec<String>,
    /// Verified chunks this node has stored from the network since it started.
    #[serde(rename = "chunksFetched", default)]
    pub chunks_fetched: u64,
    /// Chunks this node has sent to peers since it started.
    #[serde(rename = "chunksServed", default)]
    pub chunks_served: u64,
    /// Bytes of those chunks: successive answers give the node's transfer rates.
    #[serde(rename = "bytesFetched", default)]
    pub bytes_fetched: u64,
    #[serde(rename = "bytesServed", default)]
    pub bytes_served: u64,
    /// The bandwidth limits on chunk bodies, bytes per second (0: none).
    #[serde(rename = "uploadLimit", default)]
    pub upload_limit: u64,
    #[serde(rename = "downloadLimit", default)]
    pub download_limit: u64,
    /// The automatic upload limit, while peers' reports of a queue hold it (bytes per
    /// second; enforced under `uploadLimit`).
    #[serde(rename = "autoUploadLimit", default, skip_serializing_if = "Option::is_none")]
    pub auto_upload_limit: Option<u64>,
    /// Each of `peers`, in the same order: how much of the files listed it holds and the
    /// bytes moved between it and this node (the panel's per-peer list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkStatus>,
    /// Inserts being copied and hashed, with how far each has got.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inserting: Vec<InsertProgress>,
    /// Torrents `torronto add` is downloading, by the torrent's name, with the bytes
    /// verified so far (`size` 0 while a magnet link's metadata is fetched).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<InsertProgress>,
    /// For a Query naming a file: how many participants hold its chunks.
    #[serde(rename = "chunkMap", default, skip_serializing_if = "Option::is_none")]
    pub chunk_map: Option<ChunkMap>,
}

/// An insert under way: `done` of `size` bytes of `file` copied and hashed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertProgress {
    pub file: String,
    pub done: u64,
    pub size: u64,
}

/// One link of a [`Status`]: a connected peer as this node knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The peer, `host:port`, as in `peers`.
    pub peer: String,
    /// Bytes of the status's files it has announced holding.
    pub held: u64,
    /// Bytes of verified chunks it has sent this node since the link came up.
    pub fetched: u64,
    /// Bytes of chunks this node has sent it since the link came up.
    pub served: u64,
}

impl LinkStatus {
    /// The share of `total` bytes (the status's, [`Status::total_bytes`]) it holds; all
    /// of nothing is complete.
    pub fn completion(&self, total: u64) -> f64 {
        match total {
            0 => 1.0,
            total => (self.held as f64 / total as f64).min(1.0),
        }
    }
}

/// One file of a [`Status`]: its entries of the parallel arrays, which are the wire
/// format. Entries missing from a short array (an older node's answer) read as zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FileRow<'a> {
    pub name: &'a str,
    /// Fraction of its chunks held by the node that answered.
    pub local: f64,
    /// Fraction of its chunks held by at least one participant.
    pub system: f64,
    /// Participants holding its least replicated chunk.
    pub least: u32,
    /// Average participants holding a chunk.
    pub average: f64,
    /// Only newer nodes send sizes and digests.
    pub size: Option<u64>,
    pub digest: Option<&'a str>,
    /// Where the file is in the folder if not under its name (a conflict copy).
    pub stored_as: Option<&'a str>,
    /// Why the node does not store it.
    pub refused: Option<&'a str>,
}

impl Status {
    /// The files, one row each, in the order of `files`.
    pub fn rows(&self) -> impl Iterator<Item = FileRow<'_>> {
        self.files.iter().enumerate().map(|(i, name)| FileRow {
            name,
            local: self.local.get(i).copied().unwrap_or(0.0),
            system: self.system.get(i).copied().unwrap_or(0.0),
            least: self.least_replication.get(i).copied().unwrap_or(0),
            average: self.weighted_least_replication.get(i).copied().unwrap_or(0.0),
            size: self.sizes.get(i).copied(),
            digest: self.digests.get(i).map(String::as_str),
            stored_as: self.stored_as.get(i).map(String::as_str).filter(|s| !s.is_empty()),
            refused: self.refused.get(i).map(String::as_str).filter(|s| !s.is_empty()),
        })
    }

    /// The bytes of every file listed (those an older node sent sizes for).
    pub fn total_bytes(&self) -> u64 {
        // Saturating: a status read from elsewhere may say anything.
        self.sizes.iter().fold(0u64, |sum, &size| sum.saturating_add(size))
    }

    /// Appends a file's row, computed from what this node knows of it.
    pub(crate) fn push_file(&mut self, name: &FileName, f: &FileState) {
        let n = f.chunk_count();
        let (local, system, least, average) = if n == 0 {
            let holders = f.empty_file_holders();
            (1.0, 1.0, holders, f64::from(holders))
        } else {
            let (least, present, total) = f.replication_summary();
            let n_f = f64::from(n);
            let fraction = |x: f64| (x / n_f * 1e4).round() / 1e4;
            (fraction(f64::from(f.have.count())), fraction(f64::from(present)), least, fraction(total as f64))
        };
        self.files.push(name.to_string());
        self.local.push(local);
        self.system.push(system);
        self.least_replication.push(least);
        self.weighted_least_replication.push(average);
        self.sizes.push(f.size);
        self.digests.push(f.digest.to_string());
        self.stored_as.push(f.stored_as.clone().unwrap_or_default());
        self.refused.push(f.refused.clone().unwrap_or_default());
        self.num_files = self.files.len();
    }
}

/// Replication of one file's chunks, for drawing. Large files are summarised in at
/// most [`ChunkMap::MAX_BUCKETS`] buckets of `bucketSize` consecutive chunks, each
/// showing the least replicated chunk in it, so the answer always fits in a header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkMap {
    pub file: String,
    pub chunks: u32,
    #[serde(rename = "bucketSize")]
    pub bucket_size: u32,
    /// Participants holding the least replicated chunk of each bucket.
    pub buckets: Vec<u32>,
    /// Whether this node holds every chunk of each bucket.
    pub local: Vec<bool>,
}

impl ChunkMap {
    pub const MAX_BUCKETS: u32 = 1024;

    /// The map of a file from what this node knows of it.
    pub(crate) fn of(name: &FileName, f: &FileState) -> Self {
        let replication: Vec<u32> = ChunkIndex::all(f.chunk_count()).map(|i| f.replication(i)).collect();
        ChunkMap::new(name.to_string(), &replication, |i| f.have.contains(i))
    }

    /// Summarises per-chunk replication and local presence.
    pub fn new(file: String, replication: &[u32], held: impl Fn(ChunkIndex) -> bool) -> Self {
        let chunks = replication.len() as u32;
        let bucket_size = chunks.div_ceil(Self::MAX_BUCKETS).max(1);
        let mut map = ChunkMap { file, chunks, bucket_size, ..ChunkMap::default() };
        for (b, group) in replication.chunks(bucket_size as usize).enumerate() {
            let first = b as u32 * bucket_size;
            map.buckets.push(group.iter().copied().min().unwrap_or(0));
            map.local.push((first..first + group.len() as u32).map(ChunkIndex).all(&held));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn chunk_maps_stay_small() {
        let small = ChunkMap::new("f".into(), &[1, 2, 3], |i| i != ChunkIndex(1));
        assert_eq!(
            (small.bucket_size, small.buckets.clone(), small.local.clone()),
            (1, vec![1, 2, 3], vec![true, false, true])
        );
        let replication: Vec<u32> = (0..16384).map(|i| 1 + i % 4).collect();
        let big = ChunkMap::new("f".into(), &replication, |_| true);
        assert_eq!((big.bucket_size, big.buckets.len()), (16, 1024));
        assert!(big.buckets.iter().all(|&b| b == 1));
        assert!(serde_json::to_vec(&big).unwrap().len() < 16 * 1024);
    }

    #[test]
    fn rows_read_the_parallel_arrays_and_tolerate_short_ones() {
        let s = Status {
            num_files: 2,
            files: vec!["a".into(), "b".into()],
            local: vec![0.5, 1.0],
            system: vec![1.0, 1.0],
            least_replication: vec![2, 1],
            weighted_least_replication: vec![2.5, 1.0],
            sizes: vec![10],
            stored_as: vec!["".into(), "b.torronto-conflict-1234abcd".into()],
            refused: vec!["no space".into()],
            ..Status::default()
        };
        let rows: Vec<FileRow> = s.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].name, rows[0].local, rows[0].least, rows[0].size), ("a", 0.5, 2, Some(10)));
        assert_eq!((rows[1].name, rows[1].average, rows[1].size, rows[1].digest), ("b", 1.0, None, None));
        assert_eq!((rows[0].stored_as, rows[0].refused), (None, Some("no space")));
        assert_eq!((rows[1].stored_as, rows[1].refused), (Some("b.torronto-conflict-1234abcd"), None));
    }
}
