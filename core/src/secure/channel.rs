//! `SecureChannel`: the encrypted byte stream after the handshake.
//!
//! Inside is exactly the open protocol's TCP byte stream (4-byte length-prefixed frames),
//! so the frame decoder runs on what `open` delivers, unchanged. Each record carries up to
//! [`MAX_RECORD_PLAINTEXT`] bytes, sealed with the transport cipher of `transport`; its
//! nonce is its position in the stream (counted here, one counter per direction), so a
//! replayed, dropped or reordered record fails authentication like a tampered one. Any
//! failure is fatal: the channel refuses all further use. Plaintext is copied once, into
//! its place in the output, and encrypted or decrypted there: no zero-filling, no scratch.
//!
//! A driver whose reading and writing run apart (two tasks) takes the channel apart with
//! [`SecureChannel::split`]: a [`Sealer`] and an [`Opener`], each with its own direction's
//! key and counter, sharing nothing mutable.

use bytes::{Buf, Bytes, BytesMut};

use super::error::SecureError;
use super::noise::Suite;
use super::record::{
    missing_bytes, put_prefix, whole_records, Flow, RecordReader, MAX_RECORD_LEN, MAX_RECORD_PLAINTEXT,
    RECORD_PREFIX_LEN, TAG_LEN,
};
use super::transport::Aead;

/// One direction pair of transport keys, with the stream reader for incoming bytes.
pub struct SecureChannel {
    sealer: Sealer,
    opener: Opener,
}

/// The sending direction: encrypts plaintext into records.
pub struct Sealer {
    aead: Aead,
    suite: Suite,
    /// The nonce of the next record sent.
    sent: u64,
    failed: bool,
}

/// The receiving direction: authenticates and decrypts records.
pub struct Opener {
    aead: Aead,
    /// The nonce the next record received must have been sealed with.
    received: u64,
    reader: RecordReader,
    failed: bool,
}

impl SecureChannel {
    /// `send` and `receive`: the two directions' ciphers (`transport::transport_ciphers`).
    pub(crate) fn new(send: Aead, receive: Aead, suite: Suite) -> Self {
        SecureChannel {
            sealer: Sealer { aead: send, suite, sent: 0, failed: false },
            opener: Opener { aead: receive, received: 0, reader: RecordReader::default(), failed: false },
        }
    }

    /// The cipher suite the initiator chose.
    pub fn suite(&self) -> Suite {
        self.sealer.suite
    }

    /// The sending and receiving halves, for a writer and a reader that run apart. A
    /// failure in one half no longer poisons the other: the driver closes the connection.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }

    /// Bytes on a stream that sealing `plaintext_len` bytes produces.
    pub fn sealed_len(plaintext_len: usize) -> usize {
        Sealer::sealed_len(plaintext_len)
    }

    /// Stream form: see [`Sealer::seal`].
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        let result = self.sealer.seal(plaintext, out);
        self.fail_both_on_error(result)
    }

    /// Message form: see [`Sealer::seal_record`].
    pub fn seal_record(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        let result = self.sealer.seal_record(plaintext, out);
        self.fail_both_on_error(result)
    }

    /// Message form for any length: see [`Sealer::seal_records`].
    pub fn seal_records(&mut self, plaintext: &[u8]) -> Result<Vec<Bytes>, SecureError> {
        let result = self.sealer.seal_records(plaintext);
        self.fail_both_on_error(result)
    }

    /// Stream form: see [`Opener::open`].
    pub fn open(&mut self, ciphertext: &[u8], plaintext: &mut BytesMut) -> Result<(), SecureError> {
        let result = self.opener.open(ciphertext, plaintext);
        self.fail_both_on_error(result)
    }

    /// Stream form in the driver's read buffer: see [`Opener::open_buf`].
    pub fn open_buf(&mut self, buf: &mut BytesMut, plaintext: &mut BytesMut) -> Result<(), SecureError> {
        let result = self.opener.open_buf(buf, plaintext);
        self.fail_both_on_error(result)
    }

    /// Message form: see [`Opener::open_record`].
    pub fn open_record(&mut self, record: &[u8], plaintext: &mut BytesMut) -> Result<(), SecureError> {
        let result = self.opener.open_record(record, plaintext);
        self.fail_both_on_error(result)
    }

    /// Bytes of a partial incoming record held until the rest arrives.
    pub fn buffered_len(&self) -> usize {
        self.opener.buffered_len()
    }

    fn fail_both_on_error<T>(&mut self, result: Result<T, SecureError>) -> Result<T, SecureError> {
        if result.is_err() {
            self.sealer.failed = true;
            self.opener.failed = true;
        }
        result
    }
}

impl Sealer {
    /// The cipher suite the initiator chose.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Bytes on a stream that sealing `plaintext_len` bytes produces.
    pub fn sealed_len(plaintext_len: usize) -> usize {
        let records = plaintext_len.div_ceil(MAX_RECORD_PLAINTEXT);
        plaintext_len + records * (RECORD_PREFIX_LEN + TAG_LEN)
    }

