//! The control panel as people use it, in real headless Chromium against real nodes:
//! narrow and wide screens, hundreds of files, refused tokens and unreachable nodes,
//! the keyboard alone. (`browser.rs` covers what the panel does to the network; this
//! file how it reads and handles.) Screenshots go to `tests/artifacts/`.

use std::fs;
use std::time::Duration;

use serde_json::{json, Value};
use torronto_tests::browser::{artifact, require_browser, Browser, WsNode};
use torronto_tests::panel::{card, sideways};
use torronto_tests::{number, wait_until};

const LONG: Duration = Duration::from_secs(60);
const ENTER: &str = "\u{E007}";

/// Replaces what the search field of the card `css` holds with `text`, typed.
fn search(browser: &Browser, css: &str, text: &str) {
    // Ctrl+A, release, Backspace, then the text: as a person clears a field.
    browser.press(&format!("{css} .listing-bar input[type=search]"), &format!("\u{E009}a\u{E000}\u{E003}{text}"));
}

/// The share of `period` the page's thread spends running script (Chromium's own
/// count, `Performance.getMetrics`).
fn idle_script_share(browser: &Browser, period: Duration) -> f64 {
    let script = || {
        let m = browser.cmd("POST", "/goog/cdp/execute", json!({"cmd": "Performance.getMetrics", "params": {}}));
        let metrics = m["metrics"].as_array().cloned().unwrap_or_default();
        metrics.iter().find(|x| x["name"] == "ScriptDuration").and_then(|x| x["value"].as_f64()).unwrap_or(0.0)
    };
    browser.cmd("POST", "/goog/cdp/execute", json!({"cmd": "Performance.enable", "params": {}}));
    let before = script();
    std::thread::sleep(period);
    (script() - before) / period.as_secs_f64()
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

    // At rest the page does next to nothing: Queries come twice a second, but an
    // answer like the last one redraws nothing.
    let busy = idle_script_share(&browser, Duration::from_secs(3));
    eprintln!("idle with 300 files: script {:.1}% of the time", busy * 100.0);
    assert!(busy < 0.05, "idle with 300 files, the page runs script {:.1}% of the time", busy * 100.0);

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

/// The text of the pill beside the name of the card `css`.
fn pill(browser: &Browser, css: &str) -> Value {
    browser.exec(
        "const p = document.querySelector(arguments[0] + ' .title .pill'); return p && p.textContent;",
        json!([css]),
    )
}

#[test]
fn a_refused_token_says_so_keeps_the_working_session_and_an_unreachable_node_gets_the_ws_command() {
    if !require_browser() {
        return;
    }
    let nodes = WsNode::cluster(1, false);
    let node = &nodes[0];
    let node_card = card(node);
    let browser = Browser::start();

    // Opened with a wrong token: the card says "token refused", not "connecting…",
    // and Join stays disabled.
    browser.goto(&format!("http://127.0.0.1:{}/#token=not-the-token", node.ws_port));
    browser.wait(
        LONG,
        "the card says token refused",
        "const c = document.querySelector(arguments[0]); \
         return !!c && c.querySelector('.title .pill').textContent === 'token refused' && \
         !!c.querySelector('.notice[data-code=ErrBadPermission]') && c.querySelector('button.join').disabled;",
        json!([node_card]),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pill(&browser, &node_card), json!("token refused"), "the refusal stays (no endless connecting…)");

    // The right token arrives in the address (a link opened in this tab): the node
    // accepts it and the card works.
    browser.exec("location.hash = arguments[0];", json!([format!("#token={}", node.token)]));
    browser.wait(
        LONG,
        "the card shows the node not joined",
        "const p = document.querySelector(arguments[0] + ' .title .pill'); return !!p && p.textContent === 'not joined';",
        json!([node_card]),
    );

    // Join: success in plain words, dismissible.
    browser.click(&format!("{node_card} button.join"));
    browser.wait(
        LONG,
        "the card says the node joined, in words",
        "const n = document.querySelector(arguments[0] + ' .notice[data-code=ErrOK]'); \
         return !!n && n.textContent.includes('Joined the network.');",
        json!([node_card]),
    );
    let text = browser.exec("return document.body.innerText;", json!([]));
    assert!(!text.as_str().unwrap_or("").contains("ErrOK"), "no reply code is shown for a success: {text}");
    browser.press(&format!("{node_card} .notice[data-code=ErrOK] button.close"), ENTER);
    browser.wait(
        LONG,
        "the notice is dismissed",
        "return !document.querySelector(arguments[0] + ' .notice[data-code=ErrOK]');",
        json!([node_card]),
    );

    // A wrong token for the watched node: refused, said so, and the working session stays.
    browser.type_into("#node-url", &node.ws_url());
    browser.type_into("#node-token", "another-wrong-token");
    browser.click("form.connect button[type=submit]");
    browser.wait(
        LONG,
        "the card says the new token was refused",
        "const n = document.querySelector(arguments[0] + ' .notice[data-code=ErrBadPermission]'); \
         return !!n && n.textContent.includes('new token');",
        json!([node_card]),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pill(&browser, &node_card), json!("joined"), "the working session goes on");

    // A node that is not there (no --ws on that port): the card says what to run, and
    // stops trying after a few attempts.
    let nobody = torronto_tests::free_port();
    browser.type_into("#node-url", &format!("127.0.0.1:{nobody}"));
    browser.type_into("#node-token", "whatever");
    browser.click("form.connect button[type=submit]");
    let gone = format!(r#"section.node[data-url="ws://127.0.0.1:{nobody}/ws"]"#);
    let advice = browser.wait(
        LONG,
        "the unreachable card gives the --ws and ws-bridge commands",
        "const c = document.querySelector(arguments[0]); const a = c && c.querySelector('.notice .advice'); \
         return a && a.textContent;",
        json!([gone]),
    );
    let advice = advice.as_str().unwrap_or_default();
    assert!(advice.contains(&format!("--ws 127.0.0.1:{nobody}")), "{advice}");
    assert!(advice.contains(&format!("ws-bridge --listen 127.0.0.1:{nobody}")), "{advice}");
    browser.wait(
        Duration::from_secs(40),
        "the card stops trying and offers Retry",
        "return !!document.querySelector(arguments[0] + ' .notice button.retry');",
        json!([gone]),
    );
    assert_eq!(pill(&browser, &gone), json!("unreachable"));
    browser.screenshot(&artifact("panel-states.png"));

    // After a reload the nodes watched before are offered again, without their tokens.
    browser.refresh();
    let offered = format!(r#"form.connect button.remembered-node[data-url="ws://127.0.0.1:{nobody}/ws"]"#);
    browser.click(&offered);
    let form = browser.exec(
        "return [document.querySelector('#node-url').value, document.activeElement.id,          Object.values(localStorage).join(' ').includes(arguments[0])];",
        json!([node.token]),
    );
    assert_eq!(form, json!([format!("ws://127.0.0.1:{nobody}/ws"), "node-token", false]), "no token in storage");
}

/// The lowest text contrast among badges, pills, notices, chips, headings and enabled
/// buttons, and the element that has it: each text colour against the first opaque
/// background behind it (WCAG's relative luminance).
const LOWEST_CONTRAST: &str = r#"
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
        .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
    const behind = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || c[3] > 0.5) return c; } return [255, 255, 255]; };
    let worst = [99, ""];
    for (const e of document.querySelectorAll(".level, .pill, .notice, .notice *, .peer, .meta span, .legend span, th button.sort, button:not(:disabled), h2, td")) {
        if (!e.textContent.trim() || e.offsetParent === null) continue;
        const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(behind(e))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (ratio < worst[0]) worst = [ratio, e.className + " " + e.textContent.trim().slice(0, 30)];
    }
    return worst;
