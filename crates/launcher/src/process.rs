//! Everything that touches OS processes: spawning a plugin in its own session, signalling and
//! killing its whole tree, finding descendants through procfs, reaping children, and the guard
//! process that cleans up if the launcher itself is killed.
//!
//! Why this shape:
//! * each plugin is a session leader (`setsid`), so its process group and session ID equal its
//!   PID and every descendant that does not deliberately call `setsid` again shares them;
//! * the launcher is a child subreaper, so orphaned descendants are re-parented to it and it
//!   reaps them; it alone calls `waitpid`, in one place ([`reap`]);
//! * spawning happens on one long-lived thread, because `PR_SET_PDEATHSIG` fires when the
//!   *thread* that forked the child exits;
//! * `PR_SET_PDEATHSIG(SIGKILL)` kills a plugin if the launcher dies, and the guard process kills
//!   the rest of its session (grandchildren do not inherit the death signal).

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment added to the launcher's own.
    pub env: Vec<(String, String)>,
    /// Working folder.
    pub cwd: PathBuf,
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// Process ID (also its process group and session ID).
    pub pid: u32,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

type SpawnJob = (SpawnSpec, std_mpsc::Sender<io::Result<Spawned>>);

/// Spawns processes from one dedicated, long-lived thread (see the module docs).
pub struct Spawner {
    tx: Mutex<std_mpsc::Sender<SpawnJob>>,
}

impl Spawner {
    /// Starts the spawner thread.
    pub fn new() -> io::Result<Spawner> {
        let (tx, rx) = std_mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("hivehub-spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(spawn_now(&spec));
                }
            })?;
        Ok(Spawner { tx: Mutex::new(tx) })
    }

    /// Spawns `spec` on the spawner thread. Blocks only for the fork/exec itself.
    pub fn spawn(&self, spec: SpawnSpec) -> io::Result<Spawned> {
        let (rtx, rrx) = std_mpsc::channel();
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((spec, rtx))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        rrx.recv()
            .map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}

fn spawn_now(spec: &SpawnSpec) -> io::Result<Spawned> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    // SAFETY: only async-signal-safe calls (setsid, prctl) run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    // The child is reaped by `reap`, not by std; dropping `Child` does not wait or kill.
    Ok(Spawned {
        pid: child.id(),
        stdout,
        stderr,
    })
}

/// Makes this process a child subreaper, so orphaned descendants of plugins become our children.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with a code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// Reaps every child that has ended, without blocking. Called on SIGCHLD and periodically.
pub fn reap() -> Vec<(u32, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw() as u32, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                out.push((pid.as_raw() as u32, Exit::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    out
}

/// One process as seen in procfs.
#[derive(Debug, Clone, Copy)]
struct ProcEntry {
    pid: i32,
    ppid: i32,
    session: i32,
}

fn live_processes() -> Vec<ProcEntry> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok())
        .filter_map(|p| p.stat().ok())
        .filter(|s| s.state != 'Z' && s.state != 'X')
        .map(|s| ProcEntry {
            pid: s.pid,
            ppid: s.ppid,
            session: s.session,
        })
        .collect()
}

/// The live processes of a plugin started as session leader `leader`: every process in its
/// session plus every process descended from it (including ones that started a new session).
/// The leader itself is included while it lives.
pub fn tree_of(leader: u32) -> Vec<u32> {
    let procs = live_processes();
    let leader = leader as i32;
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found: HashSet<i32> = procs
        .iter()
        .filter(|p| p.session == leader)
        .map(|p| p.pid)
        .collect();
    let mut stack: Vec<i32> = found.iter().copied().chain([leader]).collect();
    while let Some(pid) = stack.pop() {
        for c in children.get(&pid).into_iter().flatten() {
            if found.insert(*c) {
                stack.push(*c);
            }
        }
    }
    if procs.iter().any(|p| p.pid == leader) {
        found.insert(leader);
    }
    let mut v: Vec<u32> = found.into_iter().map(|p| p as u32).collect();
    v.sort_unstable();
    v
}

