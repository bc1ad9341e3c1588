//! The schema of `launcher.yaml`: every setting with its default and what it is for, and the
//! lookups the rest of the launcher makes (a plugin's settings, restart policy, backoff). Keys
//! follow HiveOT's launcher.yaml. How the forgiving forms are read is in `fields`, the rules
//! beyond types in `validate`.

use super::fields::{
    de_core, de_duration, de_entries, de_opt_duration, de_opt_size, de_signal, de_size,
    de_some_string, null_as_default,
};
use nix::sys::signal::Signal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Core binary started when `core` is not in the file.
const DEFAULT_CORE: &str = "hubcore";

/// What to do when a plugin exits without being asked to, so a flaky plugin need not take a
/// feature down until someone notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Leave it stopped; HiveOT's default (`autorestart: false`).
    #[default]
    Never,
    /// Restart after a crash or a non-zero exit, but respect a clean exit.
    OnFailure,
    /// Restart whatever the exit status, for plugins that are meant to run forever.
    Always,
}

/// How long to wait before restarting a crashed plugin: `base × factor^attempt`, ±`jitter`,
/// capped at `max`. The attempt count decays to zero once a plugin has stayed up for `stable`
/// (default: the larger of 60 s and the last delay). All of it is configurable so tests can
/// scale time down.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// First delay.
    #[serde(deserialize_with = "de_duration")]
    pub base: Duration,
    /// Growth per failed attempt.
    pub factor: f64,
    /// Longest delay; the launcher keeps retrying at this pace, it never gives up.
    #[serde(deserialize_with = "de_duration")]
    pub max: Duration,
    /// Random spread, as a fraction (0.2 = ±20 %), so many restarts do not line up.
    pub jitter: f64,
    /// Uptime after which the attempt count resets.
    #[serde(deserialize_with = "de_opt_duration")]
    pub stable: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.2,
            stable: None,
        }
    }
}

/// Per-plugin backoff: any field given replaces the global one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffOverride {
    /// See [`Backoff::base`].
    #[serde(deserialize_with = "de_opt_duration")]
    pub base: Option<Duration>,
    /// See [`Backoff::factor`].
    pub factor: Option<f64>,
    /// See [`Backoff::max`].
    #[serde(deserialize_with = "de_opt_duration")]
    pub max: Option<Duration>,
    /// See [`Backoff::jitter`].
    pub jitter: Option<f64>,
    /// See [`Backoff::stable`].
    #[serde(deserialize_with = "de_opt_duration")]
    pub stable: Option<Duration>,
}

impl Backoff {
    /// This backoff with the fields of `o` that are set.
    pub fn with(&self, o: &BackoffOverride) -> Backoff {
        Backoff {
            base: o.base.unwrap_or(self.base),
            factor: o.factor.unwrap_or(self.factor),
            max: o.max.unwrap_or(self.max),
            jitter: o.jitter.unwrap_or(self.jitter),
            stable: o.stable.or(self.stable),
        }
    }
}

/// Where a plugin may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// On this launcher only (started by autostart or by hand).
    #[default]
    Local,
    /// On exactly one eligible launcher of the hub at a time, chosen by fitness, under a lease
    /// from the core; it fails over when its launcher goes offline.
    Movable,
}

/// Settings shared by the launchers of one hub, for movable plugins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    /// Lease time of a movable plugin. A launcher that cannot renew stops the plugin before it
    /// runs out; another launcher can take over only after it. Failover takes at most about this
    /// long after a launcher dies.
    #[serde(deserialize_with = "de_duration")]
    pub lease_ttl: Duration,
    /// How often this launcher refreshes its shared status (host load, memory, plugins).
    #[serde(deserialize_with = "de_duration")]
    pub status_interval: Duration,
    /// How much fitter (0..1) another launcher must be before a movable plugin moves there by
    /// itself, so plugins do not hop between similar hosts.
    pub margin: f64,
    /// How long a movable plugin stays on a launcher before it may move for fitness.
    #[serde(deserialize_with = "de_duration")]
    pub min_residence: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            lease_ttl: Duration::from_secs(8),
            status_interval: Duration::from_secs(2),
            margin: 0.15,
            min_residence: Duration::from_secs(300),
        }
    }
}

/// What a resource threshold breach does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdAction {
    /// Publish `resourceExceeded`, then restart the plugin gracefully.
    #[default]
    Restart,
    /// Publish `resourceExceeded` only.
    Alert,
}

