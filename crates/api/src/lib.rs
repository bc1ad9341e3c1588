//! Shared API of hivehub: the one place where topics, roles, identifiers and message types are
//! defined. Every other crate (core, SDK, launcher, CLI, plugins) builds topics and payloads through
//! this crate, so the wire format has a single definition. This crate does no I/O.

pub mod auth;
pub mod cluster;
pub mod ids;
pub mod launcher;
pub mod roles;
pub mod rpc;
pub mod time;
pub mod topic;
pub mod units;

pub use ids::{validate_id, IdError};
pub use roles::{ClientType, Role};
pub use rpc::{ErrorCode, RemoteError, Reply};
pub use topic::{InboxTopic, MsgType, Topic, TopicError};

/// Version of the message schemas in this crate; carried in events so consumers can detect changes.
pub const SCHEMA_VERSION: u32 = 1;
