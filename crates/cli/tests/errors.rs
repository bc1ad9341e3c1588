//! hubcli's failures: each is one clear line on stderr and its documented exit code, and none
//! takes longer than its --timeout.

mod common;

use common::{command, core, hubcli, hubcli_at};
use std::time::Duration;

#[test]
fn stopped_hub_is_unreachable_quickly() {
    let mut core = core();
    core.kill();
    let r = hubcli(&core, &["launcher", "ls", "--timeout", "2s"]);
    r.expect_code(3);
    assert_eq!(
        r.stderr.trim(),
        format!(
            "hubcli: error: cannot reach the hub at mqtts://127.0.0.1:{}: connection refused",
            core.port
        )
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    assert!(r.stdout.is_empty());
}

#[test]
fn no_launcher_is_named_at_once() {
    let core = core();
    // The core says at once that nobody serves the launcher's capabilities.
    let r = hubcli(&core, &["launcher", "ls", "--timeout", "10s"]);
    r.expect_code(5);
    assert_eq!(
        r.stderr.trim(),
        "hubcli: error: nobody serves launcher/view: the service is not connected or has no \
         capability 'view' (is the launcher 'launcher' running and connected to the hub?)"
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);

    let r = hubcli(
        &core,
        &[
            "launcher",
            "--launcher",
            "edge2",
            "status",
            "x",
            "--timeout",
            "500ms",
        ],
    );
    r.expect_code(5);
    assert!(
        r.stderr.contains("nobody serves edge2/view") && r.stderr.contains("'edge2'"),
        "{}",
        r.stderr
    );

    // Without --follow, events prints the known statuses (none here) and ends by itself.
    let r = hubcli(&core, &["launcher", "events"]);
    r.expect_code(0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("no plugin status from launcher 'launcher'"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

#[test]
fn usage_errors_exit_2() {
    let dir = hivehub_testkit::tempdir();
    for args in [
        &["launcher", "stop", "heartbeat", "--include-core"][..],
        &["--timeout", "soon", "launcher", "ls"],
        &["launcher", "frobnicate"],
        &["auth", "add", "p9", "--role", "root"],
    ] {
        let r = hubcli_at(dir.path(), Some("mqtts://127.0.0.1:1"), args);
        r.expect_code(2);
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
    }
    // No home at all: says how to give one.
    let o = command().args(["launcher", "ls"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.starts_with("hubcli: error: no hivehub home"), "{e}");
}

#[test]
fn help_lists_commands_and_exit_codes() {
    let o = command().arg("-h").output().unwrap();
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for s in [
        "launcher",
        "auth",
        "completions",
        "Exit codes:",
        "5  timeout",
    ] {
        assert!(h.contains(s), "{s} missing from:\n{h}");
    }
    let o = command()
        .args(["launcher", "events", "--help"])
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(h.contains("\"event\":\"status\""), "{h}");
}

#[test]
fn completions_need_no_hub() {
    for shell in ["bash", "zsh", "fish"] {
        let o = command().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("hubcli"), "{shell}: {s}");
    }
}

#[test]
fn missing_home_exits_2_as_documented() {
    let dir = hivehub_testkit::tempdir();
    let missing = dir.path().join("nonexistent");
    let r = hubcli_at(&missing, None, &["launcher", "ls", "--timeout", "2s"]);
    r.expect_code(2);
    assert_eq!(
        r.stderr.trim(),
        format!(
            "hubcli: error: no hivehub home at {}: no such folder; give an existing home with \
             --home DIR or HIVEHUB_HOME=DIR",
            missing.display()
        )
    );
    // A file is no home either; and `ca show` needs the home as much as the hub commands.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let r = hubcli_at(&file, None, &["ca", "show"]);
    r.expect_code(2);
    assert!(r.stderr.contains(": not a folder;"), "{}", r.stderr);
    // The documentation says so.
    let o = command().arg("-h").output().unwrap();
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(
        h.contains("2  usage error (bad flags or arguments, no home found"),
        "{h}"
    );
}

#[test]
fn json_errors_are_json_on_stderr() {
    let dir = hivehub_testkit::tempdir();
    let error_of = |r: &common::Run| -> serde_json::Value {
        assert!(r.stdout.is_empty(), "{r:#?}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {r:#?}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON error");
        assert_eq!(v["error"]["code"], r.code, "{v}");
        v
    };
    // The argument parser's errors.
    let r = hubcli_at(dir.path(), None, &["--json", "--timeout", "soon", "ls"]);
    r.expect_code(2);
    let v = error_of(&r);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid value 'soon' for '--timeout <DURATION>'"),
        "{v}"
    );
    // hubcli's own: no home, an unreachable hub.
    let r = hubcli_at(&dir.path().join("nope"), None, &["ls", "--json"]);
    r.expect_code(2);
    assert!(
        error_of(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no hivehub home at "),
        "{r:#?}"
    );
    let mut core = core();
    core.kill();
    let r = hubcli(&core, &["launcher", "ls", "--json", "--timeout", "2s"]);
    r.expect_code(3);
    assert_eq!(
        error_of(&r),
        serde_json::json!({"error": {
            "code": 3,
            "kind": "unreachable",
            "message": format!("cannot reach the hub at mqtts://127.0.0.1:{}: connection refused", core.port),
        }})
    );
    // --help documents it.
    let o = command().arg("-h").output().unwrap();
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(
        h.contains(r#"{"error":{"code":3,"kind":"unreachable","#),
        "{h}"
    );
}

#[test]
fn mqtt_url_on_a_tls_port_says_use_mqtts() {
    let core = core();
    let plain = format!("mqtt://127.0.0.1:{}", core.port);
    let r = hubcli_at(
        core.home.root(),
        Some(&plain),
        &["launcher", "ls", "--timeout", "5s"],
    );
    r.expect_code(3);
    assert_eq!(
        r.stderr.trim(),
        format!(
            "hubcli: error: cannot reach the hub at {plain}: the server speaks TLS on this port, \
             not plain MQTT: use mqtts://127.0.0.1:{}",
            core.port
        )
    );
    assert!(!r.stderr.contains("boundary"), "{}", r.stderr);
}

#[test]
fn every_help_fits_80_columns() {
    use clap::CommandFactory;
    fn paths(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            paths(sub, p, out);
        }
    }
    let mut all = Vec::new();
    paths(&hivehub_cli::Cli::command(), Vec::new(), &mut all);
    assert!(
        all.iter().any(|p| p == &["ca", "show"]) && all.iter().any(|p| p == &["stop"]),
        "{all:?}"
    );
    for columns in ["80", "200"] {
        for path in &all {
            for flag in ["-h", "--help"] {
                let o = command()
                    .env("COLUMNS", columns)
                    .args(path)
                    .arg(flag)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{path:?} {flag}");
                let h = String::from_utf8_lossy(&o.stdout);
                assert!(h.lines().count() > 3, "{path:?} {flag}: {h}");
                for line in h.lines() {
                    assert!(
                        line.chars().count() <= 80,
                        "hubcli {} {flag} (COLUMNS={columns}) is {} columns wide: {line:?}",
                        path.join(" "),
                        line.chars().count()
                    );
                }
            }
        }
    }
}

#[test]
fn server_defaults_to_the_listen_address_of_core_config() {
    let core = core();
    // As when the core is not running or has not written its URL yet.
    std::fs::remove_file(core.home.core_url_file()).unwrap();
    std::fs::remove_file(core.home.core_socket_file()).unwrap();
    let config = core.home.config_file("hubcore");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // The wildcard address is reached on the loopback address.
    std::fs::write(
        &config,
        format!(
            "# the core's own settings\nissuer: hivehub\nlisten: 0.0.0.0:{}\n",
            core.port
        ),
    )
    .unwrap();
    let r = common::hubcli_at(core.home.root(), None, &["auth", "ls", "--json"]);
    r.expect_code(0);
    let clients: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert!(
        clients.as_array().is_some_and(|a| !a.is_empty()),
        "{}",
        r.stdout
    );
    // And it is that address, not the default, that is tried.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n")).unwrap();
    let r = common::hubcli_at(core.home.root(), None, &["auth", "ls", "--timeout", "2s"]);
    r.expect_code(3);
    assert!(
        r.stderr.contains(&format!(
            "cannot reach the hub at mqtts://127.0.0.1:{port}:"
        )),
        "{}",
        r.stderr
    );
    // The URL file, when the core wrote one, still comes first.
    std::fs::write(core.home.core_url_file(), format!("{}\n", core.url)).unwrap();
    let r = common::hubcli_at(core.home.root(), None, &["auth", "ls"]);
    r.expect_code(0);
}

#[test]
fn the_local_socket_comes_first_and_a_dead_one_is_named() {
    let mut core = core();
    // The URL file names a port where nothing listens: only the socket can answer.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("mqtts://127.0.0.1:{}", free.local_addr().unwrap().port());
    drop(free);
    std::fs::write(core.home.core_url_file(), format!("{dead}\n")).unwrap();
    let r = common::hubcli_at(core.home.root(), None, &["auth", "ls", "--json"]);
    r.expect_code(0);
    assert!(r.stdout.contains("\"admin\""), "{}", r.stdout);
    // --server and $HIVEHUB_SERVER still win.
    let r = common::hubcli_at(
        core.home.root(),
        Some(&dead),
        &["auth", "ls", "--timeout", "2s"],
    );
    r.expect_code(3);
    let o = command()
        .env("HIVEHUB_SERVER", &dead)
        .arg("--home")
        .arg(core.home.root())
        .args(["auth", "ls", "--timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    // A core that was killed leaves its socket behind; hubcli names it.
    core.kill();
    let r = common::hubcli_at(core.home.root(), None, &["auth", "ls", "--timeout", "2s"]);
    r.expect_code(3);
    assert_eq!(
        r.stderr.trim(),
        format!(
            "hubcli: error: cannot reach the hub at unix://{}: connection refused",
            core.home.core_socket_file().display()
        )
    );
}

#[test]
fn ca_show_prints_subject_validity_and_fingerprint() {
    let mut core = core();
    // No hub needed.
    core.kill();
    let pem = std::fs::read_to_string(core.home.ca_cert()).unwrap();
    let r = common::hubcli_at(core.home.root(), None, &["ca", "show"]);
    r.expect_code(0);
    let field = |k: &str| -> String {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k}: in {}", r.stdout))
            .trim()
            .to_string()
    };
    assert_eq!(field("subject"), "CN=hivehub CA, O=hivehub");
    assert_eq!(field("issuer"), "CN=hivehub CA, O=hivehub");
    // The core makes its CA valid from a day ago for ten years.
    let today = hivehub_cli::format::timestamp(hivehub_api::time::now_ms());
    assert!(field("valid from") < today, "{}", r.stdout);
    assert!(field("valid until").contains("(in 36"), "{}", r.stdout);
    // SHA-256 of the DER bytes, as `openssl x509 -fingerprint -sha256` prints it.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&body);
    let want: Vec<String> = sha2_256(&der).iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(field("SHA-256"), want.join(":"));
    assert!(r.stdout.ends_with(&pem), "then the PEM: {}", r.stdout);

    let r = common::hubcli_at(core.home.root(), None, &["ca", "show", "--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["sha256"], want.join(":"));
    assert_eq!(v["pem"], pem);
    assert!(v["notAfter"].as_i64() > v["notBefore"].as_i64(), "{v}");

    std::fs::remove_file(core.home.ca_cert()).unwrap();
    let r = common::hubcli_at(core.home.root(), None, &["ca", "show"]);
    r.expect_code(1);
    assert!(r.stderr.contains("cannot read the hub CA"), "{}", r.stderr);
}

/// Standard base64 without padding checks (the test's own decoder, independent of hubcli's).
fn base64_decode(s: &str) -> Vec<u8> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ABC.iter().position(|x| *x == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn sha2_256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
