//! What goes into a [`super::Node`] and what comes out: its configuration, the
//! commands drivers carry out, the results they report back, and the events.

use std::fmt;

use bytes::Bytes;

use crate::bitset::ChunkSet;
use crate::manifest::{Digest, Manifest};
use crate::name::FileName;
use crate::secure::{AuthenticatedPeer, NodeId};
use crate::wire::{ChunkRef, Code, Envelope, PeerAddr, RateLimits, Tombstone, TorrentExport};

/// Milliseconds since an origin of the driver's choosing.
pub type Millis = u64;

/// A connection, numbered by the driver in the order connections open: the node takes a
/// higher number for a newer connection (it speaks to a peer on its newest one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One insert, from the file being copied aside to its outcome; numbered by the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImportId(pub u64);

impl fmt::Display for ImportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Limits and timings; the defaults suit loopback and LAN alike.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Chunk requests in flight to one peer that has delivered chunks, at most.
    pub requests_per_peer: usize,
    /// How long our requests may wait on one peer: its window is what it delivered in
    /// this long of late (at least [`MIN_WINDOW`](super::fetching::MIN_WINDOW)), so that
    /// on a slow or busy link requests do not queue behind each other while another
    /// peer could serve them. Loopback peers deliver a full window in far less.
    pub request_queue_time: Millis,
    /// Chunk requests in flight to the peers that have delivered none yet, all of them
    /// together: claims cost nothing, so a peer earns its window by delivering, and any
    /// number of peers that never do hold at most this many chunks up.
    pub unproven_requests: usize,
    /// A request unanswered this long is given up and the chunk asked of someone else.
    pub request_timeout: Millis,
    /// The same, for a peer that has delivered no chunk yet.
    pub unproven_request_timeout: Millis,
    /// A peer that let a request time out is asked nothing for this long, doubling with
    /// each further timeout (up to `stall_max`) until it delivers again.
    pub stall_min: Millis,
    pub stall_max: Millis,
    /// A manifest request unanswered this long is retried.
    pub manifest_timeout: Millis,
    /// Join answers once every peer has answered or this long has passed.
    pub join_timeout: Millis,
    /// Leave waits this long for its pushed chunks to be confirmed.
    pub leave_timeout: Millis,
    /// Leave waits this long for each peer to answer our Leaving; one that has not by
    /// then is counted on as little as a leaving one.
    pub leaving_answer_timeout: Millis,
    /// Verified chunks waiting for storage; past this, fetching waits, so a disk
    /// slower than the network throttles requests instead of filling memory.
    pub max_writing: usize,
    /// Chunks pushed to one peer during Leave and not yet confirmed.
    pub push_window: usize,
    /// Chunk reads outstanding for one connection; a peer asking for more is cut off.
    pub serve_limit: usize,
    /// Files one peer may announce, and their total size: announcements past either are
    /// ignored, so what a peer makes us track is bounded whatever it claims.
    pub max_peer_files: usize,
    pub max_peer_bytes: u64,
    /// Manifest requests in flight to one peer.
    pub manifest_requests_per_peer: usize,
    /// Bad chunks from one peer before it is disconnected.
    pub max_strikes: u32,
    /// First and largest wait before dialling a lost peer again.
    pub redial_min: Millis,
    pub redial_max: Millis,
    /// A lost peer learned from the network (not in the peers file) is dialled at most
    /// this many times, and not after this long: a stranger cannot make us dial
    /// addresses of its choosing for ever. Peers-file addresses are always retried.
    pub redial_tries: u32,
    pub redial_give_up: Millis,
    /// An accepted connection that has not introduced itself (Add, or a control request
    /// with the right token) within this long is closed: idle connections hold slots.
    pub intro_timeout: Millis,
    /// Pause in fetching after a write fails (a full disk, say).
    pub storage_backoff: Millis,
    /// A file refused for want of space is offered to storage again after this long.
    pub space_retry: Millis,
    /// Wrong control tokens one connection may send before it is closed.
    pub token_attempts: u32,
    /// The first wrong token is answered after this long; each further one within
    /// `token_quiet`, node-wide, waits twice as long, up to `token_delay_max`.
    pub token_delay: Millis,
    pub token_delay_max: Millis,
    /// Without a wrong token for this long, the delay starts over.
    pub token_quiet: Millis,
    /// Tombstones (removed files) kept, all told, and learned from any one peer; past
    /// the first the oldest is forgotten, past the second a peer's new ones are ignored.
    pub max_tombstones: usize,
    pub max_peer_tombstones: usize,
    /// How long a tombstone is kept after the remove (a node away longer brings the
    /// file back when it returns).
    pub tombstone_lifetime: Millis,
    /// Links to other nodes kept at most (`--max-links`); half of it, at most 8, are
    /// dialled for, the rest are left to peers that dial us.
    pub max_links: usize,
    /// A gossip round every this long; our record changes at most every
    /// `record_interval` for holdings.
    pub gossip_interval: Millis,
    pub record_interval: Millis,
    /// Participants past which two differing views compare the parts of their
    /// summaries before trading digests of the parts that differ (below, a whole
    /// digest is hardly longer than the parts).
    pub summary_parts_from: usize,
    /// A suspected participant not heard from by then is taken to have left; departures
    /// are remembered for `left_keep`.
    pub suspect_timeout: Millis,
    pub left_keep: Millis,
    /// Our record is renewed at least this often, changed or not; a record not renewed
    /// for `lease` is suspected (a participant that crashed with no link left to notice).
    pub refresh_interval: Millis,
    pub lease: Millis,
    /// Chunks stored within this long of each other are announced in one Have (each
    /// is otherwise a message of its own to every link: at 128 nodes, 1.3 % of the
    /// payload), unless 16 of them are waiting already; 0 announces each as
    /// soon as the node is idle.
    pub have_delay: Millis,
    /// Whether the automatic upload limit is on (`uplink`, `--auto-upload-limit`): our
    /// uploads are held under what our uplink carries when receivers say they queue.
    /// (Every node tells its senders how long their chunks queue, on or off.) Off by
    /// default: on shaped links it gained where uplinks were narrow and lost where all
    /// links were alike (README, "An automatic upload limit").
    pub auto_upload_limit: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            requests_per_peer: 32,
            request_queue_time: 300,
            unproven_requests: 2,
            request_timeout: 30_000,
            unproven_request_timeout: 5_000,
            stall_min: 5_000,
            stall_max: 120_000,
            manifest_timeout: 10_000,
            join_timeout: 5_000,
            leave_timeout: 30_000,
            leaving_answer_timeout: 5_000,
            max_writing: 64,
            push_window: 24,
            serve_limit: 256,
            max_peer_files: 10_000,
            max_peer_bytes: 1 << 40,
            manifest_requests_per_peer: 8,
            max_strikes: 3,
            redial_min: 1_000,
            redial_max: 30_000,
            redial_tries: 5,
            redial_give_up: 600_000,
            intro_timeout: 10_000,
            storage_backoff: 1_000,
            space_retry: 30_000,
            token_attempts: 3,
            token_delay: 100,
            token_delay_max: 5_000,
            token_quiet: 60_000,
            max_tombstones: 10_000,
            max_peer_tombstones: 1_000,
            tombstone_lifetime: 90 * 24 * 3_600_000,
            max_links: 32,
            gossip_interval: 1_000,
            record_interval: 2_000,
            summary_parts_from: 4 * crate::gossip::SUMMARY_PARTS,
            suspect_timeout: 15_000,
            left_keep: 300_000,
            refresh_interval: 60_000,
            lease: 180_000,
            have_delay: 200,
            auto_upload_limit: false,
        }
    }
}

