//! Multi-node scenarios: real `torronto` nodes on loopback ports with real folders, driven
//! through the control client. Build the binary first: `cargo build -p torronto-node`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use torronto_tests::{
    chunk_count, cli, cli_in, file_status, free_port, joined, number, peers, random_file, sha256_file, sha256_hex,
    wait_until, Cluster, FileStatus, TestNode,
};

const MIB: usize = 1024 * 1024;
/// Generous bound for replication of a few MiB on loopback.
const REPLICATE: Duration = Duration::from_secs(30);
/// Bound for bookkeeping (Have, Add, Remove) to settle.
const SETTLE: Duration = Duration::from_secs(10);

/// A source file for Insert, written into `dir` (never inside a node's folder).
struct Source {
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
    sha: String,
}

impl Source {
    fn new(dir: &Path, name: &str, size: usize, seed: u64) -> Source {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        random_file(&path, size, seed);
        let bytes = fs::read(&path).unwrap();
        let sha = sha256_hex(&bytes);
        Source { path, name: Path::new(name).file_name().unwrap().to_string_lossy().into_owned(), bytes, sha }
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn chunks(&self) -> u64 {
        chunk_count(self.size())
    }
}

#[track_caller]
fn status_of(node: &TestNode, name: &str) -> FileStatus {
    let st = node.query();
    file_status(&st, name).unwrap_or_else(|| panic!("node {}: expected {name} in its status, got {st}", node.label()))
}

#[track_caller]
fn assert_status(node: &TestNode, name: &str, local: f64, system: f64, least: u64, weighted: f64) {
    let f = status_of(node, name);
    let want = (local, system, least, weighted);
    let got = (f.local, f.system, f.least, f.weighted);
    assert_eq!(
        got,
        want,
        "node {}: status of {name} as (local, system, leastReplication, \
         weightedLeastReplication): expected {want:?}, got {got:?}",
        node.label()
    );
}

#[track_caller]
fn assert_byte_identical(node: &TestNode, src: &Source) {
    let path = node.file(&src.name);
    let got = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        got == src.bytes,
        "node {}: {} differs from the inserted file ({} bytes vs {} expected)",
        node.label(),
        path.display(),
        got.len(),
        src.bytes.len()
    );
}

/// (a) Four joined nodes; a ~3 MiB file inserted on one ends up byte-identical on all, and
/// every node reports it fully present and replicated four times.
#[test]
fn file_replicates_to_every_joined_node() {
    let c = Cluster::start_joined(4);
    let src_dir = tempfile::tempdir().unwrap();
    // Not a multiple of 64 KiB: the last chunk is short.
    let src = Source::new(src_dir.path(), "payload.bin", 3 * MIB + 12_345, 1);
    assert_ne!(src.size() % (64 * 1024), 0);

    c[1].insert(&src.path).ok("insert payload.bin on n1");
    c.wait_all_hold(REPLICATE, &src.name, src.size(), &src.sha);
    wait_until(SETTLE, "every node reports payload.bin with leastReplication 4", || {
        c.nodes.iter().all(|n| matches!(file_status(&n.query(), &src.name), Some(f) if f.least == 4))
    });

    let addrs = c.addrs();
    for n in &c.nodes {
        assert_byte_identical(n, &src);
        assert_status(n, &src.name, 1.0, 1.0, 4, 4.0);
        let st = n.query();
        let mut others: Vec<String> = addrs.iter().filter(|a| **a != n.addr()).cloned().collect();
        others.sort();
        assert_eq!(peers(&st), others, "node {}: expected its 3 other nodes in peers", n.label());
        assert!(joined(&st), "node {}: expected joined true", n.label());
        let f = file_status(&st, &src.name).unwrap();
        if let Some(size) = f.size {
            assert_eq!(size, src.size(), "node {}: sizes entry", n.label());
        }
    }

    // The human table mentions the file.
    let table = c[2].cli(&["query"]).ok("query (table) on n2");
    assert!(table.stdout.contains(&src.name), "expected the query table to mention {}, got:\n{table}", src.name);
}

