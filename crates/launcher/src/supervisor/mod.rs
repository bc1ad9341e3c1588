//! The supervisor: owns the state of every plugin (the core included) and performs start and
//! stop. Operations on one plugin are serialized by that plugin's operation lock; different
//! plugins proceed concurrently. Child exits arrive from the reaper ([`Supervisor::on_exit`]).
//!
//! States (see `PluginState`): a plugin is `stopped` until started; `starting` from spawn until
//! ready (or at once when readiness is not awaited); `running`; `stopping` while a stop is in
//! progress; `disabled` after a user stop; `failed` when a start failed or the process exited
//! with an error; `missing` when its binary is gone.
//!
//! Start, stop, exits and restarts are here; `discovery` (which plugins exist), `credentials`
//! (key, token, identity environment), `records` (pid and backoff records in `run/`),
//! `thresholds` (resource samples and limits) and `reload` (a changed config) are beside it.

use crate::config::ThresholdAction;
use crate::config::{Backoff, ConfigError, RestartPolicy};
use crate::config::{LauncherConfig, PluginConfig};
use crate::lock;
use crate::logs::{pump, PluginLog, Stream};
use crate::monitor::{
    History, Measure, Monitor, TreeSample, DEFAULT_HISTORY_SPAN, DEFAULT_INTERVAL,
};
use crate::process::{self, Exit, Guard, SpawnSpec, Spawner};
use crate::sandbox;
use hivehub_api::auth::{methods, AddClientReq, AddClientResp, AUTH_SERVICE, CAP_CLIENTS};
use hivehub_api::launcher::{
    events, ExitInfo, LauncherEvent, PluginInfo, PluginState, ReloadResp, ResourceSample,
};
use hivehub_api::time::unix_ms as now_ms;
use hivehub_api::{ClientType, Role};
use hivehub_auth::KeyPair;
use hivehub_client::{HubClient, ENV_CLIENT_ID, ENV_LOG_LEVEL, ENV_SERVER};
use hivehub_home::{write_atomic, Home, ENV_HOME, SECRET_MODE};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};

mod credentials;
mod discovery;
mod records;
mod reload;
mod thresholds;

/// Why an operation failed. The message is shown to users as is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LaunchError {
    /// No plugin of that name.
    #[error("no plugin named '{name}'; available: {available}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The known plugins, comma-separated.
        available: String,
    },
    /// The plugin could not be started; the reason is also in its status and log.
    #[error("cannot start '{name}': {reason}")]
    StartFailed {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// A movable plugin may not run here now (its lease is elsewhere or lost).
    #[error("'{name}' does not run here: {reason}")]
    NotPlaced {
        /// The plugin.
        name: String,
        /// Why, e.g. "held by launcher-b".
        reason: String,
    },
    /// The plugin could not be stopped completely.
    #[error("cannot stop '{name}': {reason}")]
    StopFailed {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The typed error reply of a failed operation, for the launcher's services.
impl From<LaunchError> for hivehub_api::RemoteError {
    fn from(e: LaunchError) -> Self {
        use hivehub_api::ErrorCode;
        let code = match e {
            LaunchError::NotFound { .. } => ErrorCode::NotFound,
            LaunchError::StartFailed { .. } => ErrorCode::Conflict,
            LaunchError::StopFailed { .. } => ErrorCode::Internal,
            LaunchError::NotPlaced { .. } => ErrorCode::Conflict,
        };
        hivehub_api::RemoteError::new(code, e.to_string())
    }
}

/// Mutable state of one plugin.
struct Run {
    path: PathBuf,
    present: bool,
    size: Option<u64>,
    modified: Option<u64>,
    state: PluginState,
    pid: Option<u32>,
    start_count: u64,
    start_time: Option<SystemTime>,
    stop_time: Option<SystemTime>,
    last_exit: Option<ExitInfo>,
    status: String,
    log: Option<Arc<PluginLog>>,
    /// The tasks copying the current process's output into the log.
    pumps: Vec<tokio::task::JoinHandle<()>>,
    /// A process started by an earlier launcher that is still alive (pid).
    stale: Option<u32>,
    /// Failed restarts in a row; decays to 0 after a stable run.
    attempt: u32,
    /// The last backoff delay.
    last_delay: Duration,
    /// When the scheduled restart happens.
    next_retry: Option<SystemTime>,
    /// Bumped by every manual start or stop, cancelling a scheduled restart.
    restart_gen: u64,
    /// Waiting for the core before it can be restarted.
    held: bool,
    /// Automatic restarts so far.
    restarts: u64,
    /// Restarts caused by resource thresholds.
    threshold_restarts: u64,
    /// Threshold breaches (restart and alert).
    breaches: u64,
    /// Latest CPU (percent of one core) and RSS (bytes) of the process tree.
    cpu: Option<f64>,
    rss: Option<u64>,
    /// Recent resource samples.
    history: History,
    /// A breach is being acted on; no new one is raised until the samples start over.
    breaching: bool,
    /// Credentials were minted for the next start already (a hand-over prepares them before
    /// the source stops, so the gap is only the spawn).
    creds_fresh: bool,
}

impl Run {
    fn with_backoff(mut self, attempt: u32, last_delay: Duration) -> Run {
        self.attempt = attempt;
        self.last_delay = last_delay;
        self
    }

    fn new(path: PathBuf, state: PluginState, status: String, stale: Option<u32>) -> Run {
        Run {
            path,
            present: false,
            size: None,
            modified: None,
            state,
            pid: None,
            start_count: 0,
            start_time: None,
            stop_time: None,
            last_exit: None,
            status,
            log: None,
            pumps: Vec::new(),
            stale,
            attempt: 0,
            last_delay: Duration::ZERO,
            next_retry: None,
            restart_gen: 0,
            held: false,
            restarts: 0,
            threshold_restarts: 0,
            breaches: 0,
            cpu: None,
            rss: None,
            history: History::for_span(DEFAULT_HISTORY_SPAN, DEFAULT_INTERVAL),
            breaching: false,
            creds_fresh: false,
        }
    }
}

struct Slot {
    name: String,
    is_core: bool,
    op: tokio::sync::Mutex<()>,
    st: Mutex<Run>,
    /// Incremented at every exit of this plugin's process.
    exits: watch::Sender<u64>,
}

struct Shared {
    home: Home,
    cfg: std::sync::RwLock<Arc<LauncherConfig>>,
    config_path: Mutex<Option<PathBuf>>,
    /// The core's name; fixed for the launcher's life (a change needs a restart).
    core: Option<String>,
    spawner: Spawner,
    guard: Option<Guard>,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    by_pid: Mutex<HashMap<u32, Arc<Slot>>>,
    started_order: Mutex<Vec<String>>,
    bus: Mutex<Option<HubClient>>,
    server_url: Mutex<Option<String>>,
    notices: Mutex<Vec<mpsc::UnboundedSender<Notice>>>,
    /// The launcher's own CPU (percent of one core) and RSS, from the monitor.
    self_usage: Mutex<Option<(f64, u64)>>,
    /// Held around spawn-and-record and around `waitpid`, so no child is reaped before it is
    /// known.
    reap_lock: Mutex<()>,
    /// Limits automatic restarts in progress.
    restart_sem: Arc<tokio::sync::Semaphore>,
    /// The address the core listened on, kept for its restarts so clients find it again.
    core_listen: Mutex<Option<String>>,
    /// Decides whether a movable plugin may run here (the cluster's leases).
    gate: Mutex<Option<Arc<dyn PlacementGate>>>,
    /// The confinement of plugins.
    sandbox: sandbox::Sandbox,
}

/// The cluster's say over movable plugins, consulted before each spawn so that not even an
/// automatic restart can run a movable plugin without its lease.
pub trait PlacementGate: Send + Sync {
    /// `Ok` if `name` may be spawned here now, else why not.
    fn may_spawn(&self, name: &str) -> Result<(), String>;
    /// The launcher holding `name`'s lease, when it is not this one.
    fn held_elsewhere(&self, name: &str) -> Option<String>;
}

/// A place in a pipelined start: the spawn waits for `after` (the previous plugin's `_done`,
/// sent or dropped once that plugin has spawned or failed).
#[derive(Default)]
struct Turn {
    after: Option<tokio::sync::oneshot::Receiver<()>>,
    _done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Gone before its own turn (a start that failed early): the next one still waits for
        // the previous one.
        if let (Some(after), Some(done)) = (self.after.take(), self._done.take()) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = after.await;
                    drop(done);
                });
            }
        }
    }
}

