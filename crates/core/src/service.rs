//! The auth service: the core's own capabilities on the bus (see `hivehub_api::auth`), and the
//! lease service (`leases`, see `hivehub_api::cluster` and [`crate::lease`]).
//!
//! Who may call a capability at all is the ACL's built-in grant (`hivehub_auth::acl`); which
//! clients a caller may manage is decided here:
//!
//! * Admin manages every client. A launcher manages only service clients (plugins): it may
//!   add, re-key, issue tokens for and remove them, and it may replace only a client that a
//!   launcher added (the profile records `createdBy` and, for a launcher, `plugin: true`), so a
//!   plugin binary named like an existing user, device, remote service or launcher is refused
//!   with `conflict` and cannot take its identity. Nobody may remove itself.
//! * `addClient` on an existing ID replaces the profile; if the key or role changed, the
//!   client's sessions end at once and its offline sessions are deleted. A new client gets a
//!   new generation, so tokens of an earlier client with that ID never log in again.
//!   `removeClient` also drops the client's grants and sessions. `auth` and IDs starting with
//!   `_` are reserved.
//! * `profile/refresh` issues a new token and extends the expiry of that login's live sessions.
//! * `authz/setPermissions` sets who may call the caller's own capability (an empty list
//!   withdraws the grant); a service may grant at most 64 capabilities, and an unchanged grant
//!   does not rewrite the store.
//! * Leases are for launchers and admin only; every change and expiry is published retained on
//!   `event/auth/_leases/{plugin}/auth`.
//!
//! A profile never holds a secret. Every change goes to the audit record.

use crate::lease::LeaseTable;
use crate::state::CoreState;
use crate::store::ClientChange;
use hivehub_api::auth::{
    methods, AddClientReq, AddClientResp, ClientIdReq, ClientProfile, ListClientsResp,
    PermissionsResp, RemoveClientResp, SetPermissionsReq, TokenResp, CAP_AUTHZ, CAP_CLIENTS,
    CAP_PROFILE,
};
use hivehub_api::cluster::{
    lease_methods, LeaseInfo, LeaseList, LeaseReq, ReleaseReq, TransferReq, CAP_LEASES,
    LEASES_THING,
};
use hivehub_api::rpc::{to_value, Ack};
use hivehub_api::{validate_id, ErrorCode, RemoteError, Role};
use hivehub_auth::keys::public_key_b64_to_pem;
use hivehub_auth::unix_now;
use hivehub_client::{ClientError, HubClient, Request};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

fn err(code: ErrorCode, msg: impl Into<String>) -> RemoteError {
    RemoteError::new(code, msg)
}

fn internal(e: impl std::fmt::Display) -> RemoteError {
    tracing::error!("auth service: {e}");
    err(ErrorCode::Internal, e.to_string())
}

/// Registers the auth service's handlers on the core's internal client.
pub(crate) async fn serve(client: &HubClient, state: Arc<CoreState>) -> Result<(), ClientError> {
    let s = state.clone();
    client
        .serve(CAP_CLIENTS, move |r| {
            let s = s.clone();
            async move { clients(&s, r).await }
        })
        .await?;
    let s = state.clone();
    client
        .serve(CAP_PROFILE, move |r| {
            let s = s.clone();
            async move { profile(&s, r) }
        })
        .await?;
    let s = state;
    client
        .serve(CAP_AUTHZ, move |r| {
            let s = s.clone();
            async move { authz(&s, r).await }
        })
        .await
}

fn caller(s: &CoreState, r: &Request) -> Result<ClientProfile, RemoteError> {
    s.store
        .get(&r.sender)
        .ok_or_else(|| err(ErrorCode::Denied, format!("unknown client '{}'", r.sender)))
}

/// Admin manages every client; a launcher only service clients (plugins), never users, devices
/// or other launchers.
/// Most capabilities one service may grant to roles: the grants live in the client store, which
/// is rewritten on every change.
pub(crate) const MAX_GRANTED_CAPABILITIES: usize = 64;

fn may_manage(caller: &ClientProfile, target_role: Role) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::Launcher => target_role == Role::Service,
        _ => false,
    }
}

