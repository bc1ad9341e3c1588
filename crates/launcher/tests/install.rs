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

/// Installs into `home` with the systemd unit in `units` (as the user nobody); the unit's text.
fn install_unit(home: &Path, units: &Path) -> String {
    let b = bin_dir();
    run(
        "install.sh",
        &[
            "--prefix",
            home.to_str().unwrap(),
            "--no-build",
            "--bin-dir",
            b.to_str().unwrap(),
            "--systemd",
            "--unit-dir",
            units.to_str().unwrap(),
            "--user",
            "nobody",
        ],
    );
    std::fs::read_to_string(units.join("hivehub.service")).expect("the installed unit")
}

/// The values of `key=` lines of a unit.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// `init/verify-unit.sh` on `unit` (systemd-analyze verify and the script's own checks).
fn verify_unit(unit: &Path) {
    let out = Command::new(repo().join("init/verify-unit.sh"))
        .arg(unit)
        .output()
        .expect("run init/verify-unit.sh");
    assert!(
        out.status.success(),
        "verify-unit.sh {}: {}{}",
        unit.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Item 15: the unit's ExecReload is what makes `systemctl reload` reload: SIGHUP to the
/// launcher. The installed unit's command, run as systemd runs it (with $MAINPID), reloads
/// launcher.yaml on a real launcher, and starts the core again after `stop all
/// --include-core`.
#[test]
fn unit_exec_reload_reloads_the_config_and_starts_a_stopped_core() {
    use hivehub_testkit::{plugin_script, wait_until, LauncherHub};
    use std::time::Duration;

    let dir = hivehub_testkit::tempdir();
    let unit = install_unit(&dir.path().join("hivehub"), &dir.path().join("units"));
    let reload = unit_values(&unit, "ExecReload");
    assert_eq!(reload, ["/bin/kill -HUP $MAINPID"], "{unit}");
    verify_unit(&dir.path().join("units/hivehub.service"));

    let top = |autostart: &str| format!("createPluginCred: false\nautostart: [{autostart}]\n");
    let mut hub = LauncherHub::new(
        &hivehub_testkit::workspace_bin("launcher"),
        &top("early"),
        "",
    );
    plugin_script(&hub.home, "early", "exec sleep 1000");
    plugin_script(&hub.home, "late", "exec sleep 1000");
    hub.start();
    hub.wait_running("early");
    let ls_ok = |hub: &LauncherHub| hub.hubcli(&["launcher", "ls"]).status.success();
    assert!(
        wait_until(Duration::from_secs(30), || ls_ok(&hub)),
        "{}",
        hub.out()
    );
    let main_pid = hub.pid().expect("the launcher's PID").to_string();
    // What systemd runs for `systemctl reload hivehub`.
    let exec_reload = || {
        let cmd = reload[0].replace("$MAINPID", &main_pid);
        let argv: Vec<&str> = cmd.split_whitespace().collect();
        let st = Command::new(argv[0])
            .args(&argv[1..])
            .status()
            .expect("run ExecReload");
        assert!(st.success(), "{cmd}");
    };

    // The config changes: `late` is now autostarted; the reload starts it.
    let cfg = hub.home.config_file("launcher");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("autostart: [early]", "autostart: [early, late]"),
    )
    .unwrap();
    exec_reload();
    let late = wait_until(Duration::from_secs(15), || {
        hub.pid_of("late")
            .is_some_and(hivehub_launcher::process::pid_alive)
    });
    assert!(late, "ExecReload did not reload the config:\n{}", hub.out());
    // The summary line follows the starts it reports: wait for it, as for the start.
    assert!(
        wait_until(Duration::from_secs(15), || hub
            .out()
            .contains("reload applied")),
        "{}",
        hub.out()
    );

    // The core stopped with everything else: the same reload brings it back.
    let core = hub.wait_running("hubcore");
    let out = hub.hubcli(&["launcher", "stop", "all", "--include-core"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(15), || {
        !hivehub_launcher::process::pid_alive(core)
    }));
    exec_reload();
    let again = hub.wait_running("hubcore");
    assert_ne!(again, core);
    assert!(
        wait_until(Duration::from_secs(30), || ls_ok(&hub)),
        "the launcher is not reachable again:\n{}",
        hub.out()
    );
    assert!(
        hub.out()
            .contains("the core was stopped; started again on SIGHUP"),
        "{}",
        hub.out()
    );
    hub.signal(nix::sys::signal::Signal::SIGTERM);
    hub.wait_exit(Duration::from_secs(60));
}

/// Item 15: ProtectHome=yes hides /home, /root and /run/user from the service, so the unit
/// keeps it only for a home elsewhere; install.sh turns it off (saying why) for a home under
/// /home, also when reached through a symlink. Each unit passes init/verify-unit.sh.
#[test]
fn protect_home_is_kept_only_when_the_home_is_not_under_home() {
    let dir = hivehub_testkit::tempdir();
    let elsewhere = install_unit(&dir.path().join("hivehub"), &dir.path().join("u1"));
    assert_eq!(
        unit_values(&elsewhere, "ProtectHome"),
        ["yes"],
        "{elsewhere}"
    );
    verify_unit(&dir.path().join("u1/hivehub.service"));

    // A home under /home (made here if the machine has none; we may be root in CI).
    let _ = std::fs::create_dir_all("/home");
    let Ok(under) = tempfile::Builder::new()
        .prefix("hivehub-install-test-")
        .tempdir_in("/home")
    else {
        panic!("cannot make a folder under /home (run as root, as CI does)");
    };
    let home = under.path().join("hub");
    let unit = install_unit(&home, &dir.path().join("u2"));
    assert_eq!(unit_values(&unit, "ProtectHome"), ["no"], "{unit}");
    assert!(
        unit.contains(&format!("# install.sh: the home ({})", home.display())),
        "{unit}"
    );
    assert!(
        unit.contains(&format!(
            "ExecStart={0}/bin/launcher --home {0}",
            home.display()
        )),
        "{unit}"
    );
    verify_unit(&dir.path().join("u2/hivehub.service"));

    // The same home through a symlink from elsewhere.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(under.path(), &link).unwrap();
    let unit = install_unit(&link.join("hub"), &dir.path().join("u3"));
    assert_eq!(unit_values(&unit, "ProtectHome"), ["no"], "{unit}");
}

/// Item 15: every file the unit's Documentation= names exists once installed (install.sh
/// copies docs/ into the home), the operator's guide among them; uninstall removes them.
#[test]
fn documentation_names_docs_that_exist_after_install() {
    let dir = hivehub_testkit::tempdir();
    let home = dir.path().join("hivehub");
    let units = dir.path().join("units");
    let unit = install_unit(&home, &units);
    let docs: Vec<&str> = unit_values(&unit, "Documentation")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!docs.is_empty(), "no Documentation= in {unit}");
    for d in &docs {
        let path = d
            .strip_prefix("file:")
            .unwrap_or_else(|| panic!("{d}: not a file: URL"));
        assert!(
            path.starts_with(home.to_str().unwrap()),
            "{d} is outside the home"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{d}: {e}"));
        let name = Path::new(path).file_name().unwrap();
        // The installed copy is the repository's.
        assert_eq!(
            text,
            std::fs::read_to_string(repo().join("docs").join(name)).unwrap()
        );
    }
    assert!(
        docs.iter().any(|d| d.ends_with("/docs/OPERATIONS.md")),
        "{docs:?}"
    );
    run(
        "uninstall.sh",
        &[
            "--prefix",
            home.to_str().unwrap(),
            "--unit-dir",
            units.to_str().unwrap(),
        ],
    );
    assert!(!home.join("docs").exists());
}

/// Item 15: HiveOT's unit has Nice=10; this one either sets it or says in a comment why not.
#[test]
fn unit_sets_nice_or_says_why_not() {
    let unit = std::fs::read_to_string(repo().join("init/hivehub.service")).unwrap();
    let nice = unit_values(&unit, "Nice");
    if nice.is_empty() {
        let why: String = unit
            .lines()
            .skip_while(|l| !(l.starts_with('#') && l.contains("Nice= is deliberately not set")))
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            why.contains("inherited") && why.contains("lease") && why.contains("nice 10"),
            "no reasoned comment on Nice= in the unit:\n{why}"
        );
    } else {
        assert_eq!(nice, ["10"], "{unit}");
    }
}
