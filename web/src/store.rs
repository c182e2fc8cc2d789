//! The browser peer's storage: IndexedDB database `torronto`, two object stores.
//!
//! - `files`: key = file name; value `{name, size, digest, hashes}` (the manifest), put
//!   when core prepares a download or commits an insert. Restore reads it back.
//! - `chunks`: key = `[name, index]`; value = the chunk's bytes (a `Uint8Array`), only
//!   ever verified chunks. The chunks present are what the page holds after a reload.
//!
//! Every operation is one transaction; callers batch chunks so that a transaction
//! carries many of them (a transaction per chunk would cap throughput far below what
//! the network delivers). Requests and transactions are awaited through promises
//! whose resolve/reject are the IDB handlers themselves, so no Rust closure is leaked.

use std::collections::HashMap;

use bytes::Bytes;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use torronto_core::{ChunkSet, Digest, FileName, LocalFile, Manifest};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, IdbDatabase, IdbKeyRange, IdbObjectStore, IdbOpenDbRequest, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

use crate::util::js_error;

const DB_NAME: &str = "torronto";
const DB_VERSION: u32 = 1;
const FILES: &str = "files";
const CHUNKS: &str = "chunks";

/// An open database. Cheap to clone (a handle).
#[derive(Clone, Debug)]
pub struct Store {
    db: IdbDatabase,
}

/// Waits for an IDB request to succeed; its result is then in `req.result()`.
async fn request_done(req: &IdbRequest) -> Result<JsValue, String> {
    let promise = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => req.result().map_err(|e| js_error(&e)),
        Err(_) => Err(req.error().ok().flatten().map(|e| format!("{}: {}", e.name(), e.message())).unwrap_or_default()),
    }
}