/// (b) Error replies reach the user by name and exit status.
#[test]
fn control_errors_by_name_and_exit_status() {
    let n = TestNode::start_alone("errs");
    let src_dir = tempfile::tempdir().unwrap();

    n.cli(&["leave"]).expect_error("leave before join", 12, "ErrDisconnected");
    n.join();
    n.cli(&["join"]).expect_error("second join", 11, "ErrConnected");
    n.leave();
    n.cli(&["leave"]).expect_error("second leave", 12, "ErrDisconnected");

    let missing = src_dir.path().join("no-such-file.bin");
    n.insert(&missing).expect_error("insert of a missing path", 14, "ErrFileMissing");

    let a = Source::new(src_dir.path(), "a/data.bin", 100_000, 2);
    n.insert(&a.path).ok("insert a/data.bin");
    n.insert(&a.path).expect_error("insert of the same file again", 13, "ErrFileExists");
    let b = Source::new(src_dir.path(), "b/data.bin", 100_000, 3);
    n.insert(&b.path).expect_error("insert of other content under the same base name", 13, "ErrFileExists");
    assert_eq!(sha256_file(&n.file("data.bin")), a.sha, "the first data.bin must stay in the node's folder");

    // A relative path is made absolute against the client's working directory.
    let rel = Source::new(src_dir.path(), "relative.bin", 70_000, 4);
    let addr = n.addr();
    cli_in(src_dir.path(), &["insert", "relative.bin", "--node", &addr]).ok("insert relative.bin by a relative path");
    assert!(n.holds(&rel.name, rel.size(), &rel.sha), "expected relative.bin on the node");

    // Nobody listening: exit 1.
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = cli(&["query", "--node", &nobody]);
    assert_eq!(out.code, 1, "query of a port nobody listens on: expected exit 1, got:\n{out}");
}

/// (c) Status before joining counts only this node; after a second node replicates, both
/// count two.
#[test]
fn status_before_and_after_join() {
    let mut a = TestNode::new("A");
    let mut b = TestNode::new("B");
    let addrs = vec![a.addr(), b.addr()];
    a.set_peers(&addrs);
    b.set_peers(&addrs);
    a.start();
    b.start();
    let src_dir = tempfile::tempdir().unwrap();
    let src = Source::new(src_dir.path(), "status.bin", 300_000, 5);

    a.insert(&src.path).ok("insert status.bin on A (not joined)");
    let st = a.query();
    assert!(!joined(&st), "A has not joined: expected joined false in {st}");
    assert_eq!(number(&st, "numFiles"), 1, "A: expected numFiles 1 in {st}");
    assert_status(&a, &src.name, 1.0, 1.0, 1, 1.0);
    assert!(file_status(&b.query(), &src.name).is_none(), "B (not joined) must not know status.bin yet");

    a.join();
    assert!(joined(&a.query()), "A: expected joined true after join");
    b.join();
    wait_until(REPLICATE, "B holds status.bin", || b.holds(&src.name, src.size(), &src.sha));
    wait_until(SETTLE, "A and B both report leastReplication 2", || {
        [&a, &b].iter().all(|n| matches!(file_status(&n.query(), &src.name), Some(f) if f.least == 2))
    });
    for n in [&a, &b] {
        assert_status(n, &src.name, 1.0, 1.0, 2, 2.0);
    }
}

