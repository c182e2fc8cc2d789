//! The node's tasks, tracked so that shutdown can end them and wait until they have.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns the node's tasks: connection readers and writers, dialers, the web listener
/// and its requests. Shutdown ends those that take in (everything but writers) at once,
/// lets writers flush what the node said last, and then waits for all of them.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    intake: CancellationToken,
    writers: CancellationToken,
}

impl Tasks {
    /// Spawns a task that is cancelled when shutdown begins.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let stop = self.intake.clone();
        self.tracker.spawn(async move {
            stop.run_until_cancelled_owned(task).await;
        })
    }

    /// Spawns a connection's writer: at shutdown it may finish its queue (which ends
    /// once the driver drops its sender), until the flush time is up.
    pub fn spawn_writer(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.writers.clone();
        self.tracker.spawn(async move {
            stop.run_until_cancelled_owned(task).await;
        });
    }

    /// Cancels every task but the writers, gives those up to `flush` to finish, cancels
    /// what is left, and returns once every task has ended.
    pub async fn shut_down(&self, flush: Duration) {
        self.intake.cancel();
        self.tracker.close();
        if tokio::time::timeout(flush, self.tracker.wait()).await.is_err() {
            tracing::debug!("connections still sending after {flush:?}: closing them");
            self.writers.cancel();
            self.tracker.wait().await;
        }
    }
}
