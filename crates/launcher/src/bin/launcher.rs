//! `launcher`: starts and supervises the hub core and its plugins.

use clap::Parser;
use hivehub_home::Home;
use hivehub_launcher::{config, config_path, process, run, sandbox, LaunchOptions};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// The hivehub launcher: starts the core named in config/launcher.yaml, then the autostart
/// plugins in order, each with its own credentials and log file; stops them all on SIGTERM or
/// SIGINT (plugins in reverse start order, the core last).
#[derive(Debug, Parser)]
#[command(
    name = "launcher",
    version,
    after_help = "HiveOT's flags are accepted too: -home, -config, -serverURL (--server) and \
                  -loglevel (--log-level); its -clientID is `id` in config/launcher.yaml."
)]
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
    /// Validate the config file, and the core's (config/hubcore.yaml, through `bin/hubcore
    /// --check`) when a core is configured; print the result and exit (0 when valid).
    #[arg(long)]
    check: bool,
    /// Log filter, overriding `loglevel` (e.g. info, debug, hivehub_launcher=debug).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn init_logging(home: &Home, cfg: &config::LauncherConfig, filter: &str) -> anyhow::Result<()> {
    let filter: Targets = filter.parse()?;
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
            .with_max_level(LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .finish()
            .with(filter)
            .init();
    } else {
        // Colour only for a person at a terminal: not in the journal, a pipe or a file.
        tracing_subscriber::fmt()
            .with_max_level(LevelFilter::TRACE)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .init();
    }
    Ok(())
}

