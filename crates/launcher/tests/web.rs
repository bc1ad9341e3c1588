//! The launcher's HTTP listener, end to end: a real launcher (with a real hubcore) serving
//! `/metrics`, checked with the Python Prometheus text parser; the status page's API with real
//! logins through the hub; what a hostile client gets (no data without a login, foreign `Host`
//! refused, session flooding, login guessing); every launcher of a hub on one launcher's page;
//! and the page itself driven in headless Chromium by playwright-core.

mod http;

use hivehub_api::launcher::PluginInfo;
use hivehub_testkit::{plugin_script, wait_until, workspace_bin, Core, LauncherHub, Member};
use http::{exchange, free_port, http, Resp};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A launcher with `httpListen` on a free port (when `http`), a `sleeper` plugin, and fast
/// sampling; started.
fn launcher(http: bool, top: &str, plugins: &str) -> (LauncherHub, u16) {
    let port = free_port();
    let listen = if http {
        format!("httpListen: 127.0.0.1:{port}\n")
    } else {
        String::new()
    };
    let mut h = LauncherHub::new(
        env!("CARGO_BIN_EXE_launcher").as_ref(),
        &format!("{listen}sampleInterval: 200ms\n{top}"),
        plugins,
    );
    plugin_script(&h.home, "sleeper", "exec sleep 1000");
    plugin_script(&h.home, "napper", "exec sleep 1000");
    plugin_script(
        &h.home,
        "talker",
        "echo \"talker secret: hunter2\"; exec sleep 1000",
    );
    h.start();
    if http {
        let up = wait_until(Duration::from_secs(30), || {
            get(port, "/healthz").is_ok_and(|r| r.status == 200)
        });
        assert!(
            up,
            "no HTTP listener on {port}; launcher output:\n{}",
            h.out()
        );
    }
    (h, port)
}

/// A connection to the listener on 127.0.0.1 from the loopback address `from` (127.0.0.2 and so
/// on: all of 127/8 is loopback), to be seen as another remote address.
fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((from, 0)))?;
        let s = sock
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await?
            .into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// A plain HTTP/1.1 request from the loopback address `from`.
fn http_from(
    from: Ipv4Addr,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let s = connect_from(from, port).unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    exchange(s, &format!("127.0.0.1:{port}"), method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} from {from}: {e}"))
}

fn get(port: u16, path: &str) -> std::io::Result<Resp> {
    http(port, "GET", path, &[], "")
}

/// A GET with the session cookie.
fn get_as(port: u16, path: &str, cookie: &str) -> Resp {
    http(port, "GET", path, &[("Cookie", cookie)], "").expect("GET")
}

/// `/metrics` with `Authorization: Bearer {cred}`.
fn scrape(port: u16, cred: &str) -> Resp {
    let auth = format!("Bearer {cred}");
    http(port, "GET", "/metrics", &[("Authorization", &auth)], "").expect("GET /metrics")
}

/// Adds the client `id` with `role` (`hubcli auth add`); returns its token.
fn add_client(h: &LauncherHub, id: &str, role: &str) -> String {
    h.url();
    let out = h.hubcli(&["auth", "add", id, "--role", role]);
    assert!(
        out.status.success(),
        "hubcli auth add {id}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_token(h, id)
}

/// Logs in on the page's API as `id`; the session cookie.
fn login(port: u16, id: &str, token: &str) -> String {
    let body = json!({"clientID": id, "token": token}).to_string();
    let r = post(port, "/login", None, "application/json", &body);
    assert_eq!(r.status, 200, "login of {id}: {}", r.body);
    r.cookie()
}

/// The JSON error of a refusal (`{"error": "..."}`).
fn error_of(r: &Resp) -> String {
    r.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {}", r.body))
        .to_string()
}

/// A POST as the page makes it (with the CSRF header), with an optional cookie.
fn post(port: u16, path: &str, cookie: Option<&str>, ctype: &str, body: &str) -> Resp {
    let mut h = vec![("X-Hivehub", "1"), ("Content-Type", ctype)];
    if let Some(c) = cookie {
        h.push(("Cookie", c));
    }
    http(port, "POST", path, &h, body).expect("POST")
}

/// One parsed sample: family name, family type, sample name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A sample as the parser script prints it.
type Row = (String, String, String, BTreeMap<String, String>, f64);

const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("the Python package prometheus-client is missing: pip install prometheus-client")
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([fam.name, fam.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// Parses `/metrics` output with the Python client's Prometheus text parser.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse the metrics");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Row> = serde_json::from_slice(&out.stdout).expect("parser output");
    rows.into_iter()
        .map(|(family, kind, name, labels, value)| Sample {
            family,
            kind,
            name,
            labels,
            value,
        })
        .collect()
}

/// The value of `name` for `plugin` (and `extra` labels) in raw metrics text, without the
/// Python parser (for polling).
fn raw_value(text: &str, name: &str, plugin: &str, extra: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&format!("plugin=\"{plugin}\"")) && l.contains(extra))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn find<'a>(s: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    s.iter()
        .find(|x| {
            x.name == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {s:#?}"))
}

/// TCP ports the process `pid` listens on (from /proc).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                let t = t.display().to_string();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(p) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                {
                    ports.insert(p);
                }
            }
        }
    }
    ports
}

