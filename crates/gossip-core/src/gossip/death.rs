//! Failure records: death as replicated state.
//!
//! - The first replica to declare a death from its own timer writes a **failure record** in its
//!   own state (key [`FAILED_PREFIX`] + the target's id, value [`Value::Failed`]): the target,
//!   the state of it that it held, and the wall-clock time. Replicas that declared the same death
//!   a moment later write one only if no record has reached them within a round. The record
//!   spreads with the catalog, so an agent that syncs learns who is dead with everything else
//!   and never answers a crashed node's instances after syncing.
//! - A replica **adopts** a record of a member (not excluded) that names exactly the state it holds of
//!   the target, unless it heard from the target within `suspicion_confirmed` (then it tells the
//!   target, which refutes) or self-preservation is engaged and the target is a member it knew
//!   (a newcomer's old news is never held back, and does not count towards self-preservation).
//!   A loaded replica (`liveness.rs`) holds a record of a member it knew as a suspicion and
//!   probes it instead: the member dies on this replica's own clock, or answers and refutes.
//! - The **target refutes** a record naming its current state by writing a fresh status entry:
//!   its state moves past the record, which then applies nowhere; the accuser withdraws it.
//! - Every replica collects a failed node's state `failed_grace` after the record's time, so
//!   that all collect it together (left nodes keep `gc_grace`); the accuser withdraws its record
//!   (a tombstone) after twice that.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{Gossip, Liveness};
use crate::message::{FAILED_PREFIX, Message, NodeStatus, STATUS_KEY, Value, failed_key};
use crate::types::NodeId;

/// One failure record as indexed: the state it names and its time (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    generation: u64,
    version: u64,
    at: u64,
}

/// The failure records held, indexed both ways.
#[derive(Debug, Default)]
pub(super) struct Failures {
    /// Target → accuser → record.
    by_target: BTreeMap<NodeId, BTreeMap<NodeId, Record>>,
    /// Accuser → targets it holds records about.
    by_accuser: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Targets whose adoption self-preservation holds back: looked at again each round.
    pending: BTreeSet<NodeId>,
    /// Failed nodes and when (local clock) they failed: collected `failed_grace` later.
    pub(super) failed_at: BTreeMap<NodeId, Instant>,
}

