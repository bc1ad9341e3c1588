//! Starting one plugin: the checks, credentials, sandbox, spawn and readiness.

use super::*;

impl Supervisor {
    pub(super) fn fail(&self, slot: &Slot, reason: String) -> LaunchError {
        {
            let mut st = lock(&slot.st);
            let _ = self.apply(slot, &mut st, Event::Fail);
            st.status = reason.clone();
            if let Some(log) = &st.log {
                log.marker(&format!("start failed: {reason}"));
            }
        }
        tracing::error!(plugin = %slot.name, "start failed: {reason}");
        self.publish_status(slot);
        LaunchError::StartFailed {
            name: slot.name.clone(),
            reason,
        }
    }

    /// Starts a plugin. Starting a running plugin changes nothing and returns its info. A manual
    /// start resets the restart backoff and cancels a scheduled restart.
    pub async fn start(&self, name: &str) -> Result<PluginInfo, LaunchError> {
        // A binary copied in just now is not listed until the next scan: look again first.
        let slot = match self.slot(name) {
            Ok(s) => s,
            Err(_) => {
                self.discover();
                self.slot(name)?
            }
        };
        self.reset_for_manual_start(&slot);
        self.find_external();
        let r = self.start_slot(&slot).await;
        if r.is_ok() {
            self.watch_stability(&slot);
        }
        r
    }

    /// A manual start resets the backoff and cancels a scheduled restart.
    pub(super) fn reset_for_manual_start(&self, slot: &Slot) {
        {
            let mut st = lock(&slot.st);
            st.restart_gen += 1;
            st.start_kind = StartKind::Manual;
            if st.pid().is_none() {
                st.attempt = 0;
            }
        }
        self.save_backoff(slot);
    }

    pub(super) async fn start_slot(&self, slot: &Arc<Slot>) -> Result<PluginInfo, LaunchError> {
        self.start_slot_in_turn(slot, Turn::default()).await
    }

