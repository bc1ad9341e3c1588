//! The launcher binary's flags and config errors as a user meets them: HiveOT's Go-style flags,
//! `--check` of both config files, a named config file that is missing, colour codes only for a
//! terminal, and errors that name the key whose value is wrong.

use hivehub_home::Home;
use hivehub_testkit::{tempdir, wait_until, LauncherHub};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// A home with hubcore in `bin/` (on a free port) and `top` in launcher.yaml; not started.
fn hub(top: &str) -> LauncherHub {
    LauncherHub::new(LAUNCHER.as_ref(), top, "")
}

/// Runs the launcher with exactly `args` (no `--home` added) and waits for it.
fn launcher(args: &[&str]) -> Output {
    Command::new(LAUNCHER)
        .args(args)
        .env_remove("HIVEHUB_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run launcher")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `launcher --home HOME --check` and any extra arguments.
fn check(home: &Home, extra: &[&str]) -> Output {
    let root = home.root().to_str().unwrap();
    let mut args = vec!["--home", root, "--check"];
    args.extend_from_slice(extra);
    launcher(&args)
}

/// A launcher started with `args` only, its output in `out`; killed when dropped.
struct Started {
    child: Option<Child>,
    out: PathBuf,
}

impl Started {
    fn new(args: &[&str], out: &Path) -> Started {
        let log = std::fs::File::create(out).unwrap();
        let child = Command::new(LAUNCHER)
            .args(args)
            .env_remove("HIVEHUB_HOME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Started {
            child: Some(child),
            out: out.to_path_buf(),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut status = None;
        wait_until(Duration::from_secs(20), || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = c.kill();
            status = c.wait().ok();
        }
        status
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// Item 5: HiveOT's Go-style flags.

#[test]
fn hiveot_home_flag_runs_the_hub_instead_of_printing_help() {
    let h = hub("createPluginCred: false\n");
    let root = h.home.root().to_str().unwrap().to_string();
    let dir = tempdir();
    let mut l = Started::new(
        &["-home", &root, "-loglevel", "debug"],
        &dir.path().join("out"),
    );
    let url_file = h.home.core_url_file();
    let up = wait_until(Duration::from_secs(30), || url_file.exists());
    assert!(up, "the hub did not start; output:\n{}", l.output());
    assert!(!l.output().contains("Usage:"), "{}", l.output());
    // `-loglevel debug` is `--log-level debug`.
    assert!(l.output().contains("DEBUG"), "{}", l.output());
    assert_eq!(l.terminate().and_then(|s| s.code()), Some(0));
}

#[test]
fn hiveot_flags_are_aliases_of_the_launchers_own() {
    let h = hub("");
    let root = h.home.root().to_str().unwrap();
    let other = h.home.config().join("other.yaml");
    std::fs::write(&other, "core: hubcore\nloglevel: warning\n").unwrap();
    let other = other.to_str().unwrap();
    let home_eq = format!("-home={root}");
    for args in [
        vec!["-home", root, "-config", other, "-check"],
        vec![home_eq.as_str(), "-config", other, "--check"],
        vec![
            "-home",
            root,
            "-serverURL",
            "mqtts://127.0.0.1:1",
            "-config",
            other,
            "-check",
        ],
        vec![
            "--home",
            root,
            "--config",
            other,
            "--loglevel",
            "info",
            "--check",
        ],
    ] {
        let o = launcher(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        // `-config FILE` is the file checked.
        assert!(
            text(&o.stdout).contains(&format!("{other}: valid")),
            "{args:?}: {}",
            text(&o.stdout)
        );
    }
}

#[test]
fn hiveot_client_id_flag_fails_with_exit_code_2_naming_the_id_setting() {
    let h = hub("");
    let root = h.home.root().to_str().unwrap();
    for args in [
        vec!["-home", root, "-clientID", "launcher2"],
        vec!["-home", root, "-clientID=launcher2"],
        vec!["--home", root, "--clientID", "launcher2"],
    ] {
        let o = launcher(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = text(&o.stderr);
        assert!(e.contains("-clientID") && e.contains("`id: NAME`"), "{e}");
        assert!(e.contains("launcher.yaml"), "{e}");
    }
    assert!(!h.home.core_url_file().exists(), "nothing may start");
}

#[test]
fn unknown_single_dash_words_fail_with_exit_code_2_never_help_and_0() {
    let h = hub("");
    let root = h.home.root().to_str().unwrap();
    for args in [
        vec!["-hom", root],
        vec!["-hello"],
        vec!["-home", root, "-verbose"],
        vec!["--home", root, "--bogus"],
    ] {
        let o = launcher(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stdout));
        assert!(!text(&o.stdout).contains("Usage:"), "{args:?}");
    }
    assert!(!h.home.core_url_file().exists(), "nothing may start");
}

// Item 8: `launcher --check` checks the core's config too.

#[test]
fn check_validates_the_cores_hubcore_yaml_with_position_key_and_suggestion() {
    let h = hub("");
    let core_yaml = h.home.config_file("hubcore");
    std::fs::write(&core_yaml, "issuer: hub\nlisen: 0.0.0.0:8883\n").unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let e = text(&o.stderr);
    assert_eq!(
        e.trim(),
        format!(
            "launcher: error: {}:2:1: lisen: unknown key; did you mean `listen`?",
            core_yaml.display()
        )
    );
    std::fs::write(&core_yaml, "issuer: hub\nlisten: 0.0.0.0:8883\n").unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("launcher.yaml: valid"), "{out}");
    assert!(
        out.contains(&format!("{}: valid", core_yaml.display())),
        "{out}"
    );
    // A check starts nothing and makes no certificates.
    assert!(!h.home.core_url_file().exists());
    assert!(!h.home.certs().join("caCert.pem").exists());
}

#[test]
fn check_uses_the_config_flag_of_the_cores_args() {
    let h = hub("");
    std::fs::write(
        h.home.config_file("launcher"),
        "core: hubcore\nplugins:\n  hubcore:\n    args: [\"--config\", \"config/core2.yaml\"]\n",
    )
    .unwrap();
    // The default file is fine; the one the core is started with is not.
    std::fs::write(h.home.config_file("hubcore"), "issuer: hub\n").unwrap();
    std::fs::write(
        h.home.config().join("core2.yaml"),
        "limits:\n  publishRate: [1]\n",
    )
    .unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("core2.yaml:2:16: limits.publishRate: expected a whole number, found a list"),
        "{e}"
    );
}

#[test]
fn check_without_a_core_leaves_hubcore_yaml_alone() {
    let h = hub("");
    std::fs::write(
        h.home.config_file("launcher"),
        "core: \"\"\nserverURL: mqtts://hub.local:8883\n",
    )
    .unwrap();
    std::fs::write(h.home.config_file("hubcore"), "lisen: x\n").unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("hubcore.yaml"));
}

#[test]
fn check_without_the_core_binary_is_an_error() {
    let dir = tempdir();
    let home = Home::at(dir.path().join("home"));
    home.ensure_dirs().unwrap();
    std::fs::write(home.config_file("launcher"), "core: nocore\n").unwrap();
    let o = check(&home, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("bin/nocore") && e.contains("missing"), "{e}");
}

#[test]
fn check_runs_the_core_as_the_user_it_would_run_as() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run the core as another user");
        return;
    }
    let h = hub("");
    // Under a root launcher the core runs as the owner of certs/; a file only root can read
    // is a file the core cannot read at start.
    nix::unistd::chown(
        &h.home.certs(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let core_yaml = h.home.config_file("hubcore");
    std::fs::write(&core_yaml, "issuer: hub\n").unwrap();
    std::fs::set_permissions(&core_yaml, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("{}: cannot read the file", core_yaml.display())),
        "{e}"
    );
    std::fs::set_permissions(&core_yaml, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn bad_hubcore_yaml_leaves_one_clear_error_line_in_the_cores_log() {
    let mut h = hub("createPluginCred: false\n");
    let core_yaml = h.home.config_file("hubcore");
    std::fs::write(
        &core_yaml,
        "limits:\n  maxSubscriptions: 10\n  publishRat: 5\n",
    )
    .unwrap();
    h.start();
    let st = h.wait_exit(Duration::from_secs(40));
    assert_eq!(st.and_then(|s| s.code()), Some(1), "{}", h.out());
    let log = std::fs::read_to_string(h.home.logs().join("hubcore.log")).unwrap_or_default();
    let want = format!(
        "hubcore: error: {}:3:3: limits.publishRat: unknown key; did you mean `publishRate`?",
        core_yaml.display()
    );
    let line = log
        .lines()
        .find(|l| l.contains("hubcore: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{log}"));
    assert!(line.ends_with(&want), "{line}");
    assert_eq!(line.matches("error:").count(), 1, "{line}");
    assert!(!log.contains("<input>"), "{log}");
}

// Item 9: a config file named explicitly must exist.

#[test]
fn check_with_a_named_config_that_does_not_exist_fails() {
    let h = hub("");
    let missing = h.home.config().join("no-such.yaml");
    let o = check(&h.home, &["--config", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(!text(&o.stdout).contains("valid"));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("{}: no such file", missing.display())),
        "{e}"
    );
    // The default file may be absent: that means the defaults.
    std::fs::remove_file(h.home.config_file("launcher")).unwrap();
    let o = check(&h.home, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn launcher_with_a_named_config_that_does_not_exist_starts_nothing() {
    let h = hub("");
    let dir = tempdir();
    let missing = dir.path().join("launcher.yml");
    let o = launcher(&[
        "--home",
        h.home.root().to_str().unwrap(),
        "--config",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no such file"),
        "{}",
        text(&o.stderr)
    );
    assert!(!h.home.core_url_file().exists());
}

// Item 14: colour only at a terminal.

#[test]
fn logs_and_launcher_stderr_have_no_colour_codes_when_not_a_terminal() {
    let mut h = hub("createPluginCred: false\n");
    h.start_with(&["--log-level", "debug"]);
    h.url();
    let core_log = h.home.logs().join("hubcore.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&core_log).is_ok_and(|l| l.contains("INFO"))
    }));
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        h.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let out = h.out();
    assert!(out.contains("INFO") || out.contains("DEBUG"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "colour codes in the launcher's stderr:\n{out:?}"
    );
    let log = std::fs::read_to_string(&core_log).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in hubcore.log:\n{log:?}"
    );
}

// Item 24: the key whose value is wrong, with its line and column.

#[test]
fn wrong_type_names_the_key_not_its_parent() {
    let h = hub("");
    let file = h.home.config_file("launcher");
    for (yaml, want) in [
        (
            "core: hubcore\nautostart: [yesplugin]\nplugins:\n  yesplugin:\n    stopTimeout: [2]\n",
            ":5:18: plugins.yesplugin.stopTimeout: expected a duration",
        ),
        (
            "core: hubcore\nbackoff:\n  base: [1]\n",
            ":3:9: backoff.base: expected a duration",
        ),
        (
            "core: hubcore\nbackoff: {base: [1]}\n",
            ":2:17: backoff.base: expected a duration",
        ),
        (
            "core: hubcore\nplugins:\n  y:\n    waitReady: [2]\n",
            ":4:16: plugins.y.waitReady: expected true or false, found a list",
        ),
    ] {
        std::fs::write(&file, yaml).unwrap();
        let o = check(&h.home, &[]);
        assert_eq!(o.status.code(), Some(1), "{yaml}");
        let e = text(&o.stderr);
        assert!(
            e.contains(&format!("{}{want}", file.display())),
            "{yaml:?}: {e}"
        );
    }
}

#[test]
fn syntax_error_names_the_key_of_the_broken_line() {
    let h = hub("");
    let file = h.home.config_file("launcher");
    for yaml in [
        "core: hubcore\nautostart: [a, b\n",
        "core: hubcore\nautostart: [a, b\nlogtofile: false\n",
    ] {
        std::fs::write(&file, yaml).unwrap();
        let o = check(&h.home, &[]);
        assert_eq!(o.status.code(), Some(1), "{yaml}");
        let e = text(&o.stderr);
        assert!(
            e.contains(&format!("{}:2:12: autostart: invalid YAML", file.display())),
            "{yaml:?}: {e}"
        );
        assert!(
            e.contains("unclosed bracket") || e.contains("is its `]` missing?"),
            "{e}"
        );
    }
}
