//! Several launchers, one hub: this launcher's shared status, and the placement of movable
//! plugins under leases from the core.
//!
//! - The launcher publishes its [`LauncherStatus`] retained at start, when a launcher-level fact
//!   in it changed (checked every `statusInterval`, see [`signature`]: online, host, CPUs,
//!   labels, the movable plugins it can run, the names of its plugins, how many of them are
//!   active, where its movable plugins run) and at least every [`STATUS_REFRESH`]; its Last
//!   Will is the same message with `online: false`. A plugin's own change (state, PID, exit,
//!   restarts, ...) is not a reason to send the whole list again: it travels as that plugin's
//!   retained status (`event/{launcherID}/{plugin}/status/{launcherID}`, published by
//!   `crate::service`), which the status page applies to the list it last heard
//!   (`crate::web`'s `peers`). The figures (load, memory, plugins' CPU and memory) and any
//!   other detail are refreshed by the full status every [`STATUS_REFRESH`].
//! - For each movable plugin it can run, it follows the core's lease (retained lease events,
//!   plus a `list` at start). A free lease is taken by the fittest eligible launcher: each
//!   launcher waits one second per launcher ranked above it before it asks, and the core's
//!   single lock decides any race.
//! - The holder renews every eighth of the lease time. It counts its lease from the moment it
//!   *sent* the last successful renewal, and starts stopping the plugin a stop timeout (at most
//!   a quarter lease) plus one second before that count runs out, whether or not it is
//!   connected. Before every spawn the supervisor asks [`Gate::may_spawn`], so not even an
//!   automatic restart runs a movable plugin without a valid lease.
//! - `move` prepares the target (credentials), stops the plugin here, transfers the lease in
//!   one step at the core, then asks the target to adopt it.
//! - A user's stop marks a movable plugin *disabled* hub-wide (kept by the core in
//!   `stores/leases.json`), so no other launcher takes it over; a user's start enables it again.
//!   A launcher that shuts down cleanly stops its movable plugins and releases their leases
//!   (not disabled), so others take them at once.
//! - Its tasks (status, renewal, placement, the lease and status listeners) are the
//!   supervisor's, so they end when the launcher shuts down.
//! - An idle launcher costs nothing here between status checks: placement looks at its plugins
//!   every 250 ms only while it has movable plugins it can run, holds leases or hands a plugin
//!   over, and otherwise sleeps until something could change that (a lease event, a launcher's
//!   status, the lease list after a reconnect, or a status notice of a movable plugin from the
//!   supervisor, which a reload and a binary appearing in `plugins/` send); renewal sleeps
//!   while no lease is held, until one is taken.

use crate::config::LauncherConfig;
use crate::lock;
use crate::supervisor::{Notice, PlacementGate, Supervisor};
use hivehub_api::auth::AUTH_SERVICE;
use hivehub_api::cluster::{
    cluster_methods, events, lease_methods, rank, AdoptReq, LauncherStatus, LeaseInfo, LeaseList,
    LeaseReq, ReleaseReq, TransferReq, CAP_CLUSTER, CAP_LEASES, LAUNCHER_THING, LEASES_THING,
};
use hivehub_api::launcher::{NameReq, PluginInfo, PluginState};
use hivehub_api::rpc::to_value;
use hivehub_api::rpc::Ack;
use hivehub_api::time::now_ms;
use hivehub_api::{ErrorCode, RemoteError, Role};
use hivehub_client::{ConnState, HubClient, Request, RpcError};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a lower-ranked launcher waits per launcher ranked above it before it asks for a
/// free lease, so the fittest one normally wins without a race.
const RANK_STEP: Duration = Duration::from_millis(1000);
/// Safety margin on top of the stop timeout when a lease cannot be renewed.
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// A lease this launcher holds.
#[derive(Debug, Clone)]
struct Held {
    /// Conservative local expiry: send time of the last successful renewal + its lease time.
    expires: Instant,
    /// Since when the plugin lives here (for the minimum residence).
    since: Instant,
    /// Started once under this lease; from then on its restart policy decides, so a plugin
    /// that keeps failing is not restarted here without backoff.
    started: bool,
}

/// What the cluster side tracks and changes, behind one lock so related facts (our leases and
/// the core's table, say) are read and updated together. Never held across an `.await`, nor
/// while calling the supervisor: its `info` asks the gate, which takes this lock.
#[derive(Default)]
struct ClusterState {
    /// Leases this launcher holds.
    held: HashMap<String, Held>,
    /// The core's leases as last heard.
    leases: HashMap<String, LeaseInfo>,
    /// Every launcher's last status, this one included.
    peers: BTreeMap<String, LauncherStatus>,
    /// Plugins this module is stopping itself (move, lost lease, shutdown), so such a stop is
    /// not mistaken for a user's.
    own_stops: HashSet<String>,
    /// Plugins being handed over or started by a user right now; placement leaves them alone.
    moving: HashSet<String>,
    /// When each free lease was first seen free.
    free_since: HashMap<String, Instant>,
    /// The [`signature`] of the status last sent, and when it was sent.
    sent: Option<(Vec<u8>, Instant)>,
    /// What the last check saw ([`Inputs`]): the same again means nothing to check.
    checked: Option<Inputs>,
    /// The host facts of the status last sent: the checks between two sends reuse them, so an
    /// idle launcher does not read `/proc/meminfo` and the cgroup files every `statusInterval`.
    facts: Option<HostFacts>,
}

impl ClusterState {
    /// The lease's holder as last heard from the core.
    fn holder(&self, name: &str) -> Option<String> {
        self.leases.get(name).and_then(|l| l.holder.clone())
    }

