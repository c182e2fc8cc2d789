//! What the node's tasks tell the driver's loop. It sits apart from the driver so the
//! tasks that send inputs (connections, storage, the web listener) do not import the
//! driver that starts them.

use tokio::net::TcpStream;
use torronto_core::{ConnId, Envelope, PeerAddr, StorageEvent};
use torronto_net::{HandshakeError, Secured};

use crate::private::{Accepted, AcceptedWs};

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
    /// A browser (or other WebSocket client) finished the WebSocket handshake on `--ws`
    /// (in a private network, also the secure handshake, or showed it is plaintext).
    WebSocket {
        from: std::net::SocketAddr,
        session: Box<AcceptedWs>,
    },
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
    /// What the shared folder's watcher saw.
    Folder(Vec<crate::shared::Change>),
    /// A `/metrics` scrape asks for the counters, rendered.
    Metrics(tokio::sync::oneshot::Sender<String>),
}
