//! Gossip: every participant's record of what it holds, spread by push-pull
//! anti-entropy over the bounded links, so that each node counts the whole network in
//! its status and finds peers to link to beyond its peers file.
//!
//! A [`Record`] is a participant's own word about itself: its address, a version it
//! alone raises, whether it is alive, and per file the chunk ranges it holds. Records
//! are ordered by their [`Stamp`] (version, then liveness, `Alive < Suspect < Left`),
//! and a newer stamp always replaces an older one. Anyone may mark a record `Suspect`
//! (a link to it broke) or `Left` (the suspicion was not refuted in time) at the same
//! version; the participant itself refutes either by raising its version, as SWIM's
//! incarnation numbers do. The [`View`] holds the records of everyone but ourselves and
//! a summary (an xor of stamp hashes) that two nodes compare before trading digests.
//!
//! A record is a claim: it moves only the status and the choice of links, never what a
//! leave counts as safe (that needs proof on a direct link, see `node::membership`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::layout::{chunk_count, MAX_FILE_SIZE};
use crate::manifest::Digest;
use crate::name::FileName;
use crate::node::Millis;
use crate::wire::PeerAddr;

/// Participants a view holds at most: records about more are ignored.
pub const MAX_PARTICIPANTS: usize = 4096;
/// Parts a summary splits into (by address): two views that differ trade digests of
/// the parts that differ only.
pub const SUMMARY_PARTS: usize = 16;
/// Files one record may list.
pub const MAX_RECORD_FILES: usize = 10_000;
/// Chunk ranges one file of a record may list; a holder with a more scattered copy
/// lists only its longest runs (it under-claims, never over-claims).
pub const MAX_RANGES: usize = 64;

/// Whether a participant is in the network, as far as gossip knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Liveness {
    Alive = 0,
    /// A link to it broke; counted still, until refuted or timed out.
    Suspect = 1,
    /// It left, or a suspicion was not refuted in time: no longer counted.
    Left = 2,
}

impl Serialize for Liveness {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for Liveness {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(Liveness::Alive),
            1 => Ok(Liveness::Suspect),
            2 => Ok(Liveness::Left),
            n => Err(serde::de::Error::custom(format!("unknown liveness {n}"))),
        }
    }
}

/// How new a record is: a larger stamp replaces a smaller one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub version: u64,
    pub liveness: Liveness,
}

/// One file of a record: its identity and the chunk ranges (`[start, end)`) held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    #[serde(rename = "f")]
    pub name: FileName,
    #[serde(rename = "s")]
    pub size: u64,
    #[serde(rename = "d")]
    pub digest: Digest,
    #[serde(rename = "r", default)]
    pub ranges: Vec<(u32, u32)>,
}

impl Holding {
    /// Whether every chunk of the file is held.
    pub fn is_complete(&self) -> bool {
        let n = chunk_count(self.size);
        n == 0 || self.ranges == [(0, n)]
    }
}

/// A participant's word about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "a", with = "addr_text")]
    pub addr: PeerAddr,
    #[serde(rename = "v")]
    pub version: u64,
    #[serde(rename = "l")]
    pub liveness: Liveness,
    #[serde(rename = "h", default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Holding>,
}

impl Record {
    pub fn stamp(&self) -> Stamp {
        Stamp { version: self.version, liveness: self.liveness }
    }
}

/// One entry of a digest: who, and how new our record of it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry(#[serde(with = "addr_text")] pub PeerAddr, pub u64, pub Liveness);

impl DigestEntry {
    pub fn stamp(&self) -> Stamp {
        Stamp { version: self.1, liveness: self.2 }
    }
}

