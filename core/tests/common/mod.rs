//! Shared by the tests that drive a single `Node` directly.

use bytes::BytesMut;
use torronto_core::wire::{FrameDecoder, MessageReader};
use torronto_core::{Envelope, PeerAddr, PeerMessage};

/// `message` from `from` through the wire, as a connection's reader would deliver it.
pub fn wire(from: PeerAddr, message: PeerMessage) -> Envelope {
    let mut buf = BytesMut::new();
    Envelope { from: Some(from), token: None, message: message.into() }.encode().write_tcp(&mut buf);
    let mut reader = MessageReader::new();
    loop {
        let frame = FrameDecoder::decode(&mut buf, reader.frame_limit()).unwrap().expect("a whole message");
        if let Some(env) = reader.push_frame(frame).unwrap() {
            return env;
        }
    }
}
