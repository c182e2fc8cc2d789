//! `torronto watch`: a live view of one node, redrawn in place like `top`. Each refresh
//! is a Query; rates come from the byte counters of two successive answers (what the
//! node verified and stored, and what it sent), so they are the node's own figures.
//!
//! On a terminal the view takes the alternate screen and reads keys unbuffered (q
//! quits; Ctrl-C too), and puts everything back on the way out. Off a terminal it
//! prints one snapshot per interval, as plain lines (or JSON with `--json`).

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, LocalModes, OptionalActions, SpecialCodeIndex, Termios};
use tokio::sync::mpsc;
use torronto_core::{Code, Control, NetworkSecret, Status};

use crate::client::{exit_status, human_size, print_error, request_secured};
use crate::limits::format_rate;
use crate::progress::format_eta;

/// A Query answer and when it came.
struct Sample {
    status: Status,
    at: Instant,
}

/// Watches `node` until q or Ctrl-C, or until it refuses the token.
pub async fn run(
    node: &str,
    token: Option<String>,
    secret: Option<NetworkSecret>,
    every: Duration,
    json: bool,
) -> anyhow::Result<i32> {
    let terminal = std::io::stdout().is_terminal() && !json;
    let _screen = terminal.then(Screen::enter);
    let mut keys = terminal.then(read_keys);
    let mut last: Option<Sample> = None;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = quit_asked(&mut interrupt, &mut keys) => return Ok(0),
        }
        let query = Control::Query { file: None };
        // A node that does not answer must not keep the user from quitting.
        let answer = tokio::select! {
            answer = request_secured(node, token.clone(), secret.clone(), query) => answer,
            () = quit_asked(&mut interrupt, &mut keys) => return Ok(0),
        };
        let lines = match answer {
            Ok(answer) if answer.reply.code_or_ok() == Code::Ok => {
                let Some(status) = answer.reply.status.clone() else { continue };
                let sample = Sample { status: *status, at: Instant::now() };
                let rates = last.as_ref().map(|l| Rates::between(l, &sample));
                if json {
                    let mut object = answer.json()?;
                    if let Some(r) = &rates {
                        object["downloadRate"] = (r.download as u64).into();
                        object["uploadRate"] = (r.upload as u64).into();
                    }
                    println!("{object}");
                    last = Some(sample);
                    continue;
                }
                let before = last.as_ref().zip(rates).map(|(l, r)| (&l.status, r));
                let mut lines = render(node, &sample.status, before, every);
                if terminal {
                    lines[0].push_str(" · q quits");
                }
                last = Some(sample);
                lines
            }
            Ok(answer) => {
                // A wrong token is answered ever more slowly: asking again helps nobody.
                drop(_screen);
                print_error(&answer);
                return Ok(exit_status(answer.reply.code_or_ok()));
            }
            Err(e) => vec![format!("torronto watch · {node}"), format!("cannot reach the node: {e:#} (retrying)")],
        };
        if terminal {
            draw(&lines);
        } else {
            let mut out = std::io::stdout().lock();
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            writeln!(out)?;
            out.flush()?;
        }
    }
}

/// Ends when the user asks to quit: q, Ctrl-C typed (a key, as ISIG is off) or SIGINT
/// sent from elsewhere. Other keys are skipped.
async fn quit_asked(interrupt: &mut tokio::signal::unix::Signal, keys: &mut Option<mpsc::Receiver<u8>>) {
    loop {
        tokio::select! {
            _ = interrupt.recv() => return,
            Some(key) = async { keys.as_mut()?.recv().await } => {
                if matches!(key, b'q' | b'Q' | 3) {
                    return;
                }
            }
            else => std::future::pending::<()>().await,
        }
    }
}

/// Bytes per second between two answers.
#[derive(Clone, Copy)]
struct Rates {
    download: f64,
    upload: f64,
    seconds: f64,
}

impl Rates {
    fn between(a: &Sample, b: &Sample) -> Self {
        let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
        let per_second = |x: u64, y: u64| y.saturating_sub(x) as f64 / seconds;
        Rates {
            download: per_second(a.status.bytes_fetched, b.status.bytes_fetched),
            upload: per_second(a.status.bytes_served, b.status.bytes_served),
            seconds,
        }
    }
}

