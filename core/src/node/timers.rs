//! The node's deadlines, kept in order so that the next one is at hand instead of
//! found by scanning every peer's requests. Each [`Timer`] is set at most once: setting
//! it again moves it, and whoever ends what it waits for cancels it.

use std::collections::{BTreeMap, BTreeSet};

use super::{ConnId, Millis};
use crate::layout::ChunkIndex;
use crate::name::FileName;
use crate::wire::PeerAddr;

/// What a deadline is for. Timers due together are handled in this order (membership
/// first, redials by address), as when they were found by scanning.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Join answers, whoever has not answered yet.
    Join,
    /// Leave stops waiting for its pushed chunks to be confirmed.
    Leave,
    /// Leave stops waiting for peers to answer our Leaving.
    LeavingAnswers,
    /// Our request of a chunk from a peer is given up.
    Request { peer: PeerAddr, file: FileName, index: ChunkIndex },
    /// Our request of a manifest from a peer is given up.
    ManifestRequest { peer: PeerAddr, file: FileName },
    /// A peer that let a request time out may be asked again.
    Stalled(PeerAddr),
    /// A lost peer is dialled again.
    Redial(PeerAddr),
    /// An accepted connection that has not introduced itself by now is closed.
    Introduction(ConnId),
    /// Fetching resumes after a failed write.
    FetchPause,
    /// A file refused for want of space is offered to storage again.
    SpaceRetry(FileName),
    /// A control request with a wrong token is answered (`attempt` counts them on `conn`).
    TokenRefusal { conn: ConnId, attempt: u32 },
    /// A gossip round: our summary to a random link, links dialled, suspicions aged.
    Gossip,
    /// The chunks stored since the last Have are announced.
    Have,
    /// The automatic upload limit looks at what receivers report.
    Uplink,
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    queue: BTreeSet<(Millis, Timer)>,
    deadlines: BTreeMap<Timer, Millis>,
}

impl Timers {
    /// Sets `timer` to fire at `at`, moving it if it was set.
    pub fn set(&mut self, timer: Timer, at: Millis) {
        if let Some(old) = self.deadlines.insert(timer.clone(), at) {
            self.queue.remove(&(old, timer.clone()));
        }
        self.queue.insert((at, timer));
    }

    pub fn cancel(&mut self, timer: Timer) {
        if let Some(at) = self.deadlines.remove(&timer) {
            self.queue.remove(&(at, timer));
        }
    }

    pub fn is_set(&self, timer: &Timer) -> bool {
        self.deadlines.contains_key(timer)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes the timers due at `now`, in the order they are to be handled.
    pub fn take_due(&mut self, now: Millis) -> Vec<Timer> {
        let mut due = Vec::new();
        while self.queue.first().is_some_and(|(at, _)| *at <= now) {
            let (_, timer) = self.queue.pop_first().expect("checked above");
            self.deadlines.remove(&timer);
            due.push(timer);
        }
        due.sort_unstable();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_earliest_deadline_comes_first_and_moves_with_its_timer() {
        let peer = |p| Timer::Redial(PeerAddr::new("h", p));
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(peer(2), 30);
        t.set(peer(1), 20);
        t.set(Timer::Join, 25);
        assert_eq!(t.next(), Some(20));
        t.set(peer(1), 40);
        assert_eq!(t.next(), Some(25));
        t.cancel(Timer::Join);
        assert!(!t.is_set(&Timer::Join) && t.is_set(&peer(1)));
        assert_eq!(t.take_due(29), vec![]);
        t.set(Timer::Leave, 35);
        // Due together, they come in handling order, not deadline order.
        assert_eq!(t.take_due(40), vec![Timer::Leave, peer(1), peer(2)]);
        assert_eq!(t.next(), None);
    }
}
