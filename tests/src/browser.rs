//! Harness for the browser end-to-end tests: real nodes serving the control panel with
//! `--ws`, and a real headless Chromium driven through chromedriver (WebDriver).
//!
//! Layout of this file, top to bottom:
//! - [`require_browser`]: the built app (`web/dist`, made by `scripts/build-web.sh`),
//!   Chromium and chromedriver must be there; a test without them fails, unless
//!   `TORRONTO_SKIP_BROWSER=1` says to skip it (with a message saying why).
//! - [`WsNode`]: one `torronto node --ws` process with a known token, its own folder and
//!   log; [`WsNode::cluster`] starts n of them whose peers files list all n.
//! - [`Browser`]: a WebDriver session on a fresh profile, with a small blocking
//!   WebDriver-over-HTTP client (std's `TcpStream`, one request per connection: the
//!   protocol is plain JSON over loopback HTTP, so no HTTP or TLS library is needed).
//!   Waiting helpers poll JavaScript predicates; a failed wait shows the browser's
//!   console log.
//! - [`artifact`]: where screenshots go (`tests/artifacts/`, git-ignored).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{bin, free_port, query};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Arms the check that the next click reaches `arguments[0]` (see [`Browser::click`]).
const ARM_CLICK_CHECK: &str = "\
    const el = arguments[0];\
    window.__torrontoClick = { el, state: 'armed' };\
    if (!window.__torrontoClickListener) {\
        window.__torrontoClickListener = ev => {\
            const c = window.__torrontoClick;\
            if (c && c.state === 'armed') c.state = c.el.contains(ev.target) ? 'hit' : 'missed';\
        };\
        document.addEventListener('click', window.__torrontoClickListener, true);\
    }";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The built web app, as `scripts/build-web.sh` leaves it.
pub fn web_dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist")
}

/// Whether browser tests can run. Missing pieces fail the test, unless
/// `TORRONTO_SKIP_BROWSER=1`, in which case this prints why and returns false.
pub fn require_browser() -> bool {
    let mut missing = Vec::new();
    if !["index.html", "torronto_web_bg.wasm", "worker.js"].iter().all(|f| web_dist().join(f).is_file()) {
        missing.push(format!("the web app is not built at {} (run scripts/build-web.sh)", web_dist().display()));
    }
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).is_file() {
            missing.push(format!("{tool} is missing (run scripts/setup.sh --browser)"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("TORRONTO_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("SKIPPED (TORRONTO_SKIP_BROWSER=1): {}", missing.join("; "));
        return false;
    }
    panic!("browser tests cannot run: {}; set TORRONTO_SKIP_BROWSER=1 to skip them", missing.join("; "));
}

/// Where test artifacts (screenshots) go; created on demand.
pub fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    fs::create_dir_all(&dir).expect("create tests/artifacts");
    dir.join(name)
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start with {status}; log:\n{}", fs::read_to_string(log).unwrap_or_default());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within {START_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// Nodes with the WebSocket endpoint

/// One `torronto node --ws` process. Killed when dropped; a failing test prints its log.
#[derive(Debug)]
pub struct WsNode {
    pub label: String,
    pub port: u16,
    pub ws_port: u16,
    pub token: String,
    /// The network secret file, for a private node (`--secret`).
    pub secret: Option<PathBuf>,
    root: tempfile::TempDir,
    child: Option<Child>,
}

impl WsNode {
    /// Starts `n` nodes whose peers files list all `n`, joined at start if `join`.
    pub fn cluster(n: usize, join: bool) -> Vec<WsNode> {
        Self::cluster_with(n, join, None)
    }

    /// [`WsNode::cluster`] of a private network: every node started with `--secret secret`.
    pub fn private_cluster(n: usize, join: bool, secret: &Path) -> Vec<WsNode> {
        Self::cluster_with(n, join, Some(secret))
    }

    fn cluster_with(n: usize, join: bool, secret: Option<&Path>) -> Vec<WsNode> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
        let mut nodes: Vec<WsNode> =
            ports.into_iter().enumerate().map(|(i, port)| WsNode::prepare(&format!("w{i}"), port, &peers)).collect();
        // A panel served by one node opens sessions to the others: each node allows the
        // other nodes' pages (a node refuses WebSocket handshakes from foreign origins).
        let origins: Vec<String> = nodes.iter().map(|n| format!("http://127.0.0.1:{}", n.ws_port)).collect();
        for node in &mut nodes {
            node.secret = secret.map(Path::to_path_buf);
            node.start(join, &origins);
        }
        nodes
    }

    fn prepare(label: &str, port: u16, peers: &str) -> WsNode {
        let root = tempfile::Builder::new().prefix(&format!("torronto-web-{label}-")).tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("share")).expect("create share dir");
        fs::write(root.path().join("peers.txt"), peers).expect("write peers file");
        WsNode {
            label: label.to_string(),
            port,
            ws_port: free_port(),
            token: format!("token-{label}-{}", std::process::id()),
            secret: None,
            root,
            child: None,
        }
    }

    fn start(&mut self, join: bool, allow_origins: &[String]) {
        let log_path = self.root.path().join("node.log");
        let log = fs::File::create(&log_path).expect("create node log");
        let mut cmd = Command::new(bin());
        cmd.args(["node", "--listen", &self.addr(), "--ws", &format!("127.0.0.1:{}", self.ws_port)])
            .arg("--dir")
            .arg(self.dir())
            .arg("--peers")
            .arg(self.root.path().join("peers.txt"))
            .args(["--token", &self.token])
            .arg("--insert-from")
            .arg(self.scratch())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            // Registered where this process's control clients look, like every test node.
            .env("XDG_STATE_HOME", crate::state_home())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        if join {
            cmd.arg("--join");
        }
        for origin in allow_origins {
            cmd.args(["--allow-origin", origin]);
        }
        if let Some(secret) = &self.secret {
            cmd.arg("--secret").arg(secret);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start node {}: {e}", self.label));
        wait_for_port(self.port, &mut child, &format!("node {}", self.label), &log_path);
        wait_for_port(self.ws_port, &mut child, &format!("node {} (--ws)", self.label), &log_path);
        // The tests' CLI finds the token where the node registers it, after it listens.
        let deadline = Instant::now() + START_TIMEOUT;
        while crate::registered_token(self.port).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// `127.0.0.1:PORT`, the node's identity and control address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node's WebSocket endpoint, as the panel names it.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.ws_port)
    }

    /// The control-panel address the node prints.
    pub fn panel_url(&self) -> String {
        format!("http://127.0.0.1:{}/#token={}", self.ws_port, self.token)
    }

    /// The control-panel address as the node printed it at start (with the network
    /// secret, in a private network).
    pub fn printed_panel_url(&self) -> String {
        let log = self.log();
        let url = log.lines().find_map(|l| l.strip_prefix("control panel: "));
        url.unwrap_or_else(|| panic!("node {} printed no panel URL:\n{log}", self.label)).to_string()
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("share")
    }

    /// A folder for test inputs, outside the node's shared folder.
    pub fn scratch(&self) -> PathBuf {
        let p = self.root.path().join("scratch");
        fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// `torronto query --json` over loopback TCP.
    #[track_caller]
    pub fn query(&self) -> Value {
        query(&self.addr())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.root.path().join("node.log")).unwrap_or_default()
    }
}

impl Drop for WsNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "===== node {} ({}): last lines of its log =====\n{tail}\n===== end =====",
                self.label,
                self.addr()
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// WebDriver

/// A headless Chromium session on a fresh profile. Closed when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Option<Child>,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
    /// Where the browser saves downloads.
    pub downloads: PathBuf,
}

