//! `hubcli`: parses the command line, runs the command from `hivehub_cli`, and turns its error
//! into `hubcli: error: <message>` on stderr and a documented exit code (see `hubcli -h`).

use clap::Parser;
use hivehub_cli::{exit, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Usage errors exit with 2 here (clap's convention); --help and --version with 0.
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubcli: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let mut stdout = std::io::stdout();
    match rt.block_on(hivehub_cli::run(cli, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing left to say.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubcli: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
