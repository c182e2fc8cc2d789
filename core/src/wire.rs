//! The wire format: frames, JSON headers and typed messages.
//!
//! A connection carries frames; on TCP each is a 4-byte big-endian length and that many
//! bytes. A message is one JSON header frame, optionally followed by one body frame.
//! Limits are checked before anything is allocated: [`FrameDecoder`] refuses a length
//! prefix over the limit that [`MessageReader::frame_limit`] gives for the next frame.
//! All field spellings of the original document are accepted here and nowhere else.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::layout::{chunk_count, chunk_len, MAX_FILE_SIZE};
use crate::manifest::Digest;
use crate::name::FileName;
use crate::status::Status;

/// Bytes of the length prefix of a TCP frame.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Largest header frame.
pub const HEADER_LIMIT: usize = 64 * 1024;
/// Largest file-list (Add, Files) or manifest body.
pub const LIST_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The `Action` numbers of the protocol.
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
}

impl Code {
    pub fn from_number(n: i64) -> Option<Self> {
        Some(match n {
            0 => Code::Ok,
            1 => Code::Connected,
            2 => Code::Disconnected,
            3 => Code::FileExists,
            4 => Code::FileMissing,
            5 => Code::BadPermission,
            6 => Code::BadRequest,
            _ => return None,
        })
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
        }
    }

    /// One line telling a user what the code means and what to do.
    pub fn explain(self) -> &'static str {
        match self {
            Code::Ok => "done",
            Code::Connected => "the node has already joined the network",
            Code::Disconnected => "the node has not joined the network (run `join` first)",
            Code::FileExists => "a file of that name is already in the network",
            Code::FileMissing => "no readable regular file at that path on the node's machine",
            Code::BadPermission => "not allowed: pass the node's control token (--token)",
            Code::BadRequest => "the request was malformed",
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
    pub index: u32,
}

/// A Have entry: a chunk, with the file's digest so a receiver that does not know the
/// file yet can fetch its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaveEntry {
    pub chunk: ChunkRef,
    pub digest: Option<Digest>,
}

/// An entry of a file list (Add, Files bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub name: FileName,
    pub size: u64,
    pub digest: Digest,
    /// Chunk numbers held, ascending.
    pub chunks: Vec<u32>,
}

/// What a reply is about, so a requester can match it to the request it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub name: FileName,
    pub chunk: Option<(u64, u32)>,
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
}

impl Reply {
    pub fn code(code: Code) -> Self {
        Reply { code: Some(code), ..Reply::default() }
    }

    pub fn code_or_ok(&self) -> Code {
        self.code.unwrap_or(Code::Ok)
    }
}

/// A typed protocol message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
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
    Add {
        files: Vec<FileEntry>,
    },
    Remove,
    Files {
        files: Vec<FileEntry>,
    },
    Download(ChunkRef),
    Upload {
        chunk: ChunkRef,
        data: Bytes,
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
    Reply(Reply),
}

impl Message {
    pub fn action(&self) -> Option<Action> {
        Some(match self {
            Message::Join => Action::Join,
            Message::Leave => Action::Leave,
            Message::Insert { .. } => Action::Insert,
            Message::Query { .. } => Action::Query,
            Message::Add { .. } => Action::Add,
            Message::Remove => Action::Remove,
            Message::Files { .. } => Action::Files,
            Message::Download(_) => Action::Download,
            Message::Upload { .. } => Action::Upload,
            Message::Have(_) => Action::Have,
            Message::GetManifest { .. } => Action::GetManifest,
            Message::Manifest { .. } => Action::Manifest,
            Message::Reply(_) => return None,
        })
    }

    /// Control actions come from a user's client, not a peer.
    pub fn is_control(&self) -> bool {
        matches!(self, Message::Join | Message::Leave | Message::Insert { .. } | Message::Query { .. })
    }
}

/// A message with the sender's identity and token from its header.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub from: Option<PeerAddr>,
    pub token: Option<String>,
    pub message: Message,
}

/// A message encoded for sending: the header frame and the optional body frame.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub header: Bytes,
    pub body: Option<Bytes>,
}

