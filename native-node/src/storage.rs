//! Where the node's storage commands are carried out, all of them off the event loop.
//!
//! Chunk reads and writes, preparing and publishing fetched files run in order on one
//! long-lived thread fed by a queue: handing each 64 KiB read or write to tokio's
//! blocking pool cost more in thread wake-ups than the I/O itself. Inserts (copying
//! and hashing whole files, then publishing them) run on the blocking pool so they
//! never hold up chunk I/O (committing a file hashed in place, a quick record kept in
//! order with the thread's other commands, excepted). Results go back to the driver as
//! [`Input::Storage`].

use std::cell::Cell;
use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;
use torronto_core::{Code, PeerAddr, StorageCommand, StorageError, StorageEvent};

use crate::connection::{Outgoing, StoredUpload};
use crate::input::Input;
use crate::store::{io_error, read_chunk, ChunkWriter, Store};

/// The writer of a connection that sends chunk bodies straight from their files: a
/// `Read` for it is answered by queueing the Upload there, which reports `Sent`.
#[derive(Debug)]
pub struct SendFile {
    /// Who the Upload is from (its header is written as it goes out, stamped then).
    pub from: PeerAddr,
    pub writer: tokio_mpsc::UnboundedSender<Outgoing>,
}

/// A storage command and, for a `Read`, where its chunk goes.
#[derive(Debug)]
struct Job {
    command: StorageCommand,
    send_file: Option<SendFile>,
}

