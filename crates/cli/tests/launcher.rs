//! `hubcli launcher` against a real hubcore and a stand-in launcher: an SDK client logged in as
//! `launcher` (with the credentials the core creates) that serves the launcher's `view` and
//! `manage` methods from a table of hand-made plugins, and publishes its events. It checks the
//! whole path: hubcli → core (ACL, denied replies) → service → hubcli's output and exit codes.

mod common;

use common::{core, hubcli, runtime, Run};
use hivehub_api::launcher::{
    events, methods, BatchItem, BatchResp, ExitInfo, LauncherEvent, ListReq, ListResp, NameReq,
    PluginInfo, PluginState, StatusResp, StopAllReq, CAP_MANAGE, CAP_VIEW,
};
use hivehub_api::{ErrorCode, RemoteError, Role};
use hivehub_client::{HubClient, Request};
use hivehub_testkit::Core;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

type Plugins = Arc<Mutex<BTreeMap<String, PluginInfo>>>;

const NOW: u64 = 1_764_147_321_000;

/// Built from JSON so that fields the API adds with a serde default need no change here.
fn info(name: &str, state: PluginState, pid: Option<u32>) -> PluginInfo {
    let mut i: PluginInfo = serde_json::from_value(serde_json::json!({
        "name": name,
        "launcherID": "launcher",
        "path": format!("/opt/hivehub/plugins/{name}"),
        "running": pid.is_some(),
        "state": state,
        "startCount": u64::from(pid.is_some()),
        "status": "",
    }))
    .expect("PluginInfo fixture");
    i.size = Some(2_000_000);
    i.modified_time = Some(NOW);
    i.pid = pid;
    // Started 192 s ago by the real clock: hubcli derives a retained status's uptime from it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    i.start_time = pid.map(|_| now - 192_000);
    i.uptime = pid.map(|_| 192);
    i
}

fn not_found(p: &BTreeMap<String, PluginInfo>, name: &str) -> RemoteError {
    let names: Vec<&str> = p.keys().map(String::as_str).collect();
    RemoteError::new(
        ErrorCode::NotFound,
        format!("no plugin named '{name}'; available: {}", names.join(", ")),
    )
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, RemoteError> {
    serde_json::to_value(v).map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))
}

fn view(p: &Plugins, r: &Request) -> Result<serde_json::Value, RemoteError> {
    let p = p.lock().unwrap();
    match r.method.as_str() {
        methods::LIST => {
            let q: ListReq = r.json()?;
            to_json(&ListResp {
                launcher_id: "launcher".into(),
                plugins: p
                    .values()
                    .filter(|i| !q.only_running || i.running)
                    .cloned()
                    .collect(),
            })
        }
        methods::STATUS => {
            let q: NameReq = r.json()?;
            let info = p
                .get(&q.name)
                .cloned()
                .ok_or_else(|| not_found(&p, &q.name))?;
            Ok(serde_json::json!({
                "info": info,
                "logTail": ["weather: fetching", "weather: 21.5 C"],
            }))
        }
        _ => Err(r.unknown_method()),
    }
}

fn start(p: &mut BTreeMap<String, PluginInfo>, name: &str) -> Result<PluginInfo, RemoteError> {
    if !p.contains_key(name) {
        return Err(not_found(p, name));
    }
    let i = p.get_mut(name).expect("checked above");
    if name == "broken" {
        i.state = PluginState::Failed;
        return Err(RemoteError::new(
            ErrorCode::Unavailable,
            "cannot start 'broken': binary /opt/hivehub/plugins/broken not found or not executable",
        ));
    }
    if i.pid.is_none() {
        i.start_count += 1;
        i.pid = Some(5000 + i.start_count as u32);
        i.running = true;
        i.state = PluginState::Running;
        i.uptime = Some(0);
    }
    Ok(i.clone())
}

fn stop(
    p: &mut BTreeMap<String, PluginInfo>,
    name: &str,
    by: &str,
) -> Result<PluginInfo, RemoteError> {
    if !p.contains_key(name) {
        return Err(not_found(p, name));
    }
    let i = p.get_mut(name).expect("checked above");
    if i.pid.take().is_some() {
        i.last_exit = Some(ExitInfo {
            code: None,
            signal: Some(15),
            time: NOW,
        });
    }
    i.running = false;
    i.uptime = None;
    i.state = PluginState::Disabled;
    i.status = format!("stopped by {by}");
    Ok(i.clone())
}

