//! The request/reply message schema.
//!
//! A request is an MQTT 5 PUBLISH (QoS 1) to `rpc/{service}/{capability}/{method}/{sender}` with a
//! JSON payload, a response topic `_INBOX/{sender}/{service}` and random correlation data. The
//! reply goes to that inbox with the same correlation data, and its payload is a [`Reply`]:
//! `{"result": <value>}` or `{"error": {"code": "...", "message": "..."}}`. An error reply is thus
//! always distinguishable from a timeout (no reply) and from a successful empty result.
//!
//! A service runs a bounded number of requests at a time, overall and per caller; a request over
//! a bound is answered at once with [`ErrorCode::Busy`] and not run, so it may be sent again.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest request payload a service handler accepts by default. Bigger requests get a
/// [`ErrorCode::TooLarge`] reply; the broker itself accepts packets up to [`MAX_PACKET_BYTES`].
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Largest MQTT packet the core accepts. Larger packets are a protocol error and close the
/// connection, so it is set well above [`MAX_REQUEST_BYTES`] to let services answer with an error.
pub const MAX_PACKET_BYTES: u32 = 4 * 1024 * 1024;

/// The kind of failure, for programs; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCode {
    /// The payload is not valid JSON or does not have the expected fields.
    BadRequest,
    /// The capability has no such method.
    UnknownMethod,
    /// Nobody serves the capability: no client subscribes to its requests (the service is
    /// not connected, or has no capability of that name). Answered by the core at once.
    UnknownCapability,
    /// The named object does not exist.
    NotFound,
    /// The caller's role may not do this.
    Denied,
    /// The request conflicts with the current state.
    Conflict,
    /// The payload is larger than the service accepts.
    TooLarge,
    /// The service cannot serve the request right now.
    Unavailable,
    /// Too many requests in flight; retry later. A service answers this at once, without
    /// running the handler, when the caller (or all callers together) already have as many
    /// requests in flight as it serves at a time, so a flood cannot exhaust its memory.
    Busy,
    /// A fault in the service.
    Internal,
}

impl ErrorCode {
    /// The wire name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "badRequest",
            ErrorCode::UnknownMethod => "unknownMethod",
            ErrorCode::UnknownCapability => "unknownCapability",
            ErrorCode::NotFound => "notFound",
            ErrorCode::Denied => "denied",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "tooLarge",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply from a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RemoteError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// A sentence for a person.
    pub message: String,
}

/// A handler's result as JSON, for a reply; a value that cannot be serialized is an
/// `internal` error.
pub fn to_value<T: Serialize>(v: T) -> Result<serde_json::Value, RemoteError> {
    serde_json::to_value(v).map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))
}

impl RemoteError {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RemoteError {
            code,
            message: message.into(),
        }
    }
}

/// The payload of every reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The method's result.
    #[serde(rename = "result")]
    Ok(serde_json::Value),
    /// The method failed.
    #[serde(rename = "error")]
    Err(RemoteError),
}

impl Reply {
    /// Turns a reply into a `Result`.
    pub fn into_result(self) -> Result<serde_json::Value, RemoteError> {
        match self {
            Reply::Ok(v) => Ok(v),
            Reply::Err(e) => Err(e),
        }
    }
}

/// An empty result, for methods that only acknowledge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_wire_format() {
        let ok = serde_json::to_string(&Reply::Ok(serde_json::json!({"n": 1}))).unwrap();
        assert_eq!(ok, r#"{"result":{"n":1}}"#);
        let err = Reply::Err(RemoteError::new(ErrorCode::NotFound, "no plugin named 'x'"));
        let s = serde_json::to_string(&err).unwrap();
        assert_eq!(
            s,
            r#"{"error":{"code":"notFound","message":"no plugin named 'x'"}}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&s).unwrap(), err);
    }

    #[test]
    fn busy_wire_name_matches_serde() {
        let s = serde_json::to_string(&ErrorCode::Busy).unwrap();
        assert_eq!(s, r#""busy""#);
        assert_eq!(ErrorCode::Busy.as_str(), "busy");
        assert_eq!(
            serde_json::from_str::<ErrorCode>(r#""busy""#).unwrap(),
            ErrorCode::Busy
        );
    }
}
