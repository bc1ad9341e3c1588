//! Roles and client types. The permissions of each role live in `hivehub-auth`'s ACL, which
//! documents them in its table (`hivehub_auth::acl`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a client may do on the bus. Stored by the core per client; the core's copy is
/// authoritative, the copy in the token is informative (for external brokers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads events and may call capabilities granted to viewers.
    Viewer,
    /// Viewer, plus sending actions to things.
    Operator,
    /// Operator, plus changing the configuration of things.
    Manager,
    /// Everything, including user management and every service capability.
    Admin,
    /// The launcher: publishes its own events, serves its own capabilities, and adds or removes
    /// service clients through the auth service.
    Launcher,
    /// A plugin: publishes its own events, serves its own capabilities, receives actions for its
    /// own things, and calls other capabilities only when granted.
    Service,
    /// An IoT device: publishes its own events and receives its own actions.
    Device,
}

impl Role {
    /// All roles, in the order of the documentation table.
    pub const ALL: [Role; 7] = [
        Role::Viewer,
        Role::Operator,
        Role::Manager,
        Role::Admin,
        Role::Launcher,
        Role::Service,
        Role::Device,
    ];

    /// The wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::Launcher => "launcher",
            Role::Service => "service",
            Role::Device => "device",
        }
    }

    /// True for the user roles that form the hierarchy viewer < operator < manager < admin.
    pub fn is_user_role(self) -> bool {
        matches!(
            self,
            Role::Viewer | Role::Operator | Role::Manager | Role::Admin
        )
    }

    /// The rank of a user role in the hierarchy; `None` for agent roles (launcher, service, device).
    pub fn user_rank(self) -> Option<u8> {
        match self {
            Role::Viewer => Some(1),
            Role::Operator => Some(2),
            Role::Manager => Some(3),
            Role::Admin => Some(4),
            _ => None,
        }
    }

    /// The client type that a client with this role normally has.
    pub fn default_client_type(self) -> ClientType {
        match self {
            Role::Launcher | Role::Service => ClientType::Service,
            Role::Device => ClientType::Device,
            _ => ClientType::User,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}' (expected one of viewer, operator, manager, admin, launcher, service, device)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// The kind of client; decides the default token lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    /// A person, through hubcli or a UI.
    User,
    /// A long-running program: a plugin or the launcher.
    Service,
    /// An IoT device.
    Device,
}

impl ClientType {
    /// The wire name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::User => "user",
            ClientType::Service => "service",
            ClientType::Device => "device",
        }
    }
}

impl fmt::Display for ClientType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client type name that is not user, service or device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client type '{0}' (expected user, service or device)")]
pub struct UnknownClientType(pub String);

impl FromStr for ClientType {
    type Err = UnknownClientType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(ClientType::User),
            "service" => Ok(ClientType::Service),
            "device" => Ok(ClientType::Device),
            _ => Err(UnknownClientType(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert!("root".parse::<Role>().is_err());
    }
}
