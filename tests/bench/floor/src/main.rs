//! The floor of `tests/bench/replication.sh`: the work any tool in that benchmark cannot skip
//! — one sender streaming a file over loopback TCP to N receiver processes, each receiving all
//! of it, checking SHA-256 of every 64 KiB chunk against a list made beforehand, and writing it
//! to its own file — done with the cheapest primitives a real tool could use, and nothing else:
//! no protocol, no scheduling, no bookkeeping. A tool that beats it in the same round shows
//! that the floor is not one (the script then says BROKEN FLOOR).
//!
//! Layout:
//! - this file: the commands, their arguments, and `run` (the sender and the timed window);
//! - `receive.rs`: one receiver process (`floor receive`), receiving on one thread and hashing
//!   and writing on another (the default), or all on one (`--threads 1`). With more receivers
//!   than cores one thread each costs a little less CPU (about 6 % at 3 receivers on 2 cores,
//!   within the noise of a shared machine), but on a machine busy with other work a second
//!   runnable thread per receiver wins it a larger share of the cores, as the tools' own
//!   threads do (a storage thread, a multi-threaded runtime): the floor must not lose there.
//! - `probe.rs`: the per-byte costs the script turns into an estimate of the floor (SHA-256
//!   per 64 KiB on one core; loopback TCP from `sendfile` into a receiver that drops the bytes).
//!
//! Commands (`run` and the probes print one JSON object on stdout):
//! - `floor run FILE DIR N [--threads 1|2] [--block KIB] [--keep]`: FILE to N receivers writing
//!   `DIR/floorI.bin`, in blocks of KIB (64: one chunk; larger only to compare);
//!   `{"ok", "seconds", "cpu_seconds": {"all", "sender", "receivers"}}`.
//!   The clock starts before the receivers are spawned and stops when the last has exited
//!   having checked every chunk; the chunk list (DIR/floor.hashes) is made before the clock.
//! - `floor probe-hash` and `floor probe-net FILE`: see `probe.rs`.

mod probe;
mod receive;

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The chunk every tool here hashes (torronto's chunk; the torrents' piece size too).
pub const CHUNK: usize = 64 * 1024;
/// Read size for the chunk list and the probes.
pub const BUF: usize = 16 * CHUNK;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: floor run FILE DIR N [--threads 1|2] [--block KIB] [--keep]
       floor receive PORT OUT HASHES SIZE THREADS BLOCK   (started by `run`)
       floor probe-hash
       floor probe-net FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(rest),
        Some("receive") => receive::main(rest),
        Some("probe-hash") => probe::hash(),
        Some("probe-net") => probe::net(rest),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses a number argument, naming it in the error.
pub fn number<T: std::str::FromStr>(what: &str, s: Option<&String>) -> Res<T> {
    let s = s.ok_or_else(|| format!("missing {what}\n{USAGE}"))?;
    s.parse().map_err(|_| format!("{what} must be a number, not {s:?}").into())
}

/// CPU seconds this process has used so far (all its threads).
pub fn process_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Sends `size` bytes of `file` from its start down `conn` with `sendfile`: from the page
/// cache into the socket, no user-space buffer.
pub fn send_file(conn: &TcpStream, file: &File, size: u64) -> io::Result<()> {
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(1 << 30) as usize;
        match rustix::fs::sendfile(conn, file, Some(&mut offset), want) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// SHA-256 of every 64 KiB chunk of the file, 32 bytes each, in order; reading it also puts
/// the file in the page cache, where the tools' seeders have it too.
fn chunk_hashes(path: &Path) -> Res<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; BUF];
    let mut out = Vec::new();
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        for chunk in buf[..filled].chunks(CHUNK) {
            out.extend_from_slice(&Sha256::digest(chunk));
        }
        if filled < buf.len() {
            return Ok(out);
        }
    }
}

/// Waits for `n` receivers to connect, giving up if one of them exits first or after 30 s.
fn accept_all(listener: &TcpListener, n: usize, children: &mut [Child]) -> Res<Vec<TcpStream>> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)?;
                conns.push(conn);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                for c in children.iter_mut() {
                    if let Some(status) = c.try_wait()? {
                        return Err(format!("a receiver exited before connecting ({status})").into());
                    }
                }
                if Instant::now() > deadline {
                    return Err("the receivers did not connect within 30 s".into());
                }
                thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(conns)
}

fn run(args: &[String]) -> Res<()> {
    let mut pos = Vec::new();
    let mut threads = 2u32;
    let mut keep = false;
    let mut block_kib = CHUNK / 1024;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = number("--threads", it.next())?,
            "--keep" => keep = true,
            "--block" => block_kib = number("--block", it.next())?,
            _ => pos.push(a),
        }
    }
    let [file, dir, n] = pos[..] else {
        return Err(USAGE.into());
    };
    let n: usize = number("N", Some(n))?;
    if n == 0 || !(1..=2).contains(&threads) {
        return Err(format!("N must be positive and --threads 1 or 2\n{USAGE}").into());
    }
    let (path, dir) = (Path::new(file), Path::new(dir));
    let size = fs::metadata(path)?.len();
    let hashes = dir.join("floor.hashes");
    fs::write(&hashes, chunk_hashes(path)?)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port().to_string();
    let exe = std::env::current_exe()?;
    let outs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("floor{i}.bin"))).collect();

    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut children = Vec::with_capacity(n);
    for out in &outs {
        let child = Command::new(&exe)
            .arg("receive")
            .arg(&port)
            .arg(out)
            .arg(&hashes)
            .arg(size.to_string())
            .arg(threads.to_string())
            .arg((block_kib * 1024).to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        children.push(child);
    }
    let conns = accept_all(&listener, n, &mut children)?;
    let senders: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let file = File::open(path)?;
            Ok(thread::spawn(move || send_file(&conn, &file, size)))
        })
        .collect::<Res<_>>()?;
    let mut ok = true;
    for s in senders {
        if let Err(e) = s.join().map_err(|_| "a sender panicked")? {
            eprintln!("floor: sending: {e}");
            ok = false;
        }
    }
    let mut receivers_cpu = 0.0;
    for child in children {
        let out = child.wait_with_output()?;
        ok &= out.status.success();
        // The receiver's last line: its own CPU seconds.
        let text = String::from_utf8_lossy(&out.stdout);
        receivers_cpu += text.trim().parse::<f64>().unwrap_or(0.0);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let sender_cpu = process_cpu() - cpu0;
    if !keep {
        for out in &outs {
            let _ = fs::remove_file(out);
        }
    }
    let _ = fs::remove_file(&hashes);
    println!(
        "{{\"ok\": {ok}, \"seconds\": {seconds:.3}, \"receiver_threads\": {threads}, \"cpu_seconds\": \
         {{\"all\": {:.2}, \"sender\": {sender_cpu:.2}, \"receivers\": {receivers_cpu:.2}}}}}",
        sender_cpu + receivers_cpu
    );
    if ok {
        Ok(())
    } else {
        Err("a receiver did not get the whole file right".into())
    }
}
