//! The control client: sends Join, Leave, Insert, Query or Remove (Delete) to a node and shows the
//! answer, with error codes by name. Every request carries the node's control token:
//! the one given (`TORRONTO_TOKEN`, `--token`), else, for a node on this machine, the
//! one it registered for its owner (see [`crate::registry`]).

use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::net::TcpStream;
/// Sizes read as in the panel: core holds the one rule.
pub use torronto_core::human_size;
use torronto_core::wire::{Reply, WireError};
use torronto_core::{Code, Control, Envelope, Message, NetworkSecret, PeerAddr, Status};
use torronto_net::{
    write_encoded, Decoder, FrameRead, FrameWrite, ReadError, SecureFrameReader, SecureFrameWriter, Step,
    TcpFrameReader, TcpFrameWriter,
};

/// A node's answer: the parsed reply and its frames exactly as received.
#[derive(Debug)]
pub struct Answer {
    pub reply: Reply,
    pub frames: Vec<Bytes>,
    /// Where the token was looked for when none was given or found; shown if refused.
    pub token_hint: Option<String>,
}

impl Answer {
    /// The reply as one JSON object: the header, with the status merged in when a
    /// large one came as a body frame.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&self.frames[0])?;
        if let Some(body) = self.frames.get(1) {
            object.remove("Body");
            let status: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)?;
            object.extend(status);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// The token to send to `node`: `given`, else, for an address of this machine (loopback
/// or wildcard), the one registered for its port by a node of the current user, if that
/// port's listener is still the user's own. Without one, also what to tell the user.
pub fn find_token(node: &str, given: Option<String>) -> (Option<String>, Option<String>) {
    if given.is_some() {
        return (given, None);
    }
    let how = "set TORRONTO_TOKEN to the token in the node's DIR/.torronto/token \
               (or pass --token, which other users can see in `ps`)";
    let local_port = node
        .to_socket_addrs()
        .ok()
        .map(|addrs| addrs.collect::<Vec<_>>())
        .filter(|addrs| !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() || a.ip().is_unspecified()))
        .map(|addrs| addrs[0].port());
    let Some(port) = local_port else {
        return (None, Some(format!("no control token given for {node}: {how}")));
    };
    let Some(dir) = crate::registry::default_dir() else {
        return (None, Some(format!("no control token given, and no HOME to look for one in: {how}")));
    };
    let path = crate::registry::entry(&dir, port);
    match crate::registry::lookup(&path) {
        Ok(token) => match crate::owner::foreign_listener(port) {
            None => (Some(token), None),
            Some(why) => {
                // Said now, too: a squatter may not answer with the refusal that shows the hint.
                let hint = format!("a control token is registered in {}, but {why}", path.display());
                eprintln!("torronto: {hint}");
                (None, Some(format!("{hint}: {how}")))
            }
        },
        Err(e) => (
            None,
            Some(format!(
                "no control token given, and none registered for port {port} by a node of this user \
                 (looked in {}: {e}): {how}",
                path.display()
            )),
        ),
    }
}

/// Sends one control request and waits for the reply. Without a `token`, the one
/// [`find_token`] finds is sent.
pub async fn request(node: &str, token: Option<String>, request: Control) -> anyhow::Result<Answer> {
    request_secured(node, token, None, request).await
}

/// [`request`], inside the network's handshake when given its secret (with a throwaway
/// identity), so that the token and the answer do not cross the network in clear.
pub async fn request_secured(
    node: &str,
    token: Option<String>,
    secret: Option<NetworkSecret>,
    request: Control,
) -> anyhow::Result<Answer> {
    let (token, token_hint) = find_token(node, token);
    let mut stream = TcpStream::connect(node).await.with_context(|| format!("cannot reach a node at {node}"))?;
    let envelope = Envelope { from: Some(PeerAddr::new(hostname(), 0)), token, message: request.into() };
    let Some(secret) = secret else {
        let (read, write) = stream.into_split();
        return exchange(TcpFrameReader::new(read), TcpFrameWriter::new(write), envelope, token_hint).await;
    };
    let secured = crate::private::dial_as_client(&mut stream, secret)
        .await
        .with_context(|| format!("no secure connection to {node} (is --secret the network's?)"))?;
    let (sealer, opener) = secured.channel.split();
    let (read, write) = stream.into_split();
    let frames_in = SecureFrameReader::new(read, opener, secured.leftover)?;
    exchange(frames_in, SecureFrameWriter::new(write, sealer), envelope, token_hint).await
}

