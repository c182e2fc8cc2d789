//! The yew components. [`App`] starts the engine's client, keeps the browser peer's
//! state in a reducer ([`PeerState`]) and the list of nodes the panel watches; the
//! client is provided to every component through a context. Each node is a
//! [`node::NodePanel`] with its own control session, and [`peer::BrowserPeer`] shows
//! the page's own peer.
//!
//! - [`connect`]: the form that adds a node to watch;
//! - [`targets`]: the watched nodes and the addresses that name them;
//! - [`node`]: one native node's card; [`peer`]: the browser peer's card;
//! - [`listing`]: search, sort and pages of the file tables;
//! - [`widgets`]: small pieces both cards use.

mod connect;
mod listing;
mod node;
mod peer;
mod targets;
mod widgets;

use yew::prelude::*;

use crate::client::{EngineClient, PeerState};
use connect::ConnectForm;
use targets::{own_origin, Target, TargetList, Targets};

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

    let on_connect = {
        let targets = targets.dispatcher();
        Callback::from(move |t: Target| targets.dispatch(Targets::Add(t)))
    };
    let on_candidate = {
        let targets = targets.dispatcher();
        Callback::from(move |(url, accepted): (AttrValue, bool)| targets.dispatch(Targets::Candidate(url, accepted)))
    };
    let on_remove = {
        let targets = targets.dispatcher();
        Callback::from(move |url: AttrValue| targets.dispatch(Targets::Remove(url)))
    };

    html! {
        <ContextProvider<EngineClient> context={(*client).clone()}>
            <header class="top">
                <div class="brand"><span class="logo">{ "◆" }</span><h1>{ "torronto" }</h1></div>
                <span class="tagline">{ "peer-to-peer file replication · control panel" }</span>
            </header>
            <main>
                <ConnectForm url={origin_url} token={origin_token} on_connect={on_connect} />
                { for targets.0.iter().map(|t| html! {
                    <node::NodePanel key={format!("{}#{}", t.url, t.secret.is_some())} url={t.url.clone()} token={t.token.clone()}
                        secret={t.secret.clone()} candidate={t.candidate.clone()} on_candidate={on_candidate.clone()} on_remove={on_remove.clone()} />
                }) }
                <peer::BrowserPeer state={peer} />
            </main>
        </ContextProvider<EngineClient>>
    }
}
