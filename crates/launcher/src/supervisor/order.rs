//! Starting many plugins in order, pipelined: spawns keep the order, starts overlap.
//!
//! Consecutive plugins without `waitReady` start concurrently (at most 32 in flight,
//! credentials minted concurrently); a `waitReady` plugin is ready (or failed) before a later one
//! spawns. A movable plugin is spawned only when the cluster's [`PlacementGate`] allows it,
//! automatic restarts included.

use super::*;

/// A place in a pipelined start: the spawn waits for `after` (the previous plugin's `_done`,
/// sent or dropped once that plugin has spawned or failed).
#[derive(Default)]
pub(super) struct Turn {
    pub(super) after: Option<tokio::sync::oneshot::Receiver<()>>,
    pub(super) _done: Option<tokio::sync::oneshot::Sender<()>>,
    /// Where the hand-on task of a turn dropped early runs (tracked like every task).
    pub(super) tasks: Option<TaskTracker>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Gone before its own turn (a start that failed early): the next one still waits for
        // the previous one.
        if let (Some(after), Some(done), Some(tasks), Ok(_)) = (
            self.after.take(),
            self._done.take(),
            self.tasks.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            tasks.spawn(async move {
                let _ = after.await;
                drop(done);
            });
        }
    }
}

impl Supervisor {
    /// Starts the autostart plugins in order, then every other plugin (the core is started
    /// separately, first). Returns the result of each start. Pipelined like
    /// [`Supervisor::autostart`].
    pub async fn start_all(&self) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        // Binaries copied in since the last scan are started too.
        self.discover();
        let cfg = self.cfg();
        let mut names: Vec<String> = cfg.autostart.clone();
        for n in lock(&self.sh.slots).keys() {
            if !names.contains(n) && Some(n.as_str()) != self.core_name() {
                names.push(n.clone());
            }
        }
        // Movable plugins are placed by the cluster, not started on every launcher.
        names.retain(|n| !cfg.is_movable(n));
        self.start_in_order(names, true).await
    }

    /// Starts the autostart list in order; failures are logged and do not stop the others.
    ///
    /// Unlike a manual start, this keeps the backoff state saved by an earlier launcher, and a
    /// plugin whose process ran but failed to start (e.g. crashed before it was ready) is
    /// handed to its restart policy.
    ///
    /// Plugins are spawned in the list's order, but consecutive plugins without `waitReady` do
    /// not wait for each other: their starts run concurrently (credentials are minted
    /// concurrently too), only the spawns keep the order. A plugin with `waitReady` is ready
    /// (or has failed) before any later plugin is spawned.
    pub async fn autostart(&self) {
        let cfg = self.cfg();
        let names = cfg
            .autostart
            .iter()
            .filter(|n| !cfg.is_movable(n))
            .cloned()
            .collect();
        self.start_in_order(names, false).await;
    }

    /// The pipelined start behind [`Supervisor::start_all`] (`manual`) and
    /// [`Supervisor::autostart`].
    pub(super) async fn start_in_order(
        &self,
        names: Vec<String>,
        manual: bool,
    ) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        // A copy started by hand while no launcher ran is not started a second time.
        self.find_external();
        /// Starts in flight at most (each holds a log file, maybe a bus request).
        const WINDOW: usize = 32;
        type Pending = (
            String,
            tokio::task::JoinHandle<Option<Result<PluginInfo, LaunchError>>>,
        );
        let mut out = Vec::new();
        let mut pending: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
        let mut after: Option<tokio::sync::oneshot::Receiver<()>> = None;
        async fn settle(p: Pending, out: &mut Vec<(String, Result<PluginInfo, LaunchError>)>) {
            let (name, h) = p;
            let r = match h.await {
                Ok(Some(r)) => r,
                Ok(None) => Err(LaunchError::StartFailed {
                    name: name.clone(),
                    reason: "the launcher is shutting down".into(),
                }),
                Err(e) => Err(LaunchError::StartFailed {
                    name: name.clone(),
                    reason: format!("start task failed: {e}"),
                }),
            };
            out.push((name, r));
        }
        for name in names {
            let slot = match self.slot(&name) {
                Ok(s) => s,
                Err(e) => {
                    if !manual {
                        tracing::error!("autostart: no plugin named '{name}'");
                    }
                    out.push((name, Err(e)));
                    continue;
                }
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let turn = Turn {
                after: after.take(),
                _done: Some(tx),
                tasks: Some(self.sh.tasks.clone()),
            };
            after = Some(rx);
            let wait_ready = slot.is_core || self.cfg().plugin(&name).wait_ready;
            let this = self.clone();
            let task = async move { this.start_one(&slot, turn, manual).await };
            if wait_ready {
                // Later plugins start only once this one is ready.
                while let Some(p) = pending.pop_front() {
                    settle(p, &mut out).await;
                }
                let r = task.await;
                after = None;
                out.push((name, r));
            } else {
                pending.push_back((name, self.spawn_task(task)));
                while pending.len() > WINDOW {
                    if let Some(p) = pending.pop_front() {
                        settle(p, &mut out).await;
                    }
                }
            }
        }
        while let Some(p) = pending.pop_front() {
            settle(p, &mut out).await;
        }
        out
    }

    /// One start of [`Supervisor::start_in_order`].
    pub(super) async fn start_one(
        &self,
        slot: &Arc<Slot>,
        turn: Turn,
        manual: bool,
    ) -> Result<PluginInfo, LaunchError> {
        if manual {
            self.reset_for_manual_start(slot);
        }
        let r = self.start_slot_in_turn(slot, turn).await;
        match &r {
            Ok(_) => self.watch_stability(slot),
            Err(e) if !manual => {
                tracing::error!("{e}");
                if lock(&slot.st).last_exit.is_some() {
                    self.schedule_restart(slot, e.to_string(), Duration::ZERO);
                }
            }
            Err(_) => {}
        }
        r
    }
}
