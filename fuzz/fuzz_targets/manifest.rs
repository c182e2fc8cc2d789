//! Manifest messages and bodies: a Manifest header with arbitrary Size and a body of
//! arbitrary bytes, and `Manifest::from_body` directly. A manifest is accepted only if
//! its length fits its size and it hashes to its digest; whatever is accepted verifies
//! chunks by their hashes only.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use torronto_core::layout::{chunk_count, chunk_len, ChunkIndex};
use torronto_core::wire::{Message, MessageReader, PeerMessage};
use torronto_core::{Digest, Manifest};

#[derive(Debug, Arbitrary)]
struct Input {
    size: u64,
    small_size: u16,
    digest: [u8; 32],
    use_real_digest: bool,
    body: Vec<u8>,
    chunk: u32,
}

fuzz_target!(|input: Input| {
    // Sizes near real ones are far more interesting than random u64s.
    let size = if input.size.is_multiple_of(4) { input.size >> 20 } else { u64::from(input.small_size) * 97 };
    // The digest this body would have, if it fits the size: so acceptance is reached.
    let hashes = input.body.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
    let real = Manifest::from_hashes(size, hashes).ok().map(|m| m.digest());
    let digest = match real {
        Some(d) if input.use_real_digest => d,
        _ => Digest(input.digest),
    };
    if let Ok(m) = Manifest::from_body(size, digest, &input.body) {
        assert_eq!(m.size(), size);
        assert_eq!(m.digest(), digest);
        assert_eq!(input.body.len(), chunk_count(size) as usize * 32);
        assert_eq!(&m.to_body()[..], &input.body[..]);
        let i = ChunkIndex(input.chunk % (m.chunk_count() + 1));
        assert!(!m.verify(i, &vec![0u8; chunk_len(size, i) + 1]));
    }
    // The same through the wire.
    let header = format!(
        r#"{{"HostName":"h","PortNumber":1,"Action":11,"Files":[{{"FileName":"f","Size":{size},"Digest":"{digest}"}}]}}"#
    );
    let mut reader = MessageReader::new();
    match reader.push_frame(Bytes::from(header)) {
        Ok(None) => {
            let limit = reader.frame_limit();
            if input.body.len() > limit {
                return;
            }
            match reader.push_frame(Bytes::copy_from_slice(&input.body)) {
                Ok(Some(env)) => {
                    let Message::Peer(PeerMessage::Manifest { size: s, hashes, .. }) = env.message else {
                        panic!("{:?}", env.message)
                    };
                    assert_eq!(s, size);
                    assert_eq!(hashes.len(), chunk_count(size) as usize * 32);
                }
                Ok(None) => panic!("a body completes the message"),
                Err(e) => assert!(!e.is_fatal()),
            }
        }
        Ok(Some(m)) => panic!("a Manifest header needs its body: {m:?}"),
        Err(e) => assert!(!e.is_fatal()),
    }
});
