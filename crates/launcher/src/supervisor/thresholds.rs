//! Resource samples of each plugin's process tree and the thresholds (`maxCpu`, `maxMemory`,
//! `for`) that restart a plugin or only alert.
//!
//! A breach needs the measure over the limit continuously for at least `for`, by the samples'
//! own times: every sample since the first one over the limit is above, and that one is at
//! least `for` old, so a new process always gets a full window. The history covers the
//! larger of 5 minutes and `for` plus two sample intervals, so any `for` can fire. On a breach
//! the launcher publishes `resourceExceeded`; with `action: restart` (the default) it takes a
//! restart permit, stops the plugin gracefully and starts it again, counted in `restarts` and
//! `thresholdRestarts`; with `alert` it does nothing more. Either way the history starts over,
//! so a lasting breach repeats every `for`.

use super::*;

impl Supervisor {
    /// Samples every running plugin's process tree at the configured interval, updates
    /// `cpu`/`rss` and the history, and acts on resource thresholds.
    ///
    /// The passes run on a thread of their own that sleeps until its next deadline (procfs
    /// reads are blocking I/O), and hand each pass's samples to a task. An idle launcher then
    /// wakes twice per interval (the thread, then one worker), where a tokio interval plus
    /// `spawn_blocking` woke a worker three times (tokio's timer wheel first wakes at the
    /// coarse slot holding a timer seconds away) and a pool thread once. The shared-status
    /// check follows the passes ([`Supervisor::passes`]) rather than keeping a timer too.
    pub fn spawn_monitor(&self) {
        let every = self.cfg().sample_interval;
        let (tx, mut rx) = mpsc::channel::<Pass>(1);
        // Dropped with the task below (at shutdown): the thread sees it at once and ends.
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let sh = self.sh.clone();
        let spawned = std::thread::Builder::new()
            .name("hivehub-sampler".into())
            .spawn(move || sampler(&sh, every, &stop_rx, &tx));
        if let Err(e) = spawned {
            tracing::error!("cannot start the resource sampler, no CPU or memory figures: {e}");
            return;
        }
        let this = self.clone();
        self.spawn_task(async move {
            let _stop = stop_tx;
            while let Some((samples, me)) = rx.recv().await {
                if let Some(me) = me {
                    let prev = lock(&this.sh.self_usage).map(|u| u.0);
                    let cpu = me.cpu_percent.or(prev).unwrap_or_default();
                    *lock(&this.sh.self_usage) = Some((cpu, me.rss_bytes));
                }
                let cfg = this.cfg();
                for (name, sample) in samples {
                    this.record_sample(&cfg, &name, sample);
                }
                this.sh.passes.send_modify(|n| *n += 1);
            }
        });
    }

    /// Counts the monitor's passes, each announced once its samples are recorded: periodic
    /// work that need not be exact (the shared-status check) runs after a pass instead of
    /// waking the launcher on a timer of its own.
    pub fn passes(&self) -> watch::Receiver<u64> {
        self.sh.passes.subscribe()
    }

    /// A history long enough for the status view (5 minutes) and for the plugin's threshold
    /// window, whichever is longer.
    pub(super) fn new_history(&self, name: &str) -> History {
        let interval = self.cfg().sample_interval;
        let span = DEFAULT_HISTORY_SPAN.max(self.cfg().plugin(name).threshold_for + 2 * interval);
        History::for_span(span, interval)
    }

