//! Hostile input, one test per kind: each is answered with ErrBadRequest (Code 6) or a
//! closed connection, and afterwards the node still answers Query, still serves a peer
//! verified chunks, and nothing appeared, changed or vanished in its folder or in a
//! sentinel folder beside it. Raw sockets throughout (tests/src/raw.rs).

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torronto_tests::raw::{assert_code, fetch_verified, peer_header, Raw};
use torronto_tests::sys::{rss_kib, tree};
use torronto_tests::{random_bytes, wait_until, TestNode};

const SERVED: &str = "served.bin";
/// 3 full chunks and a short last one.
const SERVED_SIZE: u64 = 200_000;
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A joined node serving one file, with a sentinel folder beside its own.
struct Ctx {
    node: TestNode,
    sentinel: PathBuf,
    dir_before: Vec<(String, Option<u64>)>,
    sentinel_before: Vec<(String, Option<u64>)>,
    _src: tempfile::TempDir,
}

impl Ctx {
    fn new(label: &str) -> Ctx {
        let node = TestNode::start_alone(label);
        node.join();
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join(SERVED);
        fs::write(&path, random_bytes(SERVED_SIZE as usize, 7)).unwrap();
        node.insert(&path).ok("insert served.bin");
        // The sentinel sits beside DIR: `DIR/../sentinel`.
        let sentinel = node.root().join("sentinel");
        fs::create_dir_all(&sentinel).unwrap();
        fs::write(sentinel.join("keep.txt"), b"must stay exactly this").unwrap();
        let dir_before = tree(&node.dir());
        let sentinel_before = tree(node.root());
        Ctx { node, sentinel, dir_before, sentinel_before, _src: src }
    }

    fn addr(&self) -> String {
        self.node.addr()
    }

    /// A connection introduced as peer `hostile-<n>` (port 0, never dialled).
    fn peer(&self, n: u32) -> Raw {
        let mut r = Raw::connect(&self.addr());
        r.introduce(&format!("hostile-{n}"), 0, json!([]));
        r
    }

    /// The node is up, answers Query on a fresh connection, serves verified chunks to a
    /// fresh peer, and no file appeared, changed or vanished in DIR or beside it.
    #[track_caller]
    fn assert_healthy(&self, after: &str) {
        let mut q = Raw::connect(&self.addr());
        let st = q.query();
        assert!(
            st["files"].as_array().is_some_and(|f| f.iter().any(|n| n == SERVED)),
            "after {after}: Query should still list {SERVED}: {st}"
        );
        let mut p = Raw::connect(&self.addr());
        p.introduce("healthcheck", 0, json!([]));
        fetch_verified(&mut p, "healthcheck", SERVED, SERVED_SIZE, 0);
        fetch_verified(&mut p, "healthcheck", SERVED, SERVED_SIZE, 3);
        assert_eq!(tree(&self.node.dir()), self.dir_before, "after {after}: the node's folder changed");
        // The node's root holds DIR, its log (which grows) and the sentinel.
        let strip = |t: Vec<(String, Option<u64>)>| -> Vec<(String, Option<u64>)> {
            t.into_iter().filter(|(p, _)| p != "node.log" && !p.starts_with("share/")).collect()
        };
        assert_eq!(
            strip(tree(self.node.root())),
            strip(self.sentinel_before.clone()),
            "after {after}: something appeared or vanished beside the node's folder"
        );
        assert_eq!(fs::read(self.sentinel.join("keep.txt")).unwrap(), b"must stay exactly this");
    }
}

#[track_caller]
fn assert_closed(r: &mut Raw, what: &str) -> Duration {
    match r.wait_closed(CLOSE_WITHIN) {
        Ok(c) => {
            // Anything said before closing must not be a success.
            for h in &c.headers {
                assert!(h.get("Code").is_none_or(|c| c != 0), "{what}: node answered {h} before closing");
            }
            c.after
        }
        Err(e) => panic!("{what}: expected the node to close the connection within {CLOSE_WITHIN:?}: {e}"),
    }
}

