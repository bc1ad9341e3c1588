//! A hostile viewer floods the launcher's `view/status` through a real hubcore, over several
//! real MQTT 5 connections that each keep many requests outstanding. The launcher must answer
//! what it cannot run with `busy`, stay small, and keep answering everybody else.
//!
//! Before the serve loop was bounded, this flood took the launcher from 29 MiB to 5–10 GiB and
//! `hubcli launcher ls` timed out for 30–60 s.

use hivehub_client::HubClient;
use hivehub_testkit::{
    plugin_script, rpc_flood, vm_rss_kib, wait_until, workspace_bin, FloodTally, LauncherHub,
};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(10);
/// Connections of the one viewer login, and requests each keeps outstanding: 16 times what
/// the launcher runs for one caller, and enough to keep the (debug-built) hubcore at full CPU.
/// Thousands outstanding, with the core's publish rate lifted as below, saturate the broker
/// itself: requests to the launcher, others' too, are then lost in the broker while the
/// launcher idles, which is the core's publish-rate limit's job to prevent, not the launcher's.
const CONNECTIONS: usize = 4;
const OUTSTANDING: usize = 32;
/// The launcher idles near 30 MiB; bounded, a flood adds a few MiB.
const MAX_RSS_KIB: u64 = 64 * 1024;
/// What `hubcli launcher ls` may take during the flood (process start and login included).
const LS_WITHIN: Duration = Duration::from_secs(1);

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_viewer_flooding_view_status_gets_busy_and_the_launcher_stays_small_and_responsive() {
    let mut h = LauncherHub::new(
        env!("CARGO_BIN_EXE_launcher").as_ref(),
        "autostart: [chatty]\n",
        "",
    );
    // A full log tail of long lines makes every status answer sizeable (about 20 KiB).
    plugin_script(
        &h.home,
        "chatty",
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22; do printf 'line %s %01000d\\n' $i 0; done\nexec sleep 1000",
    );
    // The core limits each login to 1000 publishes per second by default; several viewer
    // logins together send more. Lift it, so that this one login floods as hard as they could
    // and what keeps the launcher small is its own bound.
    std::fs::write(h.home.config_file("hubcore"), "limits:\n  publishRate: 0\n")
        .expect("hubcore.yaml");
    h.start();
    h.url();
    let ready = wait_until(Duration::from_secs(60), || {
        let o = h.hubcli(&["launcher", "ls"]);
        o.status.success() && text(&o).contains("chatty")
    });
    assert!(ready, "the launcher never answered ls:\n{}", h.out());
    h.wait_running("chatty");
    let add = h.hubcli(&["auth", "add", "eve", "--role", "viewer"]);
    assert!(add.status.success(), "auth add eve: {}", text(&add));
    let pid = h.pid().expect("launcher pid");
    let idle_kib = vm_rss_kib(pid).expect("launcher RSS");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let eve: Vec<HubClient> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..CONNECTIONS {
            let c = HubClient::connect(h.options("eve"))
                .await
                .unwrap_or_else(|e| panic!("eve connects: {e}\n{}", h.out()));
            v.push(c);
        }
        v
    });
    let flooding = Arc::new(AtomicBool::new(false));
    let flood = {
        let flooding = flooding.clone();
        rt.spawn(async move {
            rpc_flood(
                &eve,
                ["launcher", "view", "status"],
                br#"{"name":"chatty"}"#,
                OUTSTANDING,
                FLOOD,
                &flooding,
            )
            .await
        })
    };

    // While it floods: the admin's ls, timed, about every second.
    let ls_checks = {
        let (home, flooding, flood_started) = (
            h.home.root().to_path_buf(),
            flooding.clone(),
            Instant::now(),
        );
        std::thread::spawn(move || {
            let mut checks: Vec<(Duration, bool, String)> = Vec::new();
            let started = wait_until(Duration::from_secs(40), || flooding.load(Ordering::SeqCst));
            if !started {
                return (checks, flood_started.elapsed());
            }
            // Let the flood build up first.
            std::thread::sleep(Duration::from_millis(1500));
            while flooding.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                let o = Command::new(workspace_bin("hubcli"))
                    .arg("--home")
                    .arg(&home)
                    .args(["launcher", "ls"])
                    .output()
                    .expect("run hubcli");
                let took = t0.elapsed();
                let out = text(&o);
                checks.push((took, o.status.success() && out.contains("chatty"), out));
                std::thread::sleep(Duration::from_millis(700));
            }
            (checks, flood_started.elapsed())
        })
    };

    // Meanwhile: the launcher's RSS, sampled every 50 ms until the flood is over.
    let mut max_kib = idle_kib;
    let mut samples = 0;
    while !flood.is_finished() {
        if let Some(kib) = vm_rss_kib(pid) {
            max_kib = max_kib.max(kib);
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sent, busy, results, errors, last_error) = rt.block_on(flood).expect("flood task");
    let (checks, _) = ls_checks.join().expect("ls thread");
    let after_kib = vm_rss_kib(pid).unwrap_or(0);
    eprintln!(
        "launcher RSS: idle {} KiB, max {} KiB over {samples} samples, after {} KiB; \
         {sent} requests sent, {busy} busy, {results} results, {errors} other failures; \
         ls took {:?}",
        idle_kib,
        max_kib,
        after_kib,
        checks.iter().map(|c| c.0).collect::<Vec<_>>()
    );

    assert!(
        max_kib < MAX_RSS_KIB,
        "the launcher grew to {max_kib} KiB (idle {idle_kib} KiB, bound {MAX_RSS_KIB} KiB) \
         under the flood"
    );
    assert!(
        checks.len() >= 3,
        "only {} ls checks ran during the flood",
        checks.len()
    );
    for (took, ok, out) in &checks {
        assert!(*ok, "hubcli launcher ls failed during the flood:\n{out}");
        assert!(
            *took < LS_WITHIN,
            "hubcli launcher ls took {took:?} during the flood (all: {:?})",
            checks.iter().map(|c| c.0).collect::<Vec<_>>()
        );
    }
    FloodTally {
        sent,
        busy,
        results,
        failed: errors,
        last_failure: last_error,
    }
    .assert_bounded(&h.out());
    // And afterwards it still answers as usual.
    let o = h.hubcli(&["launcher", "status", "chatty"]);
    assert!(o.status.success(), "status after the flood: {}", text(&o));
}
