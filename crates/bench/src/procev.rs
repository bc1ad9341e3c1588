//! The kernel's process events (the netlink process connector, `CONFIG_PROC_EVENTS`): every
//! fork, exec and exit on the machine, each stamped by the kernel with `CLOCK_MONOTONIC`
//! nanoseconds. `restart` uses them to time a restart exactly, the same way for every
//! supervisor: when the killed process exited, when its supervisor forked the replacement, and
//! when that child exec'd the plugin, instead of the resolution of a `/proc` poll.
//!
//! Listening needs `CAP_NET_ADMIN` (root); without it [`ProcEvents::open`] fails and the
//! benchmark keeps to its `/proc` observer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// Offset of `struct proc_event` in a message: `nlmsghdr` then `cn_msg`.
const EVENT: usize = NLMSG_HDRLEN + CN_MSG_LEN;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One event; `at` is the kernel's `CLOCK_MONOTONIC` time of it, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `parent` (a process ID) made the new process `child`. Threads are left out.
    Fork { parent: u32, child: u32, at: u64 },
    /// Process `pid` exec'd a program.
    Exec { pid: u32, at: u64 },
    /// Process `pid` exited (its last thread did).
    Exit { pid: u32, at: u64 },
}

/// A listening process-connector socket.
pub struct ProcEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl ProcEvents {
    /// Subscribes to the events; fails without `CAP_NET_ADMIN` or `CONFIG_PROC_EVENTS`.
    pub fn open() -> io::Result<ProcEvents> {
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let fd = unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                NETLINK_CONNECTOR,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        // Room for the events of a busy second (about 40 bytes each before the headers).
        let size: libc::c_int = 4 << 20;
        // SAFETY: `size` outlives the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: a zeroed sockaddr_nl is valid; the fields set are its address.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        addr.nl_pid = 0;
        // SAFETY: `addr` is a valid sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msg = Vec::with_capacity(EVENT + 4);
        msg.extend_from_slice(&((EVENT + 4) as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // SAFETY: `msg` is a valid buffer of its length.
        let r = unsafe {
            libc::send(
                fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ev = ProcEvents {
            fd,
            buf: vec![0; 8192],
        };
        // The kernel answers a listen request only with events: check that one arrives, our own.
        std::process::Command::new("/bin/true").status()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let mut seen = false;
        while std::time::Instant::now() < deadline && !seen {
            seen = !ev.drain().is_empty();
            if !seen {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !seen {
            return Err(io::Error::other("no process event arrived"));
        }
        Ok(ev)
    }

    /// Every event that has arrived, in order; none when the socket is empty. Events lost to
    /// a full buffer are lost (the caller notices what it looked for is missing).
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            // SAFETY: `buf` is a valid buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    continue;
                }
                return out;
            }
            if let Some(e) = parse(&self.buf[..n as usize]) {
                out.push(e);
            }
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One netlink message of the process connector: `nlmsghdr`, `cn_msg`, then `proc_event`
/// (`what`, `cpu`, `timestamp_ns`, then the event's data).
fn parse(b: &[u8]) -> Option<Event> {
    let what = u32_at(b, EVENT)?;
    let at = u64::from_ne_bytes(b.get(EVENT + 8..EVENT + 16)?.try_into().ok()?);
    let data = EVENT + 16;
    match what {
        PROC_EVENT_FORK => {
            // parent_pid, parent_tgid, child_pid, child_tgid: a thread has pid != tgid.
            let (child_pid, child) = (u32_at(b, data + 8)?, u32_at(b, data + 12)?);
            (child_pid == child).then_some(Event::Fork {
                parent: u32_at(b, data + 4)?,
                child,
                at,
            })
        }
        PROC_EVENT_EXEC => Some(Event::Exec {
            pid: u32_at(b, data + 4)?,
            at,
        }),
        PROC_EVENT_EXIT => {
            let (pid, tgid) = (u32_at(b, data)?, u32_at(b, data + 4)?);
            (pid == tgid).then_some(Event::Exit { pid: tgid, at })
        }
        _ => None,
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of the events.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the events say about one restart: the old process's exit, the fork of its
/// replacement `new` by `parent`, and the replacement's first exec, in nanoseconds after `t0`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restart {
    pub exit: Option<Duration>,
    pub fork: Option<Duration>,
    pub exec: Option<Duration>,
}

impl Restart {
    /// Finds the restart of `old` as `new` (a child of `parent`) in `events`.
    pub fn find(events: &[Event], t0: u64, old: u32, new: u32, parent: u32) -> Restart {
        let after = |at: u64| Some(Duration::from_nanos(at.saturating_sub(t0)));
        let mut r = Restart::default();
        for e in events {
            match *e {
                Event::Exit { pid, at } if pid == old && r.exit.is_none() => r.exit = after(at),
                Event::Fork {
                    parent: p,
                    child,
                    at,
                } if child == new && p == parent => r.fork = after(at),
                Event::Exec { pid, at } if pid == new && r.fork.is_some() && r.exec.is_none() => {
                    r.exec = after(at)
                }
                _ => {}
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child we start is seen forked by us, then exec'd, then exited, in that order and after
    /// the time taken before it. Skipped (passes) where the connector is not open to us.
    #[test]
    fn a_child_is_seen_forked_execd_and_exited() {
        let Ok(mut ev) = ProcEvents::open() else {
            eprintln!("no process connector here (not root?): skipped");
            return;
        };
        ev.drain();
        let t0 = now_ns();
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("0.01")
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let events = ev.drain();
        let mut r = Restart::find(&events, t0, pid, pid, std::process::id());
        assert!(r.fork.is_some() && r.exec.is_some(), "{events:?}");
        // `old` == `new` here: the exit found is the child's own.
        r.exit = events.iter().find_map(|e| match *e {
            Event::Exit { pid: p, at } if p == pid => Some(Duration::from_nanos(at - t0)),
            _ => None,
        });
        let (f, x, e) = (r.fork.unwrap(), r.exec.unwrap(), r.exit.unwrap());
        assert!(f <= x && x <= e, "fork {f:?} exec {x:?} exit {e:?}");
        assert!(
            e >= Duration::from_millis(10),
            "sleep 0.01 lived {:?}",
            e - x
        );
    }
}
