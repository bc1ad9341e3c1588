//! Stopping plugins: one at a time or all in reverse start order, tree verified gone.
//!
//! A plugin's main process gets its stop signal (`stopSignal`, default SIGTERM) once. When it
//! has exited, what is left of its tree (its session, its descendants, processes marked with
//! its identity or running as its own user) gets the stop signal and up to [`LEFTOVER_GRACE`],
//! then SIGKILL. When it has not exited after `stopTimeout`, the whole tree is SIGKILLed.
//!
//! Stop all is the mirror of the pipelined start: reverse start order, in batches whose stop
//! signals go out together and whose stop timeouts run concurrently; a `waitReady` plugin is a
//! barrier (what started after it is gone before it is stopped); the core goes last, alone.

use super::*;

/// How long what is left of a plugin after its main process exited has, after the stop
/// signal, before SIGKILL (at most the plugin's stop timeout).
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

impl Supervisor {
    /// Stops a plugin: its stop signal to the whole tree, SIGKILL after the stop timeout, and
    /// success only once no descendant remains. Stopping a stopped plugin changes nothing.
    pub async fn stop(&self, name: &str) -> Result<PluginInfo, LaunchError> {
        self.stop_by(name, "launcher").await
    }

    /// Like [`Supervisor::stop`], recording who asked (a login ID, or a reason) in the
    /// `stopped` event.
    pub async fn stop_by(&self, name: &str, by: &str) -> Result<PluginInfo, LaunchError> {
        let slot = self.slot(name)?;
        self.find_external();
        let _op = slot.op.lock().await;
        let r = self.stop_inner(&slot, Some(by.to_string())).await;
        self.publish_status(&slot);
        r?;
        Ok(self.info_of(&slot))
    }

    pub(super) async fn stop_inner(
        &self,
        slot: &Arc<Slot>,
        by: Option<String>,
    ) -> Result<(), LaunchError> {
        self.stop_locked(std::slice::from_ref(slot), by)
            .await
            .into_iter()
            .next()
            .unwrap_or(Ok(()))
    }

