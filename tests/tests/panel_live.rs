//! The control panel's live side, in real headless Chromium against real nodes: a node
//! that left reads "not joined" (not one red copy per file), the files × nodes overview
//! of two watched nodes, rates and the time left
//! while bytes move, each node's peers with how complete each is and its rates, the warning before closing the tab while something is at stake,
//! the browser peer's identity kept across reloads, and a browser download cancelled or
//! a file forgotten in the page. Screenshots go to `tests/artifacts/`.

use std::time::Duration;

use serde_json::{json, Value};
use torronto_tests::browser::{artifact, require_browser, Browser, WsNode};
use torronto_tests::panel::{
    card, insert_on, page_with_peer, secret_in, sideways, stored_in_page, PEER_CONNECTED, PEER_ROW_COMPLETE,
};
use torronto_tests::{cli, random_file, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// Sets a node's bandwidth limits with the CLI (`torronto limit`).
fn limit(node: &WsNode, flag: &str, rate: &str) {
    let out = cli(&["limit", flag, rate, "--node", &node.addr()]);
    assert_eq!(out.code, 0, "limit {flag} {rate} on node {}: {out}", node.label);
}

/// Whether a `beforeunload` now is held back (the page asks before it closes), and the
/// reason the page gives on its body.
fn leave_warning(browser: &Browser) -> Value {
    browser.exec(
        "const e = new Event('beforeunload', { cancelable: true }); window.dispatchEvent(e); \
         return [e.defaultPrevented, document.body.dataset.leaveWarning || null];",
        json!([]),
    )
}

/// `n` joined nodes, and a browser on the panel of the first; its card's selector.
fn panel_of(n: usize) -> (Vec<WsNode>, String, Browser) {
    let nodes = WsNode::cluster(n, true);
    let node_card = card(&nodes[0]);
    let browser = Browser::start();
    browser.goto(&nodes[0].panel_url());
    (nodes, node_card, browser)
}

#[test]
fn a_node_that_left_shows_not_joined_instead_of_one_red_copy_and_two_nodes_get_a_files_by_nodes_overview() {
    if !require_browser() {
        return;
    }
    let (nodes, node_card, browser) = panel_of(2);
    insert_on(&nodes[1], "kept.bin", 300_000, 41);
    insert_on(&nodes[1], "also-kept.bin", 200_000, 42);
    browser.wait(
        LONG,
        "node w0's card counts two copies of both files",
        "const r = [...document.querySelectorAll(arguments[0] + ' tr.file')]; \
         return r.length === 2 && r.every((x) => x.dataset.least === '2');",
        json!([node_card]),
    );

    // One node watched: no overview. Two: a files × nodes table and a card per node.
    assert_eq!(browser.exec("return !!document.querySelector('section.overview');", json!([])), json!(false));
    browser.type_into("#node-url", &nodes[1].ws_url());
    browser.type_into("#node-token", &nodes[1].token);
    browser.click("form.connect button[type=submit]");
    let across = browser.wait(
        LONG,
        "the overview shows both files complete on both nodes",
        "const o = document.querySelector('section.overview'); if (!o) return false; \
         const cells = [...o.querySelectorAll('tr.file td.held')].map((c) => c.textContent); \
         const devices = [...o.querySelectorAll('li.device')].map((d) => d.dataset.done); \
         return cells.length === 4 && cells.every((c) => c === '100%') && devices.length === 2 && [cells, devices];",
        json!([]),
    );
    assert_eq!(across[1], json!(["1", "1"]), "each node holds everything: {across}");

    browser.click(&format!("{node_card} button.leave"));
    browser.wait(
        LONG,
        "node w0's card says it is not joined",
        "const p = document.querySelector(arguments[0] + ' .title .pill'); return !!p && p.textContent === 'not joined';",
        json!([node_card]),
    );
    // Its files keep their rows, and each copy cell says "not joined": no red badge.
    let cells = browser.wait(
        LONG,
        "every copy cell of node w0 reads not joined",
        "const r = [...document.querySelectorAll(arguments[0] + ' tr.file td.copies')]; \
         return r.length === 2 && r.every((c) => c.textContent === 'not joined') && r.map((c) => c.textContent);",
        json!([node_card]),
    );
    assert_eq!(cells, json!(["not joined", "not joined"]));
    let red = browser.exec("return document.querySelectorAll(arguments[0] + ' .level.r1').length;", json!([node_card]));
    assert_eq!(red, json!(0), "no alarming one-copy badge on a node that left");
    let w0 = nodes[0].addr();
    browser.wait(
        LONG,
        "the overview says node w0 is not joined",
        "const c = [...document.querySelectorAll(`section.overview td.held[data-node=\"${arguments[0]}\"]`)]; \
         return c.length === 2 && c.every((x) => x.textContent === 'not joined');",
        json!([w0]),
    );
    browser.screenshot(&artifact("panel-not-joined.png"));

    // Joined again, the counts come back.
    browser.click(&format!("{node_card} button.join"));
    browser.wait(
        LONG,
        "node w0's card counts two copies again",
        "const r = [...document.querySelectorAll(arguments[0] + ' tr.file')]; \
         return r.length === 2 && r.every((x) => x.dataset.least === '2' && !!x.querySelector('.level.r2'));",
        json!([node_card]),
    );
}

#[test]
fn rates_and_time_left_show_while_bytes_move_and_closing_the_tab_asks_first() {
    if !require_browser() {
        return;
    }
    let (nodes, browser) = page_with_peer(2);
    let node_card = card(&nodes[0]);
    assert_eq!(leave_warning(&browser), json!([false, null]), "nothing at stake: the tab closes without asking");

    // Node w1 sends at most 1 MiB/s, so an 8 MiB file takes seconds to reach w0 and
    // the page: long enough to read rates.
    limit(&nodes[1], "--upload-limit", "1MiB");
    insert_on(&nodes[1], "slow.bin", 8 * 1024 * 1024, 43);
    browser.click(r#"section.browser-peer button.download[data-file="slow.bin"]"#);
    let seen = browser.wait(
        LONG,
        "node w0's card shows bytes arriving, and slow.bin's time left",
        "const r = document.querySelector(arguments[0] + ' .meta .rates'); \
         const bar = document.querySelector(arguments[0] + ' tr.file[data-file=\"slow.bin\"] td.progress .bar span'); \
         return !!r && Number(r.dataset.down) > 0 && !!bar && bar.textContent.includes('left') && [r.textContent, bar.textContent];",
        json!([node_card]),
    );
    eprintln!("node w0 while fetching: {seen}");
    let peer = browser.wait(
        LONG,
        "the browser's row of slow.bin shows its rate and time left",
        "const bar = document.querySelector('section.browser-peer tr.file[data-file=\"slow.bin\"] td.progress .bar span'); \
         return !!bar && bar.textContent.includes('/s') && bar.textContent.includes('left') && bar.textContent;",
        json!([]),
    );
    eprintln!("the page while downloading: {peer}");
    browser.wait(
        LONG,
        "the browser card shows bytes arriving",
        "const r = document.querySelector('section.browser-peer .meta .rates'); return !!r && Number(r.dataset.down) > 0;",
        json!([]),
    );
    let warning = leave_warning(&browser);
    assert_eq!(warning[0], json!(true), "mid-download, closing the tab asks first: {warning}");
    assert!(warning[1].as_str().is_some_and(|w| w.contains("slow.bin is still downloading")), "{warning}");

    // Done, and held elsewhere too: nothing at stake, and the rates fall back to zero.
    browser.wait(
        LONG,
        "the page holds slow.bin, and so does node w0",
        "const r = document.querySelector('section.browser-peer tr.file[data-file=\"slow.bin\"]'); \
         return !!r && r.dataset.local === '1' && Number(r.dataset.least) >= 2;",
        json!([]),
    );
    browser.wait(LONG, "the leave warning is gone", "return !document.body.dataset.leaveWarning;", json!([]));
    let stored = browser.exec(
        "const s = document.querySelector('section.browser-peer .meta .stored'); return s && [s.dataset.bytes, s.textContent];",
        json!([]),
    );
    assert_eq!(stored, json!(["8388608", "8.0 MiB kept in this browser"]), "the storage the page uses is shown");
    browser.wait(
        LONG,
        "the browser card's download rate is back to zero",
        "const r = document.querySelector('section.browser-peer .meta .rates'); return !!r && r.dataset.down === '0';",
        json!([]),
    );
    assert_eq!(leave_warning(&browser), json!([false, null]));
    browser.wait(
        LONG,
        "node w0's rates are back to zero",
        "const r = document.querySelector(arguments[0] + ' .meta .rates'); return !!r && r.dataset.down === '0';",
        json!([node_card]),
    );

    // A file shared from the page, while the nodes take it slowly: the page holds the
    // only complete copy, and closing the tab asks first.
    limit(&nodes[0], "--download-limit", "512K");
    limit(&nodes[1], "--download-limit", "512K");
    let picked_dir = tempfile::tempdir().expect("tempdir");
    let picked = picked_dir.path().join("only-here.bin");
    random_file(&picked, 4 * 1024 * 1024, 44);
    browser.type_into("#share-file", &picked.display().to_string());
    let only = browser.wait(
        LONG,
        "closing the tab warns that the page holds the only copy",
        "const w = document.body.dataset.leaveWarning; return !!w && w.includes('only copy of only-here.bin') && w;",
        json!([]),
    );
    eprintln!("while the nodes fetch: {only}");
    browser.wait(
        LONG,
        "the browser card shows bytes going out",
        "const r = document.querySelector('section.browser-peer .meta .rates'); return !!r && Number(r.dataset.up) > 0;",
        json!([]),
    );
    assert_eq!(leave_warning(&browser)[0], json!(true));
    browser.screenshot(&artifact("panel-rates.png"));
}

/// A JS predicate: in the card `arguments[0]`, the peer whose address starts with
/// `arguments[1]` reads `arguments[2]` on its bar; its bytes held, share held and text.
const PEER_DONE: &str = r#"
    const p = [...document.querySelectorAll(arguments[0] + ' ul.peers li.peer')]
        .find((x) => x.dataset.peer.startsWith(arguments[1]));
    const bar = p && p.querySelector('[role=progressbar] span');
    return !!bar && bar.textContent === arguments[2] && [Number(p.dataset.held), Number(p.dataset.done), p.textContent];
"#;

#[test]
fn a_node_card_lists_its_peers_with_how_complete_each_is_and_its_rates() {
    if !require_browser() {
        return;
    }
    let (nodes, browser) = page_with_peer(2);
    let node_card = card(&nodes[0]);
    let w1 = nodes[1].addr();
    // 500,000 bytes in the network, all on w1; the page holds nothing yet.
    insert_on(&nodes[1], "a.bin", 300_000, 61);
    insert_on(&nodes[1], "b.bin", 200_000, 62);
    browser.wait(
        LONG,
        "node w0 knows both files",
        "return document.querySelectorAll(arguments[0] + ' tr.file').length === 2;",
        json!([node_card]),
    );
    let w1_seen =
        browser.wait(LONG, "node w0's card shows w1 complete", PEER_DONE, json!([node_card, w1, "100% complete"]));
    assert_eq!((&w1_seen[0], &w1_seen[1]), (&json!(500_000), &json!(1)), "{w1_seen}");
    assert!(w1_seen[2].as_str().is_some_and(|t| t.contains("holds 488.3 KiB of 488.3 KiB")), "{w1_seen}");
    let page = browser.wait(
        LONG,
        "node w0's card shows the page holding nothing",
        PEER_DONE,
        json!([node_card, "browser-", "0% complete"]),
    );
    assert_eq!((&page[0], &page[1]), (&json!(0), &json!(0)), "{page}");
    let labelled = browser.exec(
        "const l = document.querySelector(arguments[0] + ' ul.peers'); return [l.getAttribute('aria-label'), l.children.length];",
        json!([node_card]),
    );
    assert!(labelled[0].as_str().is_some_and(|l| l.starts_with("Peers")) && labelled[1] == json!(2), "{labelled}");

    // The page downloads b.bin: 200,000 of 500,000 bytes.
    browser.click(r#"section.browser-peer button.download[data-file="b.bin"]"#);
    browser.wait(LONG, "the page holds b.bin", PEER_ROW_COMPLETE, json!(["b.bin"]));
    let page = browser.wait(
        LONG,
        "node w0's card shows the page 40% complete",
        PEER_DONE,
        json!([node_card, "browser-", "40% complete"]),
    );
    assert_eq!((&page[0], &page[1]), (&json!(200_000), &json!(0.4)), "{page}");

    // w1 sends a larger file at 1 MiB/s: node w0's card shows bytes coming from w1, and
    // the page's share shrinking (200,000 of 500,000 + 4 MiB), while w1 stays complete.
    limit(&nodes[1], "--upload-limit", "1MiB");
    insert_on(&nodes[1], "slow.bin", 4 * 1024 * 1024, 63);
    let from_w1 = browser.wait(
        LONG,
        "node w0's card shows w1 sending",
        "const p = [...document.querySelectorAll(arguments[0] + ' ul.peers li.peer')].find((x) => x.dataset.peer === arguments[1]); \
         const r = p && p.querySelector('.rates'); \
         return !!r && Number(r.dataset.down) > 0 && r.dataset.up === '0' && p.dataset.done === '1' && r.textContent;",
        json!([node_card, w1]),
    );
    eprintln!("w1 as node w0's card shows it: {from_w1}");
    let page = browser.wait(
        LONG,
        "node w0's card shows the page 4.2% complete",
        PEER_DONE,
        json!([node_card, "browser-", "4.2% complete"]),
    );
    assert_eq!(page[0], json!(200_000), "{page}");
    browser.resize(400, 900);
    assert!(sideways(&browser) <= 0, "at 400 px the page scrolls sideways by {} px", sideways(&browser));
    let fits = browser.exec(
        "const c = document.querySelector(arguments[0]).getBoundingClientRect(); \
         return [...document.querySelectorAll(arguments[0] + ' li.peer')].every((p) => p.getBoundingClientRect().right <= c.right);",
        json!([node_card]),
    );
    assert_eq!(fits, json!(true), "at 400 px each peer's card stays inside the node's card");
    browser.screenshot(&artifact("panel-peers-400.png"));
    browser.resize(1400, 1000);
    browser.wait(
        LONG,
        "node w0 has slow.bin, and w1 no longer sends",
        "const p = [...document.querySelectorAll(arguments[0] + ' ul.peers li.peer')].find((x) => x.dataset.peer === arguments[1]); \
         const r = p && p.querySelector('.rates'); \
         const row = document.querySelector(arguments[0] + ' tr.file[data-file=\"slow.bin\"]'); \
         return !!r && r.dataset.down === '0' && !!row && row.dataset.local === '1';",
        json!([node_card, w1]),
    );
    browser.screenshot(&artifact("panel-peers.png"));
}

#[test]
fn the_browser_peer_keeps_its_name_and_key_across_reloads() {
    if !require_browser() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = secret_in(tmp.path());
    let nodes = WsNode::private_cluster(1, true, &secret);
    let browser = Browser::start();
    browser.goto(&nodes[0].printed_panel_url());
    browser.wait(LONG, "the browser peer is a member of the private network", PEER_CONNECTED, json!([1]));

    // The page as node w0 knows it: its name and the node ID its key proves.
    let seen_by_node = || -> (String, String) {
        let mut found = None;
        torronto_tests::wait_until(LONG, "node w0 lists the page with its node ID", || {
            let st = nodes[0].query();
            let peers = st["peers"].as_array().cloned().unwrap_or_default();
            let at = peers.iter().position(|p| p.as_str().is_some_and(|p| p.starts_with("browser-")));
            found = at.and_then(|i| {
                let id = st["peerIds"][i].as_str().filter(|id| !id.is_empty())?;
                Some((peers[i].as_str()?.to_string(), id.to_string()))
            });
            found.is_some()
        });
        found.expect("found above")
    };
    let name = browser.exec("return document.querySelector('section.browser-peer').dataset.peer;", json!([]));
    assert!(name.as_str().is_some_and(|n| n.starts_with("browser-")), "{name}");
    // In a private network a node names a member by its key: the page's ID.
    let before = seen_by_node();
    let stored = || browser.exec("return localStorage.getItem('torronto.peer');", json!([]));
    let kept = stored();
    assert!(kept.as_str().is_some_and(|k| !k.is_empty()), "the page keeps its identity: {kept}");

    browser.refresh();
    browser.wait(LONG, "the reloaded page is connected again", PEER_CONNECTED, json!([1]));
    let again = browser.exec("return document.querySelector('section.browser-peer').dataset.peer;", json!([]));
    assert_eq!(again, name, "the page is the same peer after a reload");
    assert_eq!(stored(), kept, "the reloaded page kept the identity it had, not a fresh one");
    // The old session may linger a moment at the node: wait for the one of the new page.
    torronto_tests::wait_until(LONG, "node w0 sees the reloaded page (one browser peer)", || {
        let st = nodes[0].query();
        st["peers"]
            .as_array()
            .is_some_and(|p| p.iter().filter(|x| x.as_str().is_some_and(|x| x.starts_with("browser-"))).count() == 1)
    });
    assert_eq!(seen_by_node(), before, "node w0 knows the reloaded page by the same name and node ID");
}

#[test]
fn an_insert_by_path_shows_its_progress_on_the_node_card() {
    if !require_browser() {
        return;
    }
    let (nodes, node_card, browser) = panel_of(1);
    browser.element(&format!("{node_card} form.insert input"), LONG);
    // Large enough that copying and hashing it takes a few of the panel's Queries.
    let src = nodes[0].scratch().join("big.bin");
    let file = std::fs::File::create(&src).expect("create big.bin");
    file.set_len(768 * 1024 * 1024).expect("size big.bin");
    browser.type_into(&format!("{node_card} form.insert input"), &src.display().to_string());
    browser.click(&format!("{node_card} form.insert button"));
    let progress = browser.wait(
        LONG,
        "the node card shows big.bin's insert progress",
        "const p = document.querySelector(arguments[0] + ' .inserting[data-file=\"big.bin\"] .bar span'); \
         return !!p && p.textContent.endsWith('of 768.0 MiB') && p.textContent;",
        json!([node_card]),
    );
    eprintln!("while inserting: {progress}");
    browser.wait(
        LONG,
        "the insert is done and the progress bar gone",
        "return !document.querySelector(arguments[0] + ' .inserting') && \
         !!document.querySelector(arguments[0] + ' tr.file[data-file=\"big.bin\"]');",
        json!([node_card]),
    );
}

#[test]
fn a_browser_download_can_be_cancelled_and_a_file_forgotten_and_the_nodes_stop_counting_the_page() {
    if !require_browser() {
        return;
    }
    let (nodes, browser) = page_with_peer(2);
    let node_card = card(&nodes[0]);
    let row = |file: &str| format!(r#"section.browser-peer tr.file[data-file="{file}"]"#);

    // A download under way: cancelled, the page keeps nothing of it and fetches no more.
    limit(&nodes[1], "--upload-limit", "1MiB");
    insert_on(&nodes[1], "slow.bin", 8 * 1024 * 1024, 51);
    browser.click(&format!("{} button.download", row("slow.bin")));
    let partial = browser.wait(
        LONG,
        "part of slow.bin is in the page",
        "const r = document.querySelector(arguments[0]); const l = r && Number(r.dataset.local); \
         return l > 0 && l < 1 && l;",
        json!([row("slow.bin")]),
    );
    eprintln!("slow.bin held when cancelled: {partial}");
    browser.click(&format!("{} button.cancel-download", row("slow.bin")));
    browser.wait(
        LONG,
        "slow.bin is back to nothing held, with its Download button",
        "const r = document.querySelector(arguments[0]); \
         return !!r && r.dataset.local === '0' && !!r.querySelector('button.download') && !r.querySelector('button.cancel-download');",
        json!([row("slow.bin")]),
    );
    wait_until(LONG, "the page deleted what it had of slow.bin from IndexedDB", || {
        stored_in_page(&browser, "slow.bin") == json!([0, 0])
    });
    assert_eq!(leave_warning(&browser), json!([false, null]), "nothing downloading any more");
    // Node w0 goes on fetching slow.bin from w1; the page takes none of it.
    std::thread::sleep(Duration::from_secs(2));
    let local = browser.exec("return document.querySelector(arguments[0]).dataset.local;", json!([row("slow.bin")]));
    assert_eq!(local, json!("0"), "a cancelled download stays cancelled");
    assert_eq!(stored_in_page(&browser, "slow.bin"), json!([0, 0]));

    // A complete file, counted by the nodes: forgotten, it is no longer counted, and a
    // second Download brings it back.
    insert_on(&nodes[1], "kept.bin", 300_000, 52);
    browser.click(&format!("{} button.download", row("kept.bin")));
    browser.wait(LONG, "the page holds kept.bin", PEER_ROW_COMPLETE, json!(["kept.bin"]));
    let node_row = format!(r#"{node_card} tr.file[data-file="kept.bin"]"#);
    let least = "const r = document.querySelector(arguments[0]); return !!r && r.dataset.least === arguments[1];";
    browser.wait(LONG, "node w0 counts 3 copies of kept.bin (w0, w1, the page)", least, json!([node_row, "3"]));
    browser.click(&format!("{} button.forget", row("kept.bin")));
    browser.wait(LONG, "node w0 counts 2 copies of kept.bin: the page's is gone", least, json!([node_row, "2"]));
    // The page, connected to w0 only, counts what w0 knows too: the same 2 copies.
    browser.wait(LONG, "the browser's table counts 2 copies of kept.bin too", least, json!([row("kept.bin"), "2"]));
    browser.wait(
        LONG,
        "the page's row of kept.bin holds nothing and offers Download",
        "const r = document.querySelector(arguments[0]); \
         return !!r && r.dataset.local === '0' && !!r.querySelector('button.download');",
        json!([row("kept.bin")]),
    );
    wait_until(LONG, "the page deleted kept.bin from IndexedDB", || {
        stored_in_page(&browser, "kept.bin") == json!([0, 0])
    });
    browser.screenshot(&artifact("panel-forget.png"));
    browser.click(&format!("{} button.download", row("kept.bin")));
    browser.wait(LONG, "the page holds kept.bin again", PEER_ROW_COMPLETE, json!(["kept.bin"]));
    browser.wait(LONG, "node w0 counts 3 copies again", least, json!([node_row, "3"]));
}
