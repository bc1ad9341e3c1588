//! The one reader of `/proc/[pid]/stat`: the process tables of stops and clean-ups
//! (`process.rs`) and the resource monitor (`monitor.rs`) parse the same line the same way.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Reads a small procfs file into `buf` (reused across calls).
pub(crate) fn read_into(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    let n = read_whole(&File::open(path)?, buf)?;
    buf.truncate(n);
    Ok(())
}

/// Reads `file` from its start into `buf`, growing it as needed, and returns the length.
///
/// procfs generates a file whole at each read from offset 0, so a file opened earlier reads
/// fresh (and fails with ESRCH once its process is gone), and one that fits takes a single
/// `pread`. Not `read_to_end`: it first asks for a size (`statx`, `lseek`) that procfs files
/// do not have, three system calls more per file.
pub(crate) fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < 512 {
        buf.resize(512, 0);
    }
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let r = file.read_at(&mut buf[n..], n as u64)?;
        n += r;
        if r == 0 || n < buf.len() {
            return Ok(n);
        }
    }
}

/// The fields of one `/proc/[pid]/stat` line that the launcher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub pid: i32,
    pub ppid: i32,
    pub session: i32,
    pub state: u8,
    /// utime + stime, in ticks.
    pub own: u64,
    /// cutime + cstime (CPU of waited-for children), in ticks.
    pub reaped: u64,
    /// Start time in ticks since boot: with the PID, it names one process instance.
    pub starttime: u64,
    pub rss_pages: u64,
    /// Threads in the process (`num_threads`).
    pub threads: u32,
}

/// Parses a `/proc/[pid]/stat` line. The command name may contain spaces and parentheses, so
/// fields are counted from the last `)`.
pub(crate) fn parse_stat(pid: i32, line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut f = line.get(close + 2..)?.split(|&b| b == b' ');
    let state = *f.next()?.first()?;
    let ppid = i32::try_from(parse_i64(f.next()?)?).ok()?;
    let _pgrp = f.next()?;
    let session = i32::try_from(parse_i64(f.next()?)?).ok()?;
    // tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt
    let mut f = f.skip(7);
    let utime = parse_u64(f.next()?)?;
    let stime = parse_u64(f.next()?)?;
    let cutime = nonneg(parse_i64(f.next()?)?);
    let cstime = nonneg(parse_i64(f.next()?)?);
    // priority, nice
    let mut f = f.skip(2);
    let threads = u32::try_from(parse_u64(f.next()?)?).ok()?;
    let _itrealvalue = f.next()?;
    let starttime = parse_u64(f.next()?)?;
    let _vsize = f.next()?;
    let rss_pages = nonneg(parse_i64(f.next()?)?);
    Some(Stat {
        pid,
        ppid,
        session,
        state,
        own: utime.saturating_add(stime),
        reaped: cutime.saturating_add(cstime),
        starttime,
        rss_pages,
        threads,
    })
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn is_zombie(state: u8) -> bool {
    matches!(state, b'Z' | b'X' | b'x')
}
