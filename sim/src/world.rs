//! The simulated world: machines running real core `Node`s, a network of
//! connections that keep each direction in order, simulated disks, and one clock.
//!
//! Everything that happens is an event at a simulated time, taken in time order (ties
//! in the order they were scheduled); node timers are events too. Messages go through
//! the real wire encoder and decoder. Nothing here reads a clock or touches a socket.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use torronto_core::layout::ChunkIndex;
use torronto_core::manifest::hash_chunk;
use torronto_core::wire::{FrameDecoder, HaveEntry, MessageReader};
use torronto_core::{
    ChunkRef, Config, ConnId, ConnInfo, Envelope, Event, FileName, ImportId, Message, Millis, NetCommand, Node,
    PeerAddr, PeerMessage, StorageCommand, Tuning,
};

use crate::check::Violation;
use crate::disk::Disk;
use crate::rng::Rng;
use crate::schedule::{Action, Role, Schedule};

/// A machine: its role, its disk (which outlives crashes) and, while it runs, its node.
#[derive(Debug)]
pub struct Machine {
    pub role: Role,
    pub addr: PeerAddr,
    pub node: Option<Node>,
    pub disk: Disk,
    /// Storage commands queued, the first one in progress; carried out one at a time,
    /// in order, as the native node's storage thread does.
    storage: VecDeque<StorageCommand>,
    storage_busy: bool,
    /// Extra time each storage command takes (a slow disk).
    pub slow: Millis,
    /// Counts starts: events of an earlier life are ignored.
    epoch: u64,
    /// The owner wants it in the network (a native node started with `--join`; a
    /// browser peer always).
    pub member: bool,
    /// Files a browser peer's user asked for; kept across restarts as the page does.
    pub wanted: BTreeSet<FileName>,
    inserts: HashMap<ImportId, usize>,
    /// Delete the folder once the Leave in progress answers with nothing unconfirmed.
    wipe_on_leave: bool,
    /// Folder deleted after a leave, or a liar taken out at the end: never restarted.
    pub gone: bool,
}

impl Machine {
    pub fn running(&self) -> bool {
        self.node.is_some()
    }

    pub fn joined(&self) -> bool {
        self.node.as_ref().is_some_and(Node::is_joined)
    }

    pub fn honest(&self) -> bool {
        self.role != Role::Liar
    }
}

/// One end of a connection and where what is sent on it arrives.
#[derive(Clone, Copy, Debug)]
struct Half {
    to: (usize, ConnId),
    /// Nothing sent this way arrives before this: TCP keeps a connection's order.
    floor: Millis,
}

#[derive(Debug)]
enum Ev {
    Act(usize),
    Deliver {
        to: (usize, ConnId),
        bytes: Bytes,
    },
    /// The other end closed or vanished.
    Hangup {
        to: (usize, ConnId),
    },
    /// A dial completes, or fails.
    Connect {
        from: usize,
        epoch: u64,
        addr: PeerAddr,
    },
    /// The storage command at the head of the machine's queue is done.
    Storage {
        m: usize,
        epoch: u64,
    },
}

/// Faults planted on purpose, to show that each check notices what it guards against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plant {
    /// A disk accepts a write whose bytes differ from what the node verified.
    UnverifiedWrite,
    /// Once converged, one published copy gets a flipped byte.
    CorruptCopy,
    /// As a leave answers, every other copy of its chunks vanishes.
    LeaveLosesChunk,
    /// Once converged, one connection disappears without either node hearing of it.
    SilentLinkLoss,
    /// The driver panics on the first Upload.
    Panic,
}

/// How a run is observed and what it may excuse.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub trace: bool,
    pub plant: Option<Plant>,
    /// Fail on the known, not yet fixed cases instead of excusing them: a leave that
    /// lost chunks to a liar's false Have (issue 11), and an empty file fetched onto a
    /// full disk that stays unpublished until a restart.
    pub strict: bool,
}

