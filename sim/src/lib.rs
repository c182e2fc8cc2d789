//! torronto-sim: a deterministic simulator of torronto's core state machine.
//!
//! N real [`torronto_core::Node`]s (native nodes, browser peers, and sometimes a lying
//! peer) run in one simulated world with no clock and no sockets, driven by a
//! schedule drawn from one seed: inserts, removes, joins, graceful leaves, dropped connections,
//! partitions and heals, message delays, crashes that lose queued writes and tear the
//! one in progress, restarts from what the disk held, full and slow disks, and lies.
//! Invariants are checked as it runs and once the faults stop; a failing seed is
//! shrunk to the steps it needs and replayed with a trace.
//!
//! Layout, one idea per module:
//! - [`rng`]: the seeded generator every random choice comes from;
//! - [`content`]: ground truth of file contents, derived from the seed;
//! - [`schedule`]: the machines and the timed steps of one run, generated from a seed;
//! - [`disk`]: a node's folder as native-node's store keeps it, and what a restart reads;
//! - [`world`]: the event loop that drives the nodes as the native driver and the web
//!   engine do, with the ordered network (`world/network.rs`), machines' starts,
//!   crashes and storage queues (`world/machine.rs`) and the schedule's steps
//!   (`world/actions.rs`) beside it;
//! - [`check`]: the invariants and the status oracle;
//! - [`run`]: one schedule to its verdict, shrinking, and many seeds in parallel.

pub mod check;
pub mod content;
pub mod disk;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod world;

pub use check::{Invariant, Violation};
pub use run::{check_seed, run, run_seeds, shrink, Failure, Summary};
pub use schedule::{Action, Role, Schedule, Step};
pub use world::{Options, Plant, Stats, World};
