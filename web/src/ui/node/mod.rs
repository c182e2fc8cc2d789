//! One native node in the panel: its control session, status, peers, files and chunk map.
//!
//! [`NodePanel`] holds the session ([`session`]) and the node's state
//! ([`state::NodeState`]); the card's parts are drawn by the functions below it and the
//! files by [`files`].

mod files;
mod session;
mod state;

use torronto_core::{human_size, Code, Control, FileName, NetworkSecret, Status};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::overview::Watched;
use super::widgets::{advice, chunk_counts, peer_count, rates, Bar, Inserting, Notice, ReplyNotice};
use crate::client::EngineClient;
use crate::rates::Rates;
use crate::util::percent;
use files::{ChunkMapView, FileTable};
use session::{use_candidate, use_control_session};
use state::{Link, NodeAction, NodeState};

#[derive(Properties, PartialEq)]
pub struct NodeProps {
    /// The node's WebSocket endpoint, `ws://host:port/ws`.
    pub url: AttrValue,
    pub token: AttrValue,
    /// A private network's secret: the control session is encrypted end to end.
    pub secret: Option<NetworkSecret>,
    /// Another token given for this node, tried before it replaces `token`.
    #[prop_or_default]
    pub candidate: Option<AttrValue>,
    /// Whether the node accepted the candidate token (the URL, and the answer).
    pub on_candidate: Callback<(AttrValue, bool)>,
    pub on_remove: Callback<AttrValue>,
    /// Hears the node's latest answer and rates (and none once the card is gone), for
    /// the files × nodes overview.
    pub on_watched: Callback<(AttrValue, Option<Watched>)>,
}

/// A node's card: link state, Join/Leave/Insert, files (each with Remove) and the
/// selected chunk map.
#[function_component]
pub fn NodePanel(props: &NodeProps) -> Html {
    let client = use_context::<EngineClient>().expect("NodePanel is inside the engine context");
    let state = use_reducer(NodeState::default);
    let session = use_control_session(&props.url, &props.token, &props.secret, &client, state.dispatcher());
    let selected = use_state(|| None::<String>);
    let path_ref = use_node_ref();
    // The last candidate token the node refused: the card says so, and keeps its session.
    let refused_candidate = use_state(|| None::<AttrValue>);
    {
        let (cb, url, refused, candidate) =
            (props.on_candidate.clone(), props.url.clone(), refused_candidate.clone(), props.candidate.clone());
        use_candidate(
            &props.url,
            &props.candidate,
            &props.secret,
            Callback::from(move |accepted: bool| {
                if !accepted {
                    refused.set(candidate.clone());
                }
                cb.emit((url.clone(), accepted));
            }),
        );
    }
    {
        let (cb, url) = (props.on_watched.clone(), props.url.clone());
        let seen = (state.status.clone(), state.rates.down, state.rates.up);
        use_effect_with(seen, move |(status, down, up)| {
            let watched = status.clone().map(|status| Watched { status, down: *down, up: *up });
            cb.emit((url, watched));
        });
        let (cb, url) = (props.on_watched.clone(), props.url.clone());
        use_effect_with((), move |_| move || cb.emit((url, None)));
    }
    {
        let session = session.clone();
        use_effect_with((*selected).clone(), move |file| {
            if let Some(s) = session.borrow().as_ref() {
                s.show_chunks_of(file.clone());
            }
        });
    }

    let act = {
        let session = session.clone();
        move |control: Control| {
            if let Some(s) = session.borrow().as_ref() {
                s.act(control);
            }
        }
    };
    let on_join = {
        let act = act.clone();
        Callback::from(move |_: MouseEvent| act(Control::Join))
    };
    let on_leave = {
        let act = act.clone();
        Callback::from(move |_: MouseEvent| act(Control::Leave))
    };
    let on_insert = {
        let act = act.clone();
        Callback::from(move |path: String| act(Control::Insert { path }))
    };
    // Names come from the node's own status, so they are valid; one that is not is skipped.
    let on_delete = Callback::from(move |name: String| {
        if let Ok(file) = FileName::new(&name) {
            act(Control::Delete { file });
        }
    });
    let on_remove = {
        let cb = props.on_remove.clone();
        let url = props.url.clone();
        Callback::from(move |_: MouseEvent| cb.emit(url.clone()))
    };
    let on_retry = {
        let session = session.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(s) = session.borrow().as_ref() {
                s.retry();
            }
        })
    };
    let on_dismiss = {
        let dispatcher = state.dispatcher();
        Callback::from(move |seq: u64| dispatcher.dispatch(NodeAction::Dismiss(seq)))
    };
    let candidate_note = refused_candidate.as_ref().map(|_| {
        let refused = refused_candidate.clone();
        html! {
            <Notice ok=false code={Code::BadPermission} title="Token refused: the new token was not accepted."
                on_dismiss={Callback::from(move |_| refused.set(None))}>
                <span>{ "The panel keeps the session it had with this node. Check the token (it is in the address the node printed, after #token=)." }</span>
            </Notice>
        }
    });
    let on_select = {
        let selected = selected.clone();
        Callback::from(move |name: String| {
            let next = if selected.as_deref() == Some(name.as_str()) { None } else { Some(name) };
            selected.set(next);
        })
    };

    let s = &*state;
    let open = s.link == Link::Open;
    let joined = s.status.as_ref().map(|st| st.joined);
    let busy = !s.busy.is_empty();
    let title = s.status.as_ref().map(|st| st.node.clone()).unwrap_or_else(|| props.url.to_string());
    let (pill, pill_text) = link_pill(s);

    html! {
        <section class="card node" data-url={props.url.clone()} data-joined={joined.unwrap_or(false).to_string()}
            data-secure={props.secret.is_some().to_string()}>
            <header class="card-head">
                <div class="title">
                    <h2>{ title }</h2>
                    <span class={classes!("pill", pill)}>{ pill_text }</span>
                    if props.secret.is_some() {
                        <span class="pill secure" title="private network: this session is encrypted end to end with the network secret">{ "encrypted" }</span>
                    }
                </div>
                <div class="actions">
                    <button class="join" onclick={on_join} disabled={!open || busy || joined == Some(true)}>{ "Join" }</button>
                    <button class="leave" onclick={on_leave} disabled={!open || busy || joined != Some(true)}>{ "Leave" }</button>
                    <button class="ghost" title="Stop watching this node" onclick={on_remove}>{ "Disconnect" }</button>
                </div>
            </header>
            { node_meta(&props.url, s.status.as_deref(), &s.rates) }
            <div class="notices" aria-live="polite" role="status">
                { node_notices(&props.url, s, on_retry, on_dismiss) }
                { for candidate_note }
            </div>
            { insert_form(&path_ref, open, busy, on_insert) }
            if let Some(st) = &s.status {
                <FileTable status={st.clone()} selected={(*selected).clone()} on_select={on_select}
                    on_delete={on_delete} can_act={open && !busy} joined={st.joined} rates={s.rates.files.clone()} />
                if let Some(map) = st.chunk_map.as_ref().filter(|m| selected.as_deref() == Some(m.file.as_str())) {
                    <ChunkMapView map={map.clone()} />
                }
            }
        </section>
    }
}

