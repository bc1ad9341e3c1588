//! `hubcli launcher …`: requests to the launcher service (`view` and `manage` capabilities).

use crate::cli::{LauncherCmd, LsArgs, StartArgs, StopArgs};
use crate::format::{self, Op};
use crate::{events, json, line, now_ms, table_width, CliError, Ctx};
use hivehub_api::auth::AUTH_SERVICE;
use hivehub_api::cluster::{
    events as cluster_events, lease_methods, LauncherStatus, LeaseList, MoveReq, CAP_LEASES,
    LAUNCHER_THING,
};
use hivehub_api::launcher::{
    methods, BatchResp, ListReq, ListResp, NameReq, PluginInfo, ReloadResp, StatusResp, StopAllReq,
    CAP_MANAGE, CAP_VIEW,
};
use hivehub_api::rpc::Ack;
use hivehub_api::ErrorCode;
use hivehub_client::{ConnState, HubClient, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;

/// The name that means every plugin in `start` and `stop`.
const ALL: &str = "all";

/// Argument checks clap cannot express, done before connecting so they are usage errors.
pub(crate) fn check(cmd: &LauncherCmd) -> Result<(), CliError> {
    match cmd {
        LauncherCmd::Stop(StopArgs {
            target,
            include_core: true,
        }) if target != ALL => Err(CliError::Usage(
            "--include-core only applies to 'stop all'".into(),
        )),
        _ => Ok(()),
    }
}

/// One launcher, as seen through the bus.
struct Launcher<'a> {
    client: &'a HubClient,
    id: &'a str,
}

impl Launcher<'_> {
    /// A request to the launcher. A timeout names the launcher, since the usual cause is that
    /// it is not running or `--launcher` names another one.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        capability: &str,
        method: &str,
        req: &Req,
    ) -> Result<Resp, CliError> {
        self.client
            .request(self.id, capability, method, req)
            .await
            .map_err(|e| match e {
                RpcError::Timeout { .. } => CliError::NoLauncher {
                    launcher: self.id.to_string(),
                    source: e,
                },
                // The core answers at once when nobody serves the launcher's capabilities.
                RpcError::Remote(ref r) if r.code == ErrorCode::UnknownCapability => {
                    CliError::NoLauncher {
                        launcher: self.id.to_string(),
                        source: e,
                    }
                }
                e => CliError::Rpc(e),
            })
    }

    async fn list(&self, only_running: bool) -> Result<Vec<PluginInfo>, CliError> {
        let r: ListResp = self
            .call(CAP_VIEW, methods::LIST, &ListReq { only_running })
            .await?;
        Ok(r.plugins)
    }
}

