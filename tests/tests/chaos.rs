//! Real-process chaos (issue 12, point 4): six `torronto` nodes, each in its own network
//! namespace on one switch, start with about fifty files of mixed sizes. For 60 s
//! (`TORRONTO_CHAOS_SECS` to run longer) a [`Nemesis`], drawing every choice from one
//! logged seed (`TORRONTO_CHAOS_SEED` to replay the same choices; the timing of the
//! processes is not replayed), kills nodes with SIGKILL and restarts them on the same
//! folder, cuts a node off the switch or cuts the path between two nodes and heals them,
//! makes nodes leave gracefully (`torronto leave`) and join again, and inserts more files
//! (now and then killing the node while it copies one in).
//! A [`Watcher`] thread looks at every node's folder every 150 ms: a file visible at
//! `DIR/<name>` must be complete with the expected bytes (it may be absent; once there it
//! must stay). At the end the faults stop, every link heals, every node runs and joins,
//! and within [`CONVERGE_BOUND`] every node holds every file whose insert answered OK (and
//! any file some node shows), byte-identical, its status saying so. A summary is printed.
//!
//! The nodes are the binary the tests find (`target/debug/torronto` after
//! `cargo build -p torronto-node`); `TORRONTO_BIN=target/release/torronto` runs a release
//! build. `TORRONTO_CHAOS_LOGS=DIR` copies the nodes' logs there at the end. Skipped,
//! saying why, where network namespaces cannot be made.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use torronto_tests::sys::{log_note, run, Lan, NsNode};
use torronto_tests::watch::{check_dir, Expected, Stamp, Want, Watcher};
use torronto_tests::{bin, file_status, joined, random_bytes, sha256_hex, skip_unless_netns};

const NODES: usize = 6;
const INITIAL_FILES: usize = 50;
/// How long the network may take to converge once the faults stop and every link heals
/// (a joined node redials a lost peer after at most 30 s).
const CONVERGE_BOUND: Duration = Duration::from_secs(120);
/// How often the watcher looks at every folder.
const WATCH_EVERY: Duration = Duration::from_millis(150);
/// Once the files inserted come to this much, new ones are small (long runs stay modest).
const DATA_CAP: u64 = 64 << 20;
/// At most this many nodes are down, leaving or left at once.
const MAX_OUT: usize = NODES / 2;
/// Each host's link to the switch, both ways: a few-MiB file takes a good part of a second,
/// so faults land in the middle of transfers.
const LINK_RATE: &str = "40mbit";

// ---------------------------------------------------------------------------------
// Seeded choices

/// splitmix64: every choice the nemesis makes comes from here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> Option<T> {
        (!from.is_empty()).then(|| from[self.below(from.len())])
    }
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{key}={v} is not a whole number")))
}

/// Sizes: empty, one byte, exactly one chunk and one byte over, odd small sizes, and now
/// and then a few MiB.
fn draw_size(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 | 1 => 0,
        2 => 1,
        3 => 65_536,
        4 => 65_537,
        5 => 1 + rng.below(4_096),
        6 | 7 => (1 << 20) + rng.below(3 << 20),
        _ => 2 + rng.below(400_000),
    }
}

// ---------------------------------------------------------------------------------
// The nemesis

/// A control command running in the background on a node, which may be killed meanwhile.
struct Busy {
    what: Command,
    incarnation: u32,
    since: Instant,
    handle: JoinHandle<Result<String, String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Leave,
    Insert(String),
}

/// One of the nemesis's moves.
type Fault = fn(&mut Nemesis);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Joined,
    Leaving,
    Left,
    Down,
}

#[derive(Debug, Default)]
struct Counts {
    kills: u32,
    restarts: u32,
    isolations: u32,
    pair_cuts: u32,
    heals: u32,
    leaves: u32,
    leaves_unconfirmed: u32,
    leaves_interrupted: u32,
    inserts_interrupted: u32,
    joins: u32,
    inserts: u32,
    failures: Vec<String>,
}

struct Nemesis {
    rng: Rng,
    start: Instant,
    lan: Lan,
    nodes: Vec<NsNode>,
    life: Vec<Life>,
    /// The command (leave or insert) running in the background on each node, if any.
    busy: Vec<Option<Busy>>,
    /// Kills so far of each node: a command it was running when killed need not succeed.
    incarnation: Vec<u32>,
    isolated: BTreeSet<usize>,
    cuts: BTreeSet<(usize, usize)>,
    expected: Expected,
    /// Names whose insert answered OK: these must end up on every node.
    acked: BTreeSet<String>,
    src: tempfile::TempDir,
    next_file: usize,
    /// Whether the faults have begun (the first files are inserted in peace).
    started: bool,
    n: Counts,
}

