//! Shared state of a running core: the token issuer, the client store and the live sessions.

use crate::audit::Audit;
use crate::config::CoreConfig;
use crate::store::ClientStore;
use bytes::Bytes;
use hivehub_api::auth::ClientProfile;
use hivehub_api::topic::Topic;
use hivehub_api::{RemoteError, Role};
use hivehub_auth::{unix_now, TokenError, TokenIssuer};
use rmqtt::context::ServerContext;
use rmqtt::types::Id;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Notify};

/// What the core knows about one live MQTT session.
#[derive(Clone, Debug)]
pub(crate) struct SessionEntry {
    /// Login ID (MQTT username).
    pub login: String,
    /// Role from the client store at CONNECT.
    pub role: Role,
    /// When the credential expires; the session is closed then.
    pub exp: u64,
    /// The core's own internal client, which bypasses the ACL.
    pub internal: bool,
    /// rmqtt's session ID, set once connected.
    pub id: Option<Id>,
    /// When the CONNECT was allowed: an entry that never connected (the client hung up before
    /// CONNACK) stops counting after [`HANDSHAKE_GRACE`] and is swept away.
    pub authed: std::time::Instant,
}

/// How long an allowed CONNECT counts towards the connection limits before its session exists.
pub(crate) const HANDSHAKE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest the expiry task sleeps. Credentials expire by the wall clock, which can jump (a
/// Pi without a real-time clock sets it from the network after boot): a jump past a session's
/// expiry is noticed within this time. Publishes and subscriptions are refused from the expiry
/// on regardless (the hooks compare with the clock on every packet).
pub(crate) const EXPIRY_CHECK_MAX: Duration = Duration::from_secs(10);

impl SessionEntry {
    /// Connected, or about to be (the sweep forgets entries without a live connection).
    pub fn counts(&self) -> bool {
        !self.internal && (self.id.is_some() || self.authed.elapsed() < HANDSHAKE_GRACE)
    }
}

/// The core's own client on its bus, which serves the auth service.
pub(crate) struct Internal {
    pub login: String,
    pub pub_key: String,
}

/// A request the core answers itself with an error reply: the ACL refused it (`denied`), or
/// nobody serves its capability (`unknownCapability`).
pub(crate) struct CoreReply {
    /// The request's topic: the reply goes to its sender's inbox, from its agent.
    pub topic: Topic,
    pub corr: Option<Bytes>,
    pub error: RemoteError,
}

/// Messages the broker's hooks (which must not block) leave for the core's own client.
pub(crate) struct Outbox {
    /// Requests the core answers itself with an error reply.
    pub replies: mpsc::Sender<CoreReply>,
    /// Launcher logins whose first session started (true) or last session ended (false).
    pub presence: mpsc::UnboundedSender<(String, bool)>,
}

pub(crate) struct CoreState {
    pub cfg: CoreConfig,
    pub issuer: TokenIssuer,
    pub store: ClientStore,
    pub internal: Internal,
    /// What the broker's hooks hand to the core's own client to publish.
    pub outbox: Outbox,
    pub scx: ServerContext,
    /// The security record (`logs/audit.log`).
    pub audit: Audit,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    /// Wakes the expiry task early: a session was allowed, whose deadlines may come before the
    /// task's next look.
    pub expiry_wake: Notify,
    /// Publish allowance per login (`limits.publishRate`).
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Retained topics per login (`limits.maxRetainedTopics`).
    retained: Mutex<HashMap<String, HashSet<String>>>,
}

/// A token bucket: `tokens` publishes left, refilled at the configured rate.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl CoreState {
    pub fn new(
        cfg: CoreConfig,
        issuer: TokenIssuer,
        store: ClientStore,
        internal: Internal,
        outbox: Outbox,
        scx: ServerContext,
        audit: Audit,
    ) -> CoreState {
        CoreState {
            cfg,
            issuer,
            store,
            internal,
            outbox,
            scx,
            audit,
            sessions: Mutex::new(HashMap::new()),
            expiry_wake: Notify::new(),
            buckets: Mutex::new(HashMap::new()),
            retained: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one publish from `login`'s allowance; false when it is used up. Not asked for a
    /// launcher (see [`limits_apply`]).
    pub fn take_publish(&self, login: &str) -> bool {
        let (rate, burst) = (
            f64::from(self.cfg.limits.publish_rate),
            f64::from(self.cfg.limits.publish_burst.max(1)),
        );
        if rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.entry(login.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        e.tokens = (e.tokens + now.duration_since(e.at).as_secs_f64() * rate).min(burst);
        e.at = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Checks a retained publish of `len` bytes on `topic` by `login` against the limits and
    /// records it; an empty payload (which deletes a retained message) frees its place. With
    /// `count_topics` false (a launcher, see [`limits_apply`]) only the size is checked.
    pub fn admit_retained(
        &self,
        login: &str,
        topic: &str,
        len: usize,
        count_topics: bool,
    ) -> Result<(), String> {
        let limits = &self.cfg.limits;
        let mut r = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        let topics = r.entry(login.to_string()).or_default();
        if len == 0 {
            topics.remove(topic);
            return Ok(());
        }
        if len > limits.max_retained_bytes {
            return Err(format!(
                "retained message of {len} bytes is over maxRetainedBytes ({})",
                limits.max_retained_bytes
            ));
        }
        if count_topics && !topics.contains(topic) && topics.len() >= limits.max_retained_topics {
            return Err(format!(
                "more than maxRetainedTopics ({}) retained topics",
                limits.max_retained_topics
            ));
        }
        topics.insert(topic.to_string());
        Ok(())
    }

    /// Forgets the rate and retained bookkeeping of a removed login.
    pub fn forget_login(&self, login: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(login);
        self.retained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(login);
    }

    /// Live sessions by MQTT client identifier.
    pub fn sessions(&self) -> MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a token for `profile` with the lifetime of its client type.
    /// A token for `profile` and its expiry in unix milliseconds (the wire's one time unit).
    pub fn issue_for(&self, profile: &ClientProfile) -> Result<(String, u64), TokenError> {
        let (token, exp_secs) = self.issuer.issue(
            profile,
            self.cfg.token_validity_days.secs(profile.client_type),
        )?;
        Ok((token, exp_secs.saturating_mul(1000)))
    }

    /// After a refresh, the sessions of `login` live until the new expiry.
    pub fn extend_sessions(&self, login: &str, exp: u64) {
        for e in self.sessions().values_mut().filter(|e| e.login == login) {
            e.exp = e.exp.max(exp);
        }
    }

    async fn kick(&self, ids: Vec<Id>) -> usize {
        let mut n = 0;
        for id in ids {
            let entry = { self.scx.extends.shared().await.entry(id.clone()) };
            match entry.try_lock().await {
                Ok(mut e) => match e.kick(true, true, true).await {
                    Ok(_) => n += 1,
                    Err(err) => tracing::warn!(session = %id.client_id, "cannot disconnect: {err}"),
                },
                Err(err) => tracing::warn!(session = %id.client_id, "cannot disconnect: {err}"),
            }
        }
        n
    }

    /// Disconnects every session of `login` (after removal or re-keying).
    pub async fn kick_login(&self, login: &str) -> usize {
        let ids: Vec<Id> = self
            .sessions()
            .values()
            .filter(|e| e.login == login)
            .filter_map(|e| e.id.clone())
            .collect();
        let n = self.kick(ids).await;
        self.drop_offline_sessions(login).await;
        if n > 0 {
            self.audit
                .change(&format!("sessions ended: {login} ({n} disconnected)"));
        }
        n
    }

    /// Deletes the sessions `login` left behind (persistent sessions, with their
    /// subscriptions and queued messages), so nothing of a removed or re-keyed client stays.
    pub async fn drop_offline_sessions(&self, login: &str) {
        let ids: Vec<Id> = {
            let shared = self.scx.extends.shared().await;
            shared
                .iter()
                .filter_map(|e| e.session().map(|s| s.id.clone()))
                .filter(|id| id.username.as_deref() == Some(login))
                .collect()
        };
        let n = ids.len();
        for id in ids {
            let entry = { self.scx.extends.shared().await.entry(id.clone()) };
            if let Ok(mut e) = entry.try_lock().await {
                let _ = e.kick(true, true, true).await;
            }
        }
        if n > 0 {
            tracing::info!(login, sessions = n, "sessions of the client deleted");
        }
    }

    /// Forgets entries without a live connection: allowed CONNECTs whose session never came
    /// (the client hung up before CONNACK), and sessions whose disconnect the hooks saw before
    /// their connect (a connection dropped at once). Otherwise they would count against the
    /// connection limits for good.
    async fn sweep_dead_entries(&self) {
        let grace = HANDSHAKE_GRACE;
        let candidates: Vec<(String, Option<Id>)> = self
            .sessions()
            .iter()
            .filter(|(_, e)| !e.internal && e.authed.elapsed() >= grace)
            .map(|(k, e)| (k.clone(), e.id.clone()))
            .collect();
        let mut dead = Vec::new();
        for (key, id) in candidates {
            let live = match &id {
                Some(id) => {
                    let entry = { self.scx.extends.shared().await.entry(id.clone()) };
                    entry.is_connected().await
                }
                None => false,
            };
            if !live {
                dead.push((key, id));
            }
        }
        if dead.is_empty() {
            return;
        }
        let mut sessions = self.sessions();
        for (key, id) in dead {
            // Only if it is still the same entry (a reconnect may have replaced it).
            if sessions.get(&key).is_some_and(|e| {
                e.id.as_ref().map(|i| (&i.client_id, i.create_time))
                    == id.as_ref().map(|i| (&i.client_id, i.create_time))
                    && e.authed.elapsed() >= grace
            }) {
                sessions.remove(&key);
            }
        }
    }

    /// How long the expiry task may sleep before [`CoreState::kick_expired`] has work: until the
    /// next credential expires or the next handshake grace ends, 1 s while an expired session
    /// is still on its way out, and at most [`EXPIRY_CHECK_MAX`].
    pub fn next_expiry_check(&self) -> Duration {
        let now = SystemTime::now();
        let mut next = EXPIRY_CHECK_MAX;
        for e in self.sessions().values().filter(|e| !e.internal) {
            if let Some(left) = HANDSHAKE_GRACE.checked_sub(e.authed.elapsed()) {
                next = next.min(left);
            }
            let Some(exp) = UNIX_EPOCH.checked_add(Duration::from_secs(e.exp)) else {
                continue;
            };
            let left = exp
                .duration_since(now)
                .ok()
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(1));
            next = next.min(left);
        }
        next
    }

    /// Disconnects the sessions whose credential has expired.
    pub async fn kick_expired(&self) -> usize {
        let now = unix_now();
        self.sweep_dead_entries().await;
        let ids: Vec<Id> = self
            .sessions()
            .values()
            .filter(|e| !e.internal && e.exp <= now)
            .filter_map(|e| e.id.clone())
            .collect();
        if ids.is_empty() {
            return 0;
        }
        tracing::info!(
            count = ids.len(),
            "disconnecting sessions whose token expired"
        );
        self.close(
            ids,
            "token expired; connect with a new token or a key assertion",
        )
        .await
    }

    /// Ends sessions the way a client's own DISCONNECT would, but sent by the core: an MQTT 5
    /// client gets a DISCONNECT with "not authorized" (0x87) and `why` (the vendored rmqtt
    /// sends it before closing). The session itself stays, as after any lost connection, for
    /// the client to resume.
    async fn close(&self, ids: Vec<Id>, why: &str) -> usize {
        use rmqtt::codec::v5::{Disconnect as V5Disconnect, DisconnectReasonCode};
        use rmqtt::types::{Disconnect, Message, Reason};
        let mut n = 0;
        for id in ids {
            let tx = { self.scx.extends.shared().await.entry(id.clone()).tx() };
            let reason = Reason::ConnectDisconnect(Some(Disconnect::V5(V5Disconnect {
                reason_code: DisconnectReasonCode::NotAuthorized,
                reason_string: Some(why.to_string().into()),
                ..Default::default()
            })));
            match tx.map(|tx| tx.unbounded_send(Message::Closed(reason))) {
                Some(Ok(())) => n += 1,
                _ => tracing::warn!(session = %id.client_id, "cannot disconnect: session gone"),
            }
        }
        n
    }
}

/// Whether the per-login publish rate and retained-topic count apply to a login of `role`.
/// Not to a launcher: it publishes one retained status per plugin and, when hundreds of
/// plugins start at once, a burst of events that a hostile-client limit would cut (a hub with
/// 500 plugins could not start). The hub trusts its launchers anyway: they mint plugins'
/// credentials. The retained size limit still applies.
pub fn limits_apply(role: Role) -> bool {
    role != Role::Launcher
}
