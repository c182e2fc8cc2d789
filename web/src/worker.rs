//! The engine's side of the page: `worker_main` runs in a dedicated module worker
//! (`static/worker.js`), owns the [`PeerEngine`] and turns each [`Command`] the page
//! posts into a call of an intent method. Hashing, IndexedDB and the peer sockets
//! therefore all run off the page's thread, which only renders.

use std::rc::Rc;

use torronto_core::{NetworkSecret, PeerAddr};
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::bridge::{self, Command, Report};
use crate::engine::PeerEngine;

/// Starts the engine in this worker. `early` holds the messages the page posted while
/// the module was loading, in order; the page posts [`Command::Start`] first, right
/// after making the worker, so it is always among them.
#[wasm_bindgen]
pub fn worker_main(early: js_sys::Array) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let start = early.iter().find_map(|data| match bridge::decode::<Command>(&data) {
        Some((Command::Start { secret, identity }, _)) => Some((secret, identity)),
        _ => None,
    });
    let (secret, identity) = start.unwrap_or_default();
    // The page checked the secret already; a bad one here means an open-network peer.
    let secret = secret.and_then(|hex| NetworkSecret::from_hex(&hex).ok());
    let engine = PeerEngine::new(secret, identity);
    let out = scope.clone();
    engine.start(Rc::new(move |report: &Report, extra: Option<&JsValue>| {
        // Only a page that has gone away refuses a message.
        let _ = out.post_message(&bridge::encode(report, extra));
    }));
    let handle = engine.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| command(&handle, &e.data()));
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page: so does its handler.
    on_message.forget();
    for data in early.iter() {
        command(&engine, &data);
    }
}

fn command(engine: &PeerEngine, data: &JsValue) {
    let Some((command, extra)) = bridge::decode::<Command>(data) else { return };
    let mut e = engine.borrow_mut();
    match command {
        Command::Start { .. } => {}
        Command::EnsurePeer { url, addr } => {
            if let Ok(addr) = addr.parse::<PeerAddr>() {
                e.ensure_peer(&url, addr);
            }
        }
        Command::ForgetNode { url } => e.forget_node(&url),
        Command::Insert => {
            if let Ok(file) = extra.dyn_into::<web_sys::File>() {
                e.insert_file(file);
            }
        }
        Command::Download { name } => e.download(&name),
        Command::Forget { name } => e.forget(&name),
        Command::Save { name, auto } => e.save(&name, auto),
        Command::ClearStorage => e.clear_storage(),
        Command::Dismiss { id } => e.dismiss(id),
    }
}
