//! Tests of the launcher config: defaults, every key, and the wording and location of errors,
//! by concern: `schema` (defaults, the sample, loading), `values` (value forms and parsers),
//! `checks` (rules beyond types) and `diagnostics` (parser and type errors, the display). The
//! helpers here parse a text that must fail and check where and how the error is shown.

use super::values::{check_id, parse_signal, remote_id};
use super::wording::{LAUNCHER_KEYS, PLUGIN_KEYS};
use super::*;
use hivehub_home::yaml::nearest;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::Duration;

mod checks;
mod diagnostics;
mod schema;
mod values;

const SAMPLE: &str = include_str!("../../../../../config/launcher.yaml");
const FILE: &str = "/home/x/config/launcher.yaml";

fn err(text: &str) -> ConfigError {
    match parse(text, FILE) {
        Ok(cfg) => panic!("expected an error for {text:?}, got {cfg:?}"),
        Err(e) => e,
    }
}

/// Asserts that the one-line message has the file, the line, the key and each extra part.
fn assert_err(text: &str, line: u32, key: &str, parts: &[&str]) -> ConfigError {
    let e = err(text);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}:{line}:")),
        "no {FILE}:{line}: in {shown:?}"
    );
    assert_eq!(e.line, Some(line), "{shown}");
    assert_eq!(e.key.as_deref(), Some(key), "{shown}");
    assert!(shown.contains(&format!(": {key}: ")), "no key in {shown:?}");
    for part in parts {
        assert!(shown.contains(part), "{part:?} missing from {shown:?}");
    }
    assert!(!shown.contains('\n'), "not one line: {shown:?}");
    e
}
