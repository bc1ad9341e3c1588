//! Reading a YAML config file of the home (`config/{name}.yaml`). Every binary reads its config
//! file from the home the same way, so the machinery is here once; each binary keeps only its
//! schema, its rules and the words for its own keys (a [`Wording`]).
//!
//! The file is edited by hand, often on a headless box, so every error is one line that names
//! the file, the line and column, and the key path (`plugins.zwave.stopTimeout`), and an
//! unknown key comes with the nearest valid one ([`ConfigError`]). Locations come from two
//! passes over the text ([`parse`]):
//!
//! 1. The text is read into a tree of [`Spanned`](serde_saphyr::Spanned) nodes and flattened
//!    into an [`Index`] of key paths with the line and column of every key and value. YAML
//!    syntax errors surface here.
//! 2. The text is deserialised into the binary's settings. serde-saphyr reports where a type
//!    error, unknown key or duplicate key is; the index turns that position into a key path.
//!
//! Rules that types cannot express are the binary's, checked on the finished settings by key
//! path; [`Index::by_path`] turns the key path back into a line and column.
//!
//! Inside, by concern: `locate` (the position index), `hints` (quoting, key paths and the
//! nearest valid word for a typo), `diagnose` (serde-saphyr's errors in a person's words) and
//! `error` ([`ConfigError`] and its one-line display).

mod diagnose;
mod error;
mod hints;
mod locate;

pub use error::{ConfigError, ConfigErrorKind};
pub use hints::{did_you_mean, item_key, join_key, nearest, quote};
pub use locate::{Entry, Index};

use diagnose::yaml_error;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Line and column, 1-based.
pub type Pos = (u32, u32);

/// What only the binary knows about its settings, for the words of an error. Every method has
/// a default that suits a schema without special cases.
pub trait Wording {
    /// Appended to "unknown key" when no valid key is near `field`; `expected` are the keys
    /// valid where it stands. Default: `; valid keys: a, b`.
    fn unknown_key_hint(&self, _field: &str, expected: &[&str]) -> String {
        format!("; valid keys: {}", expected.join(", "))
    }

    /// The message of a value that its own parser refused (an address, a duration). Default:
    /// the parser's message.
    fn invalid_value(&self, message: &str) -> String {
        message.to_string()
    }

    /// What the single value at `key` must be ("true or false", "a number"), when a list or
    /// mapping stands there. Default: "a single value".
    fn scalar_words(&self, _key: &str) -> &'static str {
        "a single value"
    }

    /// Whether a list or mapping where the other belongs is named too ("expected a mapping
    /// (`key: value` lines), found a list"), not only one where a single value belongs.
    /// Default: no.
    fn names_wrong_collection(&self) -> bool {
        false
    }

    /// Appended to a wrong-type message about `key`, for a mistake the key path gives away
    /// (such as a setting one level too high). Default: nothing.
    fn wrong_type_hint(&self, _key: &str) -> String {
        String::new()
    }
}

/// Reads the config file at `path` and hands its text and name (for labelling errors) to
/// `parse`. A missing file gives the defaults, because a fresh home has none, unless
/// `required`: a file named explicitly (`--config FILE`) must exist, because a mistyped name
/// would otherwise run, or pass a check, on the defaults.
pub fn read<T: Default>(
    path: &Path,
    required: bool,
    parse: impl FnOnce(&str, &str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(T::default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::new(
            &file,
            ConfigErrorKind::Io,
            "no such file; a config file named explicitly must exist (only the default one may be absent)",
        )),
        Err(e) => Err(ConfigError::new(
            &file,
            ConfigErrorKind::Io,
            format!("cannot read the file: {e}"),
        )),
    }
}

/// Reads config `text` into a `T` (`None` for an empty or comment-only text) and the [`Index`]
/// that locates its keys for the rules checked next; `file` only labels errors, `wording`
/// supplies the words for the binary's own keys.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    file: &str,
    wording: &dyn Wording,
) -> Result<(Option<T>, Index), ConfigError> {
    let index = Index::build(text).map_err(|e| yaml_error(&e, text, file, None, wording))?;
    let value = serde_saphyr::from_str(text)
        .map_err(|e| yaml_error(&e, text, file, Some(&index), wording))?;
    Ok((value, index))
}

#[cfg(test)]
mod tests;
