//! The automatic upload limit. A node asked for more than its uplink carries fills the
//! queue in front of that uplink (a modem's, a router's), and its requests and
//! acknowledgements then wait there behind its chunks: every download it makes slows.
//! On shaped links, holding such a node's uploads at 95 % of its uplink's rate took a
//! swarm of 50 and 100 Mbit/s nodes from 1.46 to 1.26 × its bound (README, "Where the
//! packets wait").
//!
//! The node cannot see that queue, so the peers it sends to measure it for it:
//! - Each Upload says when its header went to the socket ([`Stamps`], stamped by the
//!   sender's driver) and the receiver's driver stamps when it arrived. Their
//!   difference is the clocks' offset plus the path, plus whatever queued on the way;
//!   less the least seen from that sender lately ([`Heard`]), it is what queued.
//! - What queued in the receiver's own downlink delays every sender alike: the receiver
//!   takes each sender's excess less the least excess among the senders heard from just
//!   now, and tells the sender on its next request (`UplinkDelay`).
//! - The sender ticks every [`TICK`] and takes the median of the latest reports of the
//!   receivers it sends chunks to. Past [`HIGH`] for [`STANDING`] ticks running, its
//!   uplink is full, so what it sent over the last second is what the uplink carries: it
//!   holds its uploads at 95 % of that, and measures again if the queue still stands
//!   [`SETTLE`] later. While the reports stay under [`LOW`] and the limit holds it
//!   back, the limit rises by 1 % a tick up to 97 % of what was measured (a measure
//!   taken as the queue formed can fall short), then by a quarter of that, to find out
//!   whether the link carries more. [`LIFT_AFTER`] after the last cut it is lifted.
//!
//! What a receiver measures is not the uplink's queue alone: a chunk also waits in the
//! sender's socket behind the one before (slow connections wait longest), and a
//! receiver whose own uplink is full acknowledges late. [`HIGH`] and [`LOW`] sit above
//! what those add where no uplink queue stands (README, "An automatic upload limit").
//!
//! The limit applies under any the user set ([`Node::limits_in_force`]), and only to
//! chunk bodies, like the user's. A peer's report is a claim, and bounded: the median of
//! several receivers decides, a lone receiver cannot, nor one we send nothing (see
//! [`Uplink::signal`]); no stamp can pass for more than [`MAX_EXCESS`]; and a node
//! sending under [`LEAST_LIMIT`] is never held.

use std::collections::{BTreeMap, VecDeque};

use super::timers::Timer;
use super::{ConnId, Event, Millis, Node};
use crate::wire::{RateLimits, Stamps};

/// How often the sender looks at its receivers' reports.
pub(super) const TICK: Millis = 250;
/// A median report (µs) past which the uplink is taken to be queued. (At 30 ms, nodes on
/// links that all ran at 100 Mbit/s were held too, and the swarm took 1.21–1.24 × its
/// bound against 1.14–1.15 without the limit; at 40 ms, 1.15.)
const HIGH: u32 = 40_000;
/// Ticks in a row the reports must be past [`HIGH`]: a queue that stands, not a burst.
const STANDING: u32 = 2;
/// A median report (µs) under which the queue is taken to be gone.
const LOW: u32 = 25_000;
/// The rate that measures the uplink is taken over about this long.
const MEASURE: Millis = 1_000;
/// After a cut the queue has this long to drain (and the reports to show it) before the
/// uplink is measured again.
const SETTLE: Millis = 1_000;
/// This long after the last cut (no queue of ours since), the limit is lifted.
const LIFT_AFTER: Millis = 30_000;
/// A report or a sender not heard from for this long no longer counts.
const FRESH: Millis = 1_000;
/// Each sender's least delay is the least over the last one or two of these windows, so
/// that it follows clocks that drift apart.
const BASE_WINDOW: Millis = 10_000;
/// A one-way delay this far over a sender's least (µs) is taken for a bad stamp.
const MAX_EXCESS: i64 = 10_000_000;
/// No limit is set under this (bytes a second): a limit is meant to trim a queue, not to
/// stop a node that reports (perhaps falsely) say its uplink is always full.
pub(super) const LEAST_LIMIT: u64 = 256 << 10;
/// Held at this share of the measured rate; rising quickly up to the second while calm,
/// slowly beyond (%).
const HELD_AT: u64 = 95;
const RISES_TO: u64 = 97;
/// A queue seen while sending under this share of the most the uplink was measured to
/// carry is not ours (%).
const OURS_FROM: u64 = 80;

