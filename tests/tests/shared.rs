//! The shared folder, with real nodes on loopback: files already in a node's folder at
//! start, dropped in while it runs (written slowly, or moved in) join the network; a
//! file the node held and that was deleted by hand comes back; and a file in the folder
//! never replaces the network's file of that name.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use torronto_tests::{file_status, protocol_digest, random_bytes, sha256_file, sha256_hex, wait_until, TestNode};

const KIB: usize = 1024;
const LONG: Duration = Duration::from_secs(60);

/// Two nodes that list each other and join at start; `a` is started after `before_a`
/// has run (to put files in its folder first).
fn pair(label: &str, a_args: &[&str], before_a: impl FnOnce(&TestNode)) -> (TestNode, TestNode) {
    let mut a = TestNode::new(&format!("{label}-a"));
    let mut b = TestNode::new(&format!("{label}-b"));
    a.set_peers(&[b.addr()]);
    b.set_peers(&[a.addr()]);
    a.set_join_on_start(true);
    b.set_join_on_start(true);
    a.set_extra_args(a_args);
    before_a(&a);
    a.start();
    b.start();
    (a, b)
}

fn files(node: &TestNode) -> BTreeSet<String> {
    let st = node.query();
    st["files"].as_array().map(|f| f.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn files_in_the_folder_at_start_are_shared_with_every_node() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"not to be shared").unwrap();
    let top = random_bytes(300 * KIB, 1);
    let deep = random_bytes(70 * KIB, 2);
    let (mut a, b) = pair("adopt", &[], |a| {
        fs::write(a.file("top.bin"), &top).unwrap();
        fs::create_dir_all(a.file("sub/deep")).unwrap();
        fs::write(a.file("sub/deep/x.txt"), &deep).unwrap();
        // More than are hashed at once: the rest wait their turn.
        fs::create_dir(a.file("many")).unwrap();
        for i in 0..8 {
            fs::write(a.file(&format!("many/f{i}.txt")), format!("file {i}\n")).unwrap();
        }
        fs::create_dir_all(a.file(".torronto")).unwrap();
        fs::write(a.file(".torronto/stray.bin"), b"node state, never shared").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), a.file("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), a.file("linked-dir")).unwrap();
        // A name FileName refuses: skipped, with the reason, and the node runs on.
        fs::write(a.file("invoice\u{202e}fdp.exe"), b"misleading").unwrap();
    });
    wait_until(LONG, "b holds the files found in a's folder", || {
        b.holds("top.bin", top.len() as u64, &sha256_hex(&top))
            && b.holds("sub/deep/x.txt", deep.len() as u64, &sha256_hex(&deep))
            && (0..8).all(|i| {
                let text = format!("file {i}\n");
                b.holds(&format!("many/f{i}.txt"), text.len() as u64, &sha256_hex(text.as_bytes()))
            })
    });
    let mut expected: BTreeSet<String> = ["sub/deep/x.txt", "top.bin"].map(str::to_owned).into();
    expected.extend((0..8).map(|i| format!("many/f{i}.txt")));
    assert_eq!(files(&a), expected, "nothing from .torronto or through a symlink");
    assert_eq!(files(&b), expected);
    let log = a.log();
    assert!(log.contains("not sharing") && log.contains("linked-dir"), "the symlinks are named in the log");
    assert!(log.contains("bidi control character (U+202E)"), "the refused name is logged with why:\n{log}");
    // b stored what it fetched under the names: not adopted as files of its own.
    assert_eq!(count(&b.log(), "found in the folder"), 0, "{}", b.log());

    // After a restart a's files are its own already: not adopted again.
    a.restart();
    wait_until(LONG, "a knows both files again", || files(&a) == expected);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&a.log(), "sharing top.bin, found in the folder"), 1, "{}", a.log());
    assert_eq!(fs::read(a.file("top.bin")).unwrap(), top);
}

#[test]
fn a_file_written_slowly_is_shared_only_once_complete() {
    // A short settle delay: only the writer still holding the file open keeps it back.
    let (a, b) = pair("slow", &["--settle-ms", "300"], |_| {});
    wait_until(LONG, "a and b are peers", || !torronto_tests::peers(&a.query()).is_empty());
    let pieces: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(100 * KIB, 10 + i)).collect();
    let whole = pieces.concat();
    // Every digest either node ever shows for slow.bin.
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done, addrs) = (seen.clone(), done.clone(), [a.addr(), b.addr()]);
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for addr in &addrs {
                    if let Some(d) = file_status(&torronto_tests::query(addr), "slow.bin").and_then(|r| r.digest) {
                        seen.lock().unwrap().insert(d);
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut f = fs::File::create(a.file("slow.bin")).unwrap();
    for piece in &pieces {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        thread::sleep(Duration::from_millis(700));
    }
    drop(f);
    wait_until(LONG, "b holds slow.bin", || b.holds("slow.bin", whole.len() as u64, &sha256_hex(&whole)));
    thread::sleep(Duration::from_secs(1));
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, BTreeSet::from([protocol_digest(&whole)]), "the network saw only the final content");
    assert_eq!(count(&a.log(), "sharing slow.bin"), 1, "{}", a.log());
}

