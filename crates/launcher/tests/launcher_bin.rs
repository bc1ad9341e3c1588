//! The launcher binary end to end: a real hubcore started by the launcher, real plugins, real
//! signals to the launcher.

use hivehub_home::Home;
use hivehub_launcher::process::{pid_alive, tree_of};
use hivehub_testkit::{wait_until, workspace_bin, LauncherHub, Sub};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn script(home: &Home, name: &str, body: &str) {
    hivehub_testkit::plugin_script(home, name, body)
}

fn home_with(extra: &str) -> LauncherHub {
    home_with_plugins(extra, "")
}

fn home_with_plugins(extra: &str, plugins: &str) -> LauncherHub {
    LauncherHub::new(env!("CARGO_BIN_EXE_launcher").as_ref(), extra, plugins)
}

fn launch(mut hub: LauncherHub) -> LauncherHub {
    hub.start();
    hub
}

#[test]
fn sigkill_of_the_launcher_leaves_no_plugin_or_grandchild() {
    let hub = home_with("createPluginCred: false\nautostart: [forker]\n");
    script(
        &hub.home,
        "forker",
        "sleep 1000 &\nsh -c 'sleep 1000 & sleep 1000' &\nwhile true; do sleep 1; done",
    );
    let mut hub = launch(hub);
    let forker = hub.wait_running("forker");
    let core = hub.wait_running("hubcore");
    assert!(wait_until(Duration::from_secs(5), || tree_of(forker).len() >= 4));
    let all: Vec<u32> = tree_of(forker).into_iter().chain(tree_of(core)).collect();
    hub.signal(nix::sys::signal::Signal::SIGKILL);
    hub.wait_exit(Duration::from_secs(5));
    let gone = wait_until(Duration::from_secs(2), || {
        all.iter().all(|p| !pid_alive(*p))
    });
    let left: Vec<u32> = all.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(gone, "still alive 2 s after SIGKILL: {left:?}");
}

/// PID of the launcher's forked guard: its child named `hivehub-guard`.
fn guard_of(launcher: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (comm.trim() == "hivehub-guard" && ppid == launcher).then_some(pid)
    })
}

#[test]
fn sigkill_of_the_launcher_leaves_no_daemon_that_left_its_session() {
    // The daemon leaves the plugin's session and its tree (its parent exits at once), so only
    // the forked guard's scan for processes marked with this home finds it: the guard must
    // have been told the home. (As root, `user: root`: a user of its own would find it too.)
    let hub = home_with_plugins(
        "createPluginCred: false\nautostart: [escaper]\n",
        "  escaper:\n    user: root\n",
    );
    script(
        &hub.home,
        "escaper",
        "setsid -f sh -c 'echo DAEMON $$; exec sleep 1000'\nexec sleep 1000",
    );
    let mut hub = launch(hub);
    hub.wait_running("escaper");
    let launcher = hub.pid().expect("launcher pid");
    let guard = guard_of(launcher).expect("a child named hivehub-guard");
    let log = hub.home.logs().join("escaper.log");
    let daemon = || -> Option<u32> {
        let text = std::fs::read_to_string(&log).ok()?;
        let line = text.lines().find_map(|l| l.split_once("DAEMON "))?.1;
        line.trim().parse().ok()
    };
    assert!(wait_until(Duration::from_secs(5), || daemon().is_some()));
    let daemon = daemon().expect("the daemon's pid in the log");
    assert!(pid_alive(daemon));
    hub.signal(nix::sys::signal::Signal::SIGKILL);
    hub.wait_exit(Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(daemon)),
        "the daemon {daemon} outlived the launcher"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(guard)),
        "the guard {guard} did not exit after its work"
    );
}

