//! Following one change until every live node holds it.
//!
//! A [`Watch`] records, for one owner, the `(generation, version)` a replica must hold, and the
//! virtual time at which each node first held it. The simulator checks the one node that
//! just received a datagram, so following a change costs O(log N) per delivery rather than a
//! scan of the cluster.

use std::time::Duration;

use gossip_core::{Gossip, NodeId};

/// One change being followed.
#[derive(Debug, Clone)]
pub struct Watch {
    owner: NodeId,
    target: (u64, u64),
    started: Duration,
    reached: Vec<Option<Duration>>,
    reached_up: usize,
}

impl Watch {
    /// Follows `owner`'s state up to `(generation, version)` from `now`, on `n` nodes.
    pub fn new(owner: NodeId, target: (u64, u64), now: Duration, n: usize) -> Watch {
        Watch { owner, target, started: now, reached: vec![None; n], reached_up: 0 }
    }

    /// True if `g` holds the change.
    pub fn holds(&self, g: &Gossip) -> bool {
        g.node(&self.owner).is_some_and(|s| (s.info.generation, s.max_version) >= self.target)
    }

    /// Records node `i` (up) if it holds the change now and had not before.
    pub fn check(&mut self, i: usize, g: &Gossip, now: Duration) {
        if self.reached[i].is_none() && self.holds(g) {
            self.reached[i] = Some(now);
            self.reached_up += 1;
        }
    }

    /// Node `i` stopped: it no longer counts (a restart must learn the change again).
    pub fn forget(&mut self, i: usize) {
        if self.reached[i].take().is_some() {
            self.reached_up -= 1;
        }
    }

    /// Number of live nodes holding the change.
    pub fn reached(&self) -> usize {
        self.reached_up
    }

    /// When the change was made.
    pub fn started(&self) -> Duration {
        self.started
    }

    /// Delay until the `k`-th live node (1-based, in order of arrival) held the change.
    pub fn time_to(&self, k: usize) -> Option<Duration> {
        if k == 0 || k > self.reached_up {
            return None;
        }
        let mut times: Vec<Duration> = self.reached.iter().flatten().copied().collect();
        times.sort_unstable();
        Some(times[k - 1] - self.started)
    }
}
