//! `hivehub-bench launcher`: cold start, stop-all and idle cost of N trivial plugins under the
//! hivehub launcher (credentials off and on), Debian's supervisord, runit (runsvdir), s6
//! (s6-svscan) and the raw-spawn floor (`bench-floor`), observed the same way for all.
//!
//! * Plugin: the shell script [`PLUGIN_SCRIPT`], copied as N distinct executables
//!   `plugins/plugin001`.. in a fresh temporary folder per round. runit and s6 start it through a
//!   `run` script that execs it (one more `/bin/sh` start per spawn, as every runit or s6
//!   service has); s6's also reports readiness at once (see [`Peer::S6`]).
//! * Observer: every `--poll-ms` the benchmark reads `/proc/*/cmdline` and counts the distinct
//!   plugins with a live process (command line containing the round's unique `plugins/` path).
//! * Cold start: from spawning the supervisor until all N plugins are alive. For the launcher this
//!   includes starting hubcore (fresh home: CA and keys are created) and connecting to it; the
//!   time until `run/hubcore.url` appears is reported separately. With `--boot` the supervisor
//!   is first started and stopped once, unmeasured, in the same folder, so the measured start
//!   is a reboot's: keys, profiles, logs and `supervise` folders exist.
//! * Stop-all: from the stop signal (SIGTERM; SIGHUP for runsvdir, which exits at once on SIGTERM
//!   and leaves its runsv running) until no plugin process is left; exit: until the supervisor
//!   process has exited (the launcher also stops hubcore after the plugins); tree gone: until the
//!   supervisor and every process of its tree (guard, hubcore, runsv, s6-supervise) have exited
//!   and no plugin is left.
//! * Idle: `--settle` seconds (2) after the cold start, the supervisor process's own VmRSS and
//!   CPU time over `--idle` seconds (5),
//!   and for its whole tree without the plugins (launcher + guard + hubcore; runsvdir + N runsv;
//!   s6-svscan + N s6-supervise) the PSS (`/proc/PID/smaps_rollup`, shared pages divided among
//!   the processes that map them) and the CPU time over the same window (exact, from
//!   `schedstat`).
//!
//! Each supervisor is started in its own session, as a service manager would start it: with the
//! kernel's autogroup scheduling it then gets its own CPU share instead of sharing the benchmark's
//! (the observer's) share. SIGINT, SIGTERM and SIGHUP to the benchmark end the round cleanly.

use crate::common::{
    bench_tempdir, cell, check_interrupted, clock, find_in_path, launcher_home, loadavg, md_table,
    ms, nap, peer_dir, pid_from_file, plugin_names, prepare_supervisor, raise_nofile,
    supervisord_dir, tail, warn_about_other_supervisords, LauncherConf, Peer, PeerBins,
    PLUGIN_SCRIPT, STILL_SCRIPT,
};
use crate::procobs::{self, Observer, Supervised};
use crate::sibling_binary;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// System-wide CPU time from the first line of `/proc/stat`: (busy, total) in clock ticks.
/// Busy is everything but idle and iowait (steal counts as busy: the host took the CPU).
fn system_cpu() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// CPU time of this process (the observer included) and of every descendant it has reaped.
/// Reaped processes pass on their children's time, so after a round this covers the supervisor,
/// the plugins, their `sleep`s and hubcore.
fn own_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let of = |who| {
        getrusage(who)
            .map(|u| {
                let t = |tv: nix::sys::time::TimeVal| {
                    Duration::new(
                        tv.tv_sec().max(0) as u64,
                        (tv.tv_usec().max(0) as u32) * 1000,
                    )
                };
                t(u.user_time()) + t(u.system_time())
            })
            .unwrap_or_default()
    };
    of(UsageWho::RUSAGE_SELF) + of(UsageWho::RUSAGE_CHILDREN)
}

/// Measures the CPU used on the machine by everything that is not this benchmark's own tree.
struct ForeignMeter {
    sys: (u64, u64),
    own: Duration,
    wall: Instant,
}

impl ForeignMeter {
    fn start() -> ForeignMeter {
        ForeignMeter {
            sys: system_cpu().unwrap_or((0, 0)),
            own: own_cpu(),
            wall: Instant::now(),
        }
    }

    /// Foreign CPU since `start`, in cores on average.
    fn cores(&self) -> f64 {
        let (busy, _) = system_cpu().unwrap_or(self.sys);
        let busy = (busy.saturating_sub(self.sys.0)) as f64 / procobs::ticks_per_second() as f64;
        let own = own_cpu().saturating_sub(self.own).as_secs_f64();
        let wall = self.wall.elapsed().as_secs_f64().max(1e-3);
        ((busy - own) / wall).max(0.0)
    }
}