/// The body of a Gossip message (Action 18). Each part is optional; an exchange goes:
/// `summary` → (if it differs) `digest`, or in a large network first `parts` and then
/// the `digest` of the parts that differ (`digest_of`) → `records` the other lacks and
/// `want` for those it has newer → `records` wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    #[serde(rename = "sum", default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<u64>,
    /// The summary of each part ([`SUMMARY_PARTS`] of them).
    #[serde(rename = "parts", default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<u64>>,
    #[serde(rename = "dig", default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Vec<DigestEntry>>,
    /// The parts `digest` lists every stamp of; absent, all of them.
    #[serde(rename = "of", default, skip_serializing_if = "Option::is_none")]
    pub digest_of: Option<Vec<u8>>,
    #[serde(rename = "rec", default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
    #[serde(rename = "want", default, skip_serializing_if = "Vec::is_empty", with = "addr_list")]
    pub want: Vec<PeerAddr>,
}

impl Gossip {
    /// Checks the limits and shapes a peer's gossip must keep; the error says which.
    pub fn check(&self) -> Result<(), String> {
        // A full view and the sender's own record: one more than a view holds.
        const MOST: usize = MAX_PARTICIPANTS + 1;
        let digest = self.digest.as_ref().map_or(0, Vec::len);
        if digest > MOST || self.records.len() > MOST || self.want.len() > MOST {
            return Err(format!("gossip about more than {MOST} participants"));
        }
        if self.parts.as_ref().is_some_and(|p| p.len() != SUMMARY_PARTS) {
            return Err(format!("a summary in other than {SUMMARY_PARTS} parts"));
        }
        if let Some(of) = &self.digest_of {
            if of.len() > SUMMARY_PARTS || of.iter().any(|&p| usize::from(p) >= SUMMARY_PARTS) {
                return Err(format!("a digest of parts other than 0 to {}", SUMMARY_PARTS - 1));
            }
            if self.digest.as_ref().is_some_and(|d| d.iter().any(|e| !of.contains(&(part_of(&e.0) as u8)))) {
                return Err("a digest entry outside the parts it covers".into());
            }
        }
        let mut seen = BTreeSet::new();
        for r in &self.records {
            if !seen.insert(&r.addr) {
                return Err(format!("two records of {}", r.addr));
            }
            if r.files.len() > MAX_RECORD_FILES {
                return Err(format!("record of {} lists more than {MAX_RECORD_FILES} files", r.addr));
            }
            let mut names = BTreeSet::new();
            for h in &r.files {
                if !names.insert(&h.name) {
                    return Err(format!("record of {} lists {} twice", r.addr, h.name));
                }
                check_holding(h).map_err(|e| format!("record of {}: {}: {e}", r.addr, h.name))?;
            }
        }
        Ok(())
    }
}

fn check_holding(h: &Holding) -> Result<(), String> {
    if h.size > MAX_FILE_SIZE {
        return Err(format!("size {} is over the limit", h.size));
    }
    if h.ranges.len() > MAX_RANGES {
        return Err(format!("more than {MAX_RANGES} ranges"));
    }
    let n = chunk_count(h.size);
    let mut end = 0;
    for (i, &(a, b)) in h.ranges.iter().enumerate() {
        if a >= b || b > n || (i > 0 && a <= end) {
            return Err(format!("range [{a}, {b}) is empty, past the end, or out of order"));
        }
        end = b;
    }
    Ok(())
}

/// Runs of set chunks as `[start, end)` ranges, at most [`MAX_RANGES`] of them (the
/// longest, in order, when there are more).
pub fn ranges_of(held: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for i in held {
        match runs.last_mut() {
            Some((_, end)) if *end == i => *end += 1,
            _ => runs.push((i, i + 1)),
        }
    }
    if runs.len() > MAX_RANGES {
        let mut by_length: Vec<usize> = (0..runs.len()).collect();
        by_length.sort_by_key(|&k| std::cmp::Reverse(runs[k].1 - runs[k].0));
        let mut keep = vec![false; runs.len()];
        for &k in &by_length[..MAX_RANGES] {
            keep[k] = true;
        }
        runs = runs.into_iter().zip(keep).filter_map(|(run, kept)| kept.then_some(run)).collect();
    }
    runs
}

