//! The broker side of security: rmqtt hooks that authenticate every CONNECT, check every
//! SUBSCRIBE, PUBLISH and Last Will against the ACL, and track sessions so that expired or removed
//! clients are disconnected.
//!
//! CONNECT checks, in order:
//!
//! 1. A username (the login) is required; the listeners also refuse anonymous clients.
//! 2. The login must be a valid identifier.
//! 3. The MQTT client identifier must be the login or `login:suffix` (the SDK uses
//!    `{clientID}:{8 hex digits}`), for every role: otherwise a client could take over, resume
//!    (and receive the queue of) or lock out someone else's session.
//! 4. At most `maxConnections` sessions in all and `limits.maxConnectionsPerLogin` per login
//!    (rmqtt's own setting only sizes its accept queue).
//! 5. The client must be in the client store: a removed client is refused at once.
//! 6. The password must verify: a hub token (signed by the signing key, `iss` the configured
//!    issuer, `sub` the login, not expired, no leeway) or a key assertion checked against the
//!    stored public key.
//! 7. The credential's `pubKey` must be the stored one. A hub token's `role` and `generation`
//!    must be the stored ones too, so a role change or a removal invalidates older tokens; a
//!    key assertion proves identity only, and the role is the store's.
//! 8. A Last Will must pass `may_publish` for that login and the size and retained limits of a
//!    publish: rmqtt never runs the publish ACL for wills. When it fires it is checked again,
//!    against the client as it is then; a removed or demoted client's will goes to
//!    `$hivehub/dropped-will`, which no client can receive.
//!
//! Bad credentials get "bad user name or password"; the session name, the limits and the will
//! "not authorized". The reason goes to the log and the audit record, never to the client. The
//! core's internal `auth` client logs in with a token for this run's in-memory key and
//! bypasses the ACL.
//!
//! While connected, a session keeps its login, role and credential expiry: publishes and
//! subscriptions past the expiry are refused, and a task that wakes at the expiry (and at least
//! every 10 s, for a wall-clock jump) disconnects the session (`crate::state`). A refused
//! request is answered `denied` by the internal client, into the real sender's inbox only,
//! through a 1024-entry queue, so best effort.

use crate::state::{limits_apply, CoreReply, CoreState, SessionEntry};
use async_trait::async_trait;
use hivehub_api::topic::{MsgType, Topic, INBOX_PREFIX};
use hivehub_api::Role;
use hivehub_api::{ErrorCode, RemoteError};
use hivehub_auth::token::{is_assertion, peek_claims, verify_assertion};
use hivehub_auth::{may_publish, may_subscribe, unix_now};
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::types::{
    AuthResult, ConnectInfo, FromType, Id, LastWill, PublishAclResult, QoS, SubscribeAclResult,
};
use std::sync::Arc;

/// The hook handler registered with rmqtt.
#[derive(Clone)]
pub(crate) struct Hooks {
    pub state: Arc<CoreState>,
}

/// Registers the hooks with the broker.
pub(crate) async fn register(scx: &rmqtt::context::ServerContext, hooks: Hooks) {
    let reg = scx.extends.hook_mgr().register();
    for t in [
        Type::ClientAuthenticate,
        Type::ClientConnected,
        Type::ClientDisconnected,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
        Type::MessagePublish,
    ] {
        reg.add(t, Box::new(hooks.clone())).await;
    }
    reg.start().await;
}

/// Why a CONNECT was refused; logged, never sent to the client in detail.
enum Refusal {
    BadCredentials(String),
    NotAuthorized(String),
    Busy(String),
}

