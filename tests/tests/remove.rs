//! `torronto remove NAME`, tried with real nodes: the file goes from every node's folder
//! and status; a node that was away deletes its copy when it returns instead of bringing
//! it back, even when every node it meets has restarted since; the name can carry new
//! content afterwards; a tombstone never kills other content of the same name; only the
//! copy torronto wrote is deleted; and a name the network does not know is an error.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use torronto_tests::{file_status, random_bytes, sha256_hex, wait_until, TestNode};

const DEADLINE: Duration = Duration::from_secs(60);

/// Nodes that list each other as peers, started and joined.
fn network(labels: &[&str]) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = labels.iter().map(|l| TestNode::new(l)).collect();
    let addrs: Vec<String> = nodes.iter().map(TestNode::addr).collect();
    for n in &nodes {
        n.set_peers(&addrs);
    }
    for n in &mut nodes {
        n.start();
    }
    for n in &nodes {
        n.join();
    }
    nodes
}

/// Writes `data` as `name` in a temporary folder and inserts it on `node`.
fn insert(node: &TestNode, name: &str, data: &[u8]) {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join(name);
    fs::write(&path, data).unwrap();
    node.insert(&path).ok(&format!("insert {name} on {}", node.label()));
}

fn wait_held(nodes: &[&TestNode], name: &str, data: &[u8]) {
    let sha = sha256_hex(data);
    for n in nodes {
        wait_until(DEADLINE, &format!("{} holds {name}", n.label()), || n.holds(name, data.len() as u64, &sha));
    }
}

/// Whether `node` neither lists `name` nor has it in its folder, nor keeps state of it.
fn forgot(node: &TestNode, name: &str) -> bool {
    file_status(&node.query(), name).is_none() && !node.file(name).exists() && state_files(node.dir().as_path()) == 0
}

fn wait_forgotten(nodes: &[&TestNode], name: &str) {
    for n in nodes {
        wait_until(DEADLINE, &format!("{} forgot {name}", n.label()), || forgot(n, name));
    }
}

/// Three nodes: the first inserts `name`, all hold it, the third stops, and the second
/// removes it, which the first two carry out. Returns them, the third still stopped.
fn removed_while_away(labels: &[&str; 3], name: &str, data: &[u8]) -> Vec<TestNode> {
    let mut nodes = network(labels);
    insert(&nodes[0], name, data);
    wait_held(&[&nodes[0], &nodes[1], &nodes[2]], name, data);
    nodes[2].stop();
    nodes[1].cli(&["remove", name]).ok("remove");
    wait_forgotten(&[&nodes[0], &nodes[1]], name);
    assert!(nodes[2].file(name).exists(), "the node away still has its copy");
    nodes
}

/// Files under `DIR/.torronto/files`: the state of every file the node holds or fetches.
fn state_files(dir: &Path) -> usize {
    fs::read_dir(dir.join(".torronto/files")).map_or(0, |d| d.count())
}

#[test]
fn remove_deletes_the_file_on_every_node_and_query_no_longer_lists_it() {
    let nodes = network(&["rm-a", "rm-b", "rm-c"]);
    let [a, b, c] = [&nodes[0], &nodes[1], &nodes[2]];
    let data = random_bytes(300_000, 1);
    insert(a, "report.bin", &data);
    let keep = random_bytes(70_000, 2);
    insert(a, "keep.bin", &keep);
    wait_held(&[a, b, c], "report.bin", &data);
    wait_held(&[a, b, c], "keep.bin", &keep);

    // Any node may be asked, not only the one that inserted it.
    let out = b.cli(&["remove", "report.bin"]).ok("remove report.bin");
    assert_eq!(out.stdout.trim(), "removed report.bin from the network", "{out}");
    for n in [a, b, c] {
        wait_until(DEADLINE, &format!("{} deleted report.bin", n.label()), || {
            file_status(&n.query(), "report.bin").is_none() && !n.file("report.bin").exists()
        });
        // Only its state went: keep.bin's stays.
        assert_eq!(state_files(&n.dir()), 2, "{}: keep.bin's manifest and published record", n.label());
        assert!(n.holds("keep.bin", keep.len() as u64, &sha256_hex(&keep)), "{}", n.label());
    }
    assert!(c.log().contains("report.bin was removed from the network (told by"), "{}", c.log_tail(30));
    let table = a.cli(&["query"]).ok("query");
    assert!(!table.stdout.contains("report"), "{table}");
}

#[test]
fn a_node_away_during_the_remove_deletes_its_copy_when_it_returns_to_restarted_nodes() {
    let mut nodes = removed_while_away(&["away-a", "away-b", "away-c"], "movie.bin", &random_bytes(200_000, 3));

    // The tombstone survives a restart: a and b start again, and only they can tell c.
    for n in &mut nodes[..2] {
        n.restart();
    }
    for n in &nodes[..2] {
        n.join();
        assert!(n.dir().join(".torronto/tombstones").is_file(), "{} saved its tombstones", n.label());
    }
    nodes[2].start();
    nodes[2].join();
    wait_forgotten(&[&nodes[2]], "movie.bin");
    assert!(nodes[2].log().contains("movie.bin was removed from the network (told by"), "{}", nodes[2].log_tail(30));
    // And it stays gone: nobody fetched it back from c before c learned of the removal.
    std::thread::sleep(Duration::from_secs(2));
    for n in &nodes {
        assert!(forgot(n, "movie.bin"), "{} brought movie.bin back", n.label());
    }
}

