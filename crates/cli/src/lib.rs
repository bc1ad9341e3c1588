//! hubcli, the admin command line of hivehub: controls a launcher's plugins (`launcher ls`,
//! `start`, `stop`, `status`, `events`, `move`, `reload`; `ls`, `start` and `stop` also at the
//! top level, as in HiveOT), the hub's clients (`auth add`, `ls`, `rm`) over the bus, through
//! the SDK, like any other client, so the core's ACL decides what it may do, and shows the hub
//! CA (`ca show`, no hub needed). The commands and their options are documented where clap
//! reads them ([`cli`], `hubcli -h`).
//!
//! It logs in as `--login` (default `admin`) with `certs/{login}.key` and `.token` of the home,
//! and never rewrites that token file: refresh is off, and an expired token is replaced by a key
//! assertion at connect. `--launcher ID` (default `launcher`) picks the launcher to talk to.
//! Without `--server` it reaches a local core through its socket `run/hubcore.sock` when it
//! may, saving the TLS handshake ([`server`]).
//!
//! The binary (`src/main.rs`) only parses arguments and maps the result to an exit code; the
//! commands live here so tests reach them. Text layout is in [`format`](mod@format) (pure
//! functions).
//!
//! Exit codes ([`error::exit`]): 0 success; 1 the operation failed (service error such as not
//! found, or a batch with failures); 2 usage error; 3 cannot reach the hub or login refused;
//! 4 not permitted; 5 timeout. With `--json` an error is a JSON object on stderr
//! ([`CliError::to_json`]).

pub mod ca;
pub mod cli;
pub mod duration;
pub mod error;
pub mod format;
pub mod server;

mod auth;
mod events;
mod launcher;

pub use cli::Cli;
pub use error::{exit, CliError};

use clap::CommandFactory;
use cli::{Command, Global, LauncherCmd};
pub(crate) use hivehub_api::time::now_ms;
use hivehub_client::{ClientOptions, HubClient};
use hivehub_home::Home;
use serde::Serialize;
use std::io::Write;

/// Runs one parsed command, writing its output to `out`. Errors are returned, not printed, so
/// the caller decides the message prefix and the exit code ([`CliError::exit_code`]).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Completions { shell } => completions(shell, out),
        Command::Launcher(cmd) => launcher_cmd(cli.global, cmd, out).await,
        // HiveOT's habits: the launcher's everyday commands at the top level.
        Command::Ls(a) => launcher_cmd(cli.global, LauncherCmd::Ls(a), out).await,
        Command::Start(a) => launcher_cmd(cli.global, LauncherCmd::Start(a), out).await,
        Command::Stop(a) => launcher_cmd(cli.global, LauncherCmd::Stop(a), out).await,
        Command::Ca(cli::CaCmd::Show) => ca::show(&Ctx::new(cli.global)?, out),
        Command::Auth(cmd) => {
            let ctx = Ctx::new(cli.global)?;
            let client = ctx.connect().await?;
            let r = auth::run(&ctx, &client, cmd, out).await;
            client.disconnect().await;
            r
        }
    }
}

async fn launcher_cmd(g: Global, cmd: LauncherCmd, out: &mut dyn Write) -> Result<(), CliError> {
    launcher::check(&cmd)?;
    let ctx = Ctx::new(g)?;
    let client = ctx.connect().await?;
    let r = launcher::run(&ctx, &client, cmd, out).await;
    client.disconnect().await;
    r
}

/// Writes the completion script into a buffer first: clap_complete panics on write errors, and
/// `hubcli completions bash | head` must not panic.
fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<(), CliError> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hubcli", &mut buf);
    out.write_all(&buf).map_err(error::output)
}

/// What every hub command needs: the global options and the resolved home.
pub(crate) struct Ctx {
    pub g: Global,
    pub home: Home,
}

impl Ctx {
    /// Resolves the home; one that does not exist is "no home found" (a usage error), not a
    /// missing credential file at connect.
    fn new(g: Global) -> Result<Ctx, CliError> {
        let home = Home::resolve(g.home.as_deref())?;
        let root = home.root();
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(CliError::NoHome {
                    path: root.to_path_buf(),
                    why: "not a folder",
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CliError::NoHome {
                    path: root.to_path_buf(),
                    why: "no such folder",
                })
            }
            Err(source) => {
                return Err(hivehub_home::HomeError::Unusable {
                    path: root.to_path_buf(),
                    source,
                }
                .into())
            }
        }
        Ok(Ctx { g, home })
    }

    fn options(&self) -> Result<ClientOptions, CliError> {
        let server = match &self.g.server {
            Some(s) => Some(s.clone()),
            None => server::fallback(&self.home),
        };
        let mut o = ClientOptions::from_home(&self.home, &self.g.login, server.as_deref())?;
        o.connect_timeout = self.g.timeout;
        o.request_timeout = self.g.timeout;
        // A one-shot command must not rewrite the login's token file as a side effect; an
        // expired token is replaced by a key assertion at connect anyway.
        o.refresh_token = false;
        Ok(o)
    }

    async fn connect(&self) -> Result<HubClient, CliError> {
        Ok(HubClient::connect(self.options()?).await?)
    }
}

/// Writes one line of text.
pub(crate) fn line(out: &mut dyn Write, s: &str) -> Result<(), CliError> {
    writeln!(out, "{s}").map_err(error::output)
}

/// Writes a value as pretty JSON (one document; for `jq`).
pub(crate) fn json<T: Serialize + ?Sized>(out: &mut dyn Write, v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Output(e.into()))?;
    line(out, &s)
}

/// The width tables are fitted to: the terminal's when stdout is one, else `$COLUMNS`, else 80.
pub(crate) fn table_width() -> u16 {
    if let Some(w) = comfy_table::Table::new().width() {
        return w.max(40);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(80)
}
