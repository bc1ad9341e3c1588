//! Config reload end to end: a real launcher, hubcli reload and SIGHUP.

use hivehub_testkit::{plugin_script, wait_until, workspace_bin, LauncherHub};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn hubcli(h: &LauncherHub, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubcli"))
        .arg("--home")
        .arg(h.home.root())
        .args(args)
        .output()
        .expect("run hubcli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pid(h: &LauncherHub, name: &str) -> Option<u64> {
    let (ok, out, _) = hubcli(h, &["launcher", "ls", "--json"]);
    assert!(ok);
    let l: Vec<Value> = serde_json::from_str(&out).unwrap();
    l.iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["pid"].as_u64())
}

fn config(autostart: &str, b_env: &str) -> String {
    format!(
        "core: hubcore\nautostart: [{autostart}]\nplugins:\n  hubcore:\n    args: [\"--listen\", \"127.0.0.1:0\"]\n  b:\n    env: {{MODE: {b_env}}}\n"
    )
}

#[test]
fn reload_applies_only_the_difference_and_rejects_bad_files() {
    let mut h = LauncherHub::new(&workspace_bin("launcher"), "", "");
    for n in ["a", "b", "c", "d"] {
        plugin_script(&h.home, n, "exec sleep 1000");
    }
    let cfg = h.home.config_file("launcher");
    std::fs::write(&cfg, config("a, b, d", "one")).unwrap();
    h.start();
    for n in ["a", "b", "d"] {
        h.wait_running(n);
    }
    assert!(wait_until(Duration::from_secs(30), || hubcli(
        &h,
        &["launcher", "ls", "--json"]
    )
    .0));
    let (a, b) = (pid(&h, "a"), pid(&h, "b"));

    // b's settings change, c is added, d removed, a untouched.
    std::fs::write(&cfg, config("a, b, c", "two")).unwrap();
    let (ok, out, err) = hubcli(&h, &["launcher", "reload", "--json"]);
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["started"], serde_json::json!(["c"]), "{r}");
    assert_eq!(r["stopped"], serde_json::json!(["d"]), "{r}");
    assert_eq!(r["restarted"], serde_json::json!(["b"]), "{r}");
    assert_eq!(pid(&h, "a"), a, "an unchanged plugin keeps its PID");
    assert_ne!(pid(&h, "b"), b);
    assert!(pid(&h, "c").is_some() && pid(&h, "d").is_none());

    // An invalid file is rejected with its line, and nothing changes.
    std::fs::write(&cfg, format!("{}bogus: 1\n", config("a", "three"))).unwrap();
    let before: Vec<Option<u64>> = ["a", "b", "c"].iter().map(|n| pid(&h, n)).collect();
    let (ok, _, err) = hubcli(&h, &["launcher", "reload"]);
    assert!(!ok);
    assert!(
        err.contains("launcher.yaml:8:1") && err.contains("bogus"),
        "{err}"
    );
    let after: Vec<Option<u64>> = ["a", "b", "c"].iter().map(|n| pid(&h, n)).collect();
    assert_eq!(before, after);

    // SIGHUP does the same as `hubcli launcher reload`.
    std::fs::write(&cfg, config("a, b, c, d", "two")).unwrap();
    h.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || pid(&h, "d").is_some()),
        "SIGHUP did not reload"
    );
    assert_eq!(pid(&h, "a"), a);
}

#[test]
fn reload_reads_the_file_the_launcher_was_started_with() {
    let mut h = LauncherHub::new(&workspace_bin("launcher"), "", "");
    for n in ["a", "b"] {
        plugin_script(&h.home, n, "exec sleep 1000");
    }
    // The home's own launcher.yaml autostarts a; the file given with --config autostarts b.
    std::fs::write(h.home.config_file("launcher"), config("a", "one")).unwrap();
    let other = h.home.root().join("other.yaml");
    std::fs::write(&other, config("", "one")).unwrap();
    h.start_with(&["--config", &other.display().to_string()]);
    h.url();
    assert!(wait_until(Duration::from_secs(30), || hubcli(
        &h,
        &["launcher", "ls", "--json"]
    )
    .0));
    std::fs::write(&other, config("b", "one")).unwrap();
    let (ok, out, err) = hubcli(&h, &["launcher", "reload", "--json"]);
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["started"], serde_json::json!(["b"]), "{out}");
    assert_eq!(pid(&h, "a"), None, "the home's file was not read: {out}");
}

#[test]
fn reload_lists_settings_that_took_effect_without_a_restart() {
    let mut h = LauncherHub::new(&workspace_bin("launcher"), "", "");
    plugin_script(&h.home, "a", "exec sleep 1000");
    let cfg = h.home.config_file("launcher");
    std::fs::write(&cfg, config("a", "one")).unwrap();
    h.start();
    h.wait_running("a");
    assert!(wait_until(Duration::from_secs(30), || hubcli(
        &h,
        &["launcher", "ls", "--json"]
    )
    .0));
    // A new backoff, and a threshold action for `c`, which is not running: both apply without
    // restarting anything, and the reply says so instead of "nothing changed".
    std::fs::write(
        &cfg,
        "core: hubcore\nautostart: [a]\nbackoff: {base: 2s}\nplugins:\n  hubcore:\n    args: [\"--listen\", \"127.0.0.1:0\"]\n  b:\n    env: {MODE: one}\n  c:\n    maxMemory: 10MB\n    action: alert\n",
    )
    .unwrap();
    let (ok, out, err) = hubcli(&h, &["launcher", "reload"]);
    assert!(ok, "{err}");
    assert!(out.contains("applied: backoff, plugins.c"), "{out}");
    assert!(!out.contains("nothing changed"), "{out}");
}
