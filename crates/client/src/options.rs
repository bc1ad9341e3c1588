//! Where a client connects and with which credentials.
//!
//! [`ClientOptions::from_home`]: the server is the explicit value, else `$HIVEHUB_SERVER`, else
//! `run/hubcore.url`, else `mqtts://127.0.0.1:8883` (hubcli tries the core's socket
//! `run/hubcore.sock` first; plugins use TLS); the CA is `certs/caCert.pem`; the
//! credentials are `certs/{clientID}.key` and `.token`. Connect and request timeouts are 10 s,
//! the keep-alive 15 s, and the token is refreshed. [`ClientOptions::from_env`] is what a
//! plugin uses: the home from `$HIVEHUB_HOME` (else the executable's), the client ID from
//! `$HIVEHUB_CLIENT_ID` (else the binary's name): the variables the launcher sets.

use crate::error::ClientError;
use hivehub_home::{Home, ENV_HOME};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable with the hub's URL, set by the launcher for its plugins.
pub const ENV_SERVER: &str = "HIVEHUB_SERVER";
/// Environment variable with the plugin's client ID, set by the launcher.
pub const ENV_CLIENT_ID: &str = "HIVEHUB_CLIENT_ID";
/// Environment variable with the log level, set by the launcher (a tracing filter).
pub const ENV_LOG_LEVEL: &str = "HIVEHUB_LOG_LEVEL";

/// Where the hub listens: `mqtts://host:port` (TLS, the default), `mqtt://host:port`, or
/// `unix:///path` (plain MQTT on a Unix socket: the local core's `run/hubcore.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerUrl {
    /// A TCP listener.
    Tcp {
        /// True for `mqtts://`.
        tls: bool,
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A Unix socket, by its absolute path.
    Unix(PathBuf),
}

