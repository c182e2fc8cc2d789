//! Storage commands from core, run against IndexedDB: chunk writes gathered into
//! record-sized transactions, chunk reads batched, manifests kept.

use gloo_timers::callback::Timeout;
use torronto_core::{Code, StorageCommand, StorageError, StorageEvent};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;

use super::picked::{hash_file, store_file};
use super::{Engine, WRITE_BATCH, WRITE_DELAY_MS, WRITE_IDLE_MS};
use crate::error::WebError;
use crate::util::now_ms;

impl Engine {
    /// Runs one storage command of core's; results come back through `on_storage`
    /// (or `ready_events`, when they are known at once).
    pub(super) fn storage(&mut self, cmd: StorageCommand) {
        let Some(store) = self.store.clone() else {
            self.storage_unavailable(cmd);
            return;
        };
        match cmd {
            StorageCommand::Import { id, path, .. } => {
                self.imports.insert(id, path.clone());
                let Some(file) = self.picked.get(&path).cloned() else {
                    let error = WebError::NotPicked { path }.to_storage_error(Code::FileMissing);
                    self.ready_events.push(StorageEvent::Imported { id, result: Err(error) });
                    return;
                };
                self.inserting.insert(path.clone(), (0, file.size() as u64));
                let weak = self.weak.clone();
                spawn_local(async move {
                    let result = hash_file(&weak, &path, &file).await;
                    if let Some(e) = weak.upgrade() {
                        e.borrow_mut().on_storage(StorageEvent::Imported { id, result });
                    }
                });
            }
            StorageCommand::Commit { id, name, manifest } => {
                let path = self.imports.remove(&id).unwrap_or_default();
                let file = self.picked.get(&path).cloned();
                let weak = self.weak.clone();
                spawn_local(async move {
                    let result = match file {
                        Some(file) => store_file(&weak, &store, &path, &file, &name, &manifest).await,
                        None => Err(WebError::NotPicked { path }),
                    };
                    let result = result.map_err(|e| e.to_storage_error(Code::BadPermission));
                    if let Some(e) = weak.upgrade() {
                        e.borrow_mut().on_storage(StorageEvent::Committed { id, result });
                    }
                });
            }
            StorageCommand::Discard { id } => {
                if let Some(path) = self.imports.remove(&id) {
                    self.inserting.remove(&path);
                }
            }
            StorageCommand::Prepare { file, manifest } => {
                let weak = self.weak.clone();
                spawn_local(async move {
                    let kept = store.put_manifest(&file, &manifest).await;
                    if let Some(e) = weak.upgrade() {
                        let mut e = e.borrow_mut();
                        // Chunks are kept even without the manifest (it is asked again
                        // after a reload): fetching goes on either way.
                        if let Err(err) = kept {
                            e.notice(false, None, format!("cannot keep {file} in the browser: {err}"));
                        }
                        e.on_storage(StorageEvent::Prepared { file, result: Ok(()) });
                    }
                });
            }
            StorageCommand::Read { conn, chunk, push } => {
                self.reads.push((conn, chunk, push));
                if self.read_flush.is_none() {
                    let weak = self.weak.clone();
                    self.read_flush = Some(Timeout::new(0, move || {
                        if let Some(e) = weak.upgrade() {
                            e.borrow_mut().flush_reads();
                        }
                    }));
                }
            }
            StorageCommand::Write { chunk, data } => {
                let part = match self.upload_body.take() {
                    Some((c, body)) if c == chunk => JsValue::from(body),
                    _ => js_sys::Uint8Array::from(&data[..]).into(),
                };
                self.writes.push((chunk, part));
                self.write_last = now_ms();
                if self.writes.len() == 1 {
                    self.write_first = self.write_last;
                }
                if self.writes.len() >= WRITE_BATCH {
                    self.flush_writes();
                } else if self.write_flush.is_none() {
                    self.write_due();
                }
            }
            StorageCommand::Finalize { .. } => {}
            StorageCommand::Delete { file, digest, .. } => {
                // Chunks still waiting for their transaction are not written at all.
                self.writes.retain(|(chunk, _)| chunk.file != file);
                let weak = self.weak.clone();
                spawn_local(async move {
                    if let Err(err) = store.delete_file(&file, digest).await {
                        if let Some(e) = weak.upgrade() {
                            e.borrow_mut().notice(
                                false,
                                None,
                                format!("cannot delete {file} from this browser: {err}"),
                            );
                        }
                    }
                });
            }
            // Not kept across reloads: the nodes send theirs before their file lists,
            // so a copy restored after a reload is deleted then.
            StorageCommand::SaveTombstones(_) => {}
            StorageCommand::Torrent { conn, file, .. } => {
                self.ready_events.push(StorageEvent::no_bittorrent(conn, file))
            }
            StorageCommand::AddTorrent { id, .. } => self.ready_events.push(StorageEvent::no_bittorrent_add(id)),
            StorageCommand::AddFinished { .. } => {}
        }
    }

