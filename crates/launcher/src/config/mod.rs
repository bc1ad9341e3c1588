//! `config/launcher.yaml`: which core and plugins the launcher starts, and how it logs and
//! supervises them.
//!
//! The file is edited by hand, often on a headless box, so every error names the file, the
//! line and column, and the key path (`plugins.zwave.stopTimeout`), and an unknown key comes
//! with the nearest valid one. The reading of the file, the position index and the wording of
//! parser and type errors are `hivehub_home::yaml`, shared with the core: the text is read into
//! an index of key paths with their positions, then deserialised into [`LauncherConfig`], and
//! a serde-saphyr error is located through the index. Rules that types cannot express are
//! checked on the finished config, by key path; the index turns the key path back into a line
//! and column.
//!
//! This module holds the entry points, [`load`] (and [`load_named`] for a file named
//! explicitly, which must exist) and [`parse`]. The rest, by concern:
//!
//! * `schema`: the settings, their defaults and the lookups on them;
//! * `fields`: serde glue for the forgiving forms (null lists, durations, switches, signals);
//! * `validate`: normalisation and the rules beyond types, as key-path issues;
//! * `values`: value parsers and rules (identifiers, hub URL, log level, stop signal);
//! * `wording`: the key lists and the words only the launcher's keys need in errors.
//!
//! Durations and sizes are `hivehub_api::units`.

mod fields;
mod schema;
mod switches;
mod validate;
mod values;
mod wording;

pub use hivehub_api::units::{parse_duration, parse_size, ValueError};
pub use hivehub_home::yaml::{ConfigError, ConfigErrorKind};
pub use schema::{
    Backoff, BackoffOverride, ClusterConfig, LauncherConfig, Placement, PluginConfig,
    RestartPolicy, SandboxConfig, ThresholdAction,
};

use hivehub_home::yaml;
use std::path::Path;
use wording::LauncherWording;

/// Reads the launcher config; a missing file gives the defaults, because a fresh home has none.
pub fn load(path: &Path) -> Result<LauncherConfig, ConfigError> {
    yaml::read(path, false, parse)
}

/// Reads a config file named explicitly (`--config FILE`): unlike [`load`], a missing file is
/// an error, because a mistyped name would otherwise run, or pass a check, on the defaults.
pub fn load_named(path: &Path) -> Result<LauncherConfig, ConfigError> {
    yaml::read(path, true, parse)
}

/// Parses and validates config text; `file` only labels errors. An empty or comment-only text
/// gives the defaults.
pub fn parse(text: &str, file: &str) -> Result<LauncherConfig, ConfigError> {
    let (parsed, index) = yaml::parse::<LauncherConfig>(text, file, &LauncherWording)?;
    let mut cfg = parsed.unwrap_or_default();
    cfg.normalise();
    cfg.check()
        .map_err(|issue| issue.into_error(Some(&index), file))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
