//! One receiver of `floor run`: connects to the sender, receives the whole file in blocks
//! of BLOCK bytes (one 64 KiB chunk unless `--block` says otherwise), checks every chunk's
//! SHA-256 against the list made before the clock, and writes each block to its place with
//! one `pwrite` (contiguous, so a vectored write would be the same single call). With two
//! threads one thread receives into a small pool of buffers while the other hashes and
//! writes, so a receiver's socket is drained while its last block is hashed. Prints its own
//! CPU seconds.
//!
//! Why one chunk a block: the block is read three times in a row (the socket's copy into it,
//! the hash, the `pwrite` copy out of it), and at 64 KiB the four buffers in flight stay in
//! the core's cache. With 1 MiB blocks the same run took 25-40 % more CPU (three receivers,
//! 256 MiB each: 1.8-2.3 CPU-s against 1.35-1.45), 256 KiB in between.
//!
//! Written blocks are dropped from the page cache soon after (`posix_fadvise`, given on a
//! thread of its own so that the disk's queue never holds up a write), as the node does:
//! on this VM every fresh page-cache page is backed by the host at its first touch, and
//! recycling warm pages cut a receiver's write cost from 1.3-2.6 to about 0.5 CPU-seconds
//! per GiB (three writers at once).
//!
//! Tried and not kept: reading from the socket straight into a shared mapping of the file
//! (fallocated), which saves the `pwrite` copy. Each first touch of a new page-cache page
//! then zero-fills it in the page fault (`memset`: 39 % of `perf` samples, against 30 % for
//! the `pwrite` copy it replaces), and over five alternating runs it used no less CPU.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::net::TcpStream;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread;

use sha2::{Digest, Sha256};

use crate::{number, process_cpu, Res, CHUNK};

/// Bytes written after a block when its writeback is started, and when it is dropped
/// from the page cache (the node's values).
const KICK_AFTER: u64 = 16 << 20;
const DROP_AFTER: u64 = 64 << 20;

/// Buffers in flight between the receiving and the hashing thread.
const DEPTH: usize = 4;

pub fn main(args: &[String]) -> Res<()> {
    let port: u16 = number("PORT", args.first())?;
    let (Some(out), Some(hashes)) = (args.get(1), args.get(2)) else {
        return Err("receive takes PORT OUT HASHES SIZE THREADS BLOCK".into());
    };
    let size: u64 = number("SIZE", args.get(3))?;
    let threads: u32 = number("THREADS", args.get(4))?;
    let block: usize = number("BLOCK", args.get(5))?;
    if block == 0 || block % CHUNK != 0 {
        return Err(format!("BLOCK must be a positive multiple of {CHUNK}, not {block}").into());
    }
    let hashes = fs::read(hashes)?;
    if hashes.len() as u64 != size.div_ceil(CHUNK as u64) * 32 {
        return Err(format!("{} bytes of hashes for a file of {size} bytes", hashes.len()).into());
    }
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    let out = OpenOptions::new().write(true).create(true).truncate(true).open(out)?;
    let advice = advisor(out.try_clone()?)?;
    let sink = Sink { hashes, out, advice };
    if threads == 1 {
        one_thread(&mut conn, &sink, size, block)?;
    } else {
        two_threads(conn, sink, size, block)?;
    }
    println!("{:.3}", process_cpu());
    Ok(())
}

/// Where received blocks go: checked chunk by chunk, then written.
struct Sink {
    hashes: Vec<u8>,
    out: File,
    /// Ranges to advise DONTNEED on, for the advisor thread.
    advice: mpsc::SyncSender<(u64, NonZeroU64)>,
}

/// The thread that gives the write-behind advice for `out`: starting writeback can sleep
/// in the block layer's throttling when the disk's queue is full, and the writes must
/// not wait for it (native-node/src/store/write_behind.rs). Advice that does not fit
/// the queue is skipped.
fn advisor(out: File) -> Res<mpsc::SyncSender<(u64, NonZeroU64)>> {
    let (tx, rx) = mpsc::sync_channel::<(u64, NonZeroU64)>((DROP_AFTER / CHUNK as u64) as usize);
    thread::Builder::new().name("advisor".into()).spawn(move || {
        for (at, len) in rx {
            let _ = rustix::fs::fadvise(&out, at, Some(len), rustix::fs::Advice::DontNeed);
        }
    })?;
    Ok(tx)
}

impl Sink {
    /// Checks every chunk of `block`, which starts at `offset` (a multiple of the chunk
    /// size), against its hash, then writes the block there.
    fn take(&self, block: &[u8], offset: u64) -> Res<()> {
        let first = (offset / CHUNK as u64) as usize;
        for (i, chunk) in block.chunks(CHUNK).enumerate() {
            let want = &self.hashes[(first + i) * 32..][..32];
            if Sha256::digest(chunk)[..] != *want {
                return Err(format!("chunk {} does not match its hash", first + i).into());
            }
        }
        self.out.write_all_at(block, offset)?;
        // Write-behind, as the node does (native-node/src/store/write_behind.rs): the
        // block written KICK_AFTER ago starts its writeback, the one DROP_AFTER ago
        // leaves the page cache, so the next blocks land in pages still warm.
        for lag in [KICK_AFTER, DROP_AFTER] {
            if let (Some(at), Some(len)) = (offset.checked_sub(lag), NonZeroU64::new(block.len() as u64)) {
                let _ = self.advice.try_send((at, len));
            }
        }
        Ok(())
    }
}

/// Fills `buf` from the connection: all of it, or up to the end of the file.
fn fill(conn: &mut TcpStream, buf: &mut [u8], got: u64, size: u64) -> Res<usize> {
    let want = (size - got).min(buf.len() as u64) as usize;
    let mut filled = 0;
    while filled < want {
        match conn.read(&mut buf[filled..want]) {
            Ok(0) => {
                let at = got + filled as u64;
                return Err(format!("the sender closed after {at} of {size} bytes").into());
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

fn one_thread(conn: &mut TcpStream, sink: &Sink, size: u64, block: usize) -> Res<()> {
    let mut buf = vec![0u8; block];
    let mut got = 0;
    while got < size {
        let n = fill(conn, &mut buf, got, size)?;
        sink.take(&buf[..n], got)?;
        got += n as u64;
    }
    Ok(())
}

fn two_threads(mut conn: TcpStream, sink: Sink, size: u64, block: usize) -> Res<()> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, u64, usize)>(DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..DEPTH {
        empty_tx.send(vec![0u8; block])?;
    }
    let worker = thread::spawn(move || -> Res<()> {
        for (buf, offset, n) in full_rx {
            sink.take(&buf[..n], offset)?;
            // The receiving thread is gone once it has all the bytes.
            let _ = empty_tx.send(buf);
        }
        Ok(())
    });
    let mut got = 0;
    let mut received = Ok(());
    while got < size {
        // No buffer back: the worker stopped on an error, which its join reports.
        let Ok(mut buf) = empty_rx.recv() else { break };
        match fill(&mut conn, &mut buf, got, size) {
            Ok(n) => {
                if full_tx.send((buf, got, n)).is_err() {
                    break;
                }
                got += n as u64;
            }
            Err(e) => {
                received = Err(e);
                break;
            }
        }
    }
    drop(full_tx);
    let worked = worker.join().map_err(|_| "the hashing thread panicked")?;
    received.and(worked)?;
    if got < size {
        return Err(format!("stopped after {got} of {size} bytes").into());
    }
    Ok(())
}
