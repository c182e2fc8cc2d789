//! Announcing exports to their HTTP trackers (BEP 3): a seeder (`left=0`) on the
//! `--bittorrent` port, again at the interval each tracker asks (clamped by core). New
//! exports are seen within [`RESCAN`]. https and udp trackers are left out for now.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use torronto_core::bittorrent::metainfo::hex;
use torronto_core::bittorrent::tracker::{announce_query, parse_answer, Announced};
use torronto_core::bittorrent::Sha1Hash;

/// How often the exports are looked at for new ones or announces due.
const RESCAN: Duration = Duration::from_secs(5);
/// One announce, connection to answer.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(20);
/// After a failed announce, the next try.
const RETRY: Duration = Duration::from_secs(300);
/// Largest tracker answer read, headers included.
const MAX_ANSWER: u64 = 1 << 20;

/// Announces the exports of folder `dir` to their trackers until the node stops.
pub async fn announce(dir: PathBuf, port: u16, peer_id: [u8; 20]) {
    let mut due: HashMap<(Sha1Hash, String), Instant> = HashMap::new();
    loop {
        let d = dir.clone();
        let exports = tokio::task::spawn_blocking(move || super::exports(&d)).await.unwrap_or_default();
        for (info_hash, record) in exports {
            for tracker in record.trackers.iter().filter(|t| t.starts_with("http://")) {
                let key = (info_hash, tracker.clone());
                let first = !due.contains_key(&key);
                if due.get(&key).is_some_and(|at| *at > Instant::now()) {
                    continue;
                }
                // Only what is still served: the copy hashed, unchanged.
                let d = dir.clone();
                if !tokio::task::spawn_blocking(move || super::lookup(&d, &info_hash).is_some()).await.unwrap_or(false)
                {
                    continue;
                }
                let query = announce_query(&info_hash, &peer_id, port, 0, 0, first.then_some("started"));
                let wait = match ask(tracker, &query).await {
                    Ok(answer) => {
                        tracing::info!("announced {} to {tracker}", record.name);
                        Duration::from_secs(answer.interval_secs)
                    }
                    Err(why) => {
                        tracing::warn!("announce of {} ({}) to {tracker}: {why}", record.name, hex(&info_hash));
                        RETRY
                    }
                };
                due.insert(key, Instant::now() + wait);
            }
        }
        tokio::time::sleep(RESCAN).await;
    }
}

/// One announce to an http tracker: its answer, or why there is none (for the log).
pub(super) async fn ask(url: &str, query: &str) -> Result<Announced, String> {
    match timeout(ANNOUNCE_TIMEOUT, get(url, query)).await {
        Ok(Ok(body)) => parse_answer(&body).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer in {ANNOUNCE_TIMEOUT:?}")),
    }
}

/// `GET url?query` over HTTP/1.0 (the tracker closes after its answer); the body of a
/// 200 answer.
async fn get(url: &str, query: &str) -> anyhow::Result<Vec<u8>> {
    let Target { host, port, authority, path } = Target::of(url)?;
    let join = if path.contains('?') { '&' } else { '?' };
    let mut stream = TcpStream::connect((host, port)).await?;
    let request = format!("GET {path}{join}{query} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: torronto\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no HTTP header"))?;
    let status = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    if !(status.starts_with(b"HTTP/1.") && status.get(9..12) == Some(b"200")) {
        anyhow::bail!("HTTP {}", String::from_utf8_lossy(status).trim());
    }
    Ok(answer.split_off(split + 4))
}

/// Where an `http://` URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    host: &'a str,
    port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: &'a str,
    path: &'a str,
}

impl<'a> Target<'a> {
    fn of(url: &'a str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("not an http:// URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>()?),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Target { host, port, authority, path })
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn tracker_urls_split_into_host_port_and_path() {
        let t = |host, port, authority, path| Target { host, port, authority, path };
        assert_eq!(Target::of("http://t.example/announce").unwrap(), t("t.example", 80, "t.example", "/announce"));
        assert_eq!(Target::of("http://10.0.0.1:6969/a?k=v").unwrap(), t("10.0.0.1", 6969, "10.0.0.1:6969", "/a?k=v"));
        assert_eq!(Target::of("http://[::1]:8080").unwrap(), t("::1", 8080, "[::1]:8080", "/"));
        assert_eq!(Target::of("http://[::1]/x").unwrap(), t("::1", 80, "[::1]", "/x"));
        assert!(Target::of("https://t.example/announce").is_err());
        assert!(Target::of("http://t.example:99999/").is_err());
    }
}
