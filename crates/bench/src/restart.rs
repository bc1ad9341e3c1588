//! `hivehub-bench restart` and `hivehub-bench monitor`.
//!
//! # restart
//! Crash-to-restart latency: N trivial plugins run under the launcher (`autorestart: always`,
//! `backoff: {base: 0s, jitter: 0}`, credentials off, and in a second case on), under Debian's
//! supervisord (`autorestart=true`, `startsecs=0`), runit (runsvdir; runsv restarts at once a
//! service that ran for at least 1 s, after 1 s one that ran less, runsv(8); every plugin here has
//! run for seconds), s6 (s6-svscan; s6-supervise restarts at once only a service that reported
//! readiness through `notification-fd` at least 1 s earlier, else after 1 s: the `run` scripts
//! report readiness at once, and a second case without it shows the default) and the raw-spawn
//! floor `bench-floor`, one supervisor at a time. Each trial picks a different plugin, reads its
//! PID (launcher: `run/{name}.pid`, checked against `/proc`; the others: found in `/proc`),
//! sends it SIGKILL and watches from outside until a new process of that plugin exists:
//!
//! * every `--poll-us` (default 200 µs) the observer reads `/proc/sys/kernel/ns_last_pid`; every
//!   PID allocated since the kill is a candidate, kept while it is a child of the killed
//!   process's parent (the supervisor; for runit and s6 the plugin's runsv or s6-supervise),
//!   until its `/proc/PID/cmdline` holds the plugin's path (the fork has exec'd the plugin). A
//!   poll costs a few small reads, so the resolution is the poll interval, not a `/proc` scan;
//! * the latency is the time from just before `kill(2)` to the poll that saw the new process
//!   (an upper bound; the previous poll, a mean gap earlier, had not seen it yet);
//! * the same poll loop notes when the killed process became a zombie and when it was reaped;
//! * where the kernel's process events are open to the benchmark (root; see `procev`), the
//!   same trials are also timed exactly, the same way for every supervisor: the old process's
//!   exit, the fork of its replacement by its supervisor and the replacement's exec, each
//!   stamped by the kernel, which splits a restart into the kill, the supervisor's reaction and
//!   the child's set-up;
//! * for the launcher, its own log gives the internal timeline (`plugin exited`, `restarting`,
//!   `started`, timestamps in µs), and after each trial the benchmark checks that
//!   `run/{name}.pid` names the new process.
//!
//! Trials are 500 ms apart, so the previous restart's clean-up is done.
//!
//! # monitor
//! The launcher's own CPU with N idle plugins (credentials off, `sampleInterval: 2s`): after all
//! N run and the launcher is ready, a settle time, then utime + stime of the launcher process
//! (all its threads, not its children) from `/proc/PID/stat` over a window, in percent of one
//! core. N = 0 is always measured, so the cost of N plugins reads as the difference; the largest
//! N is also measured with `sampleInterval: 1h` (the monitor samples once at start, then not
//! within the window), which isolates the sampling from the other per-plugin work (the plugin
//! watcher rescans `plugins/` every 2 s). Cases are interleaved within each round.

use crate::common;
use crate::common::{
    check_interrupted, clock, loadavg, ms, nap, pid_from_file, plugin_names, quantile,
    raise_nofile, sorted_ms, tail, LauncherConf, Peer, PeerBins, PLUGIN_SCRIPT,
};
use crate::control::{start_timeout, Bins, Setup};
use crate::procev;
use crate::procobs;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Pause between trials.
const BETWEEN_TRIALS: Duration = Duration::from_millis(500);
/// Longest a restart may take before the trial fails.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// /proc helpers

fn read_small(path: &str, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .is_ok()
}

/// State and parent PID of a process, from `/proc/PID/stat`.
fn state_ppid(pid: u32, buf: &mut Vec<u8>) -> Option<(u8, u32)> {
    if !read_small(&format!("/proc/{pid}/stat"), buf) {
        return None;
    }
    let close = buf.iter().rposition(|&c| c == b')')?;
    let rest = std::str::from_utf8(&buf[close + 1..]).ok()?;
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.bytes().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn cmdline_has(pid: u32, needle: &[u8], buf: &mut Vec<u8>) -> bool {
    read_small(&format!("/proc/{pid}/cmdline"), buf) && contains(buf, needle)
}

/// A live process whose command line holds `needle` and whose parent is `sup` or a child of
/// `sup` (runsv, s6-supervise), found by a full `/proc` scan: its PID and its parent's.
fn find_plugin(sup: u32, needle: &[u8], except: u32) -> Option<(u32, u32)> {
    let mut buf = Vec::with_capacity(512);
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = std::str::from_utf8(e.file_name().as_bytes())
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == except {
            continue;
        }
        if let Some((state, ppid)) = state_ppid(pid, &mut buf) {
            if state != b'Z'
                && cmdline_has(pid, needle, &mut buf)
                && (ppid == sup || state_ppid(ppid, &mut buf).is_some_and(|(_, pp)| pp == sup))
            {
                return Some((pid, ppid));
            }
        }
    }
    None
}

