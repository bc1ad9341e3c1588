//! Parsing of `--timeout` values.

use std::time::Duration;

/// Parses a `--timeout`: the hub's one duration grammar (`500ms`, `5s`, `1.5s`, `2m`, `1h` or
/// whole seconds, see [`hivehub_api::units::parse_duration`]). Zero is refused: a zero timeout
/// would fail every command.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = hivehub_api::units::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("'{s}': the duration must be greater than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("10"), Ok(ms(10_000)));
        assert_eq!(parse_duration(" 0.25s "), Ok(ms(250)));
    }

    #[test]
    fn refuses_nonsense() {
        for s in [
            "", "s", "ms", "abc", "5x", "-1s", "0", "0ms", "inf", "NaN", "1e400", "0.25",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }
}
