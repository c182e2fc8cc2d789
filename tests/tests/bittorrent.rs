//! BitTorrent (issue 15), with real processes: a node started with `--bittorrent` seeds a
//! file exported by `torronto torrent` to aria2 (a real client nobody here wrote), which
//! must get it byte-identical; raw peers with an unknown info-hash, a malformed handshake
//! or bad requests are closed, and the node goes on serving; `--upload-limit` paces
//! BitTorrent blocks. The other way, `torronto add` brings torrents aria2 seeds into a
//! 2-node network, byte-identical on both, and keeps a lying seeder's bytes out.
//!
//! aria2 ignores a magnet link's `x.pe`, so it learns the node's address from a tracker
//! the test runs: the node announces itself there as a seeder, and the tracker hands
//! every announcer the seeders that announced that info-hash.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torronto_core::bittorrent::metainfo::hex;
use torronto_core::bittorrent::Torrent;
use torronto_tests::{free_port, random_file, sha256_file, wait_until, TestNode};

/// 5 MiB and 123 bytes: 21 pieces of 256 KiB, the last one short.
const SIZE: usize = (5 << 20) + 123;
const NAME: &str = "odd.bin";

/// Whether a Debian `package` is there (`present`), installing it if it is not. Only when
/// that fails does the test skip, saying so.
fn require(package: &str, present: impl Fn() -> bool) -> bool {
    if present() {
        return true;
    }
    let _ = Command::new("apt-get").args(["install", "-y", "-qq", package]).stdout(Stdio::null()).status();
    if present() {
        return true;
    }
    eprintln!(
        "SKIPPED: {package} is missing and `apt-get install {package}` failed (scripts/setup.sh --test installs it)"
    );
    false
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn require_aria2() -> bool {
    require("aria2", || runs("aria2c", &["--version"]))
}

/// Debian's Python, which sees Debian's python3-libtorrent (another `python3` on the
/// PATH may not).
const PYTHON: &str = "/usr/bin/python3";

fn require_libtorrent() -> bool {
    require("python3-libtorrent", || runs(PYTHON, &["-c", "import libtorrent"]))
}

/// A node seeding BitTorrent on a port of its own, with `extra` flags, holding NAME; and
/// that port.
fn seeding_node(extra: &[&str]) -> (TestNode, u16) {
    seeding_node_on("127.0.0.1", extra)
}

/// [`seeding_node`] serving BitTorrent on `host`.
fn seeding_node_on(host: &str, extra: &[&str]) -> (TestNode, u16) {
    let bt_port = free_port();
    let mut node = TestNode::new("bt");
    let bt = format!("{host}:{bt_port}");
    node.set_extra_args(&[&["--bittorrent", bt.as_str()], extra].concat());
    node.start();
    let file = node.root().join(NAME);
    random_file(&file, SIZE, 15);
    node.insert(&file).ok("insert");
    let sha = sha256_file(&file);
    wait_until(Duration::from_secs(30), "the node to hold the file", || node.holds(NAME, SIZE as u64, &sha));
    (node, bt_port)
}

/// `torronto torrent NAME --out OUT ... --node ADDR` (control Action 15); its magnet link.
fn export(node: &TestNode, out: &Path, extra: &[&str]) -> String {
    let out_arg = out.display().to_string();
    let mut args = vec!["torrent", NAME, "--out", &out_arg];
    args.extend_from_slice(extra);
    node.cli(&args).ok("torronto torrent").stdout.trim().to_owned()
}

/// The value of `key` in an announce's query, percent-decoded.
fn param(query: &str, key: &str) -> Option<Vec<u8>> {
    let raw = query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?;
    let mut out = Vec::new();
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex: String = [bytes.next()?, bytes.next()?].iter().map(|&c| c as char).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

/// Seeders (`left=0`) that announced, by info-hash: their ports on 127.0.0.1.
type Seeders = Arc<Mutex<HashMap<Vec<u8>, Vec<u16>>>>;

/// A minimal HTTP tracker on loopback: records each seeder's announce and answers every
/// announce with the seeders of its info-hash (compact form, BEP 23).
fn tracker() -> (String, Seeders) {
    tracker_on([127, 0, 0, 1])
}

/// A tracker listening on `ip`, whose seeders are all at `ip` (on their own ports).
fn tracker_on(ip: [u8; 4]) -> (String, Seeders) {
    let listener = TcpListener::bind((std::net::Ipv4Addr::from(ip), 0)).expect("bind tracker");
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let seeders = Seeders::default();
    let known = seeders.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(n) = stream.read(&mut request) else { continue };
            let text = String::from_utf8_lossy(&request[..n]).into_owned();
            let Some(query) = text.strip_prefix("GET /announce?").and_then(|r| r.split(' ').next()) else { continue };
            let (Some(hash), Some(port)) = (param(query, "info_hash"), param(query, "port")) else { continue };
            let mut known = known.lock().unwrap();
            if param(query, "left").as_deref() == Some(b"0") {
                let port = String::from_utf8(port).unwrap().parse().unwrap();
                known.entry(hash.clone()).or_default().push(port);
            }
            let mut body = format!("d8:intervali600e5:peers{}:", 6 * known.get(&hash).map_or(0, Vec::len)).into_bytes();
            for port in known.get(&hash).into_iter().flatten() {
                body.extend_from_slice(&ip);
                body.extend_from_slice(&port.to_be_bytes());
            }
            body.push(b'e');
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(&[head.as_bytes(), &body].concat());
        }
    });
    (url, seeders)
}

