//! Bandwidth limits measured over real transfers between nodes on loopback: an upload
//! limit holds and changes at run time (`torronto limit`), a download limit set in the
//! config file holds, and a limited seeder shares its rate fairly between two nodes
//! and a greedy peer with hundreds of requests outstanding.
//!
//! The promise is "within 10 % over a window, plus one chunk of burst"; the bounds
//! below add the few milliseconds a Query takes to the window, and are generous below
//! the limit (a busy machine may be slower, never faster).

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use torronto_tests::raw::{assert_code, peer_header, Raw};
use torronto_tests::{file_status, number, random_file, wait_until, TestNode, CHUNK};

const MIB: f64 = 1024.0 * 1024.0;
const FILE_SIZE: usize = 24 << 20;

/// Bytes a counter of `node`'s status grew over a window of about `seconds`, and
/// the shortest and longest the window can have been (the Queries take time).
fn measure(node: &TestNode, key: &str, seconds: f64) -> (f64, f64, f64) {
    let before = Instant::now();
    let first = number(&node.query(), key);
    let after_first = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let before_last = Instant::now();
    let last = number(&node.query(), key);
    let after = Instant::now();
    let shortest = before_last.duration_since(after_first).as_secs_f64();
    let longest = after.duration_since(before).as_secs_f64();
    ((last - first) as f64, shortest, longest)
}

/// Panics unless `bytes` over the window fit `limit` (bytes per second): at most 10 %
/// over plus one chunk, and at least `floor` of it.
#[track_caller]
fn assert_rate(what: &str, (bytes, shortest, longest): (f64, f64, f64), limit: f64, floor: f64) {
    let most = limit * longest * 1.1 + CHUNK as f64;
    let least = limit * shortest * floor;
    assert!(
        bytes <= most && bytes >= least,
        "{what}: {:.2} MiB in {shortest:.2}-{longest:.2} s ({:.2} MiB/s) against a limit of {:.2} MiB/s \
         (allowed {:.2}-{:.2} MiB)",
        bytes / MIB,
        bytes / MIB / shortest,
        limit / MIB,
        least / MIB,
        most / MIB
    );
}

/// A seeder holding big.bin, joined, with `args`.
fn seeder(args: &[&str]) -> TestNode {
    torronto_tests::seeder_of_big_bin(args, FILE_SIZE)
}

/// A node that fetches from `seeder` only (its peers file names nothing else).
fn downloader(label: &str, seeder: &TestNode, args: &[&str]) -> TestNode {
    let mut node = TestNode::new(label);
    node.set_peers(&[seeder.addr()]);
    node.set_extra_args(args);
    node.start();
    node.join();
    node
}

/// Waits until `node` has fetched something of big.bin: the transfer is under way.
fn wait_fetching(node: &TestNode) {
    wait_until(Duration::from_secs(20), "the transfer to start", || {
        file_status(&node.query(), "big.bin").is_some_and(|f| f.local > 0.0)
    });
}

