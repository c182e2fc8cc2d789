//! Running schedules: one to its verdict (panics caught, so the seed is reported),
//! shrinking a failing one to the steps that matter, and many seeds on every core.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use torronto_core::Millis;

use crate::check::{self, Invariant, Violation};
use crate::schedule::{Schedule, Step, FAULT_WINDOW};
use crate::world::{Options, Plant, Stats, World};

/// How long after the faults stop the network has to converge: a lost peer is
/// redialled within 30 s (`redial_max`), an unanswered request given up after 30 s.
pub const CONVERGENCE_BOUND: Millis = 120_000;

/// How long gossip has, once every file is everywhere, to bring every node's count of
/// the network up to date: a record's lease (30 s in the simulator), a suspicion's
/// timeout (15 s) and the rounds to spread them.
pub const GOSSIP_SETTLE: Millis = 60_000;

/// How a schedule ended.
#[derive(Debug)]
pub struct Verdict {
    pub violation: Option<Violation>,
    pub stats: Stats,
    pub trace: Vec<String>,
}

/// Runs `schedule` to its verdict.
pub fn run(schedule: &Schedule, options: &Options) -> Verdict {
    let mut trace = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new(schedule.clone(), options.clone());
        let verdict = drive(&mut world);
        trace = std::mem::take(&mut world.trace);
        verdict
    }));
    match result {
        Ok((violation, stats)) => Verdict { violation, stats, trace },
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            let violation = Violation { invariant: Invariant::Panic, detail: message, at: 0 };
            Verdict { violation: Some(violation), stats: Stats::default(), trace }
        }
    }
}

fn drive(world: &mut World) -> (Option<Violation>, Stats) {
    let faults_end = world.schedule.steps.iter().map(|s| s.at).max().unwrap_or(0).max(FAULT_WINDOW);
    world.run_until(faults_end, false);
    if world.violation.is_none() {
        world.heal_all();
        converge(world, faults_end + CONVERGENCE_BOUND);
    }
    if world.violation.is_none() {
        if world.options.plant == Some(Plant::CorruptCopy) {
            corrupt_one_copy(world);
        }
        let missing = check::missing(world);
        if !missing.is_empty() {
            fail(world, Invariant::NotConverged, missing.join(", "));
        }
    }
    if world.violation.is_none() {
        // Gossip needs time to tell every node of the last changes, and to conclude that
        // a crashed node is gone (`suspect_timeout`); the status is then compared once
        // nothing is under way: every message delivered.
        world.run_until(world.now + GOSSIP_SETTLE, false);
        let quiet = world.now + 60_000;
        world.run_until(quiet, true);
        if world.options.plant == Some(Plant::SilentLinkLoss) {
            world.lose_link_silently();
        }
        if world.busy() {
            fail(world, Invariant::Unbounded, "still busy a minute after converging".into());
        } else if let Err(e) = check::resurrected(world) {
            fail(world, Invariant::Resurrected, e);
        } else if let Err(e) = check::status(world) {
            fail(world, Invariant::StatusWrong, e);
        }
    }
    world.stats.sim_millis = world.now;
    (world.violation.clone(), world.stats.clone())
}

fn fail(world: &mut World, invariant: Invariant, detail: String) {
    let at = world.now;
    world.fail(Violation { invariant, detail, at });
}

/// Runs until every joined node holds every file and no removed one, or the bound passes.
fn converge(world: &mut World, deadline: Millis) {
    while world.violation.is_none() && (!check::missing(world).is_empty() || check::resurrected(world).is_err()) {
        let until = (world.now + 1_000).min(deadline);
        if !world.run_until(until, false) || world.now >= deadline {
            let missing = check::missing(world);
            if !missing.is_empty() {
                let detail = format!("{CONVERGENCE_BOUND} ms after the faults stopped: {}", missing.join(", "));
                fail(world, Invariant::NotConverged, detail);
            } else if let Err(e) = check::resurrected(world) {
                fail(world, Invariant::Resurrected, format!("{CONVERGENCE_BOUND} ms after the faults stopped: {e}"));
            }
            return;
        }
    }
}

fn corrupt_one_copy(world: &mut World) {
    for x in world.machines.iter_mut().filter(|x| x.joined()) {
        if let Some(chunk) = x.disk.files.values_mut().filter(|f| f.published).find_map(|f| f.chunks.get_mut(&0)) {
            let mut bad = chunk.to_vec();
            if let Some(b) = bad.first_mut() {
                *b ^= 1;
                *chunk = bad.into();
                return;
            }
        }
    }
}

/// A failing schedule cut down to the steps it needs to fail the same way.
pub fn shrink(schedule: &Schedule, options: &Options, invariant: Invariant) -> Schedule {
    let mut best = schedule.clone();
    let fails = |s: &Schedule| run(s, options).violation.is_some_and(|v| v.invariant == invariant);
    let mut i = best.steps.len();
    while i > 0 {
        i -= 1;
        let mut candidate = best.clone();
        candidate.steps.remove(i);
        if fails(&candidate) {
            best = candidate;
        }
    }
    best
}

/// A failing seed, its shortened schedule and that schedule's trace.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub violation: Violation,
    pub steps: Vec<Step>,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} fails: {}", self.seed, self.violation)?;
        writeln!(f, "replay: scripts/sim.sh --seed {} --trace", self.seed)?;
        writeln!(f, "shortened schedule ({} steps):", self.steps.len())?;
        for s in &self.steps {
            writeln!(f, "  {s}")?;
        }
        const TAIL: usize = 60;
        let skip = self.trace.len().saturating_sub(TAIL);
        writeln!(f, "last {} lines of its trace:", self.trace.len() - skip)?;
        for line in &self.trace[skip..] {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs seed `seed`; on failure, shrinks it and traces the shortened schedule.
pub fn check_seed(seed: u64, options: &Options) -> Result<Stats, Box<Failure>> {
    let schedule = Schedule::generate(seed);
    let verdict = run(&schedule, options);
    let Some(violation) = verdict.violation else {
        return Ok(verdict.stats);
    };
    let short = shrink(&schedule, options, violation.invariant);
    let traced = run(&short, &Options { trace: true, ..options.clone() });
    let violation = traced.violation.unwrap_or(violation);
    Err(Box::new(Failure { seed, violation, steps: short.steps, trace: traced.trace }))
}

/// What a batch of seeds came to.
#[derive(Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub totals: Stats,
    pub failures: Vec<Failure>,
    /// Failures of seeds listed as known (open bugs), not shrunk.
    pub known_failures: Vec<(u64, Violation)>,
}

/// Runs seeds `from..from + count` on `threads` threads; failures of the `known`
/// seeds are reported apart, without shrinking.
pub fn run_seeds(from: u64, count: u64, threads: usize, options: &Options, known: &[u64]) -> Summary {
    let next = AtomicU64::new(from);
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= from + count {
                    return;
                }
                if known.contains(&seed) {
                    // Not shrunk: only whether it still fails is of interest.
                    let verdict = run(&Schedule::generate(seed), options);
                    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                    s.seeds += 1;
                    s.totals.add(&verdict.stats);
                    if let Some(v) = verdict.violation {
                        s.known_failures.push((seed, v));
                    }
                    continue;
                }
                let result = check_seed(seed, options);
                let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                s.seeds += 1;
                match result {
                    Ok(stats) => s.totals.add(&stats),
                    Err(failure) => s.failures.push(*failure),
                }
            });
        }
    });
    let mut summary = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.failures.sort_by_key(|f| f.seed);
    summary.known_failures.sort_by_key(|f| f.0);
    summary
}
