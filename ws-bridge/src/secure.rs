//! Private networks over a WebSocket: core's sans-IO [`Handshake`] in its message form
//! (one handshake record per binary message), then the [`SecureChannel`]'s records, one
//! per binary message.
//!
//! Inside the records runs exactly what runs inside a TCP secure channel: the open
//! protocol's byte stream of 4-byte length-prefixed frames. A frame may span records
//! (the browser seals at most 64 KiB per record, so its chunks take two) and a record may
//! hold several frames, so the reader
//! splits frames off its plaintext with core's `FrameDecoder`, under the same limits as
//! TCP, and the writer gathers frames and seals them once per flush.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use torronto_core::secure::{AuthenticatedPeer, Opener};
use torronto_core::wire::FrameDecoder;
use torronto_core::{Handshake, SecureChannel, SecureError};
use torronto_net::{FrameKind, FrameRead, FrameWrite, HandshakeError, ReadError, SealBatch};

use crate::ws::{io_error, next_data, transport_error};

/// What a session's first message says it speaks.
#[derive(Debug)]
pub enum Opening {
    /// A Noise first record (a binary message opening with a suite byte).
    Handshake(Bytes),
    /// Anything else: an open-protocol frame (or nothing: the client closed).
    Plain(Option<Bytes>),
}

/// Reads a session's first data message, within `limit`, and tells what it opens.
pub async fn opening<S>(session: &mut WebSocketStream<S>, limit: Duration) -> Result<Opening, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = tokio::time::timeout(limit, next_data(session))
        .await
        .map_err(|_| HandshakeError::Timeout(limit))?
        .map_err(io_error)?;
    Ok(match first {
        Some(Message::Binary(data)) if Handshake::is_first_record(&data) => Opening::Handshake(data),
        Some(Message::Text(text)) => Opening::Plain(Some(Bytes::from(text))),
        Some(message) => Opening::Plain(Some(message.into_data())),
        None => Opening::Plain(None),
    })
}

/// Runs `handshake` on a session until both sides are proven, within `limit`. `first`:
/// the peer's first record, if already read (see [`opening`]).
pub async fn handshake<S>(
    session: &mut WebSocketStream<S>,
    handshake: Handshake,
    first: Option<Bytes>,
    limit: Duration,
) -> Result<(SecureChannel, AuthenticatedPeer), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(limit, run_handshake(session, handshake, first))
        .await
        .map_err(|_| HandshakeError::Timeout(limit))?
}

async fn run_handshake<S>(
    session: &mut WebSocketStream<S>,
    mut handshake: Handshake,
    mut received: Option<Bytes>,
) -> Result<(SecureChannel, AuthenticatedPeer), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if let Some(record) = received.take() {
            handshake.handle_record(&record)?;
        }
        while let Some(record) = handshake.poll_record() {
            session.send(Message::Binary(record)).await.map_err(io_error)?;
        }
        if handshake.is_finished() {
            return Ok(handshake.finish()?);
        }
        received = match next_data(session).await.map_err(io_error)? {
            Some(Message::Binary(record)) => Some(record),
            Some(_) => return Err(SecureError::HandshakeFailed.into()),
            None => return Err(HandshakeError::Closed),
        };
    }
}

/// Splits a session whose handshake finished into its frame reader and writer.
pub fn split_secure<S>(session: WebSocketStream<S>, channel: SecureChannel) -> (SecureWsReader<S>, SecureWsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sealer, opener) = channel.split();
    let (sink, stream) = session.split();
    (SecureWsReader { stream, opener, plain: BytesMut::new() }, SecureWsWriter { sink, batch: SealBatch::new(sealer) })
}

fn secure_read_error(e: SecureError) -> ReadError {
    ReadError::Transport { what: "secure channel", source: Box::new(e) }
}

/// Reads frames from inside the channel's records, one record per message.
#[derive(Debug)]
pub struct SecureWsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    opener: Opener,
    /// What the records decrypted to: the open protocol's byte stream.
    plain: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameRead for SecureWsReader<S> {
    async fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(frame) = FrameDecoder::decode(&mut self.plain, limit)? {
                return Ok(Some(frame));
            }
            let record = match next_data(&mut self.stream).await.map_err(transport_error)? {
                Some(Message::Binary(record)) => record,
                // After the handshake only records come, as binary messages.
                Some(_) => return Err(secure_read_error(SecureError::Decrypt)),
                None if self.plain.is_empty() => return Ok(None),
                None => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            };
            self.opener.open_record(&record, &mut self.plain).map_err(secure_read_error)?;
        }
    }
}