fn read_u32(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The PIDs the kernel allocates, read from `/proc/sys/kernel/ns_last_pid`.
struct PidCursor {
    last: u32,
    pid_max: u32,
    buf: Vec<u8>,
}

/// At most this many new PIDs are followed per poll; beyond (a fork storm or a wrap-around),
/// the caller falls back to a full scan.
const MAX_FRESH: u32 = 4096;

impl PidCursor {
    fn new() -> Result<PidCursor> {
        let last = read_u32("/proc/sys/kernel/ns_last_pid")
            .context("cannot read /proc/sys/kernel/ns_last_pid")?;
        Ok(PidCursor {
            last,
            pid_max: read_u32("/proc/sys/kernel/pid_max").unwrap_or(4_194_304),
            buf: Vec::with_capacity(16),
        })
    }

    /// Appends the PIDs allocated since the previous call; false when there were too many to
    /// follow (the caller must scan).
    fn fresh(&mut self, out: &mut Vec<u32>) -> bool {
        if !read_small("/proc/sys/kernel/ns_last_pid", &mut self.buf) {
            return false;
        }
        let Some(now) = std::str::from_utf8(&self.buf)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return false;
        };
        let ok = fresh_range(self.last, now, self.pid_max, out);
        self.last = now;
        ok
    }
}

/// PIDs in (last, now], wrapping at `pid_max` (after a wrap the kernel restarts at 300).
fn fresh_range(last: u32, now: u32, pid_max: u32, out: &mut Vec<u32>) -> bool {
    if now == last {
        return true;
    }
    let count = if now > last {
        now - last
    } else {
        pid_max.saturating_sub(last + 1) + now.saturating_sub(299)
    };
    if count > MAX_FRESH {
        return false;
    }
    if now > last {
        out.extend(last + 1..=now);
    } else {
        out.extend(last + 1..pid_max);
        out.extend(300..=now);
    }
    true
}

// ---------------------------------------------------------------------------------------------
// restart

/// The command-line options of `hivehub-bench restart`.
pub struct RestartOpts {
    /// Plugins.
    pub n: usize,
    /// Trials per case.
    pub trials: usize,
    /// Observer interval.
    pub poll: Duration,
    /// Leave supervisord out even when it is installed.
    pub no_supervisord: bool,
    /// Leave runit out even when it is installed.
    pub no_runit: bool,
    /// Leave s6 out even when it is installed.
    pub no_s6: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    LauncherOff,
    LauncherOn,
    /// Credentials off and every plugin `sandbox: off`: the cost of the sandbox per spawn.
    LauncherNoSandbox,
    Supervisord,
    /// runit, s6 (readiness reported at once, so restarts are immediate; `ready: false` is s6's
    /// default, 1 s before every restart) or the floor.
    Peer(Peer),
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::LauncherOff => "launcher (creds off)",
            Case::LauncherOn => "launcher (creds on)",
            Case::LauncherNoSandbox => "launcher (creds off, sandbox off)",
            Case::Supervisord => "supervisord",
            Case::Peer(Peer::Runit) => "runit",
            Case::Peer(Peer::S6 { ready: true }) => "s6",
            Case::Peer(Peer::S6 { ready: false }) => "s6 (default: no readiness notification)",
            Case::Peer(Peer::Floor) => "floor",
        }
    }
}

/// The reference of the ratio column.
const REFERENCE: Case = Case::Peer(Peer::Runit);

/// One crash and restart.
#[derive(Debug, Clone)]
struct Trial {
    plugin: String,
    old: u32,
    new: u32,
    /// SIGKILL until the new process was seen.
    latency: Duration,
    /// SIGKILL until the old process was seen as a zombie (if a poll caught that state).
    zombie: Option<Duration>,
    /// SIGKILL until the old process was gone from /proc (reaped).
    reaped: Option<Duration>,
    polls: u32,
    /// Mean time between two polls.
    gap: Duration,
    /// The new process is still alive, with the plugin's command line, after the pause.
    survived: bool,
    /// Launcher only: `run/{name}.pid` names the new process after the pause.
    pidfile_ok: Option<bool>,
    /// Launcher only: its log lines, in ms after SIGKILL.
    log: LogTimes,
    /// The kernel's timeline of the restart, when its process events are open to us.
    exact: Option<procev::Restart>,
}

#[derive(Debug, Clone, Copy, Default)]
struct LogTimes {
    exited: Option<f64>,
    restarting: Option<f64>,
    started: Option<f64>,
}