/// Waits until the rest of the machine has used less than `max` cores for 3 s in a row, at most
/// `limit`. Returns false if it never got that quiet.
pub(crate) fn wait_quiet(max: f64, limit: Duration) -> Result<bool> {
    let end = Instant::now() + limit;
    let mut quiet = 0;
    let mut said = false;
    while Instant::now() < end {
        let m = ForeignMeter::start();
        nap(Duration::from_secs(1))?;
        let c = m.cores();
        if c < max {
            quiet += 1;
            if quiet >= 3 {
                return Ok(true);
            }
        } else {
            quiet = 0;
            if !said {
                eprintln!(
                    "{} waiting for a quiet machine (other processes use {c:.2} cores)",
                    clock()
                );
                said = true;
            }
        }
    }
    Ok(false)
}

/// The command-line options of `hivehub-bench launcher`.
pub struct Opts {
    /// Plugin counts.
    pub ns: Vec<usize>,
    /// Rounds per case.
    pub rounds: usize,
    /// Observer polling interval.
    pub poll: Duration,
    /// Do not run supervisord even when installed.
    pub no_supervisord: bool,
    /// Do not run runit even when installed.
    pub no_runit: bool,
    /// Do not run s6 even when installed.
    pub no_s6: bool,
    /// A round during which other processes used more than this many cores on average is run
    /// again.
    pub max_foreign: f64,
    /// How many times a disturbed round is run again before its result is kept anyway.
    pub retries: usize,
    /// How long to wait for a quiet machine before each round.
    pub quiet_wait: Duration,
    /// Time allowed for the supervisor to settle after the cold start.
    pub settle: Duration,
    /// Window over which the idle CPU is measured.
    pub idle_window: Duration,
    /// Plugins that only sleep ([`STILL_SCRIPT`]) instead of [`PLUGIN_SCRIPT`]'s loop.
    pub still: bool,
    /// Start and stop each supervisor once in its folder before the measured start, which
    /// then finds the state of that run, as at a reboot.
    pub boot: bool,
}

/// How a round runs: when the idle cost is measured (`settle` after the cold start, over
/// `window`), the plugin script, and whether the measured start is a second one (`boot`).
#[derive(Debug, Clone, Copy)]
struct IdleAt {
    settle: Duration,
    window: Duration,
    script: &'static str,
    boot: bool,
}

impl IdleAt {
    fn of(opts: &Opts) -> IdleAt {
        IdleAt {
            settle: opts.settle,
            window: opts.idle_window,
            script: if opts.still {
                STILL_SCRIPT
            } else {
                PLUGIN_SCRIPT
            },
            boot: opts.boot,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    LauncherOff,
    LauncherOn,
    /// Credentials off and every plugin `sandbox: off`: the cost of the sandbox per spawn.
    LauncherNoSandbox,
    Supervisord,
    /// runit, s6 or the floor.
    Peer(Peer),
}

/// The reference of every ratio column.
const REFERENCE: Kind = Kind::Peer(Peer::Runit);

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::LauncherOff => "launcher (creds off)",
            Kind::LauncherOn => "launcher (creds on)",
            Kind::LauncherNoSandbox => "launcher (creds off, sandbox off)",
            Kind::Supervisord => "supervisord",
            Kind::Peer(Peer::Runit) => "runit",
            Kind::Peer(Peer::S6 { .. }) => "s6",
            Kind::Peer(Peer::Floor) => "floor",
        }
    }

    fn is_launcher(self) -> bool {
        matches!(
            self,
            Kind::LauncherOff | Kind::LauncherOn | Kind::LauncherNoSandbox
        )
    }
}

/// One round of one case.
#[derive(Debug, Clone)]
struct Round {
    cold: Duration,
    core_ready: Option<Duration>,
    stop_all: Duration,
    exit: Duration,
    /// Until the supervisor, every process of its tree and every plugin are gone.
    tree_gone: Duration,
    exit_status: ExitStatus,
    /// What stopped it.
    stop_signal: Signal,
    /// Bytes.
    rss: u64,
    /// Anonymous part of `rss` (heap, stacks), bytes.
    rss_anon: u64,
    /// Percent of one core.
    cpu: f64,
    /// CPU of the supervision tree without the plugins, percent of one core.
    tree_cpu: f64,
    /// PSS of the supervision tree without the plugins, bytes.
    pss_tree: u64,
    /// PSS of the supervisor process, of the launcher's guard and of hubcore, bytes.
    pss_main: Option<u64>,
    pss_guard: Option<u64>,
    pss_core: Option<u64>,
    /// Processes in the supervision tree (the supervisor included, the plugins not).
    tree_procs: usize,
    core_rss: Option<u64>,
    core_cpu: Option<f64>,
    guard_rss: Option<u64>,
    /// Plugins that died between the cold start and the stop.
    lost_while_idle: usize,
    /// Processes of the round still alive once the supervisor and its tree were gone.
    leftovers: usize,
    /// Their command lines, counted.
    leftover_cmds: Vec<String>,
    /// Mean duration of one observer pass over /proc during the start and the stop.
    scan_ms: f64,
    /// CPU time (user + system) the supervisor process used from spawn until all N ran.
    cold_cpu: Duration,
    /// The same for its whole tree without the plugins (launcher + guard + hubcore, runsvdir +
    /// every runsv, ...), exact.
    tree_cold_cpu: Duration,
    /// CPU time the supervisor process used from SIGTERM until its last sample before exit.
    stop_cpu: Duration,
    /// CPU used by processes outside the round (other work on the machine, kernel threads)
    /// during the round, in cores on average.
    foreign: f64,
    /// Times this round was discarded and run again because of foreign CPU.
    retried: usize,
    /// The load average before the round.
    load: String,
}

