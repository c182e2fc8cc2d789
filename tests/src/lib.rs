//! Harness for the multi-node integration tests: start real `torronto` nodes on loopback
//! ports with real folders, drive them through the real control client, and wait for them.
//!
//! Layout of this file, top to bottom:
//! - [`bin`]: where the binary under test is (`$TORRONTO_BIN`, else `target/<profile>/torronto`
//!   next to the test executable's `deps/` folder); [`ws_bridge_bin`] likewise for the
//!   relay (`$WS_BRIDGE_BIN`, else `target/<profile>/ws-bridge`).
//! - [`free_port`]: a loopback port nobody listens on, outside the kernel's ephemeral range.
//! - [`TestNode`]: one node process. Each has its own temporary root holding
//!   `share/` (the node's `--dir`), `peers.txt` (its `--peers` file) and `node.log` (its
//!   stdout and stderr). The process is killed when the `TestNode` is dropped, and if the
//!   thread is panicking (a failed test) the tail of its log is printed.
//! - [`Cluster`]: n nodes whose peers files all list all n.
//! - [`state_home`]: the `XDG_STATE_HOME` of every node and control client this process
//!   runs, where nodes register their control tokens and the client finds them
//!   ([`registered_token`] reads one), as for a user running both;
//! - [`cli`] / [`Output`]: run the control client and capture exit code, stdout and stderr;
//!   [`query`] runs `query --json` and parses the status object; [`FileStatus`] and friends
//!   read fields out of it.
//! - [`Demo`]: `torronto demo` started by hand and read up to its Ctrl-C hint, to be
//!   interrupted as a user would (killed if still running when dropped).
//! - [`wait_until`]: poll a condition every ~50 ms; on timeout, panic saying what was awaited
//!   and showing the last query output seen on this thread. This is the only place a test
//!   sleeps.
//! - [`random_file`], [`sha256_file`], [`sha256_hex`]: test data;
//! - [`browser`]: the browser tests' harness (nodes with `--ws`, headless Chromium), and
//!   [`panel`]: what the control panel's browser tests share (card selectors, predicates).
//!
//! Set `TORRONTO_KEEP=1` to keep the folders and logs of a failed test (their path is printed).
//! Nodes log with the filter a test sets ([`TestNode::set_log_filter`]), else `RUST_LOG` if set, else `info` (and `NO_COLOR=1`); the control client runs without `RUST_LOG`
//! so that its stderr holds only its own messages.

pub mod browser;
pub mod panel;
pub mod raw;
pub mod sys;
pub mod watch;

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Bytes per chunk, as the protocol defines it.
pub const CHUNK: u64 = 64 * 1024;

/// How long a node may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one control-client run may take (a leave may wait up to 30 s for confirmations).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Polling interval of [`wait_until`] and of readiness checks.
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------
// The binary

/// Path of the `torronto` binary under test.
pub fn bin() -> PathBuf {
    workspace_bin("torronto", "TORRONTO_BIN", "torronto-node")
}

/// Path of the `ws-bridge` relay binary under test.
pub fn ws_bridge_bin() -> PathBuf {
    workspace_bin("ws-bridge", "WS_BRIDGE_BIN", "torronto-ws-bridge")
}

/// A workspace binary: `$env_var` if set, else `target/<profile>/name` beside the test
/// executable (cargo builds another package's binaries only when asked to: `cargo build`).
fn workspace_bin(name: &str, env_var: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} is not a file; build it first: cargo build -p {package}", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/network-xxxx -> target/debug/torronto
    let dir = exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps");
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(p.is_file(), "no {name} binary at {}; build it first: cargo build -p {package}", p.display());
    p
}

// ---------------------------------------------------------------------------------
// Ports

static PORTS_GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static PORT_CURSOR: AtomicU32 = AtomicU32::new(0);

/// A loopback TCP port that is free right now and was not handed out before by this process.
/// Ports come from 20000–32767, below Linux's ephemeral range, so that outgoing connections
/// (which take ephemeral source ports) never collide with a node that has not started yet.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_768;
    let start = (std::process::id().wrapping_mul(7919)) % SPAN;
    let mut given = PORTS_GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..SPAN {
        let step = PORT_CURSOR.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + step * 37) % SPAN) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in 20000-32767");
}

// ---------------------------------------------------------------------------------
// Where nodes register their tokens

/// This test process's `XDG_STATE_HOME`, shared by its nodes and control clients (and
/// apart from the real user's, which tests leave alone).
pub fn state_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("torronto-tests-state-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the tests' state home");
        dir
    })
}

