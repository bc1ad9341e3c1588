//! Tests of the launcher config: defaults, every key, and the wording and location of errors.

use super::*;

const SAMPLE: &str = include_str!("../../../../config/launcher.yaml");
const FILE: &str = "/home/x/config/launcher.yaml";

fn err(text: &str) -> ConfigError {
    match parse(text, FILE) {
        Ok(cfg) => panic!("expected an error for {text:?}, got {cfg:?}"),
        Err(e) => e,
    }
}

/// Asserts that the one-line message has the file, the line, the key and each extra part.
fn assert_err(text: &str, line: u32, key: &str, parts: &[&str]) -> ConfigError {
    let e = err(text);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}:{line}:")),
        "no {FILE}:{line}: in {shown:?}"
    );
    assert_eq!(e.line, Some(line), "{shown}");
    assert_eq!(e.key.as_deref(), Some(key), "{shown}");
    assert!(shown.contains(&format!(": {key}: ")), "no key in {shown:?}");
    for part in parts {
        assert!(shown.contains(part), "{part:?} missing from {shown:?}");
    }
    assert!(!shown.contains('\n'), "not one line: {shown:?}");
    e
}

#[test]
fn sample_parses() {
    let cfg = parse(SAMPLE, "config/launcher.yaml").expect("sample is valid");
    assert_eq!(cfg.id, "launcher");
    assert_eq!(cfg.loglevel, "info");
    assert!(cfg.logtofile);
    assert_eq!(cfg.core.as_deref(), Some("hubcore"));
    assert!(cfg.logplugins);
    assert!(!cfg.attachstderr);
    assert!(!cfg.attachstdout);
    assert_eq!(cfg.autorestart, RestartPolicy::OnFailure);
    assert!(cfg.create_plugin_cred);
    assert_eq!(cfg.autostart, vec!["heartbeat".to_string()]);
    assert_eq!(cfg.server_url, None);
    assert_eq!(cfg.ready_timeout, Duration::from_secs(30));
    assert_eq!(cfg.log_max_size, 10_000_000);
    assert_eq!(cfg.log_max_files, 5);
    let hb = cfg.plugin("heartbeat");
    assert_eq!(hb.args, vec!["--interval".to_string(), "5s".to_string()]);
    assert!(hb.wait_ready);
    assert_eq!(hb.stop_timeout, Duration::from_secs(10));
    assert_eq!(hb.stop_signal, Signal::SIGTERM);
    assert!(hb.env.is_empty());
    assert_eq!(cfg.plugins.len(), 1);
}

#[test]
fn sample_comments_document_every_key() {
    for key in LAUNCHER_KEYS.iter().chain(PLUGIN_KEYS.iter()) {
        assert!(
            SAMPLE.contains(&format!("{key}:")),
            "sample does not mention {key}"
        );
    }
    assert!(SAMPLE.contains("#id: launcher"));
    assert!(SAMPLE.contains("launcher-pi2"));
    assert!(SAMPLE.contains("#serverURL:"));
}

#[test]
fn commented_out_examples_in_sample_are_valid() {
    // Uncommenting the examples must give a working file.
    let mut in_example = false;
    let mut uncommented = String::new();
    for line in SAMPLE.lines() {
        in_example |= line.starts_with("#  zwave:");
        let example = in_example || line.starts_with("#id:") || line.starts_with("#serverURL:");
        uncommented.push_str(if example { &line[1..] } else { line });
        uncommented.push('\n');
    }
    let cfg = parse(&uncommented, "x").expect("uncommented sample is valid");
    assert!(cfg.server_url.is_some());
    let z = cfg.plugins.get("zwave").expect("zwave example");
    assert_eq!(z.stop_signal, Signal::SIGINT);
    assert!(!z.env.is_empty());
}

