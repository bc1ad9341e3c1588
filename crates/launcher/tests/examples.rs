//! The example plugins of `examples/python` and `examples/node` under the real launcher, and
//! the wire contract they are written against, driven from Python (paho-mqtt) and Node
//! (MQTT.js) clients in `tests/lang/`. Each client prints one JSON line; the judging is here.
//!
//! Needs what `scripts/install-test-deps.sh` installs: /usr/bin/python3 with paho-mqtt, PyJWT
//! and cryptography, node with `examples/node/node_modules`, mosquitto-clients and
//! systemd-notify.

use hivehub_testkit::{args, wait_until, workspace_bin, LauncherHub, Sub};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The search path of the plugins and of the client scripts: the system's `python3` (with the
/// Debian packages), not a pyenv shim or a virtualenv from the developer's shell. The plugins
/// get it from their `env:` in launcher.yaml (which wins over the `PATH` the launcher passes
/// on), so the test's own environment stays as it is.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn lang(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lang")
        .join(file)
}

fn node_dir() -> PathBuf {
    let d = repo().join("examples/node");
    assert!(
        d.join("node_modules/mqtt").is_dir(),
        "{} has no node_modules/mqtt; run scripts/install-test-deps.sh",
        d.display()
    );
    d
}

/// What a finished script left.
struct Ran {
    status: ExitStatus,
    out: String,
    err: String,
}

impl Ran {
    /// Its one JSON line (the last line of stdout).
    fn json(&self) -> Value {
        assert!(
            self.status.success(),
            "script failed ({}):\n{}\n{}",
            self.status,
            self.out,
            self.err
        );
        let line = self.out.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "not one JSON line ({e}):\n{}\nstderr:\n{}",
                self.out, self.err
            )
        })
    }
}

/// A process killed (and reaped) when dropped, also when the test panics.
struct Guard(Option<Child>);

