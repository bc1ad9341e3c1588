//! The supervisor: owns the state of every plugin (the core included) and performs start and
//! stop. Operations on one plugin are serialized by that plugin's operation lock; different
//! plugins proceed concurrently. Child exits arrive from the reaper ([`Supervisor::on_exit`]).
//!
//! A plugin's lifecycle state is a [`machine::Lifecycle`]: its states carry their data (a
//! running plugin's PID, a pending restart's time) and change only along the transition table
//! in `machine`. Everything else about a plugin (counters, usage, log) is in its `Run`.
//!
//! One file per concern: `start` (one plugin), `order` (many, pipelined), `stop`, `exit`
//! (the reaper, restart policy and backoff), `discovery` (which plugins exist), `credentials`
//! (key, token, identity environment), `records` (pid and backoff records in `run/`),
//! `thresholds` (resource samples and limits) and `reload` (a changed config).

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
use hivehub_client::{HubClient, ENV_CLIENT_ID, ENV_LOG_LEVEL, ENV_SERVER};
use hivehub_home::{write_replace, Home, ENV_HOME, SECRET_MODE};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod credentials;
mod discovery;
mod exit;
pub(crate) mod machine;
mod order;
mod records;
mod reload;
mod start;
mod stop;
mod tasks;
mod thresholds;

pub use exit::{backoff_delay, block_sigchld};
use machine::{Event, Lifecycle, Phase, Refused, Retry};
use order::Turn;
use stop::current_pid;

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
    /// Where it is in its lifecycle; changed only through [`Run::apply`].
    life: Lifecycle,
    path: PathBuf,
    present: bool,
    size: Option<u64>,
    modified: Option<u64>,
    start_count: u64,
    start_time: Option<SystemTime>,
    stop_time: Option<SystemTime>,
    last_exit: Option<ExitInfo>,
    status: String,
    log: Option<Arc<PluginLog>>,
    /// The tasks copying the current process's output into the log.
    pumps: Vec<tokio::task::JoinHandle<Option<()>>>,
    /// The last lines of the current process's output.
    tail: Option<Arc<crate::logs::Tail>>,
    /// Failed restarts in a row; decays to 0 after a stable run.
    attempt: u32,
    /// The last backoff delay.
    last_delay: Duration,
    /// Bumped by every manual start or stop, cancelling a scheduled restart.
    restart_gen: u64,
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
    /// When this launcher last minted the plugin's token, and when that token expires (unix
    /// ms): an automatic restart reuses a token with more than half its life left.
    creds_minted: Option<(u64, u64)>,
    /// What the next start counts as; counted when it is running, before its status goes out.
    start_kind: StartKind,
}

/// What a start counts as, in `restarts` and `thresholdRestarts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum StartKind {
    /// By a user, the autostart or a move: not a restart.
    #[default]
    Manual,
    /// An automatic restart after an exit.
    Restart,
    /// A restart after a resource threshold.
    ThresholdRestart,
}

impl Run {
    fn with_backoff(mut self, attempt: u32, last_delay: Duration) -> Run {
        self.attempt = attempt;
        self.last_delay = last_delay;
        self
    }

    fn new(path: PathBuf, phase: Phase, status: String) -> Run {
        Run {
            life: Lifecycle::new(phase),
            path,
            present: false,
            size: None,
            modified: None,
            start_count: 0,
            start_time: None,
            stop_time: None,
            last_exit: None,
            status,
            log: None,
            pumps: Vec::new(),
            tail: None,
            attempt: 0,
            last_delay: Duration::ZERO,
            restart_gen: 0,
            restarts: 0,
            threshold_restarts: 0,
            breaches: 0,
            cpu: None,
            rss: None,
            history: History::for_span(DEFAULT_HISTORY_SPAN, DEFAULT_INTERVAL),
            breaching: false,
            creds_fresh: false,
            creds_minted: None,
            start_kind: StartKind::Manual,
        }
    }

    /// The plugin's process, while there is one.
    fn pid(&self) -> Option<u32> {
        self.life.pid()
    }

    /// The state as shown to users.
    fn state(&self) -> PluginState {
        self.life.state()
    }

    /// Moves the lifecycle on by `event` under `policy`; a refusal changes nothing and is
    /// logged, since it means a late or duplicate event.
    fn apply(&mut self, event: Event, policy: RestartPolicy) -> Result<PluginState, Refused> {
        self.life.apply(event, policy).inspect_err(|e| {
            tracing::debug!("{e}");
        })
    }
}

struct Slot {
    name: String,
    is_core: bool,
    op: tokio::sync::Mutex<()>,
    st: Mutex<Run>,
    /// Incremented at every exit of this plugin's process.
    exits: watch::Sender<u64>,
    /// What an exit announces (its log lines and notices, taken when they happened) while an
    /// immediate restart is on its way: sent once the new process is spawned (or the restart
    /// gave up), so that nothing on the restart path waits for logging or the bus.
    after_spawn: Mutex<Vec<Deferred>>,
}

