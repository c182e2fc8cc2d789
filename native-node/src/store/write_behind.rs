//! Chunk writes that leave the page cache as they found it: written chunks are pushed
//! to the disk soon and dropped from memory a little later (write-behind).
//!
//! Why: a buffered write copies each received chunk into page-cache pages the kernel
//! has just allocated. On a virtual machine whose freed memory goes back to the host
//! (free page reporting), each such page is backed by the host again at its first touch,
//! and `perf` put that copy at 90 % of the storage thread: half of a fetching node's
//! CPU, about 2 CPU-seconds per GiB, against 0.3 when the pages were in use a moment
//! before. Dropping what was written once it is on the disk hands the same pages back
//! to the next writes while they are still warm; on any machine it keeps a node that
//! fetches many GiB from pushing everything else out of the page cache.
//!
//! How: `posix_fadvise(DONTNEED)` starts writeback of a range's dirty pages and drops
//! the clean ones. It is given each chunk twice: once [`KICK_AFTER`] bytes of later
//! writes on (starting its writeback, without waiting), and again [`DROP_AFTER`] bytes
//! on, when it is on the disk and its pages go. Nothing waits for the disk: a chunk
//! still dirty at the second call simply stays cached, as every chunk did before. The
//! newest chunks stay cached, so peers asking for what was just announced are served
//! from memory (`sendfile`).
//!
//! Where: the advice is given on a thread of its own ([`ChunkWriter::with_advisor`]).
//! Starting writeback submits the pages to the disk, and when its queue is full the
//! block layer's writeback throttling puts the caller to sleep (`rq_qos_wait`): given on
//! the storage thread, the advice stopped all three fetching nodes of a 1 GiB loopback
//! run for 0.6–1.2 s near the end, writes and reads alike. Advice that cannot be queued
//! is dropped: its chunks are then written back by the kernel's flusher and stay cached.
//!
//! Tried and not kept: `O_DIRECT` writes from one aligned buffer. They cost a tenth of
//! the CPU, but every write waits for the disk: when another program's writeback
//! filled the disk's queue, a 1 GiB transfer took 13 s instead of 6.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustix::fs::Advice;
use torronto_core::layout::chunk_range;
use torronto_core::{ChunkIndex, FileName};

use super::Store;

/// Bytes written after a chunk when its writeback is started.
pub const KICK_AFTER: u64 = 16 << 20;
/// Bytes written after a chunk when it is dropped from the page cache. What is left
/// cached is about this much per fetching node.
pub const DROP_AFTER: u64 = 64 << 20;

/// Advice waiting for the advisor thread: 64 MiB of chunks, a [`DROP_AFTER`]'s worth.
const ADVICE_QUEUE: usize = (DROP_AFTER >> 16) as usize;

/// The storage thread's chunk writer: chunks written lately, newest last.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    /// The thread that gives the page-cache advice; without one it is given in place.
    advisor: Option<Advisor>,
    recent: VecDeque<Written>,
    /// Bytes in `recent`, and in the part of it whose writeback has been started.
    recent_bytes: u64,
    kicked_bytes: u64,
    /// How many of the oldest entries of `recent` have been kicked.
    kicked: usize,
}

