//! Reading messages: frames into typed envelopes. Headers are JSON with every field
//! optional, and all field spellings of the original document are accepted here and
//! nowhere else. Limits are checked before anything is allocated.

use bytes::Bytes;
use serde::Deserialize;

use super::frame::{bad, WireError, HEADER_LIMIT, LIST_BODY_LIMIT};
use super::message::{
    Action, ChunkRef, Code, Control, Envelope, FileEntry, FileRef, HaveEntry, Message, PeerAddr, PeerMessage,
    RateLimits, Reply, Stamps, Tombstone, TorrentExport, MAX_ADD_PEERS, MAX_HAVE_CHUNKS, MAX_TRACKERS, MAX_TRACKER_LEN,
};
use crate::gossip::Gossip;
use crate::layout::{chunk_count, chunk_len, ChunkIndex, MAX_FILE_SIZE};
use crate::manifest::Digest;
use crate::name::FileName;
use crate::status::Status;

/// Turns frames into messages, tracking whether a body frame is due and its limit.
#[derive(Debug, Default)]
pub struct MessageReader {
    awaiting: Option<AwaitingBody>,
    /// Accept control requests only; anything else is fatal ([`WireError::ControlOnly`]).
    control_only: bool,
}

#[derive(Debug)]
enum AwaitingBody {
    /// The body of a valid header.
    Body { head: Head, limit: usize },
    /// The body of a header we refused; read and dropped to stay in step.
    Skip { limit: usize },
}

impl MessageReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader for a connection that may only make control requests (a plaintext
    /// connection to a private node), none of which has a body: a header announcing one
    /// ends the connection, so a stranger cannot make the node read or parse a body at
    /// all. Other messages without a body reach the node, which refuses them.
    pub fn control_only() -> Self {
        Self { control_only: true, ..Self::default() }
    }

    /// Largest frame acceptable next.
    pub fn frame_limit(&self) -> usize {
        match &self.awaiting {
            None => HEADER_LIMIT,
            Some(AwaitingBody::Body { limit, .. } | AwaitingBody::Skip { limit }) => *limit,
        }
    }

    /// Feeds one frame; returns a message when one is complete.
    pub fn push_frame(&mut self, frame: Bytes) -> Result<Option<Envelope>, WireError> {
        let limit = self.frame_limit();
        if frame.len() > limit {
            return Err(WireError::FrameTooLong { len: frame.len() as u64, limit });
        }
        match self.awaiting.take() {
            None => {
                let head = match parse_header(&frame) {
                    Ok(head) => head,
                    Err(HeaderError { body_limit: Some(_), .. }) if self.control_only => {
                        return Err(WireError::ControlOnly)
                    }
                    Err(HeaderError { error, body_limit }) => {
                        self.awaiting = body_limit.map(|limit| AwaitingBody::Skip { limit });
                        return Err(error);
                    }
                };
                if self.control_only && head.body_limit().is_some() {
                    return Err(WireError::ControlOnly);
                }
                match head.body_limit() {
                    None => head.into_envelope(Bytes::new()).map(Some),
                    Some(limit) => {
                        self.awaiting = Some(AwaitingBody::Body { head, limit });
                        Ok(None)
                    }
                }
            }
            Some(AwaitingBody::Skip { .. }) => Ok(None),
            Some(AwaitingBody::Body { head, .. }) => head.into_envelope(frame).map(Some),
        }
    }
}

// ---------------------------------------------------------------------------------
// Header JSON, as received: every field optional, original spellings accepted.

