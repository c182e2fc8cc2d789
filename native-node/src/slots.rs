//! Who gets one of the node's connection slots: a bound on all connections, on those
//! one remote address holds, and a reserve that strangers cannot take (so a flood of
//! idle connections cannot lock out the owner's CLI or the node's known peers).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

/// Connections (TCP and WebSocket together) beyond this are refused at accept, so a
/// flood cannot exhaust memory.
pub const MAX_CONNECTIONS: usize = 1024;
/// The last of those slots go only to this machine (the owner's CLI) and to addresses
/// the peers file names: strangers cannot take them all.
pub const RESERVED_SLOTS: usize = 64;
/// Accepted connections one remote address may hold open (handshakes included).
/// Connections from this machine are exempt: every user and test of the machine shares
/// its loopback address; idle ones are bounded by the introduction timeout instead.
pub const PER_ADDRESS: usize = 16;

/// What to do with a newly accepted connection.
#[derive(Debug, PartialEq)]
pub enum Admission {
    Take,
    /// Close the oldest connection that has not introduced itself, then take it.
    MakeRoom,
    Refuse(Refusal),
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Refusal {
    /// Its address holds [`PER_ADDRESS`] connections already.
    AddressFull,
    /// Every slot it may use is taken, none by an idle connection.
    NoSlot,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::AddressFull => "too many connections from its address",
            Refusal::NoSlot => "no free connection slot",
        })
    }
}

/// Accepted TCP connections by remote address, and the addresses that may use the
/// reserved slots.
#[derive(Debug, Default)]
pub struct Slots {
    per_address: HashMap<IpAddr, usize>,
    /// Addresses the peers file names (as IP literals).
    known: HashSet<IpAddr>,
}

impl Slots {
    pub fn new(known: HashSet<IpAddr>) -> Self {
        Self { per_address: HashMap::new(), known }
    }

    /// Decides on a connection from `ip` while `open` connections are open; `idle` says
    /// whether one that never introduced itself could go.
    pub fn admission(&self, open: usize, ip: IpAddr, local: bool, idle: bool) -> Admission {
        let from_address = self.per_address.get(&ip).copied().unwrap_or(0);
        admission(open, from_address, local, self.known.contains(&ip), idle)
    }

    /// Decides on a WebSocket session from `ip`. Any web page can open one, to loopback
    /// too, so it is a stranger's (never a reserved slot), counted per address like a
    /// connection; loopback is not counted, as every page and user of this machine
    /// shares it.
    pub fn admission_ws(&self, open: usize, ip: IpAddr, idle: bool) -> Admission {
        let from_address = match ip.is_loopback() {
            true => 0,
            false => self.per_address.get(&ip).copied().unwrap_or(0),
        };
        admission(open, from_address, false, false, idle)
    }

    /// A connection from `ip` was taken.
    pub fn take(&mut self, ip: IpAddr) {
        *self.per_address.entry(ip).or_default() += 1;
    }

    /// One accepted connection from `ip` has ended.
    pub fn release(&mut self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
    }
}

/// The rule itself, for an address that already holds `from_address` of the `open`
/// connections.
fn admission(open: usize, from_address: usize, local: bool, known: bool, idle: bool) -> Admission {
    if !local && from_address >= PER_ADDRESS {
        return Admission::Refuse(Refusal::AddressFull);
    }
    let limit = if local || known { MAX_CONNECTIONS } else { MAX_CONNECTIONS - RESERVED_SLOTS };
    match open {
        n if n < limit => Admission::Take,
        n if n == limit && idle => Admission::MakeRoom,
        _ => Admission::Refuse(Refusal::NoSlot),
    }
}

/// Whether an accepted connection comes from this machine: loopback, or one of our own
/// addresses as its source (the owner's CLI; control still needs the token).
pub fn is_local(stream: &TcpStream, from: SocketAddr) -> bool {
    from.ip().is_loopback() || stream.local_addr().is_ok_and(|a| a.ip() == from.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_per_address_and_the_last_ones_kept_for_this_machine_and_known_peers() {
        // A remote address may hold 16 connections; this machine any number.
        assert_eq!(admission(10, 15, false, false, false), Admission::Take);
        assert!(matches!(admission(10, 16, false, false, true), Admission::Refuse(_)));
        assert!(matches!(admission(10, 16, false, true, true), Admission::Refuse(_)));
        assert_eq!(admission(10, 500, true, false, false), Admission::Take);
        // Strangers stop 64 short of the limit; this machine and known peers go on.
        let reserved = MAX_CONNECTIONS - RESERVED_SLOTS;
        assert!(matches!(admission(reserved, 0, false, false, false), Admission::Refuse(_)));
        assert_eq!(admission(reserved, 0, false, true, false), Admission::Take);
        assert_eq!(admission(reserved, 0, true, false, false), Admission::Take);
        // At a limit, a connection that never introduced itself makes room.
        assert_eq!(admission(reserved, 0, false, false, true), Admission::MakeRoom);
        assert_eq!(admission(MAX_CONNECTIONS, 0, true, false, true), Admission::MakeRoom);
        assert!(matches!(admission(MAX_CONNECTIONS, 0, true, false, false), Admission::Refuse(_)));
    }
}