    fn held_names(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// Takes in a lease event; false if it is older than what we know (events and replies
    /// travel separately). A lease the core gave to someone else is no longer ours, whatever
    /// our clock says.
    fn hear_lease(&mut self, me: &str, l: LeaseInfo) -> bool {
        let known = self.leases.get(&l.name).map_or(0, |k| k.generation);
        if l.generation < known {
            return false;
        }
        if l.holder.as_deref() != Some(me) && self.held.remove(&l.name).is_some() {
            tracing::warn!(plugin = %l.name, holder = ?l.holder, "lease no longer ours");
        }
        self.leases.insert(l.name.clone(), l);
        true
    }

    /// Replaces the lease table with the core's whole one: after a core restart its
    /// generations start again, so older numbers must not hide newer events.
    fn replace_leases(&mut self, me: &str, theirs: HashMap<String, LeaseInfo>) {
        self.held.retain(|n, _| {
            theirs
                .get(n)
                .is_none_or(|l| l.holder.is_none() || l.holder.as_deref() == Some(me))
        });
        self.leases = theirs;
    }

    /// Records the core's answer to an acquire or renew sent at `sent`. If the lease is ours it
    /// counts from `sent` and never beyond `ttl`, keeping its residence and started mark. True
    /// when this made a lease ours that was not (the renewal loop has work again).
    fn record_take(
        &mut self,
        me: &str,
        name: &str,
        info: LeaseInfo,
        sent: Instant,
        ttl: Duration,
    ) -> bool {
        let mut new = false;
        if info.holder.as_deref() == Some(me) {
            let granted = Duration::from_millis(info.expires_in_ms.unwrap_or(0)).min(ttl);
            let (since, started) = self
                .held
                .get(name)
                .map_or((sent, false), |h| (h.since, h.started));
            new = !self.held.contains_key(name);
            self.held.insert(
                name.to_string(),
                Held {
                    expires: sent + granted,
                    since,
                    started,
                },
            );
        }
        self.leases.insert(name.to_string(), info);
        new
    }

    /// Marks a held plugin as started under its lease, so its restart policy takes over and a
    /// later stop is no longer counted as ours.
    fn mark_started(&mut self, name: &str) {
        self.own_stops.remove(name);
        if let Some(h) = self.held.get_mut(name) {
            h.started = true;
        }
    }

    /// Held leases that could run out before their plugin is gone.
    fn expiring(&self, cfg: &LauncherConfig, now: Instant) -> Vec<String> {
        self.held
            .iter()
            .filter(|(n, h)| h.expires <= now + stop_budget(cfg, n))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

struct Inner {
    sup: Supervisor,
    bus: HubClient,
    id: String,
    state: Mutex<ClusterState>,
    /// Wakes the placement loop: something it acts on may have changed.
    wake: Notify,
    /// Wakes the renewal loop when a lease becomes ours while it sleeps for want of one.
    taken: Notify,
    shutting_down: AtomicBool,
}

impl Inner {
    /// The one lock on the state; a panic elsewhere must not stop placement.
    fn state(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.state)
    }
}

/// The cluster side of one launcher. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Gate(std::sync::Weak<Inner>);

impl PlacementGate for Gate {
    fn may_spawn(&self, name: &str) -> Result<(), String> {
        let Some(inner) = self.0.upgrade() else {
            return Err("the launcher is shutting down".into());
        };
        if inner.shutting_down.load(Ordering::SeqCst) {
            return Err("the launcher is shutting down".into());
        }
        let cfg = inner.sup.config();
        let budget = stop_budget(&cfg, name);
        let (expires, holder) = {
            let st = inner.state();
            (st.held.get(name).map(|h| h.expires), st.holder(name))
        };
        match expires {
            Some(e) if e > Instant::now() + budget => Ok(()),
            Some(_) => Err("its lease is about to expire (the hub cannot be reached)".into()),
            None => Err(match holder {
                Some(h) if h != inner.id => format!("it runs on {h}"),
                _ => "this launcher does not hold its lease".into(),
            }),
        }
    }

    fn held_elsewhere(&self, name: &str) -> Option<String> {
        let inner = self.0.upgrade()?;
        let holder = inner.state().holder(name);
        holder.filter(|h| *h != inner.id)
    }
}

/// Time the plugin needs to be gone once a stop begins, plus the margin.
fn stop_budget(cfg: &LauncherConfig, name: &str) -> Duration {
    cfg.plugin(name).stop_timeout + STOP_MARGIN
}

fn remote(code: ErrorCode, msg: impl Into<String>) -> RemoteError {
    RemoteError::new(code, msg)
}

fn rpc_remote(e: RpcError) -> RemoteError {
    match e {
        RpcError::Remote(r) => r,
        other => remote(ErrorCode::Unavailable, other.to_string()),
    }
}

/// Host name, CPUs, one-minute load, available and total memory.
type HostFacts = (String, u32, f64, u64, u64);

/// Host facts for the shared status.
fn host_facts() -> HostFacts {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let (mut free, mut total) = (0, 0);
    if let Ok(s) = std::fs::read_to_string("/proc/meminfo") {
        for line in s.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            if line.starts_with("MemAvailable:") {
                free = kb(line);
            } else if line.starts_with("MemTotal:") {
                total = kb(line);
            }
        }
    }
    (host, cpus, load1, free, total)
}

/// Where a plugin running on `me` for `resident` should move by itself, if anywhere: to the
/// fittest eligible launcher, once the minimum residence has passed and only when it is fitter
/// by more than the margin, so plugins do not hop between similar hosts.
fn rebalance_target(
    peers: &BTreeMap<String, LauncherStatus>,
    me: &str,
    name: &str,
    resident: Duration,
    cfg: &crate::config::ClusterConfig,
) -> Option<String> {
    if resident < cfg.min_residence {
        return None;
    }
    let mine = peers.get(me)?.fitness();
    let best = rank(peers.values(), name).into_iter().next()?;
    (best.launcher_id != me && best.fitness() - mine > cfg.margin).then(|| best.launcher_id.clone())
}

/// Movable plugins this launcher can run: configured movable, binary present, labels met.
fn eligible(sup: &Supervisor, cfg: &LauncherConfig) -> Vec<String> {
    // Only the configured movable plugins are looked at: this runs at every placement pass (four
    // times a second while there is something to place), and a launcher with hundreds of local
    // plugins and no movable one should pay next to nothing for it.
    cfg.plugins
        .keys()
        .filter(|n| cfg.is_movable(n) && cfg.meets_requirements(n))
        .filter(|n| sup.info(n).is_ok_and(|i| i.state != PluginState::Missing))
        .cloned()
        .collect()
}

fn eligible_of(plugins: &[PluginInfo], cfg: &LauncherConfig) -> Vec<String> {
    plugins
        .iter()
        .filter(|p| {
            cfg.is_movable(&p.name)
                && p.state != PluginState::Missing
                && cfg.meets_requirements(&p.name)
        })
        .map(|p| p.name.clone())
        .collect()
}

/// How often the shared status goes out when none of its launcher-level facts changed, so the
/// figures (load, free memory, plugins' CPU and memory) and every plugin's details are fresh.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The launcher-level facts of a status: a change of one sends the status at once (at the next
/// `statusInterval` check). Everything others act on or list per launcher: whether it is
/// online (and why not), its host, CPUs and total memory, labels, the movable plugins it can
/// run, the names of its plugins, how many of them are active (placement's fitness counts
/// them), and which movable ones run elsewhere (a plugin shows only under the launcher that
/// runs it). Not its time, load or free memory, nor anything of one plugin: a plugin's change
/// travels as its own retained status, and the full list follows every [`STATUS_REFRESH`].
#[derive(Serialize)]
struct Signature<'a> {
    schema_version: u32,
    launcher_id: &'a str,
    online: bool,
    reason: Option<&'a str>,
    host: &'a str,
    cpus: u32,
    mem_total: u64,
    labels: &'a [String],
    eligible: &'a [String],
    active: usize,
    /// Each plugin: name, movable, and the launcher running it when it is not this one.
    plugins: Vec<(&'a str, bool, Option<&'a str>)>,
}

