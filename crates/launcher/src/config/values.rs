//! Value parsers and value rules that do not depend on where a value stands: identifiers,
//! the hub URL, log levels and stop signals. They answer with a bare message; the caller adds
//! the key path (and through it the line). Durations and sizes are `hivehub_api::units`.

use hivehub_home::yaml::{did_you_mean, nearest, quote};
use nix::sys::signal::Signal::{self, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

/// Longest identifier; the same limit as topic segments in the shared API crate.
const MAX_ID_LEN: usize = 64;
/// Accepted `loglevel` values; `warning` is HiveOT's spelling of `warn`.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "warning", "info", "debug", "trace"];
/// Signals a plugin may be asked to stop with.
const STOP_SIGNALS: [Signal; 6] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];
/// [`STOP_SIGNALS`] as the messages list them.
const STOP_SIGNAL_NAMES: &str = "SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2";

/// Whether `c` may stand in an identifier; the first character may not be `.` or `-`.
fn id_char(c: char, first: bool) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!first && matches!(c, '.' | '-'))
}

/// `launcher-{hostname}`, with characters an ID cannot hold replaced by `-`.
pub(super) fn remote_id() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = host
        .chars()
        .map(|c| if id_char(c, false) { c } else { '-' })
        .take(MAX_ID_LEN - "launcher-".len())
        .collect();
    if clean.is_empty() {
        "launcher-remote".into()
    } else {
        format!("launcher-{clean}")
    }
}

/// Identifiers become MQTT topic segments and file names, so they keep to the shared API
/// crate's rule: 1..=64 of `[A-Za-z0-9_.-]`, starting with a letter, digit or `_`.
pub(super) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(format!(
            "{} is longer than {MAX_ID_LEN} characters",
            quote(id)
        ));
    }
    let first_ok = id.chars().next().is_some_and(|c| id_char(c, true));
    if !first_ok || !id.chars().all(|c| id_char(c, false)) {
        return Err(format!(
            "invalid name {}: use only letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
            quote(id)
        ));
    }
    Ok(())
}

/// The same shapes the client SDK accepts (`mqtts://host:port`, `mqtt://host:port`,
/// `host:port`), checked here so the mistake is reported with its line.
pub(super) fn check_server_url(url: &str) -> Result<(), String> {
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
pub(super) fn canonical_level(level: &str) -> Option<&'static str> {
    let lower = level.trim().to_ascii_lowercase();
    match lower.as_str() {
        "warning" => Some("warn"),
        l => LOG_LEVELS.iter().find(|x| **x == l).copied(),
    }
}

/// Checks a `loglevel` value as written, with the nearest valid level for a typo.
pub(super) fn check_level(level: &str) -> Result<(), String> {
    match canonical_level(level) {
        Some(_) => Ok(()),
        None => Err(format!(
            "unknown log level {}; use error, warn, info, debug or trace{}",
            quote(level),
            did_you_mean(level, LOG_LEVELS)
        )),
    }
}

/// A signal's name without the `SIG` prefix: `TERM`.
fn short_name(signal: Signal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// `SIGTERM`, `TERM`, `sigterm`, ...; SIGKILL and SIGSTOP are refused because they cannot
/// give a plugin the chance to stop cleanly.
pub(super) fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(sig) = STOP_SIGNALS.into_iter().find(|s| short_name(*s) == short) {
        return Ok(sig);
    }
    if short == "KILL" || short == "STOP" {
        return Err(format!(
            "SIG{short} cannot be the stop signal: it gives the plugin no chance to stop cleanly \
             (the launcher sends SIGKILL itself after stopTimeout)"
        ));
    }
    let hint = nearest(short, STOP_SIGNALS.map(short_name))
        .map(|n| format!("; did you mean `SIG{n}`?"))
        .unwrap_or_default();
    Err(format!(
        "unknown stop signal {}; use {STOP_SIGNAL_NAMES}{hint}",
        quote(name)
    ))
}

/// Checks a stop signal given in code rather than by name (a parsed one is always valid).
pub(super) fn check_stop_signal(signal: Signal) -> Result<(), String> {
    if STOP_SIGNALS.contains(&signal) {
        Ok(())
    } else {
        Err(format!(
            "{signal} cannot be a stop signal; use {STOP_SIGNAL_NAMES}"
        ))
    }
}
