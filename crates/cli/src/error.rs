//! hubcli's errors and the exit code each one maps to.
//!
//! The messages are shown to the user as they are (after `hubcli: error: `), so most variants
//! pass the SDK's or the service's message through unchanged: those are already written for people
//! ("cannot reach the hub at mqtts://127.0.0.1:8883: connection refused", "not permitted: …",
//! "no plugin named 'x'; available: a, b").

use hivehub_api::ErrorCode;
use hivehub_auth::KeyError;
use hivehub_client::{ClientError, RpcError};
use hivehub_home::HomeError;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Exit codes of hubcli. Scripts branch on these, so they are part of the interface and are
/// listed in `hubcli -h` ([`crate::cli::EXIT_CODES_HELP`]).
pub mod exit {
    /// The command did what it was asked.
    pub const OK: u8 = 0;
    /// The operation failed: the service answered with an error (not found, bad request, …), a
    /// batch had failures, or a local file could not be written.
    pub const FAILED: u8 = 1;
    /// Usage error: bad flags or arguments (clap's own code), no home found, bad server URL.
    pub const USAGE: u8 = 2;
    /// The hub cannot be reached, or it refused the login (or the credentials are unreadable).
    pub const UNREACHABLE: u8 = 3;
    /// The hub or service answered that the login may not do this.
    pub const DENIED: u8 = 4;
    /// No answer: nobody serves the call (e.g. no launcher; the hub says so at once), or no
    /// reply in time.
    pub const TIMEOUT: u8 = 5;
}

/// Everything that can make a hubcli command fail.
#[derive(Debug, Error)]
pub enum CliError {
    /// The home folder could not be found or used.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The home given (`--home`, `$HIVEHUB_HOME`) is not a folder: no home found.
    #[error(
        "no hivehub home at {path}: {why}; give an existing home with --home DIR or \
         HIVEHUB_HOME=DIR"
    )]
    NoHome {
        /// The path given.
        path: PathBuf,
        /// "no such folder", "not a folder".
        why: &'static str,
    },
    /// Connecting or subscribing failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A request failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Nobody serves the launcher's capabilities, or no reply came; says which launcher, since
    /// a wrong `--launcher` or a launcher that is not running is the usual cause.
    #[error("{source} (is the launcher '{launcher}' running and connected to the hub?)")]
    NoLauncher {
        /// The launcher ID asked.
        launcher: String,
        /// The timeout, or the core's `unknownCapability` reply.
        source: RpcError,
    },
    /// The client key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A local file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Some plugins of a `start all` / `stop all` / `reload` failed (each is listed in the output).
    #[error("{failed} of {total} plugins failed to {op}")]
    BatchFailed {
        /// "start" or "stop".
        op: &'static str,
        /// How many failed.
        failed: usize,
        /// How many were handled.
        total: usize,
    },
    /// The operation cannot be done; the message says why.
    #[error("{0}")]
    Failed(String),
    /// `auth rm` of a client the hub does not know.
    #[error("no client named '{0}'")]
    NoSuchClient(String),
    /// Arguments that clap cannot reject by itself.
    #[error("{0}")]
    Usage(String),
    /// Writing to stdout failed.
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// A local facility (signal handler, runtime) could not be set up.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
}

impl CliError {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Home(HomeError::NotFound { .. } | HomeError::Empty { .. }) => exit::USAGE,
            CliError::Home(HomeError::Unusable { .. }) => exit::FAILED,
            CliError::NoHome { .. } => exit::USAGE,
            CliError::Client(e) => client_code(e),
            CliError::Rpc(e) | CliError::NoLauncher { source: e, .. } => rpc_code(e),
            CliError::Usage(_) => exit::USAGE,
            CliError::Key(_)
            | CliError::Write { .. }
            | CliError::BatchFailed { .. }
            | CliError::NoSuchClient(_)
            | CliError::Failed(_)
            | CliError::Output(_)
            | CliError::Setup { .. } => exit::FAILED,
        }
    }

    /// The error as the one-line JSON object `--json` prints on stderr:
    /// `{"error":{"code":EXIT_CODE,"kind":KIND,"message":TEXT}}`.
    pub fn to_json(&self) -> String {
        error_json(self.exit_code(), &self.to_string())
    }

    /// True when stdout was closed by its reader (`hubcli … | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// The name of an exit code in `--json` errors ("failed", "usage", "unreachable", "denied",
/// "timeout").
pub fn kind(code: u8) -> &'static str {
    match code {
        exit::OK => "ok",
        exit::USAGE => "usage",
        exit::UNREACHABLE => "unreachable",
        exit::DENIED => "denied",
        exit::TIMEOUT => "timeout",
        _ => "failed",
    }
}

/// `{"error":{"code":CODE,"kind":KIND,"message":MESSAGE}}`, on one line: what `--json` prints
/// on stderr for an error (usage errors of the argument parser included).
pub fn error_json(code: u8, message: &str) -> String {
    serde_json::json!({
        "error": {"code": code, "kind": kind(code), "message": message}
    })
    .to_string()
}

fn client_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Unreachable { .. }
        | ClientError::LoginRefused { .. }
        | ClientError::File { .. }
        | ClientError::Closed
        | ClientError::ConnectionLost(_) => exit::UNREACHABLE,
        ClientError::SubscribeDenied(_) => exit::DENIED,
        ClientError::Timeout(_) => exit::TIMEOUT,
        ClientError::Config(_) | ClientError::Id(_) => exit::USAGE,
        ClientError::Encode(_) => exit::FAILED,
    }
}

