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
//! Tried and not kept: `O_DIRECT` writes from one aligned buffer. They cost a tenth of
//! the CPU, but every write waits for the disk: when another program's writeback
//! filled the disk's queue, a 1 GiB transfer took 13 s instead of 6.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::fs::Advice;
use torronto_core::layout::chunk_range;
use torronto_core::{ChunkIndex, FileName};

use super::Store;

/// Bytes written after a chunk when its writeback is started.
pub const KICK_AFTER: u64 = 16 << 20;
/// Bytes written after a chunk when it is dropped from the page cache. What is left
/// cached is about this much per fetching node.
pub const DROP_AFTER: u64 = 64 << 20;

/// The storage thread's chunk writer: chunks written lately, newest last.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    recent: VecDeque<Written>,
    /// Bytes in `recent`, and in the part of it whose writeback has been started.
    recent_bytes: u64,
    kicked_bytes: u64,
    /// How many of the oldest entries of `recent` have been kicked.
    kicked: usize,
}

#[derive(Debug)]
struct Written {
    file: Arc<File>,
    at: u64,
    len: u64,
}

impl ChunkWriter {
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
            next.advise_dont_need();
            self.kicked_bytes += next.len;
            self.kicked += 1;
        }
        while self.kicked > 0 && self.recent_bytes - self.recent[0].len >= DROP_AFTER {
            let oldest = self.recent.pop_front().expect("kicked entries are in recent");
            oldest.advise_dont_need();
            self.recent_bytes -= oldest.len;
            self.kicked_bytes -= oldest.len;
            self.kicked -= 1;
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
}
