//! Admission: whether an accepted connection or WebSocket session gets one of the
//! node's slots ([`Slots`] decides; this carries it out).

use std::net::SocketAddr;

use tokio::net::TcpStream;
use torronto_core::ConnInfo;

use super::Driver;
use crate::private::AcceptedWs;
use crate::slots::{is_local, Admission, Refusal};

impl Driver {
    /// Takes an accepted connection if [`Slots`] has room for it; when the slots it may
    /// use are full, the oldest connection that has not introduced itself (the node
    /// decides which) is closed to make room; with none, the new one is refused.
    pub(super) fn admit(&mut self, stream: TcpStream, from: SocketAddr) {
        let local = is_local(&stream, from);
        let idle = self.node.oldest_unintroduced().is_some();
        if self.make_room(self.slots.admission(self.open(), from.ip(), local, idle), from) {
            self.slots.take(from.ip());
            self.accept(stream, from, local);
        }
    }

    /// Takes a WebSocket session from `from` as [`Self::admit`] takes a connection, by
    /// the rule [`Slots::admission_ws`] gives for them.
    pub(super) fn admit_ws(&mut self, from: SocketAddr, session: AcceptedWs) {
        let idle = self.node.oldest_unintroduced().is_some();
        if !self.make_room(self.slots.admission_ws(self.open(), from.ip(), idle), from) {
            return;
        }
        self.slots.take(from.ip());
        let ip = Some(from.ip());
        match session {
            AcceptedWs::Plain(session, first) => {
                let (frames_in, frames_out) = torronto_ws_bridge::split_after(session, first);
                self.register(frames_in, frames_out, ConnInfo { dialed: None, local: false, peer: None }, ip);
            }
            AcceptedWs::Secure(session, channel, peer) => {
                let (frames_in, frames_out) = torronto_ws_bridge::split_secure(session, channel);
                self.register(frames_in, frames_out, ConnInfo { dialed: None, local: false, peer: Some(peer) }, ip);
            }
        }
    }

    /// Connections open or in their handshake.
    fn open(&self) -> usize {
        self.conns.len() + self.handshaking
    }

    /// Carries out an [`Admission`] for a connection from `from`: whether to take it.
    fn make_room(&mut self, admission: Admission, from: SocketAddr) -> bool {
        match admission {
            Admission::Take => true,
            Admission::MakeRoom => {
                let idle = self.node.oldest_unintroduced().expect("admission needs one to make room");
                tracing::debug!(%idle, "closing a connection that never introduced itself to make room for {from}");
                self.close(idle);
                true
            }
            // Debug only: one address's flood must not flood the log too.
            Admission::Refuse(why @ Refusal::AddressFull) => {
                tracing::debug!("refusing connection from {from}: {why}");
                false
            }
            Admission::Refuse(why) => {
                tracing::warn!("refusing connection from {from}: {why}");
                false
            }
        }
    }
}
