//! Browser-style sessions over real WebSockets against real nodes (run in-process with
//! `torronto_node::driver::Driver`) and through the `ws-bridge` relay binary (built
//! beforehand: `cargo build -p torronto-ws-bridge`; see `torronto_tests::ws_bridge_bin`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use torronto_core::wire::{ChunkRef, MessageReader};
use torronto_core::{ChunkIndex, Code, Control, Envelope, FileName, Message, PeerAddr, PeerMessage};
use torronto_node::driver::{Driver, NodeOptions};
use torronto_node::web::WebOptions;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TOKEN: &str = "test-token-0123";
const WAIT: Duration = Duration::from_secs(20);

/// A node running in this process, with its `--ws` listener and one `--insert-from`
/// folder, `inbox`.
struct TestNode {
    tcp: PeerAddr,
    web: PeerAddr,
    inbox: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_node(web_root: PathBuf, allow_origins: Vec<String>) -> TestNode {
    start_node_on("127.0.0.1", web_root, allow_origins).await
}

/// [`start_node`] with its `--ws` listener on `web_host`.
async fn start_node_on(web_host: &str, web_root: PathBuf, allow_origins: Vec<String>) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let options = NodeOptions {
        listen: PeerAddr::new("127.0.0.1", 0),
        advertise: None,
        secret: None,
        pins: Default::default(),
        dir: dir.path().join("node"),
        peers: Vec::new(),
        join: false,
        token: Some(TOKEN.into()),
        insert_from: vec![inbox.clone()],
        registry: None,
        web: Some(WebOptions { listen: PeerAddr::new(web_host, 0), root: web_root, allow_origins }),
        metrics: None,
        space: Default::default(),
        limits: Default::default(),
        bittorrent: None,
        settle: None,
        max_links: torronto_node::options::DEFAULT_MAX_LINKS,
        auto_upload_limit: false,
    };
    let driver = Driver::bind(options).await.unwrap();
    let tcp = driver.addr().clone();
    let web = driver.web_addr().unwrap().clone();
    if web_host == "127.0.0.1" {
        assert_eq!(driver.panel_url().unwrap(), format!("http://127.0.0.1:{}/#token={TOKEN}", web.port));
    }
    tokio::spawn(driver.run(std::future::pending()));
    TestNode { tcp, web, inbox, _dir: dir }
}

async fn connect(url: &str, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await.expect("handshake")?;
    Ok(ws)
}

/// Sends a message as a browser does: header as text, body as binary.
async fn send(ws: &mut Ws, from: Option<PeerAddr>, token: Option<&str>, message: impl Into<Message>) {
    let encoded = Envelope { from, token: token.map(String::from), message: message.into() }.encode();
    ws.send(WsMessage::Text(String::from_utf8(encoded.header.to_vec()).unwrap().into())).await.unwrap();
    if let Some(body) = encoded.body {
        ws.send(WsMessage::Binary(body)).await.unwrap();
    }
}

/// The next message, checking that headers come as text and bodies as binary.
async fn recv(ws: &mut Ws) -> Option<Envelope> {
    let mut reader = MessageReader::new();
    let mut body_next = false;
    loop {
        let frame = match tokio::time::timeout(WAIT, ws.next()).await.expect("an answer in time") {
            Some(Ok(WsMessage::Text(t))) => {
                assert!(!body_next, "a body came as text");
                Bytes::from(t)
            }
            Some(Ok(WsMessage::Binary(b))) => {
                assert!(body_next, "a header came as binary");
                b
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(_)) | None | Some(Err(_)) => return None,
        };
        match reader.push_frame(frame).unwrap() {
            Some(envelope) => return Some(envelope),
            None => body_next = true,
        }
    }
}

/// The next message that `pick` accepts; unsolicited announcements are skipped.
async fn recv_until<T>(ws: &mut Ws, mut pick: impl FnMut(Message) -> Option<T>) -> T {
    loop {
        let envelope = recv(ws).await.expect("the session stays open");
        if let Some(found) = pick(envelope.message) {
            return found;
        }
    }
}

