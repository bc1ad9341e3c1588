//! hubcore: the hub's message bus. An embedded MQTT 5 broker (rmqtt) with
//!
//! * authentication: username = client ID, password = an ES256 token signed by the core
//!   (or a short key assertion signed by the client's own key), checked against the client store;
//! * authorization: the role-based topic ACL of `hivehub_auth::acl` on every publish, subscribe
//!   and Last Will;
//! * the auth service (`hivehub_api::auth`), served on the bus by the core's internal client.
//!
//! [`start`] runs it in the current tokio runtime; the `hubcore` binary is a thin wrapper.
//!
//! # Start
//! [`start`] creates the home's folders; the CA if missing and a fresh server certificate
//! ([`certs`]); the signing key if missing; opens the client store ([`store`]) and the lease
//! table ([`lease`]); makes the internal client's key and token in memory (10 years, never
//! written); builds the broker with its retainer; makes sure `admin` and `launcher` exist;
//! registers the hooks; opens the listeners (TLS, the optional plain TCP, and the local socket
//! `run/hubcore.sock`, mode 600, in place of a stale one); connects the internal client over
//! TLS and serves the auth and lease services; starts the denied-reply, presence and expiry
//! tasks; and only then writes `run/hubcore.url`. So that file means clients can connect and the services
//! answer; local clients take the server's address from it. The binary then prints
//! `hubcore ready at URL` and sends `READY=1` (sd_notify, a no-op outside systemd); on SIGTERM
//! or SIGINT it sends `STOPPING=1`, disconnects the internal client, removes `run/hubcore.url`
//! and the socket, and exits 0. A start failure prints `hubcore: error: …` and exits 1.
//!
//! `admin` (role admin) and `launcher` (role launcher) get a key when it is missing; their
//! profile is rewritten when missing or when its key or role differs (so both come back if
//! removed); their token file is reissued when missing, invalid, issued for another key, role
//! or generation, or in the last quarter of its lifetime. Other clients are added over the bus.
//!
//! Retained messages live in RAM and are lost on a restart; the SDK connects with a clean
//! start, so nothing is queued for a client while it is offline.

mod audit;
mod broker;
pub mod certs;
pub mod config;
pub mod lease;
mod retain;
mod service;
mod state;
pub mod store;

use crate::config::CoreConfig;
use crate::state::{CoreReply, CoreState, Internal};
use crate::store::ClientStore;
use hivehub_api::auth::{ClientProfile, ADMIN_ID, AUTH_SERVICE, LAUNCHER_ID};
use hivehub_api::rpc::MAX_PACKET_BYTES;
use hivehub_api::{ClientType, Reply, Role};
use hivehub_auth::{unix_now, KeyPair, TokenIssuer};
use hivehub_client::{ClientOptions, HubClient, ServerUrl};
use hivehub_home::{write_atomic, write_replace, Home, SECRET_MODE};
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Errors that stop the core from starting.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The home could not be prepared.
    #[error(transparent)]
    Home(#[from] hivehub_home::HomeError),
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Certificates or keys could not be created or read.
    #[error(transparent)]
    Certs(#[from] certs::CertError),
    /// The client store is corrupt or cannot be written.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A credential could not be created.
    #[error("credentials of '{client}': {reason}")]
    Credentials {
        /// The client.
        client: String,
        /// Why.
        reason: String,
    },
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why, e.g. "Address already in use".
        reason: String,
    },
    /// The local socket could not be opened.
    #[error("cannot listen on {}: {reason}", path.display())]
    ListenSocket {
        /// The socket file.
        path: std::path::PathBuf,
        /// Why, e.g. that another core answers on it.
        reason: String,
    },
    /// The core's internal client could not connect to its own broker.
    #[error("the core cannot connect to its own broker: {0}")]
    Internal(String),
}

/// A running core.
pub struct RunningCore {
    /// The URL clients connect to, e.g. `mqtts://127.0.0.1:8883`.
    pub url: String,
    /// The plain-TCP URL, when configured.
    pub plain_url: Option<String>,
    /// The local socket (`run/hubcore.sock`), unless `localSocket` is off.
    pub socket: Option<std::path::PathBuf>,
    client: HubClient,
    home: Home,
    server: tokio::task::JoinHandle<()>,
}

impl RunningCore {
    /// Stops serving: disconnects the internal client and removes `run/hubcore.url` and the
    /// local socket.
    pub async fn shutdown(self) {
        self.client.disconnect().await;
        let _ = std::fs::remove_file(self.home.core_url_file());
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
        self.server.abort();
    }
}

