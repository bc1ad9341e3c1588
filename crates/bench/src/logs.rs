//! `hivehub-bench logs`: the CPU a supervisor spends per MB of plugin output it logs: hivehub's
//! log pump (in the launcher process) against runit's `svlogd` and s6's `s6-log`, with the same
//! plugins and the same output, one supervisor at a time.
//!
//! * Plugin: a shell script that waits (idle, like [`crate::common::PLUGIN_SCRIPT`]) for
//!   SIGUSR1, then writes lines of [`LINE`] (60 bytes and a newline) as fast as it can:
//!   `yes LINE | head -n 9000` or `head -c M MB`, then execs itself again as an idle plugin
//!   (so the supervisor does not restart it, and its command line tells that it is done).
//! * Loggers, all with a timestamp per line, rotating at 10 MB and keeping 5 files (the
//!   launcher's defaults): the launcher's `logs/{plugin}.log` (`logplugins: true`); runit
//!   `log/run` = `svlogd -tt ./main` (`s10000000`, `n5` in `main/config`); s6 `log/run` =
//!   `s6-log n5 s10000000 T ./main` (s6-svscan starts it with a pipe from the plugin).
//! * Workloads: N plugins each writing 9000 lines at once (below the launcher's rate limit of
//!   10000 lines per 30 s per plugin: every supervisor writes all it gets); and one plugin
//!   flooding M MB (the launcher writes 10000 lines and reads and drops the rest, runit and s6
//!   write it all).
//! * Measure: the CPU time of the supervision tree without the plugins (launcher + guard +
//!   hubcore; runsvdir + runsv + svlogd; s6-svscan + s6-supervise + s6-log; exact, from
//!   `schedstat`), from SIGUSR1 until the writers are done and the plugins' log files have not
//!   changed for 300 ms (the pipes hold at most 64 KiB when a writer ends), minus the tree's
//!   idle CPU over the same time (measured over 2 s just before; the launcher's tree is never
//!   fully quiet: hubcore, the 2 s sampler). Bytes written: `wchar` of the tree's processes (the
//!   loggers delete rotated files, so the files undercount).

use crate::common::{
    check_interrupted, clock, loadavg, md_table, nap, plugin_names, raise_nofile, LauncherConf,
    Peer, PeerBins,
};
use crate::control::{start_timeout, Bins, Setup};
use crate::procobs;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// One log line, 60 bytes (a newline follows).
pub const LINE: &str = "hivehub-bench log line 0123456789 abcdefghijklmnopqrstuvwxyz";
/// Lines each plugin writes in the workload below the launcher's rate limit (10000 per 30 s).
const UNDER_LINES: usize = 9_000;
/// Time between "all plugins run" and the idle measure.
const SETTLE: Duration = Duration::from_secs(2);
/// Window of the idle CPU measured before the output starts.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// How long the log files must stay unchanged after the writers are done.
const QUIET: Duration = Duration::from_millis(300);
/// Interval of the observer.
const POLL: Duration = Duration::from_millis(20);

/// The command-line options of `hivehub-bench logs`.
pub struct Opts {
    /// Plugin counts of the workload below the rate limit.
    pub ns: Vec<usize>,
    /// MB (10^6 bytes) of the flood.
    pub mb: u64,
    /// Rounds (every case once per round; the median is reported).
    pub rounds: usize,
    /// Leave runit out even when it is installed.
    pub no_runit: bool,
    /// Leave s6 out even when it is installed.
    pub no_s6: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sup {
    Hivehub,
    Runit,
    S6,
}

impl Sup {
    fn label(self) -> &'static str {
        match self {
            Sup::Hivehub => "hivehub (launcher)",
            Sup::Runit => "runit (svlogd)",
            Sup::S6 => "s6 (s6-log)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    /// N plugins, each [`UNDER_LINES`] lines.
    Under(usize),
    /// One plugin, M MB.
    Flood(u64),
}

impl Work {
    fn writers(self) -> usize {
        match self {
            Work::Under(n) => n,
            Work::Flood(_) => 1,
        }
    }

    /// Bytes the plugins write in all.
    fn bytes(self) -> u64 {
        match self {
            Work::Under(n) => (n * UNDER_LINES * (LINE.len() + 1)) as u64,
            Work::Flood(mb) => mb * 1_000_000,
        }
    }

    fn head(self) -> String {
        match self {
            Work::Under(_) => format!("-n {UNDER_LINES}"),
            Work::Flood(mb) => format!("-c {}", mb * 1_000_000),
        }
    }