#[test]
fn metrics_parse_and_follow_a_restart() {
    let (h, port) = launcher(
        true,
        "autostart: [sleeper]\n",
        "  sleeper:\n    restart: always\n    backoff: {base: 100ms}\n",
    );
    let pid = h.wait_running("sleeper");
    // Prometheus scrapes as a viewer, with the token as the bearer.
    let prom = add_client(&h, "prom", "viewer");
    // Wait for the first resource samples (of the plugin and of the launcher itself).
    let mut text = String::new();
    let sampled = wait_until(Duration::from_secs(20), || {
        text = scrape(port, &prom).body;
        raw_value(&text, "hivehub_plugin_cpu_percent", "sleeper", "").is_some()
            && text.contains("hivehub_launcher_rss_bytes{")
    });
    assert!(sampled, "no samples in:\n{text}");

    let r = scrape(port, &prom);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    let s = parse_metrics(&r.body);
    let sleeper = [("plugin", "sleeper"), ("launcher", "launcher")];
    let kind = |family: &str| {
        s.iter()
            .find(|x| x.family == family)
            .map(|x| x.kind.clone())
            .unwrap_or_else(|| panic!("no family {family}"))
    };
    assert_eq!(kind("hivehub_plugin_cpu_percent"), "gauge");
    assert_eq!(kind("hivehub_plugin_rss_bytes"), "gauge");
    assert_eq!(kind("hivehub_plugin_state"), "gauge");
    assert_eq!(kind("hivehub_plugin_starts"), "counter");
    assert_eq!(kind("hivehub_plugin_restarts"), "counter");
    assert_eq!(kind("hivehub_plugin_threshold_breaches"), "counter");
    assert_eq!(kind("hivehub_plugin_backoff_delay_seconds"), "gauge");
    assert!(find(&s, "hivehub_plugin_rss_bytes", &sleeper).value > 0.0);
    assert!(find(&s, "hivehub_plugin_cpu_percent", &sleeper).value >= 0.0);
    let state = |s: &[Sample], plugin: &str, st: &str| {
        find(
            s,
            "hivehub_plugin_state",
            &[("plugin", plugin), ("state", st)],
        )
        .value
    };
    assert_eq!(state(&s, "sleeper", "running"), 1.0);
    assert_eq!(state(&s, "sleeper", "stopped"), 0.0);
    assert_eq!(state(&s, "sleeper", "backoff"), 0.0);
    assert_eq!(state(&s, "hubcore", "running"), 1.0);
    assert_eq!(state(&s, "napper", "stopped"), 1.0);
    let states: f64 = s
        .iter()
        .filter(|x| x.name == "hivehub_plugin_state" && x.labels["plugin"] == "sleeper")
        .map(|x| x.value)
        .sum();
    assert_eq!(states, 1.0, "exactly one current state");
    assert_eq!(find(&s, "hivehub_plugin_starts_total", &sleeper).value, 1.0);
    let restarts = |s: &[Sample], reason: &str| {
        find(
            s,
            "hivehub_plugin_restarts_total",
            &[("plugin", "sleeper"), ("reason", reason)],
        )
        .value
    };
    assert_eq!(restarts(&s, "crash"), 0.0);
    assert_eq!(restarts(&s, "threshold"), 0.0);
    assert_eq!(
        find(&s, "hivehub_plugin_threshold_breaches_total", &sleeper).value,
        0.0
    );
    assert_eq!(
        find(&s, "hivehub_plugin_backoff_delay_seconds", &sleeper).value,
        0.0
    );
    assert!(find(&s, "hivehub_plugin_uptime_seconds", &sleeper).value >= 0.0);
    assert!(
        !s.iter()
            .any(|x| x.name == "hivehub_plugin_cpu_percent" && x.labels["plugin"] == "napper"),
        "a stopped plugin has no CPU sample, not a fake zero"
    );
    let launcher = [("launcher", "launcher")];
    assert_eq!(
        find(&s, "hivehub_launcher_bus_connected", &launcher).value,
        1.0
    );
    assert!(find(&s, "hivehub_launcher_rss_bytes", &launcher).value > 0.0);
    assert!(find(&s, "hivehub_launcher_cpu_percent", &launcher).value >= 0.0);
    // The launcher listens on the configured port and nothing else.
    let lpid = h.pid().expect("launcher pid");
    assert_eq!(listening_ports(lpid), BTreeSet::from([port]));

    // A crash: the plugin is restarted and the counters follow.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the sleeper");
    let restarted = wait_until(Duration::from_secs(20), || {
        text = scrape(port, &prom).body;
        raw_value(
            &text,
            "hivehub_plugin_restarts_total",
            "sleeper",
            "reason=\"crash\"",
        ) == Some(1.0)
            && raw_value(
                &text,
                "hivehub_plugin_state",
                "sleeper",
                "state=\"running\"",
            ) == Some(1.0)
    });
    assert!(restarted, "no restart counted:\n{text}\n{}", h.out());
    let s = parse_metrics(&text);
    assert_eq!(restarts(&s, "crash"), 1.0);
    assert_eq!(restarts(&s, "threshold"), 0.0);
    assert_eq!(find(&s, "hivehub_plugin_starts_total", &sleeper).value, 2.0);
    let st = get_as(port, "/api/status", &login(port, "prom", &prom)).json();
    let now = plugin(&st, "sleeper");
    assert!(now.pid.is_some_and(|p| p != pid), "{now:?}");
}