/// What the supervisor reports for publication on the bus.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A lifecycle event.
    Event(LauncherEvent),
    /// A plugin's current state (published retained).
    Status(PluginInfo),
}

/// The plugin supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    sh: Arc<Shared>,
}

impl Supervisor {
    /// A supervisor for `home` with `cfg`. `guard` protects against a killed launcher.
    pub fn new(
        home: Home,
        cfg: LauncherConfig,
        guard: Option<Guard>,
    ) -> std::io::Result<Supervisor> {
        let cfg_concurrency = cfg.restart_concurrency.max(1);
        let sandbox = sandbox::Sandbox::new(&home);
        let sup = Supervisor {
            sh: Arc::new(Shared {
                home,
                core: cfg.core.clone(),
                cfg: std::sync::RwLock::new(Arc::new(cfg)),
                config_path: Mutex::new(None),
                spawner: Spawner::new()?,
                guard,
                slots: Mutex::new(BTreeMap::new()),
                by_pid: Mutex::new(HashMap::new()),
                started_order: Mutex::new(Vec::new()),
                bus: Mutex::new(None),
                server_url: Mutex::new(None),
                notices: Mutex::new(Vec::new()),
                self_usage: Mutex::new(None),
                reap_lock: Mutex::new(()),
                restart_sem: Arc::new(tokio::sync::Semaphore::new(cfg_concurrency)),
                core_listen: Mutex::new(None),
                gate: Mutex::new(None),
                sandbox,
            }),
        };
        sup.discover();
        Ok(sup)
    }

    /// The launcher's configuration.
    pub fn config(&self) -> Arc<LauncherConfig> {
        self.cfg()
    }

