//! The yew components. [`App`] owns the engine (behind [`EngineCtx`]) and the list of
//! nodes the panel watches; each node is a [`node::NodePanel`] with its own control
//! session, and [`peer::BrowserPeer`] shows the page's own peer.

mod node;
mod peer;
mod widgets;

use std::rc::Rc;

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::client::EngineHandle;

/// The engine, and a counter bumped whenever it changed so that consumers re-render.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineCtx {
    pub engine: EngineHandle,
    pub version: u64,
}

/// A node the panel watches.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    url: AttrValue,
    token: AttrValue,
}

enum Targets {
    Add(Target),
    Remove(AttrValue),
}

#[derive(Clone, Debug, PartialEq, Default)]
struct TargetList(Vec<Target>);

impl Reducible for TargetList {
    type Action = Targets;
    fn reduce(self: Rc<Self>, action: Targets) -> Rc<Self> {
        let mut list = self.0.clone();
        match action {
            Targets::Add(t) => {
                // Connecting again to a node replaces its token (a typo fixed, say).
                list.retain(|o| o.url != t.url);
                list.push(t);
            }
            Targets::Remove(url) => list.retain(|o| o.url != url),
        }
        Rc::new(TargetList(list))
    }
}

/// Turns what a person pastes into a WebSocket URL and maybe a token: the
/// control-panel address a node prints (`http://h:p/#token=T`), `ws://h:p/ws`, or `h:p`.
fn parse_target(input: &str) -> Result<(String, Option<String>), String> {
    let input = input.trim();
    if input.is_empty() {
        return Err("enter the node's address, e.g. ws://127.0.0.1:8080/ws".into());
    }
    let (scheme, rest) = match input.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("ws".to_string(), input),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let token = fragment.and_then(|f| f.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string));
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, String::new()),
    };
    if host.is_empty() {
        return Err(format!("{input:?} has no host"));
    }
    let ws_scheme = match scheme.as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(format!("unsupported scheme {other}:// (use ws://, wss:// or http://)")),
    };
    let path = if path.is_empty() || path == "/" || scheme.starts_with("http") { "/ws".to_string() } else { path };
    Ok((format!("{ws_scheme}://{host}{path}"), token))
}

/// The node that served this page and the token in its fragment, if any.
fn own_origin() -> (String, String) {
    let Some(location) = web_sys::window().map(|w| w.location()) else { return (String::new(), String::new()) };
    let href = location.href().unwrap_or_default();
    let protocol = location.protocol().unwrap_or_default();
    if !protocol.starts_with("http") {
        return (String::new(), String::new());
    }
    match parse_target(&href) {
        Ok((url, token)) => (url, token.unwrap_or_default()),
        Err(_) => (String::new(), String::new()),
    }
}

#[function_component]
pub fn App() -> Html {
    let version = use_reducer(|| Counter(0));
    let engine = {
        let bump = version.dispatcher();
        use_memo((), move |_| EngineHandle::start(Rc::new(move || bump.dispatch(()))))
    };
    let (origin_url, origin_token) = (*use_memo((), |_| own_origin())).clone();
    let targets = use_reducer(|| {
        // Opened from the address a node printed: watch that node straight away.
        if !origin_url.is_empty() && !origin_token.is_empty() {
            TargetList(vec![Target { url: origin_url.clone().into(), token: origin_token.clone().into() }])
        } else {
            TargetList::default()
        }
    });

    let ctx = EngineCtx { engine: (*engine).clone(), version: version.0 };
    let on_connect = {
        let targets = targets.dispatcher();
        Callback::from(move |t: (String, String)| {
            targets.dispatch(Targets::Add(Target { url: t.0.into(), token: t.1.into() }))
        })
    };
    let on_remove = {
        let targets = targets.dispatcher();
        Callback::from(move |url: AttrValue| targets.dispatch(Targets::Remove(url)))
    };

    html! {
        <ContextProvider<EngineHandle> context={(*engine).clone()}>
        <ContextProvider<EngineCtx> context={ctx}>
            <header class="top">
                <div class="brand"><span class="logo">{ "◆" }</span><h1>{ "torronto" }</h1></div>
                <span class="tagline">{ "peer-to-peer file replication · control panel" }</span>
            </header>
            <main>
                <ConnectForm url={origin_url} token={origin_token} on_connect={on_connect} />
                { for targets.0.iter().map(|t| html! {
                    <node::NodePanel key={format!("{}#{}", t.url, t.token)} url={t.url.clone()} token={t.token.clone()} on_remove={on_remove.clone()} />
                }) }
                <peer::BrowserPeer />
            </main>
        </ContextProvider<EngineCtx>>
        </ContextProvider<EngineHandle>>
    }
}

#[derive(Clone, Copy, PartialEq)]
struct Counter(u64);

impl Reducible for Counter {
    type Action = ();
    fn reduce(self: Rc<Self>, _: ()) -> Rc<Self> {
        Rc::new(Counter(self.0 + 1))
    }
}

#[derive(Properties, PartialEq)]
struct ConnectProps {
    url: String,
    token: String,
    on_connect: Callback<(String, String)>,
}

/// Where to point the panel: a node's address and its control token.
#[function_component]
fn ConnectForm(props: &ConnectProps) -> Html {
    let url_ref = use_node_ref();
    let token_ref = use_node_ref();
    let error = use_state(|| None::<String>);
    {
        // Prefilled once; after that the fields are the person's (renders never reset them).
        let (url_ref, token_ref) = (url_ref.clone(), token_ref.clone());
        let (url, token) = (props.url.clone(), props.token.clone());
        use_effect_with((), move |_| {
            if let Some(input) = url_ref.cast::<HtmlInputElement>() {
                input.set_value(&url);
            }
            if let Some(input) = token_ref.cast::<HtmlInputElement>() {
                input.set_value(&token);
            }
        });
    }
    let on_submit = {
        let (url_ref, token_ref, error, cb) =
            (url_ref.clone(), token_ref.clone(), error.clone(), props.on_connect.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let (Some(url_in), Some(token_in)) =
                (url_ref.cast::<HtmlInputElement>(), token_ref.cast::<HtmlInputElement>())
            else {
                return;
            };
            match parse_target(&url_in.value()) {
                Ok((url, pasted_token)) => {
                    let token = pasted_token.unwrap_or_else(|| token_in.value().trim().to_string());
                    if token.is_empty() {
                        error.set(Some(
                            "Enter the node's control token: it is in the address the node printed, after #token=."
                                .into(),
                        ));
                        return;
                    }
                    error.set(None);
                    cb.emit((url, token));
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    html! {
        <form class="card connect" onsubmit={on_submit}>
            <label>
                <span>{ "Node" }</span>
                <input ref={url_ref} id="node-url" type="text" placeholder="ws://127.0.0.1:8080/ws or the control-panel address a node printed" />
            </label>
            <label>
                <span>{ "Token" }</span>
                <input ref={token_ref} id="node-token" type="password" placeholder="control token" autocomplete="off" />
            </label>
            <button type="submit" class="primary">{ "Connect" }</button>
            if let Some(e) = &*error { <p class="error">{ e.clone() }</p> }
        </form>
    }
}