#[test]
fn aria2_downloads_an_exported_file_byte_identical() {
    if !require_aria2() {
        return;
    }
    let (node, bt_port) = seeding_node(&[]);
    let (url, seeders) = tracker();
    let torrent_path = node.root().join("x.torrent");
    let magnet = export(&node, &torrent_path, &["--tracker", &url]);
    let bytes = fs::read(&torrent_path).unwrap();
    let torrent = Torrent::decode(&bytes).expect("the exported .torrent decodes");
    assert_eq!((torrent.info.name.as_str(), torrent.info.length), (NAME, SIZE as u64));
    assert_eq!(torrent.info.piece_length, 256 * 1024);
    assert_eq!(torrent.trackers, vec![url.clone()]);
    let tr: String = url
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b":.-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(
        magnet,
        format!("magnet:?xt=urn:btih:{}&dn={NAME}&xl={SIZE}&x.pe=127.0.0.1:{bt_port}&tr={tr}", hex(&torrent.info_hash))
    );

    // A second export of the same copy takes the cached hashes: same torrent, the
    // recorded info dictionary left untouched.
    let info_file = node.dir().join(".torronto/bittorrent").join(format!("{}.info", hex(&torrent.info_hash)));
    let written = fs::metadata(&info_file).unwrap().modified().unwrap();
    let again = node.root().join("again.torrent");
    assert_eq!(export(&node, &again, &["--tracker", &url]), magnet);
    assert_eq!(fs::read(&again).unwrap(), bytes);
    assert_eq!(fs::metadata(&info_file).unwrap().modified().unwrap(), written);

    // The node announces the export as a seeder on its BitTorrent port.
    wait_until(Duration::from_secs(20), "the node to announce itself to the tracker", || {
        seeders.lock().unwrap().get(&torrent.info_hash[..]) == Some(&vec![bt_port])
    });

    let out = node.root().join("aria2-out");
    let mut aria2 = Command::new("aria2c")
        .arg(format!("--dir={}", out.display()))
        .args(["--seed-time=0", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false"])
        .args([
            "--enable-peer-exchange=false",
            "--bt-stop-timeout=90",
            "--summary-interval=0",
            "--file-allocation=none",
        ])
        .arg(format!("--listen-port={}", free_port()))
        .arg(&torrent_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aria2c");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = aria2.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = aria2.kill();
            panic!("aria2c did not finish in 120 s; node log:\n{}", node.log_tail(40));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut said = String::new();
    aria2.stdout.take().unwrap().read_to_string(&mut said).unwrap();
    assert!(status.success(), "aria2c failed ({status}):\n{said}\nnode log:\n{}", node.log_tail(40));
    let got = fs::read(out.join(NAME)).expect("aria2c wrote the file");
    assert!(got == fs::read(node.file(NAME)).unwrap(), "aria2c's copy differs from the node's");
    assert!(node.log().contains(&format!("downloading {NAME}")), "the node did not log the BitTorrent peer");
}

/// Connects to the node's BitTorrent port and sends `bytes`.
fn raw(bt_port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", bt_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Whether the node closes `s` without sending anything more.
fn closed(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match s.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn handshake(info_hash: &[u8; 20]) -> Vec<u8> {
    [&b"\x13BitTorrent protocol"[..], &[0; 8], info_hash, b"-XX0000-raw-test-pee"].concat()
}

fn request(index: u32, begin: u32, length: u32) -> Vec<u8> {
    [&13u32.to_be_bytes()[..], &[6], &index.to_be_bytes(), &begin.to_be_bytes(), &length.to_be_bytes()].concat()
}

/// After a handshake for the exported file: the node's handshake, bitfield and unchoke.
fn read_opening(s: &mut TcpStream, info_hash: &[u8; 20], pieces: usize) {
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).expect("the node's handshake");
    assert_eq!(&hs[..20], b"\x13BitTorrent protocol");
    assert_eq!(&hs[28..48], info_hash);
    let bitfield_len = pieces.div_ceil(8);
    let mut msgs = vec![0u8; 4 + 1 + bitfield_len + 5];
    s.read_exact(&mut msgs).expect("bitfield and unchoke");
    assert_eq!(&msgs[..5], &[&((1 + bitfield_len) as u32).to_be_bytes()[..], &[5]].concat()[..]);
    assert_eq!(&msgs[5 + bitfield_len..], &[0, 0, 0, 1, 1]);
}

#[test]
fn peers_with_unknown_hashes_or_bad_messages_are_closed_and_the_node_serves_on() {
    let (node, bt_port) = seeding_node(&[]);
    let torrent_path = node.root().join("x.torrent");
    export(&node, &torrent_path, &[]);
    let torrent = Torrent::decode(&fs::read(&torrent_path).unwrap()).unwrap();
    let (hash, pieces) = (torrent.info_hash, torrent.info.pieces.len());

    // An info-hash never exported: closed without a handshake.
    assert!(closed(raw(bt_port, &handshake(&[7; 20]))), "a handshake for an unknown info-hash was answered");
    // Not BitTorrent at all.
    assert!(closed(raw(bt_port, &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3)].concat())), "HTTP was answered");
    // A request over 128 KiB, one past the end of the file, and a length prefix of 4 GiB.
    for bad in [request(0, 0, 128 * 1024 + 1), request(pieces as u32 - 1, 123, 1), vec![0xff; 4]] {
        let mut s = raw(bt_port, &handshake(&hash));
        read_opening(&mut s, &hash, pieces);
        s.write_all(&bad).unwrap();
        assert!(closed(s), "bad message {bad:?} did not close the connection");
    }

    // The node is fine: a good request gets the file's bytes.
    let mut s = raw(bt_port, &handshake(&hash));
    read_opening(&mut s, &hash, pieces);
    s.write_all(&[&[0, 0, 0, 1, 2][..], &request(19, 16384, 16384)].concat()).unwrap();
    let mut piece = vec![0u8; 13 + 16384];
    s.read_exact(&mut piece).expect("the piece");
    assert_eq!(
        &piece[..13],
        &[&(9u32 + 16384).to_be_bytes()[..], &[7], &19u32.to_be_bytes(), &16384u32.to_be_bytes()].concat()[..]
    );
    let file = fs::read(node.file(NAME)).unwrap();
    let at = 19 * 256 * 1024 + 16384;
    assert_eq!(&piece[13..], &file[at..at + 16384]);
    assert!(node.query().is_object(), "the node answers its control port");
}

#[test]
fn exporting_a_file_the_node_lacks_or_with_a_bad_tracker_is_refused() {
    let node = TestNode::start_alone("bt-refusals");
    let out = node.root().join("x.torrent");
    let out_arg = out.display().to_string();
    node.cli(&["torrent", "absent.bin", "--out", &out_arg]).expect_error("a file not held", 14, "ErrFileMissing");
    let file = node.root().join("f.bin");
    random_file(&file, 1000, 3);
    node.insert(&file).ok("insert");
    node.cli(&["torrent", "f.bin", "--out", &out_arg, "--tracker", "ftp://t"]).expect_error("ftp", 16, "ErrBadRequest");
    assert!(!out.exists(), "nothing is written when refused");
    // Without --bittorrent the export works, and the link has no x.pe.
    let link = node.cli(&["torrent", "f.bin", "--out", &out_arg]).ok("export").stdout;
    assert!(link.starts_with("magnet:?xt=urn:btih:") && !link.contains("x.pe="), "{link}");
    assert!(out.exists());
}

#[test]
fn the_upload_limit_paces_bittorrent_peers() {
    let (node, bt_port) = seeding_node(&["--upload-limit", "1MiB/s"]);
    let torrent_path = node.root().join("x.torrent");
    export(&node, &torrent_path, &[]);
    let torrent = Torrent::decode(&fs::read(&torrent_path).unwrap()).unwrap();
    let mut s = raw(bt_port, &handshake(&torrent.info_hash));
    read_opening(&mut s, &torrent.info_hash, torrent.info.pieces.len());
    // 2 MiB: the first 128 blocks of 16 KiB, asked at once.
    let requests: Vec<u8> = (0..128u32).flat_map(|b| request(b / 16, b % 16 * 16384, 16384)).collect();
    let started = Instant::now();
    s.write_all(&requests).unwrap();
    let mut got = vec![0u8; 128 * (13 + 16384)];
    s.read_exact(&mut got).expect("all 128 blocks");
    let took = started.elapsed().as_secs_f64();
    // At 1 MiB/s, 2 MiB less a burst of one block takes nearly 2 s.
    assert!(took > 1.5, "2 MiB in {took:.2} s under a 1 MiB/s upload limit");
    let file = fs::read(node.file(NAME)).unwrap();
    let blocks: Vec<u8> = got.chunks(13 + 16384).flat_map(|m| m[13..].to_vec()).collect();
    assert!(blocks == file[..2 << 20], "the paced blocks are the file's first 2 MiB");
}

// ---------------------------------------------------------------------------------
// `torronto add`: torrents brought into a 2-node network, aria2 seeding them.

/// Writes the files `files` (path below `root/name`, size, seed) and a v1 torrent of
/// them (multi-file unless `single`) with 64 KiB pieces, so pieces straddle files;
/// the .torrent's path.
fn make_torrent(
    root: &Path,
    name: &str,
    files: &[(&str, usize, u64)],
    single: bool,
    trackers: &[String],
) -> std::path::PathBuf {
    use torronto_core::bittorrent::{PieceHasher, TorrentFile};
    let mut hasher = PieceHasher::new(64 * 1024);
    let mut listed = Vec::new();
    for &(path, size, seed) in files {
        let at = if single { root.join(name) } else { root.join(name).join(path) };
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        random_file(&at, size, seed);
        hasher.update(&fs::read(&at).unwrap());
        listed.push(TorrentFile { path: path.split('/').map(str::to_owned).collect(), length: size as u64 });
    }
    let mut info = hasher.finish(name.to_owned());
    if !single {
        info.files = listed;
    }
    let out = root.join(format!("{name}.torrent"));
    fs::write(&out, Torrent::encode(&info, trackers)).unwrap();
    out
}

/// aria2 seeding `torrent` from the data under `dir` on `port` (checked with -V first).
fn aria2_seed(dir: &Path, torrent: &Path, port: u16) -> std::process::Child {
    Command::new("aria2c")
        .arg(format!("--dir={}", dir.display()))
        .args(["-V", "--seed-ratio=0.0", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false"])
        .args(["--enable-peer-exchange=false", "--summary-interval=0", "--bt-seed-unverified=false"])
        .arg(format!("--listen-port={port}"))
        .arg(torrent)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run aria2c")
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn add_brings_torrents_seeded_by_aria2_to_every_node() {
    if !require_aria2() {
        return;
    }
    let c = torronto_tests::Cluster::start_joined(2);
    let a = &c.nodes[0];
    let (url, seeders) = tracker();
    let seed_dir = a.root().join("seed");
    let single =
        make_torrent(&seed_dir, "one.bin", &[("one.bin", (1 << 20) + 7, 41)], true, std::slice::from_ref(&url));
    let multi_files = [("a.txt", 300_000, 42), ("sub/b.bin", 700_003, 43), ("c", 10, 44), ("zero", 0, 45)];
    let multi = make_torrent(&seed_dir, "album", &multi_files, false, std::slice::from_ref(&url));
    let mut aria2 = Vec::new();
    for torrent in [&single, &multi] {
        let port = free_port();
        aria2.push(Killed(aria2_seed(&seed_dir, torrent, port)));
        let hash = Torrent::decode(&fs::read(torrent).unwrap()).unwrap().info_hash;
        wait_until(Duration::from_secs(30), "aria2 to announce itself as a seeder", || {
            seeders.lock().unwrap().get(&hash[..]).is_some_and(|p| p.contains(&port))
        });
    }
    let t = Instant::now();
    a.cli(&["add", &single.display().to_string()]).ok("torronto add one.bin.torrent");
    a.cli(&["add", &multi.display().to_string()]).ok("torronto add album.torrent");
    eprintln!("both torrents added in {:.1}s", t.elapsed().as_secs_f64());
    let mut expect = vec![("one.bin".to_owned(), seed_dir.join("one.bin"))];
    for (path, _, _) in multi_files {
        expect.push((format!("album/{path}"), seed_dir.join("album").join(path)));
    }
    for (name, source) in &expect {
        let (size, sha) = (fs::metadata(source).unwrap().len(), sha256_file(source));
        c.wait_all_hold(Duration::from_secs(60), name, size, &sha);
    }
    let adds = a.dir().join(".torronto/bittorrent/adds");
    let left = fs::read_dir(&adds).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "every add's download folder is removed once its files are inserted");
    // The same torrent again: its names are taken.
    a.cli(&["add", &single.display().to_string()]).expect_error("a second add", 13, "ErrFileExists");
}

/// What a raw seeder sends for a request.
type Answer = Arc<dyn Fn(torronto_core::bittorrent::wire::BlockRef) -> Vec<u8> + Send + Sync>;

/// A BitTorrent peer that has every piece and answers every request with zeros.
fn lying_seeder(info_hash: [u8; 20], pieces: u32) -> u16 {
    raw_seeder(info_hash, pieces, Arc::new(|r| vec![0; r.length as usize]))
}

/// A BitTorrent peer that has every piece and answers each request with `answer`'s bytes.
fn raw_seeder(info_hash: [u8; 20], pieces: u32, answer: Answer) -> u16 {
    use torronto_core::bittorrent::wire::{full_bitfield, PeerMessage};
    let opening = vec![PeerMessage::Bitfield(full_bitfield(pieces)), PeerMessage::Unchoke];
    raw_peer(info_hash, opening, move |msg| match msg {
        PeerMessage::Request(r) => Some(PeerMessage::Piece { index: r.index, begin: r.begin, block: answer(r).into() }),
        _ => None,
    })
}

/// A BitTorrent peer on loopback for `info_hash`: after the handshakes it sends `opening`,
/// then answers each message with what `respond` makes of it. Its port.
fn raw_peer(
    info_hash: [u8; 20],
    opening: Vec<torronto_core::bittorrent::wire::PeerMessage>,
    respond: impl Fn(torronto_core::bittorrent::wire::PeerMessage) -> Option<torronto_core::bittorrent::wire::PeerMessage>
        + Send
        + 'static,
) -> u16 {
    use torronto_core::bittorrent::wire::{decode_message, Handshake, HANDSHAKE_LEN};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut hs = [0u8; HANDSHAKE_LEN];
            if s.read_exact(&mut hs).is_err() {
                continue;
            }
            let mut out = bytes::BytesMut::new();
            out.extend_from_slice(&Handshake::new(info_hash, [7; 20]).encode());
            opening.iter().for_each(|m| m.encode(&mut out));
            let _ = s.write_all(&out);
            let mut input = bytes::BytesMut::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                input.extend_from_slice(&buf[..n]);
                while let Ok(Some(msg)) = decode_message(&mut input) {
                    if let Some(reply) = respond(msg) {
                        out.clear();
                        reply.encode(&mut out);
                        let _ = s.write_all(&out);
                    }
                }
            }
        }
    });
    port
}