async fn clients(s: &CoreState, r: Request) -> Result<Value, RemoteError> {
    let me = caller(s, &r)?;
    match r.method.as_str() {
        methods::ADD_CLIENT => {
            let req: AddClientReq = r.json()?;
            validate_id(&req.client_id).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
            if req.client_id == s.internal.login {
                return Err(err(
                    ErrorCode::Conflict,
                    format!("'{}' is reserved for the core", req.client_id),
                ));
            }
            if req.client_id.starts_with('_') {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!(
                        "'{}' is reserved: IDs starting with '_' belong to the hub",
                        req.client_id
                    ),
                ));
            }
            public_key_b64_to_pem(&req.pub_key).map_err(|e| err(ErrorCode::BadRequest, e))?;
            let now = unix_now();
            let id = req.client_id.clone();
            // Decided on the profile as it is when the change is made, so that a concurrent
            // request cannot slip a profile this caller may not manage in between.
            let decided = s
                .store
                .change_client(&id, |existing| {
                    if !may_manage(&me, req.role)
                        || existing.is_some_and(|p| !may_manage(&me, p.role))
                    {
                        return Err(err(
                            ErrorCode::Denied,
                            format!(
                                "role {} may not add '{}' with role {}",
                                me.role, req.client_id, req.role
                            ),
                        ));
                    }
                    // A launcher mints credentials for its plugins only: it may not re-key a
                    // client that someone else made (a user, a device, a remote service,
                    // another launcher).
                    if me.role == Role::Launcher {
                        if let Some(p) = existing.filter(|p| !p.plugin) {
                            return Err(err(
                                ErrorCode::Conflict,
                                format!(
                                    "'{}' is an existing {} client{} that no launcher made; a plugin cannot take its name (remove it with 'hubcli auth rm {}' to let a launcher manage it)",
                                    p.client_id,
                                    p.role,
                                    p.created_by
                                        .as_deref()
                                        .map(|b| format!(" added by {b}"))
                                        .unwrap_or_default(),
                                    p.client_id
                                ),
                            ));
                        }
                    }
                    let profile = ClientProfile {
                        client_type: req.client_type.unwrap_or(req.role.default_client_type()),
                        display_name: req.display_name.unwrap_or_else(|| req.client_id.clone()),
                        role: req.role,
                        pub_key: req.pub_key,
                        created: existing.map(|p| p.created).unwrap_or(now),
                        updated: now,
                        client_id: req.client_id,
                        created_by: Some(me.client_id.clone()),
                        plugin: me.role == Role::Launcher,
                        // A new client gets a new generation, so tokens of an earlier one with
                        // the same ID are refused (profiles from before generations keep none).
                        generation: match existing {
                            Some(p) => p.generation,
                            None => Some(rand::random::<u64>() >> 11),
                        },
                    };
                    // A launcher mints a plugin's credentials at every start, mostly with the
                    // key it already registered: a profile that would only get a new `updated`
                    // time is not rewritten (a durable write is two fsyncs, per plugin at
                    // every cold start).
                    let same = existing.filter(|p| {
                        p.pub_key == profile.pub_key
                            && p.role == profile.role
                            && p.client_type == profile.client_type
                            && p.display_name == profile.display_name
                            && p.created_by == profile.created_by
                            && p.plugin == profile.plugin
                    });
                    Ok(match same {
                        Some(p) => (ClientChange::Keep, (p.clone(), existing.cloned())),
                        None => (
                            ClientChange::Put(profile.clone()),
                            (profile, existing.cloned()),
                        ),
                    })
                })
                .await
                .map_err(internal)?;
            let (profile, existing) = decided?;
            let changed = existing
                .as_ref()
                .is_some_and(|p| p.pub_key != profile.pub_key || p.role != profile.role);
            if changed {
                // Old credentials no longer match; close their sessions now rather than at expiry.
                s.kick_login(&profile.client_id).await;
            }
            let (token, expires) = s.issue_for(&profile).map_err(internal)?;
            s.audit.change(&format!(
                "client {}: {} role {} (by {})",
                if existing.is_some() {
                    "updated"
                } else {
                    "added"
                },
                profile.client_id,
                profile.role,
                me.client_id
            ));
            to_value(AddClientResp {
                profile,
                token,
                expires,
            })
        }
        methods::REMOVE_CLIENT => {
            let req: ClientIdReq = r.json()?;
            if req.client_id == me.client_id {
                return Err(err(ErrorCode::Conflict, "a client cannot remove itself"));
            }
            // Decided on the profile as it is when it is removed (see addClient).
            let removed = s
                .store
                .change_client(&req.client_id, |target| match target {
                    None => Ok((ClientChange::Keep, false)),
                    Some(t) if !may_manage(&me, t.role) => Err(err(
                        ErrorCode::Denied,
                        format!(
                            "role {} may not remove '{}' (role {})",
                            me.role, t.client_id, t.role
                        ),
                    )),
                    Some(_) => Ok((ClientChange::Remove, true)),
                })
                .await
                .map_err(internal)??;
            if !removed {
                return to_value(RemoveClientResp {
                    removed: false,
                    disconnected: 0,
                });
            }
            let disconnected = s.kick_login(&req.client_id).await;
            s.forget_login(&req.client_id);
            s.audit.change(&format!(
                "client removed: {} (by {}, {disconnected} sessions ended)",
                req.client_id, me.client_id
            ));
            to_value(RemoveClientResp {
                removed,
                disconnected,
            })
        }
        methods::LIST_CLIENTS => to_value(ListClientsResp {
            clients: s.store.list(),
        }),
        methods::ISSUE_TOKEN => {
            let req: ClientIdReq = r.json()?;
            let target = s.store.get(&req.client_id).ok_or_else(|| {
                err(
                    ErrorCode::NotFound,
                    format!("no client named '{}'", req.client_id),
                )
            })?;
            if !may_manage(&me, target.role) {
                return Err(err(
                    ErrorCode::Denied,
                    format!(
                        "role {} may not issue tokens for '{}'",
                        me.role, target.client_id
                    ),
                ));
            }
            let (token, expires) = s.issue_for(&target).map_err(internal)?;
            to_value(TokenResp { token, expires })
        }
        _ => Err(r.unknown_method()),
    }
}