/// What a node is told at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our identity: the address peers dial.
    pub me: PeerAddr,
    /// Peers to connect to on Join (ours is skipped).
    pub peers: Vec<PeerAddr>,
    /// The control token every control request must carry, on every connection
    /// (loopback included: other users of the machine reach loopback too). With none,
    /// no request is allowed.
    pub token: Option<String>,
    /// Folders (canonical paths, as the driver resolved them) that control clients
    /// which are not [`ConnInfo::local`] may insert files from (`--insert-from`).
    pub insert_from: Vec<String>,
    /// Seeds the choice among equally rare chunks.
    pub seed: u64,
    pub tuning: Tuning,
    /// Set to this node's own ID in a private network: peer messages are then taken only
    /// from connections whose peer the driver proved ([`ConnInfo::peer`]), and a peer is
    /// known by its key and `Hello`, never by the `HostName`/`PortNumber` it writes.
    /// `None`: the open protocol, as documented.
    pub private: Option<NodeId>,
}

#[cfg(test)]
impl Config {
    /// A node of the open protocol at `me` (control token `t`, no peers file), for the
    /// unit tests.
    pub(crate) fn for_tests(me: PeerAddr) -> Config {
        Config {
            me,
            peers: vec![],
            token: Some("t".into()),
            insert_from: Vec::new(),
            seed: 1,
            // Haves at once: the tests read what a stored chunk sends without a clock.
            tuning: Tuning { have_delay: 0, ..Tuning::default() },
            private: None,
        }
    }
}