/// The control token a node on loopback `port` registered, if it did.
pub fn registered_token(port: u16) -> Option<String> {
    let path = state_home().join("torronto/nodes").join(port.to_string());
    fs::read_to_string(path).ok().map(|t| t.trim().to_owned())
}

// ---------------------------------------------------------------------------------
// Control client

/// What one run of the control client did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status; -1 if it was ended by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

impl Output {
    /// Panics unless the run exited 0.
    #[track_caller]
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(self.code, 0, "{what}: expected exit 0 (ErrOK), got:\n{self}");
        self
    }

    /// Panics unless the run exited with `exit` and its stderr starts with `name`.
    #[track_caller]
    pub fn expect_error(&self, what: &str, exit: i32, name: &str) {
        assert_eq!(self.code, exit, "{what}: expected exit {exit} ({name}), got:\n{self}");
        assert!(
            self.stderr.trim_start().starts_with(name),
            "{what}: expected stderr to start with {name:?}, got:\n{self}"
        );
    }
}

/// Runs `torronto ARGS` in the current directory.
pub fn cli(args: &[&str]) -> Output {
    cli_in(&std::env::current_dir().expect("cwd"), args)
}

/// Runs `torronto ARGS` with working directory `cwd`.
pub fn cli_in(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("TORRONTO_TOKEN")
        .env("XDG_STATE_HOME", state_home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run torronto {args:?}: {e}"));
    let out = reader_thread(child.stdout.take().expect("stdout"));
    let err = reader_thread(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for torronto") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "torronto {args:?} did not finish within {CLI_TIMEOUT:?}; stderr so far:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn reader_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

thread_local! {
    /// The last `query --json` output seen on this thread, for timeout messages.
    static LAST_QUERY: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Runs `torronto query --node ADDR --json` and parses the status object.
#[track_caller]
pub fn query(addr: &str) -> Value {
    let out = cli(&["query", "--node", addr, "--json"]);
    LAST_QUERY.with(|q| {
        *q.borrow_mut() = Some((addr.to_string(), out.to_string()));
    });
    assert_eq!(out.code, 0, "query of {addr}: expected exit 0, got:\n{out}");
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("query --json of {addr}: stdout is not one JSON object ({e}):\n{out}"));
    LAST_QUERY.with(|q| {
        *q.borrow_mut() = Some((addr.to_string(), serde_json::to_string_pretty(&v).unwrap_or_default()));
    });
    assert_eq!(v.get("Code").and_then(Value::as_i64), Some(0), "query of {addr}: expected \"Code\":0 in {v}");
    v
}

/// One file's row of a status object.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStatus {
    pub local: f64,
    pub system: f64,
    pub least: u64,
    pub weighted: f64,
    pub size: Option<u64>,
    pub digest: Option<String>,
    /// Where the node put the file when not under its name (a conflict copy).
    pub stored_as: Option<String>,
    /// Why the node does not store the file.
    pub refused: Option<String>,
}

/// The row of file `name` in a status object, if the node knows the file.
pub fn file_status(status: &Value, name: &str) -> Option<FileStatus> {
    let files = status.get("files")?.as_array()?;
    let i = files.iter().position(|f| f.as_str() == Some(name))?;
    let col = |key: &str| -> Value {
        status
            .get(key)
            .and_then(|a| a.get(i))
            .cloned()
            .unwrap_or_else(|| panic!("status has no {key}[{i}] for {name}: {status}"))
    };
    let opt_col = |key: &str| status.get(key).and_then(|a| a.get(i)).cloned();
    Some(FileStatus {
        local: col("local").as_f64().expect("local is a number"),
        system: col("system").as_f64().expect("system is a number"),
        least: col("leastReplication").as_u64().expect("leastReplication is an integer"),
        weighted: col("weightedLeastReplication").as_f64().expect("weightedLeastReplication is a number"),
        size: opt_col("sizes").and_then(|v| v.as_u64()),
        digest: opt_col("digests").and_then(|v| v.as_str().map(str::to_string)),
        stored_as: opt_col("storedAs").and_then(|v| v.as_str().map(str::to_string)).filter(|s| !s.is_empty()),
        refused: opt_col("refused").and_then(|v| v.as_str().map(str::to_string)).filter(|s| !s.is_empty()),
    })
}

/// The `peers` list of a status object, sorted.
pub fn peers(status: &Value) -> Vec<String> {
    let mut p: Vec<String> = status
        .get("peers")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("status has no peers array: {status}"))
        .iter()
        .map(|v| v.as_str().expect("peer is a string").to_string())
        .collect();
    p.sort();
    p
}

/// The `joined` flag of a status object.
pub fn joined(status: &Value) -> bool {
    status.get("joined").and_then(Value::as_bool).unwrap_or_else(|| panic!("status has no boolean joined: {status}"))
}

/// A numeric top-level field of a status object (`numFiles`, `chunksFetched`, ...).
pub fn number(status: &Value, key: &str) -> u64 {
    status.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("status has no integer {key}: {status}"))
}

