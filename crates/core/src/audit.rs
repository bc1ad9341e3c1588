//! The security record: `logs/audit.log`, apart from the core's chatty log so that a flood of
//! refusals cannot rotate it away.
//!
//! Changes (clients added and removed, grants set, sessions ended, wills dropped) are written
//! at once, one line each. Refusals (logins, publishes, subscriptions, limits) are written at
//! once the first time a client gets one of a kind, with its detail (the topic, say), then
//! counted: [`SUMMARY_EVERY`] after the first, and every [`SUMMARY_EVERY`] while they go on, a
//! line per (client, kind) says how many more there were.
//! The key never holds attacker-chosen text beyond a known login (a refused login counts as
//! `?`), the counters are capped ([`MAX_KEYS`]) and every line is cut at [`MAX_LINE`] bytes, so
//! a flood costs a few short lines per interval, not one per packet, and cannot rotate the
//! record away.

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// How often repeated refusals are summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// Most distinct (client, kind) counters kept between summaries.
const MAX_KEYS: usize = 1024;
/// Longest line written; the rest is cut.
pub const MAX_LINE: usize = 300;
/// Size at which `audit.log` rotates, and the rotated files kept.
const MAX_BYTES: usize = 10_000_000;
const MAX_FILES: usize = 5;

/// The audit log. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Mutex<Inner>>,
    /// Wakes the summary task at a refusal: with none, it sleeps.
    refusals: Arc<Notify>,
}

struct Inner {
    out: Option<FileRotate<AppendCount>>,
    /// Refusals since the last summary, and whether each key was already written once.
    counts: HashMap<(String, String), u64>,
    seen: HashMap<(String, String), ()>,
}

fn now() -> String {
    hivehub_api::time::rfc3339(SystemTime::now())
}

impl Audit {
    /// Opens (appends to) `path`. A file that cannot be opened leaves the record in the core's
    /// own log only, which the caller is told about.
    pub fn open(path: &Path) -> Audit {
        // file-rotate panics on I/O errors instead of returning them; an audit log must never
        // take the core down.
        let out = std::panic::catch_unwind(|| {
            FileRotate::new(
                path,
                AppendCount::new(MAX_FILES),
                ContentLimit::BytesSurpassed(MAX_BYTES),
                Compression::None,
                Some({
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut o = std::fs::OpenOptions::new();
                    o.read(true).create(true).append(true).mode(0o600);
                    o
                }),
            )
        })
        .map_err(|_| tracing::error!(file = %path.display(), "cannot open the audit log"))
        .ok();
        Audit {
            inner: Arc::new(Mutex::new(Inner {
                out,
                counts: HashMap::new(),
                seen: HashMap::new(),
            })),
            refusals: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(inner: &mut Inner, line: &str) {
        let line = cut(line, MAX_LINE);
        tracing::info!(target: "audit", "{line}");
        if let Some(out) = inner.out.as_mut() {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                writeln!(out, "{} {line}", now()).and_then(|_| out.flush())
            }));
            if !matches!(ok, Ok(Ok(()))) {
                tracing::error!("cannot write the audit log; it is off until the core restarts");
                inner.out = None;
            }
        }
    }

    /// A change: written at once.
    pub fn change(&self, line: &str) {
        Audit::write(&mut self.lock(), line);
    }

    /// A refusal of `client` (a known login, or `?`) of `kind` ("publish denied"): written the
    /// first time with `detail`, then counted.
    pub fn refused(&self, client: &str, kind: &str, detail: &str) {
        self.refusals.notify_one();
        let mut inner = self.lock();
        let mut key = (cut(client, 64).to_string(), kind.to_string());
        if !inner.seen.contains_key(&key) {
            if inner.seen.len() < MAX_KEYS {
                inner.seen.insert(key, ());
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", cut(detail, 160))
                };
                Audit::write(&mut inner, &format!("refused {client}: {kind}{detail}"));
                return;
            }
            key = ("*".into(), "other refusals".into());
        }
        if inner.counts.len() >= MAX_KEYS && !inner.counts.contains_key(&key) {
            key = ("*".into(), "other refusals".into());
        }
        *inner.counts.entry(key).or_insert(0) += 1;
    }

    /// Writes the counts since the last summary and starts over. Called every
    /// [`SUMMARY_EVERY`].
    pub fn summarise(&self) {
        let mut inner = self.lock();
        let counts = std::mem::take(&mut inner.counts);
        inner.seen.clear();
        let mut lines: Vec<String> = counts
            .into_iter()
            .map(|((c, r), n)| format!("refused {c} {n} more times: {r}"))
            .collect();
        lines.sort();
        for l in lines {
            Audit::write(&mut inner, &l);
        }
    }

    /// Summarises [`SUMMARY_EVERY`] after a refusal, until the process ends: while refusals
    /// come, every [`SUMMARY_EVERY`]; without them the task sleeps (an idle hub is not woken).
    pub fn spawn_summaries(&self) {
        let a = self.clone();
        tokio::spawn(async move {
            loop {
                a.refusals.notified().await;
                tokio::time::sleep(SUMMARY_EVERY).await;
                a.summarise();
            }
        });
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_summarised_not_written_per_refusal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        let a = Audit::open(&p);
        a.change("client removed: bob (by admin)");
        for i in 0..10_000 {
            a.refused(
                "eve",
                "publish denied",
                &format!("event/{i}{}", "x".repeat(60_000)),
            );
        }
        a.summarise();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("client removed: bob"));
        assert!(text.contains("refused eve: publish denied (event/0xxx"));
        assert!(text.lines().all(|l| l.len() < MAX_LINE + 30), "long lines");
        assert!(text.contains("refused eve 9999 more times: publish denied"));
        // Distinct keys are bounded.
        for i in 0..5000 {
            a.refused(&format!("c{i}"), "x", "");
        }
        a.summarise();
        let n = std::fs::read_to_string(&p).unwrap().lines().count();
        assert!(n <= 3 + MAX_KEYS + 2, "{n} lines");
        assert!(now().ends_with('Z') && now().len() == 24, "{}", now());
    }
}