/// What the driver knows about a new connection.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The peer we dialled, for outgoing connections.
    pub dialed: Option<PeerAddr>,
    /// TCP from this machine (loopback, or one of its own addresses as the source):
    /// the owner's CLI, which may insert any file the node can read. Control still
    /// needs the token: other local users connect from here too.
    pub local: bool,
    /// The peer the secure handshake proved (private networks); `None` on a plaintext
    /// connection, which may then carry control actions only.
    pub peer: Option<AuthenticatedPeer>,
}

/// Network work for the driver.
#[derive(Clone, Debug)]
pub enum NetCommand {
    Send {
        conn: ConnId,
        envelope: Envelope,
    },
    /// Open a connection and report it with `handle_connected` or `handle_dial_failed`.
    Dial(PeerAddr),
    Close(ConnId),
}

/// Storage work for the driver; each is answered with a [`StorageEvent`] where noted.
#[derive(Clone, Debug)]
pub enum StorageCommand {
    /// Copy the file at `path` (on this machine) aside and compute its manifest;
    /// answer `Imported`. With `within`, first resolve the file actually opened to its
    /// canonical path and refuse it unless [`crate::check_insert_source`] allows it.
    ///
    /// With `in_place`, `path` is `name` in the node's own folder (a file found there,
    /// [`super::Node::adopt`]): hash it where it is, without copying it, and fail if it
    /// changes meanwhile; its `Commit` then only records it (again failing if changed).
    Import { id: ImportId, path: String, name: FileName, within: Option<Vec<String>>, in_place: bool },
    /// Publish an imported copy as `name`, keeping its manifest; answer `Committed`.
    Commit { id: ImportId, name: FileName, manifest: Manifest },
    /// Drop an imported copy.
    Discard { id: ImportId },
    /// Make room for a file being fetched and keep its manifest; answer `Prepared`
    /// (ErrNoSpace when it does not fit). No chunk of the file is asked for before.
    /// Also sent for a file held before whose copy is gone from the folder
    /// ([`super::Node::local_copy_gone`]): it is fetched again from the start.
    Prepare { file: FileName, manifest: Manifest },
    /// Read a chunk we hold to send it on `conn`: answer `Read` with its bytes (the node
    /// then sends the Upload), or send the Upload yourself, straight from storage, and
    /// answer `Sent` (see [`crate::Envelope::upload_header`]).
    Read { conn: ConnId, chunk: ChunkRef, push: bool },
    /// Store a verified chunk; answer `Written`.
    Write { chunk: ChunkRef, data: Bytes },
    /// Every chunk is written: make the file visible under its name, or as a conflict
    /// copy beside it if a file the node does not manage has the name; answer
    /// `Finalized` (a driver that cannot fail here need not).
    Finalize { file: FileName, digest: Digest },
    /// The file was removed from the network: delete the managed copy of content
    /// `digest` (at `stored_as` if it went to a conflict copy; never a file the node
    /// did not write) and its state. Not answered.
    Delete { file: FileName, digest: Digest, stored_as: Option<String> },
    /// Save these tombstones (all the node keeps), for [`super::Node::restore_tombstone`]
    /// after a restart. Not answered.
    SaveTombstones(Vec<Tombstone>),
    /// Export the complete `file` as a v1 `.torrent` naming `trackers` (BitTorrent,
    /// Action 15): hash its pieces, or take the hashes kept from an earlier export of
    /// the same copy, and from then on seed it to BitTorrent peers if the driver does;
    /// answer `Torrent`. A driver without BitTorrent answers with an error.
    Torrent { conn: ConnId, file: FileName, trackers: Vec<String> },
    /// Download the `.torrent` `torrent` (checked by the node: its files' names may be
    /// inserted) from BitTorrent peers (its http trackers', and `peers`), verifying
    /// every piece, into files of the driver's choosing; answer `TorrentFetched` with
    /// the path of each, in the order of [`crate::bittorrent::files::network_files`].
    /// The node then inserts them. A driver without BitTorrent answers with an error.
    /// When `torrent` is a magnet link, fetch its info dictionary instead (BEP 9, from
    /// `peers` and the link's http trackers) and answer `TorrentMetadata`; the node
    /// checks it and sends the `.torrent` back to be downloaded.
    AddTorrent { id: ImportId, torrent: Bytes, peers: Vec<String> },
    /// The inserts of AddTorrent `id` have ended: its downloaded files may go.
    AddFinished { id: ImportId },
}

/// A storage failure, with the code a user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    pub code: Code,
    pub message: String,
}

