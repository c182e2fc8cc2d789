//! The `--ws` listener: one port serving the built web app and the WebSocket endpoint.
//!
//! A deliberately small HTTP/1.1 server: it peeks at the request head (bounded in size
//! and time) to decide, then either answers a static file from the web root and closes,
//! or hands the untouched stream to the WebSocket handshake (`GET /ws`), whose session
//! is passed to the driver as a connection like any TCP one, never local. In a private
//! network the session's first message decides, in the request's own task: a Noise
//! first record gets the secure handshake ([`Private::accept_ws`]) and the session
//! becomes a member connection; anything else stays a plaintext control session.
//!
//! URL contract of the control panel: the page at `http://HOST:PORT/`, the token in
//! the fragment (`#token=…`, never sent to a server) and, in a private network, the
//! network secret beside it (`&secret=<64 hex digits>`), the session at
//! `ws://HOST:PORT/ws`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore, TryAcquireError};
use tokio::task::AbortHandle;
use torronto_core::{NetworkSecret, PeerAddr};
use torronto_net::tune;
use torronto_ws_bridge::OriginPolicy;

use crate::input::Input;
use crate::private::{AcceptedWs, Private};
use crate::tasks::Tasks;

/// The request line and headers must fit in this.
const HEAD_LIMIT: usize = 8 * 1024;
/// ... and arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP requests being read or answered at once; more wait in the kernel's backlog.
const MAX_REQUESTS: usize = 64;

/// Where the built web app is by default: `web/dist` of the workspace this binary was
/// built from (scripts/build-web.sh puts it there).
pub fn default_web_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("web").join("dist")
}

/// How to serve the control panel and the WebSocket endpoint.
#[derive(Clone, Debug)]
pub struct WebOptions {
    pub listen: PeerAddr,
    /// The built web app (index.html, the .js and .wasm bundle, styles).
    pub root: PathBuf,
    /// Further origins whose pages may open sessions (`--allow-origin`).
    pub allow_origins: Vec<String>,
}

/// A bound `--ws` listener, ready to serve.
#[derive(Debug)]
pub struct WebListener {
    listener: TcpListener,
    site: Arc<Site>,
    addr: PeerAddr,
}

#[derive(Debug)]
struct Site {
    root: PathBuf,
    origins: OriginPolicy,
}

impl WebListener {
    pub async fn bind(opts: WebOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((opts.listen.host.as_str(), opts.listen.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve the control panel on {}: {e}", opts.listen))?;
        let port = listener.local_addr()?.port();
        let origins =
            OriginPolicy::for_listener(&opts.listen.host, port, &opts.allow_origins).map_err(anyhow::Error::msg)?;
        let addr = PeerAddr::new(opts.listen.host, port);
        Ok(Self { listener, site: Arc::new(Site { root: opts.root, origins }), addr })
    }

    /// The address served, with the port actually bound.
    pub fn addr(&self) -> &PeerAddr {
        &self.addr
    }

    /// Accepts until cancelled; WebSocket sessions go to the driver as [`Input::WebSocket`].
    /// Each request runs as a task of `tasks`. `private`: the node's part in its private
    /// network, if any.
    pub async fn serve(self, inputs: mpsc::Sender<Input>, tasks: Tasks, private: Option<Arc<Private>>) {
        let slots = Arc::new(Semaphore::new(MAX_REQUESTS));
        let heads = Arc::new(Mutex::new(SlowHeads::default()));
        loop {
            let (stream, from) = torronto_net::accept(&self.listener, "control panel").await;
            // Every slot taken: the request still sending its head the longest gives way
            // (a browser sends a head in one packet; a slow client cannot hold the panel).
            // With none of those, wait for a request to finish.
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(TryAcquireError::Closed) => return,
                Err(TryAcquireError::NoPermits) => {
                    heads.lock().unwrap_or_else(|e| e.into_inner()).evict_oldest();
                    let Ok(slot) = slots.clone().acquire_owned().await else { return };
                    slot
                }
            };
            let site = self.site.clone();
            let inputs = inputs.clone();
            let private = private.clone();
            let (id, head_done) = SlowHeads::ticket(&heads);
            let task = tasks.spawn(async move {
                if let Err(e) = handle(stream, from, &site, &inputs, private.as_deref(), head_done).await {
                    tracing::debug!("control panel: {from}: {e:#}");
                }
                drop(slot);
            });
            heads.lock().unwrap_or_else(|e| e.into_inner()).waiting.insert(id, task.abort_handle());
        }
    }
}

/// Requests still sending their head, oldest first.
#[derive(Debug, Default)]
struct SlowHeads {
    next: u64,
    waiting: BTreeMap<u64, AbortHandle>,
}

impl SlowHeads {
    /// A number for the next request, and what its task calls once its head is in.
    fn ticket(heads: &Arc<Mutex<SlowHeads>>) -> (u64, impl FnOnce() + Send + 'static) {
        let mut h = heads.lock().unwrap_or_else(|e| e.into_inner());
        let id = h.next;
        h.next += 1;
        let heads = heads.clone();
        (id, move || drop(heads.lock().unwrap_or_else(|e| e.into_inner()).waiting.remove(&id)))
    }

