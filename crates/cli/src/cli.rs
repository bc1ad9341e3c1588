//! The command line, as clap parses it. Kept apart from the commands so that completions and
//! the tests see exactly the same definition as the binary.

use crate::duration::parse_duration;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hivehub_api::{ClientType, Role};
use hivehub_client::ServerUrl;
use std::path::PathBuf;
use std::time::Duration;

/// The exit codes as `hubcli -h` lists them; the values are those of [`crate::error::exit`].
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the operation failed (the service answered with an error, e.g. not
     found; a batch had failures)
  2  usage error (bad flags or arguments, no home found, bad server URL)
  3  cannot reach the hub, or it refused the login
  4  not permitted (the login's role may not do this)
  5  timeout (no reply, e.g. no launcher with that ID is running)

With --json, an error is one JSON object on stderr instead of a text line:
  {\"error\":{\"code\":3,\"kind\":\"unreachable\",\"message\":\"cannot reach…\"}}
(code: the exit code; kind: failed, usage, unreachable, denied or timeout).";

const EVENTS_HELP: &str = "\
Output: one line per message, `TIME LAUNCHER PLUGIN EVENT DETAILS` (TIME in
UTC); for `exited`, the plugin's last output lines follow, indented. A status
line is stamped with the plugin's last start, stop or exit, whichever is newest
(the time it was received when it has none).

With --json, one JSON object per line:
  started, ready, stopped, exited, restarting, resourceExceeded (and any later
  event): the launcher's event payload as published, unknown fields included
    {\"schemaVersion\":1,\"event\":\"exited\",\"launcherID\":\"launcher\",
     \"plugin\":\"heartbeat\",\"time\":1764147321123,\"pid\":1234,
     \"exit\":{\"code\":1,\"time\":…},\"uptimeSecs\":2.5,\"logTail\":[…]}
  status (the retained current state of a plugin):
    {\"event\":\"status\",\"launcherID\":\"launcher\",\"plugin\":\"heartbeat\",
     \"status\":{PluginInfo}}
so `jq 'select(.event==\"exited\")'` works on both kinds.

Without --follow: prints the current status of each plugin (the retained status
messages, waiting up to about 1 s for them) and exits. With --follow: prints
every event until SIGINT or SIGTERM, then exits 0.";

/// The widest `--help` output: wider terminals get this, narrower ones their own width.
pub const HELP_WIDTH: usize = 80;

/// hubcli: administer a hivehub hub (its launcher and its clients) over the bus.
#[derive(Debug, Parser)]
#[command(name = "hubcli", version, after_help = EXIT_CODES_HELP, max_term_width = HELP_WIDTH)]
pub struct Cli {
    /// Options that every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command; `global` so they may also follow the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Home folder (default: the parent of this binary's bin/ folder, else $HIVEHUB_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Hub URL (default: $HIVEHUB_SERVER, else the socket HOME/run/hubcore.sock, else
    /// HOME/run/hubcore.url, else the `listen` address of HOME/config/hubcore.yaml, else
    /// mqtts://127.0.0.1:8883). unix:///path names a socket.
    #[arg(long, global = true, value_name = "URL", value_parser = parse_server)]
    pub server: Option<String>,
    /// Log in as this client, with HOME/certs/{ID}.key and {ID}.token.
    #[arg(long, global = true, value_name = "ID", default_value = "admin", value_parser = parse_id)]
    pub login: String,
    /// Print JSON instead of text (see each command's help for the shape); an error is then a
    /// JSON object on stderr (see `hubcli -h`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Limit for connecting and for each request: 500ms, 5s, 1.5s, 2m or whole seconds.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Client ID of the launcher to talk to.
    #[arg(long, global = true, value_name = "ID", default_value = "launcher", value_parser = parse_id)]
    pub launcher: String,
}

/// The command groups, and the launcher's most used commands at the top level (HiveOT's
/// `hubcli ls`, `start`, `stop`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Control the plugins of a launcher.
    #[command(subcommand)]
    Launcher(LauncherCmd),
    /// Manage the clients that may log in to the hub.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// The hub's certificate authority (no hub needed).
    #[command(subcommand)]
    Ca(CaCmd),
    /// Same as `launcher ls`: list the plugins.
    #[command(long_about = LS_LONG)]
    Ls(LsArgs),
    /// Same as `launcher start`: start a plugin, or all.
    #[command(long_about = START_LONG)]
    Start(StartArgs),
    /// Same as `launcher stop`: stop a plugin, or all.
    #[command(long_about = STOP_LONG)]
    Stop(StopArgs),
    /// Print a shell completion script (no hub needed).
    ///
    /// For example: `hubcli completions bash > /etc/bash_completion.d/hubcli`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

const LS_LONG: &str = "\
List the plugins: state, PID, starts, CPU, memory, uptime and last error. LAST
ERROR shows why a plugin that is not running failed (state failed or backoff);
a stop by a user is no error.

With --json: a JSON array of PluginInfo objects.";

const START_LONG: &str = "\
Start one plugin, or every plugin with `all`; then list the plugins.

With --json: the PluginInfo of the plugin, or for `all` the batch result
{\"results\":[{\"name\",\"ok\",\"error\"}],\"plugins\":[PluginInfo]}.";

const STOP_LONG: &str = "\
Stop one plugin, or every plugin with `all` (the core keeps running unless
--include-core); then list the plugins. Stopping a plugin that waits to be
restarted (state backoff) cancels the restart.

With --json: as for `start`.";

/// The arguments of `launcher ls` (and `hubcli ls`).
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only plugins that have a process.
    #[arg(long)]
    pub running: bool,
    /// Every launcher of the hub, with a LAUNCHER column; offline launchers are listed as
    /// such (from the statuses the launchers share). With --json: an array of launcher
    /// statuses {"launcherID", "online", "host", "cpus", "load1", "memFree", "memTotal",
    /// "labels", "eligible", "plugins": [PluginInfo], "time", "reason"}.
    #[arg(long)]
    pub all: bool,
}

/// The arguments of `launcher start` (and `hubcli start`).
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// A plugin name, or `all`.
    #[arg(value_name = "NAME|all", value_parser = parse_id)]
    pub target: String,
}

/// The arguments of `launcher stop` (and `hubcli stop`).
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// A plugin name, or `all`.
    #[arg(value_name = "NAME|all", value_parser = parse_id)]
    pub target: String,
    /// With `all`: also stop the hub core (a full stop; this connection ends with it).
    #[arg(long)]
    pub include_core: bool,
}

