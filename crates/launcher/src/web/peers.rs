//! The hub's launchers as the status page shows them: the `hubcli launcher ls --all` view.
//!
//! Every launcher publishes its [`LauncherStatus`] retained on
//! `event/{launcherID}/_launcher/status/{launcherID}` every `statusInterval` (its Last Will is
//! the same message with `online: false`). Each page session follows those statuses through
//! its own hub connection, as the logged-in user, so the page shows exactly what that user may
//! subscribe to ([`Peers::follow`]); the statuses arrive at once at subscription (retained)
//! and then as each launcher publishes them.
//!
//! [`launchers`] is what `/api/status` and the `snapshot` events carry: this launcher first,
//! built live from its supervisor, then the others by ID as last heard. As in `ls --all`, a
//! movable plugin is listed only under the launcher that runs it.

use crate::supervisor::Supervisor;
use hivehub_api::cluster::{events, LauncherStatus, LAUNCHER_THING};
use hivehub_client::{ClientError, ConnState, HubClient};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most launchers remembered (a hub has a handful; this only bounds a flood of topics).
const MAX_LAUNCHERS: usize = 256;

/// The launchers' statuses as one session last heard them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Peers {
    map: Arc<Mutex<BTreeMap<String, LauncherStatus>>>,
    /// Counts the statuses heard, so a first answer can wait for the retained ones.
    heard: Arc<watch::Sender<u64>>,
    /// False for the empty list of a session that could not subscribe.
    following: bool,
}

impl Peers {
    /// Follows every launcher's status through `client` (the session's own connection) until
    /// that connection closes or `stop` is cancelled; the task runs on `tasks`.
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
        let mut state = client.state();
        tasks.spawn(async move {
            let closed = state.wait_for(|s| *s == ConnState::Closed);
            tokio::pin!(closed);
            loop {
                let m = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut closed => return,
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                };
                let agent = m.topic.agent.clone();
                if m.payload.is_empty() {
                    // A retained status removed.
                    p.lock().remove(&agent);
                    continue;
                }
                match m.json::<LauncherStatus>() {
                    Ok(s) if s.launcher_id == agent => p.hear(s),
                    Ok(_) => tracing::debug!(topic = %m.topic, "status names another launcher"),
                    Err(e) => tracing::debug!(topic = %m.topic, "bad launcher status: {e}"),
                }
            }
        });
        Ok(peers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LauncherStatus>> {
        crate::lock(&self.map)
    }

    fn hear(&self, s: LauncherStatus) {
        {
            let mut map = self.lock();
            if map.len() >= MAX_LAUNCHERS && !map.contains_key(&s.launcher_id) {
                return;
            }
            map.insert(s.launcher_id.clone(), s);
        }
        self.heard.send_modify(|n| *n += 1);
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
            .values()
            .filter(|s| s.launcher_id != me)
            .cloned()
            .collect()
    }
}

/// Every launcher of the hub: this one first (live, from `sup`), then the others as `peers`
/// last heard them, by ID. A movable plugin shows only under the launcher that runs it.
pub fn launchers(sup: &Supervisor, peers: &Peers) -> Vec<LauncherStatus> {
    let me = sup.config().id.clone();
    let mut all = vec![crate::cluster::status_of(sup, true, None)];
    all.extend(peers.others(&me));
    for s in &mut all {
        s.plugins.retain(|p| p.held_by.is_none());
    }
    all
}