#[test]
fn add_keeps_a_lying_seeders_bytes_out() {
    if !require_aria2() {
        return;
    }
    let c = torronto_tests::Cluster::start_joined(2);
    let a = &c.nodes[0];
    let seed_dir = a.root().join("seed");
    let torrent = make_torrent(&seed_dir, "lie.bin", &[("lie.bin", 500_000, 46)], true, &[]);
    let t = Torrent::decode(&fs::read(&torrent).unwrap()).unwrap();
    let liar = format!("127.0.0.1:{}", lying_seeder(t.info_hash, t.info.pieces.len() as u32));
    let path = torrent.display().to_string();
    // Only the liar: every piece fails its hash, the liar is cut off, nothing is stored.
    a.cli(&["add", &path, "--peer", &liar]).expect_error("add from a liar", 14, "ErrFileMissing");
    assert!(file_status_of(a, "lie.bin").is_none(), "nothing of lie.bin may be in the network");
    // The liar first, then aria2: the liar's pieces are refused, aria2's taken.
    let port = free_port();
    let _aria2 = Killed(aria2_seed(&seed_dir, &torrent, port));
    let honest = format!("127.0.0.1:{port}");
    wait_until(Duration::from_secs(20), "aria2 to listen", || TcpStream::connect(&honest).is_ok());
    a.cli(&["add", &path, "--peer", &liar, "--peer", &honest]).ok("add from a liar and aria2");
    let (size, sha) = (500_000, sha256_file(&seed_dir.join("lie.bin")));
    c.wait_all_hold(Duration::from_secs(60), "lie.bin", size, &sha);
    assert!(a.log().contains("cut a peer off"), "the node did not log cutting the liar off");
    // A torrent naming a file outside its folder is refused before anything is fetched.
    let evil = Torrent::encode(
        &torronto_core::bittorrent::Info {
            files: vec![torronto_core::bittorrent::TorrentFile {
                path: vec!["..".into(), "x".into()],
                length: t.info.length,
            }],
            ..t.info.clone()
        },
        &[],
    );
    let evil_path = a.root().join("evil.torrent");
    fs::write(&evil_path, evil).unwrap();
    a.cli(&["add", &evil_path.display().to_string()]).expect_error("an unsafe name", 16, "ErrBadRequest");
}

