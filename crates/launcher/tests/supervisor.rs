//! The supervisor driven in-process against real child processes (shell scripts and copies of
//! system binaries in a temporary home). Run under nextest, each test is its own process, so
//! the supervisor's reaper and subreaper setting affect only that test.

use hivehub_api::launcher::PluginState;
use hivehub_home::Home;
use hivehub_launcher::config::LauncherConfig;
use hivehub_launcher::process::tree_of;
use hivehub_launcher::{LaunchError, Supervisor};
use hivehub_testkit::wait_until;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

struct Fixture {
    _dir: tempfile::TempDir,
    home: Home,
}

fn fixture() -> Fixture {
    let dir = hivehub_testkit::tempdir();
    let home = Home::at(dir.path().join("home"));
    home.ensure_dirs().unwrap();
    Fixture { _dir: dir, home }
}

fn script(home: &Home, name: &str, body: &str) {
    let p = home.plugins().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn config(yaml: &str) -> LauncherConfig {
    let full =
        format!("core: \"\"\nserverURL: mqtts://127.0.0.1:1\ncreatePluginCred: false\n{yaml}");
    hivehub_launcher::config::parse(&full, "test.yaml").unwrap()
}

fn supervisor(f: &Fixture, yaml: &str) -> Supervisor {
    hivehub_launcher::process::become_subreaper().unwrap();
    // The guard kills every plugin session when this test process ends, even on a panic.
    let guard = hivehub_launcher::process::Guard::start_for(
        &hivehub_testkit::workspace_bin("launcher"),
        Some(f.home.root()),
    )
    .ok();
    let s = Supervisor::new(f.home.clone(), config(yaml), guard).unwrap();
    s.spawn_reaper().unwrap();
    s
}

fn log(f: &Fixture, name: &str) -> String {
    std::fs::read_to_string(f.home.logs().join(format!("{name}.log"))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatty_plugin_logs_with_timestamps_and_markers() {
    let f = fixture();
    std::fs::copy("/usr/bin/yes", f.home.plugins().join("yes")).unwrap();
    let s = supervisor(&f, "");
    let info = s.start("yes").await.unwrap();
    let pid = info.pid.expect("a pid");
    assert_eq!(info.state, PluginState::Running);
    assert!(wait_until(Duration::from_secs(10), || log(&f, "yes").len() > 10_000));
    let text = log(&f, "yes");
    assert!(
        text.contains(&format!("=== started yes: pid {pid}, start #1")),
        "{}",
        &text[..200]
    );
    let line = text.lines().nth(1).unwrap();
    // 2026-11-26T08:00:00.123Z [out] y
    assert!(
        line.len() > 24 && line.as_bytes()[10] == b'T' && line.ends_with("[out] y"),
        "{line}"
    );

    let info = s.stop("yes").await.unwrap();
    assert_eq!(info.state, PluginState::Disabled);
    assert!(info.pid.is_none());
    assert!(tree_of(pid).is_empty(), "yes still runs");
    assert!(wait_until(Duration::from_secs(5), || log(&f, "yes")
        .contains("yes exited: signal 15 (SIGTERM)")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_are_idempotent_and_names_are_checked() {
    let f = fixture();
    script(&f.home, "sleeper", "exec sleep 1000");
    let s = supervisor(&f, "");
    let a = s.start("sleeper").await.unwrap();
    let b = s.start("sleeper").await.unwrap();
    assert_eq!(a.pid, b.pid);
    assert_eq!(b.start_count, 1);
    s.stop("sleeper").await.unwrap();
    let again = s.stop("sleeper").await.unwrap();
    assert_eq!(again.state, PluginState::Disabled);
    for r in [s.start("nope").await, s.stop("nope").await] {
        match r {
            Err(LaunchError::NotFound { name, available }) => {
                assert_eq!(name, "nope");
                assert!(available.contains("sleeper"));
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    let e = s.start("nope").await.unwrap_err().to_string();
    assert_eq!(e, "no plugin named 'nope'; available: sleeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_tree_that_ignores_sigterm_after_the_timeout() {
    let f = fixture();
    // Ignored signals are inherited: the children and grandchildren ignore SIGTERM too.
    script(
        &f.home,
        "stubborn",
        "trap '' TERM\nsleep 1000 &\nsh -c 'sleep 1000 & sleep 1000' &\n(setsid sleep 1000 &)\nwhile true; do sleep 1; done",
    );
    let s = supervisor(&f, "plugins:\n  stubborn:\n    stopTimeout: 1s\n");
    let pid = s.start("stubborn").await.unwrap().pid.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || tree_of(pid).len() >= 5),
        "{:?}",
        tree_of(pid)
    );
    let tree = tree_of(pid);
    let t0 = Instant::now();
    let info = s.stop("stubborn").await.unwrap();
    let took = t0.elapsed();
    assert_eq!(info.state, PluginState::Disabled);
    for p in &tree {
        assert!(
            !hivehub_launcher::process::pid_alive(*p),
            "pid {p} of {tree:?} survived"
        );
    }
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "stop took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_all_then_stop_all_leaves_nothing() {
    let f = fixture();
    for n in ["a", "b", "c"] {
        script(&f.home, n, "sleep 1000 & exec sleep 1000");
    }
    let s = supervisor(&f, "autostart: [c, a]\n");
    let results = s.start_all().await;
    let order: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        order,
        ["c", "a", "b"],
        "autostart first, in order, then the rest"
    );
    let pids: Vec<u32> = results
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().pid.unwrap())
        .collect();
    let stopped = s.stop_all(true).await;
    let order: Vec<&str> = stopped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["b", "a", "c"], "reverse start order");
    for p in pids {
        assert!(tree_of(p).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_leaves_a_reason() {
    let f = fixture();
    script(&f.home, "crash", "echo 'cannot open device' >&2; exit 3");
    script(&f.home, "notready", "exec sleep 1000");
    let s = supervisor(&f, "readyTimeout: 500ms\nplugins:\n  crash:\n    waitReady: true\n  notready:\n    waitReady: true\n");
    let e = s.start("crash").await.unwrap_err().to_string();
    assert!(
        e.contains("exited before it was ready") && e.contains("exit code 3"),
        "{e}"
    );
    let info = s.info("crash").unwrap();
    assert_eq!(info.state, PluginState::Failed);
    assert_eq!(info.last_exit.as_ref().and_then(|x| x.code), Some(3));
    assert!(
        wait_until(Duration::from_secs(5), || {
            let l = log(&f, "crash");
            l.contains("[err] cannot open device")
                && l.contains("start failed")
                && l.contains("exited: exit code 3")
        }),
        "{}",
        log(&f, "crash")
    );

    let e = s.start("notready").await.unwrap_err().to_string();
    assert!(e.contains("not ready after 0.5s"), "{e}");
    let info = s.info("notready").unwrap();
    assert_eq!(info.state, PluginState::Failed);
    assert!(
        info.pid.is_none(),
        "a plugin that never got ready is not left running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rotation_caps_disk_use() {
    let f = fixture();
    std::fs::copy("/usr/bin/yes", f.home.plugins().join("yes")).unwrap();
    let s = supervisor(&f, "logMaxSize: 64KiB\nlogMaxFiles: 2\n");
    s.start("yes").await.unwrap();
    let logs = f.home.logs();
    assert!(wait_until(Duration::from_secs(20), || logs
        .join("yes.log.2")
        .exists()));
    // Keep it writing a while longer, then measure.
    let size = || -> u64 {
        std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        assert!(
            size() < 4 * 64 * 1024 + 64 * 1024,
            "logs use {} bytes",
            size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop("yes").await.unwrap();
    // During a rotation a third old file exists for an instant before the oldest is deleted.
    assert!(wait_until(Duration::from_secs(2), || !logs
        .join("yes.log.3")
        .exists()));
    assert!(
        size() <= 3 * (64 * 1024 + 64 * 1024),
        "logs use {} bytes",
        size()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_appear_and_disappear_without_restart() {
    let f = fixture();
    // `named` is in the config, `late` is not.
    let s = supervisor(&f, "plugins:\n  named:\n    stopTimeout: 2s\n");
    assert!(s.info("late").is_err());
    for n in ["late", "named"] {
        script(&f.home, n, "exec sleep 1000");
    }
    s.discover();
    assert_eq!(s.info("late").unwrap().state, PluginState::Stopped);
    let mut gone = s.notices();
    for n in ["late", "named"] {
        std::fs::remove_file(f.home.plugins().join(n)).unwrap();
    }
    s.discover();
    // A deleted binary the config does not name leaves the list (and its retained status is
    // cleared); one the config names stays, missing, and a start says why.
    assert!(s.info("late").is_err(), "{:?}", s.info("late"));
    assert!(
        matches!(gone.try_recv(), Ok(hivehub_launcher::supervisor::Notice::Gone(n)) if n == "late")
    );
    assert_eq!(s.info("named").unwrap().state, PluginState::Missing);
    let e = s.start("named").await.unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
    // start all reports it and starts the others.
    script(&f.home, "other", "exec sleep 1000");
    let all = s.start_all().await;
    let by_name = |n: &str| all.iter().find(|(m, _)| m == n).map(|(_, r)| r.is_ok());
    assert_eq!(by_name("named"), Some(false));
    assert_eq!(by_name("other"), Some(true));
    s.stop_all(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_autostart_keeps_the_order_and_waits_for_readiness() {
    let f = fixture();
    let before: Vec<String> = (1..=8).map(|i| format!("a{i}")).collect();
    let after: Vec<String> = (1..=8).map(|i| format!("b{i}")).collect();
    for n in before.iter().chain(&after) {
        script(&f.home, n, "exec sleep 1000");
    }
    // Never ready: the plugins after it wait for its readiness timeout.
    script(&f.home, "gate", "exec sleep 1000");
    let order: Vec<String> = before
        .iter()
        .cloned()
        .chain(["gate".to_string()])
        .chain(after.iter().cloned())
        .collect();
    let s = supervisor(
        &f,
        &format!(
            "autorestart: never\nreadyTimeout: 500ms\nautostart: [{}]\nplugins:\n  gate:\n    waitReady: true\n",
            order.join(", ")
        ),
    );
    s.autostart().await;
    let info = |n: &str| s.info(n).unwrap();
    // Spawned in the autostart order: PIDs are handed out in increasing order.
    let pids: Vec<u32> = before
        .iter()
        .chain(&after)
        .map(|n| info(n).pid.expect("running"))
        .collect();
    assert!(
        pids.windows(2).all(|w| w[0] < w[1]),
        "spawn order follows autostart: {pids:?}"
    );
    let gate = info("gate");
    assert_eq!(gate.state, PluginState::Failed, "{gate:?}");
    let gate_start = gate.start_time.expect("gate was started");
    for n in &before {
        assert!(info(n).start_time.unwrap() <= gate_start);
    }
    for n in &after {
        let t = info(n).start_time.unwrap();
        assert!(
            t >= gate_start + 500,
            "{n} started {} ms after the gate, before its readiness timeout",
            t - gate_start
        );
    }
    let stopped = s.stop_all(true).await;
    assert_eq!(stopped.len(), 16);
    assert!(stopped.iter().all(|(_, r)| r.is_ok()));
    for p in pids {
        assert!(tree_of(p).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_all_waits_for_stubborn_plugins_concurrently_and_leaves_no_daemon() {
    let f = fixture();
    let names: Vec<String> = (1..=4).map(|i| format!("stubborn{i}")).collect();
    let mut yaml = String::from("plugins:\n");
    for n in &names {
        // Ignores SIGTERM, and leaves a daemon outside its session and tree.
        script(
            &f.home,
            n,
            "trap '' TERM\n(setsid sleep 1000 &)\nwhile true; do sleep 1; done",
        );
        yaml.push_str(&format!("  {n}:\n    stopTimeout: 1s\n"));
    }
    let s = supervisor(&f, &yaml);
    for n in &names {
        s.start(n).await.unwrap();
    }
    let marked = || hivehub_launcher::process::marked_processes(f.home.root(), None);
    // Each plugin: the shell, its sleep, and the daemon.
    assert!(
        wait_until(Duration::from_secs(5), || marked().len() >= 12),
        "{:?}",
        marked()
    );
    let t0 = Instant::now();
    let stopped = s.stop_all(true).await;
    let took = t0.elapsed();
    let order: Vec<&str> = stopped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["stubborn4", "stubborn3", "stubborn2", "stubborn1"]);
    for (n, r) in &stopped {
        assert_eq!(r.as_ref().unwrap().state, PluginState::Disabled, "{n}");
    }
    assert!(marked().is_empty(), "left: {:?}", marked());
    // The four stop timeouts run at the same time, not one after the other.
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "stop-all took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signals_the_main_process_once_then_what_it_left() {
    let f = fixture();
    let out = f.home.stores().join("polite/out");
    // The main process counts its SIGTERMs for a while before it exits cleanly; its child
    // records when its own SIGTERM came, after the main process was gone.
    script(
        &f.home,
        "polite",
        &format!(
            "o={o}\nsh -c 'trap \"echo child-term >> {o}; exit 0\" TERM; while :; do sleep 0.02; done' &\nn=0\ntrap 'n=$((n+1)); echo main-term-$n >> {o}' TERM\nwhile [ $n -eq 0 ]; do sleep 0.02; done\nsleep 0.3\necho main-exit >> $o\nexit 0",
            o = out.display()
        ),
    );
    let s = supervisor(&f, "");
    let pid = s.start("polite").await.unwrap().pid.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || tree_of(pid).len() >= 3),
        "{:?}",
        tree_of(pid)
    );
    let tree = tree_of(pid);
    let info = s.stop("polite").await.unwrap();
    assert_eq!(info.state, PluginState::Disabled);
    assert_eq!(
        info.last_exit.and_then(|e| e.code),
        Some(0),
        "the main process exited by itself"
    );
    let lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines,
        ["main-term-1", "main-exit", "child-term"],
        "one SIGTERM to the main process; the child's only after the main process exited"
    );
    for p in &tree {
        assert!(
            !hivehub_launcher::process::pid_alive(*p),
            "pid {p} of {tree:?} survived"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_socket_serves_systemd_notify_for_the_plugin_s_life() {
    let f = fixture();
    // A shell plugin has no datagram sockets: systemd-notify sends for it. The socket must
    // still be there for a later STOPPING=1.
    script(
        &f.home,
        "shelly",
        "systemd-notify --ready || exit 3\nsleep 0.3\nsystemd-notify STOPPING=1 || exit 4\nexec sleep 1000",
    );
    let s = supervisor(&f, "plugins:\n  shelly:\n    waitReady: true\n");
    let info = s.start("shelly").await.unwrap();
    assert_eq!(info.state, PluginState::Running);
    assert!(info.status.ends_with("ready"), "{}", info.status);
    let log = f.home.logs().join("shelly.log");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("notify: STOPPING=1"))),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(s.info("shelly").unwrap().state, PluginState::Running);
    s.stop("shelly").await.unwrap();
    let sock = f.home.run().join("notify/shelly.sock");
    assert!(
        wait_until(Duration::from_secs(5), || !sock.exists()),
        "the socket goes with the plugin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_plugin_is_rate_limited_and_the_log_says_how_much_was_dropped() {
    let f = fixture();
    // It writes 50000 lines and exits: its pipe is read to the end before the exit marker.
    script(&f.home, "chatty2", "seq 1 50000");
    let s = supervisor(&f, "");
    s.start("chatty2").await.unwrap();
    let log = f.home.logs().join("chatty2.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || read()
            .contains("chatty2 exited")),
        "{}",
        read().lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
    let text = read();
    let out_lines = text.lines().filter(|l| l.contains(" [out] ")).count();
    assert_eq!(
        out_lines as u64,
        hivehub_launcher::logs::RATE_BURST,
        "the first lines, then none"
    );
    assert!(
        text.contains(" [out] 10000\n") && !text.contains(" [out] 10001\n"),
        "in order, from the first"
    );
    // Dropping is announced when it starts, and the count is written when the run ends.
    assert!(
        text.contains("dropping lines until the window ends"),
        "{text:.300}"
    );
    assert!(
        text.contains("dropped 40000 lines"),
        "{}",
        text.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_folder_changes_are_seen_without_a_periodic_scan() {
    let f = fixture();
    let s = supervisor(&f, "");
    // A periodic rescan once an hour: what is seen sooner came from inotify.
    s.spawn_watcher(Duration::from_secs(3600));
    script(&f.home, "fresh", "exec sleep 1000");
    assert!(
        wait_until(Duration::from_secs(5), || s.info("fresh").is_ok()),
        "a new binary is listed"
    );
    std::fs::remove_file(f.home.plugins().join("fresh")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || s.info("fresh").is_err()),
        "a deleted one leaves the list"
    );
}
