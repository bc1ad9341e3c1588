//! What happens to a config after its types are read: normalisation to one canonical form,
//! then the rules that types cannot express. A broken rule is an [`Issue`] named by key path,
//! for configs built in code as well as parsed ones; the position index turns it into a line
//! and column when there is a file.

use super::schema::{Backoff, LauncherConfig, Placement, PluginConfig};
use super::values::{
    canonical_level, check_id, check_level, check_server_url, check_stop_signal, remote_id,
};
use hivehub_home::yaml::{item_key, join_key, quote, ConfigError, ConfigErrorKind, Index};
use std::time::Duration;

/// Smallest `logMaxSize`; anything smaller would rotate on nearly every line.
const MIN_LOG_MAX_SIZE: u64 = 1024;

/// A broken rule found on a finished config, before it is given a file location.
#[derive(Debug)]
pub(super) struct Issue {
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
    /// A value at `key` that is not allowed.
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

    /// A key that is not allowed as written, such as a bad plugin name.
    fn key(key: &str, message: impl Into<String>) -> Issue {
        Issue {
            on_key: true,
            ..Issue::value(key, message)
        }
    }

    /// A key that is missing, located at the key `at` that makes it necessary.
    fn missing(key: &str, at: &str, message: impl Into<String>) -> Issue {
        Issue {
            kind: ConfigErrorKind::MissingKey,
            at: Some(at.to_string()),
            ..Issue::value(key, message)
        }
    }

    /// An entry at `key` that repeats the one at `first`.
    fn duplicate(key: &str, first: String, message: impl Into<String>) -> Issue {
        Issue {
            kind: ConfigErrorKind::DuplicateKey,
            first: Some(first),
            ..Issue::value(key, message)
        }
    }

    /// Locates the issue in the file through `index`, when there is one.
    pub(super) fn into_error(self, index: Option<&Index>, file: &str) -> ConfigError {
        let entry = index.and_then(|ix| ix.by_path(self.at.as_deref().unwrap_or(&self.key)));
        let pos = entry.map(|e| if self.on_key { e.start() } else { e.value });
        let mut message = self.message;
        if let Some(first) = &self.first {
            match index.and_then(|ix| ix.by_path(first)) {
                Some(e) => message.push_str(&format!("; first listed on line {}", e.value.0)),
                None => message.push_str(&format!("; first listed as {first}")),
            }
        }
        ConfigError {
            key: Some(self.key),
            ..ConfigError::new(file, self.kind, message)
        }
        .at(pos)
    }
}

/// `Ok` if `ok`, else an invalid value at `key`.
fn ensure(ok: bool, key: &str, message: impl Into<String>) -> Result<(), Issue> {
    if ok {
        Ok(())
    } else {
        Err(Issue::value(key, message))
    }
}

/// Checks every item of the list at `key` with `rule`.
fn check_items<T>(
    key: &str,
    items: &[T],
    rule: impl Fn(&T) -> Result<(), String>,
) -> Result<(), Issue> {
    for (i, item) in items.iter().enumerate() {
        rule(item).map_err(|m| Issue::value(&item_key(key, i), m))?;
    }
    Ok(())
}

