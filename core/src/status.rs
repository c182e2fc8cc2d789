//! The Query answer: per file, how much is here, how much exists, how well replicated.

use serde::{Deserialize, Serialize};

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
    /// Connected peers, `host:port` each.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Each file's size in bytes.
    #[serde(default)]
    pub sizes: Vec<u64>,
    /// Each file's hex digest.
    #[serde(default)]
    pub digests: Vec<String>,
    /// Verified chunks this node has stored from the network since it started.
    #[serde(rename = "chunksFetched", default)]
    pub chunks_fetched: u64,
    /// Chunks this node has sent to peers since it started.
    #[serde(rename = "chunksServed", default)]
    pub chunks_served: u64,
    /// For a Query naming a file: how many participants hold its chunks.
    #[serde(rename = "chunkMap", default, skip_serializing_if = "Option::is_none")]
    pub chunk_map: Option<ChunkMap>,
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

    /// Summarises per-chunk replication and local presence.
    pub fn new(file: String, replication: &[u32], held: impl Fn(u32) -> bool) -> Self {
        let chunks = replication.len() as u32;
        let bucket_size = chunks.div_ceil(Self::MAX_BUCKETS).max(1);
        let mut map = ChunkMap { file, chunks, bucket_size, ..ChunkMap::default() };
        for (b, group) in replication.chunks(bucket_size as usize).enumerate() {
            let first = b as u32 * bucket_size;
            map.buckets.push(group.iter().copied().min().unwrap_or(0));
            map.local.push((first..first + group.len() as u32).all(&held));
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
        let small = ChunkMap::new("f".into(), &[1, 2, 3], |i| i != 1);
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
}
