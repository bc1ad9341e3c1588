//! Helpers shared by the benchmarks (`launcher`, `control`, `restart`, `monitor`, `logs`): the
//! trivial plugin, the configurations every supervisor is given (the launcher, supervisord,
//! runit, s6 and the raw-spawn floor `bench-floor`), how they are started, interruption by a
//! signal, machine checks and small formatting and statistics helpers. Kept in one place so that
//! every benchmark sets the supervisors up, and reports its numbers, the same way.

use crate::procobs;
use anyhow::{bail, Context, Result};
use hivehub_home::Home;
use nix::sys::signal::Signal;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The trivial plugin, the same for both supervisors and every benchmark, so their numbers
/// compare.
pub const PLUGIN_SCRIPT: &str = "#!/bin/sh\nwhile :; do sleep 1; done\n";

/// A plugin that only waits: its shell (whose command line names the plugin, for the observer)
/// and one `sleep`, with no process started after that.
pub const STILL_SCRIPT: &str = "#!/bin/sh\nsleep 1000000\n";

/// An executable file named `name` in a folder of PATH (used to find supervisord and
/// supervisorctl, which are optional).
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Other supervisord processes on the machine would skew the numbers.
pub(crate) fn warn_about_other_supervisords() {
    warn_about_others("supervisord", "e.g. `service supervisor stop`");
}

/// Other processes whose command line contains `what` (other supervisors, which would skew the
/// numbers): a warning that names them.
fn warn_about_others(what: &str, how: &str) {
    let others: Vec<String> = procobs::descendants(1)
        .into_iter()
        .filter_map(|p| Some((p, procobs::cmdline(p)?)))
        .filter(|(_, c)| c.contains(what))
        .map(|(p, c)| format!("{p} ({c})"))
        .collect();
    if !others.is_empty() {
        eprintln!(
            "warning: other {what} processes are running and may skew the numbers: {}\n\
             (stop them, {how})",
            others.join(", ")
        );
    }
}

/// Raises the soft open-files limit (inherited by both supervisors) so N plugins fit: each
/// launcher plugin costs two pipe ends and a log file, each supervisord program three pipe ends
/// and two log files.
pub(crate) fn raise_nofile(max_n: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = (max_n as u64) * 8 + 1024;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    let new_hard = hard.max(want);
    if setrlimit(Resource::RLIMIT_NOFILE, want, new_hard).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(want), hard);
    }
    if let Ok((s, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if s < want {
            eprintln!("note: open-files limit is {s}, below the {want} wanted for N = {max_n}");
        }
    }
}

/// The UTC time of day, to match results against other activity on the machine.
pub(crate) fn clock() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, (s % 3600) / 60, s % 60)
}

/// The 1, 5 and 15 minute load averages, logged at the start and end of a run so a busy
/// machine shows in the log.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `plugin001`..: N distinct plugin names of equal width, so both supervisors list them in the
/// same order.
pub(crate) fn plugin_names(n: usize) -> Vec<String> {
    let width = n.to_string().len().max(3);
    (1..=n).map(|i| format!("plugin{i:0width$}")).collect()
}

/// Writes one executable copy of [`PLUGIN_SCRIPT`] per name into `dir`.
pub(crate) fn write_plugins(dir: &Path, names: &[String]) -> Result<()> {
    write_scripts(dir, names, PLUGIN_SCRIPT)
}

/// Writes one executable copy of `script` per name into `dir`.
pub(crate) fn write_scripts(dir: &Path, names: &[String], script: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in names {
        write_exe(&dir.join(name), script)?;
    }
    Ok(())
}