// ---------------------------------------------------------------------------------
// The demo, run as a user runs it

/// A running `torronto demo --nodes N`, started with `env` and read up to its Ctrl-C hint;
/// killed if still running when dropped.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    /// What it printed up to and including the Ctrl-C hint.
    pub printed: Vec<String>,
    /// Kept open: the demo goes on printing as it stops, and a closed pipe would end it.
    _stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Demo {
    pub fn start(nodes: usize, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let base = free_port().to_string();
        let mut child = Command::new(bin())
            .args(["demo", "--nodes", &nodes.to_string(), "--base-port", &base])
            .env("XDG_STATE_HOME", state_home())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the demo");
        // Drained on its own thread so a chatty log never blocks the demo; shown if it fails.
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut printed = Vec::new();
        let mut reached_hint = false;
        for line in stdout.by_ref() {
            let line = line.expect("the demo's output");
            reached_hint = line.starts_with("Ctrl-C stops the demo");
            printed.push(line);
            if reached_hint {
                break;
            }
        }
        if !reached_hint {
            let status = child.wait().expect("wait for the demo");
            let stderr = stderr.join().unwrap_or_default();
            panic!("the demo ended ({status}) before its Ctrl-C hint:\n{}\n{stderr}", printed.join("\n"));
        }
        Self { child, printed, _stdout: stdout }
    }

    /// Sends Ctrl-C (SIGINT) and waits up to `timeout` for the demo to exit.
    #[track_caller]
    pub fn interrupt(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().expect("run kill").success());
        let mut status = None;
        wait_until(timeout, "the demo to stop after Ctrl-C", || {
            status = self.child.try_wait().expect("wait for the demo");
            status.is_some()
        });
        status.expect("it exited")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// Waiting

/// Polls `cond` every ~50 ms until it is true; after `timeout`, panics naming `what` and
/// showing the last query output seen on this thread.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            let last = LAST_QUERY.with(|q| q.borrow().clone());
            let last = match last {
                Some((addr, out)) => format!("last query output (node {addr}):\n{out}"),
                None => "no query was run".to_string(),
            };
            panic!("timed out after {timeout:?} waiting until {what}\n{last}");
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------
// Test data

/// A node started with `args`, joined, holding `big.bin`: `size` pseudo-random bytes it
/// inserted (the seeder of the limits' and the uplink's tests).
pub fn seeder_of_big_bin(args: &[&str], size: usize) -> TestNode {
    let mut seeder = TestNode::new("seeder");
    seeder.set_extra_args(args);
    seeder.set_join_on_start(true);
    seeder.start();
    let file = seeder.root().join("big.bin");
    random_file(&file, size, 16);
    seeder.insert(&file).ok("insert on the seeder");
    seeder
}

/// Writes `size` pseudo-random bytes, determined by `seed`, to `path`.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    fs::write(path, random_bytes(size, seed)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `size` pseudo-random bytes determined by `seed` (splitmix64).
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sha256_hex(&bytes)
}

/// The protocol's file digest: hex SHA-256 of the concatenated SHA-256 of each 64 KiB chunk.
pub fn protocol_digest(bytes: &[u8]) -> String {
    let mut all = Vec::new();
    for chunk in bytes.chunks(CHUNK as usize) {
        all.extend_from_slice(&Sha256::digest(chunk));
    }
    sha256_hex(&all)
}

/// Number of chunks of a file of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK)
}

// ---------------------------------------------------------------------------------
// Nodes

/// One `torronto node` process with its own folder, peers file and log.
#[derive(Debug)]
pub struct TestNode {
    label: String,
    port: u16,
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    join_on_start: bool,
    token: Option<String>,
    /// The host of `--listen` (`127.0.0.1` unless changed, e.g. `::1`).
    host: String,
    /// Further arguments to `torronto node` (`--secret FILE`, `--open`…).
    extra_args: Vec<String>,
    /// `RUST_LOG` for the node, where not the test's own (or `info`).
    log_filter: Option<String>,
    child: Option<Child>,
}