impl LauncherConfig {
    /// Checks the rules that types cannot express, for configs built in code as well as parsed
    /// ones. Errors name the key but carry no file or line; [`parse`](super::parse) adds those.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|issue| issue.into_error(None, ""))
    }

    /// Canonical spellings, so the rest of the launcher compares against one form only.
    pub(super) fn normalise(&mut self) {
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
    pub(super) fn check(&self) -> Result<(), Issue> {
        self.check_hub()?;
        self.check_autostart()?;
        self.check_limits()?;
        self.check_cluster()?;
        for (name, plugin) in &self.plugins {
            self.check_plugin(name, plugin)?;
        }
        Ok(())
    }

    /// The launcher's own ID, its log level, and how it reaches the hub.
    fn check_hub(&self) -> Result<(), Issue> {
        check_id(&self.id).map_err(|m| Issue::value("id", m))?;
        check_level(&self.loglevel).map_err(|m| Issue::value("loglevel", m))?;
        match &self.core {
            Some(core) => check_id(core)
                .map_err(|m| Issue::value("core", format!("{m} (it names a binary in bin/)")))?,
            None if self.server_url.is_none() => {
                return Err(Issue::missing(
                    "serverURL",
                    "core",
                    "required when `core` is empty or null, since no local core \
                     provides the hub; set it to the hub's URL, e.g. mqtts://hub.local:8883",
                ));
            }
            None => {}
        }
        if let Some(url) = &self.server_url {
            check_server_url(url).map_err(|m| Issue::value("serverURL", m))?;
        }
        Ok(())
    }

    /// Valid plugin names, each once, and not the core (which starts first anyway).
    fn check_autostart(&self) -> Result<(), Issue> {
        for (i, name) in self.autostart.iter().enumerate() {
            let key = item_key("autostart", i);
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
                let first = item_key("autostart", first);
                return Err(Issue::duplicate(
                    &key,
                    first,
                    format!("duplicate entry {}", quote(name)),
                ));
            }
        }
        Ok(())
    }

    /// Timeouts, log rotation, restarts, sampling and the HTTP listener.
    fn check_limits(&self) -> Result<(), Issue> {
        ensure(
            !self.ready_timeout.is_zero(),
            "readyTimeout",
            "must be greater than 0",
        )?;
        ensure(
            self.log_max_size >= MIN_LOG_MAX_SIZE,
            "logMaxSize",
            format!(
                "must be at least {MIN_LOG_MAX_SIZE} bytes (1KiB), got {}",
                self.log_max_size
            ),
        )?;
        self.backoff.check("backoff")?;
        ensure(
            self.sample_interval >= Duration::from_millis(100),
            "sampleInterval",
            "must be at least 100ms",
        )?;
        if let Some(a) = self.http_listen {
            ensure(
                a.ip().is_loopback(),
                "httpListen",
                format!("{a} is not a loopback address; the status page and metrics are only served on 127.0.0.1 or ::1"),
            )?;
        }
        ensure(
            self.restart_concurrency >= 1,
            "restartConcurrency",
            "must be at least 1",
        )?;
        ensure(
            self.log_max_files >= 1,
            "logMaxFiles",
            "must be at least 1 (the number of rotated files kept per plugin)",
        )
    }

    /// This launcher's labels, and the lease and placement settings for movable plugins.
    fn check_cluster(&self) -> Result<(), Issue> {
        check_items("labels", &self.labels, |l| check_id(l))?;
        let c = &self.cluster;
        ensure(
            (Duration::from_secs(2)..=Duration::from_secs(20)).contains(&c.lease_ttl),
            "cluster.leaseTtl",
            "must be between 2s and 20s (the core grants at most 30s)",
        )?;
        ensure(
            !c.status_interval.is_zero() && c.status_interval <= c.lease_ttl,
            "cluster.statusInterval",
            "must be above 0 and at most cluster.leaseTtl",
        )?;
        ensure(
            (0.0..=1.0).contains(&c.margin),
            "cluster.margin",
            "must be between 0 and 1",
        )
    }

    /// The plugin entry `name`: its name, its placement, and its own settings.
    fn check_plugin(&self, name: &str, plugin: &PluginConfig) -> Result<(), Issue> {
        let base = join_key("plugins", name);
        if name == hivehub_api::cluster::LAUNCHER_THING {
            return Err(Issue::key(&base, format!("{} is reserved", quote(name))));
        }
        ensure(
            !(plugin.placement == Placement::Movable && self.core.as_deref() == Some(name)),
            &join_key(&base, "placement"),
            "the core cannot be movable; it runs on the hub's own host",
        )?;
        check_items(&join_key(&base, "requires"), &plugin.requires, |l| {
            check_id(l)
        })?;
        check_id(name).map_err(|m| Issue::key(&base, format!("invalid plugin name: {m}")))?;
        plugin.check(&base)?;
        self.backoff
            .with(&plugin.backoff)
            .check(&join_key(&base, "backoff"))
    }
}

impl PluginConfig {
    /// Broken rules of one plugin entry, under the key path `base`.
    fn check(&self, base: &str) -> Result<(), Issue> {
        check_items(&join_key(base, "args"), &self.args, |arg| no_nul(arg))?;
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
            no_nul(v).map_err(|m| Issue::value(&key, m))?;
        }
        check_stop_signal(self.stop_signal)
            .map_err(|m| Issue::value(&join_key(base, "stopSignal"), m))?;
        ensure(
            !self.stop_timeout.is_zero(),
            &join_key(base, "stopTimeout"),
            "must be greater than 0, or the plugin is killed before it can stop cleanly",
        )?;
        ensure(
            self.max_cpu.is_none_or(|c| c > 0.0 && c.is_finite()),
            &join_key(base, "maxCpu"),
            "must be a percentage above 0",
        )?;
        ensure(
            self.max_memory != Some(0),
            &join_key(base, "maxMemory"),
            "must be above 0",
        )?;
        let sandbox = join_key(base, "sandbox");
        for (list, paths) in [("read", &self.sandbox.read), ("write", &self.sandbox.write)] {
            check_items(&join_key(&sandbox, list), paths, |p| {
                if !p.is_absolute() {
                    return Err(format!(
                        "{} is not an absolute path",
                        quote(&p.display().to_string())
                    ));
                }
                if p.parent().is_none() {
                    return Err(
                        "the whole file system cannot be opened to a plugin; use sandbox: off"
                            .into(),
                    );
                }
                Ok(())
            })?;
        }
        if let Some(user) = &self.user {
            ensure(
                !user.is_empty() && !user.contains(['\0', ':', '/']),
                &join_key(base, "user"),
                format!("{} is not a user name", quote(user)),
            )?;
        }
        Ok(())
    }
}

/// Arguments and environment values go to `execve`, which cannot carry a NUL.
fn no_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("contains a NUL character".into())
    } else {
        Ok(())
    }
}

impl Backoff {
    /// Broken rules of a backoff, under the key path `base`.
    fn check(&self, base: &str) -> Result<(), Issue> {
        ensure(
            self.factor >= 1.0 && self.factor.is_finite(),
            &join_key(base, "factor"),
            "must be at least 1",
        )?;
        ensure(
            (0.0..1.0).contains(&self.jitter),
            &join_key(base, "jitter"),
            "must be at least 0 and below 1 (a fraction, 0.2 = ±20 %)",
        )?;
        ensure(
            self.max >= self.base,
            &join_key(base, "max"),
            "must not be below base",
        )
    }
}
