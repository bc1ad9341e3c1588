//! The core's local socket (`run/hubcore.sock`): private to the home's owner, the same logins
//! and ACL as the TLS listener, one core per home. And what holds connections that have not
//! logged in, on every listener: the connect timeout, the CONNECT's size, and their number in
//! all and per address.

use hivehub_api::auth::{methods, ListClientsResp, AUTH_SERVICE, CAP_CLIENTS};
use hivehub_api::rpc::Ack;
use hivehub_api::Role;
use hivehub_client::{HubClient, ServerUrl};
use hivehub_testkit::{args, mosquitto_pub, wait_until, Core, Sub};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

fn hubcore() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_hubcore").as_ref()
}

/// mosquitto arguments for `id` with `password`, through the socket instead of TLS.
fn over_socket(core: &Core, id: &str, password: &str) -> Vec<String> {
    args(&[
        "--unix",
        &core.home.core_socket_file().display().to_string(),
        "-V",
        "mqttv5",
        "-i",
        &format!("{id}:sock"),
        "-u",
        id,
        "-P",
        password,
    ])
}

fn token(core: &Core, id: &str) -> String {
    std::fs::read_to_string(core.home.token_file(id))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_and_takes_the_same_logins_and_acl() {
    let core = Core::start(hubcore());
    let path = core.home.core_socket_file();
    let meta = std::fs::symlink_metadata(&path).expect("run/hubcore.sock");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Bound under a temporary name and renamed into place: nothing else is left in run/.
    let strays: Vec<_> = std::fs::read_dir(core.home.run())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
    let owner = std::fs::metadata(core.home.root()).unwrap().uid();
    assert_eq!(meta.uid(), owner, "owned by the home's owner");

    // The SDK, as admin: a request to the auth service answers.
    let mut o = core.options("admin");
    o.server = ServerUrl::Unix(path.clone());
    o.ca_cert = None;
    let admin = HubClient::connect(o).await.expect("admin over the socket");
    let list: ListClientsResp = admin
        .request(AUTH_SERVICE, CAP_CLIENTS, methods::LIST_CLIENTS, &Ack {})
        .await
        .expect("listClients");
    assert!(list.clients.iter().any(|c| c.client_id == "admin"));
    core.add_client(&admin, "eve", Role::Viewer).await;

    // A login is required, and it is checked as on TLS.
    let refused = |a: Vec<String>| {
        let out = mosquitto_pub(&[a, args(&["-t", "event/eve/t/x/eve", "-m", "1"])].concat());
        !out.status.success()
    };
    assert!(refused(over_socket(&core, "admin", "")), "no password");
    assert!(
        refused(over_socket(&core, "admin", "not-a-token")),
        "bad token"
    );
    assert!(
        refused(over_socket(&core, "admin", &token(&core, "eve"))),
        "eve's token as admin"
    );
    assert!(!refused(over_socket(&core, "eve", &token(&core, "eve"))));

    // The ACL is the same: eve, a viewer, may not publish events, not even her own; her
    // publish is dropped, and admin, subscribed over TLS, sees only what was allowed.
    let sub = Sub::start(&[core.mosq_args("admin"), args(&["-t", "event/#", "-v"])].concat());
    let out = mosquitto_pub(
        &[
            over_socket(&core, "eve", &token(&core, "eve")),
            args(&["-q", "1", "-t", "event/eve/t/x/eve", "-m", "forged"]),
        ]
        .concat(),
    );
    assert!(out.status.code().is_some(), "mosquitto_pub did not run");
    let admin_tok = token(&core, "admin");
    let ok = mosquitto_pub(
        &[
            over_socket(&core, "admin", &admin_tok),
            args(&["-q", "1", "-t", "event/admin/t/x/admin", "-m", "marker"]),
        ]
        .concat(),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        sub.wait_for("marker", Duration::from_secs(10)),
        "{}",
        sub.output()
    );
    assert!(!sub.output().contains("forged"), "{}", sub.output());
    admin.disconnect().await;
}

/// Starts hubcore in `home`, expecting it to refuse to start (exit 1) within 30 s; its
/// stderr. One that starts after all is killed, and the test fails.
fn start_fails(home: &hivehub_home::Home) -> String {
    let dir = hivehub_testkit::tempdir();
    let log = dir.path().join("stderr");
    let mut child = Killed(
        Command::new(hubcore())
            .arg("--home")
            .arg(home.root())
            .args(["--listen", "127.0.0.1:0"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("hubcore"),
    );
    let mut status = None;
    wait_until(Duration::from_secs(30), || {
        status = child.0.try_wait().ok().flatten();
        status.is_some()
    });
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    err
}

#[test]
fn one_core_per_home_and_a_stale_socket_is_replaced() {
    let mut core = Core::start(hubcore());
    let path = core.home.core_socket_file();
    // A second core in the same home does not take the live socket over.
    let err = start_fails(&core.home);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("another hubcore answers"),
        "{err}"
    );
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());

    // A core that was killed leaves its socket; the next one replaces it.
    core.restart();
    let mut o = core.options("admin");
    o.server = ServerUrl::Unix(path.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = HubClient::connect(o).await.expect("over the new socket");
        c.disconnect().await;
    });

    // A clean stop removes it.
    assert!(core.terminate().is_some_and(|s| s.success()));
    assert!(!path.exists(), "the socket outlived the core");

    // Something else in its place is never removed: the core refuses to start.
    std::fs::write(&path, "mine").unwrap();
    let err = start_fails(&core.home);
    assert!(err.contains("other than a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
}

/// Kills the process when dropped, so a failed assertion leaves nothing running.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_home_too_deep_for_a_socket_runs_without_one() {
    let dir = hivehub_testkit::tempdir();
    let deep = dir.path().join("d".repeat(100));
    let home = hivehub_home::Home::at(deep.join("home"));
    assert!(home.core_socket_file().as_os_str().len() > 108);
    let log = std::fs::File::create(dir.path().join("hubcore.log")).unwrap();
    let _core = Killed(
        Command::new(hubcore())
            .arg("--home")
            .arg(home.root())
            .args(["--listen", "127.0.0.1:0"])
            .stderr(log)
            .spawn()
            .expect("hubcore"),
    );
    let log = || std::fs::read_to_string(dir.path().join("hubcore.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(30), || home.core_url_file().exists()),
        "the core did not start: {}",
        log()
    );
    assert!(!home.core_socket_file().exists());
    assert!(log().contains("no local socket"), "{}", log());
}

#[test]
fn the_socket_can_be_turned_off() {
    let core = Core::start_with_config(hubcore(), "localSocket: false\n");
    assert!(!core.home.core_socket_file().exists());
}

/// Seconds until the peer closes `read`'s connection, which sent nothing; panics after 20 s.
fn closed_after(mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        match read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => panic!("the core sent data to a silent client"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("still open after {:?}: {e}", start.elapsed())
            }
            Err(_) => {}
        }
    }
}

