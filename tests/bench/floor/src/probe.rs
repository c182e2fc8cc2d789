//! Per-byte costs for the script's estimate of the floor, measured on this machine in the
//! same run (the third, page-cache writes, is `dd`'s, measured by the script):
//! - `floor probe-hash`: SHA-256 of 64 KiB chunks in memory on one thread, the same crate
//!   and backend as the receivers, over four chunks' worth of memory (the receivers' buffers,
//!   which stay in the core's cache); `{"bytes", "seconds", "cpu_seconds"}` (the thread's CPU).
//! - `floor probe-net FILE`: FILE sent with `sendfile` over one loopback connection, at least
//!   1 GiB in all, to a thread reading it in 64 KiB reads (as the receivers do) and dropping it;
//!   `{"bytes", "seconds", "cpu_seconds"}` (both ends' CPU).

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::{process_cpu, send_file, Res, CHUNK, USAGE};

fn thread_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn print(bytes: u64, seconds: f64, cpu: f64) {
    println!("{{\"bytes\": {bytes}, \"seconds\": {seconds:.4}, \"cpu_seconds\": {cpu:.4}}}");
}

pub fn hash() -> Res<()> {
    let mut data = vec![0u8; 4 * CHUNK];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for word in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    let mut bytes = 0u64;
    while thread_cpu() - cpu0 < 0.5 {
        for _ in 0..256 {
            for chunk in data.chunks(CHUNK) {
                black_box(Sha256::digest(black_box(chunk)));
            }
        }
        bytes += 256 * data.len() as u64;
    }
    print(bytes, t0.elapsed().as_secs_f64(), thread_cpu() - cpu0);
    Ok(())
}

pub fn net(args: &[String]) -> Res<()> {
    let path = args.first().ok_or(USAGE)?;
    let size = fs::metadata(path)?.len();
    if size == 0 {
        return Err("probe-net needs a file that is not empty".into());
    }
    let reps = (1u64 << 30).div_ceil(size);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let reader = thread::spawn(move || -> io::Result<u64> {
        let mut conn = TcpStream::connect(addr)?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    });
    let (conn, _) = listener.accept()?;
    let file = File::open(path)?;
    for _ in 0..reps {
        send_file(&conn, &file, size)?;
    }
    drop(conn);
    let got = reader.join().map_err(|_| "the reading thread panicked")??;
    if got != reps * size {
        return Err(format!("sent {} bytes, {got} arrived", reps * size).into());
    }
    print(got, t0.elapsed().as_secs_f64(), process_cpu() - cpu0);
    Ok(())
}