impl ServerUrl {
    /// Parses `mqtts://host:port`, `mqtt://host:port`, `host:port` (TLS), or `unix:///path`.
    pub fn parse(s: &str) -> Result<ServerUrl, ClientError> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(ClientError::Config(format!(
                    "server URL '{s}' must name an absolute path (unix:///path/to/socket)"
                )));
            }
            return Ok(ServerUrl::Unix(PathBuf::from(path)));
        }
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if s.contains("://") {
            return Err(ClientError::Config(format!(
                "server URL '{s}' must start with mqtts://, mqtt:// or unix://"
            )));
        } else {
            (true, s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| {
                    ClientError::Config(format!("server URL '{s}' has an invalid port '{p}'"))
                })?;
                (h, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(ClientError::Config(format!("server URL '{s}' has no host")));
        }
        Ok(ServerUrl::Tcp {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// True for `mqtts://`: the connection needs the hub's CA certificate.
    pub fn is_tls(&self) -> bool {
        matches!(self, ServerUrl::Tcp { tls: true, .. })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerUrl::Unix(path) => write!(f, "unix://{}", path.display()),
            ServerUrl::Tcp { tls, host, port } => {
                let scheme = if *tls { "mqtts" } else { "mqtt" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
        }
    }
}

/// The server URL of a local hub: `run/hubcore.url` if the core wrote it, else the default.
pub fn local_server_url(home: &Home) -> String {
    written_server_url(home).unwrap_or_else(|| "mqtts://127.0.0.1:8883".to_string())
}

/// The URL the core wrote to `run/hubcore.url`, if it did.
pub fn written_server_url(home: &Home) -> Option<String> {
    std::fs::read_to_string(home.core_url_file())
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Everything needed to connect as one client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Login ID (the MQTT username).
    pub client_id: String,
    /// Where the hub listens.
    pub server: ServerUrl,
    /// CA certificate to verify the hub with (required for `mqtts://`).
    pub ca_cert: Option<PathBuf>,
    /// Token file, re-read at every reconnect so an updated token is picked up.
    pub token_file: Option<PathBuf>,
    /// A token held in memory instead of a file.
    pub token: Option<String>,
    /// Private key file, used to prove identity when the token has expired.
    pub key_file: Option<PathBuf>,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// Default timeout of requests.
    pub request_timeout: Duration,
    /// MQTT keep-alive; a dead connection is noticed within about 1.5 times this.
    pub keep_alive: Duration,
    /// Refresh the token before it expires (and rewrite `token_file`).
    pub refresh_token: bool,
    /// A Last Will: topic, payload and retain flag.
    pub last_will: Option<(String, Vec<u8>, bool)>,
}

impl ClientOptions {
    /// Options for `client_id` in `home`, with the conventional credential files
    /// `certs/{clientID}.key|.token` and `certs/caCert.pem`. The server is `server` if given,
    /// else `$HIVEHUB_SERVER`, else the URL the local core wrote, else `mqtts://127.0.0.1:8883`.
    pub fn from_home(
        home: &Home,
        client_id: &str,
        server: Option<&str>,
    ) -> Result<ClientOptions, ClientError> {
        hivehub_api::validate_id(client_id)?;
        let server = match server {
            Some(s) => s.to_string(),
            None => std::env::var(ENV_SERVER)
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| local_server_url(home)),
        };
        Ok(ClientOptions {
            client_id: client_id.to_string(),
            server: ServerUrl::parse(&server)?,
            ca_cert: Some(home.ca_cert()),
            token_file: Some(home.token_file(client_id)),
            token: None,
            key_file: Some(home.key_file(client_id)),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(15),
            refresh_token: true,
            last_will: None,
        })
    }

    /// Options from the environment a launcher gives its plugins: `HIVEHUB_HOME` (or the
    /// executable's home), `HIVEHUB_SERVER`, and `HIVEHUB_CLIENT_ID` (default: the binary's name).
    pub fn from_env() -> Result<ClientOptions, ClientError> {
        // The launcher's HIVEHUB_HOME comes first; by hand, the binary's place in a home.
        let env = std::env::var_os(ENV_HOME);
        let home = match env.as_deref() {
            Some(v) if v.is_empty() => Err(hivehub_home::HomeError::Empty {
                what: ENV_HOME.into(),
            }),
            Some(v) => Home::resolve(Some(Path::new(v))),
            None => Home::resolve(None),
        }
        .map_err(|e| ClientError::Config(e.to_string()))?;
        let id = match std::env::var(ENV_CLIENT_ID) {
            Ok(id) if !id.is_empty() => id,
            _ => std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .ok_or_else(|| {
                    ClientError::Config(format!(
                        "{ENV_CLIENT_ID} is not set and the binary name is unknown"
                    ))
                })?,
        };
        ClientOptions::from_home(&home, &id, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(tls: bool, host: &str, port: u16) -> ServerUrl {
        ServerUrl::Tcp {
            tls,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_urls() {
        let ok: &[(&str, ServerUrl, &str)] = &[
            (
                "mqtts://127.0.0.1:9000",
                tcp(true, "127.0.0.1", 9000),
                "mqtts://127.0.0.1:9000",
            ),
            (
                "mqtt://localhost",
                tcp(false, "localhost", 1883),
                "mqtt://localhost:1883",
            ),
            (
                "hub.local:8884",
                tcp(true, "hub.local", 8884),
                "mqtts://hub.local:8884",
            ),
            ("mqtts://[::1]:9", tcp(true, "::1", 9), "mqtts://[::1]:9"),
            (
                "unix:///h/run/hubcore.sock",
                ServerUrl::Unix("/h/run/hubcore.sock".into()),
                "unix:///h/run/hubcore.sock",
            ),
        ];
        for (text, want, shown) in ok {
            let u = ServerUrl::parse(text).unwrap();
            assert_eq!(&u, want, "{text}");
            assert_eq!(u.to_string(), *shown, "{text}");
            assert_eq!(ServerUrl::parse(shown).unwrap(), u, "{shown} round trip");
        }
        for bad in [
            "http://x:1",
            "mqtts://x:notaport",
            "mqtts://:1",
            "unix://run/x.sock",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(ServerUrl::parse("mqtts://x").unwrap().is_tls());
        assert!(!ServerUrl::parse("unix:///x").unwrap().is_tls());
    }
}
