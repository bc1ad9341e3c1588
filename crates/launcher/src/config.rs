//! `config/launcher.yaml`: which core and plugins the launcher starts, and how it logs and
//! supervises them.
//!
//! The file is edited by hand, often on a headless box, so every error names the file, the
//! line and column, and the key path (`plugins.zwave.stopTimeout`), and an unknown key comes
//! with the nearest valid one. Locations come from two passes over the text:
//!
//! 1. The text is read into a tree of [`Spanned`] nodes and flattened into an index of key
//!    paths with the line and column of every key and value. YAML syntax errors surface here.
//! 2. The text is deserialised into [`LauncherConfig`]. serde-saphyr reports where a type error,
//!    unknown key or duplicate key is; the index turns that position into a key path.
//!
//! Rules that types cannot express are checked on the finished config, by key path; the index
//! turns the key path back into a line and column.

use nix::sys::signal::Signal;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{DefaultMessageFormatter, Location, MessageFormatter, Spanned};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Core binary started when `core` is not in the file.
const DEFAULT_CORE: &str = "hubcore";
/// Longest identifier; the same limit as topic segments in the shared API crate.
const MAX_ID_LEN: usize = 64;
/// Smallest `logMaxSize`; anything smaller would rotate on nearly every line.
const MIN_LOG_MAX_SIZE: u64 = 1024;
/// Accepted `loglevel` values; `warning` is HiveOT's spelling of `warn`.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "warning", "info", "debug", "trace"];
/// Accepted `autorestart` strings.
const RESTART_VALUES: [&str; 3] = ["never", "on-failure", "always"];
/// Signals a plugin may be asked to stop with, by name without the `SIG` prefix.
const STOP_SIGNALS: [(&str, Signal); 6] = [
    ("TERM", Signal::SIGTERM),
    ("INT", Signal::SIGINT),
    ("HUP", Signal::SIGHUP),
    ("QUIT", Signal::SIGQUIT),
    ("USR1", Signal::SIGUSR1),
    ("USR2", Signal::SIGUSR2),
];
/// Top-level keys, for "belongs elsewhere" hints on unknown plugin keys.
const LAUNCHER_KEYS: [&str; 21] = [
    "labels",
    "cluster",
    "httpListen",
    "backoff",
    "sampleInterval",
    "restartConcurrency",
    "id",
    "loglevel",
    "logtofile",
    "core",
    "logplugins",
    "attachstderr",
    "attachstdout",
    "autorestart",
    "createPluginCred",
    "autostart",
    "serverURL",
    "readyTimeout",
    "logMaxSize",
    "logMaxFiles",
    "plugins",
];
/// Plugin keys, for "belongs elsewhere" hints on unknown top-level keys.
const PLUGIN_KEYS: [&str; 15] = [
    "sandbox",
    "user",
    "placement",
    "requires",
    "args",
    "env",
    "stopSignal",
    "stopTimeout",
    "waitReady",
    "restart",
    "backoff",
    "maxCpu",
    "maxMemory",
    "for",
    "action",
];

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

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RestartPolicy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, never, on-failure or always")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RestartPolicy, E> {
                Ok(if v {
                    RestartPolicy::OnFailure
                } else {
                    RestartPolicy::Never
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RestartPolicy, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "never" | "false" => Ok(RestartPolicy::Never),
                    "on-failure" | "true" => Ok(RestartPolicy::OnFailure),
                    "always" => Ok(RestartPolicy::Always),
                    _ => Err(E::custom(format!(
                        "unknown restart policy {}; use never, on-failure or always (or true/false){}",
                        quote(v),
                        did_you_mean(v, RESTART_VALUES)
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
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

    fn check(&self, base: &str) -> Result<(), Issue> {
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(Issue::value(
                &join_key(base, "factor"),
                "must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(Issue::value(
                &join_key(base, "jitter"),
                "must be at least 0 and below 1 (a fraction, 0.2 = ±20 %)",
            ));
        }
        if self.max < self.base {
            return Err(Issue::value(
                &join_key(base, "max"),
                "must not be below base",
            ));
        }
        Ok(())
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
    pub read: Vec<std::path::PathBuf>,
    /// Extra paths it may read and write, with everything below them.
    pub write: Vec<std::path::PathBuf>,
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

impl<'de> Deserialize<'de> for SandboxConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Paths {
            #[serde(default, deserialize_with = "null_as_default")]
            read: Vec<std::path::PathBuf>,
            #[serde(default, deserialize_with = "null_as_default")]
            write: Vec<std::path::PathBuf>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SandboxConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("off, on, or {read: [paths], write: [paths]}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SandboxConfig, E> {
                Ok(SandboxConfig {
                    enabled: v,
                    ..SandboxConfig::default()
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SandboxConfig, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "off" | "false" => self.visit_bool(false),
                    "on" | "true" => self.visit_bool(true),
                    _ => Err(E::custom(format!(
                        "unknown sandbox setting {}; use off, on, or {{read: [paths], write: [paths]}}",
                        quote(v)
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SandboxConfig, A::Error> {
                let p = Paths::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SandboxConfig {
                    enabled: true,
                    read: p.read,
                    write: p.write,
                })
            }
        }
        d.deserialize_any(V)
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
    id_set: Option<String>,
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
    #[serde(deserialize_with = "de_plugins")]
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

    /// Checks the rules that types cannot express, for configs built in code as well as parsed
    /// ones. Errors name the key but carry no file or line; [`parse`] adds those.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|issue| issue.into_error(None, ""))
    }

    /// Canonical spellings, so the rest of the launcher compares against one form only.
    fn normalise(&mut self) {
        self.id = match (&self.id_set, &self.core) {
            (Some(id), _) => id.clone(),
            (None, Some(_)) => "launcher".into(),
            // A launcher without a core runs on another host than the hub's own.
            (None, None) => remote_id(),
        };
        if let Some(level) = canonical_level(&self.loglevel) {
            self.loglevel = level.to_string();
        }
        if self.core.as_deref() == Some("") {
            self.core = None;
        }
        if self
            .server_url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            self.server_url = None;
        }
        // A movable plugin must be gone before its lease can pass to another launcher, so
        // its stop escalates to SIGKILL within a quarter of the lease time.
        let most = self.cluster.lease_ttl / 4;
        for p in self.plugins.values_mut() {
            if p.placement == Placement::Movable && p.stop_timeout > most {
                p.stop_timeout = most;
            }
        }
    }

    /// The first broken rule, as a key path the caller can locate in the file.
    fn check(&self) -> Result<(), Issue> {
        check_id(&self.id).map_err(|m| Issue::value("id", m))?;
        if canonical_level(&self.loglevel).is_none() {
            return Err(Issue::value(
                "loglevel",
                format!(
                    "unknown log level {}; use error, warn, info, debug or trace{}",
                    quote(&self.loglevel),
                    did_you_mean(&self.loglevel, LOG_LEVELS)
                ),
            ));
        }
        match &self.core {
            Some(core) => check_id(core)
                .map_err(|m| Issue::value("core", format!("{m} (it names a binary in bin/)")))?,
            None if self.server_url.is_none() => {
                return Err(Issue {
                    key: "serverURL".into(),
                    kind: ConfigErrorKind::MissingKey,
                    message: "required when `core` is empty or null, since no local core \
                              provides the hub; set it to the hub's URL, e.g. mqtts://hub.local:8883"
                        .into(),
                    at: Some("core".into()),
                    on_key: false,
                    first: None,
                });
            }
            None => {}
        }
        if let Some(url) = &self.server_url {
            check_server_url(url).map_err(|m| Issue::value("serverURL", m))?;
        }
        for (i, name) in self.autostart.iter().enumerate() {
            let key = format!("autostart[{i}]");
            check_id(name).map_err(|m| Issue::value(&key, m))?;
            if self.core.as_deref() == Some(name.as_str()) {
                return Err(Issue::value(
                    &key,
                    format!(
                        "{} is the core, which is started first because `core` is set; remove it from autostart",
                        quote(name)
                    ),
                ));
            }
            if let Some(first) = self.autostart[..i].iter().position(|n| n == name) {
                let mut issue = Issue::value(&key, format!("duplicate entry {}", quote(name)));
                issue.kind = ConfigErrorKind::DuplicateKey;
                issue.first = Some(format!("autostart[{first}]"));
                return Err(issue);
            }
        }
        if self.ready_timeout.is_zero() {
            return Err(Issue::value("readyTimeout", "must be greater than 0"));
        }
        if self.log_max_size < MIN_LOG_MAX_SIZE {
            return Err(Issue::value(
                "logMaxSize",
                format!(
                    "must be at least {MIN_LOG_MAX_SIZE} bytes (1KiB), got {}",
                    self.log_max_size
                ),
            ));
        }
        self.backoff.check("backoff")?;
        if self.sample_interval < Duration::from_millis(100) {
            return Err(Issue::value("sampleInterval", "must be at least 100ms"));
        }
        if let Some(a) = self.http_listen {
            if !a.ip().is_loopback() {
                return Err(Issue::value(
                    "httpListen",
                    format!("{a} is not a loopback address; the status page and metrics are only served on 127.0.0.1 or ::1"),
                ));
            }
        }
        if self.restart_concurrency < 1 {
            return Err(Issue::value("restartConcurrency", "must be at least 1"));
        }
        if self.log_max_files < 1 {
            return Err(Issue::value(
                "logMaxFiles",
                "must be at least 1 (the number of rotated files kept per plugin)",
            ));
        }
        for (i, label) in self.labels.iter().enumerate() {
            check_id(label).map_err(|m| Issue::value(&format!("labels[{i}]"), m))?;
        }
        let c = &self.cluster;
        if c.lease_ttl < Duration::from_secs(2) || c.lease_ttl > Duration::from_secs(20) {
            return Err(Issue::value(
                "cluster.leaseTtl",
                "must be between 2s and 20s (the core grants at most 30s)",
            ));
        }
        if c.status_interval.is_zero() || c.status_interval > c.lease_ttl {
            return Err(Issue::value(
                "cluster.statusInterval",
                "must be above 0 and at most cluster.leaseTtl",
            ));
        }
        if !(0.0..=1.0).contains(&c.margin) {
            return Err(Issue::value("cluster.margin", "must be between 0 and 1"));
        }
        for (name, plugin) in &self.plugins {
            let base = join_key("plugins", name);
            if name == hivehub_api::cluster::LAUNCHER_THING {
                return Err(Issue::key(&base, format!("{} is reserved", quote(name))));
            }
            if plugin.placement == Placement::Movable && self.core.as_deref() == Some(name) {
                return Err(Issue::value(
                    &join_key(&base, "placement"),
                    "the core cannot be movable; it runs on the hub's own host",
                ));
            }
            for (i, label) in plugin.requires.iter().enumerate() {
                check_id(label).map_err(|m| {
                    Issue::value(&format!("{}[{i}]", join_key(&base, "requires")), m)
                })?;
            }
            check_id(name).map_err(|m| Issue::key(&base, format!("invalid plugin name: {m}")))?;
            plugin.check(&base)?;
            self.backoff
                .with(&plugin.backoff)
                .check(&join_key(&base, "backoff"))?;
        }
        Ok(())
    }
}

impl PluginConfig {
    /// Broken rules of one plugin entry, under the key path `base`.
    fn check(&self, base: &str) -> Result<(), Issue> {
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                let key = format!("{}[{i}]", join_key(base, "args"));
                return Err(Issue::value(&key, "contains a NUL character"));
            }
        }
        let env = join_key(base, "env");
        for (k, v) in &self.env {
            let key = join_key(&env, k);
            if k.is_empty() {
                return Err(Issue::key(&key, "environment variable name is empty"));
            }
            if k.contains('=') || k.contains('\0') {
                return Err(Issue::key(
                    &key,
                    format!("environment variable name {} contains '=' or NUL", quote(k)),
                ));
            }
            if v.contains('\0') {
                return Err(Issue::value(&key, "contains a NUL character"));
            }
        }
        if !STOP_SIGNALS.iter().any(|(_, s)| *s == self.stop_signal) {
            return Err(Issue::value(
                &join_key(base, "stopSignal"),
                format!(
                    "{} cannot be a stop signal; use SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2",
                    self.stop_signal
                ),
            ));
        }
        if self.stop_timeout.is_zero() {
            return Err(Issue::value(
                &join_key(base, "stopTimeout"),
                "must be greater than 0, or the plugin is killed before it can stop cleanly",
            ));
        }
        if self.max_cpu.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err(Issue::value(
                &join_key(base, "maxCpu"),
                "must be a percentage above 0",
            ));
        }
        if self.max_memory == Some(0) {
            return Err(Issue::value(
                &join_key(base, "maxMemory"),
                "must be above 0",
            ));
        }
        let sandbox = join_key(base, "sandbox");
        for (list, paths) in [("read", &self.sandbox.read), ("write", &self.sandbox.write)] {
            for (i, p) in paths.iter().enumerate() {
                let key = format!("{}[{i}]", join_key(&sandbox, list));
                if !p.is_absolute() {
                    return Err(Issue::value(
                        &key,
                        format!(
                            "{} is not an absolute path",
                            quote(&p.display().to_string())
                        ),
                    ));
                }
                if p.parent().is_none() {
                    return Err(Issue::value(
                        &key,
                        "the whole file system cannot be opened to a plugin; use sandbox: off",
                    ));
                }
            }
        }
        if let Some(user) = &self.user {
            if user.is_empty() || user.contains(['\0', ':', '/']) {
                return Err(Issue::value(
                    &join_key(base, "user"),
                    format!("{} is not a user name", quote(user)),
                ));
            }
        }
        Ok(())
    }
}

/// What kind of mistake a [`ConfigError`] is, for callers that react differently (e.g. tests,
/// or a UI that highlights the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file exists but cannot be read.
    Io,
    /// The text is not valid YAML (indentation, quotes, brackets).
    Syntax,
    /// A key that the launcher does not know, usually a typo.
    UnknownKey,
    /// A key given twice in one mapping, or a plugin listed twice in autostart.
    DuplicateKey,
    /// A value of the wrong shape, such as a list where a boolean belongs.
    WrongType,
    /// A value of the right shape but not allowed, such as `stopTimeout: 5x`.
    InvalidValue,
    /// A key that the other settings make necessary.
    MissingKey,
}

/// A config file that cannot be used, with everything a person needs to fix it. Displays as
/// one line: `file:line:column: key.path: message; did you mean `key`?`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.one_line())]
pub struct ConfigError {
    /// The file, as given to [`load`] or [`parse`]; empty for configs built in code.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column (in characters), when known.
    pub column: Option<u32>,
    /// Key path such as `plugins.zwave.stopTimeout` or `autostart[2]`, when known.
    pub key: Option<String>,
    /// What kind of mistake it is.
    pub kind: ConfigErrorKind,
    /// What is wrong.
    pub message: String,
    /// For an unknown key, the nearest valid key.
    pub suggestion: Option<String>,
}

impl ConfigError {
    /// The single-line form used by `Display`, with control characters escaped so a hostile or
    /// broken file cannot forge log lines.
    fn one_line(&self) -> String {
        let mut s = String::new();
        match (self.file.is_empty(), self.line) {
            (false, Some(line)) => s.push_str(&format!("{}:{line}", self.file)),
            (false, None) => s.push_str(&self.file),
            (true, Some(line)) => s.push_str(&format!("line {line}")),
            (true, None) => {}
        }
        if let (Some(col), Some(_)) = (self.column, self.line) {
            s.push_str(&format!(":{col}"));
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        if let Some(key) = &self.key {
            s.push_str(key);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        if let Some(sugg) = &self.suggestion {
            s.push_str(&format!("; did you mean `{sugg}`?"));
        }
        s.chars()
            .flat_map(|c| {
                let esc: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                esc
            })
            .collect()
    }
}

/// Reads the launcher config; a missing file gives the defaults, because a fresh home has none.
pub fn load(path: &Path) -> Result<LauncherConfig, ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LauncherConfig::default()),
        Err(e) => Err(ConfigError {
            file,
            line: None,
            column: None,
            key: None,
            kind: ConfigErrorKind::Io,
            message: format!("cannot read the file: {e}"),
            suggestion: None,
        }),
    }
}

/// Parses and validates config text; `file` only labels errors. An empty or comment-only text
/// gives the defaults.
pub fn parse(text: &str, file: &str) -> Result<LauncherConfig, ConfigError> {
    let index = Index::build(text).map_err(|e| yaml_error(&e, text, file, None))?;
    let parsed: Option<LauncherConfig> =
        serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, text, file, Some(&index)))?;
    let mut cfg = parsed.unwrap_or_default();
    cfg.normalise();
    cfg.check()
        .map_err(|issue| issue.into_error(Some(&index), file))?;
    Ok(cfg)
}