/// Results of [`StorageCommand`]s.
#[derive(Clone, Debug)]
pub enum StorageEvent {
    /// How far the driver has copied and hashed an insert: `done` of `total` bytes.
    ImportProgress {
        id: ImportId,
        done: u64,
        total: u64,
    },
    Imported {
        id: ImportId,
        result: Result<Manifest, StorageError>,
    },
    Committed {
        id: ImportId,
        result: Result<(), StorageError>,
    },
    Read {
        conn: ConnId,
        chunk: ChunkRef,
        push: bool,
        result: Result<Bytes, StorageError>,
    },
    /// The driver sent the chunk of a `Read` as an Upload itself (or could not).
    Sent {
        conn: ConnId,
        chunk: ChunkRef,
        push: bool,
        result: Result<(), StorageError>,
    },
    Written {
        chunk: ChunkRef,
        result: Result<(), StorageError>,
    },
    /// A `Prepare` ended. On failure nothing of the file is fetched: with ErrNoSpace it
    /// is asked again later ([`Tuning::space_retry`]), with anything else never.
    Prepared {
        file: FileName,
        result: Result<(), StorageError>,
    },
    /// A `Finalize` ended: `Ok(Some(path))` when the file went to a conflict copy at
    /// `path` (relative to the folder) instead of its name.
    Finalized {
        file: FileName,
        result: Result<Option<String>, StorageError>,
    },
    Torrent {
        conn: ConnId,
        file: FileName,
        result: Result<TorrentExport, StorageError>,
    },
    /// How far the download of AddTorrent `id` has got: `done` of `total` bytes verified.
    TorrentProgress {
        id: ImportId,
        done: u64,
        total: u64,
    },
    /// A magnet link's info dictionary, verified against its info-hash, as a `.torrent`
    /// with the link's trackers.
    TorrentMetadata {
        id: ImportId,
        result: Result<Bytes, StorageError>,
    },
    TorrentFetched {
        id: ImportId,
        result: Result<Vec<String>, StorageError>,
    },
}

impl StorageEvent {
    /// The answer to [`StorageCommand::Torrent`] of a driver that does not speak
    /// BitTorrent (the simulator, the browser peer).
    pub fn no_bittorrent(conn: ConnId, file: FileName) -> StorageEvent {
        let message = "this node does not serve BitTorrent (only the native node does)".into();
        StorageEvent::Torrent { conn, file, result: Err(StorageError { code: Code::BadRequest, message }) }
    }

    /// The answer to [`StorageCommand::AddTorrent`] of a driver that does not speak
    /// BitTorrent.
    pub fn no_bittorrent_add(id: ImportId) -> StorageEvent {
        let message = "this node does not download BitTorrent (only the native node does)".into();
        StorageEvent::TorrentFetched { id, result: Err(StorageError { code: Code::BadRequest, message }) }
    }
}

/// Why a user's request was refused: the code a control client would get, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
}

impl From<StorageError> for Refusal {
    fn from(e: StorageError) -> Self {
        Refusal { code: e.code, reason: e.message }
    }
}

