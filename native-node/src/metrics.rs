//! `--metrics HOST:PORT`: the node's counters as Prometheus text at `/metrics`.
//!
//! The driver's loop keeps the counters ([`Metrics`]), seeing every message in and out;
//! a scrape asks the loop for a rendering (an [`crate::input::Input::Metrics`]), so the
//! numbers and the status they sit beside are one consistent moment. Chunk bytes are
//! payload bytes (headers and encryption not counted). Names follow Prometheus'
//! conventions: `torronto_` prefix, units in the name, `_total` for counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use torronto_core::layout::{chunk_count, chunk_len};
use torronto_core::wire::FRAME_PREFIX_LEN;
use torronto_core::{
    ChunkIndex, ChunkRef, ConnId, Control, Envelope, Event, FileName, Message, PeerAddr, PeerMessage, Status,
};

use crate::input::Input;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Chunk requests timed at once; a peer that never answers cannot grow the table.
const MAX_TIMED_REQUESTS: usize = 65_536;

/// A latency histogram with Prometheus' cumulative buckets.
#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// Chunks and their payload bytes, one way.
#[derive(Clone, Copy, Debug, Default)]
struct Flow {
    chunks: u64,
    bytes: u64,
}

impl Flow {
    fn add(&mut self, bytes: usize) {
        self.chunks += 1;
        self.bytes += bytes as u64;
    }
}

/// What the node counts for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By peer; `None` for a connection that has not said who it is.
    received: BTreeMap<Option<PeerAddr>, Flow>,
    sent: BTreeMap<Option<PeerAddr>, Flow>,
    verification_failures: u64,
    storage_errors: u64,
    /// Bytes of protocol sent to peers other than chunk payload, by kind of message:
    /// every header, every body but an Upload's, and the frames' length prefixes
    /// (before encryption).
    control_sent_by_kind: BTreeMap<&'static str, u64>,
    /// Chunk requests in flight, by connection, file and index (an Upload's header
    /// need not repeat the file's size).
    requests: HashMap<(ConnId, FileName, ChunkIndex), Instant>,
    request_latency: Histogram,
    query_latency: Histogram,
}

impl Metrics {
    /// A message arrived on `conn` from `peer`; for a Query, when it started (the
    /// driver observes the answer's time with [`Metrics::query_answered`]).
    pub fn incoming(&mut self, peer: Option<&PeerAddr>, conn: ConnId, message: &Message) -> Option<Instant> {
        match message {
            Message::Peer(PeerMessage::Upload { chunk, data, .. }) => self.received(conn, peer, chunk, data.len()),
            Message::Control(Control::Query { .. }) => return Some(Instant::now()),
            _ => {}
        }
        None
    }

    /// The node sends `envelope` to `peer` on `conn`.
    pub fn outgoing(&mut self, peer: Option<&PeerAddr>, conn: ConnId, envelope: &Envelope) {
        let encoded = envelope.encode();
        let prefixes = FRAME_PREFIX_LEN * (1 + usize::from(encoded.body.is_some()));
        let mut control = encoded.header.len() + prefixes;
        match &envelope.message {
            Message::Peer(PeerMessage::Download { chunk, .. }) => self.requested(conn, chunk),
            Message::Peer(PeerMessage::Upload { chunk, .. }) => self.sent(peer, chunk),
            _ => control += encoded.body.as_ref().map_or(0, |b| b.len()),
        }
        self.count_control(control_kind(&envelope.message), control);
    }

    /// An Upload's header went out ahead of its body, sent straight from the file.
    pub fn upload_header_sent(&mut self, header_len: usize) {
        self.count_control("requests", header_len + 2 * FRAME_PREFIX_LEN);
    }

    fn count_control(&mut self, kind: &'static str, bytes: usize) {
        *self.control_sent_by_kind.entry(kind).or_default() += bytes as u64;
    }