impl Nemesis {
    fn new(seed: u64) -> Nemesis {
        let lan = Lan::new(7, NODES).expect("make namespaces");
        lan.limit(LINK_RATE).expect("limit the links");
        let nodes: Vec<NsNode> =
            lan.hosts.iter().enumerate().map(|(i, (ns, ip))| NsNode::new(&format!("c{i}"), ns, ip)).collect();
        let addrs: Vec<String> = nodes.iter().map(NsNode::addr).collect();
        for node in &nodes {
            node.set_peers(&addrs);
        }
        let mut nemesis = Nemesis {
            rng: Rng(seed),
            start: Instant::now(),
            lan,
            nodes,
            life: vec![Life::Down; NODES],
            busy: (0..NODES).map(|_| None).collect(),
            incarnation: vec![0; NODES],
            isolated: BTreeSet::new(),
            cuts: BTreeSet::new(),
            expected: Arc::default(),
            acked: BTreeSet::new(),
            src: tempfile::tempdir().expect("tempdir"),
            next_file: 0,
            started: false,
            n: Counts::default(),
        };
        for i in 0..NODES {
            nemesis.nodes[i].start();
            nemesis.join(i);
        }
        nemesis.n = Counts::default();
        nemesis
    }

    fn say(&self, what: &str) {
        println!("[{:7.2}s] {what}", self.start.elapsed().as_secs_f64());
        for node in &self.nodes {
            log_note(&node.log_file(), what);
        }
    }

    fn with_life(&self, life: Life) -> Vec<usize> {
        (0..NODES).filter(|&i| self.life[i] == life).collect()
    }

    fn out(&self) -> usize {
        self.life.iter().filter(|&&l| l != Life::Joined).count()
    }

    /// One fault or insert, chosen by the seed among those possible now.
    fn step(&mut self) {
        self.reap(false);
        let mut menu: Vec<(u32, Fault)> = vec![(25, Nemesis::insert_new), (8, Nemesis::cut_pair)];
        if !self.killable().is_empty() {
            menu.push((12, Nemesis::kill));
        }
        if self.out() < MAX_OUT && !self.with_life(Life::Joined).is_empty() {
            menu.push((8, Nemesis::leave));
        }
        if !self.with_life(Life::Down).is_empty() {
            menu.push((15, Nemesis::restart));
        }
        if !self.with_life(Life::Left).is_empty() {
            menu.push((12, Nemesis::join_again));
        }
        if self.isolated.len() < 2 {
            menu.push((8, Nemesis::isolate));
        }
        if !self.isolated.is_empty() || !self.cuts.is_empty() {
            menu.push((14, Nemesis::heal));
        }
        let total: u32 = menu.iter().map(|(w, _)| w).sum();
        let mut roll = self.rng.below(total as usize) as u32;
        for (weight, action) in menu {
            if roll < weight {
                return action(self);
            }
            roll -= weight;
        }
    }

    /// Inserts a new file of a drawn size on a running node.
    fn insert_new(&mut self) {
        let Some(i) = self.rng.pick(&self.idle(&[Life::Joined, Life::Leaving, Life::Left])) else { return };
        let mut size = draw_size(&mut self.rng);
        if self.data() + size as u64 > DATA_CAP {
            size %= 100_000;
        }
        let name = format!("f{:03}-{size}.bin", self.next_file);
        let bytes = random_bytes(size, self.rng.next());
        self.next_file += 1;
        let path = self.src.path().join(&name);
        fs::write(&path, &bytes).expect("write source file");
        let want = Want { size: size as u64, sha: sha256_hex(&bytes) };
        self.expected.lock().unwrap().insert(name.clone(), want);
        self.say(&format!("insert {name} on {} ({:?})", self.nodes[i].label, self.life[i]));
        self.run_in_background(i, Command::Insert(name), &["insert", &path.display().to_string()]);
        // Now and then the node dies while it copies the file in.
        if self.started && self.rng.below(6) == 0 && self.killable().contains(&i) {
            std::thread::sleep(Duration::from_millis(self.rng.below(40) as u64));
            self.kill_node(i);
        }
    }

    /// Bytes of every file handed to an insert.
    fn data(&self) -> u64 {
        self.expected.lock().unwrap().values().map(|w| w.size).sum()
    }

    /// Running nodes in one of the `lives` with no command running in the background.
    fn idle(&self, lives: &[Life]) -> Vec<usize> {
        (0..NODES).filter(|&i| lives.contains(&self.life[i]) && self.busy[i].is_none()).collect()
    }