/// Sends `header` (raw bytes), expects Code 6, and checks the same connection still works.
#[track_caller]
fn expect_bad(r: &mut Raw, frame: &[u8], what: &str) {
    assert!(r.send_frame(frame), "{what}: node closed the connection instead of answering");
    let reply = r.read_reply(what);
    assert_code(&reply, 6, what);
    r.query();
}

#[track_caller]
fn expect_bad_json(r: &mut Raw, header: &Value, what: &str) {
    expect_bad(r, header.to_string().as_bytes(), &format!("{what}: {header}"));
}

#[test]
fn length_prefix_near_4_gib_closes_without_allocating() {
    let ctx = Ctx::new("prefix4g");
    let pid = ctx.node.pid().expect("running");
    let rss_before = rss_kib(pid).expect("node RSS");
    for prefix in [0xFFFF_FFFFu32, 0xFFFF_FFF0, 0x8000_0000, (64 << 20) + 1] {
        let mut r = Raw::connect(&ctx.addr());
        r.write(&prefix.to_be_bytes());
        r.write(b"{\"Action\":3}");
        let after = assert_closed(&mut r, &format!("length prefix {prefix:#x}"));
        println!("length prefix {prefix:#x}: closed after {after:?}");
    }
    let rss_after = rss_kib(pid).expect("node RSS");
    println!("node RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "node memory grew from {rss_before} to {rss_after} KiB: a length prefix was allocated"
    );
    ctx.assert_healthy("length prefixes near 4 GiB");
}

#[test]
fn header_over_64_kib_closes_and_64_kib_exactly_is_fine() {
    let ctx = Ctx::new("bighdr");
    // Exactly at the limit: valid JSON padded with spaces is answered.
    let mut ok = Raw::connect(&ctx.addr());
    // A raw frame: the token goes in by hand (Raw adds it only to headers it encodes).
    let mut header = json!({"Action": 3, "Token": ctx.node.token()}).to_string().into_bytes();
    header.resize(65_536, b' ');
    assert!(ok.send_frame(&header));
    assert_code(&ok.read_reply("a 65,536-byte Query header"), 0, "a 65,536-byte Query header");
    // One byte over: dropped from the prefix alone, whether or not the bytes follow.
    let mut r = Raw::connect(&ctx.addr());
    header.push(b' ');
    r.send_frame(&header);
    assert_closed(&mut r, "a 65,537-byte header");
    let mut r = Raw::connect(&ctx.addr());
    r.write(&(1u32 << 20).to_be_bytes());
    assert_closed(&mut r, "a 1 MiB header prefix with nothing after it");
    ctx.assert_healthy("oversized headers");
}

#[test]
fn body_over_its_limit_closes() {
    let ctx = Ctx::new("bigbody");
    // Upload of a 10-byte chunk with 11 bytes.
    let mut r = ctx.peer(1);
    r.send_header(&peer_header("hostile-1", 8, json!([{"FileName": "x", "chunks": [10, 0]}])));
    r.send_frame(&[0u8; 11]);
    assert_closed(&mut r, "an Upload body longer than its chunk");
    // Upload of a full chunk announcing 64 KiB + 1.
    let mut r = ctx.peer(2);
    r.send_header(&peer_header("hostile-2", 8, json!([{"FileName": "x", "chunks": [1 << 20, 0]}])));
    r.write(&(65_537u32).to_be_bytes());
    assert_closed(&mut r, "an Upload body prefix of 64 KiB + 1");
    // A file list over 16 MiB.
    let mut r = Raw::connect(&ctx.addr());
    r.send_header(&json!({"HostName": "hostile-3", "PortNumber": 0, "Action": 4}));
    r.write(&((16u32 << 20) + 1).to_be_bytes());
    assert_closed(&mut r, "an Add body prefix of 16 MiB + 1");
    // A manifest body longer than 32 bytes per chunk (4 chunks: 128 bytes).
    let mut r = ctx.peer(4);
    let digest = "ab".repeat(32);
    r.send_header(&peer_header("hostile-4", 11, json!([{"FileName": "m", "Size": 200_000, "Digest": digest}])));
    r.send_frame(&[0u8; 129]);
    assert_closed(&mut r, "a Manifest body of 129 bytes for 4 chunks");
    // A refused header that announces a body still has its body limit enforced.
    let mut r = ctx.peer(5);
    r.send_header(&peer_header("hostile-5", 8, json!([{"FileName": "../x", "chunks": [10, 0]}])));
    assert_code(&r.read_reply("Upload naming ../x"), 6, "Upload naming ../x");
    r.write(&(65_537u32).to_be_bytes());
    assert_closed(&mut r, "the body of a refused Upload over 64 KiB");
    ctx.assert_healthy("oversized bodies");
}

