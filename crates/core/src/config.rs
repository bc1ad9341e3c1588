//! `config/hubcore.yaml` (`--config FILE` instead; the commented sample is in the repository's
//! `config/`). Every key is optional: a missing or comment-only file gives the defaults (a file
//! named with `--config` must exist). `--listen` and `--log-level` override `listen` and
//! `logLevel`.
//!
//! Errors read like the launcher's (`crates/launcher/src/config/`): one line with the file,
//! line and column, the key path and what is wrong, with the nearest valid key for a typo:
//! `hubcore.yaml:3:3: limits.maxSubscription: unknown key; did you mean `maxSubscriptions`?`.
//! The positions come from an index of key paths built from the same text (`Index`), as in the
//! launcher; the core cannot depend on the launcher, so this is a smaller copy of its
//! `locate`, `hints` and `diagnose` modules.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::fmt;
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

/// A config file that cannot be used, with what a person needs to fix it. Displays as one line,
/// in the launcher's form: `file:line:column: key.path: message; did you mean `key`?`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.one_line())]
pub struct ConfigError {
    /// The file; empty for configs built in code.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column (in characters), when known.
    pub column: Option<u32>,
    /// Key path such as `limits.publishRate`, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// For an unknown key, the nearest valid key.
    pub suggestion: Option<String>,
}

impl ConfigError {
    fn new(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
            suggestion: None,
        }
    }

    fn at(mut self, pos: Option<Pos>) -> ConfigError {
        self.line = pos.map(|p| p.0);
        self.column = pos.map(|p| p.1);
        self
    }

    /// The single-line form used by `Display`, with control characters escaped so that a
    /// hostile or broken file cannot forge log lines.
    fn one_line(&self) -> String {
        let mut s = self.file.clone();
        match (self.file.is_empty(), self.line, self.column) {
            (false, Some(l), Some(c)) => s.push_str(&format!(":{l}:{c}")),
            (false, Some(l), None) => s.push_str(&format!(":{l}")),
            (true, Some(l), _) => s.push_str(&format!("line {l}")),
            _ => {}
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

impl CoreConfig {
    /// Loads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<CoreConfig, ConfigError> {
        CoreConfig::read(path, false)
    }

    /// Loads a file named explicitly (`--config FILE`): unlike [`load`](Self::load), a missing
    /// file is an error, because a mistyped name would otherwise run on the defaults.
    pub fn load_named(path: &Path) -> Result<CoreConfig, ConfigError> {
        CoreConfig::read(path, true)
    }

    fn read(path: &Path, required: bool) -> Result<CoreConfig, ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => CoreConfig::parse(&text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(CoreConfig::default())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::new(
                &file,
                "no such file; a config file named explicitly must exist (only the default one may be absent)",
            )),
            Err(e) => Err(ConfigError::new(&file, format!("cannot read the file: {e}"))),
        }
    }

    /// Parses YAML text and validates it; `file` only labels errors. An empty or comment-only
    /// text gives the defaults.
    pub fn parse(text: &str, file: &str) -> Result<CoreConfig, ConfigError> {
        let index = Index::build(text).map_err(|e| yaml_error(&e, text, file, None))?;
        let parsed: Option<CoreConfig> =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, text, file, Some(&index)))?;
        let cfg = parsed.unwrap_or_default();
        cfg.check().map_err(|(key, message)| {
            let pos = index.by_path(key).map(|e| e.value);
            ConfigError {
                key: Some(key.to_string()),
                ..ConfigError::new(file, message)
            }
            .at(pos)
        })?;
        Ok(cfg)
    }

    /// Checks the rules that types cannot express, for configs built in code as well as parsed
    /// ones; errors name the key but carry no file or line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|(key, message)| ConfigError {
            key: Some(key.to_string()),
            ..ConfigError::new("", message)
        })
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
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(filter) {
        return Err(format!("invalid log filter {}: {e}", quote(filter)));
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

/// Line and column, 1-based.
type Pos = (u32, u32);

/// One key or list item of the document.
#[derive(Debug)]
struct Entry {
    /// Key path, as in [`ConfigError::key`].
    path: String,
    /// Where the key is; `None` for list items.
    key: Option<Pos>,
    /// Where the value starts (for a block mapping: its first key).
    value: Pos,
}

impl Entry {
    fn start(&self) -> Pos {
        self.key.unwrap_or(self.value)
    }
}

/// Every key and list item in document order, so that an error can go from a position to a key
/// path and back (the launcher's `config::locate::Index`).
#[derive(Debug, Default)]
struct Index {
    entries: Vec<Entry>,
}

/// A YAML node of any shape, with the positions of everything inside it.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar(Option<String>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar(None))
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
                while let Some(k) = m.next_key::<Spanned<Node>>()? {
                    let name = match k.value {
                        Node::Scalar(Some(text)) => text,
                        _ => "?".into(),
                    };
                    entries.push((Spanned::new(name, k.referenced, k.defined), m.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The 1-based position of `loc`, if it has one.
fn pos(loc: &Location) -> Option<Pos> {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (loc.line() > 0).then(|| (clamp(loc.line()), clamp(loc.column())))
}

/// The source text at `loc`, when its span is known.
fn span_text<'t>(text: &'t str, loc: &Location) -> Option<&'t str> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
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
            index.walk(text, &root.value, "");
        }
        Ok(index)
    }

    fn walk(&mut self, text: &str, node: &Node, path: &str) {
        let mut add = |path: String, spot: Option<(Option<Pos>, Pos)>, node: &Node| {
            if let Some((key, value)) = spot {
                self.entries.push(Entry {
                    path: path.clone(),
                    key,
                    value,
                });
            }
            self.walk(text, node, &path);
        };
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let spot = pos(&k.referenced).zip(pos(&v.referenced));
                    // A plain key as written: `on` or `1.0` parse as a boolean or a number.
                    let name = span_text(text, &k.referenced)
                        .map(str::trim)
                        .filter(|t| {
                            !t.is_empty()
                                && !t.contains('\n')
                                && !t.starts_with(['\'', '"', '?', '[', '{', '&', '*', '!'])
                        })
                        .unwrap_or(&k.value);
                    add(
                        join_key(path, name),
                        spot.map(|(k, v)| (Some(k), v)),
                        &v.value,
                    );
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let spot = pos(&v.referenced).map(|value| (None, value));
                    add(format!("{path}[{i}]"), spot, &v.value);
                }
            }
            Node::Scalar(_) => {}
        }
    }

    fn by_path(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    fn by_key_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == Some(at))
    }

    /// The key a parser error at `at` is about: the outermost value starting there, else the
    /// key there, else the last key or item before it.
    fn by_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.value == at)
            .or_else(|| self.by_key_pos(at))
            .or_else(|| self.entries.iter().rev().find(|e| e.start() <= at))
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