impl TestNode {
    /// Prepares a node (folder, empty peers file, port) without starting it.
    pub fn new(label: &str) -> TestNode {
        let root = tempfile::Builder::new().prefix(&format!("torronto-{label}-")).tempdir().expect("tempdir");
        let root_path = root.path().to_path_buf();
        fs::create_dir_all(root_path.join("share")).expect("create share dir");
        fs::write(root_path.join("peers.txt"), "").expect("write peers file");
        TestNode {
            label: label.to_string(),
            port: free_port(),
            root: Some(root),
            root_path,
            join_on_start: false,
            token: None,
            host: "127.0.0.1".into(),
            extra_args: Vec::new(),
            log_filter: None,
            child: None,
        }
    }

    /// A started node whose peers file is empty.
    pub fn start_alone(label: &str) -> TestNode {
        let mut n = TestNode::new(label);
        n.start();
        n
    }

    /// `127.0.0.1:PORT` (`[::1]:PORT` and so on after [`TestNode::set_host`]).
    pub fn addr(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// Listens on `host` (an IP address) at the next start.
    pub fn set_host(&mut self, host: &str) {
        self.host = host.to_string();
    }

    /// `RUST_LOG` for the node at the next start, e.g. `info,torronto::chunks=trace`.
    pub fn set_log_filter(&mut self, filter: &str) {
        self.log_filter = Some(filter.to_string());
    }

    /// Further arguments for `torronto node` at the next start, e.g. `["--secret", FILE]`.
    pub fn set_extra_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The node's shared folder (`--dir`).
    pub fn dir(&self) -> PathBuf {
        self.root_path.join("share")
    }

    /// Where complete file `name` appears.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The temporary root holding `share/`, `peers.txt` and `node.log`.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    pub fn peers_file(&self) -> PathBuf {
        self.root_path.join("peers.txt")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root_path.join("node.log")
    }

    /// Replaces the peers file's text (takes effect at the next start/join).
    pub fn set_peers_text(&self, text: &str) {
        fs::write(self.peers_file(), text).expect("write peers file");
    }

    /// Writes a peers file listing `addrs`, one `host:port` a line.
    pub fn set_peers(&self, addrs: &[String]) {
        let mut text = String::new();
        for a in addrs {
            text.push_str(a);
            text.push('\n');
        }
        self.set_peers_text(&text);
    }

    /// Whether the next start passes `--join`.
    pub fn set_join_on_start(&mut self, join: bool) {
        self.join_on_start = join;
    }

    /// The node's control token: the one set, else the one it keeps in its folder.
    pub fn token(&self) -> String {
        self.token.clone().unwrap_or_else(|| {
            let path = self.dir().join(".torronto/token");
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_owned()
        })
    }

    /// Sets `--token` for the node.
    pub fn set_token(&mut self, token: Option<&str>) {
        self.token = token.map(str::to_string);
    }

