//! Socket options for the node's connections, and accepting them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection on `listener`. A failed accept (most often out of file
/// descriptors) is logged as `what` and retried after a pause: it would fail again at
/// once, and a listener must outlive it. Cancel-safe, so it can sit in a `select!`.
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!("{what}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Lets at most about `bytes` wait unsent in the socket's buffer (`TCP_NOTSENT_LOWAT`):
/// a write waits until what was written before has left, so that what is written next
/// (a request behind chunk bodies) does not queue behind more than that.
pub fn limit_unsent(stream: &TcpStream, bytes: u32) -> std::io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_notsent_lowat(bytes)
}

/// Socket options every connection gets, TCP peers and WebSocket sessions alike.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    // A peer that vanishes without Remove (crash, cable cut) is noticed within
    // seconds, idle or mid-transfer, rather than after TCP's default 15 minutes.
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(15)));
}