    fn label(self) -> String {
        match self {
            Work::Under(n) => format!(
                "{n} plugins × {UNDER_LINES} lines ({:.1} MB), below the rate limit: per MB written (= arrived)",
                self.bytes() as f64 / 1e6
            ),
            Work::Flood(mb) => format!("1 plugin, {mb} MB at once: per MB arrived"),
        }
    }
}

/// The writer plugin: idle until SIGUSR1, then the output, then idle again (`$0 idle`).
fn writer_script(work: Work) -> String {
    format!(
        "#!/bin/sh\n\
         if [ \"$1\" = idle ]; then while :; do sleep 1; done; fi\n\
         trap 'go=1' USR1\n\
         while [ -z \"$go\" ]; do sleep 1 & wait $!; done\n\
         yes '{LINE}' | head {}\n\
         exec \"$0\" idle\n",
        work.head()
    )
}

/// One run of one case.
struct Sample {
    /// CPU of the tree net of its idle CPU, nanoseconds.
    cpu_ns: f64,
    /// SIGUSR1 until the writers were done and the log files complete.
    wall: Duration,
    /// Bytes the plugins wrote.
    arrived: u64,
    /// Bytes the tree wrote (`wchar`).
    written: u64,
    /// Idle CPU of the tree before, % of one core.
    idle_pct: f64,
    /// Processes in the tree.
    procs: usize,
    load: String,
}

/// The writer processes below `sup`: plugin processes whose parent is not a plugin process.
fn writers(sup: u32, plugins: &std::path::Path) -> Vec<u32> {
    let mut needle = plugins.as_os_str().as_bytes().to_vec();
    needle.push(b'/');
    let is_plugin = |p: u32| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
    };
    let all: Vec<u32> = procobs::descendants(sup)
        .into_iter()
        .filter(|&p| is_plugin(p))
        .collect();
    all.iter()
        .copied()
        .filter(|&p| procobs::ppid(p).is_some_and(|pp| !all.contains(&pp)))
        .collect()
}

/// A writer that is done: it has exec'd itself as `... idle` (or is gone).
fn done(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(b) => b.ends_with(b"\0idle\0") || b.is_empty(),
        Err(_) => true,
    }
}

/// Bytes in the plugins' log files: the launcher's `logs/plugin*.log*`, every file of the
/// runit and s6 loggers' folders.
fn log_bytes(s: &Setup) -> u64 {
    let (dirs, prefix) = match &s.home {
        Some(h) => (vec![h.logs()], "plugin"),
        None => (s.logs.clone(), ""),
    };
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .filter(|e| e.file_name().as_bytes().starts_with(prefix.as_bytes()))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn written_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| procobs::written_bytes(p)).sum()
}

