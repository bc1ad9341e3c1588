//! Shared set-up of the in-process supervisor tests: a temporary home and a supervisor on it
//! with no core (so no bus is needed), its reaper running and the guard process protecting
//! against leftovers even when a test panics.

use hivehub_home::Home;
use hivehub_launcher::Supervisor;

/// A new home in a temporary folder (kept alive by the returned guard).
pub fn home() -> (tempfile::TempDir, Home) {
    let dir = hivehub_testkit::tempdir();
    let home = Home::at(dir.path().join("home"));
    home.ensure_dirs().expect("home");
    (dir, home)
}

/// A supervisor on `home` configured by `yaml` (added to a no-core, no-credentials base).
pub fn supervisor(home: &Home, yaml: &str) -> Supervisor {
    let full =
        format!("core: \"\"\nserverURL: mqtts://127.0.0.1:1\ncreatePluginCred: false\n{yaml}");
    let cfg = hivehub_launcher::config::parse(&full, "test.yaml").expect("test config");
    hivehub_launcher::process::become_subreaper().expect("subreaper");
    // The guard kills every plugin session when this test process ends, even on a panic.
    let guard = hivehub_launcher::process::Guard::start_for(
        &hivehub_testkit::workspace_bin("launcher"),
        Some(home.root()),
    )
    .ok();
    let s = Supervisor::new(home.clone(), cfg, guard).expect("supervisor");
    s.spawn_reaper().expect("reaper");
    s
}
