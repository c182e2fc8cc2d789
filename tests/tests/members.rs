//! A member cannot hurt the network (issue 11): peers that lie about what they hold or
//! never deliver what they claim are played by raw connections (tests/src/raw.rs)
//! against real nodes; the leave guarantee holds and fetching goes on at full speed.

use std::fs;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torronto_tests::raw::{full_entry, manifest_of, Raw};
use torronto_tests::sys::rss_kib;
use torronto_tests::{random_bytes, sha256_hex, TestNode, CHUNK};

fn action(h: &Value) -> Option<i64> {
    h.get("Action").and_then(Value::as_i64)
}

/// What a peer received while the node left: the chunks pushed to it, each checked
/// against the file's bytes.
fn take_pushes(mut raw: Raw, bytes: Vec<u8>, host: &'static str, confirm: bool) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        raw.set_read_timeout(Duration::from_secs(60));
        let mut pushed = 0;
        while let Ok((h, body)) = raw.read_message() {
            if action(&h) != Some(8) {
                continue;
            }
            let chunk = h["Files"][0].clone();
            let i = chunk["chunks"][1].as_u64().expect("chunk number") as usize;
            let at = i * CHUNK as usize;
            let want = &bytes[at..(at + CHUNK as usize).min(bytes.len())];
            assert!(body.as_deref() == Some(want), "pushed chunk {i} is not the file's");
            pushed += 1;
            if confirm {
                let (_, digest) = manifest_of(&bytes);
                let have = json!({"HostName": host, "PortNumber": 0, "Action": 9,
                    "Files": [{"FileName": chunk["FileName"], "Digest": digest, "chunks": chunk["chunks"]}]});
                if !raw.send_frame(have.to_string().as_bytes()) {
                    break;
                }
            }
        }
        pushed
    })
}

/// Leaves `node` over a control connection and returns the reply.
fn leave(node: &TestNode) -> (Value, Duration) {
    let mut c = Raw::connect(&node.addr());
    c.set_read_timeout(Duration::from_secs(90));
    let start = Instant::now();
    let reply = c.expect_code(&json!({"Action": 1}), 0, "Leave");
    (reply, start.elapsed())
}

/// A node holding one 4-chunk file it inserted, joined, and that file's bytes.
fn owner(label: &str, name: &str) -> (TestNode, Vec<u8>, tempfile::TempDir) {
    let node = TestNode::start_alone(label);
    node.join();
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(200_000, 11);
    fs::write(src.path().join(name), &bytes).unwrap();
    node.insert(&src.path().join(name)).ok("insert");
    (node, bytes, src)
}

#[test]
fn claiming_chunks_never_received_does_not_let_the_owner_leave_as_if_safe() {
    let name = "only-here.bin";
    let (node, bytes, _src) = owner("claims", name);
    // The liar claims every chunk (its Add lists them) but never received any.
    let mut liar = Raw::connect(&node.addr());
    liar.introduce("liar", 0, json!([full_entry(name, &bytes)]));
    let pushes = take_pushes(liar, bytes.clone(), "liar", false);
    let (reply, took) = leave(&node);
    let pushed = pushes.join().unwrap();
    println!("leave with a liar claiming every chunk: {reply} after {took:?}; {pushed} chunks pushed to it");
    assert_eq!(pushed, 4, "the owner must push every chunk only it has proven held, claims or not");
    assert_eq!(
        reply.get("Unconfirmed").and_then(Value::as_u64),
        Some(4),
        "no chunk was proven held elsewhere, so Leave must not answer a plain OK: {reply}"
    );
}

#[test]
fn a_push_confirmed_after_it_was_sent_makes_leave_safe() {
    let name = "handed-over.bin";
    let (node, bytes, _src) = owner("confirmed", name);
    let mut peer = Raw::connect(&node.addr());
    peer.introduce("keeper", 0, json!([full_entry(name, &bytes)]));
    let pushes = take_pushes(peer, bytes.clone(), "keeper", true);
    let (reply, took) = leave(&node);
    let pushed = pushes.join().unwrap();
    println!("leave with a peer confirming each push: {reply} after {took:?}; {pushed} chunks pushed");
    assert_eq!(pushed, 4, "every chunk is handed over, though the peer claimed it");
    assert!(reply.get("Unconfirmed").is_none(), "every push was confirmed: {reply}");
    assert!(took < Duration::from_secs(10), "confirmed pushes end Leave at once, not at its timeout: {took:?}");
}

