//! BitTorrent beside torronto (issue 15): files exported as v1 torrents, the
//! `--bittorrent` listener that seeds them ([`serve`]) and their tracker announces
//! ([`announce`]); torrents downloaded for `torronto add` ([`fetch`]).
//!
//! What an export leaves in `DIR/.torronto/bittorrent/` (read by the listener on each
//! handshake, so exports made by `torronto torrent` while the node runs count at once):
//!
//! ```text
//! <info-hash hex>.info    the bencoded info dictionary, exactly as hashed
//! <info-hash hex>.export  the network name, the stamp of the copy hashed, its trackers
//! names/<sha256 of name>  the info-hash of the last export of that name (the cache)
//! listen                  the node's --bittorrent address, for the magnet link's x.pe
//! ```
//!
//! Only info-hashes with both files are visible to BitTorrent peers, and only while the
//! node's complete copy is the one hashed (same inode, size and modification time).

pub mod announce;
pub mod fetch;
pub mod serve;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use torronto_core::bittorrent::magnet::magnet;
use torronto_core::bittorrent::metainfo::{from_hex, hex, piece_length_for};
use torronto_core::bittorrent::{Info, PieceHasher, Sha1Hash, Torrent};
use torronto_core::name::STATE_DIR;
use torronto_core::wire::{is_tracker_url, TorrentExport};
use torronto_core::FileName;

use crate::store::{open_published, write_atomic};

/// Largest info dictionary read back: 1 TiB in 4 MiB pieces is 5 MiB of hashes.
const MAX_INFO_FILE: u64 = 16 << 20;
/// Largest export record read back: a name, a stamp and 32 tracker URLs of 2 KiB.
const MAX_RECORD: u64 = 128 << 10;

/// `DIR/.torronto/bittorrent`.
pub fn state_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("bittorrent")
}

/// An exported file: its info dictionary and info-hash.
#[derive(Debug)]
pub struct Export {
    pub info: Info,
    pub info_hash: Sha1Hash,
}

