//! Records: how Noise messages travel.
//!
//! On a byte stream (TCP) a record is a 4-byte big-endian length and that many bytes, the
//! same framing as the open protocol's frames. On a WebSocket a record is one binary
//! message, with no prefix. A length over the limit is refused as soon as its prefix is
//! seen, before anything is buffered for it.

use bytes::{BufMut, BytesMut};

use super::error::SecureError;

/// Bytes of a record's length prefix on a stream.
pub const RECORD_PREFIX_LEN: usize = 4;
/// Largest record: the largest Noise message.
pub const MAX_RECORD_LEN: usize = 65_535;
/// Bytes of the authentication tag that ends every record.
pub const TAG_LEN: usize = 16;
/// Most plaintext one record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD_LEN - TAG_LEN;
/// Most plaintext one record of the transport phase may carry: the channel's records are
/// its own, not Noise messages, and this lets a 64 KiB chunk's Upload (header and body
/// frames) travel in one record, sealed and opened where it lies.
pub const MAX_TRANSPORT_PLAINTEXT: usize = 128 * 1024;
/// Largest record of the transport phase.
pub const MAX_TRANSPORT_RECORD_LEN: usize = MAX_TRANSPORT_PLAINTEXT + TAG_LEN;

/// What a record's consumer wants after one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The rest of the input is not for this consumer (the handshake is over).
    Stop,
}

/// Appends the stream prefix of a record of `len` bytes.
pub(crate) fn put_prefix(out: &mut BytesMut, len: usize) {
    debug_assert!(len <= MAX_TRANSPORT_RECORD_LEN);
    out.put_u32(len as u32);
}

pub(crate) fn record_len(prefix: &[u8], limit: usize) -> Result<usize, SecureError> {
    let len = u32::from_be_bytes(prefix[..RECORD_PREFIX_LEN].try_into().expect("4 bytes")) as usize;
    if len > limit {
        return Err(SecureError::RecordTooLong { len, limit });
    }
    Ok(len)
}

/// Hands every whole record at the front of `input` to `handle`, in order, until it says
/// `Stop`. Returns the bytes those records took, and the last `Flow`.
pub(crate) fn whole_records(
    input: &[u8],
    limit: usize,
    mut handle: impl FnMut(&[u8]) -> Result<Flow, SecureError>,
) -> Result<(usize, Flow), SecureError> {
    let mut used = 0;
    while let Some(prefix) = input.get(used..used + RECORD_PREFIX_LEN) {
        let len = record_len(prefix, limit)?;
        let Some(record) = input.get(used + RECORD_PREFIX_LEN..used + RECORD_PREFIX_LEN + len) else {
            break;
        };
        let flow = handle(record)?;
        used += RECORD_PREFIX_LEN + len;
        if flow == Flow::Stop {
            return Ok((used, Flow::Stop));
        }
    }
    Ok((used, Flow::Continue))
}

/// Bytes still missing from the partial record at the front of `input`, once its prefix
/// is whole (its limit already checked by `whole_records`).
pub(crate) fn missing_bytes(input: &[u8]) -> usize {
    match input.get(..RECORD_PREFIX_LEN) {
        Some(prefix) => {
            let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
            (RECORD_PREFIX_LEN + len).saturating_sub(input.len())
        }
        None => RECORD_PREFIX_LEN - input.len(),
    }
}

/// Splits a byte stream into records, holding at most one partial record between calls.
#[derive(Debug, Default)]
pub(crate) struct RecordReader {
    partial: BytesMut,
}