impl Encoded {
    /// The frames, as WebSocket messages carry them: (header, body).
    pub fn frames(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.header).chain(self.body.as_ref())
    }

    /// Appends the length-prefixed TCP form to `out`.
    pub fn write_tcp(&self, out: &mut BytesMut) {
        for frame in self.frames() {
            out.extend_from_slice(&frame_prefix(frame.len()));
            out.extend_from_slice(frame);
        }
    }

    /// Bytes on the wire in TCP form.
    pub fn tcp_len(&self) -> usize {
        self.frames().map(|f| FRAME_PREFIX_LEN + f.len()).sum()
    }
}

/// Length prefix of a TCP frame.
pub fn frame_prefix(len: usize) -> [u8; 4] {
    // Every frame we send is within LIST_BODY_LIMIT, far below u32::MAX.
    (len as u32).to_be_bytes()
}

/// Why bytes from the network were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The connection must be dropped: the stream can no longer be trusted.
    #[error("frame of {len} bytes is over the limit of {limit}")]
    FrameTooLong { len: u64, limit: usize },
    /// Answer ErrBadRequest; the stream stays usable.
    #[error("{0}")]
    BadRequest(String),
}

impl WireError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, WireError::FrameTooLong { .. })
    }
}

fn bad(msg: impl Into<String>) -> WireError {
    WireError::BadRequest(msg.into())
}

/// Splits a TCP byte stream into frames, refusing any over `limit` before buffering it.
#[derive(Debug, Default)]
pub struct FrameDecoder;

