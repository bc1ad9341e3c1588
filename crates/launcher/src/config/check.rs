//! Rules that types cannot express, as key paths ([`Issue`]), and the wording of hints
//! (quoted values, the nearest valid word).

use super::*;

/// A broken rule found on a finished config, before it is given a file location.
#[derive(Debug)]
pub(super) struct Issue {
    /// Key path reported to the user.
    pub(super) key: String,
    pub(super) kind: ConfigErrorKind,
    pub(super) message: String,
    /// Key path to take the location from, when it differs from `key` (a missing key is
    /// located at the key that makes it necessary).
    pub(super) at: Option<String>,
    /// Point at the key rather than at its value (a bad plugin name is the key itself).
    pub(super) on_key: bool,
    /// Key path of the earlier entry that this one duplicates.
    pub(super) first: Option<String>,
}

impl Issue {
    pub(super) fn value(key: &str, message: impl Into<String>) -> Issue {
        Issue {
            key: key.to_string(),
            kind: ConfigErrorKind::InvalidValue,
            message: message.into(),
            at: None,
            on_key: false,
            first: None,
        }
    }

    pub(super) fn key(key: &str, message: impl Into<String>) -> Issue {
        Issue {
            on_key: true,
            ..Issue::value(key, message)
        }
    }

    /// Locates the issue in the file through `index`, when there is one.
    pub(super) fn into_error(self, index: Option<&Index>, file: &str) -> ConfigError {
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
pub(super) fn remote_id() -> String {
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

/// A user-supplied value in backticks, escaped so it stays on one line.
pub(super) fn quote(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

/// Appends `key` to a key path, quoting keys that would make the path ambiguous.
pub(super) fn join_key(path: &str, key: &str) -> String {
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
pub(super) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
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
pub(super) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    nearest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}