/// Settings of one plugin; a plugin without an entry runs with the defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginConfig {
    /// Command-line arguments, so one binary can be configured per home.
    #[serde(deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    /// Extra environment variables, for plugins configured through their environment.
    #[serde(deserialize_with = "null_as_default")]
    pub env: BTreeMap<String, String>,
    /// Signal asking the plugin to stop; some runtimes only shut down cleanly on SIGINT.
    #[serde(deserialize_with = "de_signal")]
    pub stop_signal: Signal,
    /// Grace period between the stop signal and SIGKILL, so a plugin can save its state.
    #[serde(deserialize_with = "de_duration")]
    pub stop_timeout: Duration,
    /// Hold back the next plugin until this one reports ready, for plugins others depend on.
    pub wait_ready: bool,
    /// Restart policy; `None` means the global `autorestart`.
    pub restart: Option<RestartPolicy>,
    /// Overrides of the global `backoff`.
    #[serde(deserialize_with = "null_as_default")]
    pub backoff: BackoffOverride,
    /// CPU limit in percent of one core over the whole process tree.
    pub max_cpu: Option<f64>,
    /// Memory limit (RSS of the whole process tree), with units: "200MB".
    #[serde(deserialize_with = "de_opt_size")]
    pub max_memory: Option<u64>,
    /// How long a measure must stay over its limit before the action is taken.
    #[serde(rename = "for", deserialize_with = "de_duration")]
    pub threshold_for: Duration,
    /// What a sustained breach does.
    pub action: ThresholdAction,
    /// `movable` plugins run on one eligible launcher of the hub at a time.
    pub placement: Placement,
    /// Labels a launcher must have (top-level `labels`) to run this movable plugin, such as
    /// the hardware it needs.
    #[serde(deserialize_with = "null_as_default")]
    pub requires: Vec<String>,
    /// Confinement of the plugin: extra paths it may use, or `off` (see `sandbox.rs`).
    #[serde(deserialize_with = "null_as_default")]
    pub sandbox: SandboxConfig,
    /// Unix user the plugin runs as when the launcher is root (`root` only when said so);
    /// default: a user of its own, made up by the launcher.
    #[serde(deserialize_with = "de_some_string")]
    pub user: Option<String>,
}

/// `plugins.<name>.sandbox`: `off`, or the paths a binding needs beyond the defaults (a serial
/// stick, a camera's recordings folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// False for `sandbox: off`: no Landlock and no `no_new_privs` (the Unix user still
    /// applies).
    pub enabled: bool,
    /// Extra paths it may read and execute, with everything below them.
    pub read: Vec<PathBuf>,
    /// Extra paths it may read and write, with everything below them.
    pub write: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            read: Vec::new(),
            write: Vec::new(),
        }
    }
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            args: Vec::new(),
            env: BTreeMap::new(),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            wait_ready: false,
            restart: None,
            backoff: BackoffOverride::default(),
            max_cpu: None,
            max_memory: None,
            threshold_for: Duration::from_secs(30),
            action: ThresholdAction::Restart,
            placement: Placement::Local,
            requires: Vec::new(),
            sandbox: SandboxConfig::default(),
            user: None,
        }
    }
}

