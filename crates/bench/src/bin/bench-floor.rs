//! `bench-floor LIST`: the physical floor of process supervision, for `hivehub-bench`.
//!
//! Starts every program named in the file LIST (one path a line) in a session of its own
//! (`std::process::Command` with `setsid`, as the launcher does), reaps with `waitpid` on
//! SIGCHLD and restarts a dead program at once, whatever its exit. On SIGTERM (or SIGINT) it
//! sends SIGTERM to each program's process group, waits up to 10 s for them, SIGKILLs the
//! stragglers and exits 0. Nothing else: no logs, no state, no control interface, no backoff.

use nix::libc;
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the programs get after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Starts one program; its PID, or None (said on stderr) when it cannot start.
fn spawn(program: &str) -> Option<Pid> {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null());
    // SAFETY: only setsid, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    match cmd.spawn() {
        // The Child is dropped without waiting: waitpid(-1) below reaps every program.
        Ok(c) => Some(Pid::from_raw(c.id() as i32)),
        Err(e) => {
            eprintln!("bench-floor: cannot start {program}: {e}");
            None
        }
    }
}

/// Reaps every exited child; returns the indexes of the programs that died.
fn reap(kids: &mut HashMap<Pid, usize>) -> Vec<usize> {
    let mut dead = Vec::new();
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        match st.pid() {
            Some(pid) if st != WaitStatus::StillAlive => {
                if let Some(i) = kids.remove(&pid) {
                    dead.push(i);
                }
            }
            _ => break,
        }
    }
    dead
}

/// Waits for a signal of `set` (blocked) for at most `timeout`.
fn wait_signal(set: &SigSet, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid signal set and timespec; no siginfo wanted.
    unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
}

fn main() {
    let Some(list) = std::env::args().nth(1) else {
        eprintln!("usage: bench-floor LIST (a file naming one program per line)");
        std::process::exit(2);
    };
    let programs: Vec<String> = match std::fs::read_to_string(&list) {
        Ok(s) => s
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Err(e) => {
            eprintln!("bench-floor: cannot read {list}: {e}");
            std::process::exit(2);
        }
    };
    // Signals are blocked and taken synchronously: no handler, no race with the reaping.
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("bench-floor: cannot block signals: {e}");
        std::process::exit(1);
    }
    let mut kids: HashMap<Pid, usize> = HashMap::new();
    for (i, p) in programs.iter().enumerate() {
        if let Some(pid) = spawn(p) {
            kids.insert(pid, i);
        }
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                for i in reap(&mut kids) {
                    if let Some(pid) = spawn(&programs[i]) {
                        kids.insert(pid, i);
                    }
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    for pid in kids.keys() {
        let _ = killpg(*pid, Signal::SIGTERM);
    }
    let end = Instant::now() + STOP_WAIT;
    loop {
        reap(&mut kids);
        let now = Instant::now();
        if kids.is_empty() || now >= end {
            break;
        }
        wait_signal(&set, end - now);
    }
    for pid in kids.keys() {
        let _ = killpg(*pid, Signal::SIGKILL);
    }
    while !kids.is_empty() {
        match waitpid(None, None) {
            Ok(st) => {
                if let Some(pid) = st.pid() {
                    kids.remove(&pid);
                }
            }
            Err(_) => break,
        }
    }
}
