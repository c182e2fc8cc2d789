//! What the panel knows about one node, reduced from its control session's events and
//! the person's dismissals.

use std::rc::Rc;

use torronto_core::{Code, Status};
use yew::prelude::*;

use crate::control::ControlEvent;
use crate::rates::{RateMeter, Rates};
use crate::util::now_ms;

#[derive(Clone, Debug, PartialEq, Default)]
pub(super) enum Link {
    #[default]
    Connecting,
    Open,
    /// Closed; tried again in `retry_ms`, or not (given up, until the person retries).
    Closed {
        reason: String,
        retry_ms: Option<u32>,
    },
    /// The node refused the token: nothing more is tried with it.
    Refused {
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct LastReply {
    pub(super) action: &'static str,
    pub(super) code: Code,
    pub(super) reason: Option<String>,
    pub(super) unconfirmed: Option<u64>,
    /// Which reply this is (a new one restarts the notice's time to expire).
    pub(super) seq: u64,
}

/// What changes a node's state.
pub(super) enum NodeAction {
    Event(ControlEvent),
    /// The person dismissed the last reply's notice, or it expired.
    Dismiss(u64),
}

/// What the panel knows about one node, updated from its control session.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct NodeState {
    pub(super) link: Link,
    pub(super) status: Option<Rc<Status>>,
    /// Actions sent and not answered yet (buttons wait for them).
    pub(super) busy: Vec<&'static str>,
    pub(super) last: Option<LastReply>,
    /// A Query refused for a reason other than the token: shown beside the numbers.
    pub(super) query_error: Option<LastReply>,
    pub(super) rates: Rates,
    meter: RateMeter,
    replies: u64,
}

impl NodeState {
    /// Takes a new answer's counters into the rates.
    fn measure(&mut self, status: &Status) {
        self.rates = self.meter.measure(status, now_ms(), u64::from(crate::control::POLL_MS));
    }
}

impl Reducible for NodeState {
    type Action = NodeAction;

    fn reduce(self: Rc<Self>, action: NodeAction) -> Rc<Self> {
        let event = match action {
            NodeAction::Event(event) => event,
            NodeAction::Dismiss(seq) => {
                if self.last.as_ref().is_none_or(|l| l.seq != seq) {
                    return self;
                }
                let mut s = (*self).clone();
                s.last = None;
                return Rc::new(s);
            }
        };
        // The same answer as last time changes nothing: the card is not drawn again
        // (a Query comes twice a second, and a node at rest answers the same).
        if let ControlEvent::Status(status) = &event {
            if self.link == Link::Open
                && self.query_error.is_none()
                && self.status.as_ref() == Some(status)
                && self.rates.idle()
            {
                return self;
            }
        }
        let mut s = (*self).clone();
        match event {
            ControlEvent::Connecting => {
                // Between attempts the card keeps saying why the last one failed.
                if !matches!(s.link, Link::Closed { retry_ms: Some(_), .. }) {
                    s.link = Link::Connecting;
                }
            }
            ControlEvent::Open => s.link = Link::Open,
            ControlEvent::Status(status) => {
                s.link = Link::Open;
                s.query_error = None;
                s.measure(&status);
                s.status = Some(status);
            }
            ControlEvent::Sent(action) => s.busy.push(action),
            ControlEvent::Reply { action: "Query", code, reason, unconfirmed } => {
                s.query_error = Some(LastReply { action: "Query", code, reason, unconfirmed, seq: 0 });
            }
            ControlEvent::Reply { action, code, reason, unconfirmed } => {
                if let Some(i) = s.busy.iter().position(|a| *a == action) {
                    s.busy.remove(i);
                }
                s.replies += 1;
                s.last = Some(LastReply { action, code, reason, unconfirmed, seq: s.replies });
            }
            ControlEvent::Closed { reason, retry_ms } => {
                s.busy.clear();
                s.link = Link::Closed { reason, retry_ms };
            }
            ControlEvent::Refused { reason } => {
                s.busy.clear();
                s.status = None;
                s.meter.clear();
                s.rates = Rates::default();
                s.link = Link::Refused { reason };
            }
        }
        Rc::new(s)
    }
}