    /// Stream form: encrypts `plaintext` (any length) into length-prefixed records
    /// appended to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        out.reserve(Self::sealed_len(plaintext.len()));
        for piece in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
            put_prefix(out, piece.len() + TAG_LEN);
            self.seal_into(piece, out)?;
        }
        Ok(())
    }

    /// Message form: encrypts at most [`MAX_RECORD_PLAINTEXT`] bytes into one record,
    /// without prefix, appended to `out` (one WebSocket message).
    pub fn seal_record(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        if plaintext.len() > MAX_RECORD_PLAINTEXT {
            return Err(SecureError::RecordTooLong { len: plaintext.len() + TAG_LEN, limit: MAX_RECORD_LEN });
        }
        self.seal_into(plaintext, out)
    }

    /// Message form for any length: one record per WebSocket message, in order.
    pub fn seal_records(&mut self, plaintext: &[u8]) -> Result<Vec<Bytes>, SecureError> {
        let mut records = Vec::with_capacity(plaintext.len().div_ceil(MAX_RECORD_PLAINTEXT));
        for piece in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
            let mut record = BytesMut::with_capacity(piece.len() + TAG_LEN);
            self.seal_record(piece, &mut record)?;
            records.push(record.freeze());
        }
        Ok(records)
    }

    fn seal_into(&mut self, piece: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        let start = out.len();
        out.reserve(piece.len() + TAG_LEN);
        out.extend_from_slice(piece);
        match self.aead.seal(self.sent, &mut out[start..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                self.sent += 1;
                Ok(())
            }
            Err(err) => {
                out.truncate(start);
                self.failed = true;
                Err(err)
            }
        }
    }
}

impl Opener {
    /// Stream form: feeds ciphertext as it arrives, split anywhere, and appends the
    /// plaintext of every whole record to `plaintext`. Holds at most one partial record.
    pub fn open(&mut self, ciphertext: &[u8], plaintext: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        let (aead, received) = (&self.aead, &mut self.received);
        let result = self.reader.feed(ciphertext, MAX_RECORD_LEN, |record| {
            open_into(aead, received, record, plaintext)?;
            Ok(Flow::Continue)
        });
        self.poison_on_error(result.map(drop))
    }

    /// Stream form for a driver that reads into its own buffer, as for the open protocol's
    /// `FrameDecoder`: decrypts the whole records at the front of `buf` and removes them,
    /// leaving a partial one there with room reserved for the rest. No copy of the
    /// ciphertext is made (`open` copies records split across its inputs).
    pub fn open_buf(&mut self, buf: &mut BytesMut, plaintext: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        if self.reader.buffered() > 0 {
            // `open` was used before and holds a partial record: keep feeding it.
            let result = self.open(buf, plaintext);
            buf.clear();
            return result;
        }
        let (aead, received) = (&self.aead, &mut self.received);
        let result = whole_records(buf, MAX_RECORD_LEN, |record| {
            open_into(aead, received, record, plaintext)?;
            Ok(Flow::Continue)
        });
        let (used, _) = self.poison_on_error(result)?;
        buf.advance(used);
        buf.reserve(missing_bytes(buf));
        Ok(())
    }

    /// Message form: one whole record (one WebSocket message); appends its plaintext.
    pub fn open_record(&mut self, record: &[u8], plaintext: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        let result = if record.len() > MAX_RECORD_LEN {
            Err(SecureError::RecordTooLong { len: record.len(), limit: MAX_RECORD_LEN })
        } else {
            open_into(&self.aead, &mut self.received, record, plaintext)
        };
        self.poison_on_error(result)
    }

    /// Bytes of a partial incoming record held until the rest arrives.
    pub fn buffered_len(&self) -> usize {
        self.reader.buffered()
    }

    fn poison_on_error<T>(&mut self, result: Result<T, SecureError>) -> Result<T, SecureError> {
        self.failed |= result.is_err();
        result
    }
}

fn check_usable(failed: bool) -> Result<(), SecureError> {
    if failed {
        return Err(SecureError::Poisoned);
    }
    Ok(())
}

/// Decrypts one record onto the end of `plaintext`, adding nothing unless it authenticates;
/// only then does the expected nonce move on.
fn open_into(aead: &Aead, received: &mut u64, record: &[u8], plaintext: &mut BytesMut) -> Result<(), SecureError> {
    let Some(body_len) = record.len().checked_sub(TAG_LEN) else {
        return Err(SecureError::Decrypt);
    };
    let (body, tag) = record.split_at(body_len);
    let start = plaintext.len();
    plaintext.extend_from_slice(body);
    match aead.open(*received, &mut plaintext[start..], tag.try_into().expect("a 16-byte tag")) {
        Ok(()) => {
            *received += 1;
            Ok(())
        }
        Err(err) => {
            plaintext.truncate(start);
            Err(err)
        }
    }
}

impl std::fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureChannel").field("sealer", &self.sealer).field("opener", &self.opener).finish()
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("suite", &self.suite)
            .field("sent", &self.sent)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").field("received", &self.received).field("failed", &self.failed).finish_non_exhaustive()
    }
}