fn file_status_of(node: &TestNode, name: &str) -> Option<torronto_tests::FileStatus> {
    torronto_tests::file_status(&node.query(), name)
}

/// libtorrent downloading magnet link `argv[1]` into `argv[2]`, dialling `argv[3]`
/// (HOST:PORT) itself, for at most `argv[4]` seconds; exits 0 once it has every piece.
const LIBTORRENT_LEECH: &str = r#"
import sys, time, libtorrent as lt
link, out, peer, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                  "enable_upnp": False, "enable_natpmp": False, "enable_outgoing_utp": False})
p = lt.parse_magnet_uri(link)
p.save_path = out
h = ses.add_torrent(p)
host, port = peer.rsplit(":", 1)
h.connect_peer((host, int(port)))
end = time.time() + limit
while time.time() < end:
    s = h.status()
    if s.is_seeding:
        print("complete, metadata of", h.torrent_file().metadata_size(), "bytes")
        sys.exit(0)
    time.sleep(0.2)
print("timed out: state %s, metadata %s, %d of %d bytes" % (s.state, s.has_metadata, s.total_wanted_done, s.total_wanted))
sys.exit(1)
"#;

/// libtorrent seeding the file `argv[1]` (a v1 torrent it makes, with the trackers
/// `argv[3:]`) on 127.0.0.1:`argv[2]`; prints its magnet link once it seeds, then runs
/// until killed.
const LIBTORRENT_SEED: &str = r#"
import os, sys, time, libtorrent as lt
path, port = sys.argv[1], int(sys.argv[2])
fs = lt.file_storage()
lt.add_files(fs, path)
ct = lt.create_torrent(fs, 0, lt.create_torrent.v1_only)
for url in sys.argv[3:]:
    ct.add_tracker(url)
