//! Private networks (issue 10) with real nodes: members sharing a secret replicate over
//! encrypted connections; strangers, nodes of another network and plaintext clients get
//! nothing and change nothing; a recording relay sees no file name or byte.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use torronto_tests::raw::{assert_code, full_entry, Raw};
use torronto_tests::sys::{tree, Lan, NsNode};
use torronto_tests::{
    cli, file_status, peers, random_bytes, random_file, sha256_file, skip_unless_netns, wait_until, TestNode,
};

const BAD_PERMISSION: i64 = 5;

/// A fresh secret file in `dir`, made by `torronto secret new --out`.
fn secret_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    cli(&["secret", "new", "--out", &path.display().to_string()]).ok("secret new");
    path
}

fn private_node(label: &str, secret: &Path) -> TestNode {
    let mut n = TestNode::new(label);
    n.set_extra_args(&["--secret", &secret.display().to_string()]);
    n
}

fn files_of(status: &Value) -> Vec<String> {
    status["files"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Starts private nodes, each with every other in its peers file, joined.
fn private_cluster(secret: &Path, n: usize) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = (0..n).map(|i| private_node(&format!("p{i}"), secret)).collect();
    let addrs: Vec<String> = nodes.iter().map(TestNode::addr).collect();
    for node in &mut nodes {
        node.set_peers(&addrs);
        node.start();
    }
    for node in &nodes {
        node.join();
    }
    nodes
}

#[test]
fn three_private_nodes_replicate_byte_identical_and_show_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let nodes = private_cluster(&secret, 3);
    let src = tmp.path().join("report.bin");
    random_file(&src, 3_000_000, 1);
    nodes[0].insert(&src).ok("insert");
    let sha = sha256_file(&src);
    wait_until(Duration::from_secs(60), "all three hold report.bin", || {
        nodes.iter().all(|n| n.holds("report.bin", 3_000_000, &sha))
    });
    let status = nodes[0].query();
    let id = status["id"].as_str().expect("a private node's status has its id");
    assert_eq!(id.len(), 39, "{id}");
    let peer_ids = status["peerIds"].as_array().expect("peerIds");
    assert_eq!(peer_ids.len(), peers(&status).len());
    assert!(peer_ids.iter().all(|p| p.as_str().is_some_and(|p| p.len() == 39 && p != id)), "{status}");
    let table = nodes[0].cli(&["query"]).ok("query");
    assert!(table.stdout.contains(id), "{table}");
    // The control client over the handshake, as a throwaway member.
    let secured = nodes[0].cli(&["query", "--secret", &secret.display().to_string()]).ok("query --secret");
    assert!(secured.stdout.contains(id), "{secured}");
}

#[test]
fn a_node_with_another_secret_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (secret, other) = (secret_in(tmp.path(), "a.secret"), secret_in(tmp.path(), "b.secret"));
    let members = private_cluster(&secret, 2);
    let src = tmp.path().join("members-only.txt");
    random_file(&src, 200_000, 2);
    members[0].insert(&src).ok("insert");
    let sha = sha256_file(&src);
    wait_until(Duration::from_secs(30), "members replicate", || members[1].holds("members-only.txt", 200_000, &sha));
    let mut outsider = private_node("outsider", &other);
    outsider.set_peers(&members.iter().map(TestNode::addr).collect::<Vec<_>>());
    outsider.start();
    outsider.cli(&["join"]);
    std::thread::sleep(Duration::from_secs(3));
    let status = outsider.query();
    assert!(files_of(&status).is_empty(), "the outsider learnt file names: {status}");
    assert!(peers(&status).is_empty(), "{status}");
    for m in &members {
        let st = m.query();
        assert_eq!(files_of(&st), ["members-only.txt"], "{st}");
        assert!(!peers(&st).contains(&outsider.addr()), "{st}");
    }
}

