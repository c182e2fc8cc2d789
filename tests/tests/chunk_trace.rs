//! The chunk trace and what reads it: a node run with
//! `RUST_LOG=info,torronto::chunks=trace` logs every chunk request it sends or receives
//! and every chunk it receives, naming the peer (native-node/src/driver.rs, `trace_chunk`), and
//! `tests/bench/chunk_timeline.py` turns the logs of a swarm into a timeline: who got what
//! from whom, and when. Checked on a real fetch over loopback; the counts must match the
//! file's chunks exactly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use torronto_tests::{random_file, sha256_file, wait_until, TestNode};

const CHUNK: usize = 64 * 1024;
/// 20 whole chunks and a short last one.
const CHUNKS: usize = 21;

fn count(log: &str, prefix: &str) -> usize {
    log.lines().filter(|l| l.contains(prefix)).count()
}

#[test]
fn a_traced_fetch_logs_every_chunk_and_the_timeline_counts_them() {
    let mut seeder = TestNode::new("trace-seeder");
    let mut fetcher = TestNode::new("trace-fetcher");
    for node in [&mut seeder, &mut fetcher] {
        node.set_log_filter("info,torronto::chunks=trace");
    }
    seeder.set_peers(&[fetcher.addr()]);
    fetcher.set_peers(&[seeder.addr()]);
    seeder.start();
    fetcher.start();
    seeder.join();
    fetcher.join();

    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("traced.bin");
    let size = (CHUNKS - 1) * CHUNK + 1000;
    random_file(&path, size, 11);
    let sha = sha256_file(&path);
    seeder.insert(&path).ok("insert traced.bin");
    wait_until(Duration::from_secs(60), "the fetcher holds traced.bin", || {
        fetcher.holds("traced.bin", size as u64, &sha)
    });
    seeder.stop();
    fetcher.stop();

    // The trace itself: each chunk received, from the seeder, once for each time it was
    // asked for at most (a request the fetcher gave up on may still be answered).
    let log = fetcher.log();
    let got = format!("torronto::chunks: got {} ", seeder.addr());
    let asked = format!("torronto::chunks: ask {} ", seeder.addr());
    for i in 0..CHUNKS {
        let (g, a) = (count(&log, &format!("{got}{i} traced.bin")), count(&log, &format!("{asked}{i} traced.bin")));
        assert!(g >= 1 && g <= a, "chunk {i}: got {g} times, asked {a} times:\n{log}");
    }
    let received = count(&log, &got);
    let seeder_log = seeder.log();
    assert_eq!(count(&seeder_log, "torronto::chunks: got "), 0, "the seeder fetched nothing");
    assert_eq!(count(&seeder_log, "torronto::chunks: ask "), 0, "the seeder asked for nothing");
    let wanted = format!("torronto::chunks: wanted {} ", fetcher.addr());
    assert_eq!(count(&seeder_log, &wanted), count(&log, &asked), "each request arrived, and only those:\n{seeder_log}");
    // One-way delays: when each chunk's header left the seeder (on a connection it names
    // once) and when it arrived, on the wall clock.
    let arrived = format!("torronto::chunks: owd got from {} index ", seeder.addr());
    assert_eq!(count(&log, &arrived), received, "each chunk's header arrival:\n{log}");
    let named = format!(" peer {}", fetcher.addr());
    assert_eq!(seeder_log.lines().filter(|l| l.contains("owd conn ") && l.contains(&named)).count(), 1, "{seeder_log}");
    assert!(
        count(&seeder_log, "torronto::chunks: owd sent conn ") >= CHUNKS,
        "each chunk's header leaving:\n{seeder_log}"
    );

    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED the timeline: python3 is not installed");
        return;
    }
    // The timeline, from the logs named as the script names nodes.
    let logs = tempfile::tempdir().unwrap();
    std::fs::copy(seeder.log_file(), logs.path().join("n0.log")).unwrap();
    std::fs::copy(fetcher.log_file(), logs.path().join("n1.log")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/chunk_timeline.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--json", "--rate", "100"])
        .arg(logs.path().join("n0.log"))
        .arg(logs.path().join("n1.log"))
        .output()
        .expect("python3 runs chunk_timeline.py");
    assert!(out.status.success(), "chunk_timeline.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["seeder"], "n0", "the node that asked for and received nothing: {report}");
    let n1 = &report["nodes"]["n1"];
    assert_eq!(n1["chunks"], received, "{report}");
    assert_eq!(n1["from_seeder"], received, "{report}");
    assert_eq!(n1["received_twice"], received - CHUNKS, "{report}");
    let first_copies: u64 = report["seeder_sent"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(first_copies, CHUNKS as u64, "{report}");
    let per_second: u64 = report["per_second"]["n1"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(per_second, received as u64, "{report}");
    assert!(report["unknown_peers"].as_array().unwrap().is_empty(), "{report}");
    // A receiver's own share needs two senders to compare: with one, none is told apart.
    assert!(report["one_way"].as_object().is_some_and(|o| o.is_empty()), "{report}");

    // Who fed whom, over the whole run: every chunk n1 got, all from n0, and requests
    // were waiting on n0 (none on anyone else).
    let end = format!("{}", n1["last_chunk"].as_f64().unwrap() + 0.001);
    let out = Command::new("python3")
        .arg(&script)
        .args(["--json", "--window", "0", &end])
        .arg(logs.path().join("n0.log"))
        .arg(logs.path().join("n1.log"))
        .output()
        .unwrap();
    assert!(out.status.success(), "chunk_timeline.py --window failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let pairs = &report["pairs"];
    assert_eq!(pairs["chunks"]["n1"], serde_json::json!({ "n0": received }), "{pairs}");
    assert!(pairs["mbit"]["n1"]["n0"].as_f64().is_some_and(|m| m > 0.0), "{pairs}");
    let waiting = pairs["waiting"]["n1"].as_object().unwrap();
    assert!(waiting.keys().all(|k| k == "n0") && waiting["n0"].as_f64().unwrap() > 0.0, "{pairs}");

    // And the plain report names the node and its chunks.
    let out = Command::new("python3")
        .arg(&script)
        .arg(logs.path().join("n0.log"))
        .arg(logs.path().join("n1.log"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("seeder: n0"), "{text}");
    assert!(text.contains(&format!("in all: {CHUNKS} chunks, {} sent again", received - CHUNKS)), "{text}");
    assert!(text.contains("Mbit/s received by each node (row) from each participant (column)"), "{text}");

    // Logs without the trace say how to get it; a missing log is named.
    let plain = logs.path().join("plain.log");
    std::fs::write(&plain, "torronto node 127.0.0.1:1 (open network) ready\n").unwrap();
    let out = Command::new("python3").arg(&script).arg(&plain).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("RUST_LOG=info,torronto::chunks=trace"), "{err}");
    let out = Command::new("python3").arg(&script).arg(logs.path().join("none.log")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("none.log") && !err.contains("Traceback"), "{err}");
}
