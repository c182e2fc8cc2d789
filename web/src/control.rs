//! A control session: one WebSocket to a node on which the panel sends Join, Leave,
//! Insert, Delete (Remove) and Query with the node's token, polling Query about twice a
//! second.
//!
//! A Query refused for the token ends the session ([`ControlEvent::Refused`]); a node
//! that cannot be reached is tried again with a growing delay, [`ATTEMPTS`] times.
//!
//! Replies are not tagged with a request, so they are matched as the protocol allows:
//! a reply carrying a status answers a Query; any other reply answers the oldest
//! Join/Leave/Insert/Remove still waiting (the panel sends at most one of those at a time,
//! since Join and Leave may take seconds while Queries keep being answered).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use gloo_timers::callback::{Interval, Timeout};
use torronto_core::{Code, Control, Envelope, FileName, Message, NetworkSecret, Status};
use yew::Callback;

use crate::socket::{page_member, Socket, SocketEvent};
use crate::util::now_ms;

pub const POLL_MS: u32 = 500;
/// A Query unanswered this long is given up, so polling never stalls for good.
const QUERY_TIMEOUT_MS: u64 = 5_000;
const RETRY_MIN_MS: u32 = 1_000;
const RETRY_MAX_MS: u32 = 16_000;
/// Attempts in a row that never opened before the session stops trying (waits of 1,
/// 2, 4 and 8 s between them): a node without `--ws` will not grow one;
/// [`ControlSession::retry`] tries again when the person asks.
const ATTEMPTS: u32 = 5;

/// What the panel hears from a control session.
#[derive(Clone, Debug, PartialEq)]
pub enum ControlEvent {
    Connecting,
    Open,
    Status(Rc<Status>),
    /// An action went out and awaits its reply.
    Sent(&'static str),
    Reply {
        action: &'static str,
        code: Code,
        reason: Option<String>,
        unconfirmed: Option<u64>,
    },
    /// The socket closed; another attempt follows after `retry_ms`, or none (the
    /// session gave up after [`ATTEMPTS`] attempts that never opened).
    Closed {
        reason: String,
        retry_ms: Option<u32>,
    },
    /// The node refused the token: the session stops polling and closes, since the
    /// same token will be refused again.
    Refused {
        reason: Option<String>,
    },
}

struct Inner {
    url: String,
    token: Option<String>,
    /// In a private network: the session is encrypted, the token never in clear.
    secret: Option<NetworkSecret>,
    socket: Option<Socket>,
    open: bool,
    pending: VecDeque<&'static str>,
    query_sent: Option<u64>,
    chunk_file: Option<FileName>,
    on_event: Callback<ControlEvent>,
    weak: Weak<RefCell<Inner>>,
    _poll: Option<Interval>,
    retry: Option<Timeout>,
    backoff: u32,
    /// Attempts in a row that failed before opening.
    failures: u32,
    refused: bool,
}

/// A control session; dropping it closes the socket and stops polling.
pub struct ControlSession {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for ControlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSession").field("url", &self.inner.borrow().url).finish()
    }
}

impl ControlSession {
    /// Connects to `url` and keeps reconnecting; every event goes to `on_event`. With
    /// `secret`, each connection runs the secure handshake first.
    pub fn open(
        url: &str,
        token: &str,
        secret: Option<NetworkSecret>,
        on_event: Callback<ControlEvent>,
    ) -> ControlSession {
        let token = Some(token.trim().to_string()).filter(|t| !t.is_empty());
        let inner = Rc::new_cyclic(|weak: &Weak<RefCell<Inner>>| {
            let w = weak.clone();
            let poll = Interval::new(POLL_MS, move || {
                if let Some(inner) = w.upgrade() {
                    inner.borrow_mut().poll();
                }
            });
            RefCell::new(Inner {
                url: url.to_string(),
                token,
                secret,
                socket: None,
                open: false,
                pending: VecDeque::new(),
                query_sent: None,
                chunk_file: None,
                on_event,
                weak: weak.clone(),
                _poll: Some(poll),
                retry: None,
                backoff: RETRY_MIN_MS,
                failures: 0,
                refused: false,
            })
        });
        Inner::connect(&inner);
        ControlSession { inner }
    }

    /// Sends Join, Leave, Insert or Delete; false if the session is not open.
    pub fn act(&self, control: Control) -> bool {
        let name = match &control {
            Control::Join => "Join",
            Control::Leave => "Leave",
            Control::Insert { .. } => "Insert",
            Control::Delete { .. } => "Remove",
            Control::Query { .. } | Control::Limit { .. } | Control::Torrent { .. } | Control::AddTorrent { .. } => {
                return false
            }
        };
        let sent = {
            let mut inner = self.inner.borrow_mut();
            inner.open && inner.send(control) && {
                inner.pending.push_back(name);
                true
            }
        };
        if sent {
            let cb = self.inner.borrow().on_event.clone();
            cb.emit(ControlEvent::Sent(name));
        }
        sent
    }