impl RecordReader {
    /// Bytes of a partial record held back.
    pub(crate) fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds `input` and calls `handle` on every whole record, in order. Returns how many
    /// bytes of `input` were consumed: all of them, unless `handle` returned `Stop`.
    /// Whole records in `input` are handed over in place, without a copy.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        limit: usize,
        mut handle: impl FnMut(&[u8]) -> Result<Flow, SecureError>,
    ) -> Result<usize, SecureError> {
        let mut rest = input;
        if !self.partial.is_empty() {
            if !self.complete_partial(&mut rest, limit)? {
                return Ok(input.len());
            }
            let flow = handle(&self.partial[RECORD_PREFIX_LEN..]);
            self.partial.clear();
            if flow? == Flow::Stop {
                return Ok(input.len() - rest.len());
            }
        }
        let (used, flow) = whole_records(rest, limit, &mut handle)?;
        if flow == Flow::Stop {
            return Ok(input.len() - rest.len() + used);
        }
        // A partial record; its prefix, if whole, passed the limit check.
        self.partial.extend_from_slice(&rest[used..]);
        Ok(input.len())
    }

    /// Moves bytes from `rest` into the partial record; true once it is whole.
    fn complete_partial(&mut self, rest: &mut &[u8], limit: usize) -> Result<bool, SecureError> {
        if self.partial.len() < RECORD_PREFIX_LEN {
            let take = (RECORD_PREFIX_LEN - self.partial.len()).min(rest.len());
            self.take(rest, take);
            if self.partial.len() < RECORD_PREFIX_LEN {
                return Ok(false);
            }
        }
        let whole = RECORD_PREFIX_LEN + record_len(&self.partial, limit)?;
        self.partial.reserve(whole - self.partial.len());
        let take = (whole - self.partial.len()).min(rest.len());
        self.take(rest, take);
        Ok(self.partial.len() == whole)
    }

    fn take(&mut self, rest: &mut &[u8], n: usize) {
        self.partial.extend_from_slice(&rest[..n]);
        *rest = &rest[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn stream(records: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for record in records {
            put_prefix(&mut out, record.len());
            out.extend_from_slice(record);
        }
        out.to_vec()
    }

    fn collect(reader: &mut RecordReader, input: &[u8], seen: &mut Vec<Vec<u8>>) -> Result<usize, SecureError> {
        reader.feed(input, 100, |record| {
            seen.push(record.to_vec());
            Ok(Flow::Continue)
        })
    }

    #[test]
    fn any_split_yields_the_same_records() {
        let records: [&[u8]; 4] = [b"one", b"", b"three three", &[7; 100]];
        let bytes = stream(&records);
        for piece in [1, 2, 3, 5, 7, 50, bytes.len()] {
            let mut reader = RecordReader::default();
            let mut seen = Vec::new();
            for chunk in bytes.chunks(piece) {
                assert_eq!(collect(&mut reader, chunk, &mut seen), Ok(chunk.len()));
            }
            assert_eq!(seen, records.map(<[u8]>::to_vec), "pieces of {piece}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn missing_bytes_counts_what_the_partial_record_lacks() {
        let bytes = stream(&[b"abcdef"]);
        assert_eq!(missing_bytes(&bytes[..0]), 4);
        assert_eq!(missing_bytes(&bytes[..3]), 1);
        assert_eq!(missing_bytes(&bytes[..4]), 6);
        assert_eq!(missing_bytes(&bytes[..7]), 3);
        assert_eq!(missing_bytes(&bytes), 0);
    }

    #[test]
    fn stop_leaves_the_rest_unconsumed() {
        let bytes = stream(&[b"first", b"second"]);
        for split in [3, 9, 10, bytes.len()] {
            let mut reader = RecordReader::default();
            let mut consumed = reader.feed(&bytes[..split], 100, |_| Ok(Flow::Stop)).unwrap();
            if split < 9 {
                assert_eq!(consumed, split);
                consumed += reader.feed(&bytes[split..], 100, |_| Ok(Flow::Stop)).unwrap();
            }
            assert_eq!(consumed, 9, "split at {split}");
        }
    }

    #[test]
    fn an_over_long_prefix_is_refused_before_buffering() {
        let mut prefix = BytesMut::new();
        put_prefix(&mut prefix, 101);
        let mut reader = RecordReader::default();
        let mut input = prefix.to_vec();
        input.extend_from_slice(&[0; 50]);
        let err = reader.feed(&input, 100, |_| panic!("no record")).unwrap_err();
        assert_eq!(err, SecureError::RecordTooLong { len: 101, limit: 100 });
        // Arriving a byte at a time, it is refused on the fourth.
        let mut reader = RecordReader::default();
        for byte in &prefix[..3] {
            assert_eq!(reader.feed(&[*byte], 100, |_| panic!("no record")), Ok(1));
        }
        assert!(reader.feed(&prefix[3..], 100, |_| panic!("no record")).is_err());
        assert!(reader.partial.capacity() < 64, "buffered {}", reader.partial.capacity());
    }
}
