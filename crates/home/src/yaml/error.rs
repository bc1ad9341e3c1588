//! The error every config failure ends as: [`ConfigError`] with file, line, column, key path
//! and kind, displayed as one line that a hostile file cannot split or forge.

use super::Pos;
use thiserror::Error;

/// What kind of mistake a [`ConfigError`] is, for callers that react differently (e.g. tests,
/// or a UI that highlights the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file exists but cannot be read, or a file named explicitly does not exist.
    Io,
    /// The text is not valid YAML (indentation, quotes, brackets).
    Syntax,
    /// A key that the binary does not know, usually a typo.
    UnknownKey,
    /// A key given twice in one mapping, or an entry listed twice where it may stand once.
    DuplicateKey,
    /// A value of the wrong shape, such as a list where a boolean belongs.
    WrongType,
    /// A value of the right shape but not allowed, such as `stopTimeout: 5x`.
    InvalidValue,
    /// A key that the other settings make necessary.
    MissingKey,
}

/// A config file that cannot be used, with everything a person needs to fix it. Displays as
/// one line: `file:line:column: key.path: message; did you mean `key`?`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.one_line())]
pub struct ConfigError {
    /// The file, as given to [`read`](super::read) or [`parse`](super::parse); empty for
    /// configs built in code.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column (in characters), when known.
    pub column: Option<u32>,
    /// Key path such as `plugins.zwave.stopTimeout` or `autostart[2]`, when known.
    pub key: Option<String>,
    /// What kind of mistake it is.
    pub kind: ConfigErrorKind,
    /// What is wrong.
    pub message: String,
    /// For an unknown key, the nearest valid key.
    pub suggestion: Option<String>,
}

impl ConfigError {
    /// An error in `file` with no position, key or suggestion yet.
    pub fn new(file: &str, kind: ConfigErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: None,
            column: None,
            key: None,
            kind,
            message: message.into(),
            suggestion: None,
        }
    }

    /// Sets the line and column from a 1-based position, when there is one.
    pub fn at(mut self, pos: Option<Pos>) -> ConfigError {
        self.line = pos.map(|p| p.0);
        self.column = pos.map(|p| p.1);
        self
    }

    /// The single-line form used by `Display`, with control characters escaped so a hostile or
    /// broken file cannot forge log lines.
    fn one_line(&self) -> String {
        let mut s = String::new();
        match (self.file.is_empty(), self.line) {
            (false, Some(line)) => s.push_str(&format!("{}:{line}", self.file)),
            (false, None) => s.push_str(&self.file),
            (true, Some(line)) => s.push_str(&format!("line {line}")),
            (true, None) => {}
        }
        if let (Some(col), Some(_)) = (self.column, self.line) {
            s.push_str(&format!(":{col}"));
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
