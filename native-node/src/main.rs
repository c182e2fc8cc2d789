//! `torronto`: run a node, control one, or start a demo network.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use torronto_core::{wire, Code, PeerAddr, RateLimits};
use torronto_node::client::{self, exit_status, format_status, print_error};
use torronto_node::driver::{Driver, NodeOptions};
use torronto_node::limits::{format_rate, parse_rate};
use torronto_node::private::{new_secret_text, read_secret};
use torronto_node::store::{parse_size, MinFree, Space};
use torronto_node::web::{self, WebOptions};
use torronto_node::{config, demo, peers_file, progress, shutdown_signal, watch};

#[derive(Parser, Debug)]
#[command(
    name = "torronto",
    version,
    about = "Peer-to-peer file replication: every file inserted anywhere ends up on every joined node."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node in the foreground (Ctrl-C leaves the network gracefully, then stops).
    // A flag given twice takes the last value: the command line after the config file's.
    #[command(args_override_self = true)]
    Node {
        /// A TOML file of these flags (`listen = "0.0.0.0:7001"`, `join = true`, ...);
        /// flags on the command line win over the file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// How log lines look: `text` for people, `json` (one object per line) for log
        /// collectors. Under systemd, text lines leave the time to journald.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Address to listen on (`[::]:7001` for IPv6); also the node's address for peers
        /// unless --advertise says otherwise.
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: PeerAddr,
        /// Where peers reach this node (HOST:PORT), needed with --listen 0.0.0.0 or [::].
        #[arg(long)]
        advertise: Option<PeerAddr>,
        /// The network secret file (`torronto secret new`): only nodes holding it connect,
        /// and all traffic between them is encrypted.
        #[arg(long, env = "TORRONTO_SECRET_FILE")]
        secret: Option<PathBuf>,
        /// Run an open network (plaintext, anyone may join) on a non-loopback address.
        #[arg(long, conflicts_with = "secret")]
        open: bool,
        /// The shared folder: complete files appear here.
        #[arg(long)]
        dir: PathBuf,
        /// Peers file: one `host port` or `host:port` per line; `host:port#ID` pins a
        /// node ID (private networks).
        #[arg(long)]
        peers: Option<PathBuf>,
        /// Join the network at start.
        #[arg(long)]
        join: bool,
        /// Control token every control client must send (default: generated and kept
        /// in DIR/.torronto/token). Prefer TORRONTO_TOKEN or that file: a --token on
        /// the command line is visible to every user in `ps`.
        #[arg(long, env = "TORRONTO_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A folder remote control clients (the panel, TCP from other hosts) may insert
        /// files from by path (repeatable; none by default). The owner's CLI on this
        /// machine may insert any file the node can read.
        #[arg(long = "insert-from", value_name = "DIR")]
        insert_from: Vec<PathBuf>,
        /// Also serve the control panel (http://HOST:PORT/) and the WebSocket endpoint
        /// (ws://HOST:PORT/ws) on this address.
        #[arg(long)]
        ws: Option<PeerAddr>,
        /// The built web app served with --ws (scripts/build-web.sh builds it).
        #[arg(long, default_value_os_t = web::default_web_root())]
        web_root: PathBuf,
        /// A further origin whose pages may open WebSocket sessions (repeatable), e.g.
        /// http://panel.example:8000; the --ws address itself is always allowed.
        #[arg(long = "allow-origin")]
        allow_origin: Vec<String>,
        /// Serve Prometheus metrics at http://HOST:PORT/metrics (counts and peer
        /// addresses, no file names); keep it on loopback or a monitoring network.
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<PeerAddr>,
        /// Free space to leave on the folder's disk: a size (500M, 2G) or a share (5%).
        /// Default 5 %, at most 1 GiB. A file that would eat into it is refused (and
        /// asked again every 30 s, in case space was freed).
        #[arg(long, value_name = "SIZE", default_value = "5%")]
        min_free: MinFree,
        /// Most the folder may hold, in files complete or being fetched (e.g. 20G). No
        /// limit by default.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_store: Option<u64>,
        /// Most chunk bytes per second sent to peers, shared fairly between them: a rate
        /// like 20MiB/s, 500K/s or bytes per second (units binary: K = KiB = KB), or a
        /// link rate in bits like 45Mbit/s or 45Mbps (decimal); 0 or off for none (the
        /// default). `torronto limit` changes it while the node runs. On an uplink
        /// narrower than the downlink, about 90 % of the uplink's nominal rate (45Mbit/s
        /// on 50 Mbit/s) keeps the node's own downloads fast (a full uplink's queue holds
        /// them up).
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        upload_limit: Option<u64>,
        /// Most chunk bytes per second taken from peers, as --upload-limit.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        download_limit: Option<u64>,
        /// How long a file put in the folder must stay unchanged (and closed by its
        /// writer) before it is shared, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        settle_ms: u64,
        /// Also seed exported files (`torronto torrent`) to BitTorrent clients on this
        /// address (BEP 3 peer wire). Off by default.
        #[arg(long, value_name = "HOST:PORT")]
        bittorrent: Option<PeerAddr>,
        /// Most links to other nodes (1 or more). The node dials half of it (2 to 8),
        /// lets others dial it for the rest, and learns the whole network by gossip.
        #[arg(long, value_name = "N", default_value_t = torronto_node::options::DEFAULT_MAX_LINKS, value_parser = parse_max_links)]
        max_links: usize,
        /// Hold uploads back on our own when they fill the uplink: when the peers we
        /// send to measure that our chunks queue on their way out (a full uplink, whose
        /// queue holds up our own requests and downloads too), uploads are held at 95 %
        /// of what the uplink was seen to carry, under any --upload-limit; the hold rises
        /// while the queue is gone, and is lifted 30 seconds after it last had to cut.
        /// For a line whose uplink is narrower than its downlink, when its rate is not
        /// known (if it is, --upload-limit at 90 % of it does better). Off by default.
        #[arg(long)]
        auto_upload_limit: bool,
    },
    /// Tell a node to join the network.
    Join(Control),
    /// Tell a node to leave; it first hands chunks only it holds to others.
    Leave(Control),
    /// Show a node's files and how well they are replicated.
    Query {
        #[command(flatten)]
        control: Control,
    },
    /// Copy a file into a node's folder and share it with the network.
    Insert {
        /// Path of the file, on the node's machine.
        path: PathBuf,
        #[command(flatten)]
        control: Control,
    },
    /// Show a node's bandwidth limits, or change them while it runs (until it restarts:
    /// for good, set --upload-limit/--download-limit where it is started).
    #[command(visible_alias = "limits")]
    Limit {
        /// New upload limit: a rate like 20MiB/s or 500K/s; 0 or off for none.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        upload_limit: Option<u64>,
        /// New download limit, as --upload-limit.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        download_limit: Option<u64>,
        #[command(flatten)]
        control: Control,
    },
    /// A live view of one node: files, progress, copies, rates and peers, redrawn in
    /// place (q or Ctrl-C quits); one snapshot per interval when stdout is not a terminal.
    Watch {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        #[command(flatten)]
        control: Control,
    },
    /// Take a file out of the network: every node deletes its copy, and a node that
    /// is away does so when it returns. The name can be inserted again with new content.
    Remove {
        /// The file's name in the network, as `query` lists it (e.g. `docs/report.pdf`).
        name: String,
        #[command(flatten)]
        control: Control,
    },
    /// Export a network file the node holds complete as a v1 .torrent (written here) and
    /// print its magnet link; a node started with --bittorrent seeds it to standard
    /// BitTorrent clients from then on.
    Torrent {
        /// The file's name in the network.
        name: String,
        /// Where to write the .torrent (default: the file's name plus .torrent, here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A tracker announce URL to put in the torrent and the link (repeatable); the
        /// node announces itself to the http:// ones.
        #[arg(long = "tracker", value_name = "URL")]
        trackers: Vec<String>,
        #[command(flatten)]
        control: Control,
    },
    /// Bring a torrent into the network: the node downloads it from BitTorrent peers
    /// (its http trackers' and any given with --peer), verifies every piece and inserts
    /// its files (a multi-file torrent's as NAME/PATH), which then reach every node.
    Add {
        /// A v1 .torrent file (read here and sent to the node), or a magnet link
        /// (magnet:?xt=urn:btih:..., its metadata fetched by the node from the peers).
        source: String,
        /// A BitTorrent peer to download from, HOST:PORT (repeatable).
        #[arg(long = "peer", value_name = "HOST:PORT")]
        peers: Vec<String>,
        #[command(flatten)]
        control: Control,
    },
    /// Network secrets for private networks.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Start a small local network with sample files (temporary folders, loopback).
    Demo {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// First TCP port to try; the next ones follow.
        #[arg(long, default_value_t = 7001)]
        base_port: u16,
        /// Stop once the samples have replicated (for scripts and tests).
        #[arg(long)]
        once: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum SecretCommand {
    /// Print a fresh network secret (from the OS's random generator); keep it owner-only.
    New {
        /// Write it to FILE (mode 0600, never overwritten) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct Control {
    /// The node to talk to.
    #[arg(long, env = "TORRONTO_NODE", default_value = "127.0.0.1:7001")]
    node: String,
    /// The node's control token. Not needed for a node of yours on this machine (it
    /// registers its token for you); else prefer TORRONTO_TOKEN: a --token on the
    /// command line is visible to every user in `ps`.
    #[arg(long, env = "TORRONTO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The network secret: talk to the node encrypted (as a throwaway member).
    #[arg(long, env = "TORRONTO_SECRET_FILE")]
    secret: Option<PathBuf>,
    /// Print the node's reply as one JSON object on stdout (for scripts); the exit
    /// status still says whether it succeeded.
    #[arg(long)]
    json: bool,
}

impl Control {
    fn secret(&self) -> anyhow::Result<Option<torronto_core::NetworkSecret>> {
        self.secret.as_deref().map(read_secret).transpose()
    }
}

// One thread runs the network and the engine; chunk I/O has its own thread. Several
// nodes on few cores (the usual test and benchmark setup) waste less on wake-ups.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match config::expand(std::env::args_os().collect(), &node_flags()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    match run(cli.command).await {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Node {
            config: _,
            log_format,
            listen,
            advertise,
            secret,
            open,
            dir,
            peers,
            join,
            token,
            insert_from,
            ws,
            web_root,
            allow_origin,
            metrics,
            min_free,
            max_store,
            upload_limit,
            download_limit,
            settle_ms,
            bittorrent,
            max_links,
            auto_upload_limit,
        } => {
            init_logs(log_format);
            check_exposure(&listen, advertise.as_ref(), ws.as_ref(), secret.is_some(), open)?;
            let secret = secret.as_deref().map(read_secret).transpose()?;
            let peers = match peers {
                Some(path) => peers_file::read(&path)?,
                None => Default::default(),
            };
            let web = ws.map(|listen| WebOptions { listen, root: web_root, allow_origins: allow_origin });
            let registry = torronto_node::registry::default_dir();
            let options = NodeOptions {
                listen,
                advertise,
                secret,
                pins: peers.pins,
                dir,
                peers: peers.addrs,
                join,
                token,
                insert_from,
                registry,
                web,
                metrics,
                space: Space { min_free, max_store },
                limits: RateLimits { upload: upload_limit.unwrap_or(0), download: download_limit.unwrap_or(0) },
                settle: Some(std::time::Duration::from_millis(settle_ms)),
                bittorrent,
                max_links,
                auto_upload_limit,
            };
            let driver = Driver::bind(options).await?;
            // Listening for Ctrl-C and SIGTERM before saying it is ready.
            let shutdown = shutdown_signal();
            let id = driver.node_id().map_or_else(|| "open network".to_owned(), |id| format!("node ID {id}"));
            println!(
                "torronto node {} ({id}) ready · folder {} · control token in {}",
                driver.addr(),
                driver.dir().display(),
                driver.dir().join(".torronto/token").display()
            );
            if let Some(addr) = torronto_node::bittorrent::listen_addr(driver.dir()) {
                println!("BitTorrent peers served on {addr} (files exported with `torronto torrent`)");
            }
            if let Some(url) = driver.panel_url() {
                println!("control panel: {url}");
                if driver.node_id().is_some() {
                    println!("  (this address holds the token and the network secret: share it with no one)");
                }
            }
            driver.run(shutdown).await?;
            Ok(0)
        }
        Command::Join(c) => simple(c, wire::Control::Join, "joined the network").await,
        Command::Leave(c) => {
            let secret = c.secret()?;
            let answer =
                client::request_with_progress(&c.node, c.token, secret, wire::Control::Leave, "leaving").await?;
            if let Some(n) = answer.reply.unconfirmed {
                eprintln!("warning: {n} chunks held only by this node could not be handed over in time");
            }
            finish(&answer, "left the network", c.json)
        }
        Command::Query { control } => {
            let secret = control.secret()?;
            let query = wire::Control::Query { file: None };
            let answer = client::request_secured(&control.node, control.token, secret, query).await?;
            if control.json || answer.reply.code_or_ok() != Code::Ok {
                return finish(&answer, "", control.json);
            }
            if let Some(status) = &answer.reply.status {
                print!("{}", format_status(status));
            }
            Ok(0)
        }
        Command::Insert { path, control } => {
            // The node resolves the path on its machine; make a relative one absolute here.
            let path = std::path::absolute(&path).unwrap_or(path);
            let path = path.to_string_lossy().into_owned();
            let secret = control.secret()?;
            let answer = progress::insert(&control.node, control.token, secret, path).await?;
            finish(&answer, "inserted", control.json)
        }
        Command::Limit { upload_limit, download_limit, control } => {
            let secret = control.secret()?;
            let request = wire::Control::Limit { upload: upload_limit, download: download_limit };
            let answer = client::request_secured(&control.node, control.token, secret, request).await?;
            match answer.reply.limits {
                Some(l) if !control.json && answer.reply.code_or_ok() == Code::Ok => {
                    println!("upload limit:   {}\ndownload limit: {}", format_rate(l.upload), format_rate(l.download));
                    Ok(0)
                }
                _ => finish(&answer, "", control.json),
            }
        }
        Command::Watch { interval, control } => {
            let secret = control.secret()?;
            let every = std::time::Duration::from_secs_f64(interval);
            watch::run(&control.node, control.token, secret, every, control.json).await
        }
        Command::Remove { name, control } => {
            let file = torronto_core::FileName::new(&name)
                .map_err(|e| anyhow::anyhow!("{name:?} is not a file name of the network: {e}"))?;
            simple(control, wire::Control::Delete { file }, &format!("removed {name} from the network")).await
        }
        Command::Torrent { name, out, trackers, control } => {
            let secret = control.secret()?;
            let file = torronto_core::FileName::new(&name).map_err(|e| anyhow::anyhow!("{name:?}: {e}"))?;
            let request = wire::Control::Torrent { file, trackers };
            let answer = client::request_secured(&control.node, control.token, secret, request).await?;
            match &answer.reply.torrent {
                Some(export) if answer.reply.code_or_ok() == Code::Ok => {
                    torronto_node::bittorrent::save_export(export, out, control.json)?;
                    Ok(0)
                }
                _ => finish(&answer, "", control.json),
            }
        }
        Command::Add { source, peers, control } => {
            let secret = control.secret()?;
            let (torrent, name) = read_add_source(&source)?;
            let request = wire::Control::AddTorrent { torrent: torrent.into(), peers };
            let answer = progress::add(&control.node, control.token, secret, request, name.clone()).await?;
            finish(&answer, &format!("added {name} to the network"), control.json)
        }
        Command::Secret(SecretCommand::New { out }) => {
            let text = new_secret_text();
            match out {
                Some(path) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                    file.write_all(text.as_bytes())?;
                    eprintln!("network secret written to {}; start every node with --secret FILE", path.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Command::Demo { nodes, base_port, once } => {
            init_logs(LogFormat::Text);
            demo::run(nodes, base_port, once).await?;
            Ok(0)
        }
    }
}

/// `torronto add`'s SOURCE: a magnet link, sent as it is, or a `.torrent` file, read
/// here; and the name to show for it.
fn read_add_source(source: &str) -> anyhow::Result<(Vec<u8>, String)> {
    use torronto_core::bittorrent::magnet::{is_magnet, Magnet};
    if is_magnet(source.as_bytes()) {
        let m = Magnet::parse(source)?;
        let name = m.name.unwrap_or_else(|| torronto_core::bittorrent::metainfo::hex(&m.info_hash));
        return Ok((source.as_bytes().to_vec(), name));
    }
    let torrent = anyhow::Context::with_context(std::fs::read(source), || format!("cannot read {source}"))?;
    match torronto_core::bittorrent::Torrent::decode(&torrent) {
        Ok(t) => Ok((torrent, t.info.name)),
        Err(e) => anyhow::bail!("{source} is not a torrent this version reads (v1 .torrent): {e}"),
    }
}

async fn simple(c: Control, request: wire::Control, done: &str) -> anyhow::Result<i32> {
    let secret = c.secret()?;
    let answer = client::request_secured(&c.node, c.token, secret, request).await?;
    finish(&answer, done, c.json)
}

/// Shows a reply: `done` on success, else the error by name and what to do; with
/// `json`, the reply itself.
fn finish(answer: &client::Answer, done: &str, json: bool) -> anyhow::Result<i32> {
    let code = answer.reply.code_or_ok();
    if json {
        println!("{}", answer.json()?);
    } else if code == Code::Ok {
        println!("{done}");
    } else {
        print_error(answer);
    }
    Ok(exit_status(code))
}

/// Secure by default: a node reachable from other machines (on --listen or --ws) needs
/// the network secret, unless --open says it is meant to be public; a wildcard address
/// needs --advertise.
fn check_exposure(
    listen: &PeerAddr,
    advertise: Option<&PeerAddr>,
    ws: Option<&PeerAddr>,
    private: bool,
    open: bool,
) -> anyhow::Result<()> {
    let ip = |addr: &PeerAddr| addr.host.parse::<std::net::IpAddr>().ok();
    let loopback = |addr: &PeerAddr| addr.host == "localhost" || ip(addr).is_some_and(|ip| ip.is_loopback());
    if ip(listen).is_some_and(|ip| ip.is_unspecified()) && advertise.is_none() {
        anyhow::bail!(
            "--listen {listen} accepts on every interface: say where peers reach this node with --advertise HOST:PORT"
        );
    }
    let exposed_ws = ws.filter(|ws| !loopback(ws));
    if (loopback(listen) && exposed_ws.is_none()) || private {
        return Ok(());
    }
    let use_secret = format!(
        "Start every node with --secret FILE (make one with `{} secret new --out FILE`), or pass --open to run \
         a public, unencrypted network on purpose",
        torronto_node::program::command()
    );
    if !open && !loopback(listen) {
        anyhow::bail!(
            "refusing to listen on {listen} without --secret: anyone who reaches it could read, add and remove \
             files. {use_secret}"
        );
    }
    if let (false, Some(ws)) = (open, exposed_ws) {
        anyhow::bail!(
            "refusing to serve --ws {ws} without --secret: it would expose the node's peers and panel to anyone \
             who reaches it. {use_secret}"
        );
    }
    tracing::warn!("open network on {listen}: plaintext, and anyone who reaches this port can join");
    Ok(())
}

/// The long flags of `torronto node`, and whether each takes a value: the keys a
/// config file may use.
fn node_flags() -> Vec<(String, bool)> {
    let cli = Cli::command();
    let Some(node) = cli.find_subcommand("node") else { return Vec::new() };
    node.get_arguments().filter_map(|arg| Some((arg.get_long()?.to_owned(), arg.get_action().takes_values()))).collect()
}

/// `--max-links`: a count of at least 1.
fn parse_max_links(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?}: give a number of links, 1 or more")),
    }
}

