//! Where in the text a key or value is: a YAML position index by key path, and the wording of
//! syntax and type errors with their line and column.

use super::*;

/// Line and column, 1-based.
pub(super) type Pos = (u32, u32);

/// One key or list item of the document.
#[derive(Debug)]
pub(super) struct Entry {
    /// Key path, rendered like [`ConfigError::key`].
    pub(super) path: String,
    /// Where the key is; `None` for list items.
    pub(super) key: Option<Pos>,
    /// Where the value starts (for a block mapping: its first key).
    pub(super) value: Pos,
}

/// Every key and list item in document order, built from [`Spanned`] nodes so that errors can
/// go from a position to a key path and back.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: Vec<Entry>,
}

/// A YAML node of any shape, with the positions of everything inside it.
pub(super) enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// Any scalar key as text; complex keys (`? [a, b]`) are kept as a placeholder so the index can
/// still be built and the real parse reports them.
pub(super) struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<KeyText, E> {
                Ok(KeyText("?".into()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<KeyText, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText("?".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<KeyText, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText("?".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = s.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<Spanned<KeyText>>()? {
                    let key = Spanned::new(k.value.0, k.referenced, k.defined);
                    entries.push((key, m.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn pos(loc: &Location) -> Option<Pos> {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (loc.line() > 0).then(|| (clamp(loc.line()), clamp(loc.column())))
}

impl Index {
    /// Fails only when the text is not valid YAML.
    pub(super) fn build(text: &str) -> Result<Index, serde_saphyr::Error> {
        let mut options = serde_saphyr::Options::default();
        // Keep both copies of a duplicated key, so the error can say where the first one is.
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        let root: Option<Spanned<Node>> = serde_saphyr::from_str_with_options(text, options)?;
        let mut index = Index::default();
        if let Some(root) = root {
            index.walk(&root.value, "");
        }
        Ok(index)
    }

    pub(super) fn walk(&mut self, node: &Node, path: &str) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let child = join_key(path, &k.value);
                    if let (Some(key), Some(value)) = (pos(&k.referenced), pos(&v.referenced)) {
                        self.entries.push(Entry {
                            path: child.clone(),
                            key: Some(key),
                            value,
                        });
                    }
                    self.walk(&v.value, &child);
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    if let Some(value) = pos(&v.referenced) {
                        self.entries.push(Entry {
                            path: child.clone(),
                            key: None,
                            value,
                        });
                    }
                    self.walk(&v.value, &child);
                }
            }
            Node::Scalar => {}
        }
    }

    pub(super) fn by_path(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    pub(super) fn by_key_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == Some(at))
    }

    /// The key a parser error at `at` is about: the outermost value starting there (a mapping
    /// where a list belongs starts at its first key), else the key there, else the last key or
    /// item before it.
    pub(super) fn by_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.value == at)
            .or_else(|| self.by_key_pos(at))
            .or_else(|| {
                self.entries
                    .iter()
                    .rev()
                    .find(|e| e.key.unwrap_or(e.value) <= at)
            })
    }
}

/// For a syntax error, the enclosing key as far as the text before the bad line shows it: the
/// last key left of the error column.
pub(super) fn syntax_context(text: &str, at: Pos) -> Option<String> {
    let before: Vec<&str> = text
        .lines()
        .take(usize::try_from(at.0).ok()?.saturating_sub(1))
        .collect();
    let index = Index::build(&before.join("\n")).ok()?;
    index
        .entries
        .iter()
        .rev()
        .find(|e| e.key.unwrap_or(e.value).1 < at.1)
        .map(|e| e.path.clone())
}

/// The scalar text at `loc`, for "found `maybe`" in messages.
pub(super) fn found_text(text: &str, loc: &Location) -> Option<String> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let s = text
        .get(start..start.checked_add(len)?)?
        .lines()
        .next()?
        .trim();
    let collection =
        s.starts_with(['[', '{', '|', '>', '&', '*', '!']) || s == "-" || s.starts_with("- ");
    if s.is_empty() || collection {
        return None;
    }
    let short: String = s.chars().take(40).collect();
    Some(if short.len() < s.len() {
        format!("{}…", quote(&short))
    } else {
        quote(s)
    })
}

/// Friendlier words for serde-saphyr's "expected ..." phrases.
pub(super) fn expected_words(expected: &str) -> String {
    match expected {
        "sequence start" => "a list (`[a, b]`, or one `- item` per line)".into(),
        "mapping start" => "a mapping (`key: value` lines)".into(),
        "string scalar" => "a string".into(),
        other => other.into(),
    }
}

/// Friendlier words for serde's names of what was found.
pub(super) fn unexpected_words(unexpected: &str) -> String {
    match unexpected {
        "unit value" => "nothing (null)".into(),
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        other => other.into(),
    }
}

/// Friendlier words for the Rust type named in serde-saphyr's "invalid u64".
pub(super) fn type_words(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "bool" | "boolean" => "true or false".into(),
        other => format!("a value of type {other}"),
    }
}