"#;

#[test]
fn share_and_the_chunk_map_work_by_keyboard_text_contrast_holds_light_and_dark_and_copy_counts_agree() {
    if !require_browser() {
        return;
    }
    let nodes = WsNode::cluster(2, true);
    let browser = Browser::start();
    browser.goto(&nodes[0].panel_url());
    browser.type_into("#node-url", &nodes[1].ws_url());
    browser.type_into("#node-token", &nodes[1].token);
    browser.click("form.connect button[type=submit]");
    browser.wait(
        LONG,
        "the browser peer is connected to both nodes",
        "const s = document.querySelector('section.browser-peer'); return !!s && Number(s.dataset.connected) >= 2;",
        json!([]),
    );

    // Share is a button reached by the keyboard; Enter on it opens the file picker.
    let focused = browser.exec(
        "const b = document.querySelector('section.browser-peer button.share'); b.focus(); \
         document.querySelector('#share-file').addEventListener('click', (e) => { window.pickerOpened = true; e.preventDefault(); }); \
         return document.activeElement === b && b.tabIndex >= 0;",
        json!([]),
    );
    assert_eq!(focused, json!(true), "Share a file… takes the keyboard focus");
    browser.press("section.browser-peer button.share", ENTER);
    browser.wait(LONG, "Enter on Share opened the file picker", "return window.pickerOpened === true;", json!([]));
    let unlabelled = browser.exec(
        "return [...document.querySelectorAll('input')].filter((i) => !i.labels.length && !i.getAttribute('aria-label')).length;",
        json!([]),
    );
    assert_eq!(unlabelled, json!(0), "every input has a label");

    // A file of node w1, fetched by node w0 and downloaded into the page: three copies,
    // the same number in every table.
    let src = nodes[1].scratch().join("shared.bin");
    torronto_tests::random_file(&src, 600_000, 31);
    let out = torronto_tests::cli(&["insert", &src.display().to_string(), "--node", &nodes[1].addr()]);
    assert_eq!(out.code, 0, "insert: {out}");
    browser.click(r#"section.browser-peer button.download[data-file="shared.bin"]"#);
    let counts = browser.wait(
        LONG,
        "both node cards and the browser table count three copies of shared.bin",
        "const l = [...document.querySelectorAll(':is(section.node, section.browser-peer) tr.file[data-file=\"shared.bin\"]')].map((r) => r.dataset.least); \
         return l.length === 3 && l.every((n) => n === '3') && l;",
        json!([]),
    );
    assert_eq!(counts, json!(["3", "3", "3"]));

    // The chunk map opens from the keyboard (Enter on the file's name) and reads
    // without colour: a legend counting each level.
    let node_card = card(&nodes[0]);
    browser.press(&format!(r#"{node_card} tr.file[data-file="shared.bin"] button.name"#), ENTER);
    let legend = browser.wait(
        LONG,
        "the chunk map of shared.bin is open, its legend counting its 10 chunks at 3 copies",
        "const m = document.querySelector(arguments[0] + ' .chunkmap[data-file=\"shared.bin\"]'); \
         const c = m && m.querySelector('.legend [data-level=r3] .count'); \
         return !!c && c.textContent === '10' && m.querySelector('.cells').getAttribute('aria-label');",
        json!([node_card]),
    );
    assert_eq!(legend, json!("chunks by copies — 3 copies: 10; held by this node: 10"));
    assert_eq!(
        browser.exec(
            "return document.querySelector(arguments[0] + ' button.name').getAttribute('aria-expanded');",
            json!([node_card])
        ),
        json!("true")
    );

    // Text contrast at least 4.5:1, in light mode and in dark mode (as the system says).
    let worst = browser.exec(LOWEST_CONTRAST, json!([]));
    assert!(worst[0].as_f64() >= Some(4.5), "light mode: lowest contrast {worst}");
    browser.screenshot(&artifact("panel-light.png"));
    browser.cmd(
        "POST",
        "/goog/cdp/execute",
        json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}}),
    );
    let dark = browser.exec("return getComputedStyle(document.querySelector('.card')).backgroundColor;", json!([]));
    assert_eq!(dark, json!("rgb(31, 36, 48)"), "the cards turn dark with the system");
    let worst = browser.exec(LOWEST_CONTRAST, json!([]));
    assert!(worst[0].as_f64() >= Some(4.5), "dark mode: lowest contrast {worst}");
    browser.screenshot(&artifact("panel-dark.png"));
}
