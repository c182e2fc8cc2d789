//! `SecureChannel`: the encrypted byte stream after the handshake.
//!
//! Inside is exactly the open protocol's TCP byte stream (4-byte length-prefixed frames),
//! so the frame decoder runs on what `open` delivers, unchanged. Each record carries up to
//! [`MAX_TRANSPORT_PLAINTEXT`] bytes (the `seal*` forms cut at [`MAX_RECORD_PLAINTEXT`]),
//! sealed with the transport cipher of `transport`; its nonce is its position in the
//! stream (counted here, one counter per direction), so a replayed, dropped or reordered
//! record fails authentication like a tampered one. Any failure is fatal: the channel
//! refuses all further use. `seal`/`open` copy plaintext once, into its place, and encrypt
//! or decrypt it there; [`Sealer::seal_in_place`] and [`Opener::open_in_place`] work in the
//! driver's own buffer, where the plaintext already lies or the records arrived: no copy.
//!
//! A driver whose reading and writing run apart (two tasks) takes the channel apart with
//! [`SecureChannel::split`]: a [`Sealer`] and an [`Opener`], each with its own direction's
//! key and counter, sharing nothing mutable.

use bytes::{Buf, Bytes, BytesMut};

use super::error::SecureError;
use super::noise::Suite;
use super::record::{
    missing_bytes, put_prefix, record_len, whole_records, Flow, RecordReader, MAX_RECORD_PLAINTEXT,
    MAX_TRANSPORT_PLAINTEXT, MAX_TRANSPORT_RECORD_LEN, RECORD_PREFIX_LEN, TAG_LEN,
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
            let start = out.len();
            put_prefix(out, piece.len() + TAG_LEN);
            out.extend_from_slice(piece);
            self.seal_in_place(out, start)?;
        }
        Ok(())
    }

    /// Message form: encrypts at most [`MAX_RECORD_PLAINTEXT`] bytes into one record,
    /// without prefix, appended to `out` (one WebSocket message).
    pub fn seal_record(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        if plaintext.len() > MAX_RECORD_PLAINTEXT {
            return Err(SecureError::RecordTooLong {
                len: plaintext.len() + TAG_LEN,
                limit: MAX_RECORD_PLAINTEXT + TAG_LEN,
            });
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        self.seal_at(out, start)
    }

    /// Stream form where the plaintext already lies in the output: `out[start..]` is
    /// [`RECORD_PREFIX_LEN`] bytes of room for the prefix, then the record's plaintext (at
    /// most [`MAX_TRANSPORT_PLAINTEXT`]), put there by the caller (a frame read straight
    /// from its file, say). Writes the prefix, encrypts the plaintext where it lies and
    /// appends the tag: no copy. On failure `out` is cut back to `start`.
    pub fn seal_in_place(&mut self, out: &mut BytesMut, start: usize) -> Result<(), SecureError> {
        let result = self.seal_in_place_checked(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn seal_in_place_checked(&mut self, out: &mut BytesMut, start: usize) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        let body = start + RECORD_PREFIX_LEN;
        let Some(len) = out.len().checked_sub(body) else {
            return Err(SecureError::Sequence("no room for the record's prefix"));
        };
        if len > MAX_TRANSPORT_PLAINTEXT {
            return Err(SecureError::RecordTooLong { len: len + TAG_LEN, limit: MAX_TRANSPORT_RECORD_LEN });
        }
        out[start..body].copy_from_slice(&((len + TAG_LEN) as u32).to_be_bytes());
        self.seal_at(out, body)
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

    /// Encrypts `out[start..]` in place as the next record and appends its tag.
    fn seal_at(&mut self, out: &mut BytesMut, start: usize) -> Result<(), SecureError> {
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
        let result = self.reader.feed(ciphertext, MAX_TRANSPORT_RECORD_LEN, |record| {
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
        let result = whole_records(buf, MAX_TRANSPORT_RECORD_LEN, |record| {
            open_into(aead, received, record, plaintext)?;
            Ok(Flow::Continue)
        });
        let (used, _) = self.poison_on_error(result)?;
        buf.advance(used);
        buf.reserve(missing_bytes(buf));
        Ok(())
    }

    /// Stream form in one buffer, without a copy: `buf[..*plain]` is plaintext opened
    /// before, `buf[*sealed..]` records as they arrived (what lies between is spent
    /// prefixes and tags). Opens every whole record there, its plaintext moved down to
    /// follow `*plain` as it is decrypted, and moves both marks on; a partial record stays
    /// after `*sealed`. Not to be mixed with [`Opener::open`], which holds its own partial
    /// record.
    pub fn open_in_place(&mut self, buf: &mut [u8], plain: &mut usize, sealed: &mut usize) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        if self.reader.buffered() > 0 || *plain > *sealed || *sealed > buf.len() {
            return Err(SecureError::Sequence("open_in_place after open, or marks out of order"));
        }
        let result = loop {
            let Some(prefix) = buf.get(*sealed..*sealed + RECORD_PREFIX_LEN) else {
                break Ok(());
            };
            let len = match record_len(prefix, MAX_TRANSPORT_RECORD_LEN) {
                Ok(len) => len,
                Err(err) => break Err(err),
            };
            let end = *sealed + RECORD_PREFIX_LEN + len;
            if end > buf.len() {
                break Ok(());
            }
            let Some(body_len) = len.checked_sub(TAG_LEN) else {
                break Err(SecureError::Decrypt);
            };
            let tag: [u8; TAG_LEN] = buf[end - TAG_LEN..end].try_into().expect("a 16-byte tag");
            let shift = *sealed + RECORD_PREFIX_LEN - *plain;
            if let Err(err) = self.aead.open(self.received, &mut buf[*plain..end - TAG_LEN], shift, &tag) {
                break Err(err);
            }
            self.received += 1;
            *plain += body_len;
            *sealed = end;
        };
        self.poison_on_error(result)
    }

    /// Message form: one whole record (one WebSocket message); appends its plaintext.
    pub fn open_record(&mut self, record: &[u8], plaintext: &mut BytesMut) -> Result<(), SecureError> {
        check_usable(self.failed)?;
        let result = if record.len() > MAX_TRANSPORT_RECORD_LEN {
            Err(SecureError::RecordTooLong { len: record.len(), limit: MAX_TRANSPORT_RECORD_LEN })
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
    match aead.open(*received, &mut plaintext[start..], 0, tag.try_into().expect("a 16-byte tag")) {
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
