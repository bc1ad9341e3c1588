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
//!
//! # Spawn
//! vfork-style (`clone(CLONE_VM | CLONE_VFORK | CLONE_FILES)`, as `posix_spawn` does), so the
//! launcher's page tables are not copied, nor its descriptor table: the child's own
//! descriptors wait in a few low reserved slots, and its first step after `setsid` is a private
//! copy of only the descriptors below them (`close_range(CLOSE_RANGE_UNSHARE)`, see `Slots`).
//! The spawner thread blocks every signal; the child resets the handlers
//! to their defaults and unblocks them before `execve`. In between it points
//! stdin at `/dev/null` and stdout and stderr at pipes, enters the home, marks every other
//! descriptor close-on-exec (`close_range`), takes the plugin's user (raw `setresuid`: glibc's
//! would signal the launcher's threads), sets `PR_SET_PDEATHSIG` (again after a user switch,
//! which clears it), `no_new_privs` and the Landlock ruleset ([`crate::sandbox`]). A script
//! without `#!` runs under `/bin/sh`, as with `execvp`. Once the child has let go of the
//! launcher's memory the spawner yields, so the plugin finishes loading before the launcher
//! records, logs and publishes the start.
//!
//! # Finding and killing a plugin
//! * The tree ([`tree_of`], [`ProcTable::tree`], one pass over `/proc/*/stat`): the plugin's
//!   session plus every descendant of the leader or of a session member.
//! * Marked processes ([`marked_processes`]): the launcher gives every plugin `HIVEHUB_HOME` and
//!   `HIVEHUB_CLIENT_ID`, and its children inherit them, so a daemon that left the session and
//!   the tree is still found. Under a root launcher a plugin's own user ID marks its processes
//!   too, which also finds one that cleared its environment.
//! * [`kill_plugins`] repeats SIGKILL over the trees and marked processes until nothing is
//!   left or its timeout passes; a stop succeeds only when nothing is left.
//!
//! # The guard
//! The launcher binary forks its guard before it starts any thread ([`Guard::fork_early`]; the
//! child is named `hivehub-guard`); a library user starts this binary as `launcher __guard HOME`
//! ([`Guard::start_for`]). Either way [`guard_main`] reads lines from a pipe on stdin:
//! `hHOME` once the home is locked (a forked guard), `+PID` when a plugin is spawned, `uUID`
//! for a plugin's own user ID, `-PID` once the plugin is fully stopped, `done` at a clean exit.
//! On end-of-file (the launcher died) it kills the tree of every session still listed, every
//! process of a listed user ID and every process marked with the home. It ignores SIGINT and
//! SIGHUP, so a terminal's ^C reaches only the launcher's orderly shutdown.
//!
//! # Limits
//! A descendant that calls `setsid` and whose parent exits before a scan sees it is re-parented
//! to the launcher, in no plugin's tree: it escapes the monitor's measurements, and escapes a
//! stop and the guard only if it also cleared its environment and runs as the launcher's user.
//! No cgroups: no kernel-enforced containment, no hard CPU or memory limits, only the monitor's.