#[test]
fn not_json_is_a_bad_request() {
    let ctx = Ctx::new("notjson");
    let mut r = Raw::connect(&ctx.addr());
    for frame in [
        &b"not json"[..],
        b"",
        b"{",
        b"[1,2,3]",
        b"null",
        b"\"Action\"",
        br#"{"Action":3,}"#,
        b"\xff\xfe\x00\x01",
        br#"{"Action":3}{"Action":3}"#,
    ] {
        expect_bad(&mut r, frame, &format!("header {:?}", String::from_utf8_lossy(frame)));
    }
    ctx.assert_healthy("headers that are not JSON");
}

#[test]
fn wrong_json_types_are_bad_requests() {
    let ctx = Ctx::new("types");
    let mut r = ctx.peer(1);
    for h in [
        json!({"Action": "three"}),
        json!({"Action": 3.5}),
        json!({"Action": [3]}),
        json!({"Action": null, "Code": "zero"}),
        json!({"HostName": 7, "PortNumber": 1, "Action": 3}),
        json!({"HostName": "h", "PortNumber": "port", "Action": 3}),
        json!({"HostName": "h", "PortNumber": -1, "Action": 3}),
        json!({"HostName": "h", "PortNumber": 65_536, "Action": 3}),
        json!({"HostName": "", "PortNumber": 1, "Action": 3}),
        json!({"HostName": "a\u{1}b", "PortNumber": 1, "Action": 3}),
        json!({"Action": 7, "Files": "served.bin"}),
        json!({"Action": 7, "Files": {"FileName": "served.bin"}}),
        json!({"Action": 7, "Files": [{"FileName": 5, "chunks": [200_000, 0]}]}),
        json!({"Action": 7, "Files": [{"FileName": "served.bin", "chunks": "zero"}]}),
        json!({"Action": 7, "Files": [{"FileName": "served.bin", "chunks": [200_000]}]}),
        json!({"Action": 7, "Files": [{"FileName": "served.bin", "chunks": [200_000, 0, 1]}]}),
        json!({"Action": 7, "Files": [{"FileName": "served.bin", "chunks": ["200000", 0]}]}),
        json!({"Action": 7, "Files": [{"FileName": "served.bin", "chunks": [200_000.5, 0]}]}),
        json!({"Action": 7, "Files": [{"FileName": "served.bin", "chunks": [200_000, 0]}, {"FileName": "served.bin", "chunks": [200_000, 1]}]}),
        json!({"Action": 9, "Files": [{"FileName": "served.bin", "Digest": 12, "chunks": [200_000, 0]}]}),
        json!({"Action": 9, "Files": [{"FileName": "served.bin", "Digest": "xyz", "chunks": [200_000, 0]}]}),
        json!({"Action": 10, "Files": []}),
        json!({"Action": 2, "Files": [{"FileName": 3}]}),
        json!({"Action": 3, "Token": 42}),
    ] {
        expect_bad_json(&mut r, &h, "wrong JSON types");
    }
    // File lists: the header is fine, the body is not.
    for body in [
        json!({"Files": "none"}),
        json!({"Files": [{"FileName": "a", "Size": "10", "Digest": "ab".repeat(32)}]}),
        json!({"Files": [{"FileName": "a", "Size": -10, "Digest": "ab".repeat(32)}]}),
        json!({"Files": [{"FileName": "a", "Size": 10}]}),
        json!({"Files": [{"FileName": "a", "Size": 10, "Digest": "ab".repeat(32), "chunks": [0.5]}]}),
        json!({"files": []}),
    ] {
        r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": 6}));
        r.send_frame(body.to_string().as_bytes());
        assert_code(&r.read_reply(&format!("Files body {body}")), 6, &format!("Files body {body}"));
        r.query();
    }
    // A reply announcing a body, refused: its body is skipped, not read as a header.
    for header in
        [json!({"Code": 0, "Body": "status", "Files": [{"FileName": "../x"}]}), json!({"Code": 0, "Body": "other"})]
    {
        r.send_header(&header);
        r.send_frame(
            br#"{"numFiles":0,"files":[],"local":[],"system":[],"leastReplication":[],"weightedLeastReplication":[]}"#,
        );
        assert_code(&r.read_reply(&format!("{header}")), 6, &format!("reply header {header}"));
        let q = r.query();
        assert!(q.get("numFiles").is_some(), "after {header} + body, Query got {q}: the body was read as a header");
    }
    ctx.assert_healthy("wrong JSON types");
}

