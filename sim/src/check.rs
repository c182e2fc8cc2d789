//! The invariants, and the oracle the nodes' status is compared with. Some are
//! checked as things happen (what is stored, served, published; bounds; leaves), the
//! rest once the faults have stopped (convergence, status).

use std::collections::BTreeSet;
use std::fmt;

use torronto_core::layout::ChunkIndex;
use torronto_core::{Envelope, FileName, Message, PeerMessage, Status, StorageCommand};

use crate::content::FileSpec;
use crate::schedule::Role;
use crate::world::{tuning, Plant, World};

/// A broken invariant: which, and the facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
    pub at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// A node stored a chunk whose bytes are not the file's.
    StoredUnverified,
    /// An honest node sent a chunk whose bytes are not the file's.
    ServedUnverified,
    /// A file became visible under its name with wrong or missing bytes.
    PublishedWrong,
    /// A leave answered with nothing unconfirmed, yet a chunk was held nowhere else.
    LeaveLostData,
    /// After the faults, a joined node lacks a file within the bound.
    NotConverged,
    /// After the faults, a joined node still holds a file whose tombstone a joined
    /// node has saved: the removal did not reach it, or it brought the file back.
    Resurrected,
    /// A node's Query status differs from the oracle's.
    StatusWrong,
    /// A queue grew past what the code promises, or the run never settles.
    Unbounded,
    /// The code panicked.
    Panic,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at t={}ms: {}", self.invariant, self.at, self.detail)
    }
}

fn violate(world: &mut World, invariant: Invariant, detail: String) {
    let at = world.now;
    world.fail(Violation { invariant, detail, at });
}

fn spec<'a>(world: &'a World, name: &FileName) -> Option<&'a FileSpec> {
    world.schedule.files.iter().find(|f| f.name == *name)
}

/// Before a storage command is carried out: a write must be of verified bytes.
pub fn storing(world: &mut World, m: usize, command: &StorageCommand) {
    if let StorageCommand::Write { chunk, data } = command {
        let right = spec(world, &chunk.file).is_some_and(|s| s.chunk(chunk.index) == *data);
        if !right {
            violate(world, Invariant::StoredUnverified, format!("m{m} stores a bad {}#{}", chunk.file, chunk.index));
        }
    }
}

/// A message leaving an honest node: chunks it serves must be the file's.
pub fn sent(world: &mut World, m: usize, envelope: &Envelope) {
    if world.options.plant == Some(Plant::Panic)
        && matches!(envelope.message, Message::Peer(PeerMessage::Upload { .. }))
    {
        panic!("planted panic");
    }
    if world.machines[m].role == Role::Liar {
        return;
    }
    if let Message::Peer(PeerMessage::Upload { chunk, data, .. }) = &envelope.message {
        let right = spec(world, &chunk.file).is_some_and(|s| s.chunk(chunk.index) == *data);
        if !right {
            violate(world, Invariant::ServedUnverified, format!("m{m} serves a bad {}#{}", chunk.file, chunk.index));
        }
    }
}

/// After a Finalize: a file visible under its name must be whole and exact (one not
/// published, as after a failed rename, is the convergence check's business).
pub fn published(world: &mut World, m: usize, name: &FileName) {
    let visible = world.machines[m].disk.files.get(name).is_some_and(|f| f.published);
    let whole = spec(world, name).is_some_and(|s| world.machines[m].disk.has_published(s));
    if visible && !whole {
        violate(world, Invariant::PublishedWrong, format!("m{m} publishes {name} incomplete or wrong"));
    }
}

/// After every event: queues stay within what the code promises, and runs end.
pub fn bounds(world: &mut World) {
    const MAX_EVENTS: u64 = 2_000_000;
    if world.stats.events > MAX_EVENTS {
        violate(world, Invariant::Unbounded, format!("over {MAX_EVENTS} events: the network never settles"));
        return;
    }
    let n = world.machines.len();
    for m in 0..n {
        // Fetching stops at max_writing; requests already sent may still arrive.
        let t = tuning(world.machines[m].role);
        let bound = t.max_writing + t.requests_per_peer * (n - 1);
        let queued = world.writes_queued(m);
        if queued > bound {
            violate(world, Invariant::Unbounded, format!("m{m} has {queued} writes queued, over {bound}"));
        }
    }
}

