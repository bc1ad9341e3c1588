//! `hivehub-bench`: measures hivehub against its peers on this machine.
//!
//! ```text
//! cargo build --release --workspace && target/release/hivehub-bench bus
//! cargo build --release -p hivehub-bench -p hivehub-launcher -p hivehub-core --bins \
//!     && target/release/hivehub-bench launcher
//! ```
//!
//! `bus` measures, through `hubcore` (TLS, token auth and ACL active) and through a plain Debian
//! `mosquitto` (TLS, anonymous, no ACL) in the same run and with the same SDK client:
//! the request/reply round-trip latency (median and p99) and the QoS 0 event throughput.
//!
//! `launcher` measures, for N trivial plugins under the hivehub launcher (plugin credentials off
//! and on), Debian's `supervisord`, runit, s6 and a raw-spawn floor (`bench-floor`, this crate's
//! second binary) in the same run: the cold start until all N run, the stop-all after SIGTERM,
//! and the supervision tree's idle PSS and CPU (see [`launcher`]). `restart` (crash to restart),
//! `control` (status of all) and `logs` (CPU per MB logged) compare the same peers.
//!
//! The full comparison (one at a time on a quiet machine):
//!
//! ```text
//! cargo build --release -p hivehub-bench -p hivehub-launcher -p hivehub-core -p hivehub-cli --bins
//! target/release/hivehub-bench launcher
//! target/release/hivehub-bench restart
//! target/release/hivehub-bench control
//! target/release/hivehub-bench logs
//! ```

