//! Several launchers, one hub: the shared launcher status, the leases that keep a movable plugin
//! to one launcher at a time, and launcher presence. See `docs/SCALING.md`.
//!
//! ```text
//! event/{launcherID}/_launcher/status/{launcherID}   retained LauncherStatus (Last Will: online=false)
//! event/{launcherID}/{plugin}/status/{launcherID}    retained PluginInfo of one of its plugins (crate::launcher)
//! rpc/auth/leases/{acquire|renew|release|transfer|list}/{sender}   the core's lease service
//! event/auth/_leases/{plugin}/auth                   retained LeaseInfo after every change
//! event/auth/_launchers/{launcherOnline|launcherOffline}/auth   presence, from the core
//! ```

use crate::auth::AUTH_SERVICE;
use crate::launcher::PluginInfo;
use crate::topic::{filter, Topic};
use crate::IdError;
use serde::{Deserialize, Serialize};

/// Thing ID under which a launcher publishes its own status. Reserved: no plugin may use it.
pub const LAUNCHER_THING: &str = "_launcher";
/// Thing ID under which the core publishes lease changes (the event name is the plugin).
pub const LEASES_THING: &str = "_leases";
/// Thing ID under which the core publishes launcher presence events.
pub const LAUNCHERS_THING: &str = "_launchers";
/// The core's lease capability (served by the `auth` service).
pub const CAP_LEASES: &str = "leases";
/// The launcher capability other launchers call to hand a plugin over (role launcher only).
pub const CAP_CLUSTER: &str = "cluster";
/// Longest lease the core grants; also its grace period after a restart, during which only
/// a lease's previous holder may claim it (the core keeps leases in memory only).
pub const MAX_LEASE_TTL_MS: u64 = 30_000;
/// Shortest lease the core grants.
pub const MIN_LEASE_TTL_MS: u64 = 500;

/// Method names of [`CAP_LEASES`].
pub mod lease_methods {
    /// Take a free lease, or extend one already held ([`super::LeaseReq`] → [`super::LeaseInfo`]).
    pub const ACQUIRE: &str = "acquire";
    /// Extend a lease held by the caller ([`super::LeaseReq`] → [`super::LeaseInfo`]).
    pub const RENEW: &str = "renew";
    /// Give a lease up, optionally marking the plugin disabled hub-wide
    /// ([`super::ReleaseReq`] → [`super::LeaseInfo`]).
    pub const RELEASE: &str = "release";
    /// Hand a held lease to another launcher in one step ([`super::TransferReq`] → [`super::LeaseInfo`]).
    pub const TRANSFER: &str = "transfer";
    /// Every known lease (`{}` → [`super::LeaseList`]).
    pub const LIST: &str = "list";
}

/// Method names of [`CAP_CLUSTER`].
pub mod cluster_methods {
    /// The current holder asks a target launcher to take a plugin over after the holder
    /// stopped it and transferred the lease ([`super::AdoptReq`] → [`crate::launcher::PluginInfo`]).
    pub const ADOPT: &str = "adopt";
    /// Before a hand-over: the target checks that it can run the plugin and mints its
    /// credentials now, so the gap after the source stops is only the spawn
    /// ([`crate::launcher::NameReq`] → [`crate::rpc::Ack`]).
    pub const CHECK: &str = "check";
}

/// Event names of the cluster.
pub mod events {
    /// Retained status of a launcher ([`super::LauncherStatus`]).
    pub const STATUS: &str = "status";
    /// A launcher's session started (published by the core).
    pub const LAUNCHER_ONLINE: &str = "launcherOnline";
    /// A launcher's session ended (published by the core).
    pub const LAUNCHER_OFFLINE: &str = "launcherOffline";
    /// A movable plugin now runs on another launcher (published by the new holder, with
    /// `from`/`to` in the [`crate::launcher::LauncherEvent`]).
    pub const MOVED: &str = "moved";
}

/// Topic of `launcher`'s retained status.
pub fn status_topic(launcher: &str) -> Result<Topic, IdError> {
    Topic::event(launcher, LAUNCHER_THING, events::STATUS)
}

