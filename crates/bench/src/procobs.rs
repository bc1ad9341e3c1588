//! Watching processes through `/proc`, the same way whatever supervisor started them, and
//! cleaning up every process a benchmark round started.
//!
//! A plugin process is recognised by its command line: a `#!/bin/sh` script runs as
//! `/bin/sh /tmp/<unique>/.../plugins/pluginNNN`, so every process whose command line contains
//! the round's unique `plugins/` path is a plugin process. Zombies have an empty command line, so
//! they never count.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, Pid};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// What one pass over `/proc` saw.
#[derive(Debug, Clone, Copy)]
pub struct Census {
    /// Distinct plugins with at least one live process (a shell that has forked but not yet
    /// exec'ed `sleep` shows the same command line as its parent and is counted once).
    pub plugins: usize,
    /// Live processes whose command line contains the plugin folder.
    pub processes: usize,
}

/// Counts the live processes whose command line contains a folder.
pub struct Observer {
    needle: Vec<u8>,
    buf: Vec<u8>,
    path: String,
    seen: HashSet<Vec<u8>>,
    /// Passes made, and the time they took (the observer's own cost).
    pub scans: u32,
    /// Total time spent in [`Observer::census`].
    pub scan_time: Duration,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn numeric(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(u8::is_ascii_digit)
}

impl Observer {
    /// Watches for processes whose command line contains `dir` followed by `/`.
    pub fn new(dir: &Path) -> Observer {
        let mut needle = dir.as_os_str().as_bytes().to_vec();
        needle.push(b'/');
        Observer {
            needle,
            buf: Vec::with_capacity(512),
            path: String::with_capacity(32),
            seen: HashSet::new(),
            scans: 0,
            scan_time: Duration::ZERO,
        }
    }

    /// Mean duration of one pass, in milliseconds.
    pub fn mean_scan_ms(&self) -> f64 {
        if self.scans == 0 {
            return 0.0;
        }
        self.scan_time.as_secs_f64() * 1000.0 / f64::from(self.scans)
    }

    /// One pass over `/proc`.
    pub fn census(&mut self) -> Census {
        let t = Instant::now();
        let c = self.census_inner();
        self.scans += 1;
        self.scan_time += t.elapsed();
        c
    }

    fn census_inner(&mut self) -> Census {
        self.seen.clear();
        let mut processes = 0;
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Census {
                plugins: 0,
                processes: 0,
            };
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.as_bytes();
            if !numeric(name) {
                continue;
            }
            self.path.clear();
            self.path.push_str("/proc/");
            self.path.push_str(std::str::from_utf8(name).unwrap_or("0"));
            self.path.push_str("/cmdline");
            self.buf.clear();
            let ok = File::open(&self.path)
                .and_then(|mut f| f.read_to_end(&mut self.buf))
                .is_ok();
            if !ok {
                continue;
            }
            if let Some(i) = find(&self.buf, &self.needle) {
                processes += 1;
                let rest = &self.buf[i + self.needle.len()..];
                let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                if !self.seen.contains(&rest[..end]) {
                    self.seen.insert(rest[..end].to_vec());
                }
            }
        }
        Census {
            plugins: self.seen.len(),
            processes,
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The fields of `/proc/PID/stat` after the command name: index 0 is the state (field 3 in
/// proc(5)), so field `k` of proc(5) is index `k - 3`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = read(&format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `RssAnon`, ...), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let s = read(&format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The resident set size (`VmRSS`) of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS")
}

/// The proportional set size of a process (`Pss` of `/proc/PID/smaps_rollup`: its private
/// pages plus its share of the pages it shares), in bytes. Summed over the processes of a
/// supervision tree it counts shared binaries and libraries once, unlike RSS.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let s = read(&format!("/proc/{pid}/smaps_rollup"))?;
    let line = s.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) of a process, in nanoseconds: the sum of `/proc/PID/task/*/schedstat`
/// (exact, but blind to threads that have exited), or utime + stime of `/proc/PID/stat` (whole
/// process, but truncated to clock ticks) when that is more. A delta of it is exact for a
/// process whose threads all live through the interval, and within two ticks otherwise.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let ticks = cpu_ticks(pid)?;
    let coarse = ticks * 1_000_000_000 / ticks_per_second().max(1);
    let mut exact = 0u64;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let p = e.path().join("schedstat");
            if let Some(ns) = read(&p.to_string_lossy())
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                exact += ns;
            }
        }
    }
    Some(exact.max(coarse))
}

/// The sum of [`cpu_ns`] over `pids` (processes gone count 0).
pub fn cpu_ns_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ns(p)).sum()
}

/// Bytes a process has passed to `write` and its kin (`wchar` of `/proc/PID/io`), to files,
/// pipes and sockets alike.
pub fn written_bytes(pid: u32) -> Option<u64> {
    let s = read(&format!("/proc/{pid}/io"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("wchar:"))?
        .trim()
        .parse()
        .ok()
}

/// The parent of a process.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// A live process (in `/proc` and not a zombie).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

/// The supervision tree of `root`: `root` and its live descendants, leaving out the plugins
/// (processes whose command line contains `plugins` followed by `/`) and everything below
/// them. For the launcher that is the launcher, its guard and hubcore; for runit runsvdir,
/// every runsv (and svlogd); for s6 s6-svscan, every s6-supervise (and s6-log).
pub fn tree(root: u32, plugins: &Path) -> Vec<u32> {
    let mut needle = plugins.as_os_str().as_bytes().to_vec();
    needle.push(b'/');
    let children = children_map();
    let mut out = vec![root];
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            let plugin = std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|b| find(&b, &needle).is_some());
            if !plugin && alive(c) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

/// The name of a process (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Option<String> {
    Some(read(&format!("/proc/{pid}/comm"))?.trim_end().to_string())
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let b = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        b.split(|&c| c == 0)
            .filter(|a| !a.is_empty())
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            std::str::from_utf8(e.file_name().as_bytes())
                .ok()?
                .parse()
                .ok()
        })
        .collect()
}