/// Seconds since midnight UTC, with fractions.
fn day_secs(t: SystemTime) -> f64 {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    d % 86_400.0
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The time of day of a tracing line (`2026-11-26T09:26:20.123456Z  WARN ...`), in seconds.
fn line_day_secs(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let t = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut p = t.split(':');
    let h: f64 = p.next()?.parse().ok()?;
    let m: f64 = p.next()?.parse().ok()?;
    let s: f64 = p.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The launcher's log lines about `plugin` written after byte `from`, as ms after `t0`.
fn log_times(out: &Path, from: u64, plugin: &str, t0: SystemTime) -> LogTimes {
    let mut text = String::new();
    let ok = File::open(out)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_string(&mut text)
        })
        .is_ok();
    let mut lt = LogTimes::default();
    if !ok {
        return lt;
    }
    let base = day_secs(t0);
    // `plugin=NAME`, or `plugin="NAME"` where the field is recorded with Debug.
    let fields = [format!("plugin={plugin}"), format!("plugin=\"{plugin}\"")];
    for raw in text.lines() {
        let line = strip_ansi(raw);
        if !line
            .split_whitespace()
            .any(|w| fields.iter().any(|f| f == w))
        {
            continue;
        }
        let Some(s) = line_day_secs(&line) else {
            continue;
        };
        let mut d = s - base;
        if d < -43_200.0 {
            d += 86_400.0;
        }
        let at = Some(d * 1000.0);
        if line.contains("plugin exited") && lt.exited.is_none() {
            lt.exited = at;
        } else if line.contains(" restarting") && lt.restarting.is_none() {
            lt.restarting = at;
        } else if line.contains(" started") && lt.started.is_none() {
            lt.started = at;
        }
    }
    lt
}

struct Candidate {
    pid: u32,
    since: Instant,
    seen: bool,
}

/// Kills the plugin's process and waits for its replacement.
fn trial(
    s: &Setup,
    name: &str,
    poll: Duration,
    mut events: Option<&mut procev::ProcEvents>,
) -> Result<Trial> {
    let sup = s.pid();
    let path = s.plugins.join(name);
    let mut needle = path.as_os_str().as_bytes().to_vec();
    needle.push(0);
    let mut buf = Vec::with_capacity(512);

    let scan = || find_plugin(sup, &needle, 0).with_context(|| format!("{name} is not running"));
    // The plugin's parent: the supervisor, or for runit and s6 the plugin's runsv or s6-supervise.
    let (old, parent) = match &s.home {
        Some(home) => {
            let f = home.run().join(format!("{name}.pid"));
            match pid_from_file(&f) {
                Some(p)
                    if state_ppid(p, &mut buf).is_some_and(|(_, pp)| pp == sup)
                        && cmdline_has(p, &needle, &mut buf) =>
                {
                    (p, sup)
                }
                other => {
                    eprintln!(
                        "note: {} holds {other:?}, not a live process of {name}; using /proc",
                        f.display()
                    );
                    scan()?
                }
            }
        }
        None => scan()?,
    };
    let log_from = std::fs::metadata(&s.out).map(|m| m.len()).unwrap_or(0);

    let mut cursor = PidCursor::new()?;
    let mut fresh = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let (mut zombie, mut reaped) = (None, None);
    let mut polls = 0u32;
    if let Some(ev) = events.as_deref_mut() {
        ev.drain();
    }
    let wall0 = SystemTime::now();
    let t0_ns = procev::now_ns();
    let t0 = Instant::now();
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).context("cannot kill the plugin")?;
    let (new, latency) = 'watch: loop {
        polls += 1;
        if reaped.is_none() {
            let now = t0.elapsed();
            match state_ppid(old, &mut buf) {
                None => reaped = Some(now),
                Some((b'Z', _)) => {
                    zombie.get_or_insert(now);
                }
                Some(_) => {}
            }
        }
        fresh.clear();
        if cursor.fresh(&mut fresh) {
            let now = Instant::now();
            cands.extend(fresh.iter().map(|&pid| Candidate {
                pid,
                since: now,
                seen: false,
            }));
        } else if let Some((p, _)) = find_plugin(sup, &needle, old) {
            break 'watch (p, t0.elapsed());
        }
        let mut found = None;
        cands.retain_mut(|c| match state_ppid(c.pid, &mut buf) {
            // Not visible yet (just allocated) or gone.
            None => !c.seen && c.since.elapsed() < Duration::from_millis(200),
            Some((state, ppid)) => {
                c.seen = true;
                if ppid != parent {
                    return false;
                }
                if state != b'Z' && found.is_none() && cmdline_has(c.pid, &needle, &mut buf) {
                    found = Some(c.pid);
                }
                true
            }
        });
        if let Some(p) = found {
            break 'watch (p, t0.elapsed());
        }
        check_interrupted()?;
        if t0.elapsed() > TRIAL_TIMEOUT {
            bail!(
                "no new process of {name} within {:.0} s of SIGKILL (old pid {old}); {}'s output:\n{}",
                TRIAL_TIMEOUT.as_secs_f64(),
                s.label,
                tail(&s.out, 20)
            );
        }
        std::thread::sleep(poll);
    };
    let gap = latency / polls.max(1);
    // The new process has exec'd (its command line says so): its events are in the socket.
    let exact = events.map(|ev| procev::Restart::find(&ev.drain(), t0_ns, old, new, parent));

    nap(BETWEEN_TRIALS)?;
    let survived = state_ppid(new, &mut buf).is_some_and(|(st, pp)| st != b'Z' && pp == parent)
        && cmdline_has(new, &needle, &mut buf);
    let pidfile_ok = s.home.as_ref().map(|h| {
        let f = h.run().join(format!("{name}.pid"));
        pid_from_file(&f) == Some(new)
    });
    let log = if s.home.is_some() {
        log_times(&s.out, log_from, name, wall0)
    } else {
        LogTimes::default()
    };
    Ok(Trial {
        plugin: name.to_string(),
        old,
        new,
        latency,
        zombie,
        reaped,
        polls,
        gap,
        survived,
        pidfile_ok,
        log,
        exact,
    })
}

