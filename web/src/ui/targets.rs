//! The nodes the panel watches, and the addresses people paste to name them.

use std::rc::Rc;

use torronto_core::NetworkSecret;
use yew::prelude::*;

use crate::error::WebError;

/// A node the panel watches.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    pub(super) url: AttrValue,
    pub(super) token: AttrValue,
    /// The private network's secret: the control session is then encrypted.
    pub(super) secret: Option<NetworkSecret>,
    /// Another token given for this node: tried, and it replaces `token` only once
    /// the node accepts it (a wrong one never ends a working session).
    pub(super) candidate: Option<AttrValue>,
}

/// What an address a person pastes names.
#[derive(Debug, PartialEq)]
pub(super) struct Address {
    /// The WebSocket URL.
    pub(super) url: String,
    pub(super) token: Option<String>,
    pub(super) secret: Option<NetworkSecret>,
}

pub(super) enum Targets {
    Add(Target),
    Remove(AttrValue),
    /// The node at this URL accepted its candidate token (true) or refused it.
    Candidate(AttrValue, bool),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct TargetList(pub(super) Vec<Target>);

impl Reducible for TargetList {
    type Action = Targets;
    fn reduce(self: Rc<Self>, action: Targets) -> Rc<Self> {
        let mut list = self.0.clone();
        match action {
            Targets::Add(t) => match list.iter_mut().find(|o| o.url == t.url) {
                // Another token for a watched node of the same network: tried first.
                Some(o) if o.secret == t.secret => o.candidate = (o.token != t.token).then_some(t.token),
                Some(o) => *o = t,
                None => list.push(t),
            },
            Targets::Remove(url) => list.retain(|o| o.url != url),
            Targets::Candidate(url, accepted) => {
                if let Some(o) = list.iter_mut().find(|o| o.url == url) {
                    if let Some(token) = o.candidate.take().filter(|_| accepted) {
                        o.token = token;
                    }
                }
            }
        }
        Rc::new(TargetList(list))
    }
}

/// Turns what a person pastes into a WebSocket URL and maybe a token and a network
/// secret: the control-panel address a node prints (`http://h:p/#token=T`, with
/// `&secret=S` in a private network), `ws://h:p/ws`, or `h:p`.
pub(super) fn parse_target(input: &str) -> Result<Address, WebError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(WebError::NoAddress);
    }
    let (scheme, rest) = match input.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("ws".to_string(), input),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let field = |name: &str| fragment.and_then(|f| f.split('&').find_map(|kv| kv.strip_prefix(name)));
    let token = field("token=").map(str::to_string);
    let secret =
        field("secret=").map(|hex| NetworkSecret::from_hex(hex).map_err(|_| WebError::BadSecret)).transpose()?;
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, String::new()),
    };
    if host.is_empty() {
        return Err(WebError::NoHost { input: input.to_string() });
    }
    let ws_scheme = match scheme.as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(WebError::UnsupportedScheme { scheme: other.to_string() }),
    };
    let path = if path.is_empty() || path == "/" || scheme.starts_with("http") { "/ws".to_string() } else { path };
    Ok(Address { url: format!("{ws_scheme}://{host}{path}"), token, secret })
}

/// The node that served this page, with the token and secret in its fragment, if any.
pub(super) fn own_origin() -> Option<Address> {
    let location = web_sys::window()?.location();
    let href = location.href().ok()?;
    if !location.protocol().ok()?.starts_with("http") {
        return None;
    }
    parse_target(&href).ok()
}

/// Where the page remembers the nodes it watched: their URLs only, one a line (a token
/// never goes to storage).
const REMEMBERED: &str = "torronto.watched";

/// The nodes this browser watched before, as remembered.
pub(super) fn remembered() -> Vec<AttrValue> {
    let stored = local_storage().and_then(|s| s.get_item(REMEMBERED).ok().flatten()).unwrap_or_default();
    stored.lines().filter(|l| !l.is_empty()).map(|l| AttrValue::from(l.to_string())).collect()
}

/// Remembers `url` as watched (`keep`) or forgets it; the list as it is now.
pub(super) fn remember(url: &AttrValue, keep: bool) -> Vec<AttrValue> {
    let mut list = remembered();
    list.retain(|u| u != url);
    if keep {
        list.push(url.clone());
    }
    if let Some(storage) = local_storage() {
        let text: Vec<&str> = list.iter().map(|u| u.as_str()).collect();
        // Storage full or refused: the panel works, it just forgets.
        let _ = storage.set_item(REMEMBERED, &text.join("\n"));
    }
    list
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}
