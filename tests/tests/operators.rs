//! What operators reach for: a node started from a config file behaves as one started with
//! the same flags, logs as JSON lines for collectors, and bad files are refused up front.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use torronto_tests::{
    bin, free_port, joined, peers, query, random_file, sha256_file, state_home, wait_until, Demo, TestNode,
};

/// A `torronto` process started by hand, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `torronto ARGS` in `cwd`, its output going to `log`.
fn torronto(args: &[&str], cwd: &Path, log: &Path) -> Process {
    let log = fs::File::create(log).unwrap();
    let child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("XDG_STATE_HOME", state_home())
        .env("RUST_LOG", "info")
        .env_remove("TORRONTO_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start torronto");
    Process(child)
}

/// The log of a node started with `JOURNAL_STREAM` set to `journal` and its output going to
/// `log`, once it has said it is ready.
fn log_under_journal_stream(journal: &str, log: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let out = fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut node = Process(
        Command::new(bin())
            .args(["node", "--listen", &addr, "--dir", dir.path().to_str().unwrap()])
            .env("XDG_STATE_HOME", state_home())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("JOURNAL_STREAM", journal)
            .env_remove("TORRONTO_TOKEN")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start torronto"),
    );
    wait_until(Duration::from_secs(15), "the node to log that its token is registered", || {
        fs::read_to_string(log).is_ok_and(|t| t.contains("control token registered"))
    });
    let _ = node.0.kill();
    fs::read_to_string(log).unwrap()
}

/// journald stamps each line itself, so a node whose standard error is the journal's stream
/// leaves timestamps out; one that only inherited `JOURNAL_STREAM` (its output sent to a
/// file by a script in a unit) keeps them.
#[test]
fn logs_leave_out_timestamps_only_when_standard_error_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let line = |text: &str| text.lines().find(|l| l.contains("control token registered")).unwrap().to_owned();

    let inherited = log_under_journal_stream("1:1", &root.path().join("inherited.log"));
    let stamped = line(&inherited);
    assert!(stamped.starts_with("20") && stamped.contains("Z  INFO"), "a timestamp first: {stamped}");

    // The log file's own device and inode: its stderr is "the journal".
    let journal = root.path().join("journal.log");
    fs::write(&journal, "").unwrap();
    let meta = fs::metadata(&journal).unwrap();
    let bare = line(&log_under_journal_stream(&format!("{}:{}", meta.dev(), meta.ino()), &journal));
    assert!(bare.trim_start().starts_with("INFO"), "no timestamp: {bare}");
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("XDG_STATE_HOME", state_home()).output().expect("run torronto")
}

#[test]
fn a_node_started_from_a_config_file_joins_and_replicates_like_one_started_with_flags() {
    let mut flags_node = TestNode::new("flags");
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Relative paths are read from the config file's folder, not the working directory.
    fs::create_dir(root.path().join("share")).unwrap();
    fs::write(root.path().join("peers.txt"), format!("{}\n", flags_node.addr())).unwrap();
    let config = root.path().join("torronto.toml");
    fs::write(
        &config,
        format!(
            "# a node as a service would run it\nlisten = \"{addr}\"\ndir = \"share\"\npeers = \"peers.txt\"\n\
             join = true\nlog_format = \"json\"\n"
        ),
    )
    .unwrap();
    flags_node.set_peers(std::slice::from_ref(&addr));
    flags_node.set_join_on_start(true);
    flags_node.start();

    let log = root.path().join("node.log");
    let elsewhere = tempfile::tempdir().unwrap();
    // Started from another folder: the file's relative paths must not depend on it.
    let _node = torronto(&["node", "--config", config.to_str().unwrap()], elsewhere.path(), &log);
    wait_until(Duration::from_secs(15), "the config node to listen", || std::net::TcpStream::connect(&addr).is_ok());
    wait_until(Duration::from_secs(15), "the config node to join with its peer", || {
        let status = query(&addr);
        joined(&status) && peers(&status) == vec![flags_node.addr()]
    });

    let file = flags_node.root().join("payload.bin");
    random_file(&file, 300_000, 7);
    flags_node.insert(&file).ok("insert on the flags node");
    let copy = root.path().join("share/payload.bin");
    wait_until(Duration::from_secs(30), "the file to reach the config node's dir", || {
        copy.is_file() && sha256_file(&copy) == sha256_file(&file)
    });

    // --log-format json from the file: every log line is one JSON object.
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "no JSON log lines:\n{text}");
    for line in lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string() && object["fields"].is_object(), "{line}");
    }
}