/// Turns a serde-saphyr error into a [`ConfigError`]. With `index`, the error came from
/// deserialising valid YAML; without, the YAML itself is broken.
pub(super) fn yaml_error(
    err: &serde_saphyr::Error,
    text: &str,
    file: &str,
    index: Option<&Index>,
) -> ConfigError {
    use serde_saphyr::Error as E;
    let mut inner = err;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    let loc = err.location().filter(|l| l.line() > 0);
    let at = loc.as_ref().and_then(pos);
    let found = loc.as_ref().and_then(|l| found_text(text, l));
    let mut key = None;
    let mut suggestion = None;
    let (kind, mut message) = match inner {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            key = index
                .zip(at)
                .and_then(|(ix, at)| ix.by_key_pos(at))
                .map(|e| e.path.clone())
                .or_else(|| Some(join_key("", field)));
            suggestion = nearest(field, expected.iter().copied()).map(str::to_string);
            let mut msg = "unknown key".to_string();
            if suggestion.is_none() {
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
                if let Some(k) = nearest(field, other_keys.iter().copied())
                    .or_else(|| other_keys.iter().copied().find(|k| *k == field))
                {
                    msg.push_str(&format!("; `{k}` is {other}"));
                } else {
                    msg.push_str(&format!("; valid keys: {}", expected.join(", ")));
                }
            }
            (ConfigErrorKind::UnknownKey, msg)
        }
        E::DuplicateMappingKey { .. } => {
            let here = index
                .zip(at)
                .and_then(|(ix, at)| ix.by_key_pos(at).map(|e| (ix, e)));
            let mut msg = "duplicate key".to_string();
            if let Some((ix, entry)) = here {
                key = Some(entry.path.clone());
                if let Some(first) = ix.by_path(&entry.path).filter(|f| f.key != entry.key) {
                    let line = first.key.unwrap_or(first.value).0;
                    msg.push_str(&format!("; first set on line {line}"));
                }
            }
            (ConfigErrorKind::DuplicateKey, msg)
        }
        E::Message { msg, .. } => (ConfigErrorKind::InvalidValue, msg.clone()),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            ConfigErrorKind::WrongType,
            format!(
                "expected {expected}, found {}",
                unexpected_words(unexpected)
            ),
        ),
        E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            ConfigErrorKind::InvalidValue,
            format!("expected {expected}, found {unexpected}"),
        ),
        E::InvalidBooleanStrict { .. } => (
            ConfigErrorKind::WrongType,
            with_found("expected true or false", &found),
        ),
        E::InvalidScalar { ty, .. } => (
            ConfigErrorKind::WrongType,
            with_found(&format!("expected {}", type_words(ty)), &found),
        ),
        E::NullIntoString { .. } => (
            ConfigErrorKind::WrongType,
            "expected a value, found nothing; write \"\" for an empty string".into(),
        ),
        E::Unexpected { expected, .. } => (
            ConfigErrorKind::WrongType,
            with_found(&format!("expected {}", expected_words(expected)), &found),
        ),
        other => {
            let msg = DefaultMessageFormatter.format_message(other).into_owned();
            if index.is_some() {
                (ConfigErrorKind::WrongType, msg)
            } else {
                (ConfigErrorKind::Syntax, syntax_message(&msg))
            }
        }
    };
    let mut at = at;
    if key.is_none() {
        key = match (index, at) {
            (Some(ix), Some(here)) => ix.by_pos(here).map(|e| {
                // Some value errors point at the key; the value is what needs fixing.
                if e.key == Some(here) {
                    at = Some(e.value);
                }
                e.path.clone()
            }),
            (None, Some(here)) => syntax_context(text, here),
            _ => None,
        };
    }
    match key.as_deref() {
        None if kind == ConfigErrorKind::WrongType && at == Some((1, 1)) => {
            message = "the file must be a mapping of settings (`key: value` lines)".into();
        }
        Some(k) if kind == ConfigErrorKind::WrongType => {
            let setting = k
                .strip_prefix("plugins.")
                .filter(|s| PLUGIN_KEYS.contains(s));
            if let Some(setting) = setting {
                message.push_str(&format!(
                    "; `{setting}` is a plugin setting: put it under `plugins: <name>:`"
                ));
            }
        }
        _ => {}
    }
    ConfigError {
        file: file.to_string(),
        line: at.map(|p| p.0),
        column: at.map(|p| p.1),
        key,
        kind,
        message,
        suggestion,
    }
}

pub(super) fn with_found(msg: &str, found: &Option<String>) -> String {
    match found {
        Some(f) => format!("{msg}, found {f}"),
        None => msg.to_string(),
    }
}

/// A parser message with a hint about the usual cause.
pub(super) fn syntax_message(msg: &str) -> String {
    let hint = if msg.contains("did not find expected key")
        || msg.contains("did not find expected '-'")
    {
        "; check that this line is indented like the other entries of its block"
    } else if msg.contains("mapping values are not allowed") {
        "; a key may not follow a plain value on the same line or be indented under one, and a value containing `: ` must be quoted"
    } else if msg.contains("unclosed") {
        "; close it or quote the value"
    } else if msg.contains("illegal placement of ':'") {
        "; look for an unclosed `[` or `{` above, or quote a value containing `:`"
    } else if msg.contains("multiple YAML documents") {
        return "the file must hold a single YAML document; remove the second `---`".into();
    } else {
        ""
    };
    format!("YAML syntax error: {msg}{hint}")
}