pub use hivehub_api::units::{parse_duration, parse_size, ValueError};

// ---------------------------------------------------------------------------------------------
// Field deserialisers

/// Lets `autostart:` with every entry commented out mean "none" instead of an error.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `core: ""` and `core: null` both mean "no local core", as in HiveOT.
/// A string that must be there when its key is (null is an error, not "unset").
fn de_some_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

fn de_core<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A plugin entry without settings (`heartbeat:`) gets the defaults.
fn de_plugins<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, PluginConfig>, D::Error> {
    let raw: Option<BTreeMap<String, Option<PluginConfig>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as 500ms, 10s, 2m or 1h")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("invalid duration `{v}`: must not be negative")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration `{v}`: a fraction needs a unit, e.g. {v}s"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "de_duration")] Duration);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "de_size")] u64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as 512KB, 10MB or 1GiB")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("invalid size `{v}`: must not be negative")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            Err(E::custom(format!(
                "invalid size `{v}`: use a unit, e.g. {v}MB, or a whole number of bytes"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

fn de_signal<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
    let name = String::deserialize(d)?;
    parse_signal(&name).map_err(de::Error::custom)
}

/// `SIGTERM`, `TERM`, `sigterm`, ...; SIGKILL and SIGSTOP are refused because they cannot
/// give a plugin the chance to stop cleanly.
fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, sig)) = STOP_SIGNALS.iter().find(|(n, _)| *n == short) {
        return Ok(*sig);
    }
    if short == "KILL" || short == "STOP" {
        return Err(format!(
            "SIG{short} cannot be the stop signal: it gives the plugin no chance to stop cleanly \
             (the launcher sends SIGKILL itself after stopTimeout)"
        ));
    }
    let hint = nearest(short, STOP_SIGNALS.map(|(n, _)| n))
        .map(|n| format!("; did you mean `SIG{n}`?"))
        .unwrap_or_default();
    Err(format!(
        "unknown stop signal {}; use SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2{hint}",
        quote(name)
    ))
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

