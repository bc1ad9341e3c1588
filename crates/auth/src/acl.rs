//! The topic ACL: who may publish and subscribe to what. The core calls these functions on every
//! PUBLISH, SUBSCRIBE and Last Will; they are pure so they can be tested exhaustively.
//!
//! | role | publish | subscribe |
//! |---|---|---|
//! | every role | replies `_INBOX/{other}/{self}`; RPC granted to its role | `_INBOX/{self}/+` |
//! | viewer | – | `event/#` |
//! | operator | `action/…/{self}` | `event/#` |
//! | manager | `action`, `config` `…/{self}` | `event/#` |
//! | admin | `action`, `config`, every `rpc`, own events | `event/#`, `action/#`, `config/#` |
//! | launcher | own events | `event/#`, own `rpc`, `action`, `config` |
//! | service | own events | `event/#`, own `rpc`, `action`, `config` |
//! | device | own events | own `action`, `config` |
//!
//! On top of the table: the last topic segment (senderID) must be the publisher's login ID, and an
//! event's agent segment must be the publisher too. RPC to a capability is allowed only when the
//! service that serves it granted the caller's role ([`Grants`]), with built-in grants for the
//! core's auth service. Nothing else is allowed.
//!
//! Consequences worth knowing:
//! * A subscription filter is allowed only if every topic it can match is allowed, so wildcards
//!   cannot widen a grant: `#`, `rpc/#` and `_INBOX/#` are refused even to admin, and admin
//!   cannot read other clients' requests or inboxes.
//! * Plugins (launcher, service, device) have no user rank, so they cannot send actions or
//!   config changes.
//! * Only a launcher may publish on `event/{self}/_launcher/…`, the shared launcher status that
//!   decides where movable plugins run.
//! * Built-in grants ([`builtin_grant`]): `clients` and `leases` to admin and launcher,
//!   `profile` to every role, `authz` to admin, launcher and service.
//! * Only the responder named in an inbox topic may publish there; any client may still
//!   publish into any inbox under its own name (the SDK drops replies it did not ask for).

use hivehub_api::auth::{AUTH_SERVICE, CAP_AUTHZ, CAP_CLIENTS, CAP_PROFILE};
use hivehub_api::cluster::{CAP_LEASES, LAUNCHER_THING};
use hivehub_api::topic::filter::{self, covers};
use hivehub_api::topic::{InboxTopic, MsgType, Topic, INBOX_PREFIX};
use hivehub_api::Role;

/// The capability grants registered by services: may `role` call `service`'s `capability`?
pub trait Grants {
    /// True if `service` registered `role` for `capability`.
    fn granted(&self, service: &str, capability: &str, role: Role) -> bool;
}

/// No registered grants; only the built-in ones apply.
pub struct NoGrants;

impl Grants for NoGrants {
    fn granted(&self, _: &str, _: &str, _: Role) -> bool {
        false
    }
}

/// Grants of the core's own auth service, which exist before any service registers anything.
/// Method-level rules (e.g. the launcher may only add services) are enforced by the service.
pub fn builtin_grant(service: &str, capability: &str, role: Role) -> bool {
    if service != AUTH_SERVICE {
        return false;
    }
    match capability {
        CAP_CLIENTS => matches!(role, Role::Admin | Role::Launcher),
        CAP_PROFILE => true,
        CAP_AUTHZ => matches!(role, Role::Admin | Role::Launcher | Role::Service),
        CAP_LEASES => matches!(role, Role::Admin | Role::Launcher),
        _ => false,
    }
}

fn owns_things(role: Role) -> bool {
    matches!(
        role,
        Role::Launcher | Role::Service | Role::Device | Role::Admin
    )
}

/// May `login` (with `role`) publish to the concrete topic `topic`?
pub fn may_publish(login: &str, role: Role, topic: &str, grants: &dyn Grants) -> bool {
    if topic.starts_with(INBOX_PREFIX) {
        // Replies: only the responder named in the topic may publish, so replies can't be forged.
        return InboxTopic::parse(topic).is_ok_and(|t| t.responder == login);
    }
    let Ok(t) = Topic::parse(topic) else {
        return false;
    };
    if t.sender != login {
        return false;
    }
    let rank = role.user_rank().unwrap_or(0);
    match t.msg_type {
        // A launcher's shared status decides where movable plugins run: launchers only.
        MsgType::Event if t.thing == LAUNCHER_THING => t.agent == login && role == Role::Launcher,
        MsgType::Event => t.agent == login && owns_things(role),
        MsgType::Action => rank >= 2,
        MsgType::Config => rank >= 3,
        MsgType::Rpc => {
            role == Role::Admin
                || builtin_grant(&t.agent, &t.thing, role)
                || grants.granted(&t.agent, &t.thing, role)
        }
    }
}

