//! The page's side of the engine: [`EngineClient`] starts the engine's worker
//! (`worker.js`, the same wasm bundle entered at `worker_main`), posts it the user's
//! intents as [`Command`]s and turns each [`Report`] into a [`PeerUpdate`] of the
//! page's [`PeerState`], a yew reducer the interface renders. Files the engine
//! assembled come back as Blobs; their `blob:` URLs are made here, in the page that
//! offers them, and kept in the state.

use std::collections::HashMap;
use std::rc::Rc;

use torronto_core::{NetworkSecret, PeerAddr};
use wasm_bindgen::prelude::*;
use web_sys::{Blob, ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};
use yew::{Callback, Reducible};

use crate::bridge::{self, Command, PeerIdentity, PeerView, Report};
use crate::error::WebError;

/// The worker script, next to `index.html` (copied from `web/static`).
const WORKER_URL: &str = "worker.js";

/// Everything the page shows of the browser peer.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PeerState {
    /// The latest view the engine reported.
    pub view: PeerView,
    /// `blob:` URLs of assembled files, by name.
    pub saved: HashMap<String, String>,
}

/// A change of [`PeerState`], from the worker or from the page itself.
#[derive(Debug)]
pub enum PeerUpdate {
    View(Box<PeerView>),
    /// The file `name` was assembled and can be saved from `url`.
    Saved {
        name: String,
        url: String,
    },
    /// A notice dismissed here: hidden at once, before the engine's next view.
    Dismissed(u64),
    /// The file `name` was forgotten here: its saved copy goes too.
    Forgotten(String),
    /// The engine could not start or stopped: the panel still works without it.
    Failed(WebError),
}

impl Reducible for PeerState {
    type Action = PeerUpdate;

    fn reduce(self: Rc<Self>, update: PeerUpdate) -> Rc<Self> {
        // The view the page shows already: nothing to draw again.
        if matches!(&update, PeerUpdate::View(view) if **view == self.view) {
            return self;
        }
        let mut s = Rc::unwrap_or_clone(self);
        match update {
            PeerUpdate::View(view) => s.view = *view,
            PeerUpdate::Saved { name, url } => {
                s.saved.insert(name, url);
            }
            PeerUpdate::Dismissed(id) => s.view.notices.retain(|n| n.id != id),
            PeerUpdate::Forgotten(name) => {
                if let Some(url) = s.saved.remove(&name) {
                    let _ = web_sys::Url::revoke_object_url(&url);
                }
            }
            PeerUpdate::Failed(error) => s.view.storage_error = Some(error.to_string()),
        }
        Rc::new(s)
    }
}

struct Link {
    worker: Option<Worker>,
    on_update: Callback<PeerUpdate>,
}

/// The browser peer as the page drives it, shared by the components through a context.
#[derive(Clone)]
pub struct EngineClient(Rc<Link>);

impl PartialEq for EngineClient {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineClient")
    }
}

