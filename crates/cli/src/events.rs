//! `hubcli launcher events`: the launcher's events and retained plugin statuses.

use crate::format::{self, StatusEventJson};
use crate::{line, now_ms, CliError};
use hivehub_api::launcher::{events, LauncherEvent, PluginInfo};
use hivehub_client::{ClientError, ConnState, EventMessage, HubClient};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// How long a snapshot waits for the retained statuses after subscribing.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(1);
/// A snapshot ends early once the retained messages stop coming for this long.
const SNAPSHOT_QUIET: Duration = Duration::from_millis(300);

pub(crate) async fn run(
    client: &HubClient,
    launcher: &str,
    plugin: Option<&str>,
    follow: bool,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if !follow {
        let rx = client
            .subscribe_events(Some(launcher), plugin, None)
            .await?;
        return snapshot(rx, launcher, as_json, out).await;
    }
    // Handlers first: a ^C right after start must end the command cleanly (exit 0), not kill it.
    let setup = |source| CliError::Setup {
        what: "cannot handle signals",
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    let mut state = client.state();
    let mut rx = client
        .subscribe_events(Some(launcher), plugin, None)
        .await?;
    let mut lost = false;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            m = rx.recv() => match m {
                Some(m) => {
                    if let Some(text) = render(&m, as_json) {
                        line(out, &text)?;
                        out.flush().map_err(crate::error::output)?;
                    }
                }
                None => return Err(ClientError::Closed.into()),
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return Err(ClientError::Closed.into());
                }
                let s = state.borrow_and_update().clone();
                match s {
                    ConnState::Disconnected(why) if !lost => {
                        lost = true;
                        eprintln!("hubcli: connection to the hub lost ({why}); reconnecting");
                    }
                    ConnState::Connected if lost => {
                        lost = false;
                        eprintln!("hubcli: reconnected");
                    }
                    ConnState::Closed => return Err(ClientError::Closed.into()),
                    _ => {}
                }
            }
        }
    }
}

/// Prints the current status of each plugin (the retained messages), sorted by name.
async fn snapshot(
    mut rx: tokio::sync::mpsc::Receiver<EventMessage>,
    launcher: &str,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    let mut last: Option<Instant> = None;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let until = match last {
            Some(t) => deadline.min(t + SNAPSHOT_QUIET),
            None => deadline,
        };
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(m)) => {
                // Only statuses describe the present; a live event in this window is history.
                if m.topic.name != events::STATUS || m.payload.is_empty() {
                    continue;
                }
                if let Some(text) = render(&m, as_json) {
                    seen.insert(m.topic.thing.clone(), text);
                    last = Some(Instant::now());
                }
            }
            Ok(None) => return Err(ClientError::Closed.into()),
            Err(_) => break,
        }
    }
    if seen.is_empty() {
        eprintln!("hubcli: no plugin status from launcher '{launcher}' (is it running?)");
    }
    for text in seen.values() {
        line(out, text)?;
    }
    Ok(())
}

/// One message as an output line (text or JSON); `None`, with a warning on stderr, for a
/// payload that does not decode.
fn render(m: &EventMessage, as_json: bool) -> Option<String> {
    let launcher = &m.topic.agent;
    let plugin = &m.topic.thing;
    if plugin == hivehub_api::cluster::LAUNCHER_THING {
        // The launcher's own shared status (see `ls --all`), not a plugin's.
        return None;
    }
    let warn = |e: &dyn std::fmt::Display| {
        eprintln!(
            "hubcli: warning: cannot decode the message on {}: {e}",
            m.topic
        );
        None
    };
    if m.topic.name == events::STATUS {
        // An empty retained message means the launcher withdrew the plugin's status.
        if m.payload.is_empty() {
            return Some(if as_json {
                serde_json::json!({"event": "status", "launcherID": launcher, "plugin": plugin, "status": null})
                    .to_string()
            } else {
                format!(
                    "{} {launcher} {plugin} status removed",
                    format::timestamp(now_ms())
                )
            });
        }
        let info: PluginInfo = match m.json() {
            Ok(i) => i,
            Err(e) => return warn(&e),
        };
        return Some(if as_json {
            let j = StatusEventJson {
                event: events::STATUS,
                launcher_id: launcher,
                plugin,
                status: &info,
            };
            match serde_json::to_string(&j) {
                Ok(s) => s,
                Err(e) => return warn(&e),
            }
        } else {
            format::status_event_line(now_ms(), launcher, plugin, &info)
        });
    }
    // Other events: JSON mode passes the payload through (newer fields included), text mode
    // needs the known fields.
    let v: serde_json::Value = match m.json() {
        Ok(v) => v,
        Err(e) => return warn(&e),
    };
    let e: LauncherEvent = match serde_json::from_value(v.clone()) {
        Ok(e) => e,
        Err(e) => return warn(&e),
    };
    Some(if as_json {
        v.to_string()
    } else {
        format::event_line(&e)
    })
}
