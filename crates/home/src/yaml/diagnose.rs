//! serde-saphyr's syntax and type errors in words a person can act on: the kind of mistake, the
//! key path it is about (through the position [`Index`]), a hint at the usual cause, and the
//! nearest valid key for a typo. What depends on a binary's own keys comes from its
//! [`Wording`].

use super::error::{ConfigError, ConfigErrorKind};
use super::hints::{join_key, nearest};
use super::locate::{found_shape, found_text, open_flow, pos, syntax_context, Index};
use super::{Pos, Wording};
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter};

/// Turns a serde-saphyr error into a [`ConfigError`]. With `index`, the error came from
/// deserialising valid YAML; without, the YAML itself is broken.
pub(super) fn yaml_error(
    err: &serde_saphyr::Error,
    text: &str,
    file: &str,
    index: Option<&Index>,
    wording: &dyn Wording,
) -> ConfigError {
    use serde_saphyr::Error as E;
    let mut inner = err;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    let loc = err.location().filter(|l| l.line() > 0);
    let mut at = loc.as_ref().and_then(pos);
    let found = loc.as_ref().and_then(|l| found_text(text, l));
    let mut key = None;
    let mut suggestion = None;
    // A list or mapping where a scalar belongs, or the other way round: the words depend on the
    // key, so the message waits until the key is known.
    let mut unexpected = None;
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
                msg.push_str(&wording.unknown_key_hint(field, expected));
            }
            (ConfigErrorKind::UnknownKey, msg)
        }
        E::DuplicateMappingKey { .. } => {
            let (dup, msg) = duplicate_key(index, at);
            key = dup;
            (ConfigErrorKind::DuplicateKey, msg)
        }
        E::Message { msg, .. } => (ConfigErrorKind::InvalidValue, wording.invalid_value(msg)),
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
        E::Unexpected { expected, .. } => {
            unexpected = Some(*expected);
            (ConfigErrorKind::WrongType, String::new())
        }
        other => {
            let msg = DefaultMessageFormatter.format_message(other).into_owned();
            if index.is_some() {
                (ConfigErrorKind::WrongType, msg)
            } else {
                // A parser error inside a `[...]` or `{...}` opened on an earlier line is
                // about the key that opened it, and usually means a missing `]` or `}`.
                if let Some((open, close, here)) = at
                    .and_then(|here| open_flow(text, here).map(|(o, c)| (o, c, here)))
                    .filter(|(o, _, here)| o.0 < here.0)
                {
                    at = Some(open);
                    let msg = format!(
                        "invalid YAML in the collection opened here: {msg} at line {}, column {}; is its `{close}` missing?",
                        here.0, here.1
                    );
                    (ConfigErrorKind::Syntax, msg)
                } else {
                    (ConfigErrorKind::Syntax, syntax_message(&msg))
                }
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
                    // Some value errors point at the key; the value is what needs fixing.
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
    if let Some(expected) = unexpected {
        message = wrong_shape(expected, &key, &found, wording);
        if found.is_none() && (expected == SCALAR || wording.names_wrong_collection()) {
            if let Some(shape) = loc.as_ref().and_then(|l| found_shape(text, l)) {
                message.push_str(&format!(", found {shape}"));
            }
        }
    }
    if kind == ConfigErrorKind::WrongType {
        match key.as_deref() {
            None if at == Some((1, 1)) => {
                message = "the file must be a mapping of settings (`key: value` lines)".into();
            }
            Some(k) => message.push_str(&wording.wrong_type_hint(k)),
            None => {}
        }
    }
    ConfigError {
        key,
        suggestion,
        ..ConfigError::new(file, kind, message)
    }
    .at(at)
}

/// What serde-saphyr says it expected where a list or mapping stands instead of a scalar.
const SCALAR: &str = "string scalar";

/// "expected ..." for serde-saphyr's `Unexpected`: a list or mapping where a scalar belongs
/// (named by what the key takes), or the other way round; with the scalar found, if any.
fn wrong_shape(
    expected: &str,
    key: &Option<String>,
    found: &Option<String>,
    wording: &dyn Wording,
) -> String {
    let words = match expected {
        "sequence start" => "a list (`[a, b]`, or one `- item` per line)",
        "mapping start" => "a mapping (`key: value` lines)",
        SCALAR => wording.scalar_words(key.as_deref().unwrap_or_default()),
        other => other,
    };
    with_found(&format!("expected {words}"), found)
}

/// The key path of a duplicated key at `at`, and the message with the line of its first copy.
fn duplicate_key(index: Option<&Index>, at: Option<Pos>) -> (Option<String>, String) {
    let here = index
        .zip(at)
        .and_then(|(ix, at)| ix.by_key_pos(at).map(|e| (ix, e)));
    let mut msg = "duplicate key".to_string();
    let Some((ix, entry)) = here else {
        return (None, msg);
    };
    if let Some(first) = ix.by_path(&entry.path).filter(|f| f.key != entry.key) {
        msg.push_str(&format!("; first set on line {}", first.start().0));
    }
    (Some(entry.path.clone()), msg)
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

/// `msg`, with the offending text when it is known.
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
    format!("invalid YAML: {msg}{hint}")
}
