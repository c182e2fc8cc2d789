//! A machine's life: started from what its disk holds, crashed (losing queued writes,
//! maybe tearing the one in progress), and its storage queue carried out in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use torronto_core::{Config, FileName, ImportId, Millis, Node, PeerAddr, StorageCommand};

use super::{native_addr, tuning, Ev, Plant, World};
use crate::disk::Disk;
use crate::schedule::Role;

/// How often a page's control sessions ask its nodes for their status.
const PAGE_POLL_MILLIS: Millis = 1000;

/// A machine: its role, its disk (which outlives crashes) and, while it runs, its node.
#[derive(Debug)]
pub struct Machine {
    pub role: Role,
    pub addr: PeerAddr,
    pub node: Option<Node>,
    pub disk: Disk,
    /// Storage commands queued, the first one in progress; carried out one at a time,
    /// in order, as the native node's storage thread does.
    pub(super) storage: VecDeque<StorageCommand>,
    pub(super) storage_busy: bool,
    /// Extra time each storage command takes (a slow disk).
    pub slow: Millis,
    /// Counts starts: events of an earlier life are ignored.
    pub(super) epoch: u64,
    /// The owner wants it in the network (a native node started with `--join`; a
    /// browser peer always).
    pub member: bool,
    /// Files a browser peer's user asked for; kept across restarts as the page does.
    pub wanted: BTreeSet<FileName>,
    pub(super) inserts: BTreeMap<ImportId, usize>,
    /// Delete the folder once the Leave in progress answers with nothing unconfirmed.
    pub(super) wipe_on_leave: bool,
    /// Folder deleted after a leave, or a liar taken out at the end: never restarted.
    pub gone: bool,
}

impl Machine {
    /// Machine `m`, stopped, with an empty disk.
    pub(super) fn new(m: usize, role: Role) -> Self {
        Machine {
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
            inserts: BTreeMap::new(),
            wipe_on_leave: false,
            gone: false,
        }
    }

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

impl World {
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
        for t in x.disk.tombstones.iter().cloned() {
            node.restore_tombstone(now, t);
        }
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
        if self.machines[m].role == Role::Browser {
            let epoch = self.machines[m].epoch;
            self.at(self.now + PAGE_POLL_MILLIS, Ev::PagePoll { m, epoch });
        }
    }

    /// A browser peer opens a session to every native node it knows of (the web engine
    /// learns them from its control sessions).
    pub(super) fn open_browser_sessions(&mut self, m: usize) {
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

    /// The page's control sessions poll its nodes' status about once a second; a node
    /// seen joined that the page has no peer session to gets one (the web engine's
    /// `ensure_peer`), so sessions lost to a drop or a partition come back.
    pub(super) fn page_poll(&mut self, m: usize, epoch: u64) {
        if self.machines[m].epoch != epoch || !self.machines[m].running() {
            return;
        }
        if self.machines[m].joined() {
            let linked = self.linked(m);
            for to in 0..self.machines.len() {
                let seen =
                    self.machines[to].role != Role::Browser && self.machines[to].joined() && !self.partitioned(m, to);
                if seen && !linked.contains(&to) {
                    let at = self.now + self.latency();
                    self.at(at, Ev::Connect { from: m, epoch, addr: native_addr(to) });
                }
            }
        }
        self.at(self.now + PAGE_POLL_MILLIS, Ev::PagePoll { m, epoch });
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

    // -----------------------------------------------------------------------------
    // Storage.

    pub(super) fn storage_command(&mut self, m: usize, command: StorageCommand) {
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

    pub(super) fn storage_step(&mut self, m: usize, epoch: u64) {
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
        let ignored =
            self.options.plant == Some(Plant::DeleteIgnored) && matches!(command, StorageCommand::Delete { .. });
        crate::check::storing(self, m, &command);
        let finalize = match &command {
            StorageCommand::Finalize { file, .. } => Some(file.clone()),
            _ => None,
        };
        let x = &mut self.machines[m];
        let event = if ignored { None } else { x.disk.execute(command, &self.schedule.files) };
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
}
