//! Control AddTorrent (Action 17, `torronto add`): a torrent brought into the network.
//! The node checks the torrent and its files' names (each must be insertable, like
//! any insert), the driver downloads and verifies it, and the node then inserts each
//! file under its network name; the client is answered once every insert has ended.

use bytes::Bytes;

use super::{ConnId, ImportId, InsertFrom, Node, Refusal, StorageCommand, StorageError};
use crate::bittorrent::files::network_files;
use crate::bittorrent::Torrent;
use crate::name::FileName;
use crate::wire::{Code, Reply};

/// An AddTorrent under way.
#[derive(Debug)]
pub(super) struct PendingAdd {
    conn: ConnId,
    names: Vec<FileName>,
    /// Inserts not yet ended, once the download is done.
    waiting: usize,
    refusals: Vec<Refusal>,
}

impl Node {
    pub(super) fn start_add(&mut self, conn: ConnId, torrent: Bytes, peers: Vec<String>) {
        let refuse = |node: &mut Node, code: Code, reason: String| {
            node.reply(conn, Reply { reason: Some(reason), ..Reply::code(code) });
        };
        let files = match Torrent::decode(&torrent) {
            Ok(t) => network_files(&t.info),
            Err(e) => Err(format!("not a torrent this node can read: {e}")),
        };
        let names: Vec<FileName> = match files {
            Ok(files) => files.into_iter().map(|f| f.name).collect(),
            Err(reason) => return refuse(self, Code::BadRequest, reason),
        };
        let adding = self.adds.values().flat_map(|a| &a.names);
        if let Some(name) = names.iter().find(|n| adding.clone().any(|a| a == *n)) {
            return refuse(self, Code::FileExists, format!("{name} is being added already"));
        }
        if let Some(refusal) = names.iter().find_map(|n| self.name_refusal(n, None)) {
            return refuse(self, refusal.code, refusal.reason);
        }
        let id = self.new_import_id();
        self.adds.insert(id, PendingAdd { conn, names, waiting: 0, refusals: Vec::new() });
        self.storage.push_back(StorageCommand::AddTorrent { id, torrent, peers });
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