#[test]
fn a_node_that_fetched_from_the_owner_has_proven_its_chunks() {
    let name = "fetched.bin";
    let (owner, bytes, _src) = owner("served", name);
    let mut fetcher = TestNode::new("fetcher");
    fetcher.set_peers(&[owner.addr()]);
    fetcher.start();
    fetcher.join();
    torronto_tests::wait_until(Duration::from_secs(20), "the fetcher holds the file", || {
        fetcher.holds(name, bytes.len() as u64, &sha256_hex(&bytes))
    });
    let (reply, took) = leave(&owner);
    println!("leave after a peer fetched everything: {reply} after {took:?}");
    assert!(reply.get("Unconfirmed").is_none(), "the fetcher announced chunks it was served: {reply}");
    assert!(took < Duration::from_secs(5), "nothing needed pushing: {took:?}");
}

/// Peers `liar-0`… claiming every chunk of a file: they answer GetManifest truly and
/// never answer Download. They run until `stop` is set.
fn silent_claimers(
    node: &TestNode,
    n: usize,
    name: &'static str,
    bytes: &[u8],
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<u64>> {
    let (manifest, digest) = manifest_of(bytes);
    let size = bytes.len();
    (0..n)
        .map(|k| {
            let host = format!("liar-{k}");
            let mut raw = Raw::connect(&node.addr());
            raw.introduce(&host, 0, json!([full_entry(name, bytes)]));
            let (manifest, digest, stop) = (manifest.clone(), digest.clone(), stop.clone());
            thread::spawn(move || {
                raw.set_read_timeout(Duration::from_millis(200));
                let mut downloads_ignored = 0;
                while !stop.load(Ordering::Relaxed) {
                    let h = match raw.read_message() {
                        Ok((h, _)) => h,
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                        Err(_) => break,
                    };
                    match action(&h) {
                        Some(10) => {
                            let answer = json!({"HostName": host, "PortNumber": 0, "Action": 11,
                                "Files": [{"FileName": name, "Size": size, "Digest": digest}]});
                            if !raw.send_frame(answer.to_string().as_bytes()) || !raw.send_frame(&manifest) {
                                break;
                            }
                        }
                        Some(7) => downloads_ignored += 1,
                        _ => {}
                    }
                }
                downloads_ignored
            })
        })
        .collect()
}

#[test]
fn claims_that_never_deliver_do_not_hold_up_a_download() {
    const SIZE: usize = 64 << 20;
    let name = "claimed-everywhere.bin";
    let bytes = random_bytes(SIZE, 21);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join(name), &bytes).unwrap();
    let victim = TestNode::start_alone("victim");
    victim.join();
    let stop = Arc::new(AtomicBool::new(false));
    let liars = silent_claimers(&victim, 40, name, &bytes, &stop);
    // The liars have the victim's manifest request and chunk requests before an honest
    // holder shows up.
    thread::sleep(Duration::from_secs(1));
    let mut honest = TestNode::new("holder");
    honest.set_peers(&[victim.addr()]);
    honest.start();
    honest.insert(&src.path().join(name)).ok("insert on the holder");
    let start = Instant::now();
    honest.join();
    let sha = sha256_hex(&bytes);
    let done = (|| {
        while start.elapsed() < Duration::from_secs(60) {
            if victim.holds(name, SIZE as u64, &sha) {
                return Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(100));
        }
        None
    })();
    stop.store(true, Ordering::Relaxed);
    let ignored: u64 = liars.into_iter().map(|l| l.join().unwrap()).sum();
    println!(
        "64 MiB with 40 peers claiming every chunk and never delivering: {done:?}; {ignored} Downloads sent to them"
    );
    let took = done.expect("the victim never completed the file within 60 s");
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}: claims that never deliver held the download up (the request timeout is 30 s)"
    );
}

/// Query on a fresh connection: its answer and how long it took.
fn timed_query(node: &TestNode) -> (Value, Duration) {
    let mut q = Raw::connect(&node.addr());
    q.set_read_timeout(Duration::from_secs(30));
    let start = Instant::now();
    let status = q.query();
    (status, start.elapsed())
}

