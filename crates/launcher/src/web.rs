//! The optional HTTP listener (`httpListen`, loopback only): Prometheus metrics and the live
//! status page.
//!
//! * `GET /metrics`: the Prometheus text format ([`metrics`]).
//! * `GET /`: a self-contained status page (inline CSS and JS, nothing fetched from elsewhere).
//! * `GET /api/status`: every plugin with its recent resource history, and who is logged in.
//! * `GET /events`: server-sent events: `event` (a lifecycle event), `status` (a plugin's
//!   changed state) and, every sample interval, `snapshot` (every plugin, for CPU and memory).
//! * `POST /login` (`{clientID, token}` as JSON or a form), `POST /logout`,
//!   `POST /api/start/{name}`, `POST /api/stop/{name}`: see [`session`]. Start and stop go to the
//!   launcher over the bus as the logged-in user, so the core's ACL applies to them.
//!
//! Every POST must carry `X-Hivehub: 1` (which a cross-site form cannot set) besides the
//! SameSite=Strict session cookie.

mod metrics;
mod session;

pub use metrics::render as render_metrics;

use crate::supervisor::{Notice, Supervisor};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use futures_util::Stream;
use hivehub_api::launcher::{methods, NameReq, PluginInfo, ResourceSample, CAP_MANAGE};
use hivehub_api::ErrorCode;
use hivehub_client::{ClientOptions, HubClient, RpcError};
use hivehub_home::Home;
use serde::{Deserialize, Serialize};
use session::Sessions;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INDEX_HTML: &str = include_str!("web/index.html");
/// The header every POST must carry (CSRF protection).
pub const CSRF_HEADER: &str = "x-hivehub";
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

#[derive(Clone)]
struct App {
    sup: Supervisor,
    home: Home,
    sessions: Sessions,
}

/// Serves `/metrics` and the status page on `addr` until the process ends; returns the bound
/// address.
pub async fn serve(addr: SocketAddr, sup: Supervisor, home: Home) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(sup, home);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the HTTP listener stopped: {e}");
        }
    });
    Ok(bound)
}

fn router(sup: Supervisor, home: Home) -> Router {
    let app = App {
        sup,
        home,
        sessions: Sessions::default(),
    };
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_handler))
        .route("/events", get(events))
        .route("/api/status", get(status))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/start/{name}", post(start))
        .route("/api/stop/{name}", post(stop))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
        .with_state(app)
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, msg.into()).into_response()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

async fn metrics_handler(State(app): State<App>) -> Response {
    match metrics::render(&app.sup) {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")),
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
    plugins: Vec<PluginInfo>,
}

fn snapshot(sup: &Supervisor) -> Snapshot {
    Snapshot {
        launcher_id: sup.config().id.clone(),
        time: now_ms(),
        bus_connected: sup.bus_connected(),
        core: sup.core_name().map(str::to_string),
        self_usage: sup.self_usage().map(|(cpu, rss)| SelfUsage { cpu, rss }),
        sample_interval_ms: sup.config().sample_interval.as_millis() as u64,
        plugins: sup.list(),
    }
}

/// `GET /api/status`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPage {
    #[serde(flatten)]
    snapshot: Snapshot,
    /// Recent resource samples by plugin, oldest first.
    history: BTreeMap<String, Vec<ResourceSample>>,
    /// The logged-in client ID, if any.
    user: Option<String>,
}

async fn status(State(app): State<App>, headers: HeaderMap) -> Json<StatusPage> {
    let snapshot = snapshot(&app.sup);
    let history = snapshot
        .plugins
        .iter()
        .filter_map(|p| Some((p.name.clone(), app.sup.history(&p.name).ok()?)))
        .collect();
    let user = session::from_headers(&headers)
        .and_then(|sid| app.sessions.get(&sid))
        .map(|s| s.id);
    Json(StatusPage {
        snapshot,
        history,
        user,
    })
}

fn sse_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.sup.notices();
    let every = app
        .sup
        .config()
        .sample_interval
        .max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream =
        futures_util::stream::unfold((rx, tick, app.sup), |(mut rx, mut tick, sup)| async move {
            let ev = tokio::select! {
                n = rx.recv() => match n? {
                    Notice::Event(e) => sse_event("event", &e),
                    Notice::Status(info) => sse_event("status", &info),
                },
                _ = tick.tick() => sse_event("snapshot", &snapshot(&sup)),
            };
            Some((Ok(ev), (rx, tick, sup)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Rejects a POST without the custom header that only the page's own scripts send.
fn csrf_rejected(headers: &HeaderMap) -> Option<Response> {
    match headers.get(CSRF_HEADER) {
        Some(v) if v == "1" => None,
        _ => Some(text(
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
}

async fn login(State(app): State<App>, req: Request) -> Response {
    if let Some(r) = csrf_rejected(req.headers()) {
        return r;
    }
    let l = match read_login(req).await {
        Ok(l) => l,
        Err((code, msg)) => return text(code, msg),
    };
    let token = l.token.trim().to_string();
    if token.is_empty() {
        return text(StatusCode::BAD_REQUEST, "no token given");
    }
    let mut opts = match ClientOptions::from_home(&app.home, &l.client_id, app.hub_url().as_deref())
    {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    opts.token = Some(token);
    opts.token_file = None;
    opts.key_file = None;
    opts.refresh_token = false;
    opts.connect_timeout = Duration::from_secs(5);
    let client = match HubClient::connect(opts).await {
        Ok(c) => c,
        Err(e @ hivehub_client::ClientError::LoginRefused { .. }) => {
            tracing::info!(id = %l.client_id, "status page login refused");
            return text(StatusCode::UNAUTHORIZED, e.to_string());
        }
        Err(e) => return text(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    tracing::info!(id = %l.client_id, "status page login");
    let sid = app.sessions.insert(l.client_id.clone(), client);
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
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        RpcError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Sends `manage/{method}` for `name` to this launcher as the logged-in user.
async fn manage(app: App, headers: HeaderMap, name: String, method: &str) -> Response {
    if let Some(r) = csrf_rejected(&headers) {
        return r;
    }
    let Some(s) = app.session(&headers) else {
        return text(StatusCode::UNAUTHORIZED, "log in first");
    };
    let id = &app.sup.config().id;
    let r: Result<PluginInfo, RpcError> = s
        .client
        .request(id, CAP_MANAGE, method, &NameReq { name })
        .await;
    match r {
        Ok(info) => Json(info).into_response(),
        Err(e) => text(rpc_status(&e), e.to_string()),
    }
}

async fn start(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    manage(app, headers, name, methods::START_PLUGIN).await
}

async fn stop(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    manage(app, headers, name, methods::STOP_PLUGIN).await
}
