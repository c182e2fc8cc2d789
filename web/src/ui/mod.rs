//! The yew components. [`App`] starts the engine's client, keeps the browser peer's
//! state in a reducer ([`PeerState`]) and the list of nodes the panel watches; the
//! client is provided to every component through a context. Each node is a
//! [`node::NodePanel`] with its own control session, and [`peer::BrowserPeer`] shows
//! the page's own peer. The App also asks before the tab closes while something is
//! at stake ([`use_leave_warning`]).
//!
//! - [`connect`]: the form that adds a node to watch;
//! - [`targets`]: the watched nodes and the addresses that name them;
//! - [`node`]: one native node's card; [`peer`]: the browser peer's card;
//! - [`listing`]: search, sort and pages of the file tables;
//! - [`overview`]: files × nodes, and a card per watched node, once two are watched;
//! - [`widgets`]: small pieces both cards use.

mod connect;
mod listing;
mod node;
mod overview;
mod peer;
mod targets;
mod widgets;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::bridge::{PeerFile, PeerView};
use crate::client::{EngineClient, PeerState};
use connect::ConnectForm;
use targets::{own_origin, remember, remembered, Target, TargetList, Targets};

#[function_component]
pub fn App() -> Html {
    let peer = use_reducer(PeerState::default);
    let origin = use_memo((), |_| own_origin());
    let client = {
        let updates = peer.dispatcher();
        // The page's peer joins the network whose secret is in the page's own address.
        let secret = origin.as_ref().as_ref().and_then(|o| o.secret.clone());
        use_memo((), move |_| {
            EngineClient::start(Callback::from(move |update| updates.dispatch(update)), secret.as_ref())
        })
    };
    let origin_url = origin.as_ref().as_ref().map(|o| o.url.clone()).unwrap_or_default();
    let origin_token = origin.as_ref().as_ref().and_then(|o| o.token.clone()).unwrap_or_default();
    let targets = use_reducer(|| {
        // Opened from the address a node printed: watch that node straight away.
        match origin.as_ref() {
            Some(o) if !origin_token.is_empty() => TargetList(vec![Target {
                url: o.url.clone().into(),
                token: origin_token.clone().into(),
                secret: o.secret.clone(),
                candidate: None,
            }]),
            _ => TargetList::default(),
        }
    });

    // Watched nodes are remembered (their URLs, never tokens) and offered again.
    let known = use_state(remembered);
    {
        let known = known.clone();
        // The node the page was opened for is watched from the start.
        let opened_for = targets.0.first().map(|t| t.url.clone());
        use_effect_with(opened_for, move |url| {
            if let Some(url) = url {
                known.set(remember(url, true));
            }
        });
    }
    use_hash_targets(targets.dispatcher());
    // The cards' callbacks are made once (their dispatchers never change), so that one
    // node's answer redraws no other node's card.
    let on_connect = use_callback((targets.dispatcher(), known.setter()), |t: Target, (targets, known)| {
        known.set(remember(&t.url, true));
        targets.dispatch(Targets::Add(t))
    });
    let on_candidate = use_callback(targets.dispatcher(), |(url, accepted): (AttrValue, bool), targets| {
        targets.dispatch(Targets::Candidate(url, accepted))
    });
    let on_remove = use_callback((targets.dispatcher(), known.setter()), |url: AttrValue, (targets, known)| {
        known.set(remember(&url, false));
        targets.dispatch(Targets::Remove(url))
    });
    let watched = use_reducer(overview::WatchedList::default);
    let on_watched = use_callback(watched.dispatcher(), |news, watched| watched.dispatch(news));
    // The browser's files, their copies counted as completely as the watched nodes allow.
    let files = use_memo((peer.clone(), watched.clone()), |(peer, watched)| watched.counted(&peer.view.files));
    use_leave_warning(at_risk(&peer.view, &files));
    let before: Vec<AttrValue> = known.iter().filter(|u| !targets.0.iter().any(|t| &t.url == *u)).cloned().collect();

    html! {
        <ContextProvider<EngineClient> context={(*client).clone()}>
            <header class="top">
                <div class="brand"><span class="logo">{ "◆" }</span><h1>{ "torronto" }</h1></div>
                <span class="tagline">{ "peer-to-peer file replication · control panel" }</span>
            </header>
            <main>
                <ConnectForm url={origin_url} token={origin_token} remembered={before} on_connect={on_connect} />
                { for targets.0.iter().map(|t| html! {
                    <node::NodePanel key={format!("{}#{}", t.url, t.secret.is_some())} url={t.url.clone()} token={t.token.clone()}
                        secret={t.secret.clone()} candidate={t.candidate.clone()} on_candidate={on_candidate.clone()} on_remove={on_remove.clone()}
                        on_watched={on_watched.clone()} />
                }) }
                <overview::Overview nodes={watched.clone()} />
                <peer::BrowserPeer state={peer} files={files} />
            </main>
        </ContextProvider<EngineClient>>
    }
}

