//! Value forms and value parsers: restart policies, log levels, durations, sizes, identifiers, typo suggestions.

use super::*;

#[test]
fn autorestart_bool_and_string_forms() {
    for (text, want) in [
        ("true", RestartPolicy::OnFailure),
        ("false", RestartPolicy::Never),
        ("never", RestartPolicy::Never),
        ("on-failure", RestartPolicy::OnFailure),
        ("always", RestartPolicy::Always),
        ("\"always\"", RestartPolicy::Always),
        ("Always", RestartPolicy::Always),
    ] {
        let cfg = parse(&format!("autorestart: {text}\n"), FILE).expect(text);
        assert_eq!(cfg.autorestart, want, "{text}");
    }
    let e = assert_err(
        "id: x\nautorestart: on_failure\n",
        2,
        "autorestart",
        &[
            "unknown restart policy `on_failure`",
            "did you mean `on-failure`?",
        ],
    );
    assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
    assert_eq!(e.column, Some(14));
    assert_err("autorestart: [always]\n", 1, "autorestart", &["expected"]);
}

#[test]
fn loglevel_is_normalised() {
    for (given, want) in [
        ("warning", "warn"),
        ("WARN", "warn"),
        ("Debug", "debug"),
        ("trace", "trace"),
    ] {
        let cfg = parse(&format!("loglevel: {given}\n"), FILE).expect(given);
        assert_eq!(cfg.loglevel, want);
    }
    assert_err(
        "loglevel: verbose\n",
        1,
        "loglevel",
        &["unknown log level `verbose`"],
    );
    assert_err("loglevel: inof\n", 1, "loglevel", &["did you mean `info`?"]);
}

#[test]
fn durations() {
    for (text, want) in [
        ("10s", Duration::from_secs(10)),
        ("500ms", Duration::from_millis(500)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("1.5s", Duration::from_millis(1500)),
        ("0.1s", Duration::from_millis(100)),
        (" 30 s ", Duration::from_secs(30)),
        ("45", Duration::from_secs(45)),
        ("0", Duration::ZERO),
        ("1.25m", Duration::from_secs(75)),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text:?}");
    }
    for bad in [
        "",
        "s",
        "5x",
        "10 seconds",
        "-5s",
        "1.5",
        "1..5s",
        "5s5",
        "1e3s",
        "99999999999999999999999h",
    ] {
        let e = parse_duration(bad).expect_err(bad);
        assert!(e.to_string().starts_with("invalid duration"), "{e}");
    }
    let cfg = parse(
        "readyTimeout: 45\nplugins:\n  a:\n    stopTimeout: 250ms\n",
        FILE,
    )
    .expect("valid");
    assert_eq!(cfg.ready_timeout, Duration::from_secs(45));
    assert_eq!(cfg.plugin("a").stop_timeout, Duration::from_millis(250));

    let e = assert_err(
        "plugins:\n  zwave:\n    stopTimeout: 5x\n",
        3,
        "plugins.zwave.stopTimeout",
        &["invalid duration `5x`", "10s"],
    );
    assert_eq!(e.column, Some(18));
    assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
    assert_err("readyTimeout: 1.5\n", 1, "readyTimeout", &["needs a unit"]);
    assert_err("readyTimeout: -3\n", 1, "readyTimeout", &["negative"]);
    assert_err("readyTimeout: 0s\n", 1, "readyTimeout", &["greater than 0"]);
    assert_err(
        "plugins:\n  zwave:\n    stopTimeout: 0\n",
        3,
        "plugins.zwave.stopTimeout",
        &["greater than 0"],
    );
}

#[test]
fn sizes() {
    for (text, want) in [
        ("10MB", 10_000_000),
        ("200MB", 200_000_000),
        ("512KB", 512_000),
        ("1GB", 1_000_000_000),
        ("1MiB", 1 << 20),
        ("1GiB", 1 << 30),
        ("64KiB", 64 << 10),
        ("1.5KiB", 1536),
        ("10mb", 10_000_000),
        ("2048", 2048),
        ("2048B", 2048),
        ("1 MB", 1_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(want), "{text:?}");
    }
    for bad in [
        "",
        "MB",
        "10XB",
        "10M",
        "1.5",
        "-1MB",
        "10 MBs",
        "99999999999TB",
    ] {
        let e = parse_size(bad).expect_err(bad);
        assert!(e.to_string().starts_with("invalid size"), "{e}");
    }
    let cfg = parse("logMaxSize: 2048\n", FILE).expect("valid");
    assert_eq!(cfg.log_max_size, 2048);
    assert_err(
        "logMaxSize: 10XB\n",
        1,
        "logMaxSize",
        &["invalid size `10XB`", "10MB"],
    );
    assert_err("logMaxSize: 100\n", 1, "logMaxSize", &["at least 1024"]);
    assert_err("logMaxFiles: 0\n", 1, "logMaxFiles", &["at least 1"]);
    assert_err(
        "logMaxFiles: -1\n",
        1,
        "logMaxFiles",
        &["whole number", "`-1`"],
    );
}

#[test]
fn invalid_identifiers() {
    let e = assert_err(
        "autostart:\n  - ok\n  - bad/name\n",
        3,
        "autostart[1]",
        &["invalid name `bad/name`"],
    );
    assert_eq!(e.column, Some(5));
    assert_err("id: -launcher\n", 1, "id", &["invalid name `-launcher`"]);
    assert_err("id: \"\"\n", 1, "id", &["must not be empty"]);
    let long = "x".repeat(65);
    assert_err(&format!("id: {long}\n"), 1, "id", &["longer than 64"]);
    let e = assert_err(
        "plugins:\n  ok:\n    waitReady: true\n  \"bad name\":\n    waitReady: true\n",
        4,
        "plugins.\"bad name\"",
        &["invalid plugin name"],
    );
    assert_eq!(e.column, Some(3));
    for ok in ["launcher-pi2", "zwave_js", "a.b", "_x", "9"] {
        assert_eq!(check_id(ok), Ok(()), "{ok}");
    }
    for bad in ["", ".x", "-x", "a b", "a:b", "é", "a/b", "$SYS"] {
        assert!(check_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn suggestions() {
    assert_eq!(nearest("autostrat", LAUNCHER_KEYS), Some("autostart"));
    assert_eq!(nearest("stopTimout", PLUGIN_KEYS), Some("stopTimeout"));
    assert_eq!(nearest("log_max_files", LAUNCHER_KEYS), Some("logMaxFiles"));
    assert_eq!(nearest("zzz", LAUNCHER_KEYS), None);
    assert_eq!(nearest("ix", LAUNCHER_KEYS), Some("id"));
    assert_eq!(nearest("colour", LAUNCHER_KEYS), None);
}
