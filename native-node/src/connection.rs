//! One TCP connection: a reader task turning frames into messages for the driver,
//! and a writer task encoding the driver's messages into frames.
//!
//! Decoding happens here, on the connection's own task, so the driver only sees
//! typed messages; the size limits come from `torronto_core::wire` and are checked
//! before a frame's bytes are read.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;
use torronto_core::wire::{frame_prefix, MessageReader, WireError, FRAME_PREFIX_LEN};
use torronto_core::{ConnId, Envelope};

use crate::driver::Input;

/// A frame's bytes must arrive within this once its length has.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads messages until the stream ends or breaks the protocol, then reports the
/// disconnection.
pub async fn read_loop(conn: ConnId, stream: impl AsyncRead + Unpin, inputs: mpsc::Sender<Input>) {
    let mut stream = BufReader::with_capacity(256 * 1024, stream);
    let mut reader = MessageReader::new();
    loop {
        let frame = match read_frame(&mut stream, reader.frame_limit()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(conn, "closing connection: {e}");
                break;
            }
        };
        let input = match reader.push_frame(frame.freeze()) {
            Ok(Some(envelope)) => Input::Message { conn, envelope },
            Ok(None) => continue,
            Err(e) if e.is_fatal() => {
                tracing::debug!(conn, "closing connection: {e}");
                break;
            }
            Err(e) => Input::Malformed { conn, reason: e.to_string() },
        };
        if inputs.send(input).await.is_err() {
            return;
        }
    }
    let _ = inputs.send(Input::Disconnected { conn }).await;
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("frame body did not arrive within {BODY_TIMEOUT:?}")]
    Timeout,
}

/// One frame, or `None` at a clean end of stream.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin), limit: usize) -> Result<Option<BytesMut>, ReadError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(WireError::FrameTooLong { len: len as u64, limit }.into());
    }
    let mut frame = BytesMut::zeroed(len);
    tokio::time::timeout(BODY_TIMEOUT, stream.read_exact(&mut frame)).await.map_err(|_| ReadError::Timeout)??;
    Ok(Some(frame))
}

/// Writes what the driver sends until it drops the sender (a Close) or the peer
/// goes away; flushes whenever the queue runs dry.
pub async fn write_loop(stream: impl AsyncWrite + Unpin, mut outgoing: mpsc::UnboundedReceiver<Envelope>) {
    let mut stream = BufWriter::with_capacity(256 * 1024, stream);
    while let Some(first) = outgoing.recv().await {
        let mut next = Some(first);
        while let Some(envelope) = next {
            let encoded = envelope.encode();
            for frame in encoded.frames() {
                if stream.write_all(&frame_prefix(frame.len())).await.is_err() || stream.write_all(frame).await.is_err()
                {
                    return;
                }
            }
            next = outgoing.try_recv().ok();
        }
        if stream.flush().await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown().await;
}
