//! Logins of the status page and of `/metrics` scrapers, and what limits them.
//!
//! * A login is a real hub client: the server connects to the hub as the user with the token
//!   they gave, so the hub decides who may log in, exactly as for any other client. The page's
//!   login keeps that connection under a random session ID (an HttpOnly, SameSite=Strict cookie)
//!   and sends the user's start and stop requests through it, so the core's ACL applies to them.
//!   The token is never sent back to the browser and never kept anywhere but in that connection.
//! * [`Sessions`] holds at most [`MAX_PER_USER`] sessions per client ID and [`MAX_SESSIONS`] in
//!   all. A user's new login ends that user's own oldest session; only when the global cap is hit
//!   does it end one of another user, the oldest of whoever has the most. So a flood of logins
//!   of one (viewer) client cannot log the admin out.
//! * [`Verified`] remembers, for [`VERIFIED_FOR`], that a bearer token of `/metrics` logged in,
//!   keyed by a keyed hash of the client ID and token (never the token itself), so a scraper
//!   does not open a hub connection per scrape. A client removed from the hub keeps its scrape
//!   access for at most that long.
//! * [`Throttle`] counts failed logins per client ID and per remote address: after
//!   [`MAX_FAILURES`] in [`FAILURE_WINDOW`] the key is locked for [`FIRST_LOCK`], and while the
//!   key is remembered every further failure locks it again for twice as long (up to
//!   [`MAX_LOCK`]). A locked login is answered 429 without trying the hub. Successes do not
//!   count. Both maps are capped; the least recently used entry is dropped.

use super::peers::Peers;
use crate::lock;
use hivehub_client::HubClient;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;

/// The session cookie's name.
pub const COOKIE: &str = "hivehub_session";
/// Most sessions at once; beyond, the oldest session of the user with the most is dropped.
pub const MAX_SESSIONS: usize = 64;
/// Most sessions of one client ID; its oldest is dropped beyond.
pub const MAX_PER_USER: usize = 4;
/// A session ends this long after its login.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// One logged-in user.
#[derive(Clone)]
pub struct Session {
    /// The user's own connection to the hub.
    pub client: HubClient,
    /// The user's client ID.
    pub id: String,
    /// The hub's launchers, as this user's connection hears them.
    pub peers: Peers,
    created: Instant,
}

/// The sessions, by session ID. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Session>>>,
    /// Where the disconnects of ended sessions run (the launcher's tracker).
    tasks: TaskTracker,
}

impl Sessions {
    /// No sessions yet; ended ones are disconnected on `tasks`.
    pub fn new(tasks: TaskTracker) -> Sessions {
        Sessions {
            map: Arc::default(),
            tasks,
        }
    }

    /// Ends every session (at shutdown).
    pub fn close_all(&self) {
        let all: Vec<Session> = self.lock().drain().map(|(_, s)| s).collect();
        self.close(all);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        lock(&self.map)
    }

    /// Keeps `client` (following `peers`) as a new session of `id`, first ending the sessions
    /// the caps require; returns the session ID.
    pub fn insert(&self, id: String, client: HubClient, peers: Peers) -> String {
        let sid: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut dropped = Vec::new();
        {
            let mut map = self.lock();
            dropped.extend(expire(&mut map));
            loop {
                let all: Vec<(&str, &str, Instant)> = map
                    .iter()
                    .map(|(k, s)| (k.as_str(), s.id.as_str(), s.created))
                    .collect();
                let Some(k) = victim(&all, &id) else { break };
                match map.remove(&k) {
                    Some(s) => {
                        tracing::info!(id = %s.id, "status page session ended by a newer login");
                        dropped.push(s);
                    }
                    None => break,
                }
            }
            map.insert(
                sid.clone(),
                Session {
                    client,
                    id,
                    peers,
                    created: Instant::now(),
                },
            );
        }
        self.close(dropped);
        sid
    }

    /// The live session with this ID.
    pub fn get(&self, sid: &str) -> Option<Session> {
        let mut map = self.lock();
        let dropped = expire(&mut map);
        let s = map.get(sid).cloned();
        drop(map);
        self.close(dropped);
        s
    }

    /// True while the session exists (not logged out, evicted or expired).
    pub fn alive(&self, sid: &str) -> bool {
        self.lock()
            .get(sid)
            .is_some_and(|s| s.created.elapsed() <= LIFETIME)
    }

    /// Ends a session (disconnecting its client in the background).
    pub fn remove(&self, sid: &str) -> Option<Session> {
        let s = self.lock().remove(sid);
        if let Some(s) = &s {
            self.close(vec![s.clone()]);
        }
        s
    }
}