struct CaseResult {
    trials: Vec<Trial>,
    failed: usize,
    lost: usize,
    load: String,
}

fn run_case(
    case: Case,
    bins: &Bins,
    o: &RestartOpts,
    events: &mut Option<procev::ProcEvents>,
) -> Result<CaseResult> {
    let names = plugin_names(o.n);
    let mut s = match case {
        Case::LauncherOff | Case::LauncherOn | Case::LauncherNoSandbox => Setup::launcher(
            bins,
            &names,
            &LauncherConf {
                creds: case == Case::LauncherOn,
                autorestart: "always",
                zero_backoff: true,
                sample_interval: "2s",
                sandbox: case != Case::LauncherNoSandbox,
            },
            case.label(),
        )?,
        Case::Supervisord => Setup::supervisord(
            bins.supervisord.as_ref().context("no supervisord")?,
            &names,
            true,
        )?,
        Case::Peer(p) => Setup::peer(bins, p, &names, PLUGIN_SCRIPT, false, case.label())?,
    };
    let took = s.wait_all_running(start_timeout(o.n))?;
    if s.home.is_some() {
        s.wait_output("launcher ready", Duration::from_secs(60))?;
    }
    eprintln!(
        "{} {}: {} plugins running after {:.0} ms",
        clock(),
        case.label(),
        o.n,
        ms(took)
    );
    nap(Duration::from_secs(2))?;
    let load = loadavg();
    eprintln!(
        "{} {}: load average before the trials: {load}",
        clock(),
        case.label()
    );
    // A different plugin per trial, spread over the list.
    let step = (o.n / o.trials.max(1)).max(1);
    let mut res = CaseResult {
        trials: Vec::new(),
        failed: 0,
        lost: 0,
        load,
    };
    for i in 0..o.trials {
        let name = &names[(i * step) % o.n];
        match trial(&s, name, o.poll, events.as_mut()) {
            Ok(t) => {
                let survived = if t.survived {
                    ""
                } else {
                    ", the new process did NOT survive the pause"
                };
                let pidfile = match t.pidfile_ok {
                    Some(false) => ", run/NAME.pid does NOT name the new process",
                    _ => "",
                };
                eprintln!(
                    "{} {} trial {}/{}: {} pid {} -> {}: {:.2} ms (zombie seen {}, reaped {}, {} polls, gap {:.0} µs){survived}{pidfile}{}",
                    clock(),
                    case.label(),
                    i + 1,
                    o.trials,
                    t.plugin,
                    t.old,
                    t.new,
                    ms(t.latency),
                    t.zombie.map_or("-".into(), |d| format!("{:.2} ms", ms(d))),
                    t.reaped.map_or("?".into(), |d| format!("{:.2} ms", ms(d))),
                    t.polls,
                    t.gap.as_secs_f64() * 1e6,
                    if s.home.is_some() {
                        format!(
                            "; launcher log: exited {} restarting {} started {} ms",
                            opt(t.log.exited),
                            opt(t.log.restarting),
                            opt(t.log.started)
                        )
                    } else {
                        String::new()
                    }
                );
                res.trials.push(t);
            }
            Err(e) => {
                check_interrupted()?;
                eprintln!("{} trial {}: FAILED: {e:#}", case.label(), i + 1);
                res.failed += 1;
            }
        }
    }
    res.lost = o.n.saturating_sub(s.census());
    s.stop(Duration::from_secs(60));
    Ok(res)
}

fn opt(v: Option<f64>) -> String {
    v.map_or("?".into(), |x| format!("{x:.2}"))
}

fn med_f(v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v;
    v.sort_by(f64::total_cmp);
    Some(quantile(&v, 0.5))
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.2} ms"))
}