#[test]
fn movable_plugins_labels_and_cluster_settings() {
    let cfg = parse(
        "labels: [zwave-stick, cam]\ncluster:\n  leaseTtl: 4s\n  statusInterval: 1s\n  margin: 0.2\n  minResidence: 1m\nplugins:\n  zwave:\n    placement: movable\n    requires: [zwave-stick]\n  lamp:\n    requires: [nope]\n",
        FILE,
    )
    .expect("valid");
    assert!(cfg.is_movable("zwave"));
    assert!(!cfg.is_movable("lamp"));
    assert!(!cfg.is_movable("unknown"));
    assert!(cfg.meets_requirements("zwave"));
    assert!(!cfg.meets_requirements("lamp"));
    assert!(cfg.meets_requirements("unknown"));
    assert_eq!(cfg.cluster.lease_ttl, Duration::from_secs(4));
    assert_eq!(cfg.cluster.min_residence, Duration::from_secs(60));
    // A movable plugin's stop escalates to SIGKILL within a quarter lease.
    assert_eq!(cfg.plugin("zwave").stop_timeout, Duration::from_secs(1));
    assert_eq!(cfg.plugin("lamp").stop_timeout, Duration::from_secs(10));
    let d = LauncherConfig::default();
    assert_eq!(d.cluster.lease_ttl, Duration::from_secs(8));
    assert!(d.labels.is_empty());
}

#[test]
fn a_launcher_without_a_core_defaults_to_launcher_hostname() {
    let remote = parse("core: \"\"\nserverURL: mqtts://hub:8883\n", FILE).expect("valid");
    assert!(remote.id.starts_with("launcher-"), "{}", remote.id);
    assert_eq!(remote.id, remote_id());
    check_id(&remote.id).expect("a valid ID");
    let set = parse("id: pi2\ncore: \"\"\nserverURL: mqtts://hub:8883\n", FILE).expect("valid");
    assert_eq!(set.id, "pi2");
    assert_eq!(parse("", FILE).expect("valid").id, "launcher");
}

#[test]
fn cluster_errors_name_the_key() {
    assert_err(
        "cluster:\n  leaseTtl: 1s\n",
        2,
        "cluster.leaseTtl",
        &["between 2s and 20s"],
    );
    assert_err(
        "cluster:\n  margin: 3\n",
        2,
        "cluster.margin",
        &["between 0 and 1"],
    );
    assert_err(
        "cluster:\n  leaseTTL: 5s\n",
        2,
        "cluster.leaseTTL",
        &["leaseTtl"],
    );
    assert_err(
        "plugins:\n  x:\n    placement: roaming\n",
        3,
        "plugins.x.placement",
        &["roaming"],
    );
    assert_err(
        "plugins:\n  hubcore:\n    placement: movable\n",
        3,
        "plugins.hubcore.placement",
        &["core cannot be movable"],
    );
    assert_err("labels: [\"bad label\"]\n", 1, "labels[0]", &[]);
    assert_err(
        "plugins:\n  _launcher: {}\n",
        2,
        "plugins._launcher",
        &["reserved"],
    );
}

#[test]
fn defaults() {
    let d = LauncherConfig::default();
    assert_eq!(d.id, "launcher");
    assert_eq!(d.loglevel, "info");
    assert!(!d.logtofile);
    assert_eq!(d.core.as_deref(), Some("hubcore"));
    assert!(d.logplugins);
    assert!(!d.attachstderr && !d.attachstdout);
    assert_eq!(d.autorestart, RestartPolicy::Never);
    assert!(d.create_plugin_cred);
    assert!(d.autostart.is_empty());
    assert_eq!(d.server_url, None);
    assert_eq!(d.ready_timeout, Duration::from_secs(30));
    assert_eq!(d.log_max_size, 10_000_000);
    assert_eq!(d.log_max_files, 5);
    assert!(d.plugins.is_empty());
    assert_eq!(d.validate(), Ok(()));

    let p = PluginConfig::default();
    assert!(p.args.is_empty() && p.env.is_empty());
    assert_eq!(p.stop_signal, Signal::SIGTERM);
    assert_eq!(p.stop_timeout, Duration::from_secs(10));
    assert!(!p.wait_ready);

    for text in [
        "",
        "\n\n",
        "# only a comment\n",
        "# a\n\n   # b\n",
        "---\n",
        "~\n",
    ] {
        assert_eq!(parse(text, FILE), Ok(LauncherConfig::default()), "{text:?}");
    }
    let cfg = parse("logtofile: true\n", FILE).expect("valid");
    assert_eq!(
        cfg,
        LauncherConfig {
            logtofile: true,
            ..LauncherConfig::default()
        }
    );
}

