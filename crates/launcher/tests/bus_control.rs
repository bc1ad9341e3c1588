//! Control of the launcher over the hub bus, end to end: a real launcher starting a real
//! hubcore and plugins; requests through the SDK and through mosquitto clients; events seen by
//! mosquitto_sub.

use hivehub_api::launcher::{
    BatchResp, LauncherEvent, ListResp, PluginInfo, PluginState, StatusResp,
};
use hivehub_api::{ErrorCode, Role};
use hivehub_client::{HubClient, RpcError};
use hivehub_launcher::process::pid_alive;
use hivehub_testkit::{args, mosquitto_pub, plugin_script, workspace_bin, LauncherHub, Sub};
use serde_json::json;
use std::time::Duration;

fn hub(top: &str, plugins: &str) -> LauncherHub {
    let mut h = LauncherHub::new(env!("CARGO_BIN_EXE_launcher").as_ref(), top, plugins);
    plugin_script(&h.home, "sleeper", "exec sleep 1000");
    plugin_script(&h.home, "crasher", "echo starting up\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22; do echo line $i; done\nsleep 0.2\necho fatal: config missing >&2\nexit 3");
    std::fs::copy(
        workspace_bin("heartbeat"),
        h.home.plugins().join("heartbeat"),
    )
    .unwrap();
    h.start();
    h
}

async fn admin(h: &LauncherHub) -> HubClient {
    let c = HubClient::connect(h.options("admin"))
        .await
        .expect("admin connects");
    // The launcher serves once autostart is done; wait for its answer.
    let ok = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            // Short per-try timeout: before the launcher subscribes, a request gets no reply.
            if c.request_raw(
                "launcher",
                "view",
                "list",
                b"{}".to_vec(),
                Duration::from_millis(500),
            )
            .await
            .is_ok()
            {
                return;
            }
        }
    })
    .await;
    assert!(ok.is_ok(), "launcher never answered; output:\n{}", h.out());
    c
}

async fn list(c: &HubClient) -> Result<ListResp, RpcError> {
    c.request("launcher", "view", "list", &json!({})).await
}