fn connect_host(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

fn url_for(tls: bool, addr: SocketAddr) -> ServerUrl {
    ServerUrl::Tcp {
        tls,
        host: connect_host(addr.ip()).to_string(),
        port: addr.port(),
    }
}

/// Makes sure `id` has a key, a profile with `role`, and a valid token file that is not near
/// expiry. Keys are only created when missing; tokens are reissued when missing, invalid, issued
/// for another key or role, or within the last quarter of their lifetime.
async fn ensure_builtin_client(
    state: &CoreState,
    home: &Home,
    id: &str,
    role: Role,
    display: &str,
) -> Result<(), CoreError> {
    let cred_err = |reason: String| CoreError::Credentials {
        client: id.to_string(),
        reason,
    };
    let (pub_key, _) = hivehub_auth::keys::load_or_create_public(&home.key_file(id))
        .map_err(|e| cred_err(e.to_string()))?;
    let now = unix_now();
    let profile = match state.store.get(id) {
        Some(p) if p.pub_key == pub_key && p.role == role => p,
        existing => {
            let p = ClientProfile {
                client_id: id.to_string(),
                client_type: role.default_client_type(),
                display_name: display.to_string(),
                role,
                pub_key: pub_key.clone(),
                created: existing.as_ref().map(|e| e.created).unwrap_or(now),
                updated: now,
                created_by: None,
                plugin: false,
                generation: existing
                    .map(|e| e.generation)
                    .unwrap_or_else(|| Some(rand::random::<u64>() >> 11)),
            };
            state.store.upsert(p.clone()).await?;
            p
        }
    };
    let token_path = home.token_file(id);
    let lifetime = state.cfg.token_validity_days.secs(profile.client_type);
    let keep = std::fs::read_to_string(&token_path)
        .ok()
        .and_then(|t| state.issuer.verify(&t, id).ok())
        .is_some_and(|c| {
            c.pub_key == pub_key
                && c.role == role
                && (profile.generation.is_none() || c.generation == profile.generation)
                && c.exp > now + lifetime / 4
        });
    if !keep {
        let (token, _) = state
            .issue_for(&profile)
            .map_err(|e| cred_err(e.to_string()))?;
        write_atomic(&token_path, token.as_bytes(), SECRET_MODE)
            .map_err(|e| cred_err(format!("cannot write {}: {e}", token_path.display())))?;
        tracing::info!(client = id, file = %token_path.display(), "issued token");
    }
    Ok(())
}

/// Room in a CONNECT beside its Last Will: the login's token or key assertion, the client ID,
/// the properties.
const CONNECT_ROOM: usize = 16 * 1024;

/// The settings every listener shares: no anonymous clients, the packet and session limits,
/// and the connect timeout. Until a login is accepted, a packet may be no larger than the
/// largest allowed Last Will plus [`CONNECT_ROOM`], so that connections which have not logged
/// in cannot make the core buffer `MAX_PACKET_BYTES` each.
fn listener_builder(name: &str, cfg: &CoreConfig) -> Builder {
    Builder::new()
        .name(name)
        .allow_anonymous(false)
        .reuseaddr(Some(true))
        .nodelay(true)
        .max_packet_size(MAX_PACKET_BYTES)
        .max_connect_packet_size(
            u32::try_from(cfg.limits.max_retained_bytes.saturating_add(CONNECT_ROOM))
                .unwrap_or(MAX_PACKET_BYTES),
        )
        // rmqtt treats this as the accept queue; the exact limit is in the CONNECT hook.
        .max_connections(cfg.max_connections)
        .max_subscriptions(cfg.limits.max_subscriptions)
        .max_session_expiry_interval(Duration::from_secs(cfg.limits.max_session_expiry_secs))
        .max_mqueue_len(cfg.limits.max_queued_messages)
        .handshake_timeout(Duration::from_secs(cfg.limits.connect_timeout_secs))
        .max_pending(
            cfg.limits.max_connecting,
            cfg.limits.max_connecting_per_address,
        )
}

fn listener(
    name: &str,
    addr: SocketAddr,
    cfg: &CoreConfig,
    tls: Option<&certs::TlsFiles>,
) -> Result<rmqtt::net::Listener, CoreError> {
    let lerr = |e: anyhow::Error| CoreError::Listen {
        addr,
        reason: e.root_cause().to_string(),
    };
    let mut b = listener_builder(name, cfg).laddr(addr);
    if let Some(t) = tls {
        b = b
            .tls_cert(Some(t.cert.to_string_lossy().into_owned()))
            .tls_key(Some(t.key.to_string_lossy().into_owned()));
    }
    let l = b.bind().map_err(lerr)?;
    if tls.is_some() {
        l.tls().map_err(lerr)
    } else {
        l.tcp().map_err(lerr)
    }
}

/// Longest path a Unix socket can be bound at (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Opens the local socket at `path`, mode 600; `None`, with a warning, when the path is too
/// long for a socket (hubcli then uses TLS). A socket file left by a core that is gone is
/// replaced; one that still answers belongs to another core serving this home, and is an error
/// rather than taken over. Anything else at `path` is an error too, never removed.
///
/// The socket is bound under a random name beside `path`, given its mode, and only then renamed
/// into place, so that it is never reachable with the umask's mode (`run/` is 711 under a root
/// launcher, and cannot be listed, so the random name cannot be found).
fn socket_listener(
    path: &std::path::Path,
    cfg: &CoreConfig,
) -> Result<Option<rmqtt::net::Listener>, CoreError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |reason: String| CoreError::ListenSocket {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        tracing::warn!(
            path = %path.display(),
            "no local socket: its path is longer than {MAX_SOCKET_PATH} bytes; hubcli uses TLS"
        );
        return Ok(None);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(
                    "another hubcore answers on it (one core per home)".into()
                ));
            }
        }
        Ok(_) => return Err(err("something other than a socket is in the way".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    // Shorter than `hubcore.sock`, so it fits wherever the final path does.
    let temp = path.with_file_name(format!(".s{:08x}", rand::random::<u32>()));
    let l = listener_builder("hubcore/socket", cfg)
        .bind_unix(&temp)
        .map_err(|e| err(e.root_cause().to_string()))?;
    let placed = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e.to_string()));
    }
    Ok(Some(l))
}

