//! The standalone relay: each browser session gets its own TCP connection to a node,
//! and frames pass both ways unchanged (WebSocket message ⇄ length-prefixed frame).
//!
//! The browser's `Token` goes through untouched: the node checks it (and throttles
//! wrong ones) as for any client. But the node sees the relay as a loopback client,
//! which it takes for its owner's CLI, free to insert any file by path; a browser is
//! a remote client, so the relay refuses Insert itself (`{"Code":5}` with a reason)
//! and the browser uploads with the panel's file picker instead. Everything else is
//! forwarded as it came; both directions are decoded with core's `MessageReader`
//! only to know message boundaries and limits.
//!
//! Private networks are not relayed: the node would take the relay's loopback
//! connection for its owner's CLI, and through an encrypted session the relay could no
//! longer refuse Insert by path. A session opening with a Noise first record is closed
//! with a reason that points to the node's own `--ws` endpoint, which speaks the
//! handshake itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use torronto_core::wire::{Encoded, Reply};
use torronto_core::{Code, Control, Envelope, Message};
use torronto_net::{write_encoded, Decoder, FrameKind, FrameWrite, Step, TcpFrameReader, TcpFrameWriter};

use crate::origin::OriginPolicy;
use crate::secure::{opening, Opening};
use crate::ws::{self, WsFrameWriter};

const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// How the relay runs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The node's TCP address, `host:port`.
    pub node: String,
    pub origins: OriginPolicy,
    /// Sessions beyond this are refused at accept.
    pub max_sessions: usize,
}

/// Accepts browser sessions on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: RelayConfig) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_sessions));
    loop {
        let (stream, from) = torronto_net::accept(&listener, "relay").await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("refusing {from}: {} sessions already open", config.max_sessions);
            continue;
        };
        let config = config.clone();
        tokio::spawn(async move {
            match session(stream, &config).await {
                Ok(()) => tracing::debug!("session from {from} ended"),
                Err(e) => tracing::info!("session from {from} ended: {e:#}"),
            }
            drop(slot);
        });
    }
}

/// One browser session, relayed until either side ends it.
async fn session(stream: TcpStream, config: &RelayConfig) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut session = ws::accept(stream, &config.origins).await?;
    let first = match opening(&mut session, ws::HANDSHAKE_TIMEOUT).await? {
        Opening::Plain(first) => first,
        Opening::Handshake(_) => {
            let close = CloseFrame { code: CloseCode::Policy, reason: NOT_PRIVATE.into() };
            let _ = session.close(Some(close)).await;
            anyhow::bail!("refused a secure (private network) session: {NOT_PRIVATE}");
        }
    };
    let (browser_in, browser_out) = ws::split_after(session, first);
    let browser_out = Mutex::new(browser_out);
    let node = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&config.node)).await {
        Ok(Ok(node)) => node,
        failed => {
            let _ = browser_out.lock().await.close().await;
            return match failed {
                Ok(Err(e)) => Err(e).with_context(|| format!("cannot reach the node at {}", config.node)),
                _ => anyhow::bail!("cannot reach the node at {}: timed out", config.node),
            };
        }
    };
    let _ = node.set_nodelay(true);
    let (node_in, node_out) = node.into_split();
    let upstream = to_node(Decoder::new(browser_in), TcpFrameWriter::new(node_out), &browser_out);
    let downstream = to_browser(Decoder::new(TcpFrameReader::new(node_in)), &browser_out);
    let result = tokio::select! {
        r = upstream => r,
        r = downstream => r,
    };
    let _ = browser_out.lock().await.close().await;
    result
}

/// Why the relay refuses a private network's session (a WebSocket close reason: at
/// most 123 bytes).
pub const NOT_PRIVATE: &str = "ws-bridge relays open networks only: open the panel at the node's own --ws address";

/// Why the relay refuses a browser's Insert by path.
const NO_INSERT: &str = "insert by path is not available through ws-bridge (the node would read the file \
                         as its owner's); upload the file with the panel's file picker";

/// Browser → node: frames as they come, except Insert by path.
async fn to_node<S>(
    mut browser: Decoder<ws::WsFrameReader<S>>,
    mut node: impl FrameWrite,
    browser_out: &Mutex<WsFrameWriter<S>>,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    while let Some((kind, frame, step)) = browser.next_frame().await.context("from the browser")? {
        if let Step::Message(envelope) = &step {
            if matches!(envelope.message, Message::Control(Control::Insert { .. })) {
                let reply = Reply { reason: Some(NO_INSERT.into()), ..Reply::code(Code::BadPermission) };
                let refusal = Envelope { from: None, token: None, message: Message::Reply(reply) };
                let mut out = browser_out.lock().await;
                write_encoded(&mut *out, &refusal.encode()).await?;
                out.flush().await?;
                continue;
            }
        }
        node.write_frame(kind, frame).await?;
        if !matches!(step, Step::Partial) {
            node.flush().await?;
        }
    }
    Ok(())
}

/// Node → browser: whole messages, so a refusal from [`to_node`] never lands between
/// a header and its body.
async fn to_browser<S>(
    mut node: Decoder<TcpFrameReader<tokio::net::tcp::OwnedReadHalf>>,
    browser_out: &Mutex<WsFrameWriter<S>>,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let mut header = None;
    while let Some((kind, frame, step)) = node.next_frame().await.context("from the node")? {
        match (kind, step) {
            (FrameKind::Header, Step::Partial) => header = Some(frame),
            (_, Step::Message(_)) => {
                let encoded = match header.take() {
                    Some(header) => Encoded { header, body: Some(frame) },
                    None => Encoded { header: frame, body: None },
                };
                let mut out = browser_out.lock().await;
                write_encoded(&mut *out, &encoded).await?;
                out.flush().await?;
            }
            (_, step) => anyhow::bail!("the node sent a message the relay cannot frame: {step:?}"),
        }
    }
    Ok(())
}
