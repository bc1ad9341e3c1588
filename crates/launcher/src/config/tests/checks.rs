//! Rules beyond types, located by key path: the hub, autostart, cluster, plugin entries, and configs built in code.

use super::*;

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