fn profile(s: &CoreState, r: Request) -> Result<Value, RemoteError> {
    let me = caller(s, &r)?;
    match r.method.as_str() {
        methods::WHOAMI => to_value(me),
        methods::REFRESH => {
            // The caller proved itself at CONNECT with its current token or its key.
            let (token, expires) = s.issue_for(&me).map_err(internal)?;
            // Sessions count in unix seconds, the wire in milliseconds.
            s.extend_sessions(&me.client_id, expires / 1000);
            to_value(TokenResp { token, expires })
        }
        _ => Err(r.unknown_method()),
    }
}

async fn authz(s: &CoreState, r: Request) -> Result<Value, RemoteError> {
    let me = caller(s, &r)?;
    match r.method.as_str() {
        methods::SET_PERMISSIONS => {
            let req: SetPermissionsReq = r.json()?;
            validate_id(&req.capability).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
            let grants = s.store.grants_of(&me.client_id);
            let mut roles = req.roles.clone();
            roles.sort();
            roles.dedup();
            if grants.get(&req.capability) == Some(&roles)
                || (roles.is_empty() && !grants.contains_key(&req.capability))
            {
                // Unchanged: the store is not rewritten.
                return to_value(Ack {});
            }
            if !grants.contains_key(&req.capability) && grants.len() >= MAX_GRANTED_CAPABILITIES {
                s.audit.refused(
                    &me.client_id,
                    "too many granted capabilities",
                    &req.capability,
                );
                return Err(err(
                    ErrorCode::BadRequest,
                    format!(
                        "a service may grant at most {MAX_GRANTED_CAPABILITIES} capabilities; remove one first"
                    ),
                ));
            }
            s.store
                .set_grants(&me.client_id, &req.capability, &roles)
                .await
                .map_err(internal)?;
            s.audit.change(&format!(
                "permissions set: {}/{} for {roles:?}",
                me.client_id, req.capability
            ));
            to_value(Ack {})
        }
        methods::GET_PERMISSIONS => to_value(PermissionsResp {
            capabilities: s.store.grants_of(&me.client_id),
        }),
        _ => Err(r.unknown_method()),
    }
}

/// Registers the lease capability: the arbiter that keeps each movable plugin to one launcher.
/// Every change is published retained under `event/auth/_leases/{plugin}`, and a sweeper
/// publishes expiries, so launchers react to a freed lease at once. The sweeper sleeps until
/// the earliest lease ends ([`LeaseTable::next_expiry`]), and is woken when a request makes a
/// lease end sooner than that; with no lease held it does not wake at all.
pub(crate) async fn serve_leases(
    client: &HubClient,
    state: Arc<CoreState>,
    table: LeaseTable,
) -> Result<(), ClientError> {
    let table = Arc::new(Leases {
        table: std::sync::Mutex::new(table),
        sweep_at: std::sync::Mutex::new(None),
        wake: tokio::sync::Notify::new(),
    });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<LeaseInfo>();
    tokio::spawn(publish_leases(client.clone(), rx));
    let (l, tx2) = (table.clone(), tx.clone());
    tokio::spawn(async move {
        loop {
            let (changed, next) = {
                let mut t = locked(&l.table);
                let c = t.expire(Instant::now());
                if !c.is_empty() {
                    if let Err(e) = t.save() {
                        tracing::error!("lease store: {e}");
                    }
                }
                let next = t.next_expiry();
                // Under the table's lock, so a request cannot slip in between.
                *locked(&l.sweep_at) = next;
                (c, next)
            };
            for info in changed {
                tracing::info!(plugin = %info.name, previous = ?info.previous, "lease expired");
                let _ = tx2.send(info);
            }
            match next {
                Some(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = l.wake.notified() => {}
                },
                None => l.wake.notified().await,
            }
        }
    });
    client
        .serve(CAP_LEASES, move |r| {
            let (s, l, tx) = (state.clone(), table.clone(), tx.clone());
            async move { leases(&s, &l, &tx, r) }
        })
        .await
}

