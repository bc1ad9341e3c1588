//! Exits and automatic restarts: the reaper, the restart policy and the backoff.
//!
//! # Restarts
//! After an exit nobody asked for, the policy decides: the plugin's `restart`, else the global
//! `autorestart` (default `never`; the sample config sets `on-failure`). `never` leaves it
//! stopped, `on-failure` restarts after a non-zero exit code or a signal, `always` after any
//! exit. A user's stop is never undone; the core is always restarted. The policy is part of the
//! transition table (`machine`): `schedule restart` leads to `backoff` or leaves the plugin as
//! it is.
//!
//! Attempt *n* (from 0) waits `min(base × factor^n, max)` spread by ±`jitter` and capped at
//! `max` ([`backoff_delay`]; defaults 1 s, ×2, 1 h, ±20 %). The count returns to 0 once the
//! plugin has run for `stable` (default: the larger of 60 s and the last delay), checked by a
//! timer after each start and at the next exit. It never gives up: a failed restart (its binary
//! missing for a moment, say) is rescheduled at the backoff pace and stays `backoff`. A manual
//! start resets the count and cancels a scheduled restart; autostart keeps the count an earlier
//! launcher saved in `run/{plugin}.backoff`, so a crash loop does not start over from `base`
//! when the launcher restarts. Automatic and threshold restarts each hold a permit of
//! `restartConcurrency` (default 2), so one failure cannot become a thundering herd; manual
//! starts do not wait.
//!
//! A plugin that should restart while the core has no process waits for it (state `backoff`,
//! no timer, no attempt counted); once the core's restart succeeds, those plugins restart.
//!
//! An exit during a start begun by a user is reported by that start and not restarted. One
//! during autostart, or during an automatic restart, goes to the restart policy.
//!
//! # Reaping
//! [`Supervisor::spawn_reaper`] reaps on SIGCHLD (from a `signalfd` in the launcher binary, see
//! `ChildExits`; and once a minute as a safety net), under the reap lock that a start holds
//! from spawn until the PID is recorded, so a child that exits at once is never reaped unknown.
//! The exit a signal's `siginfo` reports is handled first, before its zombie is reaped (see
//! `spawn_reaper`). Other PIDs (orphans re-parented to the subreaper, the guard) are reaped and
//! logged. After an unexpected exit, what the plugin left behind is killed.

use super::*;

impl Supervisor {
    pub(super) fn stable_after(&self, slot: &Slot, bo: &Backoff) -> Duration {
        let last = lock(&slot.st).last_delay;
        bo.stable
            .unwrap_or_else(|| Duration::from_secs(60).max(last))
    }

    /// After a start, resets the attempt count once the plugin has stayed up for the stable
    /// period.
    pub(super) fn watch_stability(&self, slot: &Arc<Slot>) {
        let (pid, attempt) = {
            let st = lock(&slot.st);
            (st.pid(), st.attempt)
        };
        let (Some(pid), true) = (pid, attempt > 0) else {
            return;
        };
        let bo = self.backoff_policy(slot);
        let wait = self.stable_after(slot, &bo);
        let this = self.clone();
        let slot = slot.clone();
        self.spawn_task(async move {
            tokio::time::sleep(wait).await;
            let reset = {
                let mut st = lock(&slot.st);
                if st.pid() == Some(pid) {
                    st.attempt = 0;
                    true
                } else {
                    false
                }
            };
            if reset {
                tracing::info!(plugin = %slot.name, "stable again; backoff reset");
                this.save_backoff(&slot);
                this.publish_status(&slot);
            }
        });
    }

    /// Decides, after an exit nobody asked for or a failed restart, whether and when to restart
    /// (the restart policy is part of the transition table), and schedules it.
    pub(super) fn schedule_restart(&self, slot: &Arc<Slot>, reason: String, uptime: Duration) {
        self.schedule_restart_then(slot, reason, uptime, Box::new(|_| {}), Vec::new());
    }