/// The node's storage: its thread and the queue feeding it.
#[derive(Debug)]
pub struct Storage {
    store: Store,
    inputs: tokio_mpsc::Sender<Input>,
    jobs: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

impl Storage {
    pub fn start(store: Store, inputs: tokio_mpsc::Sender<Input>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = {
            let (store, inputs) = (store.clone(), inputs.clone());
            std::thread::Builder::new().name("torronto-storage".into()).spawn(move || {
                let mut writer = ChunkWriter::with_advisor().unwrap_or_else(|e| {
                    tracing::warn!("no write-behind thread ({e}); page-cache advice given in place");
                    ChunkWriter::default()
                });
                for job in queue {
                    report(&inputs, execute(&store, job.command, job.send_file, &inputs, &mut writer));
                }
            })?
        };
        Ok(Self { store, inputs, jobs, thread })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Carries out `command` on the storage thread, after every command given before
    /// it, or on the blocking pool if it concerns an insert or a BitTorrent export (a
    /// pass over a whole file). A `Read` with `send_file`
    /// goes out on that connection straight from its file.
    pub fn submit(&self, command: StorageCommand, send_file: Option<SendFile>) {
        use StorageCommand::{Commit, Discard, Import, Torrent};
        // Committing a file hashed in place only records it, and must come after any
        // Prepare of the same name core sent before (fetching it as it was hashed),
        // which would otherwise take the file back to a partial: the thread keeps order.
        let in_place = matches!(&command, Commit { id, .. } if self.store.hashed_in_place(*id));
        if !in_place && matches!(command, Import { .. } | Commit { .. } | Discard { .. } | Torrent { .. }) {
            let (store, inputs) = (self.store.clone(), self.inputs.clone());
            tokio::task::spawn_blocking(move || {
                report(&inputs, execute(&store, command, None, &inputs, &mut ChunkWriter::default()))
            });
            return;
        }
        // The thread only stops when the node does; a lost command then does not matter.
        let _ = self.jobs.send(Job { command, send_file });
    }

    /// Closes the queue at once; the returned future completes when the thread has
    /// carried out what was queued before and ended.
    pub fn stop(self) -> impl Future<Output = ()> {
        let Self { jobs, thread, .. } = self;
        drop(jobs);
        async move {
            if let Ok(Err(_)) = tokio::task::spawn_blocking(move || thread.join()).await {
                tracing::error!("the storage thread panicked");
            }
        }
    }
}

/// How often an insert tells the node how far it has got (for `torronto insert`'s bar).
const IMPORT_PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Carries out one storage command against `store`; blocking. Returns what to tell
/// the node, if anything; an insert also tells it, on the way, how far it has got.
pub fn execute(
    store: &Store,
    command: StorageCommand,
    send_file: Option<SendFile>,
    inputs: &tokio_mpsc::Sender<Input>,
    writer: &mut ChunkWriter,
) -> Option<StorageEvent> {
    match command {
        StorageCommand::Import { id, path, name, within, in_place } => {
            let next_report = Cell::new(0u64);
            let next_progress = Cell::new(Instant::now());
            let progress = |done, total| {
                // Progress for large files, every tenth.
                if total >= 64 << 20 && done >= next_report.get() {
                    tracing::info!("hashing {name}: {}%", done * 100 / total);
                    next_report.set(next_report.get() + total / 10);
                }
                if Instant::now() >= next_progress.get() {
                    next_progress.set(Instant::now() + IMPORT_PROGRESS_EVERY);
                    // Dropped when the loop is busy: the next one says more anyway.
                    let _ = inputs.try_send(Input::Storage(StorageEvent::ImportProgress { id, done, total }));
                }
            };
            let result = if in_place {
                tracing::info!("sharing {name}, found in the folder");
                store.import_in_place(id, &name, progress)
            } else {
                tracing::info!("inserting {path} as {name}");
                store.import(id, &path, within.as_deref(), progress)
            };
            Some(StorageEvent::Imported { id, result })
        }
        StorageCommand::Commit { id, name, manifest } => {
            Some(StorageEvent::Committed { id, result: store.commit(id, &name, &manifest) })
        }
        StorageCommand::Discard { id } => {
            store.discard(id);
            None
        }
        StorageCommand::Prepare { file, manifest } => {
            Some(StorageEvent::Prepared { result: store.prepare(&file, &manifest), file })
        }
        StorageCommand::Read { conn, chunk, push } => match send_file {
            Some(SendFile { from, writer }) => match store.handle(&chunk.file) {
                Ok(file) => {
                    // A writer gone away means the peer did; its reader reports that.
                    let _ = writer.send(Outgoing::Stored(StoredUpload { from, sent_at: 0, file, chunk, push }));
                    None
                }
                Err(e) => {
                    let result = Err(io_error(chunk.file.as_str(), &e));
                    Some(StorageEvent::Sent { conn, chunk, push, result })
                }
            },
            None => {
                let result = store
                    .handle(&chunk.file)
                    .and_then(|h| read_chunk(&h, chunk.size, chunk.index))
                    .map_err(|e| io_error(chunk.file.as_str(), &e));
                Some(StorageEvent::Read { conn, chunk, push, result })
            }
        },
        StorageCommand::Write { chunk, data } => {
            let result = writer
                .write(store, &chunk.file, chunk.size, chunk.index, &data)
                .map_err(|e| io_error(chunk.file.as_str(), &e));
            Some(StorageEvent::Written { chunk, result })
        }
        StorageCommand::Finalize { file, digest } => {
            Some(StorageEvent::Finalized { result: store.finalize(&file, digest), file })
        }
        StorageCommand::Delete { file, digest, stored_as } => {
            match store.delete(&file, digest, stored_as.as_deref()) {
                Ok(()) => tracing::info!("deleted {file}: it was removed from the network"),
                Err(e) => tracing::warn!("cannot delete {file}, which was removed from the network: {e}"),
            }
            None
        }
        StorageCommand::SaveTombstones(list) => {
            if let Err(e) = store.save_tombstones(&list) {
                tracing::warn!("cannot save the list of removed files: {e}");
            }
            None
        }
        StorageCommand::Torrent { conn, file, trackers } => {
            let result = crate::bittorrent::torrent(store.dir(), file.as_str(), &trackers)
                .map_err(|e| StorageError { code: Code::FileMissing, message: format!("{e:#}") });
            Some(StorageEvent::Torrent { conn, file, result })
        }
        StorageCommand::AddFinished { id } => {
            crate::bittorrent::fetch::remove_staging(store.dir(), id);
            None
        }
        // Taken by the driver (`Driver::storage`): a download is no storage job.
        StorageCommand::AddTorrent { id, .. } => Some(StorageEvent::no_bittorrent_add(id)),
    }
}

fn report(inputs: &tokio_mpsc::Sender<Input>, event: Option<StorageEvent>) {
    if let Some(event) = event {
        // Once the node has stopped nobody listens; the work itself is still done.
        let _ = inputs.blocking_send(Input::Storage(event));
    }
}
