//! The hub's launchers as the status page shows them: the `hubcli launcher ls --all` view.
//!
//! Every launcher publishes its [`LauncherStatus`] retained on
//! `event/{launcherID}/_launcher/status/{launcherID}` at start, when a launcher-level fact in it
//! changed (checked every `statusInterval`) and at least every
//! [`STATUS_REFRESH`](crate::cluster::STATUS_REFRESH) (its Last Will is the same message with
//! `online: false`). A change of one of its plugins is not sent as a new full status: it goes
//! out as that plugin's retained status, a [`PluginInfo`] on
//! `event/{launcherID}/{plugin}/status/{launcherID}` (an empty one when the plugin left the
//! list). Each page session follows both through its own hub connection, as the logged-in user,
//! so the page shows exactly what that user may subscribe to ([`Peers::follow`]): the launchers'
//! statuses, and for each launcher heard, its plugins' statuses, which it applies to the list
//! of that launcher's last full status. Both arrive at once at subscription (retained) and
//! then as each launcher publishes them.
//!
//! A plugin's status is the newest word on its state: it is published at every change, while a
//! full status may be up to `STATUS_REFRESH` old. So a plugin status heard stays applied over
//! every full status that arrives after it but was retained (delivered at (re)subscription,
//! built earlier), and over a live one built before the plugin's last start or stop; a live
//! full status otherwise replaces it (its figures are newer). A retained plugin status, which
//! the hub sends after the subscription is made, may arrive after live ones published since:
//! it does not replace one as new. Where a movable plugin that does not run there runs is
//! taken from the full status (which is sent again when that changes), not from a plugin
//! status. An offline launcher lists no plugins whatever their retained statuses say.
//!
//! [`launchers`] is what `/api/status` and the `snapshot` events carry: this launcher first,
//! built live from its supervisor, then the others by ID as last heard. As in `ls --all`, a
//! movable plugin is listed only under the launcher that runs it.

use crate::supervisor::Supervisor;
use hivehub_api::cluster::{events, LauncherStatus, LAUNCHER_THING};
use hivehub_api::launcher::{events as plugin_events, PluginInfo};
use hivehub_client::{ClientError, ConnState, EventMessage, HubClient};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most launchers remembered (a hub has a handful; this only bounds a flood of topics).
const MAX_LAUNCHERS: usize = 256;
/// Most plugin statuses remembered per launcher (this only bounds a flood of topics).
const MAX_PLUGINS: usize = 4096;

/// One launcher as a session last heard it.
#[derive(Default)]
struct Heard {
    /// Its last full status, with the plugin statuses below applied.
    status: Option<LauncherStatus>,
    /// Plugin statuses that stay applied over the full status, by name.
    plugins: BTreeMap<String, Overlay>,
}

/// A plugin status heard.
struct Overlay {
    /// `None`: the plugin left the list.
    info: Option<PluginInfo>,
    /// Delivered as published, not as the retained copy at a (re)subscription.
    live: bool,
}

impl Heard {
    /// Takes in a full status; `retained` when delivered at (re)subscription.
    fn hear_status(&mut self, s: LauncherStatus, retained: bool) {
        if retained && s.online {
            // A retained copy read at subscription can arrive after a newer live one.
            if self.status.as_ref().is_some_and(|old| old.time > s.time) {
                return;
            }
        }
        if !retained {
            // Built after every plugin status heard so far, unless the plugin started or
            // stopped after it was built.
            self.plugins.retain(|_, o| {
                o.info
                    .as_ref()
                    .is_some_and(|p| changed_at(p).is_some_and(|t| t > s.time))
            });
        }
        self.status = Some(s);
        let names: Vec<String> = self.plugins.keys().cloned().collect();
        for name in names {
            self.apply(&name);
        }
    }

    /// Takes in a plugin's status (`None`: removed); `retained` when delivered at
    /// (re)subscription. The retained copy is read when the subscription is made and may
    /// arrive after live ones published since, so it does not replace a live one that is as
    /// new (same start and stop), nor one of the list that is newer.
    fn hear_plugin(&mut self, name: &str, info: Option<PluginInfo>, retained: bool) {
        if retained {
            let Some(new) = info.as_ref() else {
                return;
            };
            let stale = match self.plugins.get(name) {
                Some(o) if o.live => o.info.as_ref().is_none_or(|p| version(p) >= version(new)),
                Some(o) => o.info.as_ref().is_some_and(|p| version(p) > version(new)),
                None => self
                    .status
                    .as_ref()
                    .and_then(|s| s.plugins.iter().find(|p| p.name == name))
                    .is_some_and(|p| version(p) > version(new)),
            };
            if stale {
                return;
            }
        }
        if self.plugins.len() >= MAX_PLUGINS && !self.plugins.contains_key(name) {
            return;
        }
        self.plugins.insert(
            name.to_string(),
            Overlay {
                info,
                live: !retained,
            },
        );
        self.apply(name);
    }

