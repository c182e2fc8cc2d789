//! The peers file: one peer per line, `host port` (the original format) or
//! `host:port`, IPv6 as `[v6]:port`; in a private network a line may pin the peer's
//! node ID as `host:port#ID` (no space before the `#`). Blank lines and comments (a `#`
//! at the start of a line or after a space) are ignored.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use torronto_core::{NodeId, PeerAddr};

/// The peers to dial, and the node IDs pinned for some of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    pub addrs: Vec<PeerAddr>,
    pub pins: HashMap<PeerAddr, NodeId>,
}

pub fn parse(text: &str) -> anyhow::Result<Peers> {
    let mut peers = Peers::default();
    for (n, line) in text.lines().enumerate() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let (addr, pin) = match line.split_once('#') {
            Some((addr, id)) => (addr, Some(id.trim())),
            None => (line, None),
        };
        let addr = addr.parse::<PeerAddr>().map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
        if let Some(id) = pin {
            let id = id.parse::<NodeId>().map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
            if peers.pins.insert(addr.clone(), id).is_some_and(|old| old != id) {
                anyhow::bail!("line {}: {addr} is pinned to two different node IDs", n + 1);
            }
        }
        if !peers.addrs.contains(&addr) {
            peers.addrs.push(addr);
        }
    }
    Ok(peers)
}

/// The line without its comment: from a `#` that starts the line or follows whitespace.
fn strip_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            return &line[..i];
        }
        previous = c;
    }
    line
}

pub fn read(path: &Path) -> anyhow::Result<Peers> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read peers file {}", path.display()))?;
    parse(&text).with_context(|| format!("in peers file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_comments_and_blanks() {
        let text = "# the lab\n127.0.0.1 7001\n\n  localhost:7002  # second\n[::1]:7003\n127.0.0.1 7001\n";
        let peers = parse(text).unwrap();
        assert_eq!(
            peers.addrs,
            vec![PeerAddr::new("127.0.0.1", 7001), PeerAddr::new("localhost", 7002), PeerAddr::new("::1", 7003)]
        );
        assert!(peers.pins.is_empty());
        let err = parse("ok:1\nbroken\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn pins_follow_the_address_without_a_space() {
        let id = NodeId::from_public_key(&[7; 32]);
        let text = format!("10.0.0.2:7001#{id}  # web server\n[2001:db8::1]:7001#{}\n", id.to_string().to_lowercase());
        let peers = parse(&text).unwrap();
        assert_eq!(peers.addrs, vec![PeerAddr::new("10.0.0.2", 7001), PeerAddr::new("2001:db8::1", 7001)]);
        assert_eq!(peers.pins[&PeerAddr::new("10.0.0.2", 7001)], id);
        assert_eq!(peers.pins[&PeerAddr::new("2001:db8::1", 7001)], id);
        let err = parse("10.0.0.2:7001#NOTANID\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
