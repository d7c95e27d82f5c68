//! Accusations and exclusion by majority.
//!
//! - A node **accuses** another by writing an [`Accusation`] entry of its own (key
//!   `@accuse/<id hex>`), which spreads with its state like any entry:
//!   - with a [`Charge::Equivocation`] proof when it finds two different entries the accused
//!     signed under one version, and also when it verifies such a proof in another node's
//!     accusation (it endorses it: a proof convinces every honest node that sees it);
//!   - with a [`Charge::Misbehaved`] reason when it bans the accused for a protocol violation
//!     (malformed payload, forged relay). Others cannot check that charge, and the accuser
//!     withdraws it (a tombstone) when the ban expires.
//! - A node is **excluded** when the credible accusations against it come from more than half
//!   of the live members (this node included, the accused and the already excluded not
//!   counted). An excluded node is out of peers and answers, and whatever it sends is dropped
//!   after authentication. It is readmitted when its accusers no longer form a majority
//!   (accusations withdrawn, accusers gone).
//!
//! Exclusions are reviewed after any change to an accuser's state and on every round while
//! accusations exist; without accusations this costs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{Event, Gossip, Liveness};
use crate::message::{NodeStatus, Value};
use crate::proof::{ACCUSE_PREFIX, Accusation, Charge, bounded_reason};
use crate::secure::keys::IdentityPub;
use crate::types::NodeId;

/// Accusation state of one node.
#[derive(Debug, Default)]
pub(super) struct Accusations {
    /// Owners (this node included) whose state holds at least one accusation entry.
    accusing: BTreeSet<NodeId>,
    /// Excluded nodes and why.
    excluded: BTreeMap<NodeId, String>,
    /// Identities this node accused because it banned them: withdrawn when the ban ends.
    from_bans: BTreeMap<NodeId, IdentityPub>,
    /// Verdicts on accusation entries already checked, by the entry's signature.
    checked: BTreeMap<[u8; 64], bool>,
    /// True when an accuser's state changed since the last review.
    dirty: bool,
}

