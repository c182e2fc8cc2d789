//! What a torrent becomes in the network (`torronto add`): the network name of each of
//! its files, every name from the torrent checked by [`FileName`]'s rules, and where
//! each piece's bytes fall among the files.

use std::collections::BTreeMap;

use super::metainfo::Info;
use crate::files::collision_among;
use crate::layout::MAX_FILE_SIZE;
use crate::name::FileName;

/// One file of a torrent as the network will hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFile {
    pub name: FileName,
    pub size: u64,
    /// Where its bytes start in the torrent's byte stream.
    pub offset: u64,
}

/// The network files of `info`: a single-file torrent is one file named `name`; a
/// multi-file one is `<name>/<path>` for each file. Every component must be a plain
/// name (no `/`, `..`, control or invisible characters…), no two names may be taken
/// for the same (case, Unicode form, `a` beside `a/b`), and each file must fit the
/// network's largest file size. The error says which name and why.
pub fn network_files(info: &Info) -> Result<Vec<NetworkFile>, String> {
    let component = |c: &str| -> Result<(), String> {
        if c.contains('/') {
            return Err(format!("{c:?} holds a '/' inside one path component"));
        }
        Ok(())
    };
    component(&info.name)?;
    let paths: Vec<(String, u64)> = if info.files.is_empty() {
        vec![(info.name.clone(), info.length)]
    } else {
        let mut out = Vec::with_capacity(info.files.len());
        for f in &info.files {
            f.path.iter().try_for_each(|c| component(c))?;
            out.push((format!("{}/{}", info.name, f.path.join("/")), f.length));
        }
        out
    };
    let mut folded: BTreeMap<String, FileName> = BTreeMap::new();
    let mut files = Vec::with_capacity(paths.len());
    let mut offset = 0u64;
    for (path, size) in paths {
        let name = FileName::new(&path).map_err(|e| format!("{path:?} cannot be stored: {e}"))?;
        if let Some(collision) = collision_among(&folded, &name) {
            return Err(format!(
                "the torrent names two files that cannot live side by side: {}",
                collision.explain(&name)
            ));
        }
        if size > MAX_FILE_SIZE {
            return Err(format!("{name} is over the network's largest file size ({MAX_FILE_SIZE} bytes)"));
        }
        folded.insert(name.folded(), name.clone());
        files.push(NetworkFile { name, size, offset });
        offset += size;
    }
    Ok(files)
}

/// Where `len` bytes at `offset` of the torrent's stream lie: (file index, offset in
/// that file, length) for each file they touch, empty files skipped.
pub fn spans(files: &[NetworkFile], offset: u64, len: u64) -> Vec<(usize, u64, u64)> {
    let end = offset + len;
    let first = files.partition_point(|f| f.offset + f.size <= offset);
    files[first..]
        .iter()
        .enumerate()
        .take_while(|(_, f)| f.offset < end)
        .filter(|(_, f)| f.size > 0)
        .map(|(i, f)| {
            let start = offset.max(f.offset);
            (first + i, start - f.offset, end.min(f.offset + f.size) - start)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bittorrent::metainfo::TorrentFile;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn info(name: &str, files: &[(&[&str], u64)]) -> Info {
        let files: Vec<TorrentFile> = files
            .iter()
            .map(|(p, l)| TorrentFile { path: p.iter().map(|s| s.to_string()).collect(), length: *l })
            .collect();
        let length = files.iter().map(|f| f.length).sum::<u64>().max(1);
        Info { name: name.into(), length, piece_length: 16384, pieces: Vec::new(), files }
    }

    #[test]
    fn multi_file_names_go_under_the_torrent_name() {
        let got = network_files(&info("album", &[(&["a.txt"], 10), (&["cd 2", "b.flac"], 0), (&["c"], 5)])).unwrap();
        let names: Vec<&str> = got.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["album/a.txt", "album/cd 2/b.flac", "album/c"]);
        assert_eq!(got.iter().map(|f| f.offset).collect::<Vec<_>>(), [0, 10, 10]);
        let single = network_files(&info("one.iso", &[])).unwrap();
        assert_eq!(single[0].name.as_str(), "one.iso");
    }

    #[test]
    fn unsafe_names_are_refused() {
        for (name, path) in [
            ("x", &["..", "etc"][..]),
            ("x", &["a/b"]),
            ("..", &["a"]),
            ("x", &[""]),
            ("x", &["a\u{0}"]),
            ("x", &["a\u{202e}b"]),
            (".torronto", &["token"]),
            ("x", &["a\\b"]),
        ] {
            assert!(network_files(&info(name, &[(path, 1)])).is_err(), "{name} {path:?}");
        }
        assert!(network_files(&info("a/b", &[])).is_err());
        let twice = network_files(&info("x", &[(&["README"], 1), (&["readme"], 1)])).unwrap_err();
        assert!(twice.contains("side by side"), "{twice}");
        assert!(network_files(&info("x", &[(&["a"], 1), (&["a", "b"], 1)])).is_err());
        assert!(network_files(&info("x", &[(&["big"], MAX_FILE_SIZE + 1)])).is_err());
    }

    #[test]
    fn spans_cross_file_boundaries() {
        let files = network_files(&info("t", &[(&["a"], 10), (&["e"], 0), (&["b"], 20), (&["c"], 5)])).unwrap();
        assert_eq!(spans(&files, 0, 10), [(0, 0, 10)]);
        assert_eq!(spans(&files, 5, 10), [(0, 5, 5), (2, 0, 5)]);
        assert_eq!(spans(&files, 8, 27), [(0, 8, 2), (2, 0, 20), (3, 0, 5)]);
        assert_eq!(spans(&files, 30, 5), [(3, 0, 5)]);
    }
}
