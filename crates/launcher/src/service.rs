//! The launcher's service on the bus, served under the launcher's `id`. Every request gets a
//! reply, a result or a typed error. Who may call what is enforced by the core's ACL from the
//! grants registered here, each time the launcher connects: `view` for viewer and up, `manage`
//! for manager and admin only. A plugin, a device or another launcher is refused by the core
//! (`denied`) before the request arrives. Types and method names: `hivehub_api::launcher`.
//!
//! | method | does |
//! |---|---|
//! | `view/list` | every plugin (`onlyRunning` for those with a process), sorted by name |
//! | `view/status` | one plugin, its last output lines and its recent resource samples |
//! | `manage/startPlugin` | starts one plugin; a running one is left as is; a movable one goes through the cluster |
//! | `manage/stopPlugin` | stops one plugin and marks it `disabled`; the core is refused (`conflict`) |
//! | `manage/startAllPlugins` | autostart order, then every other plugin (not the core, not movable ones) |
//! | `manage/stopAllPlugins` | reverse start order; with `includeCore` the core goes about 300 ms after the reply, which travels through it |
//! | `manage/reload` | re-reads `launcher.yaml` and applies the difference (`Supervisor::reload`); an invalid file is `badRequest` |
//! | `manage/move` | hands a movable plugin to another launcher; sent to the one running it (`crate::cluster`) |
//!
//! The `cluster` capability (`check`, `adopt`, granted to launchers) is served by
//! `crate::cluster`. Errors: `notFound` (`no plugin named 'x'; available: a, b`), `conflict`
//! (a start failed, the core alone, a plugin not movable or not placed here), `internal` (a
//! stop left processes behind), `badRequest`, `unknownMethod`, `tooLarge`.
//!
//! Also the publisher: lifecycle events and a retained status message per plugin.
//!
//! `view` is what any viewer may call, so it must stay cheap when one floods it: the SDK bounds
//! the requests in flight (and answers the rest `busy`), and `view` answers are serialized
//! straight from their types, not through a `serde_json::Value` per request. A `status` answer
//! (which carries the history and the log tail) is serialized once and then reused while the
//! plugin's status is unchanged.

use crate::cluster::Cluster;
use crate::supervisor::{LaunchError, Notice, Supervisor};
use hivehub_api::cluster::MoveReq;
use hivehub_api::launcher::{
    events, methods, BatchItem, BatchResp, ListReq, ListResp, NameReq, PluginInfo, StatusResp,
    StopAllReq, CAP_MANAGE, CAP_VIEW,
};
use hivehub_api::{ErrorCode, RemoteError, Role};
use hivehub_client::{HubClient, QoS, Request, RpcError};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use hivehub_api::rpc::to_value;

fn remote(e: LaunchError) -> RemoteError {
    RemoteError::from(e)
}

fn batch(sup: &Supervisor, results: Vec<(String, Result<PluginInfo, LaunchError>)>) -> BatchResp {
    BatchResp {
        results: results
            .into_iter()
            .map(|(name, r)| BatchItem {
                name,
                ok: r.is_ok(),
                error: r.err().map(|e| e.to_string()),
            })
            .collect(),
        plugins: sup.list(),
        note: None,
    }
}

/// A result serialized to JSON, cheap to clone.
type Json = Arc<[u8]>;

fn to_json<T: Serialize>(v: &T) -> Result<Json, RemoteError> {
    serde_json::to_vec(v)
        .map(Json::from)
        .map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))
}

/// Most plugins whose last `status` answer is kept; beyond it the cache starts over. A plugin
/// name must exist to be cached, so this only matters after many renames.
const STATUS_CACHE_MAX: usize = 256;

/// The last `status` answer of each plugin, with what it was made from. Building the answer's
/// parts is a few copies; serializing it (up to 150 history samples and 20 log lines) is the
/// expensive part, so it is done again only when a part changed.
#[derive(Clone, Default)]
struct StatusCache(Arc<Mutex<HashMap<String, (StatusResp, Json)>>>);

impl StatusCache {
    fn get(&self, resp: &StatusResp) -> Option<Json> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&resp.info.name)
            .filter(|(made_from, _)| made_from == resp)
            .map(|(_, json)| json.clone())
    }

    fn put(&self, resp: StatusResp, json: Json) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= STATUS_CACHE_MAX && !cache.contains_key(&resp.info.name) {
            cache.clear();
        }
        cache.insert(resp.info.name.clone(), (resp, json));
    }
}

async fn view(sup: Supervisor, cache: StatusCache, r: Request) -> Result<Json, RemoteError> {
    match r.method.as_str() {
        methods::LIST => {
            let req: ListReq = r.json()?;
            let plugins = sup
                .list_checked()
                .into_iter()
                .filter(|p| !req.only_running || p.running)
                .collect();
            to_json(&ListResp {
                launcher_id: sup.config().id.clone(),
                plugins,
            })
        }
        methods::STATUS => {
            let req: NameReq = r.json()?;
            let resp = StatusResp {
                info: sup.info(&req.name).map_err(remote)?,
                log_tail: sup.log_tail(&req.name).map_err(remote)?,
                history: sup.history(&req.name).map_err(remote)?,
            };
            if let Some(json) = cache.get(&resp) {
                return Ok(json);
            }
            let json = to_json(&resp)?;
            cache.put(resp, json.clone());
            Ok(json)
        }
        _ => Err(r.unknown_method()),
    }
}

