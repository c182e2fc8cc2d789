//! How much of the disk the node may use (`--min-free`, `--max-store`), and whether a
//! file fits.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use torronto_core::{Code, FileName, StorageError};

use super::error::storage_error;
use super::{io_error, Store};
use crate::client::human_size;

/// How much of the disk the node may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Free space to leave on the folder's file system.
    pub min_free: MinFree,
    /// Most bytes of files the folder may hold (complete and being fetched).
    pub max_store: Option<u64>,
}

/// `--min-free`: bytes, or a share of the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    Bytes(u64),
    Percent(u8),
}

impl Default for Space {
    /// Keep 5 % of the file system free, but never ask for more than 1 GiB: enough for
    /// the system and other programs to go on working (ext4 keeps 5 % for root for the
    /// same reason), without refusing everything on a small disk.
    fn default() -> Self {
        Self { min_free: MinFree::Percent(5), max_store: None }
    }
}

impl MinFree {
    const CAP: u64 = 1 << 30;

    /// Bytes to keep free on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (total / 100 * u64::from(p)).min(Self::CAP),
        }
    }
}

/// A size as given on the command line: bytes, or with a binary unit (`64K`, `500M`,
/// `1G`, `2T`; `MiB` and `GB` read the same).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a size (like 500M or 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    Ok((number * (1u64 << shift) as f64) as u64)
}

impl std::str::FromStr for MinFree {
    type Err = String;

    /// A size ([`parse_size`]) or a share of the file system (`5%`).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MinFree::Percent(p)),
                _ => Err(format!("{text:?}: a share is 0% to 100%")),
            },
            None => parse_size(text).map(MinFree::Bytes),
        }
    }
}

/// A file the folder holds, as the space checks count it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub(super) size: u64,
    /// Still being fetched: its partial file will take up to `size` on the disk.
    pub(super) fetching: bool,
}

impl Store {
    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, HashMap<FileName, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a file of `size` bytes (`name`, replacing the file `replacing`) fits:
    /// under `--max-store`, and leaving `--min-free` on the file system once it and
    /// every other file being fetched are written. `allocated` is what it takes already.
    pub(super) fn check_space(
        &self,
        replacing: Option<&FileName>,
        name: &str,
        size: u64,
        allocated: u64,
    ) -> Result<(), StorageError> {
        let others: Vec<(FileName, Held)> =
            self.held().iter().filter(|(n, _)| Some(*n) != replacing).map(|(n, h)| (n.clone(), *h)).collect();
        if let Some(max) = self.space.max_store {
            let held: u64 = others.iter().map(|(_, h)| h.size).sum();
            if held + size > max {
                return Err(no_space(format!(
                    "{name} ({}) does not fit: the folder holds {} of its --max-store {}",
                    human_size(size),
                    human_size(held),
                    human_size(max)
                )));
            }
        }
        // Partial files are sparse: what the others still have to write is promised.
        let promised: u64 = others
            .iter()
            .filter(|(_, h)| h.fetching)
            .map(|(n, h)| h.size.saturating_sub(allocated_bytes(&self.state_path(n, "partial"))))
            .sum();
        let need = size.saturating_sub(allocated).saturating_add(promised);
        let vfs = rustix::fs::statvfs(self.dir.as_path()).map_err(|e| io_error("the folder", &e.into()))?;
        let frsize = vfs.f_frsize as u64;
        let (free, total) = (vfs.f_bavail.saturating_mul(frsize), vfs.f_blocks.saturating_mul(frsize));
        let keep = self.space.min_free.bytes(total);
        if free < need.saturating_add(keep) {
            let promised = match promised {
                0 => String::new(),
                p => format!(" ({} of it promised to files being fetched)", human_size(p)),
            };
            return Err(no_space(format!(
                "{name} ({}) does not fit: {} free on the disk of {}{promised}, and {} is kept free (--min-free)",
                human_size(size),
                human_size(free),
                self.dir.display(),
                human_size(keep)
            )));
        }
        Ok(())
    }
}

/// The bytes the file at `path` takes on the disk (0 if there is none).
pub(super) fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

fn no_space(message: String) -> StorageError {
    storage_error(Code::NoSpace, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::manifest_of;

    #[test]
    fn files_that_do_not_fit_are_refused_naming_the_space() {
        let tmp = tempfile::tempdir().unwrap();
        let space = Space { min_free: MinFree::Bytes(0), max_store: Some(200_000) };
        let store = Store::open_with(tmp.path(), space).unwrap();
        let m = manifest_of(&[7u8; 150_000]);
        store.prepare(&FileName::new("first").unwrap(), &m).unwrap();
        let e = store.prepare(&FileName::new("second").unwrap(), &m).unwrap_err();
        assert_eq!(e.code, Code::NoSpace);
        assert!(e.message.contains("--max-store 195.3 KiB") && e.message.contains("146.5 KiB"), "{}", e.message);
        store.prepare(&FileName::new("first").unwrap(), &m).expect("preparing again counts the file once");

        let huge = Space { min_free: MinFree::Bytes(u64::MAX / 2), max_store: None };
        let store = Store::open_with(tmp.path(), huge).unwrap();
        let e = store.prepare(&FileName::new("third").unwrap(), &m).unwrap_err();
        assert!(e.code == Code::NoSpace && e.message.contains("kept free (--min-free)"), "{}", e.message);
        assert_eq!(MinFree::Percent(5).bytes(100 << 30), 1 << 30, "5 %, at most 1 GiB");
        assert_eq!(MinFree::Percent(5).bytes(1000), 50);
        assert_eq!("2G".parse(), Ok(MinFree::Bytes(2 << 30)));
        assert_eq!("10%".parse(), Ok(MinFree::Percent(10)));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("64k"), Ok(65_536));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err() && parse_size("5X").is_err() && "101%".parse::<MinFree>().is_err());
    }
}