    /// `torronto ARGS --node .. --token ..` inside node `i`'s namespace, in a thread.
    fn run_in_background(&mut self, i: usize, what: Command, args: &[&str]) {
        let node = &self.nodes[i];
        let mut all: Vec<String> = ["netns", "exec", &node.ns, &bin().display().to_string()].map(String::from).to_vec();
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--node".into(), node.addr(), "--token".into(), node.token.clone()]);
        let handle = std::thread::spawn(move || run("ip", &all.iter().map(String::as_str).collect::<Vec<_>>()));
        self.busy[i] = Some(Busy { what, incarnation: self.incarnation[i], since: Instant::now(), handle });
    }

    /// Running nodes that may be killed: any already out, a joined one while few are out.
    fn killable(&self) -> Vec<usize> {
        let room = self.out() < MAX_OUT;
        (0..NODES).filter(|&i| self.life[i] != Life::Down && (room || self.life[i] != Life::Joined)).collect()
    }

    /// SIGKILL, no warning: a crash or a pulled plug.
    fn kill(&mut self) {
        let Some(i) = self.rng.pick(&self.killable()) else { return };
        self.kill_node(i);
    }

    fn kill_node(&mut self, i: usize) {
        self.say(&format!("kill -9 {} ({:?})", self.nodes[i].label, self.life[i]));
        self.nodes[i].stop();
        assert!(self.nodes[i].try_query().is_none(), "{} still answers after SIGKILL", self.nodes[i].label);
        self.life[i] = Life::Down;
        self.incarnation[i] += 1;
        self.n.kills += 1;
    }

    /// Starts a killed node again on the same folder, and joins it as its operator would.
    fn restart(&mut self) {
        let Some(i) = self.rng.pick(&self.with_life(Life::Down)) else { return };
        self.say(&format!("restart {}", self.nodes[i].label));
        self.nodes[i].start();
        self.n.restarts += 1;
        self.join(i);
    }

    /// `torronto join`, counted.
    fn join(&mut self, i: usize) {
        match self.nodes[i].cli(&["join"]) {
            Ok(_) => self.n.joins += 1,
            Err(e) => self.n.failures.push(format!("join {}: {e}", self.nodes[i].label)),
        }
        self.life[i] = Life::Joined;
    }

    fn join_again(&mut self) {
        let Some(i) = self.rng.pick(&self.with_life(Life::Left)) else { return };
        self.say(&format!("join {} again", self.nodes[i].label));
        self.join(i);
    }

    /// `torronto leave` in the background: it may take up to 30 s, and the node may be
    /// killed or cut off meanwhile.
    fn leave(&mut self) {
        let Some(i) = self.rng.pick(&self.idle(&[Life::Joined])) else { return };
        self.say(&format!("leave {}", self.nodes[i].label));
        self.run_in_background(i, Command::Leave, &["leave", "--json"]);
        self.life[i] = Life::Leaving;
        self.n.leaves += 1;
    }

    /// Takes the answers of finished background commands (of all, waiting, if `wait`).
    fn reap(&mut self, wait: bool) {
        for i in 0..NODES {
            if !self.busy[i].as_ref().is_some_and(|b| wait || b.handle.is_finished()) {
                continue;
            }
            let busy = self.busy[i].take().unwrap();
            let answer = busy.handle.join().expect("command thread");
            let label = self.nodes[i].label.clone();
            let killed = busy.incarnation != self.incarnation[i];
            match (busy.what, answer) {
                (Command::Insert(name), Ok(_)) => {
                    self.acked.insert(name);
                    self.n.inserts += 1;
                }
                (Command::Insert(name), Err(e)) if killed => {
                    self.n.inserts_interrupted += 1;
                    self.say(&format!("the insert of {name} on {label} ended with its node: {}", e.trim()));
                }
                (Command::Insert(name), Err(e)) => self.n.failures.push(format!("insert {name} on {label}: {e}")),
                (Command::Leave, answer) if killed => {
                    self.n.leaves_interrupted += 1;
                    self.say(&format!("{label} was killed while leaving; the leave answered {answer:?}"));
                }
                (Command::Leave, Ok(out)) => {
                    let reply: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
                    let unconfirmed = reply.get("Unconfirmed").and_then(Value::as_u64).unwrap_or(0);
                    self.n.leaves_unconfirmed += u32::from(unconfirmed > 0);
                    self.life[i] = Life::Left;
                    let took = busy.since.elapsed();
                    self.say(&format!("{label} left after {took:.1?} ({unconfirmed} chunks unconfirmed)"));
                }
                (Command::Leave, Err(e)) => {
                    self.n.failures.push(format!("leave {label}: {e}"));
                    self.life[i] = Life::Left;
                }
            }
        }
    }