/// What we know of one other participant.
#[derive(Debug)]
pub(crate) struct Known {
    pub record: Record,
    /// When we first saw its current stamp: suspicions and departures age from here.
    pub since: Millis,
    /// Files whose counts include this record's holdings (see `node::overlay`).
    pub applied: BTreeSet<FileName>,
}

/// The records of every other participant we know of.
#[derive(Debug, Default)]
pub(crate) struct View {
    known: BTreeMap<PeerAddr, Known>,
    /// Xor of [`stamp_hash`] over `known`, per [`part_of`] their address (our own record
    /// is mixed in by the caller).
    parts: [u64; SUMMARY_PARTS],
}

impl View {
    pub fn get(&self, addr: &PeerAddr) -> Option<&Known> {
        self.known.get(addr)
    }

    pub fn get_mut(&mut self, addr: &PeerAddr) -> Option<&mut Known> {
        self.known.get_mut(addr)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerAddr, &Known)> {
        self.known.iter()
    }

    pub fn summary(&self) -> u64 {
        self.parts.iter().fold(0, |a, p| a ^ p)
    }

    /// The summary of each part.
    pub fn parts(&self) -> [u64; SUMMARY_PARTS] {
        self.parts
    }

    fn mix(&mut self, addr: &PeerAddr, stamp: Stamp) {
        self.parts[part_of(addr)] ^= stamp_hash(addr, stamp);
    }

    /// Takes `record` if it is newer than ours of the same participant; returns whether
    /// it did. A full view takes a new participant only in place of one that left.
    pub fn offer(&mut self, now: Millis, record: Record) -> bool {
        match self.known.get_mut(&record.addr) {
            Some(k) if k.record.stamp() >= record.stamp() => false,
            Some(k) => {
                let old = k.record.stamp();
                k.record = record;
                k.since = now;
                let (addr, new) = (k.record.addr.clone(), k.record.stamp());
                self.mix(&addr, old);
                self.mix(&addr, new);
                true
            }
            None => {
                if self.known.len() >= MAX_PARTICIPANTS && !self.evict_oldest_left() {
                    return false;
                }
                self.mix(&record.addr, record.stamp());
                let known = Known { record, since: now, applied: BTreeSet::new() };
                self.known.insert(known.record.addr.clone(), known);
                true
            }
        }
    }

    /// Marks a participant `liveness` at its current version (a suspicion, or a
    /// departure we concluded); false if its record already says as much or more.
    pub fn mark(&mut self, now: Millis, addr: &PeerAddr, liveness: Liveness) -> bool {
        let Some(k) = self.known.get(addr) else { return false };
        if k.record.liveness >= liveness {
            return false;
        }
        let record = Record { liveness, ..k.record.clone() };
        self.offer(now, record)
    }

    /// Forgets `Left` records older than `keep`: long enough for every node to have
    /// heard of the departure, so no stale `Alive` copy brings them back.
    pub fn forget_left(&mut self, now: Millis, keep: Millis) -> Vec<PeerAddr> {
        let old: Vec<PeerAddr> = self
            .known
            .iter()
            .filter(|(_, k)| k.record.liveness == Liveness::Left && now.saturating_sub(k.since) >= keep)
            .map(|(a, _)| a.clone())
            .collect();
        for addr in &old {
            self.remove(addr);
        }
        old
    }

    fn evict_oldest_left(&mut self) -> bool {
        let oldest = self
            .known
            .iter()
            .filter(|(_, k)| k.record.liveness == Liveness::Left)
            .min_by_key(|(_, k)| k.since)
            .map(|(a, _)| a.clone());
        oldest.is_some_and(|a| self.remove(&a))
    }

    fn remove(&mut self, addr: &PeerAddr) -> bool {
        match self.known.remove(addr) {
            Some(k) => {
                self.mix(addr, k.record.stamp());
                true
            }
            None => false,
        }
    }

