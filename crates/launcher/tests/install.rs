//! scripts/install.sh and scripts/uninstall.sh lay out and remove a home, keeping what must be
//! kept. The scripts are run for real, with the binaries of this build (--no-build).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin_dir() -> PathBuf {
    hivehub_testkit::workspace_bin("launcher")
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

fn run(script: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts").join(script))
        .args(args)
        .output()
        .expect("run script");
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_twice_keeps_config_and_uninstall_keeps_identity() {
    let dir = hivehub_testkit::tempdir();
    let home = dir.path().join("hivehub");
    let units = dir.path().join("units");
    let h = home.to_str().unwrap();
    let b = bin_dir();
    let args = [
        "--prefix",
        h,
        "--no-build",
        "--bin-dir",
        b.to_str().unwrap(),
        "--systemd",
        "--unit-dir",
        units.to_str().unwrap(),
        "--user",
        "nobody",
    ];
    run("install.sh", &args);
    for f in [
        "bin/hubcore",
        "bin/launcher",
        "bin/hubcli",
        "plugins/heartbeat",
    ] {
        let m = std::fs::metadata(home.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        assert!(m.permissions().mode() & 0o111 != 0, "{f} not executable");
    }
    for d in ["certs", "stores", "run"] {
        let m = std::fs::metadata(home.join(d)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{d}");
    }
    assert!(home.join("logs").is_dir());
    // The config is valid as installed.
    let check = Command::new(home.join("bin/launcher"))
        .args(["--home", h, "--check"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The unit points at this home and user.
    let unit = std::fs::read_to_string(units.join("hivehub.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart={h}/bin/launcher --home {h}")),
        "{unit}"
    );
    // The launcher runs as root (plugins get users of their own); the hub's user owns what
    // hubcore writes, so the launcher runs hubcore as it.
    assert!(
        !unit.contains("\nUser=") && !unit.contains("/opt/hivehub"),
        "{unit}"
    );
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        for d in ["certs", "stores", "run"] {
            assert_eq!(std::fs::metadata(home.join(d)).unwrap().uid(), 65534, "{d}");
        }
        assert_eq!(std::fs::metadata(home.join("bin")).unwrap().uid(), 0);
    }

    // A second install keeps an edited config.
    let cfg = home.join("config/launcher.yaml");
    std::fs::write(&cfg, "autostart: []\n").unwrap();
    std::fs::write(home.join("certs/admin.token"), "secret").unwrap();
    let out = run("install.sh", &args);
    assert!(out.contains("kept existing"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "autostart: []\n");

    // Uninstall keeps certs, stores and config; --purge removes them.
    run(
        "uninstall.sh",
        &["--prefix", h, "--unit-dir", units.to_str().unwrap()],
    );
    assert!(!home.join("bin").exists() && !units.join("hivehub.service").exists());
    assert_eq!(
        std::fs::read_to_string(home.join("certs/admin.token")).unwrap(),
        "secret"
    );
    assert!(cfg.exists());
    run("uninstall.sh", &["--prefix", h, "--purge"]);
    assert!(!home.exists());
}
