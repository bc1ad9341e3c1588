//! A service login floods the core's auth service (`auth/profile/refresh`) through a real
//! hubcore, over several real MQTT 5 connections that each keep many requests outstanding.
//! The auth service must answer what it cannot run with `busy`, the core must stay small, and
//! everybody else's requests must still be answered at once.
//!
//! Before the serve loop was bounded, such a flood stalled the auth service for about 20 s.

use hivehub_api::auth::{methods, ListClientsResp, AUTH_SERVICE, CAP_CLIENTS};
use hivehub_api::rpc::Ack;
use hivehub_api::Role;
use hivehub_testkit::{rpc_flood, vm_rss_kib, Core, FloodTally};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(10);
/// Connections of the one flooding login, and requests each keeps outstanding: 16 times what
/// the auth service runs for one caller, and enough to keep the (debug-built) core at full CPU.
const CONNECTIONS: usize = 4;
const OUTSTANDING: usize = 32;
/// hubcore idles near 30 MiB and stayed below 32 MiB in this flood (see the printed numbers);
/// unbounded, the requests in flight would add up without limit.
const MAX_RSS_KIB: u64 = 96 * 1024;
/// What another client's request may take during the flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_flooding_profile_refresh_gets_busy_and_the_core_stays_small_and_responsive() {
    // The core limits each login to 1000 publishes per second by default; several logins
    // together send more. Lift it, so that one login floods as hard as they could and what
    // keeps the auth service answering is its own bound.
    let core = Core::start_with_config(
        env!("CARGO_BIN_EXE_hubcore").as_ref(),
        "limits:\n  publishRate: 0\n",
    );
    let pid = core.pid().expect("hubcore pid");
    let admin = core.client("admin").await;
    core.add_client(&admin, "flooder", Role::Service).await;
    core.add_client(&admin, "bystander", Role::Service).await;
    let bystander = core.client("bystander").await;
    let mut flooder = Vec::new();
    for _ in 0..CONNECTIONS {
        flooder.push(core.client("flooder").await);
    }
    let idle_kib = vm_rss_kib(pid).expect("hubcore RSS");

    let flooding = Arc::new(AtomicBool::new(false));
    let flood = {
        let flooding = flooding.clone();
        tokio::spawn(async move {
            rpc_flood(
                &flooder,
                [AUTH_SERVICE, "profile", methods::REFRESH],
                b"{}",
                OUTSTANDING,
                FLOOD,
                &flooding,
            )
            .await
        })
    };

    // While it floods: the bystander's refresh and the admin's listClients, timed.
    let probes = {
        let (flooding, admin, bystander) = (flooding.clone(), admin.clone(), bystander.clone());
        tokio::spawn(async move {
            let mut took: Vec<(&str, Duration, Result<(), String>)> = Vec::new();
            let t0 = Instant::now();
            while !flooding.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(40) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the flood build up first.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            while flooding.load(Ordering::SeqCst) {
                let t = Instant::now();
                let r = bystander.refresh_token().await;
                took.push((
                    "refresh",
                    t.elapsed(),
                    r.map(drop).map_err(|e| e.to_string()),
                ));
                let t = Instant::now();
                let r = admin
                    .request::<_, ListClientsResp>(
                        AUTH_SERVICE,
                        CAP_CLIENTS,
                        methods::LIST_CLIENTS,
                        &Ack {},
                    )
                    .await;
                took.push((
                    "listClients",
                    t.elapsed(),
                    r.map(drop).map_err(|e| e.to_string()),
                ));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            took
        })
    };

    // Meanwhile: the core's RSS, sampled every 50 ms until the flood is over.
    let mut max_kib = idle_kib;
    let mut samples = 0;
    while !flood.is_finished() {
        if let Some(kib) = vm_rss_kib(pid) {
            max_kib = max_kib.max(kib);
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sent, busy, results, failed, last_failure) = flood.await.expect("flood task");
    let took = probes.await.expect("probe task");
    let times = |name: &str| -> Vec<Duration> {
        took.iter().filter(|t| t.0 == name).map(|t| t.1).collect()
    };
    eprintln!(
        "hubcore RSS: idle {idle_kib} KiB, max {max_kib} KiB over {samples} samples, after {} KiB; \
         {sent} requests sent, {busy} busy, {results} results, {failed} other failures; \
         refresh took {:?}; listClients took {:?}",
        vm_rss_kib(pid).unwrap_or(0),
        times("refresh"),
        times("listClients"),
    );

    assert!(
        max_kib < MAX_RSS_KIB,
        "hubcore grew to {max_kib} KiB (idle {idle_kib} KiB, bound {MAX_RSS_KIB} KiB) under \
         the flood"
    );
    assert!(
        took.len() >= 6,
        "only {} requests of others ran during the flood",
        took.len()
    );
    for (what, t, r) in &took {
        assert!(r.is_ok(), "{what} failed during the flood: {r:?}");
        assert!(
            *t < ANSWER_WITHIN,
            "{what} took {t:?} during the flood (refresh: {:?}, listClients: {:?})",
            times("refresh"),
            times("listClients")
        );
    }
    FloodTally {
        sent,
        busy,
        results,
        failed,
        last_failure,
    }
    .assert_bounded(&core.log());
}
