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
