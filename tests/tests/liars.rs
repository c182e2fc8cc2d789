//! Lying peers, written here from the wire description: one announces a file and
//! serves corrupted chunks, one sends a manifest that does not match the digest it
//! announced. Every bad chunk and manifest is rejected, the liar is disconnected after
//! 3 failures (the liar sees its connection close) and refused when it comes back, and
//! the file then completes, byte-identical, from an honest node.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torronto_tests::raw::{full_entry, manifest_of, Raw};
use torronto_tests::{file_status, number, peers, random_bytes, wait_until, TestNode};

const SIZE: usize = 4 * 1024 * 1024 + 123;

/// What a lying peer did before the node closed its connection.
#[derive(Debug, Default)]
struct LiarReport {
    bad_chunks_sent: u32,
    manifests_sent: u32,
    closed_after: Option<Duration>,
}

/// Serves `name` as peer `host` until the node closes the connection: manifests are
/// answered with `manifest_body`, chunks with `corrupt(chunk)`.
fn serve_lies(
    raw: &mut Raw,
    host: &str,
    name: &str,
    bytes: &[u8],
    manifest_body: &[u8],
    digest: &str,
    corrupt: bool,
) -> LiarReport {
    let mut report = LiarReport::default();
    let start = Instant::now();
    raw.set_read_timeout(Duration::from_secs(20));
    loop {
        let (h, _) = match raw.read_message() {
            Ok(m) => m,
            Err(_) => {
                report.closed_after = Some(start.elapsed());
                return report;
            }
        };
        match h.get("Action").and_then(Value::as_i64) {
            Some(10) => {
                let header = json!({"HostName": host, "PortNumber": 0, "Action": 11,
                    "Files": [{"FileName": name, "Size": bytes.len(), "Digest": digest}]});
                if !raw.send_frame(header.to_string().as_bytes()) || !raw.send_frame(manifest_body) {
                    report.closed_after = Some(start.elapsed());
                    return report;
                }
                report.manifests_sent += 1;
            }
            Some(7) => {
                let chunk = &h["Files"][0]["chunks"];
                let i = chunk[1].as_u64().expect("chunk number") as usize;
                let start_b = i * 65_536;
                let mut data = bytes[start_b..(start_b + 65_536).min(bytes.len())].to_vec();
                if corrupt {
                    let at = i % data.len();
                    data[at] ^= 0x55;
                }
                let header = json!({"HostName": host, "PortNumber": 0, "Action": 8,
                    "Files": [{"FileName": name, "chunks": chunk}]});
                if !raw.send_frame(header.to_string().as_bytes()) || !raw.send_frame(&data) {
                    report.closed_after = Some(start.elapsed());
                    return report;
                }
                if corrupt {
                    report.bad_chunks_sent += 1;
                }
            }
            _ => {}
        }
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn corrupt_chunks_and_wrong_manifests_are_rejected_and_the_liars_cut_off() {
    let leecher = TestNode::start_alone("victim");
    leecher.join();
    let src = tempfile::tempdir().unwrap();
    let (f_name, g_name) = ("liar-data.bin", "liar-manifest.bin");
    let f = random_bytes(SIZE, 1);
    let g = random_bytes(300_000, 2);
    fs::write(src.path().join(f_name), &f).unwrap();
    fs::write(src.path().join(g_name), &g).unwrap();
    let (f_manifest, f_digest) = manifest_of(&f);
    let (g_manifest, g_digest) = manifest_of(&g);

    // Liar 1: a true manifest, then every chunk corrupted (one byte flipped).
    let mut liar = Raw::connect(&leecher.addr());
    liar.introduce("liar-1", 0, json!([full_entry(f_name, &f)]));
    let r1 = serve_lies(&mut liar, "liar-1", f_name, &f, &f_manifest, &f_digest, true);
    println!("liar-1 (corrupt chunks): {r1:?}");
    assert!(r1.closed_after.is_some(), "the node never closed liar-1's connection");
    assert!(r1.manifests_sent >= 1, "the node never asked liar-1 for the manifest");
    let log = leecher.log();
    let rejected = count(&log, "from liar-1:0: hash mismatch");
    assert_eq!(rejected, 3, "expected exactly 3 rejected chunks from liar-1 before the ban, log says {rejected}");
    assert_eq!(count(&log, "disconnected liar-1:0: it kept sending corrupt chunks"), 1, "no ban logged for liar-1");
    assert!(
        r1.bad_chunks_sent >= 3,
        "liar-1 was cut off after only {} bad chunks (the threshold is 3)",
        r1.bad_chunks_sent
    );
    let st = leecher.query();
    let fs_ = file_status(&st, f_name);
    assert!(fs_.as_ref().is_none_or(|s| s.local == 0.0), "no corrupt chunk may be kept: {st}");
    assert_eq!(number(&st, "chunksFetched"), 0, "chunksFetched counts only verified chunks: {st}");
    assert!(!leecher.file(f_name).exists(), "{f_name} appeared from a liar");

    // Liar 2: announces the true digest but sends a manifest that does not hash to it.
    let mut bad_manifest = g_manifest.clone();
    bad_manifest[5] ^= 1;
    let mut liar2 = Raw::connect(&leecher.addr());
    liar2.introduce("liar-2", 0, json!([full_entry(g_name, &g)]));
    let r2 = serve_lies(&mut liar2, "liar-2", g_name, &g, &bad_manifest, &g_digest, false);
    println!("liar-2 (wrong manifest): {r2:?}");
    assert!(r2.closed_after.is_some(), "the node never closed liar-2's connection");
    assert_eq!(r2.manifests_sent, 3, "liar-2 should be cut off after its 3rd bad manifest");
    let st = leecher.query();
    assert!(
        file_status(&st, g_name).is_none_or(|s| s.local == 0.0),
        "nothing of {g_name} may be stored from a wrong manifest: {st}"
    );
    assert!(peers(&st).is_empty(), "liars must not count as peers: {st}");

    // Banned liars coming back are refused: the connection is closed on Add.
    for host in ["liar-1", "liar-2"] {
        let mut again = Raw::connect(&leecher.addr());
        again.send_header(&json!({"HostName": host, "PortNumber": 0, "Action": 4}));
        again.send_frame(json!({"Files": [full_entry(f_name, &f)]}).to_string().as_bytes());
        let closed = again.wait_closed(Duration::from_secs(5));
        let closed = closed.unwrap_or_else(|e| panic!("banned {host} came back and was not refused: {e}"));
        assert!(
            closed.headers.iter().all(|h| h.get("Action").is_none_or(|a| a != 6)),
            "banned {host} got a Files answer: {:?}",
            closed.headers
        );
    }

    // An honest node holding both files joins: both complete, byte-identical.
    let mut honest = TestNode::new("honest");
    honest.set_peers(&[leecher.addr()]);
    honest.start();
    honest.insert(&src.path().join(f_name)).ok("insert on the honest node");
    honest.insert(&src.path().join(g_name)).ok("insert on the honest node");
    let start = Instant::now();
    honest.join();
    wait_until(Duration::from_secs(60), "the victim holds both files from the honest node", || {
        leecher.holds(f_name, f.len() as u64, &torronto_tests::sha256_hex(&f))
            && leecher.holds(g_name, g.len() as u64, &torronto_tests::sha256_hex(&g))
    });
    println!("both files completed from the honest node in {:?}", start.elapsed());
    assert!(fs::read(leecher.file(f_name)).unwrap() == f, "{f_name} differs");
    assert!(fs::read(leecher.file(g_name)).unwrap() == g, "{g_name} differs");
    let st = leecher.query();
    let chunks = (f.len().div_ceil(65_536) + g.len().div_ceil(65_536)) as u64;
    assert_eq!(number(&st, "chunksFetched"), chunks, "every chunk fetched exactly once, from the honest node: {st}");
    assert_eq!(peers(&st), vec![honest.addr()], "only the honest node is a peer: {st}");
}
