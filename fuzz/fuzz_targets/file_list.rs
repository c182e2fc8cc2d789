//! File-list bodies (Add, Files) as they arrive after a valid header: any body is
//! either accepted as a list of valid entries or refused as a bad request.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use torronto_core::layout::{chunk_count, MAX_FILE_SIZE};
use torronto_core::wire::{Message, MessageReader, PeerMessage};

fuzz_target!(|data: &[u8]| {
    for header in
        [&br#"{"HostName":"h","PortNumber":1,"Action":4}"#[..], br#"{"HostName":"h","PortNumber":"2","Action":6}"#]
    {
        let mut reader = MessageReader::new();
        assert!(reader.push_frame(Bytes::from_static(header)).unwrap().is_none());
        match reader.push_frame(Bytes::copy_from_slice(data)) {
            Ok(Some(env)) => {
                let Message::Peer(PeerMessage::Add { files } | PeerMessage::Files { files }) = env.message else {
                    panic!("a file-list header gave {:?}", env.message)
                };
                for f in files {
                    assert!(f.size <= MAX_FILE_SIZE);
                    assert!(f.chunks.windows(2).all(|w| w[0] < w[1]), "chunks sorted and unique");
                    assert!(f.chunks.iter().all(|&c| c.get() < chunk_count(f.size)), "chunk past the end accepted");
                }
            }
            Ok(None) => panic!("a body completes the message"),
            Err(e) => assert!(!e.is_fatal()),
        }
    }
});
