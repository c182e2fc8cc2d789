//! What the page and the engine's worker say to each other (`postMessage`).
//!
//! Every message is a two-element array: the JSON of a [`Command`] (page → worker) or
//! a [`Report`] (worker → page), and the one JS object that cannot be JSON — the
//! picked `File` of [`Command::Insert`], the assembled `Blob` of [`Report::Saved`] —
//! or `undefined`. Files and Blobs are structured-cloned as handles: their bytes are
//! not copied.
//!
//! A [`Report::View`] carries a [`PeerView`], everything the page shows of the browser
//! peer; its types live in `view.rs`, beside the messages that carry them.

mod view;

use js_sys::Array;
use serde::{Deserialize, Serialize};
use torronto_core::Identity;
use wasm_bindgen::JsValue;

pub use view::{Notice, PeerFile, PeerView, Save};

/// Who the browser peer is, kept in `localStorage` so a reload is the same peer: its
/// name (`browser-` and 8 hex digits) and, for private networks, its static key, in
/// the text of core's identity file (the key pair its node ID comes from).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerIdentity {
    pub name: String,
    pub key: String,
}

impl PeerIdentity {
    /// A new identity from the browser's random numbers.
    pub fn fresh() -> Result<PeerIdentity, crate::WebError> {
        let mut key = [0u8; 32];
        crate::util::random_bytes(&mut key)?;
        let key = Identity::from_random_bytes(key).to_file_text();
        Ok(PeerIdentity { name: format!("browser-{}", crate::util::random_hex(8)), key })
    }

    /// The name and key pair, if both are well formed (a damaged entry makes a fresh one).
    pub fn parts(&self) -> Option<(String, Identity)> {
        let suffix = self.name.strip_prefix("browser-")?;
        let name_ok = suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit());
        let key = Identity::from_file_text(&self.key).ok()?;
        name_ok.then(|| (self.name.clone(), key))
    }
}

/// An intent of the user, for the engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Posted first: the private network the engine joins (the secret's 64 hex digits,
    /// from the page's address), or none for an open network. Fixed for the engine's life.
    Start {
        secret: Option<String>,
        /// The peer's identity as this browser remembers it (none: a fresh one).
        identity: Option<PeerIdentity>,
    },
    /// A watched node has joined: keep a peer session to it (`addr` is its identity).
    EnsurePeer {
        url: String,
        addr: String,
    },
    /// The panel stopped watching the node at `url`.
    ForgetNode {
        url: String,
    },
    /// Share the picked file that comes with this message.
    Insert,
    Download {
        name: String,
    },
    /// Stop fetching the file and drop what this browser holds of it (the network's
    /// copies stay).
    Forget {
        name: String,
    },
    /// Assemble a complete file; `auto` also starts saving it.
    Save {
        name: String,
        auto: bool,
    },
    ClearStorage,
    Dismiss {
        id: u64,
    },
}

/// What the engine tells the page.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Report {
    /// Everything the page shows of the browser peer (sent at most every 150 ms).
    View(Box<PeerView>),
    /// The Blob that comes with this message holds the whole file `name`.
    Saved { name: String, auto: bool },
    /// Storage was cleared: reload the page.
    Reload,
}

/// One message, ready for `postMessage`.
pub fn encode<T: Serialize>(what: &T, extra: Option<&JsValue>) -> JsValue {
    let json = serde_json::to_string(what).unwrap_or_default();
    Array::of2(&JsValue::from_str(&json), extra.unwrap_or(&JsValue::UNDEFINED)).into()
}

/// A message as received, with its extra object (`undefined` if none).
pub fn decode<T: for<'de> Deserialize<'de>>(data: &JsValue) -> Option<(T, JsValue)> {
    let array: &Array = wasm_bindgen::JsCast::dyn_ref(data)?;
    // from_slice, not from_str: core decodes with serde_json's slice reader, and a second
    // reader would be a second copy of the whole deserializer in the bundle.
    let what = serde_json::from_slice(array.get(0).as_string()?.as_bytes()).ok()?;
    Some((what, array.get(1)))
}
