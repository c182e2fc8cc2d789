//! Frames into messages: [`Decoder`] runs any [`FrameRead`] through core's
//! `MessageReader`, the one place the node's connections, the relay and the control
//! client decode what they receive.

use bytes::Bytes;
use torronto_core::wire::MessageReader;
use torronto_core::{Envelope, Message, PeerMessage};

use crate::frames::{FrameKind, FrameRead, ReadError};

/// What one frame did to the message being read.
#[derive(Debug)]
pub enum Step {
    /// A header whose body comes next, or the body of a refused header (skipped).
    Partial,
    /// A message is complete.
    Message(Envelope),
    /// A message was refused; the stream stays usable (answer ErrBadRequest).
    Malformed(String),
}

/// A message, or why one was refused.
#[derive(Debug)]
pub enum Incoming {
    Message(Envelope),
    Malformed(String),
}

/// Turns a frame stream into messages with core's `MessageReader`.
#[derive(Debug)]
pub struct Decoder<R> {
    frames: R,
    reader: MessageReader,
    body_next: bool,
}

impl<R: FrameRead> Decoder<R> {
    pub fn new(frames: R) -> Self {
        Self::with_reader(frames, MessageReader::new())
    }

    /// Accepts control requests only (see `MessageReader::control_only`).
    pub fn control_only(frames: R) -> Self {
        Self::with_reader(frames, MessageReader::control_only())
    }

    fn with_reader(frames: R, reader: MessageReader) -> Self {
        Self { frames, reader, body_next: false }
    }

    /// The next frame, its place in its message and what it completed, for code that
    /// forwards frames as they are. `None` at the end of the stream; an error means
    /// the connection must be closed.
    ///
    /// The kind is exact for well-formed traffic; after a refused header that announces
    /// a body, the skipped body is reported as a header (its `Step` is `Partial`).
    pub async fn next_frame(&mut self) -> Result<Option<(FrameKind, Bytes, Step)>, ReadError> {
        let Some(frame) = self.frames.read_frame(self.reader.frame_limit()).await? else {
            return Ok(None);
        };
        let kind = if self.body_next { FrameKind::Body } else { FrameKind::Header };
        let step = match self.reader.push_frame(frame.clone()) {
            Ok(Some(envelope)) => Step::Message(envelope),
            Ok(None) => Step::Partial,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => Step::Malformed(e.to_string()),
        };
        self.body_next = kind == FrameKind::Header && matches!(step, Step::Partial);
        Ok(Some((kind, frame, step)))
    }

    /// The next message or refusal; `None` at the end of the stream. An Upload is
    /// stamped with when its header arrived (`Stamps::arrived`, [`monotonic_us`]): its
    /// body's time on the wire would blur the one-way delay.
    pub async fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
        let (mut header_at, mut header_wall_us) = (None, 0u128);
        loop {
            match self.next_frame().await? {
                None => return Ok(None),
                Some((kind, _, Step::Partial)) => {
                    if kind == FrameKind::Header {
                        header_at = Some(monotonic_us());
                        // For the chunk trace, on the clock the nodes of a benchmark share.
                        if tracing::enabled!(target: "torronto::chunks", tracing::Level::TRACE) {
                            header_wall_us = wall_clock_us();
                        }
                    }
                }
                Some((_, _, Step::Message(mut envelope))) => {
                    if let Message::Peer(PeerMessage::Upload { chunk, stamps, .. }) = &mut envelope.message {
                        stamps.arrived = header_at;
                        // (None stamped if tracing began between the header and the body.)
                        if let (Some(from), 1..) = (&envelope.from, header_wall_us) {
                            tracing::trace!(target: "torronto::chunks", "owd got from {from} index {} us {header_wall_us}", chunk.index);
                        }
                    }
                    return Ok(Some(Incoming::Message(envelope)));
                }
                Some((_, _, Step::Malformed(reason))) => return Ok(Some(Incoming::Malformed(reason))),
            }
        }
    }
}

/// Microseconds since this process first asked: the clock one-way delays are stamped
/// with on the wire ([`torronto_core::Stamps`]). Monotonic, so that a wall clock set
/// back or forward does not read as a queue; each side's origin cancels out.
pub fn monotonic_us() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_micros() as u64
}

/// Microseconds of the wall clock: what the chunk trace stamps one-way delays with, so that
/// logs of nodes sharing a clock (the shaped-links benchmark's) can be set side by side.
pub fn wall_clock_us() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{write_encoded, FrameWrite};
    use crate::tcp::{TcpFrameReader, TcpFrameWriter};
    use torronto_core::wire::{WireError, HEADER_LIMIT};
    use torronto_core::{Control, PeerAddr, PeerMessage};

    #[tokio::test]
    async fn tcp_frames_decode_and_refuse_long_prefixes() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut out = TcpFrameWriter::new(client);
        let env =
            Envelope { from: Some(PeerAddr::new("h", 1)), token: None, message: Control::Query { file: None }.into() };
        write_encoded(&mut out, &env.encode()).await.unwrap();
        out.write_frame(FrameKind::Header, Bytes::from(vec![b' '; HEADER_LIMIT + 1])).await.unwrap();
        out.flush().await.unwrap();
        let mut decoder = Decoder::new(TcpFrameReader::new(server));
        match decoder.next().await.unwrap() {
            Some(Incoming::Message(got)) => assert_eq!(got, env),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decoder.next().await, Err(ReadError::Wire(WireError::FrameTooLong { .. }))));
    }

    #[tokio::test]
    async fn frame_kinds_follow_the_message_structure() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut out = TcpFrameWriter::new(client);
        let add = Envelope {
            from: Some(PeerAddr::new("h", 1)),
            token: None,
            message: PeerMessage::Add { files: vec![] }.into(),
        };
        write_encoded(&mut out, &add.encode()).await.unwrap();
        out.write_frame(FrameKind::Header, Bytes::from_static(b"not json")).await.unwrap();
        out.close().await.unwrap();
        let mut decoder = Decoder::new(TcpFrameReader::new(server));
        let (kind, _, step) = decoder.next_frame().await.unwrap().unwrap();
        assert_eq!(kind, FrameKind::Header);
        assert!(matches!(step, Step::Partial));
        let (kind, _, step) = decoder.next_frame().await.unwrap().unwrap();
        assert_eq!(kind, FrameKind::Body);
        assert!(matches!(step, Step::Message(_)));
        let (kind, _, step) = decoder.next_frame().await.unwrap().unwrap();
        assert_eq!(kind, FrameKind::Header);
        assert!(matches!(step, Step::Malformed(_)));
        assert!(decoder.next_frame().await.unwrap().is_none());
    }
}