/// A broken rule found on a finished config, before it is given a file location.
#[derive(Debug)]
struct Issue {
    /// Key path reported to the user.
    key: String,
    kind: ConfigErrorKind,
    message: String,
    /// Key path to take the location from, when it differs from `key` (a missing key is
    /// located at the key that makes it necessary).
    at: Option<String>,
    /// Point at the key rather than at its value (a bad plugin name is the key itself).
    on_key: bool,
    /// Key path of the earlier entry that this one duplicates.
    first: Option<String>,
}

impl Issue {
    fn value(key: &str, message: impl Into<String>) -> Issue {
        Issue {
            key: key.to_string(),
            kind: ConfigErrorKind::InvalidValue,
            message: message.into(),
            at: None,
            on_key: false,
            first: None,
        }
    }

    fn key(key: &str, message: impl Into<String>) -> Issue {
        Issue {
            on_key: true,
            ..Issue::value(key, message)
        }
    }

    /// Locates the issue in the file through `index`, when there is one.
    fn into_error(self, index: Option<&Index>, file: &str) -> ConfigError {
        let entry = index.and_then(|ix| ix.by_path(self.at.as_deref().unwrap_or(&self.key)));
        let pos = entry.map(|e| {
            if self.on_key {
                e.key.unwrap_or(e.value)
            } else {
                e.value
            }
        });
        let mut message = self.message;
        if let Some(first) = &self.first {
            match index.and_then(|ix| ix.by_path(first)) {
                Some(e) => message.push_str(&format!("; first listed on line {}", e.value.0)),
                None => message.push_str(&format!("; first listed as {first}")),
            }
        }
        ConfigError {
            file: file.to_string(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key: Some(self.key),
            kind: self.kind,
            message,
            suggestion: None,
        }
    }
}

/// Identifiers become MQTT topic segments and file names, so they keep to the shared API
/// crate's rule: 1..=64 of `[A-Za-z0-9_.-]`, starting with a letter, digit or `_`.
/// `launcher-{hostname}`, with characters an ID cannot hold replaced by `-`.
fn remote_id() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_ID_LEN - "launcher-".len())
        .collect();
    if clean.is_empty() {
        "launcher-remote".into()
    } else {
        format!("launcher-{clean}")
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(format!(
            "{} is longer than {MAX_ID_LEN} characters",
            quote(id)
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let first_ok = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !id.chars().all(ok) {
        return Err(format!(
            "invalid name {}: use only letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
            quote(id)
        ));
    }
    Ok(())
}

/// The same shapes the client SDK accepts (`mqtts://host:port`, `mqtt://host:port`,
/// `host:port`), checked here so the mistake is reported with its line.
fn check_server_url(url: &str) -> Result<(), String> {
    let s = url.trim();
    let rest = if let Some(r) = s.strip_prefix("mqtts://") {
        r
    } else if let Some(r) = s.strip_prefix("mqtt://") {
        r
    } else if s.contains("://") {
        return Err(format!(
            "{} must start with mqtts:// or mqtt://",
            quote(url)
        ));
    } else {
        s
    };
    let rest = rest.trim_end_matches('/');
    let host = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            if p.parse::<u16>().is_err() {
                return Err(format!("{} has an invalid port {}", quote(url), quote(p)));
            }
            h
        }
        _ => rest,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!(
            "{} has no valid host; expected e.g. mqtts://hub.local:8883",
            quote(url)
        ));
    }
    Ok(())
}

/// `warning` becomes `warn`, so the value can go straight into a tracing filter.
fn canonical_level(level: &str) -> Option<&'static str> {
    let lower = level.trim().to_ascii_lowercase();
    match lower.as_str() {
        "warning" => Some("warn"),
        l => LOG_LEVELS.iter().find(|x| **x == l).copied(),
    }
}