lt.set_piece_hashes(ct, os.path.dirname(path))
ti = lt.torrent_info(lt.bencode(ct.generate()))
# Every peer of the test is at 127.0.0.1 (libtorrent itself too, in the tracker's answer).
ses = lt.session({"listen_interfaces": "127.0.0.1:%d" % port, "enable_dht": False, "enable_lsd": False,
                  "enable_upnp": False, "enable_natpmp": False, "enable_incoming_utp": False,
                  "allow_multiple_connections_per_ip": True})
p = lt.add_torrent_params()
p.ti = ti
p.save_path = os.path.dirname(path)
h = ses.add_torrent(p)
while not h.status().is_seeding:
    time.sleep(0.1)
print(lt.make_magnet_uri(ti), flush=True)
while True:
    time.sleep(1)
"#;

#[test]
fn libtorrent_fetches_the_metadata_and_downloads_an_export_byte_identical() {
    if !require_libtorrent() {
        return;
    }
    let (node, bt_port) = seeding_node(&[]);
    let magnet = export(&node, &node.root().join("x.torrent"), &[]);
    let out = node.root().join("libtorrent-out");
    fs::create_dir_all(&out).unwrap();
    // Only the magnet link: the info dictionary must come from the node (BEP 9).
    let peer = format!("127.0.0.1:{bt_port}");
    let run = Command::new(PYTHON)
        .args(["-c", LIBTORRENT_LEECH, &magnet, &out.display().to_string(), &peer, "120"])
        .output()
        .expect("run python3");
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "libtorrent failed: {said}{}\nnode log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        node.log_tail(40)
    );
    eprintln!("libtorrent: {said}");
    let got = fs::read(out.join(NAME)).expect("libtorrent wrote the file");
    assert!(got == fs::read(node.file(NAME)).unwrap(), "libtorrent's copy differs from the node's");
}

