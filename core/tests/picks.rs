//! Whom a fetching `Node` asks for which chunk: a single node driven directly, its peers
//! played by the test, every message through the real encoder and decoder.

mod common;

use common::wire;
use torronto_core::wire::FileEntry;
use torronto_core::{
    ChunkIndex, Config, ConnId, ConnInfo, FileName, ManifestBuilder, NetCommand, Node, PeerAddr, PeerMessage,
    StorageEvent, Tuning,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The chunks asked for on each connection since the last call, answering the storage
/// commands a fetch starts with (a Prepare succeeds).
fn requests(node: &mut Node, now: u64) -> Vec<(ConnId, u32)> {
    let mut asked = Vec::new();
    loop {
        let mut moved = false;
        while let Some(c) = node.poll_net() {
            moved = true;
            if let NetCommand::Send { conn, envelope } = c {
                if let torronto_core::Message::Peer(PeerMessage::Download { chunk, .. }) = envelope.message {
                    asked.push((conn, chunk.index.get()));
                }
            }
        }
        while let Some(c) = node.poll_storage() {
            moved = true;
            if let torronto_core::StorageCommand::Prepare { file, .. } = c {
                node.handle_storage(now, StorageEvent::Prepared { file, result: Ok(()) });
            }
        }
        while node.poll_event().is_some() {}
        if !moved {
            return asked;
        }
    }
}

/// A fetching node linked to a seeder (connection 1, holding all 16 chunks) and two
/// fetchers (connections 2 and 3, holding `a` and `b`; an empty range lists no file), the
/// manifest come from the seeder. Every peer has delivered nothing yet, so none serves
/// faster than the others.
fn fetcher_among(a: std::ops::Range<u32>, b: std::ops::Range<u32>) -> (Node, u64) {
    let mut node = Node::new(Config {
        me: PeerAddr::new("10.0.0.9", 7000),
        peers: Vec::new(),
        token: None,
        insert_from: Vec::new(),
        seed: 1,
        // Enough requests to peers that have not delivered yet that the other two hold
        // more than a window's worth while the seeder is considered.
        tuning: Tuning { have_delay: 0, unproven_requests: 64, ..Tuning::default() },
        private: None,
    });
    node.join(0);
    let data: Vec<u8> = (0..16 * 65_536u32).map(|i| (i % 251) as u8).collect();
    let mut builder = ManifestBuilder::new();
    builder.update(&data);
    let manifest = builder.finish().unwrap();
    let name = FileName::new("f").unwrap();
    let entry = |chunks: Vec<u32>| FileEntry {
        name: name.clone(),
        size: manifest.size(),
        digest: manifest.digest(),
        chunks: chunks.into_iter().map(ChunkIndex).collect(),
    };
    let seeder = PeerAddr::new("10.0.0.1", 7000);
    let holders = [(seeder.clone(), 0..16), (PeerAddr::new("10.0.0.2", 7000), a), (PeerAddr::new("10.0.0.3", 7000), b)];
    for (k, (addr, chunks)) in holders.into_iter().enumerate() {
        let conn = ConnId(k as u64 + 1);
        node.handle_connected(0, conn, ConnInfo::default());
        let files = if chunks.is_empty() { vec![] } else { vec![entry(chunks.collect())] };
        node.handle_message(0, conn, wire(addr, PeerMessage::Add { files }));
    }
    requests(&mut node, 0);
    let manifest_msg = PeerMessage::Manifest {
        file: name.clone(),
        size: manifest.size(),
        digest: manifest.digest(),
        hashes: manifest.to_body(),
    };
    node.handle_message(1, ConnId(1), wire(seeder, manifest_msg));
    (node, 1)
}

/// The chunks asked of the seeder (connection 1) that another peer holds too.
fn shared_asked_of_seeder(asked: &[(ConnId, u32)], seeders_own: &[u32]) -> usize {
    asked.iter().filter(|&&(c, i)| c == ConnId(1) && !seeders_own.contains(&i)).count()
}

/// While a chunk is the seeder's alone, its uplink is the only way to it: a node asks
/// the seeder for that one and, once its other peers have a window's worth of its
/// requests, for nothing they hold.
#[test]
fn a_seeder_is_kept_for_what_only_it_holds() {
    let (mut node, now) = fetcher_among(0..8, 8..15);
    let asked = requests(&mut node, now);
    assert!(asked.contains(&(ConnId(1), 15)), "the seeder is asked for its own chunk: {asked:?}");
    assert!(shared_asked_of_seeder(&asked, &[15]) <= 1, "and little else: {asked:?}");
    assert_eq!(asked.len(), 16, "every chunk is asked for: {asked:?}");
}

/// Once every chunk has a second holder the seeder is one peer among others, asked
/// its share whatever its pace. (Kept for chunks only it held, a seeder with a quarter
/// of all uplink stood half idle from then on, on shaped links.)
#[test]
fn a_seeder_is_asked_like_any_peer_once_every_chunk_has_a_second_holder() {
    let (mut node, now) = fetcher_among(0..8, 8..16);
    let asked = requests(&mut node, now);
    assert!(shared_asked_of_seeder(&asked, &[]) >= 4, "the seeder is asked its share: {asked:?}");
    let mut chunks: Vec<u32> = asked.iter().map(|&(_, i)| i).collect();
    chunks.sort_unstable();
    chunks.dedup();
    assert_eq!((chunks.len(), asked.len()), (16, 16), "every chunk is asked for once: {asked:?}");
}

/// Fetchers starting together draw the same stripes of the seeder's chunks from the
/// first pick: every linked peer that does not hold the whole file is presumed to fetch
/// until its news goes stale. Counted only once they announced such a chunk, the first
/// picks fell anywhere, and crossed: 26 chunks asked of the seeder twice in the first
/// second of a shaped-links run, against 0–1 since.
#[test]
fn fetchers_starting_together_ask_the_seeder_for_their_own_stripes() {
    let (mut node, now) = fetcher_among(0..0, 0..0);
    let asked = requests(&mut node, now);
    // Three fetchers in address order: 10.0.0.2, 10.0.0.3 and this node, 10.0.0.9. (It
    // then helps with the others' stripes, whose fetchers have announced nothing yet.)
    let mut first: Vec<u32> = asked.iter().filter(|(c, _)| *c == ConnId(1)).map(|&(_, i)| i).take(6).collect();
    first.sort_unstable();
    assert_eq!(first, (10..16).collect::<Vec<u32>>(), "first the last third of the chunks: {asked:?}");
}

/// Linked peers that never fetch the seeder's chunks (they want other files, or have no
/// link to it) are presumed to for two seconds only: then the node asks the seeder for
/// everything it lacks, not only its own stripe and help with theirs a chunk at a time.
#[test]
fn links_that_never_fetch_hold_no_stripes_for_long() {
    let (mut node, now) = fetcher_among(0..0, 0..0);
    let first = requests(&mut node, now);
    assert!(first.len() < 16, "at first the silent links have stripes: {first:?}");
    node.handle_timeout(2_100);
    let later = requests(&mut node, 2_100);
    let mut all: Vec<u32> = first.iter().chain(&later).map(|&(_, i)| i).collect();
    all.sort_unstable();
    assert_eq!(all, (0..16).collect::<Vec<u32>>(), "then all of the rest, once each: {first:?} {later:?}");
}