    /// Connects again at once after the session gave up (or while it waits to retry).
    pub fn retry(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.open || inner.refused {
                return;
            }
            inner.retry = None;
            inner.failures = 0;
            inner.backoff = RETRY_MIN_MS;
        }
        Inner::connect(&self.inner);
    }

    /// Chooses the file whose chunk map Queries ask for, and asks now.
    pub fn show_chunks_of(&self, file: Option<String>) {
        let mut inner = self.inner.borrow_mut();
        inner.chunk_file = file.and_then(|f| FileName::new(&f).ok());
        inner.query_sent = None;
        inner.poll();
    }
}

impl Inner {
    fn connect(this: &Rc<RefCell<Inner>>) {
        let (url, secret, on_event) = {
            let i = this.borrow();
            (i.url.clone(), i.secret.clone(), i.on_event.clone())
        };
        on_event.emit(ControlEvent::Connecting);
        let weak = Rc::downgrade(this);
        let secure = match secret.as_ref().map(page_member).transpose() {
            Ok(secure) => secure,
            Err(reason) => {
                let ev = this.borrow_mut().closed(reason.to_string());
                on_event.emit(ev);
                return;
            }
        };
        let opened = Socket::open(&url, secure.as_ref(), move |event| {
            let Some(inner) = weak.upgrade() else { return };
            // Decide under the borrow, tell the panel after it: the panel may re-render
            // at once and call back into this session.
            let out = inner.borrow_mut().on_socket(event);
            if let Some(ev) = out {
                let cb = inner.borrow().on_event.clone();
                cb.emit(ev);
            }
        });
        match opened {
            Ok(socket) => this.borrow_mut().socket = Some(socket),
            Err(reason) => {
                let ev = this.borrow_mut().closed(reason.to_string());
                on_event.emit(ev);
            }
        }
    }

    fn on_socket(&mut self, event: SocketEvent) -> Option<ControlEvent> {
        match event {
            SocketEvent::Open(_) => {
                self.open = true;
                self.backoff = RETRY_MIN_MS;
                self.failures = 0;
                self.query_sent = None;
                self.poll();
                Some(ControlEvent::Open)
            }
            SocketEvent::Message(Envelope { message: Message::Reply(reply), .. }, _) => {
                let code = reply.code_or_ok();
                if let Some(status) = reply.status {
                    self.query_sent = None;
                    return Some(ControlEvent::Status(Rc::new(*status)));
                }
                let action = match self.pending.pop_front() {
                    Some(action) => action,
                    None if code == Code::BadPermission => {
                        self.refused = true;
                        self.open = false;
                        self.socket = None;
                        self.retry = None;
                        return Some(ControlEvent::Refused { reason: reply.reason });
                    }
                    None => {
                        self.query_sent = None;
                        "Query"
                    }
                };
                Some(ControlEvent::Reply { action, code, reason: reply.reason, unconfirmed: reply.unconfirmed })
            }
            // Nothing else is meant for a control session.
            SocketEvent::Message(..) | SocketEvent::Malformed(_) => None,
            SocketEvent::Closed(_) if self.refused => None,
            SocketEvent::Closed(reason) => Some(self.closed(reason)),
        }
    }

    fn closed(&mut self, reason: String) -> ControlEvent {
        self.socket = None;
        self.open = false;
        self.query_sent = None;
        let retry_ms = self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_MAX_MS);
        self.failures += 1;
        // Unanswered actions are lost with the connection; say so rather than wait.
        let lost = self.pending.len();
        self.pending.clear();
        let retry_ms = (self.failures < ATTEMPTS).then_some(retry_ms);
        self.retry = retry_ms.map(|ms| {
            let weak = self.weak.clone();
            Timeout::new(ms, move || {
                if let Some(inner) = weak.upgrade() {
                    Inner::connect(&inner);
                }
            })
        });
        let reason = if lost > 0 { format!("{reason}; {lost} action(s) went unanswered") } else { reason };
        ControlEvent::Closed { reason, retry_ms }
    }

    fn poll(&mut self) {
        if !self.open {
            return;
        }
        let now = now_ms();
        if self.query_sent.is_some_and(|t| now < t + QUERY_TIMEOUT_MS) {
            return;
        }
        let file = self.chunk_file.clone();
        if self.send(Control::Query { file }) {
            self.query_sent = Some(now);
        }
    }

    fn send(&mut self, control: Control) -> bool {
        let envelope = Envelope { from: None, token: self.token.clone(), message: control.into() };
        self.socket.as_ref().is_some_and(|s| s.send(&envelope).is_ok())
    }
}
