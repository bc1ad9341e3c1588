//! The hubcore binary's handling of bad input: every failure is a clear message and a non-zero exit.

use assert_cmd::Command;
use hivehub_testkit::Core;
use std::os::unix::fs::PermissionsExt;

fn hubcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hubcore"));
    c.env_remove("HIVEHUB_HOME");
    c.timeout(std::time::Duration::from_secs(30));
    c
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn missing_home_is_a_clear_error() {
    let o = hubcore().output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no hivehub home"), "{}", stderr(&o));
}

#[test]
fn port_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let o = hubcore()
        .args([
            "--home",
            dir.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("cannot listen on 127.0.0.1:{port}")) && e.contains("in use"),
        "{e}"
    );
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/hubcore.yaml"),
        "listen: 127.0.0.1:0\nlisten_plain: x\n",
    )
    .unwrap();
    let o = hubcore()
        .args(["--home", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("hubcore.yaml:2:1:") && e.contains("listen_plain"),
        "{e}"
    );
    std::fs::write(
        dir.path().join("config/hubcore.yaml"),
        "plainListen: 0.0.0.0:1883\n",
    )
    .unwrap();
    let o = hubcore()
        .args(["--home", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("loopback"), "{}", stderr(&o));
}

#[test]
fn unreadable_certs_and_corrupt_store_are_clear_errors() {
    let mut core = Core::start(env!("CARGO_BIN_EXE_hubcore").as_ref());
    assert_eq!(
        core.terminate().map(|s| s.success()),
        Some(true),
        "SIGTERM exits 0"
    );
    assert!(
        !core.home.core_url_file().exists(),
        "url file removed on stop"
    );
    let home = core.home.root().to_str().unwrap().to_string();

    let ca_key = core.home.certs().join("caKey.pem");
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&ca_key, "garbage").unwrap();
    let o = hubcore()
        .args(["--home", &home, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("caKey.pem"), "{}", stderr(&o));
    std::fs::remove_file(core.home.ca_cert()).unwrap();
    std::fs::remove_file(&ca_key).unwrap();

    let store = core.home.stores().join("auth/clients.json");
    let before = b"{\"version\": 1, \"clients\": {".to_vec();
    std::fs::write(&store, &before).unwrap();
    let o = hubcore()
        .args(["--home", &home, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("clients.json") && stderr(&o).contains("corrupt"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "a corrupt store is never overwritten"
    );
}

#[test]
fn home_is_found_from_the_binary_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    let bin = dir.path().join("bin/hubcore");
    std::fs::copy(env!("CARGO_BIN_EXE_hubcore"), &bin).unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("HIVEHUB_HOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = dir.path().join("run/hubcore.url");
    let ok = hivehub_testkit::wait_until(std::time::Duration::from_secs(30), || url.exists());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "hubcore in HOME/bin did not use HOME");
    assert!(dir.path().join("certs/admin.token").exists());
}
