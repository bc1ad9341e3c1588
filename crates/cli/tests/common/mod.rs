//! Helpers shared by the hubcli integration tests: a real hubcore (build it first with
//! `cargo build -p hivehub-core --bin hubcore`) and the real `hubcli` binary.

#![allow(dead_code)]

use hivehub_testkit::{workspace_bin, Core};
use std::path::Path;
use std::time::{Duration, Instant};

/// A hubcore in a temporary home.
pub fn core() -> Core {
    Core::start(&workspace_bin("hubcore"))
}

/// What one hubcli run did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Run {
    /// Panics with the whole run when the exit code differs.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// A hubcli command with a clean environment (no $HIVEHUB_HOME or $HIVEHUB_SERVER from the
/// developer's shell) and a deadline, so a hang fails the test instead of blocking it.
pub fn command() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_hubcli"));
    c.env_remove("HIVEHUB_HOME")
        .env_remove("HIVEHUB_SERVER")
        .env_remove("COLUMNS")
        .timeout(Duration::from_secs(60));
    c
}

/// Runs `hubcli --home HOME [--server URL] ARGS…`.
pub fn hubcli_at(home: &Path, server: Option<&str>, args: &[&str]) -> Run {
    let mut c = command();
    c.arg("--home").arg(home);
    if let Some(s) = server {
        c.arg("--server").arg(s);
    }
    c.args(args);
    let t = Instant::now();
    let o = c.output().expect("run hubcli");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        took: t.elapsed(),
    }
}

/// Runs hubcli against `core`.
pub fn hubcli(core: &Core, args: &[&str]) -> Run {
    hubcli_at(core.home.root(), Some(&core.url), args)
}

/// A runtime for the SDK clients a test uses next to the hubcli processes.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
