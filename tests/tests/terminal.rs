//! The terminal: `torronto insert` reports the node's progress (plain lines off a
//! terminal, a bar on one),
//! and `torronto watch` redraws a live view in a pseudo-terminal (util-linux `script`
//! gives it one), follows what happens on the node, quits on q or Ctrl-C and gives the
//! terminal back; off a terminal it prints plain snapshots.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use torronto_tests::{bin, random_file, state_home, wait_until, TestNode};

#[test]
fn insert_shows_the_nodes_progress_as_plain_lines_or_as_a_bar_on_a_terminal() {
    let node = TestNode::start_alone("inserter");
    // Large enough that copying and hashing it takes the node a while.
    let file = node.root().join("big.bin");
    std::fs::File::create(&file).unwrap().set_len(256 << 20).unwrap();
    let out = node.insert(&file).ok("insert");
    assert_eq!(out.stdout.trim(), "inserted", "{out}");
    assert!(!out.stderr.contains('\x1b'), "terminal codes off a terminal:\n{out}");
    // Each line is what the node said it had done: some of the file, not all of it yet.
    let under_way: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("inserting big.bin: ") && l.contains(" of 256.0 MiB)"))
        .filter(|l| {
            l.split('%').next().and_then(|p| p.rsplit(' ').next()?.parse::<u32>().ok()).is_some_and(|p| p < 100)
        })
        .collect();
    assert!(!under_way.is_empty(), "no progress line:\n{out}");

    // On a terminal: one bar, redrawn in place, with bytes, rate and ETA.
    let file = node.root().join("bar.bin");
    std::fs::File::create(&file).unwrap().set_len(256 << 20).unwrap();
    let mut insert = in_a_terminal(&format!("insert {} --node {}", file.display(), node.addr()));
    assert_eq!(insert.wait_exit(), Some(0), "{:?}", insert.text());
    let text = insert.text();
    assert!(text.contains("inserted"), "{text:?}");
    let bar = text.split('\r').find(|l| l.contains("bar.bin █") || l.contains("bar.bin ░"));
    let bar = bar.unwrap_or_else(|| panic!("no progress bar:\n{text:?}"));
    assert!(bar.contains("/ 256.0 MiB") && bar.contains("ETA"), "{bar:?}");
    assert!(text.matches("\r\x1b[2K").count() >= 2, "not redrawn in place:\n{text:?}");
}

/// A child whose stdout is gathered as it comes.
struct Captured {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .env("XDG_STATE_HOME", state_home())
            .env_remove("TORRONTO_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watch");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (sink, mut stdout) = (output.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Captured { child, output }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn type_keys(&mut self, keys: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(keys).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the process to end on its own; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let mut code = None;
        wait_until(Duration::from_secs(30), "the process to end", || {
            code = self.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `torronto ARGS` in a pseudo-terminal of its own.
fn in_a_terminal(args: &str) -> Captured {
    let command = format!("{} {args}", bin().display());
    let mut script = Command::new("script");
    script.args(["--quiet", "--flush", "--return", "--command", &command, "/dev/null"]);
    Captured::start(script)
}

/// `torronto watch` in a pseudo-terminal of its own.
fn watch_in_a_terminal(node: &TestNode) -> Captured {
    in_a_terminal(&format!("watch --node {} --interval 0.3", node.addr()))
}

/// Inserts a new file of `size` random bytes named `name` on `node`.
fn insert_new(node: &TestNode, name: &str, size: usize, seed: u64) {
    let file = node.root().join(name);
    random_file(&file, size, seed);
    node.insert(&file).ok(&format!("insert {name}"));
}

#[test]
fn watch_redraws_a_live_view_in_a_terminal_and_quits_on_q_or_ctrl_c() {
    let node = TestNode::start_alone("watched");
    insert_new(&node, "first.bin", 300_000, 1);

    let mut watch = watch_in_a_terminal(&node);
    wait_until(Duration::from_secs(15), "watch to draw first.bin twice", || {
        let text = watch.text();
        text.contains("\x1b[?1049h") && text.matches("first.bin").count() >= 2
    });
    // Live: a file inserted now shows up in a later frame, drawn over the last.
    insert_new(&node, "second.bin", 100_000, 2);
    wait_until(Duration::from_secs(15), "watch to show second.bin", || watch.text().contains("second.bin"));
    let text = watch.text();
    let frames = text.matches("\x1b[H").count();
    assert!(frames >= 3, "{frames} frames: not redrawn in place:\n{text:?}");
    assert!(text.contains("293.0 KiB") && text.contains("download"), "{text:?}");
    assert!(!text.contains("\x1b[?1049l"), "left the screen early:\n{text:?}");

    watch.type_keys(b"q");
    assert_eq!(watch.wait_exit(), Some(0), "{:?}", watch.text());
    // The terminal is given back: normal screen, cursor shown.
    let text = watch.text();
    let left = text.rfind("\x1b[?1049l").unwrap_or_else(|| panic!("never left the alternate screen:\n{text:?}"));
    assert!(text[..left].contains("\x1b[?25h"), "cursor not shown again:\n{text:?}");

    // Ctrl-C (the terminal's interrupt key) quits as cleanly.
    let mut watch = watch_in_a_terminal(&node);
    wait_until(Duration::from_secs(15), "watch to draw", || watch.text().contains("first.bin"));
    watch.type_keys(b"\x03");
    assert_eq!(watch.wait_exit(), Some(0), "{:?}", watch.text());
    assert!(watch.text().contains("\x1b[?1049l"), "{:?}", watch.text());
}

#[test]
fn watch_off_a_terminal_prints_plain_snapshots() {
    let node = TestNode::start_alone("watched");
    insert_new(&node, "plain.bin", 200_000, 3);
    let mut command = Command::new(bin());
    command.args(["watch", "--node", &node.addr(), "--interval", "0.2"]);
    let watch = Captured::start(command);
    wait_until(Duration::from_secs(15), "two snapshots", || watch.text().matches("plain.bin").count() >= 2);
    let text = watch.text();
    assert!(!text.contains('\x1b'), "terminal codes off a terminal:\n{text}");
    assert!(text.contains(&format!("torronto watch · node {}", node.addr())), "{text}");
    assert!(text.contains("download 0 B/s (limit unlimited) · upload 0 B/s (limit unlimited)"), "{text}");
}
