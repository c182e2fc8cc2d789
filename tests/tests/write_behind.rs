//! Write-behind (native-node/src/store/write_behind.rs): a node fetching a file pushes
//! the chunks it wrote to the disk and out of the page cache soon after, so what it
//! fetched is not left cached all at once (checked with util-linux's `fincore`), and
//! the chunks it dropped are still served right: a third node fetches the whole file
//! from it alone, byte for byte. Skipped, saying why, where the folder is on a file
//! system whose page cache is the storage itself (tmpfs) or `fincore` is missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use torronto_tests::{random_file, sha256_file, TestNode};

const MIB: u64 = 1024 * 1024;
/// Larger than the 64 MiB the node leaves cached, by enough to tell the two apart.
const SIZE: u64 = 192 * MIB;

/// Bytes of `path` in the page cache, or why that cannot be told here.
fn cached_bytes(path: &Path) -> Result<u64, String> {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .map_err(|e| format!("fincore: {e}"))?;
    if !out.status.success() {
        return Err(format!("fincore failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| format!("fincore printed {text:?}"))
}

fn file_system(path: &Path) -> String {
    let out = Command::new("stat").args(["-f", "-c", "%T"]).arg(path).output().expect("stat");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_fetching_node_leaves_little_of_the_file_cached_and_still_serves_all_of_it() {
    let mut seeder = TestNode::new("wb-seeder");
    let mut fetcher = TestNode::new("wb-fetcher");
    let mut third = TestNode::new("wb-third");
    let fs_type = file_system(&fetcher.dir());
    if fs_type == "tmpfs" || fs_type == "ramfs" {
        println!("SKIPPED: the node's folder is on {fs_type}, whose pages are the storage");
        return;
    }
    if let Err(why) = cached_bytes(Path::new("/proc/self/exe")) {
        println!("SKIPPED: cannot count cached pages: {why}");
        return;
    }
    seeder.set_peers(&[fetcher.addr(), third.addr()]);
    fetcher.set_peers(&[seeder.addr(), third.addr()]);
    third.set_peers(&[seeder.addr(), fetcher.addr()]);
    seeder.start();
    fetcher.start();
    seeder.join();
    fetcher.join();

    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("big.bin");
    random_file(&path, SIZE as usize, 7);
    let sha = sha256_file(&path);
    seeder.insert(&path).ok("insert big.bin");
    // The file appears under its name only once every chunk is verified; it is
    // counted before anything here reads it (reading would cache it again).
    let copy = fetcher.file("big.bin");
    torronto_tests::wait_until(Duration::from_secs(120), "the fetcher publishes big.bin", || {
        std::fs::metadata(&copy).is_ok_and(|m| m.len() == SIZE)
    });

    // The last 64 MiB written stay cached for peers asking for them; what was written
    // before has been written back and dropped. Before write-behind all of it stayed.
    let cached = cached_bytes(&copy).unwrap();
    println!("cached after fetching: {} of {} MiB", cached / MIB, SIZE / MIB);
    assert!(cached <= SIZE * 2 / 3, "{} MiB of the {} MiB fetched are still cached", cached / MIB, SIZE / MIB);
    assert!(fetcher.holds("big.bin", SIZE, &sha), "the fetcher's copy is the file");

    // Chunks dropped from memory are read back from the disk when served: with the
    // seeder gone, a third node gets all of the file from the fetcher alone.
    seeder.stop();
    third.start();
    third.join();
    torronto_tests::wait_until(Duration::from_secs(120), "the third node holds big.bin, from the fetcher", || {
        third.holds("big.bin", SIZE, &sha)
    });
}