/// A user-supplied value in backticks, escaped so it stays on one line.
fn quote(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

/// Appends `key` to a key path, quoting keys that would make the path ambiguous.
fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let seg = if plain {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        seg
    } else {
        format!("{path}.{seg}")
    }
}

/// The candidate closest to `word`, if close enough to be a likely typo. Case, `_` and `-` are
/// ignored, so `ready_timeout` finds `readyTimeout`.
fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = norm(word);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let n = norm(c);
            let allowed = (n.chars().count() / 4).clamp(1, 3);
            // Optimal string alignment: Levenshtein plus adjacent transpositions, so
            // `autostrat` is one edit from `autostart`.
            (strsim::osa_distance(&w, &n), allowed, c)
        })
        .filter(|(d, allowed, _)| d <= allowed)
        .min_by_key(|(d, _, _)| *d)
        .map(|(_, _, c)| c)
}

/// `"; did you mean `x`?"` or nothing, for value suggestions inside messages.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Locations

/// Line and column, 1-based.
type Pos = (u32, u32);

/// One key or list item of the document.
#[derive(Debug)]
struct Entry {
    /// Key path, rendered like [`ConfigError::key`].
    path: String,
    /// Where the key is; `None` for list items.
    key: Option<Pos>,
    /// Where the value starts (for a block mapping: its first key).
    value: Pos,
}

/// Every key and list item in document order, built from [`Spanned`] nodes so that errors can
/// go from a position to a key path and back.
#[derive(Debug, Default)]
struct Index {
    entries: Vec<Entry>,
}

/// A YAML node of any shape, with the positions of everything inside it.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// Any scalar key as text; complex keys (`? [a, b]`) are kept as a placeholder so the index can
/// still be built and the real parse reports them.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<KeyText, E> {
                Ok(KeyText("?".into()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<KeyText, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText("?".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<KeyText, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText("?".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = s.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<Spanned<KeyText>>()? {
                    let key = Spanned::new(k.value.0, k.referenced, k.defined);
                    entries.push((key, m.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

fn pos(loc: &Location) -> Option<Pos> {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (loc.line() > 0).then(|| (clamp(loc.line()), clamp(loc.column())))
}

impl Index {
    /// Fails only when the text is not valid YAML.
    fn build(text: &str) -> Result<Index, serde_saphyr::Error> {
        let mut options = serde_saphyr::Options::default();
        // Keep both copies of a duplicated key, so the error can say where the first one is.
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        let root: Option<Spanned<Node>> = serde_saphyr::from_str_with_options(text, options)?;
        let mut index = Index::default();
        if let Some(root) = root {
            index.walk(&root.value, "");
        }
        Ok(index)
    }

    fn walk(&mut self, node: &Node, path: &str) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let child = join_key(path, &k.value);
                    if let (Some(key), Some(value)) = (pos(&k.referenced), pos(&v.referenced)) {
                        self.entries.push(Entry {
                            path: child.clone(),
                            key: Some(key),
                            value,
                        });
                    }
                    self.walk(&v.value, &child);
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    if let Some(value) = pos(&v.referenced) {
                        self.entries.push(Entry {
                            path: child.clone(),
                            key: None,
                            value,
                        });
                    }
                    self.walk(&v.value, &child);
                }
            }
            Node::Scalar => {}
        }
    }

    fn by_path(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    fn by_key_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == Some(at))
    }

    /// The key a parser error at `at` is about: the outermost value starting there (a mapping
    /// where a list belongs starts at its first key), else the key there, else the last key or
    /// item before it.
    fn by_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.value == at)
            .or_else(|| self.by_key_pos(at))
            .or_else(|| {
                self.entries
                    .iter()
                    .rev()
                    .find(|e| e.key.unwrap_or(e.value) <= at)
            })
    }
}

/// For a syntax error, the enclosing key as far as the text before the bad line shows it: the
/// last key left of the error column.
fn syntax_context(text: &str, at: Pos) -> Option<String> {
    let before: Vec<&str> = text
        .lines()
        .take(usize::try_from(at.0).ok()?.saturating_sub(1))
        .collect();
    let index = Index::build(&before.join("\n")).ok()?;
    index
        .entries
        .iter()
        .rev()
        .find(|e| e.key.unwrap_or(e.value).1 < at.1)
        .map(|e| e.path.clone())
}

/// The scalar text at `loc`, for "found `maybe`" in messages.
fn found_text(text: &str, loc: &Location) -> Option<String> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let s = text
        .get(start..start.checked_add(len)?)?
        .lines()
        .next()?
        .trim();
    let collection =
        s.starts_with(['[', '{', '|', '>', '&', '*', '!']) || s == "-" || s.starts_with("- ");
    if s.is_empty() || collection {
        return None;
    }
    let short: String = s.chars().take(40).collect();
    Some(if short.len() < s.len() {
        format!("{}…", quote(&short))
    } else {
        quote(s)
    })
}

/// Friendlier words for serde-saphyr's "expected ..." phrases.
fn expected_words(expected: &str) -> String {
    match expected {
        "sequence start" => "a list (`[a, b]`, or one `- item` per line)".into(),
        "mapping start" => "a mapping (`key: value` lines)".into(),
        "string scalar" => "a string".into(),
        other => other.into(),
    }
}

/// Friendlier words for serde's names of what was found.
fn unexpected_words(unexpected: &str) -> String {
    match unexpected {
        "unit value" => "nothing (null)".into(),
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        other => other.into(),
    }
}

/// Friendlier words for the Rust type named in serde-saphyr's "invalid u64".
fn type_words(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "bool" | "boolean" => "true or false".into(),
        other => format!("a value of type {other}"),
    }
}