impl Round {
    /// An exit status that is the supervisor's normal answer to its stop signal (runsvdir exits
    /// 111 on SIGHUP, runsvdir(8)).
    fn clean_exit(&self) -> bool {
        self.exit_status.success()
            || (self.stop_signal == Signal::SIGHUP && self.exit_status.code() == Some(111))
    }
}

struct Bins {
    launcher: PathBuf,
    hubcore: PathBuf,
    supervisord: Option<PathBuf>,
    peers: PeerBins,
}

/// Runs one round of one case in a fresh temporary folder; every process is gone on return.
fn run_round(kind: Kind, n: usize, bins: &Bins, poll: Duration, idle: IdleAt) -> Result<Round> {
    let (_tmp, root) = bench_tempdir("hivehub-bench-launcher-")?;
    let names = plugin_names(n);
    let out = root.join("supervisor.out");
    let mut stop_signal = Signal::SIGTERM;
    let (mut cmd, plugins, url_file, core_pid_file) = match kind {
        Kind::LauncherOff | Kind::LauncherOn | Kind::LauncherNoSandbox => {
            let conf = LauncherConf {
                creds: kind == Kind::LauncherOn,
                autorestart: "never",
                zero_backoff: false,
                // The launcher's default, written out.
                sample_interval: "2s",
                sandbox: kind != Kind::LauncherNoSandbox,
            };
            let home = launcher_home(&root, &bins.hubcore, &names, &conf, idle.script)?;
            let mut cmd = Command::new(&bins.launcher);
            cmd.arg("--home").arg(home.root());
            (
                cmd,
                home.plugins(),
                Some(home.core_url_file()),
                Some(home.run().join("hubcore.pid")),
            )
        }
        Kind::Supervisord => {
            let (plugins, conf) = supervisord_dir(&root, &names, false)?;
            let bin = bins
                .supervisord
                .as_ref()
                .context("supervisord is not installed")?;
            let mut cmd = Command::new(bin);
            cmd.arg("-n").arg("-c").arg(&conf);
            (cmd, plugins, None, None)
        }
        Kind::Peer(p) => {
            let d = peer_dir(p, &bins.peers, &root, &names, idle.script, false)?;
            stop_signal = d.stop;
            (d.cmd, d.plugins, None, None)
        }
    };
    prepare_supervisor(&mut cmd, &root, &out)?;
    let mut obs = Observer::new(&plugins);
    let what = kind.label();
    if idle.boot {
        first_run(&mut cmd, &mut obs, n, stop_signal, &root, &out, what)?;
        if let Some(f) = &url_file {
            // Written again by this start's core: its readiness is measured by it.
            let _ = std::fs::remove_file(f);
        }
    }

    // Cold start.
    let meter = ForeignMeter::start();
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let mut sup = Supervised {
        child: Some(child),
        dir: root.clone(),
    };
    let pid = sup.pid();
    let deadline = Duration::from_secs(60) + Duration::from_millis(200) * n as u32;
    let mut core_ready = None;
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / procobs::ticks_per_second() as f64);
    let cold = loop {
        let c = obs.census();
        let now = t0.elapsed();
        if core_ready.is_none() && url_file.as_ref().is_some_and(|f| f.exists()) {
            core_ready = Some(now);
        }
        if c.plugins >= n {
            break now;
        }
        if let Some(st) = sup.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!(
                "{what} exited during the start ({st}) with {}/{n} plugins running; its output:\n{}",
                c.plugins,
                tail(&out, 20)
            );
        }
        if now > deadline {
            bail!(
                "only {}/{n} plugins running after {:.1} s under {what}; its output:\n{}",
                c.plugins,
                now.as_secs_f64(),
                tail(&out, 20)
            );
        }
        nap(poll)?;
    };

    let cold_cpu = ticks(procobs::cpu_ticks(pid).unwrap_or(0));
    // Every process of the tree was born after the spawn: its whole CPU time is the start's.
    let tree_cold_cpu = Duration::from_nanos(procobs::cpu_ns_sum(&procobs::tree(pid, &plugins)));

    // Idle cost.
    nap(idle.settle)?;
    let core_pid = core_pid_file.as_deref().and_then(pid_from_file);
    let guard_pid = if kind.is_launcher() {
        procobs::descendants(pid).into_iter().find(|p| {
            // The binary forks its guard (named hivehub-guard); a library user starts
            // `launcher __guard HOME`.
            procobs::comm(*p).as_deref() == Some("hivehub-guard")
                || procobs::cmdline(*p).is_some_and(|c| c.split(' ').nth(1) == Some("__guard"))
        })
    } else {
        None
    };
    // The supervision tree without the plugins: launcher, guard and hubcore; runsvdir and every
    // runsv; s6-svscan and every s6-supervise; supervisord or the floor alone.
    let tree = procobs::tree(pid, &plugins);
    let rss0 = procobs::rss_bytes(pid).context("cannot read the supervisor's RSS")?;
    let core_rss0 = core_pid.and_then(procobs::rss_bytes);
    let cpu0 = procobs::cpu_ticks(pid).context("cannot read the supervisor's CPU time")?;
    let core_cpu0 = core_pid.and_then(procobs::cpu_ticks);
    let tree_cpu0 = procobs::cpu_ns_sum(&tree);
    let w0 = Instant::now();
    nap(idle.window)?;
    let cpu1 = procobs::cpu_ticks(pid).context("cannot read the supervisor's CPU time")?;
    let core_cpu1 = core_pid.and_then(procobs::cpu_ticks);
    let tree_cpu1 = procobs::cpu_ns_sum(&tree);
    let wall = w0.elapsed().as_secs_f64();
    let rss1 = procobs::rss_bytes(pid).unwrap_or(0);
    let rss_anon = procobs::status_bytes(pid, "RssAnon").unwrap_or(0);
    let pss_tree: u64 = tree.iter().filter_map(|&p| procobs::pss_bytes(p)).sum();
    let pss_main = procobs::pss_bytes(pid);
    let pss_guard = guard_pid.and_then(procobs::pss_bytes);
    let pss_core = core_pid.and_then(procobs::pss_bytes);
    let tps = procobs::ticks_per_second() as f64;
    let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / tps / wall * 100.0;
    let cpu = pct(cpu0, cpu1);
    let tree_cpu = tree_cpu1.saturating_sub(tree_cpu0) as f64 / 1e9 / wall * 100.0;
    let core_cpu = match (core_cpu0, core_cpu1) {
        (Some(a), Some(b)) => Some(pct(a, b)),
        _ => None,
    };
    let core_rss = match (core_rss0, core_pid.and_then(procobs::rss_bytes)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let guard_rss = guard_pid.and_then(procobs::rss_bytes);
    let lost_while_idle = n.saturating_sub(obs.census().plugins);

    // Stop-all: the supervisor's stop signal until no plugin is left, until the supervisor has
    // exited, and until its whole tree (helpers included) is gone.
    let before_stop = procobs::cpu_ticks(pid).unwrap_or(0);
    let mut last_ticks = before_stop;
    let t1 = Instant::now();
    kill(Pid::from_raw(pid as i32), stop_signal).context("cannot signal the supervisor")?;
    let limit = Duration::from_secs(120) + Duration::from_millis(500) * n as u32;
    let mut stop_all = None;
    let mut exited: Option<(Duration, ExitStatus)> = None;
    let mut helpers: Vec<u32> = tree.iter().copied().filter(|&p| p != pid).collect();
    let mut tree_gone = None;
    loop {
        let now = t1.elapsed();
        let processes = obs.census().processes;
        if stop_all.is_none() && processes == 0 {
            stop_all = Some(t1.elapsed());
        }
        if exited.is_none() {
            if let Some(t) = procobs::cpu_ticks(pid) {
                last_ticks = last_ticks.max(t);
            }
            if let Some(st) = sup.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some((t1.elapsed(), st));
                sup.child = None;
            }
        }
        helpers.retain(|&p| procobs::alive(p));
        if tree_gone.is_none() && exited.is_some() && helpers.is_empty() && processes == 0 {
            tree_gone = Some(t1.elapsed());
        }
        if let (Some(s), Some((e, st)), Some(g)) = (stop_all, exited, tree_gone) {
            let leftover_cmds = procobs::round_commands(&root);
            let leftovers = procobs::sweep(&root, Duration::from_secs(5));
            return Ok(Round {
                cold,
                core_ready,
                stop_all: s,
                exit: e,
                tree_gone: g,
                exit_status: st,
                stop_signal,
                rss: rss0.max(rss1),
                rss_anon,
                cpu,
                tree_cpu,
                pss_tree,
                pss_main,
                pss_guard,
                pss_core,
                tree_procs: tree.len(),
                core_rss,
                core_cpu,
                guard_rss,
                lost_while_idle,
                leftovers,
                leftover_cmds,
                scan_ms: obs.mean_scan_ms(),
                cold_cpu,
                tree_cold_cpu,
                stop_cpu: ticks(last_ticks - before_stop),
                foreign: meter.cores(),
                retried: 0,
                load: String::new(),
            });
        }
        if let Some((e, _)) = exited {
            if now > e + Duration::from_secs(5) {
                bail!(
                    "{what} exited but {processes} plugin processes and {} of its helpers remain",
                    helpers.len()
                );
            }
        }
        if now > limit {
            bail!(
                "{what} did not stop within {:.0} s ({processes} plugin processes left); its output:\n{}",
                limit.as_secs_f64(),
                tail(&out, 20)
            );
        }
        nap(poll)?;
    }
}