/// `--interval`: seconds, a tenth at least (each refresh is a Query).
fn parse_interval(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?}: give seconds between 0.1 and 3600")),
    }
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // journald stamps each line itself and shows no colours.
    let under_journald = stderr_is_the_journal();
    match format {
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text if under_journald => logs.without_time().with_ansi(false).init(),
        LogFormat::Text => logs.init(),
    }
}

/// Whether standard error is journald's stream. systemd names that stream's device and
/// inode in `JOURNAL_STREAM`, which every process of the unit inherits, also those whose
/// stderr goes elsewhere (a script in a unit sending a node's output to a file): the
/// variable alone would leave that file without timestamps.
fn stderr_is_the_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (dev, ino) = v.split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_flag_takes_the_last_value_and_a_repeatable_one_adds_up() {
        let cli = Cli::try_parse_from([
            "torronto",
            "node",
            "--dir",
            "/a",
            "--insert-from",
            "/x",
            "--dir",
            "/b",
            "--insert-from",
            "/y",
        ])
        .unwrap();
        let Command::Node { dir, insert_from, .. } = cli.command else { panic!("not a node command") };
        assert_eq!(dir, PathBuf::from("/b"));
        assert_eq!(insert_from, [PathBuf::from("/x"), PathBuf::from("/y")]);
    }
}