#[test]
fn unknown_actions_are_bad_requests() {
    let ctx = Ctx::new("actions");
    let mut r = ctx.peer(1);
    for a in [90i64, 91, 99, 255, 256, -1, i64::from(i32::MAX), i64::MAX] {
        expect_bad_json(&mut r, &json!({"HostName": "hostile-1", "PortNumber": 0, "Action": a}), "unknown Action");
    }
    expect_bad_json(&mut r, &json!({"HostName": "hostile-1", "PortNumber": 0}), "neither Action nor Code");
    ctx.assert_healthy("unknown actions");
}

fn bad_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "..",
        "../x",
        "../sentinel/keep.txt",
        "a/../../sentinel/keep.txt",
        "./x",
        "a/./b",
        "/etc/passwd",
        "/tmp/x",
        "a\\b",
        "..\\..\\x",
        "a\0b",
        "\0",
        "a\nb",
        "a\rb",
        "a\u{1b}b",
        "a\u{7f}b",
        "a//b",
        "a/",
        "/",
        "",
        ".torronto/token",
        ".torronto",
        ".torronto/partial/x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("x".repeat(256));
    v.push(["y"; 600].join("/"));
    v.push(format!("{}/{}", "d".repeat(200), "e".repeat(900)));
    v
}

#[test]
fn bad_file_names_are_bad_requests_in_every_message() {
    let ctx = Ctx::new("names");
    let mut r = ctx.peer(1);
    let digest = "ab".repeat(32);
    for name in bad_names() {
        let what = format!("FileName {name:?}");
        expect_bad_json(&mut r, &peer_header("hostile-1", 7, json!([{"FileName": name, "chunks": [10, 0]}])), &what);
        expect_bad_json(&mut r, &peer_header("hostile-1", 10, json!([{"FileName": name}])), &what);
        expect_bad_json(
            &mut r,
            &peer_header("hostile-1", 9, json!([{"FileName": name, "Digest": digest, "chunks": [10, 0]}])),
            &what,
        );
        expect_bad_json(&mut r, &json!({"Action": 3, "Files": [{"FileName": name}]}), &what);
        expect_bad_json(&mut r, &peer_header("hostile-1", 7, json!([{"file": name, "chunks": [10, 0]}])), &what);
        // Upload and Manifest: refused, and their body is skipped.
        r.send_header(&peer_header("hostile-1", 8, json!([{"FileName": name, "chunks": [10, 0]}])));
        r.send_frame(b"0123456789");
        assert_code(&r.read_reply(&what), 6, &format!("Upload with {what}"));
        r.send_header(&peer_header("hostile-1", 11, json!([{"FileName": name, "Size": 10, "Digest": digest}])));
        r.send_frame(&[0u8; 32]);
        assert_code(&r.read_reply(&what), 6, &format!("Manifest with {what}"));
        // File lists.
        for action in [6, 4] {
            r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": action}));
            r.send_frame(
                json!({"Files": [{"FileName": name, "Size": 10, "Digest": digest, "chunks": [0]}]})
                    .to_string()
                    .as_bytes(),
            );
            assert_code(&r.read_reply(&what), 6, &format!("Action {action} list with {what}"));
        }
        r.query();
    }
    // Insert (a control action) of a path whose base name is not a valid FileName.
    let mut c = Raw::connect(&ctx.addr());
    for path in ["/", "/tmp/..", "/tmp/.", "relative/.."] {
        c.expect_code(&json!({"Action": 2, "Files": [{"FileName": path}]}), 6, &format!("Insert {path:?}"));
    }
    ctx.assert_healthy("bad file names");
}

