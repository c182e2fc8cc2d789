//! The network beyond a full mesh: real nodes on loopback with few links each
//! (`--max-links`), whose peers files name only one node. Files still reach every
//! node, gossip tells every node of every participant, Query counts them all, a node
//! killed without a word is noticed, and a leave stays safe with partial links. Build
//! the binary first: `cargo build -p torronto-node`.

use std::fs;
use std::time::Duration;

use serde_json::Value;
use torronto_tests::{file_status, number, peers, random_file, sha256_file, wait_until, TestNode};

const NODES: usize = 12;
const MAX_LINKS: usize = 4;
/// A suspicion is concluded after 15 s; gossip spreads it in a few rounds of 1 s.
const GONE_BOUND: Duration = Duration::from_secs(45);

/// `NODES` nodes, each with `--max-links 4`; every peers file names node 0 only.
fn sparse_network() -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = (0..NODES).map(|i| TestNode::new(&format!("s{i}"))).collect();
    let first = nodes[0].addr();
    for (i, n) in nodes.iter_mut().enumerate() {
        if i > 0 {
            n.set_peers(std::slice::from_ref(&first));
        }
        n.set_extra_args(&["--max-links", &MAX_LINKS.to_string()]);
        n.start();
    }
    for n in &nodes {
        n.join();
    }
    nodes
}

fn participants(status: &Value) -> u64 {
    number(status, "participants")
}

#[track_caller]
fn assert_links_bounded(nodes: &[TestNode]) {
    for n in nodes {
        let st = n.query();
        assert!(
            peers(&st).len() <= MAX_LINKS,
            "{}: {} links, over --max-links {MAX_LINKS}: {st}",
            n.label(),
            peers(&st).len()
        );
    }
}

#[test]
fn every_node_counts_every_participant_through_few_links() {
    let nodes = sparse_network();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("wide.bin");
    random_file(&path, 2 * 1024 * 1024 + 7, 13);
    let sha = sha256_file(&path);
    nodes[5].insert(&path).ok("insert wide.bin on s5");
    let size = fs::metadata(&path).unwrap().len();
    wait_until(Duration::from_secs(60), "every node holds wide.bin", || {
        nodes.iter().all(|n| n.holds("wide.bin", size, &sha))
    });
    // Query on any node counts all twelve, not only its links.
    wait_until(Duration::from_secs(30), "every node reports 12 participants and least replication 12", || {
        nodes.iter().all(|n| {
            let st = n.query();
            participants(&st) == NODES as u64
                && file_status(&st, "wide.bin").is_some_and(|f| f.least == NODES as u64 && f.system == 1.0)
        })
    });
    assert_links_bounded(&nodes);
    let linked: usize = nodes.iter().map(|n| peers(&n.query()).len()).sum();
    assert!(linked < NODES * (NODES - 1), "a full mesh: {linked} link ends");
}

#[test]
fn a_node_killed_without_a_word_is_no_longer_counted() {
    let mut nodes = sparse_network();
    wait_until(Duration::from_secs(30), "every node counts 12 participants", || {
        nodes.iter().all(|n| participants(&n.query()) == NODES as u64)
    });
    let victim = nodes[7].pid().expect("running");
    // SIGKILL: no Remove, no Leaving, no goodbye of any kind.
    let killed = std::process::Command::new("kill").args(["-9", &victim.to_string()]).status().unwrap();
    assert!(killed.success());
    wait_until(Duration::from_secs(5), "s7 is dead", || !nodes[7].is_running());
    let gone = std::time::Instant::now();
    wait_until(GONE_BOUND, "every other node counts 11 participants", || {
        nodes.iter().enumerate().filter(|(i, _)| *i != 7).all(|(_, n)| participants(&n.query()) == NODES as u64 - 1)
    });
    eprintln!("a killed node was no longer counted anywhere after {:.1} s", gone.elapsed().as_secs_f64());
}

#[test]
fn a_leave_with_partial_links_hands_its_file_over() {
    let nodes = sparse_network();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("only-here.bin");
    random_file(&path, 1024 * 1024 + 3, 14);
    let sha = sha256_file(&path);
    let size = fs::metadata(&path).unwrap().len();
    // Inserted and left at once: only the leave's pushes to its links can save it.
    nodes[9].insert(&path).ok("insert on s9");
    let out = nodes[9].cli(&["leave"]);
    assert_eq!(out.code, 0, "leave: {out}");
    assert!(!format!("{out}").contains("could not be handed over"), "leave lost chunks: {out}");
    let rest: Vec<&TestNode> = nodes.iter().enumerate().filter(|(i, _)| *i != 9).map(|(_, n)| n).collect();
    wait_until(Duration::from_secs(60), "every other node holds only-here.bin", || {
        rest.iter().all(|n| n.holds("only-here.bin", size, &sha))
    });
    wait_until(GONE_BOUND, "the others count 11 participants, 11 copies", || {
        rest.iter().all(|n| {
            let st = n.query();
            participants(&st) == NODES as u64 - 1 && file_status(&st, "only-here.bin").is_some_and(|f| f.least == 11)
        })
    });
}
