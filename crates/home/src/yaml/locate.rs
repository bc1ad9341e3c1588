//! Where in the text a key or value is: the YAML document read into [`Spanned`] nodes and
//! flattened into an [`Index`] of key paths, so that an error can go from a position to a key
//! path (parser and type errors) and from a key path to a position (broken rules).

use super::hints::{item_key, join_key, quote};
use super::Pos;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// One key or list item of the document.
#[derive(Debug)]
pub struct Entry {
    /// Key path, rendered like [`ConfigError::key`](super::ConfigError::key).
    pub path: String,
    /// Where the key is; `None` for list items.
    pub key: Option<Pos>,
    /// Where the value starts (for a block mapping: its first key).
    pub value: Pos,
}

impl Entry {
    /// The key, or for a list item its value: where the entry starts.
    pub fn start(&self) -> Pos {
        self.key.unwrap_or(self.value)
    }
}

/// Every key and list item in document order, built from [`Spanned`] nodes so that errors can
/// go from a position to a key path and back.
#[derive(Debug, Default)]
pub struct Index {
    entries: Vec<Entry>,
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

/// A plain (unquoted) key as written: the parsed value of `y`, `on` or `1.0` is a boolean or a
/// number, but the config reads every key as text.
fn plain_key<'t>(text: &'t str, loc: &Location) -> Option<&'t str> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let raw = text.get(start..start.checked_add(len)?)?.trim();
    let plain = !raw.is_empty()
        && !raw.contains('\n')
        && !raw.starts_with(['\'', '"', '?', '[', '{', '&', '*', '!', '|', '>']);
    plain.then_some(raw)
}

/// The 1-based position of `loc`, if it has one.
pub(super) fn pos(loc: &Location) -> Option<Pos> {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (loc.line() > 0).then(|| (clamp(loc.line()), clamp(loc.column())))
}

impl Index {
    /// Fails only when the text is not valid YAML.
    pub fn build(text: &str) -> Result<Index, serde_saphyr::Error> {
        let mut options = serde_saphyr::Options::default();
        // Keep both copies of a duplicated key, so the error can say where the first one is.
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        let root: Option<Spanned<Node>> = serde_saphyr::from_str_with_options(text, options)?;
        let mut index = Index::default();
        if let Some(root) = root {
            index.walk(text, &root.value, "");
        }
        Ok(index)
    }

    /// Indexes what is under `node`, whose key path is `path`.
    fn walk(&mut self, text: &str, node: &Node, path: &str) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let spot = pos(&k.referenced).zip(pos(&v.referenced));
                    let spot = spot.map(|(key, value)| (Some(key), value));
                    let name = plain_key(text, &k.referenced).unwrap_or(&k.value);
                    self.add(text, join_key(path, name), spot, &v.value);
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let spot = pos(&v.referenced).map(|value| (None, value));
                    self.add(text, item_key(path, i), spot, &v.value);
                }
            }
            Node::Scalar(_) => {}
        }
    }

    /// Indexes one key or list item at `spot` (key and value positions), when it has one, and
    /// then what is under it.
    fn add(&mut self, text: &str, path: String, spot: Option<(Option<Pos>, Pos)>, node: &Node) {
        if let Some((key, value)) = spot {
            self.entries.push(Entry {
                path: path.clone(),
                key,
                value,
            });
        }
        self.walk(text, node, &path);
    }

    /// The entry of the key path `path`, such as `plugins.zwave.stopTimeout`.
    pub fn by_path(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The entry whose key is at `at`.
    pub fn by_key_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == Some(at))
    }

    /// The key a parser error at `at` is about: the outermost value starting there (a mapping
    /// where a list belongs starts at its first key), else the key there, else the last key or
    /// item before it.
    pub fn by_pos(&self, at: Pos) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.value == at)
            .or_else(|| self.by_key_pos(at))
            .or_else(|| self.entries.iter().rev().find(|e| e.start() <= at))
    }
}

/// For a syntax error at `at`, the key it is about as far as the text before the error shows
/// it: the last key left of the error column, on the error's own line (the key whose value is
/// broken) or above it (the block the line belongs to).
pub(super) fn syntax_context(text: &str, at: Pos) -> Option<String> {
    let line = usize::try_from(at.0).ok()?.saturating_sub(1);
    let column = usize::try_from(at.1).ok()?.saturating_sub(1);
    let lines: Vec<&str> = text.lines().collect();
    let before = lines.get(..line.min(lines.len()))?.join("\n");
    let left: String = lines
        .get(line)
        .map(|l| l.chars().take(column).collect())
        .unwrap_or_default();
    // Before the first `[` or `{` of the error line still open at the error.
    let flow_start = open_flows(text, at)
        .into_iter()
        .find(|(p, _)| p.0 == at.0)
        .and_then(|(p, _)| usize::try_from(p.1).ok())
        .map(|col| left.chars().take(col - 1).collect::<String>());
    // The error line up to the error, when that much of it still parses; else up to the
    // collection it is in; else the lines above.
    let mut candidates = vec![format!("{before}\n{left}")];
    candidates.extend(flow_start.map(|l| format!("{before}\n{l}")));
    candidates.push(before);
    candidates
        .iter()
        .find_map(|candidate| Index::build(candidate).ok())?
        .entries
        .iter()
        .rev()
        .find(|e| e.start().1 < at.1)
        .map(|e| e.path.clone())
}

/// The innermost flow collection (`[...]` or `{...}`) still open at `at`: where it opens and
/// the bracket that would close it.
pub(super) fn open_flow(text: &str, at: Pos) -> Option<(Pos, char)> {
    open_flows(text, at).pop()
}

/// The flow collections (`[...]` or `{...}`) still open at `at`, outermost first: where each
/// opens and the bracket that would close it. Quotes and comments are skipped; block scalars
/// are not recognised, which only costs a hint.
fn open_flows(text: &str, at: Pos) -> Vec<(Pos, char)> {
    let mut open: Vec<(Pos, char)> = Vec::new();
    for (n, line) in (1u32..).zip(text.lines()) {
        if n > at.0 {
            break;
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        let mut chars = (1u32..).zip(line.chars()).peekable();
        while let Some((col, c)) = chars.next() {
            if n == at.0 && col >= at.1 {
                break;
            }
            match quote {
                Some('\'') if c == '\'' => {
                    // `''` is an escaped quote inside single quotes.
                    if chars.peek().is_some_and(|(_, next)| *next == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => {
                    // Indicators count only where a token starts: `a[1]` is a plain scalar.
                    let token_start =
                        prev.is_whitespace() || (!open.is_empty() && "[{,:".contains(prev));
                    match c {
                        '#' if prev.is_whitespace() => break,
                        '\'' | '"' if token_start => quote = Some(c),
                        '[' if token_start => open.push(((n, col), ']')),
                        '{' if token_start => open.push(((n, col), '}')),
                        ']' | '}' if !open.is_empty() => {
                            open.pop();
                        }
                        _ => {}
                    }
                }
            }
            prev = c;
        }
    }
    open
}

/// "a list" or "a mapping" for a collection at `loc`, for "found ..." in messages.
pub(super) fn found_shape(text: &str, loc: &Location) -> Option<&'static str> {
    let start = usize::try_from(loc.span().byte_offset()?).ok()?;
    let rest = text.get(start..)?;
    let first_line = rest.lines().next()?.trim_end();
    if first_line.starts_with('[') || first_line == "-" || first_line.starts_with("- ") {
        Some("a list")
    } else if first_line.starts_with('{') || first_line.ends_with(':') || first_line.contains(": ")
    {
        Some("a mapping")
    } else {
        None
    }
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
