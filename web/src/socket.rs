//! One WebSocket carrying protocol messages: a text message is a header frame, a
//! binary message a body frame (docs/protocol.md, "Framing"). Frames are decoded by
//! core's `MessageReader`, so limits and parsing are exactly those of a TCP peer.
//!
//! In a private network ([`Socket::open`] given a `SecureConfig`) the socket first runs
//! core's Noise handshake as initiator, one record per binary message, and reports
//! `Open` only once the node has proven it holds the network secret. From then on every
//! message is one sealed record, and the records carry the open protocol's TCP byte
//! stream (length-prefixed frames), split into frames with core's `FrameDecoder`: the
//! same as the native node's `torronto_ws_bridge::secure` on the other end.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use js_sys::{ArrayBuffer, Uint8Array};
use torronto_core::secure::{AuthenticatedPeer, Hello};
use torronto_core::wire::{FrameDecoder, MessageReader};
use torronto_core::{Envelope, Handshake, Identity, Message, NetworkSecret, PeerMessage, SecureChannel, SecureConfig};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use crate::error::WebError;

/// What a socket reports to its owner.
#[derive(Debug)]
pub enum SocketEvent {
    /// Ready for messages; in a private network, the peer the handshake proved.
    Open(Option<AuthenticatedPeer>),
    /// A message, and the binary WebSocket message that was its body, if it had one
    /// (an Upload's chunk, still in JS: storing it needs no copy out of wasm).
    Message(Envelope, Option<ArrayBuffer>),
    /// A frame core could not decode; the stream is still in step.
    Malformed(String),
    /// The socket is gone (closed by the other side, refused, or broke the protocol).
    Closed(String),
}

type Handler = Rc<RefCell<dyn FnMut(SocketEvent)>>;

/// What the socket's messages are.
enum Link {
    /// Frames, one per message.
    Plain,
    /// Handshake records (private network), until the handshake finishes.
    Handshaking(Box<Handshake>),
    /// Sealed records carrying the frame stream; `plain` holds what was opened and not
    /// yet split into frames.
    Secure { channel: SecureChannel, plain: BytesMut },
    /// Broke the protocol, or failed the handshake: nothing more is read or sent.
    Dead,
}

/// An open (or opening) WebSocket. Dropping it closes it without reporting `Closed`,
/// since whoever dropped it already knows.
pub struct Socket {
    ws: WebSocket,
    link: Rc<RefCell<Link>>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("url", &self.ws.url()).finish()
    }
}

impl Socket {
    /// Starts connecting to `url`; `handler` hears every event from then on. With
    /// `secure`, the session is encrypted and the node must prove the network secret.
    pub fn open(
        url: &str,
        secure: Option<&SecureConfig>,
        handler: impl FnMut(SocketEvent) + 'static,
    ) -> Result<Socket, WebError> {
        // Made first, so a handshake that cannot start never opens a socket.
        let handshake = match secure {
            Some(config) => Some(Handshake::initiator(config, random_entropy()?).map_err(WebError::secure)?),
            None => None,
        };
        let ws = WebSocket::new(url).map_err(|e| WebError::web_socket(&e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let handler: Handler = Rc::new(RefCell::new(handler));
        let link = Rc::new(RefCell::new(match handshake {
            Some(handshake) => Link::Handshaking(Box::new(handshake)),
            None => Link::Plain,
        }));

        let (h, ws2, link2) = (handler.clone(), ws.clone(), link.clone());
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let event = match &mut *link2.borrow_mut() {
                Link::Handshaking(handshake) => {
                    send_records(&ws2, handshake);
                    return;
                }
                _ => SocketEvent::Open(None),
            };
            (h.borrow_mut())(event);
        });

        let (h, ws2, link2) = (handler.clone(), ws.clone(), link.clone());
        let mut reader = MessageReader::new();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data();
            let (frame, body) = if let Some(text) = data.as_string() {
                (Bytes::from(text.into_bytes()), None)
            } else if let Ok(buf) = data.dyn_into::<ArrayBuffer>() {
                (Bytes::from(Uint8Array::new(&buf).to_vec()), Some(buf))
            } else {
                return;
            };
            let events = receive(&mut link2.borrow_mut(), &mut reader, &ws2, frame, body);
            for event in events {
                (h.borrow_mut())(event);
            }
        });

        let h = handler;
        let link2 = link.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            let was = std::mem::replace(&mut *link2.borrow_mut(), Link::Dead);
            let reason = match (e.code(), e.reason()) {
                _ if matches!(was, Link::Dead) => return,
                // A node without the secret (or with another) ends the handshake at once.
                (_, r) if matches!(was, Link::Handshaking(_)) && r.is_empty() => {
                    "closed during the secure handshake: the node does not hold this network secret".to_string()
                }
                (1000, _) => "closed".to_string(),
                (1006, _) => "connection lost or refused".to_string(),
                (code, r) if r.is_empty() => format!("closed (code {code})"),
                (code, r) => format!("closed (code {code}: {r})"),
            };
            (h.borrow_mut())(SocketEvent::Closed(reason));
        });

        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket { ws, link, _on_open: on_open, _on_message: on_message, _on_close: on_close })
    }

    /// Open for messages (in a private network: the handshake is done).
    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && matches!(*self.link.borrow(), Link::Plain | Link::Secure { .. })
    }

    /// Sends one message: its header as text, its body (if any) as binary; in a
    /// private network both frames sealed together.
    pub fn send(&self, envelope: &Envelope) -> Result<(), WebError> {
        let encoded = envelope.encode();
        match &mut *self.link.borrow_mut() {
            Link::Plain => {
                // serde_json only writes UTF-8.
                let header = std::str::from_utf8(&encoded.header).map_err(|e| WebError::NotUtf8(e.to_string()))?;
                self.ws.send_with_str(header).map_err(|e| WebError::web_socket(&e))?;
                if let Some(body) = &encoded.body {
                    self.ws.send_with_u8_array(body).map_err(|e| WebError::web_socket(&e))?;
                }
                Ok(())
            }
            Link::Secure { channel, .. } => {
                let mut plain = BytesMut::with_capacity(encoded.tcp_len());
                encoded.write_tcp(&mut plain);
                for record in channel.seal_records(&plain).map_err(WebError::secure)? {
                    self.ws.send_with_u8_array(&record).map_err(|e| WebError::web_socket(&e))?;
                }
                Ok(())
            }
            Link::Handshaking(_) | Link::Dead => Err(WebError::WebSocket("the session is not open".into())),
        }
    }
}

