//! Bandwidth limits on chunk bodies (`--upload-limit`, `--download-limit`, control
//! Limit): one [`Pacer`] per direction, shared by every connection of the node.
//!
//! A connection's writer waits on the upload pacer before each chunk it sends (from
//! its file or from memory), its reader on the download pacer after each chunk it
//! reads and before reading on (the peer then waits on TCP). Waiters queue FIFO
//! (tokio's `Mutex` is fair) and each takes one chunk per turn, so connections share
//! the rate round robin: a peer with many requests outstanding still waits its turn
//! for every chunk. Each chunk is paid for in advance, with no credit saved while
//! idle, so over any window the bytes sent exceed the rate by at most one chunk
//! (and what a late timer lets through).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio::time::Instant;
use torronto_core::RateLimits;

use crate::client::human_size;
use crate::store::parse_size;

/// The node's limits, both directions.
#[derive(Debug)]
pub struct Limiter {
    pub upload: Pacer,
    pub download: Pacer,
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Arc<Self> {
        Arc::new(Self { upload: Pacer::new(limits.upload), download: Pacer::new(limits.download) })
    }

    /// Applies new limits at once, also to chunks already waiting.
    pub fn set(&self, limits: RateLimits) {
        self.upload.set(limits.upload);
        self.download.set(limits.download);
    }
}

/// Paces one direction at a rate in bytes per second (0: unlimited).
#[derive(Debug)]
pub struct Pacer {
    rate: watch::Sender<u64>,
    /// When the bytes paid for so far have had their time; held while waiting for it.
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self { rate: watch::Sender::new(rate), next: Mutex::new(Instant::now()) }
    }

    /// Sets the rate; chunks waiting are woken only if it changed.
    fn set(&self, rate: u64) {
        self.rate.send_if_modified(|old| std::mem::replace(old, rate) != rate);
    }

    /// Whether there is a limit (else [`Pacer::take`] never waits).
    pub fn is_limited(&self) -> bool {
        *self.rate.borrow() != 0
    }

    /// Waits until `bytes` may pass.
    pub async fn take(&self, bytes: u64) {
        if *self.rate.borrow() == 0 {
            return;
        }
        let mut next = self.next.lock().await;
        let mut rate = self.rate.subscribe();
        // Whether this chunk waited for its turn (and so keeps to the schedule).
        let mut waited = false;
        let mut per_second = *rate.borrow_and_update();
        loop {
            if per_second == 0 {
                return;
            }
            let cost = Duration::from_secs_f64(bytes as f64 / per_second as f64);
            let now = Instant::now();
            if *next <= now {
                // After a wait the schedule holds, however late the timer fired (but
                // makes up for one chunk at most); after idle time it starts from now,
                // so idling earns nothing. (`checked_sub`: a slow rate's cost can
                // reach back before the clock's start.)
                let base = match waited {
                    true => (*next).max(now.checked_sub(cost).unwrap_or(now)),
                    false => now,
                };
                *next = base + cost;
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(*next) => waited = true,
                // A new rate applies now, not after the old rate's wait: what is left of
                // the wait for bytes already paid for is paid at the new rate. (Starting
                // afresh instead let a chunk through at every change: at the automatic
                // limit's 1 % a tick, 4 chunks a second over it.)
                _ = rate.changed() => {
                    let new = *rate.borrow_and_update();
                    if new != 0 {
                        let left = next.saturating_duration_since(now);
                        *next = now + left.mul_f64(per_second as f64 / new as f64);
                    }
                    per_second = new;
                }
            }
        }
    }
}

/// A rate as given on the command line: bytes per second, or a size with a unit
/// ([`parse_size`]: binary, `K` = `KiB` = `KB` = 1024), with or without `/s`
/// (`20MiB/s`, `500K`, `1.5GiB/s`); or bits per second as links are sold, with decimal
/// units (`45Mbit/s`, `45Mbps`, `800kbit`, `1.5Gbit/s`); `0`, `off` or `none` for no
/// limit.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if ["off", "none", "unlimited"].iter().any(|w| t.eq_ignore_ascii_case(w)) {
        return Ok(0);
    }
    let size = t.strip_suffix("/s").or_else(|| t.strip_suffix("/S")).unwrap_or(t);
    let not_a_rate =
        || format!("{text:?} is not a rate (like 20MiB/s, 500K/s, 45Mbit/s, or bytes per second; 0 or off for none)");
    let rate = match bits_per_second(size) {
        Some(bits) => bits.ok_or_else(not_a_rate)? / 8,
        None => parse_size(size).map_err(|_| not_a_rate())?,
    };
    // Rounded down to nothing, it would read as no limit at all.
    if rate == 0 && size.chars().any(|c| matches!(c, '1'..='9')) {
        return Err(format!("{text:?} is less than a byte per second (0 or off means no limit)"));
    }
    Ok(rate)
}

