//! Chunk bodies straight from the page cache to a TCP socket (sendfile): the bytes are
//! neither read into memory nor copied into the socket buffer. This is how a node
//! serves the chunks of complete files.

use std::fs::File;
use std::io;

use rustix::net::SendFlags;
use tokio::io::Interest;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use torronto_core::wire::frame_prefix;

use crate::tcp::{front_slices, TcpFrameWriter};

impl TcpFrameWriter<OwnedWriteHalf> {
    /// Sends `len` bytes of `file` from `offset` as the next frame, after everything
    /// queued before it. An error once the body has begun leaves the stream unusable
    /// (the peer would read a short frame): close it.
    pub async fn write_file_frame(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.staged.extend_from_slice(&frame_prefix(len));
        self.write_out_before_body().await?;
        let socket: &TcpStream = self.stream.as_ref();
        let mut offset = offset;
        let mut left = len;
        while left > 0 {
            socket.writable().await?;
            let sent =
                socket.try_io(Interest::WRITABLE, || Ok(rustix::fs::sendfile(socket, file, Some(&mut offset), left)?));
            match sent {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than the frame"))
                }
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes out what is queued with `MSG_MORE`: the kernel holds it back to go out with
    /// the body `sendfile` sends next, rather than as a segment of its own (with
    /// `TCP_NODELAY`, each Upload's header went out alone: a packet, and on loopback its
    /// delivery, per chunk served).
    async fn write_out_before_body(&mut self) -> io::Result<()> {
        self.stage_out();
        while !self.queue.is_empty() {
            let socket: &TcpStream = self.stream.as_ref();
            socket.writable().await?;
            let (slices, count) = front_slices(&self.queue);
            let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
            let sent = socket.try_io(Interest::WRITABLE, || {
                Ok(rustix::net::sendmsg(socket, &slices[..count], &mut Default::default(), flags)?)
            });
            match sent {
                Ok(n) => self.written(n)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::frames::{FrameKind, FrameRead, FrameWrite};
    use crate::tcp::TcpFrameReader;

    #[tokio::test]
    async fn file_frames_go_out_between_queued_frames_and_a_short_file_is_an_error() {
        use std::io::Write;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Larger than the socket buffers, so sendfile has to wait for the reader.
        let data: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let (_, write) = client.into_split();
        let len = data.len();
        let writer = tokio::spawn(async move {
            let mut out = TcpFrameWriter::new(write);
            out.write_frame(FrameKind::Header, Bytes::from_static(b"first")).await.unwrap();
            out.write_file_frame(&file, 1000, 65536).await.unwrap();
            out.write_frame(FrameKind::Header, Bytes::from_static(b"second")).await.unwrap();
            out.write_file_frame(&file, 0, len).await.unwrap();
            out.write_frame(FrameKind::Header, Bytes::from_static(b"third")).await.unwrap();
            out.flush().await.unwrap();
            let err = out.write_file_frame(&file, len as u64 - 10, 65536).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        });
        let mut input = TcpFrameReader::new(server);
        let want: [&[u8]; 5] = [b"first", &data[1000..1000 + 65536], b"second", &data, b"third"];
        for frame in want {
            assert_eq!(input.read_frame(8 << 20).await.unwrap().unwrap(), frame);
        }
        writer.await.unwrap();
    }
}
