//! The page as a peer: share a file from this computer, download network files into
//! the browser, save them to disk.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::widgets::{level_class, Bar};
use super::EngineCtx;
use crate::bridge::Save;
use crate::util::{bytes, percent, rate};

#[function_component]
pub fn BrowserPeer() -> Html {
    let ctx = use_context::<EngineCtx>().expect("BrowserPeer is inside the engine context");
    let view = ctx.engine.view();

    let on_pick = {
        let engine = ctx.engine.clone();
        Callback::from(move |e: Event| {
            let Some(input) = e.target_dyn_into::<HtmlInputElement>() else { return };
            if let Some(files) = input.files() {
                for i in 0..files.length() {
                    if let Some(f) = files.get(i) {
                        engine.insert_file(f);
                    }
                }
            }
            // So that picking the same file again fires another change.
            input.set_value("");
        })
    };
    let on_clear = {
        let engine = ctx.engine.clone();
        Callback::from(move |_: MouseEvent| {
            let sure = web_sys::window()
                .and_then(|w| {
                    w.confirm_with_message("Forget every file this browser holds? The network keeps its copies.").ok()
                })
                .unwrap_or(false);
            if sure {
                engine.clear_storage();
            }
        })
    };

    let connected = !view.peers.is_empty();
    html! {
        <section class="card browser-peer" data-peer={view.me.clone()} data-connected={view.peers.len().to_string()}
            data-verifier={if view.webcrypto { "webcrypto" } else { "wasm" }}>
            <header class="card-head">
                <div class="title">
                    <h2>{ "This browser" }</h2>
                    <span class={classes!("pill", if connected { "joined" } else { "idle" })}>
                        { if connected { format!("peer {}", view.me) } else { format!("{} · no node connected", view.me) } }
                    </span>
                </div>
                <div class="actions">
                    <label class={classes!("button", "primary", (!view.ready).then_some("disabled"))}>
                        { "Share a file…" }
                        <input id="share-file" type="file" multiple=true onchange={on_pick} disabled={!view.ready} />
                    </label>
                    <button class="ghost" onclick={on_clear} title="Delete the chunks kept in this browser">{ "Forget all" }</button>
                </div>
            </header>
            <div class="meta">
                <span>{ "Files shared from here are fetched by the nodes from this page; downloads are verified chunk by chunk and kept in the browser (IndexedDB) across reloads." }</span>
            </div>
            <div class="meta">
                <span>{ format!("{} chunks fetched · {} served", view.chunks_fetched, view.chunks_served) }</span>
                <span>{ if view.webcrypto { "verified with WebCrypto SHA-256" } else { "verified in wasm (WebCrypto needs https or a loopback address)" } }</span>
                if connected {
                    <span>{ format!("connected to {}", view.peers.join(", ")) }</span>
                }
            </div>
            if let Some(err) = &view.storage_error {
                <div class="notice err"><strong>{ "Browser storage unavailable" }</strong>
                    <span>{ format!("{err}. The panel works, but this browser cannot hold files.") }</span></div>
            }
            { for view.inserting.iter().map(|(name, done, total)| {
                let f = if *total == 0 { 1.0 } else { *done as f64 / *total as f64 };
                html! { <div class="inserting"><span>{ format!("Sharing {name}") }</span><Bar value={f} label={format!("{} of {}", bytes(*done), bytes(*total))} /></div> }
            }) }
            { for view.notices.iter().rev().map(|n| {
                let id = n.id;
                let engine = ctx.engine.clone();
                let dismiss = Callback::from(move |_: MouseEvent| engine.dismiss(id));
                html! {
                    <div class={classes!("notice", if n.ok { "ok" } else { "err" })} data-code={n.code.map(|c| c.name())}>
                        if let Some(code) = n.code { <strong>{ code.name() }</strong> }
                        <span>{ n.text.clone() }</span>
                        <button class="close" onclick={dismiss} title="Dismiss">{ "×" }</button>
                    </div>
                }
            }) }
            if view.files.is_empty() {
                <p class="empty">{ if connected { "No files in the network yet. Share one from this computer." } else { "Connect to a node above: once it has joined, this browser joins it as a peer and sees its files." } }</p>
            } else {
                <table class="files">
                    <thead><tr>
                        <th>{ "File" }</th><th class="num">{ "Size" }</th><th>{ "In this browser" }</th>
                        <th class="num">{ "In network" }</th><th class="num">{ "Least copies" }</th><th></th>
                    </tr></thead>
                    <tbody>
                    { for view.files.iter().map(|f| {
                        let name = f.name.clone();
                        let engine = ctx.engine.clone();
                        let action = if f.local >= 1.0 {
                            let n = name.clone();
                            let saved = engine.saved_url(&name);
                            let save = Callback::from(move |_: MouseEvent| engine.save(&n));
                            match (&f.save, saved) {
                                (_, Some(url)) => html! {
                                    <a class="button save-link" href={url} download={name.clone()} data-file={name.clone()}>{ "Save again" }</a>
                                },
                                (Some(Save::Assembling | Save::Ready), None) => html! { <span class="muted">{ "assembling…" }</span> },
                                (Some(Save::Failed(e)), None) => html! { <><button class="save" onclick={save}>{ "Save" }</button><span class="error">{ e.clone() }</span></> },
                                (None, None) => html! { <button class="save" onclick={save} data-file={name.clone()}>{ "Save" }</button> },
                            }
                        } else if f.requested {
                            html! { <span class="muted rate">{ f.rate.map(rate).unwrap_or_else(|| "waiting…".into()) }</span> }
                        } else {
                            let n = name.clone();
                            let download = Callback::from(move |_: MouseEvent| engine.download(&n));
                            html! { <button class="download" onclick={download} data-file={name.clone()} disabled={f.system <= 0.0}>{ "Download" }</button> }
                        };
                        html! {
                            <tr class="file" data-file={name.clone()} data-local={f.local.to_string()}>
                                <td class="name">{ name.clone() }</td>
                                <td class="num">{ bytes(f.size) }</td>
                                <td class="progress"><Bar value={f.local} label={percent(f.local)} /></td>
                                <td class="num">{ percent(f.system) }</td>
                                <td class="num"><span class={classes!("level", level_class(f.least))}>{ f.least }</span></td>
                                <td class="act">{ action }</td>
                            </tr>
                        }
                    }) }
                    </tbody>
                </table>
            }
        </section>
    }
}
