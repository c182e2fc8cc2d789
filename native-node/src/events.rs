//! How the node's events read in the log.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use torronto_core::{Code, Event, FileName};

/// Writes the node's [`Event`]s to the log.
#[derive(Debug, Default)]
pub struct EventLog {
    storage_errors: ErrorDigest,
    /// Names already logged as refused: a peer repeats them in every Have.
    names_refused: HashSet<FileName>,
}

impl EventLog {
    pub fn record(&mut self, event: Event) {
        match event {
            Event::Joined { peers } => tracing::info!("joined the network ({peers} peers answered)"),
            Event::Left { unconfirmed: 0 } => {
                tracing::info!("left the network; every chunk we held alone is now held elsewhere")
            }
            Event::Left { unconfirmed } => {
                tracing::warn!(
                    "left the network; {unconfirmed} chunks held only here were not confirmed elsewhere in time"
                )
            }
            Event::PeerJoined(p) => tracing::info!("peer {p} connected"),
            Event::PeerLeft { peer, graceful: true } => tracing::info!("peer {peer} left"),
            Event::PeerLeft { peer, graceful: false } => tracing::info!("peer {peer} disconnected"),
            Event::FileAnnounced { file, size } => tracing::info!("new file in the network: {file} ({size} bytes)"),
            Event::FileInserted { file, size } => tracing::info!("inserted {file} ({size} bytes)"),
            Event::FileComplete { file, size } => tracing::info!("complete: {file} ({size} bytes, verified)"),
            Event::ChunkRejected { peer, chunk } => {
                tracing::warn!("rejected chunk {} of {} from {peer}: hash mismatch", chunk.index, chunk.file)
            }
            Event::AnnouncementsIgnored { peer, ignored } => {
                tracing::warn!(
                    "ignored {ignored} files announced by {peer}: more files or bytes than one peer may announce"
                )
            }
            Event::ManifestIgnored { peer, file } => {
                tracing::warn!("ignored the manifest of {file} from {peer}: not asked for and not announced")
            }
            Event::RedialGaveUp { peer, tries } => {
                tracing::info!("gave up dialling {peer} after {tries} tries (not in the peers file)")
            }
            Event::PeerBanned(p) => tracing::warn!("disconnected {p}: it kept sending corrupt chunks"),
            Event::KeyConflict { peer, bound, presented, pinned: true } => {
                tracing::warn!("refused node {presented} claiming {peer}, which is pinned to node {bound}")
            }
            Event::KeyConflict { peer, bound, presented, pinned: false } => tracing::warn!(
                "refused node {presented} claiming {peer}, which node {bound} proved first; if that node made \
                 itself a new identity, pin {peer}#{presented} in the peers file or restart this node"
            ),
            Event::BannedKeyRefused { peer, id } => tracing::debug!("refused banned node {id} (now giving {peer})"),
            Event::Conflict { peer, file } => {
                tracing::warn!("{peer} announces other content under the name {file}; ignored")
            }
            Event::NameRefused { peer, file, reason } => {
                // Bounded: a peer announcing endless names gets them logged again.
                if self.names_refused.len() >= 1024 {
                    self.names_refused.clear();
                }
                if self.names_refused.insert(file.clone()) {
                    tracing::warn!("ignored {file}, announced by {peer}: {reason}");
                }
            }
            Event::FileRefused { file, reason } => tracing::error!("not storing {file}: {reason}"),
            Event::StoredAsConflictCopy { file, path } => tracing::warn!(
                "a file torronto does not manage is in the folder as {file}: left alone; the network's {file} is \
                 stored as {path}"
            ),
            Event::FileRemoved { file, by: None } => {
                tracing::info!("removed {file} from the network (a tombstone keeps it removed)")
            }
            Event::FileRemoved { file, by: Some(peer) } => {
                tracing::info!("{file} was removed from the network (told by {peer}); this node keeps no copy")
            }
            Event::StorageFailed { file, message } => self.storage_errors.report(&file, &message),
            Event::BadRequest { conn, reason } => tracing::debug!(%conn, "bad request: {reason}"),
            Event::TokenRefused { conn } => tracing::warn!(
                %conn,
                "refused a control request with a wrong or missing token; wrong tokens are answered ever more \
                 slowly, and not logged again until a minute passes without one"
            ),
            Event::LimitsChanged(limits) => tracing::info!(
                "bandwidth limits now: upload {}, download {}",
                crate::limits::format_rate(limits.upload),
                crate::limits::format_rate(limits.download)
            ),
            Event::AutoUploadLimit { limit: Some(limit), measured: Some(measured) } => tracing::info!(
                "peers say our uploads queue on their way out: the uplink carries about {}, uploads held at {} \
                 (--auto-upload-limit)",
                crate::limits::format_rate(measured),
                crate::limits::format_rate(limit)
            ),
            Event::AutoUploadLimit { limit: Some(limit), measured: None } => {
                tracing::debug!("automatic upload limit now {}", crate::limits::format_rate(limit))
            }
            Event::AutoUploadLimit { limit: None, .. } => {
                tracing::info!("automatic upload limit lifted: no queue for a while")
            }
            // The native node inserts through control connections only.
            Event::Inserted { .. } => {}
            // Success is logged as the insert.
            Event::Adopted { result: Ok(()), .. } => {}
            Event::Adopted { file, result: Err(refusal), .. } if refusal.code == Code::FileExists => tracing::warn!(
                "{file} in the folder is left as it is and not shared: {}; the network's copy, when fetched, \
                 is stored beside it as a conflict copy",
                refusal.reason
            ),
            Event::Adopted { file, result: Err(refusal), .. } => {
                tracing::warn!("not sharing {file} from the folder: {}", refusal.reason)
            }
            Event::Restoring { file } => {
                tracing::warn!("restoring {file} from the network: it was deleted from the folder")
            }
        }
    }
}

/// Storage errors come once per chunk (hundreds a minute on a full disk): log the
/// first at once, then how many more there were, at most every few seconds.
#[derive(Debug, Default)]
struct ErrorDigest {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ErrorDigest {
    const EVERY: Duration = Duration::from_secs(5);

    fn report(&mut self, file: &FileName, message: &str) {
        let now = Instant::now();
        if self.last_logged.is_some_and(|t| now - t < Self::EVERY) {
            self.suppressed += 1;
            return;
        }
        match std::mem::take(&mut self.suppressed) {
            0 => tracing::error!("storage failed for {file}: {message}"),
            n => tracing::error!("storage failed for {file}: {message} (and {n} more failures in the last seconds)"),
        }
        self.last_logged = Some(now);
    }
}