/// The session to end before `user` gets a new one, if any: `user`'s own oldest when it has
/// [`MAX_PER_USER`]; else, when there are [`MAX_SESSIONS`], the oldest session of the user with
/// the most (of those, the one whose oldest session is oldest).
fn victim(all: &[(&str, &str, Instant)], user: &str) -> Option<String> {
    // Per user: how many, and the oldest (created, session ID).
    let mut per: HashMap<&str, (usize, Instant, &str)> = HashMap::new();
    for &(sid, u, created) in all {
        let e = per.entry(u).or_insert((0, created, sid));
        e.0 += 1;
        if created < e.1 {
            (e.1, e.2) = (created, sid);
        }
    }
    if let Some(&(n, _, sid)) = per.get(user) {
        if n >= MAX_PER_USER {
            return Some(sid.to_string());
        }
    }
    if all.len() < MAX_SESSIONS {
        return None;
    }
    per.values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|&(_, _, sid)| sid.to_string())
}

fn expire(map: &mut HashMap<String, Session>) -> Vec<Session> {
    let old: Vec<String> = map
        .iter()
        .filter(|(_, s)| s.created.elapsed() > LIFETIME)
        .map(|(k, _)| k.clone())
        .collect();
    old.iter().filter_map(|k| map.remove(k)).collect()
}

impl Sessions {
    fn close(&self, sessions: Vec<Session>) {
        for s in sessions {
            self.tasks.spawn(async move { s.client.disconnect().await });
        }
    }
}

/// The session ID in the request's cookies.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == COOKIE && v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(sid: &str) -> String {
    format!(
        "{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// How long a bearer token's successful login is remembered.
pub const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Most remembered bearer tokens.
const MAX_VERIFIED: usize = 64;

/// Bearer tokens that logged in recently, by a keyed hash of client ID and token. Cheap to
/// clone.
#[derive(Clone, Default)]
pub struct Verified {
    map: Arc<Mutex<HashMap<u128, Instant>>>,
    /// Two random SipHash keys (chosen per process), for a 128-bit hash no one can aim at.
    keys: Arc<(RandomState, RandomState)>,
}

impl Verified {
    fn key(&self, id: &str, token: &str) -> u128 {
        let (a, b) = &*self.keys;
        (u128::from(a.hash_one((id, token))) << 64) | u128::from(b.hash_one((id, token)))
    }

    /// True if `id` logged in with `token` recently (and the memory of it has not run out).
    pub fn contains(&self, id: &str, token: &str) -> bool {
        let k = self.key(id, token);
        lock(&self.map)
            .get(&k)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Remembers that `id` logged in with `token`, until `until` (at most [`VERIFIED_FOR`]).
    pub fn insert(&self, id: &str, token: &str, until: Instant) {
        let now = Instant::now();
        let until = until.min(now + VERIFIED_FOR);
        let k = self.key(id, token);
        let mut map = lock(&self.map);
        map.retain(|_, u| *u > now);
        while map.len() >= MAX_VERIFIED {
            let first = map.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
            match first {
                Some(f) => map.remove(&f),
                None => break,
            };
        }
        map.insert(k, until);
    }
}

/// Failed logins that lock a key.
pub const MAX_FAILURES: usize = 5;
/// The window in which [`MAX_FAILURES`] are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The first lock.
pub const FIRST_LOCK: Duration = Duration::from_secs(15);
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(300);
/// A key is forgotten (its next lock is the first again) this long after its last failure.
const FORGET: Duration = Duration::from_secs(15 * 60);
/// Most keys remembered.
const MAX_KEYS: usize = 4096;

/// What failed logins are counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    /// The remote address.
    Addr(IpAddr),
    /// The client ID tried (only a valid one, so the keys stay small).
    Client(String),
}

struct Record {
    /// Failures in the window, oldest first.
    failures: VecDeque<Instant>,
    /// Locks so far (each doubles the next).
    locks: u32,
    /// Locked until then.
    until: Option<Instant>,
    /// The last failure.
    last: Instant,
}

/// Failed logins by [`Who`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct Throttle {
    map: Arc<Mutex<HashMap<Who, Record>>>,
}

impl Throttle {
    /// `Err(how long)` while any of `keys` is locked.
    pub fn check(&self, keys: &[Who]) -> Result<(), Duration> {
        self.check_at(keys, Instant::now())
    }