/// How long `bin/hubcore --check` may take; it only reads one file.
const CORE_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// For `--check` with a core configured: validates the core's config with the core's own rules,
/// by running `{core} --check --home HOME` (with the `--config` of the core's `args`, if any)
/// from the home's `bin/`, else from the launcher's own folder. Returns what it printed.
async fn check_core_config(home: &Home, cfg: &config::LauncherConfig) -> anyhow::Result<String> {
    let Some(core) = cfg.core.as_deref() else {
        return Ok(String::new());
    };
    let in_home = home.bin().join(core);
    let own = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(core)));
    let Some(bin) = std::iter::once(in_home.clone())
        .chain(own)
        .find(|p| is_executable(p))
    else {
        anyhow::bail!(
            "cannot check the core's config: {} is missing or not executable (the launcher could not start the core either)",
            in_home.display()
        );
    };
    // Run it as the launcher would run the core: only a binary that cannot be swapped under
    // it, and as the core's user when the launcher is root.
    let host = sandbox::Host::probe();
    sandbox::check_binary(&bin, host.uid)
        .map_err(|why| anyhow::anyhow!("cannot check the core's config: {why}"))?;
    let pc = cfg.plugin(core);
    // Without certs/ (a home that never ran) the core would run as the launcher's user.
    let creds = if pc.user.is_some() || home.certs().exists() {
        sandbox::core_creds(home, &pc, &host)
            .map_err(|why| anyhow::anyhow!("cannot check the core's config: {why}"))?
    } else {
        None
    };
    let mut cmd = tokio::process::Command::new(&bin);
    if let Some(c) = creds {
        // std drops root's supplementary groups along with the user.
        cmd.uid(c.uid).gid(c.gid);
    }
    cmd.arg("--check").arg("--home").arg(home.root());
    if let Some(file) = config_arg(&pc.args) {
        cmd.arg("--config").arg(file);
    }
    // The core runs in the home, so a relative --config means the same file here.
    cmd.current_dir(home.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = format!("{} --check", bin.display());
    let out = tokio::time::timeout(CORE_CHECK_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{run} did not finish within {}s; is {core} a hubcore?",
                CORE_CHECK_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| anyhow::anyhow!("cannot run {run}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    // hubcore's error is its last line; a usage error (exit code 2) starts with what is wrong.
    let line = if out.status.code() == Some(1) {
        lines.next_back()
    } else {
        lines.next()
    }
    .unwrap_or("no message");
    // `hubcore: error: FILE:LINE:COLUMN: key: ...` becomes the launcher's own error.
    let why = line
        .strip_prefix("error: ")
        .or_else(|| {
            line.split_once(": error: ")
                .filter(|(program, _)| !program.contains([' ', '/']))
                .map(|(_, rest)| rest)
        })
        .unwrap_or(line)
        .to_string();
    match out.status.code() {
        Some(1) => Err(anyhow::anyhow!(why)),
        Some(code) => Err(anyhow::anyhow!(
            "{run} failed with exit code {code} (does this core support --check?): {why}"
        )),
        None => Err(anyhow::anyhow!("{run} was killed: {why}")),
    }
}

/// True for a regular file with an execute bit.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The value of `--config FILE` or `--config=FILE` in the core's arguments.
fn config_arg(args: &[String]) -> Option<&str> {
    let mut it = args.iter();
    let mut found = None;
    while let Some(a) = it.next() {
        if a == "--config" {
            found = it.next().map(String::as_str);
        } else if let Some(v) = a.strip_prefix("--config=") {
            found = Some(v);
        }
    }
    found
}

/// HiveOT's launcher took Go-style flags (`-home DIR`, `-serverURL URL`), and its systemd units
/// carry them. To clap, `-home` is `-h -o -m -e`, that is help, and the unit would "succeed"
/// without running anything. So a word after a single dash is read as a long flag: HiveOT's
/// names map to the launcher's equivalents, and anything else is refused (exit 2), never taken
/// for help.
fn go_style_args(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    const TAKES_VALUE: [&str; 4] = ["home", "config", "server", "log-level"];
    let mut out = Vec::with_capacity(args.len());
    let mut value_next = false;
    for (i, arg) in args.into_iter().enumerate() {
        let flag = arg
            .to_str()
            .filter(|s| i > 0 && !value_next && s.starts_with('-') && *s != "-" && *s != "--");
        value_next = false;
        let Some(s) = flag else {
            out.push(arg);
            continue;
        };
        let double = s.starts_with("--");
        let word = if double { &s[2..] } else { &s[1..] };
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        let long = match name.to_ascii_lowercase().as_str() {
            // `-h` and `-V` are clap's own.
            _ if !double && name.chars().count() < 2 => {
                out.push(arg);
                continue;
            }
            "clientid" => {
                return Err(format!(
                    "`{s}` (HiveOT's client ID) has no launcher flag: set `id: NAME` in config/launcher.yaml"
                ))
            }
            "serverurl" | "server" => "server",
            "loglevel" | "log-level" => "log-level",
            "home" => "home",
            "config" => "config",
            "check" => "check",
            "help" => "help",
            "version" => "version",
            // clap refuses an unknown `--flag` itself, with exit code 2.
            _ if double => {
                value_next = value.is_none() && TAKES_VALUE.contains(&name);
                out.push(arg);
                continue;
            }
            _ => {
                return Err(format!(
                    "unknown flag `{s}`; the launcher's flags are --home, --config, --server, --check and --log-level (see launcher --help)"
                ))
            }
        };
        value_next = value.is_none() && TAKES_VALUE.contains(&long);
        out.push(match value {
            Some(v) => format!("--{long}={v}").into(),
            None => format!("--{long}").into(),
        });
    }
    Ok(out)
}

async fn main_inner(args: Args, guard: Option<process::Guard>) -> anyhow::Result<()> {
    let home = Home::resolve(args.home.as_deref())?;
    let named = args.config.is_some();
    let path = config_path(&home, args.config);
    // Only the default file may be absent: a named one that is not there is a typo.
    let cfg = if named {
        config::load_named(&path)?
    } else {
        config::load(&path)?
    };
    if args.check {
        sandbox::check_config(&cfg, &home)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        println!("{}: valid", path.display());
        let core = check_core_config(&home, &cfg).await?;
        if !core.is_empty() {
            println!("{core}");
        }
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
            guard,
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
        std::process::exit(process::guard_main(
            std::env::args_os().nth(2).map(PathBuf::from),
        ));
    }
    let args = match go_style_args(std::env::args_os().collect()) {
        Ok(args) => Args::parse_from(args),
        Err(e) => {
            eprintln!("launcher: error: {e}");
            std::process::exit(2);
        }
    };
    limit_malloc_arenas();
    // The guard is forked while this is the only thread (fork is sound only then), and before
    // the runtime's memory exists, so that it shares almost nothing it would have to copy.
    let guard = if args.check {
        None
    } else {
        // SAFETY: no other thread exists yet.
        match unsafe { process::Guard::fork_early() } {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("launcher: warning: cannot fork the guard, starting it later: {e}");
                None
            }
        }
    };
    // Before any other thread exists, so that all of them block it: the reaper then takes
    // child exits from a signalfd, one thread hop shorter than a handler. (`--check` waits
    // for a child through tokio's handler, so it keeps SIGCHLD.)
    if !args.check {
        if let Err(e) = hivehub_launcher::supervisor::block_sigchld() {
            eprintln!("launcher: warning: cannot block SIGCHLD, reaping through a handler: {e}");
        }
    }
    // Two workers are plenty for a supervisor (and what a 2-core host would get anyway); the
    // blocking pool (procfs scans, stops) is kept small and lets idle threads go quickly.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_keep_alive(std::time::Duration::from_secs(30))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("launcher: error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(main_inner(args, guard)) {
        eprintln!("launcher: error: {e:#}");
        std::process::exit(1);
    }
}