/// The accusation entries an owner holds: `(entry signature, accusation)`.
fn accusations_of(node: &crate::state::NodeState) -> impl Iterator<Item = (&[u8; 64], &Accusation)> {
    node.entries
        .range::<str, _>((std::ops::Bound::Included(ACCUSE_PREFIX), std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(ACCUSE_PREFIX))
        .filter_map(|(_, e)| match &e.value {
            Value::Accusation(a) => Some((&e.sig, a)),
            _ => None,
        })
}

impl Gossip {
    /// Nodes excluded by a majority of accusations, with the reason.
    pub fn exclusions(&self) -> impl Iterator<Item = (&NodeId, &String)> {
        self.accusations.excluded.iter()
    }

    /// True if `id` is excluded.
    pub fn is_excluded(&self, id: &NodeId) -> bool {
        self.accusations.excluded.contains_key(id)
    }

    /// Writes an accusation against `accused` unless this node holds one already (a proof
    /// replaces a misbehaviour charge).
    pub(super) fn accuse(&mut self, now: Instant, accused: NodeId, charge: Charge) {
        if accused == self.local.id || self.left {
            return;
        }
        let key = Accusation::key(&accused);
        if let Some(held) = self.own_accusation(&accused) {
            if matches!(held.charge, Charge::Equivocation(_)) || matches!(charge, Charge::Misbehaved(_)) {
                return;
            }
        }
        if matches!(charge, Charge::Equivocation(_)) {
            self.accusations.from_bans.remove(&accused);
        }
        self.stats.accusations_written += 1;
        self.write_local(now, &key, Value::Accusation(Accusation { accused, charge }));
        self.note_accusations(&self.local.id.clone());
    }

    /// This node's standing accusation against `accused` (not a withdrawn one), if any.
    fn own_accusation(&self, accused: &NodeId) -> Option<&Accusation> {
        match self.table.get(&self.local.id)?.entries.get(Accusation::key(accused).as_str()).map(|e| &e.value) {
            Some(Value::Accusation(a)) => Some(a),
            _ => None,
        }
    }

    /// Accuses the owner of an identity this node just banned.
    pub(super) fn accuse_banned(&mut self, now: Instant, identity: IdentityPub, reason: &str) {
        let id = identity.node_id();
        // (A withdrawn accusation is a tombstone: a repeat offender is accused, and withdrawn, again.)
        if self.own_accusation(&id).is_none() {
            self.accusations.from_bans.insert(id, identity);
        }
        self.accuse(now, id, Charge::Misbehaved(bounded_reason(reason)));
    }

    /// Withdraws the misbehaviour accusations whose ban has ended.
    pub(super) fn withdraw_expired_accusations(&mut self, now: Instant) {
        let ended: Vec<NodeId> = self
            .accusations
            .from_bans
            .iter()
            .filter(|(_, identity)| !self.secure.is_banned(now, identity))
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            self.accusations.from_bans.remove(&id);
            self.write_local(now, &Accusation::key(&id), Value::Tombstone);
            self.note_accusations(&self.local.id.clone());
        }
    }

    /// Records whether `owner`'s state holds accusations (after it changed).
    pub(super) fn note_accusations(&mut self, owner: &NodeId) {
        let holds = self.table.get(owner).is_some_and(|n| accusations_of(n).next().is_some());
        let changed =
            if holds { self.accusations.accusing.insert(*owner) } else { self.accusations.accusing.remove(owner) };
        self.accusations.dirty |= changed || holds;
    }

    /// Reviews exclusions if an accuser changed, or each round while accusations exist
    /// (`force`): membership changes move the majority.
    pub(super) fn review_exclusions_if(&mut self, force: bool) {
        let any = !(self.accusations.accusing.is_empty() && self.accusations.excluded.is_empty());
        if !(self.accusations.dirty || (force && any)) {
            return;
        }
        // An endorsement written during a review changes the count: review again (each round
        // of endorsements writes at most one entry per accused, so this ends quickly).
        for _ in 0..4 {
            self.review_exclusions();
            if !self.accusations.dirty {
                break;
            }
        }
    }

    fn accuser_key(&self, id: &NodeId) -> String {
        let cert_name = || self.table.get(id).and_then(|n| n.info.cert.as_ref()).map(|c| c.name.clone());
        match self.secure.trust() {
            Some(_) if *id == self.local.id => self.local.name.clone(),
            Some(_) => cert_name().unwrap_or_else(|| id.to_hex()),
            None => id.to_hex(),
        }
    }

    pub(super) fn counts_as_live(&self, id: &NodeId) -> bool {
        *id == self.local.id
            || (!self.accusations.excluded.contains_key(id)
                && self.table.get(id).is_some_and(|n| n.status() == NodeStatus::Alive)
                && self.suspicion_state(id) != Liveness::Dead)
    }

    /// Recounts the accusations and excludes or readmits.
    fn review_exclusions(&mut self) {
        self.accusations.dirty = false;
        let me = self.local.id;
        let live: BTreeSet<NodeId> = std::iter::once(me)
            .chain(self.table.iter().map(|n| n.info.id))
            .filter(|id| self.counts_as_live(id))
            .collect();
        // Accusers count once per certified name when a CA is trusted (identities cost the CA a
        // signature, and two certificates of one name are one member), once per identity
        // otherwise.
        let mut votes: BTreeMap<NodeId, (BTreeSet<String>, String)> = BTreeMap::new();
        let mut checked = BTreeMap::new();
        let mut endorse = Vec::new();
        let mut gone = Vec::new();
        for accuser in &self.accusations.accusing {
            let Some(node) = self.table.get(accuser) else {
                gone.push(*accuser);
                continue;
            };
            if !live.contains(accuser) {
                continue;
            }
            for (sig, a) in accusations_of(node) {
                let credible = match self.accusations.checked.get(sig) {
                    Some(v) => *v,
                    None => a.credible(),
                };
                checked.insert(*sig, credible);
                if !credible {
                    self.stats.accusations_refused += 1;
                    continue;
                }
                if *accuser != me && matches!(a.charge, Charge::Equivocation(_)) {
                    endorse.push(a.clone());
                }
                let v = votes.entry(a.accused).or_insert_with(|| (BTreeSet::new(), a.reason()));
                v.0.insert(self.accuser_key(accuser));
                if matches!(a.charge, Charge::Equivocation(_)) {
                    v.1 = a.reason();
                }
            }
        }
        self.accusations.checked = checked;
        for id in gone {
            self.accusations.accusing.remove(&id);
        }
        let mut now_excluded = BTreeMap::new();
        for (accused, (accusers, reason)) in &votes {
            let members = live.len() - usize::from(live.contains(accused));
            if accusers.len() * 2 > members {
                now_excluded.insert(*accused, (reason.clone(), accusers.len(), members));
            }
        }
        let before: Vec<NodeId> = self.accusations.excluded.keys().copied().collect();
        for id in before {
            if !now_excluded.contains_key(&id) {
                self.accusations.excluded.remove(&id);
                self.events.push_back(Event::Readmitted(id));
                self.events.push_back(super::Event::CatalogChanged);
                if id != me {
                    self.update_membership(&id);
                }
            }
        }
        for (id, (reason, accusers, members)) in now_excluded {
            if self.accusations.excluded.insert(id, reason.clone()).is_none() {
                self.events.push_back(Event::Excluded { node: id, accusers, members, reason });
                self.events.push_back(Event::CatalogChanged);
                if id != me {
                    self.peers.remove(&id);
                    self.active.retain(|a| *a != id);
                    self.probes.retain(|p| p.target != id);
                }
            }
        }
        let last_now = self.last_now;
        for a in endorse {
            if let Charge::Equivocation(p) = a.charge {
                self.accuse(last_now, a.accused, Charge::Equivocation(p));
            }
        }
    }
}
