//! `/metrics`: the supervisor's state in the Prometheus text format, built fresh at every
//! scrape from [`Supervisor::list`], so it is always current and never keeps series of plugins
//! that are gone. The counters come straight from [`PluginInfo`], which only ever counts up
//! during the launcher's life.

use crate::supervisor::Supervisor;
use hivehub_api::launcher::{PluginInfo, PluginState};
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type FGauge = Family<Labels, Gauge<f64, AtomicU64>>;
type IGauge = Family<Labels, Gauge>;
type ICounter = Family<Labels, Counter>;

fn gauge_f(reg: &mut Registry, name: &str, help: &str) -> FGauge {
    let f = FGauge::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_i(reg: &mut Registry, name: &str, help: &str) -> IGauge {
    let f = IGauge::default();
    reg.register(name, help, f.clone());
    f
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> ICounter {
    let f = ICounter::default();
    reg.register(name, help, f.clone());
    f
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

struct PluginMetrics {
    cpu: FGauge,
    rss: IGauge,
    state: IGauge,
    uptime: IGauge,
    starts: ICounter,
    restarts: ICounter,
    backoff: FGauge,
    breaches: ICounter,
}

impl PluginMetrics {
    fn register(reg: &mut Registry) -> PluginMetrics {
        PluginMetrics {
            cpu: gauge_f(
                reg,
                "plugin_cpu_percent",
                "CPU use of the plugin's process tree in percent of one core (absent until measured)",
            ),
            rss: gauge_i(
                reg,
                "plugin_rss_bytes",
                "Resident memory of the plugin's process tree (absent until measured)",
            ),
            state: gauge_i(
                reg,
                "plugin_state",
                "1 for the plugin's current lifecycle state, 0 for the others",
            ),
            uptime: gauge_i(
                reg,
                "plugin_uptime_seconds",
                "Seconds since the plugin's last start, while it runs",
            ),
            starts: counter(reg, "plugin_starts", "Times the plugin was started"),
            restarts: counter(
                reg,
                "plugin_restarts",
                "Automatic restarts of the plugin by reason: crash (it exited) or threshold (a resource limit)",
            ),
            backoff: gauge_f(
                reg,
                "plugin_backoff_delay_seconds",
                "Delay of the scheduled automatic restart; 0 when none is scheduled",
            ),
            breaches: counter(
                reg,
                "plugin_threshold_breaches",
                "Resource threshold breaches (restarting and alert-only)",
            ),
        }
    }

    fn add(&self, p: &PluginInfo) {
        let base: Labels = vec![
            ("launcher", p.launcher_id.clone()),
            ("plugin", p.name.clone()),
        ];
        let with = |k: &'static str, v: &str| {
            let mut l = base.clone();
            l.push((k, v.to_string()));
            l
        };
        if let Some(cpu) = p.cpu {
            self.cpu.get_or_create(&base).set(cpu);
        }
        if let Some(rss) = p.rss {
            self.rss.get_or_create(&base).set(i64_of(rss));
        }
        for s in PluginState::ALL {
            self.state
                .get_or_create(&with("state", s.as_str()))
                .set(i64::from(s == p.state));
        }
        if let Some(up) = p.uptime.filter(|_| p.running) {
            self.uptime.get_or_create(&base).set(i64_of(up));
        }
        self.starts.get_or_create(&base).inc_by(p.start_count);
        let threshold = p.threshold_restarts.min(p.restarts);
        self.restarts
            .get_or_create(&with("reason", "crash"))
            .inc_by(p.restarts - threshold);
        self.restarts
            .get_or_create(&with("reason", "threshold"))
            .inc_by(threshold);
        let delay = p.backoff_delay_ms.unwrap_or(0) as f64 / 1000.0;
        self.backoff.get_or_create(&base).set(delay);
        self.breaches.get_or_create(&base).inc_by(p.breaches);
    }
}

/// The current metrics in the Prometheus text exposition format (0.0.4).
pub fn render(sup: &Supervisor) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("hivehub");
    let plugins = PluginMetrics::register(&mut reg);
    let self_cpu = gauge_f(
        &mut reg,
        "launcher_cpu_percent",
        "CPU use of the launcher itself in percent of one core (absent until measured)",
    );
    let self_rss = gauge_i(
        &mut reg,
        "launcher_rss_bytes",
        "Resident memory of the launcher itself (absent until measured)",
    );
    let bus = gauge_i(
        &mut reg,
        "launcher_bus_connected",
        "1 while the launcher is connected to the hub, else 0",
    );
    let launcher: Labels = vec![("launcher", sup.config().id.clone())];
    for p in sup.list() {
        plugins.add(&p);
    }
    if let Some((cpu, rss)) = sup.self_usage() {
        self_cpu.get_or_create(&launcher).set(cpu);
        self_rss.get_or_create(&launcher).set(i64_of(rss));
    }
    bus.get_or_create(&launcher)
        .set(i64::from(sup.bus_connected()));
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}