/// Sends `sig` to the plugin's process group and to every other process of its tree.
pub fn signal_tree(leader: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(leader as i32), sig);
    for pid in tree_of(leader) {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

/// Processes that carry a plugin's identity in their environment: `HIVEHUB_HOME=home` and
/// `HIVEHUB_CLIENT_ID=name` (any name when `None`). The launcher sets both for every plugin and
/// children inherit them, so this finds a descendant that escaped the plugin's session and
/// process tree (a daemon that called `setsid` and was re-parented). A process that clears its
/// environment is not found this way.
pub fn marked_processes(home: &std::path::Path, name: Option<&str>) -> Vec<u32> {
    let home_var = format!("HIVEHUB_HOME={}", home.display());
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let mut home_ok = false;
        let mut id_ok = false;
        for var in env.split(|b| *b == 0) {
            if var == home_var.as_bytes() {
                home_ok = true;
            } else if let Some(id) = var.strip_prefix(b"HIVEHUB_CLIENT_ID=") {
                id_ok = name.is_none_or(|n| id == n.as_bytes());
            }
        }
        if home_ok && id_ok && pid_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Like [`kill_tree`], and also every process marked with the plugin's identity
/// ([`marked_processes`]), so a descendant that daemonized does not survive the stop.
///
/// `spare` filters the marked processes just before they are killed: a plugin that was already
/// restarted carries the same identity, and its new process must be spared.
pub fn kill_plugin(
    leader: u32,
    home: &std::path::Path,
    name: &str,
    timeout: Duration,
    spare: &dyn Fn(Vec<u32>) -> Vec<u32>,
) -> Vec<u32> {
    let end = Instant::now() + timeout;
    let mut left = kill_tree(leader, timeout);
    loop {
        let marked = spare(marked_processes(home, Some(name)));
        for p in &marked {
            let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
        }
        if marked.is_empty() || Instant::now() >= end {
            left.extend(marked);
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs the plugin's tree until nothing of it remains, or `timeout` passes. Returns the PIDs
/// still alive (empty on success). Loops because a dying process may still fork.
pub fn kill_tree(leader: u32, timeout: Duration) -> Vec<u32> {
    let end = Instant::now() + timeout;
    loop {
        signal_tree(leader, Signal::SIGKILL);
        let left: Vec<u32> = tree_of(leader)
            .into_iter()
            .filter(|p| *p != leader || pid_alive(leader))
            .collect();
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True if `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The start time of `pid` in clock ticks since boot: with the PID, it identifies one process
/// instance even after PID reuse.
pub fn start_time(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.starttime)
}

/// The guard: a small process (this launcher binary with the hidden `__guard` argument) that
/// holds the list of plugin sessions. When the launcher dies, even by SIGKILL, the guard's stdin
/// reaches end-of-file and it kills every process left in those sessions.
pub struct Guard {
    stdin: Mutex<Option<std::process::ChildStdin>>,
    pid: u32,
}

impl Guard {
    /// Starts the guard from the executable `exe`.
    pub fn start(exe: &std::path::Path) -> io::Result<Guard> {
        Guard::start_for(exe, None)
    }

    /// Starts the guard for the plugins of `home`: at the end it also kills processes marked
    /// with that home (see [`marked_processes`]).
    pub fn start_for(exe: &std::path::Path, home: Option<&std::path::Path>) -> io::Result<Guard> {
        let mut cmd = Command::new(exe);
        cmd.arg("__guard");
        if let Some(h) = home {
            cmd.arg(h);
        }
        // No inherited stdout/stderr: the guard may outlive the launcher, and must not hold
        // its caller's pipes open.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Guard {
            stdin: Mutex::new(stdin),
            pid: child.id(),
        })
    }

    /// The guard's PID (reaped like any child).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn send(&self, line: &str) {
        let mut g = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = g.as_mut() {
            if writeln!(w, "{line}").and_then(|_| w.flush()).is_err() {
                tracing::warn!("the guard process is gone; plugins may outlive a killed launcher");
                *g = None;
            }
        }
    }

    /// Adds a plugin session to protect.
    pub fn watch(&self, leader: u32) {
        self.send(&format!("+{leader}"));
    }

    /// Removes a session once its plugin has fully stopped.
    pub fn forget(&self, leader: u32) {
        self.send(&format!("-{leader}"));
    }

    /// Tells the guard the launcher is exiting normally; it then exits without killing.
    pub fn release(&self) {
        self.send("done");
        *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The guard's main loop (run by `launcher __guard`).
pub fn guard_main() -> i32 {
    // Survive the terminal's SIGINT/SIGHUP: only end-of-file or "done" ends the guard.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn);
    }
    let mut sessions: HashSet<u32> = HashSet::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "done" {
            return 0;
        }
        if let Some(n) = line.strip_prefix('+').and_then(|n| n.parse().ok()) {
            sessions.insert(n);
        } else if let Some(n) = line.strip_prefix('-').and_then(|n| n.parse::<u32>().ok()) {
            sessions.remove(&n);
        }
    }
    // The launcher died without saying goodbye: nothing of its plugins may remain.
    for s in sessions {
        kill_tree(s, Duration::from_secs(5));
    }
    if let Some(home) = std::env::args_os().nth(2) {
        let home = std::path::PathBuf::from(home);
        for _ in 0..100 {
            let marked = marked_processes(&home, None);
            if marked.is_empty() {
                break;
            }
            for p in marked {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    0
}

/// Opens a pipe read end as a non-blocking async reader.
pub fn async_pipe(fd: OwnedFd) -> io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// Reads `path` fully, or `None`.
pub fn read_file(path: &std::path::Path) -> Option<String> {
    let mut s = String::new();
    io::Read::read_to_string(&mut File::open(path).ok()?, &mut s).ok()?;
    Some(s)
}
