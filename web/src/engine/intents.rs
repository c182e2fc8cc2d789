//! The page's intents (one method per [`crate::bridge::Command`]) and the view of the
//! browser peer the engine reports back.

use torronto_core::layout::chunk_count;
use torronto_core::{ConnId, FileName, PeerAddr};
use wasm_bindgen_futures::spawn_local;

use super::{Engine, REOPEN_AFTER_MS};
use crate::bridge::{PeerFile, PeerView, Report, Save};
use crate::util::now_ms;

impl Engine {
    /// Makes sure there is a peer session to the native node `addr`, reachable at the
    /// WebSocket `url`. Called whenever a control session sees that node joined.
    pub fn ensure_peer(&mut self, url: &str, addr: PeerAddr) {
        self.dial_urls.insert(addr.clone(), url.to_string());
        if self.peers.values().any(|p| p.addr == addr) || !self.ready {
            return;
        }
        let now = now_ms();
        if self.last_open.get(&addr).is_some_and(|&t| now < t + REOPEN_AFTER_MS) {
            return;
        }
        self.open_peer(addr);
        self.drain();
    }

    /// Closes the peer sessions to the node at `url` and stops redialling it.
    pub fn forget_node(&mut self, url: &str) {
        self.dial_urls.retain(|_, u| u != url);
        let conns: Vec<ConnId> =
            self.peers.iter().filter(|(_, p)| !self.dial_urls.contains_key(&p.addr)).map(|(&c, _)| c).collect();
        let now = now_ms();
        for conn in conns {
            if let Some(p) = self.peers.remove(&conn) {
                if p.open {
                    self.node.handle_disconnected(now, conn);
                }
            }
        }
        self.drain();
    }

    /// Fetches a network file into the page.
    pub fn download(&mut self, name: &str) {
        let Ok(file) = FileName::new(name) else { return };
        self.requested.insert(file.clone());
        self.node.request_file(now_ms(), &file);
        self.drain();
    }

    /// Stops fetching a file and drops every chunk of it this page holds (core tells
    /// the nodes; IndexedDB deletes them). The network keeps its copies.
    pub fn forget(&mut self, name: &str) {
        let Ok(file) = FileName::new(name) else { return };
        let was_downloading = self.requested.remove(&file);
        self.saves.remove(name);
        if self.node.drop_file(now_ms(), &file) {
            let what = if was_downloading { "download cancelled" } else { "forgotten" };
            self.notice(true, None, format!("{file}: {what}; this browser keeps none of it now"));
        }
        self.drain();
    }

    /// Assembles a file held completely from IndexedDB into a Blob and sends it to
    /// the page, which offers it for saving (a link; `auto` also clicks it). The page
    /// keeps the Blob, so this happens once per file.
    pub fn save(&mut self, name: &str, auto: bool) {
        let Ok(file) = FileName::new(name) else { return };
        let Some(store) = self.store.clone() else { return };
        let Some(size) = self.node.status().rows().find(|r| r.name == name).and_then(|r| r.size) else { return };
        if matches!(self.saves.get(name), Some(Save::Assembling | Save::Ready)) {
            return;
        }
        self.saves.insert(name.to_string(), Save::Assembling);
        self.changed();
        let weak = self.weak.clone();
        spawn_local(async move {
            let result = store.file_blob(&file, size, chunk_count(size)).await;
            let Some(engine) = weak.upgrade() else { return };
            let mut e = engine.borrow_mut();
            let save = match result {
                Ok(blob) => {
                    if let Some(post) = &e.post {
                        post(&Report::Saved { name: file.to_string(), auto }, Some(&blob));
                    }
                    Save::Ready
                }
                Err(err) => Save::Failed(err.to_string()),
            };
            e.saves.insert(file.to_string(), save);
            e.changed();
        });
    }

    /// Forgets every chunk the page holds (IndexedDB is cleared); the page reloads.
    pub fn clear_storage(&mut self) {
        let Some(store) = self.store.clone() else { return };
        let post = self.post.clone();
        spawn_local(async move {
            let _ = store.clear().await;
            if let Some(post) = post {
                post(&Report::Reload, None);
            }
        });
    }

    pub fn dismiss(&mut self, id: u64) {
        self.notices.retain(|n| n.id != id);
        self.changed();
    }

    /// What the page shows now; each view also takes the node's counters into the
    /// rates (views come every `NOTIFY_EVERY_MS` while bytes move).
    pub fn view(&mut self) -> PeerView {
        let status = self.node.status();
        let rates = self.rates.measure(&status, now_ms(), u64::from(super::NOTIFY_EVERY_MS));
        let files = status
            .rows()
            .map(|row| {
                let file = FileName::new(row.name).ok();
                let requested = file.as_ref().is_some_and(|f| self.requested.contains(f));
                PeerFile {
                    name: row.name.to_string(),
                    size: row.size.unwrap_or(0),
                    local: row.local,
                    system: row.system,
                    least: row.least,
                    average: row.average,
                    requested,
                    rate: rates.files.get(row.name).copied(),
                    save: self.saves.get(row.name).cloned(),
                }
            })
            .collect();
        PeerView {
            me: self.me.host.clone(),
            ready: self.ready,
            storage_error: self.storage_error.as_ref().map(ToString::to_string),
            peers: status.peers.clone(),
            files,
            inserting: self.inserting.iter().map(|(n, &(d, t))| (n.clone(), d, t)).collect(),
            notices: self.notices.clone(),
            chunks_fetched: status.chunks_fetched,
            chunks_served: status.chunks_served,
            down: rates.down.round(),
            up: rates.up.round(),
            webcrypto: self.hasher.is_some(),
        }
    }
}