#[test]
fn flags_on_the_command_line_win_over_the_config_file() {
    let root = tempfile::tempdir().unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let config = root.path().join("c.toml");
    fs::write(&config, format!("listen = \"127.0.0.1:{file_port}\"\ndir = \"{}\"\n", root.path().display())).unwrap();
    let flag_addr = format!("127.0.0.1:{flag_port}");
    let _node = torronto(
        &["node", "--config", config.to_str().unwrap(), "--listen", &flag_addr],
        root.path(),
        &root.path().join("log"),
    );
    wait_until(Duration::from_secs(15), "the node to answer on the command line's port", || {
        std::net::TcpStream::connect(&flag_addr).is_ok()
    });
    assert!(std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(), "the file's port was used");
}

#[test]
fn a_config_file_with_an_unknown_key_or_a_bad_value_is_refused_before_starting() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("c.toml");
    let refused = |text: &str, says: &str| {
        fs::write(&config, text).unwrap();
        let out = run(&["node", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?} → {stderr}");
        assert!(stderr.contains(says), "{text:?}: expected {says:?} in:\n{stderr}");
    };
    refused("dir = \"/tmp\"\nlisen = \"127.0.0.1:1\"\n", "unknown key `lisen`");
    refused("dir = \"/tmp\"\njoin = 1\n", "`join` is a switch");
    refused("dir = \"/tmp\"\nlisten = \"not an address\"\n", "--listen");
    refused("dir = [\n", "c.toml");
}

#[test]
fn the_demos_hints_are_commands_that_work_when_torronto_is_not_on_path() {
    let mut demo = Demo::start(2, &[("PATH", "/usr/bin:/bin")]);
    let hints: Vec<String> =
        demo.printed.iter().filter(|line| line.contains(" query --node ")).map(|line| line.trim().to_owned()).collect();
    let seen = demo.printed.join("\n");
    let [query_hint] = &hints[..] else { panic!("one query hint expected in:\n{seen}") };
    assert!(!query_hint.starts_with("torronto "), "`torronto` is not on this PATH: {query_hint}");
    // Pasted into another terminal: another folder, the same PATH.
    let out = Command::new("sh")
        .args(["-c", query_hint])
        .current_dir("/")
        .env("PATH", "/usr/bin:/bin")
        .env("XDG_STATE_HOME", state_home())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{query_hint}: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("joined"), "{query_hint}: {stdout}");
    // Ctrl-C, so the demo removes its folders.
    demo.interrupt(Duration::from_secs(20));
}

/// `GET path` on `addr`; the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --metrics");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the series `name` (with its labels, if any) in a Prometheus text body.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