#[test]
fn sigterm_stops_plugins_then_the_core_and_exits_zero() {
    // heartbeat reports ready (waitReady): a and b start after it and are gone before it stops.
    let hub = home_with_plugins(
        "autostart: [heartbeat, a, b]\n",
        "  heartbeat:\n    waitReady: true\n",
    );
    std::fs::copy(
        workspace_bin("heartbeat"),
        hub.home.plugins().join("heartbeat"),
    )
    .expect("copy heartbeat");
    // a takes a moment to stop: without the barrier, heartbeat would be gone first.
    script(
        &hub.home,
        "a",
        "trap 'sleep 0.3; exit 0' TERM\nwhile :; do sleep 0.05; done",
    );
    script(&hub.home, "b", "exec sleep 1000");
    let mut hub = launch(hub);
    let pids: Vec<u32> = ["hubcore", "heartbeat", "a", "b"]
        .iter()
        .map(|n| hub.wait_running(n))
        .collect();
    hub.signal(nix::sys::signal::Signal::SIGTERM);
    let status = hub
        .wait_exit(Duration::from_secs(30))
        .expect("launcher exited");
    assert!(status.success(), "{status:?}; {}", hub.out());
    for p in pids {
        assert!(!pid_alive(p), "pid {p} survived");
    }
    // The core started first and stopped last: compare the markers' timestamps.
    let marker_time = |name: &str, what: &str| -> String {
        let log = std::fs::read_to_string(hub.home.logs().join(format!("{name}.log"))).unwrap();
        log.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no '{what}' in {name}.log:\n{log}"))[..24]
            .to_string()
    };
    assert!(marker_time("hubcore", "=== started") <= marker_time("heartbeat", "=== started"));
    assert!(marker_time("heartbeat", "=== started") <= marker_time("a", "=== started"));
    assert!(marker_time("a", "=== started") <= marker_time("b", "=== started"));
    // a and b are stopped together, both before the plugin they may depend on; the core last.
    for p in ["a", "b"] {
        assert!(marker_time(p, "exited:") <= marker_time("heartbeat", "exited:"));
    }
    assert!(marker_time("heartbeat", "exited:") <= marker_time("hubcore", "exited:"));
}

#[test]
fn credentials_are_minted_before_start_and_the_plugin_connects() {
    let hub = home_with_plugins(
        "autostart: [credcheck, heartbeat]\n",
        "  heartbeat:\n    args: [\"--interval\", \"200ms\"]\n    waitReady: true\n",
    );
    script(
        &hub.home,
        "credcheck",
        "stat -c 'mode %a' certs/credcheck.key certs/credcheck.token\nexec sleep 1000",
    );
    std::fs::copy(
        workspace_bin("heartbeat"),
        hub.home.plugins().join("heartbeat"),
    )
    .unwrap();
    let mut hub = launch(hub);
    hub.wait_running("credcheck");
    hub.wait_running("heartbeat");
    let log = hub.home.logs().join("credcheck.log");
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.matches("mode 400").count() == 2)
        }),
        "{:?}",
        std::fs::read_to_string(&log)
    );
    let token = hub.home.token_file("heartbeat");
    let inode = std::fs::metadata(&token).unwrap().ino();

    // The heartbeat's events are on the bus, under its own identity.
    let sub = Sub::start(
        &[
            hub.mosq_args("admin"),
            hivehub_testkit::args(&["-t", "event/heartbeat/#", "-v"]),
        ]
        .concat(),
    );
    assert!(
        sub.wait_for(
            "event/heartbeat/status/beat/heartbeat",
            Duration::from_secs(10)
        ),
        "{}",
        sub.output()
    );

    // A restart of the launcher re-issues the plugin's token: the file is replaced.
    hub.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(hub
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    hub.start();
    let hub2 = &mut hub;
    hub2.wait_running("heartbeat");
    assert_ne!(
        std::fs::metadata(&token).unwrap().ino(),
        inode,
        "token not re-issued"
    );
    assert_eq!(std::fs::metadata(&token).unwrap().mode() & 0o777, 0o400);
    hub2.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(hub2
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}

#[test]
fn config_errors_stop_before_anything_starts() {
    for (yaml, expect) in [
        (
            "autostrat: [x]\n",
            vec!["launcher.yaml", ":1:", "autostrat", "autostart"],
        ),
        (
            "logtofile: maybe\n",
            vec!["launcher.yaml", ":1:", "logtofile"],
        ),
        (
            "plugins:\n  x:\n    args: [a]\n   stopTimeout: 1s\n",
            vec!["launcher.yaml", ":4"],
        ),
    ] {
        let dir = hivehub_testkit::tempdir();
        let home = Home::at(dir.path().join("home"));
        home.ensure_dirs().unwrap();
        std::fs::copy(workspace_bin("hubcore"), home.bin().join("hubcore")).unwrap();
        std::fs::write(home.config_file("launcher"), yaml).unwrap();
        for check in [true, false] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
            cmd.arg("--home").arg(home.root());
            if check {
                cmd.arg("--check");
            }
            let out = cmd.stdin(Stdio::null()).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{yaml}");
            for e in &expect {
                assert!(err.contains(e), "{yaml:?}: expected '{e}' in: {err}");
            }
        }
        assert!(
            !home.core_url_file().exists(),
            "the core was started despite a bad config"
        );
        assert!(!home.certs().join("caCert.pem").exists());
    }
}

