//! Types of the launcher service, shared by the launcher, hubcli and UIs.

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
}
