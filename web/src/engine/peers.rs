//! Peer sessions: one WebSocket per native node, which core treats as a dialled
//! connection (in a private network, proven by the secure handshake). Messages wait in a per-socket inbox while WebCrypto hashes an Upload's
//! body, so core still sees them in arrival order.

use std::collections::VecDeque;

use torronto_core::manifest::ChunkHash;
use torronto_core::{ConnId, ConnInfo, Envelope, Message, NetCommand, PeerAddr, PeerMessage};
use wasm_bindgen_futures::spawn_local;

use super::Engine;
use crate::socket::{Socket, SocketEvent};
use crate::util::now_ms;

/// A peer session: one WebSocket to a native node.
#[derive(Debug)]
pub(super) struct PeerConn {
    pub(super) addr: PeerAddr,
    socket: Socket,
    pub(super) open: bool,
    /// Messages received and not yet handed to core, in arrival order.
    inbox: VecDeque<Inbound>,
    next_seq: u64,
}

/// A peer's message waiting its turn: an Upload waits for its WebCrypto digest, and
/// whatever came after it on the same socket waits behind it.
#[derive(Debug)]
struct Inbound {
    seq: u64,
    envelope: Envelope,
    /// An Upload's body as the socket received it (see `Engine::upload_body`).
    body: Option<js_sys::ArrayBuffer>,
    /// The digest is being computed.
    waiting: bool,
    hash: Option<ChunkHash>,
}

impl Engine {
    /// Opens a peer session to `addr` at the URL a control session gave for it; core
    /// hears of a node it cannot reach as a failed dial.
    pub(super) fn open_peer(&mut self, addr: PeerAddr) {
        let now = now_ms();
        let Some(url) = self.dial_urls.get(&addr).cloned() else {
            self.node.handle_dial_failed(now, &addr);
            return;
        };
        self.last_open.insert(addr.clone(), now);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let weak = self.weak.clone();
        let opened = Socket::open(&url, self.secure.as_ref(), move |event| {
            if let Some(engine) = weak.upgrade() {
                engine.borrow_mut().on_socket(conn, event);
            }
        });
        match opened {
            Ok(socket) => {
                self.peers.insert(conn, PeerConn { addr, socket, open: false, inbox: VecDeque::new(), next_seq: 0 });
            }
            Err(_) => self.node.handle_dial_failed(now, &addr),
        }
    }

    fn on_socket(&mut self, conn: ConnId, event: SocketEvent) {
        let now = now_ms();
        match event {
            SocketEvent::Open(peer) => {
                let Some(p) = self.peers.get_mut(&conn) else { return };
                p.open = true;
                let addr = p.addr.clone();
                self.node.handle_connected(now, conn, ConnInfo { dialed: Some(addr), local: false, peer });
            }
            SocketEvent::Message(envelope, body) => {
                self.receive(conn, envelope, body);
                return;
            }
            SocketEvent::Malformed(reason) => self.node.handle_malformed(now, conn, reason),
            SocketEvent::Closed(_) => {
                // What arrived before the close still counts; core hashes what WebCrypto
                // has not.
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.inbox.iter_mut().for_each(|m| m.waiting = false);
                }
                self.deliver(conn);
                let Some(p) = self.peers.remove(&conn) else { return };
                if p.open {
                    self.node.handle_disconnected(now, conn);
                } else {
                    self.node.handle_dial_failed(now, &p.addr);
                }
            }
        }
        self.drain();
    }

    /// Queues a peer's message; an Upload's body goes to WebCrypto first.
    fn receive(&mut self, conn: ConnId, envelope: Envelope, body: Option<js_sys::ArrayBuffer>) {
        let body = match &envelope.message {
            Message::Peer(PeerMessage::Upload { data, .. }) => body.filter(|b| b.byte_length() as usize == data.len()),
            _ => None,
        };
        let digest = self.hasher.as_ref().zip(body.as_ref()).map(|(hasher, body)| hasher.digest(body));
        let Some(p) = self.peers.get_mut(&conn) else { return };
        let seq = p.next_seq;
        p.next_seq += 1;
        p.inbox.push_back(Inbound { seq, envelope, body, waiting: digest.is_some(), hash: None });
        if let Some(digest) = digest {
            let weak = self.weak.clone();
            spawn_local(async move {
                let hash = digest.await;
                if let Some(engine) = weak.upgrade() {
                    engine.borrow_mut().on_digest(conn, seq, hash);
                }
            });
        }
        self.deliver(conn);
    }

    fn on_digest(&mut self, conn: ConnId, seq: u64, hash: Option<ChunkHash>) {
        let Some(p) = self.peers.get_mut(&conn) else { return };
        if let Some(m) = p.inbox.iter_mut().find(|m| m.seq == seq) {
            m.waiting = false;
            m.hash = hash;
        }
        self.deliver(conn);
    }

    /// Hands core the messages at the head of `conn`'s inbox that are ready.
    fn deliver(&mut self, conn: ConnId) {
        loop {
            let Some(p) = self.peers.get_mut(&conn) else { return };
            if p.inbox.front().is_none_or(|m| m.waiting) {
                return;
            }
            let Inbound { envelope, body, hash, .. } = p.inbox.pop_front().expect("checked above");
            let now = now_ms();
            if let Message::Peer(PeerMessage::Upload { chunk, .. }) = &envelope.message {
                self.upload_body = body.map(|body| (chunk.clone(), body));
            }
            self.node.handle_message_hashed(now, conn, envelope, hash);
            self.drain();
            // Not verified, or not wanted: core asked for no write.
            self.upload_body = None;
        }
    }

    /// Carries out one network command of core's.
    pub(super) fn net(&mut self, cmd: NetCommand) {
        let now = now_ms();
        match cmd {
            NetCommand::Send { conn, envelope } => {
                if let Some(p) = self.peers.get(&conn) {
                    if p.socket.send(&envelope).is_err() {
                        // The close event follows and reports the disconnection.
                    }
                }
            }
            NetCommand::Dial(addr) => {
                if self.peers.values().any(|p| p.addr == addr) {
                    // Already connected or connecting: that session is the answer.
                    return;
                }
                self.open_peer(addr);
            }
            NetCommand::Close(conn) => {
                if self.peers.remove(&conn).is_some() {
                    self.node.handle_disconnected(now, conn);
                }
            }
        }
    }
}