#[test]
fn files_moved_into_the_folder_are_shared() {
    let (a, b) = pair("moved", &[], |_| {});
    wait_until(LONG, "a and b are peers", || !torronto_tests::peers(&a.query()).is_empty());
    // From outside the folder (same file system: a rename), a whole folder at once.
    let outside = tempfile::tempdir_in(a.root()).unwrap();
    let inner = random_bytes(90 * KIB, 20);
    fs::create_dir(outside.path().join("album")).unwrap();
    fs::write(outside.path().join("album/one.bin"), &inner).unwrap();
    fs::rename(outside.path().join("album"), a.file("album")).unwrap();
    // From a temporary name inside, as downloaders and editors do.
    let data = random_bytes(150 * KIB, 21);
    fs::write(a.file("report.tmp"), &data).unwrap();
    fs::rename(a.file("report.tmp"), a.file("report.bin")).unwrap();
    wait_until(LONG, "b holds both", || {
        b.holds("album/one.bin", inner.len() as u64, &sha256_hex(&inner))
            && b.holds("report.bin", data.len() as u64, &sha256_hex(&data))
    });
    let names = files(&a);
    assert!(!names.contains("report.tmp"), "the temporary name never settled: {names:?}");
}

#[test]
fn a_file_deleted_by_hand_is_restored_from_the_network() {
    let kept = random_bytes(200 * KIB, 30);
    let gone_while_down = random_bytes(120 * KIB, 31);
    let (a, mut b) = pair("heal", &[], |_| {});
    // Inserted rather than adopted: this test is about the copies b fetched.
    let src = tempfile::tempdir().unwrap();
    wait_until(LONG, "a and b are peers", || !torronto_tests::peers(&a.query()).is_empty());
    for (name, data) in [("kept.bin", &kept), ("down.bin", &gone_while_down)] {
        fs::write(src.path().join(name), data).unwrap();
        a.insert(&src.path().join(name)).ok("insert");
    }
    let holds_both = |b: &TestNode| {
        b.holds("kept.bin", kept.len() as u64, &sha256_hex(&kept))
            && b.holds("down.bin", gone_while_down.len() as u64, &sha256_hex(&gone_while_down))
    };
    wait_until(LONG, "b holds both", || holds_both(&b));

    // While b runs.
    fs::remove_file(b.file("kept.bin")).unwrap();
    wait_until(LONG, "kept.bin is back on b", || b.file("kept.bin").exists() && holds_both(&b));
    assert!(b.log().contains("restoring kept.bin from the network"), "{}", b.log());
    // Moved out of the folder: the same.
    let away = tempfile::tempdir_in(b.root()).unwrap();
    fs::rename(b.file("kept.bin"), away.path().join("kept.bin")).unwrap();
    wait_until(LONG, "kept.bin is back on b after a move out", || b.file("kept.bin").exists() && holds_both(&b));
    assert_eq!(count(&b.log(), "restoring kept.bin from the network"), 2, "{}", b.log());

    // While b is down: found at start.
    b.stop();
    fs::remove_file(b.file("down.bin")).unwrap();
    b.start();
    wait_until(LONG, "down.bin is back on b", || b.file("down.bin").exists() && holds_both(&b));
    assert!(b.log().contains("restoring down.bin from the network"), "{}", b.log());
    assert_eq!(sha256_file(&b.file("kept.bin")), sha256_hex(&kept));
    assert_eq!(fs::read(a.file("kept.bin")).unwrap(), kept, "a's copy untouched");
}

#[test]
fn a_file_in_the_folder_never_replaces_the_network_file_of_its_name() {
    let theirs = random_bytes(100 * KIB, 40);
    let same = random_bytes(80 * KIB, 41);
    let (a, mut b) = pair("clobber", &[], |_| {});
    let src = tempfile::tempdir().unwrap();
    for (name, data) in [("notes.txt", &theirs), ("same.bin", &same)] {
        fs::write(src.path().join(name), data).unwrap();
        a.insert(&src.path().join(name)).ok("insert");
    }
    wait_until(LONG, "b holds a's files", || {
        b.holds("same.bin", same.len() as u64, &sha256_hex(&same))
            && file_status(&b.query(), "notes.txt").is_some_and(|r| r.local == 1.0)
    });
    b.stop();
    // The user of node c puts its own notes.txt and a copy of same.bin in its folder.
    let mut c = TestNode::new("clobber-c");
    let mine = b"my own notes, not the network's\n".to_vec();
    fs::write(c.file("notes.txt"), &mine).unwrap();
    fs::write(c.file("same.bin"), &same).unwrap();
    c.set_peers(&[a.addr()]);
    c.set_join_on_start(true);
    c.start();
    wait_until(LONG, "c holds the network's notes.txt as a conflict copy", || {
        file_status(&c.query(), "notes.txt").is_some_and(|r| r.local == 1.0 && r.stored_as.is_some())
    });
    let copy = file_status(&c.query(), "notes.txt").unwrap().stored_as.unwrap();
    assert!(copy.starts_with("notes.torronto-conflict-"), "{copy}");
    assert_eq!(fs::read(c.file("notes.txt")).unwrap(), mine, "the user's file is left alone");
    assert_eq!(fs::read(c.file(&copy)).unwrap(), theirs);
    // The same content is the network's file: held under its name, no second copy.
    wait_until(LONG, "c holds same.bin", || c.holds("same.bin", same.len() as u64, &sha256_hex(&same)));
    assert_eq!(file_status(&c.query(), "same.bin").unwrap().stored_as, None);
    thread::sleep(Duration::from_secs(3));
    let on_disk: Vec<String> =
        fs::read_dir(c.dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(on_disk.iter().filter(|n| n.starts_with("same")).count(), 1, "{on_disk:?}");
    // Neither the user's notes nor the conflict copy went anywhere.
    let expected: BTreeSet<String> = ["notes.txt", "same.bin"].map(str::to_owned).into();
    assert_eq!(files(&c), expected);
    assert_eq!(files(&a), expected);
    assert_eq!(file_status(&a.query(), "notes.txt").unwrap().digest, Some(protocol_digest(&theirs)));
    assert_eq!(fs::read(a.file("notes.txt")).unwrap(), theirs);
    assert!(c.log().contains("notes.txt in the folder is left as it is and not shared"), "{}", c.log());
}
