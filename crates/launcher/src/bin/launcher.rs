//! `launcher`: starts and supervises the hub core and its plugins.

use clap::Parser;
use hivehub_home::Home;
use hivehub_launcher::{config, config_path, process, run, sandbox, LaunchOptions};
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};

/// The hivehub launcher: starts the core named in config/launcher.yaml, then the autostart
/// plugins in order, each with its own credentials and log file; stops them all on SIGTERM or
/// SIGINT (plugins in reverse start order, the core last).
#[derive(Debug, Parser)]
#[command(name = "launcher", version)]
struct Args {
    /// Home folder (default: the parent of this binary's bin/ folder, else $HIVEHUB_HOME).
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Config file (default: HOME/config/launcher.yaml; a missing file means defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Hub URL when no core is started locally (overrides serverURL), e.g. mqtts://hub:8883.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Validate the config file, print the result and exit (0 when valid).
    #[arg(long)]
    check: bool,
    /// Log filter, overriding `loglevel` (e.g. info, debug, hivehub_launcher=debug).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn init_logging(home: &Home, cfg: &config::LauncherConfig, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    if cfg.logtofile {
        home.ensure_dirs()?;
        let file = file_rotate::FileRotate::new(
            home.logs().join("launcher.log"),
            file_rotate::suffix::AppendCount::new(cfg.log_max_files.max(1)),
            file_rotate::ContentLimit::BytesSurpassed(cfg.log_max_size.max(1024) as usize),
            file_rotate::compression::Compression::None,
            None,
        );
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    Ok(())
}

async fn main_inner(args: Args) -> anyhow::Result<()> {
    let home = Home::resolve(args.home.as_deref())?;
    let path = config_path(&home, args.config);
    let cfg = config::load(&path)?;
    if args.check {
        sandbox::check_config(&cfg, &home)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        println!("{}: valid", path.display());
        return Ok(());
    }
    let filter = args.log_level.unwrap_or_else(|| cfg.loglevel.clone());
    init_logging(&home, &cfg, &filter)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    };
    run(
        LaunchOptions {
            home,
            config: cfg,
            server: args.server,
            config_path: path,
        },
        shutdown,
    )
    .await?;
    Ok(())
}

/// glibc gives every thread that allocates its own heap ("arena", up to 8 per core), each
/// holding on to freed memory: with the runtime's workers and blocking threads that was a few
/// MB of the launcher's RSS for nothing. The launcher allocates little and rarely, so two
/// arenas suffice.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: called before any other thread exists; mallopt only sets an allocator parameter.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

fn main() {
    // The guard is this binary started with a hidden first argument; it needs no runtime.
    if std::env::args().nth(1).as_deref() == Some("__guard") {
        std::process::exit(process::guard_main());
    }
    let args = Args::parse();
    limit_malloc_arenas();
    // Two workers are plenty for a supervisor (and what a 2-core host would get anyway); the
    // blocking pool (procfs scans, stops) is kept small and lets idle threads go quickly.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("launcher: error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(main_inner(args)) {
        eprintln!("launcher: error: {e:#}");
        std::process::exit(1);
    }
}