#[test]
fn nothing_listens_without_http_listen() {
    let (h, port) = launcher(false, "autostart: [sleeper]\n", "");
    h.wait_running("sleeper");
    let ready = wait_until(Duration::from_secs(30), || {
        h.out().contains("launcher ready")
    });
    assert!(ready, "launcher not ready:\n{}", h.out());
    let e = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    let lpid = h.pid().expect("launcher pid");
    assert_eq!(listening_ports(lpid), BTreeSet::new());
    assert!(!h.out().contains("status page and metrics at"));
}

fn plugin(status: &Value, name: &str) -> PluginInfo {
    let list = status["plugins"].as_array().expect("plugins");
    let p = list
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"));
    serde_json::from_value(p.clone()).expect("a PluginInfo")
}

fn wait_token(h: &LauncherHub, id: &str) -> String {
    let f = h.home.token_file(id);
    assert!(
        wait_until(Duration::from_secs(30), || f.exists()),
        "no {}",
        f.display()
    );
    std::fs::read_to_string(&f)
        .expect("read the token")
        .trim()
        .to_string()
}

#[test]
fn status_api_logins_follow_the_acl() {
    let (h, port) = launcher(true, "autostart: [sleeper]\n", "");
    let pid = h.wait_running("sleeper");
    let admin_token = wait_token(&h, "admin");

    let page = get(port, "/").expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(page.header("content-security-policy").is_some());
    assert!(page.body.contains("<table"), "{}", page.body);
    // Self-contained: nothing loaded from elsewhere.
    assert!(!page.body.contains(" src=") && !page.body.contains("https://"));
    assert!(!page.body.contains("rel=\"stylesheet\""));
    assert!(!page.body.contains(&admin_token));
    assert!(page.body.len() < 64 * 1024, "the page stays small");

    assert_eq!(get(port, "/api/status").expect("GET").status, 401);
    assert_eq!(get(port, "/nope").expect("GET").status, 404);

    // Without a login, or without the CSRF header, nothing is done.
    let json_t = "application/json";
    assert_eq!(
        post(port, "/api/stop/sleeper", None, json_t, "").status,
        401
    );
    let login = json!({"clientID": "admin", "token": admin_token}).to_string();
    let r = http(port, "POST", "/login", &[("Content-Type", json_t)], &login).expect("POST");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("set-cookie").is_none());
    let bad = json!({"clientID": "admin", "token": "not-a-token"}).to_string();
    let r = post(port, "/login", None, json_t, &bad);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post(port, "/login", None, json_t, "{\"clientID\": \"admin\"}");
    assert!((400..500).contains(&r.status), "{}", r.status);

    // A viewer logs in and sees the status, but may not stop anything: the core's ACL says so.
    let vera_token = add_client(&h, "vera", "viewer");
    let vera_login = json!({"clientID": "vera", "token": vera_token}).to_string();
    let r = post(port, "/login", None, json_t, &vera_login);
    assert_eq!(r.status, 200, "{}", r.body);
    let vera = r.cookie();
    let st = get_as(port, "/api/status", &vera).json();
    assert_eq!(st["user"], "vera");
    assert_eq!(st["launcherID"], "launcher");
    assert_eq!(plugin(&st, "sleeper").pid, Some(pid));
    assert!(st["history"]["sleeper"].is_array());
    let r = post(port, "/api/stop/sleeper", Some(&vera), json_t, "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("not permitted"), "{}", r.body);
    assert!(hivehub_launcher::process::pid_alive(pid));

    // The admin, with a form body, may.
    let form = format!(
        "clientID=admin&token={}",
        admin_token
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let r = post(
        port,
        "/login",
        None,
        "application/x-www-form-urlencoded",
        &form,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(&admin_token));
    let adm = r.cookie();
    let r = post(port, "/api/stop/sleeper", Some(&adm), json_t, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "disabled");
    assert!(!hivehub_launcher::process::pid_alive(pid));
    let r = post(port, "/api/start/nosuch", Some(&adm), json_t, "");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(port, "/api/start/sleeper", Some(&adm), json_t, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "running");

    // Logging out ends the session.
    let r = post(port, "/logout", Some(&adm), json_t, "");
    assert_eq!(r.status, 204);
    assert!(r
        .header("set-cookie")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(
        post(port, "/api/stop/sleeper", Some(&adm), json_t, "").status,
        401
    );
}

#[test]
fn events_stream_snapshots_and_changes() {
    let (h, port) = launcher(true, "autostart: [talker]\n", "");
    h.wait_running("talker");
    // The plugin prints a secret, which its exit event's log lines carry on the bus.
    let log = h.home.logs().join("talker.log");
    let printed = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("hunter2"))
    });
    assert!(printed, "talker printed nothing:\n{}", h.out());
    let admin = login(port, "admin", &wait_token(&h, "admin"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {admin}\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("request");
    let mut seen = String::new();
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    let mut killed = false;
    while Instant::now() < end {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if seen.contains("event: snapshot") && !killed {
            // A change of state arrives as it happens.
            let pid = h.wait_running("talker");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed = true;
        }
        if killed && seen.contains("event: status") && seen.contains("\"event\":\"exited\"") {
            break;
        }
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: snapshot"), "{seen}");
    assert!(seen.contains("event: status"), "{seen}");
    assert!(seen.contains("\"event\":\"exited\""), "{seen}");
    // The page gets no log lines.
    assert!(
        !seen.contains("hunter2") && !seen.contains("logTail"),
        "{seen}"
    );

    // Logging out ends the stream.
    let r = post(port, "/logout", Some(&admin), "application/json", "");
    assert_eq!(r.status, 204);
    let mut ended = false;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && !ended {
        match s.read(&mut buf) {
            Ok(0) => ended = true,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => ended = true,
        }
    }
    assert!(ended, "the stream went on after the logout");
    assert!(
        seen.ends_with("0\r\n\r\n"),
        "the stream did not end cleanly"
    );
    assert_eq!(get_as(port, "/events", &admin).status, 401);
}

#[test]
fn data_needs_a_login() {
    let (h, port) = launcher(true, "autostart: [talker]\n", "");
    h.wait_running("talker");
    let admin_token = wait_token(&h, "admin");

    // Nothing but the health check and the (empty) page without a login.
    for path in ["/api/status", "/events", "/metrics"] {
        let r = get(port, path).expect("GET");
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(!error_of(&r).is_empty());
        assert!(!r.body.contains("talker"), "{path}: {}", r.body);
    }
    assert_eq!(
        get(port, "/metrics")
            .expect("GET")
            .header("www-authenticate"),
        Some("Bearer realm=\"hivehub\"")
    );
    let r = get(port, "/healthz").expect("GET /healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
    let page = get(port, "/").expect("GET /");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("talker") && !page.body.contains("hubcore"));

    // /metrics with a viewer's hub token as the bearer, alone or with its client ID.
    let prom = add_client(&h, "prom", "viewer");
    for cred in [prom.clone(), format!("prom:{prom}")] {
        let r = scrape(port, &cred);
        assert_eq!(r.status, 200, "{}", r.body);
        let s = parse_metrics(&r.body);
        assert!(
            s.iter()
                .any(|x| x.name == "hivehub_plugin_state" && x.labels["plugin"] == "talker"),
            "{}",
            r.body
        );
    }
    // ... or with a session.
    let adm = login(port, "admin", &admin_token);
    let r = get_as(port, "/metrics", &adm);
    assert_eq!(r.status, 200, "{}", r.body);
    parse_metrics(&r.body);

    // A token of the wrong ID, a service's or the launcher's own token, and garbage are refused.
    let r = scrape(port, &format!("admin:{prom}"));
    assert_eq!(r.status, 401, "{}", r.body);
    let svc = add_client(&h, "svc", "service");
    let r = scrape(port, &svc);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains("hivehub_plugin"), "{}", r.body);
    let r = scrape(port, &wait_token(&h, "launcher"));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = scrape(port, "garbage");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("www-authenticate").is_some());
    // ... and at the page's login too.
    let r = post(
        port,
        "/login",
        None,
        "application/json",
        &json!({"clientID": "svc", "token": svc}).to_string(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("set-cookie").is_none());
}

#[test]
fn a_foreign_host_is_misdirected() {
    let (h, port) = launcher(true, "", "");
    let adm = login(port, "admin", &wait_token(&h, "admin"));
    let routes = [
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/status"),
        ("GET", "/events"),
        ("GET", "/nope"),
        ("POST", "/login"),
        ("POST", "/logout"),
        ("POST", "/api/stop/sleeper"),
        ("POST", "/api/start/sleeper"),
    ];
    let headers = [
        ("Cookie", adm.as_str()),
        ("X-Hivehub", "1"),
        ("Content-Type", "application/json"),
    ];
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "127.0.0.1".to_string(),
        format!("localhost.evil.example:{port}"),
    ] {
        for (method, path) in routes {
            let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let r = exchange(s, &host, method, path, &headers, "").expect("request");
            assert_eq!(
                r.status, 421,
                "{method} {path} with Host {host}: {}",
                r.body
            );
            assert!(!r.body.contains("sleeper"), "{}", r.body);
        }
    }
    // An absolute URI naming another host is refused too.
    let r = http(port, "GET", "http://evil.example/healthz", &[], "").expect("GET");
    assert_eq!(r.status, 421, "{}", r.body);
    // The names of this listener are served.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let r = exchange(s, &host, "GET", "/api/status", &headers, "").expect("GET");
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    // The session still works: nothing above was a login or a logout.
    assert_eq!(get_as(port, "/api/status", &adm).json()["user"], "admin");
}

