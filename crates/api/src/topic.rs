//! The topic scheme. Every topic on the hub bus is built and parsed here.
//!
//! ```text
//! {event|action|config|rpc}/{agentID}/{thingID|capability}/{name}/{senderID}
//! _INBOX/{requesterID}/{responderID}
//! ```
//!
//! * `agentID` is the client that owns the thing or serves the capability.
//! * `senderID` is the login ID of the publisher. The core refuses any publish whose senderID is
//!   not the publisher's own login ID, so a receiver can trust it.
//! * Replies go to the requester's inbox, with the responder's login ID as the last segment. Only
//!   the responder may publish there under its own ID, so a reply cannot be forged: the requester
//!   only accepts a reply whose last segment is the service it called.

use crate::ids::{validate_id, IdError};
use std::fmt;
use thiserror::Error;

/// First segment of the reply inbox topics.
pub const INBOX_PREFIX: &str = "_INBOX";

/// The kind of message a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// Something happened; published by the agent that owns the thing.
    Event,
    /// A request to a thing to do something (operator and above).
    Action,
    /// A request to change a thing's configuration (manager and above).
    Config,
    /// A request to a service capability, answered in the requester's inbox.
    Rpc,
}

impl MsgType {
    /// The topic segment of this type.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Event => "event",
            MsgType::Action => "action",
            MsgType::Config => "config",
            MsgType::Rpc => "rpc",
        }
    }

    fn parse(s: &str) -> Option<MsgType> {
        match s {
            "event" => Some(MsgType::Event),
            "action" => Some(MsgType::Action),
            "config" => Some(MsgType::Config),
            "rpc" => Some(MsgType::Rpc),
            _ => None,
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a topic string does not follow the scheme.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Not 5 segments (or 3 for an inbox).
    #[error("topic '{0}' does not have the form type/agent/thing/name/sender")]
    Shape(String),
    /// The first segment is not event, action, config or rpc.
    #[error("topic '{0}' has an unknown message type")]
    MsgType(String),
    /// A segment is not a valid identifier.
    #[error("topic '{topic}': {source}")]
    Segment {
        /// The whole topic.
        topic: String,
        /// What is wrong with the segment.
        source: IdError,
    },
}

/// A parsed message topic (everything but inboxes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// What the message is.
    pub msg_type: MsgType,
    /// The client that owns the thing or serves the capability.
    pub agent: String,
    /// The thing ID, or the capability for RPC.
    pub thing: String,
    /// The event, action or method name.
    pub name: String,
    /// The login ID of the publisher (verified by the core).
    pub sender: String,
}

impl Topic {
    /// Builds a topic after validating every segment.
    pub fn new(
        msg_type: MsgType,
        agent: &str,
        thing: &str,
        name: &str,
        sender: &str,
    ) -> Result<Topic, IdError> {
        for s in [agent, thing, name, sender] {
            validate_id(s)?;
        }
        Ok(Topic {
            msg_type,
            agent: agent.to_string(),
            thing: thing.to_string(),
            name: name.to_string(),
            sender: sender.to_string(),
        })
    }

    /// An event published by `agent` about its `thing`.
    pub fn event(agent: &str, thing: &str, name: &str) -> Result<Topic, IdError> {
        Topic::new(MsgType::Event, agent, thing, name, agent)
    }

    /// A request from `sender` to `service`'s `capability`.
    pub fn rpc(
        service: &str,
        capability: &str,
        method: &str,
        sender: &str,
    ) -> Result<Topic, IdError> {
        Topic::new(MsgType::Rpc, service, capability, method, sender)
    }

    /// Parses a concrete topic (no wildcards).
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let parts: Vec<&str> = topic.split('/').collect();
        let [t, agent, thing, name, sender] = parts[..] else {
            return Err(TopicError::Shape(topic.to_string()));
        };
        let msg_type = MsgType::parse(t).ok_or_else(|| TopicError::MsgType(topic.to_string()))?;
        Topic::new(msg_type, agent, thing, name, sender).map_err(|source| TopicError::Segment {
            topic: topic.to_string(),
            source,
        })
    }

    /// The inbox where the reply to this request goes.
    pub fn reply_inbox(&self) -> InboxTopic {
        InboxTopic {
            owner: self.sender.clone(),
            responder: self.agent.clone(),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.msg_type, self.agent, self.thing, self.name, self.sender
        )
    }
}

/// A reply inbox: `_INBOX/{owner}/{responder}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboxTopic {
    /// The requester, who alone may subscribe to it.
    pub owner: String,
    /// The responder, who alone may publish to it.
    pub responder: String,
}

impl InboxTopic {
    /// Parses `_INBOX/{owner}/{responder}`.
    pub fn parse(topic: &str) -> Result<InboxTopic, TopicError> {
        let parts: Vec<&str> = topic.split('/').collect();
        let [INBOX_PREFIX, owner, responder] = parts[..] else {
            return Err(TopicError::Shape(topic.to_string()));
        };
        for s in [owner, responder] {
            validate_id(s).map_err(|source| TopicError::Segment {
                topic: topic.to_string(),
                source,
            })?;
        }
        Ok(InboxTopic {
            owner: owner.to_string(),
            responder: responder.to_string(),
        })
    }
}

impl fmt::Display for InboxTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{INBOX_PREFIX}/{}/{}", self.owner, self.responder)
    }
}

/// Subscription filters, built in one place like the topics they match.
pub mod filter {
    use super::{MsgType, INBOX_PREFIX};

