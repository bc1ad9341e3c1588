//! End-to-end security tests against a real hubcore process, with real mosquitto clients and SDK
//! clients.

use hivehub_api::auth::ClientProfile;
use hivehub_api::{ErrorCode, Role};
use hivehub_auth::{KeyPair, TokenIssuer};
use hivehub_client::ClientError;
use hivehub_testkit::{args, mosquitto_pub, Core, Sub};
use std::time::Duration;

fn core() -> Core {
    Core::start(env!("CARGO_BIN_EXE_hubcore").as_ref())
}

/// The profile the core keeps for `id` (with its generation), to forge tokens the core would
/// otherwise accept.
fn profile_for(core: &Core, id: &str) -> ClientProfile {
    let text =
        std::fs::read_to_string(core.home.stores().join("auth").join("clients.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["clients"][id].clone()).unwrap()
}

fn hub_issuer(core: &Core) -> TokenIssuer {
    let key = KeyPair::load(&core.home.certs().join("tokenSigningKey.pem")).unwrap();
    TokenIssuer::new(&key, "hivehub").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_admin_receives_sdk_event() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "sensor1", Role::Service).await;
    let sub = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/sensor1/#", "-v"]),
        ]
        .concat(),
    );
    let plugin = core.client("sensor1").await;
    plugin
        .publish_event("temp", "reading", &serde_json::json!({"c": 21.5}), false)
        .await
        .unwrap();
    assert!(
        sub.wait_for(
            "event/sensor1/temp/reading/sensor1 {\"c\":21.5}",
            Duration::from_secs(10)
        ),
        "event not received: {}",
        sub.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "p1", Role::Service).await;
    let hub = hub_issuer(&core);

    let forged = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwMSJ9.AAAA".to_string();
    let other_key = TokenIssuer::new(&KeyPair::generate(), "hivehub")
        .unwrap()
        .issue(&profile_for(&core, "p1"), 3600)
        .unwrap()
        .0;
    let expired = hub.issue(&profile_for(&core, "p1"), 0).unwrap().0;
    let admin_token = std::fs::read_to_string(core.home.token_file("admin")).unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("forged token", core.mosq_args_with("p1", &forged)),
        (
            "token signed by another key",
            core.mosq_args_with("p1", &other_key),
        ),
        ("expired token", core.mosq_args_with("p1", &expired)),
        (
            "admin's token used as p1",
            core.mosq_args_with("p1", admin_token.trim()),
        ),
        (
            "no credentials",
            args(&[
                "-V",
                "mqttv5",
                "-h",
                "127.0.0.1",
                "-p",
                &core.port.to_string(),
                "--cafile",
                &core.home.ca_cert().display().to_string(),
            ]),
        ),
    ];
    for (what, a) in cases {
        let out = mosquitto_pub(&[a, args(&["-t", "event/p1/x/y/p1", "-m", "x"])].concat());
        assert!(!out.status.success(), "{what} was accepted");
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Bad User Name or Password") || text.contains("not authori"),
            "{what}: {text}"
        );
    }
    // The real token works, so the refusals above are about the credentials.
    let ok = mosquitto_pub(
        &[
            core.mosq_args("p1"),
            args(&["-t", "event/p1/x/y/p1", "-m", "x"]),
        ]
        .concat(),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // A removed client is refused, even with a token that has not expired.
    let removed: hivehub_api::auth::RemoveClientResp = admin
        .request(
            "auth",
            "clients",
            "removeClient",
            &serde_json::json!({"clientID": "p1"}),
        )
        .await
        .unwrap();
    assert!(removed.removed);
    let out = mosquitto_pub(
        &[
            core.mosq_args("p1"),
            args(&["-t", "event/p1/x/y/p1", "-m", "x"]),
        ]
        .concat(),
    );
    assert!(!out.status.success(), "removed client was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_cannot_impersonate_or_snoop() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "p1", Role::Service).await;
    core.add_client(&admin, "p2", Role::Service).await;

    let events = Sub::start(&[core.mosq_args("admin"), args(&["-t", "event/#", "-v"])].concat());
    let inbox = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "_INBOX/admin/+", "-v"]),
        ]
        .concat(),
    );
    let p1 = |topic: &str, msg: &str| {
        mosquitto_pub(
            &[
                core.mosq_args("p1"),
                args(&["-q", "1", "-t", topic, "-m", msg]),
            ]
            .concat(),
        )
    };
    // Events under another identity, and forged replies into admin's inbox.
    p1("event/p2/t/x/p2", "FORGED-1");
    p1("event/p2/t/x/p1", "FORGED-2");
    p1("event/p1/t/x/p2", "FORGED-3");
    p1("_INBOX/admin/launcher", "FORGED-REPLY-1");
    p1("_INBOX/admin/p2", "FORGED-REPLY-2");
    // Allowed markers, published after the forged messages by the same client.
    p1("event/p1/t/x/p1", "MARKER");
    p1("_INBOX/admin/p1", "INBOX-MARKER");
    assert!(
        events.wait_for("MARKER", Duration::from_secs(10)),
        "{}",
        events.output()
    );
    assert!(
        inbox.wait_for("INBOX-MARKER", Duration::from_secs(10)),
        "{}",
        inbox.output()
    );
    assert!(!events.output().contains("FORGED"), "{}", events.output());
    assert!(!inbox.output().contains("FORGED"), "{}", inbox.output());

    // Subscribing to another client's requests or inbox is refused.
    for filter in ["rpc/p2/+/+/+", "rpc/#", "_INBOX/admin/+", "#"] {
        let s = Sub::start(&[core.mosq_args("p1"), args(&["-t", filter])].concat());
        let o = s.output();
        assert!(
            o.contains("denied") || o.contains("Not authorized"),
            "{filter}: {o}"
        );
    }
    let p1c = core.client("p1").await;
    assert!(
        p1c.subscribe_events(None, None, None).await.is_ok(),
        "services may read events"
    );
    // The SDK reports a refused subscription as an error: devices may not read others' events.
    core.add_client(&admin, "d1", Role::Device).await;
    let d1 = core.client("d1").await;
    let e = d1.subscribe_events(None, None, None).await.unwrap_err();
    assert!(matches!(e, ClientError::SubscribeDenied(_)), "{e}");

    // A Last Will on a topic p1 may not publish is refused at CONNECT.
    let out = mosquitto_pub(
        &[
            core.mosq_args("p1"),
            args(&[
                "--will-topic",
                "event/p2/status/offline/p2",
                "--will-payload",
                "FORGED-WILL",
                "-t",
                "event/p1/x/y/p1",
                "-m",
                "x",
            ]),
        ]
        .concat(),
    );
    assert!(!out.status.success(), "forbidden will accepted");
    // Its own will is fine.
    let out = mosquitto_pub(
        &[
            core.mosq_args("p1"),
            args(&[
                "--will-topic",
                "event/p1/status/offline/p1",
                "--will-payload",
                "bye",
                "-t",
                "event/p1/x/y/p1",
                "-m",
                "x",
            ]),
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!events.output().contains("FORGED-WILL"));

    // Session takeover: p1 may not use p2's session name.
    let out = mosquitto_pub(
        &[
            core.mosq_args("p1"),
            args(&["-i", "p2", "-t", "event/p1/x/y/p1", "-m", "x"]),
        ]
        .concat(),
    );
    assert!(!out.status.success(), "p1 took p2's session name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_need_a_grant() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "weather", Role::Service).await;
    core.add_client(&admin, "p1", Role::Service).await;
    core.add_client(&admin, "alice", Role::Viewer).await;
    let svc = core.client("weather").await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    svc.serve("forecast", move |r| {
        let c2 = c2.clone();
        async move {
            c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match r.method.as_str() {
                "today" => Ok(serde_json::json!({"sky": "clear", "for": r.sender})),
                _ => Err(r.unknown_method()),
            }
        }
    })
    .await
    .unwrap();

    let p1 = core.client("p1").await;
    let alice = core.client("alice").await;
    // Nothing is allowed by default: the core answers with a denial, the service never sees it.
    for c in [&p1, &alice] {
        let e = c
            .request::<_, serde_json::Value>("weather", "forecast", "today", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Denied), "{e}");
    }
    let e = p1
        .request::<_, serde_json::Value>("weather", "forecast", "today", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "not permitted: role service may not call weather/forecast/today"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    // The service grants viewers; alice may call, p1 (service role) still may not.
    svc.set_permissions("forecast", &[Role::Viewer])
        .await
        .unwrap();
    let v: serde_json::Value = alice
        .request("weather", "forecast", "today", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(v["for"], "alice");
    let e = p1
        .request::<_, serde_json::Value>("weather", "forecast", "today", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied));
    // The grant survives in the store: another service cannot change it.
    let e = p1.set_permissions("forecast", &[Role::Service]).await;
    assert!(
        e.is_ok(),
        "p1 may set grants of its own (nonexistent) capability"
    );
    let e = p1
        .request::<_, serde_json::Value>("weather", "forecast", "today", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied));
    // A plugin cannot manage clients.
    let e = p1
        .request::<_, serde_json::Value>("auth", "clients", "listClients", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_may_only_manage_services() {
    let core = core();
    let launcher = core.client("launcher").await;
    let key = KeyPair::generate();
    let ok: hivehub_api::auth::AddClientResp = launcher
        .request(
            "auth",
            "clients",
            "addClient",
            &serde_json::json!({"clientID": "plug", "role": "service", "pubKey": key.public_key_b64()}),
        )
        .await
        .unwrap();
    assert_eq!(ok.profile.role, Role::Service);
    for (id, role) in [("eve", "admin"), ("admin", "service"), ("dev", "device")] {
        let e = launcher
            .request::<_, serde_json::Value>(
                "auth",
                "clients",
                "addClient",
                &serde_json::json!({"clientID": id, "role": role, "pubKey": key.public_key_b64()}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Denied), "{id}/{role}: {e}");
    }
    let e = launcher
        .request::<_, serde_json::Value>(
            "auth",
            "clients",
            "removeClient",
            &serde_json::json!({"clientID": "admin"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_disconnected() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "p1", Role::Service).await;
    let short = hub_issuer(&core)
        .issue(&profile_for(&core, "p1"), 2)
        .unwrap()
        .0;
    let mut opts = core.options("p1");
    opts.token = Some(short);
    opts.token_file = None;
    opts.key_file = None;
    opts.refresh_token = false;
    let c = hivehub_client::HubClient::connect(opts).await.unwrap();
    let mut state = c.state();
    let dropped = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, hivehub_client::ConnState::Disconnected(_))),
    )
    .await;
    let why = match dropped.map(|r| r.map(|s| s.clone())) {
        Ok(Ok(hivehub_client::ConnState::Disconnected(why))) => why,
        other => panic!("session with an expired token stayed connected: {other:?}"),
    };
    assert!(
        why.contains("NotAuthorized") && why.contains("token expired"),
        "{why}"
    );
    // Any MQTT 5 client is told why: a DISCONNECT with "not authorized" (0x87) and a reason
    // string, before the connection closes.
    let short = hub_issuer(&core)
        .issue(&profile_for(&core, "p1"), 2)
        .unwrap()
        .0;
    let mut args = core.mosq_args_with("p1", &short);
    args.extend(["-d".into(), "-t".into(), "event/p1/+/+/p1".into()]);
    let sub = hivehub_testkit::Sub::start(&args);
    assert!(
        sub.wait_for("Received DISCONNECT (135)", Duration::from_secs(10)),
        "no DISCONNECT with 0x87: {}",
        sub.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_renewed_with_the_key() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "p1", Role::Service).await;
    let expired = hub_issuer(&core)
        .issue(&profile_for(&core, "p1"), 0)
        .unwrap()
        .0;
    hivehub_home::write_atomic(&core.home.token_file("p1"), expired.as_bytes(), 0o400).unwrap();
    // The SDK proves itself with its key, then refreshes and rewrites its token file.
    let c = core.client("p1").await;
    let ok = hivehub_testkit::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(core.home.token_file("p1")).is_ok_and(|t| t != expired)
    });
    assert!(ok, "token file was not refreshed");
    let me: ClientProfile = c
        .request("auth", "profile", "whoami", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(me.client_id, "p1");
    let fresh = std::fs::read_to_string(core.home.token_file("p1")).unwrap();
    assert!(hub_issuer(&core).verify(&fresh, "p1").is_ok());
}
