//! What the launcher keeps in `run/` about each plugin across its own restarts: the pid
//! record (`PID starttime`, so a reused PID is not mistaken for the plugin) and the backoff
//! attempt count (so a restarted launcher does not forget a crash loop).
//!
//! The pid record is written at spawn and emptied after the exit, only while it still names
//! that PID (a quick restart may already have written its own). A record whose process is gone,
//! or whose start time differs, is emptied when the plugin is discovered. An empty file is no
//! record. It is rewritten in place rather than replaced: a replacement allocates an inode and
//! frees one at every start and exit, and ext4 scans past recently freed inodes when it
//! allocates (the largest kernel cost of a cold start with 100 plugins, measured with `perf`).
//! A reader may meet a record half written; it then parses nothing and tries again. A live one is a
//! *stale instance*: the plugin is `external` with that PID ("an instance started by an earlier
//! launcher is still running (pid N); stop it first") and no start spawns a second one; a stop
//! kills that instance, polling for its end since it is not our child. The backoff record is
//! `attempt delayMs`, removed when the count is 0.

use super::*;

impl Supervisor {
    pub(super) fn pid_file(&self, name: &str) -> PathBuf {
        self.sh.home.run().join(format!("{name}.pid"))
    }

    /// Records `pid`, which started at `start` (clock ticks since boot), in `run/{name}.pid`.
    pub(super) fn write_pid_record(&self, name: &str, pid: u32, start: u64) {
        let line = format!("{pid} {start}\n");
        let written = open_record(&self.pid_file(name), true).and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(line.as_bytes(), 0)?;
            f.set_len(line.len() as u64)
        });
        if let Err(e) = written {
            tracing::debug!(plugin = name, "cannot write the pid record: {e}");
        }
    }

    /// Empties the pid record of `name` if it still names `pid`.
    pub(super) fn clear_pid_record_of(&self, name: &str, pid: u32) {
        let path = self.pid_file(name);
        let ours = process::read_file(&path)
            .and_then(|t| t.split_whitespace().next().map(|p| p == pid.to_string()))
            .unwrap_or(false);
        if ours {
            clear_record(&path);
        }
    }

    /// A live process recorded in `run/{name}.pid` by an earlier launcher (pid and start time
    /// must both match, so a reused PID is not mistaken for the plugin).
    pub(super) fn stale_instance(&self, name: &str) -> Option<u32> {
        let path = self.pid_file(name);
        let text = process::read_file(&path)?;
        if text.trim().is_empty() {
            return None;
        }
        let mut it = text.split_whitespace();
        let recorded = it
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .zip(it.next().and_then(|s| s.parse::<u64>().ok()));
        match recorded {
            Some((pid, start))
                if process::pid_alive(pid) && process::start_time(pid) == Some(start) =>
            {
                Some(pid)
            }
            _ => {
                clear_record(&path);
                None
            }
        }
    }

    pub(super) fn backoff_file(&self, name: &str) -> PathBuf {
        self.sh.home.run().join(format!("{name}.backoff"))
    }

    /// Keeps the attempt count in `run/`, so a restarted launcher does not forget a crash loop.
    pub(super) fn save_backoff(&self, slot: &Slot) {
        let (attempt, delay) = {
            let st = lock(&slot.st);
            (st.attempt, st.last_delay)
        };
        let path = self.backoff_file(&slot.name);
        if attempt == 0 {
            let _ = std::fs::remove_file(path);
        } else {
            let _ = hivehub_home::write_replace(
                &path,
                format!("{attempt} {}\n", delay.as_millis()).as_bytes(),
                0o644,
            );
        }
    }

    pub(super) fn load_backoff(&self, name: &str) -> (u32, Duration) {
        process::read_file(&self.backoff_file(name))
            .and_then(|t| {
                let mut it = t.split_whitespace();
                let a = it.next()?.parse().ok()?;
                let d = it.next()?.parse().ok()?;
                Some((a, Duration::from_millis(d)))
            })
            .unwrap_or((0, Duration::ZERO))
    }
}

/// Opens a record of `run/` for writing, never through a symbolic link.
fn open_record(path: &std::path::Path, create: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(create)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Empties a record (see the module docs for why it is not removed).
fn clear_record(path: &std::path::Path) {
    if let Ok(f) = open_record(path, false) {
        let _ = f.set_len(0);
    }
}