    /// Records one sample of plugin `name` and checks its thresholds, if it has any (`cfg` is
    /// read once per pass, and a plugin's settings are borrowed, not copied: this runs for
    /// every plugin every `sampleInterval`).
    pub(super) fn record_sample(&self, cfg: &LauncherConfig, name: &str, sample: TreeSample) {
        let Ok(slot) = self.slot(name) else { return };
        let pc = cfg
            .plugins
            .get(name)
            .filter(|pc| pc.max_cpu.is_some() || pc.max_memory.is_some());
        let breach = {
            let mut st = lock(&slot.st);
            if st.pid().is_none() {
                return;
            }
            if let Some(c) = sample.cpu_percent {
                st.cpu = Some(c);
            }
            st.rss = Some(sample.rss_bytes);
            st.history.push(sample);
            if let Some(pc) = pc.filter(|_| !st.breaching) {
                let now = sample.time_ms;
                let cpu = pc
                    .max_cpu
                    .filter(|l| {
                        st.history
                            .above_for(Measure::Cpu, *l, pc.threshold_for, now)
                    })
                    .map(|l| ("cpu", sample.cpu_percent.unwrap_or_default(), l));
                let mem = pc
                    .max_memory
                    .map(|l| l as f64)
                    .filter(|l| {
                        st.history
                            .above_for(Measure::Rss, *l, pc.threshold_for, now)
                    })
                    .map(|l| ("rss", sample.rss_bytes as f64, l));
                let b = cpu.or(mem);
                if b.is_some() {
                    st.breaching = true;
                    st.breaches += 1;
                }
                b.map(|b| (b, pc.threshold_for, pc.action))
            } else {
                None
            }
        };
        if let Some(((measure, value, limit), window, action)) = breach {
            self.on_breach(&slot, measure, value, limit, window, action);
        }
    }

    pub(super) fn on_breach(
        &self,
        slot: &Arc<Slot>,
        measure: &str,
        value: f64,
        limit: f64,
        window: Duration,
        action: ThresholdAction,
    ) {
        let act = match action {
            ThresholdAction::Restart => "restart",
            ThresholdAction::Alert => "alert",
        };
        tracing::warn!(plugin = %slot.name, measure, value, limit, ?window, act, "resource limit exceeded");
        self.notice(Notice::Event(LauncherEvent {
            pid: lock(&slot.st).pid(),
            measure: Some(measure.to_string()),
            value: Some(value),
            limit: Some(limit),
            for_secs: Some(window.as_secs_f64()),
            action: Some(act.to_string()),
            ..self.event(&slot.name, events::RESOURCE_EXCEEDED)
        }));
        let this = self.clone();
        let slot = slot.clone();
        let measure = measure.to_string();
        self.spawn_task(async move {
            if action == ThresholdAction::Restart {
                let gen = {
                    let mut st = lock(&slot.st);
                    st.restart_gen += 1;
                    st.restart_gen
                };
                let _permit = this.sh.restart_sem.clone().acquire_owned().await;
                {
                    let _op = slot.op.lock().await;
                    if lock(&slot.st).restart_gen != gen {
                        return;
                    }
                    let _ = this.stop_inner(&slot, None).await;
                }
                {
                    let mut st = lock(&slot.st);
                    st.status = format!("restarting: {measure} over its limit");
                    st.start_kind = StartKind::ThresholdRestart;
                }
                match this.start_slot(&slot).await {
                    // The start published the running status, counted.
                    Ok(_) => {
                        if slot.is_core {
                            this.release_held();
                        }
                    }
                    Err(e) => {
                        this.schedule_restart(&slot, e.to_string(), Duration::ZERO);
                    }
                }
            }
            // Start over: the next breach needs a full window of new samples.
            let mut st = lock(&slot.st);
            st.history = this.new_history(&slot.name);
            st.breaching = false;
        });
    }
}

/// One pass's samples of every plugin tree, and the launcher's own usage.
type Pass = (Vec<(String, TreeSample)>, Option<TreeSample>);

/// The sampling thread: a pass at once, then one every `every` (a late pass moves the
/// schedule rather than bunching passes up), until `stop` or the receiving task is gone.
fn sampler(
    sh: &Shared,
    every: Duration,
    stop: &std::sync::mpsc::Receiver<()>,
    tx: &mpsc::Sender<Pass>,
) {
    let mut mon = Monitor::new();
    let mut next = std::time::Instant::now();
    loop {
        let wait = next.saturating_duration_since(std::time::Instant::now());
        match stop.recv_timeout(wait) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        next = next.max(std::time::Instant::now()) + every;
        let leaders: Vec<(String, u32)> = lock(&sh.slots)
            .values()
            .filter_map(|s| lock(&s.st).pid().map(|p| (s.name.clone(), p)))
            .collect();
        let samples = mon.sample(&leaders);
        let me = mon.self_usage();
        if tx.blocking_send((samples, me)).is_err() {
            return;
        }
    }
}