/// An announcement held back until a restart has spawned.
type Deferred = Box<dyn FnOnce(&Supervisor) + Send>;

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
    /// How many plugin status notices (`Status`, `Gone`) went out: a check of the shared
    /// status that sees the same count, configuration and leases has nothing new to send.
    status_changes: std::sync::atomic::AtomicU64,
    /// The launcher's own CPU (percent of one core) and RSS, from the monitor.
    self_usage: Mutex<Option<(f64, u64)>>,
    /// The monitor's pass count, bumped after each pass's samples are recorded.
    passes: watch::Sender<u64>,
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
    /// Every task of the launcher, so that shutdown can wait for all of them.
    tasks: TaskTracker,
    /// Cancelled at shutdown: ends every task's loop.
    cancel: CancellationToken,
}

/// The cluster's say over movable plugins, consulted before each spawn so that not even an
/// automatic restart can run a movable plugin without its lease.
pub trait PlacementGate: Send + Sync {
    /// `Ok` if `name` may be spawned here now, else why not.
    fn may_spawn(&self, name: &str) -> Result<(), String>;
    /// The launcher holding `name`'s lease, when it is not this one.
    fn held_elsewhere(&self, name: &str) -> Option<String>;
}

/// What the supervisor reports for publication on the bus.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A lifecycle event.
    Event(LauncherEvent),
    /// A plugin's current state (published retained).
    Status(PluginInfo),
    /// A plugin left the list (its binary is gone and the config does not name it): its
    /// retained status is cleared.
    Gone(String),
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
                status_changes: std::sync::atomic::AtomicU64::new(0),
                self_usage: Mutex::new(None),
                passes: watch::Sender::new(0),
                reap_lock: Mutex::new(()),
                restart_sem: Arc::new(tokio::sync::Semaphore::new(cfg_concurrency)),
                core_listen: Mutex::new(None),
                gate: Mutex::new(None),
                sandbox,
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
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
        if matches!(n, Notice::Status(_) | Notice::Gone(_)) {
            self.sh
                .status_changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // Every subscriber (the bus publisher, the web page) gets every notice; gone ones are
        // dropped.
        lock(&self.sh.notices).retain(|tx| tx.send(n.clone()).is_ok());
    }

    /// How many plugin status changes were announced so far (see [`Notice`]): every change of
    /// a plugin's [`PluginInfo`] other than its CPU and memory figures counts.
    pub fn status_changes(&self) -> u64 {
        self.sh
            .status_changes
            .load(std::sync::atomic::Ordering::SeqCst)
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

    /// Sends what [`Slot::after_spawn`] holds, in order.
    fn flush_after_spawn(&self, slot: &Slot) {
        let held = std::mem::take(&mut *lock(&slot.after_spawn));
        self.announce(held);
    }

    /// Sends held announcements now, in order.
    fn announce(&self, held: Vec<Deferred>) {
        for announce in held {
            announce(self);
        }
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
                cpu: t.cpu_percent(),
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
            pid: st.pid().or(st.life.phase().external()),
            running: st.pid().is_some() || st.life.phase().external().is_some(),
            state: st.state(),
            start_count: st.start_count,
            start_time: st.start_time.map(now_ms),
            stop_time: st.stop_time.map(now_ms),
            uptime: st
                .pid()
                .and(st.start_time)
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            last_exit: st.last_exit.clone(),
            status: st.status.clone(),
            cpu: st.pid().and(st.cpu),
            rss: st.pid().and(st.rss),
            attempt: st.attempt,
            next_retry_at: st.life.phase().retry_at().map(now_ms),
            restarts: st.restarts,
            threshold_restarts: st.threshold_restarts,
            breaches: st.breaches,
            backoff_delay_ms: st
                .life
                .phase()
                .retry_at()
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

    /// Like [`Supervisor::list`], after looking for copies of idle plugins that run outside
    /// the launcher (a pass over `/proc`): for a user's `ls`, not for periodic work.
    pub fn list_checked(&self) -> Vec<PluginInfo> {
        self.find_external();
        self.list()
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
        slots.get(core).is_some_and(|c| lock(&c.st).pid().is_none())
    }

    /// Moves `slot`'s lifecycle on by `event` under its restart policy (`st` is its locked
    /// state).
    fn apply(&self, slot: &Slot, st: &mut Run, event: Event) -> Result<PluginState, Refused> {
        st.apply(event, self.restart_policy(slot))
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

fn describe_exit(e: &ExitInfo) -> String {
    match (e.code, e.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => Exit::Signal(s).to_string(),
        _ => "unknown exit".into(),
    }
}