/// The pill beside the node's name: its class and text.
fn link_pill(s: &NodeState) -> (&'static str, String) {
    let joined = s.status.as_ref().map(|st| st.joined);
    match (&s.link, joined) {
        (Link::Closed { .. }, _) => ("offline", "unreachable".to_string()),
        (Link::Refused { .. }, _) => ("offline", "token refused".to_string()),
        (Link::Connecting, _) | (Link::Open, None) => ("connecting", "connecting…".to_string()),
        (Link::Open, Some(_)) if !s.busy.is_empty() => (
            "busy",
            format!(
                "{}…",
                s.busy[0]
                    .to_ascii_lowercase()
                    .replace("join", "joining")
                    .replace("leave", "leaving")
                    .replace("insert", "inserting")
                    .replace("remove", "removing")
            ),
        ),
        (Link::Open, Some(true)) => ("joined", "joined".to_string()),
        (Link::Open, Some(false)) => ("idle", "not joined".to_string()),
    }
}

/// The node's address, peers and chunk counts.
fn node_meta(url: &AttrValue, status: Option<&Status>, rates_now: &Rates) -> Html {
    html! {
        <>
            <div class="meta">
                <span class="url">{ url.clone() }</span>
                if let Some(st) = status {
                    { peer_count(st) }
                    { chunk_counts(st.chunks_fetched, st.chunks_served) }
                    { rates(rates_now.down, rates_now.up) }
                }
            </div>
            if let Some(st) = status {
                { for st.inserting.iter().map(|p| html! {
                    <Inserting verb="Inserting" file={p.file.clone()} done={p.done} size={p.size} />
                }) }
            }
            if let Some(st) = status {
                { peer_list(st, rates_now) }
            }
        </>
    }
}