    /// Without IndexedDB the page can still be a control panel, but holds nothing.
    fn storage_unavailable(&mut self, cmd: StorageCommand) {
        let error = || StorageError {
            code: Code::BadPermission,
            message: "the browser's storage (IndexedDB) is not available".into(),
        };
        let event = match cmd {
            StorageCommand::Import { id, .. } => StorageEvent::Imported { id, result: Err(error()) },
            StorageCommand::Commit { id, .. } => StorageEvent::Committed { id, result: Err(error()) },
            StorageCommand::Read { conn, chunk, push } => {
                StorageEvent::Read { conn, chunk, push, result: Err(error()) }
            }
            StorageCommand::Write { chunk, .. } => StorageEvent::Written { chunk, result: Err(error()) },
            StorageCommand::Prepare { file, .. } => StorageEvent::Prepared { file, result: Err(error()) },
            StorageCommand::Torrent { conn, file, .. } => StorageEvent::no_bittorrent(conn, file),
            StorageCommand::AddTorrent { id, .. } => StorageEvent::no_bittorrent_add(id),
            StorageCommand::AddFinished { .. }
            | StorageCommand::Discard { .. }
            | StorageCommand::Finalize { .. }
            | StorageCommand::Delete { .. }
            | StorageCommand::SaveTombstones(_) => return,
        };
        self.ready_events.push(event);
    }

    /// Writes the gathered chunks if they waited long enough, else sets the timer for
    /// when they will have (one timer at a time, not one per chunk).
    fn write_due(&mut self) {
        self.write_flush = None;
        if self.writes.is_empty() {
            return;
        }
        let due = (self.write_last + WRITE_IDLE_MS).min(self.write_first + WRITE_DELAY_MS);
        let now = now_ms();
        if now >= due {
            self.flush_writes();
            return;
        }
        let weak = self.weak.clone();
        self.write_flush = Some(Timeout::new((due - now) as u32, move || {
            if let Some(e) = weak.upgrade() {
                e.borrow_mut().write_due();
            }
        }));
    }

    fn flush_writes(&mut self) {
        self.write_flush = None;
        let batch = std::mem::take(&mut self.writes);
        let Some(store) = self.store.clone() else { return };
        if batch.is_empty() {
            return;
        }
        let weak = self.weak.clone();
        spawn_local(async move {
            let rows: Vec<(String, u64, u32, JsValue)> =
                batch.iter().map(|(c, d)| (c.file.to_string(), c.size, c.index.get(), d.clone())).collect();
            let result = store.write_chunks(&rows).await;
            drop(rows);
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let now = now_ms();
            for (chunk, _) in batch {
                let result = result.clone().map_err(|e| e.to_storage_error(Code::BadPermission));
                e.node.handle_storage(now, StorageEvent::Written { chunk, result });
            }
            e.drain();
        });
    }

    fn flush_reads(&mut self) {
        self.read_flush = None;
        let batch = std::mem::take(&mut self.reads);
        let Some(store) = self.store.clone() else { return };
        let weak = self.weak.clone();
        spawn_local(async move {
            let keys: Vec<(String, u32)> = batch.iter().map(|(_, c, _)| (c.file.to_string(), c.index.get())).collect();
            let results = store.read_chunks(&keys).await;
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let now = now_ms();
            for (i, (conn, chunk, push)) in batch.into_iter().enumerate() {
                let result = match &results {
                    Ok(all) => all[i].clone(),
                    Err(err) => Err(err.clone()),
                };
                let result = result.map_err(|e| e.to_storage_error(Code::FileMissing));
                e.node.handle_storage(now, StorageEvent::Read { conn, chunk, push, result });
            }
            e.drain();
        });
    }
}
