//! `config/launcher.yaml`: which core and plugins the launcher starts, and how it logs and
//! supervises them.
//!
//! The file is edited by hand, often on a headless box, so every error names the file, the
//! line and column, and the key path (`plugins.zwave.stopTimeout`), and an unknown key comes
//! with the nearest valid one. Locations come from two passes over the text:
//!
//! 1. The text is read into a tree of [`Spanned`](serde_saphyr::Spanned) nodes and flattened
//!    into an index of key paths with the line and column of every key and value. YAML syntax
//!    errors surface here.
//! 2. The text is deserialised into [`LauncherConfig`]. serde-saphyr reports where a type error,
//!    unknown key or duplicate key is; the index turns that position into a key path.
//!
//! Rules that types cannot express are checked on the finished config, by key path; the index
//! turns the key path back into a line and column.
//!
//! This module holds the entry points, [`load`] (and [`load_named`] for a file named
//! explicitly, which must exist) and [`parse`]. The rest, by concern:
//!
//! * `schema`: the settings, their defaults and the lookups on them;
//! * `fields`: serde glue for the forgiving forms (null lists, durations, switches, signals);
//! * `validate`: normalisation and the rules beyond types, as key-path issues;
//! * `values`: value parsers and rules (identifiers, hub URL, log level, stop signal);
//! * `hints`: quoting, key paths and the nearest valid word for a typo;
//! * `locate`: the YAML position index;
//! * `diagnose`: serde-saphyr's syntax and type errors in the launcher's words;
//! * `error`: [`ConfigError`] and its one-line display.
//!
//! Durations and sizes are `hivehub_api::units`.

mod diagnose;
mod error;
mod fields;
mod hints;
mod locate;
mod schema;
mod switches;
mod validate;
mod values;

pub use error::{ConfigError, ConfigErrorKind};
pub use hivehub_api::units::{parse_duration, parse_size, ValueError};
pub use schema::{
    Backoff, BackoffOverride, ClusterConfig, LauncherConfig, Placement, PluginConfig,
    RestartPolicy, SandboxConfig, ThresholdAction,
};

use diagnose::yaml_error;
use locate::Index;
use std::path::Path;

/// Reads the launcher config; a missing file gives the defaults, because a fresh home has none.
pub fn load(path: &Path) -> Result<LauncherConfig, ConfigError> {
    read(path, false)
}

/// Reads a config file named explicitly (`--config FILE`): unlike [`load`], a missing file is
/// an error, because a mistyped name would otherwise run, or pass a check, on the defaults.
pub fn load_named(path: &Path) -> Result<LauncherConfig, ConfigError> {
    read(path, true)
}

/// [`load`], or with `required` [`load_named`].
fn read(path: &Path, required: bool) -> Result<LauncherConfig, ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(LauncherConfig::default())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::new(
            &file,
            ConfigErrorKind::Io,
            "no such file; a config file named explicitly must exist (only the default one may be absent)"
                .into(),
        )),
        Err(e) => Err(ConfigError::new(
            &file,
            ConfigErrorKind::Io,
            format!("cannot read the file: {e}"),
        )),
    }
}

/// Parses and validates config text; `file` only labels errors. An empty or comment-only text
/// gives the defaults.
pub fn parse(text: &str, file: &str) -> Result<LauncherConfig, ConfigError> {
    let index = Index::build(text).map_err(|e| yaml_error(&e, text, file, None))?;
    let parsed: Option<LauncherConfig> =
        serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, text, file, Some(&index)))?;
    let mut cfg = parsed.unwrap_or_default();
    cfg.normalise();
    cfg.check()
        .map_err(|issue| issue.into_error(Some(&index), file))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
