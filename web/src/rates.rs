//! Transfer rates from a node's own byte counters: core counts the bytes it fetched
//! and served (in all, and per link) and how much of each file it holds; [`RateMeter`]
//! divides their growth by time. The node cards measure successive Query answers, the
//! browser peer's engine successive statuses of its own node: one way of reading rates
//! for both.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use torronto_core::Status;

/// Rates are measured over the statuses of about this long.
const WINDOW_MS: u64 = 3_000;

/// What one status said about bytes moved.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    at: u64,
    fetched: u64,
    served: u64,
    /// Bytes of each file held.
    held: HashMap<String, f64>,
    /// Bytes fetched from and served to each linked peer.
    links: HashMap<String, (u64, u64)>,
}

impl Sample {
    fn of(status: &Status, at: u64) -> Sample {
        let held = status.rows().map(|r| (r.name.to_string(), r.local * r.size.unwrap_or(0) as f64)).collect();
        let links = status.links.iter().map(|l| (l.peer.clone(), (l.fetched, l.served))).collect();
        Sample { at, fetched: status.bytes_fetched, served: status.bytes_served, held, links }
    }
}

/// Transfer rates, bytes per second.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Rates {
    pub down: f64,
    pub up: f64,
    /// Each file arriving, by name.
    pub files: Rc<HashMap<String, f64>>,
    /// Each linked peer moving bytes, by address: (from it, to it).
    pub links: Rc<HashMap<String, (f64, f64)>>,
}

impl Rates {
    pub fn idle(&self) -> bool {
        self.down == 0.0 && self.up == 0.0 && self.files.is_empty() && self.links.is_empty()
    }

    fn between(first: &Sample, last: &Sample) -> Rates {
        let secs = (last.at.saturating_sub(first.at)).max(1) as f64 / 1000.0;
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let files = last
            .held
            .iter()
            .filter_map(|(name, &now)| {
                let gained = now - first.held.get(name).copied().unwrap_or(now);
                (gained > 0.0).then(|| (name.clone(), gained / secs))
            })
            .collect();
        // A link that came up again within the window starts its counters over: it is
        // measured from its new start.
        let links = last
            .links
            .iter()
            .filter_map(|(peer, &(fetched, served))| {
                let (f0, s0) =
                    first.links.get(peer).copied().filter(|&(f, s)| f <= fetched && s <= served).unwrap_or((0, 0));
                let moved = (per(f0, fetched), per(s0, served));
                (moved != (0.0, 0.0)).then(|| (peer.clone(), moved))
            })
            .collect();
        Rates {
            down: per(first.fetched, last.fetched),
            up: per(first.served, last.served),
            files: Rc::new(files),
            links: Rc::new(links),
        }
    }
}

/// The statuses of the last few seconds.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RateMeter {
    samples: VecDeque<Sample>,
}

impl RateMeter {
    /// Takes the counters of `status`, seen at `now`, and says the rates since the
    /// oldest status kept. `every_ms`: how often statuses come while things change (an
    /// equal status may not be passed in, so after a pause the last one kept still
    /// held until about then).
    pub fn measure(&mut self, status: &Status, now: u64, every_ms: u64) -> Rates {
        if let Some(last) = self.samples.back_mut() {
            last.at = last.at.max(now.saturating_sub(every_ms));
        }
        self.samples.push_back(Sample::of(status, now));
        // The oldest status kept is the last one older than the window (or the first).
        while self.samples.len() > 2 && self.samples[1].at + WINDOW_MS <= now {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) if self.samples.len() >= 2 => Rates::between(first, last),
            _ => Rates::default(),
        }
    }

    /// Forgets every status (the counters start over, or are no longer seen).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}
