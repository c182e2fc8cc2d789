//! A schedule: the machines of one simulated network and the seeded list of things
//! that happen to them — users' actions and faults — each at a simulated time.

use std::fmt;

use torronto_core::Millis;

use crate::content::FileSpec;
use crate::rng::Rng;

/// What a machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A native node, with a peers file naming every native node.
    Native,
    /// A browser peer: dials native nodes, fetches only the files it asks for, hashes
    /// uploads itself (WebCrypto) and keeps chunks in IndexedDB (no torn writes).
    Browser,
    /// A native node whose driver lies: corrupt chunks, bad manifests, false Haves.
    Liar,
}

/// A user's action or a fault, applied when its time comes. Actions that make no
/// sense when they come (restarting a running node) do nothing, so any subset of a
/// schedule is a schedule: that is what shrinking relies on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The owner inserts catalog file `file` on machine `m`.
    Insert {
        m: usize,
        file: usize,
    },
    /// The owner asks `m` to join (starting it first if it is down).
    Join {
        m: usize,
    },
    /// The owner asks `m` to leave; with `wipe`, its folder is deleted once Leave
    /// answers with nothing unconfirmed.
    Leave {
        m: usize,
        wipe: bool,
    },
    /// The owner of `m` removes catalog file `file` from the network (if `m` knows it).
    Remove {
        m: usize,
        file: usize,
    },
    /// A browser peer's user asks for a file.
    Request {
        m: usize,
        file: usize,
    },
    /// Every connection between `a` and `b` breaks.
    Drop {
        a: usize,
        b: usize,
    },
    /// Machines whose bit is set cannot reach the others (until Heal).
    Partition {
        side: u64,
    },
    Heal,
    /// Messages take up to this much longer (0: back to normal).
    Delay {
        millis: Millis,
    },
    /// The machine stops at once: queued storage commands are lost, the write in
    /// progress may be torn.
    Crash {
        m: usize,
    },
    /// A stopped machine starts again from what its disk holds.
    Restart {
        m: usize,
    },
    DiskFull {
        m: usize,
        full: bool,
    },
    /// Each storage command takes this much longer.
    SlowDisk {
        m: usize,
        millis: Millis,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Millis,
    pub action: Action,
}

/// Everything one run needs; the same schedule always runs the same way.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub roles: Vec<Role>,
    pub files: Vec<FileSpec>,
    pub steps: Vec<Step>,
}

/// Faults happen within this window; then the network heals and must converge.
pub const FAULT_WINDOW: Millis = 60_000;

impl Schedule {
    /// The schedule of `seed`: 3–12 machines, browsers and a liar among them at times,
    /// a few small files (a fifth of them removed later), and up to 40 actions and faults.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = rng.between(3, 12) as usize;
        let mut roles = vec![Role::Native; n];
        // Machine 0 is always an honest native node.
        for role in roles.iter_mut().skip(1) {
            if rng.chance(20) {
                *role = Role::Browser;
            }
        }
        if rng.chance(30) {
            roles[rng.between(1, n as u64 - 1) as usize] = Role::Liar;
        }
        let files = (0..rng.between(1, 6) as u32)
            .map(|k| {
                let size = match rng.below(10) {
                    0 => 0,
                    1..=5 => rng.between(1, 6000),
                    6 | 7 => rng.between(6000, 64 * 1024 + 10),
                    _ => rng.between(64 * 1024, 3 * 64 * 1024),
                };
                FileSpec::new(k, size, seed)
            })
            .collect::<Vec<_>>();
        let honest: Vec<usize> = (0..n).filter(|&m| roles[m] != Role::Liar).collect();
        let natives: Vec<usize> = (0..n).filter(|&m| roles[m] == Role::Native).collect();
        let browsers: Vec<usize> = (0..n).filter(|&m| roles[m] == Role::Browser).collect();
        let mut steps = Vec::new();
        // Everyone joins at the start, in some order; the liar too.
        for m in 0..n {
            steps.push(Step { at: rng.below(2_000), action: Action::Join { m } });
        }
        for (file, _) in files.iter().enumerate() {
            let m = honest[rng.below(honest.len() as u64) as usize];
            steps.push(Step { at: rng.below(FAULT_WINDOW / 2), action: Action::Insert { m, file } });
            for &b in &browsers {
                if rng.chance(60) {
                    steps.push(Step { at: rng.below(FAULT_WINDOW), action: Action::Request { m: b, file } });
                }
            }
        }
        let pick = |rng: &mut Rng, from: &[usize]| from[rng.below(from.len() as u64) as usize];
        // Removes come from a stream of their own: the rest of each seed's schedule is
        // what it was before removes existed, so the seeds of regressions still replay it.
        let mut removes = Rng::new(seed ^ 0x7e3b_0de5);
        for file in 0..files.len() {
            if removes.chance(20) {
                let at = removes.between(FAULT_WINDOW / 4, FAULT_WINDOW);
                steps.push(Step { at, action: Action::Remove { m: pick(&mut removes, &natives), file } });
            }
        }
        for _ in 0..rng.below(40) {
            let at = rng.below(FAULT_WINDOW);
            let m = rng.below(n as u64) as usize;
            let action = match rng.below(12) {
                0 | 1 => Action::Crash { m },
                2 | 3 => Action::Restart { m },
                4 => Action::Drop { a: m, b: rng.below(n as u64) as usize },
                5 => Action::Partition { side: rng.next_u64() & ((1 << n) - 1) },
                6 => Action::Heal,
                7 => Action::Delay { millis: [0, 200, 3_000][rng.below(3) as usize] },
                8 => Action::DiskFull { m, full: rng.chance(60) },
                9 => Action::SlowDisk { m, millis: [0, 50, 1_000][rng.below(3) as usize] },
                10 => Action::Leave { m: pick(&mut rng, &natives), wipe: rng.chance(60) },
                _ => Action::Join { m },
            };
            steps.push(Step { at, action });
        }
        steps.sort_by_key(|s| s.at);
        Schedule { seed, roles, files, steps }
    }
}

impl Schedule {
    /// A network of `n` native nodes and no faults, to measure scale: each joins within
    /// the first 10 s, and one inserts a file of three chunks at 12 s. Every node's
    /// peers file names every node; each dials only a few and learns the rest by gossip.
    pub fn scale(seed: u64, n: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut steps: Vec<Step> = (0..n).map(|m| Step { at: rng.below(10_000), action: Action::Join { m } }).collect();
        steps.push(Step { at: 12_000, action: Action::Insert { m: rng.below(n as u64) as usize, file: 0 } });
        steps.sort_by_key(|s| s.at);
        let files = vec![FileSpec::new(0, 3 * 64 * 1024 - 100, seed)];
        Schedule { seed, roles: vec![Role::Native; n], files, steps }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:>6}ms {:?}", self.at, self.action)
    }
}