    /// Stops `slots` together; the caller holds their operation locks. Each main process gets
    /// its stop signal once, in the given order, then its own stop timeout to exit,
    /// concurrently, before its whole tree is SIGKILLed. Then whatever is left of all of them
    /// (from one pass over `/proc` per round, [`process::kill_plugins`]) gets the stop signal
    /// and [`LEFTOVER_GRACE`] when its main process exited by itself, then SIGKILL. A plugin
    /// counts as stopped only when nothing of it remains. Returns one result per slot.
    pub(super) async fn stop_locked(
        &self,
        slots: &[Arc<Slot>],
        by: Option<String>,
    ) -> Vec<Result<(), LaunchError>> {
        struct Job {
            i: usize,
            pid: u32,
            own: bool,
            sig: Signal,
            timeout: Duration,
            /// The stop timeout passed and the tree was SIGKILLed.
            killed: bool,
            exits: watch::Receiver<u64>,
        }
        let by_user = by.is_some();
        let cfg = self.cfg();
        let mut results: Vec<Result<(), LaunchError>> = vec![Ok(()); slots.len()];
        let mut jobs = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            if by_user {
                let mut st = lock(&slot.st);
                st.restart_gen += 1;
            }
            let pc = cfg.plugin(&slot.name);
            let mut exits = slot.exits.subscribe();
            exits.borrow_and_update();
            let mut st = lock(&slot.st);
            let external = st.life.phase().external();
            let Some(pid) = st.pid().or(external) else {
                if let Some(who) = &by {
                    if self.apply(slot, &mut st, Event::Disable).is_ok() {
                        st.status = format!("stopped by {who}");
                    }
                }
                continue;
            };
            let own = external.is_none();
            if let Err(e) = self.apply(slot, &mut st, Event::Stop(pid)) {
                results[i] = Err(LaunchError::StopFailed {
                    name: slot.name.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
            st.status = format!("stopping, pid {pid}");
            drop(st);
            tracing::info!(plugin = %slot.name, pid, signal = %pc.stop_signal, "stopping");
            jobs.push(Job {
                i,
                pid,
                own,
                sig: pc.stop_signal,
                timeout: pc.stop_timeout,
                killed: false,
                exits,
            });
        }
        if jobs.is_empty() {
            return results;
        }
        let sweep: Vec<(u32, Signal)> = jobs.iter().map(|j| (j.pid, j.sig)).collect();
        self.spawn_blocking(move || process::signal_leaders(&sweep))
            .await
            .ok();
        async fn exited(pid: u32, own: bool, rx: &mut watch::Receiver<u64>, t: Duration) -> bool {
            if own {
                tokio::time::timeout(t, rx.changed()).await.is_ok()
            } else {
                let end = tokio::time::Instant::now() + t;
                while tokio::time::Instant::now() < end {
                    if !process::pid_alive(pid) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        }
        let mut waits = tokio::task::JoinSet::new();
        for mut j in jobs {
            let name = slots[j.i].name.clone();
            let sup = self.clone();
            waits.spawn(async move {
                if !exited(j.pid, j.own, &mut j.exits, j.timeout).await {
                    tracing::warn!(plugin = %name, pid = j.pid, "no exit after {:?}; killing", j.timeout);
                    let pid = j.pid;
                    sup.spawn_blocking(move || process::kill_tree(pid, Duration::ZERO))
                        .await
                        .ok();
                    exited(j.pid, j.own, &mut j.exits, Duration::from_secs(5)).await;
                    j.killed = true;
                }
                j
            });
        }
        let mut jobs = Vec::new();
        while let Some(r) = waits.join_next().await {
            if let Ok(j) = r {
                jobs.push(j);
            }
        }
        jobs.sort_by_key(|j| j.i);
        // The leaders are gone; now nothing of their trees may remain.
        let targets: Vec<process::KillTarget> = jobs
            .iter()
            .map(|j| process::KillTarget {
                leader: j.pid,
                name: slots[j.i].name.clone(),
                own: j.own,
                uid: sandbox::own_uid(&self.sh.home, &slots[j.i].name),
                polite: (!j.killed).then_some(j.sig),
            })
            .collect();
        let grace = jobs
            .iter()
            .map(|j| j.timeout)
            .min()
            .unwrap_or_default()
            .min(LEFTOVER_GRACE);
        let home = self.sh.home.root().to_path_buf();
        let this = self.clone();
        let lefts = self
            .spawn_blocking(move || {
                // Under the operation locks: no new process of these plugins exists yet.
                let leaders: Vec<u32> = targets.iter().map(|t| t.leader).collect();
                let others = || this.live_leaders(&leaders);
                process::kill_plugins(
                    &targets,
                    &home,
                    grace,
                    Duration::from_secs(5),
                    &others,
                    &|_, _, m| m,
                )
            })
            .await
            .unwrap_or_default();
        for (k, j) in jobs.iter().enumerate() {
            let slot = &slots[j.i];
            let left = lefts.get(k).cloned().unwrap_or_default();
            if let Some(g) = &self.sh.guard {
                g.forget(j.pid);
            }
            self.clear_pid_record_of(&slot.name, j.pid);
            let mut st = lock(&slot.st);
            if !left.is_empty() {
                let _ = self.apply(slot, &mut st, Event::Fail);
                st.status = format!("processes {left:?} survived SIGKILL");
                results[j.i] = Err(LaunchError::StopFailed {
                    name: slot.name.clone(),
                    reason: st.status.clone(),
                });
                continue;
            }
            if !j.own {
                st.stop_time = Some(SystemTime::now());
            }
            let _ = self.apply(slot, &mut st, Event::Stopped { by_user });
            st.status = match &by {
                Some(who) => format!("stopped by {who}"),
                None => "stopped".into(),
            };
            let event = LauncherEvent {
                pid: Some(j.pid),
                exit: st.last_exit.clone(),
                uptime_secs: st
                    .start_time
                    .zip(st.stop_time)
                    .and_then(|(a, b)| b.duration_since(a).ok())
                    .map(|d| d.as_secs_f64()),
                by: by.clone(),
                ..self.event(&slot.name, events::STOPPED)
            };
            drop(st);
            self.notice(Notice::Event(event));
        }
        results
    }

    /// The session leaders of the running plugins, except `except`. Taken under the reap lock,
    /// which is held from a spawn until its PID is recorded, so a process spawned before this
    /// call is in the list.
    pub(super) fn live_leaders(&self, except: &[u32]) -> Vec<u32> {
        let _g = lock(&self.sh.reap_lock);
        let slots: Vec<Arc<Slot>> = lock(&self.sh.slots).values().cloned().collect();
        slots
            .iter()
            .filter_map(|s| lock(&s.st).pid())
            .filter(|p| !except.contains(p))
            .collect()
    }

    /// Stops every running plugin in reverse start order; the core last, and only when
    /// `include_core`.
    pub async fn stop_all(
        &self,
        include_core: bool,
    ) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        self.stop_all_by(include_core, "launcher").await
    }

    /// Like [`Supervisor::stop_all`], recording who asked.
    pub async fn stop_all_by(
        &self,
        include_core: bool,
        by: &str,
    ) -> Vec<(String, Result<PluginInfo, LaunchError>)> {
        let core = self.core_name().map(str::to_string);
        let mut order: Vec<String> = lock(&self.sh.started_order).clone();
        for n in lock(&self.sh.slots).keys() {
            if !order.contains(n) {
                order.insert(0, n.clone());
            }
        }
        order.reverse();
        if let Some(c) = &core {
            order.retain(|n| n != c);
            if include_core {
                order.push(c.clone());
            }
        }
        let running: Vec<Arc<Slot>> = order
            .iter()
            .filter_map(|n| self.slot(n).ok())
            .filter(|slot| {
                let st = lock(&slot.st);
                st.pid().is_some() || st.life.phase().external().is_some()
            })
            .collect();
        // The mirror of the pipelined start: plugins in reverse start order, stopped together
        // (stop signals in that order) except that a `waitReady` plugin, which later plugins
        // may depend on, is a barrier: everything started after it is gone before it is
        // stopped, and it is gone before anything started before it is stopped. The core goes
        // last, alone.
        let (core_slot, plugins): (Vec<Arc<Slot>>, Vec<Arc<Slot>>) = running
            .into_iter()
            .partition(|s| core.as_deref() == Some(s.name.as_str()));
        let cfg = self.cfg();
        let mut batches: Vec<Vec<Arc<Slot>>> = Vec::new();
        let mut current = Vec::new();
        for slot in plugins {
            if cfg.plugin(&slot.name).wait_ready {
                if !current.is_empty() {
                    batches.push(std::mem::take(&mut current));
                }
                batches.push(vec![slot]);
            } else {
                current.push(slot);
            }
        }
        batches.push(current);
        batches.push(core_slot);
        let mut out = Vec::new();
        for batch in batches {
            if batch.is_empty() {
                continue;
            }
            let mut guards = Vec::with_capacity(batch.len());
            for slot in &batch {
                guards.push(slot.op.lock().await);
            }
            let results = self.stop_locked(&batch, Some(by.to_string())).await;
            drop(guards);
            for (slot, r) in batch.iter().zip(results) {
                self.publish_status(slot);
                out.push((slot.name.clone(), r.map(|_| self.info_of(slot))));
            }
        }
        out
    }
}

/// The current PID of `slot`, read under the reap lock (see [`Supervisor::live_leaders`]).
pub(super) fn current_pid(sup: &Supervisor, slot: &Slot) -> Option<u32> {
    let _g = lock(&sup.sh.reap_lock);
    lock(&slot.st).pid()
}