/// `hubcli launcher …`
#[derive(Debug, Subcommand)]
pub enum LauncherCmd {
    /// List the plugins: state, PID, starts, CPU, memory, uptime and last error.
    #[command(long_about = LS_LONG)]
    Ls(LsArgs),
    /// Move a movable plugin to another launcher: the target prepares, the plugin stops where
    /// it runs, the lease passes to the target at the core, and the target starts it. It never
    /// runs twice.
    ///
    /// With --json: the PluginInfo on the target.
    Move {
        /// The plugin (placement: movable).
        #[arg(value_parser = parse_id)]
        name: String,
        /// The launcher that should run it.
        #[arg(value_name = "LAUNCHER_ID", value_parser = parse_id)]
        to: String,
    },
    /// Start one plugin, or every plugin with `all`; then list the plugins.
    #[command(long_about = START_LONG)]
    Start(StartArgs),
    /// Stop one plugin, or every plugin with `all`; then list the plugins.
    #[command(long_about = STOP_LONG)]
    Stop(StopArgs),
    /// Show one plugin's details and its last output lines.
    ///
    /// With --json: {"info": PluginInfo, "logTail": [lines], "history": [{time, cpu, rss}]}.
    Status {
        /// The plugin.
        #[arg(value_parser = parse_id)]
        name: String,
    },
    /// Re-read the launcher's config file and apply only the difference (new autostart plugins
    /// start, removed ones stop, changed ones restart; the rest keeps running). An invalid file
    /// is rejected with its line and column, and nothing changes.
    ///
    /// With --json: {"started","stopped","restarted","failed","needsRestart"}.
    Reload,
    /// Print the launcher's events: status, started, ready, stopped, exited, restarting, …
    #[command(after_help = EVENTS_HELP)]
    Events {
        /// Keep printing events until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Only this plugin's events.
        #[arg(long, value_name = "NAME", value_parser = parse_id)]
        plugin: Option<String>,
    },
}