    /// Takes a node's port on the switch down: it reaches nobody, nobody reaches it.
    fn isolate(&mut self) {
        let free: Vec<usize> = (0..NODES).filter(|i| !self.isolated.contains(i)).collect();
        let Some(i) = self.rng.pick(&free) else { return };
        self.say(&format!("cut {} off the switch", self.nodes[i].label));
        self.lan.set_host_up(i, false).expect("cut a host off");
        self.isolated.insert(i);
        self.n.isolations += 1;
    }

    /// Cuts the path between two nodes alone.
    fn cut_pair(&mut self) {
        let a = self.rng.below(NODES);
        let b = (a + 1 + self.rng.below(NODES - 1)) % NODES;
        let pair = (a.min(b), a.max(b));
        if !self.cuts.insert(pair) {
            return;
        }
        self.say(&format!("cut {} <-> {}", self.nodes[pair.0].label, self.nodes[pair.1].label));
        self.lan.set_pair_cut(pair.0, pair.1, true).expect("cut a pair");
        self.n.pair_cuts += 1;
    }

    /// Heals one cut, isolation or pair.
    fn heal(&mut self) {
        let n_isolated = self.isolated.len();
        let k = self.rng.below(n_isolated + self.cuts.len());
        if k < n_isolated {
            let i = *self.isolated.iter().nth(k).unwrap();
            self.isolated.remove(&i);
            self.say(&format!("heal: {} back on the switch", self.nodes[i].label));
            self.lan.set_host_up(i, true).expect("heal a host");
        } else {
            let pair = *self.cuts.iter().nth(k - n_isolated).unwrap();
            self.cuts.remove(&pair);
            self.say(&format!("heal {} <-> {}", self.nodes[pair.0].label, self.nodes[pair.1].label));
            self.lan.set_pair_cut(pair.0, pair.1, false).expect("heal a pair");
        }
        self.n.heals += 1;
    }

    /// Ends the faults: every link healed, every node running, leaves answered, and every
    /// node joined.
    fn calm(&mut self) {
        self.say("faults stop");
        while !self.isolated.is_empty() || !self.cuts.is_empty() {
            self.heal();
        }
        for i in self.with_life(Life::Down) {
            self.say(&format!("restart {}", self.nodes[i].label));
            self.nodes[i].start();
            self.n.restarts += 1;
            self.join(i);
        }
        self.reap(true);
        for i in self.with_life(Life::Left) {
            self.say(&format!("join {} again", self.nodes[i].label));
            self.join(i);
        }
    }

    /// What is still missing for convergence; empty once every node runs, has joined and
    /// holds every file (every acked one, and any a node shows) with the right bytes and
    /// local 1.0 in its status.
    fn missing(&mut self, cache: &mut HashMap<PathBuf, Stamp>) -> Vec<String> {
        let mut held = Vec::new();
        let mut missing = Vec::new();
        for node in &mut self.nodes {
            let (present, wrong) = check_dir(&node.label, &node.dir(), &self.expected, cache);
            assert!(wrong.is_empty(), "wrong files at the end: {wrong:?}");
            held.push(present);
            if !node.is_running() {
                missing.push(format!("{} is not running", node.label));
            }
        }
        let mut all = self.acked.clone();
        all.extend(held.iter().flatten().cloned());
        for (node, present) in self.nodes.iter().zip(&held) {
            let Some(status) = node.try_query() else {
                missing.push(format!("{} does not answer", node.label));
                continue;
            };
            if !joined(&status) {
                missing.push(format!("{} has not joined", node.label));
            }
            for name in &all {
                let complete = file_status(&status, name).is_some_and(|f| f.local == 1.0);
                if !present.contains(name) || !complete {
                    missing.push(format!("{} lacks {name}", node.label));
                }
            }
        }
        missing
    }
}

