//! Bencode (BEP 3): integers, byte strings, lists and dictionaries.
//!
//! Decoding is bounded: the input is a slice whose length the caller has already capped,
//! nesting is capped at [`MAX_DEPTH`] and the number of values at [`MAX_VALUES`], so
//! no input makes the decoder recurse deeply or allocate more than a few times its size.

use std::collections::BTreeMap;

/// Deepest nesting of lists and dictionaries accepted.
pub const MAX_DEPTH: usize = 32;
/// Most values (of any kind) in one input.
pub const MAX_VALUES: usize = 1 << 20;
/// Most digits of an integer (i64 has 19, plus room for nothing else).
const MAX_DIGITS: usize = 19;

/// A bencoded value. Dictionary keys are byte strings, kept sorted as BEP 3 requires on
/// output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why bencoded input was refused; `at` is the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad bencode at byte {at}: {what}")]
pub struct BencodeError {
    pub at: usize,
    pub what: &'static str,
}

impl Value {
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    /// The value under `key` when this is a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The bencoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{}:", b.len()).as_bytes());
    out.extend_from_slice(b);
}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    match decode_prefix(input)? {
        (v, used) if used == input.len() => Ok(v),
        (_, used) => Err(BencodeError { at: used, what: "bytes after the value" }),
    }
}

/// Decodes the one value at the start of `input`, and how many bytes it took (a BEP 9
/// data message is a dictionary followed by raw bytes).
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), BencodeError> {
    let mut p = Parser { input, pos: 0, values: 0 };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// The exact bytes of the value under `key` in the top-level dictionary `input` (the
/// info-hash is the SHA-1 of the info dictionary as it was encoded, not as re-encoded).
pub fn raw_entry<'a>(input: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, BencodeError> {
    let mut p = Parser { input, pos: 0, values: 0 };
    if p.peek()? != b'd' {
        return Err(p.err("not a dictionary"));
    }
    p.pos += 1;
    let mut found = None;
    while p.peek()? != b'e' {
        let k = p.string()?;
        let start = p.pos;
        p.value(1)?;
        if k == key {
            found = Some(&input[start..p.pos]);
        }
    }
    Ok(found)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    values: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> BencodeError {
        BencodeError { at: self.pos, what }
    }

    fn peek(&self) -> Result<u8, BencodeError> {
        self.input.get(self.pos).copied().ok_or_else(|| self.err("input ends early"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.err("too many values"));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.string()?.to_vec())),
            b'l' | b'd' if depth >= MAX_DEPTH => Err(self.err("nested too deeply")),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries = BTreeMap::new();
                while self.peek()? != b'e' {
                    let at = self.pos;
                    let k = self.string()?.to_vec();
                    let v = self.value(depth + 1)?;
                    if entries.insert(k, v).is_some() {
                        return Err(BencodeError { at, what: "duplicate dictionary key" });
                    }
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            _ => Err(self.err("not the start of a value")),
        }
    }

    /// A byte string `<len>:<bytes>`; its length is checked against what is left
    /// before anything is copied.
    fn string(&mut self) -> Result<&'a [u8], BencodeError> {
        if !self.peek()?.is_ascii_digit() {
            return Err(self.err("expected a byte string"));
        }
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        if len > self.input.len() - self.pos {
            return Err(self.err("byte string longer than the input"));
        }
        let input: &'a [u8] = self.input;
        let s = &input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    /// Decimal digits (with an optional minus) up to `end`, which is consumed. Leading
    /// zeros and `-0` are refused, so every number has one encoding.
    fn number(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let len = rest.iter().position(|&b| b == end).ok_or_else(|| self.err("number not terminated"))?;
        let text = &rest[..len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.len() <= MAX_DIGITS
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && !(text[0] == b'-' && digits == b"0");
        if !canonical {
            return Err(self.err("not a canonical number"));
        }
        // Only ASCII digits and a sign: valid UTF-8, and at most 19 digits fit an i64
        // unless above i64::MAX, which parse refuses.
        let n =
            std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or_else(|| self.err("number too big"))?;
        self.pos = start + len + 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(entries: &[(&str, Value)]) -> Value {
        Value::Dict(entries.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect())
    }

    #[test]
    fn round_trips_every_kind() {
        let v = dict(&[
            ("z", Value::Int(-42)),
            ("a", Value::List(vec![Value::bytes(b"spam".to_vec()), Value::Int(0), Value::bytes(Vec::new())])),
            ("m", dict(&[("x", Value::Int(i64::MAX))])),
        ]);
        let enc = v.encode();
        assert_eq!(enc, b"d1:al4:spami0e0:e1:md1:xi9223372036854775807ee1:zi-42ee".to_vec());
        assert_eq!(decode(&enc).unwrap(), v);
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            &b""[..],
            b"i",
            b"ie",
            b"i-0e",
            b"i03e",
            b"i1x2e",
            b"i99999999999999999999e",
            b"5:abc",
            b"-1:a",
            b"l",
            b"d1:a",
            b"d1:ai1e1:ai2ee",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
        ] {
            assert!(decode(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_and_counts_are_bounded() {
        let deep = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
        assert_eq!(decode(&deep).unwrap_err().what, "nested too deeply");
        let ok = [vec![b'l'; MAX_DEPTH], vec![b'e'; MAX_DEPTH]].concat();
        assert!(decode(&ok).is_ok());
        let many = [b"l".to_vec(), b"i0e".repeat(MAX_VALUES), b"e".to_vec()].concat();
        assert_eq!(decode(&many).unwrap_err().what, "too many values");
    }

    #[test]
    fn raw_entry_is_the_bytes_as_sent() {
        // Keys out of order inside info: a re-encoding would differ, the raw bytes must not.
        let input = b"d8:announce3:url4:infod1:bi1e1:ai2eee";
        assert_eq!(raw_entry(input, b"info").unwrap(), Some(&b"d1:bi1e1:ai2ee"[..]));
        assert_eq!(raw_entry(input, b"nope").unwrap(), None);
        assert!(raw_entry(b"li1ee", b"info").is_err());
        assert!(raw_entry(b"d4:info", b"info").is_err());
    }
}