/// What a status check depends on besides host facts: the supervisor's count of plugin
/// status changes, the configuration in force (a reload replaces it; held here, so a later
/// one can never have the same address) and the lease holders.
struct Inputs {
    changes: u64,
    config: Arc<LauncherConfig>,
    holders: Vec<(String, Option<String>)>,
}

impl PartialEq for Inputs {
    fn eq(&self, other: &Inputs) -> bool {
        self.changes == other.changes
            && Arc::ptr_eq(&self.config, &other.config)
            && self.holders == other.holders
    }
}

fn signature(s: &LauncherStatus) -> Vec<u8> {
    let sig = Signature {
        schema_version: s.schema_version,
        launcher_id: &s.launcher_id,
        online: s.online,
        reason: s.reason.as_deref(),
        host: &s.host,
        cpus: s.cpus,
        mem_total: s.mem_total,
        labels: &s.labels,
        eligible: &s.eligible,
        active: s.active_plugins(),
        plugins: s
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.movable, p.held_by.as_deref()))
            .collect(),
    };
    serde_json::to_vec(&sig).unwrap_or_default()
}

/// This launcher's status as others see it.
pub fn status_of(sup: &Supervisor, online: bool, reason: Option<&str>) -> LauncherStatus {
    status_with(sup, online, reason, host_facts())
}

/// [`status_of`] with the host facts given.
fn status_with(
    sup: &Supervisor,
    online: bool,
    reason: Option<&str>,
    (host, cpus, load1, mem_free, mem_total): HostFacts,
) -> LauncherStatus {
    let cfg = sup.config();
    // The Last Will (offline) lists no plugins: when it is published they may be gone.
    let plugins = if online { sup.list() } else { Vec::new() };
    LauncherStatus {
        schema_version: hivehub_api::SCHEMA_VERSION,
        launcher_id: cfg.id.clone(),
        online,
        host,
        cpus,
        load1,
        mem_free,
        mem_total,
        labels: cfg.labels.clone(),
        eligible: eligible_of(&plugins, &cfg),
        plugins,
        time: now_ms(),
        reason: reason.map(str::to_string),
    }
}

/// The Last Will for this launcher's connection: its status marked offline, retained.
pub fn last_will(sup: &Supervisor) -> Option<(String, Vec<u8>, bool)> {
    let cfg = sup.config();
    let topic = hivehub_api::cluster::status_topic(&cfg.id).ok()?;
    let body = serde_json::to_vec(&status_of(sup, false, Some("connection lost"))).ok()?;
    Some((topic.to_string(), body, true))
}

