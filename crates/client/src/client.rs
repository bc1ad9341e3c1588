//! The connection to the hub: requests, served capabilities, events.
//!
//! Served capabilities are bounded: every request runs in a task of its own, but a client runs
//! at most [`HubClient::DEFAULT_MAX_IN_FLIGHT`] requests at a time over all the capabilities it
//! serves, and at most [`HubClient::DEFAULT_MAX_IN_FLIGHT_PER_SENDER`] for one requester (see
//! [`HubClient::set_serve_limits`]). A request over a bound is answered with
//! [`ErrorCode::Busy`] at once and never runs, so a flooding caller costs a pre-built reply per
//! request instead of a task and a result each (a viewer flooding `launcher/view/status` once
//! took the launcher from 29 MiB to gigabytes), and it cannot crowd out other callers.
//! [`HubClient::request`] retries `busy` replies by itself within its timeout.
//!
//! Replies cannot be forged or redirected. A request carries 16 random bytes of correlation
//! data; a reply is accepted only from the inbox `_INBOX/{self}/{service}` of the service that
//! was called, with that correlation data. A served request is always answered into the inbox
//! derived from its verified sender, never into the response topic it names. Each client
//! subscribes to `_INBOX/{self}/+` when it connects.
//!
//! Tokens: the client refreshes its token (`profile/refresh`) when a quarter of its lifetime is
//! left, or at once after connecting with a key assertion; it retries every 5 s and rewrites
//! the token file (0400, atomically). At every reconnect it uses the newer of its in-memory
//! token and the token file, and a key assertion if the token expires within 5 s. Nothing of
//! a client runs on after [`HubClient::disconnect`].

use crate::error::{ClientError, RpcError};
use crate::options::{ClientOptions, ServerUrl};
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
use std::time::{Duration, Instant};
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
    /// Decodes the payload, which must be a JSON object (an empty payload reads as `{}`): an
    /// array is not read by position, and `null` is not taken for a default. A failure is a
    /// ready-made [`ErrorCode::BadRequest`] reply that names the method and the problem in the
    /// wire's terms, never a Rust type name.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, RemoteError> {
        let bad = |why: String| {
            RemoteError::new(
                ErrorCode::BadRequest,
                format!("invalid request for {}: {why}", self.method),
            )
        };
        let value: serde_json::Value = if self.payload.is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_slice(&self.payload).map_err(|e| bad(e.to_string()))?
        };
        let kind = match &value {
            serde_json::Value::Object(_) => None,
            serde_json::Value::Null => Some("null"),
            serde_json::Value::Bool(_) => Some("a boolean"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Array(_) => Some("an array"),
        };
        if let Some(kind) = kind {
            return Err(bad(format!(
                "the body must be a JSON object (e.g. {{}}), not {kind}"
            )));
        }
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))
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

/// A handler's answer: the whole reply payload of a success (`{"result": ...}`), already
/// serialized, or the error to send.
type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RemoteError>> + Send>>;
type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// The reply payload `{"result": <json>}` around a result that is already JSON text.
fn result_body(json: &[u8]) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"result\":";
    let mut body = Vec::with_capacity(HEAD.len() + json.len() + 1);
    body.extend_from_slice(HEAD);
    body.extend_from_slice(json);
    body.push(b'}');
    body
}

/// Why a request was refused as busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Its sender already has the most requests in flight it may have.
    Sender,
    /// All senders together already have the most requests in flight this client runs.
    Total,
}

/// The bookkeeping of the requests in flight in this client's served capabilities. Its size is
/// bounded by the overall limit: a sender has an entry only while it has a request in flight.
struct Gate {
    st: Mutex<GateState>,
}

struct GateState {
    max_total: usize,
    max_per_sender: usize,
    total: usize,
    per_sender: HashMap<String, usize>,
    /// The two busy replies, serialized once (they only name the limits), so that refusing a
    /// request costs no more than publishing a few bytes.
    busy_sender: Bytes,
    busy_total: Bytes,
    /// Refusals not yet logged, and when the last log line was written: a flood gets a line
    /// every [`BUSY_LOG_EVERY`], not one per request.
    refused: u64,
    last_log: Option<Instant>,
}

/// How often refusals are logged at most.
const BUSY_LOG_EVERY: Duration = Duration::from_secs(10);

