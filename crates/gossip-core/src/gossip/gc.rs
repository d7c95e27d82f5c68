//! Garbage collection.
//!
//! - **Departed nodes.** A replica drops a left or dead node's state `gc_grace` after it
//!   departed, and remembers `(id, generation)` as forgotten for two more grace periods: deltas of
//!   that incarnation are ignored, so a peer that has not collected it yet cannot resurrect it. A
//!   restart (higher generation) is accepted as usual.
//! - **Tombstones.** An owner whose oldest tombstone is `gc_grace` old re-incarnates: it raises
//!   its generation and rewrites only its live entries, signed anew. A higher generation makes
//!   every replica discard the old state and take the new one from version 0: a full resync, so
//!   a replica that missed a deletion for the whole grace period cannot bring it back.

use std::time::Instant;

use super::{Event, Gossip};
use crate::message::{KEY_KEY, STATUS_KEY, Value};
use crate::types::{NodeId, NodeInfo};

impl Gossip {
    /// Notes that `id` departed (left or dead) at `now`.
    pub(super) fn departed(&mut self, now: Instant, id: NodeId) {
        self.departed_at.entry(id).or_insert(now);
    }

    /// Notes that `id` is back.
    pub(super) fn returned(&mut self, id: &NodeId) {
        self.departed_at.remove(id);
        self.failures.failed_at.remove(id);
    }

    /// True if deltas of `id` at `generation` belong to a collected incarnation.
    pub(super) fn forgotten(&self, id: &NodeId, generation: u64) -> bool {
        self.forgotten.get(id).is_some_and(|(g, _)| generation <= *g)
    }

    /// Runs the collections that are due.
    pub(super) fn collect_garbage(&mut self, now: Instant) {
        let grace = self.cfg.gc_grace;
        let failed_grace = self.cfg.failed_grace;
        let mut due: Vec<NodeId> = self
            .departed_at
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= grace)
            .map(|(id, _)| *id)
            .collect();
        // Failed nodes on their own, shorter timer, from the time of their failure record.
        due.extend(
            self.failures
                .failed_at
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(**t) >= failed_grace)
                .map(|(id, _)| *id),
        );
        for id in due {
            self.departed_at.remove(&id);
            self.forget_failures(&id);
            if let Some(state) = self.table.remove(&id) {
                self.forgotten.insert(id, (state.info.generation, now));
                self.suspicions.remove(&id);
                self.peers.remove(&id);
                self.active.retain(|a| *a != id);
                self.events.push_back(Event::MemberForgotten(id));
                self.events.push_back(Event::CatalogChanged);
            }
        }
        self.forgotten.retain(|_, (_, t)| now.saturating_duration_since(*t) < grace * 2);
        if self.oldest_tombstone.is_some_and(|t| now.saturating_duration_since(t) >= grace) {
            self.reincarnate(now);
        }
    }

    /// Starts a new generation holding only the live entries (tombstones collected).
    fn reincarnate(&mut self, now: Instant) {
        // The same clock floor as a start (unix milliseconds; docs/PROTOCOL.md section 1).
        let wall = self.secure.wall_nanos(now) / 1_000_000;
        let generation = (self.local.generation + 1).max(wall);
        let live: Vec<(String, Value)> = self
            .table
            .get(&self.local.id)
            .map(|n| {
                let mut v: Vec<(u64, String, Value)> = n
                    .entries
                    .values()
                    .filter(|e| !matches!(e.value, Value::Tombstone))
                    .map(|e| (e.version, e.key.to_string(), e.value.clone()))
                    .collect();
                v.sort_by_key(|(version, ..)| *version);
                v.into_iter().map(|(_, k, val)| (k, val)).collect()
            })
            .unwrap_or_default();
        let info = NodeInfo::signed_with_cert(
            self.secure.identity_key(),
            self.local.name.clone(),
            self.local.addr,
            generation,
            self.local.cert.clone(),
        );
        self.local = info.clone();
        self.table.insert_local(info);
        let identity = self.secure.identity_key().clone();
        self.table.write_local(&identity, STATUS_KEY, Value::Status(crate::message::NodeStatus::Alive));
        for (key, value) in live {
            if key != STATUS_KEY {
                self.table.write_local(&identity, &key, value);
            }
        }
        if !self.table.get(&self.local.id).is_some_and(|n| n.entries.contains_key(KEY_KEY)) {
            self.published_binding = None;
            self.publish_binding();
        }
        self.oldest_tombstone = None;
        self.events.push_back(Event::GenerationChanged(generation));
        self.events.push_back(Event::CatalogChanged);
        // Push the new incarnation at once (a window of it, then "ask again": a large owner is
        // paced like any answer); anti-entropy does the rest.
        for t in self.peers.choose_k(&mut self.rng, self.cfg.fanout, &[]) {
            if let Some(addr) = self.table.get(&t).map(|n| n.info.addr) {
                self.push_own_state(now, addr);
            }
        }
    }
}