/// The candidate closest to `word`, if close enough to be a likely typo; case, `_` and `-` are
/// ignored, so `max_connections` finds `maxConnections` (the launcher's `hints::nearest`).
fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
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
            let allowed = (n.len() / 4).clamp(1, 3);
            (osa_distance(&w, &n), allowed, c)
        })
        .filter(|(d, allowed, _)| d <= allowed)
        .min_by_key(|(d, _, _)| *d)
        .map(|(_, _, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so `lsiten`
/// is one edit from `listen`.
fn osa_distance(a: &[char], b: &[char]) -> usize {
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Turns a serde-saphyr error into a [`ConfigError`], as the launcher's `config::diagnose`
/// does. With `index`, the error came from deserialising valid YAML; without, the YAML itself
/// is broken.
fn yaml_error(
    err: &serde_saphyr::Error,
    text: &str,
    file: &str,
    index: Option<&Index>,
) -> ConfigError {
    use serde_saphyr::{DefaultMessageFormatter, Error as E, MessageFormatter};
    let mut inner = err;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    let loc = err.location().filter(|l| l.line() > 0);
    let mut at = loc.as_ref().and_then(pos);
    let found = loc
        .as_ref()
        .and_then(|l| span_text(text, l))
        .and_then(|s| s.lines().next())
        .map(str::trim)
        .filter(|s| {
            !s.is_empty()
                && *s != "-"
                && !s.starts_with("- ")
                && !s.starts_with(['[', '{', '|', '>', '&', '*', '!'])
        })
        .map(quote);
    let with_found = |msg: String| match &found {
        Some(f) => format!("{msg}, found {f}"),
        None => msg,
    };
    let mut key = None;
    let mut suggestion = None;
    // serde's own errors (raised by a visitor, not by the parser) carry the position of their
    // key. In a block mapping that is also where the parent's value starts, so the key there is
    // the one meant, not the parent. (A block mapping that is itself the wrong value is
    // reported where it starts, with an empty span: that is a value, not the key of its first
    // entry.)
    let at_key = matches!(
        inner,
        E::Message { .. } | E::SerdeInvalidType { .. } | E::SerdeInvalidValue { .. }
    ) && loc
        .as_ref()
        .and_then(|l| l.span().byte_len())
        .is_some_and(|len| len > 0);
    let mut message = match inner {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            key = index
                .zip(at)
                .and_then(|(ix, at)| ix.by_key_pos(at))
                .map(|e| e.path.clone())
                .or_else(|| Some(join_key("", field)));
            suggestion = nearest(field, expected.iter().copied()).map(str::to_string);
            if suggestion.is_none() {
                format!("unknown key; valid keys: {}", expected.join(", "))
            } else {
                "unknown key".into()
            }
        }
        E::DuplicateMappingKey { .. } => {
            let entry = index
                .zip(at)
                .and_then(|(ix, at)| ix.by_key_pos(at).map(|e| (ix, e)));
            let mut msg = "duplicate key".to_string();
            if let Some((ix, e)) = entry {
                if let Some(first) = ix.by_path(&e.path).filter(|f| f.key != e.key) {
                    msg.push_str(&format!("; first set on line {}", first.start().0));
                }
                key = Some(e.path.clone());
            }
            msg
        }
        E::Message { msg, .. } if msg.contains("address syntax") => {
            format!("{msg}; expected IP:PORT, e.g. 127.0.0.1:8883")
        }
        E::Message { msg, .. } => msg.clone(),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => {
            let unexpected = match unexpected.as_str() {
                "unit value" => "nothing (null)",
                "sequence" => "a list",
                "map" => "a mapping",
                other => other,
            };
            format!("expected {expected}, found {unexpected}")
        }
        E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            format!("expected {expected}, found {unexpected}")
        }
        E::InvalidBooleanStrict { .. } => with_found("expected true or false".into()),
        E::InvalidScalar { ty, .. } => {
            let words = match *ty {
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
                "f32" | "f64" => "a number",
                _ => "a value of another type",
            };
            with_found(format!("expected {words}"))
        }
        E::NullIntoString { .. } => {
            "expected a value, found nothing; write \"\" for an empty string".into()
        }
        E::Unexpected { expected, .. } => {
            // serde-saphyr says "string scalar" for any scalar; the key tells which.
            let words = match *expected {
                "sequence start" => "a list",
                "mapping start" => "a mapping (`key: value` lines)",
                _ => scalar_words(index, at),
            };
            let shape = match loc
                .as_ref()
                .and_then(|l| text.get(usize::try_from(l.span().byte_offset()?).ok()?..))
                .and_then(|rest| rest.lines().next())
                .map(str::trim)
            {
                Some(s) if s.starts_with('[') || s == "-" || s.starts_with("- ") => {
                    ", found a list"
                }
                Some(s) if s.starts_with('{') || s.contains(": ") => ", found a mapping",
                _ => "",
            };
            if found.is_some() {
                with_found(format!("expected {words}"))
            } else {
                format!("expected {words}{shape}")
            }
        }
        other => {
            let msg = DefaultMessageFormatter.format_message(other).into_owned();
            // A parser error inside a `[...]` or `{...}` opened on an earlier line is about the
            // key that opened it, and usually means a missing `]` or `}`.
            let flow = at
                .filter(|_| index.is_none())
                .and_then(|here| open_flows(text, here).pop().map(|(o, c)| (o, c, here)))
                .filter(|(open, _, here)| open.0 < here.0);
            match flow {
                _ if index.is_some() => msg,
                Some((open, close, here)) => {
                    at = Some(open);
                    format!(
                        "invalid YAML in the collection opened here: {msg} at line {}, column {}; is its `{close}` missing?",
                        here.0, here.1
                    )
                }
                None => syntax_message(&msg),
            }
        }
    };
    if key.is_none() {
        key = match (index, at) {
            (Some(ix), Some(here)) => {
                let entry = if at_key {
                    ix.by_key_pos(here).or_else(|| ix.by_pos(here))
                } else {
                    ix.by_pos(here)
                };
                entry.map(|e| {
                    // A value error reported at its key: the value is what needs fixing.
                    if e.key == Some(here) {
                        at = Some(e.value);
                    }
                    e.path.clone()
                })
            }
            (None, Some(here)) => syntax_context(text, here),
            _ => None,
        };
    }
    if key.is_none() && at == Some((1, 1)) && index.is_some() {
        message = "the file must be a mapping of settings (`key: value` lines)".into();
    }
    ConfigError {
        key,
        suggestion,
        ..ConfigError::new(file, message)
    }
    .at(at)
}

/// What the single value at `at` should be, by its key.
fn scalar_words(index: Option<&Index>, at: Option<Pos>) -> &'static str {
    let key = index
        .zip(at)
        .and_then(|(ix, at)| ix.by_pos(at))
        .map(|e| e.path.as_str());
    match key {
        Some("listen" | "plainListen") => "an address such as 127.0.0.1:8883",
        Some("issuer" | "logLevel") => "a string",
        Some(k) if k.starts_with("limits.") || k.starts_with("tokenValidityDays.") => {
            "a whole number"
        }
        Some("maxConnections") => "a whole number",
        _ => "a single value",
    }
}

