//! `config/hubcore.yaml` (`--config FILE` instead; the commented sample is in the repository's
//! `config/`). Every key is optional: a missing or comment-only file gives the defaults (a file
//! named with `--config` must exist). `--listen` and `--log-level` override `listen` and
//! `logLevel`.
//!
//! The file is read as every binary reads its config from the home (`hivehub_home::yaml`), so
//! errors read like the launcher's: one line with the file, line and column, the key path and
//! what is wrong, with the nearest valid key for a typo:
//! `hubcore.yaml:3:3: limits.maxSubscription: unknown key; did you mean `maxSubscriptions`?`.
//! Here are only the core's schema, its rules and the words for its own keys (`CoreWording`).

use hivehub_home::yaml::{self, nearest, quote, Wording};
pub use hivehub_home::yaml::{ConfigError, ConfigErrorKind};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// Token lifetimes per client type, in days.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TokenValidity {
    /// People (hubcli, UIs). Default 30.
    pub user: u64,
    /// Plugins and launchers; refreshed automatically by the SDK. Default 90.
    pub service: u64,
    /// Devices. Default 90.
    pub device: u64,
}

impl Default for TokenValidity {
    fn default() -> Self {
        TokenValidity {
            user: 30,
            service: 90,
            device: 90,
        }
    }
}

impl TokenValidity {
    /// Lifetime in seconds of a token for `t`.
    pub fn secs(&self, t: hivehub_api::ClientType) -> u64 {
        let days = match t {
            hivehub_api::ClientType::User => self.user,
            hivehub_api::ClientType::Service => self.service,
            hivehub_api::ClientType::Device => self.device,
        };
        days.max(1) * 86_400
    }
}

/// Limits per client, so one hostile login cannot exhaust the core (docs/SECURITY.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Connections of one login at once, so one client cannot take all of `maxConnections`.
    /// Default 16.
    pub max_connections_per_login: usize,
    /// Subscriptions per session; more get SUBACK "quota exceeded". Default 1000.
    pub max_subscriptions: usize,
    /// Longest session expiry a client may ask for, in seconds: an offline session and its
    /// subscriptions are dropped after it. Default 3600.
    pub max_session_expiry_secs: u64,
    /// Messages queued per session while it is offline or slow; older ones are dropped.
    /// Default 1000.
    pub max_queued_messages: usize,
    /// Publishes per second per login (token bucket); 0 turns the limit off. Default 1000.
    pub publish_rate: u32,
    /// Publishes a login may send at once before the rate applies. Default 2000.
    pub publish_burst: u32,
    /// Largest retained message or Last Will, in bytes (payload and properties). Default 65536.
    pub max_retained_bytes: usize,
    /// Retained topics per login. Default 256.
    pub max_retained_topics: usize,
    /// Seconds a new connection has for each step before its CONNECT is in: the TLS
    /// handshake, its first packet, the whole CONNECT. A connection that sends nothing is
    /// closed after it. Default 30.
    pub connect_timeout_secs: u64,
    /// Connections of a listener that have not logged in yet; more are closed at once, so
    /// that no one can hold every file descriptor of the core. Default 1024.
    pub max_connecting: usize,
    /// The same per remote IP address; loopback addresses (this host's processes, the plugins
    /// among them) are held to `maxConnecting` only. Default 32.
    pub max_connecting_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections_per_login: 16,
            max_subscriptions: 1000,
            max_session_expiry_secs: 3600,
            max_queued_messages: 1000,
            publish_rate: 1000,
            publish_burst: 2000,
            max_retained_bytes: 65_536,
            max_retained_topics: 256,
            connect_timeout_secs: 30,
            max_connecting: 1024,
            max_connecting_per_address: 32,
        }
    }
}