#[test]
fn the_admin_survives_a_flood_of_viewer_logins() {
    let (h, port) = launcher(true, "", "");
    let adm = login(port, "admin", &wait_token(&h, "admin"));
    let viewers = [
        ("vera", add_client(&h, "vera", "viewer")),
        ("vic", add_client(&h, "vic", "viewer")),
    ];
    let mut cookies: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for i in 0..40 {
        let (id, token) = &viewers[i % viewers.len()];
        cookies.entry(id).or_default().push(login(port, id, token));
    }
    let st = get_as(port, "/api/status", &adm);
    assert_eq!(st.status, 200, "the admin was logged out: {}", st.body);
    assert_eq!(st.json()["user"], "admin");
    // Each viewer keeps its newest sessions (4), its older ones ended.
    for (id, list) in &cookies {
        let live: Vec<bool> = list
            .iter()
            .map(|c| get_as(port, "/api/status", c).status == 200)
            .collect();
        let n = list.len();
        assert_eq!(live[n - 4..], [true; 4], "{id}: {live:?}");
        assert!(live[..n - 4].iter().all(|l| !l), "{id}: {live:?}");
    }
    // The admin may still act.
    let r = post(
        port,
        "/api/start/sleeper",
        Some(&adm),
        "application/json",
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The `Retry-After` of a 429, in seconds.
fn retry_after(r: &Resp) -> u64 {
    assert_eq!(r.status, 429, "{}", r.body);
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers));
    assert!((1..=300).contains(&secs), "Retry-After: {secs}");
    assert!(error_of(r).contains("too many"), "{}", r.body);
    secs
}

