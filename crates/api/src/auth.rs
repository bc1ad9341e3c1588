//! The auth service, served by the core under the client ID [`AUTH_SERVICE`].
//!
//! | capability | method | who may call | request | result |
//! |---|---|---|---|---|
//! | `clients` | `addClient` | admin; launcher for services | [`AddClientReq`] | [`AddClientResp`] |
//! | `clients` | `removeClient` | admin; launcher for services | [`ClientIdReq`] | [`RemoveClientResp`] |
//! | `clients` | `listClients` | admin, launcher | – | [`ListClientsResp`] |
//! | `clients` | `issueToken` | admin; launcher for services | [`ClientIdReq`] | [`TokenResp`] |
//! | `profile` | `whoami` | every client | – | [`ClientProfile`] |
//! | `profile` | `refresh` | every client | – | [`TokenResp`] |
//! | `authz` | `setPermissions` | launcher, service, admin | [`SetPermissionsReq`] | [`crate::rpc::Ack`] |
//! | `authz` | `getPermissions` | launcher, service, admin | – | [`PermissionsResp`] |

use crate::roles::{ClientType, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Client ID of the core's auth service.
pub const AUTH_SERVICE: &str = "auth";
/// Capability: manage clients.
pub const CAP_CLIENTS: &str = "clients";
/// Capability: a client's own profile and token.
pub const CAP_PROFILE: &str = "profile";
/// Capability: who may call the caller's own capabilities.
pub const CAP_AUTHZ: &str = "authz";

/// Method names of the auth service.
pub mod methods {
    /// `clients/addClient`
    pub const ADD_CLIENT: &str = "addClient";
    /// `clients/removeClient`
    pub const REMOVE_CLIENT: &str = "removeClient";
    /// `clients/listClients`
    pub const LIST_CLIENTS: &str = "listClients";
    /// `clients/issueToken`
    pub const ISSUE_TOKEN: &str = "issueToken";
    /// `profile/whoami`
    pub const WHOAMI: &str = "whoami";
    /// `profile/refresh`
    pub const REFRESH: &str = "refresh";
    /// `authz/setPermissions`
    pub const SET_PERMISSIONS: &str = "setPermissions";
    /// `authz/getPermissions`
    pub const GET_PERMISSIONS: &str = "getPermissions";
}

/// Client ID of the administrator created on first start.
pub const ADMIN_ID: &str = "admin";
/// Client ID of the local launcher created on first start.
pub const LAUNCHER_ID: &str = "launcher";

/// A client as the core knows it. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientProfile {
    /// Login ID; also the MQTT username.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// User, service or device.
    pub client_type: ClientType,
    /// A name for people.
    pub display_name: String,
    /// What the client may do.
    pub role: Role,
    /// The client's public key: base64 of the DER SubjectPublicKeyInfo (P-256).
    pub pub_key: String,
    /// When the client was added (unix seconds).
    pub created: u64,
    /// When the profile last changed (unix seconds).
    pub updated: u64,
    /// The client ID that added or last replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Made by a launcher for one of its plugins. Only such clients may be re-keyed by a
    /// launcher, so a plugin binary named like a user, a device or a remote service cannot
    /// take over its identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plugin: bool,
    /// Drawn when the client is added and kept while it exists; its tokens carry it, so a
    /// token issued before a removal never logs in again, even once the ID is added again.
    /// Absent in profiles from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// Request of `clients/addClient`. Adding an existing client replaces its profile (same ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddClientReq {
    /// Login ID of the new client.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Defaults to the usual type of the role.
    #[serde(default)]
    pub client_type: Option<ClientType>,
    /// Defaults to the client ID.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The client's role.
    pub role: Role,
    /// Base64 DER SubjectPublicKeyInfo of the client's P-256 key.
    pub pub_key: String,
}

/// Result of `clients/addClient`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddClientResp {
    /// The stored profile.
    pub profile: ClientProfile,
    /// A fresh token for the client.
    pub token: String,
    /// When the token expires (unix milliseconds, like every time on the wire).
    pub expires: u64,
}

/// A request that names one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIdReq {
    /// The client.
    #[serde(rename = "clientID")]
    pub client_id: String,
}

/// Result of `clients/removeClient`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveClientResp {
    /// False if there was no such client (removal is idempotent).
    pub removed: bool,
    /// How many live sessions of the client were disconnected.
    pub disconnected: usize,
}

/// Result of `clients/listClients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClientsResp {
    /// Every client, sorted by ID.
    pub clients: Vec<ClientProfile>,
}

/// A token and its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResp {
    /// The signed token (a JWT).
    pub token: String,
    /// When it expires (unix milliseconds, like every time on the wire).
    pub expires: u64,
}

/// Request of `authz/setPermissions`: the roles that may call one of the caller's capabilities.
/// An empty list withdraws every grant of that capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPermissionsReq {
    /// A capability served by the caller.
    pub capability: String,
    /// The roles that may call it.
    pub roles: Vec<Role>,
}

/// Result of `authz/getPermissions`: the grants of the caller's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsResp {
    /// Capability → roles that may call it.
    pub capabilities: BTreeMap<String, Vec<Role>>,
}