/// Filter for every launcher's status.
pub fn status_filter() -> String {
    filter::events(None, Some(LAUNCHER_THING), Some(events::STATUS))
}

/// Filter for the core's lease changes.
pub fn lease_filter() -> String {
    filter::events(Some(AUTH_SERVICE), Some(LEASES_THING), None)
}

/// Filter for the core's presence events.
pub fn presence_filter() -> String {
    filter::events(Some(AUTH_SERVICE), Some(LAUNCHERS_THING), None)
}

/// What a launcher shares with the others, retained: sent at start, when a launcher-level fact
/// in it changes (online, host, CPUs, labels, `eligible`, the names of its plugins, how many are
/// active, where its movable ones run) and at least every 30 s, so its figures (load, memory,
/// the plugins' CPU and memory) and its plugins' details may be that old. A change of one
/// plugin travels as that plugin's own retained status
/// (`event/{launcherID}/{plugin}/status/{launcherID}`, a [`PluginInfo`]), which a reader that
/// shows `plugins` applies on top. Its Last Will is the same message with `online: false`, so a
/// dead launcher shows as offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LauncherStatus {
    /// Schema version of this payload.
    pub schema_version: u32,
    /// The launcher's login ID.
    #[serde(rename = "launcherID")]
    pub launcher_id: String,
    /// False in the Last Will and after a clean shutdown.
    pub online: bool,
    /// Host name.
    pub host: String,
    /// Number of CPUs.
    pub cpus: u32,
    /// One-minute load average.
    pub load1: f64,
    /// Available memory in bytes (MemAvailable).
    pub mem_free: u64,
    /// Total memory in bytes.
    pub mem_total: u64,
    /// This launcher's labels (hardware it has, e.g. `zwave-stick`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Movable plugins this launcher can run (binary present, required labels met).
    #[serde(default)]
    pub eligible: Vec<String>,
    /// Its plugins (empty in the Last Will), as they were when it was sent: each plugin's own
    /// status event is newer.
    #[serde(default)]
    pub plugins: Vec<PluginInfo>,
    /// When it was published (unix milliseconds).
    pub time: u64,
    /// Why it is offline (`connection lost`, `shut down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LauncherStatus {
    /// Number of plugins running or starting.
    pub fn active_plugins(&self) -> usize {
        self.plugins.iter().filter(|p| p.pid.is_some()).count()
    }

    /// Fitness for placing one more plugin: higher is better, in \[0, 1\]. Free memory weighs
    /// most, then idle CPU, then few plugins. Every launcher computes it from the same shared
    /// statuses, so they agree on the ranking.
    pub fn fitness(&self) -> f64 {
        let mem = if self.mem_total == 0 {
            0.0
        } else {
            self.mem_free as f64 / self.mem_total as f64
        };
        let cpus = f64::from(self.cpus.max(1));
        let idle = 1.0 - (self.load1 / cpus).clamp(0.0, 1.0);
        let few = 1.0 / (1.0 + self.active_plugins() as f64 / 10.0);
        0.5 * mem.clamp(0.0, 1.0) + 0.3 * idle + 0.2 * few
    }
}

/// Ranks the online `candidates` eligible for `plugin` (with `requires` labels), best first.
/// Ties break on the launcher ID, so every launcher computes the same order.
pub fn rank<'a>(
    candidates: impl IntoIterator<Item = &'a LauncherStatus>,
    plugin: &str,
) -> Vec<&'a LauncherStatus> {
    let mut v: Vec<&LauncherStatus> = candidates
        .into_iter()
        .filter(|s| s.online && s.eligible.iter().any(|e| e == plugin))
        .collect();
    v.sort_by(|a, b| {
        b.fitness()
            .total_cmp(&a.fitness())
            .then_with(|| a.launcher_id.cmp(&b.launcher_id))
    });
    v
}

