//! Sharing a file the user picked: core runs it through Insert like any node; the
//! storage commands hash it and copy it into IndexedDB from the `File`.

use std::cell::RefCell;
use std::rc::Weak;

use bytes::Bytes;
use torronto_core::layout::{chunk_count, chunk_range};
use torronto_core::{ChunkIndex, Code, FileName, ImportId, ManifestBuilder, Refusal, StorageError};
use wasm_bindgen_futures::JsFuture;

use super::{Engine, SLICE};
use crate::error::WebError;
use crate::store::Store;
use crate::util::now_ms;

impl Engine {
    /// Shares a file chosen with the picker: core runs it through Insert like any
    /// node, and the storage commands read it from the `File`.
    pub fn insert_file(&mut self, file: web_sys::File) {
        let path = file.name();
        if self.picked.contains_key(&path) {
            self.notice(false, None, format!("{path} is already being inserted"));
            return;
        }
        if !self.ready {
            self.notice(false, None, "the browser's storage is not open yet; try again in a moment".into());
            return;
        }
        self.picked.insert(path.clone(), file);
        let id = self.node.insert(now_ms(), path.clone());
        self.inserts.insert(id, path);
        self.drain();
    }

    /// Core has inserted the file (or refused it): tell the user how it went.
    pub(super) fn insert_answered(&mut self, id: ImportId, result: Result<(), Refusal>) {
        let Some(path) = self.inserts.remove(&id) else { return };
        self.picked.remove(&path);
        self.inserting.remove(&path);
        let (code, text) = match result {
            Ok(()) => (Code::Ok, format!("{path} is shared: the network can fetch it from this browser")),
            Err(Refusal { code, reason }) => (code, format!("{path}: {reason}")),
        };
        self.notice(code == Code::Ok, Some(code), text);
    }
}

/// Computes a picked file's manifest, reporting progress.
pub(super) async fn hash_file(
    weak: &Weak<RefCell<Engine>>,
    path: &str,
    file: &web_sys::File,
) -> Result<torronto_core::Manifest, StorageError> {
    let size = file.size() as u64;
    let mut builder = ManifestBuilder::new();
    let mut done = 0;
    while done < size {
        let end = (done + SLICE).min(size);
        let bytes = read_slice(file, done, end)
            .await
            .map_err(|message| StorageError { code: Code::FileMissing, message: format!("{path}: {message}") })?;
        builder.update(&bytes);
        done = end;
        progress(weak, path, done / 2, size);
    }
    builder.finish().map_err(|e| StorageError { code: Code::BadRequest, message: format!("{path}: {e}") })
}

/// Copies a picked file into IndexedDB chunk by chunk, checking each against the
/// manifest computed moments ago (the file may have changed on disk since).
pub(super) async fn store_file(
    weak: &Weak<RefCell<Engine>>,
    store: &Store,
    path: &str,
    file: &web_sys::File,
    name: &FileName,
    manifest: &torronto_core::Manifest,
) -> Result<(), WebError> {
    let size = manifest.size();
    let n = chunk_count(size);
    let per_slice = (SLICE / torronto_core::layout::CHUNK_SIZE) as u32;
    let mut first = 0;
    while first < n {
        let last = (first + per_slice).min(n);
        let start = chunk_range(size, ChunkIndex(first)).start;
        let end = chunk_range(size, ChunkIndex(last - 1)).end;
        let bytes = Bytes::from(read_slice(file, start, end).await?);
        let mut rows = Vec::new();
        for i in first..last {
            let range = chunk_range(size, ChunkIndex(i));
            let data = bytes.slice((range.start - start) as usize..(range.end - start) as usize);
            if !manifest.verify(ChunkIndex(i), &data) {
                return Err(WebError::PickedFileChanged { path: path.to_string() });
            }
            rows.push((name.to_string(), size, i, js_sys::Uint8Array::from(&data[..]).into()));
        }
        store.write_chunks(&rows).await?;
        first = last;
        progress(weak, path, size / 2 + end / 2, size);
    }
    store.put_manifest(name, manifest).await
}

async fn read_slice(file: &web_sys::File, start: u64, end: u64) -> Result<Vec<u8>, WebError> {
    let blob = file.slice_with_f64_and_f64(start as f64, end as f64)?;
    let buffer = JsFuture::from(blob.array_buffer()).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

fn progress(weak: &Weak<RefCell<Engine>>, path: &str, done: u64, total: u64) {
    if let Some(engine) = weak.upgrade() {
        let mut e = engine.borrow_mut();
        e.inserting.insert(path.to_string(), (done, total));
        e.changed();
    }
}