/// Runs `hivehub-bench restart` and prints the report.
pub fn run_restart(o: RestartOpts) -> Result<()> {
    if o.n == 0 || o.trials == 0 {
        bail!("nothing to do: --n and --trials must be at least 1");
    }
    if o.no_supervisord {
        eprintln!("note: supervisord skipped (--no-supervisord)");
    }
    let bins = Bins::find(o.no_supervisord, PeerBins::find(o.no_runit, o.no_s6))?;
    raise_nofile(o.n);
    PidCursor::new()?;
    eprintln!("{} load average at start: {}", clock(), loadavg());
    let mut cases = vec![Case::LauncherOff, Case::LauncherOn, Case::LauncherNoSandbox];
    if bins.supervisord.is_some() {
        cases.push(Case::Supervisord);
    }
    for p in [
        Peer::Runit,
        Peer::S6 { ready: true },
        Peer::S6 { ready: false },
        Peer::Floor,
    ] {
        if bins.peers.has(p) {
            cases.push(Case::Peer(p));
        }
    }
    let mut events = match procev::ProcEvents::open() {
        Ok(ev) => Some(ev),
        Err(e) => {
            eprintln!("note: no kernel process events ({e}); timing by the /proc observer only");
            None
        }
    };
    let mut res: BTreeMap<Case, CaseResult> = BTreeMap::new();
    for &c in &cases {
        match run_case(c, &bins, &o, &mut events) {
            Ok(r) => {
                res.insert(c, r);
            }
            Err(e) => {
                check_interrupted()?;
                eprintln!("{}: FAILED: {e:#}", c.label());
            }
        }
    }
    eprintln!("{} load average at end: {}", clock(), loadavg());

    println!(
        "\n**Crash-to-restart latency, N = {} running plugins** (SIGKILL of one plugin until its replacement process exists; {} trials per supervisor, a different plugin each)\n",
        o.n, o.trials
    );
    println!("| supervisor | median | p90 | min | max | SIGKILL → old process reaped (median) | median / runit | target (median < 5 ms) |");
    println!("|---|---|---|---|---|---|---|---|");
    let lat = |c: Case| {
        res.get(&c)
            .map(|r| r.trials.iter().map(|t| t.latency).collect::<Vec<_>>())
    };
    let median_of = |c: Case| {
        lat(c)
            .filter(|v| !v.is_empty())
            .map(|v| quantile(&sorted_ms(&v), 0.5))
    };
    for &c in &cases {
        let Some(r) = res.get(&c) else {
            println!("| {} | failed | | | | | | |", c.label());
            continue;
        };
        let s = sorted_ms(&r.trials.iter().map(|t| t.latency).collect::<Vec<_>>());
        if s.is_empty() {
            println!("| {} | no successful trial | | | | | | |", c.label());
            continue;
        }
        let reaped = med_f(r.trials.iter().filter_map(|t| t.reaped.map(ms)).collect());
        let target = match c {
            Case::LauncherOff => {
                if quantile(&s, 0.5) < 5.0 {
                    "met".to_string()
                } else {
                    format!("**missed** ({:.1}×)", quantile(&s, 0.5) / 5.0)
                }
            }
            Case::LauncherOn | Case::LauncherNoSandbox => "– (informative)".to_string(),
            Case::Supervisord | Case::Peer(_) => "–".to_string(),
        };
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} |",
            c.label(),
            quantile(&s, 0.5),
            quantile(&s, 0.9),
            s[0],
            s[s.len() - 1],
            cell(reaped),
            common::ratio(Some(quantile(&s, 0.5)), median_of(REFERENCE)),
            target
        );
    }
    if let (Some(a), Some(b)) = (lat(Case::LauncherOff), lat(Case::Supervisord)) {
        if !a.is_empty() && !b.is_empty() {
            let (ma, mb) = (quantile(&sorted_ms(&a), 0.5), quantile(&sorted_ms(&b), 0.5));
            println!(
                "\nRatio launcher (creds off) / supervisord, medians: {:.2}.",
                ma / mb
            );
        }
    }
    if let (Some(on), Some(off)) = (lat(Case::LauncherOff), lat(Case::LauncherNoSandbox)) {
        if !on.is_empty() && !off.is_empty() {
            let (a, b) = (
                quantile(&sorted_ms(&on), 0.5),
                quantile(&sorted_ms(&off), 0.5),
            );
            println!(
                "\nSandbox cost per restart (creds off; median sandbox on {a:.2} ms − off {b:.2} ms): {:.2} ms (target < 0.3 ms).",
                a - b
            );
        }
    }
    exact_table(&cases, &res);
    let mut launcher_rows = Vec::new();
    for c in [Case::LauncherOff, Case::LauncherOn, Case::LauncherNoSandbox] {
        let Some(r) = res.get(&c) else { continue };
        let m = |f: fn(&LogTimes) -> Option<f64>| {
            med_f(r.trials.iter().filter_map(|t| f(&t.log)).collect())
        };
        launcher_rows.push(format!(
            "| {} | {} | {} | {} |",
            c.label(),
            cell(m(|l| l.exited)),
            cell(m(|l| l.restarting)),
            cell(m(|l| l.started)),
        ));
    }
    if !launcher_rows.is_empty() {
        println!("\nThe launcher's own log for the same trials (medians, ms after SIGKILL; `started` is logged after the pid file is written):\n");
        println!("| launcher | `plugin exited` | `restarting` | `started` |");
        println!("|---|---|---|---|");
        for r in launcher_rows {
            println!("{r}");
        }
    }
    println!();
    println!(
        "- peers' restart policies: runit restarts at once a service that ran for at least 1 s and after 1 s one that ran less (runsv(8); every plugin killed here had run for seconds); \
         s6-supervise restarts at once only a service that reported readiness (`notification-fd`) at least 1 s before it died, else after 1 s: the `s6` row's `run` scripts report readiness at once (`echo >&3` before `exec`), the default row's do not; \
         the floor restarts at once; supervisord `autorestart=true`, `startsecs=0`; the launcher `backoff: {{base: 0s, jitter: 0}}`."
    );
    let gaps: Vec<f64> = res
        .values()
        .flat_map(|r| r.trials.iter().map(|t| t.gap.as_secs_f64() * 1e6))
        .collect();
    println!(
        "- observer: `ns_last_pid` + candidate children every {} µs requested, {:.0} µs between polls measured (median over trials): the latency is an upper bound, about one gap above the true one.",
        o.poll.as_micros(),
        med_f(gaps).unwrap_or(f64::NAN)
    );
    for (c, r) in &res {
        // Every line about a case starts with its label.
        let line = |what: String| println!("- {}: {what}", c.label());
        let pause = BETWEEN_TRIALS.as_millis();
        let dead = r.trials.iter().filter(|t| !t.survived).count();
        if dead > 0 {
            line(format!(
                "**in {dead} of {} trials the new process was gone {pause} ms later** (killed or crashed again; see the supervisor's log).",
                r.trials.len()
            ));
        } else {
            line(format!(
                "every replacement process was still running {pause} ms later."
            ));
        }
        let bad_pid = r
            .trials
            .iter()
            .filter(|t| t.pidfile_ok == Some(false))
            .count();
        if bad_pid > 0 {
            line(format!(
                "after {bad_pid} of {} restarts, `run/NAME.pid` did not name the new process {pause} ms later.",
                r.trials.len()
            ));
        }
        if r.failed > 0 {
            line(format!("{} trials failed (see stderr).", r.failed));
        }
        if r.lost > 0 {
            line(format!("{} plugins not running at the end.", r.lost));
        }
        line(format!("load average before the trials: {}.", r.load));
    }
    Ok(())
}

