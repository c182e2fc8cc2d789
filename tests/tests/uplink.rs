//! The automatic upload limit (core's `uplink`), end to end on loopback with real
//! nodes and raw peers that say what a full uplink would make them say:
//! - uploads carry when they left (`SentAt`), and a fetching node tells each sender how
//!   long its chunks queued (`UplinkDelay` on its requests), its own downlink's share
//!   taken out;
//! - a seeder whose receivers report a queue holds its uploads at what it was sending,
//!   shows it (`autoUploadLimit`, its log), lets it rise when they stop, and does none
//!   of it without `--auto-upload-limit`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torronto_tests::raw::{full_entry, peer_header, serve_files_with, Raw};
use torronto_tests::{number, random_bytes, wait_until, TestNode, CHUNK};

const FILE_SIZE: usize = 8 << 20;
/// The seeder's uplink, in the second test.
const UPLINK: &str = "20MiB/s";

/// Two raw peers serve a fetching node the same file. One stamps its uploads as they
/// go; the other as if each had waited 60 ms in its uplink first. The node's requests
/// tell the second its chunks queue about 60 ms, and the first about nothing; and the
/// node's own uploads say when they left.
#[test]
fn a_fetching_node_tells_each_sender_how_long_its_chunks_queued() {
    let mut node = TestNode::new("fetcher");
    node.start();
    node.join();
    let bytes = random_bytes(FILE_SIZE, 41);
    let files: BTreeMap<String, Vec<u8>> = [("f.bin".to_string(), bytes.clone())].into();
    let origin = Instant::now();
    let serve = |host: &'static str, queued_us: u64| {
        let (addr, files) = (node.addr(), files.clone());
        let entry = full_entry("f.bin", &bytes);
        std::thread::spawn(move || {
            let mut raw = Raw::connect(&addr);
            raw.introduce(host, 0, json!([entry]));
            let mut reports = Vec::new();
            let mut served = 0;
            serve_files_with(&mut raw, host, &files, Duration::from_secs(30), |request, upload| {
                if let Some(delay) = request.get("UplinkDelay").and_then(Value::as_u64) {
                    reports.push(delay);
                }
                // Slow enough that neither sender serves the whole file alone.
                std::thread::sleep(Duration::from_millis(5));
                // The first few chunks go at once: they set each sender's least delay.
                let queued = if served < 4 { 0 } else { queued_us };
                served += 1;
                let now = origin.elapsed().as_micros() as u64 + 1_000_000;
                upload["SentAt"] = json!(now - queued);
            });
            reports
        })
    };
    let prompt = serve("prompt", 0);
    let queued = serve("queued", 60_000);
    wait_until(Duration::from_secs(30), "the file fetched", || {
        torronto_tests::file_status(&node.query(), "f.bin").is_some_and(|f| f.local >= 1.0)
    });
    // The node's own uploads carry when they left.
    let mut raw = Raw::connect(&node.addr());
    raw.introduce("asker", 0, json!([]));
    raw.send_header(&peer_header("asker", 7, json!([{"FileName": "f.bin", "chunks": [FILE_SIZE, 3]}])));
    let (upload, _) = raw.read_until("Upload (Action 8)", |h| h.get("Action").and_then(Value::as_i64) == Some(8));
    assert!(upload.get("SentAt").and_then(Value::as_u64).is_some(), "an Upload without SentAt: {upload}");
    drop(node);

    let (prompt, queued) = (prompt.join().unwrap(), queued.join().unwrap());
    // The median of the last quarter: a busy machine may hold up any one chunk.
    let late = |reports: &[u64]| {
        let mut late = reports[reports.len() * 3 / 4..].to_vec();
        late.sort_unstable();
        late[late.len() / 2]
    };
    assert!(prompt.len() >= 16 && queued.len() >= 16, "few requests carried a report: {prompt:?} {queued:?}");
    let (prompt_late, queued_late) = (late(&prompt), late(&queued));
    assert!((40_000..=80_000).contains(&queued_late), "the queued sender was told {queued:?} µs");
    assert!(prompt_late <= 20_000, "the prompt sender was told {prompt:?} µs");
}