/// Query's `links` (docs/protocol.md §9): each node lists its peer with the bytes of the
/// files it holds and the bytes moved between them. A file of a short last chunk, sent
/// by n1 to n0: n0 counts it fetched from n1, n1 counts it served to n0.
#[test]
fn links_say_what_each_peer_holds_and_the_bytes_moved() {
    let c = Cluster::start_joined(2);
    let src_dir = tempfile::tempdir().unwrap();
    let src = Source::new(src_dir.path(), "links.bin", MIB + 12_345, 9);
    let link = |n: usize| {
        let st = c[n].query();
        let links = st["links"].as_array().unwrap_or_else(|| panic!("node n{n}: no links in {st}")).clone();
        assert_eq!(links.len(), 1, "node n{n}: one link, to its one peer: {st}");
        assert_eq!(links[0]["peer"], st["peers"][0], "node n{n}: links follow peers: {st}");
        links[0].clone()
    };
    assert_eq!(link(0)["held"], 0, "nothing in the network yet");

    c[1].insert(&src.path).ok("insert links.bin on n1");
    wait_until(REPLICATE, "n0 holds links.bin", || c[0].holds(&src.name, src.size(), &src.sha));
    wait_until(SETTLE, "each node counts its peer holding all of links.bin", || {
        link(0)["held"] == src.size() && link(1)["held"] == src.size()
    });
    let (at0, at1) = (link(0), link(1));
    assert_eq!(at0["peer"], c[1].addr());
    assert!(at0["fetched"].as_u64() >= Some(src.size()), "n0 fetched the file from n1: {at0}");
    assert_eq!(at0["served"], 0, "n0 sent n1 nothing: {at0}");
    assert!(at1["served"].as_u64() >= Some(src.size()), "n1 served the file to n0: {at1}");
    assert_eq!(at1["fetched"], 0, "n1 fetched nothing from n0: {at1}");
}

/// (d) A node that nobody lists joins through node 0 and receives everything; node 0 then
/// counts it as a peer, and files inserted elsewhere later reach it too.
#[test]
fn unlisted_node_joins_and_receives_files() {
    let c = Cluster::start_joined(2);
    let src_dir = tempfile::tempdir().unwrap();
    let first = Source::new(src_dir.path(), "first.bin", 400_000, 6);
    c[0].insert(&first.path).ok("insert first.bin on n0");
    c.wait_all_hold(REPLICATE, &first.name, first.size(), &first.sha);

    let mut x = TestNode::new("newcomer");
    x.set_peers(&[c[0].addr()]);
    x.start();
    x.join();
    wait_until(REPLICATE, "the newcomer holds first.bin", || x.holds(&first.name, first.size(), &first.sha));
    assert_byte_identical(&x, &first);
    wait_until(SETTLE, "n0 lists the newcomer in peers", || peers(&c[0].query()).contains(&x.addr()));

    // n1 does not know the newcomer; a file inserted there reaches it through n0.
    let second = Source::new(src_dir.path(), "second.bin", 150_000, 7);
    c[1].insert(&second.path).ok("insert second.bin on n1");
    wait_until(REPLICATE, "the newcomer holds second.bin (via n0)", || {
        x.holds(&second.name, second.size(), &second.sha)
    });
}

/// (e) A node that leaves right after inserting a file nobody else has pushes it out first:
/// after it is killed and its folder deleted, the file still completes everywhere else.
#[test]
fn leave_right_after_insert_loses_nothing() {
    let mut c = Cluster::start_joined(3);
    let src_dir = tempfile::tempdir().unwrap();
    let src = Source::new(src_dir.path(), "handoff.bin", 2 * MIB + 777, 8);

    c[0].insert(&src.path).ok("insert handoff.bin on n0");
    c[0].leave(); // immediately: no waiting for anyone to fetch it
    c[0].stop();
    fs::remove_dir_all(c[0].root()).expect("delete n0's folder");
    fs::remove_file(&src.path).expect("delete the source file");

    let rest = &c.nodes[1..];
    wait_until(REPLICATE, "n1 and n2 hold handoff.bin complete", || {
        rest.iter().all(|n| n.holds(&src.name, src.size(), &src.sha))
    });
    wait_until(SETTLE, "n1 and n2 report handoff.bin with system 1.0 and least 2", || {
        rest.iter().all(|n| matches!(file_status(&n.query(), &src.name), Some(f) if f.system == 1.0 && f.least == 2))
    });
    for n in rest {
        assert_byte_identical(n, &src);
        assert_status(n, &src.name, 1.0, 1.0, 2, 2.0);
    }
}

