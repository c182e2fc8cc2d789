//! What a member can make a node write, tried with real nodes: never over a file the
//! node does not manage (a conflict copy instead), never through a symlink, never
//! under names that clash as paths or to a reader's eye, never past the space the
//! owner allows; and what the node refuses, it says in its status and does not fetch
//! again and again.

use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::Duration;

use serde_json::json;
use torronto_tests::raw::{full_entry, serve_files, Raw};
use torronto_tests::{file_status, number, random_bytes, sha256_file, wait_until, TestNode};

const KIB: usize = 1024;

/// A raw peer `host` that announces `files` to `node` and serves them for `period` in a
/// thread; join it for how many chunks of each file the node asked for.
fn seed(
    node: &TestNode,
    host: &str,
    files: &[(&str, Vec<u8>)],
    period: Duration,
) -> thread::JoinHandle<BTreeMap<String, u32>> {
    let mut raw = Raw::connect(&node.addr());
    let entries: Vec<_> = files.iter().map(|(n, b)| full_entry(n, b)).collect();
    raw.introduce(host, 0, json!(entries));
    let files: BTreeMap<String, Vec<u8>> = files.iter().map(|(n, b)| (n.to_string(), b.clone())).collect();
    let host = host.to_string();
    thread::spawn(move || serve_files(&mut raw, &host, &files, period))
}

#[test]
fn a_file_the_user_put_in_the_folder_is_kept_and_the_network_copy_goes_beside_it() {
    let mut seeder = TestNode::new("unmanaged-seeder");
    let mut owner = TestNode::new("unmanaged-owner");
    // The user's own notes, in the folder. The network has notes.txt before the owner
    // joins, so the owner does not share its own (the shared folder never publishes
    // over the network's file) and keeps it.
    fs::write(owner.file("notes.txt"), b"my own notes, not for the network\n").unwrap();
    seeder.set_peers(&[owner.addr()]);
    owner.set_peers(&[seeder.addr()]);
    seeder.start();
    seeder.join();
    let src = tempfile::tempdir().unwrap();
    let theirs = src.path().join("notes.txt");
    fs::write(&theirs, random_bytes(200 * KIB, 3)).unwrap();
    let sha = sha256_file(&theirs);
    seeder.insert(&theirs).ok("insert notes.txt");
    owner.start();
    owner.join();

    let row = |n: &TestNode| file_status(&n.query(), "notes.txt");
    wait_until(Duration::from_secs(30), "the owner holds the network's notes.txt", || {
        row(&owner).is_some_and(|r| r.local == 1.0 && r.stored_as.is_some())
    });
    let copy = row(&owner).unwrap().stored_as.unwrap();
    println!("the network's notes.txt is stored as {copy}");
    assert!(copy.starts_with("notes.torronto-conflict-") && copy.ends_with(".txt"), "{copy}");
    assert_eq!(fs::read(owner.file("notes.txt")).unwrap(), b"my own notes, not for the network\n", "user's file");
    assert_eq!(sha256_file(&owner.file(&copy)), sha, "the conflict copy holds the network's content");
    let table = owner.cli(&["query"]).ok("query");
    assert!(table.stdout.contains(&format!("stored as {copy}")), "the CLI table says where:\n{table}");
    assert!(owner.log().contains("a file torronto does not manage is in the folder as notes.txt"));

    // After a restart the copy is still the file's, and it is served from there.
    owner.restart();
    owner.join();
    let st = owner.query();
    let r = file_status(&st, "notes.txt").expect("known after restart");
    assert_eq!((r.local, r.stored_as.as_deref()), (1.0, Some(copy.as_str())), "{st}");
    let mut raw = Raw::connect(&owner.addr());
    raw.introduce("checker", 0, json!([]));
    let data = torronto_tests::raw::fetch_verified(&mut raw, "checker", "notes.txt", 200 * KIB as u64, 3);
    assert_eq!(data.len(), 200 * KIB - 3 * 65_536);
}

#[test]
fn nothing_is_written_through_a_symlink_in_the_folder() {
    let outside = tempfile::tempdir().unwrap();
    let node = TestNode::new("symlink");
    std::os::unix::fs::symlink(outside.path(), node.dir().join("shared")).unwrap();
    let mut node = node;
    node.start();
    node.join();
    let x = random_bytes(3 * 65_536 - 100, 4);
    let fine = random_bytes(70_000, 5);
    let peer = seed(&node, "linker", &[("shared/x", x), ("elsewhere/y", fine.clone())], Duration::from_secs(8));
    wait_until(Duration::from_secs(20), "shared/x is refused, elsewhere/y stored", || {
        let st = node.query();
        file_status(&st, "shared/x").and_then(|r| r.refused).is_some()
            && file_status(&st, "elsewhere/y").is_some_and(|r| r.local == 1.0)
    });
    let refused = file_status(&node.query(), "shared/x").unwrap().refused.unwrap();
    println!("shared/x: {refused}");
    assert!(refused.contains("shared is a symbolic link"), "{refused}");
    let asked = peer.join().unwrap();
    assert_eq!(asked.get("shared/x"), None, "no chunk of shared/x may be fetched: {asked:?}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the folder");
    assert_eq!(fs::read(node.file("elsewhere/y")).unwrap(), fine);
    assert!(node.log().contains("not storing shared/x"), "logged");
}

