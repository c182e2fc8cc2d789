//! The connect form: where to point the panel.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::targets::{parse_target, Target};
use crate::error::WebError;

#[derive(Properties, PartialEq)]
pub(super) struct ConnectProps {
    pub(super) url: String,
    pub(super) token: String,
    /// Nodes watched before (remembered without their tokens) and not watched now.
    pub(super) remembered: Vec<AttrValue>,
    pub(super) on_connect: Callback<Target>,
}

/// Where to point the panel: a node's address and its control token.
#[function_component]
pub(super) fn ConnectForm(props: &ConnectProps) -> Html {
    let url_ref = use_node_ref();
    let token_ref = use_node_ref();
    let error = use_state(|| None::<WebError>);
    use_prefill(&url_ref, &token_ref, &props.url, &props.token);
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
            match read_target(&url_in, &token_in) {
                Ok(target) => {
                    error.set(None);
                    cb.emit(target);
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    html! {
        <form class="card connect" onsubmit={on_submit}>
            <label>
                <span>{ "Node" }</span>
                <input ref={url_ref.clone()} id="node-url" type="text" placeholder="ws://127.0.0.1:8080/ws or the control-panel address a node printed" />
            </label>
            <label>
                <span>{ "Token" }</span>
                <input ref={token_ref.clone()} id="node-token" type="password" placeholder="control token" autocomplete="off" />
            </label>
            <button type="submit" class="primary">{ "Connect" }</button>
            if let Some(e) = &*error { <p class="error">{ e.to_string() }</p> }
            if !props.remembered.is_empty() {
                <div class="remembered">
                    <span>{ "Watched before (enter the token again):" }</span>
                    { for props.remembered.iter().map(|url| remembered_button(url, &url_ref, &token_ref)) }
                </div>
            }
        </form>
    }
}

/// Fills the fields once; after that they are the person's (renders never reset them).
#[hook]
fn use_prefill(url_ref: &NodeRef, token_ref: &NodeRef, url: &str, token: &str) {
    let (url_ref, token_ref) = (url_ref.clone(), token_ref.clone());
    let (url, token) = (url.to_string(), token.to_string());
    use_effect_with((), move |_| {
        if let Some(input) = url_ref.cast::<HtmlInputElement>() {
            input.set_value(&url);
        }
        if let Some(input) = token_ref.cast::<HtmlInputElement>() {
            input.set_value(&token);
        }
    });
}

/// The node the form names: a token pasted with the address wins over the token field;
/// a network secret comes only with a pasted address.
fn read_target(url_in: &HtmlInputElement, token_in: &HtmlInputElement) -> Result<Target, WebError> {
    let address = parse_target(&url_in.value())?;
    let token = address.token.unwrap_or_else(|| token_in.value().trim().to_string());
    if token.is_empty() {
        return Err(WebError::NoToken);
    }
    Ok(Target { url: address.url.into(), token: token.into(), secret: address.secret, candidate: None })
}

/// A node watched before: pressing it puts its address in the form and the cursor in
/// the token field.
fn remembered_button(url: &AttrValue, url_ref: &NodeRef, token_ref: &NodeRef) -> Html {
    let on_click = {
        let (url, url_ref, token_ref) = (url.clone(), url_ref.clone(), token_ref.clone());
        Callback::from(move |_: MouseEvent| {
            if let Some(input) = url_ref.cast::<HtmlInputElement>() {
                input.set_value(&url);
            }
            if let Some(input) = token_ref.cast::<HtmlInputElement>() {
                input.set_value("");
                let _ = input.focus();
            }
        })
    };
    html! { <button type="button" class="ghost remembered-node" data-url={url.clone()} onclick={on_click}>{ url.clone() }</button> }
}
