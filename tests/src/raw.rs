//! A raw TCP client and peer speaking the wire protocol from its description
//! (docs/protocol.md): frames are a 4-byte big-endian length and that many bytes
//! (read and written with `torronto_net::blocking`); a message is a JSON header frame
//! plus, for Add (4), Files (6), Upload (8) and Manifest (11), one body frame, which
//! this client works out from the JSON itself. The hostile-input and lying-peer tests
//! use it to send what no well-behaved node would: [`Raw::write`] puts any bytes on
//! the wire, malformed prefixes included. Like the owner's CLI, it sends the token the
//! node registered ([`crate::registered_token`]) with its control requests, unless
//! made [`Raw::anonymous`] (another user of the machine) or given its own `Token`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use torronto_core::wire::WireError;
use torronto_net::blocking::{write_frame, FrameReader};
use torronto_net::ReadError;

use crate::{hex, CHUNK};

/// Largest frame this client accepts from a node.
const MAX_FRAME: usize = 17 * 1024 * 1024;

/// One TCP connection to a node.
#[derive(Debug)]
pub struct Raw {
    /// For raw writes and socket options; reads go through `frames` (the same socket).
    pub stream: TcpStream,
    frames: FrameReader<TcpStream>,
    what: String,
    /// Sent with control requests (Action 0–3) that carry no `Token` of their own.
    token: Option<String>,
}

/// How a connection ended, as seen by [`Raw::wait_closed`].
#[derive(Debug)]
pub struct Closed {
    pub after: Duration,
    /// Headers the node sent before closing.
    pub headers: Vec<Value>,
}

impl Raw {
    /// Connects to `addr` (`host:port`) with a 10 s read timeout, as the node's owner:
    /// with the token the node registered.
    pub fn connect(addr: &str) -> Raw {
        let mut raw = Raw::anonymous(addr);
        raw.token = addr.rsplit(':').next().and_then(|p| p.parse().ok()).and_then(crate::registered_token);
        raw
    }

    /// Connects without any token, as another user of the machine would.
    pub fn anonymous(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set_read_timeout");
        stream.set_nodelay(true).expect("nodelay");
        let frames = FrameReader::new(stream.try_clone().expect("clone the socket"));
        Raw { stream, frames, what: addr.to_string(), token: None }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("set_read_timeout");
    }

    /// Writes raw bytes; false if the node has closed the connection.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Writes one frame, within the protocol's limits or not; false if the node has closed
    /// the connection.
    pub fn send_frame(&mut self, bytes: &[u8]) -> bool {
        write_frame(&mut self.stream, bytes).is_ok()
    }

    #[track_caller]
    pub fn send_header(&mut self, header: &Value) {
        let control = header.get("Action").and_then(Value::as_i64).is_some_and(|a| (0..=3).contains(&a));
        let mut header = header.clone();
        if let (true, Some(token), Some(fields)) = (control, &self.token, header.as_object_mut()) {
            fields.entry("Token").or_insert_with(|| Value::from(token.as_str()));
        }
        let header = &header;
        assert!(self.send_frame(header.to_string().as_bytes()), "{}: node closed before {header}", self.what);
    }