#[test]
fn a_second_launcher_on_the_same_home_is_refused() {
    let hub = home_with("createPluginCred: false\n");
    let hub = launch(hub);
    hub.wait_running("hubcore");
    let out = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .arg("--home")
        .arg(hub.home.root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another launcher is already running"), "{err}");
    let ok = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .arg("--home")
        .arg(hub.home.root())
        .arg("--check")
        .output()
        .unwrap();
    assert!(ok.status.success(), "--check works while a launcher runs");
}

/// Issue 14, items 1 to 3 against the real launcher binary: a binary copied in is started at
/// once, a deleted one leaves the list, and a restart outlives a binary that is briefly not
/// executable.
#[test]
fn copied_binaries_start_at_once_and_deleted_ones_leave_the_list() {
    use std::os::unix::fs::PermissionsExt;
    let hub = launch(home_with(
        "createPluginCred: false\nautorestart: always\nbackoff: {base: 300ms, factor: 1.5, jitter: 0}\n",
    ));
    hub.url();
    let ls = |hub: &LauncherHub| -> Vec<serde_json::Value> {
        let out = hub.hubcli(&["launcher", "ls", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(30), || !ls(&hub).is_empty()));
    // Copied, then started at once: no "no plugin named".
    script(&hub.home, "instant2", "exec sleep 1000");
    let out = hub.hubcli(&["launcher", "start", "instant2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = hub.wait_running("instant2");
    // Not executable for a while during backoff, then back: restarted, never dropped.
    let bin = hub.home.plugins().join("instant2");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let state = |hub: &LauncherHub| {
        ls(hub)
            .into_iter()
            .find(|p| p["name"] == "instant2")
            .map(|p| p["state"].as_str().unwrap_or_default().to_string())
    };
    assert!(wait_until(Duration::from_secs(10), || {
        ls(&hub)
            .iter()
            .any(|p| p["name"] == "instant2" && p["attempt"].as_u64() >= Some(2))
    }));
    assert_eq!(state(&hub).as_deref(), Some("backoff"));
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || hub
            .pid_of("instant2")
            .is_some_and(|p| p != pid && pid_alive(p))),
        "restarted once executable again: {:?}",
        state(&hub)
    );
    // Stopped and deleted: it leaves the list.
    assert!(hub
        .hubcli(&["launcher", "stop", "instant2"])
        .status
        .success());
    std::fs::remove_file(&bin).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || state(&hub).is_none()),
        "still listed: {:?}",
        state(&hub)
    );
}

