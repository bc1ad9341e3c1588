//! serde-saphyr errors in the launcher's words: unknown keys, wrong types, syntax errors, duplicate keys, and the one-line display.

use super::*;

#[test]
fn unknown_key_in_plugin_matches_the_documented_format() {
    // Line 7, column 5, as in the documented example.
    let text = "loglevel: info\nautostart:\n  - zwave\n\nplugins:\n  zwave:\n    stopTimout: 5s\n";
    let e = err(text);
    assert_eq!(
        e.to_string(),
        "/home/x/config/launcher.yaml:7:5: plugins.zwave.stopTimout: unknown key; did you mean `stopTimeout`?"
    );
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.suggestion.as_deref(), Some("stopTimeout"));
    assert_eq!((e.line, e.column), (Some(7), Some(5)));
}

#[test]
fn unknown_keys_at_top_level() {
    let e = assert_err(
        "loglevel: info\nautostrat:\n  - a\n",
        2,
        "autostrat",
        &["unknown key", "did you mean `autostart`?"],
    );
    assert_eq!(e.column, Some(1));
    assert_eq!(e.suggestion.as_deref(), Some("autostart"));
    assert_err(
        "ready_timeout: 5s\n",
        1,
        "ready_timeout",
        &["did you mean `readyTimeout`?"],
    );
    assert_err(
        "serverUrl: mqtt://x\n",
        1,
        "serverUrl",
        &["did you mean `serverURL`?"],
    );
    assert_err(
        "createplugincreds: true\n",
        1,
        "createplugincreds",
        &["`createPluginCred`"],
    );
    let e = assert_err(
        "colour: blue\n",
        1,
        "colour",
        &["unknown key; valid keys: id, loglevel"],
    );
    assert_eq!(e.suggestion, None);
    assert_err(
        "stopTimeout: 5s\n",
        1,
        "stopTimeout",
        &["is a plugin setting", "plugins:"],
    );
    assert_err(
        "plugins:\n  a:\n    autorestart: true\n",
        3,
        "plugins.a.autorestart",
        &["launcher-wide setting"],
    );
    assert_err(
        "plugins:\n  a:\n    env: {}\n    waitready: true\n",
        4,
        "plugins.a.waitready",
        &["did you mean `waitReady`?"],
    );
}

#[test]
fn wrong_types() {
    let e = assert_err(
        "id: x\nlogtofile: maybe\n",
        2,
        "logtofile",
        &["expected true or false", "`maybe`"],
    );
    assert_eq!(e.kind, ConfigErrorKind::WrongType);
    assert_eq!(e.column, Some(12));
    assert_err(
        "autostart: 5\n",
        1,
        "autostart",
        &["expected a list", "found `5`"],
    );
    assert_err(
        "autostart: heartbeat\n",
        1,
        "autostart",
        &["expected a list", "`heartbeat`"],
    );
    assert_err(
        "autostart:\n  - a\n  - [b]\n",
        3,
        "autostart[1]",
        &["expected"],
    );
    assert_err("plugins: [a, b]\n", 1, "plugins", &["expected a mapping"]);
    assert_err(
        "plugins:\n  zwave:\n    - a\n",
        3,
        "plugins.zwave",
        &["expected a mapping"],
    );
    assert_err(
        "plugins:\n  zwave:\n    args: --x\n",
        3,
        "plugins.zwave.args",
        &["expected a list"],
    );
    assert_err(
        "plugins:\n  zwave:\n    env:\n      A:\n",
        4,
        "plugins.zwave.env.A",
        &["write \"\""],
    );
    assert_err(
        "plugins:\n  zwave:\n    waitReady: sure\n",
        3,
        "plugins.zwave.waitReady",
        &["true or false"],
    );
    assert_err("id:\n", 1, "id", &["expected a value"]);
    let e = err("- a\n- b\n");
    assert_eq!(e.line, Some(1));
    assert!(e.to_string().contains("must be a mapping"), "{e}");
}

#[test]
fn syntax_errors() {
    let e = err("plugins:\n  zwave:\n    args: [a]\n   stopTimeout: 4\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_eq!(e.line, Some(4));
    assert_eq!(e.key.as_deref(), Some("plugins.zwave"));
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}:4:4: plugins.zwave: invalid YAML")),
        "{shown}"
    );
    assert!(shown.contains("indented"), "{shown}");

    let e = err("logtofile: true\nautostart: [a, b\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert!(e.line.is_some(), "{e}");
    assert!(e.to_string().starts_with(&format!("{FILE}:")), "{e}");

    let e = err("id: 'launcher\n");
    assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, Some(1)));
    assert!(e.to_string().contains("unclosed"), "{e}");

    let e = err("id: a: b\n");
    assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, Some(1)));
    assert!(e.to_string().contains("must be quoted"), "{e}");

    let e = err("autostart:\n  - a\n  b: 1\n");
    assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, Some(3)));
    assert_eq!(e.key.as_deref(), Some("autostart"));
}

