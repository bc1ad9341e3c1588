//! The optional HTTP listener (`httpListen`, loopback only): Prometheus metrics and the live
//! status page.
//!
//! Every plugin and any web page in a local browser can reach a loopback port, so everything
//! that shows data needs a hub login:
//!
//! * `GET /healthz`: `ok`, nothing else; the only route without a login.
//! * `GET /`: a self-contained status page (inline CSS and JS, nothing fetched from elsewhere).
//!   It embeds no data: it shows a login form, then loads the data below with the session.
//! * `GET /api/status`: every plugin of this launcher with its recent resource history, every
//!   launcher of the hub with its plugins (`launchers`, the `hubcli launcher ls --all` view:
//!   [`peers`]), and who is logged in.
//! * `GET /events`: server-sent events: `event` (a lifecycle event of this launcher, without
//!   log lines), `status` (a plugin of this launcher changed state) and, every sample interval,
//!   `snapshot` (every plugin and every launcher, for CPU and memory). Ends when the session
//!   does.
//! * `GET /metrics`: the Prometheus text format ([`metrics`]), with the session cookie or
//!   `Authorization: Bearer <token>` or `Bearer <clientID>:<token>`, where the token is a hub
//!   token (`certs/{ID}.token`; the ID defaults to the token's `sub`). The bearer is checked by
//!   logging in to the hub with it, remembered for a minute ([`session::Verified`]).
//! * `POST /login` (`{clientID, token}` as JSON or a form), `POST /logout`,
//!   `POST /api/start/{name}`, `POST /api/stop/{name}` (`?launcher=ID` for a plugin of another
//!   launcher): see [`session`]. Start and stop go to the launcher over the bus as the
//!   logged-in user, so the core's ACL applies to them.
//!
//! Without a session, `/api/status` and `/events` answer 401, as does `/metrics` without a
//! valid bearer token. A login (form or bearer) must be a hub token of a user role (viewer or
//! higher), else 403: service, device and launcher credentials are for the bus, and a key
//! assertion is refused because its role claim is not checked by the hub. Failed logins are
//! throttled per client ID and per address (429 with `Retry-After`, see [`session::Throttle`]).
//!
//! Every request must name this listener in `Host` (its address, or `localhost`, `127.0.0.1`
//! or `[::1]` with its port), else 421: a foreign name means a DNS rebinding page in a browser.
//! Every POST must carry `X-Hivehub: 1` (which a cross-site form cannot set) besides the
//! SameSite=Strict session cookie. Errors are JSON: `{"error": "..."}`.

mod metrics;
mod peers;
mod session;

pub use metrics::render as render_metrics;

use crate::supervisor::{Notice, Supervisor};
use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use hivehub_api::cluster::LauncherStatus;
use hivehub_api::launcher::{methods, NameReq, PluginInfo, ResourceSample, CAP_MANAGE};
use hivehub_api::time::now_ms;
use hivehub_api::{ErrorCode, Role};
use hivehub_auth::token::{is_assertion, peek_claims, peek_hub_claims};
use hivehub_client::{ClientError, ClientOptions, HubClient, RpcError};
use hivehub_home::Home;
use peers::Peers;
use serde::{Deserialize, Serialize};
use session::{Sessions, Throttle, Verified, Who};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const INDEX_HTML: &str = include_str!("web/index.html");
/// The header every POST must carry (CSRF protection).
pub const CSRF_HEADER: &str = "x-hivehub";
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";
/// How long the first `/api/status` of a session waits for the launchers' retained statuses.
const FIRST_STATUSES: Duration = Duration::from_millis(500);
/// Hub logins in progress at once; more wait, so a burst cannot open many hub connections
/// before its first failures lock it out.
const CONCURRENT_LOGINS: usize = 4;

#[derive(Clone)]
struct App {
    sup: Supervisor,
    home: Home,
    sessions: Sessions,
    verified: Verified,
    throttle: Throttle,
    logins: Arc<Semaphore>,
    hosts: Arc<Vec<String>>,
}

/// Serves `/metrics` and the status page on `addr` until the launcher shuts down (then open
/// event streams end, requests in flight finish and the sessions' bus connections close);
/// returns the bound address.
pub async fn serve(addr: SocketAddr, sup: Supervisor, home: Home) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let stop = sup.cancelled();
    let tasks = sup.tracker();
    let sessions = Sessions::new(tasks.clone());
    let app = router(sup, home, bound, sessions.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    tasks.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!("the HTTP listener stopped: {e}");
        }
        sessions.close_all();
    });
    Ok(bound)
}