fn manage(p: &Plugins, r: &Request) -> Result<serde_json::Value, RemoteError> {
    let mut p = p.lock().unwrap();
    let all: Vec<String> = p.keys().cloned().collect();
    match r.method.as_str() {
        methods::START_PLUGIN => {
            let q: NameReq = r.json()?;
            start(&mut p, &q.name).and_then(|i| to_json(&i))
        }
        methods::STOP_PLUGIN => {
            let q: NameReq = r.json()?;
            stop(&mut p, &q.name, &r.sender).and_then(|i| to_json(&i))
        }
        methods::START_ALL | methods::STOP_ALL => {
            if r.method == methods::STOP_ALL {
                let _: StopAllReq = r.json()?;
            }
            let results = all
                .iter()
                .map(|n| {
                    let res = if r.method == methods::START_ALL {
                        start(&mut p, n).map(|_| ())
                    } else {
                        stop(&mut p, n, &r.sender).map(|_| ())
                    };
                    BatchItem {
                        name: n.clone(),
                        ok: res.is_ok(),
                        error: res.err().map(|e| e.message),
                    }
                })
                .collect();
            to_json(&BatchResp {
                results,
                plugins: p.values().cloned().collect(),
                note: None,
            })
        }
        _ => Err(r.unknown_method()),
    }
}

/// The core, the stand-in launcher and the runtime its handlers run on.
struct Hub {
    core: Core,
    rt: tokio::runtime::Runtime,
    launcher: HubClient,
}

fn hub() -> Hub {
    let core = core();
    let rt = runtime();
    let plugins: Plugins = Arc::new(Mutex::new(BTreeMap::new()));
    {
        let mut p = plugins.lock().unwrap();
        p.insert(
            "heartbeat".into(),
            info("heartbeat", PluginState::Stopped, None),
        );
        p.insert(
            "weather".into(),
            info("weather", PluginState::Running, Some(4242)),
        );
        let mut broken = info("broken", PluginState::Failed, None);
        broken.status =
            "cannot start 'broken': binary /opt/hivehub/plugins/broken not found or not executable"
                .into();
        p.insert("broken".into(), broken);
    }
    let launcher = rt.block_on(async {
        let admin = core.client("admin").await;
        core.add_client(&admin, "v1", Role::Viewer).await;
        admin.disconnect().await;
        let l = core.client("launcher").await;
        let pv = plugins.clone();
        l.serve(CAP_VIEW, move |r| {
            let out = view(&pv, &r);
            async move { out }
        })
        .await
        .expect("serve view");
        let pm = plugins.clone();
        l.serve(CAP_MANAGE, move |r| {
            let out = manage(&pm, &r);
            async move { out }
        })
        .await
        .expect("serve manage");
        l.set_permissions(CAP_VIEW, &[Role::Viewer, Role::Manager, Role::Admin])
            .await
            .expect("view permissions");
        let snapshot: Vec<PluginInfo> = plugins.lock().unwrap().values().cloned().collect();
        for i in snapshot {
            l.publish_event(&i.name, events::STATUS, &i, true)
                .await
                .expect("status");
        }
        l
    });
    Hub { core, rt, launcher }
}

fn row<'a>(r: &'a Run, name: &str) -> Vec<&'a str> {
    r.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}: {r:#?}"))
        .split_whitespace()
        .collect()
}