#[test]
fn six_nodes_under_a_nemesis_lose_nothing_and_show_no_wrong_byte() {
    skip_unless_netns!();
    let seed = env_u64("TORRONTO_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let secs = env_u64("TORRONTO_CHAOS_SECS").unwrap_or(60);
    println!("chaos seed {seed} for {secs} s (replay the choices: TORRONTO_CHAOS_SEED={seed})");
    println!("nodes: {}", bin().display());
    let mut nemesis = Nemesis::new(seed);
    let dirs = nemesis.nodes.iter().map(|n| (n.label.clone(), n.dir())).collect();
    let watcher = Watcher::start(WATCH_EVERY, dirs, nemesis.expected.clone());
    for _ in 0..INITIAL_FILES {
        nemesis.insert_new();
        nemesis.reap(true);
    }
    println!("{INITIAL_FILES} files to start with, {:.1} MiB", nemesis.data() as f64 / (1 << 20) as f64);
    let chaos = Instant::now();
    nemesis.started = true;
    while chaos.elapsed() < Duration::from_secs(secs) {
        nemesis.step();
        let wrong = watcher.wrong();
        assert!(wrong.is_empty(), "seed {seed}: the watcher saw wrong files: {wrong:#?}");
        std::thread::sleep(Duration::from_millis(100 + nemesis.rng.below(600) as u64));
    }
    let calm = Instant::now();
    nemesis.calm();
    let calmed = calm.elapsed();
    let mut cache = HashMap::new();
    let mut missing = nemesis.missing(&mut cache);
    println!(
        "{calmed:.1?} to heal, restart and join: {} copies or states still missing {:?}",
        missing.len(),
        missing.iter().take(4).collect::<Vec<_>>()
    );
    while !missing.is_empty() && calm.elapsed() < CONVERGE_BOUND {
        std::thread::sleep(Duration::from_millis(500));
        missing = nemesis.missing(&mut cache);
    }
    let converged = calm.elapsed();
    let (passes, files, wrong) = watcher.finish();
    let n = &nemesis.n;
    let data = nemesis.data();
    println!(
        "chaos summary: seed {seed}, {secs} s of faults on {NODES} nodes: {} kills, {} restarts, \
         {} nodes cut off the switch and {} pairs cut, {} heals, {} leaves ({} with chunks unconfirmed, \
         {} interrupted), {} joins, {} inserts answered OK \
         ({} ended by a kill; {} files, {:.1} MiB, in all); watcher: \
         {passes} passes over every folder, {files} file checks; converged {converged:.1?} after the \
         faults stopped ({calmed:.1?} of it healing, restarting and joining; bound {CONVERGE_BOUND:?})",
        n.kills,
        n.restarts,
        n.isolations,
        n.pair_cuts,
        n.heals,
        n.leaves,
        n.leaves_unconfirmed,
        n.leaves_interrupted,
        n.joins,
        n.inserts,
        n.inserts_interrupted,
        nemesis.expected.lock().unwrap().len(),
        data as f64 / (1 << 20) as f64,
    );
    if !n.failures.is_empty() {
        println!("commands that failed: {:#?}", n.failures);
    }
    if let Some(to) = std::env::var_os("TORRONTO_CHAOS_LOGS") {
        for node in &nemesis.nodes {
            let copy = PathBuf::from(&to).join(format!("{}.log", node.label));
            fs::create_dir_all(&to).and_then(|_| fs::copy(node.log_file(), &copy)).expect("copy a node's log");
        }
    }
    assert!(wrong.is_empty(), "seed {seed}: the watcher saw wrong files: {wrong:#?}");
    assert!(missing.is_empty(), "seed {seed}: not converged within {CONVERGE_BOUND:?}: {missing:#?}");
    assert!(n.failures.is_empty(), "seed {seed}: commands failed: {:#?}", n.failures);
}

/// The watcher's check can fail: a wrong byte, a short file, a stray name and a file
/// changed after it was verified are each caught.
#[test]
fn the_watchers_check_catches_wrong_short_stray_and_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = random_bytes(100_000, 9);
    let expected: Expected = Arc::default();
    expected.lock().unwrap().insert("a.bin".into(), Want { size: 100_000, sha: sha256_hex(&bytes) });
    let mut cache = HashMap::new();
    let mut check = || check_dir("t", dir.path(), &expected, &mut cache);
    assert_eq!(check(), (BTreeSet::new(), vec![]), "absent is fine");
    fs::write(dir.path().join("a.bin"), &bytes).unwrap();
    assert_eq!(check().0, BTreeSet::from(["a.bin".to_string()]));
    let mut torn = bytes.clone();
    torn[77_777] ^= 1;
    fs::write(dir.path().join("a.bin"), &torn).unwrap();
    assert_eq!(check().1, vec!["t: a.bin has the right size but wrong bytes".to_string()]);
    fs::write(dir.path().join("a.bin"), &bytes[..65_536]).unwrap();
    assert_eq!(check().1.len(), 1, "a short file is caught");
    fs::write(dir.path().join("a.bin"), &bytes).unwrap();
    fs::write(dir.path().join("stray"), b"x").unwrap();
    assert_eq!(check().1.len(), 1, "a name never inserted is caught");
}