#[test]
fn failed_logins_are_throttled() {
    let (h, port) = launcher(true, "", "");
    let vera = add_client(&h, "vera", "viewer");
    let admin = wait_token(&h, "admin");
    // A token the hub refuses: vera's, with its signature changed.
    let mut forged = vera.clone().into_bytes();
    let i = forged.len() - 20;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    let try_login = |from: [u8; 4], id: &str, token: &str| {
        let body = json!({"clientID": id, "token": token}).to_string();
        let h = [("X-Hivehub", "1"), ("Content-Type", "application/json")];
        http_from(Ipv4Addr::from(from), port, "POST", "/login", &h, &body)
    };

    // By address: 5 failures (of different client IDs) from 127.0.0.2, then 429 there, for any
    // login, even a right one and a bearer token, without asking the hub.
    for id in ["vera", "nobody1", "nobody2", "nobody3", "nobody4"] {
        let token = if id == "vera" {
            forged.as_str()
        } else {
            "wrong"
        };
        let r = try_login([127, 0, 0, 2], id, token);
        assert_eq!(r.status, 401, "{id}: {}", r.body);
    }
    let first = retry_after(&try_login([127, 0, 0, 2], "vera", &vera));
    let auth = format!("Bearer {vera}");
    let r = http_from(
        Ipv4Addr::new(127, 0, 0, 2),
        port,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        "",
    );
    retry_after(&r);
    // Another address is not affected, and successes do not count.
    for _ in 0..8 {
        let r = try_login([127, 0, 0, 3], "vera", &vera);
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // By client ID: 5 failures of admin from 5 addresses, then 429 for admin from a sixth,
    // even with the right token; another client ID from there is fine.
    for a in 10..15 {
        let r = try_login([127, 0, 0, a], "admin", "wrong");
        assert_eq!(r.status, 401, "{}", r.body);
    }
    retry_after(&try_login([127, 0, 0, 15], "admin", &admin));
    let r = try_login([127, 0, 0, 15], "vera", &vera);
    assert_eq!(r.status, 200, "{}", r.body);

    // Once the lock is over, the next failure locks again, for longer.
    let until = Instant::now() + Duration::from_secs(first);
    let over = wait_until(Duration::from_secs(first + 30), || {
        Instant::now() >= until && try_login([127, 0, 0, 2], "nobody5", "wrong").status == 401
    });
    assert!(over, "the lock of 127.0.0.2 did not end");
    let second = retry_after(&try_login([127, 0, 0, 2], "vera", &vera));
    assert!(
        second > first,
        "the lock did not grow: {first} s, then {second} s"
    );
}

/// `target/test-artifacts/`, from the test executable's path (`target/<profile>/deps/<test>`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

#[test]
fn status_page_in_headless_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's Chromium with `apt-get install chromium` \
         (or set CHROMIUM to a Chromium binary)"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix crates/launcher/tests/browser` \
         (needs node and npm: `apt-get install nodejs npm`)"
    );
    let (h, port) = launcher(
        true,
        "autostart: [sleeper, napper]\n",
        "  napper:\n    restart: always\n",
    );
    h.wait_running("sleeper");
    h.wait_running("napper");
    let token = wait_token(&h, "admin");
    let shot = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(browser_dir.join("status_page.mjs"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(&token)
        .arg("sleeper")
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser test: apt-get install nodejs npm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nlauncher:\n{}",
        h.out()
    );
    assert!(stdout.contains("status page ok"), "{stdout}\n{stderr}");
    assert!(!stdout.contains(&token));
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());
    // The stop went through the launcher as the admin.
    assert!(h
        .pid_of("sleeper")
        .is_none_or(|p| !hivehub_launcher::process::pid_alive(p)));
}

