//! The peers file: one peer per line, `host port` (the original format) or
//! `host:port`; blank lines and `#` comments ignored.

use std::path::Path;

use anyhow::Context;
use torronto_core::PeerAddr;

pub fn parse(text: &str) -> anyhow::Result<Vec<PeerAddr>> {
    let mut peers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let addr = line.parse::<PeerAddr>().map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
        if !peers.contains(&addr) {
            peers.push(addr);
        }
    }
    Ok(peers)
}

pub fn read(path: &Path) -> anyhow::Result<Vec<PeerAddr>> {
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
            peers,
            vec![PeerAddr::new("127.0.0.1", 7001), PeerAddr::new("localhost", 7002), PeerAddr::new("::1", 7003)]
        );
        let err = parse("ok:1\nbroken\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
