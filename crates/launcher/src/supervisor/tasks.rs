//! The launcher's tasks: every one is spawned here, on one tracker, and ends with one
//! cancellation token, so that shutdown can wait until nothing of the launcher runs.

use super::*;

impl Supervisor {
    /// Runs `fut` as one of the launcher's tasks: tracked, and dropped at shutdown
    /// ([`Supervisor::shutdown_tasks`]), so that nothing of the launcher outlives
    /// [`crate::run`]. The handle yields `None` when the task was cancelled.
    pub fn spawn_task<F>(&self, fut: F) -> tokio::task::JoinHandle<Option<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let cancel = self.sh.cancel.clone();
        self.sh
            .tasks
            .spawn(async move { cancel.run_until_cancelled(fut).await })
    }

    /// Runs blocking work (a pass over `/proc`, a kill sweep) on the blocking pool, tracked
    /// like [`Supervisor::spawn_task`]; it is bounded and runs to its end.
    pub fn spawn_blocking<F, R>(&self, f: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.sh.tasks.spawn_blocking(f)
    }

    /// A token cancelled at shutdown, for work that must end in its own way (a graceful HTTP
    /// shutdown) rather than be dropped.
    pub fn cancelled(&self) -> CancellationToken {
        self.sh.cancel.clone()
    }

    /// The tracker of the launcher's tasks, for such work: shutdown waits for what it spawns.
    pub fn tracker(&self) -> TaskTracker {
        self.sh.tasks.clone()
    }

    /// Cancels every task of the launcher and waits until all have ended. Call after the
    /// plugins are stopped: the reaper is one of the tasks.
    pub async fn shutdown_tasks(&self) {
        self.sh.cancel.cancel();
        self.sh.tasks.close();
        self.sh.tasks.wait().await;
    }
}
