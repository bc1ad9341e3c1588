//! `heartbeat`: the example hivehub plugin, kept small so it can serve as a model.
//!
//! * Every interval it publishes an event on its thing `status`, named `beat`
//!   (`event/{clientID}/status/beat/{clientID}`), with a [`Beat`] payload. The first beat goes out
//!   right after connecting, so a watcher sees the plugin is alive without waiting an interval.
//! * It serves the capability `health` with the method `ping`, answered with a [`Pong`], and
//!   lets viewers and every role above call it.
//!
//! The binary (`src/main.rs`) only parses the command line and sets up logging; everything a
//! plugin does on the bus is here, in [`run`].

use hivehub_api::{ErrorCode, RemoteError, Role};
use hivehub_client::{ClientError, ConnState, HubClient, Request, RpcError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// Environment variable that sets the interval when `--interval` is not given, so the launcher
/// can configure the plugin without a command line.
pub const ENV_INTERVAL: &str = "HEARTBEAT_INTERVAL";
/// The interval when neither `--interval` nor [`ENV_INTERVAL`] is given.
pub const DEFAULT_INTERVAL: &str = "5s";
/// Shortest accepted interval: every beat is a QoS 1 publish to every subscriber, so a typo like
/// `1ms` must not flood the bus.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted interval: a heartbeat rarer than daily tells nobody anything, and the bound
/// keeps timer arithmetic far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The thing the beats are about (the plugin's own status).
pub const THING: &str = "status";
/// The name of the heartbeat event.
pub const EVENT_BEAT: &str = "beat";
/// The capability served, so monitors can check the plugin answers requests, not only publishes.
pub const CAPABILITY: &str = "health";
/// The one method of [`CAPABILITY`].
pub const METHOD_PING: &str = "ping";
/// Version of the [`Beat`] payload, so consumers can detect a change of its fields.
pub const SCHEMA_VERSION: u32 = 1;
/// Who may call [`CAPABILITY`]: every user role. Without registering them only admin could.
pub const CALLER_ROLES: [Role; 4] = [Role::Viewer, Role::Operator, Role::Manager, Role::Admin];

/// The payload of a heartbeat event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Beat {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Counts beats from 1; a gap means missed beats, a reset means the plugin restarted.
    pub seq: u64,
    /// Seconds since the plugin started.
    pub uptime_secs: u64,
}

/// The reply of `health/ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// Always true; present so a reply is self-describing.
    pub pong: bool,
    /// The sequence number of the last beat published (0 before the first).
    pub seq: u64,
    /// Seconds since the plugin started.
    pub uptime_secs: u64,
}

/// Parses an interval in the hub's one duration grammar (`500ms`, `5s`, `1.5s`, `1m`, or whole
/// seconds; see [`hivehub_api::units::parse_duration`]), between 100 ms and 24 h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = hivehub_api::units::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_INTERVAL {
        return Err(format!("interval '{s}' is longer than the maximum of 24h"));
    }
    if d < MIN_INTERVAL {
        return Err(format!(
            "interval '{s}' is shorter than the minimum of 100ms"
        ));
    }
    Ok(d)
}

/// The plugin's state, shared by the beat loop and the request handler.
#[derive(Debug, Clone)]
struct Pulse {
    started: Instant,
    seq: Arc<AtomicU64>,
}

impl Pulse {
    fn new() -> Pulse {
        Pulse {
            started: Instant::now(),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The next beat; takes a new sequence number.
    fn next_beat(&self) -> Beat {
        Beat {
            schema_version: SCHEMA_VERSION,
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            uptime_secs: self.uptime_secs(),
        }
    }

    fn pong(&self) -> Pong {
        Pong {
            pong: true,
            seq: self.seq.load(Ordering::SeqCst),
            uptime_secs: self.uptime_secs(),
        }
    }

    /// Answers a request to [`CAPABILITY`].
    fn handle(&self, r: &Request) -> Result<serde_json::Value, RemoteError> {
        match r.method.as_str() {
            METHOD_PING => serde_json::to_value(self.pong())
                .map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string())),
            _ => Err(r.unknown_method()),
        }
    }
}

async fn publish_beat(client: &HubClient, pulse: &Pulse) -> Result<(), ClientError> {
    let beat = pulse.next_beat();
    // The SDK builds the topic from the client ID, so the plugin never spells one out.
    client
        .publish_event(THING, EVENT_BEAT, &beat, false)
        .await?;
    tracing::debug!(seq = beat.seq, "beat");
    Ok(())
}

