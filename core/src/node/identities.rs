//! Which key may speak for which address in a private network, and which keys are
//! banned. A member's address is the one its handshake's `Hello` gives, so without a rule
//! any member could claim any address: another member's while that one is away, or a
//! pinned one on a connection it opened to us (pins are checked in the handshake only
//! when we dial). The rule, checked on every proven connection, dialled or accepted:
//!
//! 1. a banned key is refused, under any address;
//! 2. an address pinned in the peers file (`host:port#ID`) is held by that key alone;
//! 3. otherwise the first key proven for an address holds it for the node's life (trust
//!    on first use): a member cannot take over another's address in the status, peer
//!    lists or bans, even while that member is not connected. A member that made itself
//!    a new identity is refused until this node restarts, or is pinned to its new ID.
//!
//! Nothing here is kept on disk: pins live in the peers file; first use starts over at
//! each start. In open networks nothing here applies: an address is all there is.

use std::collections::{BTreeMap, BTreeSet};

use super::{Event, Node};
use crate::secure::NodeId;
use crate::wire::PeerAddr;

#[derive(Debug, Default)]
pub(super) struct Identities {
    /// From the peers file: only this key may hold the address.
    pins: BTreeMap<PeerAddr, NodeId>,
    /// The first key proven for each unpinned address.
    first: BTreeMap<PeerAddr, NodeId>,
    /// Keys banned for bad chunks or manifests, whatever address they give.
    banned: BTreeSet<NodeId>,
}

impl Identities {
    pub(super) fn pin(&mut self, addr: PeerAddr, id: NodeId) {
        self.pins.insert(addr, id);
    }

    /// Bans a key; the addresses it held first are free again (it may have claimed a
    /// member's address before that member came).
    pub(super) fn ban(&mut self, id: NodeId) {
        self.banned.insert(id);
        self.first.retain(|_, first| *first != id);
    }

    /// Whether key `id` may speak for `addr`; records it as the address's first key.
    fn admit(&mut self, addr: &PeerAddr, id: NodeId) -> Admission {
        if self.banned.contains(&id) {
            return Admission::Banned;
        }
        if let Some(&pinned) = self.pins.get(addr) {
            return if pinned == id { Admission::Admitted } else { Admission::Held { holder: pinned, pinned: true } };
        }
        // A browser's address (`browser-<short ID>`, port 0) is made from its key: a
        // fresh one per page load, nothing to remember.
        if !addr.is_diallable() {
            return Admission::Admitted;
        }
        match *self.first.entry(addr.clone()).or_insert(id) {
            first if first == id => Admission::Admitted,
            first => Admission::Held { holder: first, pinned: false },
        }
    }
}

enum Admission {
    Admitted,
    Banned,
    /// The address belongs to another key.
    Held {
        holder: NodeId,
        pinned: bool,
    },
}

impl Node {
    /// Pins `addr` to the key with ID `id` (a `host:port#ID` line of the peers file): a
    /// peer giving that address with another key is refused, on connections we dial
    /// and on connections we accept.
    pub fn pin(&mut self, addr: PeerAddr, id: NodeId) {
        self.identities.pin(addr, id);
    }

    /// Whether a connection's proven key may speak for the address its `Hello` gives
    /// (the module's rule); a refusal is reported as an event.
    pub(super) fn admit_key(&mut self, addr: &PeerAddr, id: NodeId) -> bool {
        match self.identities.admit(addr, id) {
            Admission::Admitted => true,
            Admission::Banned => {
                self.events.push_back(Event::BannedKeyRefused { peer: addr.clone(), id });
                false
            }
            Admission::Held { holder, pinned } => {
                self.events.push_back(Event::KeyConflict { peer: addr.clone(), bound: holder, presented: id, pinned });
                false
            }
        }
    }
}
