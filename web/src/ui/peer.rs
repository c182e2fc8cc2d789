//! The page as a peer: share a file from this computer, download network files into
//! the browser, save them to disk.

use std::rc::Rc;

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::listing::{
    arrange, pager, search_box, sort_header, Column, Listed, Listing, ACTIONS, FILE, IN_NETWORK, LEAST_COPIES, SIZE,
};
use super::widgets::{chunk_counts, copies_cell, rates, transfer_label, Bar, Inserting, Notice};
use crate::bridge::{Notice as PeerNotice, PeerFile, PeerView, Save};
use crate::client::{EngineClient, PeerState};
use crate::util::{percent, rate};
use torronto_core::human_size;

#[derive(Properties, PartialEq)]
pub struct BrowserPeerProps {
    /// What the engine last reported, and the files assembled for saving.
    pub state: UseReducerHandle<PeerState>,
    /// The engine's files, their copies counted with what the watched nodes know.
    pub files: Rc<Vec<PeerFile>>,
}

/// The browser peer's card: its links, what it is sharing, its notices and files.
#[function_component]
pub fn BrowserPeer(props: &BrowserPeerProps) -> Html {
    let client = use_context::<EngineClient>().expect("BrowserPeer is inside the engine context");
    let view = &props.state.view;
    let connected = !view.peers.is_empty();
    let picker = use_node_ref();
    html! {
        <section class="card browser-peer" data-peer={view.me.clone()} data-connected={view.peers.len().to_string()}
            data-verifier={if view.webcrypto { "webcrypto" } else { "wasm" }}>
            { peer_head(&client, view, &picker) }
            { peer_meta(view) }
            if let Some(err) = &view.storage_error {
                <div class="notice err"><strong>{ "Browser storage unavailable" }</strong>
                    <span>{ format!("{err}. The panel works, but this browser cannot hold files.") }</span></div>
            }
            { for view.inserting.iter().map(|(name, done, total)| html! {
                <Inserting verb="Sharing" file={name.clone()} done={*done} size={*total} />
            }) }
            <div class="notices" aria-live="polite" role="status">
                { for view.notices.iter().rev().map(|n| notice(&client, n)) }
            </div>
            if view.files.is_empty() {
                <p class="empty">{ if connected { "No files in the network yet. Share one from this computer." } else { "Connect to a node above: once it has joined, this browser joins it as a peer and sees its files." } }</p>
            } else {
                <PeerFiles state={props.state.clone()} files={props.files.clone()} />
            }
        </section>
    }
}

/// The card's title line: the peer's name and link, Share and Forget all.
fn peer_head(client: &EngineClient, view: &PeerView, picker: &NodeRef) -> Html {
    let on_share = {
        let picker = picker.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(input) = picker.cast::<HtmlInputElement>() {
                input.click();
            }
        })
    };
    let on_pick = {
        let client = client.clone();
        Callback::from(move |e: Event| {
            let Some(input) = e.target_dyn_into::<HtmlInputElement>() else { return };
            if let Some(files) = input.files() {
                for i in 0..files.length() {
                    if let Some(f) = files.get(i) {
                        client.insert_file(f);
                    }
                }
            }
            // So that picking the same file again fires another change.
            input.set_value("");
        })
    };
    let on_clear = {
        let client = client.clone();
        Callback::from(move |_: MouseEvent| {
            let sure = web_sys::window()
                .and_then(|w| {
                    w.confirm_with_message("Forget every file this browser holds? The network keeps its copies.").ok()
                })
                .unwrap_or(false);
            if sure {
                client.clear_storage();
            }
        })
    };
    let (me, connected, ready) = (&view.me, !view.peers.is_empty(), view.ready);
    html! {
        <header class="card-head">
            <div class="title">
                <h2>{ "This browser" }</h2>
                <span class={classes!("pill", if connected { "joined" } else { "idle" })}>
                    { if connected { format!("peer {me}") } else { format!("{me} · no node connected") } }
                </span>
            </div>
            <div class="actions">
                // A button opens the picker, so Share is reached and pressed like any button.
                <button type="button" class="share primary" onclick={on_share} disabled={!ready}>{ "Share a file…" }</button>
                <input ref={picker} id="share-file" class="picker" type="file" multiple=true onchange={on_pick}
                    disabled={!ready} aria-label="Files to share from this computer" tabindex="-1" />
                <button class="ghost" onclick={on_clear} title="Delete the chunks kept in this browser">{ "Forget all" }</button>
            </div>
        </header>
    }
}

/// What the card is about, chunk counts, how chunks are verified, the nodes it is
/// connected to.
fn peer_meta(view: &PeerView) -> Html {
    // The verified chunks kept in IndexedDB, counted from the files' shares.
    let stored: u64 = view.files.iter().map(|f| (f.local.clamp(0.0, 1.0) * f.size as f64).round() as u64).sum();
    html! {
        <>
            <div class="meta">
                <span>{ "Files shared from here are fetched by the nodes from this page; downloads are verified chunk by chunk and kept in the browser (IndexedDB) across reloads." }</span>
            </div>
            <div class="meta">
                { chunk_counts(view.chunks_fetched, view.chunks_served) }
                { rates(view.down, view.up) }
                <span class="stored" data-bytes={stored.to_string()}>{ format!("{} kept in this browser", human_size(stored)) }</span>
                <span>{ if view.webcrypto { "verified with WebCrypto SHA-256" } else { "verified in wasm (WebCrypto needs https or a loopback address)" } }</span>
                if !view.peers.is_empty() {
                    <span>{ format!("connected to {}", view.peers.join(", ")) }</span>
                }
            </div>
        </>
    }
}