    /// The stamp of every record in the parts `parts` picks.
    pub fn digest(&self, parts: impl Fn(usize) -> bool) -> Vec<DigestEntry> {
        self.known
            .values()
            .filter(|k| parts(part_of(&k.record.addr)))
            .map(|k| DigestEntry(k.record.addr.clone(), k.record.version, k.record.liveness))
            .collect()
    }
}

/// Which part of a summary a participant's stamp falls in: FNV-1a over its address.
pub fn part_of(addr: &PeerAddr) -> usize {
    (fnv1a(&[addr.host.as_bytes(), &addr.port.to_be_bytes()]) % SUMMARY_PARTS as u64) as usize
}

fn fnv1a(pieces: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in pieces.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A stamp's contribution to a summary: FNV-1a over the address and stamp, the same
/// on every platform (nodes and browsers compare summaries).
pub fn stamp_hash(addr: &PeerAddr, stamp: Stamp) -> u64 {
    fnv1a(&[addr.host.as_bytes(), &addr.port.to_be_bytes(), &stamp.version.to_be_bytes(), &[stamp.liveness as u8]])
}

mod addr_text {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &PeerAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerAddr, D::Error> {
        let raw = String::deserialize(d)?;
        let addr: PeerAddr = raw.parse().map_err(serde::de::Error::custom)?;
        if addr.host.len() > 255 || addr.host.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(serde::de::Error::custom("bad address"));
        }
        Ok(addr)
    }
}

mod addr_list {
    use super::*;