/// A leave answered with nothing unconfirmed: every chunk the leaver holds must be on
/// the disk of another honest machine, since its folder may now be deleted.
pub fn leave_answered(world: &mut World, m: usize) {
    // A file removed from the network is not data to keep: no leave owes it.
    let files: Vec<FileSpec> = (world.schedule.files.iter().enumerate())
        .filter(|(k, s)| !world.removed.contains(k) && world.machines[m].disk.knows(&s.name))
        .map(|(_, s)| s.clone())
        .collect();
    for s in &files {
        if s.manifest.chunk_count() == 0 {
            // An empty file has no chunk to hand over, but it is data all the same.
            let known = |y: usize, honest: bool| {
                y != m && world.machines[y].honest() == honest && world.machines[y].disk.knows(&s.name)
            };
            let n = world.machines.len();
            if (0..n).any(|y| known(y, true)) || !world.machines[m].disk.has_published(s) {
                continue;
            }
            if (0..n).any(|y| known(y, false)) && !world.options.strict {
                world.stats.known_leave_losses += 1;
                world.excused.insert(s.name.clone());
                continue;
            }
            let detail = format!("m{m} left answering OK, but the empty file {} is known nowhere else", s.name);
            violate(world, Invariant::LeaveLostData, detail);
            return;
        }
        for i in ChunkIndex::all(s.manifest.chunk_count()) {
            if !world.machines[m].disk.holds(s, i) {
                continue;
            }
            if world.options.plant == Some(Plant::LeaveLosesChunk) {
                for x in world.machines.iter_mut() {
                    x.disk.files.remove(&s.name);
                }
            }
            let elsewhere = (0..world.machines.len())
                .any(|y| y != m && world.machines[y].honest() && world.machines[y].disk.holds(s, i));
            if elsewhere {
                continue;
            }
            let to_liar = (0..world.machines.len())
                .any(|y| y != m && !world.machines[y].honest() && world.machines[y].disk.holds(s, i));
            if (to_liar || world.false_have(m, &s.name, i.get())) && !world.options.strict {
                // The leaver relied on a lying member's proof: it was sent the chunk and
                // confirmed it (and keeps it, but serves it corrupt), or it announced the
                // chunk right after being sent it. Members are trusted that far
                // (docs/security.md, "Not promised").
                world.stats.known_leave_losses += 1;
                world.excused.insert(s.name.clone());
                continue;
            }
            let detail = format!("m{m} left answering OK, but {}#{} is held nowhere else", s.name, i);
            violate(world, Invariant::LeaveLostData, detail);
            return;
        }
    }
}

/// The files each joined machine must hold once the network has healed. Browser
/// peers reach each other only through native nodes: with none joined, they owe nothing.
pub fn missing(world: &World) -> Vec<String> {
    let mut missing = Vec::new();
    let native_joined = world.machines.iter().any(|x| x.role == Role::Native && x.joined());
    for (m, x) in world.machines.iter().enumerate() {
        if !x.honest() || !x.joined() || (x.role == Role::Browser && !native_joined) {
            continue;
        }
        // A removed file is not expected anywhere (see `resurrected`).
        for &k in world.inserted.difference(&world.removed) {
            let s = &world.schedule.files[k];
            let wanted = x.role != Role::Browser || x.wanted.contains(&s.name);
            // Known: an empty file fetched while the disk was full is neither prepared
            // nor renamed into place, and Finalize is not retried (until a restart).
            let known = s.size() == 0 && x.disk.unpublished.contains(&s.name) && !world.options.strict;
            if wanted && !known && !world.excused.contains(&s.name) && !x.disk.has_published(s) {
                missing.push(format!("m{m} lacks {}", s.name));
            }
        }
    }
    missing
}

/// Once the network has healed: a removed file whose tombstone some joined honest
/// machine keeps on disk is known to no joined honest machine that can hear of it (a
/// browser peer cut off from every node cannot; it dials nobody again here). A remove
/// whose tombstone was lost in a crash before it was saved or sent may come undone.
pub fn resurrected(world: &World) -> Result<(), String> {
    let joined: Vec<usize> = (0..world.machines.len())
        .filter(|&m| {
            let x = &world.machines[m];
            x.honest() && x.joined() && !x.gone && (x.role != Role::Browser || !world.linked(m).is_empty())
        })
        .collect();
    for &k in &world.removed {
        let s = &world.schedule.files[k];
        let digest = s.manifest.digest();
        let kept = joined
            .iter()
            .any(|&m| world.machines[m].disk.tombstones.iter().any(|t| t.file == s.name && t.digest == digest));
        if let Some(m) = joined.iter().find(|&&m| world.machines[m].disk.knows(&s.name)).filter(|_| kept) {
            return Err(format!("m{m} still has {} after its removal", s.name));
        }
    }
    Ok(())
}

