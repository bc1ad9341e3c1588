//! Shared state of a running core: the token issuer, the client store and the live sessions.

use crate::broker::SessionEntry;
use crate::config::CoreConfig;
use crate::store::ClientStore;
use bytes::Bytes;
use hivehub_api::auth::ClientProfile;
use hivehub_api::topic::Topic;
use hivehub_api::Role;
use hivehub_auth::{unix_now, TokenError, TokenIssuer};
use rmqtt::context::ServerContext;
use rmqtt::types::Id;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

/// The core's own client on its bus, which serves the auth service.
pub(crate) struct Internal {
    pub login: String,
    pub pub_key: String,
}

/// A request the ACL refused; the core answers it with a `denied` error reply.
pub(crate) struct DeniedCall {
    pub role: Role,
    pub topic: Topic,
    pub corr: Option<Bytes>,
}

pub(crate) struct CoreState {
    pub cfg: CoreConfig,
    pub issuer: TokenIssuer,
    pub store: ClientStore,
    pub internal: Internal,
    pub denied_tx: mpsc::Sender<DeniedCall>,
    pub scx: ServerContext,
    /// Launcher logins whose first session started (true) or last session ended (false).
    pub presence_tx: mpsc::UnboundedSender<(String, bool)>,
    sessions: Mutex<HashMap<String, SessionEntry>>,
}

impl CoreState {
    pub fn new(
        cfg: CoreConfig,
        issuer: TokenIssuer,
        store: ClientStore,
        internal: Internal,
        denied_tx: mpsc::Sender<DeniedCall>,
        scx: ServerContext,
        presence_tx: mpsc::UnboundedSender<(String, bool)>,
    ) -> CoreState {
        CoreState {
            cfg,
            issuer,
            store,
            internal,
            denied_tx,
            scx,
            presence_tx,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Live sessions by MQTT client identifier.
    pub fn sessions(&self) -> MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a token for `profile` with the lifetime of its client type.
    pub fn issue_for(&self, profile: &ClientProfile) -> Result<(String, u64), TokenError> {
        self.issuer.issue(
            profile,
            self.cfg.token_validity_days.secs(profile.client_type),
        )
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
        self.kick(ids).await
    }

    /// Disconnects the sessions whose credential has expired.
    pub async fn kick_expired(&self) -> usize {
        let now = unix_now();
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
        self.kick(ids).await
    }
}
