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
}
