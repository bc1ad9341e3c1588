//! `heartbeat`: command line and logging; the plugin itself is in the library.

use clap::Parser;
use hivehub_client::ENV_LOG_LEVEL;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Example hivehub plugin: publishes a heartbeat event (thing `status`, event `beat`) every
/// interval and serves `health/ping`, callable by viewers and above.
///
/// Connects with the settings the launcher passes in the environment: HIVEHUB_HOME,
/// HIVEHUB_SERVER and HIVEHUB_CLIENT_ID (default: the binary's name). Logs to stderr, filtered by
/// HIVEHUB_LOG_LEVEL (default: info). Stops cleanly on SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "heartbeat", version)]
struct Args {
    /// Time between beats: 500ms, 5s, 1m, 1h, or plain seconds (100ms to 24h).
    #[arg(
        long,
        value_name = "DURATION",
        env = heartbeat::ENV_INTERVAL,
        default_value = heartbeat::DEFAULT_INTERVAL,
        value_parser = heartbeat::parse_interval,
    )]
    interval: Duration,
}

/// Logs to stderr (stdout may be a pipe nobody reads) with the launcher's filter.
fn init_logging() -> anyhow::Result<()> {
    let filter = match std::env::var(ENV_LOG_LEVEL) {
        Ok(f) if !f.trim().is_empty() => f,
        Ok(_) | Err(std::env::VarError::NotPresent) => "info".to_string(),
        Err(e) => anyhow::bail!("{ENV_LOG_LEVEL}: {e}"),
    };
    // The parse error repeats itself as its own source, so print it once, not as a chain.
    let filter: Targets = filter
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid {ENV_LOG_LEVEL} '{filter}': {e}"))?;
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        // The launcher sends stderr to a log file; colour codes belong on terminals only.
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        .with(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

async fn start(args: Args) -> anyhow::Result<()> {
    init_logging()?;
    heartbeat::run(args.interval).await?;
    Ok(())
}

// One thread is plenty for a plugin this small; the SDK runs on any tokio runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match start(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heartbeat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Args::command().debug_assert();
        let a = Args::try_parse_from(["heartbeat", "--interval", "500ms"]).unwrap();
        assert_eq!(a.interval, Duration::from_millis(500));
        assert!(Args::try_parse_from(["heartbeat", "--interval", "soon"]).is_err());
    }
}
