//! The hivehub launcher: starts the core first, then the plugins in order, each with fresh
//! credentials, its own log file, in its own session; it stops them without leaving a process
//! behind, and makes sure none outlives the launcher itself.
//!
//! * [`config`]: `config/launcher.yaml`, validated with file, line and key in every error.
//! * [`process`]: spawn, signal, tree-kill, reap, and the guard process.
//! * [`sandbox`]: what a plugin may reach: Landlock, its own user, its environment.
//! * [`logs`]: per-plugin log files with timestamps, markers and rotation.
//! * [`monitor`]: CPU and memory of every plugin's process tree, from one pass over /proc.
//! * [`supervisor`]: the state of every plugin; start, stop, restart with backoff, thresholds.
//! * [`service`]: the launcher's capabilities on the bus, and its events.
//! * [`cluster`]: the shared launcher status, and movable plugins under leases from the core.
//! * [`web`]: the optional status page and Prometheus metrics (`httpListen`).
//!
//! # Start-up ([`run`])
//!
//! 1. Lock `run/launcher.lock` ([`lock_home`]): a second launcher on the same home exits 1
//!    with `another launcher is already running on HOME (… is locked, pid N)`.
//! 2. Handle SIGHUP, become a child subreaper, start the guard (without it the launcher warns
//!    and goes on), the spawner, the reaper, the plugin watcher (every 2 s) and the monitor.
//! 3. Start the core like a plugin that always awaits readiness (`READY=1` on
//!    `run/notify/{core}.sock` within `readyTimeout`), then read the URL it wrote to
//!    `run/hubcore.url`. A core that does not start stops whatever started and the launcher
//!    exits 1 (`launcher: error: the core did not start: …`). Without a core (`core: ""`) the
//!    launcher connects to `--server` or `serverURL` instead.
//! 4. Connect as its `id`, with a Last Will that marks it offline; publish every plugin's
//!    status; join the cluster; serve `view` and `manage` and grant them.
//! 5. Autostart: failures are logged and the others still start. Then the status page, and
//!    `READY=1` to systemd.
//!
//! # Signals
//!
//! * SIGTERM, SIGINT (handled by the binary): `STOPPING=1`; movable plugins are stopped and
//!   their leases released; the other plugins stop in reverse start order; the launcher leaves
//!   the bus; the core stops last; the guard is released.
//! * SIGHUP: [`Supervisor::reload`], as `hubcli launcher reload` does, between `RELOADING=1`
//!   and `READY=1`. A rejected file is logged and changes nothing.
//! * SIGKILL: every plugin leader, the core included, gets SIGKILL from `PR_SET_PDEATHSIG`; the
//!   guard sees end-of-file on its stdin and kills whatever remains ([`process`]).

pub mod cluster;
pub mod config;
pub mod logs;
pub mod monitor;
pub mod process;
mod procstat;
pub mod sandbox;
pub mod service;
pub mod supervisor;
pub mod web;

use hivehub_client::{plugin::connect_patiently, ClientOptions};
use hivehub_home::Home;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;
pub use supervisor::{LaunchError, Supervisor};

/// Errors that stop the launcher.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The home is unusable.
    #[error(transparent)]
    Home(#[from] hivehub_home::HomeError),
    /// Another launcher runs on this home.
    #[error("another launcher is already running on {home} ({lock} is locked{pid})")]
    Locked {
        /// The home.
        home: String,
        /// The lock file.
        lock: String,
        /// ", pid N" when known.
        pid: String,
    },
    /// The core could not be started.
    #[error("the core did not start: {0}")]
    Core(String),
    /// The hub could not be reached.
    #[error("{0}")]
    Bus(String),
    /// An operating-system error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Locks `m`, taking over a lock that a panicking thread left: the launcher's state stays
/// usable (each value is consistent between statements), and one panic must not stop the
/// supervision of every plugin.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> LauncherError + '_ {
    move |source| LauncherError::Io {
        what: what.to_string(),
        source,
    }
}

