//! Request/reply through a real hubcore: round trips, error replies, timeouts, malformed input,
//! and recovery after a core restart.

use hivehub_api::{ErrorCode, Role};
use hivehub_client::{ConnState, RpcError};
use hivehub_testkit::{args, mosquitto_pub, Core};
use std::time::{Duration, Instant};

fn core() -> Core {
    Core::start(env!("CARGO_BIN_EXE_hubcore").as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_error_reply_and_timeout() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "echo", Role::Service).await;
    let svc = core.client("echo").await;
    svc.serve("util", |r| async move {
        match r.method.as_str() {
            "echo" => Ok(serde_json::from_slice(&r.payload).unwrap_or_default()),
            "fail" => Err(hivehub_api::RemoteError::new(
                ErrorCode::Conflict,
                "it failed on purpose",
            )),
            _ => Err(r.unknown_method()),
        }
    })
    .await
    .unwrap();

    let v: serde_json::Value = admin
        .request("echo", "util", "echo", &serde_json::json!({"a": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!({"a": [1, 2]}));

    let e = admin
        .request::<_, serde_json::Value>("echo", "util", "fail", &serde_json::json!({}))
        .await
        .unwrap_err();
    match e {
        RpcError::Remote(r) => {
            assert_eq!(r.code, ErrorCode::Conflict);
            assert_eq!(r.message, "it failed on purpose");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    let e = admin
        .request::<_, serde_json::Value>("echo", "util", "nope", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownMethod));

    // Nobody serves "ghost", and "echo" has no capability "bogus": the core answers at once
    // with a typed error instead of leaving the caller to its timeout.
    for (agent, cap) in [("ghost", "util"), ("echo", "bogus")] {
        let t0 = Instant::now();
        let e = admin
            .request_raw(agent, cap, "echo", b"{}".to_vec(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UnknownCapability), "{e:?}");
        assert!(e.to_string().contains(&format!("{agent}/{cap}")), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }

    // A served capability that does not answer: a timeout, after the set time and not much
    // later.
    svc.serve("silent", |_| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(serde_json::Value::Null)
    })
    .await
    .unwrap();
    let t0 = Instant::now();
    let e = admin
        .request_raw(
            "echo",
            "silent",
            "echo",
            b"{}".to_vec(),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, RpcError::Timeout { .. }), "{e:?}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_error_replies_and_core_keeps_serving() {
    let core = core();
    let admin = core.client("admin").await;
    let raw = |payload: Vec<u8>| {
        let admin = admin.clone();
        async move {
            admin
                .request_raw(
                    "auth",
                    "clients",
                    "addClient",
                    payload,
                    Duration::from_secs(10),
                )
                .await
        }
    };
    for (payload, code) in [
        (b"{not json".to_vec(), ErrorCode::BadRequest),
        (
            br#"{"clientID": 5, "role": "service", "pubKey": "x"}"#.to_vec(),
            ErrorCode::BadRequest,
        ),
        (
            br#"{"clientID": "a/b", "role": "service", "pubKey": "x"}"#.to_vec(),
            ErrorCode::BadRequest,
        ),
        (
            br#"{"clientID": "ok", "role": "root", "pubKey": "x"}"#.to_vec(),
            ErrorCode::BadRequest,
        ),
        (
            br#"{"clientID": "ok", "role": "service", "pubKey": "bm9wZQ=="}"#.to_vec(),
            ErrorCode::BadRequest,
        ),
        (vec![b' '; 1024 * 1024], ErrorCode::TooLarge),
    ] {
        let e = raw(payload).await.unwrap_err();
        assert_eq!(e.code(), Some(code), "{e}");
    }
    // Same through mosquitto_pub: garbage, no correlation data; the core must survive it.
    let garbage = core.home.root().join("garbage.bin");
    std::fs::write(&garbage, b"\x00\x01\xff garbage").unwrap();
    let out = mosquitto_pub(
        &[
            core.mosq_args("admin"),
            args(&[
                "-t",
                "rpc/auth/clients/addClient/admin",
                "-f",
                garbage.to_str().unwrap(),
            ]),
        ]
        .concat(),
    );
    assert!(out.status.success());
    let who: hivehub_api::auth::ClientProfile = admin
        .request("auth", "profile", "whoami", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(who.role, Role::Admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_tokens_and_clients_reconnect() {
    let mut core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "svc", Role::Service).await;
    let svc = core.client("svc").await;
    svc.serve("util", |_r| async { Ok(serde_json::json!("pong")) })
        .await
        .unwrap();
    let admin_token_before = std::fs::read_to_string(core.home.token_file("admin")).unwrap();

    core.restart();

    // Old tokens still work: the admin token was not rewritten, and mosquitto logs in with it.
    let admin_token_after = std::fs::read_to_string(core.home.token_file("admin")).unwrap();
    assert_eq!(admin_token_before, admin_token_after);
    let out = mosquitto_pub(
        &[
            core.mosq_args("svc"),
            args(&["-t", "event/svc/x/y/svc", "-m", "x"]),
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both SDK clients reconnect by themselves and resubscribe.
    for c in [&admin, &svc] {
        assert!(
            c.wait_connected(Duration::from_secs(15)).await,
            "{:?}",
            *c.state().borrow()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match admin
            .request_raw(
                "svc",
                "util",
                "ping",
                b"{}".to_vec(),
                Duration::from_secs(2),
            )
            .await
        {
            Ok(v) => {
                assert_eq!(v, serde_json::json!("pong"));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                // The service may still be resubscribing; its state says so.
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "no reply after restart: {e}; svc state {:?}",
                *svc.state().borrow()
            ),
        }
    }
    assert_eq!(*svc.state().borrow(), ConnState::Connected);
}

/// A launcher adds each plugin again at every start, mostly with the key it registered
/// before: that re-registration leaves `clients.json` alone (no durable write), still returns
/// a token that logs in, and a new key is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_client_again_with_the_same_key_leaves_the_store_file_alone() {
    use std::os::unix::fs::MetadataExt;
    let core = core();
    let admin = core.client("admin").await;
    let store = core.home.stores().join("auth/clients.json");
    let inode = || std::fs::metadata(&store).expect("clients.json").ino();
    let first = core.add_client(&admin, "svc1", Role::Service).await;
    let written = inode();
    let again = core.add_client(&admin, "svc1", Role::Service).await;
    assert_eq!(inode(), written, "the same profile was written again");
    assert_eq!(again.profile.generation, first.profile.generation);
    let svc = core.client("svc1").await;
    let who: hivehub_api::auth::ClientProfile = svc
        .request("auth", "profile", "whoami", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(who.client_id, "svc1");
    // A new key is a change: written, and the old key's sessions are closed.
    std::fs::remove_file(core.home.key_file("svc1")).unwrap();
    core.add_client(&admin, "svc1", Role::Service).await;
    assert_ne!(inode(), written, "a new key was not written");
}