    /// One frame, or an error (closed, reset, timed out).
    pub fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        match self.frames.read_frame(MAX_FRAME) {
            Ok(Some(frame)) => Ok(Vec::from(frame)),
            Ok(None) => Err(ErrorKind::UnexpectedEof.into()),
            Err(ReadError::Io(e)) => Err(e),
            Err(ReadError::Wire(WireError::FrameTooLong { len, .. })) => {
                panic!("{}: node sent a frame of {len} bytes", self.what)
            }
            Err(e) => panic!("{}: {e}", self.what),
        }
    }

    /// One message: its header and, for actions that carry one, its body.
    pub fn read_message(&mut self) -> std::io::Result<(Value, Option<Vec<u8>>)> {
        let frame = self.read_frame()?;
        let header: Value = serde_json::from_slice(&frame).unwrap_or_else(|e| {
            panic!("{}: node sent a header that is not JSON ({e}): {:?}", self.what, String::from_utf8_lossy(&frame))
        });
        // Add, Files, Upload and Manifest carry a body; so does a reply announcing one
        // with "Body" (a Query status too large for a header).
        let body = match header.get("Action").and_then(Value::as_i64) {
            Some(4 | 6 | 8 | 11) => Some(self.read_frame()?),
            None if header.get("Body").is_some() => Some(self.read_frame()?),
            _ => None,
        };
        Ok((header, body))
    }

    /// Reads messages until one satisfies `want`, skipping up to 200 others (Have, Files...).
    #[track_caller]
    pub fn read_until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> (Value, Option<Vec<u8>>) {
        let mut skipped = Vec::new();
        for _ in 0..200 {
            let (h, b) = self.read_message().unwrap_or_else(|e| {
                panic!("{}: expected {what}, but reading failed: {e}; skipped {skipped:?}", self.what)
            });
            if want(&h) {
                return (h, b);
            }
            skipped.push(h);
        }
        panic!("{}: expected {what}; the node sent instead: {skipped:?}", self.what);
    }

    /// The next reply (a header with `Code` and no `Action`).
    #[track_caller]
    pub fn read_reply(&mut self, what: &str) -> Value {
        self.read_until(&format!("a reply to {what}"), |h| h.get("Action").is_none() && h.get("Code").is_some()).0
    }

    /// Sends `header` and expects a reply with `code`.
    #[track_caller]
    pub fn expect_code(&mut self, header: &Value, code: i64, what: &str) -> Value {
        self.send_header(header);
        let r = self.read_reply(what);
        assert_code(&r, code, what);
        r
    }

    /// Query on this connection; panics unless it answers Code 0.
    #[track_caller]
    pub fn query(&mut self) -> Value {
        self.expect_code(&json!({"Action": 3}), 0, "Query")
    }

    /// Introduces this connection as peer `host:port` with an Add carrying `files`
    /// (a JSON array of file entries); returns the node's Files list.
    #[track_caller]
    pub fn introduce(&mut self, host: &str, port: u16, files: Value) -> Value {
        self.send_header(&json!({"HostName": host, "PortNumber": port, "Action": 4}));
        assert!(self.send_frame(json!({ "Files": files }).to_string().as_bytes()), "{}: closed during Add", self.what);
        let (h, body) = self.read_until("Files (Action 6) answering Add", |h| {
            assert!(h.get("Code").is_none_or(|c| c == 0), "expected Files in answer to Add, got {h}");
            h.get("Action").and_then(Value::as_i64) == Some(6)
        });
        let _ = h;
        serde_json::from_slice(&body.expect("Files has a body")).expect("Files body is JSON")
    }

    /// Reads (and discards) until the node closes the connection; Err after `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Closed, String> {
        let start = Instant::now();
        let mut headers = Vec::new();
        loop {
            let left = timeout.checked_sub(start.elapsed()).ok_or_else(|| format!("still open after {timeout:?}"))?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("set_read_timeout");
            match self.frames.read_frame(MAX_FRAME) {
                // Collect whole JSON frames for the report; bodies are skipped.
                Ok(Some(frame)) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&frame) {
                        if v.is_object() {
                            headers.push(v);
                        }
                    }
                }
                Ok(None) => return Ok(Closed { after: start.elapsed(), headers }),
                Err(ReadError::Io(e))
                    if matches!(
                        e.kind(),
                        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(Closed { after: start.elapsed(), headers })
                }
                Err(ReadError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("still open after {timeout:?}; it sent {headers:?}"))
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

#[track_caller]
pub fn assert_code(reply: &Value, code: i64, what: &str) {
    assert_eq!(
        reply.get("Code").and_then(Value::as_i64),
        Some(code),
        "{what}: expected a reply with \"Code\":{code}, got {reply}"
    );
}

/// A peer header: sender `host`, port 0 (never dialled).
pub fn peer_header(host: &str, action: i64, files: Value) -> Value {
    json!({"HostName": host, "PortNumber": 0, "Action": action, "Files": files})
}

/// The chunk hashes (manifest body) and protocol digest of `bytes`.
pub fn manifest_of(bytes: &[u8]) -> (Vec<u8>, String) {
    let mut body = Vec::new();
    for c in bytes.chunks(CHUNK as usize) {
        body.extend_from_slice(&Sha256::digest(c));
    }
    let digest = hex(&Sha256::digest(&body));
    (body, digest)
}