    fn check_at(&self, keys: &[Who], now: Instant) -> Result<(), Duration> {
        let map = lock(&self.map);
        let wait = keys
            .iter()
            .filter_map(|k| map.get(k)?.until)
            .filter_map(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max();
        match wait {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }

    /// Counts a failed login against every one of `keys`.
    pub fn failed(&self, keys: &[Who]) {
        self.failed_at(keys, Instant::now());
    }

    fn failed_at(&self, keys: &[Who], now: Instant) {
        let mut map = lock(&self.map);
        for k in keys {
            if !map.contains_key(k) && map.len() >= MAX_KEYS {
                let forgotten = |r: &Record| {
                    now.saturating_duration_since(r.last) > FORGET
                        && r.until.is_none_or(|u| u <= now)
                };
                map.retain(|_, r| !forgotten(r));
                if map.len() >= MAX_KEYS {
                    let oldest = map
                        .iter()
                        .min_by_key(|(_, r)| r.last)
                        .map(|(k, _)| k.clone());
                    if let Some(o) = oldest {
                        map.remove(&o);
                    }
                }
            }
            let r = map.entry(k.clone()).or_insert_with(|| Record {
                failures: VecDeque::new(),
                locks: 0,
                until: None,
                last: now,
            });
            if now.saturating_duration_since(r.last) > FORGET && r.until.is_none_or(|u| u <= now) {
                r.locks = 0;
            }
            r.last = now;
            while r
                .failures
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
            {
                r.failures.pop_front();
            }
            r.failures.push_back(now);
            if r.failures.len() >= MAX_FAILURES || r.locks > 0 {
                let d = FIRST_LOCK
                    .saturating_mul(1u32 << r.locks.min(16))
                    .min(MAX_LOCK);
                r.until = Some(now + d);
                r.locks = r.locks.saturating_add(1);
                r.failures.clear();
                tracing::warn!(who = ?k, secs = d.as_secs(), "logins locked after failures");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_evicts_only_its_own_sessions_below_the_global_cap() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut all = vec![("admin1", "admin", at(0))];
        for i in 0..MAX_PER_USER {
            assert_eq!(victim(&all, "vera"), None);
            all.push(("v", "vera", at(10 + i as u64)));
        }
        all[1].0 = "vera-oldest";
        assert_eq!(victim(&all, "vera").as_deref(), Some("vera-oldest"));
        assert_eq!(victim(&all, "admin"), None);
    }

    #[test]
    fn the_global_cap_evicts_from_the_user_with_the_most() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let names: Vec<String> = (0..MAX_SESSIONS).map(|i| format!("u{i}")).collect();
        let mut all: Vec<(&str, &str, Instant)> = Vec::new();
        // The admin's session is the oldest of all; u1 has the most sessions.
        all.push(("admin1", "admin", at(0)));
        for i in 0..3 {
            all.push(("u1-s", "u1", at(5 + i)));
        }
        all[1].0 = "u1-oldest";
        let mut i = 2;
        while all.len() < MAX_SESSIONS {
            all.push((names[i].as_str(), names[i].as_str(), at(100 + i as u64)));
            i += 1;
        }
        assert_eq!(victim(&all, "newcomer").as_deref(), Some("u1-oldest"));
        assert_eq!(victim(&all, "admin").as_deref(), Some("u1-oldest"));
    }

    #[test]
    fn failures_lock_and_the_lock_doubles() {
        let th = Throttle::default();
        let t0 = Instant::now();
        let ip = Who::Addr(IpAddr::from([127, 0, 0, 9]));
        let keys = [ip.clone()];
        for i in 0..MAX_FAILURES as u64 - 1 {
            th.failed_at(&keys, t0 + Duration::from_secs(i));
            assert!(th.check_at(&keys, t0 + Duration::from_secs(i)).is_ok());
        }
        let t = t0 + Duration::from_secs(10);
        th.failed_at(&keys, t);
        assert_eq!(th.check_at(&keys, t), Err(FIRST_LOCK));
        // Another key is not affected.
        assert!(th.check_at(&[Who::Client("vera".into())], t).is_ok());
        // After the lock, one more failure locks again, twice as long; up to MAX_LOCK.
        let mut t = t + FIRST_LOCK;
        assert!(th.check_at(&keys, t).is_ok());
        let mut want = FIRST_LOCK;
        for _ in 0..8 {
            th.failed_at(&keys, t);
            want = (want * 2).min(MAX_LOCK);
            assert_eq!(th.check_at(&keys, t), Err(want));
            t += want;
        }
        assert_eq!(want, MAX_LOCK);
        // Forgotten after a quiet while: the next lock needs MAX_FAILURES again.
        let t = t + FORGET + Duration::from_secs(1);
        th.failed_at(&keys, t);
        assert!(th.check_at(&keys, t).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let th = Throttle::default();
        let t0 = Instant::now();
        let keys = [Who::Client("admin".into())];
        for i in 0..20u64 {
            let t = t0 + FAILURE_WINDOW / 4 * (i as u32 + 1) + Duration::from_secs(i);
            th.failed_at(&keys, t);
            assert!(th.check_at(&keys, t).is_ok(), "failure {i}");
        }
    }

    #[test]
    fn the_throttle_stays_bounded() {
        let th = Throttle::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 100) {
            th.failed_at(&[Who::Addr(IpAddr::from(i.to_be_bytes()))], t0);
        }
        assert!(lock(&th.map).len() <= MAX_KEYS);
    }

    #[test]
    fn verified_tokens_are_remembered_for_a_while() {
        let v = Verified::default();
        assert!(!v.contains("prom", "t1"));
        v.insert("prom", "t1", Instant::now() + Duration::from_secs(3600));
        assert!(v.contains("prom", "t1"));
        assert!(!v.contains("prom", "t2"));
        assert!(!v.contains("other", "t1"));
        v.insert("old", "t", Instant::now());
        assert!(!v.contains("old", "t"));
        for i in 0..(MAX_VERIFIED * 2) {
            v.insert(&format!("c{i}"), "t", Instant::now() + VERIFIED_FOR);
        }
        assert!(lock(&v.map).len() <= MAX_VERIFIED);
    }
}
