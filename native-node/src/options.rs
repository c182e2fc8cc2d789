//! How to run a node: what `torronto node`'s flags (or a config file, or the demo)
//! tell [`crate::driver::Driver::bind`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use torronto_core::{NetworkSecret, NodeId, PeerAddr, RateLimits};

use crate::store::Space;
use crate::web::WebOptions;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The address to listen on; also the node's identity unless `advertise` is given.
    pub listen: PeerAddr,
    /// Where peers reach the node, when that is not `listen` (`0.0.0.0`, NAT).
    pub advertise: Option<PeerAddr>,
    /// The network secret: a private network (handshake on every peer connection).
    pub secret: Option<NetworkSecret>,
    /// Node IDs pinned in the peers file, by address.
    pub pins: HashMap<PeerAddr, NodeId>,
    pub dir: PathBuf,
    pub peers: Vec<PeerAddr>,
    pub join: bool,
    pub token: Option<String>,
    /// Folders remote control clients may insert from (`--insert-from`).
    pub insert_from: Vec<PathBuf>,
    /// Where to register the token for the owner's CLI ([`crate::registry`]); `None`
    /// for nodes no CLI talks to (in-process tests).
    pub registry: Option<PathBuf>,
    /// Serve the control panel and the WebSocket endpoint (`--ws`).
    pub web: Option<WebOptions>,
    /// Serve Prometheus metrics at `/metrics` (`--metrics`).
    pub metrics: Option<PeerAddr>,
    /// How much of the disk the node may use (`--min-free`, `--max-store`).
    pub space: Space,
    /// Bandwidth limits on chunk bodies (`--upload-limit`, `--download-limit`).
    pub limits: RateLimits,
    /// Seed exported files to BitTorrent peers on this address (`--bittorrent`).
    pub bittorrent: Option<PeerAddr>,
    /// Share the folder ([`crate::shared`]), taking a file once unchanged this long.
    pub settle: Option<Duration>,
    /// Most links to other nodes (`--max-links`).
    pub max_links: usize,
    /// Hold uploads under what the uplink carries when peers say they queue
    /// (`--auto-upload-limit`; see core's `uplink`).
    pub auto_upload_limit: bool,
}

/// `--max-links`'s default.
pub const DEFAULT_MAX_LINKS: usize = 32;