#[test]
fn ls_start_stop_status() {
    let h = hub();
    let core = &h.core;

    let r = hubcli(core, &["launcher", "ls"]);
    r.expect_code(0);
    assert!(r.stdout.starts_with("NAME "), "{}", r.stdout);
    assert_eq!(
        row(&r, "weather"),
        ["weather", "running", "4242", "1", "-", "-", "-", "3m12s", "-"]
    );
    let broken = row(&r, "broken");
    assert_eq!(
        &broken[..9],
        ["broken", "failed", "-", "0", "-", "-", "-", "-", "cannot"]
    );
    assert!(
        r.stdout.lines().all(|l| l.chars().count() <= 80),
        "{}",
        r.stdout
    );

    let r = hubcli(core, &["launcher", "ls", "--json"]);
    r.expect_code(0);
    let list: Vec<PluginInfo> = serde_json::from_str(&r.stdout).expect("a PluginInfo array");
    assert_eq!(list.len(), 3);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v[0].get("cpu").is_none(), "absent, not 0");

    let r = hubcli(core, &["launcher", "ls", "--running"]);
    r.expect_code(0);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);

    let r = hubcli(core, &["launcher", "start", "heartbeat"]);
    r.expect_code(0);
    assert_eq!(
        r.stdout.lines().next(),
        Some("started heartbeat (pid 5001)")
    );
    assert_eq!(row(&r, "heartbeat")[..3], ["heartbeat", "running", "5001"]);

    let r = hubcli(core, &["launcher", "start", "weather"]);
    r.expect_code(0);
    assert_eq!(
        r.stdout.lines().next(),
        Some("weather: already running (pid 4242)")
    );

    let r = hubcli(core, &["launcher", "start", "nope"]);
    r.expect_code(1);
    assert_eq!(
        r.stderr.trim(),
        "hubcli: error: no plugin named 'nope'; available: broken, heartbeat, weather"
    );

    let r = hubcli(core, &["launcher", "stop", "weather"]);
    r.expect_code(0);
    assert_eq!(
        r.stdout.lines().next(),
        Some("stopped weather (was pid 4242)")
    );
    let w = row(&r, "weather");
    assert_eq!(w[..3], ["weather", "disabled", "-"]);
    let r = hubcli(core, &["launcher", "stop", "weather"]);
    assert_eq!(r.stdout.lines().next(), Some("weather: not running"));

    let r = hubcli(core, &["--json", "launcher", "start", "weather"]);
    r.expect_code(0);
    let i: PluginInfo = serde_json::from_str(&r.stdout).expect("a PluginInfo");
    assert_eq!((i.name.as_str(), i.pid), ("weather", Some(5002)));

    let r = hubcli(core, &["launcher", "status", "weather"]);
    r.expect_code(0);
    assert!(
        r.stdout.starts_with("name:       weather\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\npid:        5002\n"), "{}", r.stdout);
    assert!(r.stdout.contains("\ncpu:        -\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .ends_with("log (last 2 lines):\n  weather: fetching\n  weather: 21.5 C\n"),
        "{}",
        r.stdout
    );
    let r = hubcli(core, &["launcher", "status", "weather", "--json"]);
    let s: StatusResp = serde_json::from_str(&r.stdout).expect("a StatusResp");
    assert_eq!(s.log_tail.len(), 2);
    let r = hubcli(core, &["launcher", "status", "zzz"]);
    r.expect_code(1);
    assert!(r.stderr.contains("no plugin named 'zzz'"), "{}", r.stderr);
}

#[test]
fn batches_report_each_plugin_and_fail_on_any_failure() {
    let h = hub();
    let core = &h.core;

    let r = hubcli(core, &["launcher", "start", "all"]);
    r.expect_code(1);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "broken: failed to start: cannot start 'broken': binary /opt/hivehub/plugins/broken not found or not executable",
            "started heartbeat (pid 5001)",
            "weather: already running (pid 4242)",
        ],
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\nNAME "), "then the table: {}", r.stdout);
    assert_eq!(
        r.stderr.trim(),
        "hubcli: error: 1 of 3 plugins failed to start"
    );

    let r = hubcli(core, &["launcher", "stop", "all", "--json"]);
    r.expect_code(0);
    let b: BatchResp = serde_json::from_str(&r.stdout).expect("a BatchResp");
    assert!(b.results.iter().all(|i| i.ok));
    assert!(b.plugins.iter().all(|p| !p.running));

    let r = hubcli(core, &["launcher", "stop", "all"]);
    r.expect_code(0);
    assert!(r.stdout.contains("heartbeat: not running"), "{}", r.stdout);
}