fn write_exe(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The last `lines` lines of a file (a supervisor's output, quoted in error messages).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The PID a pid file names (the launcher writes `run/NAME.pid`).
pub(crate) fn pid_from_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A duration in milliseconds, the unit of every report.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` quantile (0..=1) of sorted values, interpolated linearly between the closest ranks
/// (so the 0.5 quantile of an even count is the mean of the two middle values).
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = x.floor() as usize;
    let hi = x.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo as f64)
}

/// Sorted copy of durations in milliseconds.
pub(crate) fn sorted_ms(v: &[Duration]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// A temporary folder others may pass through (0711): under a root launcher each plugin runs as
/// a user of its own, which must reach its binary below it. Returns the folder's guard and its
/// canonical path (the plugins' command lines, which the observer matches, hold that path).
pub(crate) fn bench_tempdir(prefix: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
    let root = tmp.path().canonicalize()?;
    Ok((tmp, root))
}

/// What the launcher.yaml of a benchmark home says.
pub(crate) struct LauncherConf {
    /// `createPluginCred`.
    pub creds: bool,
    /// `autorestart`: never, on-failure or always.
    pub autorestart: &'static str,
    /// `backoff: {base: 0s, jitter: 0}` instead of the defaults.
    pub zero_backoff: bool,
    /// `sampleInterval`, e.g. "2s".
    pub sample_interval: &'static str,
    /// Plugins confined (the default); false writes `sandbox: off` for each.
    pub sandbox: bool,
}

impl Default for LauncherConf {
    /// The plain case: no credentials, no restarts, default backoff and sampling, confined.
    fn default() -> Self {
        LauncherConf {
            creds: false,
            autorestart: "never",
            zero_backoff: false,
            sample_interval: "2s",
            sandbox: true,
        }
    }
}

/// The launcher.yaml for `names` as autostart plugins under the settings `c`.
pub(crate) fn launcher_yaml(names: &[String], c: &LauncherConf) -> String {
    let mut y = String::new();
    y.push_str("# written by hivehub-bench\n");
    y.push_str("core: hubcore\nloglevel: info\nlogtofile: false\nlogplugins: true\n");
    let _ = writeln!(y, "autorestart: {}", c.autorestart);
    let _ = writeln!(y, "createPluginCred: {}", c.creds);
    let _ = writeln!(y, "sampleInterval: {}", c.sample_interval);
    if c.zero_backoff {
        y.push_str("backoff: {base: 0s, jitter: 0}\n");
    }
    if names.is_empty() {
        y.push_str("autostart: []\n");
    } else {
        y.push_str("autostart:\n");
        for n in names {
            let _ = writeln!(y, "  - {n}");
        }
    }
    y.push_str("plugins:\n  hubcore:\n    args: [\"--listen\", \"127.0.0.1:0\"]\n");
    if !c.sandbox {
        for n in names {
            let _ = writeln!(y, "  {n}:\n    sandbox: off");
        }
    }
    y
}

/// A supervisord configuration with one program per name. `autorestart=true` restarts a
/// program whatever its exit; false leaves it down.
pub(crate) fn supervisord_conf(
    dir: &Path,
    plugins: &Path,
    names: &[String],
    autorestart: bool,
) -> String {
    let d = dir.display();
    // supervisord needs 3 pipe ends and 2 log files per program; minfds is raised only as far
    // as N needs (the default is 1024), since every spawn closes fds up to minfds.
    let minfds = (names.len() * 6 + 256).max(1024);
    let minprocs = (names.len() * 3 + 200).max(200);
    let mut c = format!(
        "; written by hivehub-bench\n\
         [unix_http_server]\nfile={d}/supervisor.sock\nchmod=0700\n\n\
         [supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\nlogfile_maxbytes=10MB\n\
         logfile_backups=5\nloglevel=info\npidfile={d}/supervisord.pid\nchildlogdir={d}/logs\n\
         minfds={minfds}\nminprocs={minprocs}\n\n\
         [rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n"
    );
    for n in names {
        let _ = write!(
            c,
            "\n[program:{n}]\ncommand={p}/{n}\nautostart=true\nstartsecs=0\nautorestart={autorestart}\n\
             stopsignal=TERM\nstopwaitsecs=10\nstopasgroup=true\nkillasgroup=true\n\
             stdout_logfile={d}/logs/{n}.log\nstdout_logfile_maxbytes=10MB\nstdout_logfile_backups=5\n\
             stderr_logfile={d}/logs/{n}.err.log\nstderr_logfile_maxbytes=10MB\nstderr_logfile_backups=5\n",
            p = plugins.display()
        );
    }
    c
}

/// A fresh launcher home below `root`: hubcore copied into `bin/`, the plugins (copies of
/// `script`) in `plugins/` and a launcher.yaml from `conf`. Shared by every launcher case, so
/// all start from the same home.
pub(crate) fn launcher_home(
    root: &Path,
    hubcore: &Path,
    names: &[String],
    conf: &LauncherConf,
    script: &str,
) -> Result<Home> {
    let home = Home::at(root.join("home"));
    home.ensure_dirs()?;
    std::fs::copy(hubcore, home.bin().join("hubcore")).context("cannot copy hubcore")?;
    write_scripts(&home.plugins(), names, script)?;
    std::fs::write(home.config_file("launcher"), launcher_yaml(names, conf))?;
    Ok(home)
}

/// A supervisord folder `root/sv` with `logs/`, the plugins in `plugins/` and
/// `supervisord.conf`; returns the plugin folder and the configuration file.
pub(crate) fn supervisord_dir(
    root: &Path,
    names: &[String],
    autorestart: bool,
) -> Result<(PathBuf, PathBuf)> {
    let sv = root.join("sv");
    let plugins = sv.join("plugins");
    std::fs::create_dir_all(sv.join("logs"))?;
    write_plugins(&plugins, names)?;
    let conf = sv.join("supervisord.conf");
    std::fs::write(&conf, supervisord_conf(&sv, &plugins, names, autorestart))?;
    Ok((plugins, conf))
}

// ---------------------------------------------------------------------------------------------
// The peers: runit, s6 and the raw-spawn floor

/// The binaries of runit (Debian package `runit`).
pub(crate) struct RunitBins {
    pub runsvdir: PathBuf,
    pub sv: PathBuf,
    pub svlogd: PathBuf,
}

/// The binaries of s6 (Debian package `s6`).
pub(crate) struct S6Bins {
    pub svscan: PathBuf,
    pub svstat: PathBuf,
    pub log: PathBuf,
}

/// The peers found on this machine; a peer that is missing or left out is None (and a note
/// says why).
pub(crate) struct PeerBins {
    pub runit: Option<RunitBins>,
    pub s6: Option<S6Bins>,
    /// `bench-floor`, next to this binary.
    pub floor: Option<PathBuf>,
}

/// Finds every binary of `names` in PATH, or says which are missing.
fn find_all(names: &[&str]) -> Result<Vec<PathBuf>, String> {
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find_in_path(n)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        Ok(found.into_iter().flatten().collect())
    } else {
        Err(missing.join(", "))
    }
}

impl PeerBins {
    /// runit and s6 from PATH (unless left out), `bench-floor` next to this binary; prints a
    /// note for each peer that is skipped.
    pub fn find(no_runit: bool, no_s6: bool) -> PeerBins {
        let runit = if no_runit {
            eprintln!("note: runit skipped (--no-runit)");
            None
        } else {
            match find_all(&["runsvdir", "runsv", "sv", "svlogd"]) {
                Ok(v) => {
                    eprintln!("runit: {}", v[0].display());
                    warn_about_others("runsvdir", "e.g. `sv down` or SIGHUP to runsvdir");
                    Some(RunitBins {
                        runsvdir: v[0].clone(),
                        sv: v[2].clone(),
                        svlogd: v[3].clone(),
                    })
                }
                Err(m) => {
                    eprintln!("note: runit not found ({m} missing from PATH; Debian: apt-get install runit); its rows are skipped");
                    None
                }
            }
        };
        let s6 = if no_s6 {
            eprintln!("note: s6 skipped (--no-s6)");
            None
        } else {
            match find_all(&["s6-svscan", "s6-supervise", "s6-svstat", "s6-log"]) {
                Ok(v) => {
                    eprintln!("s6: {}", v[0].display());
                    warn_about_others("s6-svscan", "e.g. `s6-svscanctl -t`");
                    Some(S6Bins {
                        svscan: v[0].clone(),
                        svstat: v[2].clone(),
                        log: v[3].clone(),
                    })
                }
                Err(m) => {
                    eprintln!("note: s6 not found ({m} missing from PATH; Debian: apt-get install s6); its rows are skipped");
                    None
                }
            }
        };
        let floor = match crate::sibling_binary("bench-floor") {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("note: the floor is skipped: {e:#}");
                None
            }
        };
        PeerBins { runit, s6, floor }
    }

    /// No peer (for a benchmark of the launcher alone).
    pub fn none() -> PeerBins {
        PeerBins {
            runit: None,
            s6: None,
            floor: None,
        }
    }

    /// Whether `peer` can run here.
    pub fn has(&self, peer: Peer) -> bool {
        match peer {
            Peer::Runit => self.runit.is_some(),
            Peer::S6 { .. } => self.s6.is_some(),
            Peer::Floor => self.floor.is_some(),
        }
    }
}

/// A peer supervisor, given the same plugins as the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Peer {
    /// runsvdir over a service folder: one runsv per plugin.
    Runit,
    /// s6-svscan over a scan folder: one s6-supervise per plugin. `ready`: the run script
    /// reports readiness at once (`notification-fd`); without it s6-supervise waits 1 s before
    /// every restart.
    S6 { ready: bool },
    /// `bench-floor`: fork/exec, waitpid on SIGCHLD, restart at once, nothing else.
    Floor,
}

/// A peer's folder, ready to start.
pub(crate) struct PeerDir {
    /// The supervisor's command line.
    pub cmd: Command,
    /// The folder holding the plugin executables.
    pub plugins: PathBuf,
    /// runit and s6: the service folder of each plugin (for `sv` and `s6-svstat`).
    pub services: Vec<PathBuf>,
    /// runit and s6 with `logged`: the folder each plugin's logger writes.
    pub logs: Vec<PathBuf>,
    /// What stops the whole tree: runsvdir exits at once on SIGTERM and leaves its runsv
    /// running; SIGHUP makes it send SIGTERM to every runsv first (runsvdir(8)).
    pub stop: Signal,
}

/// Size after which every logger starts a new file (the launcher's default `logMaxSize`).
pub(crate) const LOG_ROTATE_BYTES: u64 = 10_000_000;
/// Old files every logger keeps (the launcher's default `logMaxFiles`).
pub(crate) const LOG_KEEP_FILES: usize = 5;

/// Writes a peer's folder below `root` for `names`, each plugin a copy of `script`. runit and s6
/// run a plugin through a `run` script that execs it (as their services always do), so the
/// plugin's command line is the same as under the launcher. With `logged`, each plugin gets a
/// logger (runit: `svlogd -tt`; s6: `s6-log T`; both a timestamp per line, like the launcher,
/// rotating at [`LOG_ROTATE_BYTES`] and keeping [`LOG_KEEP_FILES`]).
pub(crate) fn peer_dir(
    peer: Peer,
    bins: &PeerBins,
    root: &Path,
    names: &[String],
    script: &str,
    logged: bool,
) -> Result<PeerDir> {
    let (sub, stop) = match peer {
        Peer::Runit => ("runit", Signal::SIGHUP),
        Peer::S6 { .. } => ("s6", Signal::SIGTERM),
        Peer::Floor => ("floor", Signal::SIGTERM),
    };
    let base = root.join(sub);
    let plugins = base.join("plugins");
    write_scripts(&plugins, names, script)?;
    let mut services = Vec::new();
    let mut logs = Vec::new();
    let services_root = base.join("service");
    let mut service = |name: &str, run: String, logger: Option<(String, Option<&str>)>| {
        let dir = services_root.join(name);
        std::fs::create_dir_all(&dir)?;
        write_exe(&dir.join("run"), &run)?;
        if let Some((log_run, config)) = logger {
            let main = dir.join("log").join("main");
            std::fs::create_dir_all(&main)?;
            write_exe(&dir.join("log").join("run"), &log_run)?;
            if let Some(c) = config {
                std::fs::write(main.join("config"), c)?;
            }
            logs.push(main);
        }
        services.push(dir);
        anyhow::Ok(())
    };
    let exec = |name: &str| format!("exec {}", plugins.join(name).display());
    let cmd = match peer {
        Peer::Runit => {
            let b = bins.runit.as_ref().context("runit is not installed")?;
            let config = format!("s{LOG_ROTATE_BYTES}\nn{LOG_KEEP_FILES}\n");
            for n in names {
                let logger = logged.then(|| {
                    (
                        format!("#!/bin/sh\nexec {} -tt ./main\n", b.svlogd.display()),
                        Some(config.as_str()),
                    )
                });
                service(n, format!("#!/bin/sh\n{}\n", exec(n)), logger)?;
            }
            // runsvdir sleeps 1 s before scanning a folder modified within the current second;
            // a service folder is normally written long before runsvdir starts.
            std::fs::File::open(&services_root)?
                .set_modified(SystemTime::now() - Duration::from_secs(60))
                .context("cannot set the service folder's mtime")?;
            let mut c = Command::new(&b.runsvdir);
            c.arg(&services_root);
            c
        }
        Peer::S6 { ready } => {
            let b = bins.s6.as_ref().context("s6 is not installed")?;
            for n in names {
                let run = if ready {
                    format!("#!/bin/sh\necho >&3\n{} 3>&-\n", exec(n))
                } else {
                    format!("#!/bin/sh\n{}\n", exec(n))
                };
                let logger = logged.then(|| {
                    (
                        format!(
                            "#!/bin/sh\nexec {} n{LOG_KEEP_FILES} s{LOG_ROTATE_BYTES} T ./main\n",
                            b.log.display()
                        ),
                        None,
                    )
                });
                service(n, run, logger)?;
                if ready {
                    std::fs::write(services_root.join(n).join("notification-fd"), "3\n")?;
                }
            }
            let mut c = Command::new(&b.svscan);
            // s6-svscan keeps at most 500 services unless told more (a logger is one more).
            let max = (names.len() * 2 + 16).max(500);
            c.arg(format!("-c{max}")).arg(&services_root);
            c
        }
        Peer::Floor => {
            let bin = bins.floor.as_ref().context("bench-floor is not built")?;
            let list = base.join("programs");
            let mut text = String::new();
            for n in names {
                let _ = writeln!(text, "{}", plugins.join(n).display());
            }
            std::fs::write(&list, text)?;
            let mut c = Command::new(bin);
            c.arg(&list);
            c
        }
    };
    Ok(PeerDir {
        cmd,
        plugins,
        services,
        logs,
        stop,
    })
}

/// Sets a supervisor's command up to start as a service manager would start it: its own
/// session (with the kernel's autogroup scheduling it then gets a CPU share of its own instead
/// of sharing the benchmark's; a Ctrl-C in the terminal reaches only the benchmark, which then
/// stops it), stdin from /dev/null, stdout and stderr into `out`, and the round's mark
/// ([`procobs::mark`]) so that the clean-up finds all it starts.
pub(crate) fn prepare_supervisor(cmd: &mut Command, round: &Path, out: &Path) -> Result<()> {
    let log = std::fs::File::create(out)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    procobs::mark(cmd, round);
    // SAFETY: only setsid, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Interruption

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT, SIGTERM and SIGHUP into a flag, so a benchmark in progress is abandoned through
/// its guards (which kill what it started) instead of leaving its supervisors running. Every
/// wait of the supervisor benchmarks checks the flag ([`check_interrupted`], [`nap`]).
pub(crate) fn catch_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// An error once SIGINT, SIGTERM or SIGHUP has arrived.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d`, in short slices so an interruption is noticed quickly.
pub(crate) fn nap(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

// ---------------------------------------------------------------------------------------------
// Tables

/// A value with its unit, or a dash.
pub(crate) fn cell(v: Option<f64>, unit: &str, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}{unit}"),
        None => "—".into(),
    }
}

/// `a / b` with two decimals, or a dash.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// Prints a Markdown table: a first column `head` with a label per row, a column per case
/// (`cols`, values in `unit` with `decimals`), then a ratio column `A/B` per pair `(a, b)` of
/// case indexes in `ratios`.
pub(crate) fn md_table(
    head: &str,
    cols: &[String],
    ratios: &[(usize, usize)],
    rows: &[(String, Vec<Option<f64>>)],
    unit: &str,
    decimals: usize,
) {
    let mut h = format!("| {head} |");
    for c in cols {
        let _ = write!(h, " {c} |");
    }
    for &(a, b) in ratios {
        let _ = write!(h, " {}/{} |", cols[a], cols[b]);
    }
    println!("{h}");
    println!("|{}", "---|".repeat(1 + cols.len() + ratios.len()));
    for (label, vals) in rows {
        let mut l = format!("| {label} |");
        for v in vals {
            let _ = write!(l, " {} |", cell(*v, unit, decimals));
        }
        for &(a, b) in ratios {
            let _ = write!(l, " {} |", ratio(vals[a], vals[b]));
        }
        println!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_padded() {
        let v = plugin_names(500);
        assert_eq!(v[0], "plugin001");
        assert_eq!(v[499], "plugin500");
        assert_eq!(plugin_names(1000)[0], "plugin0001");
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(quantile(&[5.0], 0.9), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!((quantile(&v, 0.9) - 18.1).abs() < 1e-9);
    }

    #[test]
    fn launcher_yaml_has_the_keys() {
        let names = plugin_names(2);
        let y = launcher_yaml(
            &names,
            &LauncherConf {
                creds: false,
                autorestart: "always",
                zero_backoff: true,
                sample_interval: "2s",
                sandbox: true,
            },
        );
        assert!(y.contains("createPluginCred: false\n"), "{y}");
        assert!(y.contains("autorestart: always\n"), "{y}");
        assert!(y.contains("backoff: {base: 0s, jitter: 0}\n"), "{y}");
        assert!(y.contains("  - plugin002\n"), "{y}");
        let y = launcher_yaml(
            &[],
            &LauncherConf {
                creds: true,
                autorestart: "never",
                zero_backoff: false,
                sample_interval: "1h",
                sandbox: true,
            },
        );
        assert!(y.contains("autostart: []\n"), "{y}");
        assert!(!y.contains("backoff"), "{y}");
    }

    /// Peer binaries that need not exist: `peer_dir` only names them.
    fn fake_peers() -> PeerBins {
        PeerBins {
            runit: Some(RunitBins {
                runsvdir: "/x/runsvdir".into(),
                sv: "/x/sv".into(),
                svlogd: "/x/svlogd".into(),
            }),
            s6: Some(S6Bins {
                svscan: "/x/s6-svscan".into(),
                svstat: "/x/s6-svstat".into(),
                log: "/x/s6-log".into(),
            }),
            floor: Some("/x/bench-floor".into()),
        }
    }

    #[test]
    fn runit_dir_execs_each_plugin_and_is_backdated() {
        let tmp = tempfile::tempdir().unwrap();
        let names = plugin_names(2);
        let d = peer_dir(
            Peer::Runit,
            &fake_peers(),
            tmp.path(),
            &names,
            PLUGIN_SCRIPT,
            true,
        )
        .unwrap();
        assert_eq!(d.stop, Signal::SIGHUP);
        assert_eq!(d.services.len(), 2);
        let run = std::fs::read_to_string(d.services[1].join("run")).unwrap();
        assert_eq!(
            run,
            format!(
                "#!/bin/sh\nexec {}\n",
                d.plugins.join("plugin002").display()
            )
        );
        let log = std::fs::read_to_string(d.services[0].join("log/run")).unwrap();
        assert!(log.contains("exec /x/svlogd -tt ./main\n"), "{log}");
        let conf = std::fs::read_to_string(d.logs[0].join("config")).unwrap();
        assert_eq!(conf, "s10000000\nn5\n");
        let age = std::fs::metadata(d.services[0].parent().unwrap())
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap();
        assert!(age >= Duration::from_secs(50), "{age:?}");
        assert_eq!(
            std::fs::read_to_string(d.plugins.join("plugin001")).unwrap(),
            PLUGIN_SCRIPT
        );
    }

    #[test]
    fn s6_dir_reports_readiness_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let names = plugin_names(1);
        let peers = fake_peers();
        let d = peer_dir(
            Peer::S6 { ready: true },
            &peers,
            tmp.path(),
            &names,
            "x",
            false,
        )
        .unwrap();
        assert_eq!(d.stop, Signal::SIGTERM);
        assert!(d.logs.is_empty());
        let svc = &d.services[0];
        assert_eq!(
            std::fs::read_to_string(svc.join("notification-fd")).unwrap(),
            "3\n"
        );
        let run = std::fs::read_to_string(svc.join("run")).unwrap();
        assert!(run.starts_with("#!/bin/sh\necho >&3\nexec "), "{run}");
        assert!(run.ends_with(" 3>&-\n"), "{run}");
        let args: Vec<String> = d
            .cmd
            .get_args()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert_eq!(args[0], "-c500");

        let tmp = tempfile::tempdir().unwrap();
        let d = peer_dir(
            Peer::S6 { ready: false },
            &peers,
            tmp.path(),
            &names,
            "x",
            true,
        )
        .unwrap();
        assert!(!d.services[0].join("notification-fd").exists());
        let log = std::fs::read_to_string(d.services[0].join("log/run")).unwrap();
        assert!(log.contains("/x/s6-log n5 s10000000 T ./main"), "{log}");
    }

    #[test]
    fn floor_reads_its_programs_from_a_list() {
        let tmp = tempfile::tempdir().unwrap();
        let names = plugin_names(3);
        let d = peer_dir(Peer::Floor, &fake_peers(), tmp.path(), &names, "x", false).unwrap();
        let list = d.cmd.get_args().next().unwrap().to_owned();
        let text = std::fs::read_to_string(&list).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(
            text.lines().next().unwrap(),
            d.plugins.join("plugin001").to_str().unwrap()
        );
        // The floor's own command line must not look like a plugin's to the observer.
        let mut needle = d.plugins.into_os_string().into_string().unwrap();
        needle.push('/');
        assert!(!list.to_string_lossy().contains(&needle));
    }

    #[test]
    fn a_missing_peer_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let e = peer_dir(Peer::Runit, &PeerBins::none(), tmp.path(), &[], "x", false);
        assert!(e.is_err());
    }

    #[test]
    fn supervisord_conf_lists_every_plugin_with_its_restart_policy() {
        let names = plugin_names(3);
        let c = supervisord_conf(Path::new("/x"), Path::new("/x/plugins"), &names, false);
        assert_eq!(c.matches("[program:").count(), 3);
        assert!(c.contains("command=/x/plugins/plugin002\n"));
        assert!(c.contains("minfds=1024\n"));
        assert_eq!(c.matches("autorestart=false\n").count(), 3);
        let c = supervisord_conf(Path::new("/x"), Path::new("/x/plugins"), &names, true);
        assert_eq!(c.matches("autorestart=true\n").count(), 3);
    }
}
