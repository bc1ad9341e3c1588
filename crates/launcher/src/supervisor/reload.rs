//! Applying a changed `launcher.yaml` without a restart (`reload`, SIGHUP).
//!
//! Settings the running launcher cannot change (`id`, `core`, `serverURL`, `httpListen`,
//! `loglevel`, `logtofile`, `sampleInterval`, `restartConcurrency`, and the core's own
//! `plugins.<core>` entry) are applied only at the next launcher start; the answer lists them in
//! `needsRestart`. Callers: `manage/reload` (`hubcli launcher reload`) and SIGHUP; both read
//! the file the launcher was started with.
//!
//! A plugin whose entry changed (or, when `labels` changed, a movable one) but that was not
//! started, stopped or restarted gets its status published again, since what it shows
//! (`movable`, the sandbox level) may have changed: that also tells the cluster that a movable
//! plugin may now be placed here, or no longer.

use super::*;

impl Supervisor {
    /// Re-reads the config file and applies only the difference: new autostart plugins are
    /// started, removed ones stopped, running plugins whose settings changed restarted (in the
    /// new autostart order); everything else keeps running with the same PID. An invalid file is
    /// rejected with its location and nothing changes.
    pub async fn reload(&self, by: &str) -> Result<ReloadResp, ConfigError> {
        let path = lock(&self.sh.config_path)
            .clone()
            .unwrap_or_else(|| self.sh.home.config_file("launcher"));
        let new = crate::config::load(&path)?;
        let old = self.cfg();
        let mut resp = ReloadResp::default();
        for (key, changed) in [
            ("id", old.id != new.id),
            ("core", old.core != new.core),
            ("serverURL", old.server_url != new.server_url),
            ("httpListen", old.http_listen != new.http_listen),
            ("loglevel", old.loglevel != new.loglevel),
            ("logtofile", old.logtofile != new.logtofile),
            ("sampleInterval", old.sample_interval != new.sample_interval),
            (
                "restartConcurrency",
                old.restart_concurrency != new.restart_concurrency,
            ),
        ] {
            if changed {
                resp.needs_restart.push(key.to_string());
            }
        }
        let removed: Vec<String> = old
            .autostart
            .iter()
            .filter(|n| !new.autostart.contains(n))
            .cloned()
            .collect();
        let settings_changed =
            |n: &str| old.plugin(n) != new.plugin(n) || old.backoff_for(n) != new.backoff_for(n);
        *self.sh.cfg.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new.clone());
        tracing::info!(file = %path.display(), %by, "configuration reloaded");
        let mut failed = Vec::new();
        let mut resp_failed = |name: &str, e: LaunchError| failed.push(format!("{name}: {e}"));
        for name in removed.iter().rev() {
            let running = self.slot(name).is_ok_and(|s| lock(&s.st).pid().is_some());
            if running {
                match self.stop_by(name, by).await {
                    Ok(_) => resp.stopped.push(name.clone()),
                    Err(e) => resp_failed(name, e),
                }
            }
        }
        self.discover();
        let names: Vec<String> = lock(&self.sh.slots).keys().cloned().collect();
        let mut order: Vec<String> = new.autostart.clone();
        order.extend(names.into_iter().filter(|n| !new.autostart.contains(n)));
        for name in order {
            if Some(name.as_str()) == self.core_name() {
                if settings_changed(&name) {
                    resp.needs_restart.push(format!("plugins.{name}"));
                }
                continue;
            }
            let Ok(slot) = self.slot(&name) else { continue };
            let running = lock(&slot.st).pid().is_some();
            if running && settings_changed(&name) {
                let r = match self.stop_by(&name, by).await {
                    Ok(_) => self.start(&name).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(_) => resp.restarted.push(name.clone()),
                    Err(e) => resp_failed(&name, e),
                }
            } else if !running && new.autostart.contains(&name) && !old.autostart.contains(&name) {
                match self.start(&name).await {
                    Ok(_) => resp.started.push(name.clone()),
                    Err(e) => resp_failed(&name, e),
                }
            }
        }
        resp.failed = failed;
        resp.applied = applied_live(&old, &new, &resp);
        self.publish_reconfigured(&old, &new, &resp);
        Ok(resp)
    }

    /// Publishes the status of each plugin whose entry changed (each movable one when the
    /// labels changed) and that the reload did not start, stop or restart (those published
    /// theirs).
    fn publish_reconfigured(&self, old: &LauncherConfig, new: &LauncherConfig, resp: &ReloadResp) {
        let labels = old.labels != new.labels;
        let slots: Vec<Arc<Slot>> = lock(&self.sh.slots).values().cloned().collect();
        for slot in slots {
            let n = slot.name.as_str();
            let handled = [&resp.started, &resp.stopped, &resp.restarted]
                .iter()
                .any(|l| l.iter().any(|m| m == n));
            let changed = old.plugin(n) != new.plugin(n)
                || (labels && (old.is_movable(n) || new.is_movable(n)));
            if changed && !handled {
                self.publish_status(&slot);
            }
        }
    }
}

/// The changed settings that took effect without a restart: every changed key that is not in
/// `needsRestart`, and every plugin whose entry changed but that was not started, stopped or
/// restarted (a stopped plugin, a movable one the cluster places, an `action` or a limit).
fn applied_live(old: &LauncherConfig, new: &LauncherConfig, resp: &ReloadResp) -> Vec<String> {
    let mut out: Vec<String> = [
        ("logplugins", old.logplugins != new.logplugins),
        ("attachstderr", old.attachstderr != new.attachstderr),
        ("attachstdout", old.attachstdout != new.attachstdout),
        ("autorestart", old.autorestart != new.autorestart),
        (
            "createPluginCred",
            old.create_plugin_cred != new.create_plugin_cred,
        ),
        ("autostart", old.autostart != new.autostart),
        ("readyTimeout", old.ready_timeout != new.ready_timeout),
        ("logMaxSize", old.log_max_size != new.log_max_size),
        ("logMaxFiles", old.log_max_files != new.log_max_files),
        ("backoff", old.backoff != new.backoff),
        ("labels", old.labels != new.labels),
        ("cluster", old.cluster != new.cluster),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(k, _)| k.to_string())
    .collect();
    let names: std::collections::BTreeSet<&String> =
        old.plugins.keys().chain(new.plugins.keys()).collect();
    let handled = |n: &str| {
        [&resp.started, &resp.stopped, &resp.restarted]
            .iter()
            .any(|l| l.iter().any(|m| m == n))
            || resp
                .needs_restart
                .iter()
                .any(|k| k == &format!("plugins.{n}"))
    };
    for n in names {
        if old.plugins.get(n) != new.plugins.get(n) && !handled(n) {
            out.push(format!("plugins.{n}"));
        }
    }
    out
}