/// Publishes a beat every `interval` until the client is closed. Beats are skipped, not queued,
/// while the connection is down: a late beat would claim liveness at a time it was not seen.
async fn beat_loop(client: HubClient, pulse: Pulse, interval: Duration) {
    let state = client.state();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = state.borrow().clone();
        match now {
            ConnState::Connected => {}
            ConnState::Closed => return,
            other => {
                tracing::debug!(state = ?other, "not connected; beat skipped");
                continue;
            }
        }
        match publish_beat(&client, &pulse).await {
            Ok(()) => {}
            Err(ClientError::Closed) => return,
            Err(e) => tracing::warn!("cannot publish beat: {e}"),
        }
    }
}

/// `set_permissions` fails with an [`RpcError`] but a plugin's setup returns a [`ClientError`];
/// keep the cause readable on the way.
fn setup_error(what: &str, e: RpcError) -> ClientError {
    match e {
        RpcError::Client(c) => c,
        other => ClientError::Config(format!("{what}: {other}")),
    }
}

/// Runs the plugin until SIGTERM or SIGINT, with the connection settings the launcher passes in
/// the environment (`HIVEHUB_HOME`, `HIVEHUB_SERVER`, `HIVEHUB_CLIENT_ID`). Returns `Ok` after a
/// clean stop, and an error if it cannot connect or set up.
pub async fn run(interval: Duration) -> Result<(), ClientError> {
    let pulse = Pulse::new();
    hivehub_client::plugin::run(move |client| setup(client, pulse, interval)).await
}

/// What the plugin does once connected, before it reports ready: the first beat at once, then
/// the capability and who may call it, then the beat loop in the background.
async fn setup(client: HubClient, pulse: Pulse, interval: Duration) -> Result<(), ClientError> {
    publish_beat(&client, &pulse).await?;
    let p = pulse.clone();
    client
        .serve(CAPABILITY, move |r: Request| {
            std::future::ready(p.handle(&r))
        })
        .await?;
    client
        .set_permissions(CAPABILITY, &CALLER_ROLES)
        .await
        .map_err(|e| setup_error(&format!("cannot register who may call '{CAPABILITY}'"), e))?;
    tracing::info!(?interval, "heartbeat running");
    tokio::spawn(beat_loop(client, pulse, interval));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_intervals() {
        let ok = [
            ("500ms", 500),
            ("5s", 5_000),
            ("1m", 60_000),
            ("2h", 7_200_000),
            ("5", 5_000),
            (" 7s ", 7_000),
            ("100ms", 100),
            ("24h", 86_400_000),
            ("1.5s", 1_500),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_interval(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in [
            "", "s", "ms", "-1s", "0.5", "5x", "5 sec", "1d", "0", "0s", "99ms", "25h",
        ] {
            assert!(parse_interval(s).is_err(), "{s} was accepted");
        }
        let e = parse_interval("99999999999999999999999999999999s").unwrap_err();
        assert!(e.contains("too many digits"), "{e}");
        let e = parse_interval("18446744073709551615m").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let e = parse_interval("25h").unwrap_err();
        assert!(e.contains("maximum"), "{e}");
        let e = parse_interval("5x").unwrap_err();
        assert!(e.contains("500ms"), "{e}");
    }

    #[test]
    fn default_interval_parses() {
        assert_eq!(parse_interval(DEFAULT_INTERVAL), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn beat_wire_format() {
        let b = Beat {
            schema_version: SCHEMA_VERSION,
            seq: 3,
            uptime_secs: 12,
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({"schemaVersion": 1, "seq": 3, "uptimeSecs": 12})
        );
    }

    fn request(method: &str) -> Request {
        Request {
            sender: "alice".into(),
            capability: CAPABILITY.into(),
            method: method.into(),
            payload: Default::default(),
        }
    }

    #[test]
    fn seq_counts_and_ping_reports_the_last() {
        let p = Pulse::new();
        let v = p.handle(&request(METHOD_PING)).unwrap();
        assert_eq!(v["pong"], true);
        assert_eq!(v["seq"], 0);
        assert_eq!(p.next_beat().seq, 1);
        assert_eq!(p.next_beat().seq, 2);
        let v = p.handle(&request(METHOD_PING)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pong": true, "seq": 2, "uptimeSecs": 0})
        );
    }

    #[test]
    fn other_methods_are_unknown() {
        let e = Pulse::new().handle(&request("reboot")).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownMethod);
    }
}
