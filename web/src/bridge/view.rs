//! The browser peer as the page shows it: the engine builds a [`PeerView`] from its
//! node and sends it in a `Report::View`; the page renders it as it is.

use serde::{Deserialize, Serialize};
use torronto_core::Code;

/// Where the saved copy of a file is, once assembled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Save {
    Assembling,
    /// The whole file went to the page as a Blob ([`super::Report::Saved`]).
    Ready,
    Failed(String),
}

/// Something to tell the user, newest last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub id: u64,
    pub ok: bool,
    #[serde(with = "code_number")]
    pub code: Option<Code>,
    pub text: String,
}

/// A reply code crosses to the page as its number.
mod code_number {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use torronto_core::Code;

    pub fn serialize<S: Serializer>(code: &Option<Code>, s: S) -> Result<S::Ok, S::Error> {
        code.map(|c| c as u8).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Code>, D::Error> {
        Ok(Option::<u8>::deserialize(d)?.and_then(|n| Code::from_number(n.into())))
    }
}

/// One file as the browser peer sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerFile {
    pub name: String,
    pub size: u64,
    pub local: f64,
    pub system: f64,
    pub least: u32,
    pub average: f64,
    pub requested: bool,
    /// Bytes per second arriving, while downloading.
    pub rate: Option<f64>,
    pub save: Option<Save>,
}

/// A snapshot for rendering.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerView {
    pub me: String,
    pub ready: bool,
    pub storage_error: Option<String>,
    pub peers: Vec<String>,
    pub files: Vec<PeerFile>,
    /// Files being inserted from this computer: name, bytes done, total.
    pub inserting: Vec<(String, u64, u64)>,
    pub notices: Vec<Notice>,
    pub chunks_fetched: u64,
    pub chunks_served: u64,
    /// Chunk bytes per second arriving from and sent to peers, over the last seconds.
    pub down: f64,
    pub up: f64,
    /// Downloaded chunks are hashed with WebCrypto (else in wasm, by core).
    pub webcrypto: bool,
}