/// Things worth telling a user or a log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Joined {
        peers: usize,
    },
    Left {
        unconfirmed: u64,
    },
    PeerJoined(PeerAddr),
    PeerLeft {
        peer: PeerAddr,
        graceful: bool,
    },
    FileAnnounced {
        file: FileName,
        size: u64,
    },
    FileInserted {
        file: FileName,
        size: u64,
    },
    /// The outcome of an insert asked for with [`super::Node::insert`].
    Inserted {
        id: ImportId,
        result: Result<(), Refusal>,
    },
    FileComplete {
        file: FileName,
        size: u64,
    },
    /// The outcome of adopting a file found in the node's folder ([`super::Node::adopt`]);
    /// [`Event::FileInserted`] follows success too.
    Adopted {
        id: ImportId,
        file: FileName,
        result: Result<(), Refusal>,
    },
    /// The node's complete copy of `file` went from its folder (deleted by hand): it
    /// is fetched again from the network ([`super::Node::local_copy_gone`]).
    Restoring {
        file: FileName,
    },
    ChunkRejected {
        peer: PeerAddr,
        chunk: ChunkRef,
    },
    PeerBanned(PeerAddr),
    /// A lost peer learned from the network was dialled `tries` times in vain: it is
    /// not dialled again (it may still connect to us).
    RedialGaveUp {
        peer: PeerAddr,
        tries: u32,
    },
    /// A peer sent the manifest of a file we neither asked it for nor heard it announce;
    /// it was not taken.
    ManifestIgnored {
        peer: PeerAddr,
        file: FileName,
    },
    /// A peer announced more files (or bytes) than a peer may; `ignored` were not tracked.
    AnnouncementsIgnored {
        peer: PeerAddr,
        ignored: usize,
    },
    /// A key claimed an address that belongs to another key (pinned to it, or first
    /// proven by it); its connection was closed.
    KeyConflict {
        peer: PeerAddr,
        bound: NodeId,
        presented: NodeId,
        pinned: bool,
    },
    /// A key banned earlier came back (under `peer`); its connection was closed.
    BannedKeyRefused {
        peer: PeerAddr,
        id: NodeId,
    },
    Conflict {
        peer: PeerAddr,
        file: FileName,
    },
    /// A peer announced a name that cannot live beside a file this node knows (the
    /// same name in another case, or `a/b` beside a file `a`); ignored.
    NameRefused {
        peer: PeerAddr,
        file: FileName,
        reason: String,
    },
    StorageFailed {
        file: FileName,
        message: String,
    },
    /// The node will not store `file` (shown in the status until that changes).
    FileRefused {
        file: FileName,
        reason: String,
    },
    /// A file the node does not manage has `file`'s name: the network's copy went to
    /// `path` instead (relative to the folder), and the other file was left alone.
    StoredAsConflictCopy {
        file: FileName,
        path: String,
    },
    /// A file was removed from the network (by our owner when `by` is `None`, or as
    /// `by` told us): this node's copy, if any, is being deleted.
    FileRemoved {
        file: FileName,
        by: Option<PeerAddr>,
    },
    BadRequest {
        conn: ConnId,
        reason: String,
    },
    /// A control request with a wrong or missing token: the first of a burst (later
    /// ones within [`Tuning::token_quiet`] are throttled, not reported).
    TokenRefused {
        conn: ConnId,
    },
    /// A control client set the bandwidth limits: the driver enforces them (with the
    /// automatic upload limit, [`super::Node::limits_in_force`]).
    LimitsChanged(RateLimits),
    /// The automatic upload limit changed (bytes a second; `None`: lifted): the driver
    /// enforces [`super::Node::limits_in_force`]. `measured` is what the uplink was just
    /// measured to carry, when peers' reports of a queue cut the limit.
    AutoUploadLimit {
        limit: Option<u64>,
        measured: Option<u64>,
    },
}

/// A file this node holds at start-up, as found on disk by the driver.
#[derive(Clone, Debug)]
pub struct LocalFile {
    pub name: FileName,
    pub manifest: Manifest,
    pub have: ChunkSet,
    /// Where in the folder the complete file is, if not under its name (a conflict copy).
    pub stored_as: Option<String>,
    /// Whether the file is visible in the folder. One with every chunk that is not (a
    /// crash came between its last write and the rename) is finalised at start.
    pub published: bool,
}

impl super::Node {
    /// Gives up `file` on this node (the browser peer's Forget, and its cancel of a
    /// download): it is no longer fetched, what is requested of it is forgotten, every
    /// chunk held of it is dropped and storage deletes it, and the peers are told what
    /// this node holds now (an Add on an open connection replaces what it claimed). The
    /// network's copies stay; a peer that still announces the file keeps it listed here,
    /// and [`super::Node::request_file`] fetches it again. Returns whether the file was known.
    pub fn drop_file(&mut self, now: Millis, file: &FileName) -> bool {
        if let Some(wanted) = &mut self.wanted {
            wanted.remove(file);
        }
        if self.files.get(file).is_none() || matches!(self.membership, super::Membership::Leaving(_)) {
            return false;
        }
        self.forget_requests_for(Some(file));
        self.haves.forget_file(file);
        self.timers.cancel(super::timers::Timer::SpaceRetry(file.clone()));
        let f = self.files.get_mut(file).expect("checked above");
        f.forget_held();
        // Writes in flight are answered for chunks no longer awaited, and not counted then.
        self.writing -= f.writing.count() as usize;
        f.writing = ChunkSet::new(f.chunk_count());
        f.requested = ChunkSet::new(f.chunk_count());
        (f.preparing, f.refused, f.manifest_from, f.sole_stored_at) = (false, None, None, None);
        let stored_as = f.stored_as.take();
        // Nothing is stored of a file before its manifest.
        if f.manifest.take().is_some() {
            let digest = f.digest;
            self.storage.push_back(StorageCommand::Delete { file: file.clone(), digest, stored_as });
        }
        if f.announcers == 0 {
            self.files.remove(file);
        }
        let files = self.file_list();
        let conns: Vec<ConnId> = self.peers.values().map(|p| p.conn).collect();
        for conn in conns {
            self.send(conn, crate::wire::PeerMessage::Add { files: files.clone() });
        }
        self.after_input(now);
        true
    }
}