/// The core's settings. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CoreConfig {
    /// TLS listener. Default `127.0.0.1:8883`; use `0.0.0.0:8883` to serve other hosts.
    pub listen: SocketAddr,
    /// Optional plain-TCP listener, for local tools without TLS. Loopback addresses only.
    pub plain_listen: Option<SocketAddr>,
    /// Serve local clients on the Unix socket `run/hubcore.sock` as well: plain MQTT with the
    /// same logins and ACL, reachable only by the home's owner (`run/` is mode 700). hubcli
    /// uses it when it can, saving the TLS handshake. Default true.
    pub local_socket: bool,
    /// The `iss` claim of issued tokens.
    pub issuer: String,
    /// Token lifetimes.
    pub token_validity_days: TokenValidity,
    /// Log filter (tracing syntax), e.g. `info` or `hivehub_core=debug`.
    pub log_level: String,
    /// Most simultaneous connections in all; a CONNECT beyond is refused.
    pub max_connections: usize,
    /// Limits per client.
    pub limits: Limits,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            plain_listen: None,
            local_socket: true,
            issuer: "hivehub".into(),
            token_validity_days: TokenValidity::default(),
            log_level: "info".into(),
            max_connections: 4096,
            limits: Limits::default(),
        }
    }
}

impl CoreConfig {
    /// Loads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<CoreConfig, ConfigError> {
        yaml::read(path, false, CoreConfig::parse)
    }

    /// Loads a file named explicitly (`--config FILE`): unlike [`load`](Self::load), a missing
    /// file is an error, because a mistyped name would otherwise run on the defaults.
    pub fn load_named(path: &Path) -> Result<CoreConfig, ConfigError> {
        yaml::read(path, true, CoreConfig::parse)
    }

    /// Parses YAML text and validates it; `file` only labels errors. An empty or comment-only
    /// text gives the defaults.
    pub fn parse(text: &str, file: &str) -> Result<CoreConfig, ConfigError> {
        let (parsed, index) = yaml::parse::<CoreConfig>(text, file, &CoreWording)?;
        let cfg = parsed.unwrap_or_default();
        cfg.check().map_err(|(key, message)| {
            let pos = index.by_path(key).map(|e| e.value);
            rule_error(file, key, message).at(pos)
        })?;
        Ok(cfg)
    }

    /// Checks the rules that types cannot express, for configs built in code as well as parsed
    /// ones; errors name the key but carry no file or line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|(key, message)| rule_error("", key, message))
    }

    /// The first broken rule: its key path and what is wrong.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(p) = self.plain_listen {
            if !p.ip().is_loopback() {
                return Err((
                    "plainListen",
                    format!("{p} is not a loopback address; plain TCP is only allowed on 127.0.0.1 or ::1"),
                ));
            }
        }
        if self.limits.connect_timeout_secs == 0 {
            return Err(("limits.connectTimeoutSecs", "must be at least 1".into()));
        }
        if self.limits.max_connecting == 0 {
            return Err(("limits.maxConnecting", "must be at least 1".into()));
        }
        if self.limits.max_connecting_per_address == 0 {
            return Err((
                "limits.maxConnectingPerAddress",
                "must be at least 1".into(),
            ));
        }
        if self.issuer.trim().is_empty() {
            return Err(("issuer", "must not be empty".into()));
        }
        check_log_filter(&self.log_level).map_err(|m| ("logLevel", m))
    }
}

/// Log levels, for typos in `logLevel`.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks a log filter in tracing's syntax, as the core will use it. A bare word that is no
/// level is a valid filter (every level of the module of that name), so one that is nearly a
/// level is taken for the typo it is, rather than silencing the core's log.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    if let Err(e) = filter.parse::<tracing_subscriber::filter::Targets>() {
        return Err(format!("invalid log filter {}: {e}", quote(filter)));
    }
    // `Targets` takes any text for a target; span and field filters (`target[span{f=v}]`) are
    // not supported, and a stray bracket or space is a typo, not a module's name.
    if let Some(c) = filter.chars().find(|c| "[]{}\"' ".contains(*c)) {
        return Err(format!(
            "invalid log filter {}: `{c}` cannot appear in a filter (only `level`, \
             `target=level` or `target`, separated by commas)",
            quote(filter)
        ));
    }
    for word in filter.split(',').map(str::trim) {
        if word.contains(['=', ':', '['])
            || LOG_LEVELS.contains(&word.to_ascii_lowercase().as_str())
        {
            continue;
        }
        let near = if word.eq_ignore_ascii_case("warning") {
            Some("warn")
        } else {
            nearest(word, LOG_LEVELS)
        };
        if let Some(level) = near {
            return Err(format!(
                "unknown log level {}; use error, warn, info, debug or trace (or a filter such as hivehub_core=debug); did you mean `{level}`?",
                quote(word)
            ));
        }
    }
    Ok(())
}

