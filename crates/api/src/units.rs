//! Durations and sizes as hivehub writes them everywhere (config files, command-line flags,
//! plugin arguments): one grammar, parsed exactly (decimal digits, no floating point), so
//! `0.1s` is exactly 100 ms.

use std::time::Duration;
use thiserror::Error;

fn quote(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

/// Why a duration or size string was refused; shared with later keys such as `maxMemory`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ValueError(pub String);

/// Parses `500ms`, `10s`, `1.5s`, `2m`, `1h`, or a whole number of seconds, so every duration
/// in hivehub config files is written the same way.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let bad = || {
        ValueError(format!(
            "invalid duration {}: use a number with a unit (500ms, 10s, 1.5s, 2m, 1h) or a whole number of seconds",
            quote(text)
        ))
    };
    let num = Number::split(text.trim())
        .map_err(|m| ValueError(format!("invalid duration {}: {m}", quote(text))))?;
    let unit_nanos: u128 = match num.unit {
        "" if num.frac.is_empty() => 1_000_000_000,
        "" => {
            return Err(ValueError(format!(
                "invalid duration {}: a fraction needs a unit, e.g. {}s",
                quote(text),
                text.trim()
            )))
        }
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let too_large = || ValueError(format!("invalid duration {}: too large", quote(text)));
    let nanos = num.scale(unit_nanos).ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it fits in u32.
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, sub))
}

/// Parses `512KB`, `10MB`, `1GB` (powers of 1000), `64KiB`, `1MiB`, `1GiB` (powers of 1024), or
/// a whole number of bytes, so sizes read the way people write them.
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let bad = || {
        ValueError(format!(
            "invalid size {}: use a number with a unit (512KB, 10MB, 1GB, 64KiB, 1MiB, 1GiB) or a whole number of bytes",
            quote(text)
        ))
    };
    let num = Number::split(text.trim())
        .map_err(|m| ValueError(format!("invalid size {}: {m}", quote(text))))?;
    let unit: u128 = match num.unit.to_ascii_lowercase().as_str() {
        "" | "b" if num.frac.is_empty() => 1,
        "" | "b" => {
            return Err(ValueError(format!(
                "invalid size {}: bytes must be a whole number",
                quote(text)
            )))
        }
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    num.scale(unit)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| ValueError(format!("invalid size {}: too large", quote(text))))
}

/// A decimal number with a unit suffix, kept as digits so `0.1s` is exactly 100ms.
struct Number<'a> {
    int: &'a str,
    frac: &'a str,
    unit: &'a str,
}

impl<'a> Number<'a> {
    /// Splits `1.5 MiB` into `1`, `5`, `MiB`.
    fn split(s: &'a str) -> Result<Number<'a>, String> {
        if s.is_empty() {
            return Err("empty value".into());
        }
        if s.starts_with('-') {
            return Err("must not be negative".into());
        }
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int = &s[..int_end];
        let rest = &s[int_end..];
        let (frac, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                (&r[..end], &r[end..])
            }
            None => ("", rest),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("must start with a number".into());
        }
        if int.len() + frac.len() > 30 {
            return Err("too many digits".into());
        }
        Ok(Number {
            int,
            frac,
            unit: rest.trim_start(),
        })
    }

    /// The number times `unit`, truncated to a whole number; `None` on overflow.
    fn scale(&self, unit: u128) -> Option<u128> {
        let mut mantissa: u128 = 0;
        for c in self.int.chars().chain(self.frac.chars()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(c.to_digit(10)?))?;
        }
        let divisor = 10u128.checked_pow(u32::try_from(self.frac.len()).ok()?)?;
        Some(mantissa.checked_mul(unit)? / divisor)
    }
}
