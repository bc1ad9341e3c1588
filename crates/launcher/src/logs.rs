//! Per-plugin log files: `logs/{plugin}.log`, one timestamped line per output line, the
//! launcher's own start and exit markers, size-based rotation with a cap on the number of files,
//! and the last lines kept in memory for the `exited` event.
//!
//! The core's output goes to `logs/{core}.log` like any plugin's (hubcore logs to stderr).
//! Each line is stamped when the launcher reads it (RFC 3339 UTC, milliseconds) and tagged with
//! its source:
//!
//! ```text
//! 2026-11-26T08:00:00.123Z [launcher] === started heartbeat: pid 4242, start #1
//! 2026-11-26T08:00:00.301Z [err] (a line the plugin wrote to stderr)
//! 2026-11-26T08:01:10.004Z [launcher] === heartbeat exited: exit code 1 after 69.7s (pid 4242)
//! ```
//!
//! The exit marker is written once the output is drained (at most 2 s, since a leftover
//! descendant may hold the pipes open); a failed start writes `start failed: {reason}`. Lines
//! over 16 KiB are split. Past `logMaxSize` the file becomes `{plugin}.log.1`, keeping
//! `logMaxFiles` old files. A plugin may log [`RATE_BURST`] lines per [`RATE_INTERVAL`]
//! (journald's defaults); the rest is dropped, with a marker when dropping starts and one with
//! the count when the window ends or the run does. `logplugins: false` keeps only the in-memory tail;
//! `attachstdout`/`attachstderr` also copy the output to the launcher's own. The launcher's own
//! log (stderr, or `logs/launcher.log` with `logtofile`) is set up by the binary.

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use hivehub_api::time::rfc3339;
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How many recent output lines are kept in memory per plugin.
pub const TAIL_LINES: usize = 20;

/// Longest line written as one record; longer output is split.
const MAX_LINE: usize = 16 * 1024;

/// Size of one write to the log file.
const WRITE_CHUNK: usize = 8 * 1024;

/// Lines a plugin may log per [`RATE_INTERVAL`] before the rest is dropped: journald's
/// defaults (`RateLimitBurst=10000`, `RateLimitIntervalSec=30s`), so that one chatty plugin
/// can take neither the launcher's CPU nor the disk.
pub const RATE_BURST: u64 = 10_000;
/// The window of [`RATE_BURST`].
pub const RATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The lines logged in the current window, and those dropped over [`RATE_BURST`].
struct Budget {
    window: std::time::Instant,
    used: u64,
    dropped: u64,
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// Opens a size-rotated log file, or says why not and returns `None` (the caller keeps the
/// in-memory tail). file-rotate panics instead of returning errors when the folder cannot be
/// created or listed, so both are checked first and a panic is caught as a last resort.
fn open_rotating(path: &Path, max_size: u64, max_files: usize) -> Option<FileRotate<AppendCount>> {
    let usable = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent folder"))
        .and_then(|dir| std::fs::create_dir_all(dir).and_then(|_| std::fs::read_dir(dir)));
    if let Err(e) = usable {
        tracing::error!(file = %path.display(), "cannot use the log folder: {e}; output is kept in memory only");
        return None;
    }
    let opened = std::panic::catch_unwind(|| {
        FileRotate::new(
            path,
            AppendCount::new(max_files.max(1)),
            ContentLimit::BytesSurpassed(max_size.max(1024) as usize),
            Compression::None,
            None,
        )
    });
    match opened {
        Ok(f) => Some(f),
        Err(_) => {
            tracing::error!(file = %path.display(), "cannot open the log file; output is kept in memory only");
            None
        }
    }
}

/// The log of one plugin.
pub struct PluginLog {
    file: Option<Mutex<FileRotate<AppendCount>>>,
    /// Set once writing failed for good; later lines go to the tail only.
    failed: AtomicBool,
    /// The tail of the current run.
    tail: Mutex<Arc<Tail>>,
    attach_out: bool,
    attach_err: bool,
    budget: Mutex<Budget>,
}

impl PluginLog {
    /// Opens (or creates) `path` with rotation after `max_size` bytes, keeping `max_files`
    /// rotated files. `to_file = false` keeps only the in-memory tail (and the attach copies).
    pub fn open(
        path: &Path,
        to_file: bool,
        max_size: u64,
        max_files: usize,
        attach_out: bool,
        attach_err: bool,
    ) -> PluginLog {
        let file = if to_file {
            open_rotating(path, max_size, max_files).map(Mutex::new)
        } else {
            None
        };
        PluginLog {
            file,
            failed: AtomicBool::new(false),
            tail: Mutex::new(Arc::default()),
            attach_out,
            attach_err,
            budget: Mutex::new(Budget {
                window: std::time::Instant::now(),
                used: 0,
                dropped: 0,
            }),
        }
    }

