//! `NodeId`: the short, checkable name of a node's public key (cf. Syncthing device IDs).
//!
//! The ID is the first 160 bits of SHA-256 over the X25519 public key, in base32 (RFC 4648
//! alphabet A-Z 2-7): 32 characters in four groups of eight, each group followed by a
//! Luhn mod 32 check character, shown as `XXXXXXXXC-XXXXXXXXC-XXXXXXXXC-XXXXXXXXC`.
//! 160 bits keep a forged key with a chosen ID out of reach (2^160 work for a second
//! preimage, beyond X25519's own 2^128); the check characters catch every single mistyped
//! character and nearly every swap of neighbours before a wrong ID gets pinned.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A node ID that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeIdError {
    #[error("a node ID has {expected} characters besides dashes, found {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("{0:?} is not a node ID character (A-Z, 2-7)")]
    BadCharacter(char),
    #[error("group {group} of the node ID fails its check character: a typo?")]
    CheckFailed { group: usize },
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ID_BYTES: usize = 20;
const GROUPS: usize = 4;
const GROUP_DATA: usize = 8;
/// Characters of an ID besides the dashes.
const ID_CHARS: usize = GROUPS * (GROUP_DATA + 1);

/// A node's identity as users see and pin it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; ID_BYTES]);

impl NodeId {
    /// The ID of an X25519 public key.
    pub fn from_public_key(public_key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(public_key);
        NodeId(digest[..ID_BYTES].try_into().expect("SHA-256 is longer than an ID"))
    }

    /// The first group, for logs and narrow status columns; never enough to pin a node.
    pub fn short(&self) -> String {
        self.to_string()[..GROUP_DATA + 1].to_owned()
    }

    /// Base32 values (0..32) of the 32 data characters.
    fn data_values(&self) -> [u8; GROUPS * GROUP_DATA] {
        let mut values = [0u8; GROUPS * GROUP_DATA];
        for (i, value) in values.iter_mut().enumerate() {
            let bit = i * 5;
            let pair = u16::from(self.0[bit / 8]) << 8 | u16::from(*self.0.get(bit / 8 + 1).unwrap_or(&0));
            *value = ((pair >> (11 - bit % 8)) & 31) as u8;
        }
        values
    }

    fn from_data_values(values: &[u8; GROUPS * GROUP_DATA]) -> Self {
        let mut bytes = [0u8; ID_BYTES];
        let mut acc = 0u32;
        let mut bits = 0;
        let mut out = 0;
        for &value in values {
            acc = acc << 5 | u32::from(value);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                bytes[out] = (acc >> bits) as u8;
                acc &= (1 << bits) - 1;
                out += 1;
            }
        }
        NodeId(bytes)
    }
}

/// Luhn mod 32 check value of a group: any single changed character changes it.
fn check_value(values: &[u8]) -> u8 {
    let mut sum = 0u32;
    // Doubling starts at the rightmost character, as the check character will sit after it.
    for (i, &value) in values.iter().rev().enumerate() {
        let addend = u32::from(value) * if i % 2 == 0 { 2 } else { 1 };
        sum += addend / 32 + addend % 32;
    }
    ((32 - sum % 32) % 32) as u8
}

