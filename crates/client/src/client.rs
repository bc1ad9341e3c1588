use crate::error::{ClientError, RpcError};
use crate::options::ClientOptions;
use bytes::Bytes;
use hivehub_api::auth::{methods, TokenResp, AUTH_SERVICE, CAP_AUTHZ, CAP_PROFILE};
use hivehub_api::rpc::{Ack, MAX_PACKET_BYTES, MAX_REQUEST_BYTES};
use hivehub_api::topic::{filter, InboxTopic, Topic, INBOX_PREFIX};
use hivehub_api::{ErrorCode, RemoteError, Reply, Role};
use hivehub_auth::token::{is_assertion, peek_claims, sign_assertion};
use hivehub_auth::{unix_now, KeyPair};
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, LastWill, Packet, Publish, PublishProperties, SubscribeReasonCode,
};
pub use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The state of the connection to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting for the first time.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// Lost; reconnecting by itself. The text says why.
    Disconnected(String),
    /// [`HubClient::disconnect`] was called.
    Closed,
}

/// An event received from the bus.
#[derive(Debug, Clone)]
pub struct EventMessage {
    /// Its topic; `topic.agent` is the verified publisher.
    pub topic: Topic,
    /// The payload (JSON by convention).
    pub payload: Bytes,
    /// True when this is a retained message delivered at subscription.
    pub retained: bool,
}

impl EventMessage {
    /// Decodes the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// A request received by a capability handler.
#[derive(Debug, Clone)]
pub struct Request {
    /// The caller's login ID, verified by the core.
    pub sender: String,
    /// The capability called.
    pub capability: String,
    /// The method called.
    pub method: String,
    /// The raw payload.
    pub payload: Bytes,
}

impl Request {
    /// Decodes the payload; an empty payload reads as `{}`. A failure is a ready-made
    /// [`ErrorCode::BadRequest`] reply that names the method and the problem.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, RemoteError> {
        let body: &[u8] = if self.payload.is_empty() {
            b"{}"
        } else {
            &self.payload
        };
        serde_json::from_slice(body).map_err(|e| {
            RemoteError::new(
                ErrorCode::BadRequest,
                format!("invalid request for {}: {e}", self.method),
            )
        })
    }

    /// The standard reply for a method the capability does not have.
    pub fn unknown_method(&self) -> RemoteError {
        RemoteError::new(
            ErrorCode::UnknownMethod,
            format!(
                "capability '{}' has no method '{}'",
                self.capability, self.method
            ),
        )
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, RemoteError>> + Send>>;
type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

enum SubKind {
    Events(mpsc::Sender<EventMessage>),
    Serve(Handler),
}

struct Subscription {
    filter: String,
    kind: SubKind,
}

struct Pending {
    responder: String,
    tx: oneshot::Sender<Result<Reply, String>>,
}

struct Inner {
    opts: ClientOptions,
    mqtt: AsyncClient,
    pending: Mutex<HashMap<Vec<u8>, Pending>>,
    subs: Mutex<Vec<Subscription>>,
    sub_lock: tokio::sync::Mutex<()>,
    suback: Mutex<Option<oneshot::Sender<Vec<SubscribeReasonCode>>>>,
    state: watch::Sender<ConnState>,
    token: Mutex<Option<String>>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to the hub. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct HubClient {
    inner: Arc<Inner>,
}

fn tls_config(opts: &ClientOptions) -> Result<Transport, ClientError> {
    let ca = opts
        .ca_cert
        .as_ref()
        .ok_or_else(|| ClientError::Config("mqtts:// needs a CA certificate".into()))?;
    let pem = std::fs::read(ca).map_err(|e| ClientError::File {
        path: ca.clone(),
        reason: e.to_string(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    let mut n = 0;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ClientError::File {
            path: ca.clone(),
            reason: format!("not a PEM certificate: {e}"),
        })?;
        roots.add(cert).map_err(|e| ClientError::File {
            path: ca.clone(),
            reason: e.to_string(),
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(ClientError::File {
            path: ca.clone(),
            reason: "no certificate in file".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(cfg),
    )))
}

fn describe_connection_error(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            _ => io.to_string(),
        },
        ConnectionError::Tls(t) => format!("TLS: {t}"),
        ConnectionError::Timeout(_) => "timed out".into(),
        ConnectionError::ConnectionRefused(code) => describe_refusal(*code),
        other => other.to_string(),
    }
}

fn describe_refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password".into(),
        ConnectReturnCode::NotAuthorized => "not authorized".into(),
        ConnectReturnCode::ClientIdentifierNotValid => "client identifier not valid".into(),
        other => format!("{other:?}"),
    }
}

impl Inner {
    fn url(&self) -> String {
        self.opts.server.to_string()
    }

    fn id(&self) -> &str {
        &self.opts.client_id
    }

    /// The best token we have: the newer of the in-memory one (from a refresh) and the file
    /// (which a launcher may have rewritten).
    fn current_token(&self) -> Option<String> {
        let mem = lock(&self.token).clone();
        let file = self
            .opts
            .token_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let exp = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| peek_claims(t).ok())
                .map(|c| c.exp)
                .unwrap_or(0)
        };
        match (&mem, &file) {
            (Some(_), Some(_)) if exp(&file) > exp(&mem) => file,
            (Some(_), _) => mem,
            _ => file,
        }
    }

