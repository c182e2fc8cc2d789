//! What the node's tasks tell the driver's loop. It sits apart from the driver so the
//! tasks that send inputs (connections, storage, the web listener) do not import the
//! driver that starts them.

use tokio::net::TcpStream;
use torronto_core::{ConnId, Envelope, PeerAddr, StorageEvent};
use torronto_net::{HandshakeError, Secured};
use torronto_ws_bridge::WsSession;

use crate::private::Accepted;

/// A dialled TCP connection, ready for frames.
#[derive(Debug)]
pub enum Link {
    Plain(TcpStream),
    /// In a private network, after the handshake.
    Secure(TcpStream, Box<Secured>),
}

/// One thing that happened outside the loop.
#[derive(Debug)]
pub enum Input {
    Dialed {
        addr: PeerAddr,
        result: std::io::Result<Link>,
    },
    /// An accepted connection in a private network, after its first bytes (and handshake).
    Accepted {
        from: std::net::SocketAddr,
        result: Result<Accepted, HandshakeError>,
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
