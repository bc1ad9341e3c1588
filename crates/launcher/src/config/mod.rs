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
//!
//! This module holds the schema and the checks; `fields` the serde glue, `check` the key-path
//! issues and hint wording, `locate` the position index and error wording. Durations and sizes
//! are `hivehub_api::units`.

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

mod check;
mod fields;
mod locate;

use check::*;
use fields::*;
use locate::*;

#[cfg(test)]
mod tests;
