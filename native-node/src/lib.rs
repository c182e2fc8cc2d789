//! torronto-node: the native node and its command line, driving `torronto-core`.
//!
//! Layout (after tokio's mini-redis):
//! - [`driver`]: the event loop owning one `core::Node`: accepts and dials TCP
//!   connections, hands storage commands to [`storage`], feeds [`input`]s to the node
//!   (`driver/admission.rs` carries out the slot rule for each accepted connection);
//! - [`options`]: how to run a node ([`options::NodeOptions`], from the flags);
//! - [`input`]: what the node's tasks tell the loop;
//! - [`limits`]: `--upload-limit`/`--download-limit`: pacing chunk bodies, fair
//!   between connections, changed at run time by control Limit;
//! - [`metrics`]: `--metrics`, the node's counters as Prometheus text;
//! - [`connection`]: per-connection reader and writer tasks (frames ⇄ messages), for
//!   TCP and WebSocket alike (the frame stream comes from `torronto-net`, the
//!   WebSocket transport from `torronto-ws-bridge`);
//! - [`web`]: the `--ws` listener: the built web app and the WebSocket endpoint;
//! - [`slots`]: who gets a connection slot (per-address limit for TCP connections and
//!   WebSocket sessions alike, a reserve for this machine and known peers);
//! - [`tasks`]: every task the node spawns, so shutdown can end them and wait;
//! - [`storage`]: carries out storage commands off the loop (chunk I/O on its own
//!   thread, inserts on the blocking pool);
//! - [`shared`]: the shared folder: files put in it are adopted once settled (inotify),
//!   files the node held and that were deleted from it are restored;
//! - [`store`]: the node's folder on disk (complete files, partial data, manifests,
//!   conflict copies, the space it may use, removed files and their tombstones), one idea
//!   per file in `store/`;
//! - [`beneath`]: paths in the folder, opened, walked and renamed into without following
//!   symlinks;
//! - [`events`]: how the node's events read in the log;
//! - [`bittorrent`]: files exported as v1 torrents (control Torrent), the
//!   `--bittorrent` listener seeding them to standard clients, tracker announces;
//!   torrents downloaded for `torronto add` (control AddTorrent);
//! - [`client`]: the control client (`join`, `leave`, `insert`, `query`, `limit`);
//! - [`progress`]: `torronto insert`'s progress bar (or lines), from the node's status;
//! - [`watch`]: `torronto watch`, a live view of one node redrawn in place;
//! - [`config`]: `torronto node --config FILE`, a TOML file of the node's flags;
//! - [`peers_file`]: the peers file format, with node IDs pinned;
//! - [`private`]: private networks: identity file, secret, each connection's handshake
//!   (TCP, and `--ws` sessions told apart by their first message);
//! - [`program`]: how hints name this program (`torronto`, or the path that works);
//! - [`registry`]: where a node leaves its control token for its owner's CLI;
//! - [`owner`]: what belongs to this user: owner-only files, its loopback listeners;
//! - [`demo`]: `torronto demo`, a local private network to try it out.

pub mod beneath;
pub mod bittorrent;
pub mod client;
pub mod config;
pub mod connection;
pub mod demo;
pub mod driver;
pub mod events;
pub mod input;
pub mod limits;
pub mod metrics;
pub mod options;
pub mod owner;
pub mod peers_file;
pub mod private;
pub mod program;
pub mod progress;
pub mod registry;
pub mod shared;
pub mod slots;
pub mod storage;
pub mod store;
pub mod tasks;
pub mod watch;
pub mod web;

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
