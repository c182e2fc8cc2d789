//! Frames over a blocking `std::io` stream, for simple synchronous clients (the tests'
//! raw-socket client): the same framing as [`crate::tcp`], through core's
//! `FrameDecoder`, without a runtime.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use torronto_core::wire::{frame_prefix, FrameDecoder};

use crate::frames::ReadError;

/// Bytes asked of the stream per read.
const READ_SIZE: usize = 64 * 1024;

/// Reads length-prefixed frames from a blocking byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    stream: R,
    buf: BytesMut,
}

impl<R: Read> FrameReader<R> {
    pub fn new(stream: R) -> Self {
        Self { stream, buf: BytesMut::new() }
    }

    pub fn get_ref(&self) -> &R {
        &self.stream
    }

    /// The next frame, refused if over `limit` before any of it is allocated; `None`
    /// at a clean end of the stream. An error from the stream (a read timeout) keeps
    /// what had arrived: the next call goes on from there.
    pub fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(frame) = FrameDecoder::decode(&mut self.buf, limit)? {
                return Ok(Some(frame));
            }
            let filled = self.buf.len();
            // Zeroed rather than read into spare capacity: this crate has no unsafe code.
            self.buf.resize(filled + READ_SIZE, 0);
            let read = self.stream.read(&mut self.buf[filled..]);
            self.buf.truncate(filled + read.as_ref().map_or(0, |n| *n));
            match read {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Writes one length-prefixed frame. A frame over the protocol's limits is written as
/// it is: the receiver refuses it, which is what a hostile test wants to see.
pub fn write_frame(out: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    out.write_all(&frame_prefix(frame.len()))?;
    out.write_all(frame)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use torronto_core::wire::WireError;

    use super::*;

    #[test]
    fn frames_written_come_back_whole_and_the_end_is_clean() {
        let frames: [&[u8]; 4] = [b"", b"one", &[7u8; 3 * READ_SIZE + 5], b"last"];
        let mut wire = Vec::new();
        for frame in frames {
            write_frame(&mut wire, frame).unwrap();
        }
        let mut input = FrameReader::new(Cursor::new(wire));
        for want in frames {
            assert_eq!(input.read_frame(1 << 20).unwrap().unwrap(), want);
        }
        assert!(input.read_frame(1 << 20).unwrap().is_none());
    }

    #[test]
    fn a_long_prefix_is_refused_before_its_frame_is_read() {
        let mut input = FrameReader::new(Cursor::new(vec![0xFF, 0xFF, 0xFF, 0xFF, b'{']));
        match input.read_frame(64 * 1024) {
            Err(ReadError::Wire(WireError::FrameTooLong { len, limit })) => {
                assert_eq!((len, limit), (0xFFFF_FFFF, 64 * 1024))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Gives its bytes a few at a time, with a timeout between every read.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        timed_out: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.timed_out = !self.timed_out;
            if self.timed_out {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(3).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn a_timeout_mid_frame_keeps_what_arrived_and_a_cut_frame_is_an_error() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello, world").unwrap();
        wire.extend_from_slice(&[0, 0, 0, 9, b'c', b'u']);
        let mut input = FrameReader::new(Trickle { bytes: wire, at: 0, timed_out: false });
        let mut timeouts = 0;
        let frame = loop {
            match input.read_frame(100) {
                Ok(frame) => break frame,
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => timeouts += 1,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(frame.unwrap(), &b"hello, world"[..]);
        assert!(timeouts > 3);
        let cut = loop {
            match input.read_frame(100) {
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => break other,
            }
        };
        assert!(matches!(&cut, Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof), "{cut:?}");
    }
}
