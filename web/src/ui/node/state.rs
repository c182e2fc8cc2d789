//! What the panel knows about one node, reduced from its control session's events.

use std::rc::Rc;

use torronto_core::{Code, Status};
use yew::prelude::*;

use crate::control::ControlEvent;

#[derive(Clone, Debug, PartialEq, Default)]
pub(super) enum Link {
    #[default]
    Connecting,
    Open,
    Closed {
        reason: String,
        retry_ms: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct LastReply {
    pub(super) action: &'static str,
    pub(super) code: Code,
    pub(super) reason: Option<String>,
    pub(super) unconfirmed: Option<u64>,
}

/// What the panel knows about one node, updated from its control session.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct NodeState {
    pub(super) link: Link,
    pub(super) status: Option<Rc<Status>>,
    /// Actions sent and not answered yet (buttons wait for them).
    pub(super) busy: Vec<&'static str>,
    pub(super) last: Option<LastReply>,
    /// A Query refused (a wrong token, typically): shown instead of stale numbers.
    pub(super) query_error: Option<LastReply>,
}

impl Reducible for NodeState {
    type Action = ControlEvent;

    fn reduce(self: Rc<Self>, event: ControlEvent) -> Rc<Self> {
        // The same answer as last time changes nothing: the card is not drawn again
        // (a Query comes twice a second, and a node at rest answers the same).
        if let ControlEvent::Status(status) = &event {
            if self.link == Link::Open && self.query_error.is_none() && self.status.as_ref() == Some(status) {
                return self;
            }
        }
        let mut s = (*self).clone();
        match event {
            ControlEvent::Connecting => {
                if !matches!(s.link, Link::Closed { .. }) {
                    s.link = Link::Connecting;
                }
            }
            ControlEvent::Open => s.link = Link::Open,
            ControlEvent::Status(status) => {
                s.link = Link::Open;
                s.query_error = None;
                s.status = Some(status);
            }
            ControlEvent::Sent(action) => s.busy.push(action),
            ControlEvent::Reply { action: "Query", code, reason, unconfirmed } => {
                s.query_error = Some(LastReply { action: "Query", code, reason, unconfirmed });
            }
            ControlEvent::Reply { action, code, reason, unconfirmed } => {
                if let Some(i) = s.busy.iter().position(|a| *a == action) {
                    s.busy.remove(i);
                }
                s.last = Some(LastReply { action, code, reason, unconfirmed });
            }
            ControlEvent::Closed { reason, retry_ms } => {
                s.busy.clear();
                s.link = Link::Closed { reason, retry_ms };
            }
        }
        Rc::new(s)
    }
}
