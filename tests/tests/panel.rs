//! The control panel as people use it, in real headless Chromium against real nodes:
//! narrow and wide screens, hundreds of files, refused tokens and unreachable nodes,
//! the keyboard alone. (`browser.rs` covers what the panel does to the network; this
//! file how it reads and handles.) Screenshots go to `tests/artifacts/`.

use std::fs;
use std::time::Duration;

use serde_json::json;
use torronto_tests::browser::{artifact, require_browser, Browser, WsNode};
use torronto_tests::{number, wait_until};

const LONG: Duration = Duration::from_secs(60);
const ENTER: &str = "\u{E007}";

fn card(node: &WsNode) -> String {
    format!(r#"section.node[data-url="{}"]"#, node.ws_url())
}

/// Replaces what the search field of the card `css` holds with `text`, typed.
fn search(browser: &Browser, css: &str, text: &str) {
    // Ctrl+A, release, Backspace, then the text: as a person clears a field.
    browser.press(&format!("{css} .listing-bar input[type=search]"), &format!("\u{E009}a\u{E000}\u{E003}{text}"));
}

/// The page scrolls sideways by this many pixels (0: it fits its viewport).
fn sideways(browser: &Browser) -> i64 {
    let v = browser.exec("return document.documentElement.scrollWidth - window.innerWidth;", json!([]));
    v.as_i64().unwrap_or(i64::MAX)
}

/// Rows of file tables in the DOM under `css`.
fn rows(browser: &Browser, css: &str) -> u64 {
    let v = browser.exec("return document.querySelectorAll(arguments[0] + ' tr.file').length;", json!([css]));
    v.as_u64().unwrap_or(0)
}

#[test]
fn three_hundred_files_fit_narrow_and_wide_screens_a_page_at_a_time_and_search_finds_one() {
    if !require_browser() {
        return;
    }
    let nodes = WsNode::cluster(1, true);
    let node = &nodes[0];
    // 299 small files and one with a long name without spaces, found in the node's
    // folder and adopted.
    let long = format!("{}.bin", "a-very-long-file-name-without-any-spaces-".repeat(3));
    for i in 0..299 {
        fs::write(node.dir().join(format!("file-{i:03}.txt")), format!("file {i}\n")).expect("write file");
    }
    fs::write(node.dir().join(&long), b"long\n").expect("write file");
    wait_until(LONG, "the node adopted 300 files", || number(&node.query(), "numFiles") == 300);

    let browser = Browser::start();
    browser.resize(1400, 1000);
    browser.goto(&node.panel_url());
    let node_card = card(node);
    browser.wait(
        LONG,
        "both tables list a page of files",
        "return document.querySelectorAll(arguments[0] + ' tr.file').length === 50 && \
         document.querySelectorAll('section.browser-peer tr.file').length === 50;",
        json!([node_card]),
    );
    assert!(rows(&browser, "") <= 100, "the DOM holds two pages of rows, not 600");
    assert_eq!(
        browser.exec("return document.querySelector(arguments[0] + ' .pager span').textContent;", json!([node_card])),
        json!("1–50 of 300 · page 1 of 6")
    );

    // Search finds one file among 300.
    search(&browser, &node_card, "file-123");
    browser.wait(
        LONG,
        "the search leaves file-123.txt alone",
        "const r = document.querySelectorAll(arguments[0] + ' tr.file'); \
         return r.length === 1 && r[0].dataset.file === 'file-123.txt';",
        json!([node_card]),
    );
    search(&browser, &node_card, "");
    browser.wait(
        LONG,
        "all files again",
        "return document.querySelectorAll(arguments[0] + ' tr.file').length === 50;",
        json!([node_card]),
    );

    // Sort by name from the keyboard: Enter on the heading sorts A→Z, again Z→A.
    let by_name = format!("{node_card} th button.sort[data-col='0']");
    browser.press(&by_name, ENTER);
    browser.press(&by_name, ENTER);
    browser.wait(
        LONG,
        "names sorted Z→A: file-298.txt first, then the long name last on page 6",
        "const th = document.querySelector(arguments[0] + ' th[aria-sort=descending]'); \
         const first = document.querySelector(arguments[0] + ' tr.file'); \
         return !!th && !!first && first.dataset.file === 'file-298.txt';",
        json!([node_card]),
    );
    browser.press(&format!("{node_card} .pager button.next"), ENTER);
    browser.wait(
        LONG,
        "page 2 shows files 51 to 100",
        "return document.querySelector(arguments[0] + ' .pager span').textContent.startsWith('51–100 of 300');",
        json!([node_card]),
    );

    // Wide: nothing scrolls sideways.
    assert!(sideways(&browser) <= 0, "at 1400 px the page scrolls sideways by {} px", sideways(&browser));
    browser.screenshot(&artifact("panel-1400.png"));

    // Narrow: stacked file cards, long names wrapped inside the screen, their full name
    // in a title; nothing scrolls sideways.
    search(&browser, &node_card, "a-very-long");
    browser.resize(400, 900);
    browser.wait(LONG, "the viewport is 400 px or less", "return window.innerWidth <= 400;", json!([]));
    let stacked = browser.exec(
        "const r = document.querySelector(arguments[0] + ' tr.file'); return getComputedStyle(r).display;",
        json!([node_card]),
    );
    assert_eq!(stacked, json!("block"), "on a narrow screen each file is a card");
    let name = browser.exec(
        "const b = document.querySelector(arguments[0] + ' tr.file button.name'); \
         const r = b.getBoundingClientRect(); return [b.title, r.right <= window.innerWidth];",
        json!([node_card]),
    );
    assert_eq!(name, json!([format!("{long}: show its chunk map"), true]), "the long name wraps inside the screen");
    assert!(sideways(&browser) <= 0, "at 400 px the page scrolls sideways by {} px", sideways(&browser));
    browser.screenshot(&artifact("panel-400.png"));
    browser.resize(360, 900);
    search(&browser, &node_card, "");
    assert!(sideways(&browser) <= 0, "at 360 px the page scrolls sideways by {} px", sideways(&browser));
    browser.screenshot(&artifact("panel-360.png"));
}