/// A parser message with a hint about the usual cause (the launcher's wording).
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
    format!("invalid YAML: {msg}{hint}")
}

/// For a syntax error at `at`, the key it is about as far as the text before the error shows
/// it: the last key left of the error column, on the error's own line or above it.
fn syntax_context(text: &str, at: Pos) -> Option<String> {
    let line = usize::try_from(at.0).ok()?.saturating_sub(1);
    let column = usize::try_from(at.1).ok()?.saturating_sub(1);
    let lines: Vec<&str> = text.lines().collect();
    let before = lines.get(..line.min(lines.len()))?.join("\n");
    let left: String = lines
        .get(line)
        .map(|l| l.chars().take(column).collect())
        .unwrap_or_default();
    // Before the first `[` or `{` of the error line still open at the error.
    let outside = open_flows(text, at)
        .into_iter()
        .find(|(p, _)| p.0 == at.0)
        .and_then(|(p, _)| usize::try_from(p.1).ok())
        .map(|col| left.chars().take(col - 1).collect::<String>());
    let mut candidates = vec![format!("{before}\n{left}")];
    candidates.extend(outside.map(|l| format!("{before}\n{l}")));
    candidates.push(before);
    candidates
        .iter()
        .find_map(|candidate| Index::build(candidate).ok())?
        .entries
        .iter()
        .rev()
        .find(|e| e.start().1 < at.1)
        .map(|e| e.path.clone())
}

