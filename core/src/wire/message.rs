//! The protocol's vocabulary: action numbers, reply codes, addresses, and the typed
//! messages, split by who sends them: a user's client (control), a participant (peer
//! messages) or either, answering (replies).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::frame::{bad, WireError, LIST_BODY_LIMIT};
use crate::gossip::Gossip;
use crate::layout::{ChunkIndex, CHUNK_SIZE};
use crate::manifest::Digest;
use crate::name::FileName;
use crate::status::Status;

/// The `Action` numbers of the protocol: the discriminants are the wire numbers, and
/// both decoding ([`TryFrom<i64>`]) and encoding ([`From<Action> for u8`]) use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    Join = 0,
    Leave = 1,
    Insert = 2,
    Query = 3,
    Add = 4,
    Remove = 5,
    Files = 6,
    Download = 7,
    Upload = 8,
    Have = 9,
    GetManifest = 10,
    Manifest = 11,
    Delete = 12,
    Tombstones = 13,
    Limit = 14,
    Torrent = 15,
    Leaving = 16,
    AddTorrent = 17,
    Gossip = 18,
}

impl Action {
    const ALL: [Action; 19] = [
        Action::Join,
        Action::Leave,
        Action::Insert,
        Action::Query,
        Action::Add,
        Action::Remove,
        Action::Files,
        Action::Download,
        Action::Upload,
        Action::Have,
        Action::GetManifest,
        Action::Manifest,
        Action::Delete,
        Action::Tombstones,
        Action::Limit,
        Action::Torrent,
        Action::Leaving,
        Action::AddTorrent,
        Action::Gossip,
    ];

    /// The largest body a header of this action can announce, if it announces one:
    /// enough to skip the body of a header that is refused.
    pub fn max_body(self) -> Option<usize> {
        match self {
            Action::Add | Action::Files | Action::Manifest | Action::AddTorrent | Action::Gossip => {
                Some(LIST_BODY_LIMIT)
            }
            Action::Upload => Some(CHUNK_SIZE as usize),
            _ => None,
        }
    }
}

impl TryFrom<i64> for Action {
    type Error = WireError;

    fn try_from(n: i64) -> Result<Self, WireError> {
        Action::ALL.into_iter().find(|&a| i64::from(u8::from(a)) == n).ok_or_else(|| bad(format!("unknown Action {n}")))
    }
}

impl From<Action> for u8 {
    fn from(action: Action) -> u8 {
        action as u8
    }
}

/// Reply codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Connected = 1,
    Disconnected = 2,
    FileExists = 3,
    FileMissing = 4,
    BadPermission = 5,
    BadRequest = 6,
    NoSpace = 7,
}

impl Code {
    const ALL: [Code; 8] = [
        Code::Ok,
        Code::Connected,
        Code::Disconnected,
        Code::FileExists,
        Code::FileMissing,
        Code::BadPermission,
        Code::BadRequest,
        Code::NoSpace,
    ];

    /// The code with wire number `n`, if there is one.
    pub fn from_number(n: i64) -> Option<Self> {
        Code::ALL.into_iter().find(|&c| i64::from(c as u8) == n)
    }

    /// The name users see, as in the original document.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "ErrOK",
            Code::Connected => "ErrConnected",
            Code::Disconnected => "ErrDisconnected",
            Code::FileExists => "ErrFileExists",
            Code::FileMissing => "ErrFileMissing",
            Code::BadPermission => "ErrBadPermission",
            Code::BadRequest => "ErrBadRequest",
            Code::NoSpace => "ErrNoSpace",
        }
    }

    /// One line telling a user what the code means and what to do.
    pub fn explain(self) -> &'static str {
        match self {
            Code::Ok => "done",
            Code::Connected => "the node has already joined the network",
            Code::Disconnected => "the node has not joined the network (run `join` first)",
            Code::FileExists => "a file of that name is already in the network",
            Code::FileMissing => {
                "no such file (insert: no readable regular file at that path on the node's machine; \
                 remove: no file of that name in the network)"
            }
            Code::BadPermission => {
                "not allowed: the control token is missing or wrong, or the file may not be inserted"
            }
            Code::BadRequest => "the request was malformed",
            Code::NoSpace => {
                "the node's disk (or its --max-store / --min-free limit) has no room for the file: free space first"
            }
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A participant's identity: the address it listens on. Browser peers, which cannot
/// be dialled, use a `browser-…` host and port 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr {
    pub host: String,
    pub port: u16,
}

impl PeerAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }

    /// Whether other nodes can open a connection to this address.
    pub fn is_diallable(&self) -> bool {
        self.port != 0
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for PeerAddr {
    type Err = String;
    /// Accepts `host:port`, `[v6]:port` and the original peers-file form `host port`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some((h, p)) = s.split_once(char::is_whitespace) {
            (h.trim(), p.trim())
        } else if let Some(rest) = s.strip_prefix('[') {
            rest.split_once("]:").ok_or_else(|| format!("bad address {s:?}"))?
        } else {
            s.rsplit_once(':').ok_or_else(|| format!("address {s:?} needs a port (host:port)"))?
        };
        if host.is_empty() {
            return Err(format!("address {s:?} has no host"));
        }
        let port = port.parse().map_err(|_| format!("bad port in {s:?}"))?;
        Ok(PeerAddr::new(host, port))
    }
}

