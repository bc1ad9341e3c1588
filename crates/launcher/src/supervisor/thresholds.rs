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
    /// Samples every running plugin's process tree at the configured interval (off the async
    /// workers: procfs reads are blocking I/O), updates `cpu`/`rss` and the history, and acts on
    /// resource thresholds.
    pub fn spawn_monitor(&self) {
        let this = self.clone();
        let every = self.cfg().sample_interval;
        self.spawn_task(async move {
            let mut mon = Monitor::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let leaders: Vec<(String, u32)> = lock(&this.sh.slots)
                    .values()
                    .filter_map(|s| lock(&s.st).pid().map(|p| (s.name.clone(), p)))
                    .collect();
                let Ok((m, (samples, me))) = this
                    .spawn_blocking(move || {
                        let samples = mon.sample(&leaders);
                        let me = mon.self_usage();
                        (mon, (samples, me))
                    })
                    .await
                else {
                    return;
                };
                mon = m;
                if let Some(me) = me {
                    let prev = lock(&this.sh.self_usage).map(|u| u.0);
                    let cpu = me.cpu_percent.or(prev).unwrap_or_default();
                    *lock(&this.sh.self_usage) = Some((cpu, me.rss_bytes));
                }
                let cfg = this.cfg();
                for (name, sample) in samples {
                    this.record_sample(&cfg, &name, sample);
                }
            }
        });
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