#[test]
fn metrics_count_the_bytes_and_chunks_a_transfer_moved() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let seeder_metrics = format!("127.0.0.1:{}", free_port());
    let mut seeder = TestNode::new("seeder");
    let mut fetcher = TestNode::new("fetcher");
    seeder.set_peers(&[fetcher.addr()]);
    fetcher.set_peers(&[seeder.addr()]);
    fetcher.set_extra_args(&["--metrics", &metrics]);
    seeder.set_extra_args(&["--metrics", &seeder_metrics]);
    seeder.set_join_on_start(true);
    fetcher.set_join_on_start(true);
    seeder.start();
    fetcher.start();

    let size = 5 * 65_536 + 1_000;
    let file = seeder.root().join("data.bin");
    random_file(&file, size, 11);
    seeder.insert(&file).ok("insert");
    let copy = fetcher.file("data.bin");
    wait_until(Duration::from_secs(30), "the fetcher to hold the file", || {
        copy.is_file() && sha256_file(&copy) == sha256_file(&file)
    });
    fetcher.query();

    let kind =
        |body: &str, k: &str| sample(body, &format!("torronto_control_sent_bytes_by_kind_total{{kind=\"{k}\"}}"));
    // The fetcher tells its peers what it stored in batches (a Have waits up to 200 ms for
    // company), so the last one may still be on its way.
    wait_until(Duration::from_secs(10), "the fetcher to announce what it stored", || {
        kind(&http_get(&metrics, "/metrics").1, "have") > 0.0
    });
    let (status, body) = http_get(&metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&body, "torronto_received_bytes_total"), size as f64, "every byte of the file, once");
    assert_eq!(sample(&body, "torronto_received_chunks_total"), 6.0);
    let peer = format!("torronto_peer_received_bytes_total{{peer=\"{}\"}}", seeder.addr());
    assert_eq!(sample(&body, &peer), size as f64);
    assert_eq!(sample(&body, "torronto_files"), 1.0);
    assert_eq!(sample(&body, "torronto_chunks_held"), 6.0);
    assert_eq!(sample(&body, "torronto_chunks_wanted"), 0.0);
    assert_eq!(sample(&body, "torronto_links"), 1.0);
    assert_eq!(sample(&body, "torronto_verification_failures_total"), 0.0);
    assert_eq!(sample(&body, "torronto_chunk_request_duration_seconds_count"), 6.0);
    assert!(sample(&body, "torronto_query_duration_seconds_count") >= 1.0);
    // The control share, by kind: the fetcher announced what it stored (Have) and asked
    // for chunks.
    assert!(kind(&body, "have") > 0.0 && kind(&body, "requests") > 0.0, "{body}");
    // Every kind is listed, even one never sent, and the kinds add up to the total.
    let kinds: f64 = ["have", "gossip", "requests", "file_lists", "other"].iter().map(|k| kind(&body, k)).sum();
    assert_eq!(kinds, sample(&body, "torronto_control_sent_bytes_total"));
    assert_eq!(http_get(&metrics, "/").0, "HTTP/1.1 404 Not Found");
    // The seeder sent each chunk once, straight from its file (sendfile).
    let (_, body) = http_get(&seeder_metrics, "/metrics");
    assert_eq!(sample(&body, "torronto_sent_bytes_total"), size as f64);
    assert_eq!(sample(&body, &format!("torronto_peer_sent_chunks_total{{peer=\"{}\"}}", fetcher.addr())), 6.0);
}

#[test]
fn every_control_command_speaks_json_for_scripts() {
    let node = TestNode::start_alone("json");
    let reply = |args: &[&str]| -> (i32, Value) {
        let out = node.cli(args);
        let value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
        (out.code, value)
    };
    let (code, joined) = reply(&["join", "--json"]);
    assert_eq!((code, &joined["Code"]), (0, &Value::from(0)), "{joined}");
    let file = node.root().join("a.txt");
    fs::write(&file, "hello").unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(reply(&["insert", path, "--json"]).1["Code"], 0);
    // A refusal is still JSON, with its code, and the exit status says it failed.
    let (code, again) = reply(&["insert", path, "--json"]);
    assert_ne!(code, 0);
    assert_eq!(again["Code"], 3, "{again}");
    assert!(again["Reason"].as_str().is_some_and(|r| r.contains("a.txt")), "{again}");
    let (_, status) = reply(&["query", "--json"]);
    assert_eq!(status["files"], serde_json::json!(["a.txt"]));
    assert_eq!(reply(&["leave", "--json"]).1["Code"], 0);
}
