//! Types of the launcher service, shared by the launcher, hubcli and UIs.
//!
//! The launcher publishes every plugin as a thing of its own, QoS 1:
//!
//! ```text
//! event/{launcherID}/{plugin}/{started|ready|stopped|exited|restarting|resourceExceeded}/{launcherID}
//! event/{launcherID}/{plugin}/status/{launcherID}     retained PluginInfo
//! ```
//!
//! `moved` ([`crate::cluster`]) comes the same way. The status is published at every change of
//! state, and for every plugin each time the launcher (re)connects, since retained messages
//! live in the core's RAM. When the events come:
//!
//! * `started`: a process was spawned. `ready`: it sent `READY=1` (the core and `waitReady`
//!   plugins only).
//! * `stopped`: a stop finished: a user's (`by` is the login), the launcher's shutdown
//!   (`launcher shutdown`), or the launcher's own (readiness timeout, threshold restart; no
//!   `by`).
//! * `exited`: the process ended without a stop, including during its start. Sent once the
//!   output is drained (at most 2 s), so it may arrive after the `status` and `restarting`
//!   messages of the same exit.
//! * `restarting`: an automatic restart is scheduled. `resourceExceeded`: a threshold held for
//!   its duration (a threshold restart sends no `restarting`).
//!
//! Only the login that is `{launcherID}` may publish under `event/{launcherID}/…` (the ACL
//! checks the agent and the sender segment), so a plugin cannot fake a launcher event.

use serde::{Deserialize, Serialize};

/// Capability under which the launcher serves its management methods.
pub const CAP_MANAGE: &str = "manage";

/// The lifecycle state of a plugin, as the launcher reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Not running, and may be started.
    Stopped,
    /// Spawned, not yet ready.
    Starting,
    /// Running (and ready, when readiness is awaited).
    Running,
    /// A stop is in progress.
    Stopping,
    /// Crashed; waiting for the next restart attempt.
    Backoff,
    /// Could not be started; see `status`.
    Failed,
    /// Its binary disappeared from `plugins/`.
    Missing,
    /// Stopped by a user; not restarted automatically.
    Disabled,
    /// A process of its binary runs that this launcher did not start (by hand, or by an earlier
    /// launcher): it is not started a second time, and a stop stops it.
    External,
}

impl PluginState {
    /// Every state, in lifecycle order.
    pub const ALL: [PluginState; 9] = [
        PluginState::Stopped,
        PluginState::Starting,
        PluginState::Running,
        PluginState::Stopping,
        PluginState::Backoff,
        PluginState::Failed,
        PluginState::Missing,
        PluginState::Disabled,
        PluginState::External,
    ];

    /// The wire name ("running", "backoff", …), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Stopped => "stopped",
            PluginState::Starting => "starting",
            PluginState::Running => "running",
            PluginState::Stopping => "stopping",
            PluginState::Backoff => "backoff",
            PluginState::Failed => "failed",
            PluginState::Missing => "missing",
            PluginState::Disabled => "disabled",
            PluginState::External => "external",
        }
    }
}

/// How a plugin process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Exit code, when it exited by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number, when it was killed by a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When (unix milliseconds).
    pub time: u64,
}