/// Every process's children, from one pass over `/proc`.
fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids() {
        if let Some(pp) = ppid(pid) {
            children.entry(pp).or_default().push(pid);
        }
    }
    children
}

/// Every live descendant of `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let children = children_map();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for c in children.get(&p).into_iter().flatten() {
            out.push(*c);
            stack.push(*c);
        }
    }
    out
}

/// The environment variable that marks every process a round starts ([`mark`]).
pub const ROUND_ENV: &str = "HIVEHUB_BENCH_ROUND";

/// Marks a supervisor (and so every descendant that keeps its environment: runsv, svlogd,
/// s6-supervise, s6-log, ...) as belonging to the round in `dir`, so that [`sweep`] finds them
/// even when their command line does not name the folder (`runsv plugin001`) and they were
/// re-parented after the supervisor died.
pub fn mark(cmd: &mut std::process::Command, dir: &Path) {
    cmd.env(ROUND_ENV, dir);
}

/// Live processes whose command line contains `dir`, or that carry the round's [`mark`].
fn matching(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_bytes();
    let mut marker = format!("{ROUND_ENV}=").into_bytes();
    marker.extend_from_slice(needle);
    marker.push(0);
    all_pids()
        .into_iter()
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|b| find(&b, needle).is_some())
                || std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|b| find(&b, &marker).is_some())
        })
        .collect()
}

/// The command lines of the processes of the round in `dir` that are alive (as [`sweep`] finds
/// them), counted: `["sleep 1 ×2"]`.
pub fn round_commands(dir: &Path) -> Vec<String> {
    let mut count: std::collections::BTreeMap<String, usize> = Default::default();
    for p in matching(dir) {
        *count.entry(cmdline(p).unwrap_or_default()).or_default() += 1;
    }
    count
        .into_iter()
        .map(|(c, n)| format!("{c} ×{n}"))
        .collect()
}

/// How many processes of the round in `dir` are alive (as [`sweep`] finds them).
pub fn round_processes(dir: &Path) -> usize {
    matching(dir).len()
}

/// SIGKILLs every process whose command line contains `dir` or that carries the round's
/// [`mark`], with its process group (unless that is our own), until none is left or `timeout`
/// passes. Returns how many were found at first: 0 after a clean shutdown.
pub fn sweep(dir: &Path, timeout: Duration) -> usize {
    let own = getpgrp();
    let end = Instant::now() + timeout;
    let mut first = None;
    loop {
        let pids = matching(dir);
        first.get_or_insert(pids.len());
        if pids.is_empty() || Instant::now() >= end {
            return first.unwrap_or(0);
        }
        for pid in pids {
            let pgid = stat_fields(pid).and_then(|f| f.get(2)?.parse::<i32>().ok());
            if let Some(pg) = pgid.filter(|&pg| pg > 1 && Pid::from_raw(pg) != own) {
                let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A supervisor process of one round. Dropping it kills the supervisor, its descendants and
/// every process whose command line contains the round's folder, so nothing outlives a round,
/// even when it fails half-way.
pub struct Supervised {
    /// The supervisor process (None once reaped).
    pub child: Option<Child>,
    /// The round's folder.
    pub dir: std::path::PathBuf,
}

impl Supervised {
    /// The supervisor's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let desc = descendants(c.id());
                let _ = c.kill();
                for d in desc {
                    let _ = kill(Pid::from_raw(d as i32), Signal::SIGKILL);
                }
            }
            let _ = c.wait();
        }
        sweep(&self.dir, Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_figures() {
        let me = std::process::id();
        assert!(pss_bytes(me).is_some_and(|b| b > 0));
        let a = cpu_ns(me).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(me).unwrap() > a);
        assert!(written_bytes(me).is_some());
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
        assert!(alive(me));
        let t = tree(me, Path::new("/nonexistent-plugins"));
        assert_eq!(t[0], me);
    }

    #[test]
    fn the_tree_leaves_plugins_and_their_children_out() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let p = plugins.join("p1");
        std::fs::write(&p, "#!/bin/sh\nsleep 30 & wait\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut helper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut plugin = std::process::Command::new(&p).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t = tree(std::process::id(), &plugins);
        let (h, pl) = (helper.id(), plugin.id());
        let under_plugin = descendants(pl);
        let _ = helper.kill();
        let _ = plugin.kill();
        for c in under_plugin.iter() {
            let _ = kill(Pid::from_raw(*c as i32), Signal::SIGKILL);
        }
        let _ = helper.wait();
        let _ = plugin.wait();
        assert!(t.contains(&h), "{t:?}");
        assert!(!t.contains(&pl), "{t:?}");
        assert!(!under_plugin.is_empty());
        assert!(under_plugin.iter().all(|c| !t.contains(c)), "{t:?}");
    }
}
