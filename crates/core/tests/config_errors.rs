//! The hubcore binary's config errors as a user meets them: one line on stderr with the file,
//! line and column, the key and a suggestion; `--check`; a named config file that is missing;
//! colour codes only for a terminal.

use hivehub_home::Home;
use hivehub_testkit::{tempdir, Core};
use std::process::{Command, Output, Stdio};

const HUBCORE: &str = env!("CARGO_BIN_EXE_hubcore");

/// A fresh home (not created on disk beyond `config/`) with `yaml` as its hubcore.yaml.
fn home_with(dir: &tempfile::TempDir, yaml: Option<&str>) -> Home {
    let home = Home::at(dir.path().join("home"));
    std::fs::create_dir_all(home.config()).unwrap();
    if let Some(y) = yaml {
        std::fs::write(home.config_file("hubcore"), y).unwrap();
    }
    home
}

/// Runs hubcore with `args` and waits for it (30 s at most: a run that starts the broker
/// would otherwise hang the test).
fn hubcore(args: &[&str]) -> Output {
    let mut child = Command::new(HUBCORE)
        .args(args)
        .env_remove("HIVEHUB_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = hivehub_testkit::wait_until(std::time::Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_error_is_one_stderr_line_with_file_position_key_and_suggestion() {
    let dir = tempdir();
    let home = home_with(
        &dir,
        Some("listen: 127.0.0.1:0\nlimits:\n  maxSubscription: 5\n"),
    );
    let o = hubcore(&["--home", home.root().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert_eq!(
        e,
        format!(
            "hubcore: error: {}:3:3: limits.maxSubscription: unknown key; did you mean `maxSubscriptions`?\n",
            home.config_file("hubcore").display()
        )
    );
    assert_eq!(e.matches("error:").count(), 1, "{e}");
    assert!(!e.contains("<input>"), "{e}");
    assert!(!home.certs().join("caCert.pem").exists(), "nothing started");
}

#[test]
fn wrong_type_error_names_the_key_with_the_values_line_and_column() {
    let dir = tempdir();
    let home = home_with(&dir, Some("issuer: hub\ntokenValidityDays:\n  user: [7]\n"));
    let o = hubcore(&["--home", home.root().to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!(
            "{}:3:9: tokenValidityDays.user: expected a whole number, found a list",
            home.config_file("hubcore").display()
        )),
        "{e}"
    );
}

#[test]
fn check_prints_valid_and_exits_0_without_starting_anything() {
    let dir = tempdir();
    let home = home_with(&dir, Some("issuer: hub\nlimits:\n  publishRate: 10\n"));
    let o = hubcore(&["--home", home.root().to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!("{}: valid\n", home.config_file("hubcore").display())
    );
    assert!(
        !home.certs().exists() && !home.run().exists(),
        "nothing written"
    );
    // No file at the default path: the defaults, which are valid.
    std::fs::remove_file(home.config_file("hubcore")).unwrap();
    let o = hubcore(&["--home", home.root().to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn check_reports_the_error_and_exits_1() {
    let dir = tempdir();
    let home = home_with(&dir, Some("logLevel: inof\n"));
    let o = hubcore(&["--home", home.root().to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    let e = text(&o.stderr);
    assert!(
        e.starts_with(&format!(
            "hubcore: error: {}:1:11: logLevel: unknown log level `inof`",
            home.config_file("hubcore").display()
        )) && e.contains("did you mean `info`?"),
        "{e}"
    );
    // --config names the file that is checked.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "plainListen: 0.0.0.0:1883\n").unwrap();
    let o = hubcore(&[
        "--home",
        home.root().to_str().unwrap(),
        "--check",
        "--config",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("{}:1:14: plainListen:", other.display())) && e.contains("loopback"),
        "{e}"
    );
}

#[test]
fn check_of_a_named_file_needs_no_home() {
    let dir = tempdir();
    let file = dir.path().join("hubcore.yaml");
    std::fs::write(&file, "issuer: hub\n").unwrap();
    let o = hubcore(&["--check", "--config", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("{}: valid\n", file.display()));
}

#[test]
fn named_config_that_does_not_exist_is_an_error() {
    let dir = tempdir();
    let home = home_with(&dir, None);
    let missing = dir.path().join("no-such.yaml");
    for check in [true, false] {
        let mut args = vec![
            "--home",
            home.root().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--config",
            missing.to_str().unwrap(),
        ];
        if check {
            args.push("--check");
        }
        let o = hubcore(&args);
        assert_eq!(o.status.code(), Some(1), "check: {check}");
        assert!(!text(&o.stdout).contains("valid"));
        let e = text(&o.stderr);
        assert!(
            e.contains(&format!("{}: no such file", missing.display())),
            "{e}"
        );
    }
    assert!(!home.core_url_file().exists());
}

#[test]
fn single_dash_words_are_flags_or_exit_2_never_help() {
    let dir = tempdir();
    let home = home_with(&dir, Some("issuer: hub\n"));
    let root = home.root().to_str().unwrap();
    let o = hubcore(&["-home", root, "-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).ends_with("hubcore.yaml: valid\n"));
    let o = hubcore(&["-hom", root]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!text(&o.stdout).contains("Usage:"));
}

#[test]
fn log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    // The test kit's core logs to a file, as under the launcher (a pipe) or systemd.
    let mut core = Core::start(HUBCORE.as_ref());
    assert_eq!(core.terminate().and_then(|s| s.code()), Some(0));
    let log = core.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in:\n{log:?}");
}