#[test]
fn a_plaintext_stranger_learns_nothing_and_injects_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let members = private_cluster(&secret, 2);
    let src = tmp.path().join("plans.txt");
    random_file(&src, 100_000, 3);
    members[0].insert(&src).ok("insert");
    let member = members[1].addr();
    let (host, port) = member.rsplit_once(':').unwrap();
    let mut raw = Raw::connect(&members[0].addr());
    // Add under a member's name, with a file to inject: a message with a body, so the
    // node closes the connection without reading the body, let alone answering.
    let payload = random_bytes(70_000, 4);
    raw.send_header(&json!({"HostName": host, "PortNumber": port.parse::<u16>().unwrap(), "Action": 4}));
    raw.send_frame(json!({"Files": [full_entry("run-me.sh", &payload)]}).to_string().as_bytes());
    let closed = raw.wait_closed(Duration::from_secs(10)).expect("the node closes the stranger's connection");
    assert!(closed.headers.is_empty(), "no answer at all, let alone a file list: {closed:?}");
    // A spoofed Remove naming the member is refused, and the refusal does not even say
    // where the node is.
    let mut raw = Raw::connect(&members[0].addr());
    raw.send_header(&json!({"HostName": host, "PortNumber": port.parse::<u16>().unwrap(), "Action": 5}));
    let reply = raw.read_reply("Remove");
    assert_code(&reply, BAD_PERMISSION, "spoofed Remove");
    assert!(reply.get("HostName").is_none() && reply.get("PortNumber").is_none(), "{reply}");
    std::thread::sleep(Duration::from_secs(2));
    for m in &members {
        let st = m.query();
        assert_eq!(files_of(&st), ["plans.txt"], "{st}");
        assert_eq!(peers(&st).len(), 1, "members still see each other: {st}");
        assert!(!m.file("run-me.sh").exists());
    }
    // Control still works in plaintext on the same port (loopback, as today).
    assert_code(&raw.query(), 0, "Query");
}

/// Forwards one connection at a time from `listen` to `target`, recording both directions.
fn recording_relay(target: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else { continue };
            for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, seen)
}

fn capture(secret: Option<&Path>) -> (Vec<u8>, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let make = |label: &str| match secret {
        Some(s) => private_node(label, s),
        None => TestNode::new(label),
    };
    let mut holder = make("holder");
    holder.start();
    holder.join();
    let src = tmp.path().join("confidential-merger-plan.txt");
    random_file(&src, 300_000, 5);
    holder.insert(&src).ok("insert");
    let (relay, seen) = recording_relay(holder.addr());
    let mut fetcher = make("fetcher");
    fetcher.set_peers(&[relay]);
    fetcher.start();
    fetcher.join();
    let sha = sha256_file(&src);
    wait_until(Duration::from_secs(30), "the fetcher holds the file", || {
        fetcher.holds("confidential-merger-plan.txt", 300_000, &sha)
    });
    let bytes = std::fs::read(&src).unwrap();
    let seen = seen.lock().unwrap().clone();
    (seen, bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_recording_relay_sees_no_name_and_no_bytes_between_members() {
    let (open, bytes) = capture(None);
    assert!(contains(&open, b"confidential-merger-plan"), "the check can fail: open mode shows the name");
    assert!(contains(&open, &bytes[100_000..100_032]), "open mode shows the content");
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let (private, bytes) = capture(Some(&secret));
    assert!(private.len() > 300_000, "the file went through the relay ({} bytes)", private.len());
    assert!(!contains(&private, b"confidential"), "a private network leaked a file name");
    assert!(!contains(&private, &bytes[100_000..100_032]), "a private network leaked file bytes");
    assert!(!contains(&private, b"HostName"), "a private network leaked a header");
}

#[test]
fn a_pinned_peer_presenting_another_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let mut b = private_node("b", &secret);
    b.start();
    b.join();
    let mut a = private_node("a", &secret);
    a.start();
    let a_id = a.query()["id"].as_str().unwrap().to_string();
    // Pin A's own ID for B: B's key does not match.
    a.set_peers_text(&format!("{}#{a_id}\n", b.addr()));
    a.stop();
    a.start();
    a.cli(&["join"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(peers(&a.query()).is_empty());
    let log = a.log();
    assert!(log.contains("pinned") && log.contains(&a_id), "the refusal is logged with both IDs:\n{log}");
}

#[test]
fn a_wildcard_listen_needs_a_secret_or_open_and_an_advertised_address() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d").display().to_string();
    let refused = cli(&["node", "--listen", "0.0.0.0:0", "--advertise", "127.0.0.1:1", "--dir", &dir]);
    assert_ne!(refused.code, 0, "{refused}");
    assert!(refused.stderr.contains("--secret") && refused.stderr.contains("--open"), "{refused}");
    let no_advertise = cli(&["node", "--listen", "0.0.0.0:0", "--open", "--dir", &dir]);
    assert!(no_advertise.stderr.contains("--advertise"), "{no_advertise}");
    let mut open = TestNode::new("open");
    open.set_host("0.0.0.0");
    let advertise = format!("127.0.0.1:{}", open.port());
    open.set_extra_args(&["--open", "--advertise", &advertise]);
    open.start();
    let status = open.query();
    assert_eq!(status["node"], json!(advertise), "{status}");
}

#[test]
fn a_panel_on_another_interface_needs_a_secret_or_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d").display().to_string();
    let ws = format!("0.0.0.0:{}", torronto_tests::free_port());
    let refused = cli(&["node", "--listen", "127.0.0.1:0", "--ws", &ws, "--dir", &dir]);
    assert_ne!(refused.code, 0, "{refused}");
    assert!(["--secret", "--open", "--ws", "peers and panel"].iter().all(|s| refused.stderr.contains(s)), "{refused}");
    let mut open = TestNode::new("open-ws");
    open.set_extra_args(&["--open", "--ws", &ws]);
    open.start();
    open.query();
    let mut loopback = TestNode::new("loopback-ws");
    let ws = format!("127.0.0.1:{}", torronto_tests::free_port());
    loopback.set_extra_args(&["--ws", &ws]);
    loopback.start();
    loopback.query();
}

#[test]
fn an_ipv6_pair_replicates_privately() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let mut nodes: Vec<TestNode> = (0..2).map(|i| private_node(&format!("v6-{i}"), &secret)).collect();
    for n in &mut nodes {
        n.set_host("::1");
    }
    let addrs: Vec<String> = nodes.iter().map(TestNode::addr).collect();
    for n in &mut nodes {
        n.set_peers(&addrs);
        n.start();
        n.join();
    }
    let src = tmp.path().join("six.bin");
    random_file(&src, 500_000, 6);
    nodes[0].insert(&src).ok("insert");
    let sha = sha256_file(&src);
    wait_until(Duration::from_secs(30), "the IPv6 peer holds six.bin", || nodes[1].holds("six.bin", 500_000, &sha));
    assert!(peers(&nodes[1].query()).contains(&addrs[0]));
}

