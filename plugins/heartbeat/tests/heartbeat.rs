//! The real heartbeat binary against a real hubcore: beats seen by mosquitto_sub, `health/ping`
//! callable by a viewer, and a clean exit on SIGTERM.

use heartbeat::{Beat, Pong, CAPABILITY, EVENT_BEAT, METHOD_PING, THING};
use hivehub_api::{ErrorCode, Role, Topic};
use hivehub_testkit::{args, wait_until, workspace_bin, Core, Sub};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The plugin process; killed and reaped on every path out of the test.
struct Plugin {
    child: Option<Child>,
    log: PathBuf,
}

impl Plugin {
    fn spawn(core: &Core, id: &str, log_dir: &Path) -> Plugin {
        let log = log_dir.join(format!("{id}.log"));
        let f = std::fs::File::create(&log).expect("plugin log");
        let child = Command::new(env!("CARGO_BIN_EXE_heartbeat"))
            .args(["--interval", "200ms"])
            .env("HIVEHUB_HOME", core.home.root())
            .env("HIVEHUB_SERVER", &core.url)
            .env("HIVEHUB_CLIENT_ID", id)
            .env(
                "HIVEHUB_LOG_LEVEL",
                "info,heartbeat=debug,hivehub_client=debug",
            )
            .env_remove("HEARTBEAT_INTERVAL")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn heartbeat");
        Plugin {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if the process has already exited.
    fn assert_running(&mut self) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "heartbeat exited early with {exited:?}; log:\n{}",
            self.log()
        );
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The beats in mosquitto_sub's `-v` output (`topic payload` lines; `-d` lines are skipped).
fn beats(output: &str, topic: &str) -> Vec<Beat> {
    let prefix = format!("{topic} ");
    output
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("beat {json}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_answers_viewers_and_stops_on_sigterm() {
    let core = Core::start(&workspace_bin("hubcore"));
    let admin = core.client("admin").await;
    core.add_client(&admin, "heartbeat", Role::Service).await;
    core.add_client(&admin, "alice", Role::Viewer).await;

    let sub = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/heartbeat/#", "-v"]),
        ]
        .concat(),
    );
    let log_dir = tempfile::tempdir().expect("tempdir");
    let mut plugin = Plugin::spawn(&core, "heartbeat", log_dir.path());

    // (a) At least two beats, on the SDK-built topic, counting up.
    let topic = Topic::event("heartbeat", THING, EVENT_BEAT)
        .expect("topic")
        .to_string();
    assert_eq!(topic, "event/heartbeat/status/beat/heartbeat");
    let seen = wait_until(Duration::from_secs(15), || {
        beats(&sub.output(), &topic).len() >= 2
    });
    assert!(
        seen,
        "fewer than two beats; mosquitto_sub:\n{}\nheartbeat log:\n{}\ncore log:\n{}",
        sub.output(),
        plugin.log(),
        core.log()
    );
    let got = beats(&sub.output(), &topic);
    assert!(got.iter().all(|b| b.schema_version == 1), "{got:?}");
    assert!(
        got.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq does not increase: {got:?}"
    );
    plugin.assert_running();

    // (b) A viewer may ping. Retry until the plugin has registered its permissions: until then
    // the core denies the call (or nobody answers yet).
    let alice = core.client("alice").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let pong: Pong = loop {
        let r = alice
            .request_raw(
                "heartbeat",
                CAPABILITY,
                METHOD_PING,
                b"{}".to_vec(),
                Duration::from_secs(2),
            )
            .await;
        match r {
            Ok(v) => break serde_json::from_value(v).expect("pong reply"),
            // Denied before the grant, or a timeout before the plugin subscribed: poll again.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!(
                "no pong for a viewer: {e}\nheartbeat log:\n{}",
                plugin.log()
            ),
        }
    };
    assert!(pong.pong);
    assert!(pong.seq >= 2, "{pong:?}");
    let e = alice
        .request_raw(
            "heartbeat",
            CAPABILITY,
            "reboot",
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("unknown method must fail");
    assert_eq!(e.code(), Some(ErrorCode::UnknownMethod), "{e}");

    // (c) SIGTERM: a clean exit, status 0, within 5 s.
    plugin.assert_running();
    let status = plugin.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "heartbeat did not exit 0 within 5 s after SIGTERM: {status:?}; log:\n{}",
        plugin.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_by_hand_from_plugins_it_finds_its_home() {
    let core = Core::start(&workspace_bin("hubcore"));
    let admin = core.client("admin").await;
    core.add_client(&admin, "heartbeat", Role::Service).await;
    let sub = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/heartbeat/#", "-v"]),
        ]
        .concat(),
    );
    std::fs::create_dir_all(core.home.plugins()).expect("plugins/");
    let bin = core.home.plugins().join("heartbeat");
    std::fs::copy(env!("CARGO_BIN_EXE_heartbeat"), &bin).expect("copy heartbeat");
    let run = |home: Option<&str>| {
        let mut cmd = Command::new(&bin);
        cmd.args(["--interval", "200ms"])
            .env_remove("HIVEHUB_HOME")
            .env_remove("HIVEHUB_SERVER")
            .env_remove("HIVEHUB_CLIENT_ID")
            .env_remove("HEARTBEAT_INTERVAL")
            .env_remove("NOTIFY_SOCKET")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(h) = home {
            cmd.env("HIVEHUB_HOME", h);
        }
        cmd.spawn().expect("spawn heartbeat")
    };

    // An empty HIVEHUB_HOME is an error, not the working folder.
    let out = run(Some("")).wait_with_output().expect("heartbeat");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HIVEHUB_HOME is set but empty"), "{err}");

    // Nothing set: the binary's place in HOME/plugins gives the home, its name the client ID,
    // and the core's run/hubcore.url the server.
    let mut child = run(None);
    let seen = wait_until(Duration::from_secs(15), || {
        sub.output()
            .contains("event/heartbeat/status/beat/heartbeat")
    });
    let _ = child.kill();
    let out = child.wait_with_output().expect("heartbeat");
    assert!(
        seen,
        "no beat from a heartbeat run by hand:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