/// What the launcher knows about one plugin. Optional fields are absent, never faked as zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// Plugin name: its binary name and client ID.
    pub name: String,
    /// The launcher that runs it.
    #[serde(rename = "launcherID")]
    pub launcher_id: String,
    /// Path of the binary.
    pub path: String,
    /// Size of the binary in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Modification time of the binary (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_time: Option<u64>,
    /// Process ID while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// True while a process exists.
    pub running: bool,
    /// Lifecycle state.
    pub state: PluginState,
    /// How many times it was started.
    pub start_count: u64,
    /// Last start (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Last stop (unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<u64>,
    /// Seconds since the last start, while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// How the last process ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
    /// The last status message.
    pub status: String,
    /// CPU use in percent of one core, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Resident memory of the whole process tree in bytes, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<u64>,
    /// Failed restart attempts in a row (0 once the plugin has stayed up long enough).
    #[serde(default)]
    pub attempt: u32,
    /// When the next automatic restart happens (unix milliseconds), in state `backoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<u64>,
    /// Automatic restarts so far (crashes and thresholds).
    #[serde(default)]
    pub restarts: u64,
    /// Restarts caused by a resource threshold.
    #[serde(default)]
    pub threshold_restarts: u64,
    /// Resource threshold breaches (those that restarted the plugin and alert-only ones).
    #[serde(default)]
    pub breaches: u64,
    /// The delay of the scheduled restart in milliseconds, in state `backoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay_ms: Option<u64>,
    /// True for a movable plugin (`placement: movable`), which runs on one launcher of the hub
    /// at a time, under a lease from the core.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub movable: bool,
    /// For a movable plugin not running here: the launcher that holds its lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// How far the plugin is confined (absent for the core, which is never confined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxLevel>,
}

/// How far a plugin is confined, so an operator can see when the kernel or the config leaves a
/// plugin with more reach than its own credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxLevel {
    /// Files and processes: it reaches only its own files, and cannot signal, trace or read
    /// the memory of any process outside its own tree.
    Full,
    /// Files only (Landlock without signal scoping): it could still signal the launcher's
    /// other processes of the same user.
    Files,
    /// Its own Unix user, without Landlock: processes are isolated, files only by their modes.
    User,
    /// Unconfined: `sandbox: off`, or a kernel without Landlock and a launcher that is not root.
    None,
}

impl SandboxLevel {
    /// The wire name ("full", "files", "user", "none").
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxLevel::Full => "full",
            SandboxLevel::Files => "files",
            SandboxLevel::User => "user",
            SandboxLevel::None => "none",
        }
    }
}

/// One resource measurement of a plugin's process tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSample {
    /// When (unix milliseconds).
    pub time: u64,
    /// CPU in percent of one core; absent on the first sample (no window yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Resident memory in bytes.
    pub rss: u64,
}

/// Capability for reading the launcher's state: `list` and `status`. Granted to viewer,
/// operator, manager and admin.
pub const CAP_VIEW: &str = "view";

/// Method names of the launcher service. `list` and `status` are under [`CAP_VIEW`]; the others
/// under [`CAP_MANAGE`] (granted to manager and admin only).
pub mod methods {
    /// `view/list` [`super::ListReq`] → [`super::ListResp`]
    pub const LIST: &str = "list";
    /// `view/status` [`super::NameReq`] → [`super::StatusResp`]
    pub const STATUS: &str = "status";
    /// `manage/startPlugin` [`super::NameReq`] → [`super::PluginInfo`]
    pub const START_PLUGIN: &str = "startPlugin";
    /// `manage/stopPlugin` [`super::NameReq`] → [`super::PluginInfo`]
    pub const STOP_PLUGIN: &str = "stopPlugin";
    /// `manage/startAllPlugins` → [`super::BatchResp`]
    pub const START_ALL: &str = "startAllPlugins";
    /// `manage/stopAllPlugins` [`super::StopAllReq`] → [`super::BatchResp`]
    pub const STOP_ALL: &str = "stopAllPlugins";
    /// `manage/reload` → [`super::ReloadResp`]: re-read launcher.yaml and apply the difference.
    pub const RELOAD: &str = "reload";
    /// Hand a movable plugin to another launcher ([`crate::cluster::MoveReq`] →
    /// [`super::PluginInfo`] on the target); sent to the launcher running it.
    pub const MOVE: &str = "move";
}

/// Request of `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListReq {
    /// Only plugins with a process.
    #[serde(default)]
    pub only_running: bool,
}

/// Result of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResp {
    /// The answering launcher.
    #[serde(rename = "launcherID")]
    pub launcher_id: String,
    /// Its plugins, sorted by name.
    pub plugins: Vec<PluginInfo>,
}

/// A request naming one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameReq {
    /// The plugin.
    pub name: String,
}

