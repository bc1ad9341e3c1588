//! The shared status sends changes, not the full list: a launcher's plugin changing state does
//! not make it publish its whole `LauncherStatus` again; the change travels as that plugin's
//! retained status, and another launcher's status page applies it. Two real launchers on one
//! real hubcore; the page is read through its HTTP API as a logged-in admin.

mod http;

use hivehub_api::cluster::{events as cluster_events, LAUNCHER_THING};
use hivehub_api::launcher::{methods, NameReq, PluginInfo, CAP_MANAGE};
use hivehub_client::EventMessage;
use hivehub_testkit::{plugin_script, wait_until, workspace_bin, Core, Member};
use http::{free_port, http};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::Duration;

/// A shell that stays, so its processes name the plugin (`Member::instances`).
const LOOP: &str = "while :; do sleep 1; done";

/// Logs in on the page's API; the session cookie (`name=value`).
fn login(port: u16, id: &str, token: &str) -> String {
    let body = json!({"clientID": id, "token": token}).to_string();
    let r = http(
        port,
        "POST",
        "/login",
        &[("X-Hivehub", "1"), ("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /login");
    assert_eq!(r.status, 200, "login: {}", r.body);
    r.cookie()
}

/// `launcher`'s plugin `name` as `/api/status` shows it.
fn shown(port: u16, cookie: &str, launcher: &str, name: &str) -> Option<PluginInfo> {
    let r = http(port, "GET", "/api/status", &[("Cookie", cookie)], "").ok()?;
    if r.status != 200 {
        return None;
    }
    let st: Value = serde_json::from_str(&r.body).ok()?;
    let p = st["launchers"]
        .as_array()?
        .iter()
        .find(|l| l["launcherID"] == launcher)?["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?
        .clone();
    serde_json::from_value(p).ok()
}

/// How many live (not retained) messages `rx` got since last asked.
fn live_statuses(rx: &mut tokio::sync::mpsc::Receiver<EventMessage>) -> usize {
    let mut n = 0;
    while let Ok(m) = rx.try_recv() {
        if !m.retained {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_plugin_change_reaches_the_page_without_a_new_launcher_status() {
    let core = Core::start(&workspace_bin("hubcore"));
    let port = free_port();
    let mut alpha = Member::new(
        &core,
        "alpha",
        &format!("httpListen: 127.0.0.1:{port}\nsampleInterval: 200ms\n"),
        "  sleeper: {}\n",
    );
    // beta checks its status only every 20 s, and sends it when due every 30 s: the few
    // seconds below are normally between two of its launcher statuses.
    let mut beta = Member::new(
        &core,
        "beta",
        "cluster:\n  leaseTtl: 20s\n  statusInterval: 20s\n",
        "  idler: {}\n",
    );
    plugin_script(&alpha.home, "sleeper", LOOP);
    plugin_script(&beta.home, "idler", LOOP);
    alpha.start();
    beta.start();
    let outs = |a: &Member, b: &Member| format!("alpha:\n{}\nbeta:\n{}", a.out(), b.out());
    let up = wait_until(Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "no HTTP listener; {}", outs(&alpha, &beta));
    let token = std::fs::read_to_string(core.home.token_file("admin"))
        .expect("the admin's token")
        .trim()
        .to_string();
    let cookie = login(port, "admin", &token);
    let listed = wait_until(Duration::from_secs(30), || {
        shown(port, &cookie, "beta", "idler").is_some_and(|p| !p.running)
    });
    assert!(
        listed,
        "beta's idler never listed on alpha's page; {}",
        outs(&alpha, &beta)
    );

    // Every launcher status beta sends from now on.
    let admin = core.client("admin").await;
    let mut statuses = admin
        .subscribe_events(
            Some("beta"),
            Some(LAUNCHER_THING),
            Some(cluster_events::STATUS),
        )
        .await
        .expect("subscribe to beta's status");
    let req = NameReq {
        name: "idler".into(),
    };
    // Start and stop idler on beta; the page must follow both within seconds. Were it to wait
    // for beta's next launcher status, it would not (20 s between checks, and the stop brings
    // the status back to what beta last sent). Should that status fall in the middle anyway
    // (a loaded machine), the round proves nothing and is done again.
    let mut proven = false;
    for round in 0..3 {
        live_statuses(&mut statuses);
        let _: PluginInfo = admin
            .request("beta", CAP_MANAGE, methods::START_PLUGIN, &req)
            .await
            .expect("start idler on beta");
        let pid = beta.instances("idler").first().copied();
        assert!(pid.is_some(), "idler runs on beta");
        let mut last = None;
        let started = wait_until(Duration::from_secs(10), || {
            last = shown(port, &cookie, "beta", "idler");
            last.as_ref().is_some_and(|p| p.running && p.pid == pid)
        });
        assert!(
            started,
            "round {round}: the page did not show idler running on beta: {last:?}\n{}",
            outs(&alpha, &beta)
        );
        let _: PluginInfo = admin
            .request("beta", CAP_MANAGE, methods::STOP_PLUGIN, &req)
            .await
            .expect("stop idler on beta");
        let stopped = wait_until(Duration::from_secs(10), || {
            last = shown(port, &cookie, "beta", "idler");
            last.as_ref()
                .is_some_and(|p| !p.running && p.state.as_str() == "disabled")
        });
        assert!(
            stopped,
            "round {round}: the page did not show idler disabled on beta: {last:?}\n{}",
            outs(&alpha, &beta)
        );
        let sent = live_statuses(&mut statuses);
        if sent == 0 {
            proven = true;
            break;
        }
        eprintln!("round {round}: beta sent {sent} launcher status(es) meanwhile; again");
    }
    assert!(
        proven,
        "every round saw a launcher status of beta; the page may have needed it"
    );
    alpha.terminate(Duration::from_secs(20));
    beta.terminate(Duration::from_secs(20));
}
