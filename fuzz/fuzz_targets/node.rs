//! The state machine fed arbitrary sequences of connections, messages (all passed
//! through the real decoder first, so only what the wire accepts reaches it), storage
//! answers (successes and failures, in any order) and time. It must never panic, and
//! its status must stay self-consistent after every step.
#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use torronto_core::layout::{chunk_count, chunk_range};
use torronto_core::wire::{ChunkRef, FileEntry, FileRef, FrameDecoder, HaveEntry, MessageReader, Reply};
use torronto_core::{
    ChunkIndex, ChunkSet, Code, Config, ConnId, ConnInfo, Control, Digest, Envelope, FileName, LocalFile, Manifest,
    ManifestBuilder, Message, NetCommand, Node, PeerAddr, PeerMessage, Stamps, StorageCommand, StorageError,
    StorageEvent, Tombstone, Tuning,
};

const NAMES: [&str; 3] = ["a", "b", "dir/c"];
const SIZES: [u64; 5] = [0, 1, 65_536, 65_537, 200_000];

#[derive(Arbitrary, Debug)]
struct Input {
    join: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect { conn: u8, dialed: Option<u8>, local: bool },
    Disconnect { conn: u8 },
    DialFailed { peer: u8 },
    Raw { conn: u8, frames: Vec<Vec<u8>> },
    Msg { conn: u8, from: Option<u8>, msg: FMsg },
    Storage { pick: u8, ok: bool },
    Tick { ms: u16 },
}

#[derive(Arbitrary, Debug)]
struct FFile {
    name: u8,
    size: u8,
    /// 0 and 1: two real contents; anything else: a digest that matches nothing.
    seed: u8,
}

// Downloads carry any `UplinkDelay` and Uploads any `SentAt` and arrival stamps: the
// automatic upload limit's inputs, all of them a peer's claims.
#[derive(Arbitrary, Debug)]
enum FMsg {
    Join,
    Leave,
    Query { file: Option<u8> },
    Insert { name: u8 },
    Add { files: Vec<(FFile, Vec<u32>)> },
    Files { files: Vec<(FFile, Vec<u32>)> },
    Remove,
    Download { file: FFile, index: u32, uplink_delay: Option<u32> },
    Upload { file: FFile, index: u32, good: bool, stamps: Option<(u64, u64)> },
    Have { entries: Vec<(FFile, u32, bool)> },
    GetManifest { name: u8 },
    Manifest { file: FFile, good: bool },
    Reply { code: u8, about: Option<(u8, Option<(u8, u32)>)> },
    Delete { name: u8 },
    Tombstones { files: Vec<(FFile, u64)> },
}

fn content(size: u64, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed.wrapping_mul(17)) ^ (i >> 9) as u8).collect()
}

/// Manifests of every (size, seed) used, computed once: hashing dominates otherwise.
fn manifest(size: u64, seed: u8) -> Manifest {
    static CACHE: std::sync::OnceLock<Vec<(u64, u8, Manifest)>> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let mut v = Vec::new();
        for &size in &SIZES {
            for seed in 0..2u8 {
                let mut b = ManifestBuilder::new();
                b.update(&content(size, seed));
                v.push((size, seed, b.finish().expect("small")));
            }
        }
        v
    });
    cache.iter().find(|(s, d, _)| *s == size && *d == seed % 2).map(|(_, _, m)| m.clone()).expect("cached")
}

fn name(i: u8) -> FileName {
    FileName::new(NAMES[usize::from(i) % NAMES.len()]).expect("valid")
}

impl FFile {
    fn size(&self) -> u64 {
        SIZES[usize::from(self.size) % SIZES.len()]
    }
    fn digest(&self) -> Digest {
        match self.seed % 3 {
            s @ (0 | 1) => manifest(self.size(), s).digest(),
            _ => Digest([self.seed; 32]),
        }
    }
    fn index(&self, i: u32) -> ChunkIndex {
        ChunkIndex(i % chunk_count(self.size()).max(1))
    }
    fn entry(&self, chunks: &[u32]) -> FileEntry {
        let mut chunks: Vec<ChunkIndex> = chunks.iter().take(8).map(|&c| self.index(c)).collect();
        chunks.sort_unstable();
        chunks.dedup();
        if self.size() == 0 {
            chunks.clear();
        }
        FileEntry { name: name(self.name), size: self.size(), digest: self.digest(), chunks }
    }
}

fn peer(i: u8) -> PeerAddr {
    PeerAddr::new(format!("p{}", i % 4), 7001 + u16::from(i % 4))
}