/// The kernel's timeline of the same trials (see [`procev`]): exact, and split into the
/// kernel's part (the kill), the supervisor's reaction (exit until it forks the replacement)
/// and the child's set-up (fork until the plugin is exec'd).
fn exact_table(cases: &[Case], res: &BTreeMap<Case, CaseResult>) {
    let parts = |c: Case| -> Option<[Vec<f64>; 4]> {
        let r = res.get(&c)?;
        let mut v: [Vec<f64>; 4] = Default::default();
        for t in &r.trials {
            let Some(procev::Restart {
                exit: Some(exit),
                fork: Some(fork),
                exec: Some(exec),
            }) = t.exact
            else {
                continue;
            };
            v[0].push(ms(exit));
            v[1].push(ms(fork.saturating_sub(exit)));
            v[2].push(ms(exec.saturating_sub(fork)));
            v[3].push(ms(exec));
        }
        (!v[3].is_empty()).then_some(v)
    };
    let total = |c: Case| parts(c).map(|v| med_f(v[3].clone()).unwrap_or(f64::NAN));
    if !cases.iter().any(|&c| parts(c).is_some()) {
        return;
    }
    println!("\n**The same trials timed by the kernel** (process events: the old process's exit, the fork of its replacement by its supervisor, the replacement's exec of the plugin; stamped by the kernel, no polling; medians)\n");
    println!("| supervisor | SIGKILL → exit | exit → fork (supervisor) | fork → exec (child set-up) | SIGKILL → exec | p90 | trials | / floor | / runit |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &c in cases {
        let Some(v) = parts(c) else { continue };
        let med = |x: &Vec<f64>| med_f(x.clone()).unwrap_or(f64::NAN);
        let mut all = v[3].clone();
        all.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {} | {} | {} |",
            c.label(),
            med(&v[0]),
            med(&v[1]),
            med(&v[2]),
            med(&v[3]),
            quantile(&all, 0.9),
            all.len(),
            common::ratio(Some(med(&v[3])), total(Case::Peer(Peer::Floor))),
            common::ratio(Some(med(&v[3])), total(REFERENCE)),
        );
    }
    println!("\nA trial is left out of this table when one of its three events was not seen (lost or unmatched).");
}

