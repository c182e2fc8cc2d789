//! SHA-256 of chunk bodies with the browser's WebCrypto: native, hardware-assisted
//! code on the browser's own crypto thread, several times faster than SHA-256 compiled
//! to wasm (about 190 MiB/s here) and off the engine's thread. WebCrypto exists only in
//! secure contexts (https, or http on loopback); elsewhere core hashes in wasm.

use std::future::Future;

use js_sys::{ArrayBuffer, Uint8Array};
use torronto_core::manifest::ChunkHash;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::SubtleCrypto;

#[derive(Debug)]
pub struct Hasher(SubtleCrypto);

impl Hasher {
    /// The global's WebCrypto, if this context has it.
    pub fn new() -> Option<Self> {
        let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
        let subtle = js_sys::Reflect::get(&crypto, &"subtle".into()).ok()?;
        subtle.dyn_into::<SubtleCrypto>().ok().map(Self)
    }

    /// The SHA-256 of `data`, or `None` if WebCrypto failed (core then hashes it).
    /// `data` is copied when this is called, so it may be used meanwhile.
    pub fn digest(&self, data: &ArrayBuffer) -> impl Future<Output = Option<ChunkHash>> {
        let promise = self.0.digest_with_str_and_buffer_source("SHA-256", data).ok();
        async move {
            let digest = JsFuture::from(promise?).await.ok()?;
            Uint8Array::new(&digest).to_vec().try_into().ok()
        }
    }
}