/// (f) A killed node restarted on its folder keeps what it had and fetches only the rest.
#[test]
fn restart_keeps_files_and_fetches_only_the_rest() {
    let mut c = Cluster::start_joined(2);
    let src_dir = tempfile::tempdir().unwrap();
    let x = Source::new(src_dir.path(), "x.bin", 500_000, 9);
    let y = Source::new(src_dir.path(), "y.bin", 700_001, 10);

    c[0].insert(&x.path).ok("insert x.bin on n0");
    c.wait_all_hold(REPLICATE, &x.name, x.size(), &x.sha);

    c[1].stop();
    c[0].insert(&y.path).ok("insert y.bin on n0 while n1 is down");
    c[1].set_join_on_start(true);
    c[1].start();

    let b = &c[1];
    let st = b.query();
    let fx = file_status(&st, &x.name)
        .unwrap_or_else(|| panic!("restarted n1: expected x.bin in its status at once, got {st}"));
    assert_eq!(fx.local, 1.0, "restarted n1: expected x.bin local 1.0, got {st}");
    assert_eq!(sha256_file(&b.file(&x.name)), x.sha, "restarted n1: x.bin changed");

    wait_until(REPLICATE, "restarted n1 holds y.bin", || b.holds(&y.name, y.size(), &y.sha));
    let st = b.query();
    assert_eq!(
        number(&st, "chunksFetched"),
        y.chunks(),
        "restarted n1: expected chunksFetched = y.bin's {} chunks (x.bin kept, nothing \
         fetched twice); status {st}",
        y.chunks()
    );
    assert_byte_identical(b, &y);
    assert_byte_identical(b, &x);
}

/// (g) Peers files in both formats, with comments and blank lines.
#[test]
fn peers_file_formats() {
    let mut nodes: Vec<TestNode> = (0..3).map(|i| TestNode::new(&format!("p{i}"))).collect();
    let p: Vec<u16> = nodes.iter().map(TestNode::port).collect();
    nodes[0].set_peers_text(&format!("# peers of p0, original format\n\n127.0.0.1 {}\n127.0.0.1 {}\n", p[1], p[2]));
    nodes[1].set_peers_text(&format!(
        "\n# p0 as host:port\n127.0.0.1:{}\n\n   \n# itself, original format (skipped)\n127.0.0.1 {}\n",
        p[0], p[1]
    ));
    nodes[2].set_peers_text(&format!(
        "# mixed\n127.0.0.1 {}\n\n# host:port\n127.0.0.1:{}\n127.0.0.1:{}\n# end",
        p[0], p[1], p[2]
    ));
    for n in &mut nodes {
        n.start();
    }
    // Join in order: each later node reaches the earlier ones only through its peers file.
    for n in &nodes {
        n.join();
    }
    let addrs: Vec<String> = nodes.iter().map(TestNode::addr).collect();
    wait_until(SETTLE, "every node lists the other two in peers", || {
        nodes.iter().all(|n| peers(&n.query()).len() == 2)
    });
    for n in &nodes {
        let mut others: Vec<String> = addrs.iter().filter(|a| **a != n.addr()).cloned().collect();
        others.sort();
        assert_eq!(peers(&n.query()), others, "node {}: peers", n.label());
    }

    let src_dir = tempfile::tempdir().unwrap();
    let src = Source::new(src_dir.path(), "formats.bin", 100_000, 11);
    nodes[2].insert(&src.path).ok("insert formats.bin on p2");
    wait_until(REPLICATE, "every node holds formats.bin", || {
        nodes.iter().all(|n| n.holds(&src.name, src.size(), &src.sha))
    });
}