/// One notice of the engine's, dismissible; it expires by itself.
fn notice(client: &EngineClient, n: &PeerNotice) -> Html {
    let id = n.id;
    let client = client.clone();
    let title = if n.ok { "Done." } else { "Something went wrong." };
    html! {
        <Notice key={id} ok={n.ok} code={n.code} title={title} on_dismiss={Callback::from(move |_| client.dismiss(id))}>
            <span>{ n.text.clone() }</span>
        </Notice>
    }
}

/// The browser table's columns; [`Listed::number`] of a [`PeerFile`] follows their order.
const COLUMNS: [Column; 6] = [FILE, SIZE, Column::text("In this browser"), IN_NETWORK, LEAST_COPIES, ACTIONS];

impl Listed for PeerFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn number(&self, col: usize) -> f64 {
        match col {
            1 => self.size as f64,
            2 => self.local,
            3 => self.system,
            _ => f64::from(self.least),
        }
    }
}

#[derive(Properties, PartialEq)]
struct PeerFilesProps {
    state: UseReducerHandle<PeerState>,
    files: Rc<Vec<PeerFile>>,
}

/// The files of the network as this browser holds them, a page at a time.
#[function_component]
fn PeerFiles(props: &PeerFilesProps) -> Html {
    let client = use_context::<EngineClient>().expect("PeerFiles is inside the engine context");
    let listing = use_state(Listing::default);
    let state = &props.state;
    let files = props.files.as_slice();
    // With no node connected, this browser is not part of any network.
    let joined = !state.view.peers.is_empty();
    let shown = arrange(files, &listing);
    html! {
        <>
        { search_box(&listing, files.len(), shown.matching) }
        <table class="files">
            { sort_header(&listing, &COLUMNS) }
            <tbody>
            { for shown.rows.iter().map(|f| html! {
                <tr class="file" data-file={f.name.clone()} data-local={f.local.to_string()} data-least={f.least.to_string()}>
                    <td class="name" data-label="File" title={f.name.clone()}>{ f.name.clone() }</td>
                    <td class="num" data-label="Size">{ human_size(f.size) }</td>
                    <td class="progress" data-label="In this browser">
                        <Bar value={f.local} label={transfer_label(f.local, f.size, f.rate)} /></td>
                    <td class="num" data-label="In network">{ if joined { percent(f.system) } else { "—".into() } }</td>
                    <td class="num copies" data-label="Least copies">{ copies_cell(joined, f.least) }</td>
                    <td class="act">{ file_action(&client, f, state.saved.get(&f.name)) }{ forget_button(&client, f, joined) }</td>
                </tr>
            }) }
            </tbody>
        </table>
        { pager(&listing, shown.page, shown.pages, shown.matching) }
        </>
    }
}

/// What can be done with a file: save it (or save it again) once complete, watch it
/// arrive while requested, else download it.
fn file_action(client: &EngineClient, f: &PeerFile, saved: Option<&String>) -> Html {
    let name = f.name.clone();
    let client = client.clone();
    if f.local >= 1.0 {
        let n = name.clone();
        let save = Callback::from(move |_: MouseEvent| client.save(&n));
        match (&f.save, saved) {
            (_, Some(url)) => html! {
                <a class="button save-link" href={url.clone()} download={name.clone()} data-file={name}>{ "Save again" }</a>
            },
            (Some(Save::Assembling | Save::Ready), None) => html! { <span class="muted">{ "assembling…" }</span> },
            (Some(Save::Failed(e)), None) => {
                html! { <><button class="save" onclick={save}>{ "Save" }</button><span class="error">{ e.clone() }</span></> }
            }
            (None, None) => html! { <button class="save" onclick={save} data-file={name}>{ "Save" }</button> },
        }
    } else if f.requested {
        html! { <span class="muted rate">{ f.rate.map(rate).unwrap_or_else(|| "waiting…".into()) }</span> }
    } else {
        let n = name.clone();
        let download = Callback::from(move |_: MouseEvent| client.download(&n));
        html! { <button class="download" onclick={download} data-file={name} disabled={f.system <= 0.0}>{ "Download" }</button> }
    }
}

/// Cancel (a download under way) or Forget (what this browser holds of a file): the
/// page stops fetching it and drops its chunks; the network keeps its copies. Forget
/// asks first when this browser holds the only copy.
fn forget_button(client: &EngineClient, f: &PeerFile, joined: bool) -> Html {
    let downloading = f.requested && f.local < 1.0;
    if !downloading && f.local <= 0.0 {
        return html! {};
    }
    let only_copy = f.local >= 1.0 && (!joined || f.least <= 1);
    let (client, name) = (client.clone(), f.name.clone());
    let forget = Callback::from(move |_: MouseEvent| {
        let sure = !only_copy
            || web_sys::window()
                .and_then(|w| {
                    let q = format!("This browser holds the only copy of {name}. Forget it anyway?");
                    w.confirm_with_message(&q).ok()
                })
                .unwrap_or(false);
        if sure {
            client.forget(&name);
        }
    });
    let (class, text, title) = if downloading {
        ("cancel-download ghost", "Cancel", "Stop downloading and delete what arrived")
    } else {
        ("forget ghost", "Forget", "Delete this file's chunks from this browser; the network keeps its copies")
    };
    html! {
        <button type="button" class={class} onclick={forget} data-file={f.name.clone()} title={title}
            aria-label={format!("{text} {}", f.name)}>{ text }</button>
    }
}
