//! The WebSocket transport: the server handshake (Origin check, limits) and the frame
//! reader and writer over a session. One WebSocket message is one frame: a header as
//! a text message, a body as a binary one.
//!
//! Reading accepts either message type for either frame: the order of frames, not the
//! message type, says what a frame is (as on TCP), so the two transports decode alike.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use torronto_core::wire::{WireError, LIST_BODY_LIMIT};
use torronto_net::{FrameKind, FrameRead, FrameWrite, ReadError};

use crate::origin::OriginPolicy;

/// A WebSocket session over TCP, as the node's listener and the relay accept them.
pub type WsSession = WebSocketStream<TcpStream>;

/// The handshake must finish within this, so idle sockets cannot pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake did not produce a session.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("origin {0:?} is not allowed (answered 403)")]
    Origin(String),
    #[error("handshake did not finish within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("handshake failed: {0}")]
    Handshake(#[from] tungstenite::Error),
}

/// Session limits: no message larger than the largest frame the protocol allows, so
/// tungstenite refuses a bigger one while reading it rather than after buffering it.
/// The per-frame limit (64 KiB for a header, a chunk's length for an Upload body) is
/// checked on each message by the reader.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(LIST_BODY_LIMIT)).max_frame_size(Some(LIST_BODY_LIMIT))
}

/// Runs the server handshake on `stream`, refusing with 403 a browser whose Origin
/// the policy does not allow. A request without Origin (not a browser) is accepted.
pub async fn accept<S>(stream: S, policy: &OriginPolicy) -> Result<WebSocketStream<S>, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut refused = None;
    // The error type is tungstenite's (the response it sends), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(response);
        };
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if policy.allows(&origin) {
            return Ok(response);
        }
        let mut answer = ErrorResponse::new(Some(format!(
            "origin {origin} may not open a session here; allowed: {}\n",
            policy.allowed().join(", ")
        )));
        *answer.status_mut() = StatusCode::FORBIDDEN;
        refused = Some(origin);
        Err(answer)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config()));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => Err(AcceptError::Timeout),
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(match refused {
            Some(origin) => AcceptError::Origin(origin),
            None => e.into(),
        }),
    }
}

/// Splits a session into its frame reader and writer.
pub fn split<S>(session: WebSocketStream<S>) -> (WsFrameReader<S>, WsFrameWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    split_after(session, None)
}

/// As [`split`], for a session whose first message was already read (to see whether it
/// opens a handshake): `first` is read again as the first frame.
pub fn split_after<S>(session: WebSocketStream<S>, first: Option<Bytes>) -> (WsFrameReader<S>, WsFrameWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = session.split();
    (WsFrameReader { stream, first }, WsFrameWriter { sink })
}

/// The next data message of a session, text or binary; `None` once the peer closed it
/// (however abruptly). Pings are answered by tungstenite itself.
pub(crate) async fn next_data<St>(stream: &mut St) -> Result<Option<Message>, tungstenite::Error>
where
    St: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        return match stream.next().await {
            None | Some(Ok(Message::Close(_))) => Ok(None),
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => Ok(Some(message)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake),
            )) => Ok(None),
            Some(Err(e)) => Err(e),
        };
    }
}

pub(crate) fn transport_error(e: tungstenite::Error) -> ReadError {
    ReadError::Transport { what: "websocket", source: Box::new(e) }
}

/// The receiving half of a session, one frame per message.
#[derive(Debug)]
pub struct WsFrameReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    /// A first message read before the split, handed out first.
    first: Option<Bytes>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameRead for WsFrameReader<S> {
    async fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        let frame = match self.first.take() {
            Some(first) => first,
            None => match next_data(&mut self.stream).await.map_err(transport_error)? {
                None => return Ok(None),
                Some(Message::Text(text)) => Bytes::from(text),
                Some(message) => message.into_data(),
            },
        };
        if frame.len() > limit {
            return Err(WireError::FrameTooLong { len: frame.len() as u64, limit }.into());
        }
        Ok(Some(frame))
    }
}

/// The sending half of a session, one message per frame.
#[derive(Debug)]
pub struct WsFrameWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
}

pub(crate) fn io_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameWrite for WsFrameWriter<S> {
    async fn write_frame(&mut self, kind: FrameKind, frame: Bytes) -> io::Result<()> {
        let message = match kind {
            FrameKind::Header => {
                Message::Text(Utf8Bytes::try_from(frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?)
            }
            FrameKind::Body => Message::Binary(frame),
        };
        self.sink.feed(message).await.map_err(io_error)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.sink.flush().await.map_err(io_error)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.sink.close().await.map_err(io_error)
    }
}