/// Turns a serde-saphyr error into a [`ConfigError`]. With `index`, the error came from
/// deserialising valid YAML; without, the YAML itself is broken.
fn yaml_error(
    err: &serde_saphyr::Error,
    text: &str,
    file: &str,
    index: Option<&Index>,
) -> ConfigError {
    use serde_saphyr::Error as E;
    let mut inner = err;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    let loc = err.location().filter(|l| l.line() > 0);
    let at = loc.as_ref().and_then(pos);
    let found = loc.as_ref().and_then(|l| found_text(text, l));
    let mut key = None;
    let mut suggestion = None;
    let (kind, mut message) = match inner {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            key = index
                .zip(at)
                .and_then(|(ix, at)| ix.by_key_pos(at))
                .map(|e| e.path.clone())
                .or_else(|| Some(join_key("", field)));
            suggestion = nearest(field, expected.iter().copied()).map(str::to_string);
            let mut msg = "unknown key".to_string();
            if suggestion.is_none() {
                let is_plugin = expected.contains(&"stopTimeout");
                let (other, other_keys) = if is_plugin {
                    (
                        "a launcher-wide setting; move it to the top level",
                        &LAUNCHER_KEYS[..],
                    )
                } else {
                    (
                        "a plugin setting; move it under `plugins: <name>:`",
                        &PLUGIN_KEYS[..],
                    )
                };
                if let Some(k) = nearest(field, other_keys.iter().copied())
                    .or_else(|| other_keys.iter().copied().find(|k| *k == field))
                {
                    msg.push_str(&format!("; `{k}` is {other}"));
                } else {
                    msg.push_str(&format!("; valid keys: {}", expected.join(", ")));
                }
            }
            (ConfigErrorKind::UnknownKey, msg)
        }
        E::DuplicateMappingKey { .. } => {
            let here = index
                .zip(at)
                .and_then(|(ix, at)| ix.by_key_pos(at).map(|e| (ix, e)));
            let mut msg = "duplicate key".to_string();
            if let Some((ix, entry)) = here {
                key = Some(entry.path.clone());
                if let Some(first) = ix.by_path(&entry.path).filter(|f| f.key != entry.key) {
                    let line = first.key.unwrap_or(first.value).0;
                    msg.push_str(&format!("; first set on line {line}"));
                }
            }
            (ConfigErrorKind::DuplicateKey, msg)
        }
        E::Message { msg, .. } => (ConfigErrorKind::InvalidValue, msg.clone()),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            ConfigErrorKind::WrongType,
            format!(
                "expected {expected}, found {}",
                unexpected_words(unexpected)
            ),
        ),
        E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            ConfigErrorKind::InvalidValue,
            format!("expected {expected}, found {unexpected}"),
        ),
        E::InvalidBooleanStrict { .. } => (
            ConfigErrorKind::WrongType,
            with_found("expected true or false", &found),
        ),
        E::InvalidScalar { ty, .. } => (
            ConfigErrorKind::WrongType,
            with_found(&format!("expected {}", type_words(ty)), &found),
        ),
        E::NullIntoString { .. } => (
            ConfigErrorKind::WrongType,
            "expected a value, found nothing; write \"\" for an empty string".into(),
        ),
        E::Unexpected { expected, .. } => (
            ConfigErrorKind::WrongType,
            with_found(&format!("expected {}", expected_words(expected)), &found),
        ),
        other => {
            let msg = DefaultMessageFormatter.format_message(other).into_owned();
            if index.is_some() {
                (ConfigErrorKind::WrongType, msg)
            } else {
                (ConfigErrorKind::Syntax, syntax_message(&msg))
            }
        }
    };
    let mut at = at;
    if key.is_none() {
        key = match (index, at) {
            (Some(ix), Some(here)) => ix.by_pos(here).map(|e| {
                // Some value errors point at the key; the value is what needs fixing.
                if e.key == Some(here) {
                    at = Some(e.value);
                }
                e.path.clone()
            }),
            (None, Some(here)) => syntax_context(text, here),
            _ => None,
        };
    }
    match key.as_deref() {
        None if kind == ConfigErrorKind::WrongType && at == Some((1, 1)) => {
            message = "the file must be a mapping of settings (`key: value` lines)".into();
        }
        Some(k) if kind == ConfigErrorKind::WrongType => {
            let setting = k
                .strip_prefix("plugins.")
                .filter(|s| PLUGIN_KEYS.contains(s));
            if let Some(setting) = setting {
                message.push_str(&format!(
                    "; `{setting}` is a plugin setting: put it under `plugins: <name>:`"
                ));
            }
        }
        _ => {}
    }
    ConfigError {
        file: file.to_string(),
        line: at.map(|p| p.0),
        column: at.map(|p| p.1),
        key,
        kind,
        message,
        suggestion,
    }
}

fn with_found(msg: &str, found: &Option<String>) -> String {
    match found {
        Some(f) => format!("{msg}, found {f}"),
        None => msg.to_string(),
    }
}