    /// [`Self::schedule_restart`], then `then`: after the restart when it is immediate, at once
    /// otherwise (a wait, a held restart, or none). `held` (the exit's announcements) and the
    /// restart's own are sent once an immediate restart has spawned, at once otherwise.
    fn schedule_restart_then(
        &self,
        slot: &Arc<Slot>,
        reason: String,
        uptime: Duration,
        then: AfterRestart,
        held: Vec<Deferred>,
    ) {
        let announce = held;
        let core_down = !slot.is_core && self.core_down();
        let bo = self.backoff_policy(slot);
        let stable = self.stable_after(slot, &bo);
        let (attempt, delay, gen) = {
            let mut st = lock(&slot.st);
            let attempt = if uptime >= stable { 0 } else { st.attempt };
            let delay = backoff_delay(&bo, attempt, rand::random::<f64>());
            let retry = if core_down {
                Retry::WhenCoreIsBack
            } else {
                Retry::At(SystemTime::now() + delay)
            };
            if self.apply(slot, &mut st, Event::ScheduleRestart(retry)) != Ok(PluginState::Backoff)
            {
                drop(st);
                self.announce(announce);
                then(self);
                return;
            }
            if core_down {
                st.status = format!("{reason}; restart held until the core is back");
                drop(st);
                self.announce(announce);
                tracing::warn!(plugin = %slot.name, "restart held: the core is down");
                self.publish_status(slot);
                then(self);
                return;
            }
            st.attempt = attempt.saturating_add(1);
            st.last_delay = delay;
            st.status = format!(
                "{reason}; restart #{} in {:.1}s",
                st.attempt,
                delay.as_secs_f64()
            );
            (st.attempt, delay, st.restart_gen)
        };
        let name = slot.name.clone();
        let event = Notice::Event(LauncherEvent {
            attempt: Some(attempt),
            delay_ms: Some(delay.as_millis() as u64),
            reason: Some(reason.clone()),
            ..self.event(&slot.name, events::RESTARTING)
        });
        let status = Notice::Status(self.info_of(slot));
        let mut announce = announce;
        announce.push(Box::new(move |sup| {
            tracing::warn!(plugin = %name, attempt, ?delay, %reason, "restarting");
            sup.notice(event);
            sup.notice(status);
        }));
        if delay.is_zero() {
            lock(&slot.after_spawn).extend(announce);
        } else {
            self.announce(announce);
        }
        let this = self.clone();
        let slot = slot.clone();
        self.spawn_task(async move {
            if delay.is_zero() {
                // An immediate restart comes first, the record of the attempt after it.
                this.restart_now(slot.clone(), gen).await;
                this.save_backoff(&slot);
                then(&this);
            } else {
                // Recorded before the wait, so a launcher restarted meanwhile keeps the count.
                this.save_backoff(&slot);
                then(&this);
                tokio::time::sleep(delay).await;
                this.restart_now(slot, gen).await;
            }
        });
    }

    /// Performs a scheduled (or released) restart, unless a manual start or stop came first.
    pub(super) async fn restart_now(&self, slot: Arc<Slot>, gen: u64) {
        self.restart_now_inner(&slot, gen).await;
        // A restart that did not spawn still owes the exit's announcements.
        self.flush_after_spawn(&slot);
    }

    async fn restart_now_inner(&self, slot: &Arc<Slot>, gen: u64) {
        let Ok(_permit) = self.sh.restart_sem.clone().acquire_owned().await else {
            return;
        };
        let current = {
            let st = lock(&slot.st);
            st.restart_gen == gen && st.state() == PluginState::Backoff
        };
        if !current {
            return;
        }
        lock(&slot.st).start_kind = StartKind::Restart;
        match self.start_slot(slot).await {
            // The start published the running status, counted.
            Ok(_) => {
                self.watch_stability(slot);
                if slot.is_core {
                    self.release_held();
                }
            }
            Err(LaunchError::NotPlaced { reason, .. }) => {
                tracing::info!(plugin = %slot.name, "not restarted here: {reason}");
            }
            Err(e) => {
                // Keep trying at the backoff pace; never give up silently.
                self.schedule_restart(slot, e.to_string(), Duration::ZERO);
            }
        }
    }

    /// Restarts the plugins whose restart waited for the core, without counting an attempt.
    pub(super) fn release_held(&self) {
        let held: Vec<Arc<Slot>> = lock(&self.sh.slots)
            .values()
            .filter(|s| lock(&s.st).life.phase().waits_for_core())
            .cloned()
            .collect();
        for slot in held {
            let gen = {
                let mut st = lock(&slot.st);
                let _ = self.apply(&slot, &mut st, Event::Release(SystemTime::now()));
                st.restart_gen
            };
            let this = self.clone();
            self.spawn_task(async move { this.restart_now(slot, gen).await });
        }
    }

