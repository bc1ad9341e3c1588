//! hubcli against a real launcher, which starts a real hubcore and real plugins.

use hivehub_testkit::{plugin_script, wait_until, workspace_bin, LauncherHub};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn hubcli(h: &LauncherHub, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubcli"))
        .arg("--home")
        .arg(h.home.root())
        .args(args)
        .env("COLUMNS", "80")
        .output()
        .expect("run hubcli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ls(h: &LauncherHub) -> Vec<Value> {
    let (ok, out, err) = hubcli(h, &["launcher", "ls", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str::<Vec<Value>>(&out).expect("ls --json is a JSON array")
}

fn state(list: &[Value], name: &str) -> String {
    list.iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("{name} not in {list:?}"))
}

#[test]
fn ls_start_stop_all_through_the_real_launcher() {
    let mut h = LauncherHub::new(
        &workspace_bin("launcher"),
        "autostart: [heartbeat]\n",
        "  heartbeat:\n    waitReady: true\n",
    );
    plugin_script(&h.home, "sleeper", "exec sleep 1000");
    std::fs::copy(
        workspace_bin("heartbeat"),
        h.home.plugins().join("heartbeat"),
    )
    .unwrap();
    h.start();
    h.wait_running("heartbeat");
    // The launcher answers once autostart is done.
    assert!(wait_until(Duration::from_secs(30), || hubcli(
        &h,
        &["launcher", "ls", "--json"]
    )
    .0));
    let l = ls(&h);
    assert_eq!(state(&l, "hubcore"), "running");
    assert_eq!(state(&l, "heartbeat"), "running");
    assert_eq!(state(&l, "sleeper"), "stopped");

    let (ok, out, err) = hubcli(&h, &["launcher", "start", "sleeper"]);
    assert!(ok, "{err}");
    assert!(out.contains("sleeper"), "{out}");
    assert_eq!(state(&ls(&h), "sleeper"), "running");
    let (ok, out, _) = hubcli(&h, &["launcher", "ls"]);
    assert!(ok);
    for line in out.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    let (ok, _, err) = hubcli(&h, &["launcher", "stop", "sleeper"]);
    assert!(ok, "{err}");
    assert_eq!(state(&ls(&h), "sleeper"), "disabled");

    let (ok, _, err) = hubcli(&h, &["launcher", "start", "all"]);
    assert!(ok, "{err}");
    let l = ls(&h);
    assert!(
        ["heartbeat", "sleeper"]
            .iter()
            .all(|n| state(&l, n) == "running"),
        "{l:?}"
    );
    let (ok, _, err) = hubcli(&h, &["launcher", "stop", "all"]);
    assert!(ok, "{err}");
    // The core stays up and the CLI still works.
    let l = ls(&h);
    assert_eq!(state(&l, "hubcore"), "running");
    assert!(
        ["heartbeat", "sleeper"]
            .iter()
            .all(|n| state(&l, n) == "disabled"),
        "{l:?}"
    );

    let (ok, _, err) = hubcli(&h, &["launcher", "start", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("no plugin named 'nope'; available: heartbeat, hubcore, sleeper"),
        "{err}"
    );
}

/// A launcher whose `crasher` fails at once and then waits an hour to be restarted.
fn hub_with_crasher() -> LauncherHub {
    let mut h = LauncherHub::new(
        &workspace_bin("launcher"),
        "autostart: [crasher]\n",
        "  crasher:\n    restart: on-failure\n    backoff: {base: 1h, jitter: 0}\n",
    );
    plugin_script(&h.home, "crasher", "echo giving up; exit 3");
    h.start();
    h.url();
    h
}

fn wait_state(h: &LauncherHub, name: &str, want: &str) {
    let ok = wait_until(Duration::from_secs(30), || {
        let (ok, out, _) = hubcli(h, &["launcher", "ls", "--json"]);
        ok && serde_json::from_str::<Vec<Value>>(&out)
            .is_ok_and(|l| l.iter().any(|p| p["name"] == name && p["state"] == want))
    });
    assert!(ok, "{name} never reached {want}; launcher:\n{}", h.out());
}

#[test]
fn stop_in_backoff_says_restart_cancelled() {
    let h = hub_with_crasher();
    wait_state(&h, "crasher", "backoff");
    // A crash waiting for its restart is an error…
    let (ok, out, err) = hubcli(&h, &["ls"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("crasher "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("backoff") && row.contains("exit code 3"),
        "{out}"
    );

    let (ok, out, err) = hubcli(&h, &["launcher", "stop", "crasher"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().next(),
        Some("crasher: restart cancelled (it was in backoff, waiting to be restarted)"),
        "{out}"
    );
    // …the user's stop is not: the plugin stays down, with no error shown.
    let row = out
        .lines()
        .find(|l| l.starts_with("crasher "))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "disabled", "{out}");
    assert_eq!(cols.last(), Some(&"-"), "{out}");
    let (_, out, _) = hubcli(&h, &["launcher", "stop", "crasher"]);
    assert_eq!(out.lines().next(), Some("crasher: not running"), "{out}");
}

#[test]
fn stopping_the_core_by_name_points_to_stop_all_include_core() {
    let mut h = LauncherHub::new(&workspace_bin("launcher"), "", "");
    h.start();
    let core_pid = h.wait_running("hubcore");
    assert!(wait_until(Duration::from_secs(30), || hubcli(
        &h,
        &["launcher", "ls", "--json"]
    )
    .0));
    for args in [&["launcher", "stop", "hubcore"][..], &["stop", "hubcore"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_hubcli"))
            .arg("--home")
            .arg(h.home.root())
            .args(args)
            .output()
            .expect("run hubcli");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "hubcli: error: 'hubcore' is the hub core and is not stopped on its own: `hubcli \
             launcher stop all --include-core` stops every plugin and then the core (the bus \
             goes down with it); or stop the launcher",
            "{args:?}"
        );
    }
    // Refused: the core still runs.
    assert_eq!(h.pid_of("hubcore"), Some(core_pid));
    assert!(std::path::Path::new(&format!("/proc/{core_pid}")).exists());
}
