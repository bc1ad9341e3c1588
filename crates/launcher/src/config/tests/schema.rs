//! Defaults, the sample file, loading, and the lookups on a parsed config.

use super::*;

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
fn a_named_config_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("launcher.yaml");
    assert_eq!(load(&missing).unwrap(), LauncherConfig::default());
    let e = load_named(&missing).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: no such file", missing.display())),
        "{e}"
    );
    std::fs::write(&missing, "logtofile: true\n").unwrap();
    assert!(load_named(&missing).unwrap().logtofile);
}