impl Guard {
    fn kill(&mut self) -> Option<ExitStatus> {
        let mut c = self.0.take()?;
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` with the system search path, its output in files, killing it after `timeout`.
fn run(mut cmd: Command, timeout: Duration) -> Ran {
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let child = cmd
        .env("PATH", SYSTEM_PATH)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).expect("out"))
        .stderr(std::fs::File::create(&e).expect("err"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut g = Guard(Some(child));
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = g.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            g.0 = None;
            break s;
        }
        if Instant::now() > end {
            g.kill();
            panic!(
                "{cmd:?} did not finish in {timeout:?}:\n{}\n{}",
                std::fs::read_to_string(&o).unwrap_or_default(),
                std::fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        status,
        out: std::fs::read_to_string(&o).unwrap_or_default(),
        err: std::fs::read_to_string(&e).unwrap_or_default(),
    }
}

/// `py_client.py` logged in as `id` with its token file, running `rest`.
fn py_client(h: &LauncherHub, id: &str, rest: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(lang("py_client.py"))
        .arg("--url")
        .arg(h.url())
        .arg("--ca")
        .arg(h.home.ca_cert())
        .arg("--id")
        .arg(id)
        .arg("--token-file")
        .arg(h.home.token_file(id))
        .args(rest);
    run(cmd, Duration::from_secs(60)).json()
}

/// `node_client.js` logged in as `id`, calling `service`'s greet capability.
fn node_client(h: &LauncherHub, id: &str, service: &str) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(lang("node_client.js"))
        .arg(h.url())
        .arg(h.home.ca_cert())
        .arg(id)
        .arg(h.home.token_file(id))
        .arg(service)
        .env("NODE_PATH", node_dir().join("node_modules"));
    run(cmd, Duration::from_secs(60)).json()
}

fn hubcli_ok(h: &LauncherHub, a: &[&str]) -> String {
    let o = h.hubcli(a);
    assert!(
        o.status.success(),
        "hubcli {a:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `hubcli launcher ls --json`, or `None` while the launcher does not answer yet.
fn ls(h: &LauncherHub) -> Option<Vec<Value>> {
    let o = h.hubcli(&["launcher", "ls", "--json"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).expect("ls --json is a JSON array"))
}

fn plugin<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|p| p["name"] == name)
}

/// A hub with `top` added to launcher.yaml and `plugins` (entries indented by 2). Not started.
fn hub(top: &str, plugins: &str) -> LauncherHub {
    LauncherHub::new(&workspace_bin("launcher"), top, plugins)
}

/// Starts the launcher and waits until it answers.
fn start(h: &mut LauncherHub) {
    h.start();
    let ok = wait_until(Duration::from_secs(60), || ls(h).is_some());
    assert!(ok, "the launcher never answered ls:\n{}", h.out());
}

fn log_of(h: &LauncherHub, name: &str) -> String {
    std::fs::read_to_string(h.home.logs().join(format!("{name}.log"))).unwrap_or_default()
}

/// The `hello` payloads of `plugin` that `sub` received, in order.
fn hellos(sub: &Sub, plugin: &str) -> Vec<Value> {
    let prefix = format!("event/{plugin}/status/hello/{plugin} ");
    sub.output()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .collect()
}

/// How many last wills (`status/lost`) of `plugin` that `sub` received.
fn wills(sub: &Sub, plugin: &str) -> usize {
    let prefix = format!("event/{plugin}/status/lost/{plugin} ");
    sub.output()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count()
}

/// Plugin name, the example it runs, and what its `launcher.yaml` entry adds.
fn examples() -> [(&'static str, PathBuf, String); 2] {
    let node = node_dir();
    [
        (
            "hello-py",
            repo().join("examples/python/hello_plugin.py"),
            String::new(),
        ),
        (
            "hello-node",
            node.join("hello-plugin.js"),
            // Its node_modules lie outside what a plugin may read by default.
            format!("    sandbox: {{read: [\"{}\"]}}\n", node.display()),
        ),
    ]
}

#[test]
fn example_plugins_run_under_the_launcher_serve_each_other_and_stop_cleanly() {
    let ex = examples();
    let names = ex.iter().map(|(n, _, _)| *n).collect::<Vec<_>>();
    let mut conf = String::new();
    for (name, _, extra) in &ex {
        conf += &format!(
            "  {name}:\n    waitReady: true\n    env: {{PATH: \"{SYSTEM_PATH}\"}}\n{extra}"
        );
    }
    let mut h = hub(&format!("autostart: [{}]\n", names.join(", ")), &conf);
    // The plugins are the examples themselves, as a user would install them.
    for (name, path, _) in &ex {
        std::os::unix::fs::symlink(path, h.home.plugins().join(name)).expect("symlink");
    }
    start(&mut h);

    // Both run and told the launcher they are ready (the launcher waits for it: waitReady).
    let mut list = Vec::new();
    let ready = wait_until(Duration::from_secs(30), || {
        list = ls(&h).unwrap_or_default();
        names.iter().all(|n| {
            plugin(&list, n).is_some_and(|p| {
                p["state"] == "running"
                    && p["status"].as_str().is_some_and(|s| s.ends_with("ready"))
            })
        })
    });
    assert!(
        ready,
        "not both running and ready: {list:#?}\nlauncher:\n{}\nlogs:\n{}\n{}",
        h.out(),
        log_of(&h, "hello-py"),
        log_of(&h, "hello-node")
    );
    for n in &names {
        let log = log_of(&h, n);
        assert!(log.contains("token refreshed, expires"), "{n}: {log}");
    }

    // Their events reach an outside subscriber, counting up.
    let mut sub_args = h.mosq_args("admin");
    sub_args.extend(args(&["-v"]));
    for n in &names {
        sub_args.extend(args(&["-t", &format!("event/{n}/status/+/{n}")]));
    }
    let sub = Sub::start(&sub_args);
    let got = wait_until(Duration::from_secs(15), || {
        names.iter().all(|n| hellos(&sub, n).len() >= 2)
    });
    assert!(got, "hello events missing:\n{}", sub.output());
    for n in &names {
        let counts: Vec<u64> = hellos(&sub, n)
            .iter()
            .map(|v| v["count"].as_u64().expect("count"))
            .collect();
        assert!(
            counts.windows(2).all(|w| w[1] == w[0] + 1),
            "{n}: {counts:?}"
        );
    }

    // A viewer calls each across languages: the plugins granted viewers their capability.
    hubcli_ok(&h, &["auth", "add", "tester", "--role", "viewer"]);
    hubcli_ok(&h, &["auth", "add", "outsider", "--role", "service"]);
    for (reply, name, who) in [
        (node_client(&h, "tester", "hello-py"), "node", "hello-py"),
        (
            py_client(&h, "tester", &["greet", "hello-node"]),
            "python",
            "hello-node",
        ),
    ] {
        assert_eq!(
            reply["hello"]["result"]["greeting"],
            format!("hello {name}"),
            "{who}: {reply}"
        );
        assert_eq!(
            reply["bad"]["error"]["code"], "badRequest",
            "{who}: {reply}"
        );
        assert_eq!(
            reply["unknown"]["error"]["code"], "unknownMethod",
            "{who}: {reply}"
        );
    }
    // ... but not everybody: a service was not granted it.
    for n in &names {
        let r = py_client(&h, "outsider", &["greet", n]);
        assert_eq!(r["hello"]["error"]["code"], "denied", "{n}: {r}");
    }

    // The core dies and the launcher brings it back on the same address: the plugins, not
    // restarted, log in again by themselves (with the token they refreshed), subscribe again
    // and go on publishing and serving.
    let pids: Vec<Option<u32>> = names.iter().map(|n| h.pid_of(n)).collect();
    let core = h.pid_of("hubcore").expect("the core's pid");
    drop(sub);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(core as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the core");
    let back = wait_until(Duration::from_secs(30), || {
        ls(&h).is_some_and(|l| {
            plugin(&l, "hubcore").is_some_and(|c| {
                c["state"] == "running" && c["pid"].as_u64().is_some_and(|p| p != u64::from(core))
            })
        })
    });
    assert!(back, "the core did not come back:\n{}", h.out());
    let sub = Sub::start(&sub_args);
    let got = wait_until(Duration::from_secs(30), || {
        names.iter().all(|n| hellos(&sub, n).len() >= 2)
    });
    assert!(
        got,
        "no hello events after the core came back:\n{}\nlogs:\n{}\n{}",
        sub.output(),
        log_of(&h, "hello-py"),
        log_of(&h, "hello-node")
    );
    let after: Vec<Option<u32>> = names.iter().map(|n| h.pid_of(n)).collect();
    assert_eq!(
        pids, after,
        "the plugins were restarted rather than reconnecting"
    );
    for n in &names {
        let again = wait_until(Duration::from_secs(5), || {
            let log = log_of(&h, n);
            let logins = log.lines().filter(|l| l.ends_with("] logged in")).count();
            log.contains("connection lost") && logins == 2
        });
        assert!(again, "{n} did not log in again:\n{}", log_of(&h, n));
    }
    let r = node_client(&h, "tester", "hello-py");
    assert_eq!(r["hello"]["result"]["greeting"], "hello node", "{r}");
    let r = py_client(&h, "tester", &["greet", "hello-node"]);
    assert_eq!(r["hello"]["result"]["greeting"], "hello python", "{r}");

    // A stop: SIGTERM once, a clean MQTT DISCONNECT (no last will), exit code 0.
    for n in &names {
        hubcli_ok(&h, &["launcher", "stop", n]);
        let st: Value = serde_json::from_str(&hubcli_ok(&h, &["launcher", "status", n, "--json"]))
            .expect("status --json");
        let exit = &st["info"]["lastExit"];
        assert_eq!(exit["code"], 0, "{n}: {st:#}");
        assert!(exit.get("signal").is_none(), "{n}: {st:#}");
        assert_eq!(st["info"]["running"], false, "{n}: {st:#}");
        // The launcher marks the exit once the output is drained.
        let marker = format!("=== {n} exited: exit code 0");
        assert!(
            wait_until(Duration::from_secs(10), || log_of(&h, n).contains(&marker)),
            "{n}: {}",
            log_of(&h, n)
        );
        let log = log_of(&h, n);
        let sigterms = log.lines().filter(|l| l.ends_with("got SIGTERM")).count();
        assert_eq!(sigterms, 1, "{n}:\n{log}");
        for bad in ["Traceback", "Error", "failed", "refused"] {
            assert!(!log.contains(bad), "{n} logged {bad:?}:\n{log}");
        }
    }

    // Had a stop only closed the connection, the hub would have sent the plugin's last will
    // when it noticed, within milliseconds. The same example run by hand and killed shows that
    // the will is there: none came before the kill (hundreds of milliseconds after the stop:
    // the run by hand has started and logged in by then), one came after.
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, path, _) in &ex {
        let err = dir.path().join(format!("{name}.err"));
        let child = Command::new(path)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("HIVEHUB_HOME", h.home.root())
            .env("HIVEHUB_CLIENT_ID", name)
            .env("HIVEHUB_SERVER", h.url())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("run the example by hand");
        let mut by_hand = Guard(Some(child));
        let up = wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&err).is_ok_and(|e| e.contains("ready: serving greet"))
        });
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(up, "{name} by hand did not get ready:\n{text}");
        assert_eq!(
            wills(&sub, name),
            0,
            "{name} left a last will when stopped:\n{}",
            sub.output()
        );
        by_hand.kill();
        let lost = wait_until(Duration::from_secs(10), || wills(&sub, name) == 1);
        assert!(lost, "{name}: no last will after a kill:\n{}", sub.output());
    }
}

#[test]
fn a_paho_client_with_nagle_on_gets_replies_within_5_ms() {
    let mut h = hub("", "");
    start(&mut h);
    let r = py_client(&h, "admin", &["rtt", "200"]);
    eprintln!("paho launcher/view/list round trips, Nagle on: {r}");
    assert_eq!(r["nodelay"], 0, "TCP_NODELAY is set: {r}");
    assert_eq!(r["n"], 200, "{r}");
    assert_eq!(r["error_count"], 0, "{r}");
    let median = r["median_ms"].as_f64().expect("median_ms");
    assert!(median < 5.0, "median round trip {median:.2} ms: {r}");
}

#[test]
fn a_python_client_logs_in_with_a_key_assertion_and_refreshes_its_token() {
    let mut h = hub("", "");
    start(&mut h);
    let id = "keyholder";
    hubcli_ok(&h, &["auth", "add", id, "--role", "service"]);
    let token = h.home.token_file(id);
    assert!(token.exists(), "hubcli auth add wrote no token");
    // Its token is lost: only the key remains.
    std::fs::remove_file(&token).expect("remove token");
    std::fs::write(&token, "garbage").expect("garbage token");
    let key = h.home.key_file(id);
    let r = py_client(&h, id, &["assertion", &key.display().to_string()]);
    assert_eq!(r["header"]["alg"], "ES256", "{r:#}");
    // The controls: the garbage token and an assertion signed by another key are refused.
    assert!(r["with_token_file"]["refused"].is_string(), "{r:#}");
    assert!(r["with_foreign_key"]["refused"].is_string(), "{r:#}");
    assert_eq!(r["with_assertion"]["whoami"]["clientID"], id, "{r:#}");
    assert_eq!(r["with_assertion"]["whoami"]["role"], "service", "{r:#}");
    // A fresh token, its expiry in unix milliseconds, and it logs in.
    let now = r["now"].as_u64().expect("now");
    let fresh = &r["refresh"]["result"];
    let expires = fresh["expires"].as_u64().unwrap_or_else(|| panic!("{r:#}"));
    assert!(
        expires > now * 1000 && expires <= (now + 100 * 86_400) * 1000,
        "expires {expires} is not in unix milliseconds within 100 days of {now}: {r:#}"
    );
    let exp = r["token_claims"]["exp"].as_u64().expect("exp claim");
    assert_eq!(
        expires / 1000,
        exp,
        "expires and the token's exp differ: {r:#}"
    );
    assert_eq!(r["with_new_token"]["whoami"]["clientID"], id, "{r:#}");
}

#[test]
fn calling_a_capability_nobody_serves_is_answered_within_1_s() {
    let mut h = hub("", "");
    start(&mut h);
    let r = py_client(&h, "admin", &["unknown"]);
    assert_eq!(r["reply"]["error"]["code"], "unknownCapability", "{r}");
    let ms = r["elapsed_ms"].as_f64().expect("elapsed_ms");
    assert!(ms < 1000.0, "answered after {ms:.0} ms: {r}");
}
