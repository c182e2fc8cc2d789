//! Network faults between hosts made of network namespaces (10.77.x.y, veth pairs made
//! and removed by the test itself): a cut in the middle of a transfer that heals, and a
//! peer that vanishes without Remove. Skipped, saying why, where namespaces cannot be
//! made (not root, no iproute2).

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;
use torronto_tests::skip_unless_netns;
use torronto_tests::sys::{Link, NsNode};
use torronto_tests::{file_status, number, peers, random_file, sha256_file, wait_until};

const MIB: usize = 1024 * 1024;

fn fetched(n: &NsNode) -> u64 {
    number(&n.query(), "chunksFetched")
}

#[test]
fn a_cut_mid_transfer_heals_and_the_transfer_completes() {
    skip_unless_netns!();
    // 40 Mbit/s each way: 24 MiB takes about 5 s, long enough to cut in the middle.
    let link = Link::new(1, Some("40mbit")).expect("make namespaces");
    let mut seeder = NsNode::new("ns-seeder", &link.a, &link.a_ip);
    let mut leecher = NsNode::new("ns-leecher", &link.b, &link.b_ip);
    seeder.set_peers(&[leecher.addr()]);
    leecher.set_peers(&[seeder.addr()]);
    seeder.start();
    leecher.start();
    seeder.join();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("cut.bin");
    random_file(&path, 24 * MIB, 77);
    let sha = sha256_file(&path);
    seeder.insert(&path);
    let total = (24 * MIB / 65_536) as u64;

    let start = Instant::now();
    leecher.join();
    wait_until(Duration::from_secs(60), "the leecher has 15% of the file", || fetched(&leecher) * 100 >= total * 15);
    link.set_b_up(false).expect("cut the link");
    let cut = Instant::now();
    let at_cut = fetched(&leecher);
    println!("cut the leecher off after {:?} at {at_cut}/{total} chunks", start.elapsed());
    // Hold the cut for 10 s, checking that nothing gets through after the first second.
    let mut settled: Option<u64> = None;
    wait_until(Duration::from_secs(20), "10 s of cut have passed", || {
        let now = fetched(&leecher);
        if cut.elapsed() >= Duration::from_secs(1) {
            let base = *settled.get_or_insert(now);
            assert_eq!(now, base, "chunks arrived through a cut link");
        }
        cut.elapsed() >= Duration::from_secs(10)
    });
    let during = settled.unwrap_or(at_cut);
    assert!(during < total, "the transfer finished before the cut took effect; nothing to resume");
    let st = leecher.query();
    println!("during the cut: {during}/{total} chunks; peers {:?}", peers(&st));
    link.set_b_up(true).expect("heal the link");
    let healed = Instant::now();
    let target = leecher.dir().join("cut.bin");
    wait_until(Duration::from_secs(90), "the leecher completes cut.bin after the link heals", || {
        target.exists() && file_status(&leecher.query(), "cut.bin").is_some_and(|f| f.local == 1.0)
    });
    let resumed = healed.elapsed();
    assert_eq!(sha256_file(&target), sha, "cut.bin differs after the cut");
    let refetched = fetched(&leecher);
    let reconnects = leecher.log().lines().filter(|l| l.contains("disconnected")).count();
    println!(
        "healed: completed {resumed:?} after the link came back; {refetched} chunks fetched in all \
         ({} beyond the file's {total}); connection drops logged: {reconnects}",
        refetched - total
    );
    assert!(refetched <= total + 48, "fetched {refetched} chunks for a {total}-chunk file");
    drop(link);
}

#[test]
fn a_peer_that_vanishes_without_remove_stops_counting() {
    skip_unless_netns!();
    let link = Link::new(2, None).expect("make namespaces");
    let mut a = NsNode::new("ns-a", &link.a, &link.a_ip);
    let mut b = NsNode::new("ns-b", &link.b, &link.b_ip);
    a.set_peers(&[b.addr()]);
    b.set_peers(&[a.addr()]);
    a.start();
    b.start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("shared.bin");
    random_file(&path, 300_000, 5);
    b.insert(&path);
    a.join();
    b.join();
    let least = |st: &Value| file_status(st, "shared.bin").map(|f| f.least);
    wait_until(Duration::from_secs(30), "a holds shared.bin and counts b as a holder", || {
        let st = a.query();
        peers(&st) == vec![b.addr()] && least(&st) == Some(2)
    });
    // b vanishes: its link goes down for good, its process keeps running, no Remove.
    link.set_b_up(false).expect("cut b off");
    let cut = Instant::now();
    wait_until(Duration::from_secs(40), "a stops counting b", || {
        let st = a.query();
        peers(&st).is_empty() && least(&st) == Some(1)
    });
    let detected = cut.elapsed();
    println!("a noticed b had vanished after {detected:?}");
    assert!(
        detected <= Duration::from_secs(25),
        "took {detected:?} to notice a vanished peer (keepalive is 5 s + 3 x 2 s)"
    );
    let st = a.query();
    let f = file_status(&st, "shared.bin").expect("a still lists shared.bin");
    assert_eq!((f.local, f.system, f.least), (1.0, 1.0, 1), "status after b vanished: {st}");
    assert!(fs::metadata(a.dir().join("shared.bin")).is_ok());
    drop(link);
}