// ---------------------------------------------------------------------------------------------
// monitor

/// The command-line options of `hivehub-bench monitor`.
pub struct MonitorOpts {
    /// Plugin counts (0 is added).
    pub ns: Vec<usize>,
    /// Rounds (each case once per round; the median is reported).
    pub rounds: usize,
    /// Time after all plugins run before the window.
    pub settle: Duration,
    /// The CPU window.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MonCase {
    n: usize,
    /// Sampling effectively off (`sampleInterval: 1h`).
    off: bool,
}

impl MonCase {
    fn label(self) -> String {
        if self.off {
            format!(
                "N = {}, `sampleInterval: 1h` (sampling off in the window)",
                self.n
            )
        } else {
            format!("N = {}, `sampleInterval: 2s`", self.n)
        }
    }
}

struct MonRound {
    /// Launcher CPU, percent of one core.
    cpu: f64,
    /// hubcore CPU, percent of one core.
    core_cpu: Option<f64>,
    rss: Option<u64>,
    lost: usize,
}

fn monitor_round(c: MonCase, bins: &Bins, o: &MonitorOpts) -> Result<MonRound> {
    let names = plugin_names(c.n);
    let mut s = Setup::launcher(
        bins,
        &names,
        &LauncherConf {
            sample_interval: if c.off { "1h" } else { "2s" },
            ..LauncherConf::default()
        },
        "launcher",
    )?;
    s.wait_all_running(start_timeout(c.n))?;
    s.wait_output("launcher ready", start_timeout(c.n))?;
    nap(o.settle)?;
    let pid = s.pid();
    let core_pid = s
        .home
        .as_ref()
        .and_then(|h| pid_from_file(&h.run().join("hubcore.pid")));
    let tps = procobs::ticks_per_second() as f64;
    let c0 = procobs::cpu_ticks(pid).context("launcher CPU")?;
    let k0 = core_pid.and_then(procobs::cpu_ticks);
    let t0 = Instant::now();
    nap(o.window)?;
    let c1 = procobs::cpu_ticks(pid).context("launcher CPU")?;
    let k1 = core_pid.and_then(procobs::cpu_ticks);
    let wall = t0.elapsed().as_secs_f64();
    let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 / tps / wall * 100.0;
    let r = MonRound {
        cpu: pct(c0, c1),
        core_cpu: k0.zip(k1).map(|(a, b)| pct(a, b)),
        rss: procobs::rss_bytes(pid),
        lost: c.n.saturating_sub(s.census()),
    };
    s.stop(Duration::from_secs(60));
    Ok(r)
}

