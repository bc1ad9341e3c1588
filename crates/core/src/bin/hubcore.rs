//! `hubcore`: the hub's message bus (MQTT 5 broker with auth) as a program.

use anyhow::Context;
use clap::Parser;
use hivehub_core::config::CoreConfig;
use hivehub_home::Home;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};

/// The hivehub core: an MQTT 5 broker with per-client token authentication, a role-based topic
/// ACL, and the auth service. Listens with TLS on 127.0.0.1:8883 unless told otherwise.
#[derive(Debug, Parser)]
#[command(name = "hubcore", version)]
struct Args {
    /// Home folder (default: the parent of this binary's bin/ folder, else $HIVEHUB_HOME).
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// TLS listen address, overriding `listen` in the config (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Config file (default: HOME/config/hubcore.yaml; a missing file means defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, overriding `logLevel` in the config (e.g. info, debug, hivehub_core=debug).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let home = Home::resolve(args.home.as_deref())?;
    let cfg_path = args.config.unwrap_or_else(|| home.config_file("hubcore"));
    let mut cfg = CoreConfig::load(&cfg_path)?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    let filter = args
        .log_level
        .clone()
        .unwrap_or_else(|| cfg.log_level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(format!(
                "{filter},rmqtt=warn,rmqtt_net=warn,rmqtt::plugin=error"
            ))
            .context("invalid log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    // Install signal handlers before starting, so an early SIGTERM is a clean stop too.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let core = hivehub_core::start(&home, cfg)
        .await
        .with_context(|| format!("hubcore in {} did not start", home.root().display()))?;
    println!("hubcore ready at {}", core.url);
    if let Some(p) = &core.plain_url {
        println!("hubcore plain TCP listener at {p}");
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    core.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("hubcore: error: {e:#}");
        std::process::exit(1);
    }
}
