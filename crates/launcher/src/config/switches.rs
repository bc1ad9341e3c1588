//! How the switch settings read: `restart`/`autorestart` (a restart policy) and `sandbox` (a
//! switch or a mapping), as [`Switch`]es. Apart from `fields` so that the serde glue does not
//! depend on the schema it serves.

use super::fields::{de_switch, null_as_default, Switch};
use super::schema::{RestartPolicy, SandboxConfig};
use hivehub_home::yaml::{did_you_mean, quote};
use serde::de::{self, Deserializer, MapAccess};
use serde::Deserialize;
use std::path::PathBuf;

/// Accepted `autorestart` strings.
const RESTART_VALUES: [&str; 3] = ["never", "on-failure", "always"];

impl Switch for RestartPolicy {
    const EXPECTING: &'static str = "true, false, never, on-failure or always";
    fn from_bool(on: bool) -> Self {
        if on {
            RestartPolicy::OnFailure
        } else {
            RestartPolicy::Never
        }
    }
    fn from_word(word: &str) -> Option<Self> {
        match word {
            "never" | "false" => Some(RestartPolicy::Never),
            "on-failure" | "true" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        }
    }
    fn unknown_word(word: &str) -> String {
        format!(
            "unknown restart policy {}; use never, on-failure or always (or true/false){}",
            quote(word),
            did_you_mean(word, RESTART_VALUES)
        )
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_switch(d)
    }
}

impl Switch for SandboxConfig {
    const EXPECTING: &'static str = "off, on, or {read: [paths], write: [paths]}";
    fn from_bool(on: bool) -> Self {
        SandboxConfig {
            enabled: on,
            ..SandboxConfig::default()
        }
    }
    fn from_word(word: &str) -> Option<Self> {
        let on = match word {
            "off" | "false" => false,
            "on" | "true" => true,
            _ => return None,
        };
        Some(Self::from_bool(on))
    }
    fn unknown_word(word: &str) -> String {
        format!(
            "unknown sandbox setting {}; use off, on, or {{read: [paths], write: [paths]}}",
            quote(word)
        )
    }
    /// `{read: [paths], write: [paths]}`: the sandbox on, with extra paths.
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Paths {
            #[serde(default, deserialize_with = "null_as_default")]
            read: Vec<PathBuf>,
            #[serde(default, deserialize_with = "null_as_default")]
            write: Vec<PathBuf>,
        }
        let p = Paths::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(SandboxConfig {
            enabled: true,
            read: p.read,
            write: p.write,
        })
    }
}

impl<'de> Deserialize<'de> for SandboxConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_switch(d)
    }
}