/// The `Host` values that name the listener on `bound` (lower case).
fn allowed_hosts(bound: SocketAddr) -> Vec<String> {
    let port = bound.port();
    let mut hosts = vec![
        bound.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    if port == 80 {
        // A browser leaves out the default port.
        let ip = match bound.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        hosts.extend([ip, "localhost".into(), "127.0.0.1".into(), "[::1]".into()]);
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

fn router(sup: Supervisor, home: Home, bound: SocketAddr, sessions: Sessions) -> Router {
    let app = App {
        sup,
        home,
        sessions,
        verified: Verified::default(),
        throttle: Throttle::default(),
        logins: Arc::new(Semaphore::new(CONCURRENT_LOGINS)),
        hosts: Arc::new(allowed_hosts(bound)),
    };
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .route("/events", get(events))
        .route("/api/status", get(status))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/start/{name}", post(start))
        .route("/api/stop/{name}", post(stop))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(app.clone(), check_host))
        .with_state(app)
}

/// Refuses (421) a request whose `Host` (or absolute URI) names anything but this listener.
async fn check_host(State(app): State<App>, req: Request, next: Next) -> Response {
    let allowed = |h: &str| app.hosts.iter().any(|a| a.eq_ignore_ascii_case(h));
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_ok = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().is_ok_and(allowed),
        _ => false,
    };
    let uri_ok = req.uri().authority().is_none_or(|a| allowed(a.as_str()));
    if host_ok && uri_ok {
        next.run(req).await
    } else {
        error(
            StatusCode::MISDIRECTED_REQUEST,
            "this listener does not serve that Host",
        )
    }
}

/// An error answer: `{"error": msg}`.
fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

fn log_in_first() -> Response {
    error(StatusCode::UNAUTHORIZED, "log in first")
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// The client ID and token of an `Authorization: Bearer` header: `<ID>:<token>`, or the token
/// alone with the ID from its `sub` (empty when unreadable; the login then fails).
fn bearer(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, cred) = v.split_once(' ')?;
    let cred = cred.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || cred.is_empty() {
        return None;
    }
    Some(match cred.split_once(':') {
        Some((id, token)) => (id.trim().to_string(), token.trim().to_string()),
        None => {
            let id = peek_claims(cred).map(|c| c.sub).unwrap_or_default();
            (id, cred.to_string())
        }
    })
}

async fn metrics_handler(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if app.session(&headers).is_none() {
        let mut denied = match bearer(&headers) {
            None => error(
                StatusCode::UNAUTHORIZED,
                "log in, or send Authorization: Bearer <token>",
            ),
            Some((id, token)) if app.verified.contains(&id, &token) => return render(&app),
            Some((id, token)) => match app.log_in(&id, &token, peer.ip()).await {
                Ok(client) => {
                    let exp = peek_claims(&token).map(|c| c.exp).unwrap_or(0);
                    let left = exp.saturating_sub(hivehub_auth::unix_now());
                    app.verified
                        .insert(&id, &token, Instant::now() + Duration::from_secs(left));
                    app.sup
                        .tracker()
                        .spawn(async move { client.disconnect().await });
                    return render(&app);
                }
                Err(r) => r,
            },
        };
        if denied.status() == StatusCode::UNAUTHORIZED {
            denied.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hivehub\""),
            );
        }
        return denied;
    }
    render(&app)
}

fn render(app: &App) -> Response {
    match metrics::render(&app.sup) {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")),
    }
}

/// The launcher's own usage.
#[derive(Serialize)]
struct SelfUsage {
    cpu: f64,
    rss: u64,
}

/// Every plugin at one moment.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    #[serde(rename = "launcherID")]
    launcher_id: String,
    time: u64,
    bus_connected: bool,
    /// The core plugin's name, when the launcher runs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    core: Option<String>,
    #[serde(rename = "self", skip_serializing_if = "Option::is_none")]
    self_usage: Option<SelfUsage>,
    sample_interval_ms: u64,
    /// This launcher's plugins.
    plugins: Vec<PluginInfo>,
    /// Every launcher of the hub with its plugins, this one first ([`peers::launchers`]).
    launchers: Vec<LauncherStatus>,
}

fn snapshot(sup: &Supervisor, peers: &Peers) -> Snapshot {
    Snapshot {
        launcher_id: sup.config().id.clone(),
        time: now_ms(),
        bus_connected: sup.bus_connected(),
        core: sup.core_name().map(str::to_string),
        self_usage: sup.self_usage().map(|(cpu, rss)| SelfUsage { cpu, rss }),
        sample_interval_ms: sup.config().sample_interval.as_millis() as u64,
        plugins: sup.list(),
        launchers: peers::launchers(sup, peers),
    }
}

/// `GET /api/status`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPage {
    #[serde(flatten)]
    snapshot: Snapshot,
    /// Recent resource samples by plugin of this launcher, oldest first.
    history: BTreeMap<String, Vec<ResourceSample>>,
    /// The logged-in client ID.
    user: String,
}