impl Cluster {
    /// Joins the hub's cluster on `bus`: follows statuses and leases, publishes this launcher's
    /// status, and places movable plugins. Installs the supervisor's placement gate.
    pub async fn start(sup: Supervisor, bus: HubClient) -> Result<Cluster, RpcError> {
        let id = sup.config().id.clone();
        let inner = Arc::new(Inner {
            sup: sup.clone(),
            bus: bus.clone(),
            id,
            state: Mutex::default(),
            wake: Notify::new(),
            taken: Notify::new(),
            shutting_down: AtomicBool::new(false),
        });
        sup.set_gate(Arc::new(Gate(Arc::downgrade(&inner))));
        let c = Cluster { inner };
        let mut statuses = bus
            .subscribe_events(None, Some(LAUNCHER_THING), Some(events::STATUS))
            .await?;
        let mut leases = bus
            .subscribe_events(Some(AUTH_SERVICE), Some(LEASES_THING), None)
            .await?;
        let c2 = c.clone();
        c.inner.sup.spawn_task(async move {
            while let Some(m) = statuses.recv().await {
                match m.json::<LauncherStatus>() {
                    Ok(s) if s.launcher_id == m.topic.agent => {
                        c2.inner.state().peers.insert(s.launcher_id.clone(), s);
                        c2.inner.wake.notify_one();
                    }
                    Ok(_) => {
                        tracing::warn!(topic = %m.topic, "status names another launcher; ignored")
                    }
                    Err(e) => tracing::warn!(topic = %m.topic, "bad launcher status: {e}"),
                }
            }
        });
        let c2 = c.clone();
        c.inner.sup.spawn_task(async move {
            while let Some(m) = leases.recv().await {
                match m.json::<LeaseInfo>() {
                    Ok(l) => {
                        c2.on_lease(l);
                    }
                    Err(e) => tracing::warn!(topic = %m.topic, "bad lease event: {e}"),
                }
            }
        });
        c.refresh_leases().await;
        c.publish_status().await;
        c.inner.sup.spawn_task(c.clone().status_loop());
        c.inner.sup.spawn_task(c.clone().renew_loop());
        c.inner.sup.spawn_task(c.clone().placement_loop());
        let notices = c.inner.sup.notices();
        c.inner.sup.spawn_task(c.clone().notice_loop(notices));
        c.serve().await?;
        Ok(c)
    }

    fn on_lease(&self, l: LeaseInfo) {
        if self.inner.state().hear_lease(&self.inner.id, l) {
            self.inner.wake.notify_one();
        }
    }

    async fn refresh_leases(&self) {
        match self
            .inner
            .bus
            .request::<_, LeaseList>(AUTH_SERVICE, CAP_LEASES, lease_methods::LIST, &Ack {})
            .await
        {
            Ok(list) => {
                let theirs = list
                    .leases
                    .into_iter()
                    .map(|l| (l.name.clone(), l))
                    .collect();
                self.inner.state().replace_leases(&self.inner.id, theirs);
                self.inner.wake.notify_one();
            }
            Err(e) => tracing::warn!("cannot list leases: {e}"),
        }
    }

    /// Publishes this launcher's status now (retained).
    pub async fn publish_status(&self) {
        self.publish_status_when(true).await;
    }