/// Both sides of the measurement: what we hear from senders, what receivers tell us.
#[derive(Debug, Default)]
pub(super) struct Uplink {
    heard: BTreeMap<ConnId, Heard>,
    reports: BTreeMap<ConnId, Report>,
    /// Bytes served as counted at each of the last ticks, oldest first.
    served: VecDeque<(Millis, u64)>,
    /// The uplink's rate (bytes a second) as last measured with a queue before it, and
    /// the most it was measured at since the limit was set.
    capacity: Option<u64>,
    peak: u64,
    /// The limit in force (bytes a second), and when it was last cut.
    pub(super) limit: Option<u64>,
    cut_at: Millis,
    /// Ticks in a row with the reports past [`HIGH`].
    high_ticks: u32,
}

/// One-way delays of the chunks one connection sends us (µs, clocks' offset included).
#[derive(Debug)]
struct Heard {
    /// The least delay in this window and the one before it.
    least: i64,
    least_before: i64,
    window_start: Millis,
    /// How long its chunks queued, smoothed over about eight of them.
    excess: i64,
    at: Millis,
}

#[derive(Debug, Clone, Copy)]
struct Report {
    delay: u32,
    at: Millis,
    /// When we last sent that receiver a chunk: the report of a peer we send nothing
    /// (that only asks) says nothing of our uplink, and does not count.
    served_at: Option<Millis>,
}

impl Uplink {
    /// An Upload from `conn` with these stamps reached us at `now`: its delay counts
    /// towards what we tell it. (Every node reports, so that a sender with the limit on
    /// hears from all its receivers.)
    pub(super) fn heard(&mut self, now: Millis, conn: ConnId, stamps: Stamps) {
        let (Some(sent), Some(arrived)) = (stamps.sent, stamps.arrived) else { return };
        // Each clock counts from its own origin: only differences of delays mean anything.
        let delay = (arrived as i64).wrapping_sub(sent as i64);
        let h = self.heard.entry(conn).or_insert(Heard {
            least: delay,
            least_before: delay,
            window_start: now,
            excess: 0,
            at: now,
        });
        if now.saturating_sub(h.window_start) >= BASE_WINDOW {
            (h.least_before, h.least, h.window_start) = (h.least, delay, now);
        }
        // A peer picks its stamps: an excess past MAX_EXCESS is no queue, and is not
        // counted (nor can it overflow anything).
        let excess = delay.saturating_sub(h.least.min(h.least_before).min(delay));
        if excess > MAX_EXCESS {
            return;
        }
        h.least = h.least.min(delay);
        h.excess += (excess - h.excess) / 8;
        h.at = now;
    }

    /// How long the chunks `conn` sends us queue on its side, as far as we can tell: its
    /// excess less the least among the senders heard from lately (what our own downlink
    /// adds to all of them). `None` without a recent chunk from it.
    fn delay_of(&self, now: Millis, conn: ConnId) -> Option<u32> {
        let fresh = |h: &&Heard| now.saturating_sub(h.at) < FRESH;
        let this = self.heard.get(&conn).filter(fresh)?;
        let ours = self.heard.values().filter(fresh).map(|h| h.excess).min().unwrap_or(0);
        Some((this.excess - ours).clamp(0, i64::from(u32::MAX)) as u32)
    }

    fn reported(&mut self, now: Millis, conn: ConnId, delay: u32) {
        let served_at = self.reports.get(&conn).and_then(|r| r.served_at);
        self.reports.insert(conn, Report { delay, at: now, served_at });
    }

    /// We sent `conn` a chunk: its reports count (for [`FRESH`]).
    pub(super) fn served(&mut self, now: Millis, conn: ConnId) {
        if let Some(r) = self.reports.get_mut(&conn) {
            r.served_at = Some(now);
        }
    }

    pub(super) fn forget(&mut self, conn: ConnId) {
        self.heard.remove(&conn);
        self.reports.remove(&conn);
    }

