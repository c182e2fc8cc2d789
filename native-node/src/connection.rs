//! One connection, TCP or WebSocket: a reader task turning frames into messages for
//! the driver, and a writer task encoding the driver's messages into frames.
//!
//! Both transports go through `torronto_ws_bridge::frames` (the frame stream and the
//! decoder around core's `MessageReader`), so the size limits, the decoding and the
//! [`Input`]s the driver sees are the same whichever way a peer came in. Decoding
//! happens here, on the connection's own task, so the driver only sees typed messages.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use torronto_core::{ConnId, Envelope};
use torronto_ws_bridge::frames::{write_encoded, Decoder, FrameRead, FrameWrite, Incoming};

use crate::driver::Input;

/// Reads messages until the stream ends or breaks the protocol, then reports the
/// disconnection.
pub async fn read_loop(conn: ConnId, frames: impl FrameRead, inputs: mpsc::Sender<Input>) {
    let mut decoder = Decoder::new(frames);
    loop {
        let input = match decoder.next().await {
            Ok(Some(Incoming::Message(envelope))) => Input::Message { conn, envelope },
            Ok(Some(Incoming::Malformed(reason))) => Input::Malformed { conn, reason },
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(conn, "closing connection: {e}");
                break;
            }
        };
        if inputs.send(input).await.is_err() {
            return;
        }
    }
    let _ = inputs.send(Input::Disconnected { conn }).await;
}

/// Writes what the driver sends until it drops the sender (a Close) or the peer
/// goes away; flushes whenever the queue runs dry.
pub async fn write_loop(mut frames: impl FrameWrite, mut outgoing: mpsc::UnboundedReceiver<Envelope>) {
    while let Some(first) = outgoing.recv().await {
        let mut next = Some(first);
        while let Some(envelope) = next {
            if write_encoded(&mut frames, &envelope.encode()).await.is_err() {
                return;
            }
            next = outgoing.try_recv().ok();
        }
        if frames.flush().await.is_err() {
            return;
        }
    }
    let _ = frames.close().await;
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