/// Waits for a transaction to commit.
async fn transaction_done(tx: &IdbTransaction) -> Result<(), String> {
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
        Some(e) if e.name() == "QuotaExceededError" => "the browser's storage quota is full".to_string(),
        Some(e) => format!("{}: {}", e.name(), e.message()),
        None => "transaction aborted".to_string(),
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
    pub async fn open() -> Result<Store, String> {
        let window = web_sys::window().ok_or("no window")?;
        let factory =
            window.indexed_db().map_err(|e| js_error(&e))?.ok_or("this browser offers no IndexedDB (private mode?)")?;
        let req: IdbOpenDbRequest = factory.open_with_u32(DB_NAME, DB_VERSION).map_err(|e| js_error(&e))?;
        let req2 = req.clone();
        let upgrade = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            if let Ok(db) = req2.result() {
                let db: IdbDatabase = db.unchecked_into();
                let names = db.object_store_names();
                for store in [FILES, CHUNKS] {
                    if !names.contains(store) {
                        let _ = db.create_object_store(store);
                    }
                }
            }
        });
        req.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let result = request_done(&req).await;
        req.set_onupgradeneeded(None);
        drop(upgrade);
        let db: IdbDatabase = result.map_err(|e| format!("cannot open the browser's database: {e}"))?.unchecked_into();
        Ok(Store { db })
    }

    fn tx(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction, String> {
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        self.db.transaction_with_str_sequence_and_mode(&names, mode).map_err(|e| js_error(&e))
    }

    fn store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore, String> {
        tx.object_store(name).map_err(|e| js_error(&e))
    }

    /// Every file with a manifest, and the chunks of it that are stored.
    pub async fn load(&self) -> Result<Vec<LocalFile>, String> {
        let tx = self.tx(&[FILES, CHUNKS], IdbTransactionMode::Readonly)?;
        let files_req = Self::store(&tx, FILES)?.get_all().map_err(|e| js_error(&e))?;
        let keys_req = Self::store(&tx, CHUNKS)?.get_all_keys().map_err(|e| js_error(&e))?;
        transaction_done(&tx).await?;
        let records: Array = files_req.result().map_err(|e| js_error(&e))?.unchecked_into();
        let keys: Array = keys_req.result().map_err(|e| js_error(&e))?.unchecked_into();

        let mut held: HashMap<String, Vec<u32>> = HashMap::new();
        for key in keys.iter() {
            let key: Array = key.unchecked_into();
            if let (Some(name), Some(index)) = (key.get(0).as_string(), key.get(1).as_f64()) {
                held.entry(name).or_default().push(index as u32);
            }
        }
        let mut out = Vec::new();
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
            let mut have = ChunkSet::new(manifest.chunk_count());
            for &i in held.get(&name).into_iter().flatten() {
                if i < manifest.chunk_count() {
                    have.insert(i);
                }
            }
            out.push(LocalFile { name: file, manifest, have });
        }
        Ok(out)
    }

    /// Keeps a file's manifest, so its chunks can be restored and verified later.
    pub async fn put_manifest(&self, name: &FileName, manifest: &Manifest) -> Result<(), String> {
        let record = Object::new();
        set(&record, "name", &JsValue::from_str(name.as_str()));
        set(&record, "size", &JsValue::from_f64(manifest.size() as f64));
        set(&record, "digest", &JsValue::from_str(&manifest.digest().to_string()));
        set(&record, "hashes", &Uint8Array::from(&manifest.to_body()[..]).into());
        let tx = self.tx(&[FILES], IdbTransactionMode::Readwrite)?;
        Self::store(&tx, FILES)?.put_with_key(&record, &JsValue::from_str(name.as_str())).map_err(|e| js_error(&e))?;
        transaction_done(&tx).await
    }

    /// Stores chunks in one transaction.
    pub async fn write_chunks(&self, chunks: &[(String, u32, Bytes)]) -> Result<(), String> {
        let tx = self.tx(&[CHUNKS], IdbTransactionMode::Readwrite)?;
        let store = Self::store(&tx, CHUNKS)?;
        for (name, index, data) in chunks {
            store.put_with_key(&Uint8Array::from(&data[..]), &chunk_key(name, *index)).map_err(|e| js_error(&e))?;
        }
        transaction_done(&tx).await
    }

    /// Reads chunks in one transaction; each comes back on its own, missing or not.
    pub async fn read_chunks(&self, chunks: &[(String, u32)]) -> Result<Vec<Result<Bytes, String>>, String> {
        let tx = self.tx(&[CHUNKS], IdbTransactionMode::Readonly)?;
        let store = Self::store(&tx, CHUNKS)?;
        let mut requests = Vec::with_capacity(chunks.len());
        for (name, index) in chunks {
            requests.push(store.get(&chunk_key(name, *index)).map_err(|e| js_error(&e))?);
        }
        transaction_done(&tx).await?;
        Ok(requests
            .iter()
            .zip(chunks)
            .map(|(req, (name, index))| match req.result().ok().and_then(|v| v.dyn_into::<Uint8Array>().ok()) {
                Some(data) => Ok(Bytes::from(data.to_vec())),
                None => Err(format!("chunk {index} of {name} is not in the browser's storage")),
            })
            .collect())
    }

    /// The whole file as a Blob, its chunks in order (all must be present).
    pub async fn file_blob(&self, name: &FileName, chunks: u32) -> Result<Blob, String> {
        let tx = self.tx(&[CHUNKS], IdbTransactionMode::Readonly)?;
        let range = IdbKeyRange::bound(&chunk_key(name.as_str(), 0), &chunk_key(name.as_str(), chunks))
            .map_err(|e| js_error(&e))?;
        let req = Self::store(&tx, CHUNKS)?.get_all_with_key(&range).map_err(|e| js_error(&e))?;
        transaction_done(&tx).await?;
        let parts: Array = req.result().map_err(|e| js_error(&e))?.unchecked_into();
        if parts.length() != chunks {
            return Err(format!("{name}: {} of {chunks} chunks are stored", parts.length()));
        }
        let options = BlobPropertyBag::new();
        options.set_type("application/octet-stream");
        Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(|e| js_error(&e))
    }

    /// Forgets everything the page holds.
    pub async fn clear(&self) -> Result<(), String> {
        let tx = self.tx(&[FILES, CHUNKS], IdbTransactionMode::Readwrite)?;
        Self::store(&tx, FILES)?.clear().map_err(|e| js_error(&e))?;
        Self::store(&tx, CHUNKS)?.clear().map_err(|e| js_error(&e))?;
        transaction_done(&tx).await
    }
}