#[test]
fn a_peer_announcing_ten_thousand_huge_files_stays_cheap() {
    const HUGE: u64 = 32 << 30;
    let node = TestNode::start_alone("announced");
    node.join();
    let pid = node.pid().expect("running");
    let rss_before = rss_kib(pid).expect("RSS");
    // One Add: 10,000 files of 32 GiB, each claiming its first and last chunk.
    let last = HUGE / CHUNK - 1;
    let files: Vec<Value> = (0..10_000)
        .map(|k| {
            json!({"FileName": format!("huge-{k:05}.iso"), "Size": HUGE,
                "Digest": format!("{k:064x}"), "chunks": [0, last]})
        })
        .collect();
    let mut attacker = Raw::connect(&node.addr());
    let start = Instant::now();
    attacker.introduce("hoarder", 0, Value::Array(files));
    let took_add = start.elapsed();
    let (status, took_query) = timed_query(&node);
    let rss = rss_kib(pid).expect("RSS");
    let listed = status["numFiles"].as_u64().unwrap_or(0);
    println!(
        "Add of 10,000 × 32 GiB files: answered in {took_add:?}; {listed} tracked; Query {took_query:?}; \
         RSS {rss_before} KiB before, {rss} KiB after"
    );
    assert!(listed <= 32, "one peer may make us track at most 1 TiB of files, not {listed} of 32 GiB: {status}");
    assert!(took_query < Duration::from_millis(500), "Query took {took_query:?}");
    assert!(rss < rss_before + 64 * 1024, "RSS grew from {rss_before} to {rss} KiB");
    assert!(node.log().contains("ignored 9968 files announced by hoarder:0"), "the refusal is logged");
}

#[test]
fn manifest_requests_never_read_do_not_fill_memory() {
    const SIZE: usize = 128 << 20;
    let name = "big-manifest.bin";
    let node = TestNode::start_alone("manifests");
    node.join();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join(name), random_bytes(SIZE, 31)).unwrap();
    node.insert(&src.path().join(name)).ok("insert");
    let pid = node.pid().expect("running");
    let rss_before = rss_kib(pid).expect("RSS");
    // 5,000 GetManifest (each answer 64 KiB), and not one answer read.
    let mut greedy = Raw::connect(&node.addr());
    greedy.introduce("greedy", 0, json!([]));
    let ask = json!({"HostName": "greedy", "PortNumber": 0, "Action": 10, "Files": [{"FileName": name}]});
    let mut sent = 0;
    for _ in 0..5_000 {
        if !greedy.send_frame(ask.to_string().as_bytes()) {
            break;
        }
        sent += 1;
    }
    thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(pid).expect("RSS");
    let (_, took_query) = timed_query(&node);
    let closed = greedy.wait_closed(Duration::from_secs(10));
    println!(
        "{sent} GetManifest never read: RSS {rss_before} KiB before, {rss} KiB after; Query {took_query:?}; \
         connection closed: {}",
        closed.is_ok()
    );
    assert!(rss < rss_before + 64 * 1024, "answers nobody reads made the node grow from {rss_before} to {rss} KiB");
    assert!(closed.is_ok(), "a peer that never reads its answers must be closed");
}