/// Holds `run/launcher.lock` for the life of the launcher: a second launcher on the same home
/// fails at once with a clear error instead of starting every plugin twice.
pub fn lock_home(home: &Home) -> Result<Flock<File>, LauncherError> {
    let path = home.run().join("launcher.lock");
    // Never through a symlink: under a root launcher, run/ may belong to the core's user.
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_err("cannot open the launcher lock"))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = writeln!(&mut *lock, "{}", std::process::id());
            Ok(lock)
        }
        Err((_, _)) => {
            let pid = process::read_file(&path)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .map(|p| format!(", pid {p}"))
                .unwrap_or_default();
            Err(LauncherError::Locked {
                home: home.root().display().to_string(),
                lock: path.display().to_string(),
                pid,
            })
        }
    }
}

/// What the launcher runs with.
pub struct LaunchOptions {
    /// The home.
    pub home: Home,
    /// The parsed configuration.
    pub config: config::LauncherConfig,
    /// `--server`, overriding `serverURL`.
    pub server: Option<String>,
    /// The config file, re-read on reload.
    pub config_path: PathBuf,
    /// A guard forked before the runtime started ([`process::Guard::fork_early`]); without one
    /// `run` starts this executable as `launcher __guard HOME`.
    pub guard: Option<process::Guard>,
}

/// Runs the launcher until `shutdown` completes, then stops everything (plugins in reverse start
/// order, the core last) and returns.
pub async fn run(
    opts: LaunchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LauncherError> {
    let home = opts.home;
    home.ensure_dirs()?;
    let _lock = lock_home(&home)?;
    // SIGHUP reloads the configuration, like `hubcli launcher reload`; handled from the start so
    // an early SIGHUP cannot kill the launcher.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(io_err("cannot handle SIGHUP"))?;
    process::become_subreaper().map_err(io_err("cannot become a child subreaper"))?;
    let guard = match opts.guard {
        Some(g) => {
            g.attach(home.root());
            Some(g)
        }
        None => {
            let exe =
                std::env::current_exe().map_err(io_err("cannot find the launcher executable"))?;
            match process::Guard::start_for(&exe, Some(home.root())) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!("cannot start the guard process ({e}); plugins' children may outlive a killed launcher");
                    None
                }
            }
        }
    };
    let cfg = opts.config;
    let sup = Supervisor::new(home.clone(), cfg.clone(), guard)
        .map_err(io_err("cannot start the spawner"))?;
    // A reload re-reads the file the launcher was started with.
    sup.set_config_path(opts.config_path);
    let host = sup.sandbox_host();
    match host.shortfall() {
        Some(why) => tracing::warn!("{why}"),
        None => tracing::info!(
            landlock_abi = host.abi,
            own_users = host.root,
            "plugins start confined (sandbox: full)"
        ),
    }
    sup.spawn_reaper()
        .map_err(io_err("cannot watch child processes"))?;
    sup.spawn_watcher(Duration::from_secs(2));
    sup.spawn_monitor();

    let bus = match start_hub(&sup, &home, &cfg, opts.server).await {
        Ok(bus) => Some(bus),
        Err(e) => {
            sup.stop_all(true).await;
            sup.release_guard();
            sup.shutdown_tasks().await;
            return Err(e);
        }
    };
    if let Some(addr) = cfg.http_listen {
        match web::serve(addr, sup.clone(), home.clone()).await {
            Ok(bound) => tracing::info!(%bound, "status page and metrics at http://{bound}/"),
            Err(e) => tracing::error!("cannot serve HTTP on {addr}: {e}"),
        }
    }
    let s2 = sup.clone();
    sup.spawn_task(async move {
        while hup.recv().await.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            match s2.reload("SIGHUP").await {
                Ok(r) => tracing::info!(?r, "reload applied"),
                Err(e) => tracing::error!("reload rejected, nothing changed: {e}"),
            }
            // After `stop all --include-core` nothing reaches the launcher over the bus: SIGHUP
            // (`systemctl reload`) is the way to bring the core back. A core still being
            // stopped counts too: the start waits for that stop to end.
            if let Some(core) = s2.core_name().map(str::to_string) {
                if s2.info(&core).is_ok_and(|i| {
                    i.pid.is_none() || i.state == hivehub_api::launcher::PluginState::Stopping
                }) {
                    match s2.start(&core).await {
                        Ok(_) => tracing::info!("the core was stopped; started again on SIGHUP"),
                        Err(e) => tracing::error!("cannot start the core again: {e}"),
                    }
                }
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
    });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!("launcher ready");
    // Every autostart plugin is spawned: what only the start ran is let go.
    match hivehub_memory::release_after_start() {
        Ok(r) => tracing::debug!(?r, "start's memory released"),
        Err(e) => tracing::debug!("cannot release the start's memory: {e}"),
    }
    shutdown.await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some((_, cluster)) = &bus {
        // Movable plugins go first, with their leases released, so others take them at once.
        cluster.shutdown().await;
    }
    tracing::info!("stopping all plugins");
    for (name, r) in sup.stop_all_by(false, "launcher shutdown").await {
        if let Err(e) = r {
            tracing::error!(plugin = %name, "{e}");
        }
    }
    // Leave the bus cleanly before the core goes, so nothing tries to reconnect.
    if let Some((bus, _)) = bus {
        bus.disconnect().await;
    }
    for (name, r) in sup.stop_all_by(true, "launcher shutdown").await {
        if let Err(e) = r {
            tracing::error!(plugin = %name, "{e}");
        }
    }
    sup.release_guard();
    // Nothing of the launcher runs after this returns.
    sup.shutdown_tasks().await;
    Ok(())
}