    /// Starts `slot`; its spawn waits for `turn` (the previous plugin's spawn in a pipelined
    /// start), and `turn` lets the next one go once this spawn is done or the start failed.
    pub(super) async fn start_slot_in_turn(
        &self,
        slot: &Arc<Slot>,
        mut turn: Turn,
    ) -> Result<PluginInfo, LaunchError> {
        let slot = slot.clone();
        let name = slot.name.as_str();
        let _op = slot.op.lock().await;
        {
            let mut st = lock(&slot.st);
            if st.pid().is_some() {
                drop(st);
                return Ok(self.info_of(&slot));
            }
            if let Some(pid) = st.life.phase().external() {
                let reason = format!(
                    "it runs already, started outside this launcher (pid {pid}); stop that one \
                     first (hubcli launcher stop {name})"
                );
                drop(st);
                return Err(self.fail(&slot, reason));
            }
            if let Err(e) = self.apply(&slot, &mut st, Event::Start) {
                drop(st);
                return Err(self.fail(&slot, e.to_string()));
            }
            st.status = "starting".into();
        }
        if !slot.is_core && self.cfg().is_movable(name) {
            let gate = lock(&self.sh.gate).clone();
            let verdict = match gate {
                Some(g) => g.may_spawn(name),
                None => Err("movable plugins run only when the launcher is on the bus".into()),
            };
            if let Err(reason) = verdict {
                {
                    let mut st = lock(&slot.st);
                    let _ = self.apply(&slot, &mut st, Event::NotPlaced);
                    st.status = reason.clone();
                }
                self.publish_status(&slot);
                return Err(LaunchError::NotPlaced {
                    name: name.to_string(),
                    reason,
                });
            }
        }
        // Rescan only when the binary is not known to be there (a restart need not pay for it).
        if !lock(&slot.st).present {
            self.discover();
        }
        let (path, present) = {
            let st = lock(&slot.st);
            (st.path.clone(), st.present)
        };
        if !present {
            let reason = format!("binary {} not found or not executable", path.display());
            {
                let mut st = lock(&slot.st);
                let _ = self.apply(&slot, &mut st, Event::BinaryLost);
                st.status = reason.clone();
            }
            return Err(LaunchError::StartFailed {
                name: name.to_string(),
                reason,
            });
        }
        let cfg = self.cfg();
        let pc = cfg.plugin(name);
        if !slot.is_core {
            if let Some(why) = sandbox::reserved_name(name, &cfg) {
                return Err(self.fail(&slot, why));
            }
        }
        if let Err(why) = sandbox::check_binary(&path, self.sh.sandbox.host().uid) {
            return Err(self.fail(&slot, why));
        }
        let log = {
            let mut st = lock(&slot.st);
            st.log
                .get_or_insert_with(|| {
                    Arc::new(PluginLog::open(
                        &self.sh.home.logs().join(format!("{name}.log")),
                        cfg.logplugins,
                        cfg.log_max_size,
                        cfg.log_max_files,
                        cfg.attachstdout,
                        cfg.attachstderr,
                    ))
                })
                .clone()
        };
        let fresh = {
            let mut st = lock(&slot.st);
            let restart = st.start_kind != StartKind::Manual;
            std::mem::take(&mut st.creds_fresh) || (restart && self.creds_reusable(name, &st))
        };
        if !slot.is_core && cfg.create_plugin_cred && !fresh {
            if let Err(reason) = self.mint_credentials(name).await {
                return Err(self.fail(&slot, reason));
            }
        }
        let wait_ready = pc.wait_ready || slot.is_core;
        let mut env = self.env_for(name, &pc);
        let notify = if wait_ready {
            match ReadyListener::bind(&self.sh.home.run(), name) {
                Ok(l) => {
                    env.push(("NOTIFY_SOCKET".into(), l.path.display().to_string()));
                    Some(l)
                }
                Err(e) => {
                    tracing::warn!(
                        plugin = name,
                        "cannot create readiness socket, not waiting: {e}"
                    );
                    None
                }
            }
        } else {
            None
        };
        let (env, env_clear, confine) = if slot.is_core {
            let env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
            let creds = match sandbox::core_creds(&self.sh.home, &pc, &self.sh.sandbox.host()) {
                Ok(c) => c,
                Err(why) => return Err(self.fail(&slot, why)),
            };
            if let Some(c) = &creds {
                if let Err(why) = sandbox::prepare_core_dirs(&self.sh.home, c) {
                    return Err(self.fail(&slot, why));
                }
            }
            let confine = sandbox::Confinement {
                creds,
                ..sandbox::Confinement::default()
            };
            (env, false, confine)
        } else {
            let p = match self.sh.sandbox.prepare(name, &path, &pc, &env) {
                Ok(p) => p,
                Err(why) => return Err(self.fail(&slot, why)),
            };
            if !pc.sandbox.enabled {
                tracing::warn!(
                    plugin = name,
                    level = p.level.as_str(),
                    "sandbox: off; the plugin can reach everything its user can"
                );
            }
            (p.env, true, p.confinement)
        };
        if let (Some(l), Some(c)) = (&notify, &confine.creds) {
            if let Err(e) = std::os::unix::fs::lchown(&l.path, Some(c.uid), Some(c.gid)) {
                tracing::warn!(plugin = name, "cannot hand the readiness socket over: {e}");
            }
        }
        let mut args = pc.args.clone();
        if slot.is_core {
            if let Some(addr) = lock(&self.sh.core_listen).clone() {
                // A restarted core keeps its address, so clients and plugins find it again.
                replace_flag_value(&mut args, "--listen", &addr);
            }
        }
        // A dynamic user is the plugin's alone (it owns the data folder, see `prepare_files`).
        let own_uid = confine
            .creds
            .as_ref()
            .map(|c| c.uid)
            .filter(|u| !slot.is_core && sandbox::in_dynamic_range(*u));
        let spec = SpawnSpec {
            program: path.clone(),
            args,
            env,
            env_clear,
            cwd: self.sh.home.root().to_path_buf(),
            confine,
        };
        let mut exits = slot.exits.subscribe();
        exits.borrow_and_update();
        if let Some(prev) = turn.after.take() {
            // Spawns keep the start order.
            let _ = prev.await;
        }
        // Everything the reaper needs to recognise this child is recorded before it can be
        // reaped: the reaper takes the same lock around `waitpid`.
        let reap_guard = lock(&self.sh.reap_lock);
        let spawned = match self.sh.spawner.spawn(spec) {
            Ok(s) => s,
            Err(e) => {
                drop(reap_guard);
                return Err(self.fail(&slot, format!("cannot execute {}: {e}", path.display())));
            }
        };
        let pid = spawned.pid;
        if let Some(g) = &self.sh.guard {
            g.watch(pid);
            if let Some(uid) = own_uid {
                g.watch_uid(uid);
            }
        }
        // The marker goes before any output line.
        log.marker(&format!(
            "started {name}: pid {pid}, start #{}",
            lock(&slot.st).start_count + 1
        ));
        let tail = log.new_run();
        let mut pumps = Vec::new();
        for (fd, stream) in [(spawned.stdout, Stream::Out), (spawned.stderr, Stream::Err)] {
            match process::async_pipe(fd) {
                Ok(p) => pumps.push(self.spawn_task(pump(p, log.clone(), tail.clone(), stream))),
                Err(e) => tracing::warn!(plugin = name, "cannot read output: {e}"),
            }
        }
        {
            let mut st = lock(&slot.st);
            if let Err(e) = self.apply(&slot, &mut st, Event::Spawned(pid)) {
                tracing::error!(plugin = name, pid, "{e}");
            }
            st.start_count += 1;
            st.start_time = Some(SystemTime::now());
            st.status = format!("started, pid {pid}");
            st.pumps = pumps;
            st.tail = Some(tail);
            // Measures and threshold windows start over with each process.
            st.history = self.new_history(name);
            st.breaching = false;
            st.cpu = None;
            st.rss = None;
        }
        lock(&self.sh.by_pid).insert(pid, slot.clone());
        if let Some(t) = process::start_time(pid) {
            self.write_pid_record(name, pid, t);
        }
        {
            let mut order = lock(&self.sh.started_order);
            order.retain(|n| n != name);
            order.push(name.to_string());
        }
        drop(reap_guard);
        // The next plugin in a pipelined start may spawn now.
        drop(turn);
        // An exit's announcements that waited for this restart go first.
        self.flush_after_spawn(&slot);
        tracing::info!(plugin = name, pid, "started");
        self.notice(Notice::Event(LauncherEvent {
            pid: Some(pid),
            ..self.event(name, events::STARTED)
        }));
        self.publish_status(&slot);
        if let Some(listener) = notify {
            let timeout = cfg.ready_timeout;
            let ready = tokio::select! {
                r = listener.wait_ready(timeout) => r,
                _ = exits.changed() => Err("exited before it was ready".to_string()),
            };
            if let Err(why) = ready {
                listener.remove();
                let reason = match lock(&slot.st).last_exit.as_ref() {
                    Some(e) if why.starts_with("exited") => format!("{why} ({})", describe_exit(e)),
                    _ => why,
                };
                if lock(&slot.st).pid().is_some() {
                    // Not ready in time: it must not linger half-started.
                    drop(_op);
                    let _ = self.stop_inner(&slot, None).await;
                }
                return Err(self.fail(&slot, reason));
            }
            // The socket stays for the plugin's life: a later STOPPING=1 or WATCHDOG=1 must
            // not fail (sd_notify libraries treat a missing socket as an error).
            self.spawn_task(listener.follow(exits, log.clone(), name.to_string()));
        }
        {
            let mut st = lock(&slot.st);
            if st.pid() != Some(pid) {
                let why = match st.last_exit.as_ref() {
                    Some(e) => format!("exited during start ({})", describe_exit(e)),
                    None => "exited during start".to_string(),
                };
                drop(st);
                return Err(self.fail(&slot, why));
            }
            if self.apply(&slot, &mut st, Event::Ready).is_ok() {
                match std::mem::take(&mut st.start_kind) {
                    StartKind::Manual => {}
                    StartKind::Restart => st.restarts += 1,
                    StartKind::ThresholdRestart => {
                        st.restarts += 1;
                        st.threshold_restarts += 1;
                    }
                }
                st.status = if wait_ready {
                    format!("running, pid {pid}, ready")
                } else {
                    format!("running, pid {pid}")
                };
            }
        }
        if wait_ready {
            self.notice(Notice::Event(LauncherEvent {
                pid: Some(pid),
                ..self.event(name, events::READY)
            }));
        }
        if slot.is_core {
            if let Some(addr) = self
                .core_url()
                .and_then(|u| u.split_once("://").map(|(_, a)| a.to_string()))
            {
                *lock(&self.sh.core_listen) = Some(addr);
            }
        }
        self.publish_status(&slot);
        Ok(self.info_of(&slot))
    }
}