/// Request of `stopAllPlugins`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopAllReq {
    /// Also stop the core (a full stop). Default false: the core keeps running.
    #[serde(default)]
    pub include_core: bool,
}

/// The outcome for one plugin of a batch operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    /// The plugin.
    pub name: String,
    /// True if the operation succeeded.
    pub ok: bool,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Result of `startAllPlugins` and `stopAllPlugins`, in the order the plugins were handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResp {
    /// One item per plugin handled.
    pub results: Vec<BatchItem>,
    /// Every plugin afterwards.
    pub plugins: Vec<PluginInfo>,
    /// What the caller should know about the outcome, e.g. how to bring the core back after
    /// it was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Result of `reload`: what changed. Plugins in none of the lists kept running untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadResp {
    /// New autostart plugins, started.
    pub started: Vec<String>,
    /// Plugins removed from autostart, stopped.
    pub stopped: Vec<String>,
    /// Running plugins whose settings changed, restarted.
    pub restarted: Vec<String>,
    /// Operations that failed, as "name: reason".
    pub failed: Vec<String>,
    /// Changed settings that only take effect when the launcher restarts.
    pub needs_restart: Vec<String>,
    /// Changed settings that took effect without restarting anything (the plugin's next
    /// start, restart or breach uses them), by key: `backoff`, `plugins.NAME`, ….
    #[serde(default)]
    pub applied: Vec<String>,
}

/// Result of `status`: the plugin and its recent log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResp {
    /// The plugin.
    pub info: PluginInfo,
    /// Its last output lines, oldest first.
    pub log_tail: Vec<String>,
    /// Recent resource samples, oldest first (about the last 5 minutes).
    #[serde(default)]
    pub history: Vec<ResourceSample>,
}

/// Event names published by the launcher under `event/{launcherID}/{plugin}/{name}/{launcherID}`.
pub mod events {
    /// A process was spawned.
    pub const STARTED: &str = "started";
    /// The plugin signalled readiness (only when it is awaited).
    pub const READY: &str = "ready";
    /// The plugin was stopped on request.
    pub const STOPPED: &str = "stopped";
    /// The process ended without being asked to.
    pub const EXITED: &str = "exited";
    /// Retained: the plugin's current [`super::PluginInfo`].
    pub const STATUS: &str = "status";
    /// An automatic restart is scheduled (attempt, delay, reason).
    pub const RESTARTING: &str = "restarting";
    /// A resource stayed over its limit for the configured duration.
    pub const RESOURCE_EXCEEDED: &str = "resourceExceeded";
}

/// The payload of every launcher event except `status` (which is a [`PluginInfo`]).
/// Versioned by `schemaVersion` ([`crate::SCHEMA_VERSION`]); new fields may be added, existing
/// ones keep their meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LauncherEvent {
    /// Schema version of this payload.
    pub schema_version: u32,
    /// The event name (one of [`events`]).
    pub event: String,
    /// The launcher that publishes it.
    #[serde(rename = "launcherID")]
    pub launcher_id: String,
    /// The plugin concerned.
    pub plugin: String,
    /// When (unix milliseconds).
    pub time: u64,
    /// Process ID, for started/ready/stopped/exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How the process ended (stopped, exited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// Seconds the process ran (stopped, exited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<f64>,
    /// Who asked (a login ID) or why (stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The plugin's last output lines (exited), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub log_tail: Vec<String>,
    /// Restart attempt number (restarting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Delay before the restart in milliseconds (restarting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Why (restarting: e.g. "exited with exit code 1", "exited with signal 9 (SIGKILL)", or
    /// the failed start's message). Threshold restarts are announced by `resourceExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The measure, `cpu` or `rss` (resourceExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    /// The measured value: percent of one core, or bytes (resourceExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The configured limit (resourceExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// How long it stayed over, in seconds (resourceExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<f64>,
    /// The action taken: "restart" or "alert" (resourceExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The launcher a movable plugin left (moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The launcher a movable plugin now runs on (moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}