/// What a run did, for reports.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub messages: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub rejected_chunks: u64,
    pub leaves_ok: u64,
    /// Leaves that lost chunks only because a liar claimed them (issue 11).
    pub known_leave_losses: u64,
    pub sim_millis: Millis,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.events += other.events;
        self.messages += other.messages;
        self.crashes += other.crashes;
        self.torn_writes += other.torn_writes;
        self.rejected_chunks += other.rejected_chunks;
        self.leaves_ok += other.leaves_ok;
        self.known_leave_losses += other.known_leave_losses;
        self.sim_millis += other.sim_millis;
    }
}

pub struct World {
    pub schedule: Schedule,
    pub options: Options,
    pub machines: Vec<Machine>,
    pub now: Millis,
    queue: BTreeMap<(Millis, u64), Ev>,
    seq: u64,
    links: HashMap<(usize, ConnId), Half>,
    readers: HashMap<(usize, ConnId), MessageReader>,
    next_conn: u64,
    partition: Option<u64>,
    extra_delay: Millis,
    rng: Rng,
    /// Files whose insert was answered OK: the network must keep them.
    pub inserted: BTreeSet<usize>,
    /// Chunks a liar claimed to each machine without holding them.
    false_haves: BTreeSet<(usize, FileName, u32)>,
    /// Files a leave lost to a liar's claim: excused from convergence (issue 11).
    pub excused: BTreeSet<FileName>,
    pub stats: Stats,
    pub trace: Vec<String>,
    pub violation: Option<Violation>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("seed", &self.schedule.seed).field("now", &self.now).finish()
    }
}

pub fn native_addr(m: usize) -> PeerAddr {
    PeerAddr::new(format!("10.0.0.{m}"), 7000)
}

/// Tuning for the simulation: the defaults, with the request window small enough
/// that the bounds below bite.
pub fn tuning(role: Role) -> Tuning {
    match role {
        // As the web engine configures its node.
        Role::Browser => Tuning { requests_per_peer: 64, max_writing: 256, ..Tuning::default() },
        _ => Tuning::default(),
    }
}

impl World {
    pub fn new(schedule: Schedule, options: Options) -> Self {
        let mut rng = Rng::new(schedule.seed ^ 0x5eed);
        let machines = schedule
            .roles
            .iter()
            .enumerate()
            .map(|(m, &role)| Machine {
                role,
                addr: match role {
                    Role::Browser => PeerAddr::new(format!("browser-{m:02}"), 0),
                    _ => native_addr(m),
                },
                node: None,
                disk: Disk::default(),
                storage: VecDeque::new(),
                storage_busy: false,
                slow: 0,
                epoch: 0,
                member: false,
                wanted: BTreeSet::new(),
                inserts: HashMap::new(),
                wipe_on_leave: false,
                gone: false,
            })
            .collect();
        let mut world = World {
            options,
            machines,
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            links: HashMap::new(),
            readers: HashMap::new(),
            next_conn: 1,
            partition: None,
            extra_delay: 0,
            rng: rng.fork(),
            inserted: BTreeSet::new(),
            false_haves: BTreeSet::new(),
            excused: BTreeSet::new(),
            stats: Stats::default(),
            trace: Vec::new(),
            violation: None,
            schedule,
        };
        for (i, step) in world.schedule.steps.iter().enumerate() {
            world.queue.insert((step.at, world.seq), Ev::Act(i));
            world.seq += 1;
        }
        for m in 0..world.machines.len() {
            world.start(m);
        }
        world
    }

    fn log(&mut self, what: impl FnOnce() -> String) {
        if self.options.trace {
            let line = format!("t={:>6}ms {}", self.now, what());
            self.trace.push(line);
        }
    }

    fn at(&mut self, at: Millis, ev: Ev) {
        self.queue.insert((at, self.seq), ev);
        self.seq += 1;
    }

    pub fn fail(&mut self, violation: Violation) {
        if self.violation.is_none() {
            self.log(|| format!("VIOLATION: {violation}"));
            self.violation = Some(violation);
        }
    }

    // -----------------------------------------------------------------------------
    // Running.

