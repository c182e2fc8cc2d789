//! torronto-node: the native node and its command line, driving `torronto-core`.
//!
//! Layout (after tokio's mini-redis):
//! - [`driver`]: the event loop owning one `core::Node`: accepts and dials TCP
//!   connections, runs storage on the blocking pool, feeds results back;
//! - [`connection`]: per-connection reader and writer tasks (frames ⇄ messages), for
//!   TCP and WebSocket alike (the frame stream comes from `torronto-net`, the
//!   WebSocket transport from `torronto-ws-bridge`);
//! - [`web`]: the `--ws` listener: the built web app and the WebSocket endpoint;
//! - [`store`]: the node's folder on disk (complete files, partial data, manifests);
//! - [`storage_worker`]: the thread doing chunk reads and writes;
//! - [`client`]: the control client (`join`, `leave`, `insert`, `query`);
//! - [`peers_file`]: the peers file format;
//! - [`demo`]: `torronto demo`, a local network to try it out.

pub mod client;
pub mod connection;
pub mod demo;
pub mod driver;
pub mod peers_file;
pub mod storage_worker;
pub mod store;
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
