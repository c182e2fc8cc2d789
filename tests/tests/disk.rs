//! A full disk: a node whose folder is a small tmpfs (mounted by the test) is offered a
//! file larger than the space left. It refuses it at once, naming the space, in its log
//! and status, fetches none of it, keeps serving what it has, refuses a local insert
//! as ErrNoSpace (not as a permission problem), and takes the file once space is freed.
//! Skipped, saying why, where the test cannot mount.

use std::fs;
use std::time::{Duration, Instant};

use torronto_tests::sys::{tree, Tmpfs};
use torronto_tests::{file_status, number, random_file, sha256_file, wait_until, TestNode};

const MIB: usize = 1024 * 1024;

#[test]
fn a_full_disk_is_reported_and_the_file_completes_once_space_is_freed() {
    let disk = match Tmpfs::mount("16m") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: cannot mount a tmpfs: {why}");
            eprintln!("SKIPPED: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let mut seeder = TestNode::new("disk-seeder");
    let mut full = TestNode::new("disk-full");
    // The node's folder is on the tmpfs (through a symlink the node resolves at start);
    // the filler goes beside it, not in it, where the node would share it.
    let folder = disk.path.join("node");
    fs::create_dir(&folder).unwrap();
    fs::remove_dir(full.dir()).unwrap();
    std::os::unix::fs::symlink(&folder, full.dir()).unwrap();
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

    // Fill the disk to the last byte, then announce 12 MiB.
    let filler = disk.path.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..512]).is_ok() {}
    }
    let fetched = number(&full.query(), "chunksFetched");
    seeder.insert(&big).ok("insert big.bin");
    let refused = || file_status(&full.query(), "big.bin").and_then(|r| r.refused);
    wait_until(Duration::from_secs(30), "the node refuses big.bin, naming the space", || refused().is_some());
    let why = refused().unwrap();
    println!("the node says: {why}");
    assert!(why.contains("big.bin (12.0 MiB) does not fit") && why.contains("free on the disk of"), "{why}");
    let error_line = full.log().lines().find(|l| l.contains("not storing big.bin")).map(str::to_owned);
    assert!(error_line.is_some(), "the refusal is logged");
    std::thread::sleep(Duration::from_secs(3));
    let st = full.query();
    assert_eq!(number(&st, "chunksFetched"), fetched, "nothing of big.bin is fetched while it does not fit: {st}");
    assert_eq!(full.log().matches("not storing big.bin").count(), 1, "refused once, not in a loop");
    assert!(!full.file("big.bin").exists(), "no torn big.bin in the folder");
    assert_eq!(file_status(&st, "small.bin").map(|f| f.local), Some(1.0), "small.bin stays complete: {st}");

    // A local insert on the full disk: ErrNoSpace, not a permission problem.
    let local = src.path().join("local.bin");
    random_file(&local, MIB, 3);
    let out = full.insert(&local);
    out.expect_error("insert on a full disk", 17, "ErrNoSpace");
    assert!(out.stderr.contains("local.bin (1.0 MiB) does not fit"), "{out}");

    // It keeps serving what it has: a third node that knows only it gets small.bin.
    let mut third = TestNode::new("disk-third");
    third.set_peers(&[full.addr()]);
    third.start();
    third.join();
    wait_until(Duration::from_secs(30), "a third node fetches small.bin from the full node", || {
        third.holds("small.bin", MIB as u64, &small_sha)
    });

    // Free space: the node asks storage again (every 30 s) and completes the file,
    // byte-identical, everywhere.
    fs::remove_file(&filler).unwrap();
    disk.resize("64m").expect("grow the tmpfs");
    let freed = Instant::now();
    wait_until(Duration::from_secs(60), "the node completes big.bin once space is freed", || {
        full.holds("big.bin", 12 * MIB as u64, &big_sha)
    });
    println!("big.bin completed {:?} after space was freed", freed.elapsed());
    assert_eq!(file_status(&full.query(), "big.bin").and_then(|r| r.refused), None, "no longer refused");
    wait_until(Duration::from_secs(60), "the third node gets big.bin through the once-full node", || {
        third.holds("big.bin", 12 * MIB as u64, &big_sha)
    });
    let entries: Vec<String> =
        tree(&folder).into_iter().map(|(p, _)| p).filter(|p| !p.starts_with(".torronto")).collect();
    assert_eq!(entries, vec!["big.bin", "small.bin"], "unexpected files in the node's folder");
    drop(third);
    drop(full);
}