    /// The median of the recent reports of the receivers we send to, of two at least,
    /// the lower of two middle ones: no peer can throttle us on its own word, nor one of
    /// two. (The least would be the purer sign of our own queue, since that delays our
    /// chunks to every receiver alike, but measured on shaped links it missed the narrow
    /// uplinks the median caught: 1.46 against 1.33 × the bound.)
    fn signal(&mut self, now: Millis) -> Option<u32> {
        self.reports.retain(|_, r| now.saturating_sub(r.at) < FRESH);
        let mut delays: Vec<u32> = self
            .reports
            .values()
            .filter(|r| r.served_at.is_some_and(|at| now.saturating_sub(at) < FRESH))
            .map(|r| r.delay)
            .collect();
        if delays.len() < 2 {
            return None;
        }
        delays.sort_unstable();
        Some(delays[(delays.len() - 1) / 2])
    }

    /// The bytes a second we sent over about the last [`MEASURE`], once we have that long.
    fn rate(&mut self, now: Millis, served: u64) -> Option<u64> {
        self.served.push_back((now, served));
        while self.served.len() > 2 && now.saturating_sub(self.served[1].0) >= MEASURE {
            self.served.pop_front();
        }
        let (then, before) = *self.served.front()?;
        let took = now.saturating_sub(then);
        (took >= MEASURE).then(|| served.saturating_sub(before) * 1000 / took)
    }

    /// One tick: the uploads' limit is `self.limit` after it; returns what the uplink
    /// was measured to carry if the limit was just cut.
    fn tick(&mut self, now: Millis, served: u64) -> Option<u64> {
        let rate = self.rate(now, served);
        let signal = self.signal(now);
        let high = signal.is_some_and(|d| d >= HIGH);
        self.high_ticks = if high { self.high_ticks.saturating_add(1) } else { 0 };
        if high {
            // A queue that stands (two ticks running, not a burst) and has had time to
            // drain since the last cut: the uplink carried all it could, so what we sent
            // over the last second is its rate. (Measured over only the ticks the queue
            // stood, it was noisier, and no better on shaped links.) Sending well under
            // what it was measured to carry, we are not what fills it (as a transfer
            // ends, say, and receivers queue behind others); nor sending next to nothing.
            let settled = now.saturating_sub(self.cut_at) >= SETTLE || self.limit.is_none();
            let ours = |rate: u64| {
                rate.saturating_mul(100) >= self.peak.saturating_mul(OURS_FROM)
                    && rate.saturating_mul(HELD_AT) / 100 > LEAST_LIMIT
            };
            match rate {
                Some(rate) if self.high_ticks >= STANDING && settled && ours(rate) => {
                    self.capacity = Some(rate);
                    self.peak = self.peak.max(rate);
                    self.limit = Some(rate.saturating_mul(HELD_AT) / 100);
                    self.cut_at = now;
                    return Some(rate);
                }
                _ => {}
            }
        } else if signal.is_none_or(|d| d < LOW) {
            if let (Some(limit), Some(rate)) = (self.limit, rate) {
                // Rising only while it holds us back (else it says nothing of the link):
                // quickly up to near what was measured (a measure taken as the queue
                // formed may fall short), then slowly, to find out whether the link
                // carries more.
                if rate.saturating_mul(10) >= limit.saturating_mul(9) {
                    let near = self.capacity.map_or(0, |c| c.saturating_mul(RISES_TO) / 100);
                    let step = if limit < near { limit / 100 } else { limit / 400 };
                    self.limit = Some(limit.saturating_add(step.max(1)));
                }
            }
        }
        // No queue of ours for a long while (calm, or a queue not ours): lifted.
        if self.limit.is_some() && now.saturating_sub(self.cut_at) >= LIFT_AFTER {
            (self.limit, self.capacity, self.peak) = (None, None, 0);
        }
        None
    }

    /// Whether ticks are still needed: receivers report, or a limit is in force.
    fn busy(&self) -> bool {
        !self.reports.is_empty() || self.limit.is_some()
    }
}

impl Node {
    /// The limits the driver is to enforce: the user's, and under the upload one the
    /// automatic limit while it holds (0 is no limit).
    pub fn limits_in_force(&self) -> RateLimits {
        let upload = match (self.limits.upload, self.uplink.limit) {
            (0, Some(auto)) => auto,
            (user, Some(auto)) => user.min(auto),
            (user, None) => user,
        };
        RateLimits { upload, download: self.limits.download }
    }