/// The failure records an owner's state holds: `(target, record)`.
fn records_of(node: &crate::state::NodeState) -> Vec<(NodeId, Record)> {
    node.entries
        .range::<str, _>((std::ops::Bound::Included(FAILED_PREFIX), std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(FAILED_PREFIX))
        .filter_map(|(k, e)| match &e.value {
            // A record filed under another node's key is malformed: ignored.
            Value::Failed { target, generation, version, at } if **k == *failed_key(target) => {
                Some((*target, Record { generation: *generation, version: *version, at: *at }))
            }
            _ => None,
        })
        .collect()
}

impl Gossip {
    /// `owner`'s state changed: re-indexes the records it holds, and looks again at the nodes
    /// they name and at `owner` itself as a target.
    pub(super) fn note_failures(&mut self, now: Instant, owner: &NodeId) {
        let old = self.failures.by_accuser.remove(owner).unwrap_or_default();
        for t in &old {
            if let Some(m) = self.failures.by_target.get_mut(t) {
                m.remove(owner);
                if m.is_empty() {
                    self.failures.by_target.remove(t);
                }
            }
        }
        let records = self.table.get(owner).map(records_of).unwrap_or_default();
        let mut targets: BTreeSet<NodeId> = old;
        for (t, r) in &records {
            self.failures.by_target.entry(*t).or_default().insert(*owner, *r);
            targets.insert(*t);
        }
        if !records.is_empty() {
            self.failures.by_accuser.insert(*owner, records.iter().map(|(t, _)| *t).collect());
        }
        targets.insert(*owner);
        for t in targets {
            self.consider_failure(now, &t);
        }
    }

    /// A record naming exactly `(generation, version)` of `target`, if any, by a member that is
    /// not excluded. (The accuser need not be alive now: it was when it wrote the record, and
    /// it outlives the target in every table, being collected later.)
    fn live_record(&self, target: &NodeId, held: (u64, u64)) -> Option<Record> {
        self.live_records(target, held).next()
    }

    /// Every record [`Gossip::live_record`] could return.
    fn live_records<'a>(&'a self, target: &'a NodeId, held: (u64, u64)) -> impl Iterator<Item = Record> + 'a {
        self.failures
            .by_target
            .get(target)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(accuser, r)| {
                *accuser != target && !self.is_excluded(accuser) && (r.generation, r.version) == held
            })
            .map(|(_, r)| *r)
    }

    /// Adopts, refutes or holds back what the records say of `target`.
    fn consider_failure(&mut self, now: Instant, target: &NodeId) {
        if *target == self.local.id {
            return self.refute_records(now);
        }
        self.failures.pending.remove(target);
        let Some(n) = self.table.get(target) else { return };
        if n.status() != NodeStatus::Alive {
            return;
        }
        let held = (n.info.generation, n.max_version);
        let liveness = self.liveness(target);
        if liveness == Liveness::Dead {
            // Already dead here: a record dated earlier than our own detection (a force-leave
            // is dated failed_grace ago) brings the collection forward; it never delays it.
            let earliest = self.live_records(target, held).map(|r| r.at).min();
            if let Some(at) = earliest {
                let since = self.instant_of_wall(now, at);
                if let Some(t) = self.failures.failed_at.get_mut(target) {
                    *t = (*t).min(since);
                }
            }
            return;
        }
        if !matches!(liveness, Liveness::Alive | Liveness::Suspect) {
            return;
        }
        let Some(record) = self.live_record(target, held) else { return };
        let heard = self.last_heard.get(target).copied();
        if heard.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.suspicion_confirmed) {
            // It spoke a moment ago: the record is wrong (or stale); the target refutes it.
            self.stats.failure_records_contradicted += 1;
            let msg = Message::Suspect {
                sender: self.local.id,
                ttl: 0,
                target: *target,
                generation: held.0,
                version: held.1,
            };
            self.send_to_node(now, target, &msg);
            return;
        }
        if self.self_preservation && heard.is_some() {
            self.failures.pending.insert(*target);
            return;
        }
        if heard.is_some() && self.loaded(now) {
            // This node's own timers run late: the machine (or the cluster's start-up) is
            // starved, and the recorder likely was too, so a member it knew may be only slow.
            // Hold the record as a suspicion heard of, confirmed by a probe as a suspicion
            // rumor is: it ripens into a death on this node's own clock (one probe timeout
            // pair and `suspicion_confirmed`, or the heard-of timeout), or the member's answer
            // clears it and it refutes. A quiet node adopts at once.
            self.stats.failure_records_probed += 1;
            if !self.suspicions.contains_key(target) {
                self.start_suspicion(now, *target, held, false);
            }
            return;
        }
        // A member this node knew counts towards self-preservation like a death it detected;
        // a newcomer's old news does not.
        let counted = heard.is_some();
        let since = self.instant_of_wall(now, record.at);
        self.declare_dead(now, *target, counted);
        if let Some(s) = self.suspicions.get_mut(target) {
            // Another member recorded it: nothing more is owed.
            s.record_due = None;
        }
        self.failures.failed_at.insert(*target, since.min(now));
        if counted {
            // (declare_dead counted it as a death detected here.)
            self.stats.deaths_learned += 1;
        }
    }

    /// The monotonic instant of a record's wall-clock second `at` (never later than `now`).
    fn instant_of_wall(&self, now: Instant, at: u64) -> Instant {
        let wall = self.secure.wall_nanos(now) / 1_000_000_000;
        let ago = Duration::from_secs(wall.saturating_sub(at));
        now.checked_sub(ago).unwrap_or(now)
    }

    /// A record names this node's current state: refute it with a fresh status entry (a record
    /// naming a state this node never reached is a lie; it is counted, and the next version
    /// would not pass it, so only the liar's exclusion ends it).
    fn refute_records(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let mine = (self.local.generation, self.own_version());
        let Some(records) = self.failures.by_target.get(&self.local.id) else { return };
        let mut refute = false;
        for r in records.values() {
            let named = (r.generation, r.version);
            if named == mine {
                refute = true;
            } else if named > mine {
                self.stats.suspicions_beyond_held += 1;
            }
        }
        if refute {
            self.stats.failure_records_refuted += 1;
            self.stats.refutations += 1;
            self.write_local(now, STATUS_KEY, Value::Status(NodeStatus::Alive));
        }
    }

    /// Once per round: writes the records owed, withdraws this node's records that no longer
    /// apply, and looks again at adoptions self-preservation held back.
    pub(super) fn review_failure_records(&mut self, now: Instant) {
        let wall = self.secure.wall_nanos(now) / 1_000_000_000;
        let due: Vec<(NodeId, u64, u64)> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.dead && s.record_due.is_some_and(|t| now >= t))
            .map(|(id, s)| (*id, s.generation, s.version))
            .collect();
        for (id, generation, version) in due {
            if let Some(s) = self.suspicions.get_mut(&id) {
                s.record_due = None;
            }
            if self.live_record(&id, (generation, version)).is_some() || self.left {
                continue;
            }
            self.stats.failure_records_written += 1;
            self.write_local(now, &failed_key(&id), Value::Failed { target: id, generation, version, at: wall });
            self.note_failures(now, &self.local.id.clone());
        }
        let me = self.local.id;
        let own: Vec<(NodeId, Record)> = self.table.get(&me).map(records_of).unwrap_or_default();
        let keep = self.cfg.failed_grace.as_secs().saturating_mul(2);
        for (target, r) in own {
            let advanced =
                self.table.get(&target).is_some_and(|n| (n.info.generation, n.max_version) > (r.generation, r.version));
            let expired = wall >= r.at.saturating_add(keep);
            if advanced || expired {
                self.write_local(now, &failed_key(&target), Value::Tombstone);
                self.oldest_tombstone.get_or_insert(now);
                self.note_failures(now, &me);
            }
        }
        let pending: Vec<NodeId> = self.failures.pending.iter().copied().collect();
        for t in pending {
            self.consider_failure(now, &t);
        }
    }

    /// Forgets what is indexed about `id` (its state was collected).
    pub(super) fn forget_failures(&mut self, id: &NodeId) {
        self.failures.failed_at.remove(id);
        self.failures.pending.remove(id);
        self.last_heard.remove(id);
    }
}