/// The launcher's settings. Every key is optional; keys follow HiveOT's launcher.yaml so that
/// existing files keep working.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LauncherConfig {
    /// Client ID on the hub; launchers on other hosts need their own (`launcher-pi2`).
    /// Default: `launcher` with a local core, else `launcher-{hostname}`.
    #[serde(skip)]
    pub id: String,
    /// `id` as written in the file, if it is.
    #[serde(rename = "id", default, deserialize_with = "de_some_string")]
    pub(super) id_set: Option<String>,
    /// Log level of the launcher, also passed to plugins so one knob quietens everything.
    pub loglevel: String,
    /// Log to `logs/launcher.log` instead of stderr, for hosts without a journal.
    pub logtofile: bool,
    /// Binary in `bin/` started before any plugin; `None` when the hub runs elsewhere.
    #[serde(deserialize_with = "de_core")]
    pub core: Option<String>,
    /// Keep each plugin's output in `logs/{plugin}.log`, so crashes can be diagnosed later.
    pub logplugins: bool,
    /// Copy plugins' stderr to the launcher's, for watching a foreground launcher.
    pub attachstderr: bool,
    /// Copy plugins' stdout to the launcher's, for watching a foreground launcher.
    pub attachstdout: bool,
    /// What to do when a plugin exits on its own.
    pub autorestart: RestartPolicy,
    /// Mint each plugin's key and token before starting it, so plugins need no manual setup.
    #[serde(rename = "createPluginCred")]
    pub create_plugin_cred: bool,
    /// Plugins started at launch, in this order, so dependencies come up first.
    #[serde(deserialize_with = "null_as_default")]
    pub autostart: Vec<String>,
    /// Hub URL when no core runs on this host, e.g. `mqtts://hub.local:8883`.
    #[serde(rename = "serverURL")]
    pub server_url: Option<String>,
    /// How long a plugin may take to report ready before it counts as failed.
    #[serde(rename = "readyTimeout", deserialize_with = "de_duration")]
    pub ready_timeout: Duration,
    /// Size at which a plugin log rotates, so logs cannot fill the disk.
    #[serde(rename = "logMaxSize", deserialize_with = "de_size")]
    pub log_max_size: u64,
    /// Rotated logs kept per plugin.
    #[serde(rename = "logMaxFiles")]
    pub log_max_files: usize,
    /// Default backoff between restarts (per-plugin `backoff` overrides fields of it).
    #[serde(deserialize_with = "null_as_default")]
    pub backoff: Backoff,
    /// How often each running plugin's CPU and memory are sampled.
    #[serde(rename = "sampleInterval", deserialize_with = "de_duration")]
    pub sample_interval: Duration,
    /// Most automatic restarts in progress at once, so one failure does not become a
    /// thundering herd on a small device.
    #[serde(rename = "restartConcurrency")]
    pub restart_concurrency: usize,
    /// Address of the optional HTTP listener (`/metrics` and the status page); off when
    /// absent. Loopback only: put a reverse proxy in front to publish it.
    #[serde(rename = "httpListen")]
    pub http_listen: Option<std::net::SocketAddr>,
    /// What this launcher's host offers movable plugins (`zwave-stick`), matched against
    /// their `requires`.
    #[serde(deserialize_with = "null_as_default")]
    pub labels: Vec<String>,
    /// Lease and placement settings for movable plugins.
    #[serde(deserialize_with = "null_as_default")]
    pub cluster: ClusterConfig,
    /// Per-plugin settings by plugin name.
    #[serde(deserialize_with = "de_entries")]
    pub plugins: BTreeMap<String, PluginConfig>,
}

impl Default for LauncherConfig {
    fn default() -> Self {
        LauncherConfig {
            id: "launcher".into(),
            id_set: None,
            loglevel: "info".into(),
            logtofile: false,
            core: Some(DEFAULT_CORE.into()),
            logplugins: true,
            attachstderr: false,
            attachstdout: false,
            autorestart: RestartPolicy::Never,
            create_plugin_cred: true,
            autostart: Vec::new(),
            server_url: None,
            ready_timeout: Duration::from_secs(30),
            log_max_size: 10_000_000,
            log_max_files: 5,
            backoff: Backoff::default(),
            sample_interval: Duration::from_secs(2),
            restart_concurrency: 2,
            http_listen: None,
            labels: Vec::new(),
            cluster: ClusterConfig::default(),
            plugins: BTreeMap::new(),
        }
    }
}

impl LauncherConfig {
    /// The plugin's settings, or the defaults, so callers need not care whether it has an entry.
    pub fn plugin(&self, name: &str) -> PluginConfig {
        self.plugins.get(name).cloned().unwrap_or_default()
    }

    /// The restart policy of a plugin: its own, else the global `autorestart`.
    pub fn restart_policy(&self, name: &str) -> RestartPolicy {
        self.plugins
            .get(name)
            .and_then(|p| p.restart)
            .unwrap_or(self.autorestart)
    }

    /// True for a plugin with `placement: movable`.
    pub fn is_movable(&self, name: &str) -> bool {
        self.plugins
            .get(name)
            .is_some_and(|p| p.placement == Placement::Movable)
    }

    /// True if this launcher has every label the plugin requires.
    pub fn meets_requirements(&self, name: &str) -> bool {
        self.plugins
            .get(name)
            .is_none_or(|p| p.requires.iter().all(|l| self.labels.contains(l)))
    }

    /// The backoff of a plugin: the global one with the plugin's overrides.
    pub fn backoff_for(&self, name: &str) -> Backoff {
        match self.plugins.get(name) {
            Some(p) => self.backoff.with(&p.backoff),
            None => self.backoff.clone(),
        }
    }
}