    /// The process id of the running node, if started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Starts the process and waits until its port accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.label);
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_file()).expect("open node log");
        let mut header = log.try_clone().expect("clone log");
        let addr = self.addr();
        let dir = self.dir();
        let peers = self.peers_file();
        let mut args: Vec<String> = vec![
            "node".into(),
            "--listen".into(),
            addr.clone(),
            "--dir".into(),
            dir.display().to_string(),
            "--peers".into(),
            peers.display().to_string(),
        ];
        if self.join_on_start {
            args.push("--join".into());
        }
        if let Some(t) = &self.token {
            args.push("--token".into());
            args.push(t.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        let _ = writeln!(header, "===== harness: starting torronto {}", args.join(" "));
        let rust_log =
            self.log_filter.clone().unwrap_or_else(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        let child = Command::new(bin())
            .args(&args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            // Under systemd the node would log for the journal, without timestamps.
            .env_remove("JOURNAL_STREAM")
            .env_remove("TORRONTO_TOKEN")
            .env("XDG_STATE_HOME", state_home())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}: {e}", self.label));
        self.child = Some(child);

        let sock: SocketAddr = addr.parse().expect("socket addr");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!("node {} ({addr}) exited during start with {status}; log:\n{}", self.label, self.log_tail(80));
            }
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                // The node listens before it registers its token for the CLI: wait
                // for that too (briefly: a test may have made registering fail).
                let registered = Instant::now() + Duration::from_secs(2);
                while self.token.is_none() && registered_token(self.port).is_none() && Instant::now() < registered {
                    std::thread::sleep(POLL);
                }
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {} did not accept connections on {addr} within {START_TIMEOUT:?}; log:\n{}",
                    self.label,
                    self.log_tail(80)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the process (SIGKILL) and waits for it to exit. The folder stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if let Ok(mut log) = fs::OpenOptions::new().append(true).open(self.log_file()) {
                let _ = writeln!(log, "===== harness: killed node {}", self.label);
            }
        }
    }

    /// Kills the process and starts it again on the same folder, port and peers file.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(self.log_file())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        let mut s = String::new();
        if from > 0 {
            s.push_str(&format!("(… {from} earlier lines)\n"));
        }
        for l in &all[from..] {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Prints the whole log to stderr (shown by the test runner for failing tests).
    pub fn print_log(&self) {
        eprintln!(
            "===== log of node {} ({}) =====\n{}===== end of log of node {} =====",
            self.label,
            self.addr(),
            self.log(),
            self.label
        );
    }

    /// Runs the control client against this node: `torronto ARGS --node ADDR`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let addr = self.addr();
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--node", &addr]);
        cli(&all)
    }

    /// `torronto join`, which must succeed.
    #[track_caller]
    pub fn join(&self) {
        self.cli(&["join"]).ok(&format!("join node {}", self.label));
    }

    /// `torronto leave`, which must succeed.
    #[track_caller]
    pub fn leave(&self) {
        self.cli(&["leave"]).ok(&format!("leave node {}", self.label));
    }

    /// `torronto insert PATH` (PATH made absolute here).
    pub fn insert(&self, path: &Path) -> Output {
        let abs = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.cli(&["insert", &abs.display().to_string()])
    }

    /// `torronto query --json`.
    #[track_caller]
    pub fn query(&self) -> Value {
        query(&self.addr())
    }

    /// Whether this node holds file `name` complete with hex SHA-256 `sha`: its status says
    /// local 1.0 and `DIR/name` has that content. Panics if `DIR/name` exists with other
    /// content (a torn or wrong file must never appear there).
    #[track_caller]
    pub fn holds(&self, name: &str, size: u64, sha: &str) -> bool {
        let path = self.file(name);
        if let Ok(meta) = fs::metadata(&path) {
            let ok = meta.len() == size && sha256_file(&path) == sha;
            assert!(
                ok,
                "node {}: {} exists but is not the complete file (size {} of {size}); \
                 a file must appear only when complete and verified",
                self.label,
                path.display(),
                meta.len()
            );
        } else {
            return false;
        }
        let st = self.query();
        matches!(file_status(&st, name), Some(f) if f.local == 1.0)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== node {} ({}): last lines of its log =====\n{}===== end =====",
                self.label,
                self.addr(),
                self.log_tail(60)
            );
            if std::env::var_os("TORRONTO_KEEP").is_some() {
                if let Some(root) = self.root.take() {
                    eprintln!("kept node {} folder at {}", self.label, root.keep().display());
                }
            }
        }
    }
}

/// Nodes whose peers files each list every node of the cluster (`host:port` lines).
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<TestNode>,
}

impl Cluster {
    /// Starts `n` nodes, not joined; every peers file lists all `n` addresses.
    pub fn start(n: usize) -> Cluster {
        let mut nodes: Vec<TestNode> = (0..n).map(|i| TestNode::new(&format!("n{i}"))).collect();
        let addrs: Vec<String> = nodes.iter().map(TestNode::addr).collect();
        for node in &mut nodes {
            node.set_peers(&addrs);
            node.start();
        }
        Cluster { nodes }
    }

    /// Starts `n` nodes and joins them one after another through the control client.
    pub fn start_joined(n: usize) -> Cluster {
        let c = Cluster::start(n);
        c.join_all();
        c
    }

    /// `torronto join` on every node in order.
    #[track_caller]
    pub fn join_all(&self) {
        for n in &self.nodes {
            n.join();
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(TestNode::addr).collect()
    }

    /// Waits until every node holds `name` (see [`TestNode::holds`]).
    #[track_caller]
    pub fn wait_all_hold(&self, timeout: Duration, name: &str, size: u64, sha: &str) {
        wait_until(timeout, &format!("every node holds {name} complete"), || {
            self.nodes.iter().all(|n| n.holds(name, size, sha))
        });
    }
}

impl std::ops::Index<usize> for Cluster {
    type Output = TestNode;
    fn index(&self, i: usize) -> &TestNode {
        &self.nodes[i]
    }
}

impl std::ops::IndexMut<usize> for Cluster {
    fn index_mut(&mut self, i: usize) -> &mut TestNode {
        &mut self.nodes[i]
    }
}
