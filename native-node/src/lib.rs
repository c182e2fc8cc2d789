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

/// Completes on Ctrl-C or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: called before a program says it is ready, a signal sent as soon
/// as that line appears (by a test reading it, or a quick user) is caught instead of
/// ending the process at once, with its folders and peers left as they were.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn next(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let interrupt = next(signal(SignalKind::interrupt()).ok());
    let terminate = next(signal(SignalKind::terminate()).ok());
    async move {
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Ctrl-C arriving between the call and the first poll is caught: with the handler
    /// installed on first poll, it ended this process.
    #[tokio::test]
    async fn a_ctrl_c_before_the_wait_begins_is_caught() {
        let shutdown = super::shutdown_signal();
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("run kill");
        assert!(sent.success());
        // The signal is delivered before the wait starts (to an uncaught SIGINT, fatal).
        std::thread::sleep(Duration::from_millis(200));
        tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("the signal was caught");
    }
}