/// libtorrent seeding `path` on a port of its own, announcing to `trackers`: the
/// process, its magnet link and its port.
fn libtorrent_seed(path: &Path, trackers: &[&str]) -> (Killed, String, u16) {
    let port = free_port();
    let mut child = Command::new(PYTHON)
        .args(["-c", LIBTORRENT_SEED, &path.display().to_string(), &port.to_string()])
        .args(trackers)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run python3");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut magnet = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut magnet).expect("libtorrent's magnet link");
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "libtorrent printed {magnet:?}");
    (Killed(child), magnet.trim().to_owned(), port)
}

#[test]
fn add_brings_a_magnet_served_by_libtorrent_to_every_node() {
    if !require_libtorrent() {
        return;
    }
    let c = torronto_tests::Cluster::start_joined(2);
    let a = &c.nodes[0];
    let seed_dir = a.root().join("seed");
    fs::create_dir_all(&seed_dir).unwrap();
    let path = seed_dir.join("lt.bin");
    random_file(&path, (3 << 20) + 99, 47);
    let (_seeder, magnet, port) = libtorrent_seed(&path, &[]);
    let peer = format!("127.0.0.1:{port}");
    let t = Instant::now();
    a.cli(&["add", &magnet, "--peer", &peer]).ok("torronto add MAGNET");
    eprintln!("magnet {magnet} added in {:.1}s", t.elapsed().as_secs_f64());
    c.wait_all_hold(Duration::from_secs(60), "lt.bin", (3 << 20) + 99, &sha256_file(&path));
    assert!(a.log().contains("metadata of"), "the node did not log fetching the metadata");
    // Again: the name, learnt from the metadata, is taken.
    a.cli(&["add", &magnet, "--peer", &peer]).expect_error("a second add", 13, "ErrFileExists");
    // A magnet nobody serves: libtorrent closes on the unknown info-hash.
    let unknown = format!("magnet:?xt=urn:btih:{}&dn=none", "ab".repeat(20));
    a.cli(&["add", &unknown, "--peer", &peer]).expect_error("an unknown magnet", 14, "ErrFileMissing");
    // Not a v1 magnet link at all: refused before anything is sent.
    let bad = a.cli(&["add", "magnet:?dn=x", "--peer", &peer]);
    assert!(bad.code != 0 && bad.stderr.contains("btih"), "a link without btih: {bad}");
}