/// The unmeasured first run of a `boot` round: start, wait until all `n` plugins run, stop,
/// and leave no process of the folder behind.
fn first_run(
    cmd: &mut Command,
    obs: &mut Observer,
    n: usize,
    stop_signal: Signal,
    root: &std::path::Path,
    out: &std::path::Path,
    what: &str,
) -> Result<()> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what} for its first run"))?;
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(200) * n as u32;
    while obs.census().plugins < n {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            procobs::sweep(root, Duration::from_secs(5));
            bail!(
                "{what}'s first run did not start all {n} plugins; its output:\n{}",
                tail(out, 20)
            );
        }
        nap(Duration::from_millis(5))?;
    }
    kill(Pid::from_raw(child.id() as i32), stop_signal).context("cannot signal the supervisor")?;
    let _ = child.wait();
    procobs::sweep(root, Duration::from_secs(10));
    Ok(())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

type Results = BTreeMap<(usize, Kind), Vec<Round>>;

fn med(res: &Results, n: usize, k: Kind, f: impl Fn(&Round) -> Option<f64>) -> Option<f64> {
    median(res.get(&(n, k))?.iter().filter_map(f).collect())
}

/// Prints one measure for every N as a Markdown table: a column per case in `cols`, then the
/// ratio of each case to runit and of the launcher (creds off) to supervisord.
fn table(
    res: &Results,
    ns: &[usize],
    cols: &[Kind],
    title: &str,
    unit: &str,
    decimals: usize,
    f: impl Fn(&Round) -> Option<f64> + Copy,
) {
    println!("\n**{title}** (median)\n");
    let at = |k: Kind| cols.iter().position(|c| *c == k);
    let mut ratios: Vec<(usize, usize)> = Vec::new();
    if let Some(r) = at(REFERENCE) {
        ratios.extend((0..cols.len()).filter(|&i| i != r).map(|i| (i, r)));
    }
    if let (Some(a), Some(b)) = (at(Kind::LauncherOff), at(Kind::Supervisord)) {
        ratios.push((a, b));
    }
    let rows: Vec<(String, Vec<Option<f64>>)> = ns
        .iter()
        .map(|&n| {
            (
                n.to_string(),
                cols.iter().map(|&k| med(res, n, k, f)).collect(),
            )
        })
        .collect();
    let heads: Vec<String> = cols.iter().map(|k| k.label().to_string()).collect();
    md_table("N", &heads, &ratios, &rows, unit, decimals);
}

