//! System-level helpers for the fault tests: network namespaces joined by veth pairs,
//! nodes running inside them, small tmpfs mounts, process memory. Everything here needs
//! root; the `*_available` functions say why a test must be skipped when it cannot run.
//!
//! Namespaces are named `t77-<pid>-<n>` and use addresses 10.77.x.y; each is deleted when
//! its guard is dropped (deleting a namespace also deletes its veth ends).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, free_port};

/// Resident memory of process `pid` in KiB (from /proc), if it is running.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a command; Ok(stdout) on success, Err(what went wrong) otherwise.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out =
        Command::new(cmd).args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd} {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why network-namespace tests cannot run here, if they cannot.
pub fn netns_unavailable() -> Option<String> {
    if !is_root() {
        return Some("not running as root (network namespaces need CAP_NET_ADMIN)".into());
    }
    if run("ip", &["-V"]).is_err() {
        return Some("the `ip` command (iproute2) is not installed".into());
    }
    if run("tc", &["-V"]).is_err() {
        return Some("the `tc` command (iproute2) is not installed".into());
    }
    // Probe: create and delete a namespace.
    match Netns::new() {
        Ok(_) => None,
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

/// Returns from the test, saying why, where network namespaces cannot be made.
#[macro_export]
macro_rules! skip_unless_netns {
    () => {
        if let Some(why) = $crate::sys::netns_unavailable() {
            println!("SKIPPED: {why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Result<Netns, String> {
        let name = format!("t77-{}-{}", std::process::id(), NS_COUNTER.fetch_add(1, Ordering::Relaxed));
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec NAME CMD ARGS`.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Two namespaces joined by a veth pair: `a` is 10.77.<net>.1, `b` is 10.77.<net>.2.
/// Both ends are limited to `rate` (a tbf qdisc, e.g. "40mbit") so transfers take long
/// enough to be cut in the middle.
#[derive(Debug)]
pub struct Link {
    pub a: Netns,
    pub b: Netns,
    pub a_ip: String,
    pub b_ip: String,
    pub a_dev: String,
    pub b_dev: String,
}

impl Link {
    pub fn new(net: u8, rate: Option<&str>) -> Result<Link, String> {
        let a = Netns::new()?;
        let b = Netns::new()?;
        let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let (a_dev, b_dev) = (format!("t77a{n}"), format!("t77b{n}"));
        run(
            "ip",
            &["link", "add", &a_dev, "netns", &a.name, "type", "veth", "peer", "name", &b_dev, "netns", &b.name],
        )?;
        let (a_ip, b_ip) = (format!("10.77.{net}.1"), format!("10.77.{net}.2"));
        a.ip(&["addr", "add", &format!("{a_ip}/24"), "dev", &a_dev])?;
        b.ip(&["addr", "add", &format!("{b_ip}/24"), "dev", &b_dev])?;
        a.ip(&["link", "set", &a_dev, "up"])?;
        b.ip(&["link", "set", &b_dev, "up"])?;
        if let Some(rate) = rate {
            for (ns, dev) in [(&a, &a_dev), (&b, &b_dev)] {
                ns.exec(
                    "tc",
                    &["qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "200ms"],
                )?;
            }
        }
        Ok(Link { a, b, a_ip, b_ip, a_dev, b_dev })
    }

    /// Takes `b`'s end of the link down (nothing passes either way) or up again.
    pub fn set_b_up(&self, up: bool) -> Result<(), String> {
        self.b.ip(&["link", "set", &self.b_dev, if up { "up" } else { "down" }]).map(|_| ())
    }
}

/// Hosts on one switch: `n` namespaces, each joined by a veth pair to a bridge in a hub
/// namespace of its own; host `i` is 10.77.<net>.<i+1>.
#[derive(Debug)]
pub struct Lan {
    pub hosts: Vec<(Netns, String)>,
    /// Each host's veth end in the hub namespace (its port on the bridge).
    hub_ports: Vec<String>,
    /// Each host's veth end in its own namespace.
    host_devs: Vec<String>,
    hub: Netns,
}

impl Lan {
    pub fn new(net: u8, n: usize) -> Result<Lan, String> {
        let hub = Netns::new()?;
        let k = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("t77br{k}");
        hub.ip(&["link", "add", &bridge, "type", "bridge"])?;
        hub.ip(&["link", "set", &bridge, "up"])?;
        let (mut hosts, mut hub_ports, mut host_devs) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let ns = Netns::new()?;
            let (host_dev, hub_dev) = (format!("t77h{k}x{i}"), format!("t77p{k}x{i}"));
            run(
                "ip",
                &[
                    "link", "add", &host_dev, "netns", &ns.name, "type", "veth", "peer", "name", &hub_dev, "netns",
                    &hub.name,
                ],
            )?;
            hub.ip(&["link", "set", &hub_dev, "master", &bridge])?;
            hub.ip(&["link", "set", &hub_dev, "up"])?;
            let ip = format!("10.77.{net}.{}", i + 1);
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &host_dev])?;
            ns.ip(&["link", "set", &host_dev, "up"])?;
            hosts.push((ns, ip));
            hub_ports.push(hub_dev);
            host_devs.push(host_dev);
        }
        Ok(Lan { hosts, hub_ports, host_devs, hub })
    }

    /// Limits every host's traffic, both ways, to `rate` (a tbf qdisc, e.g. "50mbit").
    pub fn limit(&self, rate: &str) -> Result<(), String> {
        let tbf = |ns: &Netns, dev: &str| {
            ns.exec(
                "tc",
                &["qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "200ms"],
            )
        };
        for (i, (ns, _)) in self.hosts.iter().enumerate() {
            tbf(ns, &self.host_devs[i])?;
            tbf(&self.hub, &self.hub_ports[i])?;
        }
        Ok(())
    }

    /// Takes host `i`'s port on the switch down (nothing passes to or from any other host;
    /// the host's own address still answers inside its namespace) or up again.
    pub fn set_host_up(&self, i: usize, up: bool) -> Result<(), String> {
        self.hub.ip(&["link", "set", &self.hub_ports[i], if up { "up" } else { "down" }]).map(|_| ())
    }

    /// Cuts (or heals) the path between hosts `i` and `j` alone: a blackhole route to the
    /// other's address in each of the two namespaces, so neither can send to the other.
    pub fn set_pair_cut(&self, i: usize, j: usize, cut: bool) -> Result<(), String> {
        for (a, b) in [(i, j), (j, i)] {
            let to = format!("{}/32", self.hosts[b].1);
            self.hosts[a].0.ip(&["route", if cut { "add" } else { "del" }, "blackhole", &to])?;
        }
        Ok(())
    }
}

/// A `torronto node` running inside a network namespace, listening on `ip:port`, with a
/// control token (connections inside a namespace to its own address are not loopback).
#[derive(Debug)]
pub struct NsNode {
    pub label: String,
    pub ns: String,
    pub ip: String,
    pub port: u16,
    pub token: String,
    /// What it listens on, when not `addr()`: it then advertises `addr()`.
    listen_host: Option<String>,
    /// How it secures the network: `--open` unless [`NsNode::set_private`] was called.
    mode: Vec<String>,
    root: tempfile::TempDir,
    child: Option<Child>,
}

impl NsNode {
    pub fn new(label: &str, ns: &Netns, ip: &str) -> NsNode {
        let root = tempfile::Builder::new().prefix(&format!("torronto-{label}-")).tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("share")).expect("share dir");
        fs::write(root.path().join("peers.txt"), "").expect("peers file");
        NsNode {
            label: label.into(),
            ns: ns.name.clone(),
            ip: ip.into(),
            port: free_port(),
            token: format!("token-{label}"),
            listen_host: None,
            mode: vec!["--open".into()],
            root,
            child: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("share")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.path().join("node.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    pub fn set_peers(&self, addrs: &[String]) {
        fs::write(self.root.path().join("peers.txt"), addrs.join("\n") + "\n").expect("peers file");
    }

    /// Runs it as a server would: a member of the private network of `secret`, listening
    /// on every interface (`0.0.0.0`) and advertising its namespace address.
    pub fn set_private(&mut self, secret: &Path) {
        self.listen_host = Some("0.0.0.0".into());
        self.mode = vec!["--secret".into(), secret.display().to_string()];
    }

    pub fn start(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_file()).expect("log");
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.ns.clone(),
            bin().display().to_string(),
            "node".into(),
            "--dir".into(),
            self.dir().display().to_string(),
            "--peers".into(),
            self.root.path().join("peers.txt").display().to_string(),
            "--token".into(),
            self.token.clone(),
        ];
        match &self.listen_host {
            Some(host) => {
                args.extend(["--listen".into(), format!("{host}:{}", self.port), "--advertise".into(), self.addr()])
            }
            None => args.extend(["--listen".into(), self.addr()]),
        }
        // A namespace address is not loopback: a secret, or `--open` said explicitly.
        args.extend(self.mode.iter().cloned());
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", crate::state_home())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start node in namespace");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_query().is_none() {
            assert!(Instant::now() < deadline, "node {} did not answer within 15 s; log:\n{}", self.label, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `torronto ARGS --node ADDR --token T`, run inside the namespace.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let bin = bin().display().to_string();
        let addr = self.addr();
        let mut all = vec!["netns", "exec", self.ns.as_str(), bin.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", &addr, "--token", &self.token]);
        run("ip", &all)
    }

    pub fn try_query(&self) -> Option<Value> {
        let out = self.cli(&["query", "--json"]).ok()?;
        serde_json::from_str(out.trim()).ok()
    }

    #[track_caller]
    pub fn query(&self) -> Value {
        self.try_query().unwrap_or_else(|| panic!("query of node {} failed; log:\n{}", self.label, self.log()))
    }

    #[track_caller]
    pub fn join(&self) {
        self.cli(&["join"]).unwrap_or_else(|e| panic!("join {}: {e}", self.label));
    }

    #[track_caller]
    pub fn insert(&self, path: &Path) {
        self.cli(&["insert", &path.display().to_string()]).unwrap_or_else(|e| panic!("insert on {}: {e}", self.label));
    }

    /// Kills the node with SIGKILL (`ip netns exec` execs the node, so this is the node's
    /// own process) and waits for it. The folder stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("===== node {} ({}) last log lines =====", self.label, self.addr());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A tmpfs mounted on a fresh directory, unmounted (lazily) on drop.
#[derive(Debug)]
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "8m"); Err says why it could not.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("not running as root (mounting a tmpfs needs CAP_SYS_ADMIN)".into());
        }
        let dir = tempfile::Builder::new().prefix("torronto-tmpfs-").tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &path.display().to_string()])?;
        Ok(Tmpfs { path, _dir: dir })
    }

    /// Changes the size of the mounted tmpfs.
    pub fn resize(&self, size: &str) -> Result<(), String> {
        run("mount", &["-o", &format!("remount,size={size}"), &self.path.display().to_string()]).map(|_| ())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.path.display().to_string()]);
    }
}

/// Every path under `dir` (relative, sorted), with file sizes; for "nothing else was
/// created" checks.
pub fn tree(dir: &Path) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            let meta = fs::symlink_metadata(&p).ok();
            if meta.as_ref().is_some_and(fs::Metadata::is_dir) {
                out.push((rel + "/", None));
                stack.push(p);
            } else {
                out.push((rel, meta.map(|m| m.len())));
            }
        }
    }
    out.sort();
    out
}

/// Appends a line to a node log (marks test phases for readers of the log).
pub fn log_note(log: &Path, note: &str) {
    if let Ok(mut f) = fs::OpenOptions::new().append(true).open(log) {
        let _ = writeln!(f, "===== test: {note}");
    }
}
