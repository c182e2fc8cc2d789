//! torronto-web: the browser app, a control panel for any node and a lightweight peer.
//!
//! Built for `wasm32-unknown-unknown` only, by `scripts/build-web.sh` (profile `web`,
//! then `wasm-bindgen --target web` into `web/dist`, which a node's `--ws` listener
//! serves at `/`). `web/static/` holds `index.html` and the CSS.
//!
//! Two threads, one bundle: the page runs the yew interface (`ui_main`) and starts a
//! dedicated module worker (`static/worker.js`) that runs the browser peer's engine
//! (`worker_main`), so hashing, IndexedDB and the peer sockets never compete with
//! Chromium's own work on the page's thread. They talk by `postMessage` ([`bridge`]).
//!
//! Layout, one idea per module:
//! - [`util`]: the clock core is driven by, randomness, lower case, readable numbers;
//! - [`error`]: [`WebError`], everything that can fail in the browser, displayed as
//!   the line the user is shown;
//! - [`socket`]: a WebSocket carrying protocol frames (text = header, binary = body),
//!   decoded by core's `MessageReader`; in a private network, core's handshake first and
//!   then sealed records carrying the frame stream (the secret comes from the page's
//!   address, `#token=…&secret=…`);
//! - [`store`]: IndexedDB (`files` = manifests, `chunks` = verified chunks in records
//!   of up to 64, `index` = which chunks each record holds);
//! - [`digest`]: SHA-256 of downloaded chunks with WebCrypto, off the engine's thread;
//! - [`rates`]: transfer rates from a node's byte counters (core's status), for the
//!   node cards and the browser peer alike;
//! - [`engine`] (in the worker): [`engine::PeerEngine`], the page's own
//!   `torronto_core::Node` (identity `browser-<8 hex digits>` and, in a private network, a
//!   static key, both kept in `localStorage` by the page; port 0; fetching only what
//!   the user asks for) driven by peer sockets, the store and timers — the wasm twin of
//!   native-node's driver, with no protocol logic of its own;
//! - [`worker`] (in the worker): the engine's message loop;
//! - [`bridge`]: the commands (page → worker), the reports (worker → page) and the
//!   view of the browser peer they carry (`PeerView`, `PeerFile`, `Notice`, `Save`);
//! - [`client`] (in the page): [`client::EngineClient`] starts the worker and sends it
//!   commands; its reports become updates of [`client::PeerState`], a yew reducer;
//! - [`control`] (in the page): a control session to one node (Join, Leave, Insert,
//!   Query polled twice a second, replies matched to requests; a refused token ends it,
//!   an unreachable node is tried five times with a growing delay);
//! - `ui`: yew components. `App` holds the peer's state, provides the engine's client
//!   through a context and lists the watched nodes (remembered by URL in
//!   `localStorage`, never with tokens; a new `#token=` in the address adds one);
//!   `NodePanel` opens its control session in a hook (and tries a new token in a second
//!   one before it replaces a working session) and renders the node's status, its
//!   peers (how complete each is, their rates), file table and chunk map; `BrowserPeer` renders the page's peer. File tables are
//!   searched, sorted and paged by `ui::listing`; a node's rates come from
//!   successive Query answers ([`rates`]); two or more watched nodes get the
//!   files × nodes overview (`ui::overview`); closing the tab asks first while a
//!   transfer runs or the page holds the only copy (`ui` `use_leave_warning`); notices (dismissible, expiring, in
//!   aria-live regions) and copy badges are `ui::widgets`. Components only render state
//!   and send intents. The CSS (`static/style.css`) holds the narrow-screen layout
//!   (stacked file cards below 700 px) and the dark palette (`prefers-color-scheme`).
//!
//! Each watched node gets two WebSockets: the control session (in the page), and —
//! once the node has joined — a peer session (in the worker) the page's node treats
//! as a connection it dialled, so the page announces its chunks, serves them and
//! counts in the nodes' replication.

pub mod bridge;
pub mod client;
pub mod control;
pub mod digest;
pub mod engine;
pub mod error;
pub mod rates;
pub mod socket;
pub mod store;
mod ui;
pub mod util;
pub mod worker;

pub use error::WebError;
use wasm_bindgen::prelude::*;

/// The page's entry point (`index.html` calls it once the module is loaded).
#[wasm_bindgen]
pub fn ui_main() {
    yew::Renderer::<ui::App>::new().render();
}