/// A broken rule at `key`, in `file` (empty for configs built in code).
fn rule_error(file: &str, key: &str, message: String) -> ConfigError {
    ConfigError {
        key: Some(key.to_string()),
        ..ConfigError::new(file, ConfigErrorKind::InvalidValue, message)
    }
}

/// The words for the core's own keys in errors of `hubcore.yaml`.
struct CoreWording;

impl Wording for CoreWording {
    /// An address that does not parse comes with the form it takes.
    fn invalid_value(&self, message: &str) -> String {
        if message.contains("address syntax") {
            format!("{message}; expected IP:PORT, e.g. 127.0.0.1:8883")
        } else {
            message.to_string()
        }
    }

    /// What the single value at `key` should be.
    fn scalar_words(&self, key: &str) -> &'static str {
        match key {
            "listen" | "plainListen" => "an address such as 127.0.0.1:8883",
            "issuer" | "logLevel" => "a string",
            k if k.starts_with("limits.") || k.starts_with("tokenValidityDays.") => {
                "a whole number"
            }
            "maxConnections" => "a whole number",
            "localSocket" => "true or false",
            _ => "a single value",
        }
    }

    /// A wrong shape always says what stands there.
    fn names_wrong_collection(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/h/config/hubcore.yaml";

    fn err(text: &str) -> ConfigError {
        match CoreConfig::parse(text, FILE) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            CoreConfig::parse("# nothing\n", FILE).unwrap(),
            CoreConfig::default()
        );
        assert_eq!(CoreConfig::parse("", FILE).unwrap(), CoreConfig::default());
        let c = CoreConfig::parse(
            "listen: 0.0.0.0:9883\ntokenValidityDays:\n  user: 7\n",
            FILE,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9883);
        assert_eq!(c.token_validity_days.user, 7);
        assert_eq!(c.token_validity_days.service, 90);
    }

    #[test]
    fn config_unknown_key_names_file_line_column_key_and_suggestion() {
        let e = err("listen: 127.0.0.1:1\nlisen: x\n");
        assert_eq!(
            e.to_string(),
            "/h/config/hubcore.yaml:2:1: lisen: unknown key; did you mean `listen`?"
        );
        let e = err("limits:\n  publishRate: 5\n  maxSubscription: 3\n");
        assert_eq!(
            e.to_string(),
            "/h/config/hubcore.yaml:3:3: limits.maxSubscription: unknown key; did you mean `maxSubscriptions`?"
        );
        let e = err("colour: blue\n");
        assert_eq!((e.line, e.column), (Some(1), Some(1)));
        assert!(
            e.to_string().contains("valid keys: listen, plainListen"),
            "{e}"
        );
        assert_eq!(e.suggestion, None);
    }

    #[test]
    fn config_wrong_type_names_the_key_not_its_parent() {
        let e = err("limits:\n  maxSubscriptions: [2]\n");
        assert_eq!(e.key.as_deref(), Some("limits.maxSubscriptions"), "{e}");
        assert_eq!((e.line, e.column), (Some(2), Some(21)), "{e}");
        let e = err("tokenValidityDays:\n  user: many\n");
        assert_eq!(
            e.to_string(),
            "/h/config/hubcore.yaml:2:9: tokenValidityDays.user: expected a whole number (0 or more), found `many`"
        );
        let e = err("issuer: x\nlisten: nowhere\n");
        assert_eq!(e.key.as_deref(), Some("listen"), "{e}");
        assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e}");
        assert!(e.to_string().contains("127.0.0.1:8883"), "{e}");
        let e = err("limits:\n  publishRate: {a: 1}\n");
        assert_eq!(e.key.as_deref(), Some("limits.publishRate"), "{e}");
        assert!(
            e.message
                .contains("expected a whole number, found a mapping"),
            "{e}"
        );
        let e = err("limits: 5\n");
        assert_eq!(e.key.as_deref(), Some("limits"), "{e}");
    }

    #[test]
    fn config_rules_name_the_key_and_its_line() {
        let e = err("issuer: x\nplainListen: 0.0.0.0:1883\n");
        assert_eq!(e.key.as_deref(), Some("plainListen"));
        assert_eq!((e.line, e.column), (Some(2), Some(14)));
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = err("issuer: \"\"\n");
        assert_eq!(e.key.as_deref(), Some("issuer"));
        let e = err("logLevel: inof\n");
        assert_eq!(e.key.as_deref(), Some("logLevel"));
        assert!(e.to_string().contains("did you mean `info`?"), "{e}");
        let e = err("logLevel: \"info,[\"\n");
        assert!(e.to_string().contains("invalid log filter"), "{e}");
        for ok in ["debug", "hivehub_core=debug,info", "WARN", "off"] {
            assert!(check_log_filter(ok).is_ok(), "{ok}");
        }
        assert!(CoreConfig::default().validate().is_ok());
        // The limits of connections that have not logged in: zero would refuse everyone.
        for (text, key, line) in [
            (
                "limits:\n  connectTimeoutSecs: 0\n",
                "limits.connectTimeoutSecs",
                2,
            ),
            (
                "issuer: x\nlimits:\n  maxConnecting: 0\n",
                "limits.maxConnecting",
                3,
            ),
            (
                "limits:\n  maxConnectingPerAddress: 0\n",
                "limits.maxConnectingPerAddress",
                2,
            ),
        ] {
            let e = err(text);
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.to_string().contains("must be at least 1"), "{e}");
        }
        let e = err("localSocket: sometimes\n");
        assert_eq!(e.key.as_deref(), Some("localSocket"), "{e}");
        assert!(e.to_string().contains("true or false"), "{e}");
        let c = CoreConfig::parse("localSocket: false\n", FILE).unwrap();
        assert!(!c.local_socket);
    }

    #[test]
    fn config_syntax_errors_name_the_key_on_the_line() {
        let e = err("issuer: x\nlisten: [a, b\n");
        assert_eq!(e.key.as_deref(), Some("listen"), "{e}");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("invalid YAML"), "{e}");
        let e = err("limits:\n  publishRate: 1\n publishBurst: 2\n");
        assert_eq!(e.line, Some(3), "{e}");
        let e = err("issuer: 'x\n");
        assert_eq!(e.key.as_deref(), Some("issuer"), "{e}");
        // The parser only notices on a later line; the error goes back to the bracket.
        let e = err("issuer: x\nlimits: {publishRate: [1, 2]\nlogLevel: x\n");
        assert_eq!(e.key.as_deref(), Some("limits"), "{e}");
        assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e}");
        assert!(e.message.contains("is its `}` missing?"), "{e}");
    }

    #[test]
    fn config_errors_are_one_line_with_error_once() {
        for text in [
            "lisen: 1\n",
            "limits: {maxSubscriptions: [1]}\n",
            "issuer: [a\n",
            "issuer: \"a\\nb\"\nlogLevel: \"x\\ny=[\"\n",
        ] {
            let shown = err(text).to_string();
            assert!(!shown.contains('\n'), "{shown:?}");
            assert!(!shown.contains("error:"), "{shown}");
            assert!(!shown.contains("<input>"), "{shown}");
            assert!(shown.starts_with(&format!("{FILE}:")), "{shown}");
        }
    }

    #[test]
    fn config_named_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        assert_eq!(CoreConfig::load(&missing).unwrap(), CoreConfig::default());
        let e = CoreConfig::load_named(&missing).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
