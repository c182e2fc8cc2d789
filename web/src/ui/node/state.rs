//! What the panel knows about one node, reduced from its control session's events and
//! the person's dismissals.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use torronto_core::{Code, Status};
use yew::prelude::*;

use crate::control::ControlEvent;
use crate::util::now_ms;

/// Rates are measured over the answers of about this long.
const RATE_WINDOW_MS: u64 = 3_000;

/// What one Query answer said about bytes moved, for rates.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    at: u64,
    fetched: u64,
    served: u64,
    /// Bytes of each file held by the node.
    held: HashMap<String, f64>,
}

impl Sample {
    fn of(status: &Status, at: u64) -> Sample {
        let held = status.rows().map(|r| (r.name.to_string(), r.local * r.size.unwrap_or(0) as f64)).collect();
        Sample { at, fetched: status.bytes_fetched, served: status.bytes_served, held }
    }
}

/// The node's transfer rates, bytes per second, from successive Query answers (the
/// node counts bytes; the page divides by time).
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Rates {
    pub(super) down: f64,
    pub(super) up: f64,
    /// Each file arriving, by name.
    pub(super) files: Rc<HashMap<String, f64>>,
}

impl Rates {
    fn idle(&self) -> bool {
        self.down == 0.0 && self.up == 0.0 && self.files.is_empty()
    }

    fn between(first: &Sample, last: &Sample) -> Rates {
        let secs = (last.at.saturating_sub(first.at)).max(1) as f64 / 1000.0;
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let files = last
            .held
            .iter()
            .filter_map(|(name, &now)| {
                let gained = now - first.held.get(name).copied().unwrap_or(now);
                (gained > 0.0).then(|| (name.clone(), gained / secs))
            })
            .collect();
        Rates { down: per(first.fetched, last.fetched), up: per(first.served, last.served), files: Rc::new(files) }
    }
}

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
    samples: VecDeque<Sample>,
    replies: u64,
}

impl NodeState {
    /// Takes a new answer's counters into the rates.
    fn measure(&mut self, status: &Status) {
        let now = now_ms();
        // Answers equal to the last one kept are not kept (they draw nothing): after a
        // pause, the last one kept still held until the answer before this one.
        if let Some(last) = self.samples.back_mut() {
            last.at = last.at.max(now.saturating_sub(u64::from(crate::control::POLL_MS)));
        }
        self.samples.push_back(Sample::of(status, now));
        // The oldest answer kept is the last one older than the window (or the first).
        while self.samples.len() > 2 && self.samples[1].at + RATE_WINDOW_MS <= now {
            self.samples.pop_front();
        }
        let (first, last) = (&self.samples[0], &self.samples[self.samples.len() - 1]);
        self.rates = if self.samples.len() < 2 { Rates::default() } else { Rates::between(first, last) };
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
                s.samples.clear();
                s.rates = Rates::default();
                s.link = Link::Refused { reason };
            }
        }
        Rc::new(s)
    }
}