/// Starts the core in `home` with `cfg`: prepares certificates and credentials, opens the
/// listeners, starts the auth service, and writes `run/hubcore.url` once clients can connect.
pub async fn start(home: &Home, cfg: CoreConfig) -> Result<RunningCore, CoreError> {
    home.ensure_dirs()?;
    let tls_files = certs::ensure_tls(home, cfg.listen.ip())?;
    let signing = certs::signing_key(home)?;
    let issuer = TokenIssuer::new(&signing, &cfg.issuer).map_err(|e| CoreError::Credentials {
        client: "hub".into(),
        reason: e.to_string(),
    })?;
    let store = ClientStore::open(&home.stores().join("auth").join("clients.json"))?;

    let internal_key = KeyPair::generate();
    let internal_profile = ClientProfile {
        client_id: AUTH_SERVICE.to_string(),
        client_type: ClientType::Service,
        display_name: "hubcore auth service".into(),
        role: Role::Admin,
        pub_key: internal_key.public_key_b64(),
        created: unix_now(),
        updated: unix_now(),
        created_by: None,
        plugin: false,
        generation: None,
    };
    let (internal_token, _) = issuer
        .issue(&internal_profile, 10 * 365 * 86_400)
        .map_err(|e| CoreError::Internal(e.to_string()))?;

    let scx = ServerContext::new().build().await;
    retain::RamRetain::register(&scx).await;
    let (replies_tx, replies_rx) = tokio::sync::mpsc::channel(1024);
    let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
    let leases = lease::LeaseTable::open(
        Some(&home.stores().join("leases.json")),
        std::time::Instant::now(),
    )
    .map_err(|e| CoreError::Internal(format!("lease store: {e}")))?;
    let state = Arc::new(CoreState::new(
        cfg.clone(),
        issuer,
        store,
        Internal {
            login: AUTH_SERVICE.to_string(),
            pub_key: internal_key.public_key_b64(),
        },
        state::Outbox {
            replies: replies_tx,
            presence: presence_tx,
        },
        scx.clone(),
        audit::Audit::open(&home.logs().join("audit.log")),
    ));
    state.audit.spawn_summaries();
    ensure_builtin_client(&state, home, ADMIN_ID, Role::Admin, "Administrator").await?;
    ensure_builtin_client(&state, home, LAUNCHER_ID, Role::Launcher, "Launcher").await?;
    broker::register(
        &scx,
        broker::Hooks {
            state: state.clone(),
        },
    )
    .await;

    let tls_listener = listener("hubcore/tls", cfg.listen, &cfg, Some(&tls_files))?;
    let tls_addr = tls_listener.local_addr().map_err(|e| CoreError::Listen {
        addr: cfg.listen,
        reason: e.to_string(),
    })?;
    let mut server = MqttServer::new(scx.clone()).listener_by_id(tls_listener, 1);
    let mut plain_url = None;
    if let Some(addr) = cfg.plain_listen {
        let l = listener("hubcore/tcp", addr, &cfg, None)?;
        let a = l.local_addr().map_err(|e| CoreError::Listen {
            addr,
            reason: e.to_string(),
        })?;
        plain_url = Some(url_for(false, a).to_string());
        server = server.listener_by_id(l, 2);
    }
    let mut socket = None;
    if cfg.local_socket {
        let path = home.core_socket_file();
        if let Some(l) = socket_listener(&path, &cfg)? {
            server = server.listener_by_id(l, 3);
            socket = Some(path);
        }
    }
    let server = server.build();
    let server_task = tokio::spawn(async move {
        if let Err(e) = server.run().await {
            tracing::error!("broker stopped: {e}");
        }
    });

    let url = url_for(true, tls_addr);
    let client = HubClient::connect(ClientOptions {
        client_id: AUTH_SERVICE.to_string(),
        server: url.clone(),
        ca_cert: Some(home.ca_cert()),
        token_file: None,
        token: Some(internal_token),
        key_file: None,
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        // In-process over loopback: the connection cannot go half-open, so the keepalive
        // only costs wake-ups (a TLS ping both ways); the core stops when its broker does.
        keep_alive: Duration::from_secs(300),
        refresh_token: false,
        last_will: None,
    })
    .await
    .map_err(|e| CoreError::Internal(e.to_string()))?;
    service::serve(&client, state.clone())
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    service::serve_leases(&client, state.clone(), leases)
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    tokio::spawn(answer_calls(client.clone(), replies_rx));
    tokio::spawn(publish_presence(client.clone(), presence_rx));
    tokio::spawn(expire_sessions(state.clone()));

    let url = url.to_string();
    // Runtime state, written at every start: no fsync (each costs milliseconds on an SD card).
    write_replace(&home.core_url_file(), format!("{url}\n").as_bytes(), 0o644).map_err(|e| {
        CoreError::Internal(format!(
            "cannot write {}: {e}",
            home.core_url_file().display()
        ))
    })?;
    tracing::info!(%url, "hubcore ready");
    Ok(RunningCore {
        url,
        plain_url,
        socket,
        client,
        home: home.clone(),
        server: server_task,
    })
}

