//! Load: 8 nodes and 200 files of mixed sizes (empty, 1 byte, exactly one chunk, one
//! byte over, up to several MiB; about 55 MiB in all) inserted across all of them. Every
//! file reaches every node byte-identical, and every node's status agrees: each file
//! local 1.0, system 1.0, held by all 8.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use torronto_tests::{file_status, number, peers, random_bytes, sha256_file, sha256_hex, wait_until, Cluster};

const NODES: usize = 8;
const FILES: usize = 200;

/// Sizes: 10 each of the edge cases, 10 of 2-5 MiB, the rest small and odd.
fn size_of(i: usize) -> usize {
    match i {
        0..10 => 0,
        10..20 => 1,
        20..30 => 65_536,
        30..40 => 65_537,
        40..50 => (2 << 20) + (i - 40) * 350_001,
        _ => 2 + (i * 7_919 * 13) % 200_000,
    }
}

#[test]
fn eight_nodes_two_hundred_files_replicate_everywhere() {
    let cluster = Cluster::start_joined(NODES);
    let src = tempfile::tempdir().unwrap();
    let mut want: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut by_node: Vec<Vec<PathBuf>> = vec![Vec::new(); NODES];
    let mut total = 0u64;
    for i in 0..FILES {
        let size = size_of(i);
        let name = format!("f{i:03}-{size}.bin");
        let bytes = random_bytes(size, 1_000 + i as u64);
        let path = src.path().join(&name);
        fs::write(&path, &bytes).unwrap();
        want.insert(name, (size as u64, sha256_hex(&bytes)));
        by_node[i % NODES].push(path);
        total += size as u64;
    }
    println!("{FILES} files, {:.1} MiB in all, inserted across {NODES} nodes", total as f64 / 1048576.0);

    let start = Instant::now();
    std::thread::scope(|s| {
        for (node, paths) in cluster.nodes.iter().zip(&by_node) {
            s.spawn(move || {
                for p in paths {
                    node.insert(p).ok(&format!("insert {} on {}", p.display(), node.label()));
                }
            });
        }
    });
    let inserted = start.elapsed();
    let complete = |st: &Value| -> usize {
        want.keys()
            .filter(|name| {
                file_status(st, name).is_some_and(|f| f.local == 1.0 && f.system == 1.0 && f.least == NODES as u64)
            })
            .count()
    };
    let mut last: Vec<usize> = vec![0; NODES];
    wait_until(Duration::from_secs(240), "every node holds every file, held by all 8", || {
        for (i, n) in cluster.nodes.iter().enumerate() {
            if last[i] < FILES {
                last[i] = complete(&n.query());
            }
        }
        last.iter().all(|&c| c == FILES)
    });
    let replicated = start.elapsed();
    println!("inserted in {inserted:?}; every node complete {replicated:?} after the first insert");

    for n in &cluster.nodes {
        let st = n.query();
        assert_eq!(number(&st, "numFiles"), FILES as u64, "node {}: numFiles: {st}", n.label());
        assert_eq!(peers(&st).len(), NODES - 1, "node {}: peers: {st}", n.label());
        for (name, (size, sha)) in &want {
            let f = file_status(&st, name).unwrap_or_else(|| panic!("node {} does not list {name}", n.label()));
            assert_eq!(
                (f.local, f.system, f.least, f.weighted, f.size),
                (1.0, 1.0, NODES as u64, NODES as f64, Some(*size)),
                "node {}: status of {name}",
                n.label()
            );
            let path = n.file(name);
            let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("node {}: {name}: {e}", n.label()));
            assert_eq!(meta.len(), *size, "node {}: size of {name}", n.label());
            assert_eq!(&sha256_file(&path), sha, "node {}: {name} differs from the inserted file", n.label());
        }
        let extra: Vec<String> = fs::read_dir(n.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f != ".torronto" && !want.contains_key(f))
            .collect();
        assert!(extra.is_empty(), "node {}: unexpected entries in its folder: {extra:?}", n.label());
    }
    println!("verified {} file copies byte for byte in {:?}", FILES * NODES, start.elapsed() - replicated);
}
