//! Regression tests for bugs found by fuzzing and by the hostile-input tests: a single
//! `Node` driven directly, every message passed through the real encoder and decoder.

mod common;

use bytes::BytesMut;
use common::wire;
use torronto_core::wire::{FileEntry, FrameDecoder, MessageReader};
use torronto_core::{
    ChunkIndex, ChunkSet, Config, ConnId, ConnInfo, Control, FileName, LocalFile, ManifestBuilder, Message, NetCommand,
    Node, PeerAddr, PeerMessage, StorageCommand, Tuning,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn node() -> Node {
    let mut node = Node::new(Config {
        me: PeerAddr::new("127.0.0.1", 7000),
        peers: Vec::new(),
        token: None,
        insert_from: Vec::new(),
        seed: 1,
        tuning: Tuning { have_delay: 0, ..Tuning::default() },
        private: None,
    });
    let mut b = ManifestBuilder::new();
    b.update(&[7u8; 100_000]);
    let manifest = b.finish().unwrap();
    node.add_local_file(LocalFile {
        name: FileName::new("f").unwrap(),
        have: ChunkSet::full(manifest.chunk_count()),
        manifest,
        stored_as: None,
        published: true,
    });
    node.join(0);
    node
}

fn drain(node: &mut Node) -> Vec<NetCommand> {
    let mut out = Vec::new();
    while let Some(c) = node.poll_net() {
        out.push(c);
    }
    while node.poll_storage().is_some() {}
    while node.poll_event().is_some() {}
    out
}

/// Found by the `node` fuzz target (invariant: no more peers than open connections).
/// One connection sending Add under name after name used to register every name as a
/// peer: each counted as a holder in the status, and all but the last stayed counted
/// forever after the connection closed.
#[test]
fn one_connection_cannot_pose_as_many_peers() {
    let mut n = node();
    n.handle_connected(0, ConnId(1), ConnInfo::default());
    let file = |digest| FileEntry {
        name: FileName::new("f").unwrap(),
        size: 100_000,
        digest,
        chunks: vec![ChunkIndex(0), ChunkIndex(1)],
    };
    let digest = n.status().digests[0].parse().unwrap();
    for i in 0..50 {
        n.handle_message(
            0,
            ConnId(1),
            wire(PeerAddr::new(format!("ghost-{i}"), 0), PeerMessage::Add { files: vec![file(digest)] }),
        );
        drain(&mut n);
    }
    let st = n.status();
    assert_eq!(st.peers, vec!["ghost-49:0"], "one connection, one peer");
    assert_eq!(st.least_replication, vec![2], "this node and the one peer hold every chunk");
    n.handle_disconnected(1, ConnId(1));
    drain(&mut n);
    let st = n.status();
    assert!(st.peers.is_empty(), "no ghost peer may outlive its connection: {:?}", st.peers);
    assert_eq!(st.least_replication, vec![1]);
    assert_eq!(st.weighted_least_replication, vec![1.0]);
}

/// After Remove a connection may introduce itself again, under any name; the peer it
/// spoke for before is gone, whatever it is called now.
#[test]
fn a_connection_may_reintroduce_itself_after_remove() {
    let mut n = node();
    n.handle_connected(0, ConnId(1), ConnInfo::default());
    n.handle_message(0, ConnId(1), wire(PeerAddr::new("a", 0), PeerMessage::Add { files: vec![] }));
    n.handle_message(0, ConnId(1), wire(PeerAddr::new("a", 0), PeerMessage::Remove));
    n.handle_message(0, ConnId(1), wire(PeerAddr::new("b", 0), PeerMessage::Add { files: vec![] }));
    drain(&mut n);
    assert_eq!(n.status().peers, vec!["b:0"]);
    // A second connection of the same peer keeps it counted when the first goes.
    n.handle_connected(0, ConnId(2), ConnInfo::default());
    n.handle_message(0, ConnId(2), wire(PeerAddr::new("b", 0), PeerMessage::Add { files: vec![] }));
    n.handle_message(0, ConnId(1), wire(PeerAddr::new("c", 0), PeerMessage::Add { files: vec![] }));
    drain(&mut n);
    assert_eq!(n.status().peers, vec!["b:0", "c:0"]);
    n.handle_disconnected(1, ConnId(2));
    drain(&mut n);
    assert_eq!(n.status().peers, vec!["c:0"]);
}

/// A reply announcing a body ("Body") whose header is refused must still have its body
/// skipped, or the body is read as the next header and the stream falls out of step.
#[test]
fn a_refused_reply_with_a_body_keeps_the_stream_in_step() {
    use torronto_core::wire::{frame_prefix, WireError};
    let mut buf = BytesMut::new();
    let status =
        br#"{"numFiles":0,"files":[],"local":[],"system":[],"leastReplication":[],"weightedLeastReplication":[]}"#;
    for frame in [
        &br#"{"Code":0,"Body":"status","Files":[{"FileName":"../x"}]}"#[..],
        status,
        br#"{"Code":0,"Body":"other"}"#,
        status,
        br#"{"Action":3}"#,
    ] {
        buf.extend_from_slice(&frame_prefix(frame.len()));
        buf.extend_from_slice(frame);
    }
    let mut reader = MessageReader::new();
    let mut got = Vec::new();
    while let Some(frame) = FrameDecoder::decode(&mut buf, reader.frame_limit()).unwrap() {
        match reader.push_frame(frame) {
            Ok(Some(env)) => got.push(Ok(env.message)),
            Ok(None) => {}
            Err(e) => got.push(Err(e)),
        }
    }
    assert_eq!(got.len(), 3, "two refusals and the Query, nothing read out of step: {got:?}");
    assert!(matches!(got[0], Err(WireError::BadRequest(_))), "{got:?}");
    assert!(matches!(got[1], Err(WireError::BadRequest(_))), "{got:?}");
    assert_eq!(got[2], Ok(Message::from(Control::Query { file: None })));
}

/// Found by the simulator (seed 23): a crash between a file's last chunk write and its
/// rename left every chunk on disk, and nothing published the file again.
#[test]
fn a_complete_file_not_yet_published_is_finalised_at_start() {
    let mut node = node();
    drain(&mut node);
    while node.poll_storage().is_some() {}
    let mut b = ManifestBuilder::new();
    b.update(&[9u8; 70_000]);
    let manifest = b.finish().unwrap();
    let digest = manifest.digest();
    let name = FileName::new("g").unwrap();
    let have = ChunkSet::full(manifest.chunk_count());
    node.add_local_file(LocalFile { name: name.clone(), have, manifest, stored_as: None, published: false });
    let commands: Vec<StorageCommand> = std::iter::from_fn(|| node.poll_storage()).collect();
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, StorageCommand::Finalize { file, digest: d } if *file == name && *d == digest)),
        "{commands:?}"
    );
    // One already published is left alone.
    let mut b = ManifestBuilder::new();
    b.update(&[8u8; 1000]);
    let manifest = b.finish().unwrap();
    let have = ChunkSet::full(manifest.chunk_count());
    let name = FileName::new("h").unwrap();
    node.add_local_file(LocalFile { name, have, manifest, stored_as: None, published: true });
    assert!(node.poll_storage().is_none());
}