#[test]
fn duplicate_mapping_keys() {
    let e = assert_err(
        "logtofile: true\ncore: hubcore\nlogtofile: false\n",
        3,
        "logtofile",
        &["duplicate key", "first set on line 1"],
    );
    assert_eq!(e.kind, ConfigErrorKind::DuplicateKey);
    assert_err(
        "plugins:\n  a:\n    waitReady: true\n  a:\n    waitReady: false\n",
        4,
        "plugins.a",
        &["duplicate key", "first set on line 2"],
    );
    assert_err(
        "plugins:\n  a:\n    stopTimeout: 1s\n    stopTimeout: 2s\n",
        4,
        "plugins.a.stopTimeout",
        &["duplicate key", "line 3"],
    );
    assert_err(
        "plugins:\n  a:\n    env:\n      X: 1\n      X: 2\n",
        5,
        "plugins.a.env.X",
        &["duplicate key", "line 4"],
    );
}

#[test]
fn display_is_one_line_even_for_hostile_input() {
    let e = err("autostart:\n  - \"a\\nb\"\n");
    let shown = e.to_string();
    assert!(!shown.contains('\n'), "{shown:?}");
    assert!(shown.contains("a\\nb"), "{shown}");
    let e = ConfigError {
        file: "f".into(),
        line: None,
        column: Some(3),
        key: None,
        kind: ConfigErrorKind::Io,
        message: "x\ny".into(),
        suggestion: None,
    };
    assert_eq!(e.to_string(), "f: x\\ny");
}

#[test]
fn wrong_type_in_a_block_mapping_names_the_key_not_its_parent() {
    // serde reports these at the key, which is also where the parent's value starts.
    let e = assert_err(
        "core: hubcore\nautostart: [yesplugin]\nplugins:\n  yesplugin:\n    stopTimeout: [2]\n",
        5,
        "plugins.yesplugin.stopTimeout",
        &["expected a duration", "found a list"],
    );
    assert_eq!(e.column, Some(18));
    let e = assert_err(
        "backoff:\n  base: [1]\n",
        2,
        "backoff.base",
        &["expected a duration"],
    );
    assert_eq!(e.column, Some(9));
    assert_err(
        "backoff: {base: [1]}\n",
        1,
        "backoff.base",
        &["expected a duration"],
    );
    assert_err(
        "plugins:\n  a:\n    stopTimeout: 5x\n",
        3,
        "plugins.a.stopTimeout",
        &["invalid duration `5x`"],
    );
    assert_err(
        "plugins:\n  a:\n    restart: [always]\n",
        3,
        "plugins.a.restart",
        &["found a list"],
    );
    assert_err(
        "plugins:\n  a:\n    stopTimeout:\n      s: 1\n",
        4,
        "plugins.a.stopTimeout",
        &["found a mapping"],
    );
    // Where any scalar would do, the key says which.
    assert_err(
        "plugins:\n  a:\n    waitReady: [2]\n",
        3,
        "plugins.a.waitReady",
        &["expected true or false, found a list"],
    );
    assert_err(
        "backoff:\n  factor: [1]\n",
        2,
        "backoff.factor",
        &["expected a number, found a list"],
    );
    // A mapping where a list belongs is still the list's key.
    assert_err("autostart:\n  a: 1\n", 2, "autostart", &["expected a list"]);
}

#[test]
fn keys_are_named_as_written() {
    // `y` and `on` read as booleans in YAML 1.1, but a plugin's name is text.
    assert_err(
        "plugins:\n  y:\n    sandbox:\n      read: 5\n",
        4,
        "plugins.y.sandbox.read",
        &["expected a list"],
    );
    assert_err(
        "plugins:\n  on:\n    stopTimeout: 0\n",
        3,
        "plugins.on.stopTimeout",
        &["greater than 0"],
    );
}

#[test]
fn syntax_error_names_the_key_on_the_broken_line() {
    let e = assert_err(
        "core: hubcore\nautostart: [a, b\n",
        2,
        "autostart",
        &["invalid YAML", "unclosed bracket"],
    );
    assert_eq!(e.column, Some(12));
    // The parser only notices later; the error goes back to where the list opens.
    let e = assert_err(
        "core: hubcore\nautostart: [a, b\nplugins:\n  a: {}\n",
        2,
        "autostart",
        &["invalid YAML", "at line 3, column 8", "is its `]` missing?"],
    );
    assert_eq!(e.column, Some(12));
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_err(
        "core: hubcore\nplugins:\n  a: {args: [x, y}\n  b: {}\n",
        3,
        "plugins.a",
        &["invalid YAML"],
    );
    assert_err("core: hubcore\nid: a: b\n", 2, "id", &["must be quoted"]);
    // A list that spans lines and is closed is no unclosed bracket.
    let e = err("autostart: [a,\n  b]\nplugins:\n  a: {args: [x}\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(!e.to_string().contains("missing"), "{e}");
    // Brackets in quotes and comments do not count.
    let e = err("id: \"[x\" # {\nautostart: [a\nplugins: {}\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("autostart")),
        "{e}"
    );
}

#[test]
fn error_lines_say_error_only_once() {
    for text in [
        "autostart: [a\n",
        "id: 'x\n",
        "plugins:\n  a:\n    args: [a]\n   stopTimeout: 4\n",
    ] {
        let shown = err(text).to_string();
        assert!(!shown.contains("error"), "{shown}");
    }
}