    /// Called by the reaper for every ended child; false when it was none of the plugins'
    /// current processes.
    pub fn on_exit(&self, pid: u32, exit: Exit) -> bool {
        let Some(slot) = lock(&self.sh.by_pid).remove(&pid) else {
            return false;
        };
        let now = SystemTime::now();
        let was;
        let mut told_after_drain = false;
        // The exit's own announcements: sent after an immediate restart has spawned.
        let mut held: Vec<Deferred> = Vec::new();
        {
            let mut st = lock(&slot.st);
            was = st.state();
            let exited = Event::Exited {
                pid,
                clean: exit == Exit::Code(0),
            };
            if self.apply(&slot, &mut st, exited).is_err() {
                tracing::warn!(plugin = %slot.name, pid, state = was.as_str(), "exit of a process the plugin no longer has");
            }
            let uptime = st
                .start_time
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            let info = ExitInfo {
                code: match exit {
                    Exit::Code(c) => Some(c),
                    _ => None,
                },
                signal: match exit {
                    Exit::Signal(s) => Some(s),
                    _ => None,
                },
                time: now_ms(now),
            };
            st.stop_time = Some(now);
            st.last_exit = Some(info);
            let unexpected = was != PluginState::Stopping;
            let exited_event = LauncherEvent {
                pid: Some(pid),
                exit: st.last_exit.clone(),
                uptime_secs: Some(uptime.as_secs_f64()),
                ..self.event(&slot.name, events::EXITED)
            };
            if let Some(log) = st.log.clone() {
                // Write the exit marker (and publish `exited` with the last lines) after the
                // last output: let the pumps drain first (bounded, since a leftover
                // descendant may hold the pipes open). A start waiting for readiness hears of
                // an exit only then, so its error can quote what the process said last.
                let pumps = std::mem::take(&mut st.pumps);
                let tail = st.tail.take();
                told_after_drain = was == PluginState::Starting;
                let tell = told_after_drain.then(|| slot.clone());
                let this = self.clone();
                // With the PID: after an immediate restart the marker follows the next run's
                // `started` marker, as it waits for the last lines.
                let text = format!(
                    "{} exited: {exit} after {:.1}s (pid {pid})",
                    slot.name,
                    uptime.as_secs_f64()
                );
                // Spawned with the exit's other announcements, after an immediate restart has
                // spawned: a task spawned here would make the runtime wake its other worker
                // before the restart's own task runs (tens of µs on a small host).
                held.push(Box::new(move |sup| {
                    drop(sup.spawn_task(async move {
                        let drained = async {
                            for p in pumps {
                                let _ = p.await;
                            }
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
                        log.flush_dropped();
                        log.marker(&text);
                        if let Some(slot) = tell {
                            slot.exits.send_modify(|g| *g += 1);
                        }
                        if unexpected {
                            this.notice(Notice::Event(LauncherEvent {
                                log_tail: tail.map(|t| t.lines()).unwrap_or_default(),
                                ..exited_event
                            }));
                        }
                    }));
                }));
            }
            if unexpected {
                st.status = format!("exited with {exit}");
                let name = slot.name.clone();
                held.push(Box::new(move |_| {
                    tracing::warn!(plugin = %name, pid, %exit, "plugin exited");
                }));
            }
        }
        if !told_after_drain {
            slot.exits.send_modify(|g| *g += 1);
        }
        if was != PluginState::Stopping {
            let status = Notice::Status(self.info_of(&slot));
            held.push(Box::new(move |sup| sup.notice(status)));
            let uptime = {
                let st = lock(&slot.st);
                st.start_time
                    .zip(st.stop_time)
                    .and_then(|(a, b)| b.duration_since(a).ok())
                    .unwrap_or_default()
            };
            // An unexpected exit: clean up what the plugin left behind in its session. The
            // scan of `/proc` this takes runs after an immediate restart has spawned, not beside
            // it: on a small host the two would share its cores.
            let this = self.clone();
            let name = slot.name.clone();
            let home = self.sh.home.root().to_path_buf();
            let current = slot.clone();
            let cleanup = move |sup: &Supervisor| {
                sup.spawn_blocking(move || {
                    // The plugin's new process, if it was already restarted, is one of the live
                    // plugins (`live_leaders` is decided under the reap lock, which is held from
                    // spawn until the new PID is recorded), so it and its tree are spared.
                    let others = || this.live_leaders(&[pid]);
                    let spare =
                        |table: &process::ProcTable, _: &str, marked: Vec<u32>| -> Vec<u32> {
                            let keep = current_pid(&this, &current)
                                .map(|p| table.tree(p))
                                .unwrap_or_default();
                            marked.into_iter().filter(|p| !keep.contains(p)).collect()
                        };
                    let target = process::KillTarget {
                        leader: pid,
                        name: name.clone(),
                        own: true,
                        uid: sandbox::own_uid(&this.sh.home, &name),
                        polite: None,
                    };
                    let left: Vec<u32> = process::kill_plugins(
                        &[target],
                        &home,
                        Duration::ZERO,
                        Duration::from_secs(5),
                        &others,
                        &spare,
                    )
                    .into_iter()
                    .flatten()
                    .collect();
                    if !left.is_empty() {
                        tracing::warn!(plugin = %name, ?left, "descendants survive after exit");
                    }
                    if let Some(g) = &this.sh.guard {
                        g.forget(pid);
                    }
                    // A quick restart may already have recorded its new process: only empty our own.
                    this.clear_pid_record_of(&name, pid);
                })
            };
            // An exit during a start is handled by whoever started it.
            if was == PluginState::Starting {
                self.announce(held);
                drop(cleanup(self));
            } else {
                let reason = format!("exited with {exit}");
                self.schedule_restart_then(
                    &slot,
                    reason,
                    uptime,
                    Box::new(move |sup| {
                        drop(cleanup(sup));
                    }),
                    held,
                );
            }
        } else {
            // A stop's exit: the exit marker.
            self.announce(held);
        }
        true
    }

    /// Reaps children on SIGCHLD. Signals that arrive together are coalesced, but one that
    /// arrives while we reap makes the stream ready again, and each wake-up reaps every child
    /// that has exited, so none is missed; the slow tick is only a safety net that costs an
    /// idle launcher nothing.
    ///
    /// The child a signal names (the kernel's own `siginfo`, which no other process can forge)
    /// is looked at first without being reaped (`waitid` with `WNOWAIT`): a report can be stale,
    /// its child reaped already by an earlier sweep and the PID given to a new process, so only
    /// a zombie that is still there counts. Its exit is handled at once, and the reaping waits
    /// until the tasks that the exit started (an immediate restart) have run: reaping a child
    /// costs tens of µs on a small host (each `wait4(-1)` also checks every other child), and a
    /// restart need not wait for it. Until it is reaped, the ended process keeps its PID, so the
    /// PID cannot name another process meanwhile.
    pub fn spawn_reaper(&self) -> std::io::Result<()> {
        let mut exits = ChildExits::new()?;
        let this = self.clone();
        self.spawn_task(async move {
            let mut tick = tokio::time::interval(REAP_SAFETY_TICK);
            let mut told = Vec::new();
            loop {
                told.clear();
                tokio::select! {
                    r = exits.next(&mut told) => if let Err(e) = r {
                        tracing::error!("cannot wait for SIGCHLD, reaping once a minute: {e}");
                        exits = ChildExits::Off;
                    },
                    _ = tick.tick() => {}
                }
                // A plugin's exit that the signal reports before the start that spawned it has
                // recorded the PID is not found here, and is handled when it is reaped below
                // (under the reap lock, which that start holds until then).
                let mut handled = Vec::new();
                for &pid in &told {
                    if process::ended(pid).is_some_and(|exit| this.on_exit(pid, exit)) {
                        handled.push(pid);
                    }
                }
                if !handled.is_empty() {
                    tokio::task::yield_now().await;
                }
                let reaped = {
                    let _g = lock(&this.sh.reap_lock);
                    process::reap()
                };
                for (pid, exit) in reaped {
                    if !handled.contains(&pid) && !this.on_exit(pid, exit) {
                        tracing::debug!(pid, %exit, "reaped an orphaned descendant");
                    }
                }
            }
        });
        Ok(())
    }
}

/// Where the reaper learns that a child exited.
///
/// When every thread blocks SIGCHLD (the launcher binary blocks it before its runtime starts,
/// see [`block_sigchld`]), from a `signalfd` that the runtime polls: a plugin's exit wakes the
/// async worker waiting in `epoll_wait` directly. Otherwise (a library user), from tokio's
/// handler, whose path is one thread longer: the kernel wakes whichever thread takes the
/// signal, the handler writes to a socket, and that wakes a worker. On this 2-core VM a wake-up
/// of a sleeping thread costs 0.1–0.4 ms, so the hop is a large share of a restart.
enum ChildExits {
    Fd(tokio::io::unix::AsyncFd<nix::sys::signalfd::SignalFd>),
    Handler(tokio::signal::unix::Signal),
    /// Neither could be set up again after an error: only the safety tick reaps.
    Off,
}

impl ChildExits {
    fn new() -> std::io::Result<ChildExits> {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut current = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut current))?;
        if current.contains(Signal::SIGCHLD) {
            let mut only = SigSet::empty();
            only.add(Signal::SIGCHLD);
            let fd = SignalFd::with_flags(&only, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
            // SAFETY: the `AsyncFd` owns the signalfd, so its descriptor stays open and the same
            // for as long as it is registered.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .map_err(std::io::Error::from)?;
            return Ok(ChildExits::Fd(fd));
        }
        Ok(ChildExits::Handler(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::child(),
        )?))
    }

    /// Waits for the next SIGCHLD (several exits may share one: the reaper reaps them all), and
    /// adds the child whose exit it reports, if it reports one, to `told`.
    async fn next(&mut self, told: &mut Vec<u32>) -> std::io::Result<()> {
        match self {
            ChildExits::Fd(fd) => loop {
                let mut ready = fd.readable_mut().await?;
                let mut got = false;
                // Drain what is pending, so the next wait parks until a new exit.
                while let Some(info) = ready.get_inner_mut().read_signal()? {
                    got = true;
                    told.extend(reported_exit(&info));
                }
                ready.clear_ready();
                if got {
                    return Ok(());
                }
            },
            ChildExits::Handler(sig) => {
                sig.recv().await;
                Ok(())
            }
            ChildExits::Off => std::future::pending().await,
        }
    }
}

