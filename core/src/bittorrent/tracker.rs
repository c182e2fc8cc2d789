//! HTTP tracker announces (BEP 3, compact peer lists of BEP 23): the query a seeder
//! sends and the tracker's answer, read with every size bounded. The driver does HTTP.

use super::bencode::{self, Value};
use super::metainfo::Sha1Hash;

/// Shortest and longest wait between announces, whatever the tracker asks.
pub const MIN_INTERVAL_SECS: u64 = 60;
pub const MAX_INTERVAL_SECS: u64 = 3600;
/// Most peers taken from one answer.
pub const MAX_PEERS: usize = 200;

/// What a tracker said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    /// Seconds until the next announce, clamped to the bounds above.
    pub interval_secs: u64,
    /// IPv4 peers (compact form): address and port.
    pub peers: Vec<([u8; 4], u16)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Bencode(#[from] bencode::BencodeError),
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("tracker answer: {0}")]
    Bad(&'static str),
}

/// The query string of an announce by a peer listening on `port` that lacks `left`
/// bytes (0: a seeder); `event` is `started` on the first announce, none after.
pub fn announce_query(
    info_hash: &Sha1Hash,
    peer_id: &[u8; 20],
    port: u16,
    uploaded: u64,
    left: u64,
    event: Option<&str>,
) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={port}&uploaded={uploaded}&downloaded=0&left={left}&compact=1",
        percent_bytes(info_hash),
        percent_bytes(peer_id)
    );
    if let Some(event) = event {
        q += &format!("&event={event}");
    }
    q
}

/// Every byte but unreserved ASCII as `%XX`: the info-hash and peer id are raw bytes.
fn percent_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Reads a tracker's bencoded answer (the HTTP body, already capped by the driver).
pub fn parse_answer(body: &[u8]) -> Result<Announced, TrackerError> {
    let v = bencode::decode(body)?;
    if let Some(reason) = v.get("failure reason").and_then(Value::as_bytes) {
        return Err(TrackerError::Failure(String::from_utf8_lossy(&reason[..reason.len().min(200)]).into_owned()));
    }
    let interval = v.get("interval").and_then(Value::as_int).ok_or(TrackerError::Bad("no interval"))?;
    let interval_secs = u64::try_from(interval).unwrap_or(0).clamp(MIN_INTERVAL_SECS, MAX_INTERVAL_SECS);
    let peers = match v.get("peers") {
        Some(Value::Bytes(compact)) if compact.len() % 6 == 0 => compact
            .chunks_exact(6)
            .take(MAX_PEERS)
            .map(|p| ([p[0], p[1], p[2], p[3]], u16::from_be_bytes([p[4], p[5]])))
            .collect(),
        Some(Value::Bytes(_)) => return Err(TrackerError::Bad("compact peers not a multiple of 6 bytes")),
        // A dictionary list (a tracker without compact support) is not read.
        _ => Vec::new(),
    };
    Ok(Announced { interval_secs, peers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_escapes_raw_bytes() {
        let q = announce_query(&[0x00; 20], b"-TO0010-abcdefghijkl", 6881, 5, 0, Some("started"));
        assert!(
            q.starts_with(&format!("info_hash={}&peer_id=-TO0010-abcdefghijkl&port=6881&", "%00".repeat(20))),
            "{q}"
        );
        assert!(q.ends_with("&uploaded=5&downloaded=0&left=0&compact=1&event=started"), "{q}");
        assert!(!announce_query(&[0x41; 20], &[0; 20], 1, 0, 9, None).contains("event"));
    }

    #[test]
    fn answers_are_read_and_bounded() {
        let ok = parse_answer(b"d8:intervali1800e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e").unwrap();
        assert_eq!(ok, Announced { interval_secs: 1800, peers: vec![([127, 0, 0, 1], 6881), ([10, 0, 0, 2], 80)] });
        assert_eq!(parse_answer(b"d8:intervali1e5:peers0:e").unwrap().interval_secs, MIN_INTERVAL_SECS);
        assert_eq!(parse_answer(b"d8:intervali99999999e5:peerslee").unwrap().interval_secs, MAX_INTERVAL_SECS);
        let many = [b"d8:intervali60e5:peers1800:".to_vec(), vec![1; 1800], b"e".to_vec()].concat();
        assert_eq!(parse_answer(&many).unwrap().peers.len(), MAX_PEERS);
        assert_eq!(parse_answer(b"d14:failure reason3:no!e"), Err(TrackerError::Failure("no!".into())));
        assert_eq!(parse_answer(b"d5:peers0:e"), Err(TrackerError::Bad("no interval")));
        assert!(parse_answer(b"d8:intervali60e5:peers5:abcdee").is_err());
        assert!(parse_answer(b"<html>").is_err());
    }
}