impl FrameDecoder {
    /// Takes one whole frame off the front of `buf` if there is one.
    pub fn decode(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, WireError> {
        if buf.len() < FRAME_PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..FRAME_PREFIX_LEN].try_into().expect("4 bytes")) as usize;
        if len > limit {
            return Err(WireError::FrameTooLong { len: len as u64, limit });
        }
        if buf.len() < FRAME_PREFIX_LEN + len {
            buf.reserve(FRAME_PREFIX_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(FRAME_PREFIX_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Turns frames into messages, tracking whether a body frame is due and its limit.
#[derive(Debug, Default)]
pub struct MessageReader {
    awaiting: Option<AwaitingBody>,
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
                    Err(HeaderError { error, body_limit }) => {
                        self.awaiting = body_limit.map(|limit| AwaitingBody::Skip { limit });
                        return Err(error);
                    }
                };
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
    #[serde(rename = "Body", default)]
    body: Option<String>,
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
            InChunks::Text(t) => serde_json::from_str(&t).map_err(|e| bad(format!("chunks: {e}"))),
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
        let file = self.name()?;
        let list = self.chunks.ok_or_else(|| bad("chunk reference without chunks"))?.into_list()?;
        let [size, index] = list[..] else {
            return Err(bad("chunks must be [FileSize, chunk]"));
        };
        let size = checked_size(size)?;
        let index = u32::try_from(index).map_err(|_| bad("chunk number out of range"))?;
        if index >= chunk_count(size) {
            return Err(bad(format!("chunk {index} is past the end of a {size}-byte file")));
        }
        Ok(ChunkRef { file, size, index })
    }

    fn entry(self) -> Result<FileEntry, WireError> {
        let name = self.name()?;
        let digest = self.digest()?.ok_or_else(|| bad(format!("{name}: file entry without Digest")))?;
        let size = checked_size(self.size.ok_or_else(|| bad(format!("{name}: file entry without Size")))?)?;
        let count = chunk_count(size);
        let mut chunks = Vec::new();
        for c in self.chunks.map(InChunks::into_list).transpose()?.unwrap_or_default() {
            match u32::try_from(c) {
                Ok(c) if c < count => chunks.push(c),
                _ => return Err(bad(format!("{name}: chunk {c} is past the end"))),
            }
        }
        chunks.sort_unstable();
        chunks.dedup();
        Ok(FileEntry { name, size, digest, chunks })
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
    Upload(ChunkRef),
    Manifest {
        file: FileName,
        size: u64,
        digest: Digest,
    },
    /// A Query reply too large for a header: the status object follows as a body.
    StatusReply(Reply),
}

impl Head {
    fn body_limit(&self) -> Option<usize> {
        match &self.kind {
            HeadKind::Complete(_) => None,
            HeadKind::FileList { .. } | HeadKind::StatusReply(_) => Some(LIST_BODY_LIMIT),
            HeadKind::Upload(c) => Some(chunk_len(c.size, c.index)),
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
                    Message::Add { files }
                } else {
                    Message::Files { files }
                }
            }
            HeadKind::Upload(chunk) => {
                let want = chunk_len(chunk.size, chunk.index);
                if body.len() != want {
                    return Err(bad(format!("chunk body has {} bytes, expected {want}", body.len())));
                }
                Message::Upload { chunk, data: body }
            }
            HeadKind::StatusReply(mut reply) => {
                let status = serde_json::from_slice::<Status>(&body).map_err(|e| bad(format!("status: {e}")))?;
                reply.status = Some(Box::new(status));
                Message::Reply(reply)
            }
            HeadKind::Manifest { file, size, digest } => {
                let want = chunk_count(size) as usize * 32;
                if body.len() != want {
                    return Err(bad(format!("manifest body has {} bytes, expected {want}", body.len())));
                }
                Message::Manifest { file, size, digest, hashes: body }
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
        Some(4 | 6) => Some(LIST_BODY_LIMIT),
        Some(8) => Some(crate::layout::CHUNK_SIZE as usize),
        Some(11) => Some(LIST_BODY_LIMIT),
        // A reply announcing a body (a large Query status).
        None if raw.body.is_some() => Some(LIST_BODY_LIMIT),
        _ => None,
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
    let kind = match raw.action {
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
            let about = match files.pop() {
                Some(f) => {
                    let name = f.name()?;
                    let chunk = match f.chunks {
                        Some(c) => match c.into_list()?[..] {
                            [size, index] => Some((size, u32::try_from(index).map_err(|_| bad("chunk number"))?)),
                            _ => None,
                        },
                        None => None,
                    };
                    Some(FileRef { name, chunk })
                }
                None => None,
            };
            let reply = Reply { code: Some(code), status, about, reason: raw.reason, unconfirmed: raw.unconfirmed };
            match raw.body.as_deref() {
                Some("status") => HeadKind::StatusReply(reply),
                Some(other) => return Err(bad(format!("unknown Body {other:?}"))),
                None => HeadKind::Complete(Message::Reply(reply)),
            }
        }
        Some(0) => HeadKind::Complete(Message::Join),
        Some(1) => HeadKind::Complete(Message::Leave),
        Some(2) => {
            let path = one_file(&mut files)?.name.filter(|p| !p.is_empty() && !p.contains('\0'));
            HeadKind::Complete(Message::Insert { path: path.ok_or_else(|| bad("Insert needs a FileName path"))? })
        }
        Some(3) => {
            let file = match files.pop() {
                Some(f) => Some(f.name()?),
                None => None,
            };
            HeadKind::Complete(Message::Query { file })
        }
        Some(4) => HeadKind::FileList { add: true },
        Some(5) => HeadKind::Complete(Message::Remove),
        Some(6) => HeadKind::FileList { add: false },
        Some(7) => HeadKind::Complete(Message::Download(one_file(&mut files)?.chunk_ref()?)),
        Some(8) => HeadKind::Upload(one_file(&mut files)?.chunk_ref()?),
        Some(9) => {
            if files.is_empty() {
                return Err(bad("Have needs at least one entry"));
            }
            let entries = files
                .into_iter()
                .map(|f| {
                    let digest = f.digest()?;
                    Ok(HaveEntry { chunk: f.chunk_ref()?, digest })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            HeadKind::Complete(Message::Have(entries))
        }
        Some(10) => HeadKind::Complete(Message::GetManifest { file: one_file(&mut files)?.name()? }),
        Some(11) => {
            let f = one_file(&mut files)?;
            let file = f.name()?;
            let digest = f.digest()?.ok_or_else(|| bad("Manifest needs Digest"))?;
            let size = checked_size(f.size.ok_or_else(|| bad("Manifest needs Size"))?)?;
            HeadKind::Manifest { file, size, digest }
        }
        Some(n) => return Err(bad(format!("unknown Action {n}"))),
    };
    Ok(Head { from, token: raw.token, kind })
}

// ---------------------------------------------------------------------------------
// Header JSON, as sent.

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
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChunks<'a> {
    Ref([u64; 2]),
    List(&'a [u32]),
}

#[derive(Serialize)]
struct OutFileList<'a> {
    #[serde(rename = "Files")]
    files: Vec<OutFile<'a>>,
}

impl<'a> OutFile<'a> {
    fn name(name: &'a str) -> Self {
        OutFile { name, size: None, digest: None, chunks: None }
    }

    fn chunk(c: &'a ChunkRef) -> Self {
        OutFile { chunks: Some(OutChunks::Ref([c.size, u64::from(c.index)])), ..OutFile::name(c.file.as_str()) }
    }

    fn entry(e: &'a FileEntry) -> Self {
        OutFile {
            name: e.name.as_str(),
            size: Some(e.size),
            digest: Some(e.digest),
            chunks: Some(OutChunks::List(&e.chunks)),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("protocol types always serialize"))
}

impl Envelope {
    /// The header frame of an Upload of `chunk` from `from`, for a driver that sends the
    /// body frame itself, straight from a file.
    pub fn upload_header(from: &PeerAddr, chunk: &ChunkRef) -> Bytes {
        let message = Message::Upload { chunk: chunk.clone(), data: Bytes::new() };
        Envelope { from: Some(from.clone()), token: None, message }.encode().header
    }

    /// Encodes the header and body frames of this message.
    pub fn encode(&self) -> Encoded {
        let mut head = OutHeader {
            host: self.from.as_ref().map(|a| a.host.as_str()),
            port: self.from.as_ref().map(|a| a.port),
            action: self.message.action().map(|a| a as u8),
            files: Vec::new(),
            token: self.token.as_deref(),
            code: None,
            reason: None,
            unconfirmed: None,
            body: None,
            status: None,
        };
        let mut body = None;
        match &self.message {
            Message::Join | Message::Leave | Message::Remove => {}
            Message::Query { file } => head.files.extend(file.iter().map(|f| OutFile::name(f.as_str()))),
            Message::Insert { path } => head.files.push(OutFile::name(path)),
            Message::Add { files } | Message::Files { files } => {
                body = Some(to_json(&OutFileList { files: files.iter().map(OutFile::entry).collect() }));
            }
            Message::Download(c) => head.files.push(OutFile::chunk(c)),
            Message::Upload { chunk, data } => {
                head.files.push(OutFile::chunk(chunk));
                body = Some(data.clone());
            }
            Message::Have(entries) => {
                head.files = entries.iter().map(|e| OutFile { digest: e.digest, ..OutFile::chunk(&e.chunk) }).collect();
            }
            Message::GetManifest { file } => head.files.push(OutFile::name(file.as_str())),
            Message::Manifest { file, size, digest, hashes } => {
                head.files.push(OutFile { size: Some(*size), digest: Some(*digest), ..OutFile::name(file.as_str()) });
                body = Some(hashes.clone());
            }
            Message::Reply(r) => {
                head.code = Some(r.code_or_ok() as u8);
                head.status = r.status.as_deref();
                head.reason = r.reason.as_deref();
                head.unconfirmed = r.unconfirmed;
                if let Some(about) = &r.about {
                    head.files.push(OutFile {
                        chunks: about.chunk.map(|(s, i)| OutChunks::Ref([s, u64::from(i)])),
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

/// Rough header bytes a Have entry adds, to keep batches under [`HEADER_LIMIT`].
pub fn have_entry_len(entry: &HaveEntry) -> usize {
    entry.chunk.file.as_str().len() + 64 + if entry.digest.is_some() { 76 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::CHUNK_SIZE;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    /// Runs bytes through the TCP decoder and the message reader, as a node does.
    fn decode_stream(mut buf: BytesMut) -> Vec<Result<Envelope, WireError>> {
        let mut reader = MessageReader::new();
        let mut out = Vec::new();
        loop {
            match FrameDecoder::decode(&mut buf, reader.frame_limit()) {
                Ok(Some(frame)) => match reader.push_frame(frame) {
                    Ok(Some(env)) => out.push(Ok(env)),
                    Ok(None) => {}
                    Err(e) => out.push(Err(e)),
                },
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    fn raw_frames(frames: &[&[u8]]) -> BytesMut {
        let mut buf = BytesMut::new();
        for f in frames {
            buf.extend_from_slice(&frame_prefix(f.len()));
            buf.extend_from_slice(f);
        }
        buf
    }

    fn round_trip(message: Message) {
        let env = Envelope { from: Some(PeerAddr::new("127.0.0.1", 7001)), token: Some("t".into()), message };
        let mut buf = BytesMut::new();
        env.encode().write_tcp(&mut buf);
        let got = decode_stream(buf);
        assert_eq!(got, vec![Ok(env)]);
    }

    #[test]
    fn every_message_round_trips() {
        let chunk = ChunkRef { file: name("dir/a.bin"), size: CHUNK_SIZE + 5, index: 1 };
        let entry = FileEntry { name: name("a"), size: 3 * CHUNK_SIZE, digest: Digest([7; 32]), chunks: vec![0, 2] };
        for m in [
            Message::Join,
            Message::Leave,
            Message::Insert { path: "/tmp/x y.txt".into() },
            Message::Query { file: None },
            Message::Query { file: Some(name("a/b")) },
            Message::Add { files: vec![entry.clone()] },
            Message::Remove,
            Message::Files {
                files: vec![entry, FileEntry { name: name("e"), size: 0, digest: Digest([1; 32]), chunks: vec![] }],
            },
            Message::Download(chunk.clone()),
            Message::Upload { chunk: chunk.clone(), data: Bytes::from_static(b"hello") },
            Message::Have(vec![
                HaveEntry { chunk: chunk.clone(), digest: Some(Digest([9; 32])) },
                HaveEntry { chunk, digest: None },
            ]),
            Message::GetManifest { file: name("a") },
            Message::Manifest {
                file: name("a"),
                size: 10,
                digest: Digest([3; 32]),
                hashes: Bytes::from(vec![5u8; 32]),
            },
            Message::Reply(Reply::code(Code::FileExists)),
            Message::Reply(Reply {
                code: Some(Code::Ok),
                status: Some(Box::new(Status {
                    num_files: 1,
                    files: vec!["a".into()],
                    local: vec![0.5],
                    ..Status::default()
                })),
                ..Reply::default()
            }),
            Message::Reply(Reply {
                code: Some(Code::FileMissing),
                about: Some(FileRef { name: name("a"), chunk: Some((10, 0)) }),
                reason: Some("gone".into()),
                ..Reply::default()
            }),
        ] {
            round_trip(m);
        }
    }

    #[test]
    fn a_status_too_large_for_a_header_travels_as_a_body() {
        let n = 3000;
        let status = Status {
            num_files: n,
            files: (0..n).map(|i| format!("some-rather-long-file-name-{i}.bin")).collect(),
            local: vec![0.5; n],
            system: vec![1.0; n],
            least_replication: vec![2; n],
            weighted_least_replication: vec![2.5; n],
            ..Status::default()
        };
        let message = Message::Reply(Reply { status: Some(Box::new(status)), ..Reply::code(Code::Ok) });
        let encoded = Envelope { from: None, token: None, message: message.clone() }.encode();
        assert!(encoded.header.len() <= HEADER_LIMIT && encoded.body.is_some());
        round_trip(message);
    }

    #[test]
    fn accepts_original_spellings() {
        let header = br#"{"HostName":"h","PortNumber":"7001","Action":6}"#;
        let body = br#"{"Files":[{"file":"a","Size":131072,"Digest":"0707070707070707070707070707070707070707070707070707070707070707","chunks":"[1, 0]"}]}"#;
        let got = decode_stream(raw_frames(&[header, body]));
        let Ok(Envelope { from, message: Message::Files { files }, .. }) = &got[0] else { panic!("{got:?}") };
        assert_eq!(from.as_ref().unwrap(), &PeerAddr::new("h", 7001));
        assert_eq!(files[0].chunks, vec![0, 1]);
        // A control message from the original document, trailing comma aside.
        let got = decode_stream(raw_frames(&[br#"{"HostName":"h","PortNumber":"1","Action":0}"#]));
        assert_eq!(got[0].as_ref().unwrap().message, Message::Join);
    }

    #[test]
    fn limits_are_checked_before_reading() {
        // A length prefix near 4 GiB is refused from the prefix alone.
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0][..]);
        assert!(matches!(FrameDecoder::decode(&mut buf, HEADER_LIMIT), Err(WireError::FrameTooLong { .. })));
        // A header over 64 KiB.
        let big = vec![b' '; HEADER_LIMIT + 1];
        let got = decode_stream(raw_frames(&[&big]));
        assert!(got[0].as_ref().unwrap_err().is_fatal());
        // An Upload body longer than its chunk.
        let header = br#"{"HostName":"h","PortNumber":1,"Action":8,"Files":[{"FileName":"a","chunks":[10,0]}]}"#;
        let got = decode_stream(raw_frames(&[header, &[0u8; 11]]));
        assert!(got[0].as_ref().unwrap_err().is_fatal());
        // Shorter is a bad request, not fatal.
        let got = decode_stream(raw_frames(&[header, &[0u8; 9]]));
        assert_eq!(got[0].as_ref().unwrap_err(), &WireError::BadRequest("chunk body has 9 bytes, expected 10".into()));
    }

    #[test]
    fn bad_requests_keep_the_stream_in_step() {
        let cases: &[&[u8]] = &[
            b"not json",
            br#"{"Action":"zero"}"#,
            br#"{"Action":42}"#,
            br#"{"HostName":"h"}"#,
            br#"{"Action":7,"Files":[{"FileName":"../x","chunks":[10,0]}]}"#,
            br#"{"Action":7,"Files":[{"FileName":"/etc/passwd","chunks":[10,0]}]}"#,
            br#"{"Action":7,"Files":[{"FileName":"a","chunks":[10,-1]}]}"#,
            br#"{"Action":7,"Files":[{"FileName":"a","chunks":[10,1]}]}"#,
            br#"{"Action":7,"Files":[{"FileName":"a","chunks":[0,0]}]}"#,
            br#"{"Action":7,"Files":[{"FileName":"a","chunks":[99999999999999999,0]}]}"#,
            br#"{"Action":2,"Files":[]}"#,
            br#"{"Action":9,"Files":[]}"#,
            br#"{"Action":3,"PortNumber":70000,"HostName":"h"}"#,
        ];
        for case in cases {
            let got = decode_stream(raw_frames(&[case, br#"{"Action":3}"#]));
            assert!(matches!(got[0], Err(WireError::BadRequest(_))), "{}: {got:?}", String::from_utf8_lossy(case));
            assert_eq!(
                got[1].as_ref().unwrap().message,
                Message::Query { file: None },
                "stream stays usable after {case:?}"
            );
        }
        // A refused Upload header has its body skipped.
        let header = br#"{"Action":8,"Files":[{"FileName":"..","chunks":[10,0]}]}"#;
        let got = decode_stream(raw_frames(&[header, &[0u8; 10], br#"{"Action":3}"#]));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap().message, Message::Query { file: None });
    }

    #[test]
    fn peer_addresses_parse() {
        assert_eq!("127.0.0.1:7001".parse::<PeerAddr>().unwrap(), PeerAddr::new("127.0.0.1", 7001));
        assert_eq!("localhost 7002".parse::<PeerAddr>().unwrap(), PeerAddr::new("localhost", 7002));
        assert_eq!("[::1]:7003".parse::<PeerAddr>().unwrap(), PeerAddr::new("::1", 7003));
        assert_eq!(PeerAddr::new("::1", 7003).to_string(), "[::1]:7003");
        assert!("nohost".parse::<PeerAddr>().is_err());
        assert!("h:99999".parse::<PeerAddr>().is_err());
    }
}
