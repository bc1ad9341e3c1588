//! Helpers shared by the benchmarks (`launcher`, `control`, `restart`, `monitor`): the trivial
//! plugin, the configurations both supervisors are given, machine checks and small formatting
//! and statistics helpers. Kept in one place so that every benchmark sets the supervisors up,
//! and reports its numbers, the same way.

use crate::procobs;
use anyhow::{Context, Result};
use hivehub_home::Home;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The trivial plugin, the same for both supervisors and every benchmark, so their numbers
/// compare.
pub const PLUGIN_SCRIPT: &str = "#!/bin/sh\nwhile :; do sleep 1; done\n";

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
    let others: Vec<String> = procobs::descendants(1)
        .into_iter()
        .filter_map(|p| Some((p, procobs::cmdline(p)?)))
        .filter(|(_, c)| c.contains("supervisord"))
        .map(|(p, c)| format!("{p} ({c})"))
        .collect();
    if !others.is_empty() {
        eprintln!(
            "warning: other supervisord processes are running and may skew the numbers: {}\n\
             (stop them, e.g. `service supervisor stop`)",
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
    std::fs::create_dir_all(dir)?;
    for name in names {
        let p = dir.join(name);
        std::fs::write(&p, PLUGIN_SCRIPT)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
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

/// A fresh launcher home below `root`: hubcore copied into `bin/`, the plugins in `plugins/`
/// and a launcher.yaml from `conf`. Shared by every launcher case, so all start from the same
/// home.
pub(crate) fn launcher_home(
    root: &Path,
    hubcore: &Path,
    names: &[String],
    conf: &LauncherConf,
) -> Result<Home> {
    let home = Home::at(root.join("home"));
    home.ensure_dirs()?;
    std::fs::copy(hubcore, home.bin().join("hubcore")).context("cannot copy hubcore")?;
    write_plugins(&home.plugins(), names)?;
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