fn find<'a>(l: &'a [PluginInfo], name: &str) -> &'a PluginInfo {
    l.iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_start_stop_and_events() {
    let h = hub(
        "autostart: [heartbeat]\n",
        "  heartbeat:\n    waitReady: true\n",
    );
    let admin = admin(&h).await;
    let events = Sub::start(
        &[
            h.mosq_args("admin"),
            args(&["-t", "event/launcher/#", "-v"]),
        ]
        .concat(),
    );

    // The service answers while autostart is still going; wait for the heartbeat's readiness.
    let mut l = list(&admin).await.unwrap();
    for _ in 0..300 {
        if find(&l.plugins, "heartbeat").state == PluginState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        l = list(&admin).await.unwrap();
    }
    assert_eq!(l.launcher_id, "launcher");
    assert_eq!(find(&l.plugins, "hubcore").state, PluginState::Running);
    assert_eq!(find(&l.plugins, "heartbeat").state, PluginState::Running);
    assert_eq!(find(&l.plugins, "sleeper").state, PluginState::Stopped);
    assert!(
        find(&l.plugins, "sleeper").cpu.is_none(),
        "absent, not a fake zero"
    );

    let info: PluginInfo = admin
        .request(
            "launcher",
            "manage",
            "startPlugin",
            &json!({"name": "sleeper"}),
        )
        .await
        .unwrap();
    assert_eq!(info.state, PluginState::Running);
    let pid = info.pid.unwrap();
    assert!(
        events.wait_for(
            "event/launcher/sleeper/started/launcher",
            Duration::from_secs(10)
        ),
        "{}",
        events.output()
    );
    let again: PluginInfo = admin
        .request(
            "launcher",
            "manage",
            "startPlugin",
            &json!({"name": "sleeper"}),
        )
        .await
        .unwrap();
    assert_eq!(again.pid, Some(pid));

    let info: PluginInfo = admin
        .request(
            "launcher",
            "manage",
            "stopPlugin",
            &json!({"name": "sleeper"}),
        )
        .await
        .unwrap();
    assert_eq!(info.state, PluginState::Disabled);
    assert!(!pid_alive(pid));
    assert!(events.wait_for(
        "event/launcher/sleeper/stopped/launcher",
        Duration::from_secs(10)
    ));
    let stopped_line = events
        .output()
        .lines()
        .find(|l| l.starts_with("event/launcher/sleeper/stopped/launcher "))
        .unwrap()
        .to_string();
    let ev: LauncherEvent = serde_json::from_str(stopped_line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(
        (ev.schema_version, ev.event.as_str(), ev.plugin.as_str()),
        (1, "stopped", "sleeper")
    );
    assert_eq!(ev.by.as_deref(), Some("admin"));
    assert_eq!(ev.pid, Some(pid));

    let e = admin
        .request::<_, PluginInfo>(
            "launcher",
            "manage",
            "startPlugin",
            &json!({"name": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert!(
        e.to_string()
            .starts_with("no plugin named 'nope'; available: "),
        "{e}"
    );

    // Stop all keeps the core; the service still answers.
    let b: BatchResp = admin
        .request("launcher", "manage", "stopAllPlugins", &json!({}))
        .await
        .unwrap();
    assert!(b.results.iter().any(|r| r.name == "heartbeat" && r.ok));
    let l = list(&admin).await.unwrap();
    assert_eq!(find(&l.plugins, "hubcore").state, PluginState::Running);
    assert!(l
        .plugins
        .iter()
        .filter(|p| p.name != "hubcore")
        .all(|p| !p.running));
    let b: BatchResp = admin
        .request("launcher", "manage", "startAllPlugins", &json!({}))
        .await
        .unwrap();
    assert_eq!(
        b.results.first().map(|r| r.name.as_str()),
        Some("heartbeat"),
        "autostart first"
    );
    let l: ListResp = admin
        .request("launcher", "view", "list", &json!({"onlyRunning": true}))
        .await
        .unwrap();
    assert!(l.plugins.iter().any(|p| p.name == "sleeper"));
    assert!(l.plugins.iter().all(|p| p.running));

    // A subscriber that comes late sees the retained status at once.
    let late = Sub::start(
        &[
            h.mosq_args("admin"),
            args(&["-t", "event/launcher/sleeper/status/+", "-v"]),
        ]
        .concat(),
    );
    assert!(
        late.wait_for("\"state\":\"running\"", Duration::from_secs(5)),
        "{}",
        late.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exited_event_carries_code_and_last_lines() {
    let h = hub("", "");
    let admin = admin(&h).await;
    let events = Sub::start(
        &[
            h.mosq_args("admin"),
            args(&["-t", "event/launcher/crasher/exited/+", "-v"]),
        ]
        .concat(),
    );
    let _ = admin
        .request::<_, PluginInfo>(
            "launcher",
            "manage",
            "startPlugin",
            &json!({"name": "crasher"}),
        )
        .await;
    assert!(
        events.wait_for(
            "event/launcher/crasher/exited/launcher {",
            Duration::from_secs(10)
        ),
        "{}",
        events.output()
    );
    let line = events
        .output()
        .lines()
        .find(|l| l.starts_with("event/launcher/crasher/exited"))
        .unwrap()
        .to_string();
    let ev: LauncherEvent = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(ev.exit.as_ref().and_then(|e| e.code), Some(3));
    assert_eq!(ev.log_tail.len(), 20, "{:?}", ev.log_tail);
    assert!(
        ev.log_tail.iter().any(|l| l == "fatal: config missing"),
        "{:?}",
        ev.log_tail
    );
    assert!(ev.uptime_secs.is_some());
    let st: StatusResp = admin
        .request("launcher", "view", "status", &json!({"name": "crasher"}))
        .await
        .unwrap();
    assert_eq!(st.info.state, PluginState::Failed);
    assert_eq!(st.info.last_exit.and_then(|e| e.code), Some(3));
    assert!(st.log_tail.iter().any(|l| l.contains("fatal")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_credentials_cannot_control_the_launcher() {
    let h = hub("autostart: [sleeper]\n", "");
    let admin = admin(&h).await;
    let target = h.wait_running("sleeper");
    // heartbeat's credentials are a plugin's (role service), minted by the launcher.
    let _: PluginInfo = admin
        .request(
            "launcher",
            "manage",
            "startPlugin",
            &json!({"name": "heartbeat"}),
        )
        .await
        .unwrap();
    let plugin = HubClient::connect(h.options("heartbeat")).await.unwrap();
    let e = plugin
        .request::<_, PluginInfo>(
            "launcher",
            "manage",
            "stopPlugin",
            &json!({"name": "sleeper"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied));
    assert_eq!(
        e.to_string(),
        "not permitted: role service may not call launcher/manage/stopPlugin"
    );
    let e = plugin
        .request::<_, ListResp>("launcher", "view", "list", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied));
    // The same with mosquitto_pub, with a forged sender and with its own.
    for topic in [
        "rpc/launcher/manage/stopPlugin/heartbeat",
        "rpc/launcher/manage/stopPlugin/admin",
        "rpc/launcher/manage/stopAllPlugins/heartbeat",
    ] {
        let out = mosquitto_pub(
            &[
                h.mosq_args("heartbeat"),
                args(&["-q", "1", "-t", topic, "-m", "{\"name\":\"sleeper\"}"]),
            ]
            .concat(),
        );
        let _ = out;
    }
    // Give the launcher every chance to have acted wrongly, then check: an admin request made
    // after the forged ones is answered after them, so they were all processed.
    let l = list(&admin).await.unwrap();
    assert_eq!(find(&l.plugins, "sleeper").pid, Some(target));
    assert!(pid_alive(target));
    // A viewer may list but not stop.
    let key = hivehub_auth::KeyPair::load_or_create(&h.home.key_file("vera"))
        .unwrap()
        .0;
    let r: hivehub_api::auth::AddClientResp = admin
        .request(
            "auth",
            "clients",
            "addClient",
            &json!({"clientID": "vera", "role": Role::Viewer, "pubKey": key.public_key_b64()}),
        )
        .await
        .unwrap();
    hivehub_home::write_atomic(&h.home.token_file("vera"), r.token.as_bytes(), 0o400).unwrap();
    let vera = HubClient::connect(h.options("vera")).await.unwrap();
    assert!(list(&vera).await.is_ok());
    let e = vera
        .request::<_, PluginInfo>(
            "launcher",
            "manage",
            "stopPlugin",
            &json!({"name": "sleeper"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied));
    assert!(pid_alive(target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_error_replies() {
    let h = hub("", "");
    let admin = admin(&h).await;
    let t = Duration::from_secs(10);
    let cases: Vec<(&str, &str, Vec<u8>, ErrorCode)> = vec![
        (
            "manage",
            "startPlugin",
            b"{bad json".to_vec(),
            ErrorCode::BadRequest,
        ),
        (
            "manage",
            "startPlugin",
            b"{}".to_vec(),
            ErrorCode::BadRequest,
        ),
        (
            "manage",
            "startPlugin",
            br#"{"name": 5}"#.to_vec(),
            ErrorCode::BadRequest,
        ),
        ("manage", "reboot", b"{}".to_vec(), ErrorCode::UnknownMethod),
        ("view", "list", vec![b' '; 1024 * 1024], ErrorCode::TooLarge),
        (
            "manage",
            "stopPlugin",
            br#"{"name": "hubcore"}"#.to_vec(),
            ErrorCode::Conflict,
        ),
    ];
    for (cap, method, payload, code) in cases {
        let e = admin
            .request_raw("launcher", cap, method, payload, t)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(code), "{cap}/{method}: {e}");
    }
    // A body must be an object: an array is not read by position, and the message speaks of
    // the wire, not of Rust types.
    for (body, kind) in [
        (&br#"["x"]"#[..], "an array"),
        (b"null", "null"),
        (b"5", "a number"),
    ] {
        let e = admin
            .request_raw("launcher", "view", "status", body.to_vec(), t)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        assert_eq!(
            e.to_string(),
            format!("invalid request for status: the body must be a JSON object (e.g. {{}}), not {kind}")
        );
    }
    assert!(list(&admin).await.is_ok(), "the launcher keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_heals_its_core() {
    let h = hub(
        "autostart: [heartbeat, sleeper]\nbackoff: {base: 200ms, jitter: 0}\n",
        "  heartbeat:\n    waitReady: true\n    args: [\"--interval\", \"200ms\"]\n",
    );
    let admin = admin(&h).await;
    let core = h.wait_running("hubcore");
    let beat = h.wait_running("heartbeat");
    let sleeper = h.wait_running("sleeper");
    let t0 = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(core as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The core is back, on the same address, and the launcher answers again: within 10 s.
    let healed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(l) = admin
                .request_raw(
                    "launcher",
                    "view",
                    "list",
                    b"{}".to_vec(),
                    Duration::from_millis(500),
                )
                .await
            {
                let l: ListResp = serde_json::from_value(l).unwrap();
                let c = find(&l.plugins, "hubcore");
                if c.state == PluginState::Running && c.pid != Some(core) {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let l = healed.unwrap_or_else(|_| panic!("not healed in 10 s; launcher output:\n{}", h.out()));
    eprintln!("healed after {:?}", t0.elapsed());
    assert_eq!(find(&l.plugins, "hubcore").restarts, 1);
    // The plugins kept running: same PIDs.
    assert_eq!(find(&l.plugins, "heartbeat").pid, Some(beat));
    assert_eq!(find(&l.plugins, "sleeper").pid, Some(sleeper));
    // And the heartbeat reconnected: its beats are on the bus again.
    let sub = Sub::start(
        &[
            h.mosq_args("admin"),
            args(&["-t", "event/heartbeat/status/beat/+", "-v"]),
        ]
        .concat(),
    );
    assert!(
        sub.wait_for(
            "event/heartbeat/status/beat/heartbeat {",
            Duration::from_secs(10)
        ),
        "{}",
        sub.output()
    );
}

/// Inode of a file, which `write_atomic` (a new file renamed over the old) changes.
fn inode(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).expect("token file").ino()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_restart_reuses_the_token_a_manual_start_mints_one() {
    let h = hub(
        "createPluginCred: true\nautorestart: always\nbackoff: {base: 0s, jitter: 0}\n",
        "",
    );
    let admin = admin(&h).await;
    let start = |name: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .request::<_, PluginInfo>(
                    "launcher",
                    "manage",
                    "startPlugin",
                    &json!({ "name": name }),
                )
                .await
                .expect("start")
        }
    };
    let first = start("sleeper").await;
    let token = h.home.token_file("sleeper");
    let minted = inode(&token);
    // A crash: the restart does not ask the core again, the plugin keeps its token.
    let pid = first.pid.expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let restarted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let l = list(&admin).await.expect("list");
            let p = find(&l.plugins, "sleeper").clone();
            if p.pid.is_some_and(|p| p != pid) && p.state == PluginState::Running {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("restarted");
    assert_eq!(restarted.restarts, 1, "{restarted:?}");
    assert_eq!(
        inode(&token),
        minted,
        "an automatic restart minted a new token"
    );
    // A user's stop and start mints a fresh one.
    let _ = admin
        .request::<_, PluginInfo>(
            "launcher",
            "manage",
            "stopPlugin",
            &json!({"name": "sleeper"}),
        )
        .await
        .expect("stop");
    start("sleeper").await;
    assert_ne!(inode(&token), minted, "a manual start kept the old token");
}
