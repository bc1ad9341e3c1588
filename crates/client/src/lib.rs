//! The hivehub client SDK, used by the launcher, hubcli and plugins.
//!
//! * [`ClientOptions`] finds the server, CA, key and token (from a home, or from the environment
//!   the launcher sets: `HIVEHUB_HOME`, `HIVEHUB_SERVER`, `HIVEHUB_CLIENT_ID`).
//! * [`HubClient`] connects over TLS, reconnects by itself, refreshes its token before expiry,
//!   makes requests ([`HubClient::request`]), serves capabilities ([`HubClient::serve`]) and
//!   publishes and receives events.
//! * [`plugin::run`] is the whole lifecycle of a plugin: connect, set up, signal ready, and stop
//!   cleanly on SIGTERM or SIGINT.

mod client;
mod error;
mod options;
pub mod plugin;

pub use client::{ConnState, EventMessage, HubClient, QoS, Request};
pub use error::{ClientError, RpcError};
pub use options::{
    written_server_url, ClientOptions, ServerUrl, ENV_CLIENT_ID, ENV_LOG_LEVEL, ENV_SERVER,
};
