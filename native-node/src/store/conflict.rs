//! Conflict copies: where the network's copy goes when the name is taken.

use torronto_core::manifest::Digest;
use torronto_core::name::MAX_COMPONENT_LEN;
use torronto_core::FileName;

use super::import::hash;
use super::state::{read_manifest, write_atomic};
use super::Store;

/// Where the network's copy of `name` goes when a file torronto does not manage has
/// the name: beside it, as `<stem>.torronto-conflict-<first 8 digits of the
/// digest><.ext>` (after Syncthing's `.sync-conflict-…`). Named by the content, so a
/// restart finds it again, and the same content always gets the same copy.
pub fn conflict_name(name: &FileName, digest: Digest) -> String {
    let (dir, base) = name.as_str().rsplit_once('/').map_or(("", name.as_str()), |(d, b)| (d, b));
    let (stem, ext) = match base.rfind('.') {
        Some(dot) if dot > 0 => base.split_at(dot),
        _ => (base, ""),
    };
    let tag = format!(".torronto-conflict-{}", &digest.to_string()[..8]);
    // Shorten the stem (at a character boundary) to keep the component within limits.
    let room = MAX_COMPONENT_LEN.saturating_sub(tag.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let base = format!("{}{tag}{ext}", &stem[..cut]);
    if dir.is_empty() {
        base
    } else {
        format!("{dir}/{base}")
    }
}

impl Store {
    /// Whether the file the user put at `name` is the network's file (same size, same
    /// digest): then it becomes this node's copy, and the fetched one is dropped, rather
    /// than keep the same content twice.
    pub(super) fn holds_already(&self, name: &FileName, digest: Digest) -> bool {
        let Ok((_, manifest)) = read_manifest(&self.state_path(name, "manifest")) else { return false };
        let Ok(mut file) = self.folder.open_file(name.as_str(), false) else { return false };
        if file.metadata().map(|m| m.len()).ok() != Some(manifest.size()) {
            return false;
        }
        let same =
            hash(&mut file, name.as_str(), manifest.size(), &|_, _| {}, |_| Ok(())).is_ok_and(|m| m.digest() == digest);
        if !same {
            return false;
        }
        let recorded = write_atomic(&self.state_path(name, "published"), name.as_str().as_bytes(), 0o644);
        if recorded.is_err() {
            return false;
        }
        self.handles().remove(name);
        let _ = std::fs::remove_file(self.state_path(name, "partial"));
        if let Some(held) = self.held().get_mut(name) {
            held.fetching = false;
        }
        true
    }
}

/// Whether `path` is named as a conflict copy ([`conflict_name`]): the tag and eight
/// hexadecimal digits in its last component.
pub fn is_conflict_copy(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.match_indices(".torronto-conflict-").any(|(at, tag)| {
        let digits = &base.as_bytes()[at + tag.len()..];
        digits.len() >= 8 && digits[..8].iter().all(u8::is_ascii_hexdigit) && digits.get(8).is_none_or(|&b| b == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::manifest_of;
    use crate::store::{write_chunk, Store};
    use std::fs;
    use torronto_core::ChunkIndex;

    #[test]
    fn a_file_torronto_does_not_manage_is_kept_and_the_network_copy_goes_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::create_dir(tmp.path().join("docs")).unwrap();
        fs::write(tmp.path().join("docs/notes.txt"), b"the user's own notes").unwrap();
        let data = b"the network's notes".to_vec();
        let m = manifest_of(&data);
        let name = FileName::new("docs/notes.txt").unwrap();
        store.prepare(&name, &m).unwrap();
        write_chunk(&store.handle(&name).unwrap(), m.size(), ChunkIndex(0), &data).unwrap();
        let copy = store.finalize(&name, m.digest()).unwrap().expect("a conflict copy");
        assert_eq!(copy, format!("docs/notes.torronto-conflict-{}.txt", &m.digest().to_string()[..8]));
        assert_eq!(fs::read(tmp.path().join("docs/notes.txt")).unwrap(), b"the user's own notes");
        assert_eq!(fs::read(tmp.path().join(&copy)).unwrap(), data);
        let loaded = Store::open(tmp.path()).unwrap().load().unwrap();
        assert_eq!((loaded[0].have.is_complete(), loaded[0].stored_as.as_deref()), (true, Some(copy.as_str())));
        assert_eq!(conflict_name(&FileName::new("Makefile").unwrap(), m.digest()).len(), 8 + 27);
        let long = FileName::new(&"x".repeat(250)).unwrap();
        assert_eq!(conflict_name(&long, m.digest()).len(), 255, "shortened to fit a component");
        assert!(is_conflict_copy(&copy) && is_conflict_copy(&conflict_name(&long, m.digest())));
        for mine in [
            "docs/notes.txt",
            "notes.torronto-conflict-.txt",
            "a.torronto-conflict-1234567g",
            "x/a.torronto-conflict-12345678x",
        ] {
            assert!(!is_conflict_copy(mine), "{mine}");
        }
    }
}