    pub fn serialize<S: Serializer>(addrs: &[PeerAddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerAddr>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter().map(|s| s.parse().map_err(serde::de::Error::custom)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManifestBuilder;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn record(port: u16, version: u64, liveness: Liveness) -> Record {
        Record { addr: PeerAddr::new("10.0.0.1", port), version, liveness, files: Vec::new() }
    }

    #[test]
    fn newer_stamps_win_and_the_summary_follows() {
        let mut a = View::default();
        let mut b = View::default();
        assert!(a.offer(0, record(1, 3, Liveness::Alive)));
        assert!(!a.offer(0, record(1, 2, Liveness::Left)), "an older version loses, whatever it says");
        assert!(a.mark(0, &PeerAddr::new("10.0.0.1", 1), Liveness::Suspect));
        assert!(!a.offer(0, record(1, 3, Liveness::Alive)), "suspicion beats alive at the same version");
        assert!(a.offer(0, record(1, 4, Liveness::Alive)), "a refutation raises the version");
        b.offer(5, record(1, 4, Liveness::Alive));
        assert_eq!(a.summary(), b.summary(), "same stamps, same summary, whatever the order");
        b.offer(5, record(2, 0, Liveness::Alive));
        assert_ne!(a.summary(), b.summary());
        b.mark(6, &PeerAddr::new("10.0.0.1", 2), Liveness::Left);
        assert_eq!(b.forget_left(10, 5), Vec::<PeerAddr>::new());
        assert_eq!(b.forget_left(11, 5), vec![PeerAddr::new("10.0.0.1", 2)]);
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn views_that_differ_in_one_participant_differ_in_one_part() {
        let (mut a, mut b) = (View::default(), View::default());
        for port in 0..200 {
            a.offer(0, record(port, 1, Liveness::Alive));
            b.offer(0, record(port, 1, Liveness::Alive));
        }
        assert_eq!(a.parts(), b.parts());
        b.offer(1, record(77, 2, Liveness::Alive));
        let differ: Vec<usize> = (0..SUMMARY_PARTS).filter(|&p| a.parts()[p] != b.parts()[p]).collect();
        let part = part_of(&PeerAddr::new("10.0.0.1", 77));
        assert_eq!(differ, vec![part]);
        assert_eq!(a.parts().iter().fold(0, |x, p| x ^ p), a.summary());
        let digest = b.digest(|p| p == part);
        assert!(digest.iter().all(|e| part_of(&e.0) == part) && digest.iter().any(|e| e.0.port == 77));
        assert!(digest.len() < 200 / 4, "a part holds about a sixteenth: {}", digest.len());
        let of = |parts: Vec<u64>, digest: Vec<DigestEntry>, of: Vec<u8>| Gossip {
            parts: Some(parts),
            digest: Some(digest),
            digest_of: Some(of),
            ..Gossip::default()
        };
        assert_eq!(of(b.parts().to_vec(), digest.clone(), vec![part as u8]).check(), Ok(()));
        assert!(of(vec![1, 2], Vec::new(), Vec::new()).check().is_err(), "16 parts or none");
        let elsewhere = ((part + 1) % SUMMARY_PARTS) as u8;
        assert!(of(b.parts().to_vec(), digest, vec![elsewhere]).check().is_err(), "entries outside `of`");
        assert!(of(b.parts().to_vec(), Vec::new(), vec![16]).check().is_err());
    }

    #[test]
    fn ranges_are_runs_and_scattered_copies_under_claim() {
        assert_eq!(ranges_of([0, 1, 2, 5, 7, 8].into_iter()), vec![(0, 3), (5, 6), (7, 9)]);
        let scattered = ranges_of((0..1000).filter(|i| i % 3 != 0 || *i < 30));
        assert_eq!(scattered.len(), MAX_RANGES);
        assert_eq!(scattered[0], (0, 30), "the longest run is kept");
        let long_last = ranges_of((0..1000).filter(|i| i % 3 != 0 || *i >= 970));
        assert_eq!(long_last.len(), MAX_RANGES);
        assert!(long_last.windows(2).all(|w| w[0].1 < w[1].0), "kept runs stay in chunk order: {long_last:?}");
        assert_eq!(long_last.last(), Some(&(970, 1000)), "the longest run is kept, in its place");
    }

    #[test]
    fn a_full_view_and_its_sender_fit_in_one_gossip() {
        // The sender's digest of a full view lists every participant it knows and itself.
        let entries = |n: usize| (0..n).map(|i| DigestEntry(PeerAddr::new("10.0.0.1", i as u16), 1, Liveness::Alive));
        let digest = |n| Gossip { digest: Some(entries(n).collect()), ..Gossip::default() };
        assert_eq!(digest(MAX_PARTICIPANTS + 1).check(), Ok(()));
        assert!(digest(MAX_PARTICIPANTS + 2).check().is_err());
        let records = |n: usize| Gossip {
            records: (0..n).map(|i| record(i as u16, 1, Liveness::Alive)).collect(),
            ..Gossip::default()
        };
        assert_eq!(records(MAX_PARTICIPANTS + 1).check(), Ok(()));
        assert!(records(MAX_PARTICIPANTS + 2).check().is_err());
    }

    #[test]
    fn gossip_is_checked_and_round_trips() {
        let digest = ManifestBuilder::new().finish().unwrap().digest();
        let holding = |ranges| Holding { name: FileName::new("f").unwrap(), size: 200_000, digest, ranges };
        let mut r = record(1, 1, Liveness::Alive);
        r.files.push(holding(vec![(0, 2), (3, 4)]));
        let g = Gossip { records: vec![r.clone()], ..Gossip::default() };
        assert_eq!(g.check(), Ok(()));
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Gossip>(&text).unwrap(), g);
        for bad in [vec![(0, 5)], vec![(2, 2)], vec![(2, 3), (0, 1)], vec![(0, 2), (2, 3)]] {
            r.files[0] = holding(bad.clone());
            assert!(Gossip { records: vec![r.clone()], ..Gossip::default() }.check().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Gossip>(r#"{"rec":[{"a":"x","v":1,"l":0}]}"#).is_err(), "no port");
        assert!(serde_json::from_str::<Gossip>(r#"{"rec":[{"a":"x:1","v":1,"l":7}]}"#).is_err());
    }
}