/// Sends the handshake records due.
fn send_records(ws: &WebSocket, handshake: &mut Handshake) {
    while let Some(record) = handshake.poll_record() {
        // A failed send closes the socket, whose close event reports it.
        let _ = ws.send_with_u8_array(&record);
    }
}

/// A member's part for a control session of this page: a fresh key pair, the network's secret, and no listen address (a browser accepts none).
pub fn page_member(secret: &NetworkSecret) -> Result<SecureConfig, WebError> {
    Ok(page_member_with(secret, Identity::from_random_bytes(random_entropy()?)))
}

/// [`page_member`] with the key pair given (the browser peer's, remembered).
pub fn page_member_with(secret: &NetworkSecret, identity: Identity) -> SecureConfig {
    SecureConfig::new(identity, secret.clone(), Hello::default())
}

/// 32 bytes for a handshake's ephemeral key, from the browser's CSPRNG.
fn random_entropy() -> Result<[u8; 32], WebError> {
    let mut bytes = [0u8; 32];
    crate::util::random_bytes(&mut bytes)?;
    Ok(bytes)
}

/// Takes one message in and says what came of it.
fn receive(
    link: &mut Link,
    reader: &mut MessageReader,
    ws: &WebSocket,
    frame: Bytes,
    body: Option<ArrayBuffer>,
) -> Vec<SocketEvent> {
    let fail = |link: &mut Link, why: String| {
        *link = Link::Dead;
        let _ = ws.close();
        vec![SocketEvent::Closed(why)]
    };
    match link {
        Link::Dead => Vec::new(),
        Link::Plain => match push(reader, frame, body) {
            Ok(event) => event.into_iter().collect(),
            Err(why) => fail(link, why),
        },
        Link::Handshaking(handshake) => {
            // A text message is no handshake record: the node is not private.
            let result = match body {
                Some(_) => handshake.handle_record(&frame),
                None => Err(torronto_core::SecureError::HandshakeFailed),
            };
            if let Err(e) = result {
                return fail(link, format!("secure handshake failed: {e} (does the node hold this network secret?)"));
            }
            send_records(ws, handshake);
            if !handshake.is_finished() {
                return Vec::new();
            }
            let Link::Handshaking(handshake) = std::mem::replace(link, Link::Dead) else { unreachable!() };
            match handshake.finish() {
                Ok((channel, peer)) => {
                    *link = Link::Secure { channel, plain: BytesMut::new() };
                    vec![SocketEvent::Open(Some(peer))]
                }
                Err(e) => fail(link, format!("secure handshake failed: {e}")),
            }
        }
        Link::Secure { channel, plain } => {
            if body.is_none() {
                return fail(link, "protocol error: a text message inside the secure session".into());
            }
            if let Err(e) = channel.open_record(&frame, plain) {
                return fail(link, format!("secure session broken: {e}"));
            }
            let mut events = Vec::new();
            loop {
                let frame = match FrameDecoder::decode(plain, reader.frame_limit()) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return events,
                    Err(e) => {
                        events.extend(fail(link, format!("protocol error: {e}")));
                        return events;
                    }
                };
                match push(reader, frame, None) {
                    Ok(event) => events.extend(event),
                    Err(why) => {
                        events.extend(fail(link, why));
                        return events;
                    }
                }
            }
        }
    }
}

/// Hands one frame to the reader: the message it completed (with an Upload's body as an
/// ArrayBuffer), a malformed one, or why the stream is dead.
fn push(reader: &mut MessageReader, frame: Bytes, body: Option<ArrayBuffer>) -> Result<Option<SocketEvent>, String> {
    match reader.push_frame(frame) {
        Ok(Some(envelope)) => {
            // Inside a secure session the body was a slice of a record: copied into JS
            // here, for the store (a plain socket received it there already).
            let body = body.or_else(|| match &envelope.message {
                Message::Peer(PeerMessage::Upload { data, .. }) => Some(Uint8Array::from(&data[..]).buffer()),
                _ => None,
            });
            Ok(Some(SocketEvent::Message(envelope, body)))
        }
        Ok(None) => Ok(None),
        Err(e) if e.is_fatal() => Err(format!("protocol error: {e}")),
        Err(e) => Ok(Some(SocketEvent::Malformed(e.to_string()))),
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}
