//! Which hub to connect to when `--server` is not given: `$HIVEHUB_SERVER`, else the local
//! core's Unix socket (`run/hubcore.sock`) when this user may connect to it, else the URL the
//! local core wrote (`run/hubcore.url`), else the `listen` address of the core's own config
//! (`config/hubcore.yaml`), else `mqtts://127.0.0.1:8883`, the core's default.
//!
//! The socket comes first because it saves the TLS handshake, most of a one-shot command's
//! time; it carries the same login and the core applies the same ACL. Only the home's owner
//! (and root) can reach it: `run/` is mode 700.

use hivehub_client::{ServerUrl, ENV_SERVER};
use hivehub_home::Home;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The one key of `config/hubcore.yaml` that hubcli reads; the others are the core's business
/// (and the core rejects the unknown ones, so they are ignored here).
#[derive(Debug, Default, Deserialize)]
struct CoreListen {
    /// The core's TLS listener, as in the core's `CoreConfig::listen`.
    listen: Option<SocketAddr>,
}

/// The URL of the TLS listener that `config/hubcore.yaml` (text `yaml`) configures: `None` when
/// the file does not set `listen` (the core then uses its default, 127.0.0.1:8883). A wildcard
/// address (`0.0.0.0`, `::`) is reached on the loopback address of its family.
pub fn url_from_core_config(yaml: &str) -> Result<Option<String>, String> {
    let blank = yaml
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Ok(None);
    }
    let c: CoreListen = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    Ok(c.listen.map(|a| {
        let ip = match a.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("mqtts://{}", SocketAddr::new(ip, a.port()))
    }))
}

/// The local core's socket as a server URL, when it is a socket this process may connect to
/// (write permission, which `connect` needs), and its path is UTF-8 (so that the URL names it).
pub fn local_socket(home: &Home) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let path = home.core_socket_file();
    path.to_str()?;
    if !std::fs::metadata(&path).ok()?.file_type().is_socket() {
        return None;
    }
    nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).ok()?;
    Some(ServerUrl::Unix(path).to_string())
}

/// The server to use when `--server` is not given: `None` when `$HIVEHUB_SERVER` is set (the
/// SDK reads it), else the local socket ([`local_socket`]), else `run/hubcore.url` if the core
/// wrote it, else the listen address in `config/hubcore.yaml`; `None` when none gives one (the
/// SDK then uses mqtts://127.0.0.1:8883). A config file that cannot be read is reported as a
/// warning.
pub fn fallback(home: &Home) -> Option<String> {
    if std::env::var(ENV_SERVER).is_ok_and(|s| !s.is_empty()) {
        return None;
    }
    if let Some(url) = local_socket(home) {
        return Some(url);
    }
    // Handed on as the server, so that the SDK does not read the file a second time.
    if let Some(url) = hivehub_client::written_server_url(home) {
        return Some(url);
    }
    let file = home.config_file("hubcore");
    let text = std::fs::read_to_string(&file).ok()?;
    match url_from_core_config(&text) {
        Ok(url) => url,
        Err(e) => {
            eprintln!(
                "hubcli: warning: cannot read the listen address in {}: {e}",
                file.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_of_core_config_becomes_the_url() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("# only a comment\n\n", None),
            ("logLevel: debug\n", None),
            ("listen: 127.0.0.1:9883\n", Some("mqtts://127.0.0.1:9883")),
            ("listen: 0.0.0.0:8884\n", Some("mqtts://127.0.0.1:8884")),
            ("listen: \"[::]:8885\"\n", Some("mqtts://[::1]:8885")),
            ("listen: \"[::1]:8886\"\n", Some("mqtts://[::1]:8886")),
            ("listen: 192.0.2.7:8883\n", Some("mqtts://192.0.2.7:8883")),
            (
                // The other keys of the core, nested ones included, are ignored.
                "issuer: hub1\nplainListen: 127.0.0.1:1883\nlimits:\n  maxInflight: 10\n\
                 tokenValidityDays: {user: 7}\nlisten: 127.0.0.1:9999 # the TLS port\n",
                Some("mqtts://127.0.0.1:9999"),
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(
                url_from_core_config(yaml),
                Ok(want.map(str::to_string)),
                "{yaml:?}"
            );
        }
        assert!(url_from_core_config("listen: nowhere\n").is_err());
    }
}
