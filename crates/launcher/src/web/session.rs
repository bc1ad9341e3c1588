//! Logins of the status page. A login is a real hub client: the server connects to the hub as
//! the user with the token they gave, keeps that connection under a random session ID (an
//! HttpOnly, SameSite=Strict cookie), and sends the user's start and stop requests through it,
//! so the core's ACL decides exactly as it does for any other client. The token is never sent
//! back to the browser and never kept anywhere but in that connection.

use hivehub_client::HubClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "hivehub_session";
/// Most sessions at once; the oldest is dropped beyond.
const MAX_SESSIONS: usize = 32;
/// A session ends this long after its login.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// One logged-in user.
#[derive(Clone)]
pub struct Session {
    /// The user's own connection to the hub.
    pub client: HubClient,
    /// The user's client ID.
    pub id: String,
    created: Instant,
}

/// The sessions, by session ID. Cheap to clone.
#[derive(Clone, Default)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `client` as a new session of `id`; returns the session ID.
    pub fn insert(&self, id: String, client: HubClient) -> String {
        let sid: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut dropped = Vec::new();
        {
            let mut map = self.lock();
            dropped.extend(expire(&mut map));
            while map.len() >= MAX_SESSIONS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone());
                match oldest.and_then(|k| map.remove(&k)) {
                    Some(s) => dropped.push(s),
                    None => break,
                }
            }
            map.insert(
                sid.clone(),
                Session {
                    client,
                    id,
                    created: Instant::now(),
                },
            );
        }
        close(dropped);
        sid
    }

    /// The live session with this ID.
    pub fn get(&self, sid: &str) -> Option<Session> {
        let mut map = self.lock();
        let dropped = expire(&mut map);
        let s = map.get(sid).cloned();
        drop(map);
        close(dropped);
        s
    }

    /// Ends a session (disconnecting its client in the background).
    pub fn remove(&self, sid: &str) -> Option<Session> {
        let s = self.lock().remove(sid);
        if let Some(s) = &s {
            close(vec![s.clone()]);
        }
        s
    }
}

fn expire(map: &mut HashMap<String, Session>) -> Vec<Session> {
    let old: Vec<String> = map
        .iter()
        .filter(|(_, s)| s.created.elapsed() > LIFETIME)
        .map(|(k, _)| k.clone())
        .collect();
    old.iter().filter_map(|k| map.remove(k)).collect()
}

fn close(sessions: Vec<Session>) {
    for s in sessions {
        tokio::spawn(async move { s.client.disconnect().await });
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