    /// Runs events until `until`, or with `until_quiet` until no message, dial or
    /// storage command is under way; false once nothing is left to happen or a check
    /// failed.
    pub fn run_until(&mut self, until: Millis, until_quiet: bool) -> bool {
        while self.violation.is_none() {
            if until_quiet && !self.busy() {
                return true;
            }
            let next_event = self.queue.first_key_value().map(|(&(at, _), _)| at);
            let next_timer = self.machines.iter().filter_map(|x| x.node.as_ref()?.poll_timeout()).min();
            let Some(next) = next_event.into_iter().chain(next_timer).min() else {
                return false;
            };
            if next > until {
                self.now = until;
                return true;
            }
            self.now = self.now.max(next);
            self.stats.events += 1;
            if next_timer.is_some_and(|t| t <= self.now) && next_event.is_none_or(|e| e >= next) {
                for m in 0..self.machines.len() {
                    let now = self.now;
                    let Some(node) = self.machines[m].node.as_mut() else { continue };
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                        self.drain(m);
                    }
                }
            } else {
                let (_, ev) = self.queue.pop_first().expect("peeked above");
                self.handle(ev);
            }
            crate::check::bounds(self);
        }
        false
    }

    /// Whether messages, dials or storage are still under way.
    pub fn busy(&self) -> bool {
        self.queue.values().any(|ev| !matches!(ev, Ev::Act(_) | Ev::Connect { .. }))
            || self.machines.iter().any(|x| x.storage_busy)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Act(i) => {
                let action = self.schedule.steps[i].action.clone();
                self.log(|| format!("ACTION {action:?}"));
                self.act(action);
            }
            Ev::Deliver { to, bytes } => self.deliver(to, bytes),
            Ev::Hangup { to } => {
                if self.links.remove(&to).is_some() {
                    self.readers.remove(&to);
                    self.log(|| format!("m{}: conn {} hung up", to.0, to.1));
                    let now = self.now;
                    if let Some(node) = self.machines[to.0].node.as_mut() {
                        node.handle_disconnected(now, to.1);
                    }
                    self.drain(to.0);
                }
            }
            Ev::Connect { from, epoch, addr } => self.connect(from, epoch, addr),
            Ev::Storage { m, epoch } => self.storage_step(m, epoch),
        }
    }

    // -----------------------------------------------------------------------------
    // Actions.

    pub fn act(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::Insert { m, file } => {
                let path = self.schedule.files[file].path();
                let x = &mut self.machines[m];
                if let Some(node) = x.node.as_mut() {
                    let id = node.insert(now, path);
                    x.inserts.insert(id, file);
                    self.drain(m);
                }
            }
            Action::Join { m } => {
                if self.machines[m].gone && self.machines[m].role != Role::Liar {
                    // A machine whose folder was deleted joins again, empty.
                    self.machines[m].gone = false;
                }
                self.machines[m].member = true;
                if !self.machines[m].running() {
                    self.start(m);
                } else if let Some(node) = self.machines[m].node.as_mut().filter(|n| !n.is_joined()) {
                    node.join(now);
                    self.drain(m);
                    self.open_browser_sessions(m);
                }
            }
            Action::Leave { m, wipe } => {
                let x = &mut self.machines[m];
                if let Some(node) = x.node.as_mut().filter(|n| n.is_joined()) {
                    x.member = false;
                    x.wipe_on_leave = wipe;
                    node.leave(now);
                    self.drain(m);
                }
            }
            Action::Request { m, file } => {
                let name = self.schedule.files[file].name.clone();
                let x = &mut self.machines[m];
                x.wanted.insert(name.clone());
                if let Some(node) = x.node.as_mut() {
                    node.request_file(now, &name);
                    self.drain(m);
                }
            }
            Action::Drop { a, b } => self.cut(|x, y| (x == a && y == b) || (x == b && y == a)),
            Action::Partition { side } => {
                self.partition = Some(side);
                self.cut(|x, y| (side >> x) & 1 != (side >> y) & 1);
            }
            Action::Heal => self.partition = None,
            Action::Delay { millis } => self.extra_delay = millis,
            Action::Crash { m } => self.crash(m),
            Action::Restart { m } => {
                if !self.machines[m].running() {
                    self.start(m);
                }
            }
            Action::DiskFull { m, full } => self.machines[m].disk.full = full,
            Action::SlowDisk { m, millis } => self.machines[m].slow = millis,
        }
    }

    /// Starts machine `m` from what its disk holds, as the native node or the page does.
    pub fn start(&mut self, m: usize) {
        let now = self.now;
        let seed = self.rng.next_u64();
        let x = &mut self.machines[m];
        if x.running() || x.gone {
            return;
        }
        x.epoch += 1;
        let peers = match x.role {
            Role::Browser => Vec::new(),
            _ => (0..self.schedule.roles.len())
                .filter(|&i| self.schedule.roles[i] != Role::Browser)
                .map(native_addr)
                .collect(),
        };
        let mut node = Node::new(Config {
            me: x.addr.clone(),
            peers,
            token: None,
            insert_from: Vec::new(),
            seed,
            tuning: tuning(x.role),
            private: None,
        });
        for file in x.disk.load() {
            node.add_local_file(file);
        }
        if x.role == Role::Browser {
            node.fetch_on_request();
            x.member = true;
        }
        if x.member {
            node.join(now);
        }
        for name in &x.wanted {
            node.request_file(now, name);
        }
        x.node = Some(node);
        self.log(|| format!("m{m}: started"));
        self.drain(m);
        self.open_browser_sessions(m);
    }

    /// A browser peer opens a session to every native node it knows of (the web engine
    /// learns them from its control sessions).
    fn open_browser_sessions(&mut self, m: usize) {
        if self.machines[m].role != Role::Browser || !self.machines[m].joined() {
            return;
        }
        for to in 0..self.machines.len() {
            if self.machines[to].role != Role::Browser {
                let at = self.now + self.latency();
                let epoch = self.machines[m].epoch;
                self.at(at, Ev::Connect { from: m, epoch, addr: native_addr(to) });
            }
        }
    }

    /// Stops machine `m` at once: connections break, queued storage is lost and the
    /// write in progress may be torn (IndexedDB transactions are not).
    pub fn crash(&mut self, m: usize) {
        if !self.machines[m].running() {
            return;
        }
        self.stats.crashes += 1;
        self.cut(|x, y| x == m || y == m);
        let torn = self.machines[m].role != Role::Browser && self.rng.chance(50);
        let x = &mut self.machines[m];
        let in_progress = x.storage.front().filter(|_| x.storage_busy);
        let tears = torn && matches!(in_progress, Some(StorageCommand::Write { .. }));
        x.disk.crash(in_progress, torn);
        x.storage.clear();
        x.storage_busy = false;
        x.inserts.clear();
        x.node = None;
        self.stats.torn_writes += u64::from(tears);
        self.log(|| format!("m{m}: CRASH{}", if tears { " (a write torn)" } else { "" }));
    }

    /// Breaks every connection between machines `x` and `y` for which `which(x, y)`:
    /// each end hears of it a little later, after what was already on its way to it.
    fn cut(&mut self, which: impl Fn(usize, usize) -> bool) {
        let mut ends: Vec<(usize, ConnId)> =
            self.links.iter().filter(|(from, half)| which(from.0, half.to.0)).map(|(&from, _)| from).collect();
        ends.sort();
        for end in ends {
            // The other end learns of it after the data already on its way to it; an
            // end whose partner closed already is not listed, so it is told here too.
            let half = self.links[&end];
            let at = (self.now + self.latency()).max(half.floor);
            self.at(at, Ev::Hangup { to: half.to });
            if !self.links.contains_key(&half.to) {
                let own = self.now + self.latency();
                self.at(own, Ev::Hangup { to: end });
            }
        }
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition.is_some_and(|side| (side >> a) & 1 != (side >> b) & 1)
    }

    fn latency(&mut self) -> Millis {
        let extra = if self.extra_delay > 0 { self.rng.below(self.extra_delay) } else { 0 };
        self.rng.between(1, 20) + extra
    }

    // -----------------------------------------------------------------------------
    // Network.

    fn connect(&mut self, from: usize, epoch: u64, addr: PeerAddr) {
        let now = self.now;
        if self.machines[from].epoch != epoch || !self.machines[from].running() {
            return;
        }
        let target = (0..self.machines.len())
            .find(|&to| self.machines[to].addr == addr && self.machines[to].role != Role::Browser)
            .filter(|&to| self.machines[to].running() && !self.partitioned(from, to));
        let Some(to) = target else {
            self.log(|| format!("m{from}: dial {addr} failed"));
            if let Some(node) = self.machines[from].node.as_mut() {
                node.handle_dial_failed(now, &addr);
            }
            self.drain(from);
            return;
        };
        let (a, b) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
        self.next_conn += 2;
        self.links.insert((from, a), Half { to: (to, b), floor: now });
        self.links.insert((to, b), Half { to: (from, a), floor: now });
        self.log(|| format!("m{from}: conn {a} to m{to} (conn {b})"));
        self.machines[to].node.as_mut().expect("running").handle_connected(now, b, ConnInfo::default());
        self.drain(to);
        if let Some(node) = self.machines[from].node.as_mut() {
            node.handle_connected(now, a, ConnInfo { dialed: Some(addr), local: false, peer: None });
        }
        self.drain(from);
    }

    fn send(&mut self, m: usize, conn: ConnId, envelope: Envelope) {
        let Some(half) = self.links.get(&(m, conn)).copied() else {
            return;
        };
        self.stats.messages += 1;
        crate::check::sent(self, m, &envelope);
        self.log(|| format!("m{m} -> m{}: {}", half.to.0, describe(&envelope.message)));
        let mut buf = BytesMut::new();
        envelope.encode().write_tcp(&mut buf);
        let at = (self.now + self.latency()).max(half.floor);
        self.links.get_mut(&(m, conn)).expect("looked up above").floor = at;
        self.at(at, Ev::Deliver { to: half.to, bytes: buf.freeze() });
    }

    fn deliver(&mut self, to: (usize, ConnId), bytes: Bytes) {
        if !self.links.contains_key(&to) {
            return;
        }
        let (m, conn) = to;
        let reader = self.readers.entry(to).or_default();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut inputs = Vec::new();
        loop {
            match FrameDecoder::decode(&mut buf, reader.frame_limit()) {
                Ok(Some(frame)) => match reader.push_frame(frame) {
                    Ok(Some(envelope)) => inputs.push(Ok(envelope)),
                    Ok(None) => {}
                    Err(e) => inputs.push(Err(e.to_string())),
                },
                Ok(None) => break,
                Err(e) => {
                    inputs.push(Err(e.to_string()));
                    break;
                }
            }
        }
        let now = self.now;
        let browser = self.machines[m].role == Role::Browser;
        for input in inputs {
            let Some(node) = self.machines[m].node.as_mut() else { return };
            match input {
                Ok(envelope) if browser => {
                    // The page hashes uploads itself (WebCrypto) and hands core the hash.
                    let hash = match &envelope.message {
                        Message::Peer(PeerMessage::Upload { data, .. }) => Some(hash_chunk(data)),
                        _ => None,
                    };
                    node.handle_message_hashed(now, conn, envelope, hash);
                }
                Ok(envelope) => node.handle_message(now, conn, envelope),
                Err(reason) => node.handle_malformed(now, conn, reason),
            }
        }
        self.drain(m);
    }

    /// Carries out machine `m`'s outputs until it has none.
    fn drain(&mut self, m: usize) {
        loop {
            let Some(node) = self.machines[m].node.as_mut() else { return };
            if let Some(command) = node.poll_net() {
                self.net_command(m, command);
            } else if let Some(command) = node.poll_storage() {
                self.storage_command(m, command);
            } else if let Some(event) = node.poll_event() {
                self.event(m, event);
            } else {
                return;
            }
        }
    }

    fn net_command(&mut self, m: usize, command: NetCommand) {
        match command {
            NetCommand::Send { conn, mut envelope } => {
                if self.machines[m].role == Role::Liar {
                    self.lie(m, conn, &mut envelope);
                }
                self.send(m, conn, envelope);
            }
            NetCommand::Dial(addr) => {
                let at = self.now + self.latency();
                let epoch = self.machines[m].epoch;
                self.at(at, Ev::Connect { from: m, epoch, addr });
            }
            NetCommand::Close(conn) => {
                // What was sent goes out first; then the other end sees the close.
                if let Some(half) = self.links.remove(&(m, conn)) {
                    self.readers.remove(&(m, conn));
                    let at = (self.now + self.latency()).max(half.floor);
                    self.at(at, Ev::Hangup { to: half.to });
                }
                let now = self.now;
                self.machines[m].node.as_mut().expect("draining").handle_disconnected(now, conn);
            }
        }
    }

    /// A liar's driver: corrupts chunks and manifests, and claims chunks it lacks.
    fn lie(&mut self, m: usize, conn: ConnId, envelope: &mut Envelope) {
        match &mut envelope.message {
            Message::Peer(PeerMessage::Upload { data, .. }) if !data.is_empty() && self.rng.chance(70) => {
                let mut bad = data.to_vec();
                bad[0] ^= 0x5a;
                *data = Bytes::from(bad);
            }
            Message::Peer(PeerMessage::Manifest { hashes, .. }) if !hashes.is_empty() && self.rng.chance(70) => {
                let mut bad = hashes.to_vec();
                bad[0] ^= 0x5a;
                *hashes = Bytes::from(bad);
            }
            _ if self.rng.chance(20) && !self.inserted.is_empty() => {
                let to = self.links.get(&(m, conn)).map(|h| h.to.0);
                let k =
                    *self.inserted.iter().nth(self.rng.below(self.inserted.len() as u64) as usize).expect("not empty");
                let spec = &self.schedule.files[k];
                let have = self.machines[m].disk.files.get(&spec.name);
                let mut entries = Vec::new();
                for i in ChunkIndex::all(spec.manifest.chunk_count()) {
                    if have.is_none_or(|s| !s.chunks.contains_key(&i.get())) {
                        let chunk = ChunkRef { file: spec.name.clone(), size: spec.size(), index: i };
                        entries.push(HaveEntry { chunk, digest: Some(spec.manifest.digest()) });
                        if let Some(to) = to {
                            self.false_haves.insert((to, spec.name.clone(), i.get()));
                        }
                    }
                }
                if !entries.is_empty() {
                    let from = envelope.from.clone();
                    let claim = Envelope { from, token: None, message: PeerMessage::Have(entries).into() };
                    self.send(m, conn, claim);
                }
            }
            _ => {}
        }
    }

    pub fn false_have(&self, m: usize, file: &FileName, index: u32) -> bool {
        self.false_haves.contains(&(m, file.clone(), index))
    }

    // -----------------------------------------------------------------------------
    // Storage.

    fn storage_command(&mut self, m: usize, command: StorageCommand) {
        let x = &mut self.machines[m];
        x.storage.push_back(command);
        if !x.storage_busy {
            x.storage_busy = true;
            let at = self.now + self.disk_time(m);
            let epoch = self.machines[m].epoch;
            self.at(at, Ev::Storage { m, epoch });
        }
    }

    fn disk_time(&mut self, m: usize) -> Millis {
        self.rng.below(3) + self.machines[m].slow
    }

    fn storage_step(&mut self, m: usize, epoch: u64) {
        let x = &mut self.machines[m];
        if x.epoch != epoch || !x.storage_busy {
            return;
        }
        let Some(mut command) = x.storage.pop_front() else {
            x.storage_busy = false;
            return;
        };
        if self.options.plant == Some(Plant::UnverifiedWrite) {
            if let StorageCommand::Write { data, .. } = &mut command {
                let mut bad = data.to_vec();
                bad[0] ^= 1;
                *data = Bytes::from(bad);
            }
        }
        crate::check::storing(self, m, &command);
        let finalize = match &command {
            StorageCommand::Finalize { file, .. } => Some(file.clone()),
            _ => None,
        };
        let x = &mut self.machines[m];
        let event = x.disk.execute(command, &self.schedule.files);
        if let Some(file) = finalize {
            crate::check::published(self, m, &file);
        }
        if let Some(event) = event {
            let now = self.now;
            self.machines[m].node.as_mut().expect("running while its storage runs").handle_storage(now, event);
            self.drain(m);
        }
        if self.machines[m].epoch != epoch {
            return;
        }
        if self.machines[m].storage.is_empty() {
            self.machines[m].storage_busy = false;
        } else {
            let at = self.now + self.disk_time(m);
            self.at(at, Ev::Storage { m, epoch });
        }
    }

    pub fn writes_queued(&self, m: usize) -> usize {
        self.machines[m].storage.iter().filter(|c| matches!(c, StorageCommand::Write { .. })).count()
    }

    // -----------------------------------------------------------------------------
    // Events.

    fn event(&mut self, m: usize, event: Event) {
        self.log(|| format!("m{m}: {event:?}"));
        match event {
            Event::Inserted { id, result } => {
                if let Some(file) = self.machines[m].inserts.remove(&id) {
                    if result.is_ok() {
                        self.inserted.insert(file);
                    }
                }
            }
            Event::Left { unconfirmed } => {
                let wipe = std::mem::take(&mut self.machines[m].wipe_on_leave);
                if unconfirmed == 0 {
                    self.stats.leaves_ok += 1;
                    crate::check::leave_answered(self, m);
                    if wipe {
                        // The owner deletes the folder at once; the node is stopped.
                        self.crash(m);
                        self.machines[m].disk = Disk::default();
                        self.machines[m].wanted.clear();
                        self.machines[m].gone = true;
                        self.log(|| format!("m{m}: folder deleted after leaving"));
                    }
                }
            }
            Event::ChunkRejected { .. } => self.stats.rejected_chunks += 1,
            Event::Joined { .. } if self.machines[m].role != Role::Browser => {
                // The page's control session sees the node join and opens a session to it.
                for b in 0..self.machines.len() {
                    if self.machines[b].role == Role::Browser
                        && self.machines[b].joined()
                        && !self.linked(b).contains(&m)
                    {
                        let at = self.now + self.latency();
                        let epoch = self.machines[b].epoch;
                        self.at(at, Ev::Connect { from: b, epoch, addr: native_addr(m) });
                    }
                }
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------
    // For the checks.

    /// The machines at the other end of `m`'s connections.
    pub fn linked(&self, m: usize) -> BTreeSet<usize> {
        self.links.iter().filter(|(from, _)| from.0 == m).map(|(_, half)| half.to.0).collect()
    }

    /// Forgets one connection without telling either end (planted fault).
    pub fn lose_link_silently(&mut self) {
        let mut ends: Vec<(usize, ConnId)> = self.links.keys().copied().collect();
        ends.sort();
        if let Some(&end) = ends.first() {
            let other = self.links.remove(&end).expect("listed").to;
            self.links.remove(&other);
        }
    }

    /// The end of the faults: the network heals, disks recover, every machine (but
    /// those whose folder was deleted) runs and joins, and the liars are taken out
    /// (what they claimed is forgotten with them).
    pub fn heal_all(&mut self) {
        self.log(|| "HEAL ALL".into());
        self.partition = None;
        self.extra_delay = 0;
        for m in 0..self.machines.len() {
            self.machines[m].disk.full = false;
            self.machines[m].slow = 0;
            if self.machines[m].role == Role::Liar {
                self.crash(m);
                self.machines[m].gone = true;
            } else if !self.machines[m].gone {
                // Every owner wants back in, so that whatever a disk holds is reachable.
                self.act(Action::Join { m });
            }
        }
    }
}

fn describe(message: &Message) -> String {
    match message {
        Message::Peer(PeerMessage::Upload { chunk, data }) => {
            format!("Upload {}#{} ({} bytes)", chunk.file, chunk.index, data.len())
        }
        Message::Peer(PeerMessage::Download(chunk)) => format!("Download {}#{}", chunk.file, chunk.index),
        Message::Peer(PeerMessage::Have(entries)) => {
            let list: Vec<String> = entries.iter().map(|e| format!("{}#{}", e.chunk.file, e.chunk.index)).collect();
            format!("Have [{}]", list.join(" "))
        }
        Message::Peer(PeerMessage::Manifest { file, .. }) => format!("Manifest {file}"),
        Message::Peer(PeerMessage::Add { files }) | Message::Peer(PeerMessage::Files { files }) => {
            let kind = if matches!(message, Message::Peer(PeerMessage::Add { .. })) { "Add" } else { "Files" };
            let list: Vec<String> = files.iter().map(|f| format!("{}:{}", f.name, f.chunks.len())).collect();
            format!("{kind} [{}]", list.join(" "))
        }
        Message::Peer(other) => format!("{other:?}"),
        Message::Reply(reply) => format!("Reply {:?}", reply.code_or_ok()),
        Message::Control(c) => format!("{c:?}"),
    }
}
