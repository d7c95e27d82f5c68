//! Incomplete copies: owner states this replica cannot verify against the owner's signed head
//! (docs/PROTOCOL.md section 4.7).
//!
//! After every delta it applies, a replica checks its copy of the owner: **verified** when it
//! holds the owner's head for its `max_version` and its own digest equals the head's
//! ([`crate::NodeState::verified`]). A copy that is not verified a short grace later (the rest
//! of a split delta arrives within milliseconds) is **incomplete**: a relay withheld entries, or
//! the head. The replica counts it (`Stats::incomplete_states`, once per episode), keeps serving
//! what it holds, and at each anti-entropy round pulls the owner's whole state of that
//! generation (a `Want` from version 0, which the repair rules of section 1 apply) from a live
//! peer other than the one it got the copy from and the one it last pulled from, until the copy
//! verifies. After four pulls the pulls back off (every 2, 4, ... up to 32 rounds), so that a
//! copy that cannot verify (an owner that signed two histories) costs little. Reconciliation
//! summaries are unchanged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Gossip;
use crate::chunk;
use crate::message::Want;
use crate::session::MAX_PAYLOAD;
use crate::types::NodeId;

/// How long a copy may stay unverified before it counts as incomplete: the chunks of one split
/// delta are sent back to back, so this covers any path's jitter.
const GRACE: Duration = Duration::from_millis(250);
/// Most owners pulled in one round.
const MAX_PULLS_PER_ROUND: usize = 64;
/// Pulls at every round before backing off.
const EAGER_PULLS: u32 = 4;
/// Longest gap between two pulls, in rounds.
const MAX_BACKOFF_ROUNDS: u32 = 32;

/// One owner copy that did not verify.
#[derive(Debug, Clone)]
pub(super) struct Unverified {
    /// The peer the copy last came from (not asked to repair it).
    source: NodeId,
    /// When the copy was first seen unverified.
    since: Instant,
    /// Counted as incomplete (once per episode).
    counted: bool,
    /// Pulls sent so far.
    pulls: u32,
    /// The peer last pulled from (not asked again next).
    last_pulled: Option<NodeId>,
    /// No pull before this.
    next_pull: Option<Instant>,
}

impl Gossip {
    /// Checks this replica's copy of `owner` after a delta from `source` changed it.
    pub(super) fn check_copy(&mut self, now: Instant, owner: NodeId, source: NodeId) {
        let verified = self.table.get(&owner).is_none_or(|n| n.verified());
        if verified {
            self.unverified.remove(&owner);
            return;
        }
        let u = self.unverified.entry(owner).or_insert(Unverified {
            source,
            since: now,
            counted: false,
            pulls: 0,
            last_pulled: None,
            next_pull: None,
        });
        u.source = source;
    }

    /// Owners whose copy this replica holds but cannot verify against the owner's head (a
    /// relay withheld entries or the head): incomplete, and being repaired.
    pub fn incomplete(&self, now: Instant) -> Vec<NodeId> {
        self.unverified
            .iter()
            .filter(|(id, u)| {
                now.saturating_duration_since(u.since) >= GRACE && self.table.get(id).is_some_and(|n| !n.verified())
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// At each round: counts the copies still unverified after the grace, and pulls each owner's
    /// whole state from another peer.
    pub(super) fn pull_incomplete(&mut self, now: Instant) {
        if self.unverified.is_empty() {
            return;
        }
        let table = &self.table;
        self.unverified.retain(|id, _| table.get(id).is_some_and(|n| !n.verified()));
        let mut wants: BTreeMap<NodeId, Vec<Want>> = BTreeMap::new();
        let ids: Vec<NodeId> = self.unverified.keys().copied().collect();
        let interval = self.cfg.gossip_interval;
        for id in ids {
            if wants.values().map(Vec::len).sum::<usize>() >= MAX_PULLS_PER_ROUND {
                break;
            }
            let Some(generation) = self.table.get(&id).map(|n| n.info.generation) else { continue };
            let excluded = self.is_excluded(&id);
            let Some(u) = self.unverified.get_mut(&id) else { continue };
            if now.saturating_duration_since(u.since) < GRACE || excluded {
                continue;
            }
            if !u.counted {
                u.counted = true;
                self.stats.incomplete_states += 1;
            }
            if u.next_pull.is_some_and(|t| now < t) {
                continue;
            }
            let mut avoid = vec![u.source];
            avoid.extend(u.last_pulled);
            let Some(peer) = self.peers.choose_k(&mut self.rng, 1, &avoid).pop() else { continue };
            let Some(u) = self.unverified.get_mut(&id) else { continue };
            u.pulls += 1;
            u.last_pulled = Some(peer);
            let rounds =
                if u.pulls < EAGER_PULLS { 1 } else { (1 << (u.pulls - EAGER_PULLS + 1)).min(MAX_BACKOFF_ROUNDS) };
            // Slightly less than the rounds, so that jitter does not skip one.
            u.next_pull = Some(now + interval.mul_f64(f64::from(rounds) - 0.5));
            self.stats.incomplete_pulls += 1;
            wants.entry(peer).or_default().push(Want { id, generation, version: 0 });
        }
        for (peer, w) in wants {
            for m in chunk::pack_wants(self.local.id, w, MAX_PAYLOAD) {
                self.send_to_node(now, &peer, &m);
            }
        }
    }
}