async fn control(ws: &mut Ws, token: Option<&str>, request: Control) -> torronto_core::wire::Reply {
    send(ws, None, token, request).await;
    recv_until(ws, |m| match m {
        Message::Reply(r) => Some(r),
        _ => None,
    })
    .await
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Control from a browser: refused without the token, done with it; then Join,
/// Insert of a real file from the `--insert-from` folder (through the relay, which
/// refuses insert by path, by the owner's CLI instead), Query. Then a second session
/// acting as a browser peer fetches that file chunk by chunk and verifies it.
async fn browser_scenario(url: &str, node: &TestNode, through_relay: bool) {
    let mut panel = connect(url, None).await.unwrap();
    assert_eq!(control(&mut panel, None, Control::Query { file: None }).await.code_or_ok(), Code::BadPermission);
    assert_eq!(control(&mut panel, Some("wrong"), Control::Join).await.code_or_ok(), Code::BadPermission);
    let status = control(&mut panel, Some(TOKEN), Control::Query { file: None }).await;
    assert_eq!(status.code_or_ok(), Code::Ok);
    assert!(status.status.is_some(), "Query answers with the status");
    assert_eq!(control(&mut panel, Some(TOKEN), Control::Join).await.code_or_ok(), Code::Ok);

    let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = node.inbox.join("from-browser-test.bin");
    std::fs::write(&path, &data).unwrap();
    let insert = Control::Insert { path: path.to_string_lossy().into_owned() };
    if through_relay {
        let refused = control(&mut panel, Some(TOKEN), insert.clone()).await;
        assert_eq!(refused.code_or_ok(), Code::BadPermission);
        assert!(refused.reason.is_some_and(|r| r.contains("file picker")));
        let owner = torronto_node::client::request(&node.tcp.to_string(), Some(TOKEN.into()), insert).await.unwrap();
        assert_eq!(owner.reply.code_or_ok(), Code::Ok);
    } else {
        assert_eq!(control(&mut panel, Some(TOKEN), insert).await.code_or_ok(), Code::Ok);
    }
    let status = control(&mut panel, Some(TOKEN), Control::Query { file: None }).await.status.unwrap();
    let i = status.files.iter().position(|f| f == "from-browser-test.bin").expect("the file is listed");
    assert_eq!(status.local[i], 1.0);

    let me = Some(PeerAddr::new("browser-test", 0));
    let mut peer = connect(url, None).await.unwrap();
    send(&mut peer, me.clone(), None, PeerMessage::Add { files: Vec::new() }).await;
    let entry = recv_until(&mut peer, |m| match m {
        Message::Peer(PeerMessage::Files { files }) => {
            files.into_iter().find(|f| f.name.as_str() == "from-browser-test.bin")
        }
        _ => None,
    })
    .await;
    assert_eq!(entry.size, data.len() as u64);
    assert_eq!(entry.chunks, vec![ChunkIndex(0), ChunkIndex(1), ChunkIndex(2)]);
    let name = FileName::new("from-browser-test.bin").unwrap();
    send(&mut peer, me.clone(), None, PeerMessage::GetManifest { file: name.clone() }).await;
    let hashes = recv_until(&mut peer, |m| match m {
        Message::Peer(PeerMessage::Manifest { hashes, digest, .. }) => Some((hashes, digest)),
        _ => None,
    })
    .await;
    let (hashes, digest) = hashes;
    assert_eq!(sha256(&hashes), digest.0, "the manifest matches the announced digest");
    let mut fetched = Vec::new();
    for index in 0..3u32 {
        let chunk = ChunkRef { file: name.clone(), size: entry.size, index: ChunkIndex(index) };
        send(&mut peer, me.clone(), None, PeerMessage::download(chunk)).await;
        let bytes = recv_until(&mut peer, |m| match m {
            Message::Peer(PeerMessage::Upload { chunk, data, .. }) if chunk.index == ChunkIndex(index) => Some(data),
            _ => None,
        })
        .await;
        assert_eq!(sha256(&bytes), hashes[index as usize * 32..][..32], "chunk {index} matches its hash");
        fetched.extend_from_slice(&bytes);
    }
    assert_eq!(fetched, data);
    // The node counts the browser peer as a participant holding nothing.
    let status = control(&mut panel, Some(TOKEN), Control::Query { file: None }).await.status.unwrap();
    assert!(status.peers.iter().any(|p| p == "browser-test:0"), "{:?}", status.peers);
}

#[tokio::test]
async fn browser_sessions_control_and_fetch_through_the_node() {
    let node = start_node(PathBuf::from("/nonexistent"), Vec::new()).await;
    browser_scenario(&format!("ws://{}/ws", node.web), &node, false).await;
}

#[tokio::test]
async fn browser_sessions_work_through_the_relay_and_the_node_checks_their_token() {
    let node = start_node(PathBuf::from("/nonexistent"), Vec::new()).await;
    let mut relay = tokio::process::Command::new(torronto_tests::ws_bridge_bin())
        .args(["--listen", "127.0.0.1:0", "--node", &node.tcp.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    // "ws-bridge: ws://127.0.0.1:PORT/ws → node …"
    let url = banner.split_whitespace().find(|w| w.starts_with("ws://")).expect(&banner).to_owned();
    // The relay knows no token: the browser's reaches the node, which checks it.
    browser_scenario(&url, &node, true).await;
    let foreign = connect(&url, Some("http://evil.example")).await;
    assert!(matches!(foreign, Err(tungstenite::Error::Http(r)) if r.status() == 403));

    // A private network's session (it opens with a Noise first record) is refused, with
    // a reason pointing to the node's own --ws endpoint.
    let mut ws = connect(&url, None).await.unwrap();
    let config = torronto_core::SecureConfig::new(
        torronto_core::Identity::from_random_bytes([5; 32]),
        torronto_core::NetworkSecret::from_random_bytes([6; 32]),
        Default::default(),
    );
    let mut handshake = torronto_core::Handshake::initiator(&config, [7; 32]).unwrap();
    ws.send(WsMessage::Binary(handshake.poll_record().unwrap())).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.expect("an answer in time") {
        Some(Ok(WsMessage::Close(Some(frame)))) => {
            assert!(frame.reason.contains("open networks only") && frame.reason.contains("--ws"), "{}", frame.reason);
        }
        other => panic!("the relay closes a secure session with its reason: {other:?}"),
    }
}

#[tokio::test]
async fn origins_other_than_the_nodes_own_are_refused() {
    let node = start_node(PathBuf::from("/nonexistent"), vec!["https://panel.example".into()]).await;
    let url = format!("ws://{}/ws", node.web);
    for foreign in ["http://evil.example", "http://127.0.0.1:1", "null"] {
        match connect(&url, Some(foreign)).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403, "{foreign}"),
            other => panic!("{foreign}: {other:?}"),
        }
    }
    let port = node.web.port;
    for own in [format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}"), "https://panel.example".into()]
    {
        let mut ws = connect(&url, Some(&own)).await.unwrap_or_else(|e| panic!("{own}: {e}"));
        assert_eq!(control(&mut ws, Some(TOKEN), Control::Query { file: None }).await.code_or_ok(), Code::Ok);
    }
}

#[tokio::test]
async fn an_over_long_frame_closes_only_its_session() {
    let node = start_node(PathBuf::from("/nonexistent"), Vec::new()).await;
    let url = format!("ws://{}/ws", node.web);
    let mut other = connect(&url, None).await.unwrap();
    // A header over 64 KiB, then a message over the 16 MiB any frame may have.
    for size in [64 * 1024 + 1, 16 * 1024 * 1024 + 1] {
        let mut bad = connect(&url, None).await.unwrap();
        let _ = bad.send(WsMessage::Binary(Bytes::from(vec![b' '; size]))).await;
        assert!(recv(&mut bad).await.is_none(), "the session of {size} bytes is closed");
    }
    assert_eq!(control(&mut other, Some(TOKEN), Control::Query { file: None }).await.code_or_ok(), Code::Ok);
    let mut fresh = connect(&url, None).await.unwrap();
    assert_eq!(control(&mut fresh, Some(TOKEN), Control::Query { file: None }).await.code_or_ok(), Code::Ok);
}

/// One HTTP request; the server answers and closes.
async fn http_get(addr: &PeerAddr, target: &str) -> (u16, String, Vec<u8>) {
    http_get_as(addr, target, &addr.to_string()).await
}

/// One HTTP request naming `host` in its `Host` header.
async fn http_get_as(addr: &PeerAddr, target: &str, host: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect((addr.host.as_str(), addr.port)).await.unwrap();
    stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head") + 4;
    let head = String::from_utf8(answer[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, answer[end..].to_vec())
}

fn write(root: &Path, name: &str, data: &[u8]) {
    std::fs::write(root.join(name), data).unwrap();
}

#[tokio::test]
async fn the_listener_serves_the_web_app_and_nothing_outside_it() {
    let site = tempfile::tempdir().unwrap();
    let root = site.path().join("dist");
    std::fs::create_dir(&root).unwrap();
    write(&root, "index.html", b"<!doctype html><title>panel</title>");
    write(&root, "app_bg.wasm", b"\0asm\x01\0\0\0");
    write(&root, "app.js", b"export default 1;");
    write(site.path(), "Cargo.toml", b"[secret]");
    let node = start_node(root, Vec::new()).await;

    let (status, head, body) = http_get(&node.web, "/").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: text/html"), "{head}");
    assert_eq!(body, b"<!doctype html><title>panel</title>");
    let (status, head, body) = http_get(&node.web, "/app_bg.wasm").await;
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: application/wasm\r\n"), "{head}");
    assert_eq!(body, b"\0asm\x01\0\0\0");
    let (_, head, _) = http_get(&node.web, "/app.js?v=2").await;
    assert!(head.contains("Content-Type: text/javascript"), "{head}");
    for escape in ["/../Cargo.toml", "/%2e%2e/Cargo.toml", "/..%2fCargo.toml"] {
        let (status, _, body) = http_get(&node.web, escape).await;
        assert!(status == 400 || status == 404, "{escape}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{escape}");
    }
    assert_eq!(http_get(&node.web, "/missing.css").await.0, 404);
    assert_eq!(http_get(&node.web, "/ws").await.0, 426);
    // No other site may frame the panel (clickjacking its buttons).
    assert!(head.contains("X-Frame-Options: DENY\r\n"), "{head}");
    assert!(head.contains("Content-Security-Policy: frame-ancestors 'none'\r\n"), "{head}");
    // DNS rebinding: a foreign name that resolves here gets no page; loopback names do.
    let (status, _, body) = http_get_as(&node.web, "/", &format!("attacker.example:{}", node.web.port)).await;
    assert_eq!(status, 421);
    assert!(!String::from_utf8_lossy(&body).contains("<title>"), "the page itself was served");
    assert_eq!(http_get_as(&node.web, "/", &format!("localhost:{}", node.web.port)).await.0, 200);
}

#[tokio::test]
async fn a_missing_web_app_gets_a_page_saying_how_to_build_it() {
    let node = start_node(PathBuf::from("/nonexistent/web/dist"), Vec::new()).await;
    let (status, head, body) = http_get(&node.web, "/").await;
    assert_eq!(status, 503);
    assert!(head.contains("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("web app not built: run scripts/build-web.sh"));
}

/// A browser session is a remote client: it may insert by path only from the node's
/// `--insert-from` folders, whatever symlink or `..` the path takes.
#[tokio::test]
async fn remote_inserts_only_from_the_insert_from_folders() {
    let node = start_node(PathBuf::from("/nonexistent"), Vec::new()).await;
    let mut panel = connect(&format!("ws://{}/ws", node.web), None).await.unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"not for the network").unwrap();
    std::os::unix::fs::symlink(&secret, node.inbox.join("link.txt")).unwrap();
    std::fs::write(node.inbox.join("fine.txt"), b"for the network").unwrap();
    let insert = |p: &Path| Control::Insert { path: p.to_string_lossy().into_owned() };
    // inbox/../../… back up to the root, then down to the secret.
    let mut dotdot = node.inbox.clone();
    dotdot.extend(node.inbox.components().skip(1).map(|_| ".."));
    dotdot.push(secret.strip_prefix("/").unwrap());
    for path in [secret.clone(), node.inbox.join("link.txt"), dotdot] {
        let reply = control(&mut panel, Some(TOKEN), insert(&path)).await;
        assert_eq!(reply.code_or_ok(), Code::BadPermission, "{}", path.display());
        let reason = reply.reason.unwrap_or_default();
        assert!(reason.contains("--insert-from") && reason.contains("file picker"), "{reason}");
    }
    assert_eq!(control(&mut panel, Some(TOKEN), insert(&node.inbox.join("fine.txt"))).await.code_or_ok(), Code::Ok);
    let status = control(&mut panel, Some(TOKEN), Control::Query { file: None }).await.status.unwrap();
    assert_eq!(status.files, vec!["fine.txt".to_owned()], "only the file inside was inserted");
    // The owner's CLI on the machine may insert any file the node can read.
    let owner =
        torronto_node::client::request(&node.tcp.to_string(), Some(TOKEN.into()), insert(&secret)).await.unwrap();
    assert_eq!(owner.reply.code_or_ok(), Code::Ok);
}

#[tokio::test]
async fn slow_clients_holding_every_slot_do_not_delay_the_panel() {
    let site = tempfile::tempdir().unwrap();
    write(site.path(), "index.html", b"<!doctype html><title>panel</title>");
    let node = start_node(site.path().to_path_buf(), Vec::new()).await;
    // Slowloris: more connections than the panel serves at once, each sending half a head.
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect((node.web.host.as_str(), node.web.port)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: ").await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, _, _) =
        tokio::time::timeout(Duration::from_secs(5), http_get(&node.web, "/")).await.expect("answered");
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "the page took {:?}", started.elapsed());
    drop(slow);
}

/// This machine's address on its network (not loopback), if it has one: the source of
/// a datagram socket "connected" toward a documentation address (nothing is sent).
fn lan_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("198.51.100.1:9").ok()?;
    Some(probe.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback())
}

/// A WebSocket session to `node`'s `--ws` port at `ip`, from `ip` (so not from loopback).
async fn connect_from(ip: std::net::IpAddr, node: &TestNode) -> Option<Ws> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip, 0).into()).unwrap();
    let stream = socket.connect((ip, node.web.port).into()).await.ok()?;
    let url = format!("ws://{ip}:{}/ws", node.web.port);
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.ok()?;
    Some(ws)
}