impl Hooks {
    fn authenticate(&self, ci: &ConnectInfo) -> Result<SessionEntry, Refusal> {
        let st = &self.state;
        let Some(login) = ci.username().map(|u| u.to_string()) else {
            return Err(Refusal::BadCredentials("anonymous connection".into()));
        };
        if hivehub_api::validate_id(&login).is_err() {
            return Err(Refusal::BadCredentials(format!("invalid login '{login}'")));
        }
        let password = ci
            .password()
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(str::to_string)
            .unwrap_or_default();
        let mqtt_id = ci.id().client_id.to_string();
        self.check_session_name(&login, &mqtt_id)?;
        {
            // rmqtt's own setting only sizes its accept queue; this is the limit. A client that
            // reconnects under its session name replaces its entry, so it is not counted twice.
            let sessions = st.sessions();
            if !sessions.contains_key(&mqtt_id) {
                let live = sessions.values().filter(|e| e.counts()).count();
                if live >= st.cfg.max_connections {
                    return Err(Refusal::Busy(format!(
                        "maxConnections ({}) reached",
                        st.cfg.max_connections
                    )));
                }
                let per_login = st.cfg.limits.max_connections_per_login;
                let mine = sessions
                    .values()
                    .filter(|e| e.counts() && e.login == login)
                    .count();
                if mine >= per_login {
                    return Err(Refusal::Busy(format!(
                        "limits.maxConnectionsPerLogin ({per_login}) reached"
                    )));
                }
            }
        }

        let claims = peek_claims(&password).map_err(|e| Refusal::BadCredentials(e.to_string()))?;
        let (role, exp, internal) = if login == st.internal.login {
            let c = st
                .issuer
                .verify(&password, &login)
                .map_err(|e| Refusal::BadCredentials(e.to_string()))?;
            if c.pub_key != st.internal.pub_key {
                return Err(Refusal::BadCredentials("stale internal token".into()));
            }
            (Role::Admin, c.exp, true)
        } else {
            let profile = st.store.get(&login).ok_or_else(|| {
                Refusal::BadCredentials(format!("unknown or removed client '{login}'"))
            })?;
            let bad = |e: hivehub_auth::TokenError| Refusal::BadCredentials(e.to_string());
            if is_assertion(&claims.iss) {
                // A key assertion proves identity only (checked against the key on file); the
                // role is the store's.
                let a = verify_assertion(&password, &login, &profile.pub_key).map_err(bad)?;
                (profile.role, a.exp, false)
            } else {
                let c = st.issuer.verify(&password, &login).map_err(bad)?;
                check_hub_token(&login, &c, &profile)?;
                (profile.role, c.exp, false)
            }
        };

        // rmqtt never runs the publish ACL for wills, so check the will topic here, and hold a
        // will (kept for the whole session) to the size and retained limits of a publish.
        if let (Some(will), false) = (ci.last_will(), internal) {
            let (topic, retain, len) = match will {
                LastWill::V3(w) => (w.topic.to_string(), w.retain, w.message.len()),
                LastWill::V5(w) => (
                    w.topic.to_string(),
                    w.retain,
                    w.message.len()
                        + props_len(&w.user_properties)
                        + w.correlation_data.as_ref().map_or(0, |c| c.len())
                        + w.content_type.as_ref().map_or(0, |c| c.len())
                        + w.response_topic.as_ref().map_or(0, |c| c.len()),
                ),
            };
            if !may_publish(&login, role, &topic, &st.store) {
                return Err(Refusal::NotAuthorized(format!(
                    "'{login}' may not set a Last Will on '{topic}'"
                )));
            }
            let max = st.cfg.limits.max_retained_bytes;
            if len > max {
                return Err(Refusal::NotAuthorized(format!(
                    "a Last Will of {len} bytes is over maxRetainedBytes ({max})"
                )));
            }
            if retain {
                st.admit_retained(&login, &topic, len, limits_apply(role))
                    .map_err(Refusal::NotAuthorized)?;
            }
        }
        Ok(SessionEntry {
            login,
            role,
            exp,
            internal,
            id: None,
            authed: std::time::Instant::now(),
        })
    }

    /// An MQTT client identifier is the login or `login:suffix`, for every role: sessions (and
    /// what is queued for them) belong to logins, so no client can take over, resume or lock
    /// out another's session, even one of a client that does not exist yet.
    fn check_session_name(&self, login: &str, mqtt_id: &str) -> Result<(), Refusal> {
        if mqtt_id == login
            || mqtt_id
                .strip_prefix(login)
                .is_some_and(|rest| rest.starts_with(':'))
        {
            return Ok(());
        }
        Err(Refusal::NotAuthorized(format!(
            "'{login}' may not use the session name '{mqtt_id}': it must be '{login}' or '{login}:SUFFIX'"
        )))
    }

    fn entry_for(&self, mqtt_id: &str) -> Option<SessionEntry> {
        self.state.sessions().get(mqtt_id).cloned()
    }
}