#[derive(Deserialize)]
struct InHeader {
    #[serde(rename = "HostName", default)]
    host: Option<String>,
    #[serde(rename = "PortNumber", default)]
    port: Option<InPort>,
    #[serde(rename = "Action", default)]
    action: Option<i64>,
    #[serde(rename = "Files", default)]
    files: Option<Vec<InFile>>,
    #[serde(rename = "Token", default)]
    token: Option<String>,
    #[serde(rename = "Code", default)]
    code: Option<i64>,
    #[serde(rename = "numFiles", default)]
    num_files: Option<u64>,
    #[serde(rename = "Reason", default)]
    reason: Option<String>,
    #[serde(rename = "Unconfirmed", default)]
    unconfirmed: Option<u64>,
    #[serde(rename = "UploadLimit", default)]
    upload_limit: Option<u64>,
    #[serde(rename = "DownloadLimit", default)]
    download_limit: Option<u64>,
    #[serde(rename = "Body", default)]
    body: Option<String>,
    #[serde(rename = "Trackers", default)]
    trackers: Option<Vec<String>>,
    #[serde(rename = "BitTorrent", default)]
    bittorrent: Option<String>,
    #[serde(rename = "BitTorrentPeers", default)]
    bittorrent_peers: Option<Vec<String>>,
    #[serde(rename = "SentAt", default)]
    sent_at: Option<u64>,
    #[serde(rename = "UplinkDelay", default)]
    uplink_delay: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InPort {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
struct InFile {
    #[serde(rename = "FileName", alias = "file", default)]
    name: Option<String>,
    #[serde(default)]
    chunks: Option<InChunks>,
    #[serde(rename = "Size", default)]
    size: Option<u64>,
    #[serde(rename = "Digest", default)]
    digest: Option<String>,
    /// Tombstones: when the file was removed (Unix milliseconds).
    #[serde(rename = "Removed", default)]
    removed: Option<u64>,
}

/// `chunks` is a JSON array, or (as in the original document) a string holding one.
#[derive(Deserialize)]
#[serde(untagged)]
enum InChunks {
    List(Vec<u64>),
    Text(String),
}

impl InChunks {
    fn into_list(self) -> Result<Vec<u64>, WireError> {
        match self {
            InChunks::List(l) => Ok(l),
            // from_slice, as every other decode here: one serde_json reader in the bundle.
            InChunks::Text(t) => serde_json::from_slice(t.as_bytes()).map_err(|e| bad(format!("chunks: {e}"))),
        }
    }
}

#[derive(Deserialize)]
struct InFileList {
    #[serde(rename = "Files")]
    files: Vec<InFile>,
}

impl InFile {
    fn name(&self) -> Result<FileName, WireError> {
        let raw = self.name.as_deref().ok_or_else(|| bad("file entry without FileName"))?;
        FileName::new(raw).map_err(|e| bad(format!("FileName {raw:?}: {e}")))
    }

    fn digest(&self) -> Result<Option<Digest>, WireError> {
        self.digest.as_deref().map(|d| d.parse().map_err(|e| bad(format!("Digest: {e}")))).transpose()
    }

    fn chunk_ref(self) -> Result<ChunkRef, WireError> {
        let mut refs = self.chunk_refs(1)?;
        match (refs.pop(), refs.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(bad("chunks must be [FileSize, chunk]")),
        }
    }

    /// `[FileSize, chunk, chunk, …]`: one to `most` chunks of a file (a Have entry), the
    /// count checked before any is built.
    fn chunk_refs(self, most: usize) -> Result<Vec<ChunkRef>, WireError> {
        let file = self.name()?;
        let list = self.chunks.ok_or_else(|| bad("chunk reference without chunks"))?.into_list()?;
        let [size, ref indexes @ ..] = list[..] else {
            return Err(bad("chunks must be [FileSize, chunk]"));
        };
        if indexes.is_empty() || indexes.len() > most {
            return Err(bad(format!("chunks must be [FileSize, chunk] with 1 to {most} chunks")));
        }
        let size = checked_size(size)?;
        indexes
            .iter()
            .map(|&index| {
                let index = u32::try_from(index).map_err(|_| bad("chunk number out of range"))?;
                if index >= chunk_count(size) {
                    return Err(bad(format!("chunk {index} is past the end of a {size}-byte file")));
                }
                Ok(ChunkRef { file: file.clone(), size, index: ChunkIndex(index) })
            })
            .collect()
    }

    fn entry(self) -> Result<FileEntry, WireError> {
        let name = self.name()?;
        let digest = self.digest()?.ok_or_else(|| bad(format!("{name}: file entry without Digest")))?;
        let size = checked_size(self.size.ok_or_else(|| bad(format!("{name}: file entry without Size")))?)?;
        let count = chunk_count(size);
        let mut chunks = Vec::new();
        for c in self.chunks.map(InChunks::into_list).transpose()?.unwrap_or_default() {
            match u32::try_from(c) {
                Ok(c) if c < count => chunks.push(ChunkIndex(c)),
                _ => return Err(bad(format!("{name}: chunk {c} is past the end"))),
            }
        }
        chunks.sort_unstable();
        chunks.dedup();
        Ok(FileEntry { name, size, digest, chunks })
    }

    fn tombstone(self) -> Result<Tombstone, WireError> {
        let file = self.name()?;
        let digest = self.digest()?.ok_or_else(|| bad(format!("{file}: tombstone without Digest")))?;
        let time = self.removed.ok_or_else(|| bad(format!("{file}: tombstone without Removed")))?;
        Ok(Tombstone { file, digest, time })
    }

    /// What a reply is about: a file, and perhaps one of its chunks.
    fn about(self) -> Result<FileRef, WireError> {
        let name = self.name()?;
        let chunk = match self.chunks {
            Some(c) => match c.into_list()?[..] {
                [size, index] => Some((size, ChunkIndex(u32::try_from(index).map_err(|_| bad("chunk number"))?))),
                _ => None,
            },
            None => None,
        };
        Ok(FileRef { name, chunk })
    }
}

fn checked_size(size: u64) -> Result<u64, WireError> {
    if size > MAX_FILE_SIZE {
        return Err(bad(format!("file size {size} is over the limit of {MAX_FILE_SIZE}")));
    }
    Ok(size)
}

struct HeaderError {
    error: WireError,
    /// If the refused header announces a body, its limit, so it can be skipped.
    body_limit: Option<usize>,
}

/// A parsed header waiting, perhaps, for its body.
#[derive(Debug)]
struct Head {
    from: Option<PeerAddr>,
    token: Option<String>,
    kind: HeadKind,
}

#[derive(Debug)]
enum HeadKind {
    Complete(Message),
    FileList {
        add: bool,
    },
    Upload(ChunkRef, Stamps),
    Manifest {
        file: FileName,
        size: u64,
        digest: Digest,
    },
    /// A Query reply too large for a header: the status object follows as a body.
    StatusReply(Reply),
    /// A Torrent reply: the `.torrent` follows as a body.
    TorrentReply(Reply),
    /// An AddTorrent request: the `.torrent` follows as a body.
    AddTorrent {
        peers: Vec<String>,
    },
    /// Gossip: its JSON follows as a body.
    Gossip,
}

impl Head {
    fn body_limit(&self) -> Option<usize> {
        match &self.kind {
            HeadKind::Complete(_) => None,
            HeadKind::FileList { .. }
            | HeadKind::StatusReply(_)
            | HeadKind::TorrentReply(_)
            | HeadKind::AddTorrent { .. }
            | HeadKind::Gossip => Some(LIST_BODY_LIMIT),
            HeadKind::Upload(c, _) => Some(chunk_len(c.size, c.index)),
            HeadKind::Manifest { size, .. } => Some(chunk_count(*size) as usize * 32),
        }
    }

    fn into_envelope(self, body: Bytes) -> Result<Envelope, WireError> {
        let message = match self.kind {
            HeadKind::Complete(m) => m,
            HeadKind::FileList { add } => {
                let list: InFileList = serde_json::from_slice(&body).map_err(|e| bad(format!("file list: {e}")))?;
                let files = list.files.into_iter().map(InFile::entry).collect::<Result<Vec<_>, _>>()?;
                if add {
                    PeerMessage::Add { files }.into()
                } else {
                    PeerMessage::Files { files }.into()
                }
            }
            HeadKind::Upload(chunk, stamps) => {
                let want = chunk_len(chunk.size, chunk.index);
                if body.len() != want {
                    return Err(bad(format!("chunk body has {} bytes, expected {want}", body.len())));
                }
                PeerMessage::Upload { chunk, data: body, stamps }.into()
            }
            HeadKind::StatusReply(mut reply) => {
                let status = serde_json::from_slice::<Status>(&body).map_err(|e| bad(format!("status: {e}")))?;
                reply.status = Some(Box::new(status));
                Message::Reply(reply)
            }
            HeadKind::AddTorrent { peers } => Control::AddTorrent { torrent: body, peers }.into(),
            HeadKind::Gossip => {
                let gossip: Gossip = serde_json::from_slice(&body).map_err(|e| bad(format!("gossip: {e}")))?;
                gossip.check().map_err(|e| bad(format!("gossip: {e}")))?;
                PeerMessage::Gossip(Box::new(gossip)).into()
            }
            HeadKind::TorrentReply(mut reply) => {
                if let Some(t) = reply.torrent.as_mut() {
                    t.torrent = body;
                }
                Message::Reply(reply)
            }
            HeadKind::Manifest { file, size, digest } => {
                let want = chunk_count(size) as usize * 32;
                if body.len() != want {
                    return Err(bad(format!("manifest body has {} bytes, expected {want}", body.len())));
                }
                PeerMessage::Manifest { file, size, digest, hashes: body }.into()
            }
        };
        Ok(Envelope { from: self.from, token: self.token, message })
    }
}

fn parse_header(frame: &[u8]) -> Result<Head, HeaderError> {
    let raw: InHeader = serde_json::from_slice(frame).map_err(|e| HeaderError {
        error: bad(format!("header is not valid JSON of the right shape: {e}")),
        body_limit: None,
    })?;
    // A header that announces a body has it skipped if the header itself is refused.
    let body_limit = match raw.action {
        Some(n) => Action::try_from(n).ok().and_then(Action::max_body),
        // A reply announcing a body (a large Query status).
        None if raw.body.is_some() => Some(LIST_BODY_LIMIT),
        None => None,
    };
    parse_fields(frame, raw).map_err(|error| HeaderError { error, body_limit })
}

fn parse_fields(frame: &[u8], raw: InHeader) -> Result<Head, WireError> {
    let port = match raw.port {
        None => None,
        Some(InPort::Number(n)) => Some(u16::try_from(n).map_err(|_| bad("PortNumber out of range"))?),
        Some(InPort::Text(t)) => Some(t.trim().parse::<u16>().map_err(|_| bad("PortNumber is not a port number"))?),
    };
    let from = match (raw.host, port) {
        (Some(host), Some(port)) if !host.is_empty() && host.len() <= 255 && !host.chars().any(char::is_control) => {
            Some(PeerAddr::new(host, port))
        }
        (Some(_), Some(_)) => return Err(bad("bad HostName")),
        _ => None,
    };
    let mut files = raw.files.unwrap_or_default();
    let one_file = |files: &mut Vec<InFile>| -> Result<InFile, WireError> {
        if files.len() != 1 {
            return Err(bad("Files must hold exactly one entry"));
        }
        Ok(files.remove(0))
    };
    let kind = match raw.action.map(Action::try_from).transpose()? {
        None => {
            let Some(code) = raw.code else {
                return Err(bad("header has neither Action nor Code"));
            };
            let code = Code::from_number(code).ok_or_else(|| bad(format!("unknown Code {code}")))?;
            let status = match raw.num_files {
                Some(_) => {
                    Some(Box::new(serde_json::from_slice::<Status>(frame).map_err(|e| bad(format!("status: {e}")))?))
                }
                None => None,
            };
            let about = files.pop().map(InFile::about).transpose()?;
            let limits = match (raw.upload_limit, raw.download_limit) {
                (None, None) => None,
                (up, down) => Some(RateLimits { upload: up.unwrap_or(0), download: down.unwrap_or(0) }),
            };
            let mut reply = Reply {
                code: Some(code),
                status,
                about,
                reason: raw.reason,
                unconfirmed: raw.unconfirmed,
                limits,
                torrent: None,
            };
            match raw.body.as_deref() {
                Some("status") => HeadKind::StatusReply(reply),
                Some("torrent") => {
                    reply.torrent = Some(Box::new(TorrentExport { torrent: Bytes::new(), seeder: raw.bittorrent }));
                    HeadKind::TorrentReply(reply)
                }
                Some(other) => return Err(bad(format!("unknown Body {other:?}"))),
                None => HeadKind::Complete(Message::Reply(reply)),
            }
        }
        Some(Action::Join) => HeadKind::Complete(Control::Join.into()),
        Some(Action::Leave) => HeadKind::Complete(Control::Leave.into()),
        Some(Action::Insert) => {
            let path = one_file(&mut files)?.name.filter(|p| !p.is_empty() && !p.contains('\0'));
            HeadKind::Complete(
                Control::Insert { path: path.ok_or_else(|| bad("Insert needs a FileName path"))? }.into(),
            )
        }
        Some(Action::Query) => {
            let file = match files.pop() {
                Some(f) => Some(f.name()?),
                None => None,
            };
            HeadKind::Complete(Control::Query { file }.into())
        }
        Some(Action::Limit) => {
            HeadKind::Complete(Control::Limit { upload: raw.upload_limit, download: raw.download_limit }.into())
        }
        Some(Action::Torrent) => {
            let file = one_file(&mut files)?.name()?;
            let trackers = raw.trackers.unwrap_or_default();
            if trackers.len() > MAX_TRACKERS {
                return Err(bad(format!("more than {MAX_TRACKERS} Trackers")));
            }
            if let Some(t) = trackers.iter().find(|t| !is_tracker_url(t)) {
                return Err(bad(format!("{t:?} is not a tracker URL (http://, https:// or udp://)")));
            }
            HeadKind::Complete(Control::Torrent { file, trackers }.into())
        }
        Some(Action::AddTorrent) => {
            let peers = raw.bittorrent_peers.unwrap_or_default();
            if peers.len() > MAX_ADD_PEERS {
                return Err(bad(format!("more than {MAX_ADD_PEERS} BitTorrentPeers")));
            }
            if let Some(p) = peers.iter().find(|p| p.len() > MAX_TRACKER_LEN || !p.contains(':')) {
                return Err(bad(format!("BitTorrentPeers: {p:?} is not HOST:PORT")));
            }
            HeadKind::AddTorrent { peers }
        }
        Some(Action::Add) => HeadKind::FileList { add: true },
        Some(Action::Remove) => HeadKind::Complete(PeerMessage::Remove.into()),
        Some(Action::Leaving) => HeadKind::Complete(PeerMessage::Leaving.into()),
        Some(Action::Gossip) => HeadKind::Gossip,
        Some(Action::Files) => HeadKind::FileList { add: false },
        Some(Action::Download) => {
            let chunk = one_file(&mut files)?.chunk_ref()?;
            HeadKind::Complete(PeerMessage::Download { chunk, uplink_delay: raw.uplink_delay }.into())
        }
        Some(Action::Upload) => {
            let stamps = Stamps { sent: raw.sent_at, arrived: None };
            HeadKind::Upload(one_file(&mut files)?.chunk_ref()?, stamps)
        }
        Some(Action::Have) => {
            if files.is_empty() {
                return Err(bad("Have needs at least one entry"));
            }
            let mut entries = Vec::new();
            for f in files {
                let digest = f.digest()?;
                // What is left of the message's bound, so a long list is refused unbuilt.
                let room = MAX_HAVE_CHUNKS - entries.len();
                entries.extend(f.chunk_refs(room)?.into_iter().map(|chunk| HaveEntry { chunk, digest }));
            }
            HeadKind::Complete(PeerMessage::Have(entries).into())
        }
        Some(Action::GetManifest) => {
            HeadKind::Complete(PeerMessage::GetManifest { file: one_file(&mut files)?.name()? }.into())
        }
        Some(Action::Manifest) => {
            let f = one_file(&mut files)?;
            let file = f.name()?;
            let digest = f.digest()?.ok_or_else(|| bad("Manifest needs Digest"))?;
            let size = checked_size(f.size.ok_or_else(|| bad("Manifest needs Size"))?)?;
            HeadKind::Manifest { file, size, digest }
        }
        Some(Action::Delete) => HeadKind::Complete(Control::Delete { file: one_file(&mut files)?.name()? }.into()),
        Some(Action::Tombstones) => {
            if files.is_empty() {
                return Err(bad("Tombstones needs at least one entry"));
            }
            let list = files.into_iter().map(InFile::tombstone).collect::<Result<Vec<_>, WireError>>()?;
            HeadKind::Complete(PeerMessage::Tombstones(list).into())
        }
    };
    Ok(Head { from, token: raw.token, kind })
}

/// A tracker announce URL: http, https or udp, no longer than [`MAX_TRACKER_LEN`], no
/// control characters or spaces (it goes into a magnet link and a `.torrent` as is).
pub fn is_tracker_url(url: &str) -> bool {
    url.len() <= MAX_TRACKER_LEN
        && ["http://", "https://", "udp://"].iter().any(|s| url.len() > s.len() && url.starts_with(s))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}