    /// How many of `n` new lines may be logged; the others are counted as dropped. A marker
    /// says when dropping starts and, once the window is over (or the run ends), how much was
    /// dropped.
    fn admit(&self, n: usize) -> usize {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.window.elapsed() >= RATE_INTERVAL {
            let dropped = std::mem::take(&mut b.dropped);
            b.window = std::time::Instant::now();
            b.used = 0;
            drop(b);
            self.report_dropped(dropped);
            b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        }
        let room = RATE_BURST.saturating_sub(b.used);
        let take = (n as u64).min(room);
        b.used += take;
        let over = n as u64 - take;
        if over > 0 {
            let first = b.dropped == 0;
            b.dropped += over;
            drop(b);
            if first {
                self.marker(&format!(
                    "output over {RATE_BURST} lines in {}s: dropping lines until the window ends",
                    RATE_INTERVAL.as_secs()
                ));
            }
        }
        take as usize
    }

    fn report_dropped(&self, dropped: u64) {
        if dropped > 0 {
            self.marker(&format!(
                "dropped {dropped} lines over the limit of {RATE_BURST} lines per {}s",
                RATE_INTERVAL.as_secs()
            ));
        }
    }

    /// Writes how many lines were dropped so far (at the end of a run).
    pub fn flush_dropped(&self) {
        let dropped = std::mem::take(
            &mut self
                .budget
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .dropped,
        );
        self.report_dropped(dropped);
    }

    fn write(&self, buf: &[u8]) {
        let Some(f) = &self.file else {
            return;
        };
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        // file-rotate panics when it cannot list or create the log folder during a rotation;
        // losing the file must not take the output pump (and so the plugin) down with it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = f.write_all(buf);
            let _ = f.flush();
        }));
        if r.is_err() && !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "a log file could not be rotated (is the logs folder still there and readable?); \
                 this plugin's output is kept in memory only from now on"
            );
        }
    }

    /// Writes a launcher marker line, e.g. the start with PID and attempt, or the exit.
    pub fn marker(&self, text: &str) {
        let line = format!("{} [launcher] === {text}\n", rfc3339(SystemTime::now()));
        self.write(line.as_bytes());
    }

    /// Writes complete lines of one stream, each with a timestamp, in one write.
    fn lines(&self, stream: Stream, lines: &[&[u8]], tail: &Tail) {
        let lines = &lines[..self.admit(lines.len())];
        if lines.is_empty() {
            return;
        }
        let ts = rfc3339(SystemTime::now());
        let tag = match stream {
            Stream::Out => "out",
            Stream::Err => "err",
        };
        // Written in pieces of about WRITE_CHUNK bytes: rotation is checked per write, so one huge
        // write would overshoot the size limit.
        let mut buf = Vec::with_capacity(WRITE_CHUNK + MAX_LINE + 64);
        for l in lines {
            buf.extend_from_slice(ts.as_bytes());
            buf.extend_from_slice(b" [");
            buf.extend_from_slice(tag.as_bytes());
            buf.extend_from_slice(b"] ");
            buf.extend_from_slice(l);
            buf.push(b'\n');
            if buf.len() >= WRITE_CHUNK {
                self.write(&buf);
                self.attach(stream, &buf);
                buf.clear();
            }
        }
        self.write(&buf);
        self.attach(stream, &buf);
        tail.push(lines);
    }

    fn attach(&self, stream: Stream, buf: &[u8]) {
        match stream {
            Stream::Out if self.attach_out => {
                let _ = std::io::stdout().write_all(buf);
            }
            Stream::Err if self.attach_err => {
                let _ = std::io::stderr().write_all(buf);
            }
            _ => {}
        }
    }

    /// Starts a tail for a new process, for its pumps: `status` shows the lines of the run
    /// that runs, and the `exited` event those of the run that ended, even when the next one
    /// has started while its last lines were still read.
    pub fn new_run(&self) -> Arc<Tail> {
        let tail = Arc::new(Tail::default());
        *self.tail.lock().unwrap_or_else(|p| p.into_inner()) = tail.clone();
        tail
    }

    /// The last output lines of the current run (at most [`TAIL_LINES`]), oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).lines()
    }
}

/// The last output lines of one run of a plugin (at most [`TAIL_LINES`]).
#[derive(Debug, Default)]
pub struct Tail(Mutex<VecDeque<String>>);

impl Tail {
    fn push(&self, lines: &[&[u8]]) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for l in lines.iter().rev().take(TAIL_LINES).rev() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(l).into_owned());
        }
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Size of the buffer a pump reads into.
const READ_CHUNK: usize = 16 * 1024;

