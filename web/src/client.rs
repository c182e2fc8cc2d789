//! The page's side of the engine: [`EngineHandle`] starts the engine's worker
//! (`worker.js`, the same wasm bundle entered at `worker_main`), posts it the user's
//! intents as [`Command`]s and keeps the latest [`PeerView`] it reports, asking the
//! interface to re-render when one arrives. Files the engine assembled come back as
//! Blobs; their `blob:` URLs are made and kept here, in the page that offers them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use torronto_core::PeerAddr;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::bridge::{self, Command, Report};
use crate::bridge::PeerView;
use crate::error::WebError;

/// The worker script, next to `index.html` (copied from `web/static`).
const WORKER_URL: &str = "worker.js";

struct Client {
    worker: Option<Worker>,
    view: RefCell<PeerView>,
    /// `blob:` URLs of assembled files, by name.
    saved: RefCell<HashMap<String, String>>,
    notify: RefCell<Option<Rc<dyn Fn()>>>,
}

/// The browser peer as the page sees it, shared by the components through a context.
#[derive(Clone)]
pub struct EngineHandle(Rc<Client>);

impl PartialEq for EngineHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineHandle")
    }
}

impl EngineHandle {
    /// Starts the engine's worker; `notify` asks the interface to re-render.
    pub fn start(notify: Rc<dyn Fn()>) -> Self {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let (worker, error) = match Worker::new_with_options(WORKER_URL, &options) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(WebError::js(&e).to_string())),
        };
        let client = Rc::new(Client {
            worker,
            view: RefCell::new(PeerView::default()),
            saved: RefCell::default(),
            notify: RefCell::new(Some(notify)),
        });
        let handle = EngineHandle(client);
        if let Some(error) = error {
            handle.failed(error);
        }
        if let Some(worker) = &handle.0.worker {
            let weak = Rc::downgrade(&handle.0);
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                if let Some(client) = weak.upgrade() {
                    EngineHandle(client).report(&e.data());
                }
            });
            let weak = Rc::downgrade(&handle.0);
            let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |e: ErrorEvent| {
                if let Some(client) = weak.upgrade() {
                    let message = e.message();
                    EngineHandle(client).failed(if message.is_empty() {
                        "the worker failed to load".into()
                    } else {
                        message
                    });
                }
            });
            worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            // The page starts one worker, which lives as long as the page: so do these.
            on_message.forget();
            on_error.forget();
        }
        handle
    }

    /// The latest state of the browser peer.
    pub fn view(&self) -> PeerView {
        self.0.view.borrow().clone()
    }

    /// The `blob:` URL of an assembled file, once the engine sent it.
    pub fn saved_url(&self, name: &str) -> Option<String> {
        self.0.saved.borrow().get(name).cloned()
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

    /// Saves a file held completely: at once if it was assembled before, else once
    /// the engine sends its Blob.
    pub fn save(&self, name: &str) {
        match self.saved_url(name) {
            Some(url) => click_download(&url, name),
            None => self.send(&Command::Save { name: name.to_string(), auto: true }, None),
        }
    }

    pub fn clear_storage(&self) {
        self.send(&Command::ClearStorage, None);
    }

    pub fn dismiss(&self, id: u64) {
        self.0.view.borrow_mut().notices.retain(|n| n.id != id);
        self.send(&Command::Dismiss { id }, None);
        self.rerender();
    }

    fn send(&self, command: &Command, extra: Option<&JsValue>) {
        if let Some(worker) = &self.0.worker {
            if let Err(e) = worker.post_message(&bridge::encode(command, extra)) {
                self.failed(WebError::js(&e).to_string());
            }
        }
    }

    fn report(&self, data: &JsValue) {
        let Some((report, extra)) = bridge::decode::<Report>(data) else { return };
        match report {
            Report::View(view) => *self.0.view.borrow_mut() = *view,
            Report::Saved { name, auto } => {
                let Ok(blob) = extra.dyn_into::<Blob>() else { return };
                let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else { return };
                if auto {
                    click_download(&url, &name);
                }
                self.0.saved.borrow_mut().insert(name, url);
            }
            Report::Reload => {
                if let Some(w) = web_sys::window() {
                    let _ = w.location().reload();
                }
                return;
            }
        }
        self.rerender();
    }

    /// The engine could not start or stopped: the panel still works without it.
    fn failed(&self, error: String) {
        self.0.view.borrow_mut().storage_error = Some(format!("the browser peer stopped: {error}"));
        self.rerender();
    }

    /// Called outside any borrow of the client, so a synchronous re-render is safe.
    fn rerender(&self) {
        let notify = self.0.notify.borrow().clone();
        if let Some(notify) = notify {
            notify();
        }
    }
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
