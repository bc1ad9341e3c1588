//! hubcli's failures: each is one clear line on stderr and its documented exit code, and none
//! takes longer than its --timeout.

mod common;

use common::{command, core, hubcli, hubcli_at};
use std::time::Duration;

#[test]
fn stopped_hub_is_unreachable_quickly() {
    let mut core = core();
    core.kill();
    let r = hubcli(&core, &["launcher", "ls", "--timeout", "2s"]);
    r.expect_code(3);
    assert_eq!(
        r.stderr.trim(),
        format!(
            "hubcli: error: cannot reach the hub at mqtts://127.0.0.1:{}: connection refused",
            core.port
        )
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    assert!(r.stdout.is_empty());
}

#[test]
fn no_launcher_is_named_at_once() {
    let core = core();
    // The core says at once that nobody serves the launcher's capabilities.
    let r = hubcli(&core, &["launcher", "ls", "--timeout", "10s"]);
    r.expect_code(5);
    assert_eq!(
        r.stderr.trim(),
        "hubcli: error: nobody serves launcher/view: the service is not connected or has no \
         capability 'view' (is the launcher 'launcher' running and connected to the hub?)"
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);

    let r = hubcli(
        &core,
        &[
            "launcher",
            "--launcher",
            "edge2",
            "status",
            "x",
            "--timeout",
            "500ms",
        ],
    );
    r.expect_code(5);
    assert!(
        r.stderr.contains("nobody serves edge2/view") && r.stderr.contains("'edge2'"),
        "{}",
        r.stderr
    );

    // Without --follow, events prints the known statuses (none here) and ends by itself.
    let r = hubcli(&core, &["launcher", "events"]);
    r.expect_code(0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("no plugin status from launcher 'launcher'"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

#[test]
fn usage_errors_exit_2() {
    let dir = hivehub_testkit::tempdir();
    for args in [
        &["launcher", "stop", "heartbeat", "--include-core"][..],
        &["--timeout", "soon", "launcher", "ls"],
        &["launcher", "frobnicate"],
        &["auth", "add", "p9", "--role", "root"],
    ] {
        let r = hubcli_at(dir.path(), Some("mqtts://127.0.0.1:1"), args);
        r.expect_code(2);
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
    }
    // No home at all: says how to give one.
    let o = command().args(["launcher", "ls"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.starts_with("hubcli: error: no hivehub home"), "{e}");
}

#[test]
fn help_lists_commands_and_exit_codes() {
    let o = command().arg("-h").output().unwrap();
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for s in [
        "launcher",
        "auth",
        "completions",
        "Exit codes:",
        "5  timeout",
    ] {
        assert!(h.contains(s), "{s} missing from:\n{h}");
    }
    let o = command()
        .args(["launcher", "events", "--help"])
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(h.contains("\"event\":\"status\""), "{h}");
}

#[test]
fn completions_need_no_hub() {
    for shell in ["bash", "zsh", "fish"] {
        let o = command().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("hubcli"), "{shell}: {s}");
    }
}