fn run_sample(sup: Sup, work: Work, bins: &Bins) -> Result<Sample> {
    let n = work.writers();
    let names = plugin_names(n);
    let script = writer_script(work);
    let mut s = match sup {
        Sup::Hivehub => {
            Setup::launcher_with(bins, &names, &LauncherConf::default(), sup.label(), &script)?
        }
        Sup::Runit => Setup::peer(bins, Peer::Runit, &names, &script, true, sup.label())?,
        Sup::S6 => Setup::peer(
            bins,
            Peer::S6 { ready: true },
            &names,
            &script,
            true,
            sup.label(),
        )?,
    };
    s.wait_all_running(start_timeout(n))?;
    if s.home.is_some() {
        s.wait_output("launcher ready", start_timeout(n))?;
    }
    nap(SETTLE)?;
    let pid = s.pid();
    let tree = procobs::tree(pid, &s.plugins);
    let ws = writers(pid, &s.plugins);
    if ws.len() != n {
        bail!("{} writer processes found, {n} expected", ws.len());
    }

    let i0 = procobs::cpu_ns_sum(&tree);
    let ti = Instant::now();
    nap(IDLE_WINDOW)?;
    let idle_rate =
        procobs::cpu_ns_sum(&tree).saturating_sub(i0) as f64 / ti.elapsed().as_secs_f64();
    let load = loadavg();

    let w0 = written_sum(&tree);
    let c0 = procobs::cpu_ns_sum(&tree);
    let t0 = Instant::now();
    for &w in &ws {
        kill(Pid::from_raw(w as i32), Signal::SIGUSR1).context("cannot signal a writer")?;
    }
    let limit = Duration::from_secs(60) + Duration::from_millis(work.bytes() / 50_000);
    let mut bytes = log_bytes(&s);
    let mut changed = t0;
    let mut writers_done = None;
    let t1 = loop {
        nap(POLL)?;
        let now = Instant::now();
        let b = log_bytes(&s);
        if b != bytes {
            (bytes, changed) = (b, now);
        }
        if writers_done.is_none() && ws.iter().all(|&p| done(p)) {
            writers_done = Some(now);
        }
        if let Some(d) = writers_done {
            if now - d.max(changed) >= QUIET {
                break now;
            }
        }
        if now - t0 > limit {
            bail!(
                "the output was not done within {:.0} s ({} of {n} writers done)",
                limit.as_secs_f64(),
                ws.iter().filter(|&&p| done(p)).count()
            );
        }
    };
    let c1 = procobs::cpu_ns_sum(&tree);
    let w1 = written_sum(&tree);
    let wall = writers_done.unwrap_or(t1).max(changed) - t0;
    let cpu_ns = c1.saturating_sub(c0) as f64 - idle_rate * (t1 - t0).as_secs_f64();
    let lost = n.saturating_sub(s.census());
    if lost > 0 {
        bail!("{lost} plugins died during the output");
    }
    s.stop(Duration::from_secs(60));
    Ok(Sample {
        cpu_ns,
        wall,
        arrived: work.bytes(),
        written: w1.saturating_sub(w0),
        idle_pct: idle_rate / 1e7,
        procs: tree.len(),
        load,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(crate::common::quantile(&v, 0.5))
}

/// Runs `hivehub-bench logs` and prints the report.
pub fn run(o: Opts) -> Result<()> {
    if o.rounds == 0 || (o.ns.is_empty() && o.mb == 0) {
        bail!("nothing to do: give --rounds and an --n or an --mb");
    }
    let bins = Bins::find(true, PeerBins::find(o.no_runit, o.no_s6))?;
    let max_n = o.ns.iter().copied().max().unwrap_or(1);
    raise_nofile(max_n * 2);
    let mut sups = vec![Sup::Hivehub];
    if bins.peers.runit.is_some() {
        sups.push(Sup::Runit);
    }
    if bins.peers.s6.is_some() {
        sups.push(Sup::S6);
    }
    let mut works: Vec<Work> = o.ns.iter().map(|&n| Work::Under(n)).collect();
    if o.mb > 0 {
        works.push(Work::Flood(o.mb));
    }
    eprintln!("{} load average at start: {}", clock(), loadavg());
    let mut res: BTreeMap<(Work, Sup), Vec<Sample>> = BTreeMap::new();
    let mut failed: BTreeMap<(Work, Sup), usize> = BTreeMap::new();
    for round in 1..=o.rounds {
        for &w in &works {
            // Supervisors interleaved within a round, so drift on the machine hits all alike.
            for &sup in &sups {
                eprintln!(
                    "{} {} / {} round {round}/{}: load average before: {}",
                    clock(),
                    sup.label(),
                    w.label(),
                    o.rounds,
                    loadavg()
                );
                match run_sample(sup, w, &bins) {
                    Ok(r) => {
                        eprintln!(
                            "{} {} / {} round {round}/{}: CPU {:.1} ms net ({:.2} ms per MB arrived), {:.1} MB arrived, {:.1} MB written, {:.0} ms, idle {:.3} %, {} processes",
                            clock(),
                            sup.label(),
                            w.label(),
                            o.rounds,
                            r.cpu_ns / 1e6,
                            r.cpu_ns / 1e6 / (r.arrived as f64 / 1e6),
                            r.arrived as f64 / 1e6,
                            r.written as f64 / 1e6,
                            r.wall.as_secs_f64() * 1e3,
                            r.idle_pct,
                            r.procs
                        );
                        res.entry((w, sup)).or_default().push(r);
                    }
                    Err(e) => {
                        check_interrupted()?;
                        eprintln!(
                            "{} / {} round {round}: FAILED: {e:#}",
                            sup.label(),
                            w.label()
                        );
                        *failed.entry((w, sup)).or_default() += 1;
                    }
                }
            }
        }
    }
    eprintln!("{} load average at end: {}", clock(), loadavg());
    report(&o, &works, &sups, &res, &failed);
    Ok(())
}

fn report(
    o: &Opts,
    works: &[Work],
    sups: &[Sup],
    res: &BTreeMap<(Work, Sup), Vec<Sample>>,
    failed: &BTreeMap<(Work, Sup), usize>,
) {
    let med = |w: Work, s: Sup, f: &dyn Fn(&Sample) -> f64| {
        median(res.get(&(w, s))?.iter().map(f).collect())
    };
    let heads: Vec<String> = sups.iter().map(|s| s.label().to_string()).collect();
    let reference = sups.iter().position(|s| *s == Sup::Runit);
    let ratios: Vec<(usize, usize)> = match reference {
        Some(r) => (0..sups.len())
            .filter(|&i| i != r)
            .map(|i| (i, r))
            .collect(),
        None => Vec::new(),
    };
    let rows = |f: &dyn Fn(&Sample) -> f64| -> Vec<(String, Vec<Option<f64>>)> {
        works
            .iter()
            .map(|&w| (w.label(), sups.iter().map(|&s| med(w, s, f)).collect()))
            .collect()
    };
    println!(
        "\n**Log cost: CPU of the supervision tree per MB (10^6 bytes) of plugin output** (median of {} rounds; idle CPU subtracted)\n",
        o.rounds
    );
    md_table(
        "workload",
        &heads,
        &ratios,
        &rows(&|r| r.cpu_ns / 1e6 / (r.arrived as f64 / 1e6)),
        " ms",
        2,
    );
    println!("\n**CPU time of the supervision tree for the whole output** (median)\n");
    md_table(
        "workload",
        &heads,
        &ratios,
        &rows(&|r| r.cpu_ns / 1e6),
        " ms",
        1,
    );
    println!("\n**MB written by the supervision tree** (`wchar`: log lines with their timestamps; median)\n");
    md_table(
        "workload",
        &heads,
        &ratios,
        &rows(&|r| r.written as f64 / 1e6),
        " MB",
        2,
    );
    println!(
        "\n**Wall time from the start of the output until the writers were done and the log files complete** (median)\n"
    );
    md_table(
        "workload",
        &heads,
        &ratios,
        &rows(&|r| r.wall.as_secs_f64() * 1e3),
        " ms",
        0,
    );
    println!();
    if let Some(&flood) = works.iter().find(|w| matches!(w, Work::Flood(_))) {
        let cpu = med(flood, Sup::Hivehub, &|r| r.cpu_ns / 1e6);
        let written = med(flood, Sup::Hivehub, &|r| r.written as f64 / 1e6);
        if let (Some(c), Some(w)) = (cpu, written) {
            println!(
                "- hivehub, flood: the launcher writes {RATE_LINES} lines per 30 s per plugin and reads and drops the rest. Per MB arrived: {:.2} ms (the table above); per MB it wrote ({w:.2} MB): {:.2} ms, which counts the reading of every dropped line.",
                c / (flood.bytes() as f64 / 1e6),
                c / w.max(1e-9)
            );
        }
    }
    for &w in works {
        for &s in sups {
            let Some(rs) = res.get(&(w, s)) else { continue };
            let loads: Vec<&str> = rs.iter().map(|r| r.load.as_str()).collect();
            let idle = median(rs.iter().map(|r| r.idle_pct).collect()).unwrap_or(f64::NAN);
            let procs = rs.first().map_or(0, |r| r.procs);
            println!(
                "- {} / {}: {procs} processes in the tree, idle CPU {idle:.3} % of one core; load average before each round: {}.",
                s.label(),
                w.label(),
                loads.join("; ")
            );
        }
    }
    for ((w, s), n) in failed {
        println!(
            "- {} / {}: {n} of {} rounds failed (see stderr).",
            s.label(),
            w.label(),
            o.rounds
        );
    }
    println!(
        "- every logger stamps each line (launcher `2026-…Z [out] `, `svlogd -tt`, `s6-log T`) and rotates at 10 MB keeping 5 files; plugin line: `{LINE}`; the floor has no logger and is not in this benchmark."
    );
}

/// The launcher's rate limit, lines per plugin per 30 s (journald's `RateLimitBurst`).
const RATE_LINES: u64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_workloads() {
        assert_eq!(LINE.len(), 60);
        assert!(UNDER_LINES < RATE_LINES as usize);
        assert_eq!(Work::Under(10).bytes(), 10 * 9000 * 61);
        assert_eq!(Work::Flood(5).head(), "-c 5000000");
        let s = writer_script(Work::Under(1));
        assert!(s.contains("head -n 9000\n"), "{s}");
        assert!(s.contains("exec \"$0\" idle\n"), "{s}");
    }
}
