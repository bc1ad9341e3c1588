//! serde glue: the field deserialisers that give `launcher.yaml` its forgiving forms. `null`
//! means an empty list or the defaults, a duration or size is a bare number or text with a
//! unit, a switch is `true`/`false` or a word in any case, and a signal goes by name.

use super::values::parse_signal;
use hivehub_api::units::{parse_duration, parse_size, ValueError};
use nix::sys::signal::Signal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// Lets `autostart:` with every entry commented out mean "none" instead of an error.
pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string that must be there when its key is (null is an error, not "unset").
pub(super) fn de_some_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// `core: ""` and `core: null` both mean "no local core", as in HiveOT.
pub(super) fn de_core<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// An entry without settings (`heartbeat:` under `plugins:`) gets the defaults.
pub(super) fn de_entries<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    let raw: Option<BTreeMap<String, Option<T>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A stop signal by name, as [`parse_signal`] reads it.
pub(super) fn de_signal<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
    let name = String::deserialize(d)?;
    parse_signal(&name).map_err(de::Error::custom)
}

/// A duration: seconds as a bare number, or text such as `500ms` or `1.5s`.
pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(&TIME)
}

/// An optional duration, as [`de_duration`] reads it.
pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    d.deserialize_option(Optional(&TIME))
}

/// A size: bytes as a bare number, or text such as `10MB` or `1GiB`.
pub(super) fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(&BYTES)
}

/// An optional size, as [`de_size`] reads it.
pub(super) fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_option(Optional(&BYTES))
}

/// How one kind of quantity is written: a bare whole number in a base unit, or text with a
/// unit (`hivehub_api::units`). A `&Unit` is the visitor that reads it.
struct Unit<T: 'static> {
    /// What it is called in messages.
    name: &'static str,
    /// Example spellings, for serde's "expected ..." wording.
    examples: &'static str,
    /// The value of a bare whole number.
    from_whole: fn(u64) -> T,
    /// How to write the bare fraction `v` instead.
    fraction_hint: fn(f64) -> String,
    /// The value of text with a unit.
    parse: fn(&str) -> Result<T, ValueError>,
}

/// Durations; a bare number is seconds.
static TIME: Unit<Duration> = Unit {
    name: "duration",
    examples: "500ms, 10s, 2m or 1h",
    from_whole: Duration::from_secs,
    fraction_hint: |v| format!("a fraction needs a unit, e.g. {v}s"),
    parse: parse_duration,
};

/// Sizes; a bare number is bytes.
static BYTES: Unit<u64> = Unit {
    name: "size",
    examples: "512KB, 10MB or 1GiB",
    from_whole: |v| v,
    fraction_hint: |v| format!("use a unit, e.g. {v}MB, or a whole number of bytes"),
    parse: parse_size,
};

impl<T> Visitor<'_> for &'static Unit<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} such as {}", self.name, self.examples)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.from_whole)(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map(self.from_whole)
            .map_err(|_| E::custom(format!("invalid {} `{v}`: must not be negative", self.name)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        let hint = (self.fraction_hint)(v);
        Err(E::custom(format!("invalid {} `{v}`: {hint}", self.name)))
    }
}

/// Reads an optional quantity the way `Option<T>` reads one: null or nothing is `None`.
struct Optional<T: 'static>(&'static Unit<T>);

impl<'de, T> Visitor<'de> for Optional<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("option")
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

/// A setting written as `true`/`false`, as a word in any case (`on-failure`, `off`), or, for
/// some, as a mapping.
pub(super) trait Switch: Sized {
    /// serde's "expected ..." wording.
    const EXPECTING: &'static str;
    /// The value of `true` or `false`.
    fn from_bool(on: bool) -> Self;
    /// The value of a word, given trimmed and in lower case; `None` if it is not one.
    fn from_word(word: &str) -> Option<Self>;
    /// The message for a word that is not one, as written.
    fn unknown_word(word: &str) -> String;
    /// The value of the mapping form; by default there is none.
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let _ = map;
        Err(de::Error::invalid_type(
            de::Unexpected::Map,
            &Self::EXPECTING,
        ))
    }
}

/// Reads a [`Switch`] setting.
pub(super) fn de_switch<'de, T: Switch, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<'de, T: Switch> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            T::from_word(&v.trim().to_ascii_lowercase())
                .ok_or_else(|| E::custom(T::unknown_word(v)))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            Ok(T::from_bool(v))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::from_map(map)
        }
    }
    d.deserialize_any(V(PhantomData))
}