#[test]
fn the_name_can_be_inserted_again_with_new_content_and_a_returning_node_gets_it() {
    let old = random_bytes(150_000, 4);
    let mut nodes = removed_while_away(&["again-a", "again-b", "again-c"], "notes.bin", &old);

    // The very content removed cannot come back under its name (the others would ignore
    // it): the insert says so.
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("notes.bin"), &old).unwrap();
    let out = nodes[0].insert(&src.path().join("notes.bin"));
    out.expect_error("insert the removed content again", 13, "ErrFileExists");
    assert!(out.stderr.contains("was removed from the network"), "{out}");

    let new = random_bytes(180_000, 5);
    insert(&nodes[0], "notes.bin", &new);
    wait_held(&[&nodes[0], &nodes[1]], "notes.bin", &new);
    // c comes back with the old content: it deletes that and fetches the new.
    nodes[2].start();
    nodes[2].join();
    wait_held(&[&nodes[2]], "notes.bin", &new);
}

#[test]
fn a_stale_tombstone_does_not_kill_newer_content_of_the_same_name() {
    // old removes its file alone, then is away while fresh gets new content of the name.
    let mut old = TestNode::start_alone("stale-old");
    old.join();
    let first = random_bytes(100_000, 6);
    insert(&old, "data.bin", &first);
    old.cli(&["remove", "data.bin"]).ok("remove");
    wait_forgotten(&[&old], "data.bin");
    old.stop();

    let fresh = TestNode::start_alone("stale-fresh");
    fresh.join();
    let second = random_bytes(120_000, 7);
    insert(&fresh, "data.bin", &second);

    old.set_peers(&[fresh.addr()]);
    old.start();
    old.join();
    // fresh learns the tombstone (it names the first digest) and keeps its content,
    // which old now fetches.
    let first_digest = file_digest(&first);
    wait_until(DEADLINE, "fresh keeps the tombstone", || {
        fs::read_to_string(fresh.dir().join(".torronto/tombstones")).is_ok_and(|t| t.contains(&first_digest))
    });
    wait_held(&[&old, &fresh], "data.bin", &second);
}

/// The protocol digest of `data`, as tombstones name it.
fn file_digest(data: &[u8]) -> String {
    torronto_tests::protocol_digest(data)
}

#[test]
fn only_the_networks_conflict_copy_is_deleted_never_the_users_file() {
    let nodes = network(&["copy-a", "copy-b"]);
    let (a, b) = (&nodes[0], &nodes[1]);
    fs::write(b.file("notes.txt"), b"the user's own notes\n").unwrap();
    insert(a, "notes.txt", &random_bytes(90_000, 8));
    let copy = || file_status(&b.query(), "notes.txt").and_then(|r| r.stored_as.filter(|_| r.local == 1.0));
    wait_until(DEADLINE, "b stores a conflict copy", || copy().is_some());
    let copy = copy().unwrap();
    a.cli(&["remove", "notes.txt"]).ok("remove");
    wait_until(DEADLINE, "b deleted the conflict copy", || {
        file_status(&b.query(), "notes.txt").is_none() && !b.file(&copy).exists()
    });
    assert_eq!(fs::read(b.file("notes.txt")).unwrap(), b"the user's own notes\n");
    assert!(!a.file("notes.txt").exists());
}

#[test]
fn removing_a_name_the_network_does_not_know_is_a_clear_error() {
    let node = TestNode::start_alone("rm-unknown");
    node.join();
    let out = node.cli(&["remove", "nothing.bin"]);
    out.expect_error("remove an unknown name", 14, "ErrFileMissing");
    assert!(out.stderr.contains("nothing.bin is not in the network"), "{out}");

    let out = node.cli(&["remove", "nothing.bin", "--json"]);
    assert_eq!(out.code, 14, "{out}");
    let reply: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(reply["Code"], 4, "{reply}");
    assert!(reply["Reason"].as_str().is_some_and(|r| r.contains("not in the network")), "{reply}");

    let out = node.cli(&["remove", "../etc/passwd"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("is not a file name of the network"), "{out}");

    // A control action: the token is needed.
    insert(&node, "kept.bin", &random_bytes(1000, 9));
    let out = node.cli(&["remove", "kept.bin", "--token", "wrong"]);
    out.expect_error("remove with a wrong token", 15, "ErrBadPermission");
    assert!(node.file("kept.bin").exists());
    let out = node.cli(&["remove", "kept.bin", "--json"]).ok("remove --json");
    let reply: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(reply["Code"], 0, "{reply}");
    wait_forgotten(&[&node], "kept.bin");
}
