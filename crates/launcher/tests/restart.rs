//! Automatic restarts with backoff, in-process against real child processes, with time scaled
//! down through the config.

use hivehub_api::launcher::PluginState;
use hivehub_home::Home;
use hivehub_testkit::{plugin_script, wait_until};
use std::time::Duration;

mod common;
use common::{home, supervisor};

/// Fails `fails` times (exit 1 after 50 ms), then stays up.
fn flaky(home: &Home, fails: u32) {
    plugin_script(
        home,
        "flaky",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\nif [ $n -le {fails} ]; then sleep 0.05; exit 1; fi\nexec sleep 1000",
            c = home.stores().join("flaky/count").display()
        ),
    );
}

/// A supervisor whose plugin `svc` (a sleeper) is restarted at once after every exit.
fn restarted_at_once() -> (
    tempfile::TempDir,
    Home,
    hivehub_launcher::supervisor::Supervisor,
) {
    let (d, home) = home();
    plugin_script(&home, "svc", "exec sleep 1000");
    let s = supervisor(
        &home,
        "autorestart: always\nbackoff: {base: 0s, jitter: 0}\n",
    );
    (d, home, s)
}

/// Kills a plugin's process as a crash would.
fn crash(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
}

fn start_times(home: &Home) -> Vec<u64> {
    let log = std::fs::read_to_string(home.logs().join("flaky.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("=== started flaky"))
        .map(|l| {
            // 2026-11-26T08:00:00.123Z → milliseconds of the day
            let t = &l[11..23];
            let h: u64 = t[0..2].parse().unwrap();
            let m: u64 = t[3..5].parse().unwrap();
            let s: u64 = t[6..8].parse().unwrap();
            let ms: u64 = t[9..12].parse().unwrap();
            ((h * 60 + m) * 60 + s) * 1000 + ms
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_backs_off_then_decays_after_a_stable_run() {
    let (_d, home) = home();
    flaky(&home, 4);
    let s = supervisor(
        &home,
        "autorestart: on-failure\nbackoff: {base: 100ms, factor: 2, max: 10s, jitter: 0, stable: 1s}\n",
    );
    s.start("flaky").await.unwrap();
    // While waiting for a retry, the state and the next retry time are visible.
    assert!(wait_until(Duration::from_secs(5), || {
        let i = s.info("flaky").unwrap();
        i.state == PluginState::Backoff && i.next_retry_at.is_some() && i.attempt >= 1
    }));
    // 4 failures, then it stays up: 5 starts.
    assert!(wait_until(Duration::from_secs(20), || start_times(&home)
        .len()
        == 5));
    let t = start_times(&home);
    let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // Each gap is ~50 ms of run time plus the delay: 100, 200, 400, 800 ms.
    for (gap, delay) in gaps.iter().zip([100u64, 200, 400, 800]) {
        assert!(*gap >= delay && *gap < delay + 400, "gaps {gaps:?}");
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "growing: {gaps:?}");
    // The start marker is written at spawn, before the start is done.
    assert!(wait_until(Duration::from_secs(5), || s
        .info("flaky")
        .unwrap()
        .state
        == PluginState::Running));
    let i = s.info("flaky").unwrap();
    assert_eq!(i.attempt, 4);
    assert_eq!(i.restarts, 4);
    // After the stable period the attempt count is back to 0.
    assert!(wait_until(Duration::from_secs(5), || s
        .info("flaky")
        .unwrap()
        .attempt
        == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stop_is_not_restarted_and_a_manual_start_resets() {
    let (_d, home) = home();
    plugin_script(&home, "svc", "exec sleep 1000");
    let s = supervisor(
        &home,
        "autorestart: always\nbackoff: {base: 50ms, jitter: 0}\n",
    );
    let pid = s.start("svc").await.unwrap().pid.unwrap();
    s.stop("svc").await.unwrap();
    // Ten backoff periods without a restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let i = s.info("svc").unwrap();
    assert_eq!(i.state, PluginState::Disabled);
    assert_eq!(i.start_count, 1);
    // A crash (not a user stop) is restarted, under `always`.
    let pid2 = s.start("svc").await.unwrap().pid.unwrap();
    assert_ne!(pid, pid2);
    crash(pid2);
    assert!(wait_until(Duration::from_secs(5), || {
        let i = s.info("svc").unwrap();
        i.state == PluginState::Running && i.pid != Some(pid2)
    }));
    assert_eq!(s.info("svc").unwrap().restarts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_count_survives_a_launcher_restart() {
    let (_d, home) = home();
    flaky(&home, 100);
    let yaml = "autorestart: on-failure\nbackoff: {base: 100ms, factor: 2, max: 1h, jitter: 0}\n";
    {
        let s = supervisor(&home, yaml);
        s.start("flaky").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(wait_until(Duration::from_secs(10), || s
            .info("flaky")
            .unwrap()
            .attempt
            >= 3));
        s.stop("flaky").await.unwrap();
        // A stop does not forget the crash loop.
        assert!(s.info("flaky").unwrap().attempt >= 3);
    }
    let s2 = supervisor(&home, yaml);
    assert!(
        s2.info("flaky").unwrap().attempt >= 3,
        "attempt lost across restart"
    );
    // A manual start resets it.
    let _ = s2.start("flaky").await;
    assert!(s2.info("flaky").unwrap().attempt <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_restart_survives_a_binary_that_is_briefly_missing() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, home) = home();
    plugin_script(&home, "svc", "exec sleep 1000");
    let s = supervisor(
        &home,
        "autorestart: always\nbackoff: {base: 200ms, factor: 1.5, jitter: 0}\n",
    );
    // Scans run often, as they would during an upgrade that takes a while.
    s.spawn_watcher(Duration::from_millis(20));
    let pid = s.start("svc").await.unwrap().pid.unwrap();
    let bin = home.plugins().join("svc");
    let mode = |m: u32| std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(m));
    mode(0o644).unwrap();
    crash(pid);
    // Restarts fail while the binary is not executable, and it stays in backoff throughout.
    let mut seen = Vec::new();
    let failed_twice = wait_until(Duration::from_secs(10), || {
        let i = s.info("svc").unwrap();
        seen.push(i.state);
        i.attempt >= 3
    });
    assert!(
        failed_twice,
        "retries went on: {:?}",
        s.info("svc").unwrap()
    );
    let i = s.info("svc").unwrap();
    assert_eq!(i.state, PluginState::Backoff, "{i:?}");
    assert!(i.next_retry_at.is_some(), "{i:?}");
    assert!(
        i.status.contains("not found"),
        "the reason is visible: {}",
        i.status
    );
    assert!(
        seen.iter().all(|s| matches!(
            s,
            PluginState::Running | PluginState::Backoff | PluginState::Starting
        )),
        "never dropped to missing or stopped: {seen:?}"
    );
    mode(0o755).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let i = s.info("svc").unwrap();
            i.state == PluginState::Running && i.pid != Some(pid)
        }),
        "restarted once the binary was back: {:?}",
        s.info("svc").unwrap()
    );
    s.stop("svc").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_event_carries_only_the_ending_run_s_lines() {
    exited_tails("100ms").await;
}

/// Restarted at once, the next run has started before the ended run's last lines are read.
/// (A test of its own: a process has one reaper, so one supervisor.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_event_carries_the_ending_run_s_lines_after_an_immediate_restart() {
    exited_tails("0s").await;
}

async fn exited_tails(base: &str) {
    let (_d, home) = home();
    // Each run prints its own number, then fails; the third stays up.
    plugin_script(
        &home,
        "flaky",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\necho \"run $n\"\nif [ $n -le 2 ]; then sleep 0.05; exit 1; fi\nexec sleep 1000",
            c = home.stores().join("flaky/count").display()
        ),
    );
    let s = supervisor(
        &home,
        &format!("autorestart: on-failure\nbackoff: {{base: {base}, jitter: 0}}\n"),
    );
    let mut notices = s.notices();
    s.start("flaky").await.unwrap();
    let mut tails = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tails.len() < 2 {
        let n = tokio::time::timeout_at(deadline, notices.recv())
            .await
            .expect("two exited events")
            .expect("notices");
        if let hivehub_launcher::supervisor::Notice::Event(e) = n {
            if e.event == "exited" {
                tails.push(e.log_tail);
            }
        }
    }
    let lines = |t: &[String]| -> Vec<String> {
        t.iter()
            .filter(|l| l.contains("run "))
            .map(|l| l.rsplit("run ").next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(lines(&tails[0]), ["1"], "base {base}: {tails:?}");
    assert_eq!(lines(&tails[1]), ["2"], "base {base}: {tails:?}");
    s.stop("flaky").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_publishes_running_once() {
    use hivehub_launcher::supervisor::Notice;
    let (_d, home) = home();
    plugin_script(&home, "svc", "exec sleep 1000");
    let s = supervisor(
        &home,
        "autorestart: always\nbackoff: {base: 50ms, jitter: 0}\n",
    );
    let mut notices = s.notices();
    let pid = s.start("svc").await.unwrap().pid.unwrap();
    // And once more after a crash and its automatic restart.
    crash(pid);
    assert!(wait_until(Duration::from_secs(5), || {
        let i = s.info("svc").unwrap();
        i.state == PluginState::Running && i.pid != Some(pid)
    }));
    // The restart's last status (with `restarts` counted) is out once the pid file is written.
    s.stop("svc").await.unwrap();
    let mut running = Vec::new();
    while let Ok(n) = notices.try_recv() {
        if let Notice::Status(i) = n {
            if i.state == PluginState::Running {
                running.push((i.pid, i.restarts));
            }
        }
    }
    assert_eq!(running.len(), 2, "one `running` per start: {running:?}");
    assert_eq!(
        running[1].1, 1,
        "the restart's status counts it: {running:?}"
    );
}

/// An immediate restart spawns before the exit is announced, but the announcements keep their
/// order: the exit's status and the `restarting` event come before the new start's, and the
/// last status is the running one (never a stale `backoff` after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_restart_announces_the_exit_before_the_new_start() {
    use hivehub_launcher::supervisor::Notice;
    let (_d, home, s) = restarted_at_once();
    let pid = s.start("svc").await.unwrap().pid.unwrap();
    let mut notices = s.notices();
    crash(pid);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Until the new process is announced as running.
    loop {
        let n = tokio::time::timeout_at(deadline, notices.recv())
            .await
            .expect("the restart's notices")
            .expect("notices");
        match n {
            Notice::Event(e) if e.plugin == "svc" => seen.push(format!("event {}", e.event)),
            Notice::Status(i) if i.name == "svc" => {
                let running = i.state == PluginState::Running && i.pid != Some(pid);
                seen.push(format!("status {}", i.state.as_str()));
                if running {
                    break;
                }
            }
            _ => {}
        }
    }
    let at = |what: &str| {
        seen.iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("no {what} in {seen:?}"))
    };
    assert!(at("event restarting") < at("event started"), "{seen:?}");
    assert!(at("status backoff") < at("event started"), "{seen:?}");
    // The log's exit marker, written once the old run's output is read, names the old process.
    let marker = "=== svc exited: signal 9 (SIGKILL) after ";
    let log = || std::fs::read_to_string(home.logs().join("svc.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || {
            log()
                .lines()
                .any(|l| l.contains(marker) && l.ends_with(&format!("(pid {pid})")))
        }),
        "{}",
        log()
    );
    // Nothing about the old process arrives after the new one runs.
    s.stop("svc").await.unwrap();
    while let Ok(n) = notices.try_recv() {
        if let Notice::Status(i) = n {
            assert_ne!(
                i.state,
                PluginState::Backoff,
                "a stale status after the restart: {seen:?}"
            );
        }
    }
}

/// The pid record keeps its file across restarts (no inode allocated and freed per start),
/// is emptied by a stop, and an empty record means no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pid_record_is_rewritten_in_place_and_emptied_after_the_stop() {
    use std::os::unix::fs::MetadataExt;
    let (_d, home, s) = restarted_at_once();
    let record = home.run().join("svc.pid");
    let names = |p: u32| {
        std::fs::read_to_string(&record)
            .is_ok_and(|t| t.split_whitespace().next() == Some(p.to_string().as_str()))
    };
    let first = s.start("svc").await.unwrap().pid.unwrap();
    assert!(wait_until(Duration::from_secs(5), || names(first)));
    // Held open, the first file keeps its inode number even if the path were given another.
    let held = std::fs::File::open(&record).unwrap();
    let inode = held.metadata().unwrap().ino();
    crash(first);
    assert!(wait_until(Duration::from_secs(10), || {
        s.info("svc")
            .unwrap()
            .pid
            .is_some_and(|p| p != first && names(p))
    }));
    assert_eq!(
        std::fs::metadata(&record).unwrap().ino(),
        inode,
        "the restart replaced the record instead of rewriting it"
    );
    s.stop("svc").await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || std::fs::metadata(
        &record
    )
    .is_ok_and(|m| m.len() == 0)));
    // An empty record is no record: the plugin starts again as itself, not as `external`.
    let again = s.start("svc").await.unwrap();
    assert_eq!(again.state, PluginState::Running);
    assert!(wait_until(Duration::from_secs(5), || names(
        again.pid.unwrap()
    )));
    s.stop("svc").await.unwrap();
}