/// Whether a session answers a Query (a refused one is closed instead).
async fn answers(ws: &mut Ws) -> bool {
    send(ws, None, Some(TOKEN), Control::Query { file: None }).await;
    loop {
        match recv(ws).await {
            Some(Envelope { message: Message::Reply(_), .. }) => return true,
            Some(_) => continue,
            None => return false,
        }
    }
}

#[tokio::test]
async fn one_remote_address_holds_at_most_sixteen_websocket_sessions() {
    let Some(ip) = lan_address() else {
        return eprintln!("skipped: this machine has no address besides loopback to connect from");
    };
    let node = start_node_on("0.0.0.0", PathBuf::from("/nonexistent"), Vec::new()).await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(connect_from(ip, &node).await.expect("the WebSocket handshake"));
    }
    let mut answered = 0;
    for ws in &mut sessions {
        answered += usize::from(answers(ws).await);
    }
    assert_eq!(answered, 16, "sessions from {ip} that were kept");
    // Once one closes, the address may open another.
    sessions.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from(ip, &node).await.expect("the WebSocket handshake");
    assert!(answers(&mut again).await, "a new session after the others closed");
    // Loopback is shared by every page and user of this machine: not counted.
    let url = format!("ws://127.0.0.1:{}/ws", node.web.port);
    let mut local = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(&url, None).await.unwrap();
        assert!(answers(&mut ws).await, "a loopback session was refused");
        local.push(ws);
    }
}