/// Sends the error replies the broker's hooks decided on (denied or unserved requests).
async fn answer_calls(client: HubClient, mut rx: tokio::sync::mpsc::Receiver<CoreReply>) {
    while let Some(d) = rx.recv().await {
        let reply = Reply::Err(d.error);
        if let Err(e) = client
            .send_reply(&d.topic.sender, &d.topic.agent, d.corr, &reply)
            .await
        {
            tracing::warn!("cannot answer a call: {e}");
        }
    }
}

/// Publishes `launcherOnline` / `launcherOffline` as launchers' sessions start and end: the
/// core sees every session, so the event comes once, from one place.
async fn publish_presence(
    client: HubClient,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, bool)>,
) {
    use hivehub_api::cluster::{events, PresenceEvent, LAUNCHERS_THING};
    while let Some((login, online)) = rx.recv().await {
        let event = if online {
            events::LAUNCHER_ONLINE
        } else {
            events::LAUNCHER_OFFLINE
        };
        tracing::info!(launcher = %login, event, "launcher presence");
        let ev = PresenceEvent {
            schema_version: hivehub_api::SCHEMA_VERSION,
            event: event.to_string(),
            launcher_id: login,
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        if let Err(e) = client
            .publish_event(LAUNCHERS_THING, event, &ev, false)
            .await
        {
            tracing::warn!("cannot publish presence: {e}");
        }
    }
}

/// Closes sessions when their credential expires and forgets dead entries
/// ([`CoreState::kick_expired`]), waking at the next deadline rather than on a fixed tick, so
/// an idle hub is not woken for nothing.
async fn expire_sessions(state: Arc<CoreState>) {
    loop {
        state.kick_expired().await;
        let wait = state.next_expiry_check();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.expiry_wake.notified() => {}
        }
    }
}
