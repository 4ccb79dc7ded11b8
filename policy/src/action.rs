//! What a client asks to do; the broker builds one per decision point.

use crate::qos::QoS;

/// One request to the policy. Borrowed, so building one never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action<'a> {
    /// May this client connect with `principal.client_id`?
    Connect,
    /// Publish (also used for the will message at CONNECT).
    Publish {
        topic: &'a str,
        qos: QoS,
        retain: bool,
    },
    /// Subscribe; `filter` is the plain filter without any `$share/<group>/` prefix.
    Subscribe { filter: &'a str, qos: QoS },
    /// Delivery of a message to this client.
    Receive {
        topic: &'a str,
        qos: QoS,
        retain: bool,
    },
}

impl Action<'_> {
    /// The action kind that rules must name to apply to this action.
    pub fn kind(&self) -> crate::rule::ActionKind {
        use crate::rule::ActionKind;
        match self {
            Action::Connect => ActionKind::Connect,
            Action::Publish { .. } => ActionKind::Publish,
            Action::Subscribe { .. } => ActionKind::Subscribe,
            Action::Receive { .. } => ActionKind::Receive,
        }
    }
}