async fn manage(sup: Supervisor, cluster: Cluster, r: Request) -> Result<Value, RemoteError> {
    let by = r.sender.clone();
    match r.method.as_str() {
        methods::START_PLUGIN => {
            let req: NameReq = r.json()?;
            tracing::info!(plugin = %req.name, %by, "start requested");
            if sup.config().is_movable(&req.name) {
                sup.info(&req.name).map_err(remote)?;
                return to_value(cluster.user_start(&req.name).await?);
            }
            to_value(sup.start(&req.name).await.map_err(remote)?)
        }
        methods::MOVE => {
            let req: MoveReq = r.json()?;
            tracing::info!(plugin = %req.name, to = %req.to, %by, "move requested");
            sup.info(&req.name).map_err(remote)?;
            if !sup.config().is_movable(&req.name) {
                return Err(RemoteError::new(
                    ErrorCode::Conflict,
                    format!(
                        "'{}' is not movable (set plugins.{}.placement: movable)",
                        req.name, req.name
                    ),
                ));
            }
            to_value(cluster.move_to(&req.name, &req.to).await?)
        }
        methods::STOP_PLUGIN => {
            let req: NameReq = r.json()?;
            if Some(req.name.as_str()) == sup.core_name() {
                return Err(RemoteError::new(
                    ErrorCode::Conflict,
                    format!(
                        "'{}' is the core; stop it with stopAllPlugins with includeCore or by stopping the launcher",
                        req.name
                    ),
                ));
            }
            tracing::info!(plugin = %req.name, %by, "stop requested");
            if sup.config().is_movable(&req.name) {
                sup.info(&req.name).map_err(remote)?;
                return to_value(cluster.user_stop(&req.name, &by).await?);
            }
            to_value(sup.stop_by(&req.name, &by).await.map_err(remote)?)
        }
        methods::START_ALL => {
            let _: hivehub_api::rpc::Ack = r.json()?;
            to_value(batch(&sup, sup.start_all().await))
        }
        methods::STOP_ALL => {
            let req: StopAllReq = r.json()?;
            let mut results = sup.stop_all_by(false, &by).await;
            if req.include_core {
                if let Some(core) = sup.core_name().map(str::to_string) {
                    // The reply travels through the core: stop it just after answering.
                    let s2 = sup.clone();
                    let by2 = by.clone();
                    let c2 = core.clone();
                    sup.spawn_task(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        if let Err(e) = s2.stop_by(&c2, &by2).await {
                            tracing::error!("{e}");
                        }
                    });
                    results.push((core.clone(), sup.info(&core)));
                    let mut resp = batch(&sup, results);
                    resp.note = Some(format!(
                        "the core '{core}' stops in a moment, and with it the bus: nothing reaches \
                         the launcher until it runs again. Start it with SIGHUP to the launcher \
                         (`systemctl reload hivehub`, or `kill -HUP {}`), then `hubcli launcher \
                         start all`.",
                        std::process::id()
                    ));
                    return to_value(resp);
                }
            }
            to_value(batch(&sup, results))
        }
        methods::RELOAD => {
            let _: hivehub_api::rpc::Ack = r.json()?;
            let resp = sup
                .reload(&by)
                .await
                .map_err(|e| RemoteError::new(ErrorCode::BadRequest, e.to_string()))?;
            to_value(resp)
        }
        _ => Err(r.unknown_method()),
    }
}

/// Serves the launcher's capabilities on `bus` and registers who may call them.
pub async fn serve(bus: &HubClient, sup: &Supervisor, cluster: &Cluster) -> Result<(), RpcError> {
    let s = sup.clone();
    let cache = StatusCache::default();
    bus.serve_raw(CAP_VIEW, move |r| view(s.clone(), cache.clone(), r))
        .await?;
    let s = sup.clone();
    let c = cluster.clone();
    bus.serve(CAP_MANAGE, move |r| manage(s.clone(), c.clone(), r))
        .await?;
    bus.set_permissions(
        CAP_VIEW,
        &[Role::Viewer, Role::Operator, Role::Manager, Role::Admin],
    )
    .await?;
    bus.set_permissions(CAP_MANAGE, &[Role::Manager, Role::Admin])
        .await?;
    Ok(())
}

/// Publishes the supervisor's notices on the bus: events as they happen, and each plugin's
/// status retained, so a late subscriber sees the current state at once.
pub async fn publish(bus: HubClient, mut rx: mpsc::UnboundedReceiver<Notice>) {
    while let Some(n) = rx.recv().await {
        let r = match &n {
            Notice::Event(e) => bus.publish_event(&e.plugin, &e.event, e, false).await,
            Notice::Status(info) => {
                bus.publish_event(&info.name, events::STATUS, info, true)
                    .await
            }
            // An empty retained message removes the retained status.
            Notice::Gone(name) => {
                bus.publish_event_raw(name, events::STATUS, Vec::new(), QoS::AtLeastOnce, true)
                    .await
            }
        };
        if let Err(e) = r {
            // At a clean shutdown the bus goes first: not worth a warning, nor a struct dump.
            let what = match &n {
                Notice::Event(e) => format!("{} event of {}", e.event, e.plugin),
                Notice::Status(i) => format!("status of {}", i.name),
                Notice::Gone(name) => format!("removal of {name}"),
            };
            if bus.is_closed() {
                tracing::debug!("not published (the bus connection is closed): {what}");
            } else {
                tracing::warn!("cannot publish the {what}: {e}");
            }
        }
    }
}