#[test]
fn manifests_nobody_asked_for_are_not_taken() {
    // The attack of issue 11: Manifests of huge files pushed at a node that never heard
    // of them (a real leaver pushes only files it announced). Each was kept in memory,
    // its state written, and room prepared for a file nobody offered.
    const FILES: usize = 20;
    const SIZE: u64 = 1 << 30;
    let node = TestNode::start_alone("unsolicited");
    node.join();
    let mut pusher = Raw::connect(&node.addr());
    pusher.introduce("pusher", 0, json!([]));
    let chunks = (SIZE / CHUNK) as usize;
    for k in 0..FILES {
        let body: Vec<u8> = random_bytes(chunks * 32, 100 + k as u64);
        let header = json!({"HostName": "pusher", "PortNumber": 0, "Action": 11,
            "Files": [{"FileName": format!("pushed-{k}.iso"), "Size": SIZE, "Digest": sha256_hex(&body)}]});
        assert!(pusher.send_frame(header.to_string().as_bytes()) && pusher.send_frame(&body), "node closed");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.log().matches("ignored the manifest of").count() < FILES && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = timed_query(&node);
    let state = node.dir().join(".torronto/files");
    let kept = fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
    println!("{FILES} unsolicited 1 GiB manifests: {} files tracked, {kept} state files", status["numFiles"]);
    assert_eq!(status["numFiles"].as_u64(), Some(0), "no pushed file may be tracked: {status}");
    assert_eq!(kept, 0, "nothing written under {}", state.display());
    assert_eq!(node.log().matches("ignored the manifest of").count(), FILES, "each refusal is logged");

    // The same manifest after the file was announced is taken: that is how a leaving
    // peer hands over what only it holds.
    let bytes = random_bytes(200_000, 7);
    let (body, digest) = manifest_of(&bytes);
    let mut leaver = Raw::connect(&node.addr());
    leaver.introduce("leaver", 0, json!([full_entry("offered.bin", &bytes)]));
    let header = json!({"HostName": "leaver", "PortNumber": 0, "Action": 11,
        "Files": [{"FileName": "offered.bin", "Size": bytes.len(), "Digest": digest}]});
    assert!(leaver.send_frame(header.to_string().as_bytes()) && leaver.send_frame(&body), "node closed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = timed_query(&node);
        if status["numFiles"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the announced file's manifest was not taken: {status}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The soft limit on open files of this process (the node inherits it).
fn open_files_limit() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

#[test]
fn idle_connections_neither_lock_the_owner_out_nor_stay_open() {
    const IDLE: usize = 1_030;
    let limit = open_files_limit();
    assert!(
        limit > 2 * IDLE as u64,
        "raise the open-files limit (ulimit -n) above {} for this test: {limit}",
        2 * IDLE
    );
    let node = TestNode::start_alone("idle");
    node.join();
    // A peer that introduced itself stays however quiet it is.
    let mut quiet_peer = Raw::connect(&node.addr());
    quiet_peer.introduce("quiet", 0, json!([]));
    // More connections than the node has slots, all from loopback (the owner's address
    // too), none saying a word.
    let start = Instant::now();
    let mut idle: Vec<std::net::TcpStream> = (0..IDLE)
        .map(|i| std::net::TcpStream::connect(node.addr()).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // The owner's CLI is answered at once: idle connections make room for it.
    let asked = Instant::now();
    let status = node.query();
    let took = asked.elapsed();
    println!("{IDLE} idle connections opened in {:?}; torronto query answered in {took:?}", asked - start);
    assert!(took < Duration::from_secs(3), "query took {took:?}");
    assert!(status["peers"].to_string().contains("quiet:0"), "the introduced peer stays: {status}");
    // Every idle connection is closed within the introduction timeout (10 s) of being
    // accepted, and the last was accepted before the query.
    let deadline = asked + Duration::from_secs(13);
    let mut still_open = 0;
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 64];
        match std::io::Read::read(s, &mut buf) {
            Ok(0) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {}
            Ok(n) => panic!("an idle connection was sent {n} bytes"),
            Err(_) => still_open += 1,
        }
    }
    println!("all idle connections closed after {:?} ({still_open} still open)", start.elapsed());
    assert_eq!(still_open, 0, "idle connections that never introduced themselves must be closed");
    assert!(node.query()["peers"].to_string().contains("quiet:0"), "the quiet peer is still connected");
    drop(quiet_peer);
}

#[test]
fn fake_identities_that_vanish_are_not_redialled() {
    const FAKES: usize = 50;
    let node = TestNode::start_alone("redial");
    node.join();
    // Each fake names a port listened on here, so every dial the node makes is counted.
    let listeners: Vec<std::net::TcpListener> =
        (0..FAKES).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let mut fake = Raw::connect(&node.addr());
        fake.introduce("127.0.0.1", port, json!([]));
    }
    // They all vanished (each Raw dropped); a node redialling them starts within a second.
    // Only dials from this node count: the ports are ephemeral, and another test's node
    // may be dialling a port one of them had before (its Add names where it listens).
    let from_node = format!("\"PortNumber\":{}", node.port());
    let start = Instant::now();
    let mut dials = 0;
    while start.elapsed() < Duration::from_secs(8) {
        for l in &listeners {
            while let Ok((mut dial, _)) = l.accept() {
                dial.set_nonblocking(false).unwrap();
                dial.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut first = vec![0u8; 4096];
                let n = std::io::Read::read(&mut dial, &mut first).unwrap_or(0);
                if String::from_utf8_lossy(&first[..n]).contains(&from_node) {
                    dials += 1;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    println!("{FAKES} fake identities that registered and vanished: dialled {dials} times in 8 s");
    assert_eq!(dials, 0, "addresses that proved nothing are not dialled back");
    let status = node.query();
    assert_eq!(status["peers"], json!([]), "{status}");
}