    /// The password for the next CONNECT: the token, or a key assertion if the token expired
    /// and the key is at hand.
    fn password(&self) -> Result<String, ClientError> {
        let token = self.current_token();
        let usable = token
            .as_deref()
            .and_then(|t| peek_claims(t).ok())
            .is_some_and(|c| c.exp > unix_now() + 5);
        if let (false, Some(key_file)) = (usable, &self.opts.key_file) {
            if let Ok(key) = KeyPair::load(key_file) {
                let claims = token.as_deref().and_then(|t| peek_claims(t).ok());
                let (ct, role) = claims
                    .map(|c| (c.client_type, c.role))
                    .unwrap_or((hivehub_api::ClientType::Service, Role::Service));
                return sign_assertion(&key, self.id(), ct, role, 120)
                    .map_err(|e| ClientError::Config(e.to_string()));
            }
        }
        token.ok_or_else(|| match &self.opts.token_file {
            Some(p) => ClientError::File {
                path: p.clone(),
                reason: "no token".into(),
            },
            None => ClientError::Config("no token given".into()),
        })
    }

    fn set_state(&self, s: ConnState) {
        self.state.send_replace(s);
    }
}

impl HubClient {
    /// Connects, waiting for the first CONNACK. Later connection losses are repaired by the
    /// client itself; this first attempt fails fast with a clear reason instead.
    pub async fn connect(opts: ClientOptions) -> Result<HubClient, ClientError> {
        hivehub_api::validate_id(&opts.client_id)?;
        let session = format!("{}:{:08x}", opts.client_id, rand::random::<u32>());
        let mut mo = MqttOptions::new(session, opts.server.host.clone(), opts.server.port);
        mo.set_keep_alive(opts.keep_alive);
        // Requests are small and latency-bound: without NODELAY every round trip waits ~40 ms
        // for the peer's delayed ACK (Nagle).
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        mo.set_network_options(net);
        mo.set_clean_start(true);
        mo.set_max_packet_size(Some(MAX_PACKET_BYTES));
        // rumqttc sizes its in-flight table by this limit (65 535 entries, ~14 MB, by default).
        mo.set_outgoing_inflight_upper_limit(256);
        mo.set_connection_timeout(opts.connect_timeout.as_secs().max(1));
        if opts.server.tls {
            mo.set_transport(tls_config(&opts)?);
        }
        if let Some((topic, payload, retain)) = &opts.last_will {
            mo.set_last_will(LastWill::new(
                topic.clone(),
                payload.clone(),
                QoS::AtLeastOnce,
                *retain,
                None,
            ));
        }
        let (mqtt, eventloop) = AsyncClient::new(mo, 256);
        let (state, _) = watch::channel(ConnState::Connecting);
        let inner = Arc::new(Inner {
            token: Mutex::new(opts.token.clone()),
            opts,
            mqtt,
            pending: Mutex::new(HashMap::new()),
            subs: Mutex::new(Vec::new()),
            sub_lock: tokio::sync::Mutex::new(()),
            suback: Mutex::new(None),
            state,
            closed: AtomicBool::new(false),
        });
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(drive(inner.clone(), eventloop, first_tx));
        let client = HubClient { inner };
        let first = tokio::time::timeout(client.inner.opts.connect_timeout, first_rx).await;
        match first {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                client.inner.closed.store(true, Ordering::SeqCst);
                return Err(e);
            }
            _ => {
                client.inner.closed.store(true, Ordering::SeqCst);
                return Err(ClientError::Unreachable {
                    url: client.inner.url(),
                    reason: "timed out".into(),
                });
            }
        }
        client
            .subscribe_filter(&filter::inbox(client.inner.id()))
            .await?;
        if client.inner.opts.refresh_token {
            tokio::spawn(refresh_loop(Arc::downgrade(&client.inner)));
        }
        Ok(client)
    }

    /// This client's login ID.
    pub fn client_id(&self) -> &str {
        self.inner.id()
    }

    /// The server URL.
    pub fn server_url(&self) -> String {
        self.inner.url()
    }

    /// Watches the connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.inner.state.subscribe()
    }

    /// Waits until the client is connected, up to `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.state();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == ConnState::Connected))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn subscribe_filter(&self, f: &str) -> Result<(), ClientError> {
        subscribe_on(&self.inner, f).await
    }

    /// Sends a request and waits for its reply, with the default timeout.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: &str,
        capability: &str,
        method: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        let payload = serde_json::to_vec(req).map_err(|e| ClientError::Encode(e.to_string()))?;
        let v = self
            .request_raw(
                service,
                capability,
                method,
                payload,
                self.inner.opts.request_timeout,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// Sends a request with a raw payload and waits up to `timeout` for the reply's result.
    pub async fn request_raw(
        &self,
        service: &str,
        capability: &str,
        method: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        let topic =
            Topic::rpc(service, capability, method, self.client_id()).map_err(ClientError::from)?;
        let corr: [u8; 16] = rand::random();
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(
            corr.to_vec(),
            Pending {
                responder: service.to_string(),
                tx,
            },
        );
        let props = PublishProperties {
            response_topic: Some(topic.reply_inbox().to_string()),
            correlation_data: Some(Bytes::copy_from_slice(&corr)),
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        let sent = self
            .inner
            .mqtt
            .publish_with_properties(topic.to_string(), QoS::AtLeastOnce, false, payload, props)
            .await;
        if sent.is_err() {
            lock(&self.inner.pending).remove(&corr[..]);
            return Err(ClientError::Closed.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(reply))) => reply.into_result().map_err(RpcError::Remote),
            Ok(Ok(Err(decode))) => Err(RpcError::Decode(decode)),
            // The connection dropped while waiting: say so instead of reporting a timeout.
            Ok(Err(_)) => Err(ClientError::ConnectionLost(self.server_url()).into()),
            Err(_) => {
                lock(&self.inner.pending).remove(&corr[..]);
                Err(RpcError::Timeout {
                    service: service.into(),
                    capability: capability.into(),
                    method: method.into(),
                    after: timeout,
                })
            }
        }
    }

    /// Publishes an event about `thing` as this client, at QoS 1.
    pub async fn publish_event<T: Serialize>(
        &self,
        thing: &str,
        name: &str,
        payload: &T,
        retain: bool,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(payload).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.publish_event_raw(thing, name, body, QoS::AtLeastOnce, retain)
            .await
    }

    /// Publishes an event with a raw payload and a chosen QoS.
    pub async fn publish_event_raw(
        &self,
        thing: &str,
        name: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), ClientError> {
        let topic = Topic::event(self.client_id(), thing, name)?;
        self.inner
            .mqtt
            .publish(topic.to_string(), qos, retain, payload.into())
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Receives the events that match `agent`/`thing`/`name` (`None` matches any). Retained
    /// events are delivered first. Events that arrive while the receiver is full are dropped
    /// (and logged) rather than stalling the connection.
    pub async fn subscribe_events(
        &self,
        agent: Option<&str>,
        thing: Option<&str>,
        name: Option<&str>,
    ) -> Result<mpsc::Receiver<EventMessage>, ClientError> {
        for s in [agent, thing, name].into_iter().flatten() {
            hivehub_api::validate_id(s)?;
        }
        let f = filter::events(agent, thing, name);
        let (tx, rx) = mpsc::channel(4096);
        lock(&self.inner.subs).push(Subscription {
            filter: f.clone(),
            kind: SubKind::Events(tx),
        });
        if let Err(e) = self.subscribe_filter(&f).await {
            lock(&self.inner.subs).retain(|s| s.filter != f);
            return Err(e);
        }
        Ok(rx)
    }

    /// Serves the requests to this client's `capability`. Each request runs in its own task;
    /// the handler's result (or error) is sent back as the reply. Register who may call it with
    /// [`HubClient::set_permissions`].
    pub async fn serve<F, Fut>(&self, capability: &str, handler: F) -> Result<(), ClientError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, RemoteError>> + Send + 'static,
    {
        hivehub_api::validate_id(capability)?;
        let f = filter::capability_requests(self.client_id(), capability);
        let h: Handler = Arc::new(move |r| Box::pin(handler(r)));
        lock(&self.inner.subs).push(Subscription {
            filter: f.clone(),
            kind: SubKind::Serve(h),
        });
        if let Err(e) = self.subscribe_filter(&f).await {
            lock(&self.inner.subs).retain(|s| s.filter != f);
            return Err(e);
        }
        Ok(())
    }

    /// Registers which roles may call one of this client's capabilities ("plugin registers
    /// authz for roles"). Until then, nobody but admin may call it.
    pub async fn set_permissions(&self, capability: &str, roles: &[Role]) -> Result<(), RpcError> {
        let req = hivehub_api::auth::SetPermissionsReq {
            capability: capability.to_string(),
            roles: roles.to_vec(),
        };
        let _: Ack = self
            .request(AUTH_SERVICE, CAP_AUTHZ, methods::SET_PERMISSIONS, &req)
            .await?;
        Ok(())
    }

    /// Gets a fresh token from the core now, keeps it for reconnects, and rewrites the token
    /// file when there is one.
    pub async fn refresh_token(&self) -> Result<TokenResp, RpcError> {
        refresh_once(&self.inner).await
    }

    /// Publishes `reply` into `requester`'s inbox under `responder`'s name, with the request's
    /// correlation data. Handlers registered with [`HubClient::serve`] reply by themselves; this
    /// is for code that answers on behalf of a capability (the core answering denied calls).
    pub async fn send_reply(
        &self,
        requester: &str,
        responder: &str,
        correlation: Option<Bytes>,
        reply: &Reply,
    ) -> Result<(), ClientError> {
        let inbox = InboxTopic {
            owner: requester.to_string(),
            responder: responder.to_string(),
        };
        let body = serde_json::to_vec(reply).map_err(|e| ClientError::Encode(e.to_string()))?;
        let props = PublishProperties {
            correlation_data: correlation,
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        self.inner
            .mqtt
            .publish_with_properties(inbox.to_string(), QoS::AtLeastOnce, false, body, props)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Disconnects cleanly (an MQTT DISCONNECT, so no Last Will is sent) and stops reconnecting.
    pub async fn disconnect(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.mqtt.disconnect()).await;
        let mut rx = self.state();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            rx.wait_for(|s| *s == ConnState::Closed),
        )
        .await;
    }
}

async fn subscribe_on(inner: &Inner, f: &str) -> Result<(), ClientError> {
    let _guard = inner.sub_lock.lock().await;
    let (tx, rx) = oneshot::channel();
    *lock(&inner.suback) = Some(tx);
    inner
        .mqtt
        .subscribe(f, QoS::AtLeastOnce)
        .await
        .map_err(|_| ClientError::Closed)?;
    match tokio::time::timeout(inner.opts.connect_timeout, rx).await {
        Ok(Ok(codes)) => {
            if codes
                .iter()
                .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
            {
                Ok(())
            } else {
                Err(ClientError::SubscribeDenied(f.to_string()))
            }
        }
        _ => Err(ClientError::Timeout(format!("subscription to '{f}'"))),
    }
}

async fn refresh_once(inner: &Arc<Inner>) -> Result<TokenResp, RpcError> {
    let client = HubClient {
        inner: inner.clone(),
    };
    let resp: TokenResp = client
        .request(AUTH_SERVICE, CAP_PROFILE, methods::REFRESH, &Ack {})
        .await?;
    *lock(&inner.token) = Some(resp.token.clone());
    if let Some(path) = &inner.opts.token_file {
        if let Err(e) =
            hivehub_home::write_atomic(path, resp.token.as_bytes(), hivehub_home::SECRET_MODE)
        {
            // A confined plugin may read its token file but not replace it; the launcher mints
            // a fresh one at every start, so only this process needs the new token.
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                tracing::debug!(file = %path.display(), "refreshed token kept in memory: {e}");
            } else {
                tracing::warn!(file = %path.display(), "cannot save refreshed token: {e}");
            }
        }
    }
    tracing::debug!(expires = resp.expires, "token refreshed");
    Ok(resp)
}