    fn cfg(&self) -> Arc<LauncherConfig> {
        self.sh
            .cfg
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The file `reload` reads (default: `config/launcher.yaml` of the home).
    pub fn set_config_path(&self, path: PathBuf) {
        *lock(&self.sh.config_path) = Some(path);
    }

    /// The name of the core plugin, when one is configured.
    pub fn core_name(&self) -> Option<&str> {
        self.sh.core.as_deref()
    }

    /// Receives events and status changes from now on (the bus publisher).
    pub fn notices(&self) -> mpsc::UnboundedReceiver<Notice> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.sh.notices).push(tx);
        rx
    }

    fn notice(&self, n: Notice) {
        // Every subscriber (the bus publisher, the web page) gets every notice; gone ones are
        // dropped.
        lock(&self.sh.notices).retain(|tx| tx.send(n.clone()).is_ok());
    }

    /// The launcher's own CPU use (percent of one core) and RSS in bytes, as last sampled.
    pub fn self_usage(&self) -> Option<(f64, u64)> {
        *lock(&self.sh.self_usage)
    }

    /// True while the launcher's bus connection is up.
    pub fn bus_connected(&self) -> bool {
        lock(&self.sh.bus)
            .as_ref()
            .is_some_and(|b| *b.state().borrow() == hivehub_client::ConnState::Connected)
    }

    fn event(&self, plugin: &str, name: &str) -> LauncherEvent {
        LauncherEvent {
            schema_version: hivehub_api::SCHEMA_VERSION,
            event: name.to_string(),
            launcher_id: self.cfg().id.clone(),
            plugin: plugin.to_string(),
            time: now_ms(SystemTime::now()),
            pid: None,
            exit: None,
            uptime_secs: None,
            by: None,
            log_tail: Vec::new(),
            attempt: None,
            delay_ms: None,
            reason: None,
            measure: None,
            value: None,
            limit: None,
            for_secs: None,
            action: None,
            from: None,
            to: None,
        }
    }

    /// Lets the cluster decide where movable plugins run.
    pub fn set_gate(&self, gate: Arc<dyn PlacementGate>) {
        *lock(&self.sh.gate) = Some(gate);
    }

    /// Publishes an event about a plugin (the cluster's `moved`).
    pub fn publish_event(&self, e: LauncherEvent) {
        self.notice(Notice::Event(e));
    }

    /// A blank event of this launcher, to fill in.
    pub fn new_event(&self, plugin: &str, name: &str) -> LauncherEvent {
        self.event(plugin, name)
    }

    fn publish_status(&self, slot: &Slot) {
        self.notice(Notice::Status(self.info_of(slot)));
    }

    /// Publishes the current status of every plugin (after (re)connecting to the bus).
    pub fn publish_all_status(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.sh.slots).values().cloned().collect();
        for s in slots {
            self.publish_status(&s);
        }
    }

    /// Recent resource samples of a plugin, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<ResourceSample>, LaunchError> {
        let slot = self.slot(name)?;
        let h = lock(&slot.st)
            .history
            .iter()
            .map(|t| ResourceSample {
                time: t.time_ms,
                cpu: t.cpu_percent,
                rss: t.rss_bytes,
            })
            .collect();
        Ok(h)
    }

    /// The last output lines of a plugin.
    pub fn log_tail(&self, name: &str) -> Result<Vec<String>, LaunchError> {
        let slot = self.slot(name)?;
        let log = lock(&slot.st).log.clone();
        Ok(log.map(|l| l.tail()).unwrap_or_default())
    }

    /// Sets the bus connection used to mint plugin credentials, and the URL given to plugins.
    pub fn set_bus(&self, client: Option<HubClient>, url: Option<String>) {
        *lock(&self.sh.bus) = client;
        *lock(&self.sh.server_url) = url;
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, LaunchError> {
        let slots = lock(&self.sh.slots);
        slots
            .get(name)
            .cloned()
            .ok_or_else(|| LaunchError::NotFound {
                name: name.to_string(),
                available: slots.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    fn info_of(&self, slot: &Slot) -> PluginInfo {
        let movable = self.cfg().is_movable(&slot.name);
        let held_by = if movable {
            lock(&self.sh.gate)
                .clone()
                .and_then(|g| g.held_elsewhere(&slot.name))
        } else {
            None
        };
        let st = lock(&slot.st);
        let now = SystemTime::now();
        PluginInfo {
            name: slot.name.clone(),
            launcher_id: self.cfg().id.clone(),
            path: st.path.display().to_string(),
            size: st.size,
            modified_time: st.modified,
            pid: st.pid,
            running: st.pid.is_some(),
            state: st.state,
            start_count: st.start_count,
            start_time: st.start_time.map(now_ms),
            stop_time: st.stop_time.map(now_ms),
            uptime: st
                .pid
                .and(st.start_time)
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            last_exit: st.last_exit.clone(),
            status: st.status.clone(),
            cpu: st.pid.and(st.cpu),
            rss: st.pid.and(st.rss),
            attempt: st.attempt,
            next_retry_at: st.next_retry.map(now_ms),
            restarts: st.restarts,
            threshold_restarts: st.threshold_restarts,
            breaches: st.breaches,
            backoff_delay_ms: st
                .next_retry
                .is_some()
                .then(|| st.last_delay.as_millis() as u64),
            movable,
            held_by,
            sandbox: (!slot.is_core).then(|| {
                let cfg = self.cfg();
                match cfg.plugins.get(&slot.name) {
                    Some(pc) => self.sh.sandbox.host().level(pc),
                    None => self.sh.sandbox.host().level(&PluginConfig::default()),
                }
            }),
        }
    }

    /// What this host offers to confine plugins.
    pub fn sandbox_host(&self) -> sandbox::Host {
        self.sh.sandbox.host()
    }

    /// Information about every known plugin, sorted by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let slots: Vec<Arc<Slot>> = lock(&self.sh.slots).values().cloned().collect();
        slots.iter().map(|s| self.info_of(s)).collect()
    }

    /// Information about one plugin.
    pub fn info(&self, name: &str) -> Result<PluginInfo, LaunchError> {
        let slot = self.slot(name)?;
        Ok(self.info_of(&slot))
    }

    fn fail(&self, slot: &Slot, reason: String) -> LaunchError {
        {
            let mut st = lock(&slot.st);
            st.state = PluginState::Failed;
            st.status = reason.clone();
            if let Some(log) = &st.log {
                log.marker(&format!("start failed: {reason}"));
            }
        }
        tracing::error!(plugin = %slot.name, "start failed: {reason}");
        self.publish_status(slot);
        LaunchError::StartFailed {
            name: slot.name.clone(),
            reason,
        }
    }

    fn stable_after(&self, slot: &Slot, bo: &Backoff) -> Duration {
        let last = lock(&slot.st).last_delay;
        bo.stable
            .unwrap_or_else(|| Duration::from_secs(60).max(last))
    }

    /// After a start, resets the attempt count once the plugin has stayed up for the stable
    /// period.
    fn watch_stability(&self, slot: &Arc<Slot>) {
        let (pid, attempt) = {
            let st = lock(&slot.st);
            (st.pid, st.attempt)
        };
        let (Some(pid), true) = (pid, attempt > 0) else {
            return;
        };
        let bo = self.backoff_policy(slot);
        let wait = self.stable_after(slot, &bo);
        let this = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let reset = {
                let mut st = lock(&slot.st);
                if st.pid == Some(pid) {
                    st.attempt = 0;
                    true
                } else {
                    false
                }
            };
            if reset {
                tracing::info!(plugin = %slot.name, "stable again; backoff reset");
                this.save_backoff(&slot);
                this.publish_status(&slot);
            }
        });
    }

    fn backoff_policy(&self, slot: &Slot) -> Backoff {
        self.cfg().backoff_for(&slot.name)
    }

    fn restart_policy(&self, slot: &Slot) -> RestartPolicy {
        if slot.is_core {
            // The hub cannot work without its core: always bring it back.
            RestartPolicy::Always
        } else {
            self.cfg().restart_policy(&slot.name)
        }
    }

    fn core_down(&self) -> bool {
        let Some(core) = self.core_name() else {
            return false;
        };
        let slots = lock(&self.sh.slots);
        slots.get(core).is_some_and(|c| lock(&c.st).pid.is_none())
    }

    /// Decides, after an exit nobody asked for, whether and when to restart, and schedules it.
    fn schedule_restart(&self, slot: &Arc<Slot>, reason: String, uptime: Duration) {
        let failure = {
            let st = lock(&slot.st);
            !matches!(st.last_exit.as_ref().and_then(|e| e.code), Some(0))
        };
        let wanted = match self.restart_policy(slot) {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failure,
            RestartPolicy::Always => true,
        };
        if !wanted {
            return;
        }
        if !slot.is_core && self.core_down() {
            let mut st = lock(&slot.st);
            st.held = true;
            st.state = PluginState::Backoff;
            st.next_retry = None;
            st.status = format!("{reason}; restart held until the core is back");
            drop(st);
            tracing::warn!(plugin = %slot.name, "restart held: the core is down");
            self.publish_status(slot);
            return;
        }
        let bo = self.backoff_policy(slot);
        let stable = self.stable_after(slot, &bo);
        let (attempt, delay, gen) = {
            let mut st = lock(&slot.st);
            if uptime >= stable {
                st.attempt = 0;
            }
            let delay = backoff_delay(&bo, st.attempt, rand::random::<f64>());
            st.attempt = st.attempt.saturating_add(1);
            st.last_delay = delay;
            st.next_retry = Some(SystemTime::now() + delay);
            st.state = PluginState::Backoff;
            st.status = format!(
                "{reason}; restart #{} in {:.1}s",
                st.attempt,
                delay.as_secs_f64()
            );
            (st.attempt, delay, st.restart_gen)
        };
        self.save_backoff(slot);
        tracing::warn!(plugin = %slot.name, attempt, ?delay, %reason, "restarting");
        self.notice(Notice::Event(LauncherEvent {
            attempt: Some(attempt),
            delay_ms: Some(delay.as_millis() as u64),
            reason: Some(reason),
            ..self.event(&slot.name, events::RESTARTING)
        }));
        self.publish_status(slot);
        let this = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            this.restart_now(slot, gen).await;
        });
    }

    /// Performs a scheduled (or released) restart, unless a manual start or stop came first.
    async fn restart_now(&self, slot: Arc<Slot>, gen: u64) {
        let Ok(_permit) = self.sh.restart_sem.clone().acquire_owned().await else {
            return;
        };
        let current = {
            let st = lock(&slot.st);
            st.restart_gen == gen && st.pid.is_none() && st.state == PluginState::Backoff
        };
        if !current {
            return;
        }
        lock(&slot.st).next_retry = None;
        match self.start_slot(&slot).await {
            Ok(_) => {
                lock(&slot.st).restarts += 1;
                self.publish_status(&slot);
                self.watch_stability(&slot);
                if slot.is_core {
                    self.release_held();
                }
            }
            Err(LaunchError::NotPlaced { reason, .. }) => {
                tracing::info!(plugin = %slot.name, "not restarted here: {reason}");
            }
            Err(e) => {
                // Keep trying at the backoff pace; never give up silently.
                self.schedule_restart(&slot, e.to_string(), Duration::ZERO);
            }
        }
    }

    /// Restarts the plugins whose restart waited for the core, without counting an attempt.
    fn release_held(&self) {
        let held: Vec<Arc<Slot>> = lock(&self.sh.slots)
            .values()
            .filter(|s| lock(&s.st).held)
            .cloned()
            .collect();
        for slot in held {
            let gen = {
                let mut st = lock(&slot.st);
                st.held = false;
                st.restart_gen
            };
            let this = self.clone();
            tokio::spawn(async move { this.restart_now(slot, gen).await });
        }
    }

    /// Starts a plugin. Starting a running plugin changes nothing and returns its info. A manual
    /// start resets the restart backoff and cancels a scheduled restart.
    pub async fn start(&self, name: &str) -> Result<PluginInfo, LaunchError> {
        // A binary copied in just now is not listed until the next scan: look again first.
        let slot = match self.slot(name) {
            Ok(s) => s,
            Err(_) => {
                self.discover();
                self.slot(name)?
            }
        };
        self.reset_for_manual_start(&slot);
        let r = self.start_slot(&slot).await;
        if r.is_ok() {
            self.watch_stability(&slot);
        }
        r
    }

    /// A manual start resets the backoff and cancels a scheduled restart.
    fn reset_for_manual_start(&self, slot: &Slot) {
        {
            let mut st = lock(&slot.st);
            st.restart_gen += 1;
            st.next_retry = None;
            st.held = false;
            if st.pid.is_none() {
                st.attempt = 0;
            }
        }
        self.save_backoff(slot);
    }

    async fn start_slot(&self, slot: &Arc<Slot>) -> Result<PluginInfo, LaunchError> {
        self.start_slot_in_turn(slot, Turn::default()).await
    }

    /// Starts `slot`; its spawn waits for `turn` (the previous plugin's spawn in a pipelined
    /// start), and `turn` lets the next one go once this spawn is done or the start failed.
    async fn start_slot_in_turn(
        &self,
        slot: &Arc<Slot>,
        mut turn: Turn,
    ) -> Result<PluginInfo, LaunchError> {
        let slot = slot.clone();
        let name = slot.name.as_str();
        let _op = slot.op.lock().await;
        {
            let st = lock(&slot.st);
            if st.pid.is_some() {
                drop(st);
                return Ok(self.info_of(&slot));
            }
            if let Some(pid) = st.stale {
                let reason = format!(
                    "an instance started by an earlier launcher is still running (pid {pid}); stop it first"
                );
                drop(st);
                return Err(self.fail(&slot, reason));
            }
        }
        if !slot.is_core && self.cfg().is_movable(name) {
            let gate = lock(&self.sh.gate).clone();
            let verdict = match gate {
                Some(g) => g.may_spawn(name),
                None => Err("movable plugins run only when the launcher is on the bus".into()),
            };
            if let Err(reason) = verdict {
                {
                    let mut st = lock(&slot.st);
                    st.state = PluginState::Stopped;
                    st.next_retry = None;
                    st.status = reason.clone();
                }
                self.publish_status(&slot);
                return Err(LaunchError::NotPlaced {
                    name: name.to_string(),
                    reason,
                });
            }
        }
        // Rescan only when the binary is not known to be there (a restart need not pay for it).
        if !lock(&slot.st).present {
            self.discover();
        }
        let (path, present) = {
            let st = lock(&slot.st);
            (st.path.clone(), st.present)
        };
        if !present {
            let reason = format!("binary {} not found or not executable", path.display());
            {
                let mut st = lock(&slot.st);
                st.state = PluginState::Missing;
                st.status = reason.clone();
            }
            return Err(LaunchError::StartFailed {
                name: name.to_string(),
                reason,
            });
        }
        let cfg = self.cfg();
        let pc = cfg.plugin(name);
        if !slot.is_core {
            if let Some(why) = sandbox::reserved_name(name, &cfg) {
                return Err(self.fail(&slot, why));
            }
        }
        if let Err(why) = sandbox::check_binary(&path, self.sh.sandbox.host().uid) {
            return Err(self.fail(&slot, why));
        }
        let log = {
            let mut st = lock(&slot.st);
            st.state = PluginState::Starting;
            st.status = "starting".into();
            st.log
                .get_or_insert_with(|| {
                    Arc::new(PluginLog::open(
                        &self.sh.home.logs().join(format!("{name}.log")),
                        cfg.logplugins,
                        cfg.log_max_size,
                        cfg.log_max_files,
                        cfg.attachstdout,
                        cfg.attachstderr,
                    ))
                })
                .clone()
        };
        let fresh = std::mem::take(&mut lock(&slot.st).creds_fresh);
        if !slot.is_core && cfg.create_plugin_cred && !fresh {
            if let Err(reason) = self.mint_credentials(name).await {
                return Err(self.fail(&slot, reason));
            }
        }
        let wait_ready = pc.wait_ready || slot.is_core;
        let mut env = self.env_for(name, &pc);
        let notify = if wait_ready {
            match ReadyListener::bind(&self.sh.home.run(), name) {
                Ok(l) => {
                    env.push(("NOTIFY_SOCKET".into(), l.path.display().to_string()));
                    Some(l)
                }
                Err(e) => {
                    tracing::warn!(
                        plugin = name,
                        "cannot create readiness socket, not waiting: {e}"
                    );
                    None
                }
            }
        } else {
            None
        };
        let (env, env_clear, confine) = if slot.is_core {
            let env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
            let creds = match sandbox::core_creds(&self.sh.home, &pc, &self.sh.sandbox.host()) {
                Ok(c) => c,
                Err(why) => return Err(self.fail(&slot, why)),
            };
            if let Some(c) = &creds {
                if let Err(why) = sandbox::prepare_core_dirs(&self.sh.home, c) {
                    return Err(self.fail(&slot, why));
                }
            }
            let confine = sandbox::Confinement {
                creds,
                ..sandbox::Confinement::default()
            };
            (env, false, confine)
        } else {
            let p = match self.sh.sandbox.prepare(name, &path, &pc, &env) {
                Ok(p) => p,
                Err(why) => return Err(self.fail(&slot, why)),
            };
            if !pc.sandbox.enabled {
                tracing::warn!(
                    plugin = name,
                    level = p.level.as_str(),
                    "sandbox: off; the plugin can reach everything its user can"
                );
            }
            (p.env, true, p.confinement)
        };
        if let (Some(l), Some(c)) = (&notify, &confine.creds) {
            if let Err(e) = std::os::unix::fs::lchown(&l.path, Some(c.uid), Some(c.gid)) {
                tracing::warn!(plugin = name, "cannot hand the readiness socket over: {e}");
            }
        }
        let mut args = pc.args.clone();
        if slot.is_core {
            if let Some(addr) = lock(&self.sh.core_listen).clone() {
                // A restarted core keeps its address, so clients and plugins find it again.
                replace_flag_value(&mut args, "--listen", &addr);
            }
        }
        let own_uid = confine
            .creds
            .as_ref()
            .map(|c| c.uid)
            .filter(|_| !slot.is_core && sandbox::own_uid(&self.sh.home, name).is_some());
        let spec = SpawnSpec {
            program: path.clone(),
            args,
            env,
            env_clear,
            cwd: self.sh.home.root().to_path_buf(),
            confine,
        };
        let mut exits = slot.exits.subscribe();
        exits.borrow_and_update();
        if let Some(prev) = turn.after.take() {
            // Spawns keep the start order.
            let _ = prev.await;
        }
        // Everything the reaper needs to recognise this child is recorded before it can be
        // reaped: the reaper takes the same lock around `waitpid`.
        let reap_guard = lock(&self.sh.reap_lock);
        let spawned = match self.sh.spawner.spawn(spec) {
            Ok(s) => s,
            Err(e) => {
                drop(reap_guard);
                return Err(self.fail(&slot, format!("cannot execute {}: {e}", path.display())));
            }
        };
        let pid = spawned.pid;
        if let Some(g) = &self.sh.guard {
            g.watch(pid);
            if let Some(uid) = own_uid {
                g.watch_uid(uid);
            }
        }
        // The marker goes before any output line.
        log.marker(&format!(
            "started {name}: pid {pid}, start #{}",
            lock(&slot.st).start_count + 1
        ));
        let mut pumps = Vec::new();
        for (fd, stream) in [(spawned.stdout, Stream::Out), (spawned.stderr, Stream::Err)] {
            match process::async_pipe(fd) {
                Ok(p) => pumps.push(tokio::spawn(pump(p, log.clone(), stream))),
                Err(e) => tracing::warn!(plugin = name, "cannot read output: {e}"),
            }
        }
        {
            let mut st = lock(&slot.st);
            st.pid = Some(pid);
            st.start_count += 1;
            st.start_time = Some(SystemTime::now());
            st.status = format!("started, pid {pid}");
            st.pumps = pumps;
            // Measures and threshold windows start over with each process.
            st.history = self.new_history(name);
            st.breaching = false;
            st.cpu = None;
            st.rss = None;
        }
        lock(&self.sh.by_pid).insert(pid, slot.clone());
        if let Some(t) = process::start_time(pid) {
            let _ = hivehub_home::write_replace(
                &self.pid_file(name),
                format!("{pid} {t}\n").as_bytes(),
                0o644,
            );
        }
        {
            let mut order = lock(&self.sh.started_order);
            order.retain(|n| n != name);
            order.push(name.to_string());
        }
        drop(reap_guard);
        // The next plugin in a pipelined start may spawn now.
        drop(turn);
        tracing::info!(plugin = name, pid, "started");
        self.notice(Notice::Event(LauncherEvent {
            pid: Some(pid),
            ..self.event(name, events::STARTED)
        }));
        self.publish_status(&slot);
        if let Some(listener) = notify {
            let timeout = cfg.ready_timeout;
            let ready = tokio::select! {
                r = listener.wait_ready(timeout) => r,
                _ = exits.changed() => Err("exited before it was ready".to_string()),
            };
            listener.remove();
            if let Err(why) = ready {
                let reason = match lock(&slot.st).last_exit.as_ref() {
                    Some(e) if why.starts_with("exited") => format!("{why} ({})", describe_exit(e)),
                    _ => why,
                };
                if lock(&slot.st).pid.is_some() {
                    // Not ready in time: it must not linger half-started.
                    drop(_op);
                    let _ = self.stop_inner(&slot, None).await;
                }
                return Err(self.fail(&slot, reason));
            }
        }
        {
            let mut st = lock(&slot.st);
            if st.pid != Some(pid) {
                let why = match st.last_exit.as_ref() {
                    Some(e) => format!("exited during start ({})", describe_exit(e)),
                    None => "exited during start".to_string(),
                };
                drop(st);
                return Err(self.fail(&slot, why));
            }
            {
                st.state = PluginState::Running;
                st.status = if wait_ready {
                    format!("running, pid {pid}, ready")
                } else {
                    format!("running, pid {pid}")
                };
            }
        }
        if wait_ready {
            self.notice(Notice::Event(LauncherEvent {
                pid: Some(pid),
                ..self.event(name, events::READY)
            }));
        }
        if slot.is_core {
            if let Some(addr) = self
                .core_url()
                .and_then(|u| u.split_once("://").map(|(_, a)| a.to_string()))
            {
                *lock(&self.sh.core_listen) = Some(addr);
            }
        }
        self.publish_status(&slot);
        Ok(self.info_of(&slot))
    }

    /// Called by the reaper for every reaped child.
    pub fn on_exit(&self, pid: u32, exit: Exit) {
        let Some(slot) = lock(&self.sh.by_pid).remove(&pid) else {
            tracing::debug!(pid, %exit, "reaped an orphaned descendant");
            return;
        };
        let now = SystemTime::now();
        let was_starting;
        {
            let mut st = lock(&slot.st);
            let uptime = st
                .start_time
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            let info = ExitInfo {
                code: match exit {
                    Exit::Code(c) => Some(c),
                    _ => None,
                },
                signal: match exit {
                    Exit::Signal(s) => Some(s),
                    _ => None,
                },
                time: now_ms(now),
            };
            st.pid = None;
            st.stop_time = Some(now);
            st.last_exit = Some(info);
            let unexpected = st.state != PluginState::Stopping;
            let exited_event = LauncherEvent {
                pid: Some(pid),
                exit: st.last_exit.clone(),
                uptime_secs: Some(uptime.as_secs_f64()),
                ..self.event(&slot.name, events::EXITED)
            };
            if let Some(log) = st.log.clone() {
                // Write the exit marker (and publish `exited` with the last lines) after the
                // last output: let the pumps drain first (bounded, since a leftover
                // descendant may hold the pipes open).
                let pumps = std::mem::take(&mut st.pumps);
                let this = self.clone();
                let text = format!(
                    "{} exited: {exit} after {:.1}s",
                    slot.name,
                    uptime.as_secs_f64()
                );
                tokio::spawn(async move {
                    let drained = async {
                        for p in pumps {
                            let _ = p.await;
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
                    log.marker(&text);
                    if unexpected {
                        this.notice(Notice::Event(LauncherEvent {
                            log_tail: log.tail(),
                            ..exited_event
                        }));
                    }
                });
            }
            was_starting = st.state == PluginState::Starting;
            if st.state != PluginState::Stopping {
                st.state = if exit == Exit::Code(0) {
                    PluginState::Stopped
                } else {
                    PluginState::Failed
                };
                st.status = format!("exited with {exit}");
                tracing::warn!(plugin = %slot.name, pid, %exit, "plugin exited");
            }
        }
        slot.exits.send_modify(|g| *g += 1);
        if lock(&slot.st).state != PluginState::Stopping {
            self.publish_status(&slot);
            let uptime = {
                let st = lock(&slot.st);
                st.start_time
                    .zip(st.stop_time)
                    .and_then(|(a, b)| b.duration_since(a).ok())
                    .unwrap_or_default()
            };
            // An exit during a start is handled by whoever started it.
            if !was_starting {
                self.schedule_restart(&slot, format!("exited with {exit}"), uptime);
            }
            // An unexpected exit: clean up what the plugin left behind in its session.
            let this = self.clone();
            let name = slot.name.clone();
            let home = self.sh.home.root().to_path_buf();
            let current = slot.clone();
            tokio::task::spawn_blocking(move || {
                // The plugin's new process, if it was already restarted, is one of the live
                // plugins (`live_leaders` is decided under the reap lock, which is held from
                // spawn until the new PID is recorded), so it and its tree are spared.
                let others = || this.live_leaders(&[pid]);
                let spare = |table: &process::ProcTable, _: &str, marked: Vec<u32>| -> Vec<u32> {
                    let keep = current_pid(&this, &current)
                        .map(|p| table.tree(p))
                        .unwrap_or_default();
                    marked.into_iter().filter(|p| !keep.contains(p)).collect()
                };
                let target = process::KillTarget {
                    leader: pid,
                    name: name.clone(),
                    own: true,
                    uid: sandbox::own_uid(&this.sh.home, &name),
                };
                let left: Vec<u32> = process::kill_plugins(
                    &[target],
                    &home,
                    Duration::from_secs(5),
                    &others,
                    &spare,
                )
                .into_iter()
                .flatten()
                .collect();
                if !left.is_empty() {
                    tracing::warn!(plugin = %name, ?left, "descendants survive after exit");
                }
                if let Some(g) = &this.sh.guard {
                    g.forget(pid);
                }
                // A quick restart may already have recorded its new process: only remove our own.
                this.remove_pid_file_of(&name, pid);
            });
        }
    }

    /// Stops a plugin: its stop signal to the whole tree, SIGKILL after the stop timeout, and
    /// success only once no descendant remains. Stopping a stopped plugin changes nothing.
    pub async fn stop(&self, name: &str) -> Result<PluginInfo, LaunchError> {
        self.stop_by(name, "launcher").await
    }

    /// Like [`Supervisor::stop`], recording who asked (a login ID, or a reason) in the
    /// `stopped` event.
    pub async fn stop_by(&self, name: &str, by: &str) -> Result<PluginInfo, LaunchError> {
        let slot = self.slot(name)?;
        let _op = slot.op.lock().await;
        let r = self.stop_inner(&slot, Some(by.to_string())).await;
        self.publish_status(&slot);
        r?;
        Ok(self.info_of(&slot))
    }

    async fn stop_inner(&self, slot: &Arc<Slot>, by: Option<String>) -> Result<(), LaunchError> {
        self.stop_locked(std::slice::from_ref(slot), by)
            .await
            .into_iter()
            .next()
            .unwrap_or(Ok(()))
    }

    /// Stops `slots` together; the caller holds their operation locks. The stop signals go out
    /// in one sweep in the given order (one pass over `/proc`), then every plugin gets its own
    /// stop timeout, concurrently, before SIGKILL; finally whatever is left of all of them is
    /// killed from one pass over `/proc` per round ([`process::kill_plugins`]). A plugin counts
    /// as stopped only when nothing of it remains. Returns one result per slot.
    async fn stop_locked(
        &self,
        slots: &[Arc<Slot>],
        by: Option<String>,
    ) -> Vec<Result<(), LaunchError>> {
        struct Job {
            i: usize,
            pid: u32,
            own: bool,
            sig: Signal,
            timeout: Duration,
            exits: watch::Receiver<u64>,
        }
        let by_user = by.is_some();
        let cfg = self.cfg();
        let mut results: Vec<Result<(), LaunchError>> = vec![Ok(()); slots.len()];
        let mut jobs = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            if by_user {
                let mut st = lock(&slot.st);
                st.restart_gen += 1;
                st.next_retry = None;
                st.held = false;
            }
            let pc = cfg.plugin(&slot.name);
            let mut exits = slot.exits.subscribe();
            exits.borrow_and_update();
            let mut st = lock(&slot.st);
            let Some(pid) = st.pid.or(st.stale) else {
                if let (Some(who), true) = (&by, st.state != PluginState::Missing) {
                    st.state = PluginState::Disabled;
                    st.status = format!("stopped by {who}");
                }
                continue;
            };
            let own = st.stale.is_none();
            st.state = PluginState::Stopping;
            st.status = format!("stopping, pid {pid}");
            drop(st);
            tracing::info!(plugin = %slot.name, pid, signal = %pc.stop_signal, "stopping");
            jobs.push(Job {
                i,
                pid,
                own,
                sig: pc.stop_signal,
                timeout: pc.stop_timeout,
                exits,
            });
        }
        if jobs.is_empty() {
            return results;
        }
        let sweep: Vec<(u32, Signal)> = jobs.iter().map(|j| (j.pid, j.sig)).collect();
        tokio::task::spawn_blocking(move || process::signal_trees(&sweep))
            .await
            .ok();
        async fn exited(pid: u32, own: bool, rx: &mut watch::Receiver<u64>, t: Duration) -> bool {
            if own {
                tokio::time::timeout(t, rx.changed()).await.is_ok()
            } else {
                let end = tokio::time::Instant::now() + t;
                while tokio::time::Instant::now() < end {
                    if !process::pid_alive(pid) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        }
        let mut waits = tokio::task::JoinSet::new();
        for mut j in jobs {
            let name = slots[j.i].name.clone();
            waits.spawn(async move {
                if !exited(j.pid, j.own, &mut j.exits, j.timeout).await {
                    tracing::warn!(plugin = %name, pid = j.pid, "no exit after {:?}; killing", j.timeout);
                    let pid = j.pid;
                    tokio::task::spawn_blocking(move || process::signal_tree(pid, Signal::SIGKILL))
                        .await
                        .ok();
                    exited(j.pid, j.own, &mut j.exits, Duration::from_secs(5)).await;
                }
                j
            });
        }
        let mut jobs = Vec::new();
        while let Some(r) = waits.join_next().await {
            if let Ok(j) = r {
                jobs.push(j);
            }
        }
        jobs.sort_by_key(|j| j.i);
        // The leaders are gone; now nothing of their trees may remain.
        let targets: Vec<process::KillTarget> = jobs
            .iter()
            .map(|j| process::KillTarget {
                leader: j.pid,
                name: slots[j.i].name.clone(),
                own: j.own,
                uid: sandbox::own_uid(&self.sh.home, &slots[j.i].name),
            })
            .collect();
        let home = self.sh.home.root().to_path_buf();
        let this = self.clone();
        let lefts = tokio::task::spawn_blocking(move || {
            // Under the operation locks: no new process of these plugins exists yet.
            let leaders: Vec<u32> = targets.iter().map(|t| t.leader).collect();
            let others = || this.live_leaders(&leaders);
            process::kill_plugins(
                &targets,
                &home,
                Duration::from_secs(5),
                &others,
                &|_, _, m| m,
            )
        })
        .await
        .unwrap_or_default();
        for (k, j) in jobs.iter().enumerate() {
            let slot = &slots[j.i];
            let left = lefts.get(k).cloned().unwrap_or_default();
            if let Some(g) = &self.sh.guard {
                g.forget(j.pid);
            }
            self.remove_pid_file_of(&slot.name, j.pid);
            let mut st = lock(&slot.st);
            st.stale = None;
            if !left.is_empty() {
                st.state = PluginState::Failed;
                st.status = format!("processes {left:?} survived SIGKILL");
                results[j.i] = Err(LaunchError::StopFailed {
                    name: slot.name.clone(),
                    reason: st.status.clone(),
                });
                continue;
            }
            if !j.own {
                st.stop_time = Some(SystemTime::now());
            }
            st.state = if by_user {
                PluginState::Disabled
            } else {
                PluginState::Stopped
            };
            st.status = match &by {
                Some(who) => format!("stopped by {who}"),
                None => "stopped".into(),
            };
            let event = LauncherEvent {
                pid: Some(j.pid),
                exit: st.last_exit.clone(),
                uptime_secs: st
                    .start_time
                    .zip(st.stop_time)
                    .and_then(|(a, b)| b.duration_since(a).ok())
                    .map(|d| d.as_secs_f64()),
                by: by.clone(),
                ..self.event(&slot.name, events::STOPPED)
            };
            drop(st);
            self.notice(Notice::Event(event));
        }
        results
    }

    /// The session leaders of the running plugins, except `except`. Taken under the reap lock,
    /// which is held from a spawn until its PID is recorded, so a process spawned before this
    /// call is in the list.
    fn live_leaders(&self, except: &[u32]) -> Vec<u32> {
        let _g = lock(&self.sh.reap_lock);
        let slots: Vec<Arc<Slot>> = lock(&self.sh.slots).values().cloned().collect();
        slots
            .iter()
            .filter_map(|s| lock(&s.st).pid)
            .filter(|p| !except.contains(p))
            .collect()
    }

    /// Starts the autostart plugins in order, then every other plugin (the core is started
    /// separately, first). Returns the result of each start. Pipelined like
    /// [`Supervisor::autostart`].
    pub async fn start_all(&self) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
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
    async fn start_in_order(
        &self,
        names: Vec<String>,
        manual: bool,
    ) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        /// Starts in flight at most (each holds a log file, maybe a bus request).
        const WINDOW: usize = 32;
        type Pending = (
            String,
            tokio::task::JoinHandle<Result<PluginInfo, LaunchError>>,
        );
        let mut out = Vec::new();
        let mut pending: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
        let mut after: Option<tokio::sync::oneshot::Receiver<()>> = None;
        async fn settle(p: Pending, out: &mut Vec<(String, Result<PluginInfo, LaunchError>)>) {
            let (name, h) = p;
            let r = h.await.unwrap_or_else(|e| {
                Err(LaunchError::StartFailed {
                    name: name.clone(),
                    reason: format!("start task failed: {e}"),
                })
            });
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
                pending.push_back((name, tokio::spawn(task)));
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
    async fn start_one(
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

    /// Stops every running plugin in reverse start order; the core last, and only when
    /// `include_core`.
    pub async fn stop_all(
        &self,
        include_core: bool,
    ) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        self.stop_all_by(include_core, "launcher").await
    }

    /// Like [`Supervisor::stop_all`], recording who asked.
    pub async fn stop_all_by(
        &self,
        include_core: bool,
        by: &str,
    ) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        let core = self.core_name().map(str::to_string);
        let mut order: Vec<String> = lock(&self.sh.started_order).clone();
        for n in lock(&self.sh.slots).keys() {
            if !order.contains(n) {
                order.insert(0, n.clone());
            }
        }
        order.reverse();
        if let Some(c) = &core {
            order.retain(|n| n != c);
            if include_core {
                order.push(c.clone());
            }
        }
        let running: Vec<Arc<Slot>> = order
            .iter()
            .filter_map(|n| self.slot(n).ok())
            .filter(|slot| {
                let st = lock(&slot.st);
                st.pid.is_some() || st.stale.is_some()
            })
            .collect();
        // The mirror of the pipelined start: plugins in reverse start order, stopped together
        // (stop signals in that order) except that a `waitReady` plugin, which later plugins
        // may depend on, is a barrier: everything started after it is gone before it is
        // stopped, and it is gone before anything started before it is stopped. The core goes
        // last, alone.
        let (core_slot, plugins): (Vec<Arc<Slot>>, Vec<Arc<Slot>>) = running
            .into_iter()
            .partition(|s| core.as_deref() == Some(s.name.as_str()));
        let cfg = self.cfg();
        let mut batches: Vec<Vec<Arc<Slot>>> = Vec::new();
        let mut current = Vec::new();
        for slot in plugins {
            if cfg.plugin(&slot.name).wait_ready {
                if !current.is_empty() {
                    batches.push(std::mem::take(&mut current));
                }
                batches.push(vec![slot]);
            } else {
                current.push(slot);
            }
        }
        batches.push(current);
        batches.push(core_slot);
        let mut out = Vec::new();
        for batch in batches {
            if batch.is_empty() {
                continue;
            }
            let mut guards = Vec::with_capacity(batch.len());
            for slot in &batch {
                guards.push(slot.op.lock().await);
            }
            let results = self.stop_locked(&batch, Some(by.to_string())).await;
            drop(guards);
            for (slot, r) in batch.iter().zip(results) {
                self.publish_status(slot);
                out.push((slot.name.clone(), r.map(|_| self.info_of(slot))));
            }
        }
        out
    }

    /// Reaps children on SIGCHLD (and every second, in case a signal was coalesced).
    pub fn spawn_reaper(&self) -> std::io::Result<()> {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = tick.tick() => {}
                }
                let reaped = {
                    let _g = lock(&this.sh.reap_lock);
                    process::reap()
                };
                for (pid, exit) in reaped {
                    this.on_exit(pid, exit);
                }
            }
        });
        Ok(())
    }

    /// Rescans `plugins/` every `every`.
    pub fn spawn_watcher(&self, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                this.discover();
            }
        });
    }

    /// The URL the core wrote once ready (`run/hubcore.url`).
    pub fn core_url(&self) -> Option<String> {
        process::read_file(&self.sh.home.core_url_file()).map(|s| s.trim().to_string())
    }

    /// Releases the guard at a normal exit.
    pub fn release_guard(&self) {
        if let Some(g) = &self.sh.guard {
            g.release();
        }
    }
}

