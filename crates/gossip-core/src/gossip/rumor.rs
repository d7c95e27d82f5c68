//! Rumor mongering with bounded retransmission (docs/PROTOCOL.md 4.3).
//!
//! A node that makes a change, or applies a Delta that taught it something and still has hops
//! (`ttl > 0`), pushes the Delta at once to `fanout` peers, then queues it and retransmits it on
//! short rumor ticks (`rumor_interval`) to `fanout` more peers per tick until it has sent it
//! `retransmit_mult × ⌈log10(N + 1)⌉` more times (memberlist's `TransmitLimitedQueue` budget).
//! Targets are drawn first among the peers this node holds an established session with (no
//! handshake on the critical path, no CPU burst of key exchanges per change), then among all
//! live peers; never a peer known to hold the rumor already (its sender, its owner, the peers it
//! was sent to, and the peers that sent it to us again). The queue is bounded in entries and
//! bytes (the oldest is dropped) and empty, with no tick scheduled, when nothing changes: idle
//! cost is unchanged.
//!
//! Suspicion rumors (`Suspect`) go through the same queue: a suspicion missed by a node would
//! otherwise leave it answering with a dead node until it probed that node itself (minutes in a
//! large cluster). A queued suspicion whose target has since refuted it is dropped.

use std::collections::VecDeque;
use std::time::Instant;

use super::Gossip;
use crate::message::{Delta, Message};
use crate::types::NodeId;

/// Most rumors queued for retransmission (the oldest is dropped beyond).
pub(super) const MAX_QUEUED_RUMORS: usize = 128;
/// Most bytes of encoded rumors queued for retransmission (the oldest is dropped beyond).
pub(super) const MAX_QUEUED_RUMOR_BYTES: usize = 128 * 1024;
/// Most peers remembered per rumor as holding it.
const MAX_HOLDERS: usize = 64;

/// What a queued rumor is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Topic {
    /// A delta of this owner's state.
    Delta,
    /// A suspicion of this node.
    Suspect,
}

/// One rumor awaiting retransmission.
#[derive(Debug)]
struct Queued {
    topic: Topic,
    /// The delta's owner, or the suspected node.
    owner: NodeId,
    generation: u64,
    to_version: u64,
    /// The encoded `Delta` message, sent as it is.
    payload: Vec<u8>,
    /// Transmissions left.
    left: u32,
    /// Peers known to hold it: never chosen as targets.
    holders: Vec<NodeId>,
}

/// The retransmission queue and its tick.
#[derive(Debug, Default)]
pub(super) struct Rumors {
    queue: VecDeque<Queued>,
    bytes: usize,
    next_tick: Option<Instant>,
}

impl Rumors {
    /// When the next retransmission tick is due (none while the queue is empty).
    pub(super) fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Number of rumors queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    fn push(&mut self, q: Queued) {
        self.bytes += q.payload.len();
        self.queue.push_back(q);
        while self.queue.len() > MAX_QUEUED_RUMORS || self.bytes > MAX_QUEUED_RUMOR_BYTES {
            let Some(old) = self.queue.pop_front() else { break };
            self.bytes -= old.payload.len();
        }
    }
}

impl Gossip {
    /// Retransmissions owed for each rumor beyond its first push: `retransmit_mult ×
    /// ⌈log10(N + 1)⌉`, N the cluster size as this node sees it.
    pub(super) fn retransmit_budget(&self) -> u32 {
        let n = self.peers.len() as f64 + 1.0;
        let scale = (n + 1.0).log10().ceil().max(1.0) as u32;
        self.cfg.retransmit_mult * scale
    }

    /// Up to `k` live peers, none in `exclude`: drawn among the peers with an established
    /// session first (`warm`, sorted), the rest among all live peers.
    pub(super) fn rumor_targets(&mut self, warm: &[NodeId], k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        let pool: Vec<NodeId> =
            warm.iter().copied().filter(|id| !exclude.contains(id) && self.peers.contains(id)).collect();
        let mut out = self.rng.choose_multiple(&pool, k);
        if out.len() < k {
            let mut ex = exclude.to_vec();
            ex.extend_from_slice(&out);
            let more = self.peers.choose_k(&mut self.rng, k - out.len(), &ex);
            out.extend(more);
        }
        out
    }

    /// Whether passing on a rumor can teach anyone: not when this node has at most `fanout`
    /// peers, since the owner's first push then went to every one of them (as far as the
    /// membership views agree), and the forwards would all be copies of what they have. A push
    /// lost on the way is repaired by the next anti-entropy round. In a cluster of 5 at the
    /// default fanout of 4, this is what keeps a burst's bytes near the entries' size.
    pub(super) fn forwards_can_teach(&self) -> bool {
        self.peers.len() > self.cfg.fanout
    }

    /// Pushes `delta` (with the hops it has left) at once to `k` peers other than `known`
    /// (peers that hold it), then, if `retransmit`, queues it for the retransmission ticks.
    /// Returns the number of peers it was pushed to.
    pub(super) fn spread(&mut self, now: Instant, delta: Delta, known: &[NodeId], k: usize, retransmit: bool) -> usize {
        let (owner, generation, to_version) = (delta.node.id, delta.node.generation, delta.to_version);
        let payload = Message::Delta { sender: self.local.id, delta }.encode();
        self.spread_payload(now, (Topic::Delta, owner, generation, to_version), payload, known, k, retransmit)
    }

