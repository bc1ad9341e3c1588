//! Hostile clients against a real hubcore, with real MQTT clients (mosquitto's, and the SDK):
//! one test per way a low login tried to act beyond its role, and per limit.

use hivehub_api::auth::{AddClientReq, AddClientResp};
use hivehub_api::{ErrorCode, Role};
use hivehub_auth::KeyPair;
use hivehub_client::HubClient;
use hivehub_testkit::{args, mosquitto_pub, wait_until, Core, Sub};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn core() -> Core {
    Core::start(env!("CARGO_BIN_EXE_hubcore").as_ref())
}

fn core_with(yaml: &str) -> Core {
    Core::start_with_config(env!("CARGO_BIN_EXE_hubcore").as_ref(), yaml)
}

/// mosquitto arguments for `id` with an explicit client identifier (after `mosq_args`' own
/// `-i`, so this one wins).
fn as_session(core: &Core, id: &str, session: &str) -> Vec<String> {
    [core.mosq_args(id), args(&["-i", session])].concat()
}

/// Publishes `count` lines of `payload` as `id` through one mosquitto_pub connection (`-l`).
fn publish_lines(core: &Core, id: &str, topic: &str, count: usize, extra: &[&str]) {
    let mut child = Command::new("mosquitto_pub")
        .args(core.mosq_args(id))
        .args(["-t", topic, "-l"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub");
    if let Some(mut stdin) = child.stdin.take() {
        let line = "x\n".repeat(count);
        let _ = stdin.write_all(line.as_bytes());
    }
    let _ = child.wait();
}

fn audit(core: &Core) -> String {
    std::fs::read_to_string(core.home.logs().join("audit.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_belong_to_logins() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "kitchen-sensor", Role::Device)
        .await;
    core.add_client(&admin, "eve", Role::Viewer).await;
    // The device keeps a persistent session under its own name.
    let device_resumes = || {
        let out = mosquitto_pub(
            &[
                as_session(&core, "kitchen-sensor", "kitchen-sensor"),
                args(&[
                    "-c",
                    "-x",
                    "600",
                    "-t",
                    "event/kitchen-sensor/t/x/kitchen-sensor",
                    "-m",
                    "1",
                ]),
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    device_resumes();
    // Whether eve connects under the session name `name` (a denied QoS 0 publish is no error).
    let eve_connects = |name: &str| {
        mosquitto_pub(
            &[
                as_session(&core, "eve", name),
                args(&["-c", "-t", "event/eve/t/x/eve", "-m", "1"]),
            ]
            .concat(),
        )
        .status
        .success()
    };
    // A viewer may not take it, resume it, or squat on any name but its own.
    for name in [
        "kitchen-sensor",
        "kitchen-sensor:x",
        "ghost",
        "admin:web",
        "eve-2",
    ] {
        assert!(!eve_connects(name), "eve took the session name {name}");
    }
    for name in ["eve", "eve:phone"] {
        assert!(
            eve_connects(name),
            "eve could not use her own session name {name}"
        );
    }
    // The device is not locked out.
    device_resumes();
    assert!(
        audit(&core).contains("may not use the session name"),
        "{}",
        audit(&core)
    );
}

/// A device with a persistent session goes offline, an action is queued for it, it is removed
/// (or not) and added again, and resumes: true if the queued action reached it.
async fn queued_action_survives(core: &Core, admin: &HubClient, dev: &str, remove: bool) -> bool {
    core.add_client(admin, dev, Role::Device).await;
    let persistent = |extra: &[&str]| {
        let filter = format!("action/{dev}/+/+/+");
        let mut a = as_session(core, dev, dev);
        a.extend(args(&["-c", "-x", "3600", "-q", "1", "-t", &filter, "-v"]));
        a.extend(args(extra));
        a
    };
    let mut first = Sub::start(&persistent(&[]));
    let pid = first.pid().expect("pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(wait_until(Duration::from_secs(5), || !first.running()));
    let topic = format!("action/{dev}/light/on/admin");
    let out = mosquitto_pub(
        &[
            core.mosq_args("admin"),
            args(&["-q", "1", "-t", &topic, "-m", "QUEUED-SECRET"]),
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if remove {
        let removed: serde_json::Value = admin
            .request("auth", "clients", "removeClient", &json!({"clientID": dev}))
            .await
            .expect("remove");
        assert_eq!(removed["removed"], true);
        core.add_client(admin, dev, Role::Device).await;
    }
    let again = Sub::start(&persistent(&[]));
    again.wait_for("QUEUED-SECRET", Duration::from_secs(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sessions_expire_within_the_limit() {
    let core = core_with("limits:\n  maxSessionExpirySecs: 1\n");
    let admin = core.client("admin").await;
    // The device asks for 3600 s; the core keeps its offline session for 1 s only, so an
    // action sent after that finds no session to queue in.
    let dev = "bulb";
    core.add_client(&admin, dev, Role::Device).await;
    let filter = format!("action/{dev}/+/+/+");
    let persistent = [
        as_session(&core, dev, dev),
        args(&["-c", "-x", "3600", "-q", "1", "-t", &filter, "-v"]),
    ]
    .concat();
    let mut first = Sub::start(&persistent);
    let pid = first.pid().expect("pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(wait_until(Duration::from_secs(5), || !first.running()));
    std::thread::sleep(Duration::from_millis(2500));
    let topic = format!("action/{dev}/light/on/admin");
    let _ = mosquitto_pub(
        &[
            core.mosq_args("admin"),
            args(&["-q", "1", "-t", &topic, "-m", "LATE"]),
        ]
        .concat(),
    );
    let again = Sub::start(&persistent);
    assert!(
        !again.wait_for("LATE", Duration::from_secs(2)),
        "an offline session outlived maxSessionExpirySecs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_ends_sessions_and_deletes_queued_messages() {
    let core = core();
    let admin = core.client("admin").await;
    // Without a removal the queue is delivered on resume; a removal deletes it.
    assert!(queued_action_survives(&core, &admin, "lamp1", false).await);
    assert!(
        !queued_action_survives(&core, &admin, "lamp2", true).await,
        "a removed client's queued message survived"
    );
    assert!(
        audit(&core).contains("client removed: lamp2"),
        "{}",
        audit(&core)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_are_checked_when_they_fire() {
    let core = core();
    let admin = core.client("admin").await;
    for id in ["gone", "kept", "demoted"] {
        core.add_client(&admin, id, Role::Service).await;
    }
    let watch = Sub::start(&[core.mosq_args("admin"), args(&["-t", "event/#", "-v"])].concat());
    let with_will = |id: &str| {
        Sub::start(
            &[
                core.mosq_args(id),
                args(&[
                    "--will-topic",
                    &format!("event/{id}/t/offline/{id}"),
                    "--will-payload",
                    &format!("WILL-{id}"),
                    "-t",
                    "event/nobody/#",
                ]),
            ]
            .concat(),
        )
    };
    let mut gone = with_will("gone");
    let kept = with_will("kept");
    let mut demoted = with_will("demoted");
    // A demoted client (now a viewer, which sends no events) is disconnected; its will must
    // not fire either.
    core.add_client(&admin, "demoted", Role::Viewer).await;
    assert!(wait_until(Duration::from_secs(10), || !demoted.running()));
    // A removed client's will must not fire (the removal disconnects it).
    let _: serde_json::Value = admin
        .request(
            "auth",
            "clients",
            "removeClient",
            &json!({"clientID": "gone"}),
        )
        .await
        .expect("remove");
    assert!(wait_until(Duration::from_secs(10), || !gone.running()));
    // A client that is still allowed: its will fires when it dies.
    if let Some(pid) = kept.pid() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        watch.wait_for("WILL-kept", Duration::from_secs(10)),
        "the control will never fired: {}\naudit:\n{}",
        watch.output(),
        audit(&core)
    );
    assert!(
        !watch.output().contains("WILL-gone") && !watch.output().contains("WILL-demoted"),
        "a removed or demoted client's will fired: {}",
        watch.output()
    );
    assert!(
        audit(&core).contains("will dropped: demoted"),
        "{}",
        audit(&core)
    );
    assert!(
        audit(&core).contains("will dropped: gone"),
        "{}",
        audit(&core)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_before_a_removal_never_logs_in_again() {
    let core = core();
    let admin = core.client("admin").await;
    let first = core.add_client(&admin, "bob", Role::Viewer).await.token;
    // Logged in once, so the core remembers the token's signature as checked.
    let mut once = core.options("bob");
    once.token = Some(first.clone());
    once.token_file = None;
    once.refresh_token = false;
    drop(HubClient::connect(once).await.expect("the token logs in"));
    let _: serde_json::Value = admin
        .request(
            "auth",
            "clients",
            "removeClient",
            &json!({"clientID": "bob"}),
        )
        .await
        .expect("remove");
    // Added again with the same key: the old token (same key, same role) is still refused.
    let key = KeyPair::load(&core.home.key_file("bob")).expect("key");
    let again: AddClientResp = admin
        .request(
            "auth",
            "clients",
            "addClient",
            &AddClientReq {
                client_id: "bob".into(),
                client_type: None,
                display_name: None,
                role: Role::Viewer,
                pub_key: key.public_key_b64(),
            },
        )
        .await
        .expect("add again");
    let mut old = core.options("bob");
    old.token = Some(first);
    old.token_file = None;
    old.key_file = None;
    old.refresh_token = false;
    assert!(
        HubClient::connect(old).await.is_err(),
        "a revoked token logged in"
    );
    let mut new = core.options("bob");
    new.token = Some(again.token);
    new.token_file = None;
    assert!(HubClient::connect(new).await.is_ok());
    // Reserved IDs cannot be made at all.
    let e = admin
        .request::<_, serde_json::Value>(
            "auth",
            "clients",
            "addClient",
            &AddClientReq {
                client_id: "_launcher".into(),
                client_type: None,
                display_name: None,
                role: Role::Service,
                pub_key: key.public_key_b64(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_launchers_publish_launcher_status() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "svc", Role::Service).await;
    let watch = Sub::start(&[core.mosq_args("admin"), args(&["-t", "event/#", "-v"])].concat());
    for (topic, payload) in [
        ("event/svc/_launcher/status/svc", "FAKE-LAUNCHER"),
        ("event/svc/t/x/svc", "REAL-EVENT"),
    ] {
        let _ = mosquitto_pub(
            &[
                core.mosq_args("svc"),
                args(&["-q", "1", "-t", topic, "-m", payload]),
            ]
            .concat(),
        );
    }
    assert!(watch.wait_for("REAL-EVENT", Duration::from_secs(10)));
    assert!(
        !watch.output().contains("FAKE-LAUNCHER"),
        "{}",
        watch.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_exact() {
    let core = core_with("maxConnections: 3\n");
    let admin = core.client("admin").await;
    core.add_client(&admin, "v", Role::Viewer).await;
    // The auth service's own connection does not count; admin is one.
    let _a = Sub::start(&[core.mosq_args("v"), args(&["-t", "event/#"])].concat());
    let _b = Sub::start(&[core.mosq_args("v"), args(&["-t", "event/#"])].concat());
    let out = mosquitto_pub(&[core.mosq_args("v"), args(&["-t", "x", "-n"])].concat());
    assert!(!out.status.success(), "a 4th connection was admitted");
    drop(_b);
    assert!(wait_until(Duration::from_secs(10), || {
        mosquitto_pub(&[core.mosq_args("v"), args(&["-t", "x", "-n"])].concat())
            .status
            .success()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_capped() {
    let core = core_with("limits:\n  maxSubscriptions: 5\n");
    let admin = core.client("admin").await;
    core.add_client(&admin, "v", Role::Viewer).await;
    let filters: Vec<String> = (0..8).map(|i| format!("event/a{i}/#")).collect();
    let mut a = core.mosq_args("v");
    for f in &filters {
        a.extend(args(&["-t", f]));
    }
    let sub = Sub::start(&a);
    // mosquitto_sub -d prints the granted QoS per filter ("Subscribed (mid: 1): 0, 0, 128");
    // a refusal is 128 or above.
    assert!(wait_until(Duration::from_secs(10), || sub
        .output()
        .contains("SUBACK")));
    let out = sub.output();
    let line = out
        .lines()
        .find(|l| l.starts_with("Subscribed (mid"))
        .unwrap_or_default()
        .to_string();
    let granted: Vec<u32> = line
        .split("):")
        .nth(1)
        .unwrap_or_default()
        .split(',')
        .filter_map(|q| q.trim().parse().ok())
        .collect();
    assert_eq!(granted.len(), 8, "{out}");
    assert_eq!(granted.iter().filter(|q| **q < 128).count(), 5, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rate_and_retained_messages_are_limited() {
    let core = core_with(
        "limits:\n  publishRate: 20\n  publishBurst: 20\n  maxRetainedBytes: 1000\n  maxRetainedTopics: 2\n",
    );
    let admin = core.client("admin").await;
    core.add_client(&admin, "dev", Role::Device).await;
    core.add_client(&admin, "svc", Role::Service).await;
    let watch = Sub::start(&[core.mosq_args("admin"), args(&["-t", "event/svc/#", "-v"])].concat());
    // 400 publishes as fast as possible: the burst and about 20 per second get through.
    let t0 = Instant::now();
    publish_lines(&core, "svc", "event/svc/t/flood/svc", 400, &[]);
    // The `-v` output line ("topic payload"), once per delivered message.
    let count = || watch.output().matches("event/svc/t/flood/svc x").count();
    assert!(
        wait_until(Duration::from_secs(5), || count() >= 20),
        "{}",
        watch.output()
    );
    let got = count() as f64;
    let most = 20.0 + 20.0 * t0.elapsed().as_secs_f64() + 5.0;
    assert!(
        got >= 20.0 && got <= most,
        "{got} of 400 delivered, at most {most} allowed"
    );
    assert!(audit(&core).contains("publish rate"), "{}", audit(&core));

    // Retained: too big, or too many topics, is refused; a new subscriber gets the rest.
    let big = "x".repeat(2000);
    let retain = |topic: &str, payload: &str| {
        mosquitto_pub(
            &[
                core.mosq_args("dev"),
                args(&["-r", "-q", "1", "-t", topic, "-m", payload]),
            ]
            .concat(),
        )
    };
    // A device publishes events of its own things.
    let _ = retain("event/dev/t/big/dev", &big);
    for i in 0..4 {
        let _ = retain(&format!("event/dev/t/r{i}/dev"), &format!("R{i}"));
    }
    let late = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/dev/#", "-v", "-W", "2"]),
        ]
        .concat(),
    );
    assert!(
        late.wait_for("R1", Duration::from_secs(5)),
        "{}",
        late.output()
    );
    let out = late.output();
    assert!(
        out.contains("R0") && !out.contains("R2") && !out.contains("R3"),
        "{out}"
    );
    assert!(
        !out.contains(&big),
        "an oversized retained message was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launcher_is_not_held_to_the_per_login_rate_and_retained_count() {
    // A launcher with 300 plugins publishes a retained status for each, all at once; limits
    // meant for hostile logins would keep 2 of them and drop most of the burst.
    let core =
        core_with("limits:\n  publishRate: 20\n  publishBurst: 20\n  maxRetainedTopics: 2\n");
    let launcher = core.client("launcher").await;
    for i in 0..300 {
        launcher
            .publish_event(&format!("p{i}"), "status", &json!({ "n": i }), true)
            .await
            .expect("publish");
    }
    let late = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/launcher/+/status/launcher", "-v"]),
        ]
        .concat(),
    );
    let count = || late.output().matches("/status/launcher ").count();
    assert!(
        wait_until(Duration::from_secs(10), || count() >= 300),
        "{} of 300 retained statuses kept",
        count()
    );
    // A service with the same limits is still held to them.
    let admin = core.client("admin").await;
    core.add_client(&admin, "svc", Role::Service).await;
    let svc = core.client("svc").await;
    for i in 0..5 {
        let _ = svc
            .publish_event(&format!("t{i}"), "status", &json!({ "n": i }), true)
            .await;
    }
    let late = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/svc/+/status/svc", "-v", "-W", "2"]),
        ]
        .concat(),
    );
    assert!(
        late.wait_for("t1", Duration::from_secs(5)),
        "{}",
        late.output()
    );
    let out = late.output();
    assert!(!out.contains("/t2/") && !out.contains("/t4/"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_capped_and_unchanged_grants_do_not_rewrite_the_store() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "svc", Role::Service).await;
    let svc = core.client("svc").await;
    let set = |cap: String| {
        let svc = svc.clone();
        async move {
            svc.request::<_, serde_json::Value>(
                "auth",
                "authz",
                "setPermissions",
                &json!({"capability": cap, "roles": ["viewer"]}),
            )
            .await
        }
    };
    for i in 0..64 {
        set(format!("cap{i}")).await.expect("within the cap");
    }
    let e = set("cap64".into()).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    let store = core.home.stores().join("auth").join("clients.json");
    let before = std::fs::metadata(&store).unwrap().modified().unwrap();
    for _ in 0..20 {
        set("cap1".into()).await.expect("unchanged");
    }
    assert_eq!(
        std::fs::metadata(&store).unwrap().modified().unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_keeps_a_removal_through_a_denied_flood() {
    let core = core();
    let admin = core.client("admin").await;
    core.add_client(&admin, "bob", Role::Viewer).await;
    core.add_client(&admin, "eve", Role::Service).await;
    let _: serde_json::Value = admin
        .request(
            "auth",
            "clients",
            "removeClient",
            &json!({"clientID": "bob"}),
        )
        .await
        .expect("remove");
    // 10 s of denied publishes from one login, as fast as one connection goes.
    let end = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while Instant::now() < end {
        publish_lines(&core, "eve", "event/other/t/x/eve", 5000, &[]);
        sent += 5000;
    }
    // The next summary says how many more there were.
    assert!(
        wait_until(Duration::from_secs(10), || audit(&core)
            .contains("more times: publish denied")),
        "no summary:\n{}",
        audit(&core)
    );
    let log = audit(&core);
    assert!(log.contains("client removed: bob"), "{log}");
    assert!(log.contains("refused eve: publish denied"), "{log}");
    assert!(
        log.lines().count() < 100,
        "{} lines for {sent} denied publishes",
        log.lines().count()
    );
}

/// Opens `count` TLS connections as `id`, sends a CONNECT on each and hangs up before the
/// CONNACK (Python's ssl module; raw MQTT 5 bytes).
fn aborted_connects(core: &Core, id: &str, count: usize) {
    let token = std::fs::read_to_string(core.home.token_file(id)).unwrap_or_default();
    let script = r#"
import socket, ssl, struct, sys
port, ca, user, pw, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def s(b): return struct.pack('!H', len(b)) + b
def packet(cid):
    body = s(b'MQTT') + bytes([5, 0xC2]) + struct.pack('!H', 4) + bytes([0])
    body += s(cid.encode()) + s(user.encode()) + s(pw.encode())
    n, rl = len(body), b''
    while True:
        d, n = n % 128, n // 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n: break
    return bytes([0x10]) + rl + body
ctx = ssl.create_default_context(cafile=ca)
for i in range(count):
    t = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port)), server_hostname='127.0.0.1')
    t.sendall(packet(f'{user}:abort{i}'))
    t.close()
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(core.port.to_string())
        .arg(core.home.ca_cert())
        .args([id, token.trim(), &count.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_cannot_take_every_connection() {
    let core = core_with("maxConnections: 8\nlimits:\n  maxConnectionsPerLogin: 3\n");
    let admin = core.client("admin").await;
    core.add_client(&admin, "eve", Role::Viewer).await;
    core.add_client(&admin, "bob", Role::Viewer).await;
    let connects = |id: &str| {
        let out = mosquitto_pub(&[core.mosq_args(id), args(&["-t", "x", "-n"])].concat());
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        out.status.success() && !err.contains("not authori") && !err.contains("refused")
    };
    // Connections of one login, live or abandoned right after the CONNECT, count against that
    // login's own share only: everyone else still gets in.
    let _live: Vec<Sub> = (0..3)
        .map(|_| Sub::start(&[core.mosq_args("eve"), args(&["-t", "event/#"])].concat()))
        .collect();
    assert!(!connects("eve"), "eve got a 4th connection");
    assert!(connects("bob"));
    aborted_connects(&core, "bob", 20);
    assert!(!connects("bob"), "abandoned CONNECTs did not count");
    core.add_client(&admin, "carol", Role::Viewer).await;
    assert!(
        connects("carol"),
        "bob's abandoned CONNECTs locked carol out"
    );
    assert!(
        audit(&core).contains("maxConnectionsPerLogin"),
        "{}",
        audit(&core)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_and_properties_count_against_the_retained_limits() {
    let core = core_with("limits:\n  maxRetainedBytes: 1000\n  maxRetainedTopics: 1\n");
    let admin = core.client("admin").await;
    core.add_client(&admin, "dev", Role::Device).await;
    let will = |topic: &str, payload: &str, retain: bool| {
        let mut a = core.mosq_args("dev");
        a.extend(args(&["--will-topic", topic, "--will-payload", payload]));
        if retain {
            a.push("--will-retain".into());
        }
        a.extend(args(&["-t", "event/dev/t/x/dev", "-m", "1"]));
        mosquitto_pub(&a)
    };
    // A will bigger than a retained message may be is refused at CONNECT.
    let big = "w".repeat(2000);
    assert!(!will("event/dev/t/gone/dev", &big, false).status.success());
    assert!(will("event/dev/t/gone/dev", "small", false)
        .status
        .success());
    // The one retained topic is taken: a retained will on another is refused.
    let out = mosquitto_pub(
        &[
            core.mosq_args("dev"),
            args(&["-r", "-q", "1", "-t", "event/dev/t/a/dev", "-m", "A"]),
        ]
        .concat(),
    );
    assert!(out.status.success());
    assert!(!will("event/dev/t/b/dev", "B", true).status.success());
    // Properties count too: a small payload with a large user property is not retained.
    let prop = "p".repeat(2000);
    let _ = mosquitto_pub(
        &[
            core.mosq_args("dev"),
            args(&[
                "-r",
                "-q",
                "1",
                "-t",
                "event/dev/t/a/dev",
                "-m",
                "SMALL",
                "-D",
                "publish",
                "user-property",
                "k",
                &prop,
            ]),
        ]
        .concat(),
    );
    let late = Sub::start(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/dev/#", "-v", "-W", "2"]),
        ]
        .concat(),
    );
    assert!(
        late.wait_for("event/dev/t/a/dev A", Duration::from_secs(5)),
        "{}",
        late.output()
    );
    assert!(!late.output().contains("SMALL"), "{}", late.output());
}