/// The lease table and what its sweeper waits for.
struct Leases {
    table: std::sync::Mutex<LeaseTable>,
    /// When the sweeper will look next (`None`: only when woken).
    sweep_at: std::sync::Mutex<Option<Instant>>,
    /// Wakes the sweeper: a lease now ends before `sweep_at`.
    wake: tokio::sync::Notify,
}

impl Leases {
    /// After a request changed `t` (its lock held): wakes the sweeper if a lease now ends
    /// before it planned to look.
    fn changed(&self, t: &LeaseTable) {
        if let Some(next) = t.next_expiry() {
            if locked(&self.sweep_at).is_none_or(|at| next < at) {
                self.wake.notify_one();
            }
        }
    }
}

fn locked<T>(t: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

async fn publish_leases(
    client: HubClient,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LeaseInfo>,
) {
    while let Some(info) = rx.recv().await {
        if let Err(e) = client
            .publish_event(LEASES_THING, &info.name, &info, true)
            .await
        {
            tracing::warn!(plugin = %info.name, "cannot publish lease: {e}");
        }
    }
}

fn leases(
    s: &CoreState,
    l: &Leases,
    tx: &tokio::sync::mpsc::UnboundedSender<LeaseInfo>,
    r: Request,
) -> Result<Value, RemoteError> {
    let me = caller(s, &r)?;
    if !matches!(me.role, Role::Launcher | Role::Admin) {
        return Err(err(
            ErrorCode::Denied,
            "only launchers and admins use leases",
        ));
    }
    let now = Instant::now();
    let bad = |e: String| err(ErrorCode::BadRequest, e);
    let check = |name: &str| validate_id(name).map_err(|e| bad(e.to_string()));
    let who = me.client_id.as_str();
    let mut t = locked(&l.table);
    let (info, publish) = match r.method.as_str() {
        lease_methods::ACQUIRE => {
            let q: LeaseReq = r.json()?;
            check(&q.name)?;
            let before = t.get(&q.name, now);
            let i = t.acquire(who, &q.name, q.ttl_ms, q.enable, now)?;
            let changed = before.holder != i.holder || before.disabled != i.disabled;
            (i, changed)
        }
        lease_methods::RENEW => {
            let q: LeaseReq = r.json()?;
            check(&q.name)?;
            let before = t.get(&q.name, now);
            let i = t.renew(who, &q.name, q.ttl_ms, now)?;
            let changed = before.holder != i.holder;
            (i, changed)
        }
        lease_methods::RELEASE => {
            let q: ReleaseReq = r.json()?;
            check(&q.name)?;
            (t.release(who, &q.name, q.disable, now)?, true)
        }
        lease_methods::TRANSFER => {
            let q: TransferReq = r.json()?;
            check(&q.name)?;
            match s.store.get(&q.to) {
                Some(p) if p.role == Role::Launcher => {}
                _ => {
                    return Err(err(
                        ErrorCode::BadRequest,
                        format!("{} is not a launcher", q.to),
                    ))
                }
            }
            (t.transfer(who, &q.name, &q.to, q.ttl_ms, now)?, true)
        }
        lease_methods::LIST => {
            return to_value(LeaseList {
                leases: t.list(now),
            });
        }
        _ => return Err(r.unknown_method()),
    };
    l.changed(&t);
    if publish {
        tracing::info!(plugin = %info.name, holder = ?info.holder, by = who, method = %r.method, "lease changed");
        if let Err(e) = t.save() {
            tracing::error!("lease store: {e}");
        }
        let _ = tx.send(info.clone());
    }
    to_value(info)
}
