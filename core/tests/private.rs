//! A node of a private network driven directly: peer messages count only on connections
//! whose peer the driver proved (the handshake's `AuthenticatedPeer`), and a peer is
//! known by its key and `Hello`, whatever its headers claim.

use torronto_core::secure::{AuthenticatedPeer, Hello};
use torronto_core::wire::{FileEntry, Reply};
use torronto_core::{
    ChunkIndex, ChunkSet, Code, Config, ConnId, ConnInfo, Digest, Envelope, Event, FileName, LocalFile,
    ManifestBuilder, Message, NetCommand, Node, NodeId, PeerAddr, PeerMessage, Tuning,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn me() -> PeerAddr {
    PeerAddr::new("10.0.0.1", 7001)
}

fn private_node() -> Node {
    let mut node = Node::new(Config {
        me: me(),
        peers: Vec::new(),
        token: None,
        insert_from: Vec::new(),
        seed: 1,
        tuning: Tuning { have_delay: 0, ..Tuning::default() },
        private: Some(NodeId::from_public_key(&[1; 32])),
    });
    let mut b = ManifestBuilder::new();
    b.update(&[7u8; 1000]);
    let manifest = b.finish().unwrap();
    node.add_local_file(LocalFile {
        name: FileName::new("secret-plans.txt").unwrap(),
        have: ChunkSet::full(manifest.chunk_count()),
        manifest,
        stored_as: None,
        published: true,
    });
    node.join(0);
    node
}

fn member(key: u8, listen: &str) -> AuthenticatedPeer {
    let public_key = [key; 32];
    AuthenticatedPeer { id: NodeId::from_public_key(&public_key), public_key, hello: Hello::listening_at(listen) }
}

fn connect(node: &mut Node, conn: u64, peer: Option<AuthenticatedPeer>) -> ConnId {
    node.handle_connected(0, ConnId(conn), ConnInfo { dialed: None, local: false, peer });
    ConnId(conn)
}

fn say(node: &mut Node, conn: ConnId, from: PeerAddr, message: PeerMessage) -> Vec<NetCommand> {
    node.handle_message(0, conn, Envelope { from: Some(from), token: None, message: message.into() });
    let mut out = Vec::new();
    while let Some(c) = node.poll_net() {
        out.push(c);
    }
    while node.poll_storage().is_some() {}
    while node.poll_event().is_some() {}
    out
}

fn replies(out: &[NetCommand]) -> Vec<&Message> {
    out.iter()
        .filter_map(|c| match c {
            NetCommand::Send { envelope, .. } => Some(&envelope.message),
            _ => None,
        })
        .collect()
}

#[test]
fn a_plaintext_connection_gets_nothing_and_changes_nothing() {
    let mut node = private_node();
    let stranger = connect(&mut node, 1, None);
    let claimed = PeerAddr::new("10.0.0.2", 7001);
    for message in [PeerMessage::Add { files: vec![] }, PeerMessage::Remove, PeerMessage::Files { files: vec![] }] {
        let out = say(&mut node, stranger, claimed.clone(), message);
        assert_eq!(replies(&out), [&Message::Reply(Reply::code(Code::BadPermission))]);
        // Not even where the node is: the refusal carries no HostName or PortNumber.
        assert!(
            out.iter().all(|c| matches!(c, NetCommand::Send { envelope, .. } if envelope.from.is_none())),
            "{out:?}"
        );
    }
    assert!(node.status().peers.is_empty());
}

#[test]
fn a_proven_peer_is_its_hello_address_whatever_its_headers_say() {
    let mut node = private_node();
    let alice = member(2, "10.0.0.2:7001");
    let conn = connect(&mut node, 1, Some(alice.clone()));
    let out = say(&mut node, conn, PeerAddr::new("10.0.0.9", 9), PeerMessage::Add { files: vec![] });
    // Files, then the gossip digest every new link gets.
    assert!(
        matches!(replies(&out)[..], [Message::Peer(PeerMessage::Files { .. }), Message::Peer(PeerMessage::Gossip(_))]),
        "{out:?}"
    );
    let status = node.status();
    assert_eq!(status.peers, ["10.0.0.2:7001"]);
    assert_eq!(status.peer_ids, [alice.id.to_string()]);
    assert_eq!(status.id, Some(NodeId::from_public_key(&[1; 32]).to_string()));
}

#[test]
fn another_key_cannot_take_a_connected_members_address() {
    let mut node = private_node();
    let alice = member(2, "10.0.0.2:7001");
    let first = connect(&mut node, 1, Some(alice.clone()));
    say(&mut node, first, me(), PeerMessage::Add { files: vec![] });
    let impostor = connect(&mut node, 2, Some(member(3, "10.0.0.2:7001")));
    let out = say(&mut node, impostor, me(), PeerMessage::Add { files: vec![] });
    assert!(out.iter().any(|c| matches!(c, NetCommand::Close(ConnId(2)))), "{out:?}");
    assert!(replies(&out).is_empty(), "the impostor is told nothing: {out:?}");
    // Its Remove is not Alice's either.
    say(&mut node, impostor, me(), PeerMessage::Remove);
    assert_eq!(node.status().peer_ids, [alice.id.to_string()]);
}

/// Connects a peer as [`connect`] does; returns what the node did and said about it.
fn connect_seen(node: &mut Node, conn: u64, peer: AuthenticatedPeer) -> (Vec<NetCommand>, Vec<Event>) {
    connect(node, conn, Some(peer));
    let (mut out, mut events) = (Vec::new(), Vec::new());
    while let Some(c) = node.poll_net() {
        out.push(c);
    }
    while let Some(e) = node.poll_event() {
        events.push(e);
    }
    (out, events)
}

fn closed(out: &[NetCommand], conn: u64) -> bool {
    out.iter().any(|c| matches!(c, NetCommand::Close(ConnId(n)) if *n == conn))
}

#[test]
fn a_peer_opening_a_connection_under_a_pinned_address_must_prove_the_pinned_key() {
    let mut node = private_node();
    let alice = member(2, "10.0.0.2:7001");
    node.pin(PeerAddr::new("10.0.0.2", 7001), alice.id);
    let mallory = member(3, "10.0.0.2:7001");
    let (out, events) = connect_seen(&mut node, 1, mallory.clone());
    assert!(closed(&out, 1), "{out:?}");
    let refusal = Event::KeyConflict {
        peer: PeerAddr::new("10.0.0.2", 7001),
        bound: alice.id,
        presented: mallory.id,
        pinned: true,
    };
    assert!(events.contains(&refusal), "{events:?}");
    // Its messages on the refused connection count for nothing.
    let out = say(&mut node, ConnId(1), me(), PeerMessage::Add { files: vec![] });
    assert!(out.is_empty(), "{out:?}");
    assert!(node.status().peers.is_empty());
    // Alice herself is welcome.
    let (out, _) = connect_seen(&mut node, 2, alice.clone());
    assert!(!closed(&out, 2), "{out:?}");
    say(&mut node, ConnId(2), me(), PeerMessage::Add { files: vec![] });
    assert_eq!(node.status().peer_ids, [alice.id.to_string()]);
}

#[test]
fn a_member_cannot_take_an_absent_members_address() {
    let mut node = private_node();
    let alice = member(2, "10.0.0.2:7001");
    let first = connect(&mut node, 1, Some(alice.clone()));
    say(&mut node, first, me(), PeerMessage::Add { files: vec![] });
    node.handle_disconnected(0, first);
    assert!(node.status().peers.is_empty(), "Alice is away");
    let mallory = member(3, "10.0.0.2:7001");
    let (out, events) = connect_seen(&mut node, 2, mallory.clone());
    assert!(closed(&out, 2), "{out:?}");
    assert!(
        events.contains(&Event::KeyConflict {
            peer: PeerAddr::new("10.0.0.2", 7001),
            bound: alice.id,
            presented: mallory.id,
            pinned: false
        }),
        "{events:?}"
    );
    let out = say(&mut node, ConnId(2), me(), PeerMessage::Add { files: vec![] });
    assert!(replies(&out).is_empty(), "{out:?}");
    assert!(node.status().peers.is_empty(), "{:?}", node.status());
    // Alice comes back to her address.
    let back = connect(&mut node, 3, Some(alice.clone()));
    say(&mut node, back, me(), PeerMessage::Add { files: vec![] });
    assert_eq!(node.status().peer_ids, [alice.id.to_string()]);
}

fn bad_manifest(n: u8) -> PeerMessage {
    PeerMessage::Manifest {
        file: FileName::new(&format!("lie-{n}.bin")).unwrap(),
        size: 1000,
        digest: Digest([n; 32]),
        hashes: vec![0u8; 32].into(),
    }
}

#[test]
fn a_liar_is_banned_by_its_key_not_by_the_address_it_gives() {
    let mut node = private_node();
    let alice = member(2, "10.0.0.2:7001");
    let a = connect(&mut node, 1, Some(alice.clone()));
    say(&mut node, a, me(), PeerMessage::Add { files: vec![] });
    // Mallory, at her own address, lies three times and is banned.
    let mallory = member(3, "10.0.0.3:7001");
    let m = connect(&mut node, 2, Some(mallory.clone()));
    // She announces three files, then sends manifests that do not match them.
    let announced = (1..=3u8)
        .map(|n| FileEntry {
            name: FileName::new(&format!("lie-{n}.bin")).unwrap(),
            size: 1000,
            digest: Digest([n; 32]),
            chunks: vec![ChunkIndex(0)],
        })
        .collect();
    say(&mut node, m, me(), PeerMessage::Add { files: announced });
    let mut out = Vec::new();
    for n in 1..=3 {
        out.extend(say(&mut node, m, me(), bad_manifest(n)));
    }
    assert!(closed(&out, 2), "{out:?}");
    assert_eq!(node.status().peers, ["10.0.0.2:7001"]);
    // Under another address she is still refused: the ban is on her key.
    let (out, events) = connect_seen(&mut node, 3, member(3, "10.0.0.4:7001"));
    assert!(closed(&out, 3), "{out:?}");
    assert!(events.iter().any(|e| matches!(e, Event::BannedKeyRefused { id, .. } if *id == mallory.id)), "{events:?}");
    say(&mut node, ConnId(3), me(), PeerMessage::Add { files: vec![] });
    assert_eq!(node.status().peers, ["10.0.0.2:7001"]);
    // Her address was not banned: whoever proves another key there may come (her
    // address is not hers to lose, nor anyone's to have banned by writing it).
    let carol = member(4, "10.0.0.3:7001");
    let (out, _) = connect_seen(&mut node, 4, carol);
    assert!(!closed(&out, 4), "{out:?}");
}