#[test]
fn load_missing_empty_and_unreadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("launcher.yaml");
    assert_eq!(load(&missing), Ok(LauncherConfig::default()));

    std::fs::write(&missing, "# nothing set\n").expect("write");
    assert_eq!(load(&missing), Ok(LauncherConfig::default()));

    std::fs::write(&missing, "autostart: [a, b]\nautorestart: always\n").expect("write");
    let cfg = load(&missing).expect("valid");
    assert_eq!(cfg.autostart, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(cfg.autorestart, RestartPolicy::Always);

    std::fs::write(&missing, "autostart: [a, a]\n").expect("write");
    let e = load(&missing).expect_err("duplicate");
    assert!(e
        .to_string()
        .starts_with(&format!("{}:1:", missing.display())));

    let e = load(dir.path()).expect_err("a directory is not a file");
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert!(e.to_string().starts_with(&dir.path().display().to_string()));
}

#[test]
fn null_values_mean_defaults_for_lists_and_plugins() {
    let cfg = parse(
        "autostart:\n#  - heartbeat\nplugins:\n  heartbeat:\n  other:\n    args:\n    env:\n",
        FILE,
    )
    .expect("valid");
    assert!(cfg.autostart.is_empty());
    assert_eq!(cfg.plugin("heartbeat"), PluginConfig::default());
    assert_eq!(cfg.plugin("other"), PluginConfig::default());
    let cfg = parse("plugins:\n", FILE).expect("valid");
    assert!(cfg.plugins.is_empty());
}