fn rpc_code(e: &RpcError) -> u8 {
    match e {
        RpcError::Timeout { .. } => exit::TIMEOUT,
        RpcError::Remote(r) if r.code == ErrorCode::Denied => exit::DENIED,
        RpcError::Remote(r) if r.code == ErrorCode::UnknownCapability => exit::TIMEOUT,
        RpcError::Remote(_) | RpcError::Decode(_) => exit::FAILED,
        RpcError::Client(c) => client_code(c),
    }
}

/// Turns an error of writing to stdout into a [`CliError`].
pub(crate) fn output(e: io::Error) -> CliError {
    CliError::Output(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivehub_api::RemoteError;
    use std::time::Duration;

    fn remote(code: ErrorCode, msg: &str) -> CliError {
        CliError::Rpc(RpcError::Remote(RemoteError::new(code, msg)))
    }

    fn timeout() -> RpcError {
        RpcError::Timeout {
            service: "launcher".into(),
            capability: "view".into(),
            method: "list".into(),
            after: Duration::from_secs(1),
        }
    }

    #[test]
    fn exit_codes() {
        let unreachable = ClientError::Unreachable {
            url: "mqtts://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        let cases: Vec<(CliError, u8)> = vec![
            (
                CliError::Home(HomeError::NotFound {
                    exe: "/usr/bin/hubcli".into(),
                }),
                exit::USAGE,
            ),
            (CliError::Usage("x".into()), exit::USAGE),
            (
                CliError::NoHome {
                    path: "/nonexistent".into(),
                    why: "no such folder",
                },
                exit::USAGE,
            ),
            (
                CliError::Client(ClientError::Config("bad url".into())),
                exit::USAGE,
            ),
            (CliError::Client(unreachable), exit::UNREACHABLE),
            (
                CliError::Client(ClientError::LoginRefused {
                    url: "u".into(),
                    client_id: "p9".into(),
                    reason: "not authorized".into(),
                }),
                exit::UNREACHABLE,
            ),
            (
                CliError::Client(ClientError::File {
                    path: "certs/admin.token".into(),
                    reason: "no token".into(),
                }),
                exit::UNREACHABLE,
            ),
            (
                CliError::Rpc(RpcError::Client(ClientError::Closed)),
                exit::UNREACHABLE,
            ),
            (
                CliError::Client(ClientError::SubscribeDenied("event/#".into())),
                exit::DENIED,
            ),
            (
                remote(ErrorCode::Denied, "role service may not"),
                exit::DENIED,
            ),
            (
                remote(ErrorCode::NotFound, "no plugin named 'x'"),
                exit::FAILED,
            ),
            (remote(ErrorCode::BadRequest, "bad"), exit::FAILED),
            (remote(ErrorCode::Internal, "bug"), exit::FAILED),
            (CliError::Rpc(RpcError::Decode("x".into())), exit::FAILED),
            (CliError::Rpc(timeout()), exit::TIMEOUT),
            (
                CliError::NoLauncher {
                    launcher: "launcher".into(),
                    source: timeout(),
                },
                exit::TIMEOUT,
            ),
            (
                CliError::Client(ClientError::Timeout("subscription".into())),
                exit::TIMEOUT,
            ),
            (
                CliError::BatchFailed {
                    op: "start",
                    failed: 1,
                    total: 3,
                },
                exit::FAILED,
            ),
            (CliError::NoSuchClient("p9".into()), exit::FAILED),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e:?}");
        }
    }

    #[test]
    fn messages_are_the_sdk_and_service_messages() {
        assert_eq!(
            remote(
                ErrorCode::Denied,
                "role service may not call launcher/manage/stopPlugin"
            )
            .to_string(),
            "not permitted: role service may not call launcher/manage/stopPlugin"
        );
        assert_eq!(
            remote(ErrorCode::NotFound, "no plugin named 'x'; available: a, b").to_string(),
            "no plugin named 'x'; available: a, b"
        );
        let e = CliError::NoLauncher {
            launcher: "launcher".into(),
            source: timeout(),
        };
        assert_eq!(
            e.to_string(),
            "no reply from launcher/view/list within 1s (is the launcher 'launcher' running and connected to the hub?)"
        );
    }

    #[test]
    fn broken_pipe_is_quiet() {
        assert!(CliError::Output(io::Error::from(io::ErrorKind::BrokenPipe)).is_broken_pipe());
        assert!(!CliError::Output(io::Error::from(io::ErrorKind::Other)).is_broken_pipe());
    }
    #[test]
    fn json_errors_carry_exit_code_kind_and_message() {
        let cases: Vec<(CliError, u8, &str)> = vec![
            (
                remote(ErrorCode::Denied, "role service may not call x"),
                exit::DENIED,
                "denied",
            ),
            (CliError::Usage("bad".into()), exit::USAGE, "usage"),
            (
                CliError::Client(ClientError::Unreachable {
                    url: "mqtts://h:1".into(),
                    reason: "connection refused".into(),
                }),
                exit::UNREACHABLE,
                "unreachable",
            ),
            (CliError::Rpc(timeout()), exit::TIMEOUT, "timeout"),
            (CliError::NoSuchClient("p9".into()), exit::FAILED, "failed"),
        ];
        for (e, code, kind) in cases {
            let j: serde_json::Value = serde_json::from_str(&e.to_json()).expect("JSON");
            assert_eq!(
                j,
                serde_json::json!({"error": {"code": code, "kind": kind, "message": e.to_string()}})
            );
            assert!(!e.to_json().contains('\n'), "one line");
        }
    }
}