    /// Puts the plugin status heard for `name` in the full status's list.
    fn apply(&mut self, name: &str) {
        let (Some(s), Some(o)) = (self.status.as_mut(), self.plugins.get(name)) else {
            return;
        };
        if !s.online {
            return;
        }
        let at = s.plugins.iter().position(|p| p.name == name);
        match (&o.info, at) {
            (None, Some(i)) => {
                s.plugins.remove(i);
            }
            (None, None) => {}
            (Some(info), Some(i)) => {
                let mut info = info.clone();
                let old = &s.plugins[i];
                // The same process: keep the newer figures of the full status when the plugin
                // status carries none.
                if info.pid.is_some() && info.pid == old.pid {
                    info.cpu = info.cpu.or(old.cpu);
                    info.rss = info.rss.or(old.rss);
                    info.uptime = info.uptime.or(old.uptime);
                }
                // Where a movable plugin runs is the launcher's to say: a plugin's status is not
                // sent again when its lease moves between other launchers, the full status is.
                // One that runs here runs here.
                if info.pid.is_none() {
                    info.held_by = old.held_by.clone();
                }
                s.plugins[i] = info;
            }
            (Some(info), None) => {
                let i = s
                    .plugins
                    .iter()
                    .position(|p| p.name.as_str() > name)
                    .unwrap_or(s.plugins.len());
                s.plugins.insert(i, info.clone());
            }
        }
    }
}

/// When a plugin last started or stopped, as far as its status says (unix milliseconds).
fn changed_at(p: &PluginInfo) -> Option<u64> {
    p.start_time.max(p.stop_time)
}

/// How far a plugin's life has gone: starts, then the last start or stop. Grows at every
/// start and stop, not at every change of state.
fn version(p: &PluginInfo) -> (u64, Option<u64>) {
    (p.start_count, changed_at(p))
}

/// The launchers' statuses as one session last heard them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Peers {
    map: Arc<Mutex<BTreeMap<String, Heard>>>,
    /// Counts the statuses heard, so a first answer can wait for the retained ones.
    heard: Arc<watch::Sender<u64>>,
    /// False for the empty list of a session that could not subscribe.
    following: bool,
}

