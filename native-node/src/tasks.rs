//! The node's tasks, tracked so that shutdown can end them and wait until they have.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns the node's tasks: connection writers apart from the rest (readers, dialers,
/// the web listener and its requests), because at shutdown writers first get to send
/// what the node said last while readers still take in what peers send.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    writers: Group,
    others: Group,
}

impl Tasks {
    /// Spawns a task that runs until it ends or [`Tasks::shut_down`] cancels it.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        self.others.spawn(task)
    }

    /// Spawns a connection's writer, which ends once its queue is closed and flushed.
    pub fn spawn_writer(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        self.writers.spawn(task)
    }

    /// Waits for the writers to end (their queues must be closed), cancelling those
    /// still sending after `limit`: a peer that stopped reading cannot hold us up.
    pub async fn flush_writers(&self, limit: Duration) {
        self.writers.tracker.close();
        if tokio::time::timeout(limit, self.writers.tracker.wait()).await.is_err() {
            tracing::debug!("connections still sending after {limit:?}: closing them");
            self.writers.cancel.cancel();
            self.writers.tracker.wait().await;
        }
    }

    /// Cancels every task still running and waits until all of them have ended.
    pub async fn shut_down(&self) {
        for group in [&self.writers, &self.others] {
            group.cancel.cancel();
            group.tracker.close();
            group.tracker.wait().await;
        }
    }
}

/// Tasks that end together.
#[derive(Debug, Clone, Default)]
struct Group {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Group {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            cancel.run_until_cancelled_owned(task).await;
        })
    }
}