/// `hubcli ca …`
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Print the hub CA certificate (HOME/certs/caCert.pem): subject, issuer, validity and
    /// SHA-256 fingerprint, then the PEM text (HiveOT's `vca`).
    ///
    /// Clients verify the hub with this certificate; compare the fingerprint before trusting
    /// a copy. With --json: {"file", "subject", "issuer", "serial", "notBefore", "notAfter"
    /// (unix ms), "sha256", "pem"}.
    Show,
}

/// `hubcli auth …`
#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Add a client (or replace its profile): creates HOME/certs/{ID}.key if missing, registers
    /// its public key and writes HOME/certs/{ID}.token.
    ///
    /// With --json: {"profile", "expires", "keyFile", "keyCreated", "tokenFile"} (never the token).
    Add {
        /// The new client's login ID.
        #[arg(value_name = "CLIENT_ID", value_parser = parse_id)]
        client_id: String,
        /// What the client may do.
        #[arg(long, value_parser = role_parser())]
        role: Role,
        /// Kind of client (default: the usual one for the role).
        #[arg(long = "type", value_name = "TYPE", value_enum)]
        client_type: Option<TypeArg>,
        /// A name for people (default: the client ID).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the clients.
    ///
    /// With --json: a JSON array of client profiles.
    Ls,
    /// Remove a client and disconnect its sessions; its token stops working at once.
    Rm {
        /// The client's login ID.
        #[arg(value_name = "CLIENT_ID", value_parser = parse_id)]
        client_id: String,
    },
}

/// `--role` takes the wire names of [`Role::ALL`], each with a line of help, so that it gets
/// possible values and completions without a second list of the roles.
fn role_parser() -> impl TypedValueParser<Value = Role> {
    let values = Role::ALL.map(|r| PossibleValue::new(r.as_str()).help(role_help(r)));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<Role>())
}

/// The one-line help of a role in `--role`'s possible values.
fn role_help(r: Role) -> &'static str {
    match r {
        Role::Viewer => "Reads events; calls capabilities granted to viewers",
        Role::Operator => "Viewer, plus actions on things",
        Role::Manager => "Operator, plus configuration of things",
        Role::Admin => "Everything",
        Role::Launcher => "A launcher",
        Role::Service => "A plugin",
        Role::Device => "An IoT device",
    }
}

/// A client type, as clap sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// A long-running program.
    Service,
    /// A person.
    User,
    /// An IoT device.
    Device,
}

impl From<TypeArg> for ClientType {
    fn from(t: TypeArg) -> ClientType {
        match t {
            TypeArg::Service => ClientType::Service,
            TypeArg::User => ClientType::User,
            TypeArg::Device => ClientType::Device,
        }
    }
}