/// Value of one typed character, forgiving case and the digits that look like letters.
fn char_value(c: char) -> Result<u8, NodeIdError> {
    let upper = match c.to_ascii_uppercase() {
        '0' => 'O',
        '1' => 'I',
        '8' => 'B',
        other => other,
    };
    ALPHABET.iter().position(|&a| a as char == upper).map(|p| p as u8).ok_or(NodeIdError::BadCharacter(c))
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (group, values) in self.data_values().chunks_exact(GROUP_DATA).enumerate() {
            if group > 0 {
                f.write_str("-")?;
            }
            for &value in values.iter().chain([check_value(values)].iter()) {
                write!(f, "{}", ALPHABET[usize::from(value)] as char)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    /// Accepts any case, with or without dashes or spaces; 0, 1 and 8 read as O, I and B.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let typed: Vec<char> = s.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect();
        if typed.len() != ID_CHARS {
            return Err(NodeIdError::WrongLength { expected: ID_CHARS, found: typed.len() });
        }
        let values = typed.into_iter().map(char_value).collect::<Result<Vec<u8>, _>>()?;
        let mut data = [0u8; GROUPS * GROUP_DATA];
        for (group, chunk) in values.chunks_exact(GROUP_DATA + 1).enumerate() {
            let (group_data, check) = chunk.split_at(GROUP_DATA);
            if check_value(group_data) != check[0] {
                return Err(NodeIdError::CheckFailed { group: group + 1 });
            }
            data[group * GROUP_DATA..][..GROUP_DATA].copy_from_slice(group_data);
        }
        Ok(NodeId::from_data_values(&data))
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id(seed: u8) -> NodeId {
        NodeId::from_public_key(&[seed; 32])
    }

    #[test]
    fn shows_four_checked_groups_and_parses_back() {
        for seed in 0..=255 {
            let id = id(seed);
            let text = id.to_string();
            assert_eq!(text.len(), ID_CHARS + GROUPS - 1, "{text}");
            assert!(text.split('-').all(|g| g.len() == GROUP_DATA + 1 && g.bytes().all(|c| ALPHABET.contains(&c))));
            assert_eq!(text.parse::<NodeId>(), Ok(id));
            assert_eq!(id.short(), text[..9]);
        }
    }

    #[test]
    fn the_bits_are_the_digest() {
        let digest = Sha256::digest([7u8; 32]);
        assert_eq!(id(7).0[..], digest[..ID_BYTES]);
        // Base32 of the bytes, checked against the RFC 4648 encoding of a known value.
        let known = NodeId(*b"foobarfoobarfoobarfo");
        let data: String = known.to_string().split('-').map(|g| &g[..GROUP_DATA]).collect();
        assert_eq!(data, "MZXW6YTBOJTG633CMFZGM33PMJQXEZTP");
    }

    #[test]
    fn forgives_case_dashes_spaces_and_look_alike_digits() {
        let id = id(42);
        let text = id.to_string();
        assert_eq!(text.to_lowercase().parse(), Ok(id));
        assert_eq!(text.replace('-', "").parse(), Ok(id));
        assert_eq!(text.replace('-', " ").parse(), Ok(id));
        let with_digits = text.replace('O', "0").replace('I', "1").replace('B', "8");
        assert_eq!(with_digits.parse(), Ok(id));
    }

    #[test]
    fn catches_every_single_typo_and_neighbour_swaps() {
        let mut swaps = 0;
        let mut caught = 0;
        for seed in 0..32 {
            let text: Vec<char> = id(seed).to_string().chars().collect();
            for i in 0..text.len() {
                if text[i] == '-' {
                    continue;
                }
                for &c in ALPHABET {
                    if c as char == text[i] {
                        continue;
                    }
                    let mut typo = text.clone();
                    typo[i] = c as char;
                    let typo: String = typo.into_iter().collect();
                    assert!(typo.parse::<NodeId>().is_err(), "{typo} accepted");
                }
                if i + 1 < text.len() && text[i + 1] != '-' && text[i] != text[i + 1] {
                    let mut swapped = text.clone();
                    swapped.swap(i, i + 1);
                    swaps += 1;
                    caught += usize::from(swapped.into_iter().collect::<String>().parse::<NodeId>().is_err());
                }
            }
        }
        // Luhn mod N misses only the swap of one particular pair of values.
        assert!(caught * 100 >= swaps * 99, "{caught} of {swaps} swaps caught");
    }

    #[test]
    fn explains_what_is_wrong() {
        let text = id(1).to_string();
        assert_eq!(text[..20].parse::<NodeId>(), Err(NodeIdError::WrongLength { expected: 36, found: 18 }));
        let bad = format!("{}9{}", &text[..3], &text[4..]);
        assert_eq!(bad.parse::<NodeId>(), Err(NodeIdError::BadCharacter('9')));
        let mut chars: Vec<char> = text.chars().collect();
        chars[12] = if chars[12] == 'A' { 'C' } else { 'A' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(typo.parse::<NodeId>(), Err(NodeIdError::CheckFailed { group: 2 }));
        assert!(NodeIdError::CheckFailed { group: 2 }.to_string().contains("typo"));
    }

    #[test]
    fn serialises_as_its_text() {
        let id = id(3);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>("\"AAAA\"").is_err());
    }
}