/// A namespace reached from this one over a veth pair: this side is 10.77.215.1, the
/// namespace's 10.77.215.2 (the pair goes with the namespace).
fn namespace_beside() -> Result<torronto_tests::sys::Netns, String> {
    use torronto_tests::sys::{run, Netns};
    let ns = Netns::new()?;
    let (here, there) = (format!("t77h{}", std::process::id()), format!("t77n{}", std::process::id()));
    run("ip", &["link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &ns.name])?;
    run("ip", &["addr", "add", "10.77.215.1/24", "dev", &here])?;
    run("ip", &["link", "set", &here, "up"])?;
    ns.ip(&["addr", "add", "10.77.215.2/24", "dev", &there])?;
    ns.ip(&["link", "set", &there, "up"])?;
    Ok(ns)
}

#[test]
fn transmission_downloads_an_export_byte_identical() {
    if !require("transmission-cli", || runs("transmission-cli", &["--version"])) {
        return;
    }
    torronto_tests::skip_unless_netns!();
    // Transmission never dials 127.x peers: it runs in a namespace of its own and
    // reaches the node (and the tracker) at 10.77.215.1 over a veth pair.
    let ns = namespace_beside().expect("a namespace with a veth pair");
    let (node, bt_port) = seeding_node_on("10.77.215.1", &[]);
    let (url, seeders) = tracker_on([10, 77, 215, 1]);
    // Only the magnet link: the info dictionary must come from the node (BEP 9).
    let magnet = export(&node, &node.root().join("x.torrent"), &["--tracker", &url]);
    let hash = Torrent::decode(&fs::read(node.root().join("x.torrent")).unwrap()).unwrap().info_hash;
    wait_until(Duration::from_secs(20), "the node to announce itself to the tracker", || {
        seeders.lock().unwrap().get(&hash[..]) == Some(&vec![bt_port])
    });
    let (conf, out) = (node.root().join("transmission"), node.root().join("transmission-out"));
    fs::create_dir_all(&conf).unwrap();
    fs::create_dir_all(&out).unwrap();
    let settings = r#"{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
        "port-forwarding-enabled": false, "encryption": 0}"#;
    fs::write(conf.join("settings.json"), settings).unwrap();
    let said = node.root().join("transmission.log");
    let (conf_arg, out_arg) = (conf.display().to_string(), out.display().to_string());
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "transmission-cli", "-g", &conf_arg, "-w", &out_arg, "-et", "-M"])
        .args(["-p", &free_port().to_string(), &magnet])
        .stdout(fs::File::create(&said).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run transmission-cli");
    let _transmission = Killed(child);
    let want = fs::read(node.file(NAME)).unwrap();
    let started = Instant::now();
    while fs::read(out.join(NAME)).ok().as_ref() != Some(&want) {
        if started.elapsed() > Duration::from_secs(120) {
            let log = String::from_utf8_lossy(&fs::read(&said).unwrap_or_default()).replace('\r', "\n");
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "Transmission did not get the file in 120 s:\n{}\nnode log:\n{}",
                tail.join("\n"),
                node.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("Transmission got {NAME} byte-identical in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn query_shows_an_add_as_it_downloads() {
    let c = torronto_tests::Cluster::start_joined(2);
    let a = &c.nodes[0];
    let seed_dir = a.root().join("seed");
    let torrent = make_torrent(&seed_dir, "slow.bin", &[("slow.bin", 1 << 20, 48)], true, &[]);
    let t = Torrent::decode(&fs::read(&torrent).unwrap()).unwrap();
    let data = Arc::new(fs::read(seed_dir.join("slow.bin")).unwrap());
    // 64 blocks of 16 KiB, 50 ms each: about 3 s to download.
    let slow: Answer = Arc::new(move |r| {
        std::thread::sleep(Duration::from_millis(50));
        let start = r.index as usize * 64 * 1024 + r.begin as usize;
        data[start..start + r.length as usize].to_vec()
    });
    let peer = format!("127.0.0.1:{}", raw_seeder(t.info_hash, t.info.pieces.len() as u32, slow));
    let (addr, path) = (a.addr(), torrent.display().to_string());
    let add = std::thread::spawn(move || torronto_tests::cli(&["add", &path, "--peer", &peer, "--node", &addr]));
    wait_until(Duration::from_secs(20), "Query to show the add part done", || {
        let adding = a.query()["adding"].clone();
        let done = adding[0]["done"].as_u64().unwrap_or(0);
        adding[0]["file"] == "slow.bin" && adding[0]["size"] == 1 << 20 && done > 0 && done < 1 << 20
    });
    let added = add.join().unwrap().ok("torronto add slow.bin.torrent");
    // Off a terminal, the CLI prints how far the download has got (from Query's adding).
    assert!(added.stderr.contains("downloading slow.bin: "), "no progress lines: {added}");
    assert!(a.query().get("adding").is_none(), "a finished add leaves Query's adding");
    c.wait_all_hold(Duration::from_secs(60), "slow.bin", 1 << 20, &sha256_file(&seed_dir.join("slow.bin")));
}

/// A BitTorrent peer that offers, for `info_hash`, the info dictionary `metadata` (whose
/// SHA-1 is something else) by the metadata exchange.
fn metadata_liar(info_hash: [u8; 20], metadata: Vec<u8>) -> u16 {
    use torronto_core::bittorrent::metadata::{answer, ExtensionHandshake, MetadataMessage, UT_METADATA};
    use torronto_core::bittorrent::wire::PeerMessage;
    let metadata = bytes::Bytes::from(metadata);
    let offer = ExtensionHandshake { ut_metadata: Some(3), metadata_size: Some(metadata.len() as u64) };
    raw_peer(info_hash, vec![PeerMessage::Extended { id: 0, payload: offer.encode() }], move |msg| {
        let PeerMessage::Extended { id: 3, payload } = msg else { return None };
        let Ok(MetadataMessage::Request(piece)) = MetadataMessage::decode(payload) else { return None };
        Some(PeerMessage::Extended { id: UT_METADATA, payload: answer(&metadata, piece).encode() })
    })
}

#[test]
fn a_magnets_metadata_must_hash_to_its_info_hash() {
    // A torronto node seeds an export; another network adds it by its magnet link.
    let (seeder, bt_port) = seeding_node(&[]);
    let magnet = export(&seeder, &seeder.root().join("x.torrent"), &[]);
    let t = Torrent::decode(&fs::read(seeder.root().join("x.torrent")).unwrap()).unwrap();
    let mut forged = t.info.clone();
    forged.name = "forged.bin".into();
    let liar = format!("127.0.0.1:{}", metadata_liar(t.info_hash, forged.encode()));
    let c = torronto_tests::Cluster::start_joined(2);
    let a = &c.nodes[0];
    // Only the liar (the link without the seeder's x.pe): its dictionary does not hash to
    // the link's info-hash; nothing is stored.
    let bare: Vec<&str> = magnet.split('&').filter(|kv| !kv.starts_with("x.pe=")).collect();
    let refused = a.cli(&["add", &bare.join("&"), "--peer", &liar]);
    refused.expect_error("add from a metadata liar", 14, "ErrFileMissing");
    assert!(refused.stderr.contains("SHA-1 is not the info-hash"), "{refused}");
    assert!(file_status_of(a, "forged.bin").is_none() && file_status_of(a, NAME).is_none());
    // The liar and the seeding node: the true dictionary, then the file, everywhere.
    let honest = format!("127.0.0.1:{bt_port}");
    a.cli(&["add", &bare.join("&"), "--peer", &liar, "--peer", &honest]).ok("add from a liar and a torronto seeder");
    c.wait_all_hold(Duration::from_secs(60), NAME, SIZE as u64, &sha256_file(&seeder.file(NAME)));
    assert!(file_status_of(a, "forged.bin").is_none(), "the forged name must never appear");
}

#[test]
fn add_finds_a_magnets_peers_through_its_tracker() {
    if !require_libtorrent() {
        return;
    }
    let c = torronto_tests::Cluster::start_joined(2);
    let a = &c.nodes[0];
    let (url, seeders) = tracker();
    let seed_dir = a.root().join("seed");
    fs::create_dir_all(&seed_dir).unwrap();
    let path = seed_dir.join("tracked.bin");
    random_file(&path, (1 << 20) + 5, 49);
    let (_seeder, magnet, port) = libtorrent_seed(&path, &[&url]);
    let hash = torronto_core::bittorrent::magnet::Magnet::parse(&magnet).unwrap().info_hash;
    assert!(magnet.contains("&tr="), "libtorrent's link names the tracker: {magnet}");
    wait_until(Duration::from_secs(30), "libtorrent to announce itself as a seeder", || {
        seeders.lock().unwrap().get(&hash[..]).is_some_and(|p| p.contains(&port))
    });
    // No --peer and no x.pe: the link's tr= is the only way to the seeder.
    a.cli(&["add", &magnet]).ok("torronto add MAGNET (tracker only)");
    c.wait_all_hold(Duration::from_secs(60), "tracked.bin", (1 << 20) + 5, &sha256_file(&path));
}