fn same_session(a: &Id, b: &Id) -> bool {
    a.client_id == b.client_id && a.create_time == b.create_time
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let mqtt_id = ci.id().client_id.to_string();
                match self.authenticate(ci) {
                    Ok(entry) => {
                        tracing::debug!(login = %entry.login, role = %entry.role, session = %mqtt_id, "connect allowed");
                        self.state.sessions().insert(mqtt_id, entry);
                        self.state.expiry_wake.notify_one();
                        (
                            false,
                            Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
                        )
                    }
                    Err(refusal) => {
                        let (why, result) = match refusal {
                            Refusal::BadCredentials(w) => (w, AuthResult::BadUsernameOrPassword),
                            Refusal::NotAuthorized(w) => (w, AuthResult::NotAuthorized),
                            Refusal::Busy(w) => (w, AuthResult::NotAuthorized),
                        };
                        // Keyed by the login only when it exists: a flood of made-up names
                        // counts under one key.
                        let who = ci
                            .username()
                            .map(|u| u.to_string())
                            .filter(|u| self.state.store.get(u).is_some())
                            .unwrap_or_else(|| "?".into());
                        self.state.audit.refused(&who, "connect refused", &why);
                        tracing::debug!(session = %mqtt_id, "connect refused: {why}");
                        (false, Some(HookResult::AuthResult(result)))
                    }
                }
            }
            Parameter::ClientConnected(s) => {
                let mut sessions = self.state.sessions();
                let mut launcher = None;
                if let Some(e) = sessions.get_mut(&*s.id.client_id) {
                    e.id = Some(s.id.clone());
                    if e.role == Role::Launcher && !e.internal {
                        launcher = Some(e.login.clone());
                    }
                }
                if let Some(login) = launcher {
                    let live = sessions
                        .values()
                        .filter(|e| e.login == login && e.id.is_some())
                        .count();
                    if live == 1 {
                        let _ = self.state.outbox.presence.send((login, true));
                    }
                }
                (true, acc)
            }
            Parameter::ClientDisconnected(s, _) => {
                let mut sessions = self.state.sessions();
                let key = s.id.client_id.to_string();
                if sessions
                    .get(&key)
                    .is_some_and(|e| e.id.as_ref().is_some_and(|id| same_session(id, &s.id)))
                {
                    if let Some(e) = sessions.remove(&key) {
                        let live = sessions
                            .values()
                            .filter(|o| o.login == e.login && o.id.is_some())
                            .count();
                        if e.role == Role::Launcher && !e.internal && live == 0 {
                            let _ = self.state.outbox.presence.send((e.login, false));
                        }
                    }
                }
                (true, acc)
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let filter = sub.topic_filter.to_string();
                let ok = self.entry_for(&s.id.client_id).is_some_and(|e| {
                    e.internal || (e.exp > unix_now() && may_subscribe(&e.login, e.role, &filter))
                });
                if !ok {
                    let who = s.id.username.as_deref().unwrap_or_default();
                    self.state.audit.refused(who, "subscribe denied", &filter);
                }
                let r = if ok {
                    // Replies are delivered at QoS 0: a reply only matters to the connection
                    // that asked, and without a PUBACK for it a client that leaves Nagle on
                    // (paho, MQTT.js) does not hold its next request for the core's delayed
                    // ACK (44 ms per request before, about 1 ms after, measured with paho).
                    let qos = if filter.starts_with(INBOX_PREFIX)
                        && filter[INBOX_PREFIX.len()..].starts_with('/')
                    {
                        QoS::AtMostOnce
                    } else {
                        sub.opts.qos()
                    };
                    SubscribeAclResult::new_success(qos, None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(r)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let topic = p.topic.to_string();
                let entry = self.entry_for(&s.id.client_id);
                let ok = entry.as_ref().is_some_and(|e| {
                    e.internal
                        || (e.exp > unix_now()
                            && may_publish(&e.login, e.role, &topic, &self.state.store))
                });
                // Limits apply to allowed publishes only (a denied one is refused anyway).
                let limited = match entry.as_ref().filter(|e| ok && !e.internal) {
                    Some(e) if limits_apply(e.role) && !self.state.take_publish(&e.login) => {
                        Some("publish rate over limits.publishRate".to_string())
                    }
                    Some(e) if p.retain => {
                        // Properties count: they are stored with the message.
                        let props = p.properties.as_ref().map_or(0, |pp| {
                            props_len(&pp.user_properties)
                                + pp.correlation_data.as_ref().map_or(0, |c| c.len())
                                + pp.content_type.as_ref().map_or(0, |c| c.len())
                                + pp.response_topic.as_ref().map_or(0, |c| c.len())
                        });
                        let len = if p.payload.is_empty() {
                            0
                        } else {
                            p.payload.len() + props
                        };
                        self.state
                            .admit_retained(&e.login, &topic, len, limits_apply(e.role))
                            .err()
                    }
                    _ => None,
                };
                if let (Some(why), Some(e)) = (&limited, entry.as_ref()) {
                    self.state.audit.refused(&e.login, "over a limit", why);
                    return (
                        false,
                        Some(HookResult::PublishAclResult(PublishAclResult::rejected(
                            false, None,
                        ))),
                    );
                }
                if !ok {
                    let who = s.id.username.as_deref().unwrap_or_default();
                    self.state.audit.refused(who, "publish denied", &topic);
                    if let (Some(e), Ok(t)) = (entry, Topic::parse(&topic)) {
                        // Answer a denied request at once, so the caller gets "not permitted"
                        // instead of a timeout. Only to the real sender's own inbox.
                        if t.msg_type == MsgType::Rpc && t.sender == e.login {
                            let corr = p
                                .properties
                                .as_ref()
                                .and_then(|pp| pp.correlation_data.clone());
                            let message = format!(
                                "role {} may not call {}/{}/{}",
                                e.role, t.agent, t.thing, t.name
                            );
                            let _ = self.state.outbox.replies.try_send(CoreReply {
                                topic: t,
                                corr,
                                error: RemoteError::new(ErrorCode::Denied, message),
                            });
                        }
                    }
                }
                let r = if ok {
                    PublishAclResult::allow()
                } else {
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(r)))
            }
            Parameter::MessagePublish(_, from, p) if matches!(from.typ(), FromType::LastWill) => {
                // A will is checked again when it fires, against the client as it is now: a
                // removed or demoted client's will goes nowhere.
                let login = from.id.username.as_deref().unwrap_or_default().to_string();
                let topic = p.topic.to_string();
                let allowed = self
                    .state
                    .store
                    .get(&login)
                    .is_some_and(|c| may_publish(&login, c.role, &topic, &self.state.store));
                if allowed {
                    return (true, acc);
                }
                self.state.audit.change(&format!(
                    "will dropped: {login} on {topic} (no longer allowed)"
                ));
                let mut dropped = (*p).clone();
                // No client can subscribe to `$` topics (wildcards never match them and the
                // ACL refuses them), and a dropped will is never retained.
                dropped.topic = DROPPED_WILL_TOPIC.into();
                dropped.retain = false;
                (false, Some(HookResult::Publish(dropped)))
            }
            Parameter::MessagePublish(_, from, p) if p.topic.starts_with("rpc/") => {
                self.answer_unserved(from, p).await;
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

impl Hooks {
    /// Answers a request nobody subscribes to with `unknownCapability` at once, instead of
    /// leaving the caller to its timeout. Only a client's own request (sender = login) is
    /// answered, in its own inbox.
    async fn answer_unserved(&self, from: &rmqtt::types::From, p: &rmqtt::types::Publish) {
        let login = from.id.username.as_deref().unwrap_or_default();
        let Ok(t) = Topic::parse(&p.topic) else {
            return;
        };
        if t.msg_type != MsgType::Rpc || t.sender != login {
            return;
        }
        let served = match self
            .state
            .scx
            .extends
            .router()
            .await
            .matches(from.id.clone(), &p.topic)
            .await
        {
            Ok(m) => m.values().any(|subs| !subs.is_empty()),
            // Unknown: let the caller wait rather than answer wrongly.
            Err(_) => true,
        };
        if served {
            return;
        }
        let message = format!(
            "nobody serves {}/{}: the service is not connected or has no capability '{}'",
            t.agent, t.thing, t.thing
        );
        let corr = p
            .properties
            .as_ref()
            .and_then(|pp| pp.correlation_data.clone());
        let _ = self.state.outbox.replies.try_send(CoreReply {
            topic: t,
            corr,
            error: RemoteError::new(ErrorCode::UnknownCapability, message),
        });
    }
}

/// The checks a hub token (its signature and issuer verified) must pass against the client as
/// it is now: the same key, the current role (so a role change invalidates old tokens), and
/// the current generation (removal is permanent: a token of an earlier client with this ID
/// never logs in).
fn check_hub_token(
    login: &str,
    c: &hivehub_auth::Claims,
    profile: &hivehub_api::auth::ClientProfile,
) -> Result<(), Refusal> {
    if c.pub_key != profile.pub_key {
        return Err(Refusal::BadCredentials(format!(
            "token of '{login}' was issued for another key"
        )));
    }
    if c.role != profile.role {
        return Err(Refusal::BadCredentials(format!(
            "token of '{login}' carries role {} but the client now has role {}",
            c.role, profile.role
        )));
    }
    if profile.generation.is_some() && c.generation != profile.generation {
        return Err(Refusal::BadCredentials(format!(
            "token of '{login}' was issued before the client was removed and added again"
        )));
    }
    Ok(())
}

/// Bytes of MQTT 5 user properties.
fn props_len<S: std::ops::Deref<Target = str>>(props: &[(S, S)]) -> usize {
    props.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Where a will that may no longer be sent goes: nowhere anyone can subscribe.
const DROPPED_WILL_TOPIC: &str = "$hivehub/dropped-will";