    /// Publishes this launcher's status when `force`, when a launcher-level fact in it changed
    /// ([`signature`]), or when the last one is [`STATUS_REFRESH`] old: at N = 500 a status is
    /// about 250 KB, so neither an idle hub nor one plugin's restart should send one; a plugin's
    /// change goes out as that plugin's own retained status (`crate::service::publish`).
    /// A check whose [`Inputs`] are those of the previous one does not even build the status.
    async fn publish_status_when(&self, force: bool) {
        let inputs = self.inputs();
        {
            let mut st = self.inner.state();
            let fresh = st
                .sent
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < STATUS_REFRESH);
            if !force && fresh && st.checked.as_ref() == Some(&inputs) {
                return;
            }
            st.checked = Some(inputs);
        }
        // Fresh host facts only for a status that goes out anyway; a check reuses the last.
        let cached = {
            let st = self.inner.state();
            let stale = st
                .sent
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= STATUS_REFRESH);
            st.facts.clone().filter(|_| !force && !stale)
        };
        let facts = cached.unwrap_or_else(host_facts);
        let s = status_with(&self.inner.sup, true, None, facts.clone());
        let sig = signature(&s);
        let due = {
            let mut st = self.inner.state();
            st.peers.insert(s.launcher_id.clone(), s.clone());
            let due = force
                || st
                    .sent
                    .as_ref()
                    .is_none_or(|(last, at)| *last != sig || at.elapsed() >= STATUS_REFRESH);
            if due {
                st.sent = Some((sig, Instant::now()));
                st.facts = Some(facts);
            }
            due
        };
        if due {
            self.send_status(&s).await;
        }
    }

    async fn send_status(&self, s: &LauncherStatus) {
        if let Err(e) = self
            .inner
            .bus
            .publish_event(LAUNCHER_THING, events::STATUS, s, true)
            .await
        {
            tracing::debug!(online = s.online, "cannot publish launcher status: {e}");
        }
    }

    /// Checks the shared status every `statusInterval`. When resource passes come at least
    /// that often, a check follows the first pass that ends `statusInterval` (within half a
    /// pass) after the previous check, so an idle launcher keeps no timer of its own for it;
    /// a timer of `statusInterval` plus one pass covers a monitor that stopped.
    async fn status_loop(self) {
        let mut state = self.inner.bus.state();
        let mut passes = self.inner.sup.passes();
        let mut last = Instant::now();
        loop {
            let every = self.inner.sup.config().cluster.status_interval;
            let pass = self.inner.sup.config().sample_interval;
            let follow = pass <= every;
            let fallback = if follow { every + pass } else { every };
            tokio::select! {
                _ = tokio::time::sleep(fallback) => {}
                r = passes.changed(), if follow => {
                    if r.is_err() {
                        return;
                    }
                    if last.elapsed() + pass / 2 < every {
                        continue;
                    }
                }
                r = state.changed() => {
                    if r.is_err() { return; }
                    if *state.borrow() != ConnState::Connected { continue; }
                    // Back on the bus: our retained status may be the Last Will now.
                    self.refresh_leases().await;
                }
            }
            if self.inner.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            last = Instant::now();
            self.publish_status_when(false).await;
        }
    }

    /// Everything a status's [`signature`] is made of, apart from host facts (which change
    /// only with a refresh): taken before the status is built, so a change while it is built
    /// makes the next check look again.
    fn inputs(&self) -> Inputs {
        let sup = &self.inner.sup;
        let mut holders: Vec<(String, Option<String>)> = self
            .inner
            .state()
            .leases
            .values()
            .map(|l| (l.name.clone(), l.holder.clone()))
            .collect();
        holders.sort_unstable();
        Inputs {
            changes: sup.status_changes(),
            config: sup.config(),
            holders,
        }
    }

    fn ttl(&self) -> Duration {
        self.inner.sup.config().cluster.lease_ttl
    }

    async fn lease_call<Q: Serialize>(
        &self,
        method: &str,
        req: &Q,
        timeout: Duration,
    ) -> Result<LeaseInfo, RpcError> {
        let payload = serde_json::to_vec(req)
            .map_err(|e| RpcError::Client(hivehub_client::ClientError::Encode(e.to_string())))?;
        let v = self
            .inner
            .bus
            .request_raw(AUTH_SERVICE, CAP_LEASES, method, payload, timeout)
            .await?;
        serde_json::from_value(v).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// Acquires or renews; on success records the conservative local expiry.
    async fn take(&self, name: &str, method: &str, enable: bool) -> Result<LeaseInfo, RpcError> {
        let ttl = self.ttl();
        let sent = Instant::now();
        let info = self
            .lease_call(
                method,
                &LeaseReq {
                    name: name.to_string(),
                    ttl_ms: ttl.as_millis() as u64,
                    enable,
                },
                ttl / 4,
            )
            .await?;
        let new = self
            .inner
            .state()
            .record_take(&self.inner.id, name, info.clone(), sent, ttl);
        if new {
            self.inner.taken.notify_one();
        }
        Ok(info)
    }

    /// Renews every held lease each eighth of the lease time; sleeps while none is held until
    /// [`Cluster::take`] makes one ours.
    async fn renew_loop(self) {
        loop {
            if self.inner.state().held.is_empty() {
                // A lease taken meanwhile left a permit, so this returns at once.
                self.inner.taken.notified().await;
                continue;
            }
            let ttl = self.ttl();
            tokio::time::sleep(ttl / 8).await;
            let names = self.inner.state().held_names();
            for name in names {
                // The holding this renewal is for: a refusal must not undo a newer one (a
                // user's stop and start while the renewal was on its way).
                let since = self.inner.state().held.get(&name).map(|h| h.since);
                match self.take(&name, lease_methods::RENEW, false).await {
                    Ok(_) => {}
                    Err(RpcError::Remote(e)) => {
                        let current = {
                            let mut st = self.inner.state();
                            let current =
                                since.is_some() && st.held.get(&name).map(|h| h.since) == since;
                            if current {
                                st.held.remove(&name);
                            }
                            current
                        };
                        if !current {
                            tracing::debug!(plugin = %name, "stale renewal refused: {}", e.message);
                            continue;
                        }
                        tracing::warn!(plugin = %name, "lease lost: {}", e.message);
                        self.stop_here(&name, "lease lost").await;
                    }
                    Err(e) => tracing::warn!(plugin = %name, "cannot renew lease: {e}"),
                }
            }
            self.enforce_expiry().await;
        }
    }

    /// Stops movable plugins whose lease could run out before they are gone, so the core
    /// can never hand it to another launcher while the plugin still runs here.
    async fn enforce_expiry(&self) {
        let cfg = self.inner.sup.config();
        let expiring = self.inner.state().expiring(&cfg, Instant::now());
        for name in expiring {
            tracing::warn!(plugin = %name, "cannot renew its lease in time; stopping it before the lease expires");
            self.inner.state().held.remove(&name);
            self.stop_here(&name, "lease expiring (hub unreachable)")
                .await;
        }
    }

    /// Stops a plugin here on the cluster's own behalf.
    async fn stop_here(&self, name: &str, why: &str) {
        self.inner.state().own_stops.insert(name.to_string());
        if let Err(e) = self.inner.sup.stop_by(name, why).await {
            tracing::error!(plugin = name, "{e}");
        }
    }

    fn is_user_stopped(&self, info: &PluginInfo) -> bool {
        info.state == PluginState::Disabled && !self.inner.state().own_stops.contains(&info.name)
    }

    /// True while placement has something to watch: movable plugins this launcher can run,
    /// leases it holds (their expiry, a user's stop, rebalancing) or a hand-over under way.
    fn placing(&self, eligible: &[String]) -> bool {
        let st = self.inner.state();
        !eligible.is_empty() || !st.held.is_empty() || !st.moving.is_empty()
    }

    /// Places the movable plugins: every 250 ms while [`Cluster::placing`], and at once when
    /// woken. With nothing to place it sleeps until woken: by a lease event, a launcher's
    /// status, the lease list after a (re)connection, or a supervisor notice about a movable
    /// plugin (its state changed; a reload or a binary appearing in `plugins/` sends one), which
    /// are the ways a plugin can become one to place.
    async fn placement_loop(self) {
        let mut busy = true;
        loop {
            if busy {
                tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            } else {
                self.inner.wake.notified().await;
            }
            if self.inner.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            self.enforce_expiry().await;
            let cfg = self.inner.sup.config();
            let names = eligible(&self.inner.sup, &cfg);
            busy = self.placing(&names);
            if *self.inner.bus.state().borrow() != ConnState::Connected {
                continue;
            }
            for name in names {
                if self.inner.state().moving.contains(&name) {
                    continue;
                }
                self.place(&cfg, &name).await;
            }
            // What this pass did (a lease taken, a hand-over begun) counts too.
            busy = busy || self.placing(&[]);
        }
    }

    /// Wakes placement when the supervisor reports a change of a movable plugin, or a plugin
    /// leaving the list.
    async fn notice_loop(self, mut notices: tokio::sync::mpsc::UnboundedReceiver<Notice>) {
        while let Some(n) = notices.recv().await {
            let wake = match &n {
                Notice::Status(info) => info.movable,
                Notice::Gone(_) => true,
                Notice::Event(_) => false,
            };
            if wake {
                self.inner.wake.notify_one();
            }
        }
    }

    async fn place(&self, cfg: &LauncherConfig, name: &str) {
        let me = self.inner.id.clone();
        let Ok(info) = self.inner.sup.info(name) else {
            return;
        };
        let held = self.inner.state().held.get(name).cloned();
        if let Some(h) = held {
            self.inner.state().free_since.remove(name);
            if self.is_user_stopped(&info) {
                tracing::info!(
                    plugin = name,
                    "stopped by a user: released and disabled hub-wide"
                );
                self.release(name, true).await;
                return;
            }
            if !h.started && info.pid.is_none() {
                self.start_held(name).await;
                return;
            }
            // Fitness moves, with hysteresis.
            if info.pid.is_some() {
                let peers = self.inner.state().peers.clone();
                if let Some(to) =
                    rebalance_target(&peers, &me, name, h.since.elapsed(), &cfg.cluster)
                {
                    tracing::info!(plugin = name, %to, "moving to a fitter launcher");
                    let c = self.clone();
                    let n = name.to_string();
                    self.inner.sup.spawn_task(async move {
                        if let Err(e) = c.move_to(&n, &to).await {
                            tracing::warn!(plugin = %n, "move failed: {}", e.message);
                        }
                    });
                }
            }
            return;
        }
        let lease = self.inner.state().leases.get(name).cloned();
        if let Some(l) = &lease {
            if l.disabled || l.holder.is_some() {
                self.inner.state().free_since.remove(name);
                if info.pid.is_some() && l.holder.as_deref() != Some(me.as_str()) {
                    // Never run without the lease.
                    self.stop_here(name, "its lease is held elsewhere").await;
                }
                return;
            }
        }
        // Free: the fittest eligible launcher asks first.
        let (k, first_seen) = {
            let mut st = self.inner.state();
            let ranked = rank(st.peers.values(), name);
            let k = ranked
                .iter()
                .position(|s| s.launcher_id == me)
                .unwrap_or(ranked.len());
            let first_seen = *st
                .free_since
                .entry(name.to_string())
                .or_insert_with(Instant::now);
            (k, first_seen)
        };
        if first_seen.elapsed() < RANK_STEP * k as u32 {
            return;
        }
        match self.take(name, lease_methods::ACQUIRE, false).await {
            Ok(l) => {
                {
                    let mut st = self.inner.state();
                    st.free_since.remove(name);
                    st.own_stops.remove(name);
                }
                tracing::info!(plugin = name, generation = l.generation, "lease acquired");
                if self.start_held(name).await.is_some() {
                    if let Some(prev) = l.previous.filter(|p| *p != me) {
                        self.announce_moved(name, &prev, "failover");
                    }
                }
            }
            Err(RpcError::Remote(e)) => {
                tracing::debug!(plugin = name, "lease not taken: {}", e.message)
            }
            Err(e) => tracing::warn!(plugin = name, "cannot ask for lease: {e}"),
        }
    }

    /// Starts a plugin whose lease this launcher holds, once; a failed start gives the lease up
    /// (not disabled), so another eligible launcher may try.
    async fn start_held(&self, name: &str) -> Option<PluginInfo> {
        self.inner.state().mark_started(name);
        match self.inner.sup.start(name).await {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(plugin = name, "{e}; releasing its lease");
                self.release(name, false).await;
                None
            }
        }
    }

    fn announce_moved(&self, name: &str, from: &str, why: &str) {
        let sup = &self.inner.sup;
        tracing::info!(plugin = name, from, why, "moved here");
        sup.publish_event(hivehub_api::launcher::LauncherEvent {
            from: Some(from.to_string()),
            to: Some(self.inner.id.clone()),
            reason: Some(why.to_string()),
            pid: sup.info(name).ok().and_then(|i| i.pid),
            ..sup.new_event(name, events::MOVED)
        });
    }

    async fn release(&self, name: &str, disable: bool) {
        self.inner.state().held.remove(name);
        let req = ReleaseReq {
            name: name.to_string(),
            disable,
        };
        match self
            .lease_call(lease_methods::RELEASE, &req, Duration::from_secs(5))
            .await
        {
            Ok(l) => {
                self.inner.state().leases.insert(name.to_string(), l);
            }
            Err(e) => tracing::warn!(plugin = name, "cannot release lease: {e}"),
        }
    }

    /// A user's start of a movable plugin: enables it hub-wide and runs it here if its lease
    /// is free; if it runs elsewhere, says where.
    pub async fn user_start(&self, name: &str) -> Result<PluginInfo, RemoteError> {
        let cfg = self.inner.sup.config();
        if !cfg.meets_requirements(name) {
            return Err(remote(
                ErrorCode::Conflict,
                format!(
                    "{name} requires labels {:?}, which this launcher lacks",
                    cfg.plugin(name).requires
                ),
            ));
        }
        // Placement leaves it alone meanwhile: until the start, it is still `disabled` here and
        // would look like a user's stop whose lease must go.
        if !self.inner.state().moving.insert(name.to_string()) {
            return Err(remote(
                ErrorCode::Conflict,
                format!("{name} is being moved or started; try again"),
            ));
        }
        let taken = self.take(name, lease_methods::ACQUIRE, true).await;
        let r = match taken {
            Ok(_) => {
                self.inner.state().mark_started(name);
                self.inner.sup.start(name).await.map_err(RemoteError::from)
            }
            Err(RpcError::Remote(e)) if e.code == ErrorCode::Conflict => Err(remote(
                ErrorCode::Conflict,
                format!(
                    "{}; use `hubcli launcher move {name} {}` to bring it here",
                    e.message, self.inner.id
                ),
            )),
            Err(e) => Err(rpc_remote(e)),
        };
        self.inner.state().moving.remove(name);
        r
    }

    /// A user's stop of a movable plugin: stops it and disables it hub-wide, so no other
    /// launcher takes it over.
    pub async fn user_stop(&self, name: &str, by: &str) -> Result<PluginInfo, RemoteError> {
        let holder = self.inner.state().holder(name);
        if let Some(h) = holder.filter(|h| *h != self.inner.id) {
            return Err(remote(
                ErrorCode::Conflict,
                format!("{name} runs on {h}; stop it there (hubcli launcher --launcher {h} stop {name})"),
            ));
        }
        self.inner.state().own_stops.insert(name.to_string());
        let r = self
            .inner
            .sup
            .stop_by(name, by)
            .await
            .map_err(RemoteError::from);
        self.release(name, true).await;
        self.inner.state().own_stops.remove(name);
        r
    }

    /// Hands `name` to launcher `to`: prepare the target, stop here, transfer the lease at the
    /// core, then the target adopts it. Never two instances: the target spawns only once it
    /// holds the lease, which happens after the plugin is gone here.
    pub async fn move_to(&self, name: &str, to: &str) -> Result<PluginInfo, RemoteError> {
        let me = self.inner.id.clone();
        if to == me {
            return Err(remote(
                ErrorCode::BadRequest,
                format!("{name} already runs on {me}"),
            ));
        }
        let (held_here, where_) = {
            let st = self.inner.state();
            (st.held.contains_key(name), st.holder(name))
        };
        if !held_here {
            return Err(remote(
                ErrorCode::Conflict,
                match where_ {
                    Some(h) => format!("{name} runs on {h}; send the move there (hubcli launcher --launcher {h} move {name} {to})"),
                    None => format!("{me} does not run {name}"),
                },
            ));
        }
        if !self.inner.state().moving.insert(name.to_string()) {
            return Err(remote(
                ErrorCode::Conflict,
                format!("{name} is already being moved"),
            ));
        }
        let r = self.hand_over(name, to).await;
        self.inner.state().moving.remove(name);
        r
    }

    async fn hand_over(&self, name: &str, to: &str) -> Result<PluginInfo, RemoteError> {
        let bus = &self.inner.bus;
        let req = NameReq {
            name: name.to_string(),
        };
        bus.request::<_, Ack>(to, CAP_CLUSTER, cluster_methods::CHECK, &req)
            .await
            .map_err(rpc_remote)?;
        self.stop_here(name, &format!("moving to {to}")).await;
        let ttl = self.ttl();
        let t = TransferReq {
            name: name.to_string(),
            to: to.to_string(),
            ttl_ms: ttl.as_millis() as u64,
        };
        if let Err(e) = self
            .lease_call(lease_methods::TRANSFER, &t, Duration::from_secs(5))
            .await
        {
            // Still ours: run it here again.
            self.inner.state().own_stops.remove(name);
            let _ = self.inner.sup.start(name).await;
            return Err(rpc_remote(e));
        }
        {
            let mut st = self.inner.state();
            st.held.remove(name);
            st.own_stops.remove(name);
        }
        let adopt = AdoptReq {
            name: name.to_string(),
            from: self.inner.id.clone(),
        };
        bus.request::<_, PluginInfo>(to, CAP_CLUSTER, cluster_methods::ADOPT, &adopt)
            .await
            .map_err(rpc_remote)
    }

    async fn serve(&self) -> Result<(), RpcError> {
        let c = self.clone();
        self.inner
            .bus
            .serve(CAP_CLUSTER, move |r| {
                let c = c.clone();
                async move { c.handle(r).await }
            })
            .await?;
        self.inner
            .bus
            .set_permissions(CAP_CLUSTER, &[Role::Launcher])
            .await
    }

    async fn handle(&self, r: Request) -> Result<Value, RemoteError> {
        let cfg = self.inner.sup.config();
        match r.method.as_str() {
            cluster_methods::CHECK => {
                let q: NameReq = r.json()?;
                if !eligible(&self.inner.sup, &cfg).contains(&q.name) {
                    return Err(remote(
                        ErrorCode::Conflict,
                        format!("{} cannot run {} (not movable here, binary missing, or labels {:?} not met)", self.inner.id, q.name, cfg.plugin(&q.name).requires),
                    ));
                }
                self.inner
                    .sup
                    .prepare_credentials(&q.name)
                    .await
                    .map_err(RemoteError::from)?;
                to_value(Ack {})
            }
            cluster_methods::ADOPT => {
                let q: AdoptReq = r.json()?;
                self.inner.state().moving.insert(q.name.clone());
                let r = self.adopt(&q).await;
                self.inner.state().moving.remove(&q.name);
                r
            }
            _ => Err(r.unknown_method()),
        }
    }

    async fn adopt(&self, q: &AdoptReq) -> Result<Value, RemoteError> {
        // Trust only the core: confirm the lease is ours before spawning.
        self.take(&q.name, lease_methods::RENEW, false)
            .await
            .map_err(rpc_remote)?;
        match self.start_held(&q.name).await {
            Some(info) => {
                self.announce_moved(&q.name, &q.from, "move");
                to_value(info)
            }
            None => Err(remote(
                ErrorCode::Conflict,
                format!(
                    "{} could not start {}; its lease was released: {}",
                    self.inner.id,
                    q.name,
                    self.inner
                        .sup
                        .info(&q.name)
                        .map(|i| i.status)
                        .unwrap_or_default()
                ),
            )),
        }
    }

    /// Leaves the cluster at shutdown: stops the movable plugins here, releases their leases
    /// (not disabled, so others take them over at once) and marks this launcher offline.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        // Placement ends at its next pass, even one that slept for want of work.
        self.inner.wake.notify_one();
        let names = self.inner.state().held_names();
        for name in names {
            self.stop_here(&name, "launcher shutdown").await;
            self.release(&name, false).await;
        }
        self.send_status(&status_of(&self.inner.sup, false, Some("shut down")))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterConfig;

    fn status(id: &str, free: u64, eligible: bool) -> LauncherStatus {
        LauncherStatus {
            schema_version: 1,
            launcher_id: id.into(),
            online: true,
            host: id.into(),
            cpus: 2,
            load1: 0.0,
            mem_free: free,
            mem_total: 100,
            labels: vec![],
            eligible: if eligible { vec!["p".into()] } else { vec![] },
            plugins: vec![],
            time: 0,
            reason: None,
        }
    }

    fn peers(list: Vec<LauncherStatus>) -> BTreeMap<String, LauncherStatus> {
        list.into_iter()
            .map(|s| (s.launcher_id.clone(), s))
            .collect()
    }

    fn plugin(name: &str, pid: Option<u32>) -> PluginInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "launcherID": "a", "path": format!("/x/{name}"),
            "running": pid.is_some(), "state": if pid.is_some() { "running" } else { "stopped" },
            "startCount": 1, "status": "", "attempt": 0, "restarts": 0,
            "thresholdRestarts": 0, "breaches": 0, "movable": false,
            "pid": pid, "cpu": pid.map(|_| 1.0), "rss": pid.map(|_| 1000), "uptime": pid.map(|_| 3)
        }))
        .expect("a PluginInfo")
    }

    #[test]
    fn the_status_signature_ignores_the_numbers_and_each_plugins_own_changes() {
        let mut a = status("a", 50, true);
        a.plugins = vec![plugin("p", Some(7)), plugin("q", None)];
        let sig = signature(&a);

        // The figures alone send nothing new.
        let mut b = a.clone();
        b.time = 99;
        b.load1 = 1.5;
        b.mem_free = 7;
        b.plugins[0].cpu = Some(80.0);
        b.plugins[0].rss = Some(5000);
        b.plugins[0].uptime = Some(60);
        assert_eq!(signature(&b), sig, "numbers alone send nothing new");

        // Nor does a plugin's own change that leaves the number of active plugins as it was:
        // it goes out as that plugin's status event.
        let mut c = a.clone();
        c.plugins[0].state = PluginState::Starting;
        c.plugins[0].pid = Some(8);
        c.plugins[0].restarts = 3;
        c.plugins[0].status = "restarted".into();
        c.plugins[0].start_count = 2;
        c.plugins[1].state = PluginState::Disabled;
        c.plugins[1].status = "stopped by admin".into();
        assert_eq!(signature(&c), sig, "a plugin's change travels on its own");
        // Two plugins trading places: one stopped, another started.
        let mut c = a.clone();
        c.plugins[0].pid = None;
        c.plugins[0].state = PluginState::Failed;
        c.plugins[1].pid = Some(9);
        c.plugins[1].state = PluginState::Running;
        assert_eq!(signature(&c), sig);

        // Launcher-level facts do count.
        let mut changed = Vec::new();
        let mut d = a.clone();
        d.eligible.clear();
        changed.push(("eligible", d));
        let mut d = a.clone();
        d.labels.push("zwave".into());
        changed.push(("labels", d));
        let mut d = a.clone();
        d.plugins[1].pid = Some(9);
        changed.push(("one more active plugin (fitness counts them)", d));
        let mut d = a.clone();
        d.plugins[0].pid = None;
        changed.push(("one fewer active plugin", d));
        let mut d = a.clone();
        d.plugins.push(plugin("r", None));
        changed.push(("a plugin added", d));
        let mut d = a.clone();
        d.plugins.remove(1);
        changed.push(("a plugin removed", d));
        let mut d = a.clone();
        d.plugins[1].movable = true;
        d.plugins[1].held_by = Some("b".into());
        changed.push(("a movable plugin runs elsewhere", d));
        let mut d = a.clone();
        d.online = false;
        changed.push(("offline", d));
        let mut d = a.clone();
        d.host = "elsewhere".into();
        changed.push(("host", d));
        let mut d = a.clone();
        d.cpus = 8;
        changed.push(("cpus", d));
        for (what, d) in changed {
            assert_ne!(signature(&d), sig, "{what} must send the status");
        }
    }

    #[test]
    fn moves_only_for_a_clear_gain_after_the_residence() {
        let cfg = ClusterConfig {
            margin: 0.15,
            min_residence: Duration::from_secs(300),
            ..ClusterConfig::default()
        };
        let long = Duration::from_secs(301);
        // b has 50 % more free memory: fitness +0.25, above the margin.
        let p = peers(vec![status("a", 20, true), status("b", 70, true)]);
        assert_eq!(
            rebalance_target(&p, "a", "p", long, &cfg).as_deref(),
            Some("b")
        );
        // Not before the minimum residence.
        assert_eq!(
            rebalance_target(&p, "a", "p", Duration::from_secs(10), &cfg),
            None
        );
        // A small gain (+0.1) is not worth a move.
        let p = peers(vec![status("a", 50, true), status("b", 70, true)]);
        assert_eq!(rebalance_target(&p, "a", "p", long, &cfg), None);
        // Never to a launcher that cannot run it, or an offline one.
        let mut off = status("c", 99, true);
        off.online = false;
        let p = peers(vec![status("a", 10, true), status("b", 99, false), off]);
        assert_eq!(rebalance_target(&p, "a", "p", long, &cfg), None);
        // Already on the best one.
        let p = peers(vec![status("a", 90, true), status("b", 10, true)]);
        assert_eq!(rebalance_target(&p, "a", "p", long, &cfg), None);
    }
}
