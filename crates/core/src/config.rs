//! `config/hubcore.yaml` (`--config FILE` instead; the commented sample is in the repository's
//! `config/`). Every key is optional: a missing or comment-only file gives the defaults, and an
//! unknown key is an error that names its line. `--listen` and `--log-level` override `listen`
//! and `logLevel`.

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
            issuer: "hivehub".into(),
            token_validity_days: TokenValidity::default(),
            log_level: "info".into(),
            max_connections: 4096,
            limits: Limits::default(),
        }
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// What is wrong, with line and column when the parser knows them.
    pub message: String,
}

impl CoreConfig {
    /// Loads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<CoreConfig, ConfigError> {
        let err = |message: String| ConfigError {
            file: path.display().to_string(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CoreConfig::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        let cfg = CoreConfig::parse(&text).map_err(err)?;
        Ok(cfg)
    }

    /// Parses YAML text and validates it.
    pub fn parse(text: &str) -> Result<CoreConfig, String> {
        let blank = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let cfg: CoreConfig = if blank {
            CoreConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules that types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.plain_listen {
            if !p.ip().is_loopback() {
                return Err(format!(
                    "plainListen: {p} is not a loopback address; plain TCP is only allowed on 127.0.0.1 or ::1"
                ));
            }
        }
        if self.issuer.trim().is_empty() {
            return Err("issuer: must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            CoreConfig::parse("# nothing\n").unwrap(),
            CoreConfig::default()
        );
        let c = CoreConfig::parse("listen: 0.0.0.0:9883\ntokenValidityDays:\n  user: 7\n").unwrap();
        assert_eq!(c.listen.port(), 9883);
        assert_eq!(c.token_validity_days.user, 7);
        assert_eq!(c.token_validity_days.service, 90);
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = CoreConfig::parse("listen: 127.0.0.1:1\nlisen: x\n").unwrap_err();
        assert!(e.contains("lisen") && e.contains("line 2"), "{e}");
        let e = CoreConfig::parse("plainListen: 0.0.0.0:1883\n").unwrap_err();
        assert!(e.contains("loopback"), "{e}");
    }
}