/// One frame: the node, its rates and limits, its files, inserts and peers.
fn render(node: &str, s: &Status, before: Option<(&Status, Rates)>, every: Duration) -> Vec<String> {
    let joined = if s.joined { "joined" } else { "not joined" };
    let name = if s.node.is_empty() { node } else { &s.node };
    let mut lines = vec![format!(
        "torronto watch · node {name} · {joined} · {} peer(s) · every {:.1}s",
        s.peers.len(),
        every.as_secs_f64()
    )];
    let rate =
        |r: Option<f64>| r.map_or_else(|| "…".to_owned(), |r| format_rate(r as u64).replace("unlimited", "0 B/s"));
    let rates = before.map(|(_, r)| r);
    let held =
        s.auto_upload_limit.map_or_else(String::new, |l| format!(", held at {} by peers' reports", format_rate(l)));
    lines.push(format!(
        "download {} (limit {}) · upload {} (limit {}{held})",
        rate(rates.map(|r| r.download)),
        format_rate(s.download_limit),
        rate(rates.map(|r| r.upload)),
        format_rate(s.upload_limit),
    ));
    lines.push(String::new());
    if s.files.is_empty() {
        lines.push("no files yet".into());
    } else {
        let width = s.files.iter().map(|f| f.chars().count()).max().unwrap_or(4).clamp(4, 40);
        lines.push(format!(
            "{:<width$}  {:>10}  {:>6}  {:>6}  {:>6}  {:>11}  {:>6}",
            "FILE", "SIZE", "LOCAL", "SYSTEM", "COPIES", "RATE", "ETA"
        ));
        for row in s.rows() {
            let size = row.size.unwrap_or(0);
            // This file's own rate: how much more of it is held than at the last answer.
            let file_rate = before.and_then(|(b, r)| {
                let then = b.rows().find(|o| o.name == row.name)?.local;
                Some(((row.local - then).max(0.0) * size as f64) / r.seconds)
            });
            let eta = match file_rate {
                _ if row.local >= 1.0 => "done".to_owned(),
                Some(r) if r > 0.0 => format_eta((1.0 - row.local) * size as f64 / r),
                _ => "…".to_owned(),
            };
            let name: String = row.name.chars().take(width).collect();
            lines.push(format!(
                "{name:<width$}  {:>10}  {:>5.1}%  {:>5.1}%  {:>6}  {:>11}  {eta:>6}",
                row.size.map_or_else(|| "?".into(), human_size),
                row.local * 100.0,
                row.system * 100.0,
                row.least,
                if row.local >= 1.0 { "-".to_owned() } else { rate(file_rate) },
            ));
        }
    }
    for (what, p) in s.inserting.iter().map(|p| ("inserting", p)).chain(s.adding.iter().map(|p| ("adding", p))) {
        let percent = if p.size == 0 { 0.0 } else { p.done as f64 * 100.0 / p.size as f64 };
        lines.push(format!("{what} {}: {percent:.0}% of {}", p.file, human_size(p.size)));
    }
    lines.push(String::new());
    lines.push(match s.peers.is_empty() {
        true => "peers: none".to_owned(),
        false => format!("peers: {}", s.peers.join(", ")),
    });
    lines
}

/// Draws a frame over the last: home, each line cleared to its end, the rest cleared.
fn draw(lines: &[String]) {
    // A terminal that does not know its size says 0.
    let size = |n: u16| if n == 0 { usize::MAX } else { usize::from(n) };
    let (rows, cols) =
        tcgetwinsize(std::io::stdout()).map(|w| (size(w.ws_row), size(w.ws_col))).unwrap_or((usize::MAX, usize::MAX));
    let mut frame = String::from("\x1b[H");
    for line in lines.iter().take(rows) {
        frame.extend(line.chars().take(cols));
        frame.push_str("\x1b[K\r\n");
    }
    frame.push_str("\x1b[J");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(frame.as_bytes());
    let _ = out.flush();
}

/// The terminal as `watch` needs it: the alternate screen, no cursor, keys read as
/// typed and not echoed. Dropping it puts everything back.
struct Screen {
    saved: Option<Termios>,
}

impl Screen {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut keys = saved.clone();
            // Without ISIG, Ctrl-C is a key like q: no SIGINT reaches the process group,
            // so a shell that started watch is not killed by it (dash would be).
            keys.local_modes.remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG);
            keys.special_codes[SpecialCodeIndex::VMIN] = 1;
            keys.special_codes[SpecialCodeIndex::VTIME] = 0;
            let _ = tcsetattr(&stdin, OptionalActions::Now, &keys);
        }
        print!("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
        let _ = std::io::stdout().flush();
        Self { saved }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

/// Keys from stdin, on a thread of their own (a blocking read the process may leave
/// behind when it ends; tokio's blocking pool would wait for it).
fn read_keys() -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut byte = [0u8; 1];
        while let Ok(1) = stdin.read(&mut byte) {
            if tx.blocking_send(byte[0]).is_err() {
                return;
            }
        }
    });
    rx
}