pub(crate) async fn run(
    ctx: &Ctx,
    client: &HubClient,
    cmd: LauncherCmd,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let l = Launcher {
        client,
        id: &ctx.g.launcher,
    };
    let as_json = ctx.g.json;
    match cmd {
        LauncherCmd::Ls(LsArgs { running, all: true }) => {
            let all = all_launchers(client, running).await?;
            if as_json {
                json(out, &all)
            } else if all.is_empty() {
                line(out, "no launcher has shared its status")
            } else {
                line(out, &format::launchers_table(&all, table_width(), now_ms()))
            }
        }
        LauncherCmd::Move { name, to } => {
            let holder = holder_of(client, &name).await?;
            let from = Launcher {
                client,
                id: &holder,
            };
            let info: PluginInfo = from
                .call(
                    CAP_MANAGE,
                    methods::MOVE,
                    &MoveReq {
                        name: name.clone(),
                        to: to.clone(),
                    },
                )
                .await?;
            if as_json {
                return json(out, &info);
            }
            line(
                out,
                &format!(
                    "moved {name} from {holder} to {to}{}",
                    info.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
            )
        }
        LauncherCmd::Ls(LsArgs { running, .. }) => {
            let plugins = l.list(running).await?;
            if as_json {
                json(out, &plugins)
            } else {
                print_table(out, &plugins, running)
            }
        }
        LauncherCmd::Start(StartArgs { target }) if target == ALL => {
            batch(&l, Op::Start, false, as_json, out).await
        }
        LauncherCmd::Start(StartArgs { target }) => {
            single(&l, Op::Start, &target, as_json, out).await
        }
        LauncherCmd::Stop(StopArgs {
            target,
            include_core,
        }) if target == ALL => batch(&l, Op::Stop, include_core, as_json, out).await,
        LauncherCmd::Stop(StopArgs { target, .. }) => {
            single(&l, Op::Stop, &target, as_json, out).await
        }
        LauncherCmd::Reload => {
            let r: ReloadResp = l.call(CAP_MANAGE, methods::RELOAD, &Ack {}).await?;
            if as_json {
                return json(out, &r);
            }
            let mut text = String::new();
            for (what, list) in [
                ("started", &r.started),
                ("stopped", &r.stopped),
                ("restarted", &r.restarted),
                ("failed", &r.failed),
                ("needs a launcher restart", &r.needs_restart),
                ("applied", &r.applied),
            ] {
                if !list.is_empty() {
                    text.push_str(&format!("{what}: {}\n", list.join(", ")));
                }
            }
            if text.is_empty() {
                text.push_str("reloaded; nothing changed\n");
            }
            write!(out, "{text}").map_err(crate::error::output)?;
            if r.failed.is_empty() {
                Ok(())
            } else {
                Err(CliError::BatchFailed {
                    op: "reload",
                    failed: r.failed.len(),
                    total: r.failed.len() + r.started.len() + r.stopped.len() + r.restarted.len(),
                })
            }
        }
        LauncherCmd::Status { name } => {
            let s: StatusResp = l.call(CAP_VIEW, methods::STATUS, &NameReq { name }).await?;
            if as_json {
                json(out, &s)
            } else {
                write!(out, "{}", format::status_text(&s, now_ms())).map_err(crate::error::output)
            }
        }
        LauncherCmd::Events { follow, plugin } => {
            events::run(client, l.id, plugin.as_deref(), follow, as_json, out).await
        }
    }
}

/// How long `ls --all` waits for the retained launcher statuses, and for a pause in them.
const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const STATUS_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// Every launcher's shared status; online launchers' plugin lists are asked for live, so the
/// table is current (the shared one may be a few seconds old).
async fn all_launchers(
    client: &HubClient,
    only_running: bool,
) -> Result<Vec<LauncherStatus>, CliError> {
    let mut rx = client
        .subscribe_events(None, Some(LAUNCHER_THING), Some(cluster_events::STATUS))
        .await?;
    let deadline = tokio::time::Instant::now() + STATUS_WAIT;
    let mut last = None;
    let mut seen: std::collections::BTreeMap<String, LauncherStatus> = Default::default();
    loop {
        let until = match last {
            Some(t) => deadline.min(t + STATUS_QUIET),
            None => deadline,
        };
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(m)) => match m.json::<LauncherStatus>() {
                Ok(s) if s.launcher_id == m.topic.agent => {
                    seen.insert(s.launcher_id.clone(), s);
                    last = Some(tokio::time::Instant::now());
                }
                Ok(_) => {}
                Err(e) => eprintln!("hubcli: warning: bad launcher status on {}: {e}", m.topic),
            },
            Ok(None) => return Err(hivehub_client::ClientError::Closed.into()),
            Err(_) => break,
        }
    }
    let mut all: Vec<LauncherStatus> = seen.into_values().collect();
    let lists = futures_util::future::join_all(all.iter().map(|s| async move {
        if !s.online {
            return None;
        }
        let l = Launcher {
            client,
            id: &s.launcher_id,
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), l.list(false))
            .await
            .ok()
            .and_then(Result::ok)
    }))
    .await;
    for (s, live) in all.iter_mut().zip(lists) {
        if let Some(p) = live {
            s.plugins = p;
        }
        // A movable plugin shows on the launcher that runs it only.
        s.plugins
            .retain(|p| p.held_by.is_none() && (!only_running || p.running));
    }
    Ok(all)
}

/// The launcher holding a movable plugin's lease, from the core.
async fn holder_of(client: &HubClient, name: &str) -> Result<String, CliError> {
    let list: LeaseList = client
        .request(AUTH_SERVICE, CAP_LEASES, lease_methods::LIST, &Ack {})
        .await?;
    list.leases
        .into_iter()
        .find(|l| l.name == name)
        .and_then(|l| l.holder)
        .ok_or_else(|| {
            CliError::Failed(format!(
                "{name} runs on no launcher (not movable, stopped, or not placed yet)"
            ))
        })
}

fn print_table(
    out: &mut dyn Write,
    plugins: &[PluginInfo],
    only_running: bool,
) -> Result<(), CliError> {
    if plugins.is_empty() {
        return line(
            out,
            if only_running {
                "no running plugins"
            } else {
                "no plugins"
            },
        );
    }
    line(out, &format::plugin_table(plugins, table_width(), now_ms()))
}

/// True for the reply "not permitted".
fn is_denied(e: &CliError) -> bool {
    matches!(e, CliError::Rpc(RpcError::Remote(r)) if r.code == ErrorCode::Denied)
}

