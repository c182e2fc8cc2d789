//! `ws-bridge`: relays browser WebSocket sessions to a torronto node's TCP port.

use std::process::ExitCode;

use clap::Parser;
use torronto_core::PeerAddr;
use torronto_ws_bridge::relay::{self, RelayConfig};
use torronto_ws_bridge::OriginPolicy;

#[derive(Parser, Debug)]
#[command(
    name = "ws-bridge",
    version,
    about = "Relays browser WebSocket sessions (ws://LISTEN/ws) to a torronto node's TCP port (control needs the node's token; insert by path is refused). Open networks only: a private network's panel is its node's own --ws."
)]
struct Cli {
    /// Address to accept WebSocket sessions on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: PeerAddr,
    /// The node's TCP address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    node: PeerAddr,
    /// A further origin whose pages may connect (e.g. http://panel.example:8000);
    /// the relay's own address on http:// is always allowed.
    #[arg(long = "allow-origin")]
    allow_origin: Vec<String>,
    /// Most sessions open at once.
    #[arg(long, default_value_t = 256)]
    max_sessions: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((cli.listen.host.as_str(), cli.listen.port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    let port = listener.local_addr()?.port();
    let origins = OriginPolicy::for_listener(&cli.listen.host, port, &cli.allow_origin).map_err(anyhow::Error::msg)?;
    let shown = PeerAddr::new(cli.listen.host.clone(), port);
    println!("ws-bridge: ws://{shown}/ws → node {} · origins allowed: {}", cli.node, origins.allowed().join(", "));
    let config = RelayConfig { node: cli.node.to_string(), origins, max_sessions: cli.max_sessions };
    tokio::select! {
        () = relay::serve(listener, config) => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