/// Issue 14, item 12: after `stop all --include-core` nothing reaches the launcher over the bus;
/// the reply says how to bring the core back, and SIGHUP does.
#[test]
fn sighup_starts_the_core_again_after_stop_all_include_core() {
    let hub = launch(home_with("createPluginCred: false\n"));
    hub.url();
    let core = hub.wait_running("hubcore");
    assert!(wait_until(Duration::from_secs(30), || hub
        .hubcli(&["launcher", "ls"])
        .status
        .success()));
    let out = hub.hubcli(&["launcher", "stop", "all", "--include-core"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIGHUP"), "{text}");
    assert!(wait_until(Duration::from_secs(15), || !pid_alive(core)));
    hub.signal(nix::sys::signal::Signal::SIGHUP);
    // The old core may linger as a zombie with its pid record for a moment: wait for a new one.
    assert!(
        wait_until(Duration::from_secs(30), || hub
            .pid_of("hubcore")
            .is_some_and(|p| p != core && pid_alive(p))),
        "the core runs again: {}",
        hub.out()
    );
    assert!(
        wait_until(Duration::from_secs(30), || hub
            .hubcli(&["launcher", "ls"])
            .status
            .success()),
        "hubcli reaches the launcher again: {}",
        hub.out()
    );
}

/// Issue 14, item 8: a typo in hubcore.yaml: the launcher fails with the core's own error
/// (its file and key), not only "exit code 1".
#[test]
fn a_broken_hubcore_yaml_is_shown_by_the_launcher() {
    let hub = home_with("createPluginCred: false\n");
    std::fs::write(
        hub.home.config_file("hubcore"),
        "limitz:\n  maxSubscriptions: 5\n",
    )
    .unwrap();
    let mut hub = launch(hub);
    let status = hub.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the launcher must fail: {status:?}"
    );
    let out = hub.out();
    assert!(out.contains("the core did not start"), "{out}");
    assert!(
        out.contains("hubcore.yaml") && out.contains("limitz"),
        "the core's own error, naming the file and the key: {out}"
    );
}

/// Issue 14, item 22: a clean shutdown warns about nothing (no "cannot publish" with a struct
/// dump once the bus is gone).
#[test]
fn a_clean_shutdown_logs_no_warning() {
    let hub = home_with("createPluginCred: false\nautostart: [a, b]\n");
    for n in ["a", "b"] {
        script(&hub.home, n, "exec sleep 1000");
    }
    let mut hub = launch(hub);
    hub.wait_running("a");
    hub.wait_running("b");
    hub.url();
    hub.signal(nix::sys::signal::Signal::SIGTERM);
    let status = hub.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let out = hub.out();
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// Issue 14, item 4: a plugin started by hand shows as `external` with its PID; `start` refuses
/// to run a second copy, and `stop` stops it.
#[test]
fn a_plugin_started_by_hand_is_external_and_stop_stops_it() {
    let hub = home_with("createPluginCred: false\n");
    // A script that stays itself (no exec): its command line names plugins/beat.
    script(&hub.home, "beat", "while :; do sleep 1; done");
    let hub = launch(hub);
    hub.url();
    assert!(wait_until(Duration::from_secs(30), || hub
        .hubcli(&["launcher", "ls"])
        .status
        .success()));
    let mut by_hand = Command::new(hub.home.plugins().join("beat"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run beat by hand");
    let pid = by_hand.id();
    let beat = |hub: &LauncherHub| -> serde_json::Value {
        let out = hub.hubcli(&["launcher", "ls", "--json"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        all.into_iter()
            .find(|p| p["name"] == "beat")
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            let b = beat(&hub);
            b["state"] == "external" && b["pid"].as_u64() == Some(u64::from(pid))
        }),
        "{}",
        beat(&hub)
    );
    let out = hub.hubcli(&["launcher", "start", "beat"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("started outside this launcher") && err.contains(&pid.to_string()),
        "{err}"
    );
    let out = hub.hubcli(&["launcher", "stop", "beat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = by_hand.wait().expect("reap");
    assert!(!status.success(), "stopped by its signal: {status:?}");
    assert_eq!(beat(&hub)["state"], "disabled");
}

/// A plugin must not be able to pin another one as `external` (and so keep it from starting)
/// by running something with that plugin's path on its command line.
#[test]
fn a_plugin_cannot_make_another_look_external() {
    let hub = home_with("createPluginCred: false\nautostart: [hostile]\n");
    script(&hub.home, "victim", "exec sleep 1000");
    let victim = hub.home.plugins().join("victim");
    // GNU tail takes its options after the files: argv[1..2] are /dev/null and the victim's
    // path; it cannot open the victim (sandbox) and follows /dev/null for ever, outside the
    // hostile plugin's session and tree (the subshell that started it has exited).
    script(
        &hub.home,
        "hostile",
        &format!(
            "(setsid tail /dev/null {} -f >/dev/null 2>&1 &)\nexec sleep 1000",
            victim.display()
        ),
    );
    let hub = launch(hub);
    hub.wait_running("hostile");
    let needle = victim.display().to_string();
    let helper_runs = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    c.starts_with(b"tail\0") && String::from_utf8_lossy(&c).contains(&needle)
                })
            })
    };
    assert!(
        wait_until(Duration::from_secs(10), helper_runs),
        "the hostile helper runs"
    );
    let out = hub.hubcli(&["launcher", "ls", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let v = all
        .iter()
        .find(|p| p["name"] == "victim")
        .cloned()
        .unwrap_or_default();
    assert_eq!(v["state"], "stopped", "{v}");
    let out = hub.hubcli(&["launcher", "start", "victim"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