#[test]
fn viewer_may_list_but_not_manage() {
    let h = hub();
    let core = &h.core;
    let r = hubcli(core, &["--login", "v1", "launcher", "ls"]);
    r.expect_code(0);
    let r = hubcli(core, &["--login", "v1", "launcher", "stop", "weather"]);
    r.expect_code(4);
    assert!(
        r.stderr.starts_with("hubcli: error: not permitted:") && r.stderr.contains("stopPlugin"),
        "{}",
        r.stderr
    );
}

#[test]
fn events_snapshot_prints_retained_statuses() {
    let h = hub();
    let core = &h.core;

    let r = hubcli(core, &["launcher", "events"]);
    r.expect_code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(names, ["broken", "heartbeat", "weather"]);
    assert!(
        lines[2].contains(" launcher weather status running, pid 4242, starts 1, up 3m1"),
        "{}",
        r.stdout
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);

    let r = hubcli(
        core,
        &["launcher", "events", "--plugin", "weather", "--json"],
    );
    r.expect_code(0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    assert_eq!(v["event"], "status");
    assert_eq!(v["launcherID"], "launcher");
    assert_eq!(v["plugin"], "weather");
    assert_eq!(v["status"]["pid"], 4242);
}

#[test]
fn events_follow_prints_live_events_until_sigint() {
    let h = hub();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hubcli"))
        .arg("--home")
        .arg(h.core.home.root())
        .args(["--server", &h.core.url, "launcher", "events", "--follow"])
        .args(["--plugin", "heartbeat"])
        .env_remove("HIVEHUB_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubcli");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(15))
            .expect("a line from hubcli")
    };

    let first = next();
    assert!(
        first.contains(" launcher heartbeat status stopped, starts 0"),
        "{first}"
    );

    let ev: LauncherEvent = serde_json::from_value(serde_json::json!({
        "schemaVersion": 1,
        "event": events::EXITED,
        "launcherID": "launcher",
        "plugin": "heartbeat",
        "time": NOW,
        "pid": 5001,
        "exit": {"code": 3, "time": NOW},
        "uptimeSecs": 1.5,
        "logTail": ["connecting", "boom"],
    }))
    .expect("LauncherEvent fixture");
    h.rt.block_on(
        h.launcher
            .publish_event("heartbeat", events::EXITED, &ev, false),
    )
    .expect("publish");
    // Another plugin's event is filtered out by --plugin.
    let mut other = ev.clone();
    other.plugin = "weather".into();
    h.rt.block_on(
        h.launcher
            .publish_event("weather", events::EXITED, &other, false),
    )
    .expect("publish");

    assert_eq!(
        next(),
        "2025-11-26T08:55:21.000Z launcher heartbeat exited pid 5001, exit code 3, ran 1.5s"
    );
    assert_eq!(next(), "    connecting");
    assert_eq!(next(), "    boom");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let ok = hivehub_testkit::wait_until(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(ok, "hubcli did not stop on SIGINT");
    let status = child.wait().expect("status");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "the weather event must have been filtered out"
    );
}