async fn status(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(s) = app.session(&headers) else {
        return log_in_first();
    };
    s.peers.first(FIRST_STATUSES).await;
    let snapshot = snapshot(&app.sup, &s.peers);
    let history = snapshot
        .plugins
        .iter()
        .filter_map(|p| Some((p.name.clone(), app.sup.history(&p.name).ok()?)))
        .collect();
    Json(StatusPage {
        snapshot,
        history,
        user: s.id,
    })
    .into_response()
}

fn sse_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(sid) = session::from_headers(&headers).filter(|sid| app.sessions.alive(sid)) else {
        return log_in_first();
    };
    let Some(peers) = app.sessions.get(&sid).map(|s| s.peers) else {
        return log_in_first();
    };
    let rx = app.sup.notices();
    let stop = app.sup.cancelled();
    let every = app
        .sup
        .config()
        .sample_interval
        .max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((rx, tick, app), move |(mut rx, mut tick, app)| {
        let sid = sid.clone();
        let stop = stop.clone();
        let peers = peers.clone();
        async move {
            let ev = tokio::select! {
                // The launcher shuts down: the stream ends so the server can.
                _ = stop.cancelled() => return None,
                n = rx.recv() => match n? {
                    // The page shows no log lines; they stay on the bus and in the log files.
                    Notice::Event(mut e) => {
                        e.log_tail.clear();
                        sse_event("event", &e)
                    }
                    Notice::Status(info) => sse_event("status", &info),
                    // A plugin left the list: the page redraws from a snapshot.
                    Notice::Gone(_) => sse_event("snapshot", &snapshot(&app.sup, &peers)),
                },
                _ = tick.tick() => sse_event("snapshot", &snapshot(&app.sup, &peers)),
            };
            // Logged out, evicted or expired: the stream ends (and a reconnect gets 401).
            if !app.sessions.alive(&sid) {
                return None;
            }
            Some((Ok::<_, Infallible>(ev), (rx, tick, app)))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Rejects a POST without the custom header that only the page's own scripts send.
fn csrf_rejected(headers: &HeaderMap) -> Option<Response> {
    match headers.get(CSRF_HEADER) {
        Some(v) if v == "1" => None,
        _ => Some(error(
            StatusCode::FORBIDDEN,
            "missing the X-Hivehub: 1 header",
        )),
    }
}

#[derive(Deserialize)]
struct Login {
    #[serde(rename = "clientID")]
    client_id: String,
    token: String,
}

async fn read_login(req: Request) -> Result<Login, (StatusCode, String)> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        Json::<Login>::from_request(req, &())
            .await
            .map(|Json(l)| l)
            .map_err(|e| (e.status(), e.body_text()))
    } else {
        Form::<Login>::from_request(req, &())
            .await
            .map(|Form(l)| l)
            .map_err(|e| (e.status(), e.body_text()))
    }
}

/// Why a login failed.
enum Failure {
    /// Not a valid login of this hub (counted by the throttle): 401.
    Refused(String),
    /// A valid-looking token of a role that may not log in here (counted): 403.
    Forbidden(String),
    /// The client ID is not valid (counted): 400.
    BadRequest(String),
    /// The hub could not be asked (not counted): 502.
    Unavailable(String),
}

impl App {
    /// The hub the users log in to: the local core's, else the configured `serverURL`.
    fn hub_url(&self) -> Option<String> {
        self.sup
            .core_url()
            .or_else(|| self.sup.config().server_url.clone())
    }

    fn session(&self, headers: &HeaderMap) -> Option<session::Session> {
        session::from_headers(headers).and_then(|sid| self.sessions.get(&sid))
    }

    /// Logs in to the hub as `id` with `token` from `ip`, throttled; the connected client, or
    /// the answer to give.
    async fn log_in(&self, id: &str, token: &str, ip: IpAddr) -> Result<HubClient, Response> {
        let mut keys = vec![Who::Addr(ip)];
        if hivehub_api::validate_id(id).is_ok() {
            keys.push(Who::Client(id.to_string()));
        }
        self.throttle.check(&keys).map_err(too_many)?;
        let _permit = self
            .logins
            .acquire()
            .await
            .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
        // Failures of the same burst may have locked it while this one waited.
        self.throttle.check(&keys).map_err(too_many)?;
        let (code, msg) = match self.try_log_in(id, token.trim()).await {
            Ok(client) => return Ok(client),
            Err(Failure::Unavailable(m)) => return Err(error(StatusCode::BAD_GATEWAY, m)),
            Err(Failure::Refused(m)) => (StatusCode::UNAUTHORIZED, m),
            Err(Failure::Forbidden(m)) => (StatusCode::FORBIDDEN, m),
            Err(Failure::BadRequest(m)) => (StatusCode::BAD_REQUEST, m),
        };
        tracing::info!(%id, %ip, "web login refused: {msg}");
        self.throttle.failed(&keys);
        Err(error(code, msg))
    }

    async fn try_log_in(&self, id: &str, token: &str) -> Result<HubClient, Failure> {
        let peeked =
            peek_claims(token).map_err(|_| Failure::Refused("not a hub token".to_string()))?;
        hivehub_api::validate_id(id).map_err(|e| Failure::BadRequest(e.to_string()))?;
        if is_assertion(&peeked.iss) {
            return Err(Failure::Refused(format!(
                "a key assertion is not accepted here; give the hub token (certs/{id}.token)"
            )));
        }
        let claims =
            peek_hub_claims(token).map_err(|_| Failure::Refused("not a hub token".to_string()))?;
        if claims.sub != id {
            return Err(Failure::Refused(format!("the token is not that of {id}")));
        }
        // The hub refuses a hub token whose role is not the client's current one, so once the
        // login succeeds this role is the client's.
        let may = match (claims.role.user_rank(), Role::Viewer.user_rank()) {
            (Some(rank), Some(viewer)) => rank >= viewer,
            _ => false,
        };
        if !may {
            return Err(Failure::Forbidden(format!(
                "a client of role {} may not log in here; a user role (viewer or higher) may",
                claims.role
            )));
        }
        let mut opts = ClientOptions::from_home(&self.home, id, self.hub_url().as_deref())
            .map_err(|e| Failure::BadRequest(e.to_string()))?;
        opts.token = Some(token.to_string());
        opts.token_file = None;
        opts.key_file = None;
        opts.refresh_token = false;
        opts.connect_timeout = Duration::from_secs(5);
        match HubClient::connect(opts).await {
            Ok(c) => Ok(c),
            Err(e @ ClientError::LoginRefused { .. }) => Err(Failure::Refused(e.to_string())),
            Err(e) => Err(Failure::Unavailable(e.to_string())),
        }
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up).
fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed logins; try again in {secs} s"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if let Some(r) = csrf_rejected(req.headers()) {
        return r;
    }
    let l = match read_login(req).await {
        Ok(l) => l,
        Err((code, msg)) => return error(code, msg),
    };
    if l.token.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "no token given");
    }
    let client = match app.log_in(&l.client_id, &l.token, peer.ip()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    tracing::info!(id = %l.client_id, "status page login");
    // The other launchers, as this user may see them.
    let peers = match Peers::follow(&client, &app.sup.tracker(), app.sup.cancelled()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(id = %l.client_id, "the status page cannot follow the other launchers: {e}");
            Peers::default()
        }
    };
    let sid = app.sessions.insert(l.client_id.clone(), client, peers);
    let mut resp = Json(serde_json::json!({ "clientID": l.client_id })).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&sid)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(r) = csrf_rejected(&headers) {
        return r;
    }
    if let Some(s) = session::from_headers(&headers).and_then(|sid| app.sessions.remove(&sid)) {
        tracing::info!(id = %s.id, "status page logout");
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn rpc_status(e: &RpcError) -> StatusCode {
    match e {
        RpcError::Remote(r) => match r.code {
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::BadRequest | ErrorCode::UnknownMethod | ErrorCode::TooLarge => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            // Too many requests in flight at the launcher: the same request may be retried.
            ErrorCode::Busy => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        RpcError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `?launcher=ID` of the start and stop routes: the launcher the plugin belongs to (default:
/// this one).
#[derive(Deserialize)]
struct Target {
    launcher: Option<String>,
}

/// Sends `manage/{method}` for `name` to this launcher, or to the one `target` names, as the
/// logged-in user.
async fn manage(
    app: App,
    headers: HeaderMap,
    target: Target,
    name: String,
    method: &str,
) -> Response {
    if let Some(r) = csrf_rejected(&headers) {
        return r;
    }
    let Some(s) = app.session(&headers) else {
        return log_in_first();
    };
    let id = match target.launcher.filter(|l| !l.is_empty()) {
        Some(l) => match hivehub_api::validate_id(&l) {
            Ok(()) => l,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("launcher: {e}")),
        },
        None => app.sup.config().id.clone(),
    };
    let r: Result<PluginInfo, RpcError> = s
        .client
        .request(&id, CAP_MANAGE, method, &NameReq { name })
        .await;
    match r {
        Ok(info) => Json(info).into_response(),
        Err(e) => error(rpc_status(&e), e.to_string()),
    }
}

async fn start(
    State(app): State<App>,
    headers: HeaderMap,
    Query(target): Query<Target>,
    Path(name): Path<String>,
) -> Response {
    manage(app, headers, target, name, methods::START_PLUGIN).await
}

async fn stop(
    State(app): State<App>,
    headers: HeaderMap,
    Query(target): Query<Target>,
    Path(name): Path<String>,
) -> Response {
    manage(app, headers, target, name, methods::STOP_PLUGIN).await
}
