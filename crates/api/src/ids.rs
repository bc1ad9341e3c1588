//! Identifiers used as topic segments: client IDs, thing IDs, capability and method names.
//!
//! One rule for all of them: 1 to 64 bytes of `[A-Za-z0-9_.-]`, starting with a letter, a digit
//! or `_`. No separator, wildcard, `$`, `:`, space or non-ASCII character, so an identifier can
//! never change the meaning of a topic or a session name ([`validate_id`]).

use thiserror::Error;

/// Longest identifier accepted. Long enough for `launcher-some-long-hostname`, short enough to keep
/// topics small on constrained devices.
pub const MAX_ID_LEN: usize = 64;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// Empty identifiers would make topic segments ambiguous.
    #[error("identifier is empty")]
    Empty,
    /// Over [`MAX_ID_LEN`] bytes.
    #[error("identifier '{0}' is longer than {MAX_ID_LEN} characters")]
    TooLong(String),
    /// Contains a character outside `[A-Za-z0-9_.-]` or starts with `.` or `-`.
    #[error("identifier '{0}' may only contain letters, digits, '_', '.', '-' and must start with a letter, digit or '_'")]
    BadChar(String),
}

/// Checks an identifier that will become a topic segment.
///
/// The character set excludes the MQTT separators and wildcards (`/`, `+`, `#`), `$` (reserved for
/// broker topics) and `:` (the separator between a login ID and an MQTT session suffix), so that an
/// identifier can never change the meaning of a topic or of a session name.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(id.to_string()));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-';
    let first_ok = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !id.chars().all(ok_char) {
        return Err(IdError::BadChar(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for id in ["admin", "launcher-pi2", "zwave_js", "a.b", "_x", "9"] {
            assert_eq!(validate_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn rejects_topic_syntax() {
        for id in [
            "", "a/b", "+", "#", "a+", "$SYS", "a b", ".x", "-x", "a:b", "é",
        ] {
            assert!(validate_id(id).is_err(), "{id:?} should be rejected");
        }
        assert!(matches!(
            validate_id(&"a".repeat(65)),
            Err(IdError::TooLong(_))
        ));
    }
}