/// May `login` (with `role`) subscribe to the filter `filter`? A filter is allowed only if every
/// topic it can match is allowed, so wildcards cannot widen a grant.
pub fn may_subscribe(login: &str, role: Role, filter_str: &str) -> bool {
    if covers(&filter::inbox(login), filter_str) {
        return true;
    }
    let serves = matches!(role, Role::Launcher | Role::Service);
    let own = |mt| covers(&filter::addressed_to(mt, login), filter_str);
    match role {
        Role::Device => own(MsgType::Action) || own(MsgType::Config),
        _ => {
            covers("event/#", filter_str)
                || (serves && (own(MsgType::Rpc) || own(MsgType::Action) || own(MsgType::Config)))
                || (role == Role::Admin
                    && (covers("action/#", filter_str) || covers("config/#", filter_str)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct G;
    impl Grants for G {
        fn granted(&self, service: &str, capability: &str, role: Role) -> bool {
            service == "weather" && capability == "forecast" && role == Role::Viewer
        }
    }

    #[test]
    fn services_publish_only_their_own_events() {
        assert!(may_publish(
            "p1",
            Role::Service,
            "event/p1/t/x/p1",
            &NoGrants
        ));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "event/p2/t/x/p2",
            &NoGrants
        ));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "event/p2/t/x/p1",
            &NoGrants
        ));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "event/p1/t/x/p2",
            &NoGrants
        ));
        assert!(!may_publish("v", Role::Viewer, "event/v/t/x/v", &NoGrants));
        // Posing as a launcher: only a launcher publishes a launcher's status.
        for role in [Role::Service, Role::Device, Role::Admin] {
            assert!(!may_publish(
                "p1",
                role,
                "event/p1/_launcher/status/p1",
                &NoGrants
            ));
        }
        assert!(may_publish(
            "l2",
            Role::Launcher,
            "event/l2/_launcher/status/l2",
            &NoGrants
        ));
    }

    #[test]
    fn rpc_needs_a_grant() {
        let t = "rpc/weather/forecast/get/p1";
        assert!(!may_publish("p1", Role::Service, t, &G));
        assert!(may_publish("p1", Role::Viewer, t, &G));
        assert!(may_publish("p1", Role::Admin, t, &NoGrants));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "rpc/launcher/manage/stopPlugin/p1",
            &NoGrants
        ));
        assert!(may_publish(
            "p1",
            Role::Service,
            "rpc/auth/profile/refresh/p1",
            &NoGrants
        ));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "rpc/auth/clients/addClient/p1",
            &NoGrants
        ));
        assert!(may_publish(
            "launcher",
            Role::Launcher,
            "rpc/auth/clients/addClient/launcher",
            &NoGrants
        ));
    }

    #[test]
    fn replies_only_from_the_named_responder() {
        assert!(may_publish(
            "launcher",
            Role::Launcher,
            "_INBOX/admin/launcher",
            &NoGrants
        ));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "_INBOX/admin/launcher",
            &NoGrants
        ));
        assert!(!may_publish(
            "p1",
            Role::Service,
            "_INBOX/admin/+",
            &NoGrants
        ));
        assert!(!may_publish("p1", Role::Service, "_INBOX/admin", &NoGrants));
    }

    #[test]
    fn subscriptions() {
        assert!(may_subscribe("p1", Role::Service, "_INBOX/p1/+"));
        assert!(may_subscribe("p1", Role::Service, "_INBOX/p1/launcher"));
        assert!(!may_subscribe("p1", Role::Service, "_INBOX/admin/+"));
        assert!(!may_subscribe("p1", Role::Service, "_INBOX/#"));
        assert!(may_subscribe("p1", Role::Service, "rpc/p1/+/+/+"));
        assert!(!may_subscribe("p1", Role::Service, "rpc/launcher/+/+/+"));
        assert!(!may_subscribe("p1", Role::Service, "rpc/#"));
        assert!(may_subscribe("v", Role::Viewer, "event/#"));
        assert!(!may_subscribe("v", Role::Viewer, "rpc/v/+/+/+"));
        assert!(!may_subscribe("d", Role::Device, "event/#"));
        assert!(may_subscribe("d", Role::Device, "action/d/+/+/+"));
        assert!(!may_subscribe("admin", Role::Admin, "#"));
        assert!(!may_subscribe("admin", Role::Admin, "_INBOX/launcher/+"));
    }

    fn id() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,8}"
    }

    proptest! {
        /// Whatever the role and topic, a non-admin can never publish with someone else's
        /// sender ID, and nobody can publish a reply in another responder's name.
        #[test]
        fn no_impersonation(login in id(), other in id(), t in "[a-z/+#_A-Z]{0,40}", r in 0usize..7) {
            prop_assume!(login != other);
            let role = Role::ALL[r];
            let forged = format!("event/{other}/x/y/{other}");
            prop_assert!(!may_publish(&login, role, &forged, &NoGrants));
            let reply = format!("_INBOX/{login}/{other}");
            prop_assert!(!may_publish(&login, role, &reply, &NoGrants));
            if may_publish(&login, role, &t, &NoGrants) {
                let suffix = format!("/{}", login);
                prop_assert!(t.ends_with(&suffix));
            }
        }
    }
}
