//! What the launcher keeps in `run/` about each plugin across its own restarts: the pid
//! record (`PID starttime`, so a reused PID is not mistaken for the plugin) and the backoff
//! attempt count (so a restarted launcher does not forget a crash loop).
//!
//! The pid record is written at spawn and removed after the exit, only while it still names
//! that PID (a quick restart may already have written its own). A record whose process is gone,
//! or whose start time differs, is deleted when the plugin is discovered. A live one is a
//! *stale instance*: the plugin is `external` with that PID ("an instance started by an earlier
//! launcher is still running (pid N); stop it first") and no start spawns a second one; a stop
//! kills that instance, polling for its end since it is not our child. The backoff record is
//! `attempt delayMs`, removed when the count is 0.

use super::*;

impl Supervisor {
    pub(super) fn pid_file(&self, name: &str) -> PathBuf {
        self.sh.home.run().join(format!("{name}.pid"))
    }

    pub(super) fn remove_pid_file_of(&self, name: &str, pid: u32) {
        let path = self.pid_file(name);
        let ours = process::read_file(&path)
            .and_then(|t| t.split_whitespace().next().map(|p| p == pid.to_string()))
            .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A live process recorded in `run/{name}.pid` by an earlier launcher (pid and start time
    /// must both match, so a reused PID is not mistaken for the plugin).
    pub(super) fn stale_instance(&self, name: &str) -> Option<u32> {
        let text = process::read_file(&self.pid_file(name))?;
        let mut it = text.split_whitespace();
        let pid: u32 = it.next()?.parse().ok()?;
        let start: u64 = it.next()?.parse().ok()?;
        if process::pid_alive(pid) && process::start_time(pid) == Some(start) {
            Some(pid)
        } else {
            let _ = std::fs::remove_file(self.pid_file(name));
            None
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