/// Found by the simulator (seed 471 and nine more): a peer the peers file names that
/// was down when the node joined was never tried again, so two nodes started apart
/// (or split by a partition at the time) never met.
#[test]
fn a_listed_peer_down_at_join_is_tried_again() {
    let other = PeerAddr::new("127.0.0.1", 7001);
    let mut node = Node::new(Config {
        me: PeerAddr::new("127.0.0.1", 7000),
        peers: vec![other.clone()],
        token: None,
        insert_from: Vec::new(),
        seed: 1,
        tuning: Tuning { have_delay: 0, ..Tuning::default() },
        private: None,
    });
    node.join(0);
    let dials = |node: &mut Node| {
        std::iter::from_fn(|| node.poll_net()).filter(|c| matches!(c, NetCommand::Dial(a) if *a == other)).count()
    };
    assert_eq!(dials(&mut node), 1);
    let mut now = 0;
    for _ in 0..3 {
        node.handle_dial_failed(now, &other);
        // Other timers (gossip rounds) come between; the redial comes within a minute.
        let mut dialled = 0;
        while dialled == 0 {
            now = node.poll_timeout().expect("a redial is scheduled");
            assert!(now < 60_000, "not dialled again within a minute");
            node.handle_timeout(now);
            dialled = dials(&mut node);
        }
        assert_eq!(dialled, 1, "dialled again at {now} ms");
    }
}