fn busy_body(message: String) -> Bytes {
    let reply = Reply::Err(RemoteError::new(ErrorCode::Busy, message));
    // Serializing a struct of strings cannot fail; the fallback is the same reply spelled out.
    serde_json::to_vec(&reply)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(br#"{"error":{"code":"busy","message":"busy"}}"#))
}

impl GateState {
    fn set_limits(&mut self, max_total: usize, max_per_sender: usize) {
        self.max_total = max_total.max(1);
        self.max_per_sender = max_per_sender.max(1);
        self.busy_sender = busy_body(format!(
            "too many requests in flight from this client (at most {}); retry later",
            self.max_per_sender
        ));
        self.busy_total = busy_body(format!(
            "too many requests in flight (at most {} from all clients); retry later",
            self.max_total
        ));
    }
}

impl Gate {
    fn new(max_total: usize, max_per_sender: usize) -> Gate {
        let mut st = GateState {
            max_total: 0,
            max_per_sender: 0,
            total: 0,
            per_sender: HashMap::new(),
            busy_sender: Bytes::new(),
            busy_total: Bytes::new(),
            refused: 0,
            last_log: None,
        };
        st.set_limits(max_total, max_per_sender);
        Gate { st: Mutex::new(st) }
    }

    /// Admits a request of `sender`, or says why not with the reply to send.
    fn try_acquire(self: &Arc<Self>, sender: &str) -> Result<Permit, (Refusal, Bytes)> {
        let mut st = lock(&self.st);
        let mine = st.per_sender.get(sender).copied().unwrap_or(0);
        let refusal = if mine >= st.max_per_sender {
            Some(Refusal::Sender)
        } else if st.total >= st.max_total {
            Some(Refusal::Total)
        } else {
            None
        };
        if let Some(why) = refusal {
            st.refused += 1;
            let due = st.last_log.is_none_or(|t| t.elapsed() >= BUSY_LOG_EVERY);
            if due {
                let n = std::mem::take(&mut st.refused);
                st.last_log = Some(Instant::now());
                let (total, max_total, max_sender) = (st.total, st.max_total, st.max_per_sender);
                drop(st);
                tracing::warn!(
                    sender,
                    refused = n,
                    in_flight = total,
                    max_in_flight = max_total,
                    max_in_flight_per_sender = max_sender,
                    "too many requests in flight; answering busy"
                );
                st = lock(&self.st);
            }
            let body = match why {
                Refusal::Sender => st.busy_sender.clone(),
                Refusal::Total => st.busy_total.clone(),
            };
            return Err((why, body));
        }
        st.total += 1;
        match st.per_sender.get_mut(sender) {
            Some(n) => *n += 1,
            None => {
                st.per_sender.insert(sender.to_string(), 1);
            }
        }
        Ok(Permit {
            gate: self.clone(),
            sender: sender.to_string(),
        })
    }

    fn release(&self, sender: &str) {
        let mut st = lock(&self.st);
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_sender.get_mut(sender) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_sender.remove(sender);
            }
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let st = lock(&self.st);
        (st.total, st.per_sender.len())
    }
}

/// One admitted request; frees its place when dropped (also when its handler panics).
struct Permit {
    gate: Arc<Gate>,
    sender: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(&self.sender);
    }
}

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
    /// The reply's payload, decoded by the requester into the type it expects (one parse,
    /// straight into that type, and none in the connection's event loop).
    tx: oneshot::Sender<Bytes>,
}

/// The state of the subscription to this client's inbox made at connect. [`HubClient::connect`]
/// returns once it is sent, without waiting for its SUBACK: the core handles a connection's
/// packets in order, so a request published after it is routed only once the inbox exists,
/// and its reply cannot miss it. A refusal reaches the requests instead of `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inbox {
    /// Sent; no SUBACK yet.
    Pending,
    /// Acknowledged.
    Ready,
    /// Refused by the hub.
    Denied(String),
    /// No SUBACK within the connect timeout.
    TimedOut(String),
}

impl Inbox {
    /// The state after subscribing to the inbox filter `f` ended with `r`.
    fn after(f: String, r: Result<(), ClientError>) -> Inbox {
        match r {
            Ok(()) => Inbox::Ready,
            Err(ClientError::SubscribeDenied(_)) => Inbox::Denied(f),
            Err(_) => Inbox::TimedOut(f),
        }
    }

    fn error(&self) -> Option<ClientError> {
        match self {
            Inbox::Denied(f) => Some(ClientError::SubscribeDenied(f.clone())),
            Inbox::TimedOut(f) => Some(ClientError::Timeout(format!("subscription to '{f}'"))),
            Inbox::Pending | Inbox::Ready => None,
        }
    }
}

/// A reply decoded straight into the result type the caller expects; the same wire format as
/// [`Reply`].
#[derive(serde::Deserialize)]
enum TypedReply<T> {
    #[serde(rename = "result")]
    Ok(T),
    #[serde(rename = "error")]
    Err(RemoteError),
}

struct Inner {
    opts: ClientOptions,
    mqtt: AsyncClient,
    pending: Mutex<HashMap<Vec<u8>, Pending>>,
    subs: Mutex<Vec<Subscription>>,
    /// One SUBSCRIBE at a time (SUBACKs are matched to the one in flight); shared so that the
    /// task waiting for the inbox's SUBACK can hold it.
    sub_lock: Arc<tokio::sync::Mutex<()>>,
    inbox: watch::Sender<Inbox>,
    suback: Mutex<Option<oneshot::Sender<Vec<SubscribeReasonCode>>>>,
    state: watch::Sender<ConnState>,
    token: Mutex<Option<String>>,
    closed: AtomicBool,
    /// Requests retry `busy` replies ([`HubClient::set_retry_busy`]).
    retry_busy: AtomicBool,
    /// The client's own tasks (the connection driver, the token refresher), which
    /// [`HubClient::disconnect`] waits for.
    own_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    serving: Arc<Gate>,
}

