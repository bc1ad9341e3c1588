//! `hubcore`: the hub's message bus (MQTT 5 broker with auth) as a program.

use anyhow::Context;
use clap::Parser;
use hivehub_core::config::{check_log_filter, CoreConfig};
use hivehub_home::Home;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

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
    /// Config file (default: HOME/config/hubcore.yaml; only the default file may be missing,
    /// which means defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, overriding `logLevel` in the config (e.g. info, debug, hivehub_core=debug).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Validate the config file, print `FILE: valid` and exit 0, or print the error and exit 1;
    /// nothing is started or written.
    #[arg(long)]
    check: bool,
}

/// The config and the file it came from; a file named with `--config` must exist.
fn load_config(home: Option<&Home>, args: &Args) -> anyhow::Result<(PathBuf, CoreConfig)> {
    let (path, cfg) = match (&args.config, home) {
        (Some(p), _) => (p.clone(), CoreConfig::load_named(p)?),
        (None, Some(home)) => {
            let p = home.config_file("hubcore");
            let cfg = CoreConfig::load(&p)?;
            (p, cfg)
        }
        (None, None) => anyhow::bail!("no config file to check"),
    };
    if let Some(filter) = &args.log_level {
        check_log_filter(filter).map_err(|m| anyhow::anyhow!("--log-level: {m}"))?;
    }
    Ok((path, cfg))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Checking a file named with --config needs no home.
    if args.check && args.config.is_some() && args.home.is_none() {
        let (path, _) = load_config(None, &args)?;
        println!("{}: valid", path.display());
        return Ok(());
    }
    let home = Home::resolve(args.home.as_deref())?;
    let (cfg_path, mut cfg) = load_config(Some(&home), &args)?;
    if args.check {
        println!("{}: valid", cfg_path.display());
        return Ok(());
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    let filter = args
        .log_level
        .clone()
        .unwrap_or_else(|| cfg.log_level.clone());
    // Colour only for a person at a terminal: under the launcher stderr is a pipe into
    // logs/hubcore.log, and under systemd the journal.
    let filter: Targets = format!("{filter},rmqtt=warn,rmqtt_net=warn,rmqtt::plugin=error")
        .parse()
        .context("invalid log filter")?;
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
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
    tokio::spawn(async {
        // The hub's start (the launcher, every plugin's registration and first login) comes
        // right after the core is ready; what only it ran is let go once it is over.
        tokio::time::sleep(RELEASE_AFTER).await;
        match hivehub_memory::release_after_start() {
            Ok(r) => tracing::debug!(?r, "start's memory released"),
            Err(e) => tracing::debug!("cannot release the start's memory: {e}"),
        }
    });
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    core.shutdown().await;
    Ok(())
}

/// How long after it is ready the core lets go of what only the hub's start used (see
/// `hivehub_memory`): on the benchmark machine 500 plugins with credentials start in under 3 s.
/// Code needed later maps back when it runs.
const RELEASE_AFTER: Duration = Duration::from_secs(10);

/// A word after a single dash (`-home`, Go's flag syntax) would be read by clap as `-h` plus
/// letters, that is help and exit 0, so hubcore would "succeed" without starting. Such a word
/// is read as the long flag of that name, and refused (exit 2) if there is none.
fn single_dash_words(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    const FLAGS: [&str; 7] = [
        "home",
        "listen",
        "config",
        "log-level",
        "check",
        "help",
        "version",
    ];
    let mut value_next = false;
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.into_iter().enumerate() {
        let word = arg
            .to_str()
            .filter(|s| i > 0 && !value_next && !s.starts_with("--"))
            .and_then(|s| s.strip_prefix('-'))
            .filter(|w| w.split('=').next().is_some_and(|n| n.chars().count() > 1));
        value_next = arg
            .to_str()
            .is_some_and(|s| ["--home", "--listen", "--config", "--log-level"].contains(&s));
        let Some(word) = word else {
            out.push(arg);
            continue;
        };
        let name = word.split('=').next().unwrap_or(word);
        let long = match name.to_ascii_lowercase().as_str() {
            "loglevel" => "log-level".to_string(),
            n if FLAGS.contains(&n) => n.to_string(),
            _ => {
                return Err(format!(
                    "unknown flag `-{word}`; hubcore's flags are --home, --listen, --config, --log-level and --check (see hubcore --help)"
                ))
            }
        };
        value_next = !word.contains('=') && !matches!(long.as_str(), "check" | "help" | "version");
        out.push(match word.split_once('=') {
            Some((_, v)) => format!("--{long}={v}").into(),
            None => format!("--{long}").into(),
        });
    }
    Ok(out)
}

/// Backtraces of library errors stay off unless `RUST_LIB_BACKTRACE` asks for them, whatever
/// `RUST_BACKTRACE` says (it still governs panics): the broker turns every ended connection into
/// an `anyhow` error, and with `RUST_BACKTRACE=1` each one captured a stack trace (2 % of the
/// core's CPU per `hubcli` call, docs/PERFORMANCE.md).
fn library_backtraces_off() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Before any other thread exists: nothing can read the environment concurrently.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

fn main() {
    library_backtraces_off();
    let args = match single_dash_words(std::env::args_os().collect()) {
        Ok(args) => Args::parse_from(args),
        Err(e) => {
            eprintln!("hubcore: error: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubcore: error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    // One line on stderr, which the launcher can show when the core does not start.
    if let Err(e) = rt.block_on(run(args)) {
        let msg = format!("{e:#}");
        let one_line: Vec<&str> = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        eprintln!("hubcore: error: {}", one_line.join("; "));
        std::process::exit(1);
    }
}
