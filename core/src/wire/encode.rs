//! Writing messages: typed envelopes into header and body frames, in the field
//! spellings this implementation sends.

use bytes::Bytes;
use serde::Serialize;

use super::frame::{Encoded, HEADER_LIMIT};
use super::message::{ChunkRef, Control, Envelope, FileEntry, Message, PeerAddr, PeerMessage};
use crate::layout::ChunkIndex;
use crate::manifest::Digest;
use crate::status::Status;

#[derive(Serialize)]
struct OutHeader<'a> {
    #[serde(rename = "HostName", skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(rename = "PortNumber", skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(rename = "Action", skip_serializing_if = "Option::is_none")]
    action: Option<u8>,
    #[serde(rename = "Files", skip_serializing_if = "Vec::is_empty")]
    files: Vec<OutFile<'a>>,
    #[serde(rename = "Token", skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(rename = "Code", skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
    #[serde(rename = "Reason", skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(rename = "Unconfirmed", skip_serializing_if = "Option::is_none")]
    unconfirmed: Option<u64>,
    #[serde(rename = "UploadLimit", skip_serializing_if = "Option::is_none")]
    upload_limit: Option<u64>,
    #[serde(rename = "DownloadLimit", skip_serializing_if = "Option::is_none")]
    download_limit: Option<u64>,
    #[serde(rename = "Trackers", skip_serializing_if = "Option::is_none")]
    trackers: Option<&'a [String]>,
    #[serde(rename = "BitTorrent", skip_serializing_if = "Option::is_none")]
    bittorrent: Option<&'a str>,
    #[serde(rename = "BitTorrentPeers", skip_serializing_if = "Option::is_none")]
    bittorrent_peers: Option<&'a [String]>,
    #[serde(rename = "SentAt", skip_serializing_if = "Option::is_none")]
    sent_at: Option<u64>,
    #[serde(rename = "UplinkDelay", skip_serializing_if = "Option::is_none")]
    uplink_delay: Option<u32>,
    /// What the body frame of a reply holds, when it has one.
    #[serde(rename = "Body", skip_serializing_if = "Option::is_none")]
    body: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
}

#[derive(Serialize)]
struct OutFile<'a> {
    #[serde(rename = "FileName")]
    name: &'a str,
    #[serde(rename = "Size", skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(rename = "Digest", skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks: Option<OutChunks<'a>>,
    #[serde(rename = "Removed", skip_serializing_if = "Option::is_none")]
    removed: Option<u64>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChunks<'a> {
    /// `[FileSize, chunk]`.
    Ref([u64; 2]),
    /// `[FileSize, chunk, chunk, …]`: a Have entry's chunks of one file.
    Refs(Vec<u64>),
    List(&'a [ChunkIndex]),
}

impl OutChunks<'_> {
    fn chunk(size: u64, index: ChunkIndex) -> Self {
        OutChunks::Ref([size, u64::from(index.get())])
    }
}

#[derive(Serialize)]
struct OutFileList<'a> {
    #[serde(rename = "Files")]
    files: Vec<OutFile<'a>>,
}

impl<'a> OutFile<'a> {
    fn name(name: &'a str) -> Self {
        OutFile { name, size: None, digest: None, chunks: None, removed: None }
    }

    /// The file size a Have entry's chunks are of.
    fn size_of_refs(&self) -> Option<u64> {
        match &self.chunks {
            Some(OutChunks::Refs(list)) => list.first().copied(),
            _ => None,
        }
    }

    fn chunk(c: &'a ChunkRef) -> Self {
        OutFile { chunks: Some(OutChunks::chunk(c.size, c.index)), ..OutFile::name(c.file.as_str()) }
    }

    fn entry(e: &'a FileEntry) -> Self {
        OutFile {
            name: e.name.as_str(),
            size: Some(e.size),
            digest: Some(e.digest),
            chunks: Some(OutChunks::List(&e.chunks)),
            removed: None,
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("protocol types always serialize"))
}

impl Envelope {
    /// The header frame of an Upload of `chunk` from `from`, sent at `sent_at` (see
    /// [`super::Stamps`]), for a driver that sends the body frame itself, straight from a file.
    pub fn upload_header(from: &PeerAddr, chunk: &ChunkRef, sent_at: Option<u64>) -> Bytes {
        let stamps = super::Stamps { sent: sent_at, arrived: None };
        let message = PeerMessage::Upload { chunk: chunk.clone(), data: Bytes::new(), stamps }.into();
        Envelope { from: Some(from.clone()), token: None, message }.encode().header
    }