#[test]
fn an_upload_limit_holds_over_a_transfer_and_changes_while_it_runs() {
    let seeder = seeder(&["--upload-limit", "2MiB/s"]);
    let shown = seeder.cli(&["limit"]).ok("limit with no flag");
    assert!(shown.stdout.contains("upload limit:   2.0 MiB/s"), "{shown}");
    assert!(shown.stdout.contains("download limit: unlimited"), "{shown}");
    let fetcher = downloader("fetcher", &seeder, &[]);
    wait_fetching(&fetcher);
    assert_rate("served at 2 MiB/s", measure(&seeder, "bytesServed", 6.0), 2.0 * MIB, 0.5);
    // Unlimited, loopback would have sent the whole file in well under a second.
    assert!(number(&seeder.query(), "bytesServed") < FILE_SIZE as u64, "the whole file went out at once");

    // Lowered while the transfer runs: the chunks already waiting go at the new rate.
    let changed = seeder.cli(&["limit", "--upload-limit", "512KiB/s", "--json"]).ok("limit --upload-limit");
    let reply: serde_json::Value = serde_json::from_str(changed.stdout.trim()).expect("limit --json is JSON");
    assert_eq!((reply["UploadLimit"].as_u64(), reply["DownloadLimit"].as_u64()), (Some(512 << 10), Some(0)));
    std::thread::sleep(Duration::from_millis(500));
    assert_rate("served at 512 KiB/s", measure(&seeder, "bytesServed", 4.0), 512.0 * 1024.0, 0.4);
    // What the seeder sent is what arrived, verified.
    let fetched = number(&fetcher.query(), "bytesFetched");
    assert!(fetched > 10 << 20 && fetched < FILE_SIZE as u64, "fetched {fetched} bytes");

    // Bad input is refused with a clear error, and nothing changes.
    let bad = seeder.cli(&["limit", "--upload-limit", "fast"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("\"fast\" is not a rate"), "{bad}");
    // Like every control action, it needs the token.
    let mut stranger = Raw::anonymous(&seeder.addr());
    stranger.send_header(&json!({"Action": 14, "UploadLimit": 0}));
    assert_code(&stranger.read_reply("Limit without a token"), 5, "Limit without a token");
    assert!(seeder.cli(&["limits"]).ok("limits").stdout.contains("upload limit:   512.0 KiB/s"));

    // A link's rate, in bits as lines are sold: 4 Mbit/s is 500,000 bytes a second.
    let bits = seeder.cli(&["limit", "--upload-limit", "4Mbit/s", "--json"]).ok("limit --upload-limit 4Mbit/s");
    let reply: serde_json::Value = serde_json::from_str(bits.stdout.trim()).expect("limit --json is JSON");
    assert_eq!(reply["UploadLimit"].as_u64(), Some(500_000), "{bits}");
    assert!(seeder.cli(&["limits"]).ok("limits").stdout.contains("upload limit:   488.3 KiB/s"));
}

#[test]
fn a_download_limit_from_the_config_file_holds_over_a_transfer() {
    let seeder = seeder(&[]);
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("torronto.toml");
    fs::write(&config, "download-limit = \"2MiB/s\"\nupload_limit = \"1.5GiB/s\"\n").unwrap();
    let fetcher = downloader("fetcher", &seeder, &["--config", config.to_str().unwrap()]);
    let shown = fetcher.cli(&["limit"]).ok("limit with no flag");
    assert!(shown.stdout.contains("upload limit:   1.5 GiB/s\ndownload limit: 2.0 MiB/s"), "{shown}");
    wait_fetching(&fetcher);
    assert_rate("fetched at 2 MiB/s", measure(&fetcher, "bytesFetched", 5.0), 2.0 * MIB, 0.5);
    // A rate nobody could mean is refused before the node starts.
    let out = torronto_tests::cli(&["node", "--dir", root.path().to_str().unwrap(), "--download-limit=-3M"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("is not a rate"), "{out}");
}

#[test]
fn an_upload_limit_does_not_hold_back_the_nodes_own_requests() {
    // One connection (only `slow` dials): its requests to `fast` share the writer that
    // paces its uploads to `fast` at one chunk a second.
    let mut fast = TestNode::new("fast");
    fast.set_join_on_start(true);
    fast.start();
    let mut slow = TestNode::new("slow");
    slow.set_peers(&[fast.addr()]);
    slow.set_extra_args(&["--upload-limit", "64KiB"]);
    slow.start();
    let (wanted, given) = (fast.root().join("wanted.bin"), slow.root().join("given.bin"));
    random_file(&wanted, 8 << 20, 1);
    random_file(&given, 8 << 20, 2);
    fast.insert(&wanted).ok("insert on fast");
    slow.insert(&given).ok("insert on slow");
    slow.join();
    wait_until(Duration::from_secs(20), "slow to have wanted.bin", || {
        file_status(&slow.query(), "wanted.bin").is_some_and(|f| f.local == 1.0)
    });
    // Meanwhile its uploads kept to the limit.
    let served = number(&slow.query(), "bytesServed");
    assert!(served < 3 << 20, "slow served {served} bytes at 64 KiB/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_peer_on_the_websocket_endpoint_is_paced_too() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let ws = torronto_tests::free_port();
    let ws_addr = format!("127.0.0.1:{ws}");
    let seeder = tokio::task::block_in_place(|| seeder(&["--upload-limit", "1MiB/s", "--ws", &ws_addr]));
    let (mut session, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/ws")).await.expect("ws session");
    // As a browser peer: a header as text, a body as binary.
    let header = |v: serde_json::Value| WsMessage::Text(v.to_string().into());
    session.send(header(json!({"HostName": "browser-limits", "PortNumber": 0, "Action": 4}))).await.unwrap();
    session.send(WsMessage::Binary(json!({"Files": []}).to_string().into_bytes().into())).await.unwrap();
    // 200 chunks (12.5 MiB) asked at once, within the node's serving limit of 256.
    for i in 0..200 {
        let download = json!({"HostName": "browser-limits", "PortNumber": 0, "Action": 7,
                              "Files": [{"FileName": "big.bin", "chunks": [FILE_SIZE, i]}]});
        session.send(header(download)).await.unwrap();
    }
    let (mut received, mut chunks) = (0u64, 0);
    let mut started = None;
    let window = Duration::from_secs(4);
    while chunks < 200 && started.is_none_or(|s: Instant| s.elapsed() < window) {
        let next = tokio::time::timeout(Duration::from_secs(10), session.next()).await;
        let Ok(Some(Ok(message))) = next else { panic!("the session ended: {next:?}") };
        if let WsMessage::Binary(body) = message {
            chunks += 1;
            // Counted from the first chunk on: the window holds the rest.
            match started {
                None => started = Some(Instant::now()),
                Some(_) => received += body.len() as u64,
            }
        }
    }
    let seconds = started.unwrap().elapsed().as_secs_f64();
    assert!(
        received as f64 <= MIB * seconds * 1.1 + CHUNK as f64 && received as f64 >= MIB * seconds * 0.4,
        "{:.2} MiB in {seconds:.2} s over the WebSocket against a limit of 1 MiB/s",
        received as f64 / MIB
    );
    drop(seeder);
}

#[test]
fn a_limited_seeder_shares_its_rate_fairly_even_with_a_greedy_peer() {
    let seeder = seeder(&["--upload-limit", "2MiB/s"]);
    // One link each (the seeder): the two would otherwise find each other by gossip and
    // trade chunks, and what they fetch would no longer be the seeder's share.
    let first = downloader("first", &seeder, &["--max-links", "1"]);
    let second = downloader("second", &seeder, &["--max-links", "1"]);

    // A peer that keeps 200 chunk requests outstanding and asks again for each it gets.
    let greedy_bytes = Arc::new(AtomicU64::new(0));
    let counter = greedy_bytes.clone();
    let mut raw = Raw::connect(&seeder.addr());
    raw.introduce("greedy", 0, json!([]));
    let chunks = (FILE_SIZE as u64).div_ceil(CHUNK);
    let ask = move |raw: &mut Raw, i: u64| {
        raw.send_header(&peer_header("greedy", 7, json!([{"FileName": "big.bin", "chunks": [FILE_SIZE, i % chunks]}])))
    };
    for i in 0..200 {
        ask(&mut raw, i);
    }
    let greedy = std::thread::spawn(move || {
        let mut next = 200;
        while let Ok((header, body)) = raw.read_message() {
            if header["Action"] == 8 {
                counter.fetch_add(body.map_or(0, |b| b.len() as u64), Ordering::Relaxed);
                ask(&mut raw, next);
                next += 1;
            }
            if next > 1200 {
                return;
            }
        }
    });

    wait_fetching(&first);
    wait_fetching(&second);
    let (start_first, start_second) = (number(&first.query(), "bytesFetched"), number(&second.query(), "bytesFetched"));
    let start_greedy = greedy_bytes.load(Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let got_first = number(&first.query(), "bytesFetched") - start_first;
    let got_second = number(&second.query(), "bytesFetched") - start_second;
    let got_greedy = greedy_bytes.load(Ordering::Relaxed) - start_greedy;
    let seconds = started.elapsed().as_secs_f64();
    let shares = format!(
        "first {:.2}, second {:.2}, greedy {:.2} MiB in {seconds:.2} s",
        got_first as f64 / MIB,
        got_second as f64 / MIB,
        got_greedy as f64 / MIB
    );
    eprintln!("shares: {shares}");
    // Three connections taking turns: about a third each. The greedy peer's 200
    // requests earn it no more than a node's 32.
    let total = (got_first + got_second + got_greedy) as f64;
    assert!(total <= 2.0 * MIB * seconds * 1.1 + 3.0 * CHUNK as f64, "over the limit: {shares}");
    for (who, got) in [("first", got_first), ("second", got_second)] {
        assert!(got as f64 >= total * 0.2, "{who} was starved: {shares}");
    }
    assert!(got_greedy as f64 <= total * 0.5, "the greedy peer took more than its share: {shares}");
    drop(seeder);
    let _ = greedy.join();
}