    /// Ends the oldest request still waiting for its head, if any.
    fn evict_oldest(&mut self) {
        while let Some((_, task)) = self.waiting.pop_first() {
            if !task.is_finished() {
                task.abort();
                return;
            }
        }
    }
}

/// The URL a person opens: the page, with the control token in the fragment and, in a
/// private network, the network secret (so the page's peer can join). A secret itself:
/// it is printed only to the owner's terminal.
pub fn panel_url(addr: &PeerAddr, token: &str, secret: Option<&NetworkSecret>) -> String {
    // A page on 0.0.0.0 is reached at loopback on this machine, and its origin allowed.
    let host = match addr.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    let mut url = format!("http://{host}:{}/#token={}", addr.port, fragment(token));
    if let Some(secret) = secret {
        url.push_str("&secret=");
        url.push_str(&secret.to_hex());
    }
    url
}

/// Percent-encodes what may not stand in a URL fragment (generated tokens are hex).
fn fragment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a request head asked for.
#[derive(Debug, PartialEq)]
enum Request {
    Upgrade,
    /// `host`: the request's `Host` header, if it sent one.
    File {
        path: String,
        head_only: bool,
        host: Option<String>,
    },
    Refuse {
        status: u16,
        message: &'static str,
    },
}

async fn handle(
    stream: TcpStream,
    from: SocketAddr,
    site: &Site,
    inputs: &mpsc::Sender<Input>,
    private: Option<&Private>,
    head_done: impl FnOnce(),
) -> anyhow::Result<()> {
    tune(&stream);
    let (head_len, request) = match tokio::time::timeout(HEAD_TIMEOUT, peek_head(&stream)).await {
        Err(_) => anyhow::bail!("request head did not arrive within {HEAD_TIMEOUT:?}"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => (HEAD_LIMIT, Request::Refuse { status: 431, message: "request head too large" }),
        Ok(Ok(Some((len, head)))) => (len, parse_request(&head)),
    };
    head_done();
    let mut stream = stream;
    match request {
        Request::Upgrade => {
            // The handshake reads the head itself.
            let session = torronto_ws_bridge::accept(stream, &site.origins).await?;
            tracing::debug!("control panel: WebSocket session from {from}");
            let accepted = match private {
                Some(private) => private.accept_ws(session).await.context("secure handshake")?,
                None => AcceptedWs::Plain(session, None),
            };
            inputs.send(Input::WebSocket { from, session: Box::new(accepted) }).await.ok();
            return Ok(());
        }
        // DNS rebinding: a foreign name resolving to this address must not get the
        // panel (as Transmission fixed for CVE-2018-5702); it answers to its own names.
        Request::File { host: Some(host), .. } if !site.origins.allows_host(&host) => {
            consume_head(&mut stream, head_len).await?;
            let message = "this panel answers only to its own address (a guard against DNS rebinding); \
                           start the node with --allow-origin http://NAME:PORT to serve it under another name";
            respond_text(&mut stream, 421, message).await?
        }
        Request::File { path, head_only, .. } => {
            consume_head(&mut stream, head_len).await?;
            serve_file(&mut stream, &site.root, &path, head_only).await?
        }
        Request::Refuse { status, message } => {
            consume_head(&mut stream, head_len).await?;
            respond_text(&mut stream, status, message).await?
        }
    }
    stream.shutdown().await.ok();
    Ok(())
}

/// Reads what was peeked: closing with unread bytes would reset the connection and
/// could lose the answer.
async fn consume_head(stream: &mut TcpStream, head_len: usize) -> std::io::Result<()> {
    let mut consumed = vec![0u8; head_len];
    stream.read_exact(&mut consumed).await.map(drop)
}

/// Peeks until the head is complete: its length and bytes, or `None` if too large.
async fn peek_head(stream: &TcpStream) -> anyhow::Result<Option<(usize, Vec<u8>)>> {
    let mut buf = vec![0u8; HEAD_LIMIT];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end + 4);
            return Ok(Some((end + 4, buf)));
        }
        if n == HEAD_LIMIT {
            return Ok(None);
        }
        anyhow::ensure!(n > 0, "connection closed before a request");
        if n == seen {
            // Peek returns at once while old bytes wait; give the rest time to come.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = n;
    }
}

fn parse_request(head: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Request::Refuse { status: 400, message: "malformed request" },
    }
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Request::Refuse { status: 405, message: "only GET and HEAD are served here" },
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    if path == "/ws" {
        let upgrade = req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("upgrade")
                && String::from_utf8_lossy(h.value).to_ascii_lowercase().contains("websocket")
        });
        return match (upgrade, head_only) {
            (true, false) => Request::Upgrade,
            _ => Request::Refuse { status: 426, message: "this is the WebSocket endpoint: connect with ws://…/ws" },
        };
    }
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned());
    Request::File { path: path.to_owned(), head_only, host }
}