async fn exchange(
    frames_in: impl FrameRead,
    mut out: impl FrameWrite,
    envelope: Envelope,
    token_hint: Option<String>,
) -> anyhow::Result<Answer> {
    write_encoded(&mut out, &envelope.encode()).await?;
    out.flush().await?;
    let mut answer = Decoder::new(frames_in);
    let mut frames = Vec::new();
    loop {
        let (_, frame, step) = match answer.next_frame().await {
            Ok(Some(next)) => next,
            Ok(None) => anyhow::bail!("the node closed the connection without answering"),
            Err(ReadError::Wire(WireError::FrameTooLong { len, limit })) => {
                anyhow::bail!("the node's answer has a {len}-byte frame, over the limit of {limit}")
            }
            Err(e) => return Err(e).context("the node closed the connection without answering"),
        };
        frames.push(frame);
        match step {
            Step::Partial => continue,
            Step::Message(Envelope { message: Message::Reply(reply), .. }) => {
                return Ok(Answer { reply, frames, token_hint })
            }
            Step::Message(other) => anyhow::bail!("unexpected answer from the node: {other:?}"),
            Step::Malformed(reason) => anyhow::bail!(reason),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "cli".into())
}

/// Process exit status for a reply code: 0 for ErrOK, 10 + code otherwise.
pub fn exit_status(code: Code) -> i32 {
    match code {
        Code::Ok => 0,
        other => 10 + other as i32,
    }
}

/// Prints a failed reply the way users read it: name, meaning, and the node's reason;
/// for a refusal, where the token was looked for.
pub fn print_error(answer: &Answer) {
    let reply = &answer.reply;
    let code = reply.code_or_ok();
    match &reply.reason {
        Some(reason) => eprintln!("{}: {} ({reason})", code.name(), code.explain()),
        None => eprintln!("{}: {}", code.name(), code.explain()),
    }
    if let (Code::BadPermission, Some(hint)) = (code, &answer.token_hint) {
        eprintln!("{hint}");
    }
}

/// Runs `request` while showing elapsed time on a terminal, for a long Leave.
pub async fn request_with_progress(
    node: &str,
    token: Option<String>,
    secret: Option<NetworkSecret>,
    control: Control,
    what: &str,
) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let fut = request_secured(node, token, secret, control);
    tokio::pin!(fut);
    let show = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            answer = &mut fut => {
                if show && started.elapsed() > Duration::from_millis(500) {
                    eprint!("\r\x1b[2K");
                }
                return answer;
            }
            _ = tick.tick() => {
                if show && started.elapsed() > Duration::from_millis(500) {
                    eprint!("{}", spinner(what, started));
                }
            }
        }
    }
}

/// A terminal line saying `what` is under way since `started`, with a turning spinner.
pub fn spinner(what: &str, started: Instant) -> String {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let elapsed = started.elapsed().as_secs_f64();
    format!("\r\x1b[2K{} {what}… {elapsed:.0}s", FRAMES[(elapsed * 4.0) as usize % FRAMES.len()])
}

/// The status as a table a person can read at a glance.
pub fn format_status(s: &Status) -> String {
    let mut out = String::new();
    let joined = if s.joined { "joined" } else { "not joined" };
    let node = match &s.id {
        Some(id) => format!("{} ({id})", s.node),
        None => s.node.clone(),
    };
    out.push_str(&format!("node {node} · {joined} · {} peer(s)", s.peers.len()));
    if !s.peers.is_empty() {
        let peers: Vec<String> = s
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| match s.peer_ids.get(i).filter(|id| !id.is_empty()) {
                Some(id) => format!("{p} ({id})"),
                None => p.clone(),
            })
            .collect();
        out.push_str(&format!(": {}", peers.join(", ")));
    }
    out.push('\n');
    if s.files.is_empty() {
        out.push_str(&format!("no files yet — add one with `{} insert PATH`\n", crate::program::command()));
        return out;
    }
    let width = s.files.iter().map(|f| f.chars().count()).max().unwrap_or(4).max(4);
    out.push_str(&format!(
        "{:<width$}  {:>10}  {:>6}  {:>6}  {:>5}  {:>6}\n",
        "FILE", "SIZE", "LOCAL", "SYSTEM", "LEAST", "AVG"
    ));
    for row in s.rows() {
        let size = row.size.map_or_else(|| "?".into(), human_size);
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>5.1}%  {:>5.1}%  {:>5}  {:>6.2}\n",
            row.name,
            size,
            row.local * 100.0,
            row.system * 100.0,
            row.least,
            row.average,
        ));
        // What stands in the way, under the file's row.
        if let Some(at) = row.stored_as {
            out.push_str(&format!("  ↳ stored as {at}: a file torronto does not manage has this name\n"));
        }
        if let Some(why) = row.refused {
            out.push_str(&format!("  ↳ not stored here: {why}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_every_file_with_percentages() {
        let s = Status {
            num_files: 2,
            files: vec!["a.bin".into(), "long-name.iso".into()],
            local: vec![1.0, 0.5],
            system: vec![1.0, 1.0],
            least_replication: vec![3, 1],
            weighted_least_replication: vec![3.0, 1.5],
            node: "127.0.0.1:7001".into(),
            joined: true,
            peers: vec!["127.0.0.1:7002".into()],
            sizes: vec![1536, 3 << 30],
            ..Status::default()
        };
        let table = format_status(&s);
        assert!(table.contains("127.0.0.1:7001 · joined · 1 peer(s): 127.0.0.1:7002"), "{table}");
        assert!(table.contains("long-name.iso     3.0 GiB   50.0%  100.0%      1    1.50"), "{table}");
        assert!(table.contains("a.bin"));
        let id = torronto_core::NodeId::from_public_key(&[3; 32]).to_string();
        let private = Status { id: Some(id.clone()), peer_ids: vec![id.clone()], ..s };
        let table = format_status(&private);
        assert!(
            table.contains(&format!("127.0.0.1:7001 ({id}) · joined · 1 peer(s): 127.0.0.1:7002 ({id})")),
            "{table}"
        );
        assert_eq!(exit_status(Code::FileExists), 13);
    }
}