impl Peers {
    /// Follows every launcher's status, and the statuses of the plugins of every launcher
    /// heard, through `client` (the session's own connection) until that connection closes or
    /// `stop` is cancelled; the tasks run on `tasks`.
    pub async fn follow(
        client: &HubClient,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Peers, ClientError> {
        let mut rx = client
            .subscribe_events(None, Some(LAUNCHER_THING), Some(events::STATUS))
            .await?;
        let peers = Peers {
            following: true,
            ..Peers::default()
        };
        let p = peers.clone();
        let client = client.clone();
        let tasks2 = tasks.clone();
        tasks.spawn(async move {
            let mut state = client.state();
            let closed = state.wait_for(|s| *s == ConnState::Closed);
            tokio::pin!(closed);
            // Launchers whose plugins are followed.
            let mut followed = HashSet::new();
            while let Some(m) = next_or_end(&mut rx, &stop, &mut closed).await {
                let agent = m.topic.agent.clone();
                if m.payload.is_empty() {
                    // A retained status removed.
                    p.lock().remove(&agent);
                    continue;
                }
                match m.json::<LauncherStatus>() {
                    Ok(s) if s.launcher_id == agent => {
                        if !p.hear(s, m.retained) {
                            continue;
                        }
                    }
                    Ok(_) => {
                        tracing::debug!(topic = %m.topic, "status names another launcher");
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(topic = %m.topic, "bad launcher status: {e}");
                        continue;
                    }
                }
                if followed.contains(&agent) {
                    continue;
                }
                // A new launcher: follow its plugins too. Its plugin statuses are delivered
                // after this subscription, so after the status just heard.
                match client
                    .subscribe_events(Some(&agent), None, Some(plugin_events::STATUS))
                    .await
                {
                    Ok(prx) => {
                        followed.insert(agent.clone());
                        tasks2.spawn(p.clone().follow_plugins(
                            client.clone(),
                            agent,
                            prx,
                            stop.clone(),
                        ));
                    }
                    // Tried again at its next status.
                    Err(e) => tracing::debug!(launcher = %agent, "cannot follow its plugins: {e}"),
                }
            }
        });
        Ok(peers)
    }

    /// Applies the plugin statuses of `launcher` as they come, until the connection closes or
    /// `stop` is cancelled.
    async fn follow_plugins(
        self,
        client: HubClient,
        launcher: String,
        mut rx: mpsc::Receiver<EventMessage>,
        stop: CancellationToken,
    ) {
        let mut state = client.state();
        let closed = state.wait_for(|s| *s == ConnState::Closed);
        tokio::pin!(closed);
        while let Some(m) = next_or_end(&mut rx, &stop, &mut closed).await {
            let name = m.topic.thing.as_str();
            // The filter also matches the launcher's own status, handled by `follow`.
            if name == LAUNCHER_THING || m.topic.agent != launcher {
                continue;
            }
            let info = if m.payload.is_empty() {
                None
            } else {
                match m.json::<PluginInfo>() {
                    Ok(i) if i.name == name && i.launcher_id == launcher => Some(i),
                    Ok(_) => {
                        tracing::debug!(topic = %m.topic, "status names another plugin or launcher");
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(topic = %m.topic, "bad plugin status: {e}");
                        continue;
                    }
                }
            };
            if let Some(h) = self.lock().get_mut(&launcher) {
                h.hear_plugin(name, info, m.retained);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Heard>> {
        crate::lock(&self.map)
    }

    /// Takes in a launcher's status; false when it is not remembered (too many launchers).
    fn hear(&self, s: LauncherStatus, retained: bool) -> bool {
        {
            let mut map = self.lock();
            if map.len() >= MAX_LAUNCHERS && !map.contains_key(&s.launcher_id) {
                return false;
            }
            map.entry(s.launcher_id.clone())
                .or_default()
                .hear_status(s, retained);
        }
        self.heard.send_modify(|n| *n += 1);
        true
    }

    /// Waits until at least one status was heard (the retained ones come right after the
    /// subscription), at most `max`.
    pub async fn first(&self, max: Duration) {
        if !self.following {
            return;
        }
        let mut rx = self.heard.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|n| *n > 0)).await;
    }

    /// Every launcher but `me`, by ID.
    fn others(&self, me: &str) -> Vec<LauncherStatus> {
        self.lock()
            .iter()
            .filter(|(id, _)| id.as_str() != me)
            .filter_map(|(_, h)| h.status.clone())
            .collect()
    }
}

/// The next message of a subscription, or `None` once `stop` is cancelled, the connection
/// has closed (`closed`) or the subscription has ended.
async fn next_or_end<F: std::future::Future>(
    rx: &mut mpsc::Receiver<EventMessage>,
    stop: &CancellationToken,
    closed: &mut std::pin::Pin<&mut F>,
) -> Option<EventMessage> {
    tokio::select! {
        _ = stop.cancelled() => None,
        _ = closed.as_mut() => None,
        m = rx.recv() => m,
    }
}

/// Every launcher of the hub: this one first (live, from `sup`), then the others as `peers`
/// last heard them, by ID. A movable plugin shows only under the launcher that runs it: not
/// where it is held elsewhere, nor where it does not run while another launcher runs it (a
/// plugin's start travels at once, the holder others learn of with their next status).
pub fn launchers(sup: &Supervisor, peers: &Peers) -> Vec<LauncherStatus> {
    let me = sup.config().id.clone();
    let mut all = vec![crate::cluster::status_of(sup, true, None)];
    all.extend(peers.others(&me));
    let running: HashSet<String> = all
        .iter()
        .flat_map(|s| &s.plugins)
        .filter(|p| p.movable && p.pid.is_some())
        .map(|p| p.name.clone())
        .collect();
    for s in &mut all {
        s.plugins.retain(|p| {
            p.held_by.is_none() && !(p.movable && p.pid.is_none() && running.contains(&p.name))
        });
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, state: &str, pid: Option<u32>, start: u64) -> PluginInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "launcherID": "b", "path": format!("/x/{name}"),
            "running": pid.is_some(), "state": state, "startCount": u64::from(start > 0),
            "status": "", "attempt": 0, "restarts": 0, "thresholdRestarts": 0, "breaches": 0,
            "movable": false, "pid": pid, "startTime": (start > 0).then_some(start),
            "cpu": pid.map(|_| 2.5), "rss": pid.map(|_| 1000)
        }))
        .expect("a PluginInfo")
    }

    fn status(time: u64, plugins: Vec<PluginInfo>) -> LauncherStatus {
        LauncherStatus {
            schema_version: 1,
            launcher_id: "b".into(),
            online: true,
            host: "b".into(),
            cpus: 2,
            load1: 0.0,
            mem_free: 50,
            mem_total: 100,
            labels: vec![],
            eligible: vec![],
            plugins,
            time,
            reason: None,
        }
    }

    fn state_of(h: &Heard, name: &str) -> Option<String> {
        h.status
            .as_ref()?
            .plugins
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.state.as_str().to_string())
    }

    #[test]
    fn plugin_statuses_update_the_last_full_status() {
        let mut h = Heard::default();
        h.hear_status(status(1000, vec![plugin("p", "stopped", None, 0)]), false);
        // A plugin's change, without a new full status.
        h.hear_plugin("p", Some(plugin("p", "running", Some(7), 2000)), false);
        assert_eq!(state_of(&h, "p").as_deref(), Some("running"));
        // A plugin new to the list is added, one removed leaves it.
        h.hear_plugin("q", Some(plugin("q", "stopped", None, 0)), false);
        assert_eq!(state_of(&h, "q").as_deref(), Some("stopped"));
        h.hear_plugin("q", None, false);
        assert_eq!(state_of(&h, "q"), None);
        // A retained (older) full status delivered at a resubscription does not undo them.
        h.hear_status(
            status(
                1500,
                vec![
                    plugin("p", "stopped", None, 0),
                    plugin("q", "stopped", None, 0),
                ],
            ),
            true,
        );
        assert_eq!(state_of(&h, "p").as_deref(), Some("running"));
        assert_eq!(state_of(&h, "q"), None);
        // Nor does a live one built before the plugin's start.
        h.hear_status(status(1900, vec![plugin("p", "stopped", None, 0)]), false);
        assert_eq!(state_of(&h, "p").as_deref(), Some("running"));
        // A live one built after it replaces it, figures included.
        let mut later = plugin("p", "running", Some(7), 2000);
        later.cpu = Some(40.0);
        h.hear_status(status(3000, vec![later]), false);
        assert!(h.plugins.is_empty());
        let p = &h.status.as_ref().expect("status").plugins[0];
        assert_eq!(p.cpu, Some(40.0));
        // The same process's next status keeps those figures when it carries none.
        let mut ready = plugin("p", "running", Some(7), 2000);
        ready.cpu = None;
        ready.rss = None;
        h.hear_plugin("p", Some(ready), false);
        let p = &h.status.as_ref().expect("status").plugins[0];
        assert_eq!((p.cpu, p.rss), (Some(40.0), Some(1000)));
        // A retained full status older than the one heard live is not taken.
        h.hear_status(status(2500, vec![]), true);
        assert_eq!(h.status.as_ref().expect("status").time, 3000);
    }

    #[test]
    fn a_late_retained_copy_does_not_undo_a_live_change() {
        // The retained copy is read at subscription; live changes published right after can
        // arrive first.
        let mut h = Heard::default();
        h.hear_status(status(1000, vec![plugin("p", "stopped", None, 0)]), true);
        let mut starting = plugin("p", "starting", Some(7), 2000);
        starting.start_count = 1;
        let mut running = starting.clone();
        running.state = hivehub_api::launcher::PluginState::Running;
        h.hear_plugin("p", Some(running.clone()), false);
        h.hear_plugin("p", Some(plugin("p", "stopped", None, 0)), true);
        assert_eq!(state_of(&h, "p").as_deref(), Some("running"));
        h.hear_plugin("p", Some(starting), true);
        assert_eq!(state_of(&h, "p").as_deref(), Some("running"));
        // A newer retained copy (changed while this session was cut off) is taken.
        let mut again = plugin("p", "stopped", None, 2000);
        again.start_count = 1;
        again.stop_time = Some(5000);
        h.hear_plugin("p", Some(again), true);
        assert_eq!(state_of(&h, "p").as_deref(), Some("stopped"));
        // With nothing heard live, a retained copy applies over an older list.
        let mut h = Heard::default();
        h.hear_status(status(1000, vec![plugin("p", "stopped", None, 0)]), true);
        running.start_count = 1;
        h.hear_plugin("p", Some(running), true);
        assert_eq!(state_of(&h, "p").as_deref(), Some("running"));
    }

    #[test]
    fn where_a_movable_plugin_runs_comes_from_the_full_status() {
        let mut h = Heard::default();
        let mut elsewhere = plugin("m", "stopped", None, 0);
        elsewhere.movable = true;
        elsewhere.held_by = Some("a".into());
        h.hear_status(status(1000, vec![elsewhere]), true);
        // Published before this launcher knew who holds the lease.
        let mut early = plugin("m", "stopped", None, 0);
        early.movable = true;
        h.hear_plugin("m", Some(early), true);
        let p = &h.status.as_ref().expect("status").plugins[0];
        assert_eq!(p.held_by.as_deref(), Some("a"));
        // Running here: here.
        let mut here = plugin("m", "running", Some(9), 2000);
        here.movable = true;
        h.hear_plugin("m", Some(here), false);
        let p = &h.status.as_ref().expect("status").plugins[0];
        assert_eq!(p.held_by, None);
    }

    #[test]
    fn an_offline_launcher_lists_no_plugins() {
        let mut h = Heard::default();
        let mut will = status(1000, vec![]);
        will.online = false;
        h.hear_status(will, true);
        h.hear_plugin("p", Some(plugin("p", "running", Some(7), 500)), true);
        assert!(h.status.as_ref().expect("status").plugins.is_empty());
    }
}