#[test]
fn names_that_clash_as_paths_each_get_their_state_and_prefix_collisions_are_refused() {
    let node = TestNode::start_alone("paths");
    node.join();
    let long = "n".repeat(255);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a", random_bytes(3 * 65_536, 6)),
        ("r", random_bytes(3 * 65_536, 7)),
        ("r.manifest/x", random_bytes(3 * 65_536, 8)),
        (long.as_str(), random_bytes(3 * 65_536, 9)),
    ];
    let peer = seed(&node, "namer", &files, Duration::from_secs(15));
    wait_until(Duration::from_secs(20), "every file completes", || {
        let st = node.query();
        files.iter().all(|(n, _)| file_status(&st, n).is_some_and(|r| r.local == 1.0))
    });
    // `a/b` cannot live beside the file `a`: announced later, it is ignored.
    let mut later = Raw::connect(&node.addr());
    later.introduce("later", 0, json!([full_entry("a/b", &random_bytes(1000, 10))]));
    let asked = peer.join().unwrap();
    println!("chunks asked for in 15 s: {asked:?}");
    for (n, bytes) in &files {
        assert_eq!(asked.get(*n), Some(&3), "{n}: each of its 3 chunks once, never again");
        assert_eq!(&fs::read(node.file(n)).unwrap(), bytes, "{n}");
    }
    assert!(file_status(&node.query(), "a/b").is_none(), "a/b is not taken in");
    assert!(node.log().contains("ignored a/b, announced by later:0: a/b cannot be stored: a is a file"));

    // And an insert that would need a file to be a folder is refused, saying why.
    let src = tempfile::tempdir().unwrap();
    let clash = src.path().join("r.manifest");
    fs::write(&clash, b"a file named like a folder the network uses").unwrap();
    let out = node.insert(&clash);
    out.expect_error("insert r.manifest beside r.manifest/x", 13, "ErrFileExists");
    assert!(out.stderr.contains("the file r.manifest/x needs r.manifest to be a folder"), "{out}");
    assert!(!node.file("r.manifest").is_file());
}

#[test]
fn names_that_mislead_a_reader_or_differ_only_in_case_are_refused() {
    let node = TestNode::start_alone("names");
    node.join();
    let src = tempfile::tempdir().unwrap();
    for (name, what) in [("invoice\u{202E}fdp.exe", "an RTL override"), ("a\u{200B}b.txt", "a zero-width space")] {
        let path = src.path().join(name);
        fs::write(&path, b"x").unwrap();
        let out = node.insert(&path);
        out.expect_error(what, 16, "ErrBadRequest");
        assert!(out.stderr.contains("invisible or bidi control character"), "{what}: {out}");
    }
    let slash = src.path().join("etc\u{FF0F}passwd");
    fs::write(&slash, b"x").unwrap();
    node.insert(&slash).expect_error("a fullwidth solidus", 16, "ErrBadRequest");

    let readme = src.path().join("readme");
    fs::write(&readme, b"lower").unwrap();
    node.insert(&readme).ok("insert readme");
    fs::create_dir(src.path().join("upper")).unwrap();
    let upper = src.path().join("upper/README");
    fs::write(&upper, b"upper").unwrap();
    let out = node.insert(&upper);
    out.expect_error("README beside readme", 13, "ErrFileExists");
    assert!(out.stderr.contains("differs from the file readme only in case"), "{out}");
    assert!(!node.file("README").exists());

    // From a peer: a bidi name makes the whole Add a bad request; a case twin is ignored.
    let mut raw = Raw::connect(&node.addr());
    raw.send_header(&json!({"HostName": "twister", "PortNumber": 0, "Action": 4}));
    let entry = full_entry("gpj\u{202E}.exe", b"x");
    assert!(raw.send_frame(json!({ "Files": [entry] }).to_string().as_bytes()));
    let reply = raw.read_reply("Add with a bidi name");
    torronto_tests::raw::assert_code(&reply, 6, "Add with a bidi name");
    let mut twin = Raw::connect(&node.addr());
    twin.introduce("twin", 0, json!([full_entry("ReadMe", b"other")]));
    wait_until(Duration::from_secs(5), "the twin is logged as ignored", || node.log().contains("ignored ReadMe"));
    assert!(file_status(&node.query(), "ReadMe").is_none());
}

#[test]
fn files_that_do_not_fit_are_refused_with_the_space_named_and_not_fetched() {
    let mut node = TestNode::new("space");
    node.set_extra_args(&["--max-store", "1M"]);
    node.start();
    node.join();
    let big = random_bytes(2 * 1024 * KIB, 11);
    let small = random_bytes(300 * KIB, 12);
    let peer = seed(&node, "filler", &[("big.bin", big), ("small.bin", small)], Duration::from_secs(6));
    wait_until(Duration::from_secs(20), "big.bin refused, small.bin stored", || {
        let st = node.query();
        file_status(&st, "big.bin").and_then(|r| r.refused).is_some()
            && file_status(&st, "small.bin").is_some_and(|r| r.local == 1.0)
    });
    let asked = peer.join().unwrap();
    let st = node.query();
    let refused = file_status(&st, "big.bin").unwrap().refused.unwrap();
    println!("big.bin: {refused}; asked {asked:?}");
    assert!(refused.contains("does not fit") && refused.contains("--max-store 1.0 MiB"), "{refused}");
    assert_eq!(asked.get("big.bin"), None, "no chunk of a file that does not fit is fetched");
    assert_eq!(number(&st, "chunksFetched"), 5, "only small.bin's chunks: {st}");
    let table = node.cli(&["query"]).ok("query");
    assert!(table.stdout.contains("not stored here: big.bin (2.0 MiB) does not fit"), "{table}");
    assert_eq!(node.log().matches("not storing big.bin").count(), 1, "said once, not in a loop");

    // A local insert that does not fit: the CLI says so, naming the space.
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("local.bin");
    fs::write(&local, random_bytes(900 * KIB, 13)).unwrap();
    let out = node.insert(&local);
    out.expect_error("insert past --max-store", 17, "ErrNoSpace");
    assert!(out.stderr.contains("--max-store"), "{out}");
}