/// What says the copy hashed is still the copy there.
fn stamp(file: &File) -> io::Result<String> {
    let m = file.metadata()?;
    Ok(format!("{} {} {} {} {}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

fn name_key(name: &FileName) -> String {
    Sha256::digest(name.as_str().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Exports the network file `name` held complete by the node of folder `dir`: hashes its
/// pieces (one pass), or takes the hashes of an earlier export of the same copy; the
/// node announces it to `trackers` from then on.
pub fn export(dir: &Path, name: &str, trackers: &[String]) -> anyhow::Result<Export> {
    let name = FileName::new(name).map_err(|e| anyhow::anyhow!("{name:?} is not a file name: {e}"))?;
    let Some(mut file) = open_published(dir, &name).with_context(|| format!("cannot open {name}"))? else {
        bail!("the node of {} holds no complete copy of {name}", dir.display());
    };
    let state = state_dir(dir);
    let stamp = stamp(&file)?;
    let cached = fs::read_to_string(state.join("names").join(name_key(&name)))
        .ok()
        .and_then(|h| from_hex(h.trim()))
        .and_then(|h| Some((h, read_info(&state, &h).ok()?, Record::read(&state, &h).ok()?)));
    let record = Record { name: name.clone(), stamp: stamp.clone(), trackers: trackers.to_vec() };
    if let Some((info_hash, info, old)) = cached {
        if old.name == name && old.stamp == stamp {
            record.write(&state, &info_hash)?;
            return Ok(Export { info, info_hash });
        }
    }
    let size = file.metadata()?.len();
    let mut hasher = PieceHasher::new(piece_length_for(size));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    // A torrent's name is one path component; the network name's last one.
    let base = name.components().last().unwrap_or(name.as_str()).to_owned();
    let info = hasher.finish(base);
    if info.length != size || self::stamp(&file)? != stamp {
        bail!("{name} changed while it was hashed; try again");
    }
    let info_hash = info.info_hash();
    let h = hex(&info_hash);
    write_atomic(&state.join(format!("{h}.info")), &info.encode(), 0o644)?;
    record.write(&state, &info_hash)?;
    write_atomic(&state.join("names").join(name_key(&name)), h.as_bytes(), 0o644)?;
    Ok(Export { info, info_hash })
}

/// Exports `name` from the node of folder `dir` with `trackers`: the `.torrent` for
/// control Torrent's reply, and where the node seeds it if it serves BitTorrent.
pub fn torrent(dir: &Path, name: &str, trackers: &[String]) -> anyhow::Result<TorrentExport> {
    if let Some(bad) = trackers.iter().find(|t| !is_tracker_url(t)) {
        bail!("{bad:?} is not a tracker URL (http://, https:// or udp://)");
    }
    let export = export(dir, name, trackers)?;
    let torrent = Torrent::encode(&export.info, trackers).into();
    Ok(TorrentExport { torrent, seeder: listen_addr(dir) })
}

/// What an export recorded beside its info dictionary (`<info-hash>.export`): the
/// network name, the stamp of the copy hashed, and the trackers to announce to, a line
/// each (tracker URLs hold no whitespace: [`is_tracker_url`]).
#[derive(Debug)]
pub struct Record {
    pub name: FileName,
    stamp: String,
    pub trackers: Vec<String>,
}

impl Record {
    fn write(&self, state: &Path, info_hash: &Sha1Hash) -> io::Result<()> {
        let text = format!("{}\n{}\n{}\n", self.name.as_str(), self.stamp, self.trackers.join(" "));
        write_atomic(&state.join(format!("{}.export", hex(info_hash))), text.as_bytes(), 0o644)
    }

    pub fn read(state: &Path, info_hash: &Sha1Hash) -> anyhow::Result<Record> {
        let mut text = String::new();
        File::open(state.join(format!("{}.export", hex(info_hash))))?.take(MAX_RECORD).read_to_string(&mut text)?;
        let mut lines = text.lines();
        let name = FileName::new(lines.next().unwrap_or_default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let stamp = lines.next().unwrap_or_default().to_owned();
        let trackers = lines.next().unwrap_or_default().split(' ').filter(|t| is_tracker_url(t)).map(str::to_owned);
        Ok(Record { name, stamp, trackers: trackers.collect() })
    }
}

/// The info dictionary recorded for `info_hash`.
fn read_info(state: &Path, info_hash: &Sha1Hash) -> anyhow::Result<Info> {
    Ok(read_info_raw(state, info_hash)?.0)
}

/// The info dictionary recorded for `info_hash`, and its bytes as hashed.
fn read_info_raw(state: &Path, info_hash: &Sha1Hash) -> anyhow::Result<(Info, Bytes)> {
    let mut encoded = Vec::new();
    File::open(state.join(format!("{}.info", hex(info_hash))))?.take(MAX_INFO_FILE).read_to_end(&mut encoded)?;
    Ok((Info::decode(&encoded)?, encoded.into()))
}

/// Every info-hash exported from folder `dir`, with its record.
pub fn exports(dir: &Path) -> Vec<(Sha1Hash, Record)> {
    let state = state_dir(dir);
    let Ok(entries) = fs::read_dir(&state) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| from_hex(e.file_name().to_str()?.strip_suffix(".export")?))
        .filter_map(|h| Some((h, Record::read(&state, &h).ok()?)))
        .collect()
}

/// An exported file, open for its BitTorrent peers.
#[derive(Debug)]
pub struct Seeded {
    pub info: Info,
    /// The info dictionary as hashed, for the metadata exchange.
    pub metadata: Bytes,
    pub file: File,
}

/// The exported file of `info_hash`, opened, if it is exported and unchanged since.
pub fn lookup(dir: &Path, info_hash: &Sha1Hash) -> Option<Seeded> {
    let state = state_dir(dir);
    let ((info, metadata), record) = (read_info_raw(&state, info_hash).ok()?, Record::read(&state, info_hash).ok()?);
    let file = open_published(dir, &record.name).ok()??;
    let unchanged = stamp(&file).ok()? == record.stamp && file.metadata().ok()?.len() == info.length;
    unchanged.then_some(Seeded { info, metadata, file })
}

/// The `--bittorrent` address a running node of `dir` left, if any.
pub fn listen_addr(dir: &Path) -> Option<String> {
    fs::read_to_string(state_dir(dir).join("listen")).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Records (or with `None` forgets) the node's `--bittorrent` address.
pub fn set_listen_addr(dir: &Path, addr: Option<&str>) -> io::Result<()> {
    let path = state_dir(dir).join("listen");
    match addr {
        Some(addr) => write_atomic(&path, addr.as_bytes(), 0o644),
        None => match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// `torronto torrent`'s end: writes the `.torrent` a node sent to `out` (default: its
/// name plus `.torrent`, here) and prints the magnet link (or, with `json`, both).
pub fn save_export(export: &TorrentExport, out: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let torrent = Torrent::decode(&export.torrent).context("the node sent a .torrent that does not decode")?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.torrent", torrent.info.name)));
    fs::write(&out, &export.torrent).with_context(|| format!("cannot write {}", out.display()))?;
    let link = magnet(&torrent.info_hash, &torrent.info, export.seeder.as_deref(), &torrent.trackers);
    if json {
        let object =
            serde_json::json!({"Code": 0, "Torrent": out, "InfoHash": hex(&torrent.info_hash), "Magnet": link});
        println!("{object}");
        return Ok(());
    }
    eprintln!("torrent written to {}", out.display());
    if export.seeder.is_none() {
        eprintln!("the node is not serving BitTorrent: start it with --bittorrent HOST:PORT to seed this file");
    }
    println!("{link}");
    Ok(())
}