#[test]
fn chunk_numbers_out_of_range_are_bad_requests() {
    let ctx = Ctx::new("chunks");
    let mut r = ctx.peer(1);
    let over = 32u64 << 30;
    for chunks in [
        json!([SERVED_SIZE, -1]),
        json!([SERVED_SIZE, 4]),
        json!([SERVED_SIZE, 5]),
        json!([SERVED_SIZE, 1u64 << 32]),
        json!([SERVED_SIZE, u64::MAX]),
        json!([0, 0]),
        json!([-1, 0]),
        json!([over + 1, 0]),
        json!([u64::MAX, 0]),
        json!("[200000, 4]"),
        json!("[200000, -4]"),
    ] {
        let what = format!("chunks {chunks}");
        expect_bad_json(&mut r, &peer_header("hostile-1", 7, json!([{"FileName": SERVED, "chunks": chunks}])), &what);
        expect_bad_json(
            &mut r,
            &peer_header("hostile-1", 9, json!([{"FileName": SERVED, "Digest": "ab".repeat(32), "chunks": chunks}])),
            &what,
        );
    }
    // In file lists too: a held chunk past the end.
    for chunks in [json!([4]), json!([-1]), json!([0, 1, 2, 3, 4]), json!([1u64 << 32])] {
        r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": 6}));
        let body =
            json!({"Files": [{"FileName": "z", "Size": SERVED_SIZE, "Digest": "ab".repeat(32), "chunks": chunks}]});
        r.send_frame(body.to_string().as_bytes());
        assert_code(&r.read_reply("Files"), 6, &format!("Files entry with chunks {chunks}"));
    }
    ctx.assert_healthy("chunk numbers out of range");
}

#[test]
fn sizes_that_disagree_with_the_manifest() {
    let ctx = Ctx::new("sizes");
    let mut r = ctx.peer(1);
    let digest = "ab".repeat(32);
    // A Manifest body shorter than its Size needs (4 chunks: 128 bytes): ErrBadRequest.
    r.send_header(&peer_header("hostile-1", 11, json!([{"FileName": "m", "Size": SERVED_SIZE, "Digest": digest}])));
    r.send_frame(&[0u8; 96]);
    assert_code(&r.read_reply("short Manifest"), 6, "a 96-byte Manifest body for a 4-chunk file");
    // An Upload body shorter than its chunk: ErrBadRequest.
    r.send_header(&peer_header("hostile-1", 8, json!([{"FileName": SERVED, "chunks": [SERVED_SIZE, 3]}])));
    r.send_frame(&[0u8; 100]);
    assert_code(&r.read_reply("short Upload"), 6, "a 100-byte Upload of a 3,392-byte chunk");
    // A file-list entry whose chunks exceed its own size.
    r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": 6}));
    r.send_frame(
        json!({"Files": [{"FileName": "z", "Size": 1, "Digest": digest, "chunks": [0, 1]}]}).to_string().as_bytes(),
    );
    assert_code(&r.read_reply("Files"), 6, "a 1-byte file listing chunk 1");
    // A Download naming the served file with another size is not held (ErrFileMissing,
    // per the protocol: the node holds no file of that size), never served.
    for size in [SERVED_SIZE - 1, SERVED_SIZE + 1, 65_536] {
        let reply = r.expect_code(
            &peer_header("hostile-1", 7, json!([{"FileName": SERVED, "chunks": [size, 0]}])),
            4,
            &format!("Download of {SERVED} as a {size}-byte file"),
        );
        assert_eq!(reply["Files"][0]["chunks"], json!([size, 0]), "the refusal names the chunk asked: {reply}");
    }
    // Announcements contradicting the known size or digest are ignored, not adopted.
    let before = r.query();
    r.send_header(&peer_header(
        "hostile-1",
        9,
        json!([{"FileName": SERVED, "Digest": digest, "chunks": [SERVED_SIZE, 0]}]),
    ));
    r.send_header(&peer_header("hostile-1", 9, json!([{"FileName": SERVED, "chunks": [1_000_000, 7]}])));
    r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": 6}));
    r.send_frame(
        json!({"Files": [{"FileName": SERVED, "Size": 5, "Digest": digest, "chunks": [0]}]}).to_string().as_bytes(),
    );
    r.send_header(&peer_header("hostile-1", 11, json!([{"FileName": SERVED, "Size": 10, "Digest": digest}])));
    r.send_frame(&[0u8; 32]);
    let after = r.query();
    for key in ["files", "sizes", "digests", "local", "leastReplication", "weightedLeastReplication"] {
        assert_eq!(before[key], after[key], "contradicting announcements changed {key}: {before} -> {after}");
    }
    ctx.assert_healthy("sizes that disagree");
}