    /// Encodes the header and body frames of this message.
    pub fn encode(&self) -> Encoded {
        let mut head = OutHeader {
            host: self.from.as_ref().map(|a| a.host.as_str()),
            port: self.from.as_ref().map(|a| a.port),
            action: self.message.action().map(u8::from),
            files: Vec::new(),
            token: self.token.as_deref(),
            code: None,
            reason: None,
            unconfirmed: None,
            upload_limit: None,
            download_limit: None,
            trackers: None,
            bittorrent: None,
            bittorrent_peers: None,
            sent_at: None,
            uplink_delay: None,
            body: None,
            status: None,
        };
        let mut body = None;
        match &self.message {
            Message::Control(Control::Join | Control::Leave)
            | Message::Peer(PeerMessage::Remove | PeerMessage::Leaving) => {}
            Message::Control(Control::Query { file }) => {
                head.files.extend(file.iter().map(|f| OutFile::name(f.as_str())))
            }
            Message::Control(Control::Insert { path }) => head.files.push(OutFile::name(path)),
            Message::Control(Control::Limit { upload, download }) => {
                head.upload_limit = *upload;
                head.download_limit = *download;
            }
            Message::Control(Control::Delete { file }) => head.files.push(OutFile::name(file.as_str())),
            Message::Peer(PeerMessage::Tombstones(list)) => {
                head.files = list
                    .iter()
                    .map(|t| OutFile {
                        digest: Some(t.digest),
                        removed: Some(t.time),
                        ..OutFile::name(t.file.as_str())
                    })
                    .collect();
            }
            Message::Control(Control::AddTorrent { torrent, peers }) => {
                head.bittorrent_peers = (!peers.is_empty()).then_some(peers.as_slice());
                body = Some(torrent.clone());
            }
            Message::Control(Control::Torrent { file, trackers }) => {
                head.files.push(OutFile::name(file.as_str()));
                head.trackers = (!trackers.is_empty()).then_some(trackers.as_slice());
            }
            Message::Peer(PeerMessage::Add { files } | PeerMessage::Files { files }) => {
                body = Some(to_json(&OutFileList { files: files.iter().map(OutFile::entry).collect() }));
            }
            Message::Peer(PeerMessage::Download { chunk, uplink_delay }) => {
                head.files.push(OutFile::chunk(chunk));
                head.uplink_delay = *uplink_delay;
            }
            Message::Peer(PeerMessage::Upload { chunk, data, stamps }) => {
                head.files.push(OutFile::chunk(chunk));
                head.sent_at = stamps.sent;
                body = Some(data.clone());
            }
            Message::Peer(PeerMessage::Have(entries)) => {
                // One entry per file (and digest, said or not), its chunks after the size.
                for e in entries {
                    let c = &e.chunk;
                    let same = |f: &OutFile| {
                        f.name == c.file.as_str() && f.digest == e.digest && f.size_of_refs() == Some(c.size)
                    };
                    match head.files.iter_mut().find(|f| same(f)) {
                        Some(OutFile { chunks: Some(OutChunks::Refs(list)), .. }) => {
                            list.push(u64::from(c.index.get()))
                        }
                        _ => head.files.push(OutFile {
                            digest: e.digest,
                            chunks: Some(OutChunks::Refs(vec![c.size, u64::from(c.index.get())])),
                            ..OutFile::name(c.file.as_str())
                        }),
                    }
                }
            }
            Message::Peer(PeerMessage::Gossip(gossip)) => body = Some(to_json(gossip)),
            Message::Peer(PeerMessage::GetManifest { file }) => head.files.push(OutFile::name(file.as_str())),
            Message::Peer(PeerMessage::Manifest { file, size, digest, hashes }) => {
                head.files.push(OutFile { size: Some(*size), digest: Some(*digest), ..OutFile::name(file.as_str()) });
                body = Some(hashes.clone());
            }
            Message::Reply(r) => {
                head.code = Some(r.code_or_ok() as u8);
                head.status = r.status.as_deref();
                head.reason = r.reason.as_deref();
                head.unconfirmed = r.unconfirmed;
                head.upload_limit = r.limits.map(|l| l.upload);
                head.download_limit = r.limits.map(|l| l.download);
                if let Some(t) = &r.torrent {
                    head.bittorrent = t.seeder.as_deref();
                    head.body = Some("torrent");
                    body = Some(t.torrent.clone());
                }
                if let Some(about) = &r.about {
                    head.files.push(OutFile {
                        chunks: about.chunk.map(|(size, index)| OutChunks::chunk(size, index)),
                        ..OutFile::name(about.name.as_str())
                    });
                }
            }
        }
        let header = to_json(&head);
        if header.len() > HEADER_LIMIT && head.status.is_some() {
            // A status for thousands of files: send it as a body frame instead.
            let status = head.status.take();
            head.body = Some("status");
            return Encoded { header: to_json(&head), body: status.map(to_json) };
        }
        Encoded { header, body }
    }
}
