//! The shared reading of a config file, on a small made-up schema: key paths and positions,
//! the words of each kind of error, the one-line display, and the [`Wording`] hooks. Each
//! binary's own wording is tested in its crate.

use super::*;
use serde::Deserialize;

const FILE: &str = "/h/config/demo.yaml";

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Demo {
    name: String,
    max_count: u32,
    enabled: bool,
    tags: Vec<String>,
    inner: Inner,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Inner {
    level: u32,
}

/// The defaults only.
struct Plain;
impl Wording for Plain {}

/// Every hook changed, to see that each one is used where it belongs.
struct Custom;
impl Wording for Custom {
    fn unknown_key_hint(&self, field: &str, _expected: &[&str]) -> String {
        format!("; `{field}` is not a demo setting")
    }
    fn scalar_words(&self, key: &str) -> &'static str {
        if key == "maxCount" {
            "a count"
        } else {
            "a single value"
        }
    }
    fn names_wrong_collection(&self) -> bool {
        true
    }
    fn wrong_type_hint(&self, key: &str) -> String {
        format!("; see the docs of `{key}`")
    }
}

fn parse_with(text: &str, wording: &dyn Wording) -> Result<(Option<Demo>, Index), ConfigError> {
    parse(text, FILE, wording)
}

fn err(text: &str) -> ConfigError {
    match parse_with(text, &Plain) {
        Ok((v, _)) => panic!("expected an error for {text:?}, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn empty_text_is_none_and_values_are_read() {
    assert!(parse_with("# nothing\n", &Plain).unwrap().0.is_none());
    let (v, index) =
        parse_with("name: a\ntags:\n  - x\n  - y\ninner: {level: 2}\n", &Plain).unwrap();
    let v = v.unwrap();
    assert_eq!((v.name.as_str(), v.tags.len(), v.inner.level), ("a", 2, 2));
    let at = |path: &str| index.by_path(path).map(|e| (e.key, e.value));
    assert_eq!(at("name"), Some((Some((1, 1)), (1, 7))));
    assert_eq!(at("tags[1]"), Some((None, (4, 5))));
    assert_eq!(at("inner.level"), Some((Some((5, 9)), (5, 16))));
    assert!(index.by_path("nope").is_none());
}

#[test]
fn keys_are_indexed_as_written() {
    // `on` and `0x10` parse as a boolean and a number (16); a key path shows the text.
    let index = Index::build("on: 1\n0x10: x\n\"a b\": 2\nlist: [p, q]\n").unwrap();
    assert_eq!(index.by_path("on").map(|e| e.start()), Some((1, 1)));
    assert_eq!(index.by_path("0x10").map(|e| e.start()), Some((2, 1)));
    assert_eq!(index.by_path("\"a b\"").map(|e| e.start()), Some((3, 1)));
    assert_eq!(index.by_path("list[1]").map(|e| e.start()), Some((4, 11)));
    assert_eq!(
        index.by_pos((4, 12)).map(|e| e.path.as_str()),
        Some("list[1]")
    );
    // An empty key is null, and named so.
    let index = Index::build(": 1\n").unwrap();
    assert_eq!(index.by_path("null").map(|e| e.start()), Some((1, 1)));
}

#[test]
fn unknown_key_names_the_nearest_or_the_valid_keys() {
    let e = err("name: a\nmax_cont: 3\n");
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(
        e.to_string(),
        "/h/config/demo.yaml:2:1: max_cont: unknown key; did you mean `maxCount`?"
    );
    let e = err("inner:\n  levle: 1\n");
    assert_eq!(
        e.to_string(),
        "/h/config/demo.yaml:2:3: inner.levle: unknown key; did you mean `level`?"
    );
    let e = err("colour: blue\n");
    assert_eq!(e.suggestion, None);
    assert_eq!(
        e.to_string(),
        "/h/config/demo.yaml:1:1: colour: unknown key; valid keys: name, maxCount, enabled, tags, inner"
    );
    let e = parse_with("colour: blue\n", &Custom).unwrap_err();
    assert_eq!(e.message, "unknown key; `colour` is not a demo setting");
}

#[test]
fn duplicate_key_names_the_line_of_the_first() {
    let e = err("name: a\nenabled: true\nname: b\n");
    assert_eq!(e.kind, ConfigErrorKind::DuplicateKey);
    assert_eq!(
        e.to_string(),
        "/h/config/demo.yaml:3:1: name: duplicate key; first set on line 1"
    );
}

#[test]
fn wrong_type_names_the_key_and_the_value() {
    let e = err("inner:\n  level: many\n");
    assert_eq!(e.kind, ConfigErrorKind::WrongType);
    assert_eq!(
        e.to_string(),
        "/h/config/demo.yaml:2:10: inner.level: expected a whole number (0 or more), found `many`"
    );
    let e = err("enabled: maybe\n");
    assert_eq!(e.message, "expected true or false, found `maybe`");
    let e = err("name:\n  a: 1\n");
    assert_eq!(e.key.as_deref(), Some("name"), "{e}");
    assert_eq!(e.message, "expected a single value, found a mapping");
    let e = err("name:\n  a:\n    b: 1\n");
    assert_eq!(e.message, "expected a single value, found a mapping");
    // A long value is cut, so the line stays readable.
    let e = err(&format!("maxCount: {}\n", "9".repeat(60)));
    assert_eq!(
        e.message,
        format!(
            "expected a whole number (0 or more), found `{}`…",
            "9".repeat(40)
        )
    );
    let e = err("tags: {a: 1}\n");
    assert_eq!(
        e.message,
        "expected a list (`[a, b]`, or one `- item` per line)"
    );
    let e = err("inner: [1]\n");
    assert_eq!(e.message, "expected a mapping (`key: value` lines)");
    let e = parse_with("inner: [1]\n", &Custom).unwrap_err();
    assert_eq!(
        e.message,
        "expected a mapping (`key: value` lines), found a list; see the docs of `inner`"
    );
    let e = parse_with("maxCount: [1]\n", &Custom).unwrap_err();
    assert_eq!(
        e.message,
        "expected a count, found a list; see the docs of `maxCount`"
    );
    let e = err("[1, 2]\n");
    assert_eq!(
        e.to_string(),
        "/h/config/demo.yaml:1:1: the file must be a mapping of settings (`key: value` lines)"
    );
}

#[test]
fn syntax_errors_name_the_key_they_are_about() {
    let e = err("name: a\ntags: [x, y\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_eq!(e.key.as_deref(), Some("tags"), "{e}");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    // Noticed only on a later line: the error goes back to the open bracket.
    let e = err("name: a\ninner: {level: [1, 2]\nenabled: true\n");
    assert_eq!(e.key.as_deref(), Some("inner"), "{e}");
    assert_eq!((e.line, e.column), (Some(2), Some(8)), "{e}");
    assert!(e.message.ends_with("is its `}` missing?"), "{e}");
    let e = err("name: a\n---\nname: b\n");
    assert_eq!(
        e.message,
        "the file must hold a single YAML document; remove the second `---`"
    );
}

#[test]
fn display_is_one_line_with_what_is_known() {
    let e = err("name: \"a\\nb\"\nnme: x\n");
    assert!(!e.to_string().contains('\n'), "{e}");
    let mut e = ConfigError::new("f", ConfigErrorKind::Io, "x\ny");
    assert_eq!(e.to_string(), "f: x\\ny");
    e.column = Some(3);
    assert_eq!(e.to_string(), "f: x\\ny", "no column without a line");
    let e = ConfigError {
        key: Some("a.b".into()),
        suggestion: Some("c".into()),
        ..ConfigError::new("", ConfigErrorKind::InvalidValue, "bad")
    };
    assert_eq!(e.to_string(), "a.b: bad; did you mean `c`?");
    let e = ConfigError::new("", ConfigErrorKind::Syntax, "bad").at(Some((4, 2)));
    assert_eq!(e.to_string(), "line 4:2: bad");
}

#[test]
fn nearest_allows_about_one_edit_in_four_letters() {
    let keys = ["autostart", "readyTimeout", "logMaxFiles", "id"];
    assert_eq!(nearest("autostrat", keys), Some("autostart"));
    assert_eq!(nearest("ready_timeout", keys), Some("readyTimeout"));
    assert_eq!(nearest("LOGMAXFILES", keys), Some("logMaxFiles"));
    assert_eq!(nearest("ix", keys), Some("id"));
    assert_eq!(nearest("id", keys), None, "not itself");
    assert_eq!(nearest("zzz", keys), None);
    assert_eq!(
        did_you_mean("autostrt", keys),
        "; did you mean `autostart`?"
    );
    assert_eq!(did_you_mean("zzz", keys), "");
}

#[test]
fn key_paths_and_quotes() {
    assert_eq!(join_key("", "a"), "a");
    assert_eq!(join_key("plugins", "z-wave_1"), "plugins.z-wave_1");
    assert_eq!(join_key("plugins", "a.b"), "plugins.\"a.b\"");
    assert_eq!(join_key("env", ""), "env.\"\"");
    assert_eq!(item_key("autostart", 2), "autostart[2]");
    assert_eq!(quote("a\nb`"), "`a\\nb``");
}

#[test]
fn read_gives_defaults_only_for_the_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let parse_demo = |text: &str, file: &str| {
        parse::<Demo>(text, file, &Plain).map(|(v, _)| v.unwrap_or_default())
    };
    assert_eq!(read(&missing, false, parse_demo), Ok(Demo::default()));
    let e = read(&missing, true, parse_demo).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no such file; a config file named explicitly must exist (only the default one may be absent)",
            missing.display()
        )
    );
    let file = dir.path().join("demo.yaml");
    std::fs::write(&file, "maxCount: 4\n").unwrap();
    assert_eq!(read(&file, true, parse_demo).unwrap().max_count, 4);
    let e = read(dir.path(), false, parse_demo).unwrap_err();
    assert!(e.message.starts_with("cannot read the file: "), "{e}");
}