/// Maps a URL path to a file under `root`, or why not.
fn resolve(root: &Path, url_path: &str) -> Result<PathBuf, (u16, &'static str)> {
    let decoded = percent_decode(url_path).ok_or((400, "bad percent-encoding in the path"))?;
    let relative = decoded.strip_prefix('/').ok_or((400, "the path must start with /"))?;
    let mut path = root.to_path_buf();
    if !relative.is_empty() {
        for part in relative.split('/') {
            let normal = matches!(Path::new(part).components().next(), Some(Component::Normal(_)))
                && Path::new(part).components().count() == 1;
            if part.is_empty() || !normal || part.contains(['\\', '\0']) || part.chars().any(char::is_control) {
                return Err((400, "the path may not leave the web root"));
            }
            path.push(part);
        }
    }
    if path.is_dir() {
        path.push("index.html");
    }
    // Symbolic links may not lead outside the root either.
    let inside = match (path.canonicalize(), root.canonicalize()) {
        (Ok(p), Ok(r)) => p.starts_with(&r) && p.is_file(),
        _ => false,
    };
    if !inside {
        return Err((404, "not found"));
    }
    Ok(path)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>torronto</title></head>\n\
<body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">\n\
<h1>torronto</h1>\n<p><strong>web app not built: run scripts/build-web.sh</strong>, then reload this page.</p>\n\
<p>The node is running; its WebSocket endpoint is at <code>/ws</code>.</p>\n</body></html>\n";

async fn serve_file(stream: &mut TcpStream, root: &Path, url_path: &str, head_only: bool) -> anyhow::Result<()> {
    if !root.is_dir() {
        let body = if head_only { "" } else { NOT_BUILT };
        let head = response_head(503, "text/html; charset=utf-8", NOT_BUILT.len() as u64);
        stream.write_all(format!("{head}{body}").as_bytes()).await?;
        return Ok(());
    }
    let path = match resolve(root, url_path) {
        Ok(path) => path,
        Err((status, message)) => return respond_text(stream, status, message).await,
    };
    let mut file = tokio::fs::File::open(&path).await.with_context(|| format!("open {}", path.display()))?;
    let len = file.metadata().await?.len();
    stream.write_all(response_head(200, content_type(&path), len).as_bytes()).await?;
    if !head_only {
        tokio::io::copy(&mut (&mut file).take(len), stream).await?;
    }
    Ok(())
}

async fn respond_text(stream: &mut TcpStream, status: u16, message: &str) -> anyhow::Result<()> {
    let body = format!("{status} {message}\n");
    let head = response_head(status, "text/plain; charset=utf-8", body.len() as u64);
    stream.write_all(format!("{head}{body}").as_bytes()).await?;
    Ok(())
}

fn response_head(status: u16, content_type: &str, len: u64) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    // no-cache: a rebuilt app is picked up on reload. One request per connection keeps
    // this server simple; the page needs only a handful of files.
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         X-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\nConnection: close\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_route_to_files_or_the_endpoint() {
        let get = |target: &str, extra: &str| {
            parse_request(format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
        };
        assert_eq!(get("/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n"), Request::Upgrade);
        assert!(matches!(get("/ws", ""), Request::Refuse { status: 426, .. }));
        assert_eq!(
            get("/a.js?v=1", ""),
            Request::File { path: "/a.js".into(), head_only: false, host: Some("x".into()) }
        );
        assert!(matches!(parse_request(b"POST / HTTP/1.1\r\n\r\n"), Request::Refuse { status: 405, .. }));
        assert!(matches!(parse_request(b"\x01\x02 nonsense\r\n\r\n"), Request::Refuse { status: 400, .. }));
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), "hi").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/x.wasm"), "w").unwrap();
        assert_eq!(resolve(root.path(), "/").unwrap(), root.path().join("index.html"));
        assert_eq!(resolve(root.path(), "/sub/x.wasm").unwrap(), root.path().join("sub/x.wasm"));
        for bad in ["/../x", "/sub/../../x", "/%2e%2e/x", "/sub//x.wasm", "/a\\b", "/%00", "//etc/passwd", "/%zz"] {
            assert_eq!(resolve(root.path(), bad).unwrap_err().0, 400, "{bad}");
        }
        assert_eq!(resolve(root.path(), "/missing.js").unwrap_err().0, 404);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", root.path().join("link")).unwrap();
            assert_eq!(resolve(root.path(), "/link").unwrap_err().0, 404);
        }
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
    }

    #[test]
    fn the_panel_url_carries_the_token_in_the_fragment() {
        assert_eq!(panel_url(&PeerAddr::new("127.0.0.1", 8001), "ab12", None), "http://127.0.0.1:8001/#token=ab12");
        assert_eq!(panel_url(&PeerAddr::new("0.0.0.0", 80), "a b", None), "http://127.0.0.1:80/#token=a%20b");
        assert_eq!(panel_url(&PeerAddr::new("::1", 9), "t", None), "http://[::1]:9/#token=t");
        let secret = NetworkSecret::from_random_bytes([0xa5; 32]);
        assert_eq!(
            panel_url(&PeerAddr::new("127.0.0.1", 8001), "ab12", Some(&secret)),
            format!("http://127.0.0.1:8001/#token=ab12&secret={}", "a5".repeat(32))
        );
    }
}
