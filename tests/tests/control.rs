//! The control plane against real nodes: every connection needs the token, loopback
//! included, so another user of the machine cannot control a node; the owner's CLI
//! finds it without flags, and never hands it to a stale port or another user's listener;
//! guesses are throttled; an insert's copy keeps its mode.

use std::fs;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torronto_tests::raw::{assert_code, Raw};
use torronto_tests::{bin, random_file, state_home, wait_until, TestNode};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_local_user_without_the_token_controls_nothing() {
    let node = TestNode::start_alone("guarded");
    let src = node.root().join("wanted.bin");
    random_file(&src, 1000, 1);
    let requests = [
        ("Join", json!({"Action": 0})),
        ("Query", json!({"Action": 3})),
        ("Insert", json!({"Action": 2, "Files": [{"FileName": src.display().to_string()}]})),
    ];
    for (what, request) in requests {
        // Each on a fresh connection from loopback, as any user of the machine can open.
        let mut stranger = Raw::anonymous(&node.addr());
        let reply = stranger.expect_code(&request, 5, &format!("{what} without a token"));
        assert!(reply["Reason"].as_str().is_some_and(|r| r.contains("token")), "{reply}");
    }
    let st = node.query();
    assert_eq!(st["joined"], json!(false), "the stranger's Join did nothing");
    assert_eq!(st["numFiles"], json!(0), "the stranger's Insert did nothing");
    // The same requests with the token (the documented JSON frames, as any client may send).
    let mut owner = Raw::anonymous(&node.addr());
    owner.expect_code(&json!({"Action": 3, "Token": node.token()}), 0, "Query with the token");
}

#[test]
fn the_owners_cli_finds_the_token_and_another_user_is_told_where_it_looked() {
    let mut node = TestNode::start_alone("owner");
    // No flags: the node registered its token for this user.
    node.cli(&["query"]).ok("query without flags by the node's owner");
    let entry = state_home().join("torronto/nodes").join(node.port().to_string());
    assert_eq!(mode(&entry), 0o600);
    assert_eq!(mode(entry.parent().unwrap()), 0o700);
    assert_eq!(fs::read_to_string(&entry).unwrap().trim(), node.token());

    // Another user: another home, nothing registered there.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["query", "--node", &node.addr()])
        .env("XDG_STATE_HOME", other.path())
        .env("HOME", other.path())
        .env_remove("TORRONTO_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(15), "ErrBadPermission: {stderr}");
    let looked = other.path().join("torronto/nodes").join(node.port().to_string());
    assert!(stderr.contains(&looked.display().to_string()), "says where it looked: {stderr}");
    assert!(stderr.contains("TORRONTO_TOKEN"), "says how to pass one: {stderr}");

    // A clean stop (SIGTERM) removes the registration.
    let pid = node.pid().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    wait_until(Duration::from_secs(10), "the node stops on SIGTERM", || !node.is_running());
    assert!(!entry.exists(), "{} is removed at a clean shutdown", entry.display());
}

#[test]
fn wrong_tokens_are_answered_slowly_and_the_third_closes_the_connection() {
    let node = TestNode::start_alone("guessed");
    let mut guesser = Raw::anonymous(&node.addr());
    let started = Instant::now();
    for guess in ["a", "b", "c"] {
        let reply = guesser.expect_code(&json!({"Action": 3, "Token": guess}), 5, &format!("token {guess:?}"));
        assert!(reply.get("status").is_none() && reply.get("files").is_none(), "{reply}");
    }
    // 100 + 200 + 400 ms, node-wide.
    assert!(started.elapsed() >= Duration::from_millis(700), "answered after {:?}", started.elapsed());
    let closed = guesser.wait_closed(Duration::from_secs(5)).expect("closed after the third wrong token");
    assert!(closed.headers.is_empty(), "{:?}", closed.headers);
    // The owner is not slowed down.
    let t = Instant::now();
    node.cli(&["query"]).ok("the owner's query during the burst");
    assert!(t.elapsed() < Duration::from_secs(5));
    let logged = node.log().matches("wrong or missing token").count();
    assert_eq!(logged, 1, "one burst, logged once:\n{}", node.log_tail(20));
}

#[test]
fn an_inserted_copy_is_no_more_readable_than_its_source() {
    let node = TestNode::start_alone("modes");
    let src = node.root().join("private.bin");
    random_file(&src, 70_000, 2);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
    node.insert(&src).ok("insert of a 0600 file by its owner's CLI");
    assert_eq!(mode(&node.file("private.bin")), 0o600, "the copy in DIR keeps 0600");
    let st: Value = node.query();
    assert_code(&st, 0, "Query");
}

#[test]
fn a_registered_token_goes_to_no_stale_port_nor_another_users_listener() {
    let mut node = TestNode::start_alone("killed");
    let token = node.token();
    let port = node.port().to_string();
    node.stop(); // SIGKILL: the registry entry stays behind.
    assert!(state_home().join("torronto/nodes").join(&port).exists());
    let out = node.cli(&["query"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("stale"), "says the entry is stale: {out}");

    // Another user takes the port over and records what the CLI sends it.
    let squat = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen()\nprint('ready',flush=True)\n\
                 c,_=s.accept()\nc.settimeout(3)\ndata=b''\ntry:\n  while True:\n    b=c.recv(4096)\n    \
                 if not b: break\n    data+=b\nexcept Exception: pass\nprint(data.hex(),flush=True)\n";
    let Ok(mut squatter) = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", squat, &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    else {
        eprintln!("skipped the other user's part: no setpriv");
        return;
    };
    let mut lines = std::io::BufReader::new(squatter.stdout.take().unwrap()).lines();
    if lines.next().and_then(Result::ok).as_deref() != Some("ready") {
        eprintln!("skipped the other user's part: cannot run a listener as uid 65534 (not root?)");
        return;
    }
    let out = node.cli(&["query"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("another user (uid 65534)"), "says who listens: {out}");
    let received = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = squatter.wait();
    assert!(!received.is_empty(), "the CLI did reach the squatter");
    let token_hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!received.contains(&token_hex), "the token was not sent to the squatter");
}