use crate::procstat::{is_zombie, parse_stat, read_into};
use crate::sandbox::Confinement;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to start.
#[derive(Debug)]
pub struct SpawnSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment added to the launcher's own, or the whole environment with `env_clear`.
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment rather than the launcher's (a confined plugin gets an
    /// allow-list only, see [`crate::sandbox::environment`]).
    pub env_clear: bool,
    /// Working folder.
    pub cwd: PathBuf,
    /// User, `no_new_privs` and Landlock ruleset the child takes on before `execve`.
    pub confine: Confinement,
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
                // Block every signal in this thread, for good: the child of a vfork-style spawn
                // shares its memory and must not run the launcher's handlers (it unblocks them
                // itself before exec). Signals to the process go to the other threads.
                let _ = nix::sys::signal::pthread_sigmask(
                    nix::sys::signal::SigmaskHow::SIG_BLOCK,
                    Some(&nix::sys::signal::SigSet::all()),
                    None,
                );
                let mut ws = Workspace {
                    stack: Vec::new(),
                    slots: Slots::new().ok(),
                };
                for (spec, reply) in rx {
                    let _ = reply.send(spawn_now(&spec, &mut ws));
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

/// Spawns with `fork` through `std::process::Command` (the `pre_exec` hook rules out
/// `posix_spawn`). Used when [`spawn_vfork`] cannot be (a program name without a `/`, to keep
/// std's `PATH` search).
fn spawn_fork(spec: &SpawnSpec) -> io::Result<Spawned> {
    let c = &spec.confine;
    if c.creds.is_some() || c.landlock.is_some() || c.no_new_privs {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a confined program must be given by its path",
        ));
    }
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if spec.env_clear {
        cmd.env_clear();
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    // SAFETY: only async-signal-safe calls (setsid, prctl, close_range) run between fork and
    // exec.
    unsafe {
        cmd.pre_exec(|| {
            // As in `vfork_child`: no inherited descriptor reaches the program.
            nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 1u32 << 2);
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

/// What the spawner thread keeps between spawns.
struct Workspace {
    /// The vfork child's stack.
    stack: Vec<u8>,
    /// Low descriptors reserved for handing a child its own; `None` if they could not be
    /// reserved (the child then copies the whole table).
    slots: Option<Slots>,
}

/// Four descriptors, the lowest free ones when the spawner started, that only the spawner
/// thread uses: before a spawn it puts the child's stdin, stdout, stderr and Landlock ruleset
/// there, and afterwards `/dev/null` again (so the launcher holds no end of a plugin's pipes).
///
/// Why: a child normally copies the launcher's whole descriptor table, and `execve` then
/// closes every copy marked close-on-exec. The launcher holds several descriptors per plugin
/// (two pipes, the log file, the monitor's `/proc` files: 540 at N = 100), so that copy and
/// those closes were a large share of a restart. With the slots, the child shares the table
/// (`CLONE_FILES`) and at once takes a private copy of only the descriptors below the
/// slots' end (`close_range(end, ~0, CLOSE_RANGE_UNSHARE)`, Linux 5.9).
struct Slots {
    /// `/dev/null`, for putting back after a spawn.
    null: OwnedFd,
    fds: [OwnedFd; 4],
}

impl Slots {
    fn new() -> io::Result<Slots> {
        let null = OwnedFd::from(File::open("/dev/null")?);
        let dup = || -> io::Result<OwnedFd> {
            let fd = nix::fcntl::fcntl(&null, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
                .map_err(io::Error::from)?;
            // SAFETY: `fd` is a new descriptor owned by nobody else.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        };
        let fds = [dup()?, dup()?, dup()?, dup()?];
        Ok(Slots { null, fds })
    }

    /// Puts `fd` (or `/dev/null`) in slot `i`; returns the slot's number.
    fn put(&self, i: usize, fd: Option<RawFd>) -> io::Result<RawFd> {
        use std::os::fd::AsRawFd;
        let slot = self.fds[i].as_raw_fd();
        let from = fd.unwrap_or_else(|| self.null.as_raw_fd());
        // SAFETY: both are open descriptors; the slot is this thread's alone to replace.
        if unsafe { nix::libc::dup3(from, slot, nix::libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(slot)
    }

    /// One past the highest slot: the child keeps the descriptors below it.
    fn end(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.fds.iter().map(|f| f.as_raw_fd()).max().unwrap_or(2) + 1
    }

    /// Back to `/dev/null` in every slot but stdin's.
    fn clear(&self) {
        for i in 1..4 {
            let _ = self.put(i, None);
        }
    }
}

/// Whether `close_range(CLOSE_RANGE_UNSHARE)` worked so far (a kernel before 5.9 refuses it:
/// then every child copies the whole table, as before).
static SHARE_FILES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn spawn_now(spec: &SpawnSpec, ws: &mut Workspace) -> io::Result<Spawned> {
    if spec.program.as_os_str().as_encoded_bytes().contains(&b'/') {
        match spawn_vfork_then_clear(spec, ws) {
            Err(e)
                if e.raw_os_error() == Some(nix::libc::EINVAL)
                    && SHARE_FILES.swap(false, std::sync::atomic::Ordering::SeqCst) =>
            {
                tracing::debug!("close_range cannot unshare here, children copy the table");
                spawn_vfork_then_clear(spec, ws)
            }
            r => r,
        }
    } else {
        spawn_fork(spec)
    }
}

/// [`spawn_vfork`], then the slots back to `/dev/null` whatever happened.
fn spawn_vfork_then_clear(spec: &SpawnSpec, ws: &mut Workspace) -> io::Result<Spawned> {
    let r = spawn_vfork(spec, ws);
    if let Some(slots) = &ws.slots {
        slots.clear();
    }
    r
}

/// Everything the child of [`spawn_vfork`] needs, prepared by the parent: the child only makes
/// system calls on it.
struct ChildArgs {
    program: *const nix::libc::c_char,
    argv: *const *const nix::libc::c_char,
    /// `/bin/sh program args…`, for a script without `#!` (`ENOEXEC`), like `execvp`.
    sh_argv: *const *const nix::libc::c_char,
    envp: *const *const nix::libc::c_char,
    cwd: *const nix::libc::c_char,
    fds: [RawFd; 3],
    /// With `CLONE_FILES`: the child first takes a private copy of the descriptors below this
    /// (see [`Slots`]); 0 without.
    unshare_below: nix::libc::c_uint,
    /// Switch to `uid`/`gid` with `groups` (`ngroups` of them).
    switch_user: bool,
    uid: nix::libc::uid_t,
    gid: nix::libc::gid_t,
    groups: *const nix::libc::gid_t,
    ngroups: usize,
    no_new_privs: bool,
    /// A Landlock ruleset to restrict itself with, or -1.
    landlock: RawFd,
    /// The `errno` of the failed step, written by the child (same memory: `CLONE_VM`).
    err: std::sync::atomic::AtomicI32,
}

/// The child of [`spawn_vfork`]: runs on its own small stack in the parent's memory while the
/// parent thread is suspended, so it only makes async-signal-safe system calls and writes
/// nothing but `err`. Every signal is blocked on entry (inherited from the spawner thread).
extern "C" fn vfork_child(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    use nix::libc;
    // SAFETY: `arg` points to the parent's `ChildArgs`, alive until the child execs or exits.
    let a = unsafe { &*(arg as *const ChildArgs) };
    let fail = |a: &ChildArgs| -> nix::libc::c_int {
        // SAFETY: reading errno and exiting are async-signal-safe.
        unsafe {
            let e = *libc::__errno_location();
            a.err.store(
                if e == 0 { libc::EIO } else { e },
                std::sync::atomic::Ordering::SeqCst,
            );
            libc::_exit(127)
        }
    };
    // SAFETY: raw system calls on values prepared by the parent.
    unsafe {
        // Handlers of the parent must not run here, nor be inherited: back to the defaults
        // (ignored signals stay ignored, except SIGPIPE, which Rust ignores; like std).
        let mut old: libc::sigaction = std::mem::zeroed();
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::setsid() < 0 {
            return fail(a);
        }
        // Until this call the table is the launcher's own: nothing may change it before.
        const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;
        if a.unshare_below > 0
            && libc::syscall(
                libc::SYS_close_range,
                a.unshare_below,
                u32::MAX,
                CLOSE_RANGE_UNSHARE,
            ) < 0
        {
            return fail(a);
        }
        for (i, fd) in a.fds.iter().enumerate() {
            // The parent made sure every fd is above 2, so none is overwritten here.
            if libc::dup2(*fd, i as libc::c_int) < 0 {
                return fail(a);
            }
        }
        if libc::chdir(a.cwd) < 0 {
            return fail(a);
        }
        // Descriptors the launcher inherited without close-on-exec (from its shell or service
        // manager) must not reach a plugin. The ruleset fd is needed until `execve`, so mark
        // rather than close; a kernel without close_range (before 5.11) leaves them.
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
        // Raw system calls: glibc's setuid() would signal every thread of the launcher to
        // change them too, and this child shares the launcher's memory.
        if a.switch_user
            && (libc::syscall(libc::SYS_setgroups, a.ngroups, a.groups) < 0
                || libc::syscall(libc::SYS_setresgid, a.gid, a.gid, a.gid) < 0
                || libc::syscall(libc::SYS_setresuid, a.uid, a.uid, a.uid) < 0)
        {
            return fail(a);
        }
        // After the user switch, which clears the parent-death signal.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            return fail(a);
        }
        if a.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return fail(a);
        }
        if a.landlock >= 0 && libc::syscall(libc::SYS_landlock_restrict_self, a.landlock, 0) < 0 {
            return fail(a);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(a.program, a.argv, a.envp);
        if *libc::__errno_location() == libc::ENOEXEC {
            libc::execve(c"/bin/sh".as_ptr(), a.sh_argv, a.envp);
        }
        fail(a)
    }
}

fn cstring(b: impl Into<Vec<u8>>) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A pipe whose ends are both close-on-exec and above fd 2.
fn pipe_above_2() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((above_2(r)?, above_2(w)?))
}

fn above_2(fd: OwnedFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let dup = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(io::Error::from)?;
    // SAFETY: `dup` is a new descriptor owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) })
}

/// Spawns like `posix_spawn` does: `clone(CLONE_VM | CLONE_VFORK)`, so the launcher's page
/// tables are not copied (a `fork` of a process with tens of MB mapped costs a millisecond or
/// more, and copy-on-write faults afterwards). The child runs [`vfork_child`]: default signal
/// handlers, `setsid`, stdin from `/dev/null`, stdout and stderr to pipes, the working folder,
/// the plugin's user, `PR_SET_PDEATHSIG(SIGKILL)`, `no_new_privs`, the Landlock ruleset,
/// `execve`. `stack` is the child's stack, reused across calls.
fn spawn_vfork(spec: &SpawnSpec, ws: &mut Workspace) -> io::Result<Spawned> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let program = cstring(spec.program.as_os_str().as_bytes())?;
    let args: Vec<std::ffi::CString> = std::iter::once(Ok(program.clone()))
        .chain(spec.args.iter().map(|a| cstring(a.as_bytes())))
        .collect::<io::Result<_>>()?;
    let mut env: Vec<(OsString, OsString)> = if spec.env_clear {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| !spec.env.iter().any(|(n, _)| k == n))
            .collect()
    };
    env.extend(spec.env.iter().cloned());
    let envs: Vec<std::ffi::CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(kv)
        })
        .collect::<io::Result<_>>()?;
    let cwd = cstring(spec.cwd.as_os_str().as_bytes())?;
    let ptrs = |v: &[std::ffi::CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect()
    };
    let argv = ptrs(&args);
    let envp = ptrs(&envs);
    let sh_argv: Vec<*const libc::c_char> = [c"/bin/sh".as_ptr()]
        .into_iter()
        .chain(argv.iter().copied())
        .collect();
    let creds = spec.confine.creds.as_ref();
    let groups: Vec<libc::gid_t> = creds.map(|c| c.groups.clone()).unwrap_or_default();
    let (out_r, out_w) = pipe_above_2()?;
    let (err_r, err_w) = pipe_above_2()?;
    let landlock = spec.confine.landlock.as_ref().map(|f| f.as_raw_fd());
    let share = SHARE_FILES.load(std::sync::atomic::Ordering::SeqCst);
    // With slots, the child's descriptors sit below the slots' end; without, anywhere above 2.
    let (fds, landlock, unshare_below, _stdin) = match (&ws.slots, share) {
        (Some(slots), true) => (
            [
                slots.put(0, None)?,
                slots.put(1, Some(out_w.as_raw_fd()))?,
                slots.put(2, Some(err_w.as_raw_fd()))?,
            ],
            match landlock {
                Some(fd) => slots.put(3, Some(fd))?,
                None => -1,
            },
            slots.end() as libc::c_uint,
            None,
        ),
        _ => {
            let stdin = above_2(OwnedFd::from(File::open("/dev/null")?))?;
            (
                [stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
                landlock.unwrap_or(-1),
                0,
                Some(stdin),
            )
        }
    };
    let stack = &mut ws.stack;
    let args_block = ChildArgs {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        sh_argv: sh_argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ptr(),
        fds,
        unshare_below,
        switch_user: creds.is_some(),
        uid: creds.map_or(0, |c| c.uid),
        gid: creds.map_or(0, |c| c.gid),
        groups: groups.as_ptr(),
        ngroups: groups.len(),
        no_new_privs: spec.confine.no_new_privs,
        landlock,
        err: std::sync::atomic::AtomicI32::new(0),
    };
    const STACK: usize = 64 * 1024;
    if stack.len() < STACK {
        stack.resize(STACK, 0);
    }
    // The stack grows down: pass its 16-byte aligned top.
    let top = {
        let end = stack.as_mut_ptr() as usize + stack.len();
        (end & !15) as *mut libc::c_void
    };
    // SAFETY: CLONE_VFORK suspends this thread until the child has called execve or _exit, so
    // the stack and `args_block` outlive the child's use of them; the child only makes system
    // calls (see `vfork_child`); every signal is blocked in this thread (see `Spawner::new`).
    let pid = unsafe {
        libc::clone(
            vfork_child,
            top,
            libc::CLONE_VM
                | libc::CLONE_VFORK
                | if unshare_below > 0 {
                    libc::CLONE_FILES
                } else {
                    0
                }
                | libc::SIGCHLD,
            &args_block as *const ChildArgs as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let err = args_block.err.load(std::sync::atomic::Ordering::SeqCst);
    if err != 0 {
        // It never ran the program: reap it here (the caller holds the reap lock).
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(io::Error::from_raw_os_error(err));
    }
    drop((out_w, err_w));
    // The child released this thread from inside its `execve` (when it let go of the shared
    // memory), and the wake-up preempted it: it still has to load the program. Let it finish
    // before the launcher records the start, logs and publishes, which would otherwise run
    // first on this CPU and delay the plugin by their length (seen with `sched_switch` traces).
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
    Ok(Spawned {
        pid: pid as u32,
        stdout: out_r,
        stderr: err_r,
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

/// How `pid`, a child of this process, ended, if it has: without reaping it, so that its PID
/// stays its own until [`reap`] (`waitid` with `WNOWAIT`).
pub fn ended(pid: u32) -> Option<Exit> {
    use nix::sys::wait::{waitid, Id};
    let pid = i32::try_from(pid).ok().filter(|p| *p > 0)?;
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
        Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig as i32)),
        _ => None,
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

/// One pass over `/proc`: every live (not zombie) process with its parent and session, indexed
/// by parent. Reads one `stat` file per process and nothing else.
pub struct ProcTable {
    procs: Vec<ProcEntry>,
    children: HashMap<i32, Vec<i32>>,
    sessions: HashMap<i32, Vec<i32>>,
}

impl ProcTable {
    /// Takes the snapshot.
    pub fn scan() -> ProcTable {
        let mut procs = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            let mut buf = Vec::with_capacity(512);
            let mut path = String::with_capacity(32);
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                path.clear();
                let _ = std::fmt::Write::write_fmt(&mut path, format_args!("/proc/{pid}/stat"));
                if read_into(&path, &mut buf).is_err() {
                    continue;
                }
                let Some(st) = parse_stat(pid, &buf) else {
                    continue;
                };
                if is_zombie(st.state) {
                    continue;
                }
                procs.push(ProcEntry {
                    pid,
                    ppid: st.ppid,
                    session: st.session,
                });
            }
        }
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        let mut sessions: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in &procs {
            children.entry(p.ppid).or_default().push(p.pid);
            sessions.entry(p.session).or_default().push(p.pid);
        }
        ProcTable {
            procs,
            children,
            sessions,
        }
    }

    /// True if `pid` was alive (and not a zombie) in the snapshot.
    pub fn alive(&self, pid: u32) -> bool {
        self.procs.iter().any(|p| p.pid == pid as i32)
    }

    /// Adds `root`'s descendants (not `root` itself) to `found`.
    fn add_descendants(&self, root: i32, found: &mut HashSet<i32>) {
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            for c in self.children.get(&pid).into_iter().flatten() {
                if found.insert(*c) {
                    stack.push(*c);
                }
            }
        }
    }

    /// The processes of a plugin started as session leader `leader`, as in [`tree_of`].
    pub fn tree(&self, leader: u32) -> Vec<u32> {
        let leader = leader as i32;
        let mut found: HashSet<i32> = self
            .sessions
            .get(&leader)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let roots: Vec<i32> = found.iter().copied().chain([leader]).collect();
        for r in roots {
            self.add_descendants(r, &mut found);
        }
        if self.alive(leader as u32) {
            found.insert(leader);
        }
        let mut v: Vec<u32> = found.into_iter().map(|p| p as u32).collect();
        v.sort_unstable();
        v
    }
}

/// The processes that run a binary of `dir` (`HOME/plugins`), by its file name: their
/// executable is in `dir`, or, for a script, the interpreter's first or second argument is a
/// file of `dir` (relative arguments are resolved against the process's working folder).
/// `skip` are the session leaders of the plugins this launcher runs: their sessions and trees
/// are not looked at. One pass over `/proc`, plus `exe` and `cmdline` of the other processes.
pub fn instances_in(dir: &std::path::Path, skip: &[u32]) -> HashMap<String, Vec<u32>> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let table = ProcTable::scan();
    let mut ours: HashSet<u32> = HashSet::from([std::process::id()]);
    for leader in skip {
        ours.extend(table.tree(*leader));
    }
    let in_dir = |p: &std::path::Path| -> Option<String> {
        let p = std::fs::canonicalize(p).ok()?;
        (p.parent() == Some(dir.as_path()))
            .then(|| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten()
    };
    let mut found: HashMap<String, Vec<u32>> = HashMap::new();
    let mut buf = Vec::new();
    for e in &table.procs {
        let pid = e.pid as u32;
        if ours.contains(&pid) {
            continue;
        }
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        let mut name = std::fs::read_link(proc_dir.join("exe"))
            .ok()
            .and_then(|exe| in_dir(&exe));
        if name.is_none() && read_into(&format!("/proc/{pid}/cmdline"), &mut buf).is_ok() {
            let cwd = std::fs::read_link(proc_dir.join("cwd")).unwrap_or_default();
            name = buf
                .split(|b| *b == 0)
                .skip(1)
                .take(2)
                .filter(|a| !a.is_empty() && a[0] != b'-')
                .find_map(|a| {
                    let a = std::path::Path::new(std::ffi::OsStr::from_bytes(a));
                    in_dir(&cwd.join(a))
                });
        }
        if let Some(n) = name {
            found.entry(n).or_default().push(pid);
        }
    }
    found
}

/// The live processes of a plugin started as session leader `leader`: every process in its
/// session plus every process descended from it (including ones that started a new session).
/// The leader itself is included while it lives.
pub fn tree_of(leader: u32) -> Vec<u32> {
    ProcTable::scan().tree(leader)
}

/// Sends each plugin's main process its stop signal, once, in the given order. The rest of
/// its tree is the plugin's own business (a shell passes the signal on, a runtime stops its
/// workers) until the main process has exited or its stop timeout has passed; then
/// [`kill_plugins`] deals with what is left.
pub fn signal_leaders(targets: &[(u32, Signal)]) {
    for (leader, sig) in targets {
        let _ = kill(Pid::from_raw(*leader as i32), *sig);
    }
}

/// What a process's environment says about whose plugin it is: `Some(id)` when it carries
/// `HIVEHUB_HOME=home` and `HIVEHUB_CLIENT_ID=id`.
fn marked_id(pid: u32, home_var: &[u8], buf: &mut Vec<u8>, path: &mut String) -> Option<String> {
    path.clear();
    let _ = std::fmt::Write::write_fmt(path, format_args!("/proc/{pid}/environ"));
    read_into(path, buf).ok()?;
    let mut home_ok = false;
    let mut id = None;
    for var in buf.split(|b| *b == 0) {
        if var == home_var {
            home_ok = true;
        } else if let Some(v) = var.strip_prefix(b"HIVEHUB_CLIENT_ID=") {
            id = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    id.filter(|_| home_ok)
}

/// Whose plugin process `pid` is, as far as it shows: the user that owns it, and the plugin
/// named in its environment under `home` (see [`marked_processes`]).
pub fn identity_of(pid: u32, home: &std::path::Path) -> (Option<u32>, Option<String>) {
    let home_var = format!("HIVEHUB_HOME={}", home.display());
    let (mut buf, mut path) = (Vec::new(), String::new());
    let uid = proc_uid(pid as i32, &mut path);
    (
        uid,
        marked_id(pid, home_var.as_bytes(), &mut buf, &mut path),
    )
}

/// Processes that carry a plugin's identity in their environment: `HIVEHUB_HOME=home` and
/// `HIVEHUB_CLIENT_ID=name` (any name when `None`). The launcher sets both for every plugin and
/// children inherit them, so this finds a descendant that escaped the plugin's session and
/// process tree (a daemon that called `setsid` and was re-parented). A process that clears its
/// environment is not found this way. Reads the environment of every process on the host.
pub fn marked_processes(home: &std::path::Path, name: Option<&str>) -> Vec<u32> {
    let home_var = format!("HIVEHUB_HOME={}", home.display());
    let me = std::process::id();
    let table = ProcTable::scan();
    let (mut buf, mut path) = (Vec::new(), String::new());
    table
        .procs
        .iter()
        .map(|p| p.pid as u32)
        .filter(|p| *p != me)
        .filter(|p| {
            marked_id(*p, home_var.as_bytes(), &mut buf, &mut path)
                .is_some_and(|id| name.is_none_or(|n| id == n))
        })
        .collect()
}

/// Filters the marked processes of a target (its name) before they are killed, given the pass.
pub type SpareFn<'a> = dyn Fn(&ProcTable, &str, Vec<u32>) -> Vec<u32> + 'a;

/// One plugin to kill with [`kill_plugins`].
#[derive(Debug, Clone)]
pub struct KillTarget {
    /// Its session leader (alive or not).
    pub leader: u32,
    /// Its name: processes marked with it are part of it.
    pub name: String,
    /// Started by this process (so every process of it descends from us while we are a
    /// subreaper); false for an instance left by an earlier launcher.
    pub own: bool,
    /// The user ID that belongs to this plugin alone (a user of its own under a root
    /// launcher): every process of it is part of the plugin, even one that left its session
    /// and cleared its environment.
    pub uid: Option<u32>,
    /// The signal what is left gets first, once, before SIGKILL after the grace period of
    /// [`kill_plugins`]: the plugin's stop signal after its main process exited by itself.
    /// `None`: SIGKILL at once.
    pub polite: Option<Signal>,
}

/// The owner of `/proc/{pid}`: the process's effective user.
fn proc_uid(pid: i32, path: &mut String) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    path.clear();
    let _ = std::fmt::Write::write_fmt(path, format_args!("/proc/{pid}"));
    std::fs::metadata(&*path).ok().map(|m| m.uid())
}

/// Ends every process of every target: each target's tree ([`ProcTable::tree`]) and every
/// process marked with its identity ([`marked_processes`]). A target with a `polite` signal
/// has its processes sent that signal once and `grace` to exit; then (and at once for the
/// others) SIGKILL, until nothing of them remains or `grace + timeout` passes. Returns the
/// PIDs still alive per target (all empty on success).
///
/// Costs one pass over `/proc` `stat` files per round, whatever the number of targets, plus an
/// `environ` read for the processes that could be an escaped daemon of a target: when this
/// process is a child subreaper and every target is its own, only its descendants can be (an
/// orphan is re-parented to the nearest subreaper), minus the ones already in a target's tree
/// and the sessions and trees of the plugins `others` names (other live plugins, queried after
/// each pass: the caller can take its spawn lock there so a plugin being started is known).
///
/// `spare` filters the marked processes of a target just before they are killed: a plugin that
/// was already restarted carries the same identity, and its new process must be spared.
pub fn kill_plugins(
    targets: &[KillTarget],
    home: &std::path::Path,
    grace: Duration,
    timeout: Duration,
    others: &dyn Fn() -> Vec<u32>,
    spare: &SpareFn<'_>,
) -> Vec<Vec<u32>> {
    let polite_end = Instant::now() + grace;
    let end = polite_end + timeout;
    let mut asked: HashSet<u32> = HashSet::new();
    let home_var = format!("HIVEHUB_HOME={}", home.display());
    let me = std::process::id() as i32;
    let subreaper = nix::sys::prctl::get_child_subreaper().unwrap_or(false);
    let all_own = targets.iter().all(|t| t.own);
    let (mut buf, mut path) = (Vec::new(), String::new());
    let index: HashMap<&str, usize> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let by_uid: HashMap<u32, usize> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.uid.map(|u| (u, i)))
        .collect();
    for t in targets.iter().filter(|t| t.polite.is_none()) {
        let _ = killpg(Pid::from_raw(t.leader as i32), Signal::SIGKILL);
    }
    loop {
        let table = ProcTable::scan();
        let mut found: Vec<Vec<u32>> = targets.iter().map(|t| table.tree(t.leader)).collect();
        // Processes accounted for: the targets' trees, other plugins' trees, ourselves.
        let mut known: HashSet<i32> = found.iter().flatten().map(|p| *p as i32).collect();
        known.insert(me);
        for leader in others() {
            known.extend(table.tree(leader).into_iter().map(|p| p as i32));
        }
        let candidates: Vec<i32> = if subreaper && all_own {
            let mut d = HashSet::new();
            table.add_descendants(me, &mut d);
            d.into_iter().filter(|p| !known.contains(p)).collect()
        } else {
            table
                .procs
                .iter()
                .map(|p| p.pid)
                .filter(|p| !known.contains(p))
                .collect()
        };
        let mut marked: Vec<Vec<u32>> = vec![Vec::new(); targets.len()];
        for pid in candidates {
            if !by_uid.is_empty() {
                if let Some(i) = proc_uid(pid, &mut path).and_then(|u| by_uid.get(&u)) {
                    marked[*i].push(pid as u32);
                    continue;
                }
            }
            let Some(id) = marked_id(pid as u32, home_var.as_bytes(), &mut buf, &mut path) else {
                continue;
            };
            if let Some(i) = index.get(id.as_str()) {
                marked[*i].push(pid as u32);
            }
        }
        let mut any = false;
        for (i, t) in targets.iter().enumerate() {
            let m = std::mem::take(&mut marked[i]);
            let m = if m.is_empty() {
                m
            } else {
                spare(&table, &t.name, m)
            };
            found[i].extend(m);
            for p in &found[i] {
                let sig = match t.polite {
                    Some(s) if Instant::now() < polite_end => {
                        if !asked.insert(*p) {
                            continue;
                        }
                        s
                    }
                    _ => Signal::SIGKILL,
                };
                let _ = kill(Pid::from_raw(*p as i32), sig);
            }
            any |= !found[i].is_empty();
        }
        if !any || Instant::now() >= end {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs the plugin's tree until nothing of it remains, or `timeout` passes. Returns the PIDs
/// still alive (empty on success). Loops because a dying process may still fork.
pub fn kill_tree(leader: u32, timeout: Duration) -> Vec<u32> {
    let end = Instant::now() + timeout;
    loop {
        let _ = killpg(Pid::from_raw(leader as i32), Signal::SIGKILL);
        let left = ProcTable::scan().tree(leader);
        for pid in &left {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
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
    stdin: Mutex<Option<File>>,
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
        let stdin = child.stdin.take().map(|w| File::from(OwnedFd::from(w)));
        Ok(Guard {
            stdin: Mutex::new(stdin),
            pid: child.id(),
        })
    }

    /// Forks the guard from the calling process instead of starting a new program: the child
    /// maps nothing new and touches only the few pages of [`guard_main`], so it costs a fraction
    /// of a started binary's memory (libc and the loader's work are not redone) and no `execve`
    /// on the way to the first plugin. It is named `hivehub-guard` (`/proc/PID/comm`; its
    /// command line stays the launcher's) and learns the home later, from [`Guard::attach`].
    ///
    /// # Safety
    /// No other thread may exist yet: the child runs Rust code after `fork`, which is sound
    /// only in a single-threaded process (the launcher binary calls this before its runtime).
    pub unsafe fn fork_early() -> io::Result<Guard> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: the caller guarantees a single thread, so no lock is held by another one.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Child => {
                drop(write);
                std::process::exit(guard_child(read));
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(read);
                Ok(Guard {
                    stdin: Mutex::new(Some(File::from(write))),
                    pid: child.as_raw() as u32,
                })
            }
        }
    }

    /// Tells a forked guard the home whose marked processes it kills if the launcher dies;
    /// sent only once the home is locked, so a launcher refused a busy home never points its
    /// guard at another launcher's plugins.
    pub fn attach(&self, home: &std::path::Path) {
        let bytes = home.as_os_str().as_bytes();
        if bytes.contains(&b'\n') {
            tracing::warn!("the home's path contains a line break; the guard will not look for its marked processes");
            return;
        }
        self.send_bytes(&[b"h", bytes].concat());
    }

    /// The guard's PID (reaped like any child).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn send(&self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    fn send_bytes(&self, line: &[u8]) {
        let mut g = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = g.as_mut() {
            // One write per line: the guard reads whole lines from a pipe.
            if w.write_all(&[line, b"\n"].concat()).is_err() {
                tracing::warn!("the guard process is gone; plugins may outlive a killed launcher");
                *g = None;
            }
        }
    }

    /// Adds a plugin session to protect.
    pub fn watch(&self, leader: u32) {
        self.send(&format!("+{leader}"));
    }

    /// Adds a user ID that belongs to one plugin alone: at the end every process of it goes.
    pub fn watch_uid(&self, uid: u32) {
        self.send(&format!("u{uid}"));
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

/// The forked guard's first steps: its pipe becomes stdin, stdout and stderr go to `/dev/null`
/// (it must not hold its caller's pipes open), every other descriptor is closed, and it takes
/// its name. Then [`guard_main`].
fn guard_child(pipe: OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    let null = File::options().read(true).write(true).open("/dev/null");
    // SAFETY: plain descriptor calls in a single-threaded child; the descriptors are its own.
    unsafe {
        if nix::libc::dup2(pipe.as_raw_fd(), 0) != 0 {
            return 1;
        }
        if let Ok(n) = &null {
            nix::libc::dup2(n.as_raw_fd(), 1);
            nix::libc::dup2(n.as_raw_fd(), 2);
        }
        nix::libc::close_range(3, u32::MAX, 0);
        nix::libc::prctl(nix::libc::PR_SET_NAME, c"hivehub-guard".as_ptr(), 0, 0, 0);
    }
    std::mem::forget(pipe);
    std::mem::forget(null);
    guard_main(None)
}

/// A decimal number of the guard's protocol.
fn guard_number(digits: &[u8]) -> Option<u32> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The guard's main loop (run by `launcher __guard HOME`, or in the child of
/// [`Guard::fork_early`], which learns the home from the pipe).
pub fn guard_main(mut home: Option<PathBuf>) -> i32 {
    // Survive the terminal's SIGINT/SIGHUP: only end-of-file or "done" ends the guard.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn);
    }
    // Plain reads and vectors: the guard idles for the launcher's whole life, and every
    // distinct routine it runs keeps 64 KiB of code resident (fault-around).
    let mut sessions: Vec<u32> = Vec::new();
    let mut uids: Vec<u32> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 512];
    // SAFETY: descriptor 0 stays open for the guard's whole life.
    let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    loop {
        let n = match nix::unistd::read(stdin, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            start += end + 1;
            match line.split_first() {
                Some((b'+', n)) => sessions.extend(guard_number(n)),
                Some((b'-', n)) => sessions.retain(|s| Some(*s) != guard_number(n)),
                Some((b'u', n)) => uids.extend(guard_number(n)),
                Some((b'h', path)) => {
                    home = Some(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
                }
                _ if line == b"done" => return 0,
                _ => {}
            }
        }
        pending.drain(..start);
    }
    // The launcher died without saying goodbye: nothing of its plugins may remain.
    for s in sessions {
        kill_tree(s, Duration::from_secs(5));
    }
    // Whatever still runs as a plugin's own user escaped its session: it goes too.
    let mut path = String::new();
    for _ in 0..100 {
        let table = ProcTable::scan();
        let left: Vec<i32> = table
            .procs
            .iter()
            .map(|p| p.pid)
            .filter(|p| proc_uid(*p, &mut path).is_some_and(|u| uids.contains(&u)))
            .collect();
        if left.is_empty() {
            break;
        }
        for p in left {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(home) = home {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `ended` tells how a child ended and leaves it a zombie: its PID stays its own until the
    /// reaper's sweep.
    #[test]
    fn ended_looks_without_reaping() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("sh");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(e) = ended(pid) {
                break e;
            }
            assert!(Instant::now() < deadline, "sh never ended");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(exit, Exit::Code(7));
        assert_eq!(ended(pid), Some(Exit::Code(7)), "still there to look at");
        assert!(
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")),
            "a zombie until reaped"
        );
        assert_eq!(child.wait().expect("reap").code(), Some(7));
        assert_eq!(ended(pid), None, "gone once reaped");
    }

    fn sh(script: &str) -> SpawnSpec {
        SpawnSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            env_clear: false,
            cwd: PathBuf::from("/"),
            confine: crate::sandbox::Confinement::default(),
        }
    }

    /// Reads `fd` to its end on a thread, so that a write end left open somewhere shows up as
    /// a timeout rather than a hang.
    fn read_to_eof(fd: OwnedFd) -> Option<String> {
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = File::from(fd).read_to_string(&mut s);
            let _ = tx.send(s);
        });
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    #[test]
    fn a_child_gets_only_its_own_descriptors_and_the_launcher_keeps_no_pipe_end() {
        // Descriptors the launcher holds, as it holds plugins' pipes, logs and /proc files.
        let held: Vec<File> = (0..64)
            .map(|_| File::open("/dev/null").expect("open"))
            .collect();
        let spawner = Spawner::new().expect("spawner");
        for round in 0..3 {
            let s = spawner
                .spawn(sh("ls /proc/self/fd; echo err >&2"))
                .expect("spawn");
            let out = read_to_eof(s.stdout).expect("stdout reached its end");
            let err = read_to_eof(s.stderr).expect("stderr reached its end");
            assert_eq!(err.trim(), "err", "round {round}");
            // 0, 1, 2 and the descriptor `ls` opens on the folder itself.
            let fds: Vec<&str> = out.split_whitespace().collect();
            assert!(fds.len() <= 4, "round {round}: the child got {fds:?}");
            let _ = waitpid(Pid::from_raw(s.pid as i32), None);
        }
        drop(held);
    }
}