    fn seg(s: Option<&str>) -> &str {
        s.unwrap_or("+")
    }

    /// Events of an agent / thing / name; `None` matches any.
    pub fn events(agent: Option<&str>, thing: Option<&str>, name: Option<&str>) -> String {
        format!(
            "{}/{}/{}/{}/+",
            MsgType::Event,
            seg(agent),
            seg(thing),
            seg(name)
        )
    }

    /// Every request to `me`'s capabilities.
    pub fn requests_to(me: &str) -> String {
        format!("{}/{me}/+/+/+", MsgType::Rpc)
    }

    /// Requests to one capability of `me`.
    pub fn capability_requests(me: &str, capability: &str) -> String {
        format!("{}/{me}/{capability}/+/+", MsgType::Rpc)
    }

    /// Actions (or config changes) addressed to `me`'s things.
    pub fn addressed_to(msg_type: MsgType, me: &str) -> String {
        format!("{msg_type}/{me}/+/+/+")
    }

    /// `me`'s reply inbox, from every responder.
    pub fn inbox(me: &str) -> String {
        format!("{INBOX_PREFIX}/{me}/+")
    }

    /// True if the MQTT filter `filter` matches the concrete topic `topic`.
    pub fn matches(filter: &str, topic: &str) -> bool {
        covers(filter, topic)
    }

    /// True if every topic matched by `requested` (a topic or a filter) is also matched by
    /// `allowed`. This is the subscribe-ACL test: a client may subscribe to a filter only if it
    /// cannot widen what it was granted.
    pub fn covers(allowed: &str, requested: &str) -> bool {
        let mut a = allowed.split('/');
        let mut r = requested.split('/');
        loop {
            match (a.next(), r.next()) {
                (Some("#"), _) => return true,
                (None, None) => return true,
                (Some(_), None) | (None, Some(_)) => return false,
                (Some(_), Some("#")) => return false,
                (Some("+"), Some(_)) => continue,
                (Some(al), Some(rl)) => {
                    if rl == "+" || al != rl {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filter::covers;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_and_parses() {
        let t = Topic::rpc("launcher", "manage", "stopPlugin", "admin").unwrap();
        assert_eq!(t.to_string(), "rpc/launcher/manage/stopPlugin/admin");
        assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        assert_eq!(t.reply_inbox().to_string(), "_INBOX/admin/launcher");
        let e = Topic::event("heartbeat", "status", "beat").unwrap();
        assert_eq!(e.to_string(), "event/heartbeat/status/beat/heartbeat");
    }

    #[test]
    fn rejects_malformed() {
        for t in [
            "",
            "event",
            "event/a/b/c",
            "event/a/b/c/d/e",
            "evnt/a/b/c/d",
            "event/a/+/c/d",
            "event/a//c/d",
            "rpc/a/b/c/#",
        ] {
            assert!(Topic::parse(t).is_err(), "{t}");
        }
        assert!(InboxTopic::parse("_INBOX/a").is_err());
        assert!(InboxTopic::parse("_INBOX/a/+").is_err());
        assert!(InboxTopic::parse("INBOX/a/b").is_err());
        assert_eq!(
            InboxTopic::parse("_INBOX/a/b").unwrap().to_string(),
            "_INBOX/a/b"
        );
    }

    #[test]
    fn covers_semantics() {
        assert!(covers("event/#", "event/a/b/c/a"));
        assert!(covers("event/#", "event/+/+/+/+"));
        assert!(covers("rpc/me/+/+/+", "rpc/me/cap/+/+"));
        assert!(!covers("rpc/me/+/+/+", "rpc/+/cap/+/+"));
        assert!(!covers("rpc/me/+/+/+", "rpc/me/#"));
        assert!(!covers("_INBOX/me/+", "_INBOX/#"));
        assert!(!covers("_INBOX/me/+", "_INBOX/me/+/x"));
        assert!(!covers("a/b", "a/b/c"));
    }

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"
    }

    proptest! {
        /// Parsing never panics, and anything it accepts prints back to the same string.
        #[test]
        fn parse_is_total_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(t) = Topic::parse(&s) {
                prop_assert_eq!(t.to_string(), s);
            }
        }

        #[test]
        fn parse_accepts_every_built_topic(a in id(), b in id(), c in id(), d in id(), k in 0usize..4) {
            let mt = [MsgType::Event, MsgType::Action, MsgType::Config, MsgType::Rpc][k];
            let t = Topic::new(mt, &a, &b, &c, &d).unwrap();
            prop_assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        }

        /// Segment-wise mutations with separators or wildcards are always rejected.
        #[test]
        fn injected_syntax_is_rejected(a in id(), b in id(), inj in prop::sample::select(vec!["/", "+", "#", "$", ":", " "])) {
            let bad = format!("event/{a}{inj}/{b}/x/{a}");
            prop_assert!(Topic::parse(&bad).is_err());
        }

        /// A filter covers a concrete topic exactly when MQTT matching says it matches.
        #[test]
        fn covers_agrees_with_matching(a in id(), b in id(), c in id()) {
            let t = Topic::event(&a, &b, &c).unwrap().to_string();
            prop_assert!(covers(&filter::events(Some(&a), None, None), &t));
            prop_assert!(covers(&filter::events(None, None, None), &t));
            prop_assert!(covers("event/#", &t));
            prop_assert_eq!(covers(&filter::events(Some(&b), None, None), &t), a == b);
        }
    }
}
