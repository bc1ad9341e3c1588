//! `hubcli`: parses the command line, runs the command from `hivehub_cli`, and turns its error
//! into `hubcli: error: <message>` on stderr (with `--json`, a JSON object:
//! [`CliError::to_json`]) and a documented exit code (see `hubcli -h`).

use clap::Parser;
use hivehub_cli::{error, exit, Cli, CliError};
// Linked for its `pow`, which keeps the C math library from being loaded at each run.
use hivehub_memory as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Usage errors exit with 2 here (clap's convention); --help and --version with 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            eprintln!("{}", error::error_json(exit::USAGE, &clap_message(&e)));
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    let as_json = cli.global.json;
    let fail = |e: CliError| {
        if as_json {
            eprintln!("{}", e.to_json());
        } else {
            eprintln!("hubcli: error: {e}");
        }
        ExitCode::from(e.exit_code())
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(source) => {
            return fail(CliError::Setup {
                what: "cannot start the async runtime",
                source,
            })
        }
    };
    let mut stdout = std::io::stdout();
    match rt.block_on(hivehub_cli::run(cli, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing left to say.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The first line of clap's message, without its `error: ` prefix (the usage and the "try
/// --help" lines are for people).
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}