/// Writes frames into the channel's records, sealing what gathered at each flush.
#[derive(Debug)]
pub struct SecureWsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    batch: SealBatch,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> SecureWsWriter<S> {
    async fn write_out(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        for record in self.batch.seal_records()? {
            self.sink.feed(Message::Binary(record)).await.map_err(io_error)?;
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameWrite for SecureWsWriter<S> {
    async fn write_frame(&mut self, _kind: FrameKind, frame: Bytes) -> io::Result<()> {
        if self.batch.push(&frame)? {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.sink.flush().await.map_err(io_error)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.sink.close().await.map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use torronto_core::secure::Hello;
    use torronto_core::{Identity, NetworkSecret, SecureConfig};

    fn config(seed: u8, secret: u8) -> SecureConfig {
        SecureConfig::new(
            Identity::from_random_bytes([seed; 32]),
            NetworkSecret::from_random_bytes([secret; 32]),
            Hello::default(),
        )
    }

    async fn sessions() -> (WebSocketStream<tokio::io::DuplexStream>, WebSocketStream<tokio::io::DuplexStream>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, Some(crate::ws::config()));
        let server = WebSocketStream::from_raw_socket(b, Role::Server, Some(crate::ws::config()));
        (client.await, server.await)
    }

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn frames_cross_a_secure_session_byte_identical() {
        let (mut browser, mut node) = sessions().await;
        let dialer = Handshake::initiator(&config(1, 9), [3; 32]).unwrap();
        let acceptor = async {
            let Opening::Handshake(first) = opening(&mut node, LIMIT).await.unwrap() else {
                panic!("a Noise first record opens the session")
            };
            let responder = Handshake::responder(&config(2, 9), [4; 32]).unwrap();
            handshake(&mut node, responder, Some(first), LIMIT).await
        };
        let (dialled, accepted) = tokio::join!(handshake(&mut browser, dialer, None, LIMIT), acceptor);
        let ((browser_channel, seen_by_browser), (node_channel, seen_by_node)) = (dialled.unwrap(), accepted.unwrap());
        assert_eq!(seen_by_browser.id, Identity::from_random_bytes([2; 32]).node_id());
        assert_eq!(seen_by_node.id, Identity::from_random_bytes([1; 32]).node_id());
        // Frames of every size, a chunk's Upload (larger than a record) among them.
        let frames: Vec<Bytes> =
            [0, 1, 5000, 65536, 300_000, 7].iter().map(|&n| (0..n).map(|i| (i % 251) as u8).collect()).collect();
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            let (_, mut out) = split_secure(browser, browser_channel);
            for frame in sent {
                out.write_frame(FrameKind::Body, frame).await.unwrap();
            }
            out.close().await.unwrap();
        });
        let (mut input, _) = split_secure(node, node_channel);
        for want in &frames {
            assert_eq!(input.read_frame(1 << 20).await.unwrap().as_ref(), Some(want));
        }
        assert!(input.read_frame(1 << 20).await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn another_secret_fails_and_a_plain_frame_is_told_apart() {
        let (mut browser, mut node) = sessions().await;
        let dialer = Handshake::initiator(&config(1, 8), [3; 32]).unwrap();
        let acceptor = async {
            let Opening::Handshake(first) = opening(&mut node, LIMIT).await.unwrap() else { panic!("a first record") };
            let responder = Handshake::responder(&config(2, 9), [4; 32]).unwrap();
            let result = handshake(&mut node, responder, Some(first), LIMIT).await;
            drop(node);
            result
        };
        let (dialled, accepted) = tokio::join!(handshake(&mut browser, dialer, None, LIMIT), acceptor);
        assert!(matches!(accepted, Err(HandshakeError::Secure(SecureError::HandshakeFailed))), "{accepted:?}");
        assert!(dialled.is_err());

        let (mut client, mut node) = sessions().await;
        client.send(Message::text(r#"{"Action":"Query","Token":"t"}"#)).await.unwrap();
        match opening(&mut node, LIMIT).await.unwrap() {
            Opening::Plain(Some(frame)) => assert_eq!(&frame[..], br#"{"Action":"Query","Token":"t"}"#),
            other => panic!("a JSON header is plaintext: {other:?}"),
        }
    }
}
