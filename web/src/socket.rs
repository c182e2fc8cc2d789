//! One WebSocket carrying protocol messages: a text message is a header frame, a
//! binary message a body frame (docs/protocol.md, "Framing"). Frames are decoded by
//! core's `MessageReader`, so limits and parsing are exactly those of a TCP peer.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use js_sys::{ArrayBuffer, Uint8Array};
use torronto_core::wire::MessageReader;
use torronto_core::Envelope;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use crate::error::WebError;

/// What a socket reports to its owner.
#[derive(Debug)]
pub enum SocketEvent {
    Open,
    /// A message, and the binary WebSocket message that was its body, if it had one
    /// (an Upload's chunk, still in JS: storing it needs no copy out of wasm).
    Message(Envelope, Option<ArrayBuffer>),
    /// A frame core could not decode; the stream is still in step.
    Malformed(String),
    /// The socket is gone (closed by the other side, refused, or broke the protocol).
    Closed(String),
}

type Handler = Rc<RefCell<dyn FnMut(SocketEvent)>>;

/// An open (or opening) WebSocket. Dropping it closes it without reporting `Closed`,
/// since whoever dropped it already knows.
pub struct Socket {
    ws: WebSocket,
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
    /// Starts connecting to `url`; `handler` hears every event from then on.
    pub fn open(url: &str, handler: impl FnMut(SocketEvent) + 'static) -> Result<Socket, WebError> {
        let ws = WebSocket::new(url).map_err(|e| WebError::web_socket(&e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let handler: Handler = Rc::new(RefCell::new(handler));
        // Set once the stream broke the protocol: nothing after that is read.
        let dead = Rc::new(std::cell::Cell::new(false));

        let h = handler.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| (h.borrow_mut())(SocketEvent::Open));

        let h = handler.clone();
        let ws2 = ws.clone();
        let dead2 = dead.clone();
        let mut reader = MessageReader::new();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if dead2.get() {
                return;
            }
            let data = e.data();
            let (frame, body) = if let Some(text) = data.as_string() {
                (Bytes::from(text.into_bytes()), None)
            } else if let Ok(buf) = data.dyn_into::<ArrayBuffer>() {
                (Bytes::from(Uint8Array::new(&buf).to_vec()), Some(buf))
            } else {
                return;
            };
            let event = match reader.push_frame(frame) {
                Ok(Some(envelope)) => SocketEvent::Message(envelope, body),
                Ok(None) => return,
                Err(e) if e.is_fatal() => {
                    dead2.set(true);
                    let _ = ws2.close();
                    SocketEvent::Closed(format!("protocol error: {e}"))
                }
                Err(e) => SocketEvent::Malformed(e.to_string()),
            };
            (h.borrow_mut())(event);
        });

        let h = handler;
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            if dead.replace(true) {
                return;
            }
            let reason = match (e.code(), e.reason()) {
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
        Ok(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close })
    }

    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// Sends one message: its header as text, its body (if any) as binary.
    pub fn send(&self, envelope: &Envelope) -> Result<(), WebError> {
        let encoded = envelope.encode();
        // serde_json only writes UTF-8.
        let header = std::str::from_utf8(&encoded.header).map_err(|e| WebError::NotUtf8(e.to_string()))?;
        self.ws.send_with_str(header).map_err(|e| WebError::web_socket(&e))?;
        if let Some(body) = &encoded.body {
            self.ws.send_with_u8_array(body).map_err(|e| WebError::web_socket(&e))?;
        }
        Ok(())
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
