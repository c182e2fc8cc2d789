//! What can go wrong in the browser, by where it went wrong. Every variant displays as
//! the one line the page shows the user (a notice, a save's failure, the storage
//! banner); core is handed the same text inside its `StorageError`.

use std::fmt;

use torronto_core::{Code, StorageError};
use wasm_bindgen::{JsCast, JsValue};

#[derive(Clone, Debug, PartialEq)]
pub enum WebError {
    /// A JavaScript call threw: the exception as one readable line.
    Js(String),
    /// A WebSocket could not be opened or written to.
    WebSocket(String),
    /// A message header to send was not UTF-8 (serde_json only writes UTF-8).
    NotUtf8(String),
    /// The global offers no `indexedDB` (private browsing, typically).
    NoIndexedDb,
    /// The database would not open; the cause inside.
    OpenDatabase(Box<WebError>),
    /// An IndexedDB request or transaction failed with this DOMException.
    IndexedDb { name: String, message: String },
    /// An IndexedDB request failed without saying why.
    RequestFailed,
    /// A transaction was aborted without an error of its own.
    TransactionAborted,
    /// A transaction was refused for lack of space.
    QuotaFull,
    /// A chunk asked for is not in the browser's storage.
    ChunkMissing { file: String, index: u32 },
    /// A file to assemble lacks chunks.
    FileIncomplete { file: String, present: usize, chunks: u32 },
    /// A picked file no longer matches the manifest computed from it moments ago.
    PickedFileChanged { path: String },
    /// Core asked to read a file the user did not pick (or no longer is).
    NotPicked { path: String },
    /// The engine's worker could not start or stopped; the cause inside.
    WorkerStopped(Box<WebError>),
    /// The connect form's address field is empty.
    NoAddress,
    /// An address typed or pasted into the connect form names no host.
    NoHost { input: String },
    /// An address with a scheme other than ws, wss, http or https.
    UnsupportedScheme { scheme: String },
    /// The connect form has no control token, neither typed nor in the address.
    NoToken,
    /// The `secret=` in an address is not a network secret (64 hex digits).
    BadSecret,
    /// The secure handshake or channel failed (core's `SecureError`, as text).
    Secure(String),
}

impl WebError {
    /// A JS exception or error event, as one readable line.
    pub fn js(value: &JsValue) -> Self {
        WebError::Js(js_text(value))
    }

    /// A failure of core's secure handshake or channel.
    pub fn secure(e: torronto_core::SecureError) -> Self {
        WebError::Secure(e.to_string())
    }

    /// A WebSocket call that threw.
    pub fn web_socket(value: &JsValue) -> Self {
        WebError::WebSocket(js_text(value))
    }

    /// The failure of a storage command as core takes it, with the reply code the
    /// command's request is to be answered with.
    pub fn to_storage_error(&self, code: Code) -> StorageError {
        StorageError { code, message: self.to_string() }
    }
}

impl From<JsValue> for WebError {
    fn from(value: JsValue) -> Self {
        WebError::js(&value)
    }
}

impl fmt::Display for WebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebError::Js(text) | WebError::WebSocket(text) | WebError::NotUtf8(text) => f.write_str(text),
            WebError::NoIndexedDb => f.write_str("this browser offers no IndexedDB (private mode?)"),
            WebError::OpenDatabase(cause) => write!(f, "cannot open the browser's database: {cause}"),
            WebError::IndexedDb { name, message } => write!(f, "{name}: {message}"),
            WebError::RequestFailed => f.write_str("the browser's database refused the request"),
            WebError::TransactionAborted => f.write_str("transaction aborted"),
            WebError::QuotaFull => f.write_str("the browser's storage quota is full"),
            WebError::ChunkMissing { file, index } => {
                write!(f, "chunk {index} of {file} is not in the browser's storage")
            }
            WebError::FileIncomplete { file, present, chunks } => {
                write!(f, "{file}: {present} of {chunks} chunks are stored")
            }
            WebError::PickedFileChanged { path } => {
                write!(f, "{path} changed while it was being inserted; pick it again")
            }
            WebError::NotPicked { path } => write!(f, "{path} was not picked"),
            WebError::WorkerStopped(cause) => write!(f, "the browser peer stopped: {cause}"),
            WebError::NoAddress => f.write_str("enter the node's address, e.g. ws://127.0.0.1:8080/ws"),
            WebError::NoHost { input } => write!(f, "{input:?} has no host"),
            WebError::UnsupportedScheme { scheme } => {
                write!(f, "unsupported scheme {scheme}:// (use ws://, wss:// or http://)")
            }
            WebError::NoToken => {
                f.write_str("Enter the node's control token: it is in the address the node printed, after #token=.")
            }
            WebError::BadSecret => f.write_str(
                "the secret= in the address is not a network secret (64 hex digits): copy the whole address the node printed",
            ),
            WebError::Secure(text) => write!(f, "secure session: {text}"),
        }
    }
}

impl std::error::Error for WebError {}

/// The text of a JS exception: an `Error`'s message, a `DOMException`'s name and
/// message, a thrown string, or its debug form.
fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    if let Some(e) = v.dyn_ref::<web_sys::DomException>() {
        return format!("{}: {}", e.name(), e.message());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}
