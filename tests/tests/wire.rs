//! A raw-socket client written from the wire description alone, as a third party would:
//! frames are a 4-byte big-endian length and that many bytes; a message is a JSON header
//! frame and, for Add (4), Files (6), Upload (8) and Manifest (11), one body frame. Nothing
//! here uses the project's own protocol code.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use torronto_tests::{hex, random_file, TestNode};

const CHUNK: usize = 64 * 1024;
/// Largest frame this client accepts from the node.
const MAX_FRAME: usize = 17 * 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(node: &TestNode) -> TcpStream {
    let s = TcpStream::connect(node.addr()).expect("connect to the node");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn send_frame(s: &mut TcpStream, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("frame fits u32");
    s.write_all(&len.to_be_bytes()).expect("write length prefix");
    s.write_all(bytes).expect("write frame");
}

fn send_header(s: &mut TcpStream, header: &Value) {
    send_frame(s, serde_json::to_string(header).unwrap().as_bytes());
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).expect("read a length prefix from the node (timed out or closed?)");
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len <= MAX_FRAME, "node sent a frame of {len} bytes");
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).expect("read a frame from the node");
    buf
}

/// One message from the node: its header and, for actions that carry one, its body.
fn read_message(s: &mut TcpStream) -> (Value, Option<Vec<u8>>) {
    let frame = read_frame(s);
    let header: Value = serde_json::from_slice(&frame)
        .unwrap_or_else(|e| panic!("node sent a header that is not JSON ({e}): {:?}", String::from_utf8_lossy(&frame)));
    let body = match header.get("Action").and_then(Value::as_i64) {
        Some(4 | 6 | 8 | 11) => Some(read_frame(s)),
        _ => None,
    };
    (header, body)
}

/// Reads messages until one satisfies `want`, skipping (at most 50) others the node may send
/// on its own, such as Have.
fn read_until(s: &mut TcpStream, what: &str, want: impl Fn(&Value) -> bool) -> (Value, Option<Vec<u8>>) {
    let mut skipped = Vec::new();
    for _ in 0..50 {
        let (h, b) = read_message(s);
        if want(&h) {
            return (h, b);
        }
        skipped.push(h);
    }
    panic!("expected {what}; the node sent instead: {skipped:?}");
}

/// The next reply (a header with `Code` and no `Action`).
fn read_reply(s: &mut TcpStream, what: &str) -> Value {
    read_until(s, &format!("a reply to {what}"), |h| h.get("Action").is_none() && h.get("Code").is_some()).0
}

#[track_caller]
fn assert_code(reply: &Value, code: i64, what: &str) {
    assert_eq!(
        reply.get("Code").and_then(Value::as_i64),
        Some(code),
        "{what}: expected a reply with \"Code\":{code}, got {reply}"
    );
}

/// Query with the node's control token, which a client reads from the node's
/// `DIR/.torronto/token` (control needs it on every connection, loopback too).
fn query(s: &mut TcpStream, token: &str) -> Value {
    send_header(s, &json!({"Action": 3, "Token": token}));
    read_reply(s, "Query")
}

/// A peer header naming this client: loopback, port 0 (not diallable).
fn peer(action: i64, files: Value) -> Value {
    json!({"HostName": "127.0.0.1", "PortNumber": 0, "Action": action, "Files": files})
}

#[test]
fn control_and_malformed_input() {
    let node = TestNode::start_alone("wire");
    let token = node.token();
    let mut s = connect(&node);

    let r = query(&mut s, &token);
    assert_code(&r, 0, "Query on a fresh node");
    assert_eq!(
        r.get("numFiles").and_then(Value::as_u64),
        Some(0),
        "Query on a fresh node: expected numFiles 0, got {r}"
    );

    send_frame(&mut s, br#"{"Action": 3, "Files": [ "#);
    assert_code(&read_reply(&mut s, "malformed JSON"), 6, "malformed JSON");
    assert_code(&query(&mut s, &token), 0, "Query on the same connection after malformed JSON");

    send_header(&mut s, &json!({"Action": 99}));
    assert_code(&read_reply(&mut s, "Action 99"), 6, "unknown Action 99");

    send_header(&mut s, &peer(7, json!([{"FileName": "../x", "chunks": [10, 0]}])));
    assert_code(&read_reply(&mut s, "Download ../x"), 6, "Download of FileName ../x");
    assert_code(&query(&mut s, &token), 0, "Query on the same connection after the bad requests");

    // A length prefix far over any limit: the node drops the connection without reading it.
    let mut big = connect(&node);
    big.write_all(&0xFFFF_FFF0u32.to_be_bytes()).unwrap();
    big.write_all(b"{\"Action\":3}").unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match big.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Ok(n) => {
                // A reply before closing is tolerated; the close is what counts.
                assert!(start.elapsed() < Duration::from_secs(5), "node kept sending ({n} bytes) instead of closing");
            }
            Err(e) => panic!(
                "expected the node to close a connection that announced a 0xFFFFFFF0-byte \
                 frame within 5 s; read gave: {e}"
            ),
        }
    }
    let mut again = connect(&node);
    assert_code(&query(&mut again, &token), 0, "Query on a new connection after the oversized frame");

    // Not joined: peer messages are refused with ErrDisconnected, and the body is consumed.
    let mut p = connect(&node);
    send_header(&mut p, &json!({"HostName": "127.0.0.1", "PortNumber": 0, "Action": 4}));
    send_frame(&mut p, br#"{"Files":[]}"#);
    assert_code(&read_reply(&mut p, "Add to a node that has not joined"), 2, "Add before join");
    assert_code(&query(&mut p, &token), 0, "Query after a refused Add");
}

