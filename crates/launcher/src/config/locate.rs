//! Where in the text a key or value is: the YAML document read into [`Spanned`] nodes and
//! flattened into an [`Index`] of key paths, so that an error can go from a position to a key
//! path (parser and type errors) and from a key path to a position (broken rules).

use super::hints::{item_key, join_key, quote};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// Line and column, 1-based.
pub(super) type Pos = (u32, u32);

/// One key or list item of the document.
#[derive(Debug)]
pub(super) struct Entry {
    /// Key path, rendered like [`ConfigError::key`](super::ConfigError::key).
    pub(super) path: String,
    /// Where the key is; `None` for list items.
    pub(super) key: Option<Pos>,
    /// Where the value starts (for a block mapping: its first key).
    pub(super) value: Pos,
}

impl Entry {
    /// The key, or for a list item its value: where the entry starts.
    pub(super) fn start(&self) -> Pos {
        self.key.unwrap_or(self.value)
    }
}

/// Every key and list item in document order, built from [`Spanned`] nodes so that errors can
/// go from a position to a key path and back.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: Vec<Entry>,
}

/// A YAML node of any shape, with the positions of everything inside it.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    /// A scalar, with its text when it has one that can name a key.
    Scalar(Option<String>),
}

impl Node {
    /// The node as a mapping key: a scalar's text; complex keys (`? [a, b]`) get a placeholder
    /// so the index can still be built and the real parse reports them.
    fn into_key(self) -> String {
        match self {
            Node::Scalar(Some(text)) => text,
            _ => "?".into(),
        }
    }
}

/// Visitor methods that keep a scalar's text, one for each scalar type serde-saphyr reports.
macro_rules! scalar_text {
    ($($method:ident($ty:ty)),+ $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Node, E> {
                Ok(Node::Scalar(Some(v.to_string())))
            }
        )+
    };
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            scalar_text!(
                visit_bool(bool),
                visit_i64(i64),
                visit_u64(u64),
                visit_i128(i128),
                visit_u128(u128),
                visit_f64(f64),
                visit_str(&str),
            );
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar(Some("null".into())))
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar(None))
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
                while let Some(k) = m.next_key::<Spanned<Node>>()? {
                    let key = Spanned::new(k.value.into_key(), k.referenced, k.defined);
                    entries.push((key, m.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The 1-based position of `loc`, if it has one.
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

    /// Indexes what is under `node`, whose key path is `path`.
    fn walk(&mut self, node: &Node, path: &str) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let spot = pos(&k.referenced).zip(pos(&v.referenced));
                    let spot = spot.map(|(key, value)| (Some(key), value));
                    self.add(join_key(path, &k.value), spot, &v.value);
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let spot = pos(&v.referenced).map(|value| (None, value));
                    self.add(item_key(path, i), spot, &v.value);
                }
            }
            Node::Scalar(_) => {}
        }
    }

    /// Indexes one key or list item at `spot` (key and value positions), when it has one, and
    /// then what is under it.
    fn add(&mut self, path: String, spot: Option<(Option<Pos>, Pos)>, node: &Node) {
        if let Some((key, value)) = spot {
            self.entries.push(Entry {
                path: path.clone(),
                key,
                value,
            });
        }
        self.walk(node, &path);
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
            .or_else(|| self.entries.iter().rev().find(|e| e.start() <= at))
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
        .find(|e| e.start().1 < at.1)
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
