//! `torronto demo`, the README's run command: a local network that replicates its sample
//! files and serves the control panel.

use std::path::PathBuf;
use std::time::Duration;

use torronto_tests::{cli, free_port, Demo};

#[test]
fn demo_starts_a_network_replicates_its_samples_and_serves_the_panel() {
    let base = free_port().to_string();
    let out = cli(&["demo", "--once", "--nodes", "3", "--base-port", &base]);
    assert_eq!(out.code, 0, "demo failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 nodes joined"), "{}", out.stdout);
    assert!(out.stdout.contains("control panel: http://127.0.0.1:"), "prints the panel URL:\n{}", out.stdout);
    assert!(out.stdout.contains("#token="), "the URL carries the token:\n{}", out.stdout);
    // A private network: the page joins it with the secret its URL carries.
    assert!(out.stdout.contains("private network, secret in "), "{}", out.stdout);
    let url = out.stdout.lines().find_map(|l| l.strip_prefix("control panel: ")).expect("a panel URL");
    let secret =
        url.split_once("&secret=").map(|(_, s)| s).unwrap_or_else(|| panic!("the URL carries the secret: {url}"));
    assert!(secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()), "{url}");
    assert!(out.stdout.contains("every node holds every file"), "{}", out.stdout);
    for sample in ["welcome.txt", "sample-24MiB.bin"] {
        let row = out.stdout.lines().find(|l| l.starts_with(sample)).unwrap_or_else(|| panic!("{sample} in the table"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[cols.len() - 4..], ["100.0%", "100.0%", "3", "3.00"], "{row}");
    }
}

/// Ctrl-C ends the demo promptly: its nodes leave one after another, each handing over to
/// those still running, rather than all at once, each waiting out the leave limit (30 s)
/// for peers that were leaving too.
#[test]
fn ctrl_c_stops_the_demo_promptly_and_removes_its_folders() {
    let mut demo = Demo::start(3, &[]);
    let folders: Vec<PathBuf> = demo
        .printed
        .iter()
        .map(|line| line.trim())
        .filter(|path| path.starts_with('/') && !path.contains(' ') && path.contains("torronto-demo-"))
        .map(PathBuf::from)
        .collect();
    assert_eq!(folders.len(), 3, "the demo lists its three node folders");
    assert!(folders.iter().all(|f| f.is_dir()));
    let status = demo.interrupt(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert!(folders.iter().all(|f| !f.exists()), "the demo removes its folders: {folders:?}");
}