fn report(res: &Results, kinds: &[Kind], opts: &Opts, have_sv: bool) {
    let (ns, rounds, poll, max_foreign) = (&opts.ns[..], opts.rounds, opts.poll, opts.max_foreign);
    let idle = IdleAt::of(opts);
    let some = |x: f64| Some(x);
    // Every case but the sandbox-off one, which only gives the sandbox's share.
    let cols: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|k| *k != Kind::LauncherNoSandbox)
        .collect();
    let launchers: Vec<Kind> = cols.iter().copied().filter(|k| k.is_launcher()).collect();
    table(
        res,
        ns,
        &cols,
        "Cold start until all N plugins run",
        " ms",
        1,
        |r| some(ms(r.cold)),
    );
    println!("\nThe sandbox's share (creds off; sandbox on − off, per plugin; target < 0.3 ms per spawn):\n");
    for &n in ns {
        let on = med(res, n, Kind::LauncherOff, |r| some(ms(r.cold)));
        let off = med(res, n, Kind::LauncherNoSandbox, |r| some(ms(r.cold)));
        if let (Some(a), Some(b)) = (on, off) {
            println!(
                "- N = {n}: on {a:.1} ms, off {b:.1} ms: {:.3} ms per plugin",
                (a - b) / n.max(1) as f64
            );
        }
    }
    table(
        res,
        ns,
        &launchers,
        "Launcher: hubcore ready (`run/hubcore.url` written), part of the cold start",
        " ms",
        1,
        |r| r.core_ready.map(ms),
    );
    table(
        res,
        ns,
        &cols,
        "Stop-all: SIGTERM (runit: SIGHUP to runsvdir) until no plugin process is left",
        " ms",
        1,
        |r| some(ms(r.stop_all)),
    );
    table(
        res,
        ns,
        &cols,
        "SIGTERM until the supervisor process has exited (launcher: plugins, then hubcore; runsvdir exits at once, its runsv later)",
        " ms",
        1,
        |r| some(ms(r.exit)),
    );
    table(
        res,
        ns,
        &cols,
        "SIGTERM until the whole tree is gone (supervisor, guard, hubcore, runsv, s6-supervise and every plugin)",
        " ms",
        1,
        |r| some(ms(r.tree_gone)),
    );

    table(
        res,
        ns,
        &cols,
        "CPU time used by the supervisor process itself during the cold start (user + system)",
        " ms",
        0,
        |r| some(ms(r.cold_cpu)),
    );
    table(
        res,
        ns,
        &cols,
        "CPU time used by the whole supervision tree during the cold start (launcher + guard + hubcore; runsvdir + every runsv; s6-svscan + every s6-supervise; exact, from `schedstat`)",
        " ms",
        1,
        |r| some(ms(r.tree_cold_cpu)),
    );
    table(
        res,
        ns,
        &cols,
        "CPU time used by the supervisor process itself during the stop (user + system, until its last sample before exit)",
        " ms",
        0,
        |r| some(ms(r.stop_cpu)),
    );

    let (settle, win) = (idle.settle.as_secs(), idle.window.as_secs());
    println!("\n**Idle cost with N running** ({settle} s after the cold start; MB = 10^6 bytes; CPU in % of one core over {win} s; the tree = the supervisor and its helpers without the plugins: launcher + guard + hubcore, runsvdir + N runsv, s6-svscan + N s6-supervise, supervisord or the floor alone)");
    table(
        res,
        ns,
        &cols,
        "Idle: PSS of the whole supervision tree (sum of `Pss` in `/proc/PID/smaps_rollup`)",
        " MB",
        2,
        |r| some(mb(r.pss_tree)),
    );
    table(
        res,
        ns,
        &cols,
        "Idle: VmRSS of the supervisor process itself",
        " MB",
        1,
        |r| some(mb(r.rss)),
    );
    table(
        res,
        ns,
        &cols,
        "Idle: CPU of the whole supervision tree (exact, from `schedstat`)",
        " %",
        3,
        |r| some(r.tree_cpu),
    );
    table(
        res,
        ns,
        &cols,
        "Idle: CPU of the supervisor process itself (utime + stime, clock ticks)",
        " %",
        2,
        |r| some(r.cpu),
    );
    println!();
    for &n in ns {
        for k in launchers.iter().copied() {
            println!(
                "- N = {n}, {}: PSS of the tree {} = launcher {} + guard {} + hubcore {}.",
                k.label(),
                cell(med(res, n, k, |r| some(mb(r.pss_tree))), " MB", 2),
                cell(med(res, n, k, |r| r.pss_main.map(mb)), " MB", 2),
                cell(med(res, n, k, |r| r.pss_guard.map(mb)), " MB", 2),
                cell(med(res, n, k, |r| r.pss_core.map(mb)), " MB", 2),
            );
        }
        let procs: Vec<String> = cols
            .iter()
            .filter_map(|&k| {
                let p = med(res, n, k, |r| some(r.tree_procs as f64))?;
                Some(format!("{} {p:.0}", k.label()))
            })
            .collect();
        println!("- N = {n}: processes in the tree: {}.", procs.join(", "));
        println!(
            "- N = {n}: anonymous part of the RSS (heap, stacks; the rest is mapped binary and libraries): launcher {} (creds off), {} (creds on), supervisord {}.",
            cell(med(res, n, Kind::LauncherOff, |r| some(mb(r.rss_anon))), " MB", 1),
            cell(med(res, n, Kind::LauncherOn, |r| some(mb(r.rss_anon))), " MB", 1),
            cell(med(res, n, Kind::Supervisord, |r| some(mb(r.rss_anon))), " MB", 1),
        );
        println!(
            "- N = {n}, in the tree but not in the supervisor process's own figures: hubcore started by the launcher RSS {} / CPU {} (creds off), {} / {} (creds on); launcher guard process RSS {}.",
            cell(med(res, n, Kind::LauncherOff, |r| r.core_rss.map(mb)), " MB", 1),
            cell(med(res, n, Kind::LauncherOff, |r| r.core_cpu), " %", 2),
            cell(med(res, n, Kind::LauncherOn, |r| r.core_rss.map(mb)), " MB", 1),
            cell(med(res, n, Kind::LauncherOn, |r| r.core_cpu), " %", 2),
            cell(med(res, n, Kind::LauncherOff, |r| r.guard_rss.map(mb)), " MB", 1),
        );
    }

    println!("\n**Targets**\n");
    let cmp = |name: &str, f: fn(&Round) -> f64| {
        let mut parts = Vec::new();
        let mut all = true;
        for &n in ns {
            let off = med(res, n, Kind::LauncherOff, |r| some(f(r)));
            let sv = med(res, n, Kind::Supervisord, |r| some(f(r)));
            match (off, sv) {
                (Some(a), Some(b)) => {
                    all &= a <= b;
                    parts.push(format!(
                        "N={n}: {a:.1} vs {b:.1} ms ({})",
                        if a <= b { "met" } else { "MISSED" }
                    ));
                }
                _ => {
                    all = false;
                    parts.push(format!("N={n}: no data"));
                }
            }
        }
        println!(
            "- {name} (creds off) no slower than supervisord at every N: {} — {}",
            if all { "met" } else { "NOT met" },
            parts.join("; ")
        );
    };
    if have_sv {
        cmp("Cold start", |r| ms(r.cold));
        cmp("Stop-all", |r| ms(r.stop_all));
    } else {
        println!("- Cold start and stop-all vs supervisord: not checked, supervisord is not installed (apt-get install supervisor).");
    }
    match med(res, 100, Kind::LauncherOff, |r| some(mb(r.rss))) {
        Some(v) => println!(
            "- Launcher RSS < 15 MB at N = 100 (creds off): {v:.1} MB, {}; creds on: {}",
            if v < 15.0 { "met" } else { "MISSED" },
            cell(
                med(res, 100, Kind::LauncherOn, |r| some(mb(r.rss))),
                " MB",
                1
            )
        ),
        None => println!("- Launcher RSS < 15 MB at N = 100: not measured (N = 100 not in --n)."),
    }

    let mut notes = Vec::new();
    for ((n, k), rs) in res {
        let mut note = |what: String| notes.push(format!("N = {n}, {}: {what}", k.label()));
        let failed = rounds - rs.len();
        if failed > 0 {
            note(format!(
                "{failed} of {rounds} rounds failed (see stderr); median of the others"
            ));
        }
        let lost: usize = rs.iter().map(|r| r.lost_while_idle).sum();
        if lost > 0 {
            note(format!("{lost} plugins died while idle"));
        }
        let over: Vec<String> = rs
            .iter()
            .filter(|r| r.foreign > max_foreign)
            .map(|r| format!("{:.2}", r.foreign))
            .collect();
        if !over.is_empty() {
            note(format!(
                "{} round(s) kept although other processes used more than {max_foreign} cores during them ({} cores): read with care",
                over.len(),
                over.join(", ")
            ));
        }
        let left: usize = rs.iter().map(|r| r.leftovers).sum();
        if left > 0 {
            let mut what: Vec<&str> = rs
                .iter()
                .flat_map(|r| r.leftover_cmds.iter().map(String::as_str))
                .collect();
            what.dedup();
            note(format!(
                "{left} processes left behind after the supervisor and its tree were gone (killed by the benchmark): {}",
                what.join(", ")
            ));
        }
        let bad: Vec<String> = rs
            .iter()
            .filter(|r| !r.clean_exit())
            .map(|r| r.exit_status.to_string())
            .collect();
        if !bad.is_empty() {
            note(format!(
                "exit status after the stop signal: {}",
                bad.join(", ")
            ));
        }
        let loads: Vec<&str> = rs.iter().map(|r| r.load.as_str()).collect();
        if !loads.is_empty() {
            note(format!(
                "load average before each round: {}",
                loads.join("; ")
            ));
        }
    }
    let scan = median(res.values().flatten().map(|r| r.scan_ms).collect());
    let scan_at = |n: usize| {
        cell(
            median(
                res.iter()
                    .filter(|((m, _), _)| *m == n)
                    .flat_map(|(_, v)| v.iter().map(|r| r.scan_ms))
                    .collect(),
            ),
            " ms",
            2,
        )
    };
    println!(
        "\n{rounds} rounds per case, medians; a fresh temporary home per round{}; /proc observer every {} ms \
         (one pass took {} overall; {}); plugin `{}`.",
        if idle.boot {
            ", started and stopped once before the measured start (`--boot`: a reboot, keys, profiles and supervise folders exist)"
        } else {
            ", the measured start the first in it"
        },
        poll.as_millis(),
        cell(scan, " ms", 2),
        ns.iter()
            .map(|&n| format!("N = {n}: {}", scan_at(n)))
            .collect::<Vec<_>>()
            .join(", "),
        idle.script.lines().nth(1).unwrap_or_default()
    );
    let retried: usize = res.values().flatten().map(|r| r.retried).sum();
    let foreign = median(res.values().flatten().map(|r| r.foreign).collect());
    println!(
        "\nEach round started on a quiet machine (other processes below {max_foreign} cores for 3 s); \
         a round during which other processes used more than that on average was discarded and run again \
         ({retried} discarded in all). CPU used by other processes during the kept rounds: median {} cores.",
        cell(foreign, "", 3)
    );
    for n in notes {
        println!("- {n}");
    }
}