fn build(msg: FMsg) -> Message {
    match msg {
        FMsg::Join => Control::Join.into(),
        FMsg::Leave => Control::Leave.into(),
        FMsg::Query { file } => Control::Query { file: file.map(name) }.into(),
        FMsg::Insert { name: n } => Control::Insert { path: format!("/src/{}", name(n)) }.into(),
        FMsg::Add { files } => {
            PeerMessage::Add { files: files.iter().take(6).map(|(f, c)| f.entry(c)).collect() }.into()
        }
        FMsg::Files { files } => {
            PeerMessage::Files { files: files.iter().take(6).map(|(f, c)| f.entry(c)).collect() }.into()
        }
        FMsg::Remove => PeerMessage::Remove.into(),
        FMsg::Delete { name: n } => Control::Delete { file: name(n) }.into(),
        FMsg::Tombstones { files } => PeerMessage::Tombstones(
            files
                .iter()
                .take(6)
                .map(|(f, time)| Tombstone { file: name(f.name), digest: f.digest(), time: *time })
                .collect(),
        )
        .into(),
        FMsg::Download { file, index, uplink_delay } => {
            let chunk = ChunkRef { file: name(file.name), size: file.size(), index: file.index(index) };
            PeerMessage::Download { chunk, uplink_delay }.into()
        }
        FMsg::Upload { file, index, good, stamps } => {
            let i = file.index(index);
            let r = chunk_range(file.size(), i);
            let mut data = content(file.size(), file.seed % 2)[r.start as usize..r.end as usize].to_vec();
            if !good {
                if let Some(b) = data.first_mut() {
                    *b ^= 1;
                }
            }
            let stamps = Stamps { sent: stamps.map(|s| s.0), arrived: stamps.map(|s| s.1) };
            let chunk = ChunkRef { file: name(file.name), size: file.size(), index: i };
            PeerMessage::Upload { chunk, data: Bytes::from(data), stamps }.into()
        }
        FMsg::Have { entries } => PeerMessage::Have(
            entries
                .iter()
                .take(8)
                .map(|(f, i, with_digest)| HaveEntry {
                    chunk: ChunkRef { file: name(f.name), size: f.size(), index: f.index(*i) },
                    digest: with_digest.then(|| f.digest()),
                })
                .collect(),
        )
        .into(),
        FMsg::GetManifest { name: n } => PeerMessage::GetManifest { file: name(n) }.into(),
        FMsg::Manifest { file, good } => {
            let m = manifest(file.size(), file.seed % 2);
            let mut hashes = m.to_body().to_vec();
            if !good {
                if let Some(b) = hashes.first_mut() {
                    *b ^= 1;
                }
            }
            PeerMessage::Manifest {
                file: name(file.name),
                size: file.size(),
                digest: file.digest(),
                hashes: hashes.into(),
            }
            .into()
        }
        FMsg::Reply { code, about } => Message::Reply(Reply {
            code: Code::from_number(i64::from(code % 7)),
            about: about.map(|(n, chunk)| FileRef {
                name: name(n),
                chunk: chunk.map(|(s, i)| (SIZES[usize::from(s) % SIZES.len()], ChunkIndex(i % 5))),
            }),
            ..Reply::default()
        }),
    }
}

/// Through the real encoder and decoder, so the node only sees what the wire accepts.
fn through_wire(env: &Envelope) -> Option<Envelope> {
    let mut buf = BytesMut::new();
    env.encode().write_tcp(&mut buf);
    let mut reader = MessageReader::new();
    while let Some(frame) = FrameDecoder::decode(&mut buf, reader.frame_limit()).ok()? {
        if let Some(e) = reader.push_frame(frame).ok()? {
            return Some(e);
        }
    }
    None
}

struct Harness {
    node: Node,
    now: u64,
    open: Vec<ConnId>,
    readers: std::collections::HashMap<ConnId, MessageReader>,
    storage: Vec<StorageCommand>,
}

