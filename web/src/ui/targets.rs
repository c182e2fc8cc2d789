//! The nodes the panel watches, and the addresses people paste to name them.

use std::rc::Rc;

use yew::prelude::*;

use crate::error::WebError;

/// A node the panel watches.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    pub(super) url: AttrValue,
    pub(super) token: AttrValue,
}

pub(super) enum Targets {
    Add(Target),
    Remove(AttrValue),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct TargetList(pub(super) Vec<Target>);

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
pub(super) fn parse_target(input: &str) -> Result<(String, Option<String>), WebError> {
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
    let token = fragment.and_then(|f| f.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string));
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
    Ok((format!("{ws_scheme}://{host}{path}"), token))
}

/// The node that served this page and the token in its fragment, if any.
pub(super) fn own_origin() -> (String, String) {
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