#[derive(Debug)]
struct Advisor {
    queue: Option<SyncSender<Written>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Advisor {
    /// Waits for the advice already queued (a queue's worth at most), so a stopped
    /// node leaves no thread behind.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Clone)]
struct Written {
    file: Arc<File>,
    at: u64,
    len: u64,
}

impl ChunkWriter {
    /// A writer whose page-cache advice is given on a thread of its own, so that the
    /// disk's queue never holds up a write (see the module's comment).
    pub fn with_advisor() -> io::Result<Self> {
        Self::with_advisor_doing(Written::advise_dont_need)
    }

    fn with_advisor_doing(advise: impl Fn(&Written) + Send + 'static) -> io::Result<Self> {
        let (queue, advice) = mpsc::sync_channel::<Written>(ADVICE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("torronto-writeback".into())
            .spawn(move || advice.into_iter().for_each(|chunk| advise(&chunk)))?;
        Ok(Self { advisor: Some(Advisor { queue: Some(queue), thread: Some(thread) }), ..Self::default() })
    }

    /// Writes chunk `index` of `file` (of `size` bytes) through the page cache.
    pub fn write(
        &mut self,
        store: &Store,
        file: &FileName,
        size: u64,
        index: ChunkIndex,
        data: &[u8],
    ) -> io::Result<()> {
        let handle = store.handle(file)?;
        let at = chunk_range(size, index).start;
        handle.write_all_at(data, at)?;
        self.written(Written { file: handle, at, len: data.len() as u64 });
        Ok(())
    }

    fn written(&mut self, chunk: Written) {
        self.recent_bytes += chunk.len;
        self.recent.push_back(chunk);
        while let Some(next) = self.recent.get(self.kicked) {
            if self.recent_bytes - self.kicked_bytes - next.len < KICK_AFTER {
                break;
            }
            let next = next.clone();
            self.kicked_bytes += next.len;
            self.kicked += 1;
            self.advise(next);
        }
        while self.kicked > 0 && self.recent_bytes - self.recent[0].len >= DROP_AFTER {
            let oldest = self.recent.pop_front().expect("kicked entries are in recent");
            let len = oldest.len;
            self.advise(oldest);
            self.recent_bytes -= len;
            self.kicked_bytes -= len;
            self.kicked -= 1;
        }
    }

    fn advise(&self, chunk: Written) {
        match self.advisor.as_ref().and_then(|a| a.queue.as_ref()) {
            // Full: the advisor is held up by the disk; this advice is skipped.
            Some(queue) => {
                let _ = queue.try_send(chunk);
            }
            None => chunk.advise_dont_need(),
        }
    }
}

impl Written {
    /// Starts writeback of the dirty pages, drops the clean ones. Advice only: a
    /// file system that ignores it leaves the pages cached, as they would be anyway.
    fn advise_dont_need(&self) {
        if let Some(len) = NonZeroU64::new(self.len) {
            let _ = rustix::fs::fadvise(&*self.file, self.at, Some(len), Advice::DontNeed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(file: &Arc<File>, i: u64) -> Written {
        Written { file: file.clone(), at: i << 16, len: 1 << 16 }
    }

    #[test]
    fn chunks_are_kicked_then_dropped_in_the_order_written() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut writer = ChunkWriter::default();
        let per_kick = (KICK_AFTER >> 16) as usize;
        let per_drop = (DROP_AFTER >> 16) as usize;
        for i in 0..(per_drop + 10) as u64 {
            writer.written(chunk(&file, i));
            let n = i as usize + 1;
            // Everything written at least KICK_AFTER ago has been kicked; only what was
            // written DROP_AFTER ago has gone.
            assert_eq!(writer.recent.len(), n.min(per_drop), "after {n} chunks");
            assert_eq!(writer.kicked, n.saturating_sub(per_kick).min(per_drop - per_kick), "after {n} chunks");
            assert_eq!(writer.recent_bytes, writer.recent.iter().map(|w| w.len).sum::<u64>());
        }
        assert_eq!(writer.recent.front().unwrap().at, 10 << 16);
    }

    #[test]
    fn writes_go_on_while_the_advice_waits_for_the_disk() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        use std::time::Duration;

        // Advice that sleeps until released, as starting writeback does behind a full
        // disk queue; it counts what it was given.
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let advised = Arc::new(AtomicUsize::new(0));
        let count = advised.clone();
        let writer = ChunkWriter::with_advisor_doing(move |_| {
            let _ = released.lock().unwrap().recv();
            count.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();

        // Several queues' worth of advice: the writes must all be done while the
        // advisor is still held up.
        let file = Arc::new(tempfile::tempfile().unwrap());
        let chunks = (DROP_AFTER >> 16) * 4;
        let (done, wrote) = mpsc::channel();
        let writing = std::thread::spawn(move || {
            let mut writer = writer;
            for i in 0..chunks {
                writer.written(chunk(&file, i));
            }
            done.send(()).unwrap();
            writer
        });
        wrote.recv_timeout(Duration::from_secs(10)).expect("a write waited for the advice");
        assert_eq!(advised.load(Ordering::SeqCst), 0);

        // Released, the advisor gives what was queued (the rest was skipped), and
        // dropping the writer waits for it.
        drop(release);
        drop(writing.join().unwrap());
        let given = advised.load(Ordering::SeqCst);
        assert!((ADVICE_QUEUE..=ADVICE_QUEUE + 1).contains(&given), "{given} pieces of advice given");
    }
}
