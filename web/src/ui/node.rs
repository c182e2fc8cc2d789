//! One native node in the panel: its control session, status, files and chunk map.

use std::rc::Rc;

use torronto_core::{ChunkMap, Code, Control, PeerAddr, Status};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::widgets::{level_class, Bar, ReplyNotice};
use crate::client::EngineHandle;
use crate::control::{ControlEvent, ControlSession};
use crate::util::{bytes, percent};

#[derive(Clone, Debug, PartialEq, Default)]
enum Link {
    #[default]
    Connecting,
    Open,
    Closed {
        reason: String,
        retry_ms: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct LastReply {
    action: &'static str,
    code: Code,
    reason: Option<String>,
    unconfirmed: Option<u64>,
}

/// What the panel knows about one node, updated from its control session.
#[derive(Clone, Debug, PartialEq, Default)]
struct NodeState {
    link: Link,
    status: Option<Rc<Status>>,
    /// Actions sent and not answered yet (buttons wait for them).
    busy: Vec<&'static str>,
    last: Option<LastReply>,
    /// A Query refused (a wrong token, typically): shown instead of stale numbers.
    query_error: Option<LastReply>,
}

impl Reducible for NodeState {
    type Action = ControlEvent;

    fn reduce(self: Rc<Self>, event: ControlEvent) -> Rc<Self> {
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

#[derive(Properties, PartialEq)]
pub struct NodeProps {
    /// The node's WebSocket endpoint, `ws://host:port/ws`.
    pub url: AttrValue,
    pub token: AttrValue,
    pub on_remove: Callback<AttrValue>,
}

/// A node's card: link state, Join/Leave/Insert, files and the selected chunk map.
#[function_component]
pub fn NodePanel(props: &NodeProps) -> Html {
    // The handle alone, not the versioned context: the browser peer's progress does not
    // re-render node cards.
    let engine = use_context::<EngineHandle>().expect("NodePanel is inside the engine context");
    let state = use_reducer(NodeState::default);
    let session = use_mut_ref(|| None::<ControlSession>);
    let selected = use_state(|| None::<String>);
    let path_ref = use_node_ref();

    {
        // The control session lives as long as this card shows this node.
        let dispatcher = state.dispatcher();
        let session = session.clone();
        let engine = engine.clone();
        use_effect_with((props.url.clone(), props.token.clone()), move |(url, token)| {
            let peer_url = url.to_string();
            let peer_engine = engine.clone();
            let on_event = Callback::from(move |event: ControlEvent| {
                // A joined node takes the page as a peer: open the peer session.
                if let ControlEvent::Status(status) = &event {
                    if status.joined {
                        if let Ok(addr) = status.node.parse::<PeerAddr>() {
                            peer_engine.ensure_peer(&peer_url, &addr);
                        }
                    }
                }
                dispatcher.dispatch(event);
            });
            *session.borrow_mut() = Some(ControlSession::open(url, token, on_event));
            let url = url.to_string();
            move || {
                session.borrow_mut().take();
                engine.forget_node(&url);
            }
        });
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
        let path_ref = path_ref.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(input) = path_ref.cast::<HtmlInputElement>() {
                let path = input.value().trim().to_string();
                if !path.is_empty() {
                    act(Control::Insert { path });
                    input.set_value("");
                }
            }
        })
    };
    let on_remove = {
        let cb = props.on_remove.clone();
        let url = props.url.clone();
        Callback::from(move |_: MouseEvent| cb.emit(url.clone()))
    };
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
    let (pill, pill_text) = match (&s.link, joined) {
        (Link::Closed { .. }, _) => ("offline", "unreachable".to_string()),
        (Link::Connecting, _) | (Link::Open, None) => ("connecting", "connecting…".to_string()),
        (Link::Open, Some(_)) if busy => (
            "busy",
            format!(
                "{}…",
                s.busy[0]
                    .to_lowercase()
                    .replace("join", "joining")
                    .replace("leave", "leaving")
                    .replace("insert", "inserting")
            ),
        ),
        (Link::Open, Some(true)) => ("joined", "joined".to_string()),
        (Link::Open, Some(false)) => ("idle", "not joined".to_string()),
    };

    html! {
        <section class="card node" data-url={props.url.clone()} data-joined={joined.unwrap_or(false).to_string()}>
            <header class="card-head">
                <div class="title">
                    <h2>{ title }</h2>
                    <span class={classes!("pill", pill)}>{ pill_text }</span>
                </div>
                <div class="actions">
                    <button class="join" onclick={on_join} disabled={!open || busy || joined == Some(true)}>{ "Join" }</button>
                    <button class="leave" onclick={on_leave} disabled={!open || busy || joined != Some(true)}>{ "Leave" }</button>
                    <button class="ghost" title="Stop watching this node" onclick={on_remove}>{ "Disconnect" }</button>
                </div>
            </header>
            <div class="meta">
                <span class="url">{ props.url.clone() }</span>
                if let Some(st) = &s.status {
                    <span>{ format!("{} peer{}", st.peers.len(), if st.peers.len() == 1 { "" } else { "s" }) }</span>
                    <span>{ format!("{} chunks fetched · {} served", st.chunks_fetched, st.chunks_served) }</span>
                }
            </div>
            if let Some(st) = &s.status {
                if !st.peers.is_empty() {
                    <div class="peers">
                        { for st.peers.iter().map(|p| html! {
                            <span class={classes!("peer", p.starts_with("browser-").then_some("browser"))}>{ p }</span>
                        }) }
                    </div>
                }
            }
            if let Link::Closed { reason, retry_ms } = &s.link {
                <div class="notice err">
                    <strong>{ "No connection" }</strong>
                    <span>{ format!("{reason}. Trying again in {} s.", retry_ms / 1000) }</span>
                    <span class="reason">{ unreachable_advice(&props.url) }</span>
                </div>
            }
            if let Some(q) = &s.query_error {
                <ReplyNotice action={q.action} code={q.code} reason={q.reason.clone().map(AttrValue::from)} />
            }
            if let Some(r) = &s.last {
                <ReplyNotice action={r.action} code={r.code} reason={r.reason.clone().map(AttrValue::from)}
                    extra={r.unconfirmed.map(|n| AttrValue::from(format!("{n} chunks held only by this node were not confirmed elsewhere in time.")))} />
            }
            <form class="insert" onsubmit={on_insert}>
                <input ref={path_ref} type="text" name="path" placeholder="Path of a file on the node's machine, e.g. /home/ann/report.pdf" disabled={!open} />
                <button type="submit" disabled={!open || busy}>{ "Insert" }</button>
            </form>
            if let Some(st) = &s.status {
                <FileTable status={st.clone()} selected={(*selected).clone()} on_select={on_select} />
                if let Some(map) = st.chunk_map.as_ref().filter(|m| selected.as_deref() == Some(m.file.as_str())) {
                    <ChunkMapView map={map.clone()} />
                }
            }
        </section>
    }
}

/// What to check when a node's WebSocket cannot be opened. A node refuses handshakes
/// from pages of other origins unless started with `--allow-origin`.
fn unreachable_advice(url: &str) -> String {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let host = |u: &str| u.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("").to_string();
    if !origin.is_empty() && host(url) != host(&origin) {
        format!(
            "Check that the node runs with --ws on that address, and that it accepts this page: \
             start it with --allow-origin {origin}, or open the panel address that node printed."
        )
    } else {
        "Check that the node is running with --ws on that address.".to_string()
    }
}

#[derive(Properties, PartialEq)]
struct FileTableProps {
    status: Rc<Status>,
    selected: Option<String>,
    on_select: Callback<String>,
}

/// The status table: one row per file, click for its chunk map.
#[function_component]
fn FileTable(props: &FileTableProps) -> Html {
    let st = &props.status;
    if st.files.is_empty() {
        return html! { <p class="empty">{ "No files yet. Insert one by path above, or share one from this browser below." }</p> };
    }
    html! {
        <table class="files">
            <thead><tr>
                <th>{ "File" }</th><th class="num">{ "Size" }</th><th>{ "On this node" }</th>
                <th class="num" title="Chunks held by at least one participant">{ "In network" }</th>
                <th class="num" title="Fewest participants holding any one chunk">{ "Least copies" }</th>
                <th class="num" title="Average participants holding a chunk">{ "Avg copies" }</th>
            </tr></thead>
            <tbody>
            { for st.rows().map(|row| {
                let (name, local, system, least, avg) = (row.name.to_string(), row.local, row.system, row.least, row.average);
                let size = row.size.unwrap_or(0);
                let on_click = {
                    let cb = props.on_select.clone();
                    let name = name.clone();
                    Callback::from(move |_: MouseEvent| cb.emit(name.clone()))
                };
                let selected = props.selected.as_deref() == Some(name.as_str());
                html! {
                    <tr class={classes!("file", selected.then_some("selected"))} onclick={on_click}
                        data-file={name.clone()} data-local={local.to_string()} data-least={least.to_string()}
                        title="Show its chunk map">
                        <td class="name">{ name }</td>
                        <td class="num">{ bytes(size) }</td>
                        <td class="progress"><Bar value={local} label={percent(local)} /></td>
                        <td class="num">{ percent(system) }</td>
                        <td class="num"><span class={classes!("level", level_class(least))}>{ least }</span></td>
                        <td class="num">{ format!("{avg:.2}") }</td>
                    </tr>
                }
            }) }
            </tbody>
        </table>
    }
}

#[derive(Properties, PartialEq)]
struct ChunkMapProps {
    map: ChunkMap,
}

/// Chunks coloured by how many participants hold them; a dot marks those held here.
#[function_component]
fn ChunkMapView(props: &ChunkMapProps) -> Html {
    let m = &props.map;
    let per = if m.bucket_size > 1 {
        format!(", {} chunks per cell (the least replicated shown)", m.bucket_size)
    } else {
        String::new()
    };
    html! {
        <div class="chunkmap" data-file={m.file.clone()}>
            <div class="chunkmap-head">
                <strong>{ format!("Chunk map of {}", m.file) }</strong>
                <span>{ format!("{} chunks{per}", m.chunks) }</span>
            </div>
            <div class="cells">
                { for m.buckets.iter().enumerate().map(|(b, &r)| {
                    let first = b as u32 * m.bucket_size;
                    let last = (first + m.bucket_size).min(m.chunks).saturating_sub(1);
                    let here = m.local.get(b).copied().unwrap_or(false);
                    let range = if first == last { format!("chunk {first}") } else { format!("chunks {first}–{last}") };
                    let title = format!("{range}: {r} cop{}{}", if r == 1 { "y" } else { "ies" }, if here { ", held by this node" } else { "" });
                    html! { <i class={classes!("cell", level_class(r), here.then_some("here"))} title={title}></i> }
                }) }
            </div>
            <div class="legend">
                <span><i class="cell r0"></i>{ "missing" }</span>
                <span><i class="cell r1"></i>{ "1 copy" }</span>
                <span><i class="cell r2"></i>{ "2 copies" }</span>
                <span><i class="cell r3"></i>{ "3 copies" }</span>
                <span><i class="cell r4"></i>{ "4 or more" }</span>
                <span><i class="cell r2 here"></i>{ "held by this node" }</span>
            </div>
        </div>
    }
}