impl Browser {
    pub fn start() -> Browser {
        let port = free_port();
        let profile = tempfile::Builder::new().prefix("torronto-chromium-").tempdir().expect("tempdir");
        let downloads = profile.path().join("downloads");
        fs::create_dir_all(&downloads).expect("create downloads dir");
        let log_path = profile.path().join("chromedriver.log");
        let log = fs::File::create(&log_path).expect("create chromedriver log");
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        wait_for_port(port, &mut driver, "chromedriver", &log_path);
        let user_data = profile.path().join("user-data");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1280,1400".into(),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut b = Browser { driver: Some(driver), port, session: String::new(), _profile: profile, downloads };
        let created = b.http("POST", "/session", Some(&caps)).unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        b.session = created["sessionId"].as_str().expect("sessionId").to_string();
        b.cmd("POST", "/timeouts", json!({"script": 120_000, "pageLoad": 30_000}));
        b
    }

    /// One WebDriver request; the `value` of the answer, or the error it reports.
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(180))).map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
        // chromedriver may keep the connection open despite `Connection: close`, so the
        // answer ends where its Content-Length (or its last chunk) says.
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let (head, mut payload) = loop {
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                let body = raw[split + 4..].to_vec();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let chunked = head.contains("transfer-encoding: chunked");
                let complete = match length {
                    Some(n) => body.len() >= n,
                    None if chunked => body.ends_with(b"0\r\n\r\n"),
                    None => false,
                };
                if complete {
                    break (head, body);
                }
            }
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP header end")?;
                break (String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(), raw[split + 4..].to_vec());
            }
            raw.extend_from_slice(&buf[..n]);
        };
        if head.contains("transfer-encoding: chunked") {
            payload = dechunk(&payload);
        }
        let v: Value = serde_json::from_slice(&payload)
            .map_err(|e| format!("bad JSON from chromedriver ({e}): {}", String::from_utf8_lossy(&payload)))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            return Err(format!("{err}: {}", value.get("message").and_then(Value::as_str).unwrap_or("")));
        }
        Ok(value)
    }

    /// A command on this session; panics on a WebDriver error.
    #[track_caller]
    pub fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == "GET" { None } else { Some(&body) };
        self.http(method, &path, body).unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}\n{}", self.console()))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", json!({}));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    #[track_caller]
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Runs an async script: it must call `arguments[arguments.length - 1]` with its result.
    #[track_caller]
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/async", json!({ "script": script, "args": args }))
    }

    /// The element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let found = self.http("POST", &path, Some(&json!({"using": "css selector", "value": css}))).ok()?;
        found.get(ELEMENT).and_then(Value::as_str).map(str::to_string)
    }

    /// Waits for the element matching `css` and returns it.
    #[track_caller]
    pub fn element(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no element matches {css} after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element matching `css` as a user would: WebDriver moves the pointer to
    /// its middle and presses there. The page may move between WebDriver placing the
    /// pointer and pressing (a status poll adds a row above, a notice goes), and then the
    /// press lands elsewhere without any error; so a listener on the document checks that
    /// the element got the click, and if it did not, the click is made again.
    #[track_caller]
    pub fn click(&self, css: &str) {
        self.element(css, Duration::from_secs(20));
        // An enabled element only: a click on a disabled button would do nothing silently.
        let script = "const e = document.querySelector(arguments[0]); return !!e && !e.disabled;";
        self.wait(Duration::from_secs(20), &format!("{css} is enabled"), script, json!([css]));
        for attempt in 1..=3 {
            let e = self.element(css, Duration::from_secs(20));
            self.exec(ARM_CLICK_CHECK, json!([{ ELEMENT: e }]));
            self.cmd("POST", &format!("/element/{e}/click"), json!({}));
            // 'hit', or nothing: a page that navigated away forgot the check, and the
            // click did what it was for.
            let state = self.exec("return window.__torrontoClick && window.__torrontoClick.state;", json!([]));
            if state != json!("armed") && state != json!("missed") {
                return;
            }
            eprintln!("click {attempt} on {css} landed elsewhere (the page moved under it); clicking again");
            self.wait(Duration::from_secs(20), &format!("{css} is enabled"), script, json!([css]));
        }
        self.fail(&format!("three clicks on {css} all landed elsewhere"));
    }

    /// Types `text` into the element matching `css` (replacing what it held, unless it
    /// is a file input, where the text is a path to upload).
    #[track_caller]
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css, Duration::from_secs(20));
        let is_file = self.exec("return document.querySelector(arguments[0]).type === 'file';", json!([css]));
        if is_file != Value::Bool(true) {
            self.cmd("POST", &format!("/element/{e}/clear"), json!({}));
        }
        self.cmd("POST", &format!("/element/{e}/value"), json!({ "text": text }));
    }

    /// Sends keystrokes to the element matching `css` as a keyboard would (it gets the
    /// focus first): WebDriver's key codes, e.g. `"\u{E007}"` for Enter.
    #[track_caller]
    pub fn press(&self, css: &str, keys: &str) {
        let e = self.element(css, Duration::from_secs(20));
        self.cmd("POST", &format!("/element/{e}/value"), json!({ "text": keys }));
    }

    /// Resizes the browser window (the page's viewport follows).
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", json!({ "width": width, "height": height }));
    }

    /// Polls `script` (with `args`) until it returns something truthy, and returns that.
    #[track_caller]
    pub fn wait(&self, timeout: Duration, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.exec(script, args.clone());
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {timeout:?} waiting until {what}"));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Panics with `what`, the page's visible text and the console log; leaves a screenshot.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        let shot = artifact("browser-failure.png");
        self.screenshot(&shot);
        let text = self
            .http(
                "POST",
                &format!("/session/{}/execute/sync", self.session),
                Some(&json!({
                    "script": "return document.body ? document.body.innerText : '';", "args": []
                })),
            )
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        panic!(
            "{what}\n--- page text ---\n{text}\n--- console ---\n{}\n(screenshot: {})",
            self.console(),
            shot.display()
        );
    }

    /// The browser console so far (chromedriver's log endpoint).
    pub fn console(&self) -> String {
        let path = format!("/session/{}/se/log", self.session);
        match self.http("POST", &path, Some(&json!({"type": "browser"}))) {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(v) => v.to_string(),
            Err(e) => format!("(no console log: {e})"),
        }
    }

    /// Saves a PNG of the page.
    pub fn screenshot(&self, path: &Path) {
        let path_s = format!("/session/{}/screenshot", self.session);
        if let Ok(Value::String(b64)) = self.http("GET", &path_s, None) {
            let _ = fs::write(path, base64_decode(&b64));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http("DELETE", &format!("/session/{}", self.session), None);
        }
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trip() {
        assert_eq!(super::base64_decode("aGVsbG8sIHRvcnJvbnRv"), b"hello, torronto");
        assert_eq!(super::base64_decode("YQ=="), b"a");
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(super::dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