fn describe(r: &Round) -> String {
    let mut s = format!(
        "cold {:.1} ms (cpu {:.0} ms, tree {:.1} ms)",
        ms(r.cold),
        ms(r.cold_cpu),
        ms(r.tree_cold_cpu)
    );
    if let Some(c) = r.core_ready {
        let _ = write!(s, " (core ready {:.1} ms)", ms(c));
    }
    let _ = write!(
        s,
        ", stop-all {:.1} ms (cpu {:.0} ms), exit {:.1} ms ({}), tree gone {:.1} ms, RSS {:.1} MB, CPU {:.2} %, tree of {}: PSS {:.2} MB, CPU {:.3} %",
        ms(r.stop_all),
        ms(r.stop_cpu),
        ms(r.exit),
        r.exit_status,
        ms(r.tree_gone),
        mb(r.rss),
        r.cpu,
        r.tree_procs,
        mb(r.pss_tree),
        r.tree_cpu
    );
    let _ = write!(
        s,
        ", RssAnon {:.1} MB, observer pass {:.2} ms, foreign CPU {:.2} cores",
        mb(r.rss_anon),
        r.scan_ms,
        r.foreign
    );
    if let Some(c) = r.core_rss {
        let _ = write!(s, ", hubcore RSS {:.1} MB", mb(c));
    }
    s
}