/// One chunk of one file, as `{"FileName", "chunks": [FileSize, chunk]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub file: FileName,
    pub size: u64,
    pub index: ChunkIndex,
}

/// When an Upload's header left its sender (`sent`, by the sender's clock: `SentAt` on
/// the wire) and reached us (`arrived`, by ours, stamped by the driver), in microseconds
/// from any fixed origin. The clocks differ, so one such delay means nothing; its excess
/// over the least seen from the same sender is how long the chunk waited on the way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamps {
    pub sent: Option<u64>,
    pub arrived: Option<u64>,
}

/// A Have entry: a chunk, with the file's digest so a receiver that does not know the
/// file yet can fetch its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaveEntry {
    pub chunk: ChunkRef,
    pub digest: Option<Digest>,
}

/// Rough header bytes a Have entry adds, to keep batches under [`super::HEADER_LIMIT`].
pub fn have_entry_len(entry: &HaveEntry) -> usize {
    entry.chunk.file.as_str().len() + 64 + if entry.digest.is_some() { 76 } else { 0 }
}

/// An entry of a file list (Add, Files bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub name: FileName,
    pub size: u64,
    pub digest: Digest,
    /// Chunks held, ascending.
    pub chunks: Vec<ChunkIndex>,
}

/// What a reply is about, so a requester can match it to the request it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub name: FileName,
    /// The file's size and the chunk, for a reply about one chunk.
    pub chunk: Option<(u64, ChunkIndex)>,
}

/// A file taken out of the network: the content `digest` under `file`, removed at
/// `time` (Unix milliseconds, as the remover's clock read it). It kills only that
/// content: a file of the same name with another digest is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    pub file: FileName,
    pub digest: Digest,
    pub time: u64,
}

/// Rough header bytes a tombstone adds, to keep batches under [`super::HEADER_LIMIT`].
pub fn tombstone_len(t: &Tombstone) -> usize {
    t.file.as_str().len() + 120
}

/// A reply header: a code, and for Query the status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    pub code: Option<Code>,
    pub status: Option<Box<Status>>,
    /// The file or chunk an error is about.
    pub about: Option<FileRef>,
    /// A human-readable reason for an error.
    pub reason: Option<String>,
    /// Leave: chunks that could not be confirmed elsewhere before the deadline.
    pub unconfirmed: Option<u64>,
    /// Limit: the node's bandwidth limits after the request.
    pub limits: Option<RateLimits>,
    /// Torrent: the exported file's `.torrent`.
    pub torrent: Option<Box<TorrentExport>>,
}

/// A file exported to BitTorrent (Action 15): its `.torrent` bytes (sent as the body),
/// and where the node seeds it (`BitTorrent`, its `--bittorrent` address), if it does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TorrentExport {
    pub torrent: Bytes,
    pub seeder: Option<String>,
}

/// Most chunks one Have may announce (an entry lists a file's chunks after its size,
/// so a header of a few bytes per chunk could otherwise ask for thousands of entries).
pub const MAX_HAVE_CHUNKS: usize = 1024;

/// Most BitTorrent peers an AddTorrent request may name (`HOST:PORT`, each at most
/// [`MAX_TRACKER_LEN`] bytes).
pub const MAX_ADD_PEERS: usize = 32;

/// Most trackers a Torrent request may name, and the longest URL.
pub const MAX_TRACKERS: usize = 32;
pub const MAX_TRACKER_LEN: usize = 2048;

/// A node's bandwidth limits on chunk bodies, in bytes per second; 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub upload: u64,
    pub download: u64,
}

impl Reply {
    pub fn code(code: Code) -> Self {
        Reply { code: Some(code), ..Reply::default() }
    }

    pub fn code_or_ok(&self) -> Code {
        self.code.unwrap_or(Code::Ok)
    }
}

/// A request from a user's client: needs the control token.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Join,
    Leave,
    /// A path on the node's machine.
    Insert {
        path: String,
    },
    /// With a file, the status also carries that file's chunk map.
    Query {
        file: Option<FileName>,
    },
    /// Sets the bandwidth limits given (bytes per second, 0 = unlimited); the others stay.
    /// Either way the reply carries the limits now in force.
    Limit {
        upload: Option<u64>,
        download: Option<u64>,
    },
    /// Take the file out of the network: on this node and, through tombstones, on every
    /// node (`torronto remove`).
    Delete {
        file: FileName,
    },
    /// Export `file`, held complete by the node, as a v1 `.torrent` with `trackers`
    /// (http, https or udp URLs); the reply carries it ([`TorrentExport`]).
    Torrent {
        file: FileName,
        trackers: Vec<String>,
    },
    /// Download the `.torrent` (`torrent`, sent as the body) from BitTorrent peers
    /// (its http trackers' and `peers`, `HOST:PORT`) and insert its files
    /// (`torronto add`); answered once every file is inserted.
    AddTorrent {
        torrent: Bytes,
        peers: Vec<String>,
    },
}

