//! The launcher in-process: after `run` returns, nothing of it is running: no task on the
//! runtime, no plugin process.

use hivehub_launcher::{config, run, LaunchOptions};
use hivehub_testkit::{plugin_script, wait_until, workspace_bin, LauncherHub};
use std::time::Duration;

#[test]
fn nothing_of_the_launcher_runs_after_run_returns() {
    let hub = LauncherHub::new(
        &workspace_bin("launcher"),
        "httpListen: 127.0.0.1:0\nautostart: [beat]\n",
        "  beat:\n    restart: always\n",
    );
    plugin_script(&hub.home, "beat", "exec sleep 1000");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let path = hub.home.config_file("launcher");
        let opts = LaunchOptions {
            home: hub.home.clone(),
            config: config::load(&path).expect("config"),
            server: None,
            config_path: path,
            guard: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let launcher = tokio::spawn(run(opts, async {
            let _ = stopped.await;
        }));
        let beat = tokio::task::spawn_blocking({
            let pid_file = hub.home.run().join("beat.pid");
            move || {
                // The record is written in place: wait for its content, not for the file.
                wait_until(Duration::from_secs(30), || {
                    std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty())
                });
                std::fs::read_to_string(&pid_file).ok()
            }
        })
        .await
        .expect("wait")
        .expect("beat started");
        let pid: i32 = beat
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("pid");
        let metrics = tokio::runtime::Handle::current().metrics();
        assert!(metrics.num_alive_tasks() > 3, "the launcher's tasks run");

        stop.send(()).expect("launcher alive");
        tokio::time::timeout(Duration::from_secs(30), launcher)
            .await
            .expect("run returned in time")
            .expect("join")
            .expect("run succeeded");
        // Every task of the launcher is awaited before `run` returns; tasks that libraries spawn
        // for their own teardown (axum's graceful shutdown, a closed client's last steps) may
        // take a moment more, but none may stay.
        let left = metrics.num_alive_tasks();
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        while metrics.num_alive_tasks() > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            0,
            "a task outlived run ({left} alive when it returned)"
        );
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
        assert!(gone, "the plugin outlived run");
    });
}