/// Each joined machine's status against the oracle: who it is connected to and, from
/// what every disk truly holds, each file's replication as docs/protocol.md defines it.
pub fn status(world: &World) -> Result<(), String> {
    // Which machine holds which chunk, once for all: checking a chunk compares 64 KiB.
    let held: Vec<Vec<Vec<bool>>> = world
        .schedule
        .files
        .iter()
        .map(|s| {
            let n = s.manifest.chunk_count();
            let disk = |y: usize| &world.machines[y].disk;
            (0..world.machines.len())
                .map(|y| ChunkIndex::all(n).map(|i| disk(y).knows(&s.name) && disk(y).holds(s, i)).collect())
                .collect()
        })
        .collect();
    for (m, x) in world.machines.iter().enumerate() {
        let Some(node) = x.node.as_ref().filter(|n| n.is_joined()) else { continue };
        let got = node.status();
        let want = oracle(world, m, &got, &held);
        if got.peers.iter().collect::<BTreeSet<_>>() != want.peers.iter().collect::<BTreeSet<_>>()
            || got.files != want.files
            || got.local != want.local
            || got.system != want.system
            || got.least_replication != want.least_replication
            || got.weighted_least_replication != want.weighted_least_replication
            || got.sizes != want.sizes
            || got.digests != want.digests
        {
            return Err(format!(
                "m{m}'s status differs from the oracle:\n  node:   {}\n  oracle: {}",
                show(&got),
                show(&want)
            ));
        }
    }
    Ok(())
}

fn show(s: &Status) -> String {
    let rows: Vec<String> = s
        .rows()
        .map(|r| format!("{} local={} system={} least={} avg={}", r.name, r.local, r.system, r.least, r.average))
        .collect();
    format!("peers={:?} participants={} files=[{}]", s.peers, s.participants, rows.join("; "))
}

/// The status machine `m` should report. Files it lists beyond those some participant
/// holds are computed too (and must then show nothing held).
fn oracle(world: &World, m: usize, got: &Status, held: &[Vec<Vec<bool>>]) -> Status {
    let peers: Vec<usize> = world.linked(m).into_iter().collect();
    // Every participant of the network counts, linked or not (gossip tells of the rest);
    // browser peers meet only through nodes, so without a joined node each is alone.
    let x = &world.machines;
    let joined: Vec<usize> = (0..x.len()).filter(|&y| y == m || x[y].joined()).collect();
    let nodes_up = joined.iter().any(|&y| x[y].role != Role::Browser);
    let participants: Vec<usize> = if nodes_up { joined } else { vec![m] };
    let mut status = Status {
        node: world.machines[m].addr.to_string(),
        joined: true,
        peers: peers.iter().map(|&y| world.machines[y].addr.to_string()).collect(),
        participants: participants.len(),
        ..Status::default()
    };
    for (k, s) in world.schedule.files.iter().enumerate() {
        let n = s.manifest.chunk_count();
        let holds = |y: usize, i: ChunkIndex| held[k][y][i.0 as usize];
        let known_by = |y: usize| world.machines[y].disk.knows(&s.name);
        let must = known_by(m)
            || participants.iter().any(|&y| (n == 0 && known_by(y)) || ChunkIndex::all(n).any(|i| holds(y, i)));
        if !must && !got.files.iter().any(|f| f == s.name.as_str()) {
            continue;
        }
        let (local, system, least, average) = if n == 0 {
            let holders = participants.iter().filter(|&&y| known_by(y)).count() as u32;
            (1.0, 1.0, holders, f64::from(holders))
        } else {
            let replication: Vec<u32> =
                ChunkIndex::all(n).map(|i| participants.iter().filter(|&&y| holds(y, i)).count() as u32).collect();
            let fraction = |x: f64| (x / f64::from(n) * 1e4).round() / 1e4;
            let here = ChunkIndex::all(n).filter(|&i| holds(m, i)).count();
            (
                fraction(here as f64),
                fraction(replication.iter().filter(|&&r| r > 0).count() as f64),
                replication.iter().copied().min().unwrap_or(0),
                fraction(replication.iter().map(|&r| f64::from(r)).sum()),
            )
        };
        status.files.push(s.name.to_string());
        status.local.push(local);
        status.system.push(system);
        status.least_replication.push(least);
        status.weighted_least_replication.push(average);
        status.sizes.push(s.size());
        status.digests.push(s.manifest.digest().to_string());
    }
    status.num_files = status.files.len();
    status
}