/// The node's links as device cards (Syncthing's): each peer's address, how much of the
/// files listed it holds, and the bytes per second moving between it and the node. A
/// node that sends no `links` (an older one) gets the addresses alone.
fn peer_list(st: &Status, rates_now: &Rates) -> Html {
    if st.peers.is_empty() {
        return html! {};
    }
    let total = st.total_bytes();
    let item = |i: usize, peer: &String| {
        let class = classes!("peer", peer.starts_with("browser-").then_some("browser"));
        let Some(link) = st.links.get(i).filter(|l| &l.peer == peer) else {
            return html! { <li {class} data-peer={peer.clone()}><strong>{ peer.clone() }</strong></li> };
        };
        let done = link.completion(total);
        let (down, up) = rates_now.links.get(peer).copied().unwrap_or_default();
        let holds = format!("holds {} of {}", human_size(link.held), human_size(total));
        html! {
            <li {class} data-peer={peer.clone()} data-held={link.held.to_string()} data-done={done.to_string()}>
                <strong>{ peer.clone() }</strong>
                <Bar value={done} label={format!("{} complete", percent(done))} />
                <span class="holds">{ holds }</span>
                { rates(down, up) }
            </li>
        }
    };
    html! {
        <ul class="peers" aria-label="Peers linked to this node: how much of the files each holds, and the rates to and from it">
            { for st.peers.iter().enumerate().map(|(i, p)| item(i, p)) }
        </ul>
    }
}

/// Why the node is unreachable or refused the token, a refused Query, and the last
/// action's reply (dismissible, and it expires).
fn node_notices(url: &str, s: &NodeState, on_retry: Callback<MouseEvent>, on_dismiss: Callback<u64>) -> Html {
    html! {
        <>
            if let Link::Closed { reason, retry_ms } = &s.link {
                <Notice ok=false title="No connection to this node.">
                    <span>{ match retry_ms {
                        Some(ms) => format!("{reason}. Trying again in {} s.", ms / 1000),
                        None => format!("{reason}. Stopped trying: press Retry once the node is running."),
                    } }</span>
                    if retry_ms.is_none() { <button class="retry" type="button" onclick={on_retry}>{ "Retry" }</button> }
                    <span class="reason advice">{ unreachable_advice(url) }</span>
                </Notice>
            }
            if let Link::Refused { reason } = &s.link {
                <Notice ok=false code={Code::BadPermission} title="Token refused.">
                    <span>{ advice(Code::BadPermission, "Query") }</span>
                    if let Some(r) = reason { <span class="reason">{ r.clone() }</span> }
                </Notice>
            }
            if let Some(q) = &s.query_error {
                <ReplyNotice action={q.action} code={q.code} reason={q.reason.clone().map(AttrValue::from)} />
            }
            if let Some(r) = &s.last {
                <ReplyNotice key={r.seq} action={r.action} code={r.code} reason={r.reason.clone().map(AttrValue::from)}
                    extra={r.unconfirmed.map(|n| AttrValue::from(format!("{n} chunks held only by this node were not confirmed elsewhere in time.")))}
                    on_dismiss={let (seq, cb) = (r.seq, on_dismiss.clone()); Callback::from(move |_| cb.emit(seq))} />
            }
        </>
    }
}

/// Insert by path: a file on the node's machine. `on_insert` hears the path, trimmed
/// and not empty; the field is then cleared.
fn insert_form(path_ref: &NodeRef, open: bool, busy: bool, on_insert: Callback<String>) -> Html {
    let on_submit = {
        let path_ref = path_ref.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(input) = path_ref.cast::<HtmlInputElement>() {
                let path = input.value().trim().to_string();
                if !path.is_empty() {
                    on_insert.emit(path);
                    input.set_value("");
                }
            }
        })
    };
    html! {
        <form class="insert" onsubmit={on_submit}>
            <label class="path">
                <span class="sr-only">{ "Path of a file on the node's machine, in one of its --insert-from folders" }</span>
                <input ref={path_ref} type="text" name="path" placeholder="Path of a file in one of the node's --insert-from folders, e.g. /srv/share/report.pdf" disabled={!open} />
            </label>
            <button type="submit" disabled={!open || busy}>{ "Insert" }</button>
        </form>
    }
}

/// What to check when a node's WebSocket cannot be opened, with the commands that
/// help: the node needs `--ws` on that address (or a `ws-bridge` relaying to its TCP
/// port), and a page of another origin needs `--allow-origin`.
fn unreachable_advice(url: &str) -> String {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let host = |u: &str| u.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("").to_string();
    let at = host(url);
    let mut advice = format!(
        "Is a node running with a WebSocket listener at {at}? Start it with `torronto node … --ws {at}`, \
         or relay a running node's TCP port with `ws-bridge --listen {at} --node NODE_HOST:NODE_PORT`."
    );
    if !origin.is_empty() && at != host(&origin) {
        advice.push_str(&format!(
            " This page comes from {origin}: the node must also accept it (add `--allow-origin {origin}`), \
             or open the panel address that node printed."
        ));
    }
    advice
}
