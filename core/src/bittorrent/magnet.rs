//! Magnet links (BEP 9): written for an export, read for `torronto add`. A link names
//! the info-hash (`xt=urn:btih:`, 40 hex digits or 32 base32 letters), and may give a
//! name (`dn`), a size (`xl`), trackers (`tr`) and peers to dial (`x.pe`). Reading is
//! bounded: the link's length, and how many trackers and peers are kept.

use super::metainfo::{from_hex, hex, Info, Sha1Hash};
use crate::wire::{is_tracker_url, MAX_ADD_PEERS, MAX_TRACKERS, MAX_TRACKER_LEN};

/// Longest link read.
pub const MAX_LINK: usize = 64 * 1024;
const PREFIX: &str = "magnet:?";

/// Why a magnet link was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("magnet link: {0}")]
pub struct MagnetError(&'static str);

/// What a magnet link says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: Sha1Hash,
    pub name: Option<String>,
    pub length: Option<u64>,
    /// Tracker URLs (http, https, udp), at most [`MAX_TRACKERS`]; others are left out.
    pub trackers: Vec<String>,
    /// `HOST:PORT`s, at most [`MAX_ADD_PEERS`].
    pub peers: Vec<String>,
}

/// A link for `info`, whose info-hash is `info_hash`: its name and size, a peer to
/// dial (`x.pe`) and the trackers, each value percent-encoded.
pub fn magnet(info_hash: &Sha1Hash, info: &Info, peer: Option<&str>, trackers: &[String]) -> String {
    let mut link = format!("{PREFIX}xt=urn:btih:{}&dn={}&xl={}", hex(info_hash), percent(&info.name), info.length);
    if let Some(peer) = peer {
        link += &format!("&x.pe={}", percent(peer));
    }
    for t in trackers {
        link += &format!("&tr={}", percent(t));
    }
    link
}

/// Whether `text` is meant as a magnet link (rather than a path to a `.torrent`).
pub fn is_magnet(text: &[u8]) -> bool {
    text.len() >= PREFIX.len() && text[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
}

impl Magnet {
    pub fn parse(link: &str) -> Result<Magnet, MagnetError> {
        if link.len() > MAX_LINK {
            return Err(MagnetError("longer than 64 KiB"));
        }
        if !is_magnet(link.as_bytes()) {
            return Err(MagnetError("does not start with magnet:?"));
        }
        let mut info_hash = None;
        let mut m = Magnet::default();
        for pair in link[PREFIX.len()..].split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = unpercent(raw, key == "dn").ok_or(MagnetError("a value is not percent-encoded UTF-8"))?;
            // Numbered keys (`tr.1`, `x.pe.2`) are the same key (BEP 9 allows several).
            let key = key.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('.');
            match key {
                "xt" => {
                    if let Some(hash) = value.strip_prefix("urn:btih:") {
                        let hash = from_hex(hash).or_else(|| from_base32(hash));
                        info_hash = info_hash.or(Some(hash.ok_or(MagnetError("btih is not 40 hex or 32 base32"))?));
                    }
                }
                "dn" => m.name = Some(value).filter(|n| n.len() <= MAX_TRACKER_LEN),
                "xl" => m.length = value.parse().ok(),
                "tr" if is_tracker_url(&value) && m.trackers.len() < MAX_TRACKERS && !m.trackers.contains(&value) => {
                    m.trackers.push(value)
                }
                "x.pe" => {
                    if value.len() > MAX_TRACKER_LEN || !value.contains(':') || value.contains(char::is_whitespace) {
                        return Err(MagnetError("x.pe is not HOST:PORT"));
                    }
                    if m.peers.len() < MAX_ADD_PEERS && !m.peers.contains(&value) {
                        m.peers.push(value);
                    }
                }
                _ => {}
            }
        }
        m.info_hash = info_hash.ok_or(MagnetError("no xt=urn:btih: (a v1 info-hash)"))?;
        Ok(m)
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (and `:`, harmless in a query
/// and kept so `x.pe=HOST:PORT` stays readable).
fn percent(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// Undoes percent-encoding (and, where `plus_is_space`, a form's `+`); none if the
/// result is not UTF-8 or a `%` is not followed by two hex digits.
fn unpercent(text: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let digits = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&digits).ok()?, 16).ok()?);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Reads 32 letters of RFC 4648 base32 (either case), the older form of a btih.
fn from_base32(text: &str) -> Option<Sha1Hash> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 20];
    let (mut acc, mut bits, mut at) = (0u64, 0, 0);
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[at] = (acc >> bits) as u8;
            at += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bittorrent::PieceHasher;

    #[test]
    fn written_links_read_back() {
        let mut h = PieceHasher::new(16384);
        h.update(&[7; 10]);
        let info = h.finish("a b.bin".into());
        let hash = info.info_hash();
        assert_eq!(from_hex(&hex(&hash)), Some(hash));
        assert_eq!(from_hex("zz"), None);
        let link = magnet(&hash, &info, Some("127.0.0.1:6881"), &["http://t/a?b=c".into()]);
        assert_eq!(
            link,
            format!(
                "magnet:?xt=urn:btih:{}&dn=a%20b.bin&xl=10&x.pe=127.0.0.1:6881&tr=http:%2F%2Ft%2Fa%3Fb%3Dc",
                hex(&hash)
            )
        );
        let m = Magnet::parse(&link).unwrap();
        let want = Magnet {
            info_hash: hash,
            name: Some("a b.bin".into()),
            length: Some(10),
            trackers: vec!["http://t/a?b=c".into()],
            peers: vec!["127.0.0.1:6881".into()],
        };
        assert_eq!(m, want);
    }

    #[test]
    fn base32_numbered_keys_and_others_links() {
        // The same info-hash in hex and in base32 (computed with Python's base64.b32encode).
        let hex_hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{hex_hash}")).unwrap();
        let b = Magnet::parse(&format!(
            "MAGNET:?dn=x+y&xt=urn:btih:{}&tr.1=udp://u:1&tr.2=ws://w&x.pe.1=[::1]:5",
            b32.to_lowercase()
        ))
        .unwrap();
        assert_eq!(a.info_hash, from_hex(hex_hash).unwrap());
        assert_eq!(b.info_hash, a.info_hash);
        assert_eq!(
            (b.name.as_deref(), b.trackers, b.peers),
            (Some("x y"), vec!["udp://u:1".into()], vec!["[::1]:5".into()])
        );
        // A hybrid link's v2 hash is skipped for its v1 one.
        let hybrid =
            Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{}&xt=urn:btih:{hex_hash}", "ab".repeat(32))).unwrap();
        assert_eq!(hybrid.info_hash, a.info_hash);
    }

    #[test]
    fn refuses_what_is_not_a_v1_magnet() {
        for bad in [
            "http://x",
            "magnet:?dn=x",
            "magnet:?xt=urn:btih:abc",
            "magnet:?xt=urn:btih:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=%ff",
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&x.pe=nohost",
        ] {
            assert!(Magnet::parse(bad).is_err(), "{bad}");
        }
        assert!(Magnet::parse(&format!("magnet:?{}", "a".repeat(MAX_LINK))).is_err());
        let many: String = (0..100).map(|i| format!("&x.pe=h:{i}&tr=http://t/{i}")).collect();
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{}{many}", "ab".repeat(20))).unwrap();
        assert_eq!((m.peers.len(), m.trackers.len()), (MAX_ADD_PEERS, MAX_TRACKERS));
    }
}