#[test]
fn plugin_falls_back_to_defaults() {
    let cfg = parse(
        "plugins:\n  zwave:\n    args: [--port, 8080]\n    env: {TZ: UTC, N: 1}\n    stopSignal: INT\n    stopTimeout: 1.5s\n",
        FILE,
    )
    .expect("valid");
    let z = cfg.plugin("zwave");
    assert_eq!(z.args, vec!["--port".to_string(), "8080".to_string()]);
    assert_eq!(z.env.get("TZ").map(String::as_str), Some("UTC"));
    assert_eq!(z.env.get("N").map(String::as_str), Some("1"));
    assert_eq!(z.stop_signal, Signal::SIGINT);
    assert_eq!(z.stop_timeout, Duration::from_millis(1500));
    assert_eq!(cfg.plugin("unknown"), PluginConfig::default());
}

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
fn core_empty_or_null_needs_server_url() {
    for core in ["\"\"", "null", "", "''"] {
        let text = format!("logtofile: false\ncore: {core}\nserverURL: mqtts://hub.local:8883\n");
        let cfg = parse(&text, FILE).expect(&text);
        assert_eq!(cfg.core, None);
        assert_eq!(cfg.server_url.as_deref(), Some("mqtts://hub.local:8883"));

        let e = assert_err(
            &format!("logtofile: false\ncore: {core}\n"),
            2,
            "serverURL",
            &["required when `core` is empty or null", "mqtts://"],
        );
        assert_eq!(e.kind, ConfigErrorKind::MissingKey);
    }
    assert_err(
        "serverURL: http://hub.local\n",
        1,
        "serverURL",
        &["must start with mqtts:// or mqtt://"],
    );
    assert_err(
        "serverURL: mqtts://hub:99999\n",
        1,
        "serverURL",
        &["invalid port"],
    );
    assert_err("core: ../../bin/sh\n", 1, "core", &["invalid name", "bin/"]);
    assert_err(
        "core: hubcore\nautostart:\n  - hubcore\n",
        3,
        "autostart[0]",
        &["is the core"],
    );
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
        shown.starts_with(&format!("{FILE}:4:4: plugins.zwave: YAML syntax error")),
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
fn duplicate_autostart_entry() {
    let e = assert_err(
        "autostart:\n  - a\n  - b\n  - a\n",
        4,
        "autostart[2]",
        &["duplicate entry `a`", "first listed on line 2"],
    );
    assert_eq!(e.kind, ConfigErrorKind::DuplicateKey);
    assert_eq!(e.column, Some(5));
    assert_err(
        "autostart: [a, b, b]\n",
        1,
        "autostart[2]",
        &["duplicate entry `b`"],
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
fn plugin_rules() {
    assert_err(
        "plugins:\n  a:\n    env:\n      \"A=B\": x\n",
        4,
        "plugins.a.env.\"A=B\"",
        &["contains '='"],
    );
    assert_err(
        "plugins:\n  a:\n    env:\n      \"\": x\n",
        4,
        "plugins.a.env.\"\"",
        &["name is empty"],
    );
    assert_err(
        "plugins:\n  a:\n    stopSignal: SIGKILL\n",
        3,
        "plugins.a.stopSignal",
        &["cannot be the stop signal"],
    );
    assert_err(
        "plugins:\n  a:\n    stopSignal: SIGTREM\n",
        3,
        "plugins.a.stopSignal",
        &["unknown stop signal", "did you mean `SIGTERM`?"],
    );
    for (name, sig) in [
        ("SIGTERM", Signal::SIGTERM),
        ("TERM", Signal::SIGTERM),
        ("SIGINT", Signal::SIGINT),
        ("INT", Signal::SIGINT),
        ("SIGHUP", Signal::SIGHUP),
        ("SIGQUIT", Signal::SIGQUIT),
        ("SIGUSR1", Signal::SIGUSR1),
        ("usr2", Signal::SIGUSR2),
    ] {
        assert_eq!(parse_signal(name), Ok(sig), "{name}");
    }
}

#[test]
fn validate_without_file() {
    let cfg = LauncherConfig {
        core: None,
        ..LauncherConfig::default()
    };
    let e = cfg.validate().expect_err("needs serverURL");
    assert_eq!(e.to_string(), format!("serverURL: {}", e.message));
    assert_eq!((e.line, e.file.as_str()), (None, ""));

    let cfg = LauncherConfig {
        autostart: vec!["a".into(), "a".into()],
        ..LauncherConfig::default()
    };
    let e = cfg.validate().expect_err("duplicate");
    assert!(
        e.to_string().contains("first listed as autostart[0]"),
        "{e}"
    );

    let mut plugins = BTreeMap::new();
    plugins.insert(
        "a".to_string(),
        PluginConfig {
            stop_signal: Signal::SIGKILL,
            ..PluginConfig::default()
        },
    );
    let cfg = LauncherConfig {
        plugins,
        ..LauncherConfig::default()
    };
    assert!(cfg.validate().is_err());
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
fn suggestions() {
    assert_eq!(nearest("autostrat", LAUNCHER_KEYS), Some("autostart"));
    assert_eq!(nearest("stopTimout", PLUGIN_KEYS), Some("stopTimeout"));
    assert_eq!(nearest("log_max_files", LAUNCHER_KEYS), Some("logMaxFiles"));
    assert_eq!(nearest("zzz", LAUNCHER_KEYS), None);
    assert_eq!(nearest("ix", LAUNCHER_KEYS), Some("id"));
    assert_eq!(nearest("colour", LAUNCHER_KEYS), None);
}