    /// What the node's events say about failures.
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::ChunkRejected { .. } => self.verification_failures += 1,
            Event::StorageFailed { .. } => self.storage_errors += 1,
            _ => {}
        }
    }

    /// We asked `conn` for `chunk`.
    fn requested(&mut self, conn: ConnId, chunk: &ChunkRef) {
        if self.requests.len() < MAX_TIMED_REQUESTS {
            self.requests.insert((conn, chunk.file.clone(), chunk.index), Instant::now());
        }
    }

    /// `peer` sent us `bytes` of `chunk` on `conn` (verified or not: what crossed the wire).
    fn received(&mut self, conn: ConnId, peer: Option<&PeerAddr>, chunk: &ChunkRef, bytes: usize) {
        flow(&mut self.received, peer).add(bytes);
        if let Some(asked) = self.requests.remove(&(conn, chunk.file.clone(), chunk.index)) {
            self.request_latency.observe(asked.elapsed());
        }
    }

    /// We sent `chunk` to `peer` (in a message, or straight from its file).
    pub fn sent(&mut self, peer: Option<&PeerAddr>, chunk: &ChunkRef) {
        flow(&mut self.sent, peer).add(chunk_len(chunk.size, chunk.index));
    }

    pub fn query_answered(&mut self, took: Duration) {
        self.query_latency.observe(took);
    }

    /// Requests on a closed connection will not be answered.
    pub fn forget(&mut self, conn: ConnId) {
        self.requests.retain(|(c, _, _), _| *c != conn);
    }

    /// The Prometheus text exposition of the counters and of `status`.
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::new();
        let held: u64 = status
            .sizes
            .iter()
            .zip(&status.local)
            .map(|(&size, local)| (local * f64::from(chunk_count(size))).round() as u64)
            .sum();
        let total: u64 = status.sizes.iter().map(|&size| u64::from(chunk_count(size))).sum();
        let gauges = [
            ("torronto_files", "Files this node knows of in the network.", status.num_files as u64),
            ("torronto_chunks_held", "Chunks this node holds, verified.", held),
            ("torronto_chunks_wanted", "Chunks of known files this node does not hold yet.", total - held.min(total)),
            ("torronto_links", "Peers this node is connected to.", status.peers.len() as u64),
            ("torronto_joined", "1 while the node has joined the network.", u64::from(status.joined)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        for (direction, flows) in [("received", &self.received), ("sent", &self.sent)] {
            let all = flows
                .values()
                .fold(Flow::default(), |a, f| Flow { chunks: a.chunks + f.chunks, bytes: a.bytes + f.bytes });
            for (what, value) in [("chunks", all.chunks), ("bytes", all.bytes)] {
                let name = format!("torronto_{direction}_{what}_total");
                let _ = writeln!(
                    out,
                    "# HELP {name} Chunk {what} {direction}, all peers.\n# TYPE {name} counter\n{name} {value}"
                );
            }
            for what in ["chunks", "bytes"] {
                let name = format!("torronto_peer_{direction}_{what}_total");
                let _ = writeln!(out, "# HELP {name} Chunk {what} {direction}, by peer.\n# TYPE {name} counter");
                for (peer, flow) in flows {
                    let value = if what == "chunks" { flow.chunks } else { flow.bytes };
                    let peer = peer.as_ref().map_or_else(|| "unknown".to_owned(), ToString::to_string);
                    let _ = writeln!(out, "{name}{{peer=\"{}\"}} {value}", label(&peer));
                }
            }
        }
        let counters = [
            (
                "torronto_verification_failures_total",
                "Chunks from peers that did not match the manifest.",
                self.verification_failures,
            ),
            ("torronto_storage_errors_total", "Storage operations that failed.", self.storage_errors),
            (
                "torronto_control_sent_bytes_total",
                "Protocol bytes sent to peers other than chunk payload (headers, lists, gossip).",
                self.control_sent_by_kind.values().sum(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let name = "torronto_control_sent_bytes_by_kind_total";
        let _ = writeln!(
            out,
            "# HELP {name} torronto_control_sent_bytes_total by kind of message: have, gossip, requests \
             (Download, Upload headers), file_lists (Add, Files, Manifest), other.\n# TYPE {name} counter"
        );
        // Every kind is listed from the start, at 0 until one is sent, so a rate over
        // the series never starts from a missing sample.
        for kind in CONTROL_KINDS {
            let value = self.control_sent_by_kind.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {value}");
        }
        self.request_latency.render(
            &mut out,
            "torronto_chunk_request_duration_seconds",
            "Time from asking a peer for a chunk to receiving it.",
        );
        self.query_latency.render(&mut out, "torronto_query_duration_seconds", "Time to answer a Query.");
        out
    }
}

/// The kinds [`control_kind`] sorts the control share into.
const CONTROL_KINDS: [&str; 5] = ["have", "gossip", "requests", "file_lists", "other"];

/// Which part of the control share `message` belongs to.
fn control_kind(message: &Message) -> &'static str {
    match message {
        Message::Peer(PeerMessage::Have(_)) => "have",
        Message::Peer(PeerMessage::Gossip(_)) => "gossip",
        Message::Peer(PeerMessage::Download { .. } | PeerMessage::Upload { .. }) => "requests",
        Message::Peer(
            PeerMessage::Add { .. }
            | PeerMessage::Files { .. }
            | PeerMessage::Manifest { .. }
            | PeerMessage::GetManifest { .. },
        ) => "file_lists",
        _ => "other",
    }
}

/// The flow of `peer`, found without allocating once it exists.
fn flow<'a>(flows: &'a mut BTreeMap<Option<PeerAddr>, Flow>, peer: Option<&PeerAddr>) -> &'a mut Flow {
    let key = peer.cloned();
    if !flows.contains_key(&key) {
        flows.insert(key.clone(), Flow::default());
    }
    flows.get_mut(&key).expect("inserted above")
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Answers scrapes on `listener` until the node stops.
pub async fn serve(listener: TcpListener, inputs: mpsc::Sender<Input>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let inputs = inputs.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), answer(stream, inputs)).await {
                tracing::debug!("metrics scrape timed out: {e}");
            }
        });
    }
}