/// Runs the benchmark and prints the markdown tables.
pub fn run(opts: Opts) -> Result<()> {
    if opts.ns.is_empty() || opts.rounds == 0 {
        bail!("nothing to do: give at least one N and one round");
    }
    let idle = IdleAt::of(&opts);
    let bins = Bins {
        launcher: sibling_binary("launcher")?,
        hubcore: sibling_binary("hubcore")?,
        supervisord: if opts.no_supervisord {
            None
        } else {
            find_in_path("supervisord")
        },
        peers: PeerBins::find(opts.no_runit, opts.no_s6),
    };
    match &bins.supervisord {
        Some(p) => {
            eprintln!("supervisord: {}", p.display());
            warn_about_other_supervisords();
        }
        None if opts.no_supervisord => eprintln!("note: supervisord skipped (--no-supervisord)"),
        None => eprintln!(
            "note: supervisord not found in PATH (Debian: apt-get install supervisor); its rows are skipped"
        ),
    }
    eprintln!("{} load average at start: {}", clock(), loadavg());
    let max_n = opts.ns.iter().copied().max().unwrap_or(0);
    raise_nofile(max_n);
    let mut kinds = vec![Kind::LauncherOff, Kind::LauncherOn, Kind::LauncherNoSandbox];
    if bins.supervisord.is_some() {
        kinds.push(Kind::Supervisord);
    }
    // s6 with readiness reported at once, as in the restart benchmark (no effect on a start).
    for p in [Peer::Runit, Peer::S6 { ready: true }, Peer::Floor] {
        if bins.peers.has(p) {
            kinds.push(Kind::Peer(p));
        }
    }

    // One untimed round of each at the smallest N warms the page cache and the binaries.
    let warm_n = opts.ns.iter().copied().min().unwrap_or(10);
    for &k in &kinds {
        if let Err(e) = run_round(k, warm_n, &bins, opts.poll, idle) {
            check_interrupted()?;
            eprintln!("warm-up, {}: failed: {e:#}", k.label());
        }
    }

    let mut res: Results = BTreeMap::new();
    for &n in &opts.ns {
        for round in 1..=opts.rounds {
            // Cases interleaved within a round, so drift on the machine hits all of them alike.
            for &k in &kinds {
                let mut retried = 0;
                loop {
                    if !wait_quiet(opts.max_foreign, opts.quiet_wait)? {
                        eprintln!(
                            "{} the machine did not get quiet within {} s; running anyway",
                            clock(),
                            opts.quiet_wait.as_secs()
                        );
                    }
                    let load = loadavg();
                    eprintln!(
                        "{} N={n} {} round {round}/{}: load average before: {load}",
                        clock(),
                        k.label(),
                        opts.rounds
                    );
                    match run_round(k, n, &bins, opts.poll, idle) {
                        Ok(r) if r.foreign > opts.max_foreign && retried < opts.retries => {
                            retried += 1;
                            eprintln!(
                                "{} N={n} {} round {round}/{}: discarded, other processes used {:.2} cores on average ({})",
                                clock(),
                                k.label(),
                                opts.rounds,
                                r.foreign,
                                describe(&r)
                            );
                        }
                        Ok(mut r) => {
                            r.retried = retried;
                            r.load = load;
                            eprintln!(
                                "{} N={n} {} round {round}/{}: {}",
                                clock(),
                                k.label(),
                                opts.rounds,
                                describe(&r)
                            );
                            res.entry((n, k)).or_default().push(r);
                            break;
                        }
                        Err(e) => {
                            check_interrupted()?;
                            eprintln!(
                                "{} N={n} {} round {round}/{}: FAILED: {e:#}",
                                clock(),
                                k.label(),
                                opts.rounds
                            );
                            res.entry((n, k)).or_default();
                            break;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{} load average at end: {}", clock(), loadavg());
    report(&res, &kinds, &opts, bins.supervisord.is_some());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
