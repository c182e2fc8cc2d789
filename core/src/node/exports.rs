//! Control Torrent (Action 15): a file the node holds complete, exported to BitTorrent.
//! The node decides whether it may be (held whole, here); the driver hashes and seeds.

use super::{ConnId, Node, StorageCommand, StorageError};
use crate::name::FileName;
use crate::wire::{Code, FileRef, Reply, TorrentExport};

impl Node {
    pub(super) fn export_torrent(&mut self, conn: ConnId, file: FileName, trackers: Vec<String>) {
        let complete = self.files.get(&file).is_some_and(|f| f.manifest.is_some() && f.have.is_complete());
        if !complete {
            let reason = format!("this node holds no complete copy of {file}");
            let about = Some(FileRef { name: file, chunk: None });
            self.reply(conn, Reply { reason: Some(reason), about, ..Reply::code(Code::FileMissing) });
            return;
        }
        self.storage.push_back(StorageCommand::Torrent { conn, file, trackers });
    }

    pub(super) fn on_torrent(&mut self, conn: ConnId, file: FileName, result: Result<TorrentExport, StorageError>) {
        let reply = match result {
            Ok(torrent) => Reply { torrent: Some(Box::new(torrent)), ..Reply::code(Code::Ok) },
            Err(e) => Reply {
                reason: Some(e.message),
                about: Some(FileRef { name: file, chunk: None }),
                ..Reply::code(e.code)
            },
        };
        self.reply(conn, reply);
    }
}