/// Refreshes the token when a quarter of its lifetime is left (at once if we connected with a
/// key assertion), retrying on failure.
async fn refresh_loop(weak: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let claims = inner.current_token().and_then(|t| peek_claims(&t).ok());
        let now = unix_now();
        let wait = match &claims {
            Some(c) if !is_assertion(c) && c.exp > now + 5 => {
                let life = c.exp.saturating_sub(c.iat).max(1);
                let refresh_at = c.exp.saturating_sub(life / 4);
                refresh_at.saturating_sub(now)
            }
            _ => 0,
        };
        drop(inner);
        if wait > 0 {
            // Wake at least hourly so a rewritten token file is noticed.
            tokio::time::sleep(Duration::from_secs(wait.min(3600))).await;
            continue;
        }
        let Some(inner) = weak.upgrade() else { return };
        match refresh_once(&inner).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("token refresh failed: {e}");
                drop(inner);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

async fn drive(
    inner: Arc<Inner>,
    mut el: EventLoop,
    first: oneshot::Sender<Result<(), ClientError>>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(100);
    match inner.password() {
        Ok(pw) => {
            el.options.set_credentials(inner.id(), pw);
        }
        Err(e) => {
            if let Some(f) = first.take() {
                let _ = f.send(Err(e));
            }
            return;
        }
    }
    loop {
        let ev = el.poll().await;
        if inner.closed.load(Ordering::SeqCst)
            && first.is_none()
            && matches!(
                ev,
                Err(_) | Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
            )
        {
            break;
        }
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                if let Some(f) = first.take() {
                    inner.set_state(ConnState::Connected);
                    let _ = f.send(Ok(()));
                } else {
                    tracing::info!(url = %inner.url(), "reconnected to the hub");
                    let i2 = inner.clone();
                    tokio::spawn(async move {
                        let filters: Vec<String> = std::iter::once(filter::inbox(i2.id()))
                            .chain(lock(&i2.subs).iter().map(|s| s.filter.clone()))
                            .collect();
                        for f in filters {
                            if let Err(e) = subscribe_on(&i2, &f).await {
                                tracing::warn!("resubscribe failed: {e}");
                            }
                        }
                        i2.set_state(ConnState::Connected);
                    });
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => dispatch(&inner, p),
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if let Some(tx) = lock(&inner.suback).take() {
                    let _ = tx.send(ack.return_codes);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                tracing::warn!(reason = ?d.reason_code, "the hub closed the connection");
            }
            Ok(_) => {}
            Err(e) => {
                let reason = describe_connection_error(&e);
                if let Some(f) = first.take() {
                    let err = match e {
                        ConnectionError::ConnectionRefused(_) => ClientError::LoginRefused {
                            url: inner.url(),
                            client_id: inner.id().to_string(),
                            reason,
                        },
                        _ => ClientError::Unreachable {
                            url: inner.url(),
                            reason,
                        },
                    };
                    let _ = f.send(Err(err));
                    break;
                }
                if inner.closed.load(Ordering::SeqCst) {
                    break;
                }
                tracing::warn!(url = %inner.url(), "connection to the hub lost: {reason}; retrying in {backoff:?}");
                inner.set_state(ConnState::Disconnected(reason));
                // Replies to requests in flight will never come (clean sessions): fail them now
                // instead of letting each wait out its timeout.
                lock(&inner.pending).clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if let Ok(pw) = inner.password() {
                    el.options.set_credentials(inner.id(), pw);
                }
            }
        }
    }
    inner.set_state(ConnState::Closed);
    // Fail waiting requests at once instead of letting them time out.
    lock(&inner.pending).clear();
}

fn dispatch(inner: &Arc<Inner>, p: Publish) {
    let Ok(topic) = std::str::from_utf8(&p.topic) else {
        return;
    };
    if topic.starts_with(INBOX_PREFIX) {
        let Ok(inbox) = InboxTopic::parse(topic) else {
            return;
        };
        let Some(corr) = p
            .properties
            .as_ref()
            .and_then(|pp| pp.correlation_data.clone())
        else {
            return;
        };
        let mut pending = lock(&inner.pending);
        // Only the service we called may answer (the core enforces who publishes under which
        // responder ID), and only with our random correlation data.
        if pending
            .get(&corr[..])
            .is_some_and(|w| w.responder == inbox.responder)
        {
            if let Some(w) = pending.remove(&corr[..]) {
                let r = serde_json::from_slice::<Reply>(&p.payload).map_err(|e| e.to_string());
                let _ = w.tx.send(r);
            }
        }
        return;
    }
    let Ok(t) = Topic::parse(topic) else {
        tracing::debug!(topic, "ignoring message on a topic outside the scheme");
        return;
    };
    let subs = lock(&inner.subs);
    for s in subs.iter() {
        if !filter::matches(&s.filter, topic) {
            continue;
        }
        match &s.kind {
            SubKind::Events(tx) => {
                let m = EventMessage {
                    topic: t.clone(),
                    payload: p.payload.clone(),
                    retained: p.retain,
                };
                if tx.try_send(m).is_err() {
                    tracing::warn!(topic, "event receiver full or gone; event dropped");
                }
            }
            SubKind::Serve(h) => {
                tokio::spawn(answer(inner.clone(), h.clone(), t.clone(), p.clone()));
            }
        }
    }
}

async fn answer(inner: Arc<Inner>, h: Handler, t: Topic, p: Publish) {
    let result = if p.payload.len() > MAX_REQUEST_BYTES {
        Err(RemoteError::new(
            ErrorCode::TooLarge,
            format!(
                "request of {} bytes is larger than the {} bytes accepted",
                p.payload.len(),
                MAX_REQUEST_BYTES
            ),
        ))
    } else {
        h(Request {
            sender: t.sender.clone(),
            capability: t.thing.clone(),
            method: t.name.clone(),
            payload: p.payload.clone(),
        })
        .await
    };
    let reply = match result {
        Ok(v) => Reply::Ok(v),
        Err(e) => Reply::Err(e),
    };
    // Always answer into the inbox derived from the verified sender, whatever response topic
    // the request named: a request cannot redirect our reply to someone else.
    let client = HubClient { inner };
    let corr = p.properties.and_then(|pp| pp.correlation_data);
    if let Err(e) = client.send_reply(&t.sender, &t.agent, corr, &reply).await {
        tracing::warn!("cannot send reply: {e}");
    }
}
