use hivehub_api::RemoteError;
use std::time::Duration;
use thiserror::Error;

/// Errors of connecting and of plain publish/subscribe.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Options are incomplete or inconsistent.
    #[error("{0}")]
    Config(String),
    /// A credential or CA file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The hub could not be reached.
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable {
        /// The server URL.
        url: String,
        /// The cause, for example "connection refused".
        reason: String,
    },
    /// The hub refused the login.
    #[error("the hub at {url} refused the login of '{client_id}': {reason}")]
    LoginRefused {
        /// The server URL.
        url: String,
        /// Who tried to log in.
        client_id: String,
        /// The CONNACK reason.
        reason: String,
    },
    /// The hub refused a subscription.
    #[error("the hub refused the subscription to '{0}'")]
    SubscribeDenied(String),
    /// A topic segment is not a valid identifier.
    #[error(transparent)]
    Id(#[from] hivehub_api::IdError),
    /// The connection closed (disconnect was called).
    #[error("the client is disconnected")]
    Closed,
    /// The connection to the hub dropped while a request was waiting for its reply; the client
    /// reconnects by itself, so the request may be retried.
    #[error("the connection to the hub at {0} dropped before the reply came")]
    ConnectionLost(String),
    /// The operation did not finish in time.
    #[error("{0} timed out")]
    Timeout(String),
    /// JSON encoding failed.
    #[error("cannot encode payload: {0}")]
    Encode(String),
}

/// Errors of a request.
#[derive(Debug, Error)]
pub enum RpcError {
    /// No reply within the timeout: nobody serves the capability, or it is too slow.
    #[error("no reply from {service}/{capability}/{method} within {after:?}")]
    Timeout {
        /// The service called.
        service: String,
        /// The capability.
        capability: String,
        /// The method.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// The service (or the core, for a denied call) replied with an error. A
    /// [`hivehub_api::ErrorCode::Busy`] reply is only returned once the request's timeout ran
    /// out while the service kept refusing it: requests retry `busy` by themselves.
    #[error("{}", remote_message(.0))]
    Remote(RemoteError),
    /// The reply was not what the caller expected.
    #[error("cannot decode reply: {0}")]
    Decode(String),
    /// The request could not be sent.
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn remote_message(e: &RemoteError) -> String {
    match e.code {
        hivehub_api::ErrorCode::Denied => format!("not permitted: {}", e.message),
        hivehub_api::ErrorCode::Busy => format!("the service is busy: {}", e.message),
        _ => e.message.clone(),
    }
}

impl RpcError {
    /// True for a [`hivehub_api::ErrorCode::Busy`] reply: the service did not run the request
    /// because too many were in flight, so sending it again later is safe.
    pub fn is_busy(&self) -> bool {
        self.code() == Some(hivehub_api::ErrorCode::Busy)
    }

    /// The error code, when the service replied with an error.
    pub fn code(&self) -> Option<hivehub_api::ErrorCode> {
        match self {
            RpcError::Remote(e) => Some(e.code),
            _ => None,
        }
    }
}