/// The current PID of `slot`, read under the reap lock (see [`Supervisor::live_leaders`]).
fn current_pid(sup: &Supervisor, slot: &Slot) -> Option<u32> {
    let _g = lock(&sup.sh.reap_lock);
    lock(&slot.st).pid
}

fn describe_exit(e: &ExitInfo) -> String {
    match (e.code, e.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => Exit::Signal(s).to_string(),
        _ => "unknown exit".into(),
    }
}

/// A readiness socket: the plugin (through the SDK, or any sd_notify implementation) sends
/// `READY=1` to `$NOTIFY_SOCKET`.
struct ReadyListener {
    sock: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl ReadyListener {
    fn bind(run: &std::path::Path, name: &str) -> std::io::Result<ReadyListener> {
        let dir = run.join("notify");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let sock = tokio::net::UnixDatagram::bind(&path)?;
        Ok(ReadyListener { sock, path })
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut buf = vec![0u8; 4096];
        let fut = async {
            loop {
                match self.sock.recv(&mut buf).await {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]);
                        if msg.lines().any(|l| l.trim() == "READY=1") {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(format!("readiness socket failed: {e}")),
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| Err(format!("not ready after {}s", timeout.as_secs_f64())))
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets the value of `flag` in `args` (`--flag VALUE` or `--flag=VALUE`) if it is there.
fn replace_flag_value(args: &mut [String], flag: &str, value: &str) {
    let prefix = format!("{flag}=");
    for i in 0..args.len() {
        if args[i] == flag && i + 1 < args.len() {
            args[i + 1] = value.to_string();
        } else if args[i].starts_with(&prefix) {
            args[i] = format!("{prefix}{value}");
        }
    }
}

/// The delay before restart attempt `attempt` (0-based): `base × factor^attempt`, capped at
/// `max`, then spread by ±`jitter` using `unit` (a random number in [0, 1)), and capped again.
pub fn backoff_delay(bo: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exp = bo.factor.powi(attempt.min(1000) as i32);
    let raw = bo.base.as_secs_f64() * exp;
    let capped = raw.min(bo.max.as_secs_f64());
    let spread = 1.0 + bo.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    let secs = (capped * spread).clamp(0.0, bo.max.as_secs_f64());
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps_at_max() {
        let bo = Backoff::default();
        let d: Vec<f64> = (0..15)
            .map(|a| backoff_delay(&bo, a, 0.5).as_secs_f64())
            .collect();
        assert_eq!(&d[..4], &[1.0, 2.0, 4.0, 8.0]);
        assert_eq!(d[12], 3600.0, "1 s × 2^12 is capped at 1 h");
        assert_eq!(backoff_delay(&bo, 100_000, 0.5), Duration::from_secs(3600));
        // ±20 % jitter, and never above the cap.
        assert_eq!(backoff_delay(&bo, 3, 0.0), Duration::from_secs_f64(6.4));
        assert_eq!(backoff_delay(&bo, 3, 1.0), Duration::from_secs_f64(9.6));
        assert_eq!(backoff_delay(&bo, 20, 1.0), Duration::from_secs(3600));
    }
}