impl Harness {
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            while let Some(cmd) = self.node.poll_net() {
                moved = true;
                if let NetCommand::Close(conn) = cmd {
                    if let Some(pos) = self.open.iter().position(|&c| c == conn) {
                        self.open.remove(pos);
                        self.readers.remove(&conn);
                        self.node.handle_disconnected(self.now, conn);
                    }
                }
            }
            while let Some(cmd) = self.node.poll_storage() {
                moved = true;
                if self.storage.len() < 256 {
                    self.storage.push(cmd);
                }
            }
            while self.node.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
        self.check();
    }

    fn check(&self) {
        let s = self.node.status();
        assert_eq!(s.num_files, s.files.len());
        for v in [s.local.len(), s.system.len(), s.least_replication.len(), s.weighted_least_replication.len()] {
            assert_eq!(v, s.files.len());
        }
        for i in 0..s.files.len() {
            let (l, y, w) = (s.local[i], s.system[i], s.weighted_least_replication[i]);
            assert!((0.0..=1.0).contains(&l) && (0.0..=1.0).contains(&y), "fractions out of range: {s:?}");
            assert!(l <= y, "local above system: {s:?}");
            assert!(f64::from(s.least_replication[i]) <= w + 1e-9, "least above average: {s:?}");
            assert!(w <= 1.0 + s.peers.len() as f64 + 1e-9, "more holders than participants: {s:?}");
        }
        // A connection speaks for at most one peer.
        assert!(
            s.peers.len() <= self.open.len(),
            "{} peers over {} connections: {:?}",
            s.peers.len(),
            self.open.len(),
            s.peers
        );
        let _ = self.node.poll_timeout();
    }

    fn answer(&mut self, pick: u8, ok: bool) {
        if self.storage.is_empty() {
            return;
        }
        let cmd = self.storage.remove(usize::from(pick) % self.storage.len());
        let fail = |what: &str| StorageError { code: Code::BadPermission, message: format!("{what} failed") };
        let event = match cmd {
            StorageCommand::Import { id, name, .. } => {
                let size = SIZES[name.as_str().len() % SIZES.len()];
                StorageEvent::Imported { id, result: if ok { Ok(manifest(size, 0)) } else { Err(fail("import")) } }
            }
            StorageCommand::Commit { id, .. } => {
                StorageEvent::Committed { id, result: if ok { Ok(()) } else { Err(fail("commit")) } }
            }
            StorageCommand::Read { conn, chunk, push } => {
                let r = chunk_range(chunk.size, chunk.index);
                let result =
                    if ok { Ok(Bytes::from(vec![0u8; (r.end - r.start) as usize])) } else { Err(fail("read")) };
                StorageEvent::Read { conn, chunk, push, result }
            }
            StorageCommand::Write { chunk, .. } => {
                StorageEvent::Written { chunk, result: if ok { Ok(()) } else { Err(fail("write")) } }
            }
            StorageCommand::Torrent { conn, file, .. } => StorageEvent::no_bittorrent(conn, file),
            StorageCommand::AddTorrent { id, .. } => StorageEvent::no_bittorrent_add(id),
            StorageCommand::AddFinished { .. }
            | StorageCommand::Discard { .. }
            | StorageCommand::Prepare { .. }
            | StorageCommand::Finalize { .. }
            | StorageCommand::Delete { .. }
            | StorageCommand::SaveTombstones(_) => return,
        };
        self.node.handle_storage(self.now, event);
    }
}

fuzz_target!(|input: Input| {
    let local = manifest(200_000, 0);
    let mut node = Node::new(Config {
        me: PeerAddr::new("127.0.0.1", 7000),
        peers: (0..4).map(peer).collect(),
        token: Some("t".into()),
        insert_from: vec!["/in".into()],
        seed: 1,
        tuning: Tuning { auto_upload_limit: true, ..Tuning::default() },
        private: None,
    });
    node.add_local_file(LocalFile {
        name: name(0),
        have: ChunkSet::full(local.chunk_count()),
        manifest: local,
        stored_as: None,
        published: true,
    });
    let partial = manifest(65_537, 1);
    let mut have = ChunkSet::new(partial.chunk_count());
    have.insert(ChunkIndex(1));
    node.add_local_file(LocalFile { name: name(1), have, manifest: partial, stored_as: None, published: false });
    let mut h = Harness { node, now: 0, open: Vec::new(), readers: Default::default(), storage: Vec::new() };
    if input.join {
        h.node.join(0);
    }
    h.drain();
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Connect { conn, dialed, local } => {
                let conn = ConnId(u64::from(conn % 8));
                if !h.open.contains(&conn) {
                    h.open.push(conn);
                    h.readers.insert(conn, MessageReader::new());
                    h.node.handle_connected(h.now, conn, ConnInfo { dialed: dialed.map(peer), local, peer: None });
                }
            }
            Op::Disconnect { conn } => {
                let conn = ConnId(u64::from(conn % 8));
                if let Some(pos) = h.open.iter().position(|&c| c == conn) {
                    h.open.remove(pos);
                    h.readers.remove(&conn);
                    h.node.handle_disconnected(h.now, conn);
                }
            }
            Op::DialFailed { peer: p } => h.node.handle_dial_failed(h.now, &peer(p)),
            Op::Raw { conn, frames } => {
                let conn = ConnId(u64::from(conn % 8));
                for frame in frames.into_iter().take(4) {
                    let Some(reader) = h.readers.get_mut(&conn) else { break };
                    if frame.len() > reader.frame_limit() {
                        break;
                    }
                    match reader.push_frame(Bytes::from(frame)) {
                        Ok(Some(env)) => h.node.handle_message(h.now, conn, env),
                        Ok(None) => {}
                        Err(e) => h.node.handle_malformed(h.now, conn, e.to_string()),
                    }
                    h.drain();
                }
            }
            Op::Msg { conn, from, msg } => {
                let conn = ConnId(u64::from(conn % 8));
                let token = matches!(msg, FMsg::Join | FMsg::Leave).then(|| "t".to_string());
                let env = Envelope { from: from.map(peer), token, message: build(msg) };
                if let Some(env) = through_wire(&env) {
                    h.node.handle_message(h.now, conn, env);
                }
            }
            Op::Storage { pick, ok } => h.answer(pick, ok),
            Op::Tick { ms } => {
                h.now += u64::from(ms) * 16;
                if h.node.poll_timeout().is_some_and(|t| t <= h.now) {
                    h.node.handle_timeout(h.now);
                }
            }
        }
        h.drain();
    }
});
