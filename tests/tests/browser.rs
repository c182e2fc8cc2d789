//! Browser end-to-end tests: real nodes serve the control panel (`--ws`), a real headless
//! Chromium opens it, and the tests act as a person would — typing, clicking, picking a
//! file — then check the nodes' folders and status, and the bytes the page assembled.
//!
//! They need `web/dist` (scripts/build-web.sh), Chromium and chromedriver; see
//! `torronto_tests::browser::require_browser`. Each test leaves a screenshot in
//! `tests/artifacts/`.

use std::fs;
use std::time::Duration;

use serde_json::{json, Value};
use torronto_tests::browser::{artifact, require_browser, Browser, WsNode};
use torronto_tests::panel::{
    card, insert_on, page_with_peer, secret_in, stored_in_page, PEER_CONNECTED, PEER_ROW_COMPLETE,
};
use torronto_tests::{file_status, peers, random_file, sha256_file, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// A JS predicate: the row of `file` in the card of node `url` shows it complete.
const NODE_ROW_COMPLETE: &str = r#"
    const card = document.querySelector(`section.node[data-url="${arguments[0]}"]`);
    const row = card && card.querySelector(`tr.file[data-file="${arguments[1]}"]`);
    return !!row && row.dataset.local === "1" && Number(row.dataset.least) >= arguments[2];
"#;

/// Saves `file` from the browser peer's card and returns the SHA-256 (hex) of the Blob
/// the page assembled.
fn saved_sha(browser: &Browser, file: &str) -> Value {
    browser.click(&format!(r#"section.browser-peer button.save[data-file="{file}"]"#));
    browser.element(&format!(r#"a.save-link[data-file="{file}"]"#), LONG);
    browser.exec_async(
        r#"const done = arguments[arguments.length - 1];
           const a = document.querySelector(`a.save-link[data-file="${arguments[0]}"]`);
           fetch(a.href).then(r => r.arrayBuffer()).then(b => crypto.subtle.digest("SHA-256", b))
             .then(h => done(Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, "0")).join("")))
             .catch(e => done("error: " + e));"#,
        json!([file]),
    )
}

#[test]
fn panel_joins_nodes_inserts_by_path_and_shows_full_replication() {
    if !require_browser() {
        return;
    }
    let nodes = WsNode::cluster(3, false);
    let browser = Browser::start();
    browser.goto(&nodes[0].panel_url());

    // Opened from the printed address, the panel watches that node at once.
    browser.element(&card(&nodes[0]), LONG);
    for node in &nodes[1..] {
        browser.type_into("#node-url", &node.ws_url());
        browser.type_into("#node-token", &node.token);
        browser.click("form.connect button[type=submit]");
        browser.element(&card(node), LONG);
    }
    for node in &nodes {
        browser.click(&format!("{} button.join", card(node)));
        browser.wait(
            LONG,
            &format!("the panel shows node {} joined with ErrOK", node.label),
            "const c = document.querySelector(arguments[0]); \
             return !!c && c.dataset.joined === 'true' && !!c.querySelector('.notice[data-code=ErrOK]');",
            json!([card(node)]),
        );
    }

    // An Insert of a path that is not there (inside --insert-from) is answered
    // ErrFileMissing, shown by name.
    let missing = nodes[0].scratch().join("no-such-file.bin");
    browser.type_into(&format!("{} form.insert input", card(&nodes[0])), &missing.to_string_lossy());
    browser.click(&format!("{} form.insert button", card(&nodes[0])));
    browser.wait(
        LONG,
        "the panel shows ErrFileMissing",
        "return !!document.querySelector(arguments[0] + ' .notice[data-code=ErrFileMissing]');",
        json!([card(&nodes[0])]),
    );

    let src = nodes[0].scratch().join("report.bin");
    random_file(&src, 2 * 1024 * 1024 + 12_345, 7);
    let sha = sha256_file(&src);
    browser.type_into(&format!("{} form.insert input", card(&nodes[0])), &src.display().to_string());
    browser.click(&format!("{} form.insert button", card(&nodes[0])));

    // Replication reaches 100% on every node, as every node's card shows.
    for node in &nodes {
        browser.wait(
            LONG,
            &format!("node {}'s card shows report.bin complete with 3 copies", node.label),
            NODE_ROW_COMPLETE,
            json!([node.ws_url(), "report.bin", 3]),
        );
    }
    for node in &nodes {
        wait_until(LONG, "every node holds report.bin", || {
            node.dir().join("report.bin").is_file() && sha256_file(&node.dir().join("report.bin")) == sha
        });
    }

    // The chunk map of the file, with its legend.
    browser.click(&format!(r#"{} tr.file[data-file="report.bin"]"#, card(&nodes[0])));
    browser.wait(
        LONG,
        "the chunk map of report.bin is drawn",
        "const m = document.querySelector(arguments[0] + ' .chunkmap[data-file=\"report.bin\"]'); \
         return !!m && m.querySelectorAll('.cells .cell').length === 33 && !!m.querySelector('.legend');",
        json!([card(&nodes[0])]),
    );

    // A wrong token is refused and said so by name.
    let stranger = &nodes[2];
    browser.type_into("#node-url", &format!("http://127.0.0.1:{}/", stranger.ws_port));
    browser.type_into("#node-token", "not-the-token");
    browser.click("form.connect button[type=submit]");
    browser.wait(
        LONG,
        "the panel shows ErrBadPermission for a wrong token",
        "return !!document.querySelector(arguments[0] + ' .notice[data-code=ErrBadPermission]');",
        json!([card(stranger)]),
    );
    // Put the right token back, so the screenshot shows three healthy nodes.
    browser.type_into("#node-url", &stranger.ws_url());
    browser.type_into("#node-token", &stranger.token);
    browser.click("form.connect button[type=submit]");
    browser.wait(LONG, "node w2 is back", NODE_ROW_COMPLETE, json!([stranger.ws_url(), "report.bin", 3]));
    // report.bin is still selected in node w0's card, so its chunk map stays open.
    browser.wait(
        LONG,
        "the chunk map is drawn",
        "return !!document.querySelector('.chunkmap[data-file=\"report.bin\"]');",
        json!([]),
    );
    browser.screenshot(&artifact("browser-panel.png"));
}

#[test]
fn browser_peer_shares_downloads_saves_and_keeps_chunks_across_reload() {
    if !require_browser() {
        return;
    }
    let (nodes, browser) = page_with_peer(2);

    // Share a file from "this computer" through the file picker: the nodes fetch it
    // from the page, byte for byte.
    let picked_dir = tempfile::tempdir().expect("tempdir");
    let picked = picked_dir.path().join("from-browser.bin");
    random_file(&picked, 3 * 1024 * 1024 + 4321, 11);
    let picked_sha = sha256_file(&picked);
    browser.type_into("#share-file", &picked.display().to_string());
    browser.wait(
        LONG,
        "the page reports the file shared (ErrOK)",
        "return !!document.querySelector('section.browser-peer .notice[data-code=ErrOK]');",
        json!([]),
    );
    for node in &nodes {
        let path = node.dir().join("from-browser.bin");
        wait_until(LONG, &format!("node {} holds from-browser.bin", node.label), || {
            path.is_file() && sha256_file(&path) == picked_sha
        });
    }
    let st = nodes[0].query();
    assert!(peers(&st).iter().any(|p| p.starts_with("browser-")), "node w0 counts the page among its peers: {st}");

    // Download a network file into the page, chunk by chunk, then save it.
    let sha = insert_on(&nodes[1], "network.bin", 5 * 1024 * 1024 + 777, 12);
    browser.click(r#"section.browser-peer button.download[data-file="network.bin"]"#);
    browser.wait(LONG, "the page holds network.bin complete", PEER_ROW_COMPLETE, json!(["network.bin"]));
    assert_eq!(
        saved_sha(&browser, "network.bin"),
        Value::String(sha.clone()),
        "the file assembled in the page has the original bytes"
    );
    let verifier = browser.exec("return document.querySelector('section.browser-peer').dataset.verifier;", json!([]));
    assert_eq!(verifier, json!("webcrypto"), "on a loopback origin the page verifies chunks with WebCrypto");
    let saved = browser.downloads.join("network.bin");
    wait_until(LONG, "the browser saved network.bin to its download folder", || {
        saved.is_file() && fs::metadata(&saved).map(|m| m.len()).unwrap_or(0) == 5 * 1024 * 1024 + 777
    });
    assert_eq!(sha256_file(&saved), sha, "the saved file has the original bytes");

    // The page counts in the nodes' replication: three participants hold it.
    wait_until(LONG, "node w0 sees 3 copies of network.bin (w0, w1 and the page)", || {
        file_status(&nodes[0].query(), "network.bin").is_some_and(|f| f.least == 3)
    });

    // A reload keeps the chunks: the page restores them from IndexedDB, and announces
    // them again to the node.
    browser.refresh();
    browser.wait(LONG, "after reload the page still holds network.bin", PEER_ROW_COMPLETE, json!(["network.bin"]));
    browser.wait(
        LONG,
        "after reload the page still holds from-browser.bin",
        PEER_ROW_COMPLETE,
        json!(["from-browser.bin"]),
    );
    browser.wait(LONG, "the reloaded page is connected again", PEER_CONNECTED, json!([1]));
    wait_until(LONG, "node w0 again sees 3 copies of network.bin", || {
        file_status(&nodes[0].query(), "network.bin").is_some_and(|f| f.least == 3)
    });
    browser.wait(
        LONG,
        "node w0's card shows the page's copy again",
        NODE_ROW_COMPLETE,
        json!([nodes[0].ws_url(), "network.bin", 3]),
    );
    browser.screenshot(&artifact("browser-peer.png"));
}

#[test]
fn the_panel_removes_a_file_everywhere_after_confirmation_and_the_browser_peer_drops_it() {
    if !require_browser() {
        return;
    }
    let (nodes, browser) = page_with_peer(2);
    insert_on(&nodes[1], "old.bin", 300_000, 21);
    browser.click(r#"section.browser-peer button.download[data-file="old.bin"]"#);
    browser.wait(LONG, "the page holds old.bin complete", PEER_ROW_COMPLETE, json!(["old.bin"]));
    browser.wait(
        LONG,
        "node w0's card shows old.bin complete",
        NODE_ROW_COMPLETE,
        json!([nodes[0].ws_url(), "old.bin", 3]),
    );
    let stored = stored_in_page(&browser, "old.bin");
    assert!(stored[0] == 1 && stored[1].as_u64() >= Some(1), "the page keeps old.bin in IndexedDB: {stored}");

    // Remove asks first; Cancel takes nothing out.
    let row = format!(r#"{} tr.file[data-file="old.bin"]"#, card(&nodes[0]));
    browser.click(&format!("{row} button.remove"));
    browser.element(&format!("{row} .confirm-remove button.confirm"), LONG);
    browser.click(&format!("{row} .confirm-remove button.cancel"));
    browser.element(&format!("{row} button.remove"), LONG);
    assert!(nodes[0].dir().join("old.bin").is_file() && nodes[1].dir().join("old.bin").is_file());

    browser.click(&format!("{row} button.remove"));
    browser.click(&format!("{row} .confirm-remove button.confirm"));
    browser.wait(
        LONG,
        "the panel shows the Remove answered ErrOK",
        "return !!document.querySelector(arguments[0] + ' .notice[data-code=ErrOK]');",
        json!([card(&nodes[0])]),
    );
    for node in &nodes {
        wait_until(LONG, &format!("node {} deleted old.bin", node.label), || {
            !node.dir().join("old.bin").exists() && file_status(&node.query(), "old.bin").is_none()
        });
    }
    browser.wait(
        LONG,
        "neither the node's card nor the browser peer lists old.bin",
        "return !document.querySelector('tr.file[data-file=\"old.bin\"]');",
        json!([]),
    );
    wait_until(LONG, "the page deleted old.bin from IndexedDB", || {
        stored_in_page(&browser, "old.bin") == json!([0, 0])
    });
    browser.screenshot(&artifact("browser-remove.png"));
}

#[test]
fn browser_peer_joins_a_private_network_with_the_secret_in_the_address() {
    if !require_browser() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = secret_in(tmp.path());
    let nodes = WsNode::private_cluster(2, true, &secret);
    // The address the node printed carries the token and the secret.
    let url = nodes[0].printed_panel_url();
    assert!(url.contains(&format!("#token={}&secret=", nodes[0].token)), "{url}");
    let browser = Browser::start();
    browser.goto(&url);
    browser.wait(LONG, "the browser peer is a member of the private network", PEER_CONNECTED, json!([1]));
    assert_eq!(
        browser.exec("return document.querySelector(arguments[0]).dataset.secure;", json!([card(&nodes[0])])),
        json!("true"),
        "the control session is encrypted"
    );

    // A file picked in the page reaches every node, byte for byte, through the
    // encrypted session.
    let picked_dir = tempfile::tempdir().expect("tempdir");
    let picked = picked_dir.path().join("from-private-page.bin");
    random_file(&picked, 2 * 1024 * 1024 + 999, 21);
    let picked_sha = sha256_file(&picked);
    browser.type_into("#share-file", &picked.display().to_string());
    for node in &nodes {
        let path = node.dir().join("from-private-page.bin");
        wait_until(LONG, &format!("node {} holds from-private-page.bin", node.label), || {
            path.is_file() && sha256_file(&path) == picked_sha
        });
    }
    // The node knows the page by its key, as it knows any member.
    let st = nodes[0].query();
    let at = peers(&st).iter().position(|p| p.starts_with("browser-")).unwrap_or_else(|| panic!("the page: {st}"));
    assert!(
        st["peerIds"][at].as_str().is_some_and(|id| !id.is_empty()),
        "node w0 shows the page's node ID beside it: {st}"
    );

    // A network file downloaded into the page has the original bytes.
    let sha = insert_on(&nodes[1], "private-network.bin", 3 * 1024 * 1024 + 5, 22);
    browser.click(r#"section.browser-peer button.download[data-file="private-network.bin"]"#);
    browser.wait(
        LONG,
        "the page holds private-network.bin complete",
        PEER_ROW_COMPLETE,
        json!(["private-network.bin"]),
    );
    assert_eq!(saved_sha(&browser, "private-network.bin"), Value::String(sha), "the page assembled the original bytes");
    // The panel works as over an open node: the card shows the page's copy counted.
    browser.wait(
        LONG,
        "node w0's card shows three copies of private-network.bin",
        NODE_ROW_COMPLETE,
        json!([nodes[0].ws_url(), "private-network.bin", 3]),
    );
    browser.screenshot(&artifact("browser-private.png"));
}

#[test]
fn without_the_secret_the_page_controls_a_private_node_but_its_peer_learns_nothing() {
    if !require_browser() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = secret_in(tmp.path());
    let nodes = WsNode::private_cluster(1, true, &secret);
    insert_on(&nodes[0], "members-only.bin", 300_000, 23);

    // Token only: control works (the token holder is the owner)...
    let browser = Browser::start();
    browser.goto(&nodes[0].panel_url());
    browser.wait(
        LONG,
        "the card lists members-only.bin",
        NODE_ROW_COMPLETE,
        json!([nodes[0].ws_url(), "members-only.bin", 1]),
    );
    // ...but the page's peer, which tried its session as soon as it saw the node joined,
    // is never a member: no file list, no chunks, not among the node's peers.
    std::thread::sleep(Duration::from_secs(5));
    let listed = browser.exec(
        "return document.querySelectorAll('section.browser-peer tr.file').length + ':' + \
         document.querySelector('section.browser-peer').dataset.connected;",
        json!([]),
    );
    assert_eq!(listed, json!("0:0"), "the page's peer got no file list and is connected to no node");
    let st = nodes[0].query();
    assert!(!peers(&st).iter().any(|p| p.starts_with("browser-")), "the page is no member: {st}");
    assert_eq!(st["chunksServed"], json!(0), "no chunk left the node: {st}");

    // A wrong secret in the address: the handshake fails and the card says why.
    drop(browser);
    let wrong = format!("{}&secret={}", nodes[0].panel_url(), "ab".repeat(32));
    let browser = Browser::start();
    browser.goto(&wrong);
    browser.wait(
        LONG,
        "the card says the node does not hold this secret",
        "const c = document.querySelector(arguments[0]); \
         return !!c && c.textContent.includes('network secret');",
        json!([card(&nodes[0])]),
    );
}
