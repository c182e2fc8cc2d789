//! Whole-network scenarios: several `Node`s joined through an in-memory network (every
//! message goes through the real encoder and decoder), storage in memory, a fake clock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use torronto_core::layout::{chunk_range, CHUNK_SIZE};
use torronto_core::manifest::hash_chunk;
use torronto_core::wire::{frame_prefix, FrameDecoder, MessageReader, Reply};
use torronto_core::{
    ChunkRef, Code, Config, ConnId, ConnInfo, Control, Envelope, Event, FileName, ImportId, Manifest, ManifestBuilder,
    Message, NetCommand, Node, PeerAddr, PeerMessage, Refusal, Status, StorageCommand, StorageError, StorageEvent,
    Tuning,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// One simulated machine: a node, its folder, and files on its disk outside the folder.
struct Machine {
    node: Node,
    /// Paths a user could insert from.
    outside: HashMap<String, Vec<u8>>,
    imports: HashMap<ImportId, (Vec<u8>, Manifest)>,
    /// Every file of the folder, partial ones included.
    folder: BTreeMap<FileName, Vec<u8>>,
    finalized: Vec<FileName>,
    /// Corrupts every chunk it uploads.
    liar: bool,
    /// Refuses writes, as a full disk does.
    disk_full: bool,
    /// Sends the Uploads it is asked to read itself, as the native node does with
    /// sendfile, and answers `Sent` rather than `Read`.
    sends_stored: bool,
    /// Hashes Upload data itself and hands core the hash, as the browser peer does
    /// with WebCrypto.
    hashes_uploads: bool,
    /// Chunks this machine asked for, in order.
    downloads: Vec<u32>,
    events: Vec<Event>,
}

struct Net {
    machines: Vec<Machine>,
    /// (machine, conn) -> (machine, conn) at the other end.
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    /// Control connections: (machine, conn) -> replies received.
    clients: HashMap<(usize, ConnId), Vec<Reply>>,
    in_flight: VecDeque<(usize, ConnId, Bytes)>,
    /// Links with a rate (`shape`): bytes on their way, by arrival time and order sent.
    shaped: BTreeMap<(u64, u64), (usize, ConnId, Bytes)>,
    /// Per machine: its uplink and downlink in bytes per millisecond, if limited, and
    /// when each is free again (one queue each, as an interface's).
    rates: Vec<Option<(u64, u64)>>,
    up_free: Vec<u64>,
    down_free: Vec<u64>,
    /// Per link end: when the last message sent on it that keeps its place behind chunk
    /// bodies arrives; one that may overtake them does not overtake it (see `transmit`).
    in_order_until: HashMap<(usize, ConnId), u64>,
    sent_order: u64,
    /// (from, to): what machine `from` sends machine `to` is lost on the way.
    muted: HashSet<(usize, usize)>,
    readers: HashMap<(usize, ConnId), MessageReader>,
    next_conn: u64,
    now: u64,
}

fn addr(i: usize) -> PeerAddr {
    PeerAddr::new("10.0.0.1", 7000 + i as u16)
}

fn name(s: &str) -> FileName {
    FileName::new(s).unwrap()
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (((i as u64 * 2654435761) >> 7) as u8) ^ seed).collect()
}

/// Where a message goes among those a node's writer has queued on a link.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queueing {
    /// A chunk body: behind what was queued before it.
    Body,
    /// A request or Have: before the chunk bodies queued, not before other messages.
    Overtakes,
    /// Anything else: behind all queued before it.
    Keeps,
}

impl Net {
    /// `n` machines, each with every other in its peers file.
    fn new(n: usize) -> Self {
        // Haves at once: `run` lets no time pass unless asked to.
        Self::with_tuning(n, Tuning { have_delay: 0, ..Tuning::default() })
    }

    fn with_tuning(n: usize, tuning: Tuning) -> Self {
        Self::with_seeds(n, tuning, 0)
    }

    /// Nodes seeded from `salt` (the same salt, the same run).
    fn with_seeds(n: usize, tuning: Tuning, salt: u64) -> Self {
        let machines = (0..n)
            .map(|i| Machine {
                node: Node::new(Config {
                    me: addr(i),
                    peers: (0..n).map(addr).collect(),
                    token: Some("secret".into()),
                    insert_from: Vec::new(),
                    seed: i as u64 + 1 + salt * 1_000,
                    tuning: tuning.clone(),
                    private: None,
                }),
                outside: HashMap::new(),
                imports: HashMap::new(),
                folder: BTreeMap::new(),
                finalized: Vec::new(),
                liar: false,
                disk_full: false,
                sends_stored: false,
                hashes_uploads: false,
                downloads: Vec::new(),
                events: Vec::new(),
            })
            .collect();
        Net {
            machines,
            links: HashMap::new(),
            clients: HashMap::new(),
            in_flight: VecDeque::new(),
            shaped: BTreeMap::new(),
            rates: vec![None; n],
            up_free: vec![0; n],
            down_free: vec![0; n],
            in_order_until: HashMap::new(),
            sent_order: 0,
            muted: HashSet::new(),
            readers: HashMap::new(),
            next_conn: 1,
            now: 0,
        }
    }

