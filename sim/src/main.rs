//! `torronto-sim`: runs seeds of the simulator (see scripts/sim.sh).
//!
//! ```text
//! torronto-sim --seeds N [--from S] [--threads T] [--strict]
//! torronto-sim --seed S [--trace [--shrink]]
//! torronto-sim --scale N [--seed S]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use torronto_sim::{check_seed, run, run_seeds, shrink, Options, Schedule};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value =
        |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(|v| v.parse::<u64>());
    let usage = || {
        eprintln!(
            "usage: torronto-sim --seeds N [--from S] [--threads T] [--strict] | --seed S [--trace [--shrink]] \
             | --scale N [--seed S]"
        );
        ExitCode::from(2)
    };
    let options = Options { strict: args.iter().any(|a| a == "--strict"), ..Options::default() };
    if let Some(n) = value("--scale") {
        let Ok(n) = n else { return usage() };
        let seed = value("--seed").and_then(Result::ok).unwrap_or(1);
        let started = Instant::now();
        let verdict = run(&Schedule::scale(seed, n as usize), &options);
        let secs = started.elapsed().as_secs_f64();
        let s = &verdict.stats;
        println!(
            "{n} nodes (seed {seed}): {} in {secs:.1} s of wall time; {:.0} simulated s, {} events, {} messages",
            verdict
                .violation
                .as_ref()
                .map_or("converged, every node's status exact".to_owned(), |v| format!("FAILED: {v}")),
            s.sim_millis as f64 / 1e3,
            s.events,
            s.messages
        );
        return if verdict.violation.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    if let Some(seed) = value("--seed") {
        let Ok(seed) = seed else { return usage() };
        if args.iter().any(|a| a == "--trace") {
            let mut schedule = Schedule::generate(seed);
            if args.iter().any(|a| a == "--shrink") {
                if let Some(v) = run(&schedule, &options).violation {
                    schedule = shrink(&schedule, &options, v.invariant);
                }
            }
            println!("seed {seed}: {} machines {:?}", schedule.roles.len(), schedule.roles);
            for f in &schedule.files {
                println!("  file {} ({} bytes)", f.name, f.size());
            }
            let verdict = run(&schedule, &Options { trace: true, ..options });
            for line in &verdict.trace {
                println!("{line}");
            }
            return match verdict.violation {
                Some(v) => {
                    println!("FAILED: {v}");
                    ExitCode::FAILURE
                }
                None => {
                    println!("ok: {:?}", verdict.stats);
                    ExitCode::SUCCESS
                }
            };
        }
        return match check_seed(seed, &options) {
            Ok(stats) => {
                println!("seed {seed} ok: {stats:?}");
                ExitCode::SUCCESS
            }
            Err(failure) => {
                println!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let (Some(Ok(count)), from) = (value("--seeds"), value("--from").unwrap_or(Ok(0))) else { return usage() };
    let Ok(from) = from else { return usage() };
    let threads = match value("--threads") {
        Some(Ok(t)) => t as usize,
        Some(Err(_)) => return usage(),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let started = Instant::now();
    let summary = run_seeds(from, count, threads, &options, &[]);
    let secs = started.elapsed().as_secs_f64();
    for failure in &summary.failures {
        println!("{failure}");
    }
    let t = &summary.totals;
    println!(
        "{} seeds from {from} in {secs:.1} s ({:.0} seeds/s, {threads} threads): {} failed; {} events, {} messages, \
         {} crashes, {} torn writes, {} bad chunks rejected, {} leaves answered OK, {} files removed, {} leave \
         losses to lying members, {:.0} simulated hours",
        summary.seeds,
        summary.seeds as f64 / secs,
        summary.failures.len(),
        t.events,
        t.messages,
        t.crashes,
        t.torn_writes,
        t.rejected_chunks,
        t.leaves_ok,
        t.removes_ok,
        t.known_leave_losses,
        t.sim_millis as f64 / 3.6e6
    );
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
