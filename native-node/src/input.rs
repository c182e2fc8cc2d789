//! What the node's tasks tell the driver's loop. It sits apart from the driver so the
//! tasks that send inputs (connections, storage, the web listener) do not import the
//! driver that starts them.

use tokio::net::TcpStream;
use torronto_core::{ConnId, Envelope, PeerAddr, StorageEvent};
use torronto_ws_bridge::WsSession;

/// One thing that happened outside the loop.
#[derive(Debug)]
pub enum Input {
    Dialed {
        addr: PeerAddr,
        result: std::io::Result<TcpStream>,
    },
    /// A browser (or other WebSocket client) finished the handshake on `--ws`.
    WebSocket(Box<WsSession>),
    Message {
        conn: ConnId,
        envelope: Envelope,
    },
    Malformed {
        conn: ConnId,
        reason: String,
    },
    Disconnected {
        conn: ConnId,
    },
    Storage(StorageEvent),
}
