//! The control sessions of a node's card: the one it shows, and a trial of a new token
//! that replaces the shown one's only once the node accepts it.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use torronto_core::{NetworkSecret, PeerAddr};
use yew::prelude::*;

use super::state::{NodeAction, NodeState};
use crate::client::EngineClient;
use crate::control::{ControlEvent, ControlSession};

/// Opens the node's control session, kept as long as the card shows this node (a new
/// URL or token opens another). Every event goes to the card's state; a node seen
/// joined also gets a peer session from the browser peer.
#[hook]
pub(super) fn use_control_session(
    url: &AttrValue,
    token: &AttrValue,
    secret: &Option<NetworkSecret>,
    client: &EngineClient,
    dispatcher: UseReducerDispatcher<NodeState>,
) -> Rc<RefCell<Option<ControlSession>>> {
    let session = use_mut_ref(|| None::<ControlSession>);
    {
        let session = session.clone();
        let client = client.clone();
        use_effect_with((url.clone(), token.clone(), secret.clone()), move |(url, token, secret)| {
            let peer_url = url.to_string();
            let peer_client = client.clone();
            let on_event = Callback::from(move |event: ControlEvent| {
                // A joined node takes the page as a peer: open the peer session.
                if let ControlEvent::Status(status) = &event {
                    if status.joined {
                        if let Ok(addr) = status.node.parse::<PeerAddr>() {
                            peer_client.ensure_peer(&peer_url, &addr);
                        }
                    }
                }
                dispatcher.dispatch(NodeAction::Event(event));
            });
            *session.borrow_mut() = Some(ControlSession::open(url, token, secret.clone(), on_event));
            let url = url.to_string();
            move || {
                session.borrow_mut().take();
                client.forget_node(&url);
            }
        });
    }
    session
}

/// Tries `candidate`, a token given for a node the card already watches: `on_result`
/// hears true once the node answers a Query with it, false when it refuses it or
/// cannot be reached. The card's own session is left alone meanwhile.
#[hook]
pub(super) fn use_candidate(
    url: &AttrValue,
    candidate: &Option<AttrValue>,
    secret: &Option<NetworkSecret>,
    on_result: Callback<bool>,
) {
    use_effect_with((url.clone(), candidate.clone(), secret.clone()), move |(url, candidate, secret)| {
        let session = candidate.as_ref().map(|token| {
            let done = Rc::new(RefCell::new(false));
            ControlSession::open(
                url,
                token,
                secret.clone(),
                Callback::from(move |event: ControlEvent| {
                    let accepted = match event {
                        ControlEvent::Status(_) => true,
                        ControlEvent::Refused { .. } | ControlEvent::Closed { retry_ms: None, .. } => false,
                        _ => return,
                    };
                    if done.replace(true) {
                        return;
                    }
                    // Told after this event's handling: the answer ends this session.
                    let on_result = on_result.clone();
                    Timeout::new(0, move || on_result.emit(accepted)).forget();
                }),
            )
        });
        move || drop(session)
    });
}