#[test]
fn short_body_then_hang_is_closed_by_the_timeout() {
    let ctx = Ctx::new("hang");
    let mut r = Raw::connect(&ctx.addr());
    // A header announcing 1,000 bytes, then only 10, then silence.
    r.write(&1000u32.to_be_bytes());
    r.write(b"{\"Action\":");
    let start = Instant::now();
    // While that connection hangs, the node serves everyone else.
    ctx.assert_healthy("while one connection hangs mid-frame");
    let mut r2 = ctx.peer(2);
    r2.send_header(&peer_header("hostile-2", 8, json!([{"FileName": SERVED, "chunks": [SERVED_SIZE, 0]}])));
    r2.write(&65_536u32.to_be_bytes());
    r2.write(&[0u8; 1000]);
    match r.wait_closed(Duration::from_secs(20)) {
        Ok(c) => {
            let total = start.elapsed();
            println!("hung header closed after {total:?}");
            assert!(total >= Duration::from_secs(8), "closed after {total:?}: sooner than the 10 s body timeout");
            assert!(total <= Duration::from_secs(14), "closed after {total:?}: the 10 s body timeout was not applied");
            let _ = c;
        }
        Err(e) => panic!("a connection hanging mid-frame must be closed by the 10 s timeout: {e}"),
    }
    let c = r2.wait_closed(Duration::from_secs(10)).unwrap_or_else(|e| panic!("hung Upload body: {e}"));
    println!("hung Upload body closed {:?} after the header one", c.after);
    ctx.assert_healthy("connections hanging mid-frame");
}