#[test]
fn a_connect_larger_than_any_login_needs_is_refused_before_its_body() {
    let core = Core::start(hubcore());
    // A CONNECT header announcing 1 MiB (the limit after login is 4 MiB; before it, the
    // largest Last Will, 64 KiB by default, plus 16 KiB), then a few bytes of body and silence.
    let mut s = std::os::unix::net::UnixStream::connect(core.home.core_socket_file()).unwrap();
    let len: u32 = 1024 * 1024;
    let mut header = vec![0x10];
    let mut n = len;
    loop {
        let d = (n % 128) as u8;
        n /= 128;
        header.push(if n > 0 { d | 0x80 } else { d });
        if n == 0 {
            break;
        }
    }
    header.extend_from_slice(b"\x00\x04MQTT\x05\x02\x00\x3c");
    std::io::Write::write_all(&mut s, &header).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Closed at once, not after the 30 s connect timeout that waiting for the body would take.
    let took = closed_after(|b| match s.read(b) {
        Ok(n) if n > 0 => Err(std::io::ErrorKind::WouldBlock.into()),
        r => r,
    });
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // A normal login still works, with a Last Will at the allowed size.
    let will = "w".repeat(60 * 1024);
    let out = mosquitto_pub(
        &[
            core.mosq_args("admin"),
            args(&[
                "--will-topic",
                "event/admin/t/will/admin",
                "--will-payload",
                &will,
                "-t",
                "event/admin/t/x/admin",
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
}

#[test]
fn a_connection_that_never_sends_connect_is_closed() {
    let core = Core::start_with_config(hubcore(), "limits:\n  connectTimeoutSecs: 1\n");
    // On the socket: nothing at all.
    let mut unix = std::os::unix::net::UnixStream::connect(core.home.core_socket_file()).unwrap();
    unix.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let took = closed_after(|b| unix.read(b));
    assert!(
        took >= Duration::from_millis(500),
        "closed at once: {took:?}"
    );

    // On TLS: a finished handshake, then silence (Python's ssl module).
    let script = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='127.0.0.1')
t.settimeout(20)
start = time.monotonic()
try:
    data = t.recv(16)
except (ConnectionResetError, ssl.SSLError):
    data = b''
print('closed' if data == b'' else 'data', round(time.monotonic() - start, 1))
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(core.port.to_string())
        .arg(core.home.ca_cert())
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.starts_with("closed"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The core keeps serving.
    assert!(wait_until(Duration::from_secs(5), || mosquitto_pub(
        &[
            core.mosq_args("admin"),
            args(&["-t", "event/admin/t/x/admin", "-n"])
        ]
        .concat()
    )
    .status
    .success()));
}

/// A raw TCP connection to `port` of `to` from the address `from` (port chosen by the kernel),
/// that sends nothing.
async fn silent(from: &str, to: &str, port: u16) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(format!("{to}:{port}").parse().unwrap())
        .await
        .unwrap()
}

/// True if the core closed `s` within 1 s (a refusal takes milliseconds); false if it is
/// still open then.
async fn closed_soon(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the core sent data to a silent client"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_not_logged_in_are_capped_per_listener() {
    let core = Core::start_with_config(hubcore(), "limits:\n  maxConnecting: 4\n");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(silent("127.0.0.1", "127.0.0.1", core.port).await);
    }
    let mut fifth = silent("127.0.0.1", "127.0.0.1", core.port).await;
    assert!(closed_soon(&mut fifth).await, "a 5th connection was held");
    for s in &mut held {
        assert!(
            !closed_soon(s).await,
            "a connection within the cap was closed"
        );
    }
    // Nobody logs in over TLS meanwhile; the socket is another listener, with its own cap.
    let tls = || {
        mosquitto_pub(
            &[
                core.mosq_args("admin"),
                args(&["-t", "event/admin/t/x/admin", "-n"]),
            ]
            .concat(),
        )
        .status
        .success()
    };
    assert!(!tls(), "a login got past the cap");
    let admin_tok = token(&core, "admin");
    let out = mosquitto_pub(
        &[
            over_socket(&core, "admin", &admin_tok),
            args(&["-t", "event/admin/t/x/admin", "-n"]),
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Their places are free again as soon as they close.
    drop(held);
    assert!(wait_until(Duration::from_secs(10), tls), "{}", core.log());
}

/// Adds `addr` to the loopback device for the test's life (root only), so that connections
/// can come from an address that is not a loopback one.
struct LoAddr(String);

impl LoAddr {
    fn add(addr: &str) -> Option<LoAddr> {
        let ok = Command::new("ip")
            .args(["addr", "add", &format!("{addr}/32"), "dev", "lo"])
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| LoAddr(addr.to_string()))
    }
}

impl Drop for LoAddr {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_not_logged_in_are_capped_per_address() {
    // Two addresses of a test network, unique to this process.
    let k = std::process::id() % 250 + 1;
    let (server, a, b) = (
        format!("10.251.{k}.1"),
        format!("10.251.{k}.2"),
        format!("10.251.{k}.3"),
    );
    let addrs: Vec<LoAddr> = [&server, &a, &b]
        .iter()
        .filter_map(|x| LoAddr::add(x))
        .collect();
    if addrs.len() < 3 {
        eprintln!("skipped: needs CAP_NET_ADMIN to add addresses to the loopback device");
        return;
    }
    let core = Core::start_on_with_config(
        hubcore(),
        &server,
        "limits:\n  maxConnectingPerAddress: 2\n",
    );
    let mut from_a = vec![
        silent(&a, &server, core.port).await,
        silent(&a, &server, core.port).await,
    ];
    let mut third = silent(&a, &server, core.port).await;
    assert!(
        closed_soon(&mut third).await,
        "a 3rd connection from one address was held"
    );
    for s in &mut from_a {
        assert!(
            !closed_soon(s).await,
            "a connection within the cap was closed"
        );
    }
    // Another address is not held back by the first one's.
    let mut from_b = silent(&b, &server, core.port).await;
    assert!(
        !closed_soon(&mut from_b).await,
        "another address was refused"
    );
    from_a.pop();
    let mut again = silent(&a, &server, core.port).await;
    assert!(
        !closed_soon(&mut again).await,
        "a freed place was not given again"
    );
    drop(addrs);
}