    /// Pushes a suspicion of `target` (as of its state `(generation, version)`, with `ttl` hops
    /// left) to `fanout` peers other than `known`, and queues it for retransmission.
    pub(super) fn spread_suspicion(
        &mut self,
        now: Instant,
        (target, generation, version): (NodeId, u64, u64),
        ttl: u8,
        known: &[NodeId],
    ) {
        let payload = Message::Suspect { sender: self.local.id, ttl, target, generation, version }.encode();
        let k = self.cfg.fanout;
        self.spread_payload(now, (Topic::Suspect, target, generation, version), payload, known, k, true);
    }

    fn spread_payload(
        &mut self,
        now: Instant,
        (topic, owner, generation, to_version): (Topic, NodeId, u64, u64),
        payload: Vec<u8>,
        known: &[NodeId],
        k: usize,
        retransmit: bool,
    ) -> usize {
        let mut holders: Vec<NodeId> = known.to_vec();
        if !holders.contains(&owner) {
            holders.push(owner);
        }
        let warm = self.secure.warm_peers(now);
        let targets = self.rumor_targets(&warm, k, &holders);
        let pushed = targets.len();
        for t in &targets {
            self.send_payload_to_node(now, t, &payload);
        }
        holders.extend(targets);
        // fanout 0 switches rumors off altogether (the simulator's anti-entropy-only runs).
        let left = if retransmit && self.cfg.fanout > 0 { self.retransmit_budget() } else { 0 };
        if left == 0 || holders.len() >= self.peers.len() {
            return pushed;
        }
        holders.truncate(MAX_HOLDERS);
        self.rumors.push(Queued { topic, owner, generation, to_version, payload, left, holders });
        if self.rumors.next_tick.is_none() {
            self.rumors.next_tick = Some(now + self.cfg.rumor_interval);
        }
        pushed
    }

    /// `from` sent us a rumor we already held: it holds it, so our retransmissions skip it.
    pub(super) fn rumor_heard(&mut self, from: NodeId, delta: &Delta) {
        let (owner, generation) = (delta.node.id, delta.node.generation);
        for q in self.rumors.queue.iter_mut() {
            if q.topic == Topic::Delta
                && q.owner == owner
                && q.generation == generation
                && q.to_version <= delta.to_version
                && !q.holders.contains(&from)
                && q.holders.len() < MAX_HOLDERS
            {
                q.holders.push(from);
            }
        }
    }

    /// One retransmission tick, when due: every queued rumor goes to `fanout` more peers (fewer
    /// if its budget is nearly spent); spent rumors, and rumors every peer holds, leave the
    /// queue.
    pub(super) fn rumor_timeout(&mut self, now: Instant) {
        let Some(due) = self.rumors.next_tick else { return };
        if now < due {
            return;
        }
        let warm = self.secure.warm_peers(now);
        let mut queue = std::mem::take(&mut self.rumors.queue);
        // A suspicion refuted since (the target's state moved past it) is not worth repeating.
        queue.retain(|q| {
            q.topic != Topic::Suspect
                || self
                    .table
                    .get(&q.owner)
                    .is_some_and(|n| (n.info.generation, n.max_version) <= (q.generation, q.to_version))
        });
        for q in queue.iter_mut() {
            let k = (self.cfg.fanout as u32).min(q.left) as usize;
            let targets = self.rumor_targets(&warm, k, &q.holders);
            for t in &targets {
                self.stats.rumor_retransmits += 1;
                self.send_payload_to_node(now, t, &q.payload);
            }
            q.left = if targets.len() < k || k == 0 { 0 } else { q.left - targets.len() as u32 };
            for t in targets {
                if q.holders.len() < MAX_HOLDERS {
                    q.holders.push(t);
                }
            }
        }
        queue.retain(|q| q.left > 0);
        self.rumors.bytes = queue.iter().map(|q| q.payload.len()).sum();
        self.rumors.queue = queue;
        self.rumors.next_tick = (!self.rumors.queue.is_empty()).then(|| now + self.cfg.rumor_interval);
    }

    /// Sends an encoded message to a node by id (IK hint from its published binding).
    fn send_payload_to_node(&mut self, now: Instant, id: &NodeId, payload: &[u8]) {
        debug_assert!(payload.len() <= crate::session::MAX_PAYLOAD, "message of {} bytes", payload.len());
        if let Some(addr) = self.table.get(id).map(|n| n.info.addr) {
            let hint = self.binding_of(id);
            // Rumors are encoded once, at version 4, and transcoded for peers that speak another.
            self.send_encoded(now, addr, hint, crate::version::BUILD_MIN, payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(i: u8, len: usize) -> Queued {
        Queued {
            topic: Topic::Delta,
            owner: NodeId([i; 16]),
            generation: 1,
            to_version: u64::from(i),
            payload: vec![i; len],
            left: 6,
            holders: Vec::new(),
        }
    }

    #[test]
    fn the_queue_drops_its_oldest_past_its_count_bound() {
        let mut r = Rumors::default();
        for i in 0..200u8 {
            r.push(queued(i, 100));
        }
        assert_eq!(r.len(), MAX_QUEUED_RUMORS);
        assert_eq!(r.queue.front().map(|q| q.owner), Some(NodeId([200 - MAX_QUEUED_RUMORS as u8; 16])));
        assert_eq!(r.bytes, MAX_QUEUED_RUMORS * 100);
    }

    #[test]
    fn the_queue_drops_its_oldest_past_its_byte_bound() {
        let mut r = Rumors::default();
        for i in 0..120u8 {
            r.push(queued(i, 1136));
        }
        assert!(r.bytes <= MAX_QUEUED_RUMOR_BYTES, "{} bytes queued", r.bytes);
        assert_eq!(r.len(), MAX_QUEUED_RUMOR_BYTES / 1136);
        assert_eq!(r.queue.back().map(|q| q.owner), Some(NodeId([119; 16])));
    }
}