/// The launchers of an `/api/status` answer, by ID.
fn launchers_of(st: &Value) -> BTreeMap<String, Value> {
    st["launchers"]
        .as_array()
        .unwrap_or_else(|| panic!("no launchers in {st}"))
        .iter()
        .map(|l| {
            (
                l["launcherID"].as_str().expect("launcherID").to_string(),
                l.clone(),
            )
        })
        .collect()
}

/// `launcher`'s plugin `name` in an `/api/status` answer's `launchers`.
fn plugin_on(st: &Value, launcher: &str, name: &str) -> Option<PluginInfo> {
    let all = launchers_of(st);
    let p = all.get(launcher)?["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?
        .clone();
    Some(serde_json::from_value(p).expect("a PluginInfo"))
}

/// Drives the page in headless Chromium: logs in, waits for a row of `launcher`'s `plugin`
/// under that launcher's group, and prints what it saw as JSON. The script lives in a
/// temporary folder and loads playwright-core from tests/browser by path.
const MULTI_PAGE: &str = r##"
import { pathToFileURL } from "node:url";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const [pw, url, token, launcher, plugin, shot] = process.argv.slice(2);
const { chromium } = await import(pathToFileURL(pw).href);
const profile = mkdtempSync(join(tmpdir(), "hivehub-chromium-"));
const T = 15000;
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: T });
  await page.locator("#login").waitFor({ state: "visible", timeout: T });
  await page.fill('#login input[name="clientID"]', "admin");
  await page.fill('#login input[name="token"]', token);
  await page.click('#login button[type="submit"]');
  const sel = `tr[data-launcher="${launcher}"][data-name="${plugin}"]`;
  await page.waitForFunction((s) => document.querySelector(s)?.dataset.state === "running", sel, { timeout: T });
  // Live: the stream's snapshots keep the other launcher's rows.
  await page.waitForFunction(() => document.querySelector("#livetext")?.textContent === "live", null, { timeout: T });
  await page.waitForTimeout(1500);
  const seen = await page.evaluate(() => {
    const rows = [];
    let group = null;
    for (const tr of document.querySelectorAll("#plugins tbody tr")) {
      if (tr.classList.contains("group")) {
        group = tr.dataset.launcher;
        rows.push({ group, online: tr.dataset.online, text: tr.textContent });
      } else {
        rows.push({ under: group, launcher: tr.dataset.launcher, name: tr.dataset.name, state: tr.dataset.state });
      }
    }
    return { rows, count: document.querySelector("#nlaunchers")?.textContent };
  });
  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) throw new Error(errors.join("\n"));
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(`multi-launcher page failed: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
"##;

#[test]
fn status_page_shows_every_launcher_of_the_hub() {
    // Two launchers on one hub, as on two hosts: alpha serves the page, beta runs plugins of
    // its own; both can run the movable `mover`.
    let core = Core::start(&workspace_bin("hubcore"));
    let port = free_port();
    let cluster = "cluster:\n  leaseTtl: 3s\n  statusInterval: 300ms\n";
    let movable = "  mover:\n    placement: movable\n";
    let mut alpha = Member::new(
        &core,
        "alpha",
        &format!(
            "httpListen: 127.0.0.1:{port}\nsampleInterval: 200ms\n{cluster}autostart: [sleeper]\n"
        ),
        movable,
    );
    let mut beta = Member::new(
        &core,
        "beta",
        &format!("sampleInterval: 200ms\n{cluster}autostart: [napper]\n"),
        movable,
    );
    plugin_script(&alpha.home, "sleeper", "exec sleep 1000");
    plugin_script(&alpha.home, "mover", "while :; do sleep 1; done");
    // A shell that stays, so its processes name the plugin (`Member::instances`).
    for name in ["napper", "idler", "mover"] {
        plugin_script(&beta.home, name, "while :; do sleep 1; done");
    }
    alpha.start();
    beta.start();
    let outs = |a: &Member, b: &Member| format!("alpha:\n{}\nbeta:\n{}", a.out(), b.out());
    let up = wait_until(Duration::from_secs(30), || {
        get(port, "/healthz").is_ok_and(|r| r.status == 200)
    });
    assert!(up, "no HTTP listener; {}", outs(&alpha, &beta));
    let token = std::fs::read_to_string(core.home.token_file("admin"))
        .expect("the admin's token")
        .trim()
        .to_string();
    let adm = login(port, "admin", &token);

    // The API: this launcher first, then beta with its plugins, each naming its launcher; the
    // movable plugin under the one launcher that runs it.
    let mut st = Value::Null;
    let all_there = wait_until(Duration::from_secs(30), || {
        st = get_as(port, "/api/status", &adm).json();
        plugin_on(&st, "beta", "napper").is_some_and(|p| p.running)
            && plugin_on(&st, "alpha", "sleeper").is_some_and(|p| p.running)
            && (plugin_on(&st, "alpha", "mover").is_some_and(|p| p.running)
                || plugin_on(&st, "beta", "mover").is_some_and(|p| p.running))
    });
    assert!(all_there, "{st:#}\n{}", outs(&alpha, &beta));
    let ids: Vec<&str> = st["launchers"]
        .as_array()
        .expect("launchers")
        .iter()
        .map(|l| l["launcherID"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["alpha", "beta"], "{st:#}");
    assert_eq!(st["launcherID"], "alpha");
    let napper = plugin_on(&st, "beta", "napper").expect("beta's napper");
    assert_eq!(napper.launcher_id, "beta");
    assert_eq!(napper.pid, beta.instances("napper").first().copied());
    assert_eq!(
        plugin_on(&st, "beta", "idler")
            .expect("idler")
            .state
            .as_str(),
        "stopped"
    );
    assert!(plugin_on(&st, "alpha", "napper").is_none(), "{st:#}");
    for (id, l) in launchers_of(&st) {
        assert_eq!(l["online"], true, "{id}: {l}");
        for p in l["plugins"].as_array().expect("plugins") {
            assert_eq!(p["launcherID"], id.as_str(), "{p}");
        }
    }
    let movers: Vec<String> = launchers_of(&st)
        .iter()
        .filter(|(_, l)| {
            l["plugins"]
                .as_array()
                .is_some_and(|v| v.iter().any(|p| p["name"] == "mover"))
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(movers.len(), 1, "mover listed once, where it runs: {st:#}");
    // The plugins of this launcher stay where they were.
    assert_eq!(plugin(&st, "sleeper").launcher_id, "alpha");

    // Start and stop a plugin of the other launcher from this page, as the logged-in user.
    let json_t = "application/json";
    let r = post(
        port,
        "/api/start/idler?launcher=beta",
        Some(&adm),
        json_t,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["launcherID"], "beta");
    assert_eq!(r.json()["state"], "running");
    assert_eq!(beta.instances("idler").len(), 1);
    let seen = wait_until(Duration::from_secs(10), || {
        plugin_on(&get_as(port, "/api/status", &adm).json(), "beta", "idler")
            .is_some_and(|p| p.running)
    });
    assert!(seen, "beta's status did not follow");
    let vera = add_viewer(&core, "vera");
    let vera = login(port, "vera", &vera);
    let r = post(
        port,
        "/api/stop/idler?launcher=beta",
        Some(&vera),
        json_t,
        "",
    );
    assert_eq!(r.status, 403, "a viewer may not: {}", r.body);
    let st = get_as(port, "/api/status", &vera).json();
    assert!(
        plugin_on(&st, "beta", "napper").is_some(),
        "a viewer sees beta: {st:#}"
    );
    let r = post(
        port,
        "/api/stop/idler?launcher=beta",
        Some(&adm),
        json_t,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "disabled");
    assert!(wait_until(Duration::from_secs(10), || beta
        .instances("idler")
        .is_empty()));
    let r = post(
        port,
        "/api/stop/idler?launcher=no%2Fsuch",
        Some(&adm),
        json_t,
        "",
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // The event stream's snapshots carry every launcher too.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {adm}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !seen.contains("\"launcherID\":\"beta\"") {
        if let Ok(n) = s.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(seen.contains("event: snapshot"), "{seen}");
    assert!(seen.contains("\"launcherID\":\"beta\""), "{seen}");
    drop(s);

    // The page shows beta's plugins under beta.
    if let Some(rows) = page_rows(port, &token, "beta", "napper") {
        let groups: Vec<&str> = rows["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["group"].as_str())
            .collect();
        assert_eq!(groups, ["alpha", "beta"], "{rows:#}");
        let napper = rows["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == "napper")
            .unwrap_or_else(|| panic!("no napper row: {rows:#}"));
        assert_eq!(napper["under"], "beta", "{rows:#}");
        assert_eq!(napper["launcher"], "beta");
        assert!(rows["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["name"] == "sleeper" && r["under"] == "alpha"));
        assert_eq!(rows["count"], "2 launchers", "{rows:#}");
    }

    // beta dies: its Last Will shows it offline, without plugins.
    beta.kill();
    let mut st = Value::Null;
    let offline = wait_until(Duration::from_secs(20), || {
        st = get_as(port, "/api/status", &adm).json();
        launchers_of(&st)
            .get("beta")
            .is_some_and(|l| l["online"] == false)
    });
    assert!(offline, "beta not offline: {st:#}");
    let b = &launchers_of(&st)["beta"];
    assert!(b["plugins"].as_array().is_some_and(|v| v.is_empty()), "{b}");
    assert!(b["reason"].is_string(), "{b}");
    alpha.terminate(Duration::from_secs(20));
}

/// Adds the viewer `id` in the core's home; its token.
fn add_viewer(core: &Core, id: &str) -> String {
    let out = Command::new(workspace_bin("hubcli"))
        .arg("--home")
        .arg(core.home.root())
        .args(["auth", "add", id, "--role", "viewer"])
        .output()
        .expect("hubcli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(core.home.token_file(id))
        .expect("token")
        .trim()
        .to_string()
}

/// What the page in headless Chromium shows once `launcher`'s `plugin` runs there (see
/// [`MULTI_PAGE`]); None, with a note, where Chromium or playwright-core is missing (the
/// status_page_in_headless_chromium test fails for that).
fn page_rows(port: u16, token: &str, launcher: &str, plugin: &str) -> Option<Value> {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let pw = browser_dir.join("node_modules/playwright-core/index.mjs");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !pw.exists() || !std::path::Path::new(&chromium).exists() {
        eprintln!("no Chromium or playwright-core: the page itself is not checked here");
        return None;
    }
    let dir = hivehub_testkit::tempdir();
    let script = dir.path().join("multi_page.mjs");
    std::fs::write(&script, MULTI_PAGE).expect("write the script");
    let shot = artifacts_dir().join("status-page-launchers.png");
    let out = Command::new("node")
        .arg(&script)
        .arg(&pw)
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(token)
        .arg(launcher)
        .arg(plugin)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser test: apt-get install nodejs npm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("screenshot: {}", shot.display());
    Some(serde_json::from_str(stdout.trim()).expect("the page's rows as JSON"))
}

/// Item 26: docs/OPERATIONS.md lists every metric a running launcher serves, each in its own
/// table row with every label it has (and every value of `state` and `reason`), and names no
/// metric that does not exist: the doc cannot drift from the code.
#[test]
fn every_metric_name_and_label_is_in_operations_md() {
    let (h, port) = launcher(
        true,
        "autostart: [sleeper]\n",
        "  sleeper:\n    restart: always\n",
    );
    h.wait_running("sleeper");
    let adm = login(port, "admin", &wait_token(&h, "admin"));
    let mut text = String::new();
    let sampled = wait_until(Duration::from_secs(20), || {
        text = get_as(port, "/metrics", &adm).body;
        raw_value(&text, "hivehub_plugin_cpu_percent", "sleeper", "").is_some()
            && text.contains("hivehub_launcher_rss_bytes{")
            && text.contains("hivehub_plugin_uptime_seconds{")
    });
    assert!(sampled, "no samples in:\n{text}");

    // What the launcher serves: the families (`# TYPE`), named as their samples are (a
    // counter's end in `_total`), with the labels and label values of their samples.
    let mut served: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            served.entry(name).or_default();
        }
    }
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = l
            .split_once('{')
            .unwrap_or_else(|| panic!("unlabelled: {l}"));
        let labels = served
            .get_mut(name)
            .unwrap_or_else(|| panic!("{name} has no # TYPE line in:\n{text}"));
        let inner = rest.rsplit_once('}').expect("closing brace").0;
        for pair in inner.split(',') {
            let (k, v) = pair.split_once('=').expect("label=value");
            labels
                .entry(k.to_string())
                .or_default()
                .insert(v.trim_matches('"').to_string());
        }
    }
    assert!(served.len() >= 11, "{served:#?}");
    assert!(
        served.values().all(|l| !l.is_empty()),
        "a metric without samples: {served:#?}"
    );

    let doc_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/OPERATIONS.md");
    for (name, labels) in &served {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/OPERATIONS.md has no table row for {name}"));
        for (label, values) in labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "{name}: label {label} missing in: {row}"
            );
            if ["state", "reason"].contains(&label.as_str()) {
                for v in values {
                    assert!(
                        row.contains(&format!("`{v}`")),
                        "{name}: {label}=\"{v}\" missing in: {row}"
                    );
                }
            }
        }
    }
    // ... and no metric the launcher does not serve.
    let named: BTreeSet<&str> = doc
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hivehub_plugin_") || w.starts_with("hivehub_launcher_"))
        .collect();
    for n in named {
        assert!(
            served.contains_key(n),
            "docs/OPERATIONS.md names {n}, which /metrics does not serve"
        );
    }
}
