//! serde glue: the field deserialisers that give `launcher.yaml` its forgiving forms (`null`
//! for an empty list, a duration as a number or a string, a signal by name).

use super::*;

/// Lets `autostart:` with every entry commented out mean "none" instead of an error.
pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `core: ""` and `core: null` both mean "no local core", as in HiveOT.
/// A string that must be there when its key is (null is an error, not "unset").
pub(super) fn de_some_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

pub(super) fn de_core<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A plugin entry without settings (`heartbeat:`) gets the defaults.
pub(super) fn de_plugins<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, PluginConfig>, D::Error> {
    let raw: Option<BTreeMap<String, Option<PluginConfig>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as 500ms, 10s, 2m or 1h")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("invalid duration `{v}`: must not be negative")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration `{v}`: a fraction needs a unit, e.g. {v}s"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "de_duration")] Duration);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

pub(super) fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "de_size")] u64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

pub(super) fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as 512KB, 10MB or 1GiB")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("invalid size `{v}`: must not be negative")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            Err(E::custom(format!(
                "invalid size `{v}`: use a unit, e.g. {v}MB, or a whole number of bytes"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

pub(super) fn de_signal<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
    let name = String::deserialize(d)?;
    parse_signal(&name).map_err(de::Error::custom)
}

/// `SIGTERM`, `TERM`, `sigterm`, ...; SIGKILL and SIGSTOP are refused because they cannot
/// give a plugin the chance to stop cleanly.
pub(super) fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, sig)) = STOP_SIGNALS.iter().find(|(n, _)| *n == short) {
        return Ok(*sig);
    }
    if short == "KILL" || short == "STOP" {
        return Err(format!(
            "SIG{short} cannot be the stop signal: it gives the plugin no chance to stop cleanly \
             (the launcher sends SIGKILL itself after stopTimeout)"
        ));
    }
    let hint = nearest(short, STOP_SIGNALS.map(|(n, _)| n))
        .map(|n| format!("; did you mean `SIG{n}`?"))
        .unwrap_or_default();
    Err(format!(
        "unknown stop signal {}; use SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2{hint}",
        quote(name)
    ))
}