impl EngineClient {
    /// Starts the engine's worker; every change of the peer's state goes to `on_update`.
    /// With `secret` the browser peer is a member of that private network.
    pub fn start(on_update: Callback<PeerUpdate>, secret: Option<&NetworkSecret>) -> Self {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let (worker, error) = match Worker::new_with_options(WORKER_URL, &options) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(WebError::js(&e))),
        };
        let client = EngineClient(Rc::new(Link { worker, on_update }));
        if let Some(error) = error {
            client.failed(error);
        }
        if let Some(worker) = &client.0.worker {
            let weak = Rc::downgrade(&client.0);
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                if let Some(link) = weak.upgrade() {
                    EngineClient(link).report(&e.data());
                }
            });
            let weak = Rc::downgrade(&client.0);
            let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |e: ErrorEvent| {
                if let Some(link) = weak.upgrade() {
                    let message = e.message();
                    EngineClient(link).failed(WebError::Js(if message.is_empty() {
                        "the worker failed to load".into()
                    } else {
                        message
                    }));
                }
            });
            worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            // The page starts one worker, which lives as long as the page: so do these.
            on_message.forget();
            on_error.forget();
        }
        let identity = remembered_identity();
        client.send(&Command::Start { secret: secret.map(NetworkSecret::to_hex), identity }, None);
        client
    }

    pub fn ensure_peer(&self, url: &str, addr: &PeerAddr) {
        self.send(&Command::EnsurePeer { url: url.to_string(), addr: addr.to_string() }, None);
    }

    pub fn forget_node(&self, url: &str) {
        self.send(&Command::ForgetNode { url: url.to_string() }, None);
    }

    /// Shares a picked file: the worker reads it (a File crosses as a handle).
    pub fn insert_file(&self, file: web_sys::File) {
        self.send(&Command::Insert, Some(&file));
    }

    pub fn download(&self, name: &str) {
        self.send(&Command::Download { name: name.to_string() }, None);
    }

    /// Stops fetching `name` and drops what this browser holds of it; a saved copy's
    /// `blob:` URL is let go too.
    pub fn forget(&self, name: &str) {
        self.0.on_update.emit(PeerUpdate::Forgotten(name.to_string()));
        self.send(&Command::Forget { name: name.to_string() }, None);
    }

    /// Saves a file held completely once the engine sends its Blob. (A file assembled
    /// before is offered as a link to its `blob:` URL instead.)
    pub fn save(&self, name: &str) {
        self.send(&Command::Save { name: name.to_string(), auto: true }, None);
    }

    pub fn clear_storage(&self) {
        self.send(&Command::ClearStorage, None);
    }

    pub fn dismiss(&self, id: u64) {
        self.0.on_update.emit(PeerUpdate::Dismissed(id));
        self.send(&Command::Dismiss { id }, None);
    }

    fn send(&self, command: &Command, extra: Option<&JsValue>) {
        if let Some(worker) = &self.0.worker {
            if let Err(e) = worker.post_message(&bridge::encode(command, extra)) {
                self.failed(WebError::js(&e));
            }
        }
    }

    fn report(&self, data: &JsValue) {
        let Some((report, extra)) = bridge::decode::<Report>(data) else { return };
        match report {
            Report::View(view) => self.0.on_update.emit(PeerUpdate::View(view)),
            Report::Saved { name, auto } => {
                let Ok(blob) = extra.dyn_into::<Blob>() else { return };
                let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else { return };
                if auto {
                    click_download(&url, &name);
                }
                self.0.on_update.emit(PeerUpdate::Saved { name, url });
            }
            Report::Reload => {
                if let Some(w) = web_sys::window() {
                    let _ = w.location().reload();
                }
            }
        }
    }

    fn failed(&self, error: WebError) {
        self.0.on_update.emit(PeerUpdate::Failed(WebError::WorkerStopped(Box::new(error))));
    }
}

/// Where the browser peer's identity is kept (this origin's `localStorage`).
const IDENTITY: &str = "torronto.peer";

/// The browser peer's identity as kept, or a new one, kept from now on. None when the
/// browser keeps nothing (the engine then makes a fresh identity for this page).
fn remembered_identity() -> Option<PeerIdentity> {
    let storage = web_sys::window()?.local_storage().ok().flatten()?;
    let kept = storage
        .get_item(IDENTITY)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_slice::<PeerIdentity>(t.as_bytes()).ok());
    if let Some(identity) = kept.filter(|i| i.parts().is_some()) {
        return Some(identity);
    }
    let fresh = PeerIdentity::fresh().ok()?;
    storage.set_item(IDENTITY, &serde_json::to_string(&fresh).ok()?).ok()?;
    Some(fresh)
}

/// Starts the browser's download of `url` as `name`.
fn click_download(url: &str, name: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    let Ok(a) = doc.create_element("a") else { return };
    let _ = a.set_attribute("href", url);
    let _ = a.set_attribute("download", name);
    if let Some(a) = a.dyn_ref::<web_sys::HtmlElement>() {
        a.click();
    }
}
