//! `torronto demo`: a small private network on loopback with sample files, to try things
//! out. Its secret is made fresh in the demo's folder (owner-only, `net.secret`); the
//! panel URL it prints carries the token and the secret, so the page joins as a member.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use torronto_core::{Code, Control, NetworkSecret, PeerAddr, Status};

use crate::client::{self, format_status, human_size};
use crate::driver::{Driver, NodeOptions};
use crate::store::Space;
use crate::web::{default_web_root, WebOptions};

/// Where node 1 serves the control panel, when the port is free.
const PANEL_PORT: u16 = 8001;

/// Starts `count` nodes, joins them, inserts sample files and shows them spreading;
/// then runs until Ctrl-C (or returns at once with `once`, for tests).
pub async fn run(count: usize, base_port: u16, once: bool) -> anyhow::Result<()> {
    anyhow::ensure!((1..=16).contains(&count), "a demo has 1 to 16 nodes");
    let root = std::env::temp_dir().join(format!("torronto-demo-{}", std::process::id()));
    let result = run_in(&root, count, base_port, once).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_in(root: &Path, count: usize, base_port: u16, once: bool) -> anyhow::Result<()> {
    let ports = pick_ports(count, base_port)?;
    std::fs::create_dir_all(root)?;
    let secret_file = root.join("net.secret");
    let secret = NetworkSecret::from_random_bytes(crate::private::os_random());
    crate::store::write_atomic(&secret_file, secret.to_file_text().as_bytes(), 0o600)
        .with_context(|| format!("cannot write the demo's network secret to {}", secret_file.display()))?;
    let addrs: Vec<PeerAddr> = ports.iter().map(|&p| PeerAddr::new("127.0.0.1", p)).collect();
    // One stop per node: they leave one after another, so each hands what only it holds
    // to nodes still running instead of all waiting for each other at once.
    let mut running = Vec::new();
    let mut dirs = Vec::new();
    let mut tokens = Vec::new();
    let mut panel = None;
    for (i, addr) in addrs.iter().enumerate() {
        let dir = root.join(format!("node-{}", i + 1));
        // Node 1 serves the control panel.
        let web = (i == 0).then(|| WebOptions {
            listen: PeerAddr::new("127.0.0.1", PANEL_PORT),
            root: default_web_root(),
            allow_origins: Vec::new(),
        });
        // Private, like a real deployment; registered like any node, so `torronto query`
        // works without a token for the user who started the demo (the hints below).
        let options = NodeOptions {
            listen: addr.clone(),
            advertise: None,
            secret: Some(secret.clone()),
            pins: Default::default(),
            dir: dir.clone(),
            peers: addrs.clone(),
            join: false,
            token: None,
            insert_from: Vec::new(),
            registry: crate::registry::default_dir(),
            web,
            metrics: None,
            space: Space::default(),
            limits: Default::default(),
            bittorrent: None,
            settle: Some(crate::shared::DEFAULT_SETTLE),
            max_links: crate::options::DEFAULT_MAX_LINKS,
            auto_upload_limit: false,
        };
        let driver = match Driver::bind(options.clone()).await {
            // The usual panel port is taken (by another demo, say): any port will do. Bound
            // and not checked first, since another program may take it in between.
            Err(_) if options.web.is_some() => {
                let mut options = options;
                options.web.as_mut().expect("checked above").listen.port = 0;
                Driver::bind(options).await?
            }
            bound => bound?,
        };
        panel = panel.or_else(|| driver.panel_url());
        dirs.push(dir);
        tokens.push(driver.token().to_owned());
        let stop = CancellationToken::new();
        let task = tokio::spawn(driver.run(stop.clone().cancelled_owned()));
        running.push((stop, task));
    }
    let samples = write_samples(&root.join("samples"))?;
    let nodes: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    for (node, token) in nodes.iter().zip(&tokens) {
        expect_ok(node, token, &secret, Control::Join).await?;
    }
    for (i, sample) in samples.iter().enumerate() {
        let path = sample.to_string_lossy().into_owned();
        let n = i % nodes.len();
        expect_ok(&nodes[n], &tokens[n], &secret, Control::Insert { path }).await?;
    }
    println!(
        "torronto demo: {count} nodes joined on {} (private network, secret in {})",
        nodes.join(", "),
        secret_file.display()
    );
    if let Some(url) = &panel {
        println!("control panel: {url}");
    }
    let status = watch_replication(&nodes, &tokens, &secret, samples.len()).await?;
    print!("\n{}", format_status(&status));
    if once {
        return stop_in_turn(running).await;
    }
    // Listening for Ctrl-C before saying how to stop.
    let shutdown = crate::shutdown_signal();
    if let Some(url) = &panel {
        println!("\nopen the control panel (node {}): {url}", nodes[0]);
        println!("  (the address holds the token and the network secret: it is yours alone)");
    }
    println!("\nfolders:");
    for d in &dirs {
        println!("  {}", d.display());
    }
    let s = secret_file.display();
    let t = crate::program::command();
    println!("\ntry, in another terminal (--secret keeps the session encrypted):");
    println!("  {t} query --node {} --secret {s}", nodes[nodes.len() - 1]);
    println!("  {t} insert /etc/hosts --node {} --secret {s}", nodes[0]);
    println!("  {t} leave --node {} --secret {s}   # hands over what only it holds, then leaves", nodes[0]);
    println!("  {t} join --node {} --secret {s}", nodes[0]);
    println!("\nCtrl-C stops the demo and removes its folders.");
    shutdown.await;
    println!("stopping…");
    stop_in_turn(running).await
}

/// Stops the nodes one by one, each after the one before has left; the first error
/// is returned once all have stopped.
async fn stop_in_turn(running: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>) -> anyhow::Result<()> {
    let mut result = Ok(());
    for (stop, task) in running {
        stop.cancel();
        let ended = task.await.map_err(anyhow::Error::from).and_then(|r| r);
        result = result.and(ended);
    }
    result
}

/// `base_port` and the ports after it when they are free, else ports the system picks.
fn pick_ports(count: usize, base_port: u16) -> anyhow::Result<Vec<u16>> {
    let wanted: Vec<u16> = (0..count as u16).filter_map(|i| base_port.checked_add(i)).collect();
    if wanted.len() == count && wanted.iter().all(|&p| port_free(p)) {
        return Ok(wanted);
    }
    let listeners: Vec<std::net::TcpListener> =
        (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn write_samples(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let welcome = dir.join("welcome.txt");
    std::fs::write(
        &welcome,
        "Welcome to torronto!\n\nThis file was inserted on one node and replicated, chunk by verified chunk,\nto every other node of the demo network.\n",
    )?;
    let sample = dir.join("sample-24MiB.bin");
    let data: Vec<u8> = (0..24u32 << 20).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&sample, data)?;
    Ok(vec![welcome, sample])
}

async fn expect_ok(node: &str, token: &str, secret: &NetworkSecret, request: Control) -> anyhow::Result<()> {
    let what = format!("{request:?} on {node}");
    let answer = client::request_secured(node, Some(token.to_owned()), Some(secret.clone()), request)
        .await
        .with_context(|| what.clone())?;
    let code = answer.reply.code_or_ok();
    anyhow::ensure!(code == Code::Ok, "{what}: {}", code.name());
    Ok(())
}

/// Prints one progress line until every node holds every sample file and counts every
/// copy.
async fn watch_replication(
    nodes: &[String],
    tokens: &[String],
    secret: &NetworkSecret,
    files: usize,
) -> anyhow::Result<Status> {
    let started = std::time::Instant::now();
    loop {
        let mut line = String::new();
        let mut done = true;
        let mut last = Status::default();
        for (node, token) in nodes.iter().zip(tokens) {
            let query = Control::Query { file: None };
            let answer = client::request_secured(node, Some(token.clone()), Some(secret.clone()), query).await?;
            let status = *answer.reply.status.context("a Query answer carries a status")?;
            let held: u64 = status.rows().filter_map(|r| Some((r.size? as f64 * r.local) as u64)).sum();
            let total: u64 = status.rows().filter_map(|r| r.size).sum();
            // Held everywhere, and every node's status counts every copy (a node hears of
            // a copy from a peer that already had the chunk with the next gossip round).
            done &= status.num_files == files
                && status.local.iter().all(|&l| l >= 1.0)
                && status.least_replication.iter().all(|&copies| copies as usize >= nodes.len());
            line.push_str(&format!("  {} {}/{}", node, human_size(held), human_size(total)));
            last = status;
        }
        // A progress line redrawn in place on a terminal; elsewhere only the outcome.
        use std::io::{IsTerminal, Write};
        if std::io::stdout().is_terminal() {
            print!("\rreplicating:{line}   ");
            let _ = std::io::stdout().flush();
        }
        if done {
            println!("\nevery node holds every file ({:.1} s)", started.elapsed().as_secs_f64());
            return Ok(last);
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "replication did not finish within 2 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