/// Copies one output pipe of a plugin into its log until the pipe closes.
///
/// The read buffer exists only while output is waiting: a quiet plugin costs no buffer (with
/// hundreds of plugins, two idle 64 KiB buffers each were most of the launcher's heap).
pub async fn pump(
    pipe: tokio::net::unix::pipe::Receiver,
    log: Arc<PluginLog>,
    tail: Arc<Tail>,
    stream: Stream,
) {
    let mut carry: Vec<u8> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // One read per readiness poll: the poll counts against tokio's cooperative budget, so a
        // plugin that writes without pause does not hold a worker.
        if pipe.readable().await.is_err() {
            break;
        }
        if buf.is_empty() {
            buf = vec![0u8; READ_CHUNK];
        }
        let n = match pipe.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Drained: free the buffer (and a large partial line) while the plugin is quiet.
                buf = Vec::new();
                if carry.is_empty() {
                    carry = Vec::new();
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        carry.extend_from_slice(&buf[..n]);
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for (i, b) in carry.iter().enumerate() {
            if *b == b'\n' {
                lines.push(&carry[start..i]);
                start = i + 1;
            } else if i - start >= MAX_LINE {
                lines.push(&carry[start..i]);
                start = i;
            }
        }
        log.lines(stream, &lines, &tail);
        carry.drain(..start);
        // A plugin that writes without pause keeps the pipe readable, so this loop would never
        // wait; yielding lets the runtime poll its timers and I/O driver in between (tokio
        // defers a yielded task until then).
        tokio::task::yield_now().await;
    }
    if !carry.is_empty() {
        log.lines(stream, &[&carry], &tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_log_folder_keeps_the_tail_without_panicking() {
        let d = tempfile::tempdir().unwrap();
        // "logs" is a file, so the folder can be neither created nor listed.
        let not_a_dir = d.path().join("logs");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let log = PluginLog::open(&not_a_dir.join("p.log"), true, 2048, 2, false, false);
        log.lines(Stream::Out, &[b"still here"], &log.new_run());
        assert_eq!(log.tail(), ["still here"]);
    }

    #[test]
    fn a_log_folder_removed_later_does_not_panic_the_writer() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("logs");
        let log = PluginLog::open(&dir.join("p.log"), true, 1024, 2, false, false);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"now a file").unwrap();
        let line = vec![b'x'; 600];
        let run = log.new_run();
        for _ in 0..10 {
            log.lines(Stream::Out, &[&line], &run);
        }
        assert_eq!(log.tail().len(), 10);
    }

    /// A log opened again finds its rotated files (looked up by name, not by listing the
    /// folder, which other plugins' logs share) and shifts them on the next rotation.
    #[test]
    fn a_reopened_log_shifts_the_rotated_files_it_finds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let read = |n: &str| std::fs::read_to_string(d.path().join(n)).unwrap_or_default();
        std::fs::write(&p, "current\n").unwrap();
        std::fs::write(d.path().join("x.log.1"), "one\n").unwrap();
        std::fs::write(d.path().join("x.log.2"), "two\n").unwrap();
        std::fs::write(d.path().join("y.log.1"), "another plugin\n").unwrap();
        let log = PluginLog::open(&p, true, 1024, 2, false, false);
        let line = vec![b'x'; 600];
        let run = log.new_run();
        for _ in 0..3 {
            log.lines(Stream::Out, &[&line], &run);
        }
        assert!(read("x.log.1").contains("current"), "{}", read("x.log.1"));
        assert_eq!(read("x.log.2"), "one\n");
        assert!(!d.path().join("x.log.3").exists());
        assert_eq!(read("y.log.1"), "another plugin\n");
    }

    /// A plugin restarted at once: the last lines of the run that ended are still read while
    /// the next one writes.
    #[test]
    fn each_run_keeps_its_own_tail() {
        let d = tempfile::tempdir().unwrap();
        let log = PluginLog::open(&d.path().join("x.log"), true, 1 << 20, 2, false, false);
        let first = log.new_run();
        log.lines(Stream::Out, &[b"one"], &first);
        let second = log.new_run();
        log.lines(Stream::Out, &[b"two"], &second);
        log.lines(Stream::Err, &[b"one's last words"], &first);
        assert_eq!(first.lines(), ["one", "one's last words"]);
        assert_eq!(second.lines(), ["two"]);
        assert_eq!(log.tail(), ["two"], "the current run's");
    }

    #[test]
    fn tail_keeps_last_lines_and_file_rotates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let log = PluginLog::open(&p, true, 2048, 2, false, false);
        let run = log.new_run();
        for batch in 0..50 {
            let lines: Vec<String> = (0..10)
                .map(|i| format!("line {}", batch * 10 + i))
                .collect();
            let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            log.lines(Stream::Out, &refs, &run);
        }
        let tail = log.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().map(String::as_str), Some("line 499"));
        assert!(p.exists());
        assert!(d.path().join("x.log.1").exists());
        assert!(
            !d.path().join("x.log.3").exists(),
            "rotation keeps at most 2 old files"
        );
    }
}