/// The flow collections (`[...]` or `{...}`) still open at `at`, outermost first: where each
/// opens and the bracket that would close it (the launcher's `config::locate::open_flows`).
/// Quotes and comments are skipped; block scalars are not recognised, which only costs a hint.
fn open_flows(text: &str, at: Pos) -> Vec<(Pos, char)> {
    let mut open: Vec<(Pos, char)> = Vec::new();
    for (n, line) in (1u32..).zip(text.lines()) {
        if n > at.0 {
            break;
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        let mut chars = (1u32..).zip(line.chars()).peekable();
        while let Some((col, c)) = chars.next() {
            if n == at.0 && col >= at.1 {
                break;
            }
            match quote {
                Some('\'') if c == '\'' => {
                    // `''` is an escaped quote inside single quotes.
                    if chars.peek().is_some_and(|(_, next)| *next == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => {
                    // Indicators count only where a token starts: `a[1]` is a plain scalar.
                    let token_start =
                        prev.is_whitespace() || (!open.is_empty() && "[{,:".contains(prev));
                    match c {
                        '#' if prev.is_whitespace() => break,
                        '\'' | '"' if token_start => quote = Some(c),
                        '[' if token_start => open.push(((n, col), ']')),
                        '{' if token_start => open.push(((n, col), '}')),
                        ']' | '}' if !open.is_empty() => {
                            open.pop();
                        }
                        _ => {}
                    }
                }
            }
            prev = c;
        }
    }
    open
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