/// The child whose exit a SIGCHLD's `siginfo` reports. Only the kernel sends these codes (`kill`
/// and `sigqueue` from another process carry codes of their own); a stopped or continued child
/// reports no exit. The report may be stale (see [`Supervisor::spawn_reaper`]).
fn reported_exit(info: &nix::libc::signalfd_siginfo) -> Option<u32> {
    use nix::libc::{CLD_DUMPED, CLD_EXITED, CLD_KILLED};
    let exited = matches!(info.ssi_code, CLD_EXITED | CLD_KILLED | CLD_DUMPED);
    (exited && info.ssi_signo == nix::libc::SIGCHLD as u32 && info.ssi_pid > 0)
        .then_some(info.ssi_pid)
}

/// Blocks SIGCHLD in the calling thread, and so in every thread it starts afterwards: call it
/// first thing in `main`, before the runtime's threads exist, so that the reaper takes child
/// exits from a `signalfd` (see [`ChildExits`]). Children get an empty mask before `exec`
/// (the spawn resets it, as `std::process::Command` does).
pub fn block_sigchld() -> std::io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut only = SigSet::empty();
    only.add(Signal::SIGCHLD);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&only), None)?;
    Ok(())
}

/// What follows a scheduled restart (the clean-up after an exit).
type AfterRestart = Box<dyn FnOnce(&Supervisor) + Send>;