/// A parser message with a hint about the usual cause.
fn syntax_message(msg: &str) -> String {
    let hint = if msg.contains("did not find expected key")
        || msg.contains("did not find expected '-'")
    {
        "; check that this line is indented like the other entries of its block"
    } else if msg.contains("mapping values are not allowed") {
        "; a key may not follow a plain value on the same line or be indented under one, and a value containing `: ` must be quoted"
    } else if msg.contains("unclosed") {
        "; close it or quote the value"
    } else if msg.contains("illegal placement of ':'") {
        "; look for an unclosed `[` or `{` above, or quote a value containing `:`"
    } else if msg.contains("multiple YAML documents") {
        return "the file must hold a single YAML document; remove the second `---`".into();
    } else {
        ""
    };
    format!("YAML syntax error: {msg}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../config/launcher.yaml");
    const FILE: &str = "/home/x/config/launcher.yaml";

    fn err(text: &str) -> ConfigError {
        match parse(text, FILE) {
            Ok(cfg) => panic!("expected an error for {text:?}, got {cfg:?}"),
            Err(e) => e,
        }
    }

    /// Asserts that the one-line message has the file, the line, the key and each extra part.
    fn assert_err(text: &str, line: u32, key: &str, parts: &[&str]) -> ConfigError {
        let e = err(text);
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{FILE}:{line}:")),
            "no {FILE}:{line}: in {shown:?}"
        );
        assert_eq!(e.line, Some(line), "{shown}");
        assert_eq!(e.key.as_deref(), Some(key), "{shown}");
        assert!(shown.contains(&format!(": {key}: ")), "no key in {shown:?}");
        for part in parts {
            assert!(shown.contains(part), "{part:?} missing from {shown:?}");
        }
        assert!(!shown.contains('\n'), "not one line: {shown:?}");
        e
    }

    #[test]
    fn sample_parses() {
        let cfg = parse(SAMPLE, "config/launcher.yaml").expect("sample is valid");
        assert_eq!(cfg.id, "launcher");
        assert_eq!(cfg.loglevel, "info");
        assert!(cfg.logtofile);
        assert_eq!(cfg.core.as_deref(), Some("hubcore"));
        assert!(cfg.logplugins);
        assert!(!cfg.attachstderr);
        assert!(!cfg.attachstdout);
        assert_eq!(cfg.autorestart, RestartPolicy::OnFailure);
        assert!(cfg.create_plugin_cred);
        assert_eq!(cfg.autostart, vec!["heartbeat".to_string()]);
        assert_eq!(cfg.server_url, None);
        assert_eq!(cfg.ready_timeout, Duration::from_secs(30));
        assert_eq!(cfg.log_max_size, 10_000_000);
        assert_eq!(cfg.log_max_files, 5);
        let hb = cfg.plugin("heartbeat");
        assert_eq!(hb.args, vec!["--interval".to_string(), "5s".to_string()]);
        assert!(hb.wait_ready);
        assert_eq!(hb.stop_timeout, Duration::from_secs(10));
        assert_eq!(hb.stop_signal, Signal::SIGTERM);
        assert!(hb.env.is_empty());
        assert_eq!(cfg.plugins.len(), 1);
    }

    #[test]
    fn sample_comments_document_every_key() {
        for key in LAUNCHER_KEYS.iter().chain(PLUGIN_KEYS.iter()) {
            assert!(
                SAMPLE.contains(&format!("{key}:")),
                "sample does not mention {key}"
            );
        }
        assert!(SAMPLE.contains("#id: launcher"));
        assert!(SAMPLE.contains("launcher-pi2"));
        assert!(SAMPLE.contains("#serverURL:"));
    }

    #[test]
    fn commented_out_examples_in_sample_are_valid() {
        // Uncommenting the examples must give a working file.
        let mut in_example = false;
        let mut uncommented = String::new();
        for line in SAMPLE.lines() {
            in_example |= line.starts_with("#  zwave:");
            let example = in_example || line.starts_with("#id:") || line.starts_with("#serverURL:");
            uncommented.push_str(if example { &line[1..] } else { line });
            uncommented.push('\n');
        }
        let cfg = parse(&uncommented, "x").expect("uncommented sample is valid");
        assert!(cfg.server_url.is_some());
        let z = cfg.plugins.get("zwave").expect("zwave example");
        assert_eq!(z.stop_signal, Signal::SIGINT);
        assert!(!z.env.is_empty());
    }

    #[test]
    fn movable_plugins_labels_and_cluster_settings() {
        let cfg = parse(
            "labels: [zwave-stick, cam]\ncluster:\n  leaseTtl: 4s\n  statusInterval: 1s\n  margin: 0.2\n  minResidence: 1m\nplugins:\n  zwave:\n    placement: movable\n    requires: [zwave-stick]\n  lamp:\n    requires: [nope]\n",
            FILE,
        )
        .expect("valid");
        assert!(cfg.is_movable("zwave"));
        assert!(!cfg.is_movable("lamp"));
        assert!(!cfg.is_movable("unknown"));
        assert!(cfg.meets_requirements("zwave"));
        assert!(!cfg.meets_requirements("lamp"));
        assert!(cfg.meets_requirements("unknown"));
        assert_eq!(cfg.cluster.lease_ttl, Duration::from_secs(4));
        assert_eq!(cfg.cluster.min_residence, Duration::from_secs(60));
        // A movable plugin's stop escalates to SIGKILL within a quarter lease.
        assert_eq!(cfg.plugin("zwave").stop_timeout, Duration::from_secs(1));
        assert_eq!(cfg.plugin("lamp").stop_timeout, Duration::from_secs(10));
        let d = LauncherConfig::default();
        assert_eq!(d.cluster.lease_ttl, Duration::from_secs(8));
        assert!(d.labels.is_empty());
    }

    #[test]
    fn a_launcher_without_a_core_defaults_to_launcher_hostname() {
        let remote = parse("core: \"\"\nserverURL: mqtts://hub:8883\n", FILE).expect("valid");
        assert!(remote.id.starts_with("launcher-"), "{}", remote.id);
        assert_eq!(remote.id, remote_id());
        check_id(&remote.id).expect("a valid ID");
        let set = parse("id: pi2\ncore: \"\"\nserverURL: mqtts://hub:8883\n", FILE).expect("valid");
        assert_eq!(set.id, "pi2");
        assert_eq!(parse("", FILE).expect("valid").id, "launcher");
    }

    #[test]
    fn cluster_errors_name_the_key() {
        assert_err(
            "cluster:\n  leaseTtl: 1s\n",
            2,
            "cluster.leaseTtl",
            &["between 2s and 20s"],
        );
        assert_err(
            "cluster:\n  margin: 3\n",
            2,
            "cluster.margin",
            &["between 0 and 1"],
        );
        assert_err(
            "cluster:\n  leaseTTL: 5s\n",
            2,
            "cluster.leaseTTL",
            &["leaseTtl"],
        );
        assert_err(
            "plugins:\n  x:\n    placement: roaming\n",
            3,
            "plugins.x.placement",
            &["roaming"],
        );
        assert_err(
            "plugins:\n  hubcore:\n    placement: movable\n",
            3,
            "plugins.hubcore.placement",
            &["core cannot be movable"],
        );
        assert_err("labels: [\"bad label\"]\n", 1, "labels[0]", &[]);
        assert_err(
            "plugins:\n  _launcher: {}\n",
            2,
            "plugins._launcher",
            &["reserved"],
        );
    }

    #[test]
    fn defaults() {
        let d = LauncherConfig::default();
        assert_eq!(d.id, "launcher");
        assert_eq!(d.loglevel, "info");
        assert!(!d.logtofile);
        assert_eq!(d.core.as_deref(), Some("hubcore"));
        assert!(d.logplugins);
        assert!(!d.attachstderr && !d.attachstdout);
        assert_eq!(d.autorestart, RestartPolicy::Never);
        assert!(d.create_plugin_cred);
        assert!(d.autostart.is_empty());
        assert_eq!(d.server_url, None);
        assert_eq!(d.ready_timeout, Duration::from_secs(30));
        assert_eq!(d.log_max_size, 10_000_000);
        assert_eq!(d.log_max_files, 5);
        assert!(d.plugins.is_empty());
        assert_eq!(d.validate(), Ok(()));

        let p = PluginConfig::default();
        assert!(p.args.is_empty() && p.env.is_empty());
        assert_eq!(p.stop_signal, Signal::SIGTERM);
        assert_eq!(p.stop_timeout, Duration::from_secs(10));
        assert!(!p.wait_ready);

        for text in [
            "",
            "\n\n",
            "# only a comment\n",
            "# a\n\n   # b\n",
            "---\n",
            "~\n",
        ] {
            assert_eq!(parse(text, FILE), Ok(LauncherConfig::default()), "{text:?}");
        }
        let cfg = parse("logtofile: true\n", FILE).expect("valid");
        assert_eq!(
            cfg,
            LauncherConfig {
                logtofile: true,
                ..LauncherConfig::default()
            }
        );
    }

    #[test]
    fn load_missing_empty_and_unreadable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("launcher.yaml");
        assert_eq!(load(&missing), Ok(LauncherConfig::default()));

        std::fs::write(&missing, "# nothing set\n").expect("write");
        assert_eq!(load(&missing), Ok(LauncherConfig::default()));

        std::fs::write(&missing, "autostart: [a, b]\nautorestart: always\n").expect("write");
        let cfg = load(&missing).expect("valid");
        assert_eq!(cfg.autostart, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(cfg.autorestart, RestartPolicy::Always);

        std::fs::write(&missing, "autostart: [a, a]\n").expect("write");
        let e = load(&missing).expect_err("duplicate");
        assert!(e
            .to_string()
            .starts_with(&format!("{}:1:", missing.display())));

        let e = load(dir.path()).expect_err("a directory is not a file");
        assert_eq!(e.kind, ConfigErrorKind::Io);
        assert!(e.to_string().starts_with(&dir.path().display().to_string()));
    }

    #[test]
    fn null_values_mean_defaults_for_lists_and_plugins() {
        let cfg = parse(
            "autostart:\n#  - heartbeat\nplugins:\n  heartbeat:\n  other:\n    args:\n    env:\n",
            FILE,
        )
        .expect("valid");
        assert!(cfg.autostart.is_empty());
        assert_eq!(cfg.plugin("heartbeat"), PluginConfig::default());
        assert_eq!(cfg.plugin("other"), PluginConfig::default());
        let cfg = parse("plugins:\n", FILE).expect("valid");
        assert!(cfg.plugins.is_empty());
    }

    #[test]
    fn plugin_falls_back_to_defaults() {
        let cfg = parse(
            "plugins:\n  zwave:\n    args: [--port, 8080]\n    env: {TZ: UTC, N: 1}\n    stopSignal: INT\n    stopTimeout: 1.5s\n",
            FILE,
        )
        .expect("valid");
        let z = cfg.plugin("zwave");
        assert_eq!(z.args, vec!["--port".to_string(), "8080".to_string()]);
        assert_eq!(z.env.get("TZ").map(String::as_str), Some("UTC"));
        assert_eq!(z.env.get("N").map(String::as_str), Some("1"));
        assert_eq!(z.stop_signal, Signal::SIGINT);
        assert_eq!(z.stop_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.plugin("unknown"), PluginConfig::default());
    }

    #[test]
    fn autorestart_bool_and_string_forms() {
        for (text, want) in [
            ("true", RestartPolicy::OnFailure),
            ("false", RestartPolicy::Never),
            ("never", RestartPolicy::Never),
            ("on-failure", RestartPolicy::OnFailure),
            ("always", RestartPolicy::Always),
            ("\"always\"", RestartPolicy::Always),
            ("Always", RestartPolicy::Always),
        ] {
            let cfg = parse(&format!("autorestart: {text}\n"), FILE).expect(text);
            assert_eq!(cfg.autorestart, want, "{text}");
        }
        let e = assert_err(
            "id: x\nautorestart: on_failure\n",
            2,
            "autorestart",
            &[
                "unknown restart policy `on_failure`",
                "did you mean `on-failure`?",
            ],
        );
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        assert_eq!(e.column, Some(14));
        assert_err("autorestart: [always]\n", 1, "autorestart", &["expected"]);
    }

    #[test]
    fn loglevel_is_normalised() {
        for (given, want) in [
            ("warning", "warn"),
            ("WARN", "warn"),
            ("Debug", "debug"),
            ("trace", "trace"),
        ] {
            let cfg = parse(&format!("loglevel: {given}\n"), FILE).expect(given);
            assert_eq!(cfg.loglevel, want);
        }
        assert_err(
            "loglevel: verbose\n",
            1,
            "loglevel",
            &["unknown log level `verbose`"],
        );
        assert_err("loglevel: inof\n", 1, "loglevel", &["did you mean `info`?"]);
    }

    #[test]
    fn core_empty_or_null_needs_server_url() {
        for core in ["\"\"", "null", "", "''"] {
            let text =
                format!("logtofile: false\ncore: {core}\nserverURL: mqtts://hub.local:8883\n");
            let cfg = parse(&text, FILE).expect(&text);
            assert_eq!(cfg.core, None);
            assert_eq!(cfg.server_url.as_deref(), Some("mqtts://hub.local:8883"));

            let e = assert_err(
                &format!("logtofile: false\ncore: {core}\n"),
                2,
                "serverURL",
                &["required when `core` is empty or null", "mqtts://"],
            );
            assert_eq!(e.kind, ConfigErrorKind::MissingKey);
        }
        assert_err(
            "serverURL: http://hub.local\n",
            1,
            "serverURL",
            &["must start with mqtts:// or mqtt://"],
        );
        assert_err(
            "serverURL: mqtts://hub:99999\n",
            1,
            "serverURL",
            &["invalid port"],
        );
        assert_err("core: ../../bin/sh\n", 1, "core", &["invalid name", "bin/"]);
        assert_err(
            "core: hubcore\nautostart:\n  - hubcore\n",
            3,
            "autostart[0]",
            &["is the core"],
        );
    }

    #[test]
    fn durations() {
        for (text, want) in [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            (" 30 s ", Duration::from_secs(30)),
            ("45", Duration::from_secs(45)),
            ("0", Duration::ZERO),
            ("1.25m", Duration::from_secs(75)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "s",
            "5x",
            "10 seconds",
            "-5s",
            "1.5",
            "1..5s",
            "5s5",
            "1e3s",
            "99999999999999999999999h",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid duration"), "{e}");
        }
        let cfg = parse(
            "readyTimeout: 45\nplugins:\n  a:\n    stopTimeout: 250ms\n",
            FILE,
        )
        .expect("valid");
        assert_eq!(cfg.ready_timeout, Duration::from_secs(45));
        assert_eq!(cfg.plugin("a").stop_timeout, Duration::from_millis(250));

        let e = assert_err(
            "plugins:\n  zwave:\n    stopTimeout: 5x\n",
            3,
            "plugins.zwave.stopTimeout",
            &["invalid duration `5x`", "10s"],
        );
        assert_eq!(e.column, Some(18));
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        assert_err("readyTimeout: 1.5\n", 1, "readyTimeout", &["needs a unit"]);
        assert_err("readyTimeout: -3\n", 1, "readyTimeout", &["negative"]);
        assert_err("readyTimeout: 0s\n", 1, "readyTimeout", &["greater than 0"]);
        assert_err(
            "plugins:\n  zwave:\n    stopTimeout: 0\n",
            3,
            "plugins.zwave.stopTimeout",
            &["greater than 0"],
        );
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("10MB", 10_000_000),
            ("200MB", 200_000_000),
            ("512KB", 512_000),
            ("1GB", 1_000_000_000),
            ("1MiB", 1 << 20),
            ("1GiB", 1 << 30),
            ("64KiB", 64 << 10),
            ("1.5KiB", 1536),
            ("10mb", 10_000_000),
            ("2048", 2048),
            ("2048B", 2048),
            ("1 MB", 1_000_000),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "MB",
            "10XB",
            "10M",
            "1.5",
            "-1MB",
            "10 MBs",
            "99999999999TB",
        ] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid size"), "{e}");
        }
        let cfg = parse("logMaxSize: 2048\n", FILE).expect("valid");
        assert_eq!(cfg.log_max_size, 2048);
        assert_err(
            "logMaxSize: 10XB\n",
            1,
            "logMaxSize",
            &["invalid size `10XB`", "10MB"],
        );
        assert_err("logMaxSize: 100\n", 1, "logMaxSize", &["at least 1024"]);
        assert_err("logMaxFiles: 0\n", 1, "logMaxFiles", &["at least 1"]);
        assert_err(
            "logMaxFiles: -1\n",
            1,
            "logMaxFiles",
            &["whole number", "`-1`"],
        );
    }

    #[test]
    fn unknown_key_in_plugin_matches_the_documented_format() {
        // Line 7, column 5, as in the documented example.
        let text =
            "loglevel: info\nautostart:\n  - zwave\n\nplugins:\n  zwave:\n    stopTimout: 5s\n";
        let e = err(text);
        assert_eq!(
            e.to_string(),
            "/home/x/config/launcher.yaml:7:5: plugins.zwave.stopTimout: unknown key; did you mean `stopTimeout`?"
        );
        assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
        assert_eq!(e.suggestion.as_deref(), Some("stopTimeout"));
        assert_eq!((e.line, e.column), (Some(7), Some(5)));
    }

    #[test]
    fn unknown_keys_at_top_level() {
        let e = assert_err(
            "loglevel: info\nautostrat:\n  - a\n",
            2,
            "autostrat",
            &["unknown key", "did you mean `autostart`?"],
        );
        assert_eq!(e.column, Some(1));
        assert_eq!(e.suggestion.as_deref(), Some("autostart"));
        assert_err(
            "ready_timeout: 5s\n",
            1,
            "ready_timeout",
            &["did you mean `readyTimeout`?"],
        );
        assert_err(
            "serverUrl: mqtt://x\n",
            1,
            "serverUrl",
            &["did you mean `serverURL`?"],
        );
        assert_err(
            "createplugincreds: true\n",
            1,
            "createplugincreds",
            &["`createPluginCred`"],
        );
        let e = assert_err(
            "colour: blue\n",
            1,
            "colour",
            &["unknown key; valid keys: id, loglevel"],
        );
        assert_eq!(e.suggestion, None);
        assert_err(
            "stopTimeout: 5s\n",
            1,
            "stopTimeout",
            &["is a plugin setting", "plugins:"],
        );
        assert_err(
            "plugins:\n  a:\n    autorestart: true\n",
            3,
            "plugins.a.autorestart",
            &["launcher-wide setting"],
        );
        assert_err(
            "plugins:\n  a:\n    env: {}\n    waitready: true\n",
            4,
            "plugins.a.waitready",
            &["did you mean `waitReady`?"],
        );
    }

    #[test]
    fn wrong_types() {
        let e = assert_err(
            "id: x\nlogtofile: maybe\n",
            2,
            "logtofile",
            &["expected true or false", "`maybe`"],
        );
        assert_eq!(e.kind, ConfigErrorKind::WrongType);
        assert_eq!(e.column, Some(12));
        assert_err(
            "autostart: 5\n",
            1,
            "autostart",
            &["expected a list", "found `5`"],
        );
        assert_err(
            "autostart: heartbeat\n",
            1,
            "autostart",
            &["expected a list", "`heartbeat`"],
        );
        assert_err(
            "autostart:\n  - a\n  - [b]\n",
            3,
            "autostart[1]",
            &["expected"],
        );
        assert_err("plugins: [a, b]\n", 1, "plugins", &["expected a mapping"]);
        assert_err(
            "plugins:\n  zwave:\n    - a\n",
            3,
            "plugins.zwave",
            &["expected a mapping"],
        );
        assert_err(
            "plugins:\n  zwave:\n    args: --x\n",
            3,
            "plugins.zwave.args",
            &["expected a list"],
        );
        assert_err(
            "plugins:\n  zwave:\n    env:\n      A:\n",
            4,
            "plugins.zwave.env.A",
            &["write \"\""],
        );
        assert_err(
            "plugins:\n  zwave:\n    waitReady: sure\n",
            3,
            "plugins.zwave.waitReady",
            &["true or false"],
        );
        assert_err("id:\n", 1, "id", &["expected a value"]);
        let e = err("- a\n- b\n");
        assert_eq!(e.line, Some(1));
        assert!(e.to_string().contains("must be a mapping"), "{e}");
    }

    #[test]
    fn syntax_errors() {
        let e = err("plugins:\n  zwave:\n    args: [a]\n   stopTimeout: 4\n");
        assert_eq!(e.kind, ConfigErrorKind::Syntax);
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("plugins.zwave"));
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{FILE}:4:4: plugins.zwave: YAML syntax error")),
            "{shown}"
        );
        assert!(shown.contains("indented"), "{shown}");

        let e = err("logtofile: true\nautostart: [a, b\n");
        assert_eq!(e.kind, ConfigErrorKind::Syntax);
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with(&format!("{FILE}:")), "{e}");

        let e = err("id: 'launcher\n");
        assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, Some(1)));
        assert!(e.to_string().contains("unclosed"), "{e}");

        let e = err("id: a: b\n");
        assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, Some(1)));
        assert!(e.to_string().contains("must be quoted"), "{e}");

        let e = err("autostart:\n  - a\n  b: 1\n");
        assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, Some(3)));
        assert_eq!(e.key.as_deref(), Some("autostart"));
    }

    #[test]
    fn duplicate_mapping_keys() {
        let e = assert_err(
            "logtofile: true\ncore: hubcore\nlogtofile: false\n",
            3,
            "logtofile",
            &["duplicate key", "first set on line 1"],
        );
        assert_eq!(e.kind, ConfigErrorKind::DuplicateKey);
        assert_err(
            "plugins:\n  a:\n    waitReady: true\n  a:\n    waitReady: false\n",
            4,
            "plugins.a",
            &["duplicate key", "first set on line 2"],
        );
        assert_err(
            "plugins:\n  a:\n    stopTimeout: 1s\n    stopTimeout: 2s\n",
            4,
            "plugins.a.stopTimeout",
            &["duplicate key", "line 3"],
        );
        assert_err(
            "plugins:\n  a:\n    env:\n      X: 1\n      X: 2\n",
            5,
            "plugins.a.env.X",
            &["duplicate key", "line 4"],
        );
    }

    #[test]
    fn duplicate_autostart_entry() {
        let e = assert_err(
            "autostart:\n  - a\n  - b\n  - a\n",
            4,
            "autostart[2]",
            &["duplicate entry `a`", "first listed on line 2"],
        );
        assert_eq!(e.kind, ConfigErrorKind::DuplicateKey);
        assert_eq!(e.column, Some(5));
        assert_err(
            "autostart: [a, b, b]\n",
            1,
            "autostart[2]",
            &["duplicate entry `b`"],
        );
    }

    #[test]
    fn invalid_identifiers() {
        let e = assert_err(
            "autostart:\n  - ok\n  - bad/name\n",
            3,
            "autostart[1]",
            &["invalid name `bad/name`"],
        );
        assert_eq!(e.column, Some(5));
        assert_err("id: -launcher\n", 1, "id", &["invalid name `-launcher`"]);
        assert_err("id: \"\"\n", 1, "id", &["must not be empty"]);
        let long = "x".repeat(65);
        assert_err(&format!("id: {long}\n"), 1, "id", &["longer than 64"]);
        let e = assert_err(
            "plugins:\n  ok:\n    waitReady: true\n  \"bad name\":\n    waitReady: true\n",
            4,
            "plugins.\"bad name\"",
            &["invalid plugin name"],
        );
        assert_eq!(e.column, Some(3));
        for ok in ["launcher-pi2", "zwave_js", "a.b", "_x", "9"] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".x", "-x", "a b", "a:b", "é", "a/b", "$SYS"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plugin_rules() {
        assert_err(
            "plugins:\n  a:\n    env:\n      \"A=B\": x\n",
            4,
            "plugins.a.env.\"A=B\"",
            &["contains '='"],
        );
        assert_err(
            "plugins:\n  a:\n    env:\n      \"\": x\n",
            4,
            "plugins.a.env.\"\"",
            &["name is empty"],
        );
        assert_err(
            "plugins:\n  a:\n    stopSignal: SIGKILL\n",
            3,
            "plugins.a.stopSignal",
            &["cannot be the stop signal"],
        );
        assert_err(
            "plugins:\n  a:\n    stopSignal: SIGTREM\n",
            3,
            "plugins.a.stopSignal",
            &["unknown stop signal", "did you mean `SIGTERM`?"],
        );
        for (name, sig) in [
            ("SIGTERM", Signal::SIGTERM),
            ("TERM", Signal::SIGTERM),
            ("SIGINT", Signal::SIGINT),
            ("INT", Signal::SIGINT),
            ("SIGHUP", Signal::SIGHUP),
            ("SIGQUIT", Signal::SIGQUIT),
            ("SIGUSR1", Signal::SIGUSR1),
            ("usr2", Signal::SIGUSR2),
        ] {
            assert_eq!(parse_signal(name), Ok(sig), "{name}");
        }
    }

    #[test]
    fn validate_without_file() {
        let cfg = LauncherConfig {
            core: None,
            ..LauncherConfig::default()
        };
        let e = cfg.validate().expect_err("needs serverURL");
        assert_eq!(e.to_string(), format!("serverURL: {}", e.message));
        assert_eq!((e.line, e.file.as_str()), (None, ""));

        let cfg = LauncherConfig {
            autostart: vec!["a".into(), "a".into()],
            ..LauncherConfig::default()
        };
        let e = cfg.validate().expect_err("duplicate");
        assert!(
            e.to_string().contains("first listed as autostart[0]"),
            "{e}"
        );

        let mut plugins = BTreeMap::new();
        plugins.insert(
            "a".to_string(),
            PluginConfig {
                stop_signal: Signal::SIGKILL,
                ..PluginConfig::default()
            },
        );
        let cfg = LauncherConfig {
            plugins,
            ..LauncherConfig::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn display_is_one_line_even_for_hostile_input() {
        let e = err("autostart:\n  - \"a\\nb\"\n");
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown:?}");
        assert!(shown.contains("a\\nb"), "{shown}");
        let e = ConfigError {
            file: "f".into(),
            line: None,
            column: Some(3),
            key: None,
            kind: ConfigErrorKind::Io,
            message: "x\ny".into(),
            suggestion: None,
        };
        assert_eq!(e.to_string(), "f: x\\ny");
    }

    #[test]
    fn suggestions() {
        assert_eq!(nearest("autostrat", LAUNCHER_KEYS), Some("autostart"));
        assert_eq!(nearest("stopTimout", PLUGIN_KEYS), Some("stopTimeout"));
        assert_eq!(nearest("log_max_files", LAUNCHER_KEYS), Some("logMaxFiles"));
        assert_eq!(nearest("zzz", LAUNCHER_KEYS), None);
        assert_eq!(nearest("ix", LAUNCHER_KEYS), Some("id"));
        assert_eq!(nearest("colour", LAUNCHER_KEYS), None);
    }
}