/// Three raw peers fetch from a seeder as fast as they can, each saying on every request
/// that the seeder's chunks queue 60 ms on its side. The seeder holds its uploads under
/// what it was sending, says so, and keeps to it; when they say the queue is gone the
/// limit rises. Without `--auto-upload-limit` the same reports change nothing.
///
/// The seeder's own `--upload-limit` plays the uplink: what it sends is then steady
/// (on loopback it would be whatever the machine has to spare), and the automatic limit
/// has to come in under it.
#[test]
fn a_seeder_told_its_uploads_queue_holds_them_at_what_its_uplink_carried() {
    let seeder = seeder(&["--auto-upload-limit", "--upload-limit", UPLINK]);
    let queue_us = Arc::new(std::sync::atomic::AtomicU64::new(60_000));
    let stop = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = (0..3).map(|i| receiver(&seeder, &format!("r{i}"), &queue_us, &stop)).collect();

    wait_until(Duration::from_secs(15), "an automatic upload limit", || held_at(&seeder).is_some());
    let limit = held_at(&seeder).unwrap();
    let uplink = 20 << 20;
    assert!((uplink / 2..uplink).contains(&limit), "held at {limit} B/s, for an uplink of {uplink} B/s it was filling");
    let log = seeder.log();
    assert!(log.contains("uploads held at"), "the seeder's log does not say so:\n{}", seeder.log_tail(20));

    // Held: reports of a standing queue only ever lower it, so this is the most allowed.
    let before = number(&seeder.query(), "bytesServed");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let sent = number(&seeder.query(), "bytesServed") - before;
    let seconds = started.elapsed().as_secs_f64();
    let most = limit as f64 * seconds * 1.1 + 6.0 * CHUNK as f64;
    assert!(sent as f64 <= most, "sent {sent} B in {seconds:.2} s while held at {limit} B/s");

    // The queue gone: the limit rises (while it holds the uploads back).
    let low = held_at(&seeder).unwrap();
    queue_us.store(0, Ordering::Relaxed);
    wait_until(Duration::from_secs(10), "the limit to rise", || held_at(&seeder).is_some_and(|l| l > low));

    stop.store(true, Ordering::Relaxed);
    receivers.into_iter().for_each(|r| r.join().unwrap());
    drop(seeder);

    // Turned off, the same reports change nothing.
    let seeder = self::seeder(&["--upload-limit", UPLINK]);
    queue_us.store(60_000, Ordering::Relaxed);
    stop.store(false, Ordering::Relaxed);
    let receivers: Vec<_> = (0..3).map(|i| receiver(&seeder, &format!("r{i}"), &queue_us, &stop)).collect();
    wait_until(Duration::from_secs(10), "uploads under way", || number(&seeder.query(), "bytesServed") > 16 << 20);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(held_at(&seeder), None, "held without --auto-upload-limit");
    assert!(!seeder.log().contains("uploads held at"));
    stop.store(true, Ordering::Relaxed);
    receivers.into_iter().for_each(|r| r.join().unwrap());
}

/// A seeder holding big.bin, joined, with `args`.
fn seeder(args: &[&str]) -> TestNode {
    torronto_tests::seeder_of_big_bin(args, FILE_SIZE)
}

/// The seeder's automatic upload limit, if one holds (Query's `autoUploadLimit`).
fn held_at(seeder: &TestNode) -> Option<u64> {
    seeder.query().get("autoUploadLimit").and_then(Value::as_u64)
}

/// A raw peer keeping 16 requests outstanding at `seeder`, each saying its uploads queue
/// `queue_us`, until `stop`.
fn receiver(
    seeder: &TestNode,
    host: &str,
    queue_us: &Arc<std::sync::atomic::AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (addr, host, queue_us, stop) = (seeder.addr(), host.to_string(), queue_us.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut raw = Raw::connect(&addr);
        raw.introduce(&host, 0, json!([]));
        let chunks = (FILE_SIZE as u64).div_ceil(CHUNK);
        let ask = |raw: &mut Raw, i: u64| {
            let mut h = peer_header(&host, 7, json!([{"FileName": "big.bin", "chunks": [FILE_SIZE, i % chunks]}]));
            h["UplinkDelay"] = json!(queue_us.load(Ordering::Relaxed));
            raw.send_header(&h);
        };
        for i in 0..16 {
            ask(&mut raw, i);
        }
        let mut next = 16;
        while !stop.load(Ordering::Relaxed) {
            let Ok((header, _)) = raw.read_message() else { return };
            if header["Action"] == 8 {
                ask(&mut raw, next);
                next += 1;
            }
        }
    })
}
