//! Header parsing: arbitrary frames pushed into a `MessageReader`. Every message it
//! accepts must encode, and decode again to the same message (what we accept, we can
//! also say, and a peer reading our words understands the same thing).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use torronto_core::wire::{FrameDecoder, Message, MessageReader, HEADER_LIMIT};

fuzz_target!(|frames: Vec<Vec<u8>>| {
    let mut reader = MessageReader::new();
    for frame in frames.into_iter().take(8) {
        if frame.len() > reader.frame_limit() {
            assert!(reader.push_frame(Bytes::from(frame)).unwrap_err().is_fatal());
            return;
        }
        match reader.push_frame(Bytes::from(frame)) {
            Ok(Some(env)) => round_trip(env),
            Ok(None) => {}
            Err(e) => assert!(!e.is_fatal(), "a frame within its limit is never fatal: {e}"),
        }
    }
});

fn round_trip(env: torronto_core::Envelope) {
    let encoded = env.encode();
    assert!(encoded.header.len() <= HEADER_LIMIT || matches!(env.message, Message::Reply(_)));
    let mut buf = BytesMut::new();
    encoded.write_tcp(&mut buf);
    let mut reader = MessageReader::new();
    let mut got = None;
    while let Some(frame) = FrameDecoder::decode(&mut buf, reader.frame_limit()).expect("our own frames fit") {
        if let Some(e) = reader.push_frame(frame).unwrap_or_else(|e| panic!("re-decoding {env:?}: {e}")) {
            got = Some(e);
        }
    }
    let got = got.expect("a whole message");
    assert_eq!(got, env, "message changed in an encode/decode round trip");
}