mod common;
mod control;
mod launcher;
mod logs;
mod procev;
mod procobs;
mod restart;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hivehub_api::Role;
use hivehub_client::{ClientOptions, HubClient, ServerUrl};
use hivehub_testkit::Core;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "hivehub-bench",
    about = "Benchmarks of hivehub against mosquitto, supervisord, runit, s6 and a raw-spawn floor"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// RPC round trip and QoS 0 throughput: hubcore vs mosquitto.
    Bus {
        /// Round trips per round.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Events per throughput round.
        #[arg(long, default_value_t = 50_000)]
        events: usize,
        /// Rounds per broker (the median round is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Cold start, stop-all and idle cost of N trivial plugins: launcher vs supervisord, runit,
    /// s6 and the floor.
    Launcher {
        /// Plugin counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100,500")]
        n: Vec<usize>,
        /// Rounds per case (the median round is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Interval of the /proc observer, in milliseconds.
        #[arg(long, default_value_t = 5)]
        poll_ms: u64,
        /// Leave supervisord out even when it is installed.
        #[arg(long)]
        no_supervisord: bool,
        #[command(flatten)]
        peers: PeerFlags,
        /// Run a round again when other processes used more than this many cores on average
        /// during it (builds on a shared machine).
        #[arg(long, default_value_t = 0.15)]
        max_foreign: f64,
        /// Times a disturbed round is run again before it is kept anyway (and flagged).
        #[arg(long, default_value_t = 3)]
        retries: usize,
        /// Seconds to wait for a quiet machine before each round.
        #[arg(long, default_value_t = 600)]
        quiet_wait: u64,
        /// Seconds between the cold start and the idle measurement (the start's own work, first
        /// samples and first statuses, fall before it).
        #[arg(long, default_value_t = 2)]
        settle: u64,
        /// Seconds over which the idle CPU is measured.
        #[arg(long, default_value_t = 5)]
        idle: u64,
        /// Plugins that only sleep (`sleep 1000000` under their shell) instead of looping over
        /// `sleep 1`, which starts a process per plugin every second.
        #[arg(long)]
        still: bool,
        /// Measure a second start: each round first starts and stops the supervisor once in
        /// its folder (unmeasured), so that keys, profiles, logs and supervise folders exist,
        /// as at a reboot. Without it every start is the first in a fresh folder.
        #[arg(long)]
        boot: bool,
    },
    /// `hubcli launcher ls` round trip with N running plugins (whole process and in process)
    /// vs `supervisorctl status`, `sv status` and `s6-svstat` (see `control.rs`).
    Control {
        /// Running plugins.
        #[arg(long, default_value_t = 100)]
        n: usize,
        /// Timed runs of each whole-process command (after 2 warm-up runs).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Timed in-process `view/list` requests.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Leave supervisord out even when it is installed.
        #[arg(long)]
        no_supervisord: bool,
        #[command(flatten)]
        peers: PeerFlags,
        /// Plugins that only sleep (`sleep 1000000` under their shell, as in issue 15's
        /// measurements) instead of looping over `sleep 1`.
        #[arg(long)]
        still: bool,
    },
    /// Crash-to-restart latency (SIGKILL until the replacement runs), backoff base 0:
    /// launcher (credentials off and on) vs supervisord, runit, s6 and the floor (see
    /// `restart.rs`).
    Restart {
        /// Running plugins.
        #[arg(long, default_value_t = 100)]
        n: usize,
        /// Trials per supervisor, a different plugin each.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Interval of the restart observer, in microseconds.
        #[arg(long, default_value_t = 200)]
        poll_us: u64,
        /// Leave supervisord out even when it is installed.
        #[arg(long)]
        no_supervisord: bool,
        #[command(flatten)]
        peers: PeerFlags,
    },
    /// CPU per MB of plugin output logged: the launcher's log pump vs runit's svlogd and s6's
    /// s6-log (see `logs.rs`).
    Logs {
        /// Plugin counts of the workload below the launcher's rate limit (each plugin writes
        /// 9000 lines at once), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        n: Vec<usize>,
        /// MB (10^6 bytes) one plugin floods at once, far over the rate limit (0: none).
        #[arg(long, default_value_t = 50)]
        mb: u64,
        /// Rounds (every case once per round; the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        peers: PeerFlags,
    },
    /// The launcher's own CPU while monitoring N idle plugins at a 2 s interval (N = 0 added as
    /// the baseline; see `restart.rs`).
    Monitor {
        /// Plugin counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,500")]
        n: Vec<usize>,
        /// Rounds (every case once per round; the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds between "all plugins run" and the CPU window.
        #[arg(long, default_value_t = 5)]
        settle_secs: u64,
        /// Length of the CPU window in seconds.
        #[arg(long, default_value_t = 20)]
        window_secs: u64,
    },
}

/// The peers a benchmark can leave out.
#[derive(clap::Args)]
struct PeerFlags {
    /// Leave runit out even when it is installed.
    #[arg(long)]
    no_runit: bool,
    /// Leave s6 out even when it is installed.
    #[arg(long)]
    no_s6: bool,
}

fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("no parent folder")?.join(name);
    if !p.exists() {
        bail!(
            "{} not found; build it first: cargo build --release --workspace",
            p.display()
        );
    }
    Ok(p)
}

struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_mosquitto(certs: &Path) -> Result<Mosquitto> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("mosquitto is not installed (apt-get install mosquitto)")?;
    let dir = tempfile::tempdir()?;
    // Copy the hub's server certificate so mosquitto serves the same TLS identity.
    for f in ["caCert.pem", "hubCert.pem", "hubKey.pem"] {
        std::fs::copy(certs.join(f), dir.path().join(f))?;
    }
    let port = free_port()?;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nper_listener_settings false\nallow_anonymous true\npersistence false\n\
             log_dest none\nset_tcp_nodelay true\nmax_queued_messages 100000\nlistener {port} 127.0.0.1\n\
             cafile {d}/caCert.pem\ncertfile {d}/hubCert.pem\nkeyfile {d}/hubKey.pem\n",
            d = dir.path().display()
        ),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let ok = hivehub_testkit::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if !ok {
        bail!("mosquitto did not start on port {port}");
    }
    Ok(Mosquitto {
        child,
        port,
        _dir: dir,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Rpc {
    median: Duration,
    p99: Duration,
}

/// One `bench/echo` round trip, the request both the warm-up and the timed loop send.
async fn echo(requester: &HubClient, service: &str) -> Result<()> {
    requester
        .request_raw(
            service,
            "bench",
            "echo",
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .await?;
    Ok(())
}

async fn measure_rpc(requester: &HubClient, service: &str, n: usize) -> Result<Rpc> {
    for _ in 0..n / 10 {
        echo(requester, service).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        echo(requester, service).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok(Rpc {
        median: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    })
}

async fn measure_throughput(
    publisher: &HubClient,
    subscriber: &HubClient,
    n: usize,
) -> Result<(f64, usize)> {
    let agent = publisher.client_id().to_string();
    let mut rx = subscriber
        .subscribe_events(Some(&agent), Some("bench"), None)
        .await?;
    let payload = vec![b'x'; 64];
    let t = Instant::now();
    let recv = tokio::spawn(async move {
        let mut got = 0usize;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, Instant::now())
    });
    for _ in 0..n {
        publisher
            .publish_event_raw(
                "bench",
                "tick",
                payload.clone(),
                hivehub_client::QoS::AtMostOnce,
                false,
            )
            .await?;
    }
    let (got, end) = recv.await?;
    let secs = end.duration_since(t).as_secs_f64();
    Ok((got as f64 / secs, got))
}

struct BrokerResult {
    rpc: Vec<Rpc>,
    tput: Vec<(f64, usize)>,
}

async fn run_against(
    opts: impl Fn(&str) -> ClientOptions,
    requests: usize,
    events: usize,
    rounds: usize,
) -> Result<BrokerResult> {
    let svc = HubClient::connect(opts("benchsvc")).await?;
    svc.serve("bench", |r| async move {
        Ok(serde_json::from_slice(&r.payload).unwrap_or_default())
    })
    .await?;
    let _ = svc.set_permissions("bench", &[Role::Admin]).await;
    let admin = HubClient::connect(opts("admin")).await?;
    let mut res = BrokerResult {
        rpc: vec![],
        tput: vec![],
    };
    for _ in 0..rounds {
        res.rpc
            .push(measure_rpc(&admin, "benchsvc", requests).await?);
        res.tput
            .push(measure_throughput(&svc, &admin, events).await?);
    }
    svc.disconnect().await;
    admin.disconnect().await;
    Ok(res)
}

fn median_of<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// The core's configuration for `bus`: the per-login publish rate limit (1000/s by default, a
/// policy against hostile logins) is off, since the throughput case measures the broker, and
/// mosquitto has no such limit.
const BUS_CORE_CONFIG: &str = "limits:\n  publishRate: 0\n";

async fn bus(requests: usize, events: usize, rounds: usize) -> Result<()> {
    let core = Core::start_with_config(&sibling_binary("hubcore")?, BUS_CORE_CONFIG);
    {
        let admin = core.client("admin").await;
        core.add_client(&admin, "benchsvc", Role::Service).await;
        admin.disconnect().await;
    }
    let hub_opts = |id: &str| {
        let mut o = core.options(id);
        o.refresh_token = false;
        o
    };
    let hub = run_against(hub_opts, requests, events, rounds).await?;

    let mosq = start_mosquitto(&core.home.certs())?;
    let mosq_opts = |id: &str| {
        let mut o = core.options(id);
        o.server = ServerUrl::Tcp {
            tls: true,
            host: "127.0.0.1".into(),
            port: mosq.port,
        };
        o.refresh_token = false;
        o
    };
    let m = run_against(mosq_opts, requests, events, rounds).await?;

    let med = |r: &BrokerResult| median_of(r.rpc.iter().map(|x| x.median).collect());
    let p99 = |r: &BrokerResult| median_of(r.rpc.iter().map(|x| x.p99).collect());
    let tp = |r: &BrokerResult| median_of(r.tput.iter().map(|x| x.0).collect());
    let lost = |r: &BrokerResult| r.tput.iter().map(|x| events - x.1).sum::<usize>();
    println!("| measure | hubcore | mosquitto | ratio (hubcore/mosquitto) |");
    println!("|---|---|---|---|");
    println!(
        "| RPC round trip, median | {:.0} µs | {:.0} µs | {:.2} |",
        med(&hub).as_micros(),
        med(&m).as_micros(),
        med(&hub).as_secs_f64() / med(&m).as_secs_f64()
    );
    println!(
        "| RPC round trip, p99 | {:.0} µs | {:.0} µs | {:.2} |",
        p99(&hub).as_micros(),
        p99(&m).as_micros(),
        p99(&hub).as_secs_f64() / p99(&m).as_secs_f64()
    );
    println!(
        "| QoS 0 events, 64 B, msgs/s | {:.0} | {:.0} | {:.2} |",
        tp(&hub),
        tp(&m),
        tp(&hub) / tp(&m)
    );
    println!(
        "\n{rounds} rounds of {requests} round trips and {events} events each; medians of the rounds. \
         Events lost (all rounds): hubcore {}, mosquitto {}. hubcore's per-login publish \
         rate limit is off for this run (`limits: {{publishRate: 0}}`; default 1000/s).",
        lost(&hub),
        lost(&m)
    );
    Ok(())
}

fn main() -> Result<()> {
    // What is measured must not depend on the shell the benchmark was started from: with
    // `RUST_BACKTRACE` set, every Rust process it starts (the supervisors, hubcli) would pay for
    // stack traces that nobody reads.
    for var in ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
        // Before the runtime's threads exist: nothing reads the environment concurrently.
        std::env::remove_var(var);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let args = Args::parse();
    if !matches!(args.cmd, Cmd::Bus { .. }) {
        // The supervisor benchmarks stop what they started when interrupted.
        common::catch_signals();
    }
    match args.cmd {
        Cmd::Bus {
            requests,
            events,
            rounds,
        } => bus(requests, events, rounds).await,
        Cmd::Launcher {
            n,
            rounds,
            poll_ms,
            no_supervisord,
            peers,
            max_foreign,
            retries,
            quiet_wait,
            settle,
            idle,
            still,
            boot,
        } => launcher::run(launcher::Opts {
            ns: n,
            rounds,
            poll: Duration::from_millis(poll_ms),
            no_supervisord,
            no_runit: peers.no_runit,
            no_s6: peers.no_s6,
            max_foreign,
            retries,
            quiet_wait: Duration::from_secs(quiet_wait),
            settle: Duration::from_secs(settle),
            idle_window: Duration::from_secs(idle),
            still,
            boot,
        }),
        Cmd::Control {
            n,
            runs,
            requests,
            no_supervisord,
            peers,
            still,
        } => {
            control::run(control::Opts {
                n,
                runs,
                requests,
                no_supervisord,
                no_runit: peers.no_runit,
                no_s6: peers.no_s6,
                still,
            })
            .await
        }
        Cmd::Restart {
            n,
            trials,
            poll_us,
            no_supervisord,
            peers,
        } => restart::run_restart(restart::RestartOpts {
            n,
            trials,
            poll: Duration::from_micros(poll_us),
            no_supervisord,
            no_runit: peers.no_runit,
            no_s6: peers.no_s6,
        }),
        Cmd::Logs {
            n,
            mb,
            rounds,
            peers,
        } => logs::run(logs::Opts {
            ns: n,
            mb,
            rounds,
            no_runit: peers.no_runit,
            no_s6: peers.no_s6,
        }),
        Cmd::Monitor {
            n,
            rounds,
            settle_secs,
            window_secs,
        } => restart::run_monitor(restart::MonitorOpts {
            ns: n,
            rounds,
            settle: Duration::from_secs(settle_secs),
            window: Duration::from_secs(window_secs),
        }),
    }
}