/// Rejects IDs the bus would refuse, before connecting, so the mistake is a usage error.
fn parse_id(s: &str) -> Result<String, String> {
    hivehub_api::validate_id(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Rejects malformed server URLs as a usage error.
fn parse_server(s: &str) -> Result<String, String> {
    ServerUrl::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let c = Cli::try_parse_from([
            "hubcli",
            "launcher",
            "ls",
            "--json",
            "--timeout",
            "500ms",
            "--login",
            "op1",
        ])
        .unwrap();
        assert!(c.global.json);
        assert_eq!(c.global.timeout, Duration::from_millis(500));
        assert_eq!(c.global.login, "op1");
        assert_eq!(c.global.launcher, "launcher");
        assert!(matches!(
            c.command,
            Command::Launcher(LauncherCmd::Ls(LsArgs {
                running: false,
                all: false
            }))
        ));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["hubcli", "--timeout", "soon", "launcher", "ls"][..],
            &["hubcli", "--server", "http://x:1", "launcher", "ls"],
            &["hubcli", "--login", "a/b", "launcher", "ls"],
            &["hubcli", "launcher", "start", "a+b"],
            &["hubcli", "auth", "add", "p9", "--role", "root"],
            &["hubcli", "auth", "add", "p9"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn role_args_cover_every_role() {
        for r in Role::ALL {
            let c =
                Cli::try_parse_from(["hubcli", "auth", "add", "p9", "--role", r.as_str()]).unwrap();
            assert!(
                matches!(c.command, Command::Auth(AuthCmd::Add { role, .. }) if role == r),
                "{r}"
            );
        }
        for t in TypeArg::value_variants() {
            let name = t.to_possible_value().unwrap();
            assert_eq!(name.get_name(), ClientType::from(*t).as_str());
        }
    }
    /// Every command path: `[]`, `["launcher"]`, `["launcher", "ls"]`, …
    fn command_paths(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            command_paths(sub, p, out);
        }
    }

    #[test]
    fn help_fits_80_columns() {
        let mut root = Cli::command();
        root.build();
        let mut paths = Vec::new();
        command_paths(&root, Vec::new(), &mut paths);
        assert!(paths.len() > 15, "{paths:?}");
        for path in paths {
            let mut cmd = root.clone();
            for name in &path {
                cmd = cmd.find_subcommand(name).expect("subcommand").clone();
            }
            for (kind, help) in [
                ("-h", cmd.render_help().to_string()),
                ("--help", cmd.render_long_help().to_string()),
            ] {
                for line in help.lines() {
                    assert!(
                        line.chars().count() <= HELP_WIDTH,
                        "hubcli {} {kind}: {} columns: {line:?}",
                        path.join(" "),
                        line.chars().count()
                    );
                }
            }
        }
    }

    #[test]
    fn top_level_ls_start_stop_are_the_launcher_commands() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().command;
        match parse(&["hubcli", "ls", "--running", "--all", "--json"]) {
            Command::Ls(LsArgs { running, all }) => assert!(running && all),
            c => panic!("{c:?}"),
        }
        match parse(&["hubcli", "start", "heartbeat"]) {
            Command::Start(StartArgs { target }) => assert_eq!(target, "heartbeat"),
            c => panic!("{c:?}"),
        }
        match parse(&["hubcli", "stop", "all", "--include-core"]) {
            Command::Stop(StopArgs {
                target,
                include_core,
            }) => assert!(target == "all" && include_core),
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            parse(&["hubcli", "ca", "show"]),
            Command::Ca(CaCmd::Show)
        ));
        // The same flags as under `launcher`, and the same checks of their values.
        let root = Cli::command();
        for name in ["ls", "start", "stop"] {
            let flags = |c: &clap::Command| {
                c.get_arguments()
                    .map(|a| {
                        (
                            a.get_id().to_string(),
                            a.get_value_names().map(<[_]>::to_vec),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let top = root.find_subcommand(name).unwrap();
            let under = root
                .find_subcommand("launcher")
                .and_then(|l| l.find_subcommand(name))
                .unwrap();
            assert_eq!(flags(top), flags(under), "{name}");
            assert_eq!(top.get_long_about(), under.get_long_about(), "{name}");
        }
        let e = Cli::try_parse_from(["hubcli", "start", "a+b"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