/// No reply to `service/capability/method` within `after`.
fn timed_out(service: &str, capability: &str, method: &str, after: Duration) -> RpcError {
    RpcError::Timeout {
        service: service.into(),
        capability: capability.into(),
        method: method.into(),
        after,
    }
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

fn describe_connection_error(e: &ConnectionError, server: &ServerUrl) -> String {
    match e {
        // A reply that is not MQTT on a plain connection: a TLS port answering (rumqttc would
        // say "Promised boundary crossed, contains 768 bytes" or the like).
        ConnectionError::MqttState(rumqttc::v5::StateError::Deserialization(d)) => {
            tracing::debug!("not an MQTT reply from {server}: {d}");
            match server {
                ServerUrl::Tcp {
                    tls: false,
                    host,
                    port,
                } => {
                    let tls = ServerUrl::Tcp {
                        tls: true,
                        host: host.clone(),
                        port: *port,
                    };
                    format!("the server speaks TLS on this port, not plain MQTT: use {tls}")
                }
                _ => e.to_string(),
            }
        }
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
                return sign_assertion(&key, self.id(), 120)
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

/// First pause before a request refused as busy is sent again; it doubles up to
/// [`BUSY_RETRY_MAX`], with up to half of it again as jitter so that refused callers spread out.
const BUSY_RETRY_FIRST: Duration = Duration::from_millis(10);
const BUSY_RETRY_MAX: Duration = Duration::from_millis(250);

impl HubClient {
    /// Default of the most requests this client runs at once over all the capabilities it
    /// serves: 64. Enough to keep a service busy (handlers are short), small enough that the
    /// results in flight stay a few MiB even for large answers.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

    /// Default of the most requests one requester (the `{sender}` of the request topic, which the
    /// core verifies) may have in flight in this client's served capabilities: 8. One caller
    /// can then hold at most an eighth of [`HubClient::DEFAULT_MAX_IN_FLIGHT`], so a flood from
    /// one login leaves room for everybody else.
    pub const DEFAULT_MAX_IN_FLIGHT_PER_SENDER: usize = 8;

    /// Sets how many requests the capabilities served by this client run at once: at most
    /// `max_in_flight` in all (default [`HubClient::DEFAULT_MAX_IN_FLIGHT`]) and at most
    /// `max_per_sender` for one requester (default
    /// [`HubClient::DEFAULT_MAX_IN_FLIGHT_PER_SENDER`]); values below 1 count as 1. A request
    /// over a bound is not run: it gets an immediate [`ErrorCode::Busy`] reply. Applies to
    /// requests that arrive from now on.
    ///
    /// The limits are set on the client rather than in [`ClientOptions`] so that adding them
    /// changed no code that builds `ClientOptions` field by field.
    pub fn set_serve_limits(&self, max_in_flight: usize, max_per_sender: usize) {
        lock(&self.inner.serving.st).set_limits(max_in_flight, max_per_sender);
    }

    /// Whether requests send a [`ErrorCode::Busy`] reply's request again (the default) or
    /// return it at once as [`RpcError::Remote`], for callers that handle a loaded service
    /// themselves, or measure it.
    pub fn set_retry_busy(&self, retry: bool) {
        self.inner.retry_busy.store(retry, Ordering::Relaxed);
    }

    /// The current limits of [`HubClient::set_serve_limits`]: `(max_in_flight, max_per_sender)`.
    pub fn serve_limits(&self) -> (usize, usize) {
        let st = lock(&self.inner.serving.st);
        (st.max_total, st.max_per_sender)
    }

    /// Connects, waiting for the first CONNACK. Later connection losses are repaired by the
    /// client itself; this first attempt fails fast with a clear reason instead. The inbox
    /// subscription is sent but its SUBACK is not waited for (the hub handles a connection's
    /// packets in order, so it is in place before any request sent after it): a one-shot
    /// caller such as `hubcli` saves a round trip to the hub.
    pub async fn connect(opts: ClientOptions) -> Result<HubClient, ClientError> {
        hivehub_api::validate_id(&opts.client_id)?;
        let session = format!("{}:{:08x}", opts.client_id, rand::random::<u32>());
        let mut mo = match &opts.server {
            ServerUrl::Tcp { host, port, .. } => MqttOptions::new(session, host.clone(), *port),
            // rumqttc takes the socket's path for the host (its port is not used).
            ServerUrl::Unix(path) => {
                let mut mo = MqttOptions::new(session, path.to_string_lossy(), 0);
                mo.set_transport(Transport::unix());
                mo
            }
        };
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
        if opts.server.is_tls() {
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
            sub_lock: Arc::new(tokio::sync::Mutex::new(())),
            inbox: watch::channel(Inbox::Pending).0,
            suback: Mutex::new(None),
            state,
            closed: AtomicBool::new(false),
            retry_busy: AtomicBool::new(true),
            own_tasks: Mutex::new(Vec::new()),
            serving: Arc::new(Gate::new(
                HubClient::DEFAULT_MAX_IN_FLIGHT,
                HubClient::DEFAULT_MAX_IN_FLIGHT_PER_SENDER,
            )),
        });
        let (first_tx, first_rx) = oneshot::channel();
        let driver = tokio::spawn(drive(inner.clone(), eventloop, first_tx));
        lock(&inner.own_tasks).push(driver);
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
        let waiter = subscribe_inbox(&client.inner).await?;
        lock(&client.inner.own_tasks).push(waiter);
        if client.inner.opts.refresh_token {
            let refresher = tokio::spawn(refresh_loop(Arc::downgrade(&client.inner)));
            lock(&client.inner.own_tasks).push(refresher);
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

    /// True once [`HubClient::disconnect`] was called: nothing more goes out.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
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

    /// Sends a request and waits for its reply, with the default timeout. A `busy` reply is
    /// retried as in [`HubClient::request_raw`].
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: &str,
        capability: &str,
        method: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        let payload = serde_json::to_vec(req).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.request_retrying(
            service,
            capability,
            method,
            payload.into(),
            self.inner.opts.request_timeout,
        )
        .await
    }

    /// Sends a request with a raw payload and waits up to `timeout` for the reply's result.
    ///
    /// A [`ErrorCode::Busy`] reply means the service did not run the request; it is sent again
    /// after a short, growing pause (10 ms doubling up to 250 ms, with jitter) while `timeout`
    /// allows, so a burst of calls gets through a service's in-flight limit. When the time is
    /// up the last `busy` error is returned.
    pub async fn request_raw(
        &self,
        service: &str,
        capability: &str,
        method: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        self.request_retrying(service, capability, method, payload.into(), timeout)
            .await
    }

    /// The body of [`HubClient::request_raw`] and [`HubClient::request`]: the result decoded
    /// as `T`; a busy reply is sent again while `timeout` allows unless
    /// [`HubClient::set_retry_busy`] turned that off.
    async fn request_retrying<T: DeserializeOwned>(
        &self,
        service: &str,
        capability: &str,
        method: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<T, RpcError> {
        let retry_busy = self.inner.retry_busy.load(Ordering::Relaxed);
        let topic =
            Topic::rpc(service, capability, method, self.client_id()).map_err(ClientError::from)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = BUSY_RETRY_FIRST;
        loop {
            match self
                .request_once(&topic, service, payload.clone(), deadline)
                .await?
                .map(|body| decode_reply::<T>(&body))
                .transpose()?
            {
                Some(Err(e)) if retry_busy && e.code == ErrorCode::Busy => {
                    let jitter = pause.mul_f64(rand::random::<f64>() / 2.0);
                    let wake = tokio::time::Instant::now() + pause + jitter;
                    if wake >= deadline {
                        return Err(RpcError::Remote(e));
                    }
                    tokio::time::sleep_until(wake).await;
                    pause = (pause * 2).min(BUSY_RETRY_MAX);
                }
                Some(reply) => return reply.map_err(RpcError::Remote),
                None => return Err(timed_out(service, capability, method, timeout)),
            }
        }
    }

    /// Sends one request and waits until `deadline` for its reply's payload: `Ok(None)` on
    /// timeout.
    async fn request_once(
        &self,
        topic: &Topic,
        service: &str,
        payload: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Bytes>, RpcError> {
        let mut inbox = self.inner.inbox.subscribe();
        if let Some(e) = inbox.borrow().error() {
            return Err(e.into());
        }
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
        // The reply, unless the inbox it must arrive in was refused.
        let refused = async {
            let failed = inbox
                .wait_for(|s| s.error().is_some())
                .await
                .ok()
                .and_then(|s| s.error());
            match failed {
                Some(e) => e,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(deadline, rx) => r,
            e = refused => {
                lock(&self.inner.pending).remove(&corr[..]);
                return Err(e.into());
            }
        };
        match outcome {
            Ok(Ok(body)) => Ok(Some(body)),
            // The connection dropped while waiting: say so instead of reporting a timeout.
            Ok(Err(_)) => Err(ClientError::ConnectionLost(self.server_url()).into()),
            Err(_) => {
                lock(&self.inner.pending).remove(&corr[..]);
                Ok(None)
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
    ///
    /// Requests in flight are bounded (see [`HubClient::set_serve_limits`]): over a bound, a
    /// request gets an immediate [`ErrorCode::Busy`] reply and the handler is not called.
    pub async fn serve<F, Fut>(&self, capability: &str, handler: F) -> Result<(), ClientError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, RemoteError>> + Send + 'static,
    {
        let h: Handler = Arc::new(move |r| {
            let fut = handler(r);
            Box::pin(async move {
                let reply = Reply::Ok(fut.await?);
                serde_json::to_vec(&reply)
                    .map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))
            })
        });
        self.serve_handler(capability, h).await
    }

    /// Like [`HubClient::serve`], for handlers that return their result already serialized as
    /// JSON (for example with `serde_json::to_vec`), which must be exactly one JSON value. It
    /// goes into the reply as it is, so a handler can serialize a result straight from its
    /// types, or answer from a cache of serialized results, instead of building a
    /// `serde_json::Value` per request.
    pub async fn serve_raw<F, Fut, B>(
        &self,
        capability: &str,
        handler: F,
    ) -> Result<(), ClientError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<B, RemoteError>> + Send + 'static,
        B: AsRef<[u8]> + Send + 'static,
    {
        let h: Handler = Arc::new(move |r| {
            let fut = handler(r);
            Box::pin(async move { fut.await.map(|json| result_body(json.as_ref())) })
        });
        self.serve_handler(capability, h).await
    }

    async fn serve_handler(&self, capability: &str, h: Handler) -> Result<(), ClientError> {
        hivehub_api::validate_id(capability)?;
        let f = filter::capability_requests(self.client_id(), capability);
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
        let body = serde_json::to_vec(reply).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.send_reply_body(requester, responder, correlation, body)
            .await
    }

    /// Publishes an already serialized reply payload; see [`HubClient::send_reply`].
    async fn send_reply_body(
        &self,
        requester: &str,
        responder: &str,
        correlation: Option<Bytes>,
        body: Vec<u8>,
    ) -> Result<(), ClientError> {
        let (inbox, props) = reply_envelope(requester, responder, correlation);
        self.inner
            .mqtt
            .publish_with_properties(inbox, QoS::AtLeastOnce, false, body, props)
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
        // Nothing of the client runs on once this returns.
        let tasks = std::mem::take(&mut *lock(&self.inner.own_tasks));
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
    }
}

/// The topic and properties of a reply: `requester`'s inbox for `responder`, with the request's
/// correlation data.
fn reply_envelope(
    requester: &str,
    responder: &str,
    correlation: Option<Bytes>,
) -> (String, PublishProperties) {
    let inbox = InboxTopic {
        owner: requester.to_string(),
        responder: responder.to_string(),
    };
    let props = PublishProperties {
        correlation_data: correlation,
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    (inbox.to_string(), props)
}

/// Decodes a reply payload into the result type the caller expects.
fn decode_reply<T: DeserializeOwned>(body: &[u8]) -> Result<Result<T, RemoteError>, RpcError> {
    match serde_json::from_slice::<TypedReply<T>>(body) {
        Ok(TypedReply::Ok(v)) => Ok(Ok(v)),
        Ok(TypedReply::Err(e)) => Ok(Err(e)),
        Err(e) => Err(RpcError::Decode(e.to_string())),
    }
}

/// A SUBSCRIBE sent and not yet acknowledged; holds the subscription lock until it is.
struct SubscribeSent {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    ack: oneshot::Receiver<Vec<SubscribeReasonCode>>,
}

/// Sends a SUBSCRIBE to `f`; [`subscribe_acked`] waits for its SUBACK.
async fn subscribe_send(inner: &Inner, f: &str) -> Result<SubscribeSent, ClientError> {
    let guard = inner.sub_lock.clone().lock_owned().await;
    let (tx, ack) = oneshot::channel();
    *lock(&inner.suback) = Some(tx);
    inner
        .mqtt
        .subscribe(f, QoS::AtLeastOnce)
        .await
        .map_err(|_| ClientError::Closed)?;
    Ok(SubscribeSent { _guard: guard, ack })
}

/// Waits for the SUBACK of a SUBSCRIBE to `f`, up to the connect timeout.
async fn subscribe_acked(inner: &Inner, f: &str, sent: SubscribeSent) -> Result<(), ClientError> {
    match tokio::time::timeout(inner.opts.connect_timeout, sent.ack).await {
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

async fn subscribe_on(inner: &Inner, f: &str) -> Result<(), ClientError> {
    let sent = subscribe_send(inner, f).await?;
    subscribe_acked(inner, f, sent).await
}

/// Subscribes to the client's inbox at connect: sends the SUBSCRIBE and returns the task that
/// waits for its SUBACK and records the outcome in [`Inner::inbox`] (see [`Inbox`]). The task
/// ends with the client.
async fn subscribe_inbox(inner: &Arc<Inner>) -> Result<tokio::task::JoinHandle<()>, ClientError> {
    let f = filter::inbox(inner.id());
    let sent = subscribe_send(inner, &f).await?;
    let inner = inner.clone();
    Ok(tokio::spawn(async move {
        let mut state = inner.state.subscribe();
        let outcome = tokio::select! {
            r = subscribe_acked(&inner, &f, sent) => r,
            // Closed, or lost: a reconnect subscribes again and records that outcome.
            _ = state.wait_for(|s| *s != ConnState::Connected) => return,
        };
        if let Err(e) = &outcome {
            tracing::warn!("inbox subscription failed: {e}");
        }
        inner.inbox.send_replace(Inbox::after(f, outcome));
    }))
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
            Some(c) if !is_assertion(&c.iss) && c.exp > now + 5 => {
                let life = c.exp.saturating_sub(c.iat).max(1);
                let refresh_at = c.exp.saturating_sub(life / 4);
                refresh_at.saturating_sub(now)
            }
            _ => 0,
        };
        let mut state = inner.state.subscribe();
        drop(inner);
        // A disconnect ends the wait (and the loop) at once: nothing of a closed client runs on.
        let closed = async move {
            let _ = state.wait_for(|s| *s == ConnState::Closed).await;
        };
        if wait > 0 {
            // Wake at least hourly so a rewritten token file is noticed.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(wait.min(3600))) => continue,
                _ = closed => return,
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        match refresh_once(&inner).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("token refresh failed: {e}");
                drop(inner);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = closed => return,
                }
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
    let mut hub_said: Option<String> = None;
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
                        for (i, f) in filters.into_iter().enumerate() {
                            let r = subscribe_on(&i2, &f).await;
                            if let Err(e) = &r {
                                tracing::warn!("resubscribe failed: {e}");
                            }
                            if i == 0 {
                                i2.inbox.send_replace(Inbox::after(f, r));
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
                let why = d
                    .properties
                    .as_ref()
                    .and_then(|p| p.reason_string.clone())
                    .unwrap_or_default();
                tracing::warn!(reason = ?d.reason_code, %why, "the hub closed the connection");
                hub_said = Some(format!(
                    "the hub closed the connection ({:?}): {why}",
                    d.reason_code
                ));
            }
            Ok(_) => {}
            Err(e) => {
                // The hub's own reason, when it gave one, says more than the socket error.
                let reason = hub_said
                    .take()
                    .unwrap_or_else(|| describe_connection_error(&e, &inner.opts.server));
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
                let _ = w.tx.send(p.payload);
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
            SubKind::Serve(h) => match inner.serving.try_acquire(&t.sender) {
                Ok(permit) => {
                    tokio::spawn(answer(
                        inner.clone(),
                        h.clone(),
                        t.clone(),
                        p.clone(),
                        permit,
                    ));
                }
                Err((_, body)) => refuse_busy(inner, &t, &p, body),
            },
        }
    }
}

/// Answers a request over the in-flight limits with the pre-built `busy` reply, to the same
/// inbox and with the same correlation data as any other reply. This runs in the connection's
/// event loop, which must never wait for itself: when the outgoing queue is full the reply is
/// dropped (the caller times out), rather than piling up a task per refused request.
fn refuse_busy(inner: &Inner, t: &Topic, p: &Publish, body: Bytes) {
    let corr = p
        .properties
        .as_ref()
        .and_then(|pp| pp.correlation_data.clone());
    let (inbox, props) = reply_envelope(&t.sender, &t.agent, corr);
    if inner
        .mqtt
        .try_publish_with_properties(inbox, QoS::AtLeastOnce, false, body, props)
        .is_err()
    {
        tracing::debug!(sender = %t.sender, "outgoing queue full; busy reply dropped");
    }
}

async fn answer(inner: Arc<Inner>, h: Handler, t: Topic, p: Publish, permit: Permit) {
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
    let body = match result {
        Ok(body) => Ok(body),
        Err(e) => {
            serde_json::to_vec(&Reply::Err(e)).map_err(|e| ClientError::Encode(e.to_string()))
        }
    };
    // Always answer into the inbox derived from the verified sender, whatever response topic
    // the request named: a request cannot redirect our reply to someone else.
    let client = HubClient { inner };
    let corr = p.properties.and_then(|pp| pp.correlation_data);
    let sent = match body {
        Ok(body) => {
            client
                .send_reply_body(&t.sender, &t.agent, corr, body)
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::warn!("cannot send reply: {e}");
    }
    // The request counts as in flight until its reply is queued: a reply that waits for room
    // in the outgoing queue still holds its memory.
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_result_body_is_the_reply_wire_format() {
        let v = serde_json::json!({"n": 1, "s": ["a"]});
        let raw = result_body(&serde_json::to_vec(&v).unwrap());
        assert_eq!(raw, serde_json::to_vec(&Reply::Ok(v.clone())).unwrap());
        let back: Reply = serde_json::from_slice(&raw).unwrap();
        assert_eq!(back, Reply::Ok(v));
    }

    #[test]
    fn gate_bounds_per_sender_and_overall_and_forgets_idle_senders() {
        let gate = Arc::new(Gate::new(3, 2));
        let a1 = gate.try_acquire("a").unwrap();
        let a2 = gate.try_acquire("a").unwrap();
        let (why, body) = gate.try_acquire("a").err().unwrap();
        assert_eq!(why, Refusal::Sender);
        let reply: Reply = serde_json::from_slice(&body).unwrap();
        assert_eq!(reply.into_result().unwrap_err().code, ErrorCode::Busy);
        let b1 = gate.try_acquire("b").unwrap();
        // Three in flight: b may have another by its own bound, but not overall.
        assert_eq!(gate.try_acquire("b").err().unwrap().0, Refusal::Total);
        assert_eq!(gate.try_acquire("c").err().unwrap().0, Refusal::Total);
        assert_eq!(gate.counts(), (3, 2));
        drop(a1);
        let c1 = gate.try_acquire("c").unwrap();
        drop((a2, b1, c1));
        // Nothing in flight: no entry is left behind.
        assert_eq!(gate.counts(), (0, 0));
    }

    /// One client connection to a stand-in hub on a plain loopback socket.
    struct FakeConn {
        sock: tokio::net::TcpStream,
        buf: bytes::BytesMut,
    }

    impl FakeConn {
        /// Accepts a client and answers its CONNECT; returns its inbox SUBSCRIBE.
        async fn login(listener: &tokio::net::TcpListener) -> (FakeConn, u16) {
            let (sock, _) = listener.accept().await.unwrap();
            let mut c = FakeConn {
                sock,
                buf: bytes::BytesMut::new(),
            };
            assert!(matches!(c.next().await, Some(Packet::Connect(..))));
            c.send(Packet::ConnAck(rumqttc::v5::mqttbytes::v5::ConnAck {
                session_present: false,
                code: ConnectReturnCode::Success,
                properties: None,
            }))
            .await;
            let Some(Packet::Subscribe(sub)) = c.next().await else {
                panic!("expected the inbox SUBSCRIBE");
            };
            (c, sub.pkid)
        }

        /// The next packet from the client; `None` once it left.
        async fn next(&mut self) -> Option<Packet> {
            use tokio::io::AsyncReadExt;
            loop {
                match Packet::read(&mut self.buf, None) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                        if self.sock.read_buf(&mut self.buf).await.unwrap() == 0 {
                            return None;
                        }
                    }
                    // rumqttc does not read an empty DISCONNECT, the only packet without a
                    // body the client sends here: the client is leaving.
                    Err(rumqttc::v5::mqttbytes::Error::PayloadRequired) => return None,
                    Err(e) => panic!("bad packet from the client: {e}"),
                }
            }
        }

        async fn send(&mut self, p: Packet) {
            use tokio::io::AsyncWriteExt;
            let mut out = bytes::BytesMut::new();
            p.write(&mut out, None).unwrap();
            self.sock.write_all(&out).await.unwrap();
        }

        async fn suback(&mut self, pkid: u16, code: SubscribeReasonCode) {
            self.send(Packet::SubAck(rumqttc::v5::mqttbytes::v5::SubAck {
                pkid,
                return_codes: vec![code],
                properties: None,
            }))
            .await;
        }

        /// The client's next request; `None` if it left first.
        async fn request(&mut self) -> Option<Publish> {
            loop {
                match self.next().await? {
                    Packet::Publish(p) => return Some(p),
                    _ => continue,
                }
            }
        }

        /// Answers `req` into the inbox it names, with its correlation data.
        async fn reply(&mut self, req: Publish, body: &'static str) {
            let props = req.properties.unwrap_or_default();
            let answer = PublishProperties {
                correlation_data: props.correlation_data,
                ..Default::default()
            };
            let topic = props.response_topic.unwrap_or_default();
            let p = Publish::new(topic, QoS::AtMostOnce, body, Some(answer));
            self.send(Packet::Publish(p)).await;
        }

        /// Waits until the client disconnects.
        async fn until_gone(mut self) {
            while let Some(p) = self.next().await {
                if matches!(p, Packet::Disconnect(_)) {
                    return;
                }
            }
        }
    }

    async fn fake_hub() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    /// A stand-in for the hub that accepts one client, answers its CONNECT, holds back the
    /// SUBACK of its inbox subscription until the client's first request has arrived, then
    /// sends, when given, `reply` to that request and then `suback`. It ends when the client
    /// disconnects.
    async fn withholding_hub(
        suback: SubscribeReasonCode,
        reply: Option<&'static str>,
    ) -> (u16, tokio::task::JoinHandle<()>) {
        let (listener, port) = fake_hub().await;
        let hub = tokio::spawn(async move {
            let (mut c, pkid) = FakeConn::login(&listener).await;
            let Some(req) = c.request().await else { return };
            if let Some(body) = reply {
                c.reply(req, body).await;
            }
            c.suback(pkid, suback).await;
            c.until_gone().await;
        });
        (port, hub)
    }

    fn plain_options(port: u16) -> ClientOptions {
        ClientOptions {
            client_id: "c1".into(),
            server: ServerUrl::Tcp {
                tls: false,
                host: "127.0.0.1".into(),
                port,
            },
            ca_cert: None,
            token_file: None,
            token: Some("token".into()),
            key_file: None,
            connect_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(20),
            keep_alive: Duration::from_secs(60),
            refresh_token: false,
            last_will: None,
        }
    }

    /// `connect` returns once the inbox SUBSCRIBE is sent: a request right after it is answered
    /// while the hub still holds back the SUBACK (waiting for it would never end here).
    #[tokio::test]
    async fn a_request_goes_out_before_the_inbox_suback() {
        let (port, hub) = withholding_hub(
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            Some(r#"{"result":{"n":7}}"#),
        )
        .await;
        let client = HubClient::connect(plain_options(port)).await.unwrap();
        let v: serde_json::Value = client.request("svc", "cap", "m", &Ack {}).await.unwrap();
        assert_eq!(v, serde_json::json!({"n": 7}));
        client.disconnect().await;
        hub.await.unwrap();
    }

    /// A refused inbox subscription fails the request waiting for a reply there, with the
    /// refusal, instead of leaving it to time out; later requests fail at once.
    #[tokio::test]
    async fn a_refused_inbox_fails_the_requests() {
        let (port, hub) = withholding_hub(SubscribeReasonCode::NotAuthorized, None).await;
        let client = HubClient::connect(plain_options(port)).await.unwrap();
        for _ in 0..2 {
            let r: Result<Ack, _> = client.request("svc", "cap", "m", &Ack {}).await;
            assert!(
                matches!(r, Err(RpcError::Client(ClientError::SubscribeDenied(ref f))) if f == "_INBOX/c1/+"),
                "{r:?}"
            );
        }
        client.disconnect().await;
        hub.await.unwrap();
    }

    /// A connection lost before the inbox SUBACK: the reconnect subscribes again and its
    /// outcome counts, so requests work on the new connection.
    #[tokio::test]
    async fn a_reconnect_before_the_inbox_suback_subscribes_again() {
        let (listener, port) = fake_hub().await;
        let (again_tx, again) = oneshot::channel();
        let hub = tokio::spawn(async move {
            // The first connection goes without acknowledging the subscription.
            drop(FakeConn::login(&listener).await);
            let (mut c, pkid) = FakeConn::login(&listener).await;
            c.suback(pkid, SubscribeReasonCode::Success(QoS::AtLeastOnce))
                .await;
            let _ = again_tx.send(());
            let Some(req) = c.request().await else { return };
            c.reply(req, r#"{"result":{}}"#).await;
            c.until_gone().await;
        });
        let client = HubClient::connect(plain_options(port)).await.unwrap();
        // Resubscribed: the state stays disconnected until the reconnect's subscriptions are
        // done.
        again.await.unwrap();
        let mut state = client.state();
        state
            .wait_for(|s| *s == ConnState::Connected)
            .await
            .unwrap();
        let r: Result<Ack, _> = client.request("svc", "cap", "m", &Ack {}).await;
        assert!(r.is_ok(), "{r:?}");
        client.disconnect().await;
        hub.await.unwrap();
    }

    #[test]
    fn a_typed_reply_reads_the_reply_wire_format() {
        let ok = serde_json::to_vec(&Reply::Ok(serde_json::json!({"s": "x"}))).unwrap();
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct S {
            s: String,
        }
        assert_eq!(
            decode_reply::<S>(&ok).unwrap().unwrap(),
            S { s: "x".into() }
        );
        let err = RemoteError::new(ErrorCode::NotFound, "no plugin named 'x'");
        let body = serde_json::to_vec(&Reply::Err(err.clone())).unwrap();
        assert_eq!(decode_reply::<S>(&body).unwrap().unwrap_err(), err);
        assert!(matches!(
            decode_reply::<S>(br#"{"result":{"t":1}}"#),
            Err(RpcError::Decode(_))
        ));
        assert!(matches!(decode_reply::<S>(b"[]"), Err(RpcError::Decode(_))));
    }

    #[test]
    fn gate_limits_never_drop_below_one() {
        let gate = Arc::new(Gate::new(0, 0));
        let p = gate.try_acquire("a").unwrap();
        assert!(gate.try_acquire("a").is_err());
        drop(p);
        lock(&gate.st).set_limits(10, 4);
        let held: Vec<Permit> = (0..4).map(|_| gate.try_acquire("a").unwrap()).collect();
        assert_eq!(gate.try_acquire("a").err().unwrap().0, Refusal::Sender);
        drop(held);
        assert_eq!(gate.counts(), (0, 0));
    }
}