impl Control {
    pub fn action(&self) -> Action {
        match self {
            Control::Join => Action::Join,
            Control::Leave => Action::Leave,
            Control::Insert { .. } => Action::Insert,
            Control::Query { .. } => Action::Query,
            Control::Limit { .. } => Action::Limit,
            Control::Delete { .. } => Action::Delete,
            Control::Torrent { .. } => Action::Torrent,
            Control::AddTorrent { .. } => Action::AddTorrent,
        }
    }
}

/// A message between participants of the network.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerMessage {
    Add {
        files: Vec<FileEntry>,
    },
    Remove,
    Files {
        files: Vec<FileEntry>,
    },
    /// A request for one chunk. `uplink_delay` is, where the requester has measured it, how
    /// long the chunks we send it wait on their way out of our uplink, in microseconds
    /// (`UplinkDelay`): what the automatic upload limit goes by (`crate::node`'s `uplink`).
    Download {
        chunk: ChunkRef,
        uplink_delay: Option<u32>,
    },
    Upload {
        chunk: ChunkRef,
        data: Bytes,
        stamps: Stamps,
    },
    Have(Vec<HaveEntry>),
    GetManifest {
        file: FileName,
    },
    Manifest {
        file: FileName,
        size: u64,
        digest: Digest,
        hashes: Bytes,
    },
    /// Files removed from the network (at most a header's worth).
    Tombstones(Vec<Tombstone>),
    /// The sender has begun to leave: do not count on it to keep chunks. Answered with
    /// a Reply (Code 0), which, coming after anything sent before it, tells the sender
    /// whether we were leaving too.
    Leaving,
    /// Records of the network's participants (see [`crate::gossip`]), as a JSON body.
    Gossip(Box<Gossip>),
}

impl PeerMessage {
    /// A request for `chunk`, with no uplink delay to report.
    pub fn download(chunk: ChunkRef) -> Self {
        PeerMessage::Download { chunk, uplink_delay: None }
    }

    /// An Upload of `chunk`, not stamped yet (its sender's driver stamps it as it goes out).
    pub fn upload(chunk: ChunkRef, data: Bytes) -> Self {
        PeerMessage::Upload { chunk, data, stamps: Stamps::default() }
    }

    pub fn action(&self) -> Action {
        match self {
            PeerMessage::Add { .. } => Action::Add,
            PeerMessage::Remove => Action::Remove,
            PeerMessage::Files { .. } => Action::Files,
            PeerMessage::Download { .. } => Action::Download,
            PeerMessage::Upload { .. } => Action::Upload,
            PeerMessage::Have(_) => Action::Have,
            PeerMessage::GetManifest { .. } => Action::GetManifest,
            PeerMessage::Manifest { .. } => Action::Manifest,
            PeerMessage::Tombstones(_) => Action::Tombstones,
            PeerMessage::Leaving => Action::Leaving,
            PeerMessage::Gossip(_) => Action::Gossip,
        }
    }

    /// Whether a sender may put this message on the wire before Uploads it queued earlier
    /// to the same peer: requests and announcements only let both sides go on sooner.
    /// Anything else keeps its place; a Remove that overtook Uploads, say, would have the
    /// peer drop them as a stranger's (a leave's last pushes among them).
    pub fn may_overtake_uploads(&self) -> bool {
        matches!(self, PeerMessage::Download { .. } | PeerMessage::Have(_) | PeerMessage::GetManifest { .. })
    }
}

/// A typed protocol message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Control(Control),
    Peer(PeerMessage),
    Reply(Reply),
}

impl Message {
    /// The header's `Action`; replies have none.
    pub fn action(&self) -> Option<Action> {
        match self {
            Message::Control(c) => Some(c.action()),
            Message::Peer(m) => Some(m.action()),
            Message::Reply(_) => None,
        }
    }

    /// Control requests come from a user's client, not a peer.
    pub fn is_control(&self) -> bool {
        matches!(self, Message::Control(_))
    }
}

impl From<Control> for Message {
    fn from(c: Control) -> Self {
        Message::Control(c)
    }
}

impl From<PeerMessage> for Message {
    fn from(m: PeerMessage) -> Self {
        Message::Peer(m)
    }
}

impl From<Reply> for Message {
    fn from(r: Reply) -> Self {
        Message::Reply(r)
    }
}

/// A message with the sender's identity and token from its header.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub from: Option<PeerAddr>,
    pub token: Option<String>,
    pub message: Message,
}
