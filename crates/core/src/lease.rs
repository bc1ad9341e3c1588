//! Leases for movable plugins: the core is the one arbiter that decides which launcher may run a
//! movable plugin. Requests are serialised by one mutex, so two launchers asking at the same
//! instant cannot both win.
//!
//! Why two instances cannot run at once (limits: docs/SCALING.md, "At most one instance"):
//! - the core grants a lease for `ttl` from the moment it handles the request, and gives it to
//!   nobody else until that time has passed on its own monotonic clock;
//! - the holder counts its lease from the moment it *sent* the request, which is earlier, and
//!   stops the plugin (SIGKILL at the latest) before that count runs out, connected or not;
//! - so the holder's plugin is gone before the core's deadline, by the send-to-receipt delay
//!   plus a safety margin, as long as the two clocks run at about the same rate (they are
//!   monotonic clocks; the drift over a few seconds is microseconds).
//!
//! The core keeps leases in memory. So that a restart cannot hand a lease out while its old
//! holder still runs the plugin, the names of held leases are written to `stores/leases.json`
//! with their lease time when that set changes (not on renewals), and for one lease time after a
//! start only the previous holder may claim those names back (by renewing). Disabled marks are
//! kept there too.

use hivehub_api::cluster::{LeaseInfo, MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS};
use hivehub_api::{ErrorCode, RemoteError};
use hivehub_home::{write_atomic, PRIVATE_MODE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Entry {
    holder: Option<String>,
    expires: Instant,
    generation: u64,
    disabled: bool,
    previous: Option<String>,
}

impl Entry {
    fn free() -> Entry {
        Entry {
            holder: None,
            expires: Instant::now(),
            generation: 0,
            disabled: false,
            previous: None,
        }
    }

    fn held_by(&self, now: Instant) -> Option<&str> {
        self.holder.as_deref().filter(|_| self.expires > now)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseFile {
    /// Plugins whose lease was held when the file was written, with their lease time (ms).
    #[serde(default)]
    held: BTreeMap<String, u64>,
    /// Plugins a user stopped hub-wide.
    #[serde(default)]
    disabled: BTreeSet<String>,
}

/// The lease table. Pure logic with the time passed in, so tests can drive it; the service
/// wraps it in a mutex.
#[derive(Debug)]
pub struct LeaseTable {
    entries: BTreeMap<String, Entry>,
    /// Names that may still be held by a launcher from before this core started, with the
    /// end of their grace period (start + their lease time).
    grace: BTreeMap<String, Instant>,
    /// Lease time of each holder's last grant, persisted with the held names.
    ttls: BTreeMap<String, u64>,
    file: Option<PathBuf>,
    saved: (BTreeMap<String, u64>, BTreeSet<String>),
}

fn clamp_ttl(ms: u64) -> Duration {
    Duration::from_millis(ms.clamp(MIN_LEASE_TTL_MS, MAX_LEASE_TTL_MS))
}

fn conflict(msg: String) -> RemoteError {
    RemoteError::new(ErrorCode::Conflict, msg)
}

impl LeaseTable {
    /// A table that persists held names and disabled marks to `file` (if any), starting from
    /// what it holds.
    pub fn open(file: Option<&Path>, now: Instant) -> Result<LeaseTable, String> {
        let data: LeaseFile = match file.map(std::fs::read) {
            Some(Ok(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is corrupt: {e}",
                    file.map(|f| f.display().to_string()).unwrap_or_default()
                )
            })?,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => LeaseFile::default(),
            Some(Err(e)) => return Err(e.to_string()),
            None => LeaseFile::default(),
        };
        let mut entries = BTreeMap::new();
        for name in &data.disabled {
            entries.insert(
                name.clone(),
                Entry {
                    disabled: true,
                    ..Entry::free()
                },
            );
        }
        let grace = data
            .held
            .iter()
            .map(|(n, ttl)| (n.clone(), now + clamp_ttl(*ttl)))
            .collect();
        Ok(LeaseTable {
            entries,
            grace,
            ttls: data.held.clone(),
            file: file.map(Path::to_path_buf),
            saved: (data.held, data.disabled),
        })
    }

    fn in_grace(&self, name: &str, now: Instant) -> bool {
        self.grace.get(name).is_some_and(|until| now < *until)
    }

    fn info(&self, name: &str, now: Instant) -> LeaseInfo {
        let e = self.entries.get(name).cloned().unwrap_or_else(Entry::free);
        let holder = e.held_by(now).map(str::to_string);
        LeaseInfo {
            name: name.to_string(),
            expires_in_ms: holder
                .as_ref()
                .map(|_| e.expires.saturating_duration_since(now).as_millis() as u64),
            holder,
            generation: e.generation,
            disabled: e.disabled,
            previous: e.previous,
        }
    }

    fn grant(&mut self, name: &str, who: &str, ttl: Duration, now: Instant) -> LeaseInfo {
        let e = self
            .entries
            .entry(name.to_string())
            .or_insert_with(Entry::free);
        if e.held_by(now) != Some(who) {
            e.generation += 1;
            if e.holder.is_some() && e.holder.as_deref() != Some(who) {
                e.previous = e.holder.take();
            }
        }
        e.holder = Some(who.to_string());
        e.expires = now + ttl;
        self.grace.remove(name);
        self.ttls.insert(name.to_string(), ttl.as_millis() as u64);
        self.info(name, now)
    }

    /// Takes a free lease or extends `who`'s own. `enable` clears a hub-wide disable first.
    pub fn acquire(
        &mut self,
        who: &str,
        name: &str,
        ttl_ms: u64,
        enable: bool,
        now: Instant,
    ) -> Result<LeaseInfo, RemoteError> {
        let grace = self.in_grace(name, now);
        let e = self
            .entries
            .entry(name.to_string())
            .or_insert_with(Entry::free);
        if enable {
            e.disabled = false;
        }
        if e.disabled {
            return Err(conflict(format!(
                "{name} is stopped hub-wide (a user stopped it); start it to enable it again"
            )));
        }
        match e.held_by(now) {
            Some(h) if h == who => {}
            Some(h) => return Err(conflict(format!("{name} is held by {h}"))),
            None if grace => {
                return Err(RemoteError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the core restarted recently; for one lease time only the previous holder of {name} may claim it"
                    ),
                ))
            }
            None => {}
        }
        Ok(self.grant(name, who, clamp_ttl(ttl_ms), now))
    }

    /// Extends `who`'s lease. After a core restart, the previous holder reclaims it this way.
    pub fn renew(
        &mut self,
        who: &str,
        name: &str,
        ttl_ms: u64,
        now: Instant,
    ) -> Result<LeaseInfo, RemoteError> {
        let e = self.entries.get(name).cloned().unwrap_or_else(Entry::free);
        match e.held_by(now) {
            Some(h) if h == who => Ok(self.grant(name, who, clamp_ttl(ttl_ms), now)),
            None if self.in_grace(name, now) && !e.disabled => {
                tracing::info!(
                    plugin = name,
                    launcher = who,
                    "lease reclaimed after a core restart"
                );
                Ok(self.grant(name, who, clamp_ttl(ttl_ms), now))
            }
            Some(h) => Err(conflict(format!("{name} is held by {h}, not {who}"))),
            None => Err(conflict(format!(
                "{who} does not hold the lease of {name} (it expired or was released)"
            ))),
        }
    }

    /// Gives a lease up; `disable` also marks the plugin stopped hub-wide (only its holder, or
    /// anyone when nobody holds it).
    pub fn release(
        &mut self,
        who: &str,
        name: &str,
        disable: bool,
        now: Instant,
    ) -> Result<LeaseInfo, RemoteError> {
        let e = self
            .entries
            .entry(name.to_string())
            .or_insert_with(Entry::free);
        match e.held_by(now) {
            Some(h) if h != who => {
                return Err(conflict(format!(
                    "{name} is held by {h}; only it may release it"
                )))
            }
            Some(_) => {
                e.previous = e.holder.take();
            }
            None => {}
        }
        if disable {
            e.disabled = true;
        }
        Ok(self.info(name, now))
    }

    /// Hands `who`'s valid lease to `to` at once, so no third launcher can take it in between.
    pub fn transfer(
        &mut self,
        who: &str,
        name: &str,
        to: &str,
        ttl_ms: u64,
        now: Instant,
    ) -> Result<LeaseInfo, RemoteError> {
        let held = self
            .entries
            .get(name)
            .and_then(|e| e.held_by(now).map(str::to_string));
        if held.as_deref() != Some(who) {
            return Err(conflict(format!("{who} does not hold the lease of {name}")));
        }
        Ok(self.grant(name, to, clamp_ttl(ttl_ms), now))
    }

    /// Every known lease.
    pub fn list(&self, now: Instant) -> Vec<LeaseInfo> {
        self.entries.keys().map(|n| self.info(n, now)).collect()
    }

    /// One lease (free when unknown).
    pub fn get(&self, name: &str, now: Instant) -> LeaseInfo {
        self.info(name, now)
    }

    /// When [`LeaseTable::expire`] next has work: the earliest end of a held lease or of a
    /// restart's grace period; `None` when there is none.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.holder.is_some())
            .map(|e| e.expires)
            .chain(self.grace.values().copied())
            .min()
    }

    /// Clears expired holders; returns the leases that changed, to publish.
    pub fn expire(&mut self, now: Instant) -> Vec<LeaseInfo> {
        let mut changed = Vec::new();
        for (name, e) in self.entries.iter_mut() {
            if e.holder.is_some() && e.expires <= now {
                e.previous = e.holder.take();
                changed.push(name.clone());
            }
        }
        self.grace.retain(|_, until| now < *until);
        changed.iter().map(|n| self.info(n, now)).collect()
    }

    /// Writes held names and disabled marks when they changed since the last write.
    pub fn save(&mut self) -> Result<(), String> {
        let held: BTreeMap<String, u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.holder.is_some())
            .map(|(n, _)| n.clone())
            .chain(self.grace.keys().cloned())
            .map(|n| {
                let ttl = self.ttls.get(&n).copied().unwrap_or(MAX_LEASE_TTL_MS);
                (n, ttl)
            })
            .collect();
        let disabled: BTreeSet<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.disabled)
            .map(|(n, _)| n.clone())
            .collect();
        if (held.clone(), disabled.clone()) == self.saved {
            return Ok(());
        }
        if let Some(path) = &self.file {
            let data = LeaseFile {
                held: held.clone(),
                disabled: disabled.clone(),
            };
            let bytes = serde_json::to_vec_pretty(&data).map_err(|e| e.to_string())?;
            write_atomic(path, &bytes, PRIVATE_MODE)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        self.saved = (held, disabled);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_holder_at_a_time_until_expiry() {
        let t0 = Instant::now();
        let mut t = LeaseTable::open(None, t0).unwrap();
        let a = t.acquire("a", "p", 1000, false, t0).unwrap();
        assert_eq!(a.holder.as_deref(), Some("a"));
        assert_eq!(a.generation, 1);
        let e = t.acquire("b", "p", 1000, false, t0 + ms(999)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("held by a"), "{}", e.message);
        // Renewal by the holder extends it; by another is refused.
        t.renew("a", "p", 1000, t0 + ms(900)).unwrap();
        assert!(t.renew("b", "p", 1000, t0 + ms(950)).is_err());
        assert!(t.acquire("b", "p", 1000, false, t0 + ms(1899)).is_err());
        let changed = t.expire(t0 + ms(1900));
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].previous.as_deref(), Some("a"));
        let b = t.acquire("b", "p", 1000, false, t0 + ms(1900)).unwrap();
        assert_eq!(b.generation, 2);
        // The old holder cannot renew any more.
        assert!(t.renew("a", "p", 1000, t0 + ms(1901)).is_err());
    }

    #[test]
    fn disable_blocks_acquire_until_enabled() {
        let t0 = Instant::now();
        let mut t = LeaseTable::open(None, t0).unwrap();
        t.acquire("a", "p", 1000, false, t0).unwrap();
        assert!(
            t.release("b", "p", true, t0).is_err(),
            "only the holder releases"
        );
        let r = t.release("a", "p", true, t0).unwrap();
        assert!(r.disabled && r.holder.is_none());
        assert!(t.acquire("b", "p", 1000, false, t0).is_err());
        let b = t.acquire("b", "p", 1000, true, t0).unwrap();
        assert_eq!(b.holder.as_deref(), Some("b"));
        assert!(!b.disabled);
    }

    #[test]
    fn transfer_moves_the_lease_atomically() {
        let t0 = Instant::now();
        let mut t = LeaseTable::open(None, t0).unwrap();
        t.acquire("a", "p", 1000, false, t0).unwrap();
        assert!(t.transfer("b", "p", "c", 1000, t0).is_err());
        let i = t.transfer("a", "p", "b", 1000, t0).unwrap();
        assert_eq!(i.holder.as_deref(), Some("b"));
        assert_eq!(i.previous.as_deref(), Some("a"));
        assert!(t.renew("a", "p", 1000, t0).is_err());
        t.renew("b", "p", 1000, t0).unwrap();
    }

    #[test]
    fn ttl_is_clamped() {
        let t0 = Instant::now();
        let mut t = LeaseTable::open(None, t0).unwrap();
        let i = t.acquire("a", "p", 10_000_000, false, t0).unwrap();
        assert_eq!(i.expires_in_ms, Some(MAX_LEASE_TTL_MS));
    }

    #[test]
    fn after_a_restart_only_the_previous_holder_reclaims_during_grace() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("leases.json");
        let t0 = Instant::now();
        let mut t = LeaseTable::open(Some(&f), t0).unwrap();
        t.acquire("a", "p", 5000, false, t0).unwrap();
        t.release("a", "q", true, t0).unwrap();
        t.save().unwrap();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&f).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // "Restart": a new table from the file.
        let t1 = t0 + ms(10);
        let mut t = LeaseTable::open(Some(&f), t1).unwrap();
        let e = t.acquire("b", "p", 5000, false, t1).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(t.get("q", t1).disabled, "disabled marks survive");
        t.renew("a", "p", 5000, t1).unwrap();
        // A name never held is not in grace.
        t.acquire("b", "r", 5000, false, t1).unwrap();
        // After the grace period (its lease time) anyone may take an expired lease.
        let late = t1 + ms(5001);
        t.expire(late);
        t.acquire("b", "p", 5000, false, late).unwrap();
    }

    #[test]
    fn next_expiry_is_the_earliest_held_lease_or_grace_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("leases.json");
        let t0 = Instant::now();
        let mut t = LeaseTable::open(Some(&f), t0).unwrap();
        assert_eq!(t.next_expiry(), None, "nothing held: the sweeper sleeps");
        t.acquire("a", "p", 5000, false, t0).unwrap();
        t.acquire("a", "q", 2000, false, t0).unwrap();
        assert_eq!(t.next_expiry(), Some(t0 + ms(2000)));
        // A renewal with a shorter lease time brings the deadline forward.
        t.renew("a", "p", 1000, t0 + ms(100)).unwrap();
        assert_eq!(t.next_expiry(), Some(t0 + ms(1100)));
        t.release("a", "p", false, t0 + ms(200)).unwrap();
        assert_eq!(t.next_expiry(), Some(t0 + ms(2000)));
        assert_eq!(t.expire(t0 + ms(2000)).len(), 1);
        assert_eq!(t.next_expiry(), None);
        // After a restart, the grace period of a held name ends a lease time later.
        t.acquire("a", "q", 3000, false, t0 + ms(2000)).unwrap();
        t.save().unwrap();
        let t1 = t0 + ms(2500);
        let mut t = LeaseTable::open(Some(&f), t1).unwrap();
        assert_eq!(t.next_expiry(), Some(t1 + ms(3000)));
        t.expire(t1 + ms(3000));
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("leases.json");
        std::fs::write(&f, b"{not json").unwrap();
        let e = LeaseTable::open(Some(&f), Instant::now()).unwrap_err();
        assert!(e.contains("leases.json"), "{e}");
    }
}
