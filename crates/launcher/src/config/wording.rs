//! The words only the launcher's keys need, as its [`Wording`] for the shared reading of the
//! file (`hivehub_home::yaml`): an unknown plugin key that is a launcher-wide one (or the other
//! way round) is told where it belongs, and a single value is named by what its key takes.

use hivehub_home::yaml::{nearest, Wording};

/// Top-level keys, for "belongs elsewhere" hints on unknown plugin keys.
pub(super) const LAUNCHER_KEYS: [&str; 21] = [
    "labels",
    "cluster",
    "httpListen",
    "backoff",
    "sampleInterval",
    "restartConcurrency",
    "id",
    "loglevel",
    "logtofile",
    "core",
    "logplugins",
    "attachstderr",
    "attachstdout",
    "autorestart",
    "createPluginCred",
    "autostart",
    "serverURL",
    "readyTimeout",
    "logMaxSize",
    "logMaxFiles",
    "plugins",
];

/// Plugin keys, for "belongs elsewhere" hints on unknown top-level keys.
pub(super) const PLUGIN_KEYS: [&str; 15] = [
    "sandbox",
    "user",
    "placement",
    "requires",
    "args",
    "env",
    "stopSignal",
    "stopTimeout",
    "waitReady",
    "restart",
    "backoff",
    "maxCpu",
    "maxMemory",
    "for",
    "action",
];

/// The launcher's words for errors in `launcher.yaml`.
pub(super) struct LauncherWording;

impl Wording for LauncherWording {
    /// For an unknown key with no near miss: where it belongs if it is a key of the other level
    /// (a plugin setting at the top, a launcher-wide one under a plugin), else the valid keys.
    fn unknown_key_hint(&self, field: &str, expected: &[&str]) -> String {
        let is_plugin = expected.contains(&"stopTimeout");
        let (other, other_keys) = if is_plugin {
            (
                "a launcher-wide setting; move it to the top level",
                &LAUNCHER_KEYS[..],
            )
        } else {
            (
                "a plugin setting; move it under `plugins: <name>:`",
                &PLUGIN_KEYS[..],
            )
        };
        match nearest(field, other_keys.iter().copied())
            .or_else(|| other_keys.iter().copied().find(|k| *k == field))
        {
            Some(k) => format!("; `{k}` is {other}"),
            None => format!("; valid keys: {}", expected.join(", ")),
        }
    }

    /// What a setting that takes a single value expects, by its key path: serde-saphyr only
    /// says "string scalar" when a list or mapping stands where any scalar belongs.
    fn scalar_words(&self, key: &str) -> &'static str {
        let name = key.rsplit('.').next().unwrap_or(key);
        match name {
            "logtofile" | "logplugins" | "attachstderr" | "attachstdout" | "createPluginCred"
            | "waitReady" => "true or false",
            "factor" | "jitter" | "margin" | "maxCpu" => "a number",
            "logMaxFiles" | "restartConcurrency" => "a whole number",
            _ => "a single value",
        }
    }

    /// For a wrong type at `plugins.<setting>`: the plugin setting was written where a plugin's
    /// name belongs.
    fn wrong_type_hint(&self, key: &str) -> String {
        key.strip_prefix("plugins.")
            .filter(|s| PLUGIN_KEYS.contains(s))
            .map(|setting| {
                format!("; `{setting}` is a plugin setting: put it under `plugins: <name>:`")
            })
            .unwrap_or_default()
    }
}