async fn start_hub(
    sup: &Supervisor,
    home: &Home,
    cfg: &config::LauncherConfig,
    server: Option<String>,
) -> Result<(hivehub_client::HubClient, cluster::Cluster), LauncherError> {
    let notices = sup.notices();
    let url = match sup.core_name() {
        Some(core) => {
            sup.start(core).await.map_err(|e| {
                // The core's own words (a config error with its file and line) say more than
                // its exit code: show its last lines.
                let said: Vec<String> = sup
                    .log_tail(core)
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .take(5)
                    .rev()
                    .collect();
                if said.is_empty() {
                    LauncherError::Core(e.to_string())
                } else {
                    LauncherError::Core(format!("{e}; it said:\n  {}", said.join("\n  ")))
                }
            })?;
            sup.core_url().ok_or_else(|| {
                LauncherError::Core(format!(
                    "it reported ready but did not write {}",
                    home.core_url_file().display()
                ))
            })?
        }
        None => server.or_else(|| cfg.server_url.clone()).ok_or_else(|| {
            LauncherError::Bus("no core is configured and no serverURL is set".into())
        })?,
    };
    let mut opts = ClientOptions::from_home(home, &cfg.id, Some(&url))
        .map_err(|e| LauncherError::Bus(e.to_string()))?;
    // Other launchers and `ls --all` see this launcher offline as soon as its connection dies.
    opts.last_will = cluster::last_will(sup);
    let bus = connect_patiently(opts)
        .await
        .map_err(|e| LauncherError::Bus(format!("the launcher cannot connect: {e}")))?;
    tracing::info!(%url, id = %cfg.id, "connected to the hub");
    sup.set_bus(Some(bus.clone()), Some(url));
    sup.spawn_task(service::publish(bus.clone(), notices));
    sup.publish_all_status();
    // Retained statuses live in the core's memory: after a core restart, publish them again.
    let mut state = bus.state();
    let s2 = sup.clone();
    sup.spawn_task(async move {
        let mut was_connected = true;
        while state.changed().await.is_ok() {
            let connected = *state.borrow() == hivehub_client::ConnState::Connected;
            if connected && !was_connected {
                s2.publish_all_status();
            }
            was_connected = connected;
        }
    });
    let cluster = cluster::Cluster::start(sup.clone(), bus.clone())
        .await
        .map_err(|e| LauncherError::Bus(format!("cannot join the hub's launchers: {e}")))?;
    service::serve(&bus, sup, &cluster)
        .await
        .map_err(|e| LauncherError::Bus(format!("cannot serve the launcher service: {e}")))?;
    sup.autostart().await;
    Ok((bus, cluster))
}

/// `config/launcher.yaml` of a home, or the given file.
pub fn config_path(home: &Home, flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| home.config_file("launcher"))
}