/// Request of `acquire` and `renew`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseReq {
    /// The plugin.
    pub name: String,
    /// How long the lease lasts from the core's receipt of this request, in milliseconds
    /// (clamped to \[[`MIN_LEASE_TTL_MS`], [`MAX_LEASE_TTL_MS`]\]).
    pub ttl_ms: u64,
    /// Clear the hub-wide `disabled` mark (a user asked to start it).
    #[serde(default)]
    pub enable: bool,
}

/// Request of `release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReq {
    /// The plugin.
    pub name: String,
    /// Mark the plugin disabled hub-wide (a user stopped it), so no launcher takes it.
    #[serde(default)]
    pub disable: bool,
}

/// Request of `transfer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferReq {
    /// The plugin.
    pub name: String,
    /// The launcher that receives the lease.
    pub to: String,
    /// The new holder's lease time, in milliseconds.
    pub ttl_ms: u64,
}

/// A lease as the core sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseInfo {
    /// The plugin.
    pub name: String,
    /// The launcher holding it, if any.
    #[serde(default)]
    pub holder: Option<String>,
    /// Milliseconds until it expires (when held).
    #[serde(default)]
    pub expires_in_ms: Option<u64>,
    /// Increases with every new holder: a fencing number.
    pub generation: u64,
    /// A user stopped the plugin: no launcher may take the lease until one starts it.
    #[serde(default)]
    pub disabled: bool,
    /// The previous holder (after a transfer or expiry), for `moved` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// Result of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseList {
    /// Every lease the core knows, by plugin name.
    pub leases: Vec<LeaseInfo>,
}

/// Request of the launcher's `cluster/adopt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdoptReq {
    /// The plugin.
    pub name: String,
    /// The launcher it comes from.
    pub from: String,
}

/// Request of the launcher's `manage/move`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveReq {
    /// The plugin.
    pub name: String,
    /// The launcher that should run it.
    pub to: String,
}

/// A launcher's presence, published by the core when its session starts or ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    /// Schema version of this payload.
    pub schema_version: u32,
    /// `launcherOnline` or `launcherOffline`.
    pub event: String,
    /// The launcher.
    #[serde(rename = "launcherID")]
    pub launcher_id: String,
    /// When (unix milliseconds).
    pub time: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, free: u64, load: f64, eligible: &[&str]) -> LauncherStatus {
        LauncherStatus {
            schema_version: 1,
            launcher_id: id.into(),
            online: true,
            host: "h".into(),
            cpus: 2,
            load1: load,
            mem_free: free,
            mem_total: 100,
            labels: vec![],
            eligible: eligible.iter().map(|s| s.to_string()).collect(),
            plugins: vec![],
            time: 0,
            reason: None,
        }
    }

    #[test]
    fn rank_prefers_free_memory_and_idle_cpu_and_skips_ineligible_or_offline() {
        let a = status("a", 20, 0.0, &["p"]);
        let b = status("b", 80, 0.0, &["p"]);
        let c = status("c", 90, 0.0, &["q"]);
        let mut d = status("d", 99, 0.0, &["p"]);
        d.online = false;
        let e = status("e", 80, 1.0, &["p"]);
        let all = [a, b, c, d, e];
        let ids: Vec<&str> = rank(&all, "p")
            .iter()
            .map(|s| s.launcher_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "e", "a"]);
    }

    #[test]
    fn rank_breaks_ties_by_id() {
        let all = [status("z", 50, 0.5, &["p"]), status("m", 50, 0.5, &["p"])];
        let ids: Vec<&str> = rank(&all, "p")
            .iter()
            .map(|s| s.launcher_id.as_str())
            .collect();
        assert_eq!(ids, ["m", "z"]);
    }

    #[test]
    fn topics_follow_the_scheme() {
        let t = status_topic("launcher-pi2").unwrap().to_string();
        assert_eq!(t, "event/launcher-pi2/_launcher/status/launcher-pi2");
        assert!(crate::topic::filter::matches(&status_filter(), &t));
        assert_eq!(lease_filter(), "event/auth/_leases/+/+");
    }
}