#[test]
fn peer_session_manifest_and_download() {
    let node = TestNode::start_alone("peer");
    node.join();
    let src_dir = tempfile::tempdir().unwrap();
    let name = "wire.bin";
    let path = src_dir.path().join(name);
    let size = 200 * 1024; // chunks 0..=2 full, chunk 3 holds the last 8 KiB
    random_file(&path, size, 42);
    node.insert(&path).ok("insert wire.bin");
    let disk = std::fs::read(node.file(name)).expect("wire.bin in the node's folder");
    assert_eq!(disk, std::fs::read(&path).unwrap(), "node's copy differs from the source");
    let hashes: Vec<[u8; 32]> = disk.chunks(CHUNK).map(|c| Sha256::digest(c).into()).collect();
    assert_eq!(hashes.len(), 4);
    let digest = hex(&Sha256::digest(hashes.concat()));

    let mut s = connect(&node);
    // Add with an empty list; the node answers Files with its list.
    send_header(&mut s, &json!({"HostName": "127.0.0.1", "PortNumber": 0, "Action": 4}));
    send_frame(&mut s, br#"{"Files":[]}"#);
    let (_, body) = read_until(&mut s, "Files (Action 6) answering Add", |h| {
        assert!(
            h.get("Code").and_then(Value::as_i64).unwrap_or(0) == 0,
            "expected Files in answer to Add, got an error reply {h}"
        );
        h.get("Action").and_then(Value::as_i64) == Some(6)
    });
    let list: Value = serde_json::from_slice(&body.expect("Files has a body")).expect("Files body is JSON");
    let entry = list["Files"]
        .as_array()
        .unwrap_or_else(|| panic!("Files body has no Files array: {list}"))
        .iter()
        .find(|f| f["FileName"] == name)
        .unwrap_or_else(|| panic!("expected {name} in the Files list, got {list}"))
        .clone();
    assert_eq!(entry["Size"], json!(size), "Size of {name} in Files: {entry}");
    assert_eq!(entry["Digest"], json!(digest), "Digest of {name} in Files: {entry}");
    assert_eq!(entry["chunks"], json!([0, 1, 2, 3]), "chunks held of {name}: {entry}");

    // GetManifest: the body is the chunk hashes, and hashes to the Digest.
    send_header(&mut s, &peer(10, json!([{"FileName": name}])));
    let (h, body) = read_until(&mut s, "Manifest (Action 11)", |h| {
        assert!(h.get("Code").and_then(Value::as_i64).unwrap_or(0) == 0, "expected Manifest, got an error reply {h}");
        h.get("Action").and_then(Value::as_i64) == Some(11)
    });
    let manifest = body.expect("Manifest has a body");
    assert_eq!(h["Files"][0]["FileName"], json!(name), "Manifest header: {h}");
    assert_eq!(h["Files"][0]["Size"], json!(size), "Manifest header: {h}");
    assert_eq!(h["Files"][0]["Digest"], json!(digest), "Manifest header: {h}");
    assert_eq!(manifest.len(), 4 * 32, "Manifest body: expected 4 hashes of 32 bytes");
    assert_eq!(hex(&Sha256::digest(&manifest)), digest, "SHA-256 of the manifest body");
    assert_eq!(manifest, hashes.concat(), "manifest hashes vs the file on disk");

    // Download the last, short chunk.
    send_header(&mut s, &peer(7, json!([{"FileName": name, "chunks": [size, 3]}])));
    let (h, body) = read_until(&mut s, "Upload (Action 8) of chunk 3", |h| {
        assert!(
            h.get("Code").and_then(Value::as_i64).unwrap_or(0) == 0,
            "expected Upload of chunk 3, got an error reply {h}"
        );
        h.get("Action").and_then(Value::as_i64) == Some(8)
    });
    let data = body.expect("Upload has a body");
    assert_eq!(h["Files"][0]["FileName"], json!(name), "Upload header: {h}");
    assert_eq!(h["Files"][0]["chunks"], json!([size, 3]), "Upload header: {h}");
    assert_eq!(data.len(), size - 3 * CHUNK, "chunk 3 is the last 8 KiB");
    assert!(data == disk[3 * CHUNK..], "chunk 3 bytes differ from the file on disk");
    assert_eq!(&Sha256::digest(&data)[..], &manifest[3 * 32..4 * 32], "SHA-256 of chunk 3 vs the manifest");

    // A chunk past the end.
    send_header(&mut s, &peer(7, json!([{"FileName": name, "chunks": [size, 4]}])));
    assert_code(&read_reply(&mut s, "Download of chunk 4"), 6, "Download past the end");
}