/// One HTTP/1.x exchange: `GET /metrics` gets the text, anything else 404.
async fn answer(mut stream: TcpStream, inputs: mpsc::Sender<Input>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let wants_metrics = line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?");
    let (status, kind, body) = if wants_metrics {
        let (reply, text) = oneshot::channel();
        let _ = inputs.send(Input::Metrics(reply)).await;
        match text.await {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(_) => ("503 Service Unavailable", "text/plain", "the node is stopping\n".to_owned()),
        }
    } else {
        ("404 Not Found", "text/plain", "metrics are at /metrics\n".to_owned())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_counts_per_peer_and_in_all_and_histograms_are_cumulative() {
        let chunk = |index| ChunkRef { file: FileName::new("a.bin").unwrap(), size: 100_000, index: ChunkIndex(index) };
        let mut m = Metrics::default();
        let peer = PeerAddr::new("10.0.0.1", 7001);
        let upload = |index: u32, len: usize| -> Message {
            PeerMessage::upload(chunk(index), bytes::Bytes::from(vec![0; len])).into()
        };
        let download = Envelope { from: None, token: None, message: PeerMessage::download(chunk(0)).into() };
        let download_len = download.encode().header.len() + FRAME_PREFIX_LEN;
        m.outgoing(Some(&peer), ConnId(1), &download);
        assert!(m.incoming(Some(&peer), ConnId(1), &upload(0, 65_536)).is_none());
        m.incoming(None, ConnId(2), &upload(1, 34_464));
        m.sent(Some(&peer), &chunk(1));
        m.event(&Event::ChunkRejected { peer: peer.clone(), chunk: chunk(1) });
        m.query_answered(Duration::from_millis(2));
        let status = Status { num_files: 1, sizes: vec![100_000], local: vec![0.5], ..Status::default() };
        let text = m.render(&status);
        let control_line = format!("torronto_control_sent_bytes_total {download_len}");
        for line in [
            "torronto_files 1",
            "torronto_chunks_held 1",
            "torronto_chunks_wanted 1",
            "torronto_received_bytes_total 100000",
            "torronto_received_chunks_total 2",
            "torronto_peer_received_bytes_total{peer=\"10.0.0.1:7001\"} 65536",
            "torronto_peer_received_chunks_total{peer=\"unknown\"} 1",
            "torronto_sent_bytes_total 34464",
            "torronto_verification_failures_total 1",
            control_line.as_str(),
            "torronto_chunk_request_duration_seconds_count 1",
            "torronto_query_duration_seconds_bucket{le=\"0.001\"} 0",
            "torronto_query_duration_seconds_bucket{le=\"0.0025\"} 1",
            "torronto_query_duration_seconds_bucket{le=\"+Inf\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(label("a\"b\\\n"), "a\\\"b\\\\\\n");
    }
}
