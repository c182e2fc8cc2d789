//! Crash and restart: `kill -9` a node in the middle of downloading a 256 MiB file,
//! start it again on the same folder. It keeps the chunks it had verified (a few in
//! flight may be lost), fetches only the rest, and ends byte-identical; no file is
//! ever visible under its name before it is complete.

use std::fs;
use std::time::{Duration, Instant};

use torronto_tests::{file_status, number, random_file, sha256_file, sha256_hex, wait_until, TestNode, CHUNK};

const SIZE: u64 = 256 * 1024 * 1024;
const NAME: &str = "big-256m.bin";

#[test]
fn kill_9_mid_download_then_restart_keeps_verified_chunks() {
    let total = SIZE / CHUNK;
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join(NAME);
    random_file(&path, SIZE as usize, 256);
    let sha = sha256_file(&path);

    let mut seeder = TestNode::new("seeder");
    let mut leecher = TestNode::new("leecher");
    seeder.set_peers(&[leecher.addr()]);
    leecher.set_peers(&[seeder.addr()]);
    seeder.start();
    leecher.start();
    seeder.join();
    seeder.insert(&path).ok("insert the 256 MiB file on the seeder");
    let target = leecher.file(NAME);

    // Join and kill the leecher once it has between 25% and 75% of the chunks.
    let start = Instant::now();
    leecher.join();
    let mut fetched_seen = 0;
    let mut polls = 0;
    wait_until(Duration::from_secs(120), "the leecher has fetched at least 25% of the chunks", || {
        polls += 1;
        fetched_seen = number(&leecher.query(), "chunksFetched");
        assert!(!target.exists() || fetched_seen == total, "{} is visible while partial", target.display());
        fetched_seen * 4 >= total
    });
    leecher.stop(); // SIGKILL
    let killed_at = start.elapsed();
    println!(
        "killed the leecher (SIGKILL) after {killed_at:?} and {polls} polls; last status said {fetched_seen} of {total} chunks"
    );
    assert!(
        fetched_seen * 4 <= total * 3,
        "the transfer was too quick to interrupt in the middle ({fetched_seen} of {total} at the last poll); \
         the test cannot show a resume"
    );
    assert!(!target.exists(), "{} is visible although the download was interrupted", target.display());
    // State files are named by the SHA-256 of the file's name (native-node/src/store/state.rs).
    let state = leecher.dir().join(".torronto/files").join(sha256_hex(NAME.as_bytes()));
    let partial = state.with_extension("partial");
    assert!(partial.exists(), "no partial data at {}", partial.display());
    let manifest = state.with_extension("manifest");
    assert!(manifest.exists(), "no manifest at {}: state must be saved before chunks", manifest.display());
    assert!(
        fs::read_dir(manifest.parent().unwrap())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")),
        "a half-written manifest was left behind"
    );

    // Restart on the same folder, not joined yet: the status shows what survived.
    leecher.start();
    let restarted = Instant::now();
    let st = leecher.query();
    let f = file_status(&st, NAME).unwrap_or_else(|| panic!("after restart the leecher forgot {NAME}: {st}"));
    let kept = (f.local * total as f64).round() as u64;
    println!("after restart: kept {kept} of {total} chunks (had at least {fetched_seen} at the last poll)");
    assert!(
        kept >= fetched_seen.saturating_sub(4),
        "kept {kept} chunks but {fetched_seen} were verified before the kill"
    );
    assert!(kept < total, "kept every chunk: the kill did not interrupt the download");
    assert!(!target.exists(), "{} is visible before the download resumed", target.display());

    leecher.join();
    wait_until(Duration::from_secs(180), "the restarted leecher completes the file", || {
        let st = leecher.query();
        file_status(&st, NAME).is_some_and(|f| f.local == 1.0) && target.exists()
    });
    let refetched = number(&leecher.query(), "chunksFetched");
    println!(
        "completed {:?} after restart; re-fetched {refetched} chunks (total {total} - kept {kept} = {})",
        restarted.elapsed(),
        total - kept
    );
    assert_eq!(refetched, total - kept, "after restart the node must fetch exactly the chunks it did not keep");
    assert_eq!(fs::metadata(&target).unwrap().len(), SIZE);
    assert_eq!(sha256_file(&target), sha, "the resumed file differs from the original");
    assert!(!partial.exists(), "partial data left behind after completion");
}