/// Watches the page's address: a new `#token=…` (a link opened in this tab) watches
/// that node, or tries the token on it if it is watched already.
#[hook]
fn use_hash_targets(targets: UseReducerDispatcher<TargetList>) {
    use_effect_with((), move |_| {
        let listener = Closure::<dyn Fn()>::new(move || {
            let Some(address) = own_origin() else { return };
            if let Some(token) = address.token.filter(|t| !t.is_empty()) {
                let target =
                    Target { url: address.url.into(), token: token.into(), secret: address.secret, candidate: None };
                targets.dispatch(Targets::Add(target));
            }
        });
        let window = web_sys::window();
        if let Some(w) = &window {
            let _ = w.add_event_listener_with_callback("hashchange", listener.as_ref().unchecked_ref());
        }
        move || {
            if let Some(w) = &window {
                let _ = w.remove_event_listener_with_callback("hashchange", listener.as_ref().unchecked_ref());
            }
        }
    });
}

/// Why closing the page now would cost something: a transfer under way, or a file of
/// which this browser holds the only complete copy (the network could not fetch it
/// while the page is closed). None when nothing is at stake.
fn at_risk(view: &PeerView, files: &[PeerFile]) -> Option<String> {
    if let Some((name, _, _)) = view.inserting.first() {
        return Some(format!("{name} is still being shared from this computer"));
    }
    if let Some(f) = files.iter().find(|f| f.requested && f.local < 1.0) {
        return Some(format!("{} is still downloading", f.name));
    }
    // With no node connected, no one could fetch it now anyway: nothing to warn of.
    let connected = !view.peers.is_empty();
    let only = files.iter().find(|f| connected && f.local >= 1.0 && f.least <= 1);
    only.map(|f| format!("this browser holds the only copy of {}", f.name))
}

/// While `reason` is Some, closing or leaving the page asks first (the browser shows
/// its own words; `data-leave-warning` on the body says why, for people and tests).
#[hook]
fn use_leave_warning(reason: Option<String>) {
    use_effect_with(reason, move |reason| {
        let window = web_sys::window();
        let body = window.as_ref().and_then(|w| w.document()).and_then(|d| d.body());
        let listener = reason.clone().map(|why| {
            Closure::<dyn Fn(web_sys::Event)>::new(move |e: web_sys::Event| {
                e.prevent_default();
                // Older browsers ask only when `returnValue` is set.
                let _ = js_sys::Reflect::set(&e, &"returnValue".into(), &why.as_str().into());
            })
        });
        if let (Some(w), Some(l)) = (&window, &listener) {
            let _ = w.add_event_listener_with_callback("beforeunload", l.as_ref().unchecked_ref());
        }
        if let Some(body) = &body {
            let _ = match reason {
                Some(why) => body.set_attribute("data-leave-warning", why),
                None => body.remove_attribute("data-leave-warning"),
            };
        }
        move || {
            if let (Some(w), Some(l)) = (&window, &listener) {
                let _ = w.remove_event_listener_with_callback("beforeunload", l.as_ref().unchecked_ref());
            }
        }
    });
}