#[test]
fn three_servers_in_namespaces_replicate_privately_and_another_network_gets_nothing() {
    skip_unless_netns!();
    // Four hosts on one switch, each node listening on 0.0.0.0 and advertising its own
    // address, as on real servers; the fourth holds another network's secret. Every
    // node has every other in its peers file, so the outsider is dialled and dials.
    let lan = Lan::new(3, 4).expect("make namespaces");
    let tmp = tempfile::tempdir().unwrap();
    let (secret, other) = (secret_in(tmp.path(), "net.secret"), secret_in(tmp.path(), "other.secret"));
    let mut nodes: Vec<NsNode> =
        lan.hosts.iter().enumerate().map(|(i, (ns, ip))| NsNode::new(&format!("server{i}"), ns, ip)).collect();
    let addrs: Vec<String> = nodes.iter().map(NsNode::addr).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        node.set_private(if i < 3 { &secret } else { &other });
        node.set_peers(&addrs);
        node.start();
    }
    for node in &nodes {
        node.join();
    }
    let src = tmp.path().join("quarterly-figures.bin");
    random_file(&src, 2_000_000, 7);
    let sha = sha256_file(&src);
    nodes[0].insert(&src);
    let (members, outsider) = nodes.split_at(3);
    let outsider = &outsider[0];
    wait_until(Duration::from_secs(60), "the three members hold quarterly-figures.bin", || {
        members.iter().all(|n| {
            let path = n.dir().join("quarterly-figures.bin");
            file_status(&n.query(), "quarterly-figures.bin").is_some_and(|f| f.local == 1.0)
                && path.exists()
                && sha256_file(&path) == sha
        })
    });
    for (i, m) in members.iter().enumerate() {
        let st = m.query();
        // Each member knows the others by their advertised addresses, with their IDs.
        let mut want: Vec<String> = addrs[..3].iter().filter(|a| **a != addrs[i]).cloned().collect();
        want.sort();
        let mut got = peers(&st);
        got.sort();
        assert_eq!(got, want, "{st}");
        assert_eq!(st["node"], json!(addrs[i]), "{st}");
        let ids = st["peerIds"].as_array().expect("peerIds");
        assert!(ids.len() == 2 && ids.iter().all(|id| id.as_str().is_some_and(|id| id.len() == 39)), "{st}");
    }
    // Give the outsider time to try, and to be tried, again.
    std::thread::sleep(Duration::from_secs(3));
    let st = outsider.query();
    assert!(files_of(&st).is_empty(), "the outsider learnt file names: {st}");
    assert!(peers(&st).is_empty(), "the outsider sees peers: {st}");
    let stored: Vec<_> = tree(&outsider.dir()).into_iter().filter(|(p, _)| !p.starts_with(".torronto")).collect();
    assert!(stored.is_empty(), "the outsider stored something: {stored:?}");
    for held in ["partial", "manifests"] {
        let found = tree(&outsider.dir().join(".torronto").join(held));
        assert!(found.is_empty(), "the outsider holds {held}: {found:?}");
    }
    assert!(outsider.log().lines().all(|l| !l.contains("quarterly")), "the outsider's log names the file");
    for m in members {
        let st = m.query();
        assert!(!peers(&st).contains(&outsider.addr()), "{st}");
        assert_eq!(files_of(&st), ["quarterly-figures.bin"], "{st}");
    }
}