/// A readiness socket: the plugin (through the SDK, or any sd_notify implementation) sends
/// `READY=1` to `$NOTIFY_SOCKET`.
pub(super) struct ReadyListener {
    sock: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl ReadyListener {
    pub(super) fn bind(run: &std::path::Path, name: &str) -> std::io::Result<ReadyListener> {
        let dir = run.join("notify");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let sock = tokio::net::UnixDatagram::bind(&path)?;
        Ok(ReadyListener { sock, path })
    }

    pub(super) async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut buf = vec![0u8; 4096];
        let fut = async {
            loop {
                match self.sock.recv(&mut buf).await {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]);
                        if msg.lines().any(|l| l.trim() == "READY=1") {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(format!("readiness socket failed: {e}")),
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| Err(format!("not ready after {}s", timeout.as_secs_f64())))
    }

    pub(super) fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// After READY=1: reads what the plugin still sends (`STOPPING=1`, noted in its log;
    /// `WATCHDOG=1`, `STATUS=…` and the rest are accepted) until its process exits, then removes
    /// the socket.
    pub(super) async fn follow(
        self,
        mut exits: watch::Receiver<u64>,
        log: Arc<PluginLog>,
        name: String,
    ) {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                r = self.sock.recv(&mut buf) => {
                    let Ok(n) = r else { break };
                    let msg = String::from_utf8_lossy(&buf[..n]);
                    for line in msg.lines().map(str::trim) {
                        if line == "STOPPING=1" {
                            tracing::debug!(plugin = %name, "notify: stopping");
                            log.marker("notify: STOPPING=1");
                        }
                    }
                }
                _ = exits.changed() => break,
            }
        }
        self.remove();
    }
}

/// Sets the value of `flag` in `args` (`--flag VALUE` or `--flag=VALUE`) if it is there.
fn replace_flag_value(args: &mut [String], flag: &str, value: &str) {
    let prefix = format!("{flag}=");
    for i in 0..args.len() {
        if args[i] == flag && i + 1 < args.len() {
            args[i + 1] = value.to_string();
        } else if args[i].starts_with(&prefix) {
            args[i] = format!("{prefix}{value}");
        }
    }
}
