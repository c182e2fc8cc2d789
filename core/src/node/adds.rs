//! Control AddTorrent (Action 17, `torronto add`): a torrent brought into the network.
//! The node checks the torrent and its files' names (each must be insertable, like
//! any insert), the driver downloads and verifies it, and the node then inserts each
//! file under its network name; the client is answered once every insert has ended.
//! A magnet link comes first to the driver for its info dictionary (BEP 9), which the
//! node then checks like a `.torrent`'s.

use bytes::Bytes;

use super::{ConnId, ImportId, InsertFrom, Node, Refusal, StorageCommand, StorageError};
use crate::bittorrent::files::network_files;
use crate::bittorrent::magnet::{is_magnet, Magnet};
use crate::bittorrent::metainfo::hex;
use crate::bittorrent::Torrent;
use crate::name::FileName;
use crate::status::InsertProgress;
use crate::wire::{Code, Reply};

/// An AddTorrent under way.
#[derive(Debug)]
pub(super) struct PendingAdd {
    conn: ConnId,
    /// The files' network names (none yet while a magnet link's metadata is fetched).
    names: Vec<FileName>,
    /// The peers given, and a magnet link's `x.pe`s.
    peers: Vec<String>,
    /// The torrent's name (a magnet link's `dn`, or its info-hash, until its metadata
    /// comes), for the status.
    name: String,
    /// Bytes verified, of how many (0 while unknown).
    progress: (u64, u64),
    /// Inserts not yet ended, once the download is done.
    waiting: usize,
    refusals: Vec<Refusal>,
}

impl Node {
    pub(super) fn start_add(&mut self, conn: ConnId, torrent: Bytes, mut peers: Vec<String>) {
        let refuse = |node: &mut Node, refusal: Refusal| {
            node.reply(conn, Reply { reason: Some(refusal.reason), ..Reply::code(refusal.code) });
        };
        let mut names = Vec::new();
        let name;
        if is_magnet(&torrent) {
            let link = std::str::from_utf8(&torrent).map_err(|_| "not UTF-8".to_owned());
            match link.and_then(|l| Magnet::parse(l).map_err(|e| e.to_string())) {
                Ok(m) => {
                    name = m.name.unwrap_or_else(|| hex(&m.info_hash));
                    // At most MAX_ADD_PEERS of each.
                    for p in m.peers {
                        if !peers.contains(&p) {
                            peers.push(p);
                        }
                    }
                }
                Err(reason) => return refuse(self, Refusal { code: Code::BadRequest, reason }),
            }
        } else {
            match self.torrent_names(&torrent) {
                Ok((t, n)) => (name, names) = (t, n),
                Err(refusal) => return refuse(self, refusal),
            }
        }
        let id = self.new_import_id();
        let add =
            PendingAdd { conn, names, peers: peers.clone(), name, progress: (0, 0), waiting: 0, refusals: Vec::new() };
        self.adds.insert(id, add);
        self.storage.push_back(StorageCommand::AddTorrent { id, torrent, peers });
    }

    /// A `.torrent`'s name and the network names of its files, if each may be inserted:
    /// a name another add is bringing in or the network has is refused, before any
    /// download.
    fn torrent_names(&self, torrent: &[u8]) -> Result<(String, Vec<FileName>), Refusal> {
        let bad = |reason: String| Refusal { code: Code::BadRequest, reason };
        let (title, files) = match Torrent::decode(torrent) {
            Ok(t) => (t.info.name.clone(), network_files(&t.info).map_err(bad)?),
            Err(e) => return Err(bad(format!("not a torrent this node can read: {e}"))),
        };
        let names: Vec<FileName> = files.into_iter().map(|f| f.name).collect();
        let adding = self.adds.values().flat_map(|a| &a.names);
        if let Some(name) = names.iter().find(|n| adding.clone().any(|a| a == *n)) {
            return Err(Refusal { code: Code::FileExists, reason: format!("{name} is being added already") });
        }
        match names.iter().find_map(|n| self.name_refusal(n, None)) {
            Some(refusal) => Err(refusal),
            None => Ok((title, names)),
        }
    }

    /// A magnet link's info dictionary came (as a `.torrent` with the link's trackers):
    /// checked like any torrent, then downloaded.
    pub(super) fn on_torrent_metadata(&mut self, id: ImportId, result: Result<Bytes, StorageError>) {
        let Some(peers) = self.adds.get(&id).map(|a| a.peers.clone()) else { return };
        let checked = result.map_err(Refusal::from).and_then(|torrent| Ok((self.torrent_names(&torrent)?, torrent)));
        let add = self.adds.get_mut(&id).expect("looked up above");
        match checked {
            // The add keeps the link's name: it is what the CLI asks progress of.
            Ok(((_, names), torrent)) => {
                add.names = names;
                self.storage.push_back(StorageCommand::AddTorrent { id, torrent, peers });
            }
            Err(refusal) => {
                add.refusals.push(refusal);
                self.add_done(id);
            }
        }
    }

    pub(super) fn on_torrent_progress(&mut self, id: ImportId, done: u64, total: u64) {
        if let Some(add) = self.adds.get_mut(&id) {
            add.progress = (done.min(total), total);
        }
    }

    /// Adds under way, for the status, in the order they were asked for (the map's
    /// order: import IDs count up).
    pub(super) fn add_progress(&self) -> Vec<InsertProgress> {
        let row =
            |add: &PendingAdd| InsertProgress { file: add.name.clone(), done: add.progress.0, size: add.progress.1 };
        self.adds.values().map(row).collect()
    }

    pub(super) fn on_torrent_fetched(&mut self, id: ImportId, result: Result<Vec<String>, StorageError>) {
        let Some(add) = self.adds.get_mut(&id) else { return };
        let paths = match result {
            Ok(paths) if paths.len() == add.names.len() => paths,
            Ok(_) => {
                add.refusals.push(Refusal { code: Code::BadRequest, reason: "the download lost files".into() });
                Vec::new()
            }
            Err(e) => {
                add.refusals.push(e.into());
                Vec::new()
            }
        };
        if paths.is_empty() {
            return self.add_done(id);
        }
        add.waiting = paths.len();
        let names = add.names.clone();
        for (path, name) in paths.into_iter().zip(names) {
            self.start_insert_as(InsertFrom::Torrent(id), path, name);
        }
    }

    pub(super) fn add_file_done(&mut self, id: ImportId, result: Result<(), Refusal>) {
        let Some(add) = self.adds.get_mut(&id) else { return };
        add.waiting = add.waiting.saturating_sub(1);
        if let Err(refusal) = result {
            add.refusals.push(refusal);
        }
        if add.waiting == 0 {
            self.add_done(id);
        }
    }

    /// Answers the client (the first refusal, if any, with how many files failed) and
    /// lets the driver drop the downloaded files.
    fn add_done(&mut self, id: ImportId) {
        let Some(add) = self.adds.remove(&id) else { return };
        self.storage.push_back(StorageCommand::AddFinished { id });
        let reply = match add.refusals.first() {
            None => Reply::code(Code::Ok),
            Some(first) => {
                let more = match add.refusals.len() {
                    1 => String::new(),
                    n => format!(" ({} more of the {} files failed too)", n - 1, add.names.len()),
                };
                Reply { reason: Some(format!("{}{more}", first.reason)), ..Reply::code(first.code) }
            }
        };
        self.reply(add.conn, reply);
    }
}
