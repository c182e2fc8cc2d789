//! What the control panel's browser tests (`browser.rs`, `panel.rs`, `panel_live.rs`)
//! share: where a node's card is in the page, the JavaScript predicates they wait for,
//! a page whose browser peer is connected, whether the page scrolls sideways, and the
//! files and secrets they give the nodes through the CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::{Browser, WsNode};
use crate::{cli, random_file, sha256_file};

/// The CSS selector of `node`'s card in the panel.
pub fn card(node: &WsNode) -> String {
    format!(r#"section.node[data-url="{}"]"#, node.ws_url())
}

/// A JS predicate: the browser peer is connected to at least `arguments[0]` nodes.
pub const PEER_CONNECTED: &str = r#"
    const s = document.querySelector("section.browser-peer");
    return !!s && Number(s.dataset.connected) >= arguments[0];
"#;

/// A JS predicate: the browser peer's row of `arguments[0]` shows it complete.
pub const PEER_ROW_COMPLETE: &str = r#"
    const row = document.querySelector(`section.browser-peer tr.file[data-file="${arguments[0]}"]`);
    return !!row && row.dataset.local === "1";
"#;

/// `n` joined nodes and a browser on the panel of the first, its browser peer
/// connected to that node.
pub fn page_with_peer(n: usize) -> (Vec<WsNode>, Browser) {
    let nodes = WsNode::cluster(n, true);
    let browser = Browser::start();
    browser.goto(&nodes[0].panel_url());
    browser.wait(Duration::from_secs(60), "the browser peer is connected to node w0", PEER_CONNECTED, json!([1]));
    (nodes, browser)
}

/// The page scrolls sideways by this many pixels (0: it fits its viewport).
pub fn sideways(browser: &Browser) -> i64 {
    let v = browser.exec("return document.documentElement.scrollWidth - window.innerWidth;", json!([]));
    v.as_i64().unwrap_or(i64::MAX)
}

/// How many manifests and chunk records of `file` the page keeps in IndexedDB.
pub fn stored_in_page(browser: &Browser, file: &str) -> Value {
    browser.exec_async(
        r#"const done = arguments[arguments.length - 1];
           const name = arguments[0];
           const req = indexedDB.open("torronto");
           req.onerror = () => done("cannot open the database");
           req.onsuccess = () => {
             const db = req.result;
             const tx = db.transaction(["files", "index"], "readonly");
             const files = tx.objectStore("files").count(name);
             const records = tx.objectStore("index").count(IDBKeyRange.bound([name, 0], [name, 4294967295]));
             tx.oncomplete = () => { db.close(); done([files.result, records.result]); };
             tx.onerror = () => done("cannot read the database");
           };"#,
        json!([file]),
    )
}

/// Inserts a random file `name` of `size` bytes into `node` with the CLI; its SHA-256.
pub fn insert_on(node: &WsNode, name: &str, size: usize, seed: u64) -> String {
    let src = node.scratch().join(name);
    random_file(&src, size, seed);
    let out = cli(&["insert", &src.display().to_string(), "--node", &node.addr()]);
    assert_eq!(out.code, 0, "insert {name} into node {}: {out}", node.label);
    sha256_file(&src)
}

/// A fresh network secret file in `dir`, made by `torronto secret new --out`.
pub fn secret_in(dir: &Path) -> PathBuf {
    let path = dir.join("net.secret");
    let out = cli(&["secret", "new", "--out", &path.display().to_string()]);
    assert_eq!(out.code, 0, "secret new: {out}");
    path
}