/// A file-list entry for `bytes` named `name`, holding every chunk.
pub fn full_entry(name: &str, bytes: &[u8]) -> Value {
    let (_, digest) = manifest_of(bytes);
    let n = (bytes.len() as u64).div_ceil(CHUNK);
    json!({"FileName": name, "Size": bytes.len(), "Digest": digest, "chunks": (0..n).collect::<Vec<_>>()})
}

/// Fetches chunk `index` of `name` (a file of `size` bytes) as an introduced peer,
/// checking it against the manifest the node gives; returns the chunk.
#[track_caller]
pub fn fetch_verified(raw: &mut Raw, host: &str, name: &str, size: u64, index: u64) -> Vec<u8> {
    raw.send_header(&peer_header(host, 10, json!([{ "FileName": name }])));
    let (h, body) = raw.read_until("Manifest (Action 11)", |h| {
        assert!(h.get("Code").is_none_or(|c| c == 0), "GetManifest {name}: expected Manifest, got {h}");
        h.get("Action").and_then(Value::as_i64) == Some(11)
    });
    let manifest = body.expect("Manifest has a body");
    let digest = h["Files"][0]["Digest"].as_str().expect("Manifest has a Digest").to_string();
    assert_eq!(hex(&Sha256::digest(&manifest)), digest, "manifest of {name} does not hash to its Digest");
    raw.send_header(&peer_header(host, 7, json!([{ "FileName": name, "chunks": [size, index] }])));
    let (_, body) = raw.read_until(&format!("Upload (Action 8) of chunk {index} of {name}"), |h| {
        assert!(h.get("Code").is_none_or(|c| c == 0), "Download {name}/{index}: expected Upload, got {h}");
        h.get("Action").and_then(Value::as_i64) == Some(8)
    });
    let data = body.expect("Upload has a body");
    let i = index as usize;
    assert_eq!(&Sha256::digest(&data)[..], &manifest[i * 32..i * 32 + 32], "chunk {index} of {name} fails its hash");
    data
}

/// Serves `files` (name → bytes) honestly as peer `host` (port 0) on `raw`, answering
/// GetManifest and Download, for `period` or until the node closes the connection;
/// returns how many chunks of each file the node asked for.
pub fn serve_files(
    raw: &mut Raw,
    host: &str,
    files: &BTreeMap<String, Vec<u8>>,
    period: Duration,
) -> BTreeMap<String, u32> {
    serve_files_with(raw, host, files, period, |_, _| {})
}

/// [`serve_files`], with `each_upload` shown every Download the node sends (its header)
/// and the header of the Upload that answers it, to change before it goes.
pub fn serve_files_with(
    raw: &mut Raw,
    host: &str,
    files: &BTreeMap<String, Vec<u8>>,
    period: Duration,
    mut each_upload: impl FnMut(&Value, &mut Value),
) -> BTreeMap<String, u32> {
    let mut asked = BTreeMap::new();
    let end = Instant::now() + period;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        raw.set_read_timeout(left.max(Duration::from_millis(1)));
        let Ok((h, _)) = raw.read_message() else { break };
        let action = h.get("Action").and_then(Value::as_i64);
        let Some(name) = h["Files"][0]["FileName"].as_str() else { continue };
        let Some(bytes) = files.get(name) else { continue };
        let (header, body) = match action {
            Some(10) => {
                let (manifest, digest) = manifest_of(bytes);
                let files = json!([{"FileName": name, "Size": bytes.len(), "Digest": digest}]);
                (peer_header(host, 11, files), manifest)
            }
            Some(7) => {
                *asked.entry(name.to_string()).or_insert(0) += 1;
                let chunk = &h["Files"][0]["chunks"];
                let start = chunk[1].as_u64().expect("chunk number") as usize * CHUNK as usize;
                let data = bytes[start..(start + CHUNK as usize).min(bytes.len())].to_vec();
                let mut upload = peer_header(host, 8, json!([{"FileName": name, "chunks": chunk}]));
                each_upload(&h, &mut upload);
                (upload, data)
            }
            _ => continue,
        };
        if !raw.send_frame(header.to_string().as_bytes()) || !raw.send_frame(&body) {
            break;
        }
    }
    asked
}
