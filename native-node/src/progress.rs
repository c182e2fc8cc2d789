//! `torronto insert`'s and `torronto add`'s progress. The node copies and hashes the
//! file, or downloads the torrent; while the request waits for its answer, a second
//! connection asks the node (Query) how far that has got (the status's `inserting`, fed
//! by the storage as it reads, or `adding`, by the download). Shown as a bar redrawn in
//! place when stderr is a terminal, as plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use torronto_core::{Code, Control, FileName, InsertProgress, NetworkSecret, Status};

use crate::client::{human_size, request_secured, spinner, Answer};
use crate::limits::format_rate;

/// How often the node is asked; lines (off a terminal) come at most every [`LINE_EVERY`].
const POLL_EVERY: Duration = Duration::from_millis(250);
const LINE_EVERY: Duration = Duration::from_secs(1);
/// The first Query waits this long: a wrong token's refusal of the Insert (answered
/// after 100 ms at the soonest) usually comes first, and then nothing more is asked.
const FIRST_POLL: Duration = Duration::from_millis(150);
const BAR_WIDTH: usize = 24;

/// What a long request does, for its progress: the verb shown, what it works on, the
/// name the node reports it under, and the list of the status that has it.
struct Task {
    verb: &'static str,
    label: String,
    name: Option<String>,
    list: fn(Status) -> Vec<InsertProgress>,
}

/// Inserts `path` (absolute, on the node's machine), showing progress on stderr.
pub async fn insert(
    node: &str,
    token: Option<String>,
    secret: Option<NetworkSecret>,
    path: String,
) -> anyhow::Result<Answer> {
    // The node names the file after the path's last part, as here.
    let name = FileName::from_path_base(&path).ok().map(|n| n.to_string());
    let task = Task { verb: "inserting", label: path.clone(), name, list: |s| s.inserting };
    run(node, token, secret, Control::Insert { path }, task).await
}

/// Sends AddTorrent `request` for the torrent called `name`, showing the download's
/// progress on stderr.
pub async fn add(
    node: &str,
    token: Option<String>,
    secret: Option<NetworkSecret>,
    request: Control,
    name: String,
) -> anyhow::Result<Answer> {
    let task = Task { verb: "downloading", label: name.clone(), name: Some(name), list: |s| s.adding };
    run(node, token, secret, request, task).await
}

async fn run(
    node: &str,
    token: Option<String>,
    secret: Option<NetworkSecret>,
    request: Control,
    task: Task,
) -> anyhow::Result<Answer> {
    let Task { verb, label, name, list } = task;
    let started = Instant::now();
    let answer = request_secured(node, token.clone(), secret.clone(), request);
    tokio::pin!(answer);
    let mut shown =
        Shown { verb, terminal: std::io::stderr().is_terminal(), first: None, last_line: None, drawn: false };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_POLL, POLL_EVERY);
    let mut asking = name.is_some();
    loop {
        tokio::select! {
            answer = &mut answer => {
                shown.clear();
                return answer;
            }
            _ = tick.tick() => {
                let progress = match (&name, asking) {
                    (Some(name), true) => {
                        let query = request_secured(node, token.clone(), secret.clone(), Control::Query { file: None });
                        match query.await {
                            Ok(a) if a.reply.code_or_ok() == Code::Ok => a
                                .reply
                                .status
                                .and_then(|s| list(*s).into_iter().find(|p| p.file == *name))
                                .map(|p| (p.done, p.size)),
                            // Refused or gone: the Insert's own answer will say why.
                            _ => {
                                asking = false;
                                None
                            }
                        }
                    }
                    _ => None,
                };
                match progress {
                    Some((done, size)) if size > 0 => shown.update(name.as_deref().unwrap_or(""), done, size),
                    _ => shown.waiting(&label, started),
                }
            }
        }
    }
}

/// What has been shown so far.
struct Shown {
    verb: &'static str,
    terminal: bool,
    /// The first progress seen, and when: the rate is measured from there.
    first: Option<(u64, Instant)>,
    last_line: Option<Instant>,
    /// Something is drawn on the terminal's last line.
    drawn: bool,
}

impl Shown {
    fn update(&mut self, name: &str, done: u64, size: u64) {
        let now = Instant::now();
        let (first_done, first_at) = *self.first.get_or_insert((done, now));
        let elapsed = now.duration_since(first_at).as_secs_f64();
        let rate = (elapsed > 0.2 && done > first_done).then(|| (done - first_done) as f64 / elapsed);
        let percent = done as f64 * 100.0 / size as f64;
        let rate_text = rate.map_or_else(|| "…".to_owned(), |r| format_rate(r as u64));
        let eta = rate.map_or_else(|| "…".to_owned(), |r| format_eta((size - done) as f64 / r));
        if self.terminal {
            let filled = (done as usize).saturating_mul(BAR_WIDTH) / size.max(1) as usize;
            let filled = filled.min(BAR_WIDTH);
            let bar = format!("{}{}", "█".repeat(filled), "░".repeat(BAR_WIDTH - filled));
            eprint!(
                "\r\x1b[2K{name} {bar} {percent:>3.0}%  {} / {}  {rate_text}  ETA {eta}",
                human_size(done),
                human_size(size)
            );
            self.drawn = true;
        } else if self.last_line.is_none_or(|t| now.duration_since(t) >= LINE_EVERY) {
            eprintln!(
                "{} {name}: {percent:.0}% ({} of {}), {rate_text}, ETA {eta}",
                self.verb,
                human_size(done),
                human_size(size)
            );
            self.last_line = Some(now);
        }
    }

    /// Before the node reports progress (or a node too old to): a spinner on a terminal.
    fn waiting(&mut self, label: &str, started: Instant) {
        if self.terminal && self.first.is_none() {
            eprint!("{}", spinner(&format!("{} {label}", self.verb), started));
            self.drawn = true;
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Seconds left, for people: `42s`, `3m05s`, `2h10m`.
pub fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::format_eta;

    #[test]
    fn eta_reads_naturally() {
        assert_eq!(format_eta(41.6), "42s");
        assert_eq!(format_eta(185.0), "3m05s");
        assert_eq!(format_eta(7800.0), "2h10m");
        assert_eq!(format_eta(-3.0), "0s");
    }
}