/// Bits per second, when `size` is spelt in bits (`45Mbit`, `45Mbps`; any case): `None`
/// if it is not, `Some(None)` if it is but is no rate. Prefixes are decimal, as link rates
/// are: 1 Mbit/s is 1,000,000 bits a second.
fn bits_per_second(size: &str) -> Option<Option<u64>> {
    let lower = size.trim().to_ascii_lowercase();
    let number = lower.strip_suffix("bit").or_else(|| lower.strip_suffix("bps"))?;
    let number = number.trim_end();
    let prefixes = [('k', 1e3), ('m', 1e6), ('g', 1e9), ('t', 1e12)];
    let (number, scale) = match prefixes.iter().find(|(p, _)| number.ends_with(*p)) {
        Some(&(_, scale)) => (&number[..number.len() - 1], scale),
        None => (number, 1.0),
    };
    let number = number.trim();
    // Digits and at most one point: no signs, exponents or "inf" from f64's parser.
    let plain = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1;
    Some(match number.parse::<f64>() {
        Ok(n) if plain => Some((n * scale) as u64),
        _ => None,
    })
}

/// A rate for people: `2.0 MiB/s`, or `unlimited`.
pub fn format_rate(bytes_per_second: u64) -> String {
    match bytes_per_second {
        0 => "unlimited".into(),
        n => format!("{}/s", human_size(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rate changed again and again while a chunk waits (the automatic upload limit
    /// rises 1 % a tick) still holds: each change only rescales the wait.
    #[tokio::test(start_paused = true)]
    async fn a_rate_changed_while_chunks_wait_still_holds() {
        const CHUNK: u64 = 64 << 10;
        let pacer = Arc::new(Pacer::new(1_000_000));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p, s) = (pacer.clone(), sent.clone());
        let sender = tokio::spawn(async move {
            loop {
                p.take(CHUNK).await;
                s.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let start = Instant::now();
        let mut rate = 1_000_000u64;
        let mut allowed = 0.0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            allowed += rate as f64 * 0.25;
            rate = rate * 101 / 100;
            pacer.set(rate);
            // The same rate again wakes nothing.
            pacer.set(rate);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed) as f64;
        sender.abort();
        assert!((elapsed - 5.0).abs() < 0.01, "{elapsed}");
        assert!(sent <= allowed + 2.0 * CHUNK as f64, "sent {sent} bytes where {allowed} were allowed");
        assert!(sent >= allowed - 2.0 * CHUNK as f64, "sent {sent} bytes where {allowed} were allowed");
    }

    #[test]
    fn rates_parse_with_and_without_units() {
        assert_eq!(parse_rate("20MiB/s"), Ok(20 << 20));
        assert_eq!(parse_rate("20MiB"), Ok(20 << 20));
        assert_eq!(parse_rate("500KiB/s"), Ok(500 << 10));
        assert_eq!(parse_rate("10MB/s"), Ok(10 << 20));
        assert_eq!(parse_rate("1.5GiB/s"), Ok(3 << 29));
        assert_eq!(parse_rate("123456"), Ok(123456));
        // Link rates, in bits with decimal prefixes: what a 50 Mbit/s uplink carries at 90 %.
        assert_eq!(parse_rate("45Mbit/s"), Ok(5_625_000));
        assert_eq!(parse_rate("45 Mbps"), Ok(5_625_000));
        assert_eq!(parse_rate("45mbit"), Ok(5_625_000));
        assert_eq!(parse_rate("1.5Gbit/s"), Ok(187_500_000));
        assert_eq!(parse_rate("800kbit/s"), Ok(100_000));
        assert_eq!(parse_rate("800Kbps"), Ok(100_000));
        assert_eq!(parse_rate("100000bps"), Ok(12_500));
        assert_eq!(parse_rate("8bit"), Ok(1));
        assert_eq!(parse_rate("0Mbit/s"), Ok(0));
        for none in ["0", "off", "OFF", "none", "0/s"] {
            assert_eq!(parse_rate(none), Ok(0), "{none}");
        }
        assert!(parse_rate("0.5").unwrap_err().contains("less than a byte per second"));
        assert!(parse_rate("4bit/s").unwrap_err().contains("less than a byte per second"));
        for bad in
            ["", "fast", "-5M", "20 furlongs/s", "/s", "5Xbit/s", "5Kibit/s", "-5Mbps", "Mbit/s", "1e3bit", "1..5Mbit"]
        {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("is not a rate"), "{bad}: {e}");
        }
        assert_eq!(format_rate(0), "unlimited");
        assert_eq!(format_rate(2 << 20), "2.0 MiB/s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_holds_its_rate_and_takes_a_new_one_at_once() {
        let pacer = Pacer::new(1 << 20);
        let start = Instant::now();
        for _ in 0..32 {
            pacer.take(64 << 10).await;
        }
        // 32 chunks of 64 KiB at 1 MiB/s: the first goes at once, the rest 1/16 s apart
        // (timers round up to the millisecond, and a late one does not push the rest).
        let took = start.elapsed();
        assert!(took >= Duration::from_micros(31 * 62_500) && took <= Duration::from_millis(1940), "{took:?}");
        pacer.set(0);
        let now = Instant::now();
        for _ in 0..100 {
            pacer.take(64 << 10).await;
        }
        assert_eq!(now.elapsed(), Duration::ZERO);
        // After idle time, one chunk goes at once and the next waits its full time.
        pacer.set(1 << 20);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle_end = Instant::now();
        pacer.take(64 << 10).await;
        pacer.take(64 << 10).await;
        assert!(idle_end.elapsed() >= Duration::from_micros(62_500), "{:?}", idle_end.elapsed());
    }
}
