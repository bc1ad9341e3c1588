//! Parsing of `--timeout` values.

use std::time::Duration;

/// Parses "500ms", "5s", "1.5s", "2m", "1h" or plain seconds ("10", "0.5"). Zero and negative
/// values are refused: a zero timeout would fail every command.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let bad = || format!("'{s}' is not a duration (examples: 500ms, 5s, 2m, 10)");
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() {
        return Err(bad());
    }
    if n <= 0.0 {
        return Err(format!("'{s}': the duration must be greater than zero"));
    }
    Duration::try_from_secs_f64(n * unit_secs).map_err(|_| bad())
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
        assert_eq!(parse_duration(" 0.25 "), Ok(ms(250)));
    }

    #[test]
    fn refuses_nonsense() {
        for s in [
            "", "s", "ms", "abc", "5x", "-1s", "0", "0ms", "inf", "NaN", "1e400",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }
}