fn node_id(node: &TestNode) -> String {
    node.query()["id"].as_str().expect("a private node's status has its id").to_string()
}

#[test]
fn a_pinned_address_is_checked_on_connections_the_peer_opens_too() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let mut b = private_node("b", &secret);
    b.start();
    let b_id = node_id(&b);
    b.stop();
    let mut a = private_node("a", &secret);
    a.start();
    let a_id = node_id(&a);
    // A pins B's address to A's own ID, and joins while B is down: the only way B can
    // reach A is by dialling it, so the pin must hold on a connection A accepts.
    a.set_peers_text(&format!("{}#{a_id}\n", b.addr()));
    a.restart();
    a.join();
    b.set_peers(&[a.addr()]);
    b.start();
    b.join();
    std::thread::sleep(Duration::from_secs(2));
    assert!(peers(&a.query()).is_empty(), "{}", a.query());
    assert!(peers(&b.query()).is_empty(), "B got an answer: {}", b.query());
    let refusal = format!("refused node {b_id} claiming {}, which is pinned to node {a_id}", b.addr());
    assert!(a.log().contains(&refusal), "no `{refusal}` in the log:\n{}", a.log());
}

#[test]
fn a_member_cannot_take_an_absent_members_address() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let mut nodes = private_cluster(&secret, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    wait_until(Duration::from_secs(10), "A sees B", || peers(&a.query()) == [b.addr()]);
    let (a_addr, b_addr, b_id) = (a.addr(), b.addr(), node_id(b));
    nodes[1].stop();
    wait_until(Duration::from_secs(30), "A notices B is gone", || peers(&nodes[0].query()).is_empty());
    // Another member says it is at B's address.
    let mut mallory = private_node("mallory", &secret);
    mallory.set_extra_args(&["--secret", &secret.display().to_string(), "--advertise", &b_addr]);
    mallory.set_peers(&[a_addr]);
    mallory.set_join_on_start(true);
    mallory.start();
    std::thread::sleep(Duration::from_secs(3));
    let st = nodes[0].query();
    assert!(peers(&st).is_empty(), "Mallory took B's place: {st}");
    let log = nodes[0].log();
    let refusal = format!("claiming {b_addr}, which node {b_id} proved first");
    assert!(log.contains(&refusal), "no `{refusal}` in the log:\n{log}");
    // B itself comes back to its address.
    mallory.stop();
    nodes[1].start();
    nodes[1].join();
    wait_until(Duration::from_secs(10), "A sees B again", || {
        let st = nodes[0].query();
        peers(&st) == [b_addr.clone()] && st["peerIds"] == json!([b_id])
    });
}

#[test]
fn a_liar_is_banned_by_its_key_and_cannot_come_back_under_another_address() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_in(tmp.path(), "net.secret");
    let mut liar = private_node("liar", &secret);
    liar.start();
    liar.join();
    let src = tmp.path().join("tampered.bin");
    random_file(&src, 1_000_000, 8);
    liar.insert(&src).ok("insert");
    // Its copy rots under it: it serves chunks that do not match its manifest.
    std::fs::write(liar.file("tampered.bin"), random_bytes(1_000_000, 9)).unwrap();
    let mut fetcher = private_node("fetcher", &secret);
    fetcher.set_peers(&[liar.addr()]);
    fetcher.start();
    fetcher.join();
    wait_until(Duration::from_secs(30), "the fetcher bans the liar", || {
        fetcher.log().contains("kept sending corrupt chunks")
    });
    assert!(peers(&fetcher.query()).is_empty());
    // The same key at another address: a fresh node folder holding the liar's identity.
    liar.stop();
    let mut again = private_node("liar-again", &secret);
    let state = again.dir().join(".torronto");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(liar.dir().join(".torronto/identity"), state.join("identity")).unwrap();
    again.set_peers(&[fetcher.addr()]);
    again.start();
    again.join();
    std::thread::sleep(Duration::from_secs(2));
    assert!(peers(&fetcher.query()).is_empty(), "the banned key came back: {}", fetcher.query());
    assert!(peers(&again.query()).is_empty(), "the banned key got an answer: {}", again.query());
    // Its old address is not banned: a member with another key may use it.
    let mut heir = private_node("heir", &secret);
    heir.set_extra_args(&["--secret", &secret.display().to_string(), "--advertise", &liar.addr()]);
    heir.set_peers(&[fetcher.addr()]);
    heir.set_join_on_start(true);
    heir.start();
    wait_until(Duration::from_secs(10), "the fetcher takes the heir at the liar's old address", || {
        peers(&fetcher.query()) == [liar.addr()]
    });
}
