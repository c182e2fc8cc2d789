//! A dedicated thread for the node's frequent, short disk work (chunk reads and
//! writes). Handing each 64 KiB read or write to tokio's blocking pool cost more in
//! thread wake-ups than the I/O itself; one long-lived thread fed by a queue keeps
//! the event loop free without that overhead.

use std::sync::mpsc;

use tokio::sync::mpsc as tokio_mpsc;
use torronto_core::StorageEvent;

use crate::driver::Input;
use crate::store::Store;

/// Storage work, with the event it reports when done, if any.
pub type StorageJob = Box<dyn FnOnce(&Store) -> Option<StorageEvent> + Send>;

/// The queue of the storage thread; the thread ends when this is dropped.
#[derive(Debug, Clone)]
pub struct StorageWorker {
    jobs: mpsc::Sender<StorageJob>,
}

impl StorageWorker {
    pub fn start(store: Store, inputs: tokio_mpsc::Sender<Input>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<StorageJob>();
        std::thread::Builder::new().name("torronto-storage".into()).spawn(move || {
            for job in queue {
                if let Some(event) = job(&store) {
                    if inputs.blocking_send(Input::Storage(event)).is_err() {
                        return;
                    }
                }
            }
        })?;
        Ok(Self { jobs })
    }

    pub fn run(&self, job: StorageJob) {
        // The thread only stops when the node does; a lost job then does not matter.
        let _ = self.jobs.send(job);
    }
}