    /// Sends a control message on a fresh client connection; returns that connection.
    fn control(&mut self, m: usize, message: Control, local: bool, token: Option<&str>) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.clients.insert((m, conn), Vec::new());
        let now = self.now;
        let node = &mut self.machines[m].node;
        node.handle_connected(now, conn, ConnInfo { dialed: None, local, peer: None });
        let env = Envelope { from: None, token: token.map(String::from), message: message.into() };
        node.handle_message(now, conn, env);
        conn
    }

    /// Sends another control message on client connection `conn`.
    fn again(&mut self, m: usize, conn: ConnId, message: Control, token: Option<&str>) {
        let env = Envelope { from: None, token: token.map(String::from), message: message.into() };
        self.machines[m].node.handle_message(self.now, conn, env);
    }

    /// Runs a control action to completion and returns its reply.
    fn ask(&mut self, m: usize, message: Control) -> Reply {
        let conn = self.control(m, message, true, Some("secret"));
        self.run();
        // Over shaped links a reply may wait for messages still on their way.
        while self.clients[&(m, conn)].is_empty() && !self.shaped.is_empty() {
            self.run_for(1);
        }
        let replies = &self.clients[&(m, conn)];
        assert_eq!(replies.len(), 1, "one reply per control action: {replies:?}");
        replies[0].clone()
    }

    fn code(&mut self, m: usize, message: Control) -> Code {
        self.ask(m, message).code_or_ok()
    }

    fn status(&mut self, m: usize) -> Status {
        *self.ask(m, Control::Query { file: None }).status.expect("Query answers a status")
    }

    fn insert(&mut self, m: usize, file: &str, data: Vec<u8>) -> Code {
        let path = format!("/home/user/{file}");
        self.machines[m].outside.insert(path.clone(), data);
        self.code(m, Control::Insert { path })
    }

    /// Delivers messages and runs storage until nothing moves; advances the clock to
    /// pending timeouts only when `until_quiet` allows.
    fn run(&mut self) {
        self.run_for(0);
    }

    /// As `run`, also letting up to `millis` of fake time pass for timers.
    fn run_for(&mut self, millis: u64) {
        let end = self.now + millis;
        loop {
            let mut moved = false;
            for m in 0..self.machines.len() {
                moved |= self.drain(m);
            }
            if let Some((m, conn, bytes)) = self.in_flight.pop_front() {
                self.deliver(m, conn, bytes);
                continue;
            }
            if moved {
                continue;
            }
            let next = self.machines.iter().filter_map(|x| x.node.poll_timeout()).min();
            if let Some(&(at, order)) = self.shaped.keys().next() {
                if at <= end && next.is_none_or(|t| at <= t) {
                    self.now = self.now.max(at);
                    let (m, conn, bytes) = self.shaped.remove(&(at, order)).expect("just seen");
                    self.deliver(m, conn, bytes);
                    continue;
                }
            }
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for x in &mut self.machines {
                        if x.node.poll_timeout().is_some_and(|t| t <= now) {
                            x.node.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    // The time asked for has passed, whether or not anything happened in it.
                    self.now = end;
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, m: usize, conn: ConnId, bytes: Bytes) {
        let now = self.now;
        let reader = self.readers.entry((m, conn)).or_default();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut messages = Vec::new();
        while let Some(frame) = FrameDecoder::decode(&mut buf, reader.frame_limit()).expect("frames fit") {
            match reader.push_frame(frame) {
                Ok(Some(env)) => messages.push(Ok(env)),
                Ok(None) => {}
                Err(e) => messages.push(Err(e)),
            }
        }
        for msg in messages {
            if let Some(replies) = self.clients.get_mut(&(m, conn)) {
                if let Ok(Envelope { message: Message::Reply(r), .. }) = msg {
                    replies.push(r);
                }
                continue;
            }
            let machine = &mut self.machines[m];
            let node = &mut machine.node;
            match msg {
                Ok(env) if machine.hashes_uploads => {
                    let hash = match &env.message {
                        Message::Peer(PeerMessage::Upload { data, .. }) => Some(hash_chunk(data)),
                        _ => None,
                    };
                    node.handle_message_hashed(now, conn, env, hash)
                }
                Ok(env) => node.handle_message(now, conn, env),
                Err(e) => node.handle_malformed(now, conn, e.to_string()),
            }
        }
    }

    /// Carries out one machine's outputs; returns whether there were any.
    fn drain(&mut self, m: usize) -> bool {
        let mut moved = false;
        let now = self.now;
        while let Some(cmd) = self.machines[m].node.poll_net() {
            moved = true;
            match cmd {
                NetCommand::Send { conn, envelope } => {
                    if let Message::Peer(PeerMessage::Download { chunk, .. }) = &envelope.message {
                        self.machines[m].downloads.push(chunk.index.get());
                    }
                    let mut envelope = envelope;
                    if self.machines[m].liar {
                        if let Message::Peer(PeerMessage::Upload { data, .. }) = &mut envelope.message {
                            let mut bad = data.to_vec();
                            bad[0] ^= 0xff;
                            *data = Bytes::from(bad);
                        }
                    }
                    let order = match &envelope.message {
                        Message::Peer(p) if p.may_overtake_uploads() => Queueing::Overtakes,
                        Message::Peer(PeerMessage::Upload { .. }) => Queueing::Body,
                        _ => Queueing::Keeps,
                    };
                    let mut buf = BytesMut::new();
                    envelope.encode().write_tcp(&mut buf);
                    if self.clients.contains_key(&(m, conn)) {
                        // A reply to a control client: loop it back to the client's inbox.
                        let mut reader = MessageReader::new();
                        while let Some(f) = FrameDecoder::decode(&mut buf, reader.frame_limit()).unwrap() {
                            if let Ok(Some(Envelope { message: Message::Reply(r), .. })) = reader.push_frame(f) {
                                self.clients.get_mut(&(m, conn)).unwrap().push(r);
                            }
                        }
                    } else {
                        self.transmit(m, conn, buf.freeze(), order);
                    }
                }
                NetCommand::Dial(peer) => {
                    let Some(to) = (0..self.machines.len()).find(|&i| addr(i) == peer) else {
                        self.machines[m].node.handle_dial_failed(now, &peer);
                        continue;
                    };
                    let (a, b) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
                    self.next_conn += 2;
                    self.links.insert((m, a), (to, b));
                    self.links.insert((to, b), (m, a));
                    self.machines[to].node.handle_connected(
                        now,
                        b,
                        ConnInfo { dialed: None, local: false, peer: None },
                    );
                    self.machines[m].node.handle_connected(
                        now,
                        a,
                        ConnInfo { dialed: Some(peer), local: false, peer: None },
                    );
                }
                NetCommand::Close(conn) => self.close(m, conn),
            }
        }
        while let Some(cmd) = self.machines[m].node.poll_storage() {
            moved = true;
            let event = match cmd {
                StorageCommand::Read { conn, chunk, push } if self.machines[m].sends_stored => {
                    self.send_stored(m, conn, &chunk);
                    Some(StorageEvent::Sent { conn, chunk, push, result: Ok(()) })
                }
                cmd => self.machines[m].storage(cmd),
            };
            if let Some(event) = event {
                self.machines[m].node.handle_storage(now, event);
            }
        }
        while let Some(e) = self.machines[m].node.poll_event() {
            self.machines[m].events.push(e);
        }
        moved
    }

    /// An Upload written the way a driver sending from its files does: the header from
    /// `Envelope::upload_header`, then the chunk's bytes as the body frame.
    fn send_stored(&mut self, m: usize, conn: ConnId, chunk: &ChunkRef) {
        let r = chunk_range(chunk.size, chunk.index);
        let body = &self.machines[m].folder[&chunk.file][r.start as usize..r.end as usize];
        let header = Envelope::upload_header(&addr(m), chunk, None);
        let mut buf = BytesMut::new();
        for frame in [&header[..], body] {
            buf.extend_from_slice(&frame_prefix(frame.len()));
            buf.extend_from_slice(frame);
        }
        self.transmit(m, conn, buf.freeze(), Queueing::Body);
    }

    /// Puts bytes machine `m` sends on `conn` on their way: at once, or through the
    /// sender's uplink and the receiver's downlink queues when their rates are limited.
    /// Requests and Haves ([`Queueing::Overtakes`]) take their share of both links but wait
    /// in neither queue, as a node's writer sends them before the chunk bodies queued
    /// with them and TCP keeps what waits in the network short (these queues hold all a
    /// node has been asked for); they do not overtake other messages sent before them.
    fn transmit(&mut self, m: usize, conn: ConnId, bytes: Bytes, order: Queueing) {
        let Some(&(to, their)) = self.links.get(&(m, conn)) else { return };
        if self.muted.contains(&(m, to)) {
            return;
        }
        let (up, down) = (self.rates[m].map(|r| r.0), self.rates[to].map(|r| r.1));
        if up.is_none() && down.is_none() {
            self.in_flight.push_back((to, their, bytes));
            return;
        }
        let len = bytes.len() as u64;
        let overtakes = order == Queueing::Overtakes;
        let mut at = self.now;
        if let Some(rate) = up {
            let took = len.div_ceil(rate);
            self.up_free[m] = self.up_free[m].max(self.now) + took;
            at = if overtakes { at + took } else { self.up_free[m] };
        }
        if let Some(rate) = down {
            let took = len.div_ceil(rate);
            self.down_free[to] = self.down_free[to].max(at) + took;
            at = if overtakes { at + took } else { self.down_free[to] };
        }
        let until = self.in_order_until.entry((m, conn)).or_default();
        match order {
            Queueing::Overtakes => at = at.max(*until),
            Queueing::Keeps => *until = at,
            Queueing::Body => {}
        }
        self.sent_order += 1;
        self.shaped.insert((at, self.sent_order), (to, their, bytes));
    }

    /// Loses whatever machine `from` sends machine `to` from now on, the link staying up:
    /// a path that stopped carrying data one way.
    fn mute(&mut self, from: usize, to: usize) {
        self.muted.insert((from, to));
    }

    /// Limits machine `m`'s uplink and downlink to these many bytes per millisecond.
    fn shape(&mut self, m: usize, up: u64, down: u64) {
        self.rates[m] = Some((up, down));
    }

    fn close(&mut self, m: usize, conn: ConnId) {
        let now = self.now;
        self.clients.remove(&(m, conn));
        if let Some((to, their)) = self.links.remove(&(m, conn)) {
            self.links.remove(&(to, their));
            self.in_flight.retain(|(x, c, _)| !(*x == to && *c == their));
            self.shaped.retain(|_, (x, c, _)| !(*x == to && *c == their));
            self.machines[to].node.handle_disconnected(now, their);
        }
        self.machines[m].node.handle_disconnected(now, conn);
    }

    /// Cuts every link of machine `m` without a word, as a crash does.
    fn crash_links(&mut self, m: usize) {
        let conns: Vec<ConnId> = self.links.keys().filter(|(x, _)| *x == m).map(|(_, c)| *c).collect();
        for conn in conns {
            self.close(m, conn);
        }
    }

    fn join_all(&mut self) {
        for m in 0..self.machines.len() {
            assert_eq!(self.code(m, Control::Join), Code::Ok);
        }
    }

    fn file(&self, m: usize, file: &str) -> Option<&Vec<u8>> {
        let x = &self.machines[m];
        let n = name(file);
        x.finalized.contains(&n).then(|| &x.folder[&n])
    }
}

impl Machine {
    fn storage(&mut self, cmd: StorageCommand) -> Option<StorageEvent> {
        Some(match cmd {
            StorageCommand::Import { id, path, within, .. } => {
                // Paths here are canonical already: no symlinks in this folder.
                let confined = within.map_or(Ok(()), |within| torronto_core::check_insert_source(&path, &within));
                let result = match (confined, self.outside.get(&path)) {
                    (Err(e), _) => Err(e),
                    (Ok(()), None) => {
                        Err(StorageError { code: Code::FileMissing, message: format!("{path}: no such file") })
                    }
                    (Ok(()), Some(data)) => {
                        let mut b = ManifestBuilder::new();
                        b.update(data);
                        let m = b.finish().unwrap();
                        self.imports.insert(id, (data.clone(), m.clone()));
                        Ok(m)
                    }
                };
                StorageEvent::Imported { id, result }
            }
            StorageCommand::Commit { id, name, .. } => {
                let (data, _) = self.imports.remove(&id).unwrap();
                self.folder.insert(name.clone(), data);
                self.finalized.push(name);
                StorageEvent::Committed { id, result: Ok(()) }
            }
            StorageCommand::Discard { id } => {
                self.imports.remove(&id);
                return None;
            }
            StorageCommand::Prepare { file, manifest } => {
                self.folder.insert(file.clone(), vec![0; manifest.size() as usize]);
                StorageEvent::Prepared { file, result: Ok(()) }
            }
            StorageCommand::Read { conn, chunk, push } => {
                let r = chunk_range(chunk.size, chunk.index);
                let data = Bytes::copy_from_slice(&self.folder[&chunk.file][r.start as usize..r.end as usize]);
                StorageEvent::Read { conn, chunk, push, result: Ok(data) }
            }
            StorageCommand::Write { chunk, data } => {
                if self.disk_full {
                    let error = StorageError { code: Code::BadPermission, message: "No space left on device".into() };
                    return Some(StorageEvent::Written { chunk, result: Err(error) });
                }
                let r = chunk_range(chunk.size, chunk.index);
                self.folder.get_mut(&chunk.file).unwrap()[r.start as usize..r.end as usize].copy_from_slice(&data);
                StorageEvent::Written { chunk, result: Ok(()) }
            }
            StorageCommand::Torrent { conn, file, .. } => StorageEvent::no_bittorrent(conn, file),
            StorageCommand::AddTorrent { id, .. } => StorageEvent::no_bittorrent_add(id),
            StorageCommand::AddFinished { .. } => return None,
            StorageCommand::Finalize { file, .. } => {
                self.finalized.push(file);
                return None;
            }
            StorageCommand::Delete { file, .. } => {
                self.folder.remove(&file);
                self.finalized.retain(|f| *f != file);
                return None;
            }
            StorageCommand::SaveTombstones(_) => return None,
        })
    }
}

fn assert_fully_replicated(net: &mut Net, file: &str, data: &[u8], participants: u32) {
    for m in 0..net.machines.len() {
        assert_eq!(net.file(m, file).map(Vec::as_slice), Some(data), "machine {m} holds {file}");
        let s = net.status(m);
        let i = s.files.iter().position(|f| f == file).unwrap();
        assert_eq!(
            (s.local[i], s.system[i], s.least_replication[i], s.weighted_least_replication[i]),
            (1.0, 1.0, participants, f64::from(participants)),
            "status of {file} on machine {m}"
        );
    }
}

/// Machine 0 inserts a 33-chunk file into a joined network of four; every machine ends
/// with it, each chunk fetched exactly once by each of the three others.
fn insert_and_replicate_to_four(net: &mut Net, seed: u8) {
    net.join_all();
    let data = content(10 * CHUNK_SIZE as usize + 123, seed);
    assert_eq!(net.insert(0, "big.bin", data.clone()), Code::Ok);
    net.run();
    assert_fully_replicated(net, "big.bin", &data, 4);
    let fetched: u64 = (1..4).map(|m| net.status(m).chunks_fetched).sum();
    let served: u64 = (0..4).map(|m| net.status(m).chunks_served).sum();
    assert_eq!((fetched, served), (33, 33), "every chunk fetched once by each of three nodes");
}

#[test]
fn four_nodes_replicate_an_inserted_file() {
    let mut net = Net::new(4);
    insert_and_replicate_to_four(&mut net, 1);
    let s = net.status(2);
    assert_eq!(s.num_files, 1);
    assert_eq!(s.peers.len(), 3);
    assert!(s.joined);
}

#[test]
fn nodes_that_send_chunks_straight_from_storage_replicate_the_same() {
    let mut net = Net::new(4);
    net.machines[0].sends_stored = true;
    net.machines[2].sends_stored = true;
    insert_and_replicate_to_four(&mut net, 2);
    assert!(net.status(0).chunks_served > 0, "the seeder served by sending itself");
}

#[test]
fn requests_to_a_peer_take_consecutive_chunks() {
    // Runs of chunks, not scattered ones: files are written mostly in order.
    let mut net = Net::new(2);
    net.join_all();
    let data = content(300 * CHUNK_SIZE as usize, 3);
    assert_eq!(net.insert(0, "runs.bin", data.clone()), Code::Ok);
    net.run();
    assert_fully_replicated(&mut net, "runs.bin", &data, 2);
    let asked = &net.machines[1].downloads;
    assert_eq!(asked.len(), 300);
    let jumps = asked.windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert!(jumps <= 2, "{jumps} jumps in {asked:?}");
}

#[test]
fn status_counts_exactly_while_files_spread() {
    let mut net = Net::new(3);
    net.join_all();
    let data = content(4 * CHUNK_SIZE as usize, 2);
    // Inserted on a node that has not joined: only it knows the file.
    let mut solo = Net::new(1);
    assert_eq!(solo.insert(0, "f", data.clone()), Code::Ok);
    let s = solo.status(0);
    assert_eq!((s.local[0], s.system[0], s.least_replication[0], s.weighted_least_replication[0]), (1.0, 1.0, 1, 1.0));
    assert!(!s.joined);

    // Insert on 0 but hold back all traffic: 0 holds it alone, peers know nothing yet.
    let conn = net.control(0, Control::Insert { path: "/x/f".into() }, true, Some("secret"));
    net.machines[0].outside.insert("/x/f".into(), data.clone());
    let _ = conn;
    net.run();
    assert_fully_replicated(&mut net, "f", &data, 3);

    // A peer leaves gracefully: its chunks stop counting everywhere else.
    assert_eq!(net.code(2, Control::Leave), Code::Ok);
    let s = net.status(0);
    assert_eq!((s.least_replication[0], s.weighted_least_replication[0]), (2, 2.0));
    assert_eq!(s.peers.len(), 1);
    let s = net.status(2);
    assert_eq!((s.local[0], s.least_replication[0]), (1.0, 1), "the leaver keeps its copy and counts alone");
}

#[test]
fn partial_replication_is_reported_exactly() {
    let mut net = Net::new(2);
    net.join_all();
    let data = content(4 * CHUNK_SIZE as usize, 3);
    // Node 1's disk is full: it learns of the file but cannot store a chunk.
    net.machines[1].disk_full = true;
    assert_eq!(net.insert(0, "f", data), Code::Ok);
    net.run();
    let s = net.status(1);
    assert_eq!((s.local[0], s.system[0], s.least_replication[0], s.weighted_least_replication[0]), (0.0, 1.0, 1, 1.0));
    assert!(net.machines[1].events.iter().any(|e| matches!(e, Event::StorageFailed { .. })));
    // Space comes back: fetching resumes after the back-off and completes.
    net.machines[1].disk_full = false;
    net.run_for(5_000);
    let s = net.status(1);
    assert_eq!((s.local[0], s.least_replication[0], s.weighted_least_replication[0]), (1.0, 2, 2.0));
}

#[test]
fn control_error_codes() {
    let mut net = Net::new(2);
    assert_eq!(net.code(0, Control::Leave), Code::Disconnected, "leave before join");
    assert_eq!(net.code(0, Control::Join), Code::Ok);
    assert_eq!(net.code(0, Control::Join), Code::Connected, "join twice");
    assert_eq!(net.code(0, Control::Insert { path: "/nope/missing".into() }), Code::FileMissing);
    assert_eq!(net.insert(0, "a", content(10, 0)), Code::Ok);
    assert_eq!(net.insert(0, "a", content(10, 0)), Code::FileExists, "same file again");
    let torrent = |file: &str| Control::Torrent { file: name(file), trackers: vec![] };
    assert_eq!(net.code(0, torrent("nope")), Code::FileMissing, "export of a file not held");
    // Held: the node asks its storage, which here speaks no BitTorrent.
    assert_eq!(net.code(0, torrent("a")), Code::BadRequest, "export by a driver without BitTorrent");
    assert_eq!(net.insert(0, "a", content(11, 0)), Code::FileExists, "other content, same name");
    assert_eq!(net.code(0, Control::Insert { path: "/tmp/..".into() }), Code::BadRequest);
    assert_eq!(net.code(0, Control::Leave), Code::Ok);
    assert_eq!(net.code(0, Control::Leave), Code::Disconnected, "leave twice");
}

#[test]
fn control_needs_the_token_on_every_connection_and_guesses_are_throttled() {
    let mut net = Net::new(1);
    let query = || Control::Query { file: None };
    // Loopback (the owner's machine, but also every other user's) needs it too.
    let c = net.control(0, query(), true, None);
    let d = net.control(0, query(), false, Some("wrong"));
    let e = net.control(0, query(), true, Some("secret"));
    net.run();
    assert_eq!(net.clients[&(0, e)][0].code, Some(Code::Ok), "the right token is answered at once");
    assert!(net.clients[&(0, c)].is_empty() && net.clients[&(0, d)].is_empty(), "wrong tokens wait");
    net.run_for(100);
    let refusal = &net.clients[&(0, c)][0];
    assert_eq!(refusal.code, Some(Code::BadPermission));
    assert!(refusal.reason.as_deref().is_some_and(|r| r.contains("token")), "{refusal:?}");
    assert!(net.clients[&(0, d)].is_empty(), "the second wrong token, node-wide, waits longer");
    net.run_for(200);
    assert_eq!(net.clients[&(0, d)][0].code, Some(Code::BadPermission));

    // One connection guessing on: answered ever more slowly, closed at its third.
    let g = net.control(0, query(), false, Some("a"));
    for guess in ["b", "c", "d"] {
        net.again(0, g, query(), Some(guess));
    }
    net.run_for(1_000);
    assert_eq!(net.clients[&(0, g)].len(), 1, "the 3rd wrong token, node-wide, after 400 ms more");
    net.run_for(10_000);
    assert!(!net.clients.contains_key(&(0, g)), "closed after its third wrong token");
    let reported = net.machines[0].events.iter().filter(|e| matches!(e, Event::TokenRefused { .. })).count();
    assert_eq!(reported, 1, "one burst, reported once");
}

#[test]
fn remote_clients_insert_only_from_the_insert_from_folders() {
    let mut net = Net::new(1);
    for path in ["/srv/in/a", "/srv/inside/b", "/home/user/c"] {
        net.machines[0].outside.insert(path.into(), content(10, path.len() as u8));
    }
    let remote = |net: &mut Net, path: &str| {
        let conn = net.control(0, Control::Insert { path: path.into() }, false, Some("secret"));
        net.run();
        net.clients[&(0, conn)][0].clone()
    };
    let refused = remote(&mut net, "/srv/in/a");
    assert_eq!(refused.code, Some(Code::BadPermission), "no --insert-from: no remote insert by path");
    let reason = refused.reason.unwrap();
    assert!(reason.contains("--insert-from") && reason.contains("file picker"), "{reason}");

    let tuning = Tuning { have_delay: 0, ..Tuning::default() };
    let config = Config {
        me: addr(0),
        peers: Vec::new(),
        token: Some("secret".into()),
        insert_from: vec!["/srv/in".into()],
        seed: 1,
        tuning,
        private: None,
    };
    net.machines[0].node = Node::new(config);
    assert_eq!(remote(&mut net, "/srv/in/a").code_or_ok(), Code::Ok);
    assert_eq!(remote(&mut net, "/srv/inside/b").code_or_ok(), Code::BadPermission, "a prefix is not a folder");
    assert_eq!(remote(&mut net, "/home/user/c").code_or_ok(), Code::BadPermission);
    // The owner's CLI on the machine may insert any file.
    assert_eq!(net.code(0, Control::Insert { path: "/home/user/c".into() }), Code::Ok);
}

#[test]
fn peer_messages_to_a_node_not_joined_are_refused() {
    let mut net = Net::new(2);
    // Node 0 joins; node 1 has not: 0's Add is answered ErrDisconnected and 0 is alone.
    assert_eq!(net.code(0, Control::Join), Code::Ok);
    assert!(net.status(0).peers.is_empty());
    // When 1 joins it dials 0 and both see each other.
    assert_eq!(net.code(1, Control::Join), Code::Ok);
    assert_eq!(net.status(0).peers, vec![addr(1).to_string()]);
    assert_eq!(net.status(1).peers, vec![addr(0).to_string()]);
}

#[test]
fn a_peer_not_in_the_peers_file_can_join() {
    let mut net = Net::new(3);
    // Node 2 knows 0 only; 0 and 1 do not list 2.
    for m in 0..2 {
        net.machines[m].node = Node::new(Config {
            me: addr(m),
            peers: vec![addr(0), addr(1)],
            token: Some("secret".into()),
            insert_from: Vec::new(),
            seed: 9,
            tuning: Tuning { have_delay: 0, ..Tuning::default() },
            private: None,
        });
    }
    net.machines[2].node = Node::new(Config {
        me: addr(2),
        peers: vec![addr(0)],
        token: Some("secret".into()),
        insert_from: Vec::new(),
        seed: 3,
        tuning: Tuning { have_delay: 0, ..Tuning::default() },
        private: None,
    });
    net.join_all();
    let data = content(3 * CHUNK_SIZE as usize, 4);
    assert_eq!(net.insert(1, "via-0", data.clone()), Code::Ok);
    net.run();
    // 2 is connected to 0 only, so it counts 2 participants; 0 and 1 see all 3.
    assert_eq!(net.file(2, "via-0"), Some(&data));
    assert_eq!(net.status(0).least_replication, vec![3]);
    assert_eq!(net.status(2).least_replication, vec![2]);
}

#[test]
fn leave_right_after_insert_loses_nothing() {
    let mut net = Net::new(3);
    net.join_all();
    let data = content(40 * CHUNK_SIZE as usize + 5, 5);
    net.machines[0].outside.insert("/d/only-here".into(), data.clone());
    // Insert and Leave back to back, before any peer has fetched anything.
    let ins = net.control(0, Control::Insert { path: "/d/only-here".into() }, true, Some("secret"));
    for _ in 0..3 {
        net.drain(0); // import, commit, announce; nothing delivered yet
    }
    assert_eq!(net.clients[&(0, ins)][0].code, Some(Code::Ok));
    let leave = net.control(0, Control::Leave, true, Some("secret"));
    net.run();
    let reply = &net.clients[&(0, leave)][0];
    assert_eq!((reply.code, reply.unconfirmed), (Some(Code::Ok), None));
    // The leaver's folder is gone; the others still complete the file between them.
    net.machines[0].folder.clear();
    net.run();
    for m in 1..3 {
        assert_eq!(net.file(m, "only-here"), Some(&data), "machine {m}");
        let s = net.status(m);
        assert_eq!((s.least_replication[0], s.system[0]), (2, 1.0));
    }
}

/// Found by the simulator (seeds 378, 1270, 1536): an empty file has no chunk, so no
/// leave plan held it, and a leave answered OK lost a file only the leaver had.
#[test]
fn leave_hands_over_an_empty_file_only_it_holds() {
    let mut net = Net::new(2);
    // A peer that fetches only what it asks for: it hears of the file, holds nothing.
    net.machines[1].node.fetch_on_request();
    net.join_all();
    assert_eq!(net.insert(0, "empty", Vec::new()), Code::Ok);
    net.run();
    assert_eq!(net.file(1, "empty"), None);
    let leave = net.control(0, Control::Leave, true, Some("secret"));
    net.run();
    let reply = &net.clients[&(0, leave)][0];
    assert_eq!((reply.code, reply.unconfirmed), (Some(Code::Ok), None));
    assert_eq!(net.file(1, "empty"), Some(&Vec::new()), "handed over before the leave answered");
}

#[test]
fn corrupt_chunks_are_rejected_and_the_liar_cut_off() {
    // Large enough that the liar, which never delivers and so is asked only two chunks
    // at a time, is asked enough to reach the strike limit.
    let data = content(120 * CHUNK_SIZE as usize, 6);
    // Nodes 0 and 1 both hold the file; then 1 starts lying and 2 and 3 join.
    let mut late = Net::new(4);
    for m in 0..2 {
        assert_eq!(late.code(m, Control::Join), Code::Ok);
    }
    assert_eq!(late.insert(0, "f", data.clone()), Code::Ok);
    late.run();
    assert_eq!(late.file(1, "f"), Some(&data));
    late.machines[1].liar = true;
    // Machine 3 checks hashes computed outside core, as the browser peer does.
    late.machines[3].hashes_uploads = true;
    for m in 2..4 {
        assert_eq!(late.code(m, Control::Join), Code::Ok);
    }
    late.run();
    for m in [2, 3] {
        assert_eq!(late.file(m, "f"), Some(&data), "machine {m} completes from honest peers");
        let events = &late.machines[m].events;
        let rejected =
            events.iter().filter(|e| matches!(e, Event::ChunkRejected { peer, .. } if *peer == addr(1))).count();
        assert_eq!(rejected, 3, "machine {m} rejects exactly up to the strike limit: {events:?}");
        assert!(events.contains(&Event::PeerBanned(addr(1))), "machine {m} cut the liar off");
        assert!(!late.status(m).peers.contains(&addr(1).to_string()));
    }
}

#[test]
fn crash_and_restart_keeps_verified_chunks() {
    let mut net = Net::new(2);
    net.join_all();
    let data = content(12 * CHUNK_SIZE as usize, 7);
    assert_eq!(net.insert(0, "f", data.clone()), Code::Ok);
    net.run();
    assert_eq!(net.file(1, "f"), Some(&data));
    // Node 1 vanishes without Remove: node 0 stops counting it and will redial.
    net.crash_links(1);
    let s = net.status(0);
    assert_eq!((s.least_replication[0], s.peers.len()), (1, 0));
    // Node 1 restarts from its disk and rejoins; it fetches nothing.
    let manifest = {
        let mut b = ManifestBuilder::new();
        b.update(&data);
        b.finish().unwrap()
    };
    let m1 = &mut net.machines[1];
    m1.events.clear();
    m1.node = Node::new(Config {
        me: addr(1),
        peers: vec![addr(0)],
        token: Some("secret".into()),
        insert_from: Vec::new(),
        seed: 5,
        tuning: Tuning { have_delay: 0, ..Tuning::default() },
        private: None,
    });
    m1.node.add_local_file(torronto_core::LocalFile {
        name: name("f"),
        have: torronto_core::ChunkSet::full(manifest.chunk_count()),
        manifest,
        stored_as: None,
        published: true,
    });
    assert_eq!(net.code(1, Control::Join), Code::Ok);
    net.run();
    assert_eq!(net.status(0).least_replication, vec![2]);
    assert!(!net.machines[1].events.iter().any(|e| matches!(e, Event::FileComplete { .. })), "nothing re-fetched");
}

#[test]
fn lost_peers_are_redialled() {
    let mut net = Net::new(2);
    net.join_all();
    net.crash_links(0);
    assert!(net.status(1).peers.is_empty());
    // Both sides redial after their back-off; the link is back within a few seconds.
    net.run_for(5_000);
    assert_eq!(net.status(1).peers, vec![addr(0).to_string()]);
}

#[test]
fn odd_sizes_replicate() {
    let mut net = Net::new(3);
    net.join_all();
    let sizes = [0, 1, CHUNK_SIZE as usize - 1, CHUNK_SIZE as usize, CHUNK_SIZE as usize + 1];
    for (k, size) in sizes.iter().enumerate() {
        assert_eq!(net.insert(k % 3, &format!("f{size}"), content(*size, k as u8)), Code::Ok);
    }
    net.run();
    for (k, size) in sizes.iter().enumerate() {
        assert_fully_replicated(&mut net, &format!("f{size}"), &content(*size, k as u8), 3);
    }
}

#[test]
fn many_files_replicate_across_many_nodes() {
    let tuning = Tuning { requests_per_peer: 4, ..Tuning { have_delay: 0, ..Tuning::default() } };
    let mut net = Net::with_tuning(6, tuning);
    net.join_all();
    let files: Vec<(String, Vec<u8>)> =
        (0..30).map(|k| (format!("dir{}/file{k}", k % 3), content(k * 9_000 + k % 2, k as u8))).collect();
    for (k, (file, data)) in files.iter().enumerate() {
        // Inserts come from paths whose base name is the file name.
        let base = file.rsplit('/').next().unwrap();
        assert_eq!(net.insert(k % 6, base, data.clone()), Code::Ok);
    }
    net.run();
    for (file, data) in &files {
        let base = file.rsplit('/').next().unwrap();
        assert_fully_replicated(&mut net, base, data, 6);
    }
}

#[test]
fn a_peer_fetching_on_request_takes_only_what_it_asks_for() {
    let mut net = Net::new(2);
    net.machines[1].node.fetch_on_request();
    net.join_all();
    assert_eq!(net.insert(0, "wanted", content(3 * CHUNK_SIZE as usize, 8)), Code::Ok);
    assert_eq!(net.insert(0, "other", content(2 * CHUNK_SIZE as usize, 9)), Code::Ok);
    net.run();
    let s = net.status(1);
    assert_eq!((s.num_files, s.local.clone()), (2, vec![0.0, 0.0]), "it knows both, holds neither");
    let now = net.now;
    net.machines[1].node.request_file(now, &name("wanted"));
    net.run();
    assert_eq!(net.file(1, "wanted"), Some(&content(3 * CHUNK_SIZE as usize, 8)));
    assert_eq!(net.file(1, "other"), None);
    // The chunk map shows who holds what.
    let conn = net.control(0, Control::Query { file: Some(name("wanted")) }, true, Some("secret"));
    net.run();
    let map = net.clients[&(0, conn)][0].status.as_ref().unwrap().chunk_map.clone().unwrap();
    assert_eq!((map.chunks, map.buckets, map.local), (3, vec![2, 2, 2], vec![true, true, true]));
}

#[test]
fn a_drivers_own_insert_is_answered_with_an_event() {
    let mut net = Net::new(2);
    net.join_all();
    let data = content(3 * CHUNK_SIZE as usize, 10);
    net.machines[0].outside.insert("/p/mine".into(), data.clone());
    let now = net.now;
    let id = net.machines[0].node.insert(now, "/p/mine".into());
    let again = net.machines[0].node.insert(now, "/p/mine".into());
    let missing = net.machines[0].node.insert(now, "/p/nowhere".into());
    net.run();
    assert_fully_replicated(&mut net, "mine", &data, 2);
    let answers: Vec<(ImportId, Result<(), Refusal>)> = net.machines[0]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Inserted { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect();
    let code = |id| answers.iter().find(|(i, _)| *i == id).map(|(_, r)| r.as_ref().err().map(|e| e.code));
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(code(id), Some(None), "inserted");
    assert_eq!(code(again), Some(Some(Code::FileExists)), "the same name is being inserted");
    assert_eq!(code(missing), Some(Some(Code::FileMissing)));
}

#[test]
fn a_peer_fetching_on_request_drops_a_file_and_the_others_stop_counting_its_copy() {
    let mut net = Net::new(2);
    net.machines[1].node.fetch_on_request();
    net.join_all();
    let data = content(3 * CHUNK_SIZE as usize, 11);
    assert_eq!(net.insert(0, "kept", data.clone()), Code::Ok);
    net.run();
    let now = net.now;
    net.machines[1].node.request_file(now, &name("kept"));
    net.run();
    assert_fully_replicated(&mut net, "kept", &data, 2);

    // Dropped: deleted from its folder, no longer counted by the node that keeps it,
    // still listed (the other node offers it), and not fetched again by itself.
    assert!(net.machines[1].node.drop_file(now, &name("kept")));
    net.run_for(60_000);
    assert_eq!(net.machines[1].folder.get(&name("kept")), None, "storage deleted it");
    let s = net.status(1);
    assert_eq!((s.files.clone(), s.local.clone()), (vec!["kept".to_string()], vec![0.0]), "listed, not held");
    let s = net.status(0);
    assert_eq!((s.least_replication[0], s.weighted_least_replication[0]), (1, 1.0), "its copy is no longer counted");

    // Asked for again, it comes back whole.
    let now = net.now;
    net.machines[1].node.request_file(now, &name("kept"));
    net.run();
    assert_fully_replicated(&mut net, "kept", &data, 2);

    // Dropped before its manifest came: nothing of it is fetched or stored.
    assert_eq!(net.insert(0, "cancelled", content(2 * CHUNK_SIZE as usize, 12)), Code::Ok);
    net.run();
    let now = net.now;
    net.machines[1].node.request_file(now, &name("cancelled"));
    assert!(net.machines[1].node.drop_file(now, &name("cancelled")));
    net.run_for(60_000);
    assert_eq!(net.machines[1].folder.get(&name("cancelled")), None, "no room was made for it");
    let s = net.status(1);
    let at = s.files.iter().position(|f| f == "cancelled").expect("still listed");
    assert_eq!(s.local[at], 0.0);
    assert!(!net.machines[1].node.drop_file(now, &name("never-heard-of")));
}

/// A Have tells a link that holds the chunk, and did not send it, only that we count as
/// a copy: with batching on, it waits for the gossip round, and the counts catch up then.
#[test]
fn haves_to_a_link_holding_the_chunk_wait_for_the_gossip_round() {
    let mut net = Net::with_tuning(3, Tuning::default());
    for m in 0..2 {
        assert_eq!(net.code(m, Control::Join), Code::Ok);
    }
    let data = content(20 * CHUNK_SIZE as usize + 5, 9);
    assert_eq!(net.insert(0, "held.bin", data.clone()), Code::Ok);
    net.run_for(1_500);
    assert_eq!(net.file(1, "held.bin"), Some(&data));
    // A newcomer fetches from both holders: what it got from one, the other hears of in
    // the next round; its source hears at once.
    assert_eq!(net.code(2, Control::Join), Code::Ok);
    net.run_for(200);
    assert_eq!(net.file(2, "held.bin"), Some(&data));
    let counts: Vec<u32> = (0..2).map(|m| net.status(m).least_replication[0]).collect();
    assert!(counts.iter().any(|&c| c < 3), "the newcomer's Haves to holders wait: {counts:?}");
    net.run_for(1_000);
    assert_fully_replicated(&mut net, "held.bin", &data, 3);
}

/// One seeder and `nodes` nodes, every link 100 Mbit/s each way, the file's chunks only the
/// seeder's at first; returns how long until every node holds the file and how many
/// copies of it the seeder sent. `cut` loses, from `cut.0` ms on, what the seeder sends
/// node `cut.1`: then the time is until the others hold it (that one must get it too).
fn seeder_on_a_slow_uplink(nodes: usize, salt: u64, cut: Option<(u64, usize)>) -> (u64, f64) {
    one_seeder_to_nodes(nodes, salt, cut, |_| (RATE_100_MBIT, RATE_100_MBIT))
}

/// As [`seeder_on_a_slow_uplink`], machine `m`'s uplink and downlink being `rates(m)`
/// (the seeder is machine 0).
fn one_seeder_to_nodes(
    nodes: usize,
    salt: u64,
    cut: Option<(u64, usize)>,
    rates: impl Fn(usize) -> (u64, u64),
) -> (u64, f64) {
    let mut net = Net::with_seeds(nodes + 1, Tuning::default(), salt);
    for m in 0..=nodes {
        let (up, down) = rates(m);
        net.shape(m, up, down);
    }
    let chunks = 512;
    let data = content(chunks * CHUNK_SIZE as usize, 7);
    assert_eq!(net.code(0, Control::Join), Code::Ok);
    assert_eq!(net.insert(0, "big.bin", data.clone()), Code::Ok);
    net.run_for(100);
    let start = net.now;
    for m in 1..=nodes {
        assert_eq!(net.code(m, Control::Join), Code::Ok);
    }
    let cut_off = cut.map(|(_, node)| node);
    while (1..=nodes).any(|m| Some(m) != cut_off && net.file(m, "big.bin") != Some(&data)) {
        assert!(net.now - start < 60_000, "not replicated after a minute");
        net.run_for(10);
        if let Some((_, node)) = cut.filter(|&(at, _)| net.now - start >= at) {
            net.mute(0, node);
        }
    }
    let took = net.now - start;
    let copies = net.status(0).chunks_served as f64 / chunks as f64;
    if let Some(node) = cut_off {
        while net.file(node, "big.bin") != Some(&data) {
            assert!(net.now - start < 120_000, "the node cut off from the seeder got nothing from its peers");
            net.run_for(100);
        }
    }
    (took, copies)
}

/// The median time and the median seeder copies of several runs, each on its own.
fn medians(mut runs: Vec<(u64, f64)>) -> (u64, f64) {
    let mid = runs.len() / 2;
    runs.sort_by_key(|r| r.0);
    let took = runs[mid].0;
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    (took, runs[mid].1)
}

/// 100 Mbit/s in bytes per millisecond.
const RATE_100_MBIT: u64 = 12_500;

/// A seeder whose uplink is the bottleneck, as on real links. It should send each chunk
/// about once and the nodes trade the rest; the whole takes little more than the
/// peer-assisted bound T_min = max(F/u_s, N·F/(u_s + Σu_i), F/d_min). With picks spread
/// at random over the seeder's chunks (fetchers see each other's requests only once the
/// chunks arrive) it took 2.86 × the bound; with the chunks split into stripes, one per
/// fetcher, 2.39–2.76 × over eight seeds, and 2.58–2.91 × over five since fetchers done
/// with their stripe help with those that lag (which pays on real links, where shares of
/// the seeder differ, and costs a little here, where they do not). (Before picks were
/// spread at all, the seeder sent each chunk 5.5 times.) Since requests and Haves pass
/// the chunk bodies queued on a link here too, as the node's writer sends them: 2.49–2.55 ×
/// and 1.13–1.27 copies (against 2.58–2.91 × and 1.30–2.10 copies with every message in
/// one queue). Since a seeder is asked like any peer once every chunk has a second holder,
/// 2.47–2.53 × and 1.51–1.65 copies: the extra copies go out in the long tail this
/// simulator has, where the seeder would stand idle (on shaped links the seeder sends
/// 1.05–1.06 copies either way). Since every linked fetcher is presumed to fetch from the
/// start (so all draw the same stripes from the first pick), 2.42–2.43 × and 1.49–1.61. This simulator stores and forwards whole messages and has
/// no TCP, so it is harsher than real links: the shaped-links benchmark
/// (tests/bench/shaped.py) holds the real figures.
/// One run's figures move by a tenth with any change in the order of events, so the
/// medians of five seeds are held to the bounds.
#[test]
fn a_seeder_on_a_slow_uplink_is_not_asked_for_the_same_chunks_again_and_again() {
    let bound = 512 * CHUNK_SIZE / RATE_100_MBIT; // F/u_s; the other two terms are no larger here
    let runs: Vec<(u64, f64)> = (0..5).map(|salt| seeder_on_a_slow_uplink(8, salt, None)).collect();
    eprintln!("took (ms), seeder copies: {runs:?}; T_min {bound} ms");
    let (took, copies) = medians(runs);
    assert!(copies <= 1.8, "the seeder sent each chunk {copies:.2} times (median)");
    assert!(took as f64 <= 2.65 * bound as f64, "took {took} ms (median) against a bound of {bound} ms");
}

/// A fetcher whose path from the seeder stops carrying data keeps its stripe of the
/// seeder's chunks for `SOLE_NEWS_FRESH` (10 s) in the others' eyes. Those done with
/// their own stripes help with it (and with any that lags), so the others are not held
/// up for those 10 s (13.1 s here without help, against a bound of 2.7 s; 4.9 s with it);
/// the node cut off gets the file from its peers.
#[test]
fn fetchers_done_with_their_stripes_help_with_one_that_lags() {
    let bound = 512 * CHUNK_SIZE / RATE_100_MBIT;
    let (took, copies) = seeder_on_a_slow_uplink(4, 0, Some((1_000, 4)));
    eprintln!("took {took} ms, T_min {bound} ms ({:.2} ×), seeder sent {copies:.2} copies", took as f64 / bound as f64);
    assert!(took as f64 <= 3.5 * bound as f64, "took {took} ms against a bound of {bound} ms");
    // Helpers keep to their classes of chunks: few are asked for twice.
    assert!(copies <= 1.4, "the seeder sent each chunk {copies:.2} times");
}

/// The heterogeneous case of the shaped-links benchmark: a seeder with a 200 Mbit/s uplink,
/// nodes with 50 or 100 up and 100 down. The bound asks the seeder for two copies (its
/// 200 of the 800 Mbit/s of uplink) and every uplink and downlink busy to the end. Over
/// five seeds: 7.21–7.55 s (median 2.75 × the bound), the seeder sending 1.98–2.04 copies
/// (7.24–7.81 s and 1.88–2.30 copies while a seeder serving a node no faster than its
/// other peers was kept for chunks only it held to the end). Until requests passed the chunk bodies queued here, a node on a 50 Mbit/s uplink
/// had its requests wait behind everything it uploaded: 4.1–4.5 ×.
#[test]
fn a_seeder_with_a_wide_uplink_and_nodes_on_uneven_links() {
    let rates = |m: usize| match m {
        0 => (2 * RATE_100_MBIT, 2 * RATE_100_MBIT),
        m if m % 2 == 1 => (RATE_100_MBIT / 2, RATE_100_MBIT),
        _ => (RATE_100_MBIT, RATE_100_MBIT),
    };
    // N·F/(u_s + Σu_i) = F/d_min; F/u_s is half that.
    let bound = 512 * CHUNK_SIZE / RATE_100_MBIT;
    let runs: Vec<(u64, f64)> = (0..5).map(|salt| one_seeder_to_nodes(8, salt, None, rates)).collect();
    eprintln!("took (ms), seeder copies: {runs:?}; T_min {bound} ms");
    let (took, copies) = medians(runs);
    assert!(copies >= 1.5, "the seeder sent each chunk {copies:.2} times (median), where the bound asks for 2");
    assert!(took as f64 <= 3.0 * bound as f64, "took {took} ms (median) against a bound of {bound} ms");
}