#[test]
fn user_stop_is_no_error_in_ls_or_status() {
    let h = hub();
    let core = &h.core;
    let r = hubcli(core, &["launcher", "stop", "weather"]);
    r.expect_code(0);
    // The stand-in records the stop as the launcher does: killed by SIGTERM, state disabled.
    assert_eq!(row(&r, "weather").last(), Some(&"-"), "{}", r.stdout);
    assert!(!r.stdout.contains("SIGTERM"), "{}", r.stdout);
    let r = hubcli(core, &["launcher", "status", "weather"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("\nlast exit:  killed by SIGTERM at "),
        "the exit is still told: {}",
        r.stdout
    );
    assert!(r.stdout.contains("\nlast error: -\n"), "{}", r.stdout);
    // Running again: still no error.
    let r = hubcli(core, &["launcher", "start", "weather"]);
    r.expect_code(0);
    assert_eq!(row(&r, "weather")[1], "running");
    assert_eq!(row(&r, "weather").last(), Some(&"-"), "{}", r.stdout);
    let r = hubcli(core, &["launcher", "status", "weather"]);
    assert!(r.stdout.contains("\nlast error: -\n"), "{}", r.stdout);
    // A plugin that cannot start keeps its reason.
    let r = hubcli(core, &["launcher", "ls"]);
    assert_eq!(
        row(&r, "broken")[8..10],
        ["cannot", "start"],
        "{}",
        r.stdout
    );
}

#[test]
fn top_level_ls_start_stop_are_launcher_aliases() {
    let h = hub();
    let core = &h.core;
    let long = hubcli(core, &["launcher", "ls", "--json"]);
    let short = hubcli(core, &["ls", "--json"]);
    short.expect_code(0);
    assert_eq!(short.stdout, long.stdout);
    let r = hubcli(core, &["ls", "--running"]);
    r.expect_code(0);
    assert!(r.stdout.starts_with("NAME "), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);

    let r = hubcli(core, &["stop", "weather"]);
    r.expect_code(0);
    assert_eq!(
        r.stdout.lines().next(),
        Some("stopped weather (was pid 4242)")
    );
    assert_eq!(row(&r, "weather")[1], "disabled");
    let r = hubcli(core, &["start", "weather", "--json"]);
    r.expect_code(0);
    let i: PluginInfo = serde_json::from_str(&r.stdout).expect("a PluginInfo");
    assert_eq!(i.pid, Some(5002));
    let r = hubcli(core, &["start", "all"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("started heartbeat (pid 5001)"),
        "{}",
        r.stdout
    );
    let r = hubcli(core, &["stop", "weather", "--include-core"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("--include-core only applies to 'stop all'"),
        "{}",
        r.stderr
    );
    let r = hubcli(core, &["stop", "all"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("stopped heartbeat (was pid 5001)"),
        "{}",
        r.stdout
    );
}

#[test]
fn plugin_login_sees_the_denied_stop_not_the_denied_list() {
    let h = hub();
    let core = &h.core;
    h.rt.block_on(async {
        let admin = core.client("admin").await;
        core.add_client(&admin, "p1", Role::Service).await;
        admin.disconnect().await;
    });
    // The list (launcher/view/list) is denied to a plugin's login; the answer that matters is
    // the one to the operation asked for.
    let r = hubcli(core, &["--login", "p1", "launcher", "ls"]);
    r.expect_code(4);
    assert!(r.stderr.contains("view/list"), "{}", r.stderr);
    for (args, method) in [
        (
            &["--login", "p1", "launcher", "stop", "weather"][..],
            "stopPlugin",
        ),
        (&["--login", "p1", "start", "weather"], "startPlugin"),
        (&["--login", "p1", "stop", "all"], "stopAllPlugins"),
    ] {
        let r = hubcli(core, args);
        r.expect_code(4);
        assert!(
            r.stderr.starts_with("hubcli: error: not permitted:")
                && r.stderr.contains(method)
                && !r.stderr.contains("view/list"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // Nothing was stopped.
    let r = hubcli(core, &["launcher", "ls"]);
    assert_eq!(row(&r, "weather")[1], "running");
}

#[test]
fn events_status_is_stamped_with_the_plugins_last_change() {
    let h = hub();
    let core = &h.core;
    let r = hubcli(core, &["launcher", "ls", "--json"]);
    let list: Vec<PluginInfo> = serde_json::from_str(&r.stdout).expect("PluginInfo array");
    let started = list
        .iter()
        .find(|p| p.name == "weather")
        .and_then(|p| p.start_time)
        .expect("weather's start time");
    let before = hivehub_api::time::now_ms();
    let r = hubcli(core, &["launcher", "events"]);
    r.expect_code(0);
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {}", r.stdout))
            .to_string()
    };
    // Started 192 s ago: stamped with its start, not with now.
    let weather = line("weather");
    assert!(
        weather.starts_with(&format!(
            "{} launcher weather status running",
            hivehub_cli::format::timestamp(started)
        )),
        "{weather}"
    );
    // Never started: no time of its own, so the time it was received.
    let heartbeat = line("heartbeat");
    let stamp = heartbeat.split_whitespace().next().unwrap();
    assert!(
        stamp >= hivehub_cli::format::timestamp(before - 1000).as_str()
            && stamp <= hivehub_cli::format::timestamp(hivehub_api::time::now_ms()).as_str(),
        "{heartbeat}"
    );
}
