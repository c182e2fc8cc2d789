//! A full disk: a node whose folder is a small tmpfs (mounted by the test) receives a
//! file larger than the space left. It logs a clear error, shows no torn file, keeps
//! its status and keeps serving what it has, and completes once space is freed.
//! Skipped, saying why, where the test cannot mount.

use std::fs;
use std::time::{Duration, Instant};

use torronto_tests::sys::{tree, Tmpfs};
use torronto_tests::{file_status, random_file, sha256_file, wait_until, TestNode};

const MIB: usize = 1024 * 1024;

#[test]
fn a_full_disk_is_reported_and_the_file_completes_once_space_is_freed() {
    let disk = match Tmpfs::mount("8m") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: cannot mount a tmpfs: {why}");
            eprintln!("SKIPPED: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let mut seeder = TestNode::new("disk-seeder");
    let mut full = TestNode::new("disk-full");
    // The node's folder is the tmpfs (through a symlink the node resolves at start).
    fs::remove_dir(full.dir()).unwrap();
    std::os::unix::fs::symlink(&disk.path, full.dir()).unwrap();
    seeder.set_peers(&[full.addr()]);
    full.set_peers(&[seeder.addr()]);
    seeder.start();
    full.start();
    seeder.join();
    full.join();

    let src = tempfile::tempdir().unwrap();
    let small = src.path().join("small.bin");
    let big = src.path().join("big.bin");
    random_file(&small, MIB, 1);
    random_file(&big, 12 * MIB, 2);
    let (small_sha, big_sha) = (sha256_file(&small), sha256_file(&big));
    seeder.insert(&small).ok("insert small.bin");
    wait_until(Duration::from_secs(30), "the small-disk node holds small.bin", || {
        full.holds("small.bin", MIB as u64, &small_sha)
    });

    // Fill the disk to the last byte, then announce 12 MiB: even the file's manifest
    // cannot be saved.
    let filler = disk.path.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..512]).is_ok() {}
    }
    seeder.insert(&big).ok("insert big.bin");
    let full_errors = |n: &TestNode| {
        n.log().lines().filter(|l| l.contains("big.bin") && l.contains("No space left on device")).count()
    };
    wait_until(Duration::from_secs(30), "the node logs that its disk is full", || full_errors(&full) > 0);
    let error_line = full.log().lines().find(|l| l.contains("No space left on device")).unwrap().to_string();
    println!("the node said: {error_line}");
    let check_stuck = |what: &str, stuck: f64| {
        let st = full.query();
        let now = file_status(&st, "big.bin").expect("big.bin is known").local;
        assert_eq!(now, stuck, "{what}: big.bin's local fraction changed while the disk was full: {st}");
        assert!(!full.file("big.bin").exists(), "{what}: a torn big.bin appeared in the folder");
    };
    check_stuck("disk full to the last byte", 0.0);

    // Delete the filler: about 7 MiB free, so it fetches part of the file, then the
    // disk is full again, mid-file this time.
    fs::remove_file(&filler).unwrap();
    let attempts = |n: &TestNode| n.log().lines().filter(|l| l.contains("storage failed for big.bin")).count();
    let before = attempts(&full);
    let mut last: Option<(f64, usize)> = None;
    wait_until(Duration::from_secs(30), "the node fills the freed space and stops, failing again", || {
        let now = (file_status(&full.query(), "big.bin").map_or(0.0, |f| f.local), attempts(&full));
        // Settled: no progress since the last poll, while writes kept failing.
        let settled = last.is_some_and(|(local, fails)| local == now.0 && now.1 > fails);
        last = Some(now);
        now.0 > 0.0 && now.1 > before && settled
    });
    let stuck = last.expect("polled").0;
    // It keeps retrying (after a pause) without progress and without tearing anything.
    let first = attempts(&full);
    wait_until(Duration::from_secs(20), "the node has retried the writes at least twice", || {
        check_stuck("disk full mid-file", stuck);
        attempts(&full) >= first + 2
    });
    println!("disk full: big.bin stuck at local {stuck:.3}; {} write failures logged so far", attempts(&full));
    assert!(stuck < 1.0);
    let st = full.query();
    assert_eq!(file_status(&st, "small.bin").map(|f| f.local), Some(1.0), "small.bin must stay complete: {st}");

    // It keeps serving what it has: a third node that knows only it gets small.bin.
    let mut third = TestNode::new("disk-third");
    third.set_peers(&[full.addr()]);
    third.start();
    third.join();
    wait_until(Duration::from_secs(30), "a third node fetches small.bin from the full node", || {
        third.holds("small.bin", MIB as u64, &small_sha)
    });

    // Free space: grow the tmpfs. The file completes, byte-identical, everywhere.
    disk.resize("64m").expect("grow the tmpfs");
    let freed = Instant::now();
    wait_until(Duration::from_secs(60), "the node completes big.bin once space is freed", || {
        full.holds("big.bin", 12 * MIB as u64, &big_sha)
    });
    println!("big.bin completed {:?} after space was freed", freed.elapsed());
    wait_until(Duration::from_secs(60), "the third node gets big.bin through the once-full node", || {
        third.holds("big.bin", 12 * MIB as u64, &big_sha)
    });
    let entries: Vec<String> =
        tree(&disk.path).into_iter().map(|(p, _)| p).filter(|p| !p.starts_with(".torronto")).collect();
    assert_eq!(entries, vec!["big.bin", "small.bin"], "unexpected files in the node's folder");
    drop(third);
    drop(full);
}
