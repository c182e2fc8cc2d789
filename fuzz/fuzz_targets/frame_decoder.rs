//! The TCP frame decoder and the message reader on an arbitrary byte stream, as a
//! node's connection reads it: split into pieces of arbitrary sizes (partial reads).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torronto_core::wire::{FrameDecoder, MessageReader, FRAME_PREFIX_LEN};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the stream is cut into reads.
    let Some((&step, stream)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let mut buf = BytesMut::new();
    let mut reader = MessageReader::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            let limit = reader.frame_limit();
            let before = buf.len();
            match FrameDecoder::decode(&mut buf, limit) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= limit, "decoder gave a frame over its limit");
                    assert_eq!(before - buf.len(), FRAME_PREFIX_LEN + frame.len(), "decoder consumed the wrong amount");
                    match reader.push_frame(frame) {
                        Ok(Some(env)) => {
                            let _ = env.encode();
                        }
                        Ok(None) => {}
                        Err(e) if e.is_fatal() => return,
                        Err(_) => {}
                    }
                }
                Ok(None) => {
                    assert_eq!(before, buf.len(), "an incomplete frame must not be consumed");
                    break;
                }
                Err(e) => {
                    assert!(e.is_fatal(), "decoder errors must drop the connection");
                    return;
                }
            }
        }
    }
});