#[test]
fn a_flood_of_connections_is_bounded_and_the_node_still_serves() {
    let ctx = Ctx::new("flood");
    let pid = ctx.node.pid().expect("running");
    let rss_before = rss_kib(pid).expect("RSS");
    let start = Instant::now();
    let mut idle: Vec<std::net::TcpStream> = Vec::new();
    for i in 0..300 {
        idle.push(
            std::net::TcpStream::connect(ctx.addr()).unwrap_or_else(|e| panic!("idle connection {i} failed: {e}")),
        );
    }
    // Half of them start a frame and stop.
    for s in idle.iter_mut().step_by(2) {
        use std::io::Write;
        let _ = s.write_all(&100u32.to_be_bytes());
    }
    println!("opened 300 idle connections in {:?}", start.elapsed());
    ctx.assert_healthy("300 idle connections are open");
    let rss_idle = rss_kib(pid).expect("RSS");
    let per_conn = rss_idle.saturating_sub(rss_before) / 300;
    println!("node RSS {rss_before} KiB before, {rss_idle} KiB with 300 idle connections ({per_conn} KiB each)");
    // Past the node's limit of 1,024 connections it refuses at accept, and recovers.
    let mut more = Vec::new();
    for _ in 0..800 {
        match std::net::TcpStream::connect_timeout(&ctx.addr().parse().unwrap(), Duration::from_secs(2)) {
            Ok(s) => more.push(s),
            Err(_) => break,
        }
    }
    // Connections are capped (1,024) and each costs little, so memory stays bounded.
    let peak = Instant::now();
    let mut rss_peak = rss_kib(pid).expect("RSS");
    wait_until(Duration::from_secs(10), "the node has accepted the flood", || {
        let now = rss_kib(pid).expect("RSS");
        let grew = now > rss_peak;
        rss_peak = rss_peak.max(now);
        !grew && peak.elapsed() > Duration::from_millis(500)
    });
    println!("opened {} more connections; node RSS {rss_peak} KiB", more.len());
    assert!(
        rss_peak < 64 * 1024,
        "with 1,100 connections attempted the node uses {rss_peak} KiB, over the 64 MiB a node may use"
    );
    drop(more);
    drop(idle);
    ctx.assert_healthy("a flood of 1,100 connections was dropped");
}

#[test]
fn nothing_outside_dir_is_touched_because_of_a_message() {
    let ctx = Ctx::new("outside");
    let mut r = ctx.peer(1);
    let keep = ctx.sentinel.join("keep.txt");
    let (_, digest) = torronto_tests::raw::manifest_of(b"must stay exactly this");
    for name in ["../sentinel/keep.txt", "../sentinel/new.txt", "../../x", "/etc/passwd", &keep.display().to_string()] {
        let what = format!("{name:?}");
        expect_bad_json(&mut r, &peer_header("hostile-1", 7, json!([{"FileName": name, "chunks": [22, 0]}])), &what);
        expect_bad_json(&mut r, &peer_header("hostile-1", 10, json!([{"FileName": name}])), &what);
        r.send_header(&peer_header("hostile-1", 8, json!([{"FileName": name, "chunks": [22, 0]}])));
        r.send_frame(b"must stay exactly THIS");
        assert_code(&r.read_reply(&what), 6, &format!("Upload to {what}"));
        r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": 6}));
        r.send_frame(
            json!({"Files": [{"FileName": name, "Size": 22, "Digest": digest, "chunks": [0]}]}).to_string().as_bytes(),
        );
        assert_code(&r.read_reply(&what), 6, &format!("Files announcing {what}"));
    }
    // A valid name inside DIR is fine to announce; the node then asks for its manifest,
    // and nothing is written until a manifest that matches the digest arrives.
    r.send_header(&json!({"HostName": "hostile-1", "PortNumber": 0, "Action": 6}));
    r.send_frame(
        json!({"Files": [{"FileName": "sub/inside.txt", "Size": 22, "Digest": digest, "chunks": [0]}]})
            .to_string()
            .as_bytes(),
    );
    let (h, _) = r.read_until("GetManifest for sub/inside.txt", |h| h["Action"] == 10);
    assert_eq!(h["Files"][0]["FileName"], "sub/inside.txt");
    // Control Insert of the node's own state: refused, nothing copied.
    let token = ctx.node.dir().join(".torronto/token");
    let mut c = Raw::connect(&ctx.addr());
    c.expect_code(
        &json!({"Action": 2, "Files": [{"FileName": token.display().to_string()}]}),
        5,
        "Insert of the token",
    );
    c.expect_code(
        &json!({"Action": 2, "Files": [{"FileName": ctx.node.dir().join(".torronto/../.torronto/token").display().to_string()}]}),
        5,
        "Insert of the token through ..",
    );
    assert!(tree(&ctx.node.dir()).iter().all(|(p, _)| p != "token"), "the token was copied into DIR");
    ctx.assert_healthy("messages naming paths outside DIR");
    assert_eq!(fs::read(&keep).unwrap(), b"must stay exactly this");
}