    /// What to tell `conn` of its uplink on a request: `UplinkDelay`. Nothing while a
    /// download limit paces our reads: its waits would read as the sender's queue.
    pub(super) fn uplink_delay_of(&self, now: Millis, conn: ConnId) -> Option<u32> {
        (self.limits_in_force().download == 0).then(|| self.uplink.delay_of(now, conn))?
    }

    /// `conn` says the chunks we send it queue for `delay` µs on our side.
    pub(super) fn uplink_reported(&mut self, now: Millis, conn: ConnId, delay: Option<u32>) {
        let Some(delay) = delay.filter(|_| self.config.tuning.auto_upload_limit) else { return };
        self.uplink.reported(now, conn, delay);
        if !self.timers.is_set(&Timer::Uplink) {
            self.timers.set(Timer::Uplink, now + TICK);
        }
    }

    pub(super) fn uplink_tick(&mut self, now: Millis) {
        let before = self.uplink.limit;
        let measured = self.uplink.tick(now, self.bytes_served);
        let limit = self.uplink.limit;
        if limit != before || measured.is_some() {
            self.events.push_back(Event::AutoUploadLimit { limit, measured });
        }
        if self.uplink.busy() {
            self.timers.set(Timer::Uplink, now + TICK);
        } else {
            self.uplink.served.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn stamps(sent: u64, arrived: u64) -> Stamps {
        Stamps { sent: Some(sent), arrived: Some(arrived) }
    }

    /// Two senders with clocks far apart: the one whose chunks queue 40 ms more is told
    /// so; what our own downlink adds to both is not counted against either.
    #[test]
    fn a_receiver_tells_each_sender_its_own_queue_whatever_the_clocks() {
        let mut u = Uplink::default();
        let (slow, fast) = (ConnId(1), ConnId(2));
        // Base delays: clocks 5 s and -3 s apart, 1 ms paths.
        for i in 0..40u64 {
            let now = i * 10;
            u.heard(now, slow, stamps(now * 1000, now * 1000 + 5_000_000 + 1_000));
            u.heard(now, fast, stamps(now * 1000 + 3_000_000, now * 1000 + 1_000));
        }
        assert_eq!(u.delay_of(400, slow), Some(0));
        // Then our downlink queues 10 ms for both, and `slow`'s uplink 40 ms more.
        for i in 40..100u64 {
            let now = i * 10;
            u.heard(now, slow, stamps(now * 1000, now * 1000 + 5_000_000 + 51_000));
            u.heard(now, fast, stamps(now * 1000 + 3_000_000, now * 1000 + 11_000));
        }
        let slow_delay = u.delay_of(1000, slow).unwrap();
        assert!((39_000..=40_000).contains(&slow_delay), "{slow_delay}");
        assert_eq!(u.delay_of(1000, fast), Some(0));
        // Not heard from for a second: nothing to tell.
        assert_eq!(u.delay_of(2100, slow), None);
        // Unstamped uploads (an older peer, a browser) are left out.
        u.heard(2100, ConnId(3), Stamps::default());
        assert_eq!(u.delay_of(2100, ConnId(3)), None);
    }

    /// Ticks of an uplink sending `rate` bytes a second to three receivers reporting
    /// `delay`: the limit after each.
    struct Sender {
        uplink: Uplink,
        now: Millis,
        served: u64,
    }

    impl Sender {
        fn new() -> Self {
            Self { uplink: Uplink::default(), now: 0, served: 0 }
        }

        fn tick(&mut self, delay: u32, rate: u64) -> Option<u64> {
            self.now += TICK;
            self.served += rate * TICK / 1000;
            for (conn, d) in [(1, delay), (2, delay), (3, delay + 1)] {
                self.uplink.reported(self.now, ConnId(conn), d);
                self.uplink.served(self.now, ConnId(conn));
            }
            self.uplink.tick(self.now, self.served);
            self.uplink.limit
        }
    }

    /// Sending 1 MB a second to receivers that say it queues: held at 95 % of that once
    /// the queue stands for two ticks; once they say it is gone, rising 1 % a tick to 97 %,
    /// then a quarter of that; lifted after a calm while.
    #[test]
    fn a_queued_uplink_is_held_at_95_percent_of_what_it_carried() {
        let mut s = Sender::new();
        // Calm, sending freely: no limit.
        for _ in 0..8 {
            assert_eq!(s.tick(5_000, 1_000_000), None);
        }
        // One tick of queue is a burst; two are a queue.
        assert_eq!(s.tick(45_000, 1_000_000), None);
        assert_eq!(s.tick(45_000, 1_000_000), Some(950_000));
        // Still queued while it drains: held, not cut again within SETTLE.
        for _ in 0..3 {
            assert_eq!(s.tick(35_000, 950_000), Some(950_000));
        }
        // Calm, and held back by the limit: rising by 1 % a tick to 97 %, then by 0.25 %.
        assert_eq!(s.tick(8_000, 950_000), Some(959_500));
        assert_eq!(s.tick(8_000, 959_500), Some(969_095));
        assert_eq!(s.tick(8_000, 969_095), Some(978_785));
        assert_eq!(s.tick(8_000, 978_785), Some(981_231));
        // Not held back (sending little): no rise.
        for _ in 0..8 {
            s.tick(8_000, 100_000);
        }
        assert_eq!(s.tick(8_000, 100_000), Some(981_231));
        // A queue while sending under 80 % of what the uplink carried is not ours.
        assert_eq!(s.tick(45_000, 100_000), Some(981_231));
        assert_eq!(s.tick(45_000, 100_000), Some(981_231));
        // Queued again at 900 kB/s for a second: measured again, held at 95 % of it.
        let mut last = None;
        for _ in 0..6 {
            last = s.tick(45_000, 900_000);
        }
        assert_eq!(last, Some(855_000));
        // And at 600 kB/s: not ours, whatever the receivers say.
        for _ in 0..8 {
            last = s.tick(45_000, 600_000);
        }
        assert_eq!(last, Some(855_000));
        // A long calm lifts it.
        let mut last = Some(0);
        for _ in 0..=(LIFT_AFTER / TICK) {
            last = s.tick(1_000, 500_000);
        }
        assert_eq!(last, None);
    }

    /// One receiver's word is not enough, nor one of two, nor that of a receiver we send
    /// nothing; and sending next to nothing, no report cuts anything.
    #[test]
    fn a_lone_or_idle_receiver_cannot_throttle_and_a_trickle_is_never_cut() {
        // Eight ticks of `reports` (receiver, µs, whether we send it chunks) at `rate`.
        let limit_after = |reports: &[(u64, u32, bool)], rate: u64| {
            let mut u = Uplink::default();
            for i in 1..=8 {
                for &(conn, delay, sent_to) in reports {
                    u.reported(i * TICK, ConnId(conn), delay);
                    if sent_to {
                        u.served(i * TICK, ConnId(conn));
                    }
                }
                u.tick(i * TICK, i * rate * TICK / 1000);
            }
            u.limit
        };
        let both = [(1, 500_000, true), (2, 500_000, true)];
        assert_eq!(limit_after(&both, 200_000), None, "a trickle");
        assert_eq!(limit_after(&[(1, 500_000, true)], 10_000_000), None, "one receiver");
        assert_eq!(limit_after(&[(1, 500_000, true), (2, 1_000, true)], 10_000_000), None, "one of two");
        let idle = [(1, 500_000, true), (3, 500_000, false), (4, 500_000, false)];
        assert_eq!(limit_after(&idle, 10_000_000), None, "receivers we send nothing");
        assert_eq!(limit_after(&both, 10_000_000), Some(9_500_000));
    }

    /// Stamps a peer picks cannot overflow the arithmetic nor pass for a queue.
    #[test]
    fn wild_stamps_are_not_counted() {
        let mut u = Uplink::default();
        u.heard(0, ConnId(1), stamps(0, 1_000));
        u.heard(10, ConnId(1), stamps(u64::MAX, 1_000));
        u.heard(20, ConnId(1), stamps(0, u64::MAX));
        u.heard(30, ConnId(1), stamps(1 << 63, 0));
        assert_eq!(u.delay_of(40, ConnId(1)), Some(0));
    }
}