/// The plugin list around an operation, for its outcome lines: `None` when the login may not
/// list (a plugin's own login, say). The operation then goes on, and its own reply (often "not
/// permitted" as well, naming the operation) is what the user sees.
async fn list_for_outcome(l: &Launcher<'_>) -> Result<Option<Vec<PluginInfo>>, CliError> {
    match l.list(false).await {
        Ok(p) => Ok(Some(p)),
        Err(e) if is_denied(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The launcher refuses to stop the core by name, and its message names the RPC
/// (`stopAllPlugins` with `includeCore`); say which hubcli command does that.
fn core_stop_refused(e: CliError, name: &str) -> CliError {
    match &e {
        CliError::Rpc(RpcError::Remote(r))
            if r.code == ErrorCode::Conflict
                && r.message.starts_with(&format!("'{name}' is the core")) =>
        {
            CliError::Failed(format!(
                "'{name}' is the hub core and is not stopped on its own: `hubcli launcher stop \
                 all --include-core` stops every plugin and then the core (the bus goes down \
                 with it); or stop the launcher"
            ))
        }
        _ => e,
    }
}

/// `start NAME` / `stop NAME`: what happened, then the list. The list before the operation tells
/// "already running" from "started" (both succeed, with the same PluginInfo shape).
async fn single(
    l: &Launcher<'_>,
    op: Op,
    name: &str,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let method = match op {
        Op::Start => methods::START_PLUGIN,
        Op::Stop => methods::STOP_PLUGIN,
    };
    let req = NameReq { name: name.into() };
    let call = async {
        let r: Result<PluginInfo, CliError> = l.call(CAP_MANAGE, method, &req).await;
        match op {
            Op::Stop => r.map_err(|e| core_stop_refused(e, name)),
            Op::Start => r,
        }
    };
    if as_json {
        let info = call.await?;
        return json(out, &info);
    }
    let before = list_for_outcome(l).await?;
    let info = call.await?;
    let text = match &before {
        Some(list) => format::outcome(op, name, list.iter().find(|p| p.name == name), Some(&info)),
        None => format::outcome_after(op, name, &info),
    };
    line(out, &text)?;
    if let Some(after) = list_for_outcome(l).await? {
        line(out, "")?;
        print_table(out, &after, false)?;
    }
    Ok(())
}

/// `start all` / `stop all [--include-core]`: one line per plugin, then the list; fails (exit 1)
/// when any plugin failed, after printing everything.
async fn batch(
    l: &Launcher<'_>,
    op: Op,
    include_core: bool,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let before = if as_json {
        None
    } else {
        list_for_outcome(l).await?
    };
    let resp: BatchResp = match op {
        Op::Start => l.call(CAP_MANAGE, methods::START_ALL, &Ack {}).await?,
        Op::Stop if include_core => match stop_everything(l).await? {
            Some(r) => r,
            None => {
                return line(
                    out,
                    "the hub went away before replying: the core is stopping with the plugins \
                     (--include-core); send the launcher SIGHUP (`systemctl reload hivehub`) to \
                     start the core again",
                )
            }
        },
        Op::Stop => {
            l.call(
                CAP_MANAGE,
                methods::STOP_ALL,
                &StopAllReq {
                    include_core: false,
                },
            )
            .await?
        }
    };
    if as_json {
        json(out, &resp)?;
    } else {
        for s in format::batch_lines(op, &resp.results, before.as_deref(), &resp.plugins) {
            line(out, &s)?;
        }
        line(out, "")?;
        print_table(out, &resp.plugins, false)?;
        if let Some(note) = &resp.note {
            line(out, &format!("\n{note}"))?;
        }
    }
    let failed = resp.results.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        return Err(CliError::BatchFailed {
            op: op.verb(),
            failed,
            total: resp.results.len(),
        });
    }
    Ok(())
}

/// `stopAllPlugins` with the core: the core may go down before its reply reaches us. The SDK
/// then reconnects and the request would only time out, so a lost connection ends the wait and
/// counts as success (`None`): it is the expected effect of the request.
async fn stop_everything(l: &Launcher<'_>) -> Result<Option<BatchResp>, CliError> {
    let mut state = l.client.state();
    let call = l.call(
        CAP_MANAGE,
        methods::STOP_ALL,
        &StopAllReq { include_core: true },
    );
    tokio::select! {
        biased;
        r = call => match r {
            // The core went down with the reply in flight: that is the full stop we asked for.
            Err(CliError::Rpc(RpcError::Client(hivehub_client::ClientError::ConnectionLost(_)))) => Ok(None),
            other => other.map(Some),
        },
        _ = state.wait_for(|s| matches!(s, ConnState::Disconnected(_) | ConnState::Closed)) => Ok(None),
    }
}
