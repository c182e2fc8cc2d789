//! The browser peer's storage: IndexedDB database `torronto`, three object stores.
//!
//! - `files`: key = file name; value `{name, size, digest, hashes}` (the manifest), put
//!   when core prepares a download or commits an insert. Restore reads it back.
//! - `chunks`: key = `[name, first]`; value = a Blob of up to [`RECORD_CHUNKS`]
//!   verified chunks of one file, concatenated (`first` is the smallest chunk number in
//!   the record, unique since a chunk is stored once). Records written by earlier
//!   versions hold a `Uint8Array` instead, and are read just as well.
//! - `index`: same key; value = the chunk numbers in that record, in order. Restore
//!   reads only this store to learn what the page holds.
//!
//! Why records of several chunks: each put costs Chromium about a millisecond whatever
//! its size, so a download stores 4 MiB per record (the benchmark's 256 MiB went from
//! 33 to 53 MiB/s going from 1 MiB records to 4 MiB ones). Why Blobs: a Blob is made
//! from the chunks as they are (a `Uint8Array` value was first concatenated, then
//! serialized and wrapped into a blob by Chromium anyway), and a chunk is
//! read back by slicing its record's Blob, so serving one chunk reads 64 KiB, not the
//! whole record. Where each chunk lives is kept in memory; the Blob handles of the
//! last records read are cached.
//!
//! A removed file's manifest and records are deleted together ([`Store::delete_file`]).
//!
//! Every operation is one transaction. Requests and transactions are awaited through
//! promises whose resolve/reject are the IDB handlers themselves, so no Rust closure is
//! leaked.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use js_sys::{Array, Object, Promise, Reflect, Uint32Array, Uint8Array};
use torronto_core::layout::{chunk_len, ChunkIndex};
use torronto_core::{ChunkSet, Digest, FileName, LocalFile, Manifest};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbOpenDbRequest, IdbRequest,
    IdbTransaction, IdbTransactionMode,
};

use crate::error::WebError;

const DB_NAME: &str = "torronto";
/// Version 2 stores chunks in records; version 1 data (one chunk per value) is dropped.
const DB_VERSION: u32 = 2;
const FILES: &str = "files";
const CHUNKS: &str = "chunks";
const INDEX: &str = "index";
/// Chunks per record at most (4 MiB).
pub const RECORD_CHUNKS: usize = 64;
/// Records whose values (Blob handles, small) are kept after a read.
const CACHED_RECORDS: usize = 32;

/// Where a chunk's bytes are: its record, and its place in it.
#[derive(Clone, Copy, Debug)]
struct Place {
    first: u32,
    offset: u32,
    len: u32,
}

/// Chunks of one file bound for one record: name, file size, (index, bytes).
type Group<'a> = (&'a str, u64, Vec<(u32, &'a JsValue)>);

/// An open database. Cheap to clone (a handle).
#[derive(Clone, Debug)]
pub struct Store {
    db: IdbDatabase,
    places: Rc<RefCell<HashMap<String, HashMap<u32, Place>>>>,
    cache: Rc<RefCell<VecDeque<(String, u32, JsValue)>>>,
}

/// Waits for an IDB request to succeed; its result is then in `req.result()`.
async fn request_done(req: &IdbRequest) -> Result<JsValue, WebError> {
    let promise = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => Ok(req.result()?),
        Err(_) => Err(req
            .error()
            .ok()
            .flatten()
            .map(|e| WebError::IndexedDb { name: e.name(), message: e.message() })
            .unwrap_or(WebError::RequestFailed)),
    }
}