/// Runs `hivehub-bench monitor` and prints the report.
pub fn run_monitor(o: MonitorOpts) -> Result<()> {
    if o.rounds == 0 {
        bail!("nothing to do: --rounds must be at least 1");
    }
    let bins = Bins::find(true, PeerBins::none())?;
    let mut ns = o.ns.clone();
    ns.push(0);
    ns.sort_unstable();
    ns.dedup();
    let max_n = ns.iter().copied().max().unwrap_or(0);
    raise_nofile(max_n);
    let mut cases: Vec<MonCase> = ns.iter().map(|&n| MonCase { n, off: false }).collect();
    if max_n > 0 {
        cases.push(MonCase {
            n: max_n,
            off: true,
        });
    }
    eprintln!("{} load average at start: {}", clock(), loadavg());
    let mut res: BTreeMap<MonCase, Vec<MonRound>> = BTreeMap::new();
    for round in 1..=o.rounds {
        for &c in &cases {
            match monitor_round(c, &bins, &o) {
                Ok(r) => {
                    eprintln!(
                        "{} {} round {round}/{}: launcher CPU {:.3} % (hubcore {}), launcher RSS {:.1} MB, load {}",
                        clock(),
                        c.label(),
                        o.rounds,
                        r.cpu,
                        r.core_cpu.map_or("?".into(), |x| format!("{x:.3} %")),
                        r.rss.unwrap_or(0) as f64 / 1e6,
                        loadavg()
                    );
                    res.entry(c).or_default().push(r);
                }
                Err(e) => {
                    eprintln!("{} round {round}: FAILED: {e:#}", c.label());
                    res.entry(c).or_default();
                }
            }
        }
    }
    eprintln!("{} load average at end: {}", clock(), loadavg());

    let cpu_med = |c: MonCase| med_f(res.get(&c)?.iter().map(|r| r.cpu).collect());
    let base = cpu_med(MonCase { n: 0, off: false });
    println!(
        "\n**Launcher CPU while monitoring idle plugins** (launcher process only, utime + stime over {} s after a {} s settle; median of {} rounds; % of one core)\n",
        o.window.as_secs(),
        o.settle.as_secs(),
        o.rounds
    );
    println!("| case | launcher CPU | min – max | minus N = 0 | hubcore CPU | target (< 2 % at N = 500, 2 s) |");
    println!("|---|---|---|---|---|---|");
    for &c in &cases {
        let rs = res.get(&c).map(Vec::as_slice).unwrap_or_default();
        let Some(m) = cpu_med(c) else {
            println!("| {} | failed | | | | |", c.label());
            continue;
        };
        let lo = rs.iter().map(|r| r.cpu).fold(f64::INFINITY, f64::min);
        let hi = rs.iter().map(|r| r.cpu).fold(f64::NEG_INFINITY, f64::max);
        let diff = base.map(|b| m - b);
        let core = med_f(rs.iter().filter_map(|r| r.core_cpu).collect());
        let target = if c.n == 500 && !c.off {
            match diff {
                Some(d) if d < 2.0 && m < 2.0 => "met (also in absolute terms)".to_string(),
                Some(d) if d < 2.0 => format!("met as a difference; absolute {m:.2} %"),
                Some(d) => format!("**missed** ({d:.2} % over N = 0)"),
                None => "no N = 0 baseline".into(),
            }
        } else {
            "–".into()
        };
        println!(
            "| {} | {:.3} % | {:.3} – {:.3} % | {} | {} | {} |",
            c.label(),
            m,
            lo,
            hi,
            diff.map_or("—".into(), |d| format!("{d:+.3} %")),
            core.map_or("—".into(), |x| format!("{x:.3} %")),
            target
        );
    }
    if max_n > 0 {
        let on = cpu_med(MonCase {
            n: max_n,
            off: false,
        });
        let off = cpu_med(MonCase {
            n: max_n,
            off: true,
        });
        if let (Some(on), Some(off)) = (on, off) {
            println!(
                "\n- N = {max_n}: sampling every 2 s costs {:+.3} % of one core over the same launcher with sampling off, i.e. about {:.1} ms of CPU per sample.",
                on - off,
                (on - off) / 100.0 * 2000.0
            );
        }
    }
    for (c, rs) in &res {
        let lost: usize = rs.iter().map(|r| r.lost).sum();
        if lost > 0 {
            println!("- {}: {lost} plugins died during the rounds.", c.label());
        }
        if rs.len() < o.rounds {
            println!(
                "- {}: {} of {} rounds failed (see stderr).",
                c.label(),
                o.rounds - rs.len(),
                o.rounds
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_pids_with_and_without_wrap() {
        let mut v = Vec::new();
        assert!(fresh_range(100, 100, 32768, &mut v));
        assert!(v.is_empty());
        assert!(fresh_range(100, 103, 32768, &mut v));
        assert_eq!(v, [101, 102, 103]);
        v.clear();
        assert!(fresh_range(32766, 301, 32768, &mut v));
        assert_eq!(v, [32767, 300, 301]);
        v.clear();
        assert!(!fresh_range(100, 100 + MAX_FRESH + 1, 32768, &mut v));
    }

    #[test]
    fn tracing_lines_parse() {
        let l = "\u{1b}[2m2026-11-26T09:26:20.123456Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m hivehub_launcher::supervisor: plugin exited \u{1b}[3mplugin\u{1b}[0m\u{1b}[2m=\u{1b}[0mplugin001";
        let s = strip_ansi(l);
        assert!(s.split_whitespace().any(|w| w == "plugin=plugin001"), "{s}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out");
        let t0 =
            SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 9 * 3600 + 26 * 60 + 20);
        std::fs::write(
            &f,
            format!(
                "{l}\n2026-11-26T09:26:20.125Z WARN x: restarting plugin=plugin001 attempt=1\n\
                 2026-11-26T09:26:20.130Z INFO x: started plugin=\"plugin001\" pid=2\n\
                 2026-11-26T09:26:20.140Z INFO x: started plugin=\"plugin0010\" pid=3\n"
            ),
        )
        .unwrap();
        let lt = log_times(&f, 0, "plugin001", t0);
        let near = |v: Option<f64>, want: f64| v.is_some_and(|x| (x - want).abs() < 1e-3);
        assert!(near(lt.exited, 123.456), "{lt:?}");
        assert!(near(lt.restarting, 125.0), "{lt:?}");
        assert!(near(lt.started, 130.0), "{lt:?}");
        let t = line_day_secs(&s).unwrap();
        assert!((t - (9.0 * 3600.0 + 26.0 * 60.0 + 20.123456)).abs() < 1e-6);
    }

    #[test]
    fn own_stat_parses() {
        let mut buf = Vec::new();
        let (state, ppid) = state_ppid(std::process::id(), &mut buf).unwrap();
        assert!(state.is_ascii_alphabetic());
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