/// How often the reaper looks for exited children without a SIGCHLD.
const REAP_SAFETY_TICK: Duration = Duration::from_secs(60);

/// The delay before restart attempt `attempt` (0-based): `base × factor^attempt`, capped at
/// `max`, then spread by ±`jitter` using `unit` (a random number in [0, 1)), and capped again.
pub fn backoff_delay(bo: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exp = bo.factor.powi(attempt.min(1000) as i32);
    let raw = bo.base.as_secs_f64() * exp;
    let capped = raw.min(bo.max.as_secs_f64());
    let spread = 1.0 + bo.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    let secs = (capped * spread).clamp(0.0, bo.max.as_secs_f64());
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn backoff_grows_and_caps_at_max() {
        let bo = Backoff::default();
        let d: Vec<f64> = (0..15)
            .map(|a| backoff_delay(&bo, a, 0.5).as_secs_f64())
            .collect();
        assert_eq!(&d[..4], &[1.0, 2.0, 4.0, 8.0]);
        assert_eq!(d[12], 3600.0, "1 s × 2^12 is capped at 1 h");
        assert_eq!(backoff_delay(&bo, 100_000, 0.5), Duration::from_secs(3600));
        // ±20 % jitter, and never above the cap.
        assert_eq!(backoff_delay(&bo, 3, 0.0), Duration::from_secs_f64(6.4));
        assert_eq!(backoff_delay(&bo, 3, 1.0), Duration::from_secs_f64(9.6));
        assert_eq!(backoff_delay(&bo, 20, 1.0), Duration::from_secs(3600));
    }
}