/// Waits for a transaction to commit.
async fn transaction_done(tx: &IdbTransaction) -> Result<(), WebError> {
    let promise = Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onerror(Some(&reject));
        tx.set_onabort(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    tx.set_oncomplete(None);
    tx.set_onerror(None);
    tx.set_onabort(None);
    outcome.map(drop).map_err(|_| match tx.error() {
        Some(e) if e.name() == "QuotaExceededError" => WebError::QuotaFull,
        Some(e) => WebError::IndexedDb { name: e.name(), message: e.message() },
        None => WebError::TransactionAborted,
    })
}

fn chunk_key(name: &str, index: u32) -> JsValue {
    Array::of2(&JsValue::from_str(name), &JsValue::from(index)).into()
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

impl Store {
    /// Opens (creating on first use) the database.
    pub async fn open() -> Result<Store, WebError> {
        let factory: IdbFactory = crate::util::global("indexedDB").ok_or(WebError::NoIndexedDb)?.unchecked_into();
        let req: IdbOpenDbRequest = factory.open_with_u32(DB_NAME, DB_VERSION)?;
        let req2 = req.clone();
        let upgrade = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            if let Ok(db) = req2.result() {
                let db: IdbDatabase = db.unchecked_into();
                let names = db.object_store_names();
                // Version 1 kept one chunk per value: start afresh (the network has them).
                for store in [FILES, CHUNKS, INDEX] {
                    if names.contains(store) {
                        let _ = db.delete_object_store(store);
                    }
                    let _ = db.create_object_store(store);
                }
            }
        });
        req.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let result = request_done(&req).await;
        req.set_onupgradeneeded(None);
        drop(upgrade);
        let db: IdbDatabase = result.map_err(|e| WebError::OpenDatabase(Box::new(e)))?.unchecked_into();
        Ok(Store { db, places: Rc::default(), cache: Rc::default() })
    }

    fn tx(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction, WebError> {
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        self.db.transaction_with_str_sequence_and_mode(&names, mode).map_err(WebError::from)
    }

    fn store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore, WebError> {
        tx.object_store(name).map_err(WebError::from)
    }

    /// Every file with a manifest, and the chunks of it that are stored.
    pub async fn load(&self) -> Result<Vec<LocalFile>, WebError> {
        let tx = self.tx(&[FILES, INDEX], IdbTransactionMode::Readonly)?;
        let files_req = Self::store(&tx, FILES)?.get_all()?;
        let index = Self::store(&tx, INDEX)?;
        let keys_req = index.get_all_keys()?;
        let lists_req = index.get_all()?;
        transaction_done(&tx).await?;
        let records: Array = files_req.result()?.unchecked_into();
        let keys: Array = keys_req.result()?.unchecked_into();
        let lists: Array = lists_req.result()?.unchecked_into();

        let mut out = Vec::new();
        let mut sizes = HashMap::new();
        for record in records.iter() {
            // A record that no longer parses (written by another version) is skipped,
            // not trusted: its chunks will simply be fetched again if wanted.
            let (Some(name), Some(size), Some(digest)) =
                (get(&record, "name").as_string(), get(&record, "size").as_f64(), get(&record, "digest").as_string())
            else {
                continue;
            };
            let hashes = get(&record, "hashes").dyn_into::<Uint8Array>().map(|a| a.to_vec()).unwrap_or_default();
            let (Ok(file), Ok(digest)) = (FileName::new(&name), digest.parse::<Digest>()) else {
                continue;
            };
            let Ok(manifest) = Manifest::from_body(size as u64, digest, &hashes) else {
                continue;
            };
            sizes.insert(name, manifest.size());
            out.push(LocalFile {
                have: ChunkSet::new(manifest.chunk_count()),
                name: file,
                manifest,
                stored_as: None,
                published: false,
            });
        }
        for (key, list) in keys.iter().zip(lists.iter()) {
            let key: Array = key.unchecked_into();
            let (Some(name), Some(first)) = (key.get(0).as_string(), key.get(1).as_f64()) else { continue };
            let Some(&size) = sizes.get(&name) else { continue };
            let Ok(list) = list.dyn_into::<Uint32Array>() else { continue };
            self.place(&name, size, first as u32, &list.to_vec());
        }
        let places = self.places.borrow();
        for f in &mut out {
            for &i in places.get(f.name.as_str()).map(|p| p.keys().collect::<Vec<_>>()).unwrap_or_default() {
                if i < f.manifest.chunk_count() {
                    f.have.insert(ChunkIndex(i));
                }
            }
        }
        Ok(out)
    }

    /// Records where the chunks `indices` of a record starting at `first` are.
    fn place(&self, name: &str, size: u64, first: u32, indices: &[u32]) {
        let mut places = self.places.borrow_mut();
        let file = places.entry(name.to_string()).or_default();
        let mut offset = 0u32;
        for &i in indices {
            let len = chunk_len(size, ChunkIndex(i)) as u32;
            file.insert(i, Place { first, offset, len });
            offset += len;
        }
    }

    /// Keeps a file's manifest, so its chunks can be restored and verified later.
    pub async fn put_manifest(&self, name: &FileName, manifest: &Manifest) -> Result<(), WebError> {
        let record = Object::new();
        set(&record, "name", &JsValue::from_str(name.as_str()));
        set(&record, "size", &JsValue::from_f64(manifest.size() as f64));
        set(&record, "digest", &JsValue::from_str(&manifest.digest().to_string()));
        set(&record, "hashes", &Uint8Array::from(&manifest.to_body()[..]).into());
        let tx = self.tx(&[FILES], IdbTransactionMode::Readwrite)?;
        Self::store(&tx, FILES)?.put_with_key(&record, &JsValue::from_str(name.as_str()))?;
        transaction_done(&tx).await
    }

    /// Stores chunks (name, file size, index, bytes as an `ArrayBuffer` or `Uint8Array`)
    /// in one transaction, as records of up to [`RECORD_CHUNKS`] chunks of one file.
    pub async fn write_chunks(&self, chunks: &[(String, u64, u32, JsValue)]) -> Result<(), WebError> {
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (name, size, index, data) in chunks {
            match groups.iter_mut().find(|(n, _, g)| n == name && g.len() < RECORD_CHUNKS) {
                Some((_, _, g)) => g.push((*index, data)),
                None => groups.push((name, *size, vec![(*index, data)])),
            }
        }
        let tx = self.tx(&[CHUNKS, INDEX], IdbTransactionMode::Readwrite)?;
        let (store, index) = (Self::store(&tx, CHUNKS)?, Self::store(&tx, INDEX)?);
        let mut placed = Vec::new();
        for (name, size, group) in &groups {
            let first = group.iter().map(|(i, _)| *i).min().unwrap_or(0);
            let indices: Vec<u32> = group.iter().map(|(i, _)| *i).collect();
            let key = chunk_key(name, first);
            let parts: Array = group.iter().map(|(_, d)| *d).collect();
            let blob = Blob::new_with_u8_array_sequence(&parts)?;
            store.put_with_key(&blob, &key)?;
            index.put_with_key(&Uint32Array::from(&indices[..]), &key)?;
            placed.push((*name, *size, first, indices));
        }
        transaction_done(&tx).await?;
        for (name, size, first, indices) in placed {
            self.place(name, size, first, &indices);
        }
        Ok(())
    }

    /// Reads chunks (name, index) in one transaction; each comes back on its own,
    /// missing or not.
    pub async fn read_chunks(&self, chunks: &[(String, u32)]) -> Result<Vec<Result<Bytes, WebError>>, WebError> {
        let places: Vec<Option<Place>> = {
            let p = self.places.borrow();
            chunks.iter().map(|(name, i)| p.get(name).and_then(|f| f.get(i)).copied()).collect()
        };
        // The records needed that are not cached, each read once.
        let mut wanted: Vec<(String, u32)> = Vec::new();
        for ((name, _), place) in chunks.iter().zip(&places) {
            if let Some(place) = place {
                let key = (name.clone(), place.first);
                if self.cached(&key.0, key.1).is_none() && !wanted.contains(&key) {
                    wanted.push(key);
                }
            }
        }
        if !wanted.is_empty() {
            let tx = self.tx(&[CHUNKS], IdbTransactionMode::Readonly)?;
            let store = Self::store(&tx, CHUNKS)?;
            let mut requests = Vec::new();
            for (name, first) in &wanted {
                requests.push(store.get(&chunk_key(name, *first))?);
            }
            transaction_done(&tx).await?;
            let mut cache = self.cache.borrow_mut();
            for ((name, first), req) in wanted.into_iter().zip(requests) {
                if let Ok(record) = req.result() {
                    if record.is_instance_of::<Blob>() || record.is_instance_of::<Uint8Array>() {
                        cache.push_back((name, first, record));
                        if cache.len() > CACHED_RECORDS {
                            cache.pop_front();
                        }
                    }
                }
            }
        }
        // Every chunk's bytes: a slice of its record, read from a Blob concurrently.
        let pieces: Vec<Option<JsValue>> = chunks
            .iter()
            .zip(places)
            .map(|((name, _), place)| {
                let p = place?;
                let record = self.cached(name, p.first)?;
                let (start, end) = (p.offset, p.offset + p.len);
                if let Some(blob) = record.dyn_ref::<Blob>() {
                    let ok = f64::from(end) <= blob.size();
                    let slice = blob.slice_with_f64_and_f64(start.into(), end.into()).ok().filter(|_| ok)?;
                    Some(slice.array_buffer().into())
                } else {
                    let bytes: &Uint8Array = record.unchecked_ref();
                    (end <= bytes.length()).then(|| bytes.subarray(start, end).into())
                }
            })
            .collect();
        let reading: Array = pieces.iter().flatten().collect();
        let read: Array = JsFuture::from(Promise::all(&reading)).await?.unchecked_into();
        let mut read = read.iter();
        Ok(chunks
            .iter()
            .zip(pieces)
            .map(|((name, index), piece)| {
                piece
                    .and(read.next())
                    .map(|data| Bytes::from(Uint8Array::new(&data).to_vec()))
                    .ok_or_else(|| WebError::ChunkMissing { file: name.clone(), index: *index })
            })
            .collect())
    }

    fn cached(&self, name: &str, first: u32) -> Option<JsValue> {
        self.cache.borrow().iter().find(|(n, f, _)| n == name && *f == first).map(|(_, _, d)| d.clone())
    }

    /// The whole file as a Blob, its chunks in order (all must be present).
    pub async fn file_blob(&self, name: &FileName, size: u64, chunks: u32) -> Result<Blob, WebError> {
        let tx = self.tx(&[CHUNKS, INDEX], IdbTransactionMode::Readonly)?;
        let range = IdbKeyRange::bound(&chunk_key(name.as_str(), 0), &chunk_key(name.as_str(), chunks))?;
        let data_req = Self::store(&tx, CHUNKS)?.get_all_with_key(&range)?;
        let index_req = Self::store(&tx, INDEX)?.get_all_with_key(&range)?;
        transaction_done(&tx).await?;
        let records: Array = data_req.result()?.unchecked_into();
        let lists: Array = index_req.result()?.unchecked_into();
        // Records hold chunks in arrival order: put each piece in its place.
        // (Slices of Blobs are references: nothing is read until the page reads the file.)
        let mut parts: Vec<Option<JsValue>> = vec![None; chunks as usize];
        for (record, list) in records.iter().zip(lists.iter()) {
            let Ok(list) = list.dyn_into::<Uint32Array>() else { continue };
            let mut offset = 0u32;
            for i in list.to_vec() {
                let len = chunk_len(size, ChunkIndex(i)) as u32;
                let end = offset + len;
                let part: Option<JsValue> = if let Some(blob) = record.dyn_ref::<Blob>() {
                    blob.slice_with_f64_and_f64(offset.into(), end.into()).ok().map(Into::into)
                } else {
                    record.dyn_ref::<Uint8Array>().map(|bytes| bytes.subarray(offset, end).into())
                };
                if let Some(slot) = parts.get_mut(i as usize) {
                    *slot = part;
                }
                offset = end;
            }
        }
        let present = parts.iter().filter(|p| p.is_some()).count();
        if present != chunks as usize {
            return Err(WebError::FileIncomplete { file: name.to_string(), present, chunks });
        }
        let sequence: Array = parts.into_iter().flatten().collect();
        let options = BlobPropertyBag::new();
        options.set_type("application/octet-stream");
        Blob::new_with_u8_array_sequence_and_options(&sequence, &options).map_err(WebError::from)
    }

    /// Deletes file `name` (its manifest and every chunk) if it is the content `digest`:
    /// it was removed from the network.
    pub async fn delete_file(&self, name: &FileName, digest: Digest) -> Result<(), WebError> {
        let key = JsValue::from_str(name.as_str());
        let read = self.tx(&[FILES], IdbTransactionMode::Readonly)?;
        let record = request_done(&Self::store(&read, FILES)?.get(&key)?).await?;
        // Another content kept under the name since (inserted again): not this one's.
        if get(&record, "digest").as_string().is_some_and(|d| d != digest.to_string()) {
            return Ok(());
        }
        let tx = self.tx(&[FILES, CHUNKS, INDEX], IdbTransactionMode::Readwrite)?;
        Self::store(&tx, FILES)?.delete(&key)?;
        let range = IdbKeyRange::bound(&chunk_key(name.as_str(), 0), &chunk_key(name.as_str(), u32::MAX))?;
        Self::store(&tx, CHUNKS)?.delete(&range)?;
        Self::store(&tx, INDEX)?.delete(&range)?;
        transaction_done(&tx).await?;
        self.places.borrow_mut().remove(name.as_str());
        self.cache.borrow_mut().retain(|(n, _, _)| n != name.as_str());
        Ok(())
    }

    /// Forgets everything the page holds.
    pub async fn clear(&self) -> Result<(), WebError> {
        let tx = self.tx(&[FILES, CHUNKS, INDEX], IdbTransactionMode::Readwrite)?;
        for store in [FILES, CHUNKS, INDEX] {
            Self::store(&tx, store)?.clear()?;
        }
        transaction_done(&tx).await?;
        self.places.borrow_mut().clear();
        self.cache.borrow_mut().clear();
        Ok(())
    }
}
