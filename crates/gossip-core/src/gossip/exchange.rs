//! Handling received messages: reconciliation, deltas (rumors included) and requests.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Event, Gossip};
use crate::chunk;
use crate::message::{self, Delta, Message, NodeStatus, Want};
use crate::reconcile;
use crate::secure::Received;
use crate::session::MAX_PAYLOAD;
use crate::state::{Applied, Scheme};
use crate::types::NodeId;

/// Most bytes of entries one answer to a request or reconciliation carries (about 48
/// datagrams): more is paced by `More` and the receiver's next request.
pub(super) const SERVE_WINDOW: usize = 48 * 1024;
/// A request for an owner at the same held version is not repeated within this time.
const PULL_REPEAT: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a rumor that overtook an earlier one of its owner waits for it before its gap is
/// pulled (a few times a LAN's jitter; a loss is then repaired by one pull, as before).
pub(super) const REORDER_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
/// Most rumors held for their gap at once (beyond: pulled at once, as before).
const MAX_REORDERED: usize = 64;
/// Most entry bytes of the rumors held for their gap.
const MAX_REORDERED_BYTES: usize = 128 * 1024;

/// A rumor held for its gap to close.
#[derive(Debug)]
pub(super) struct Reordered {
    from: SocketAddr,
    sender: NodeId,
    identity: crate::secure::keys::IdentityPub,
    delta: Delta,
    /// When its gap is pulled if still open.
    pub(super) due: Instant,
    bytes: usize,
}
/// Most owners whose last request is remembered (beyond, requests are not deduplicated).
const MAX_PULLS_REMEMBERED: usize = 4096;

/// Most ranges accepted in one `Reconcile` (more is malformed).
const MAX_RANGES: usize = 64;
/// Most wants accepted in one `Request` (more is malformed).
const MAX_WANTS: usize = 128;

impl Gossip {
    /// Processes one received datagram. What does not authenticate is counted by the secure
    /// layer and dropped; an authenticated peer that sends what does not decode, breaks a rule
    /// or relays a forged record is banned. Never panics.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.receive_datagram(now, from, data);
        self.promised = self.poll_timeout();
    }

    fn receive_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let mut out = Vec::new();
        let received = self.secure.recv(now, from, data, &mut out);
        self.emit(out);
        self.report_handshake_findings();
        let Some(Received { identity, payload, version, .. }) = received else { return };
        let msg = match Message::decode_for(version, &payload) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped_decode += 1;
                self.ban(now, identity, format!("undecodable message: {e}"));
                return;
            }
        };
        if self.is_excluded(&identity.node_id()) {
            self.stats.dropped_excluded += 1;
            return;
        }
        if msg.sender() != identity.node_id() {
            self.stats.dropped_malformed += 1;
            self.ban(now, identity, "message sender is not the session's identity".into());
            return;
        }
        if self.peers.is_empty() && self.cfg.seeds.contains(&from) {
            // A seed answers: retry soon rather than after a long backoff.
            self.seed_backoff = self.cfg.seed_backoff_min;
            self.next_seed_try = self.next_seed_try.min(now + self.cfg.seed_backoff_min);
        }
        // An answer to our exchange (or an ack) is what a probe asked for; anything else from the
        // node (its own round, a rumor) proves it alive too, but may have waited in our queue
        // since before the probe, so says nothing of this node's own health.
        let answer = matches!(msg, Message::Reconcile { initial: false, .. } | Message::Ack { .. });
        self.heard_from(now, from, identity.node_id(), answer);
        match msg {
            Message::Reconcile { initial, ranges, .. } => {
                self.on_reconcile(now, from, identity, initial, &ranges, Scheme::at(version))
            }
            Message::Delta { sender, delta } => self.on_delta(now, from, sender, identity, delta),
            Message::Request { wants, .. } => self.on_request(now, from, identity, &wants),
            Message::More { owners, .. } => self.on_more(now, from, identity, &owners),
            Message::Ping { nonce, .. } => self.on_ping(now, from, nonce),
            Message::Ack { nonce, target, .. } => self.on_ack(now, nonce, target),
            Message::PingReq { nonce, target, .. } => self.on_ping_req(now, from, nonce, target),
            Message::Suspect { sender, ttl, target, generation, version } => {
                if target == self.local.id && (generation, version) > (self.local.generation, self.own_version()) {
                    // Replicas and forwarders name only states of this node they hold, which this
                    // node signed: a suspicion beyond its own newest state was made up by the
                    // sender (it could never be refuted).
                    self.stats.dropped_malformed += 1;
                    self.ban(now, identity, format!("suspicion of a state never signed ({generation}, {version})"));
                    return;
                }
                self.on_suspect(now, sender, ttl, target, generation, version)
            }
            m @ (Message::Query { .. } | Message::Answer { .. }) => self.on_app(identity.node_id(), m),
        }
    }

    fn ban(&mut self, now: Instant, identity: crate::secure::keys::IdentityPub, reason: String) {
        let period = self.secure.ban(now, identity, &reason);
        self.accuse_banned(now, identity, &reason);
        self.events.push_back(Event::Banned { identity, reason, period });
        self.review_exclusions_if(false);
    }

    fn on_reconcile(
        &mut self,
        now: Instant,
        from: SocketAddr,
        identity: crate::secure::keys::IdentityPub,
        initial: bool,
        ranges: &[message::Range],
        scheme: Scheme,
    ) {
        if ranges.len() > MAX_RANGES {
            self.stats.dropped_malformed += 1;
            self.ban(now, identity, format!("{} ranges in one message", ranges.len()));
            return;
        }
        let out = reconcile::process(&self.table, ranges, scheme);
        if out.malformed {
            self.stats.dropped_malformed += 1;
            self.ban(now, identity, "reconciliation items outside their range".into());
            return;
        }
        let mut replies = chunk::pack_ranges(self.local.id, out.ranges, MAX_PAYLOAD);
        if replies.is_empty() && initial {
            replies.push(Message::Reconcile { sender: self.local.id, initial: false, ranges: Vec::new() });
        }
        for m in replies {
            self.send(now, from, &m);
        }
        let me = self.local.id;
        let wants: Vec<Want> =
            out.wants.into_iter().filter(|w| w.id != me && !self.forgotten.contains_key(&w.id)).collect();
        for m in chunk::pack_wants(me, wants, MAX_PAYLOAD) {
            self.send(now, from, &m);
        }
        self.serve(now, from, &out.push);
    }

    /// Sends `to` the deltas it lacks for each want (at most `max_push_per_message` owners), at
    /// most [`SERVE_WINDOW`] bytes of entries in all: an answer cut short is followed by a
    /// `More` naming where each owner stopped, and the receiver asks again from what it then
    /// holds. A large owner's transfer is so clocked by the receiver (what it applied), never a
    /// burst that overflows its receive buffer and is sent again whole.
    pub(super) fn serve(&mut self, now: Instant, to: SocketAddr, wants: &[Want]) {
        let mut left = SERVE_WINDOW;
        let mut more = Vec::new();
        for w in wants.iter().take(self.cfg.max_push_per_message) {
            if left == 0 {
                // Nothing sent for this owner: "ask again" from where the receiver is.
                if self.table.get(&w.id).is_some_and(|n| (n.info.generation, n.max_version) > (w.generation, w.version)) {
                    more.push(*w);
                }
                continue;
            }
            let (deltas, stopped) = self.table.deltas_window(&w.id, w.generation, w.version, MAX_PAYLOAD, left);
            for d in deltas {
                let sent: usize = d.entries.iter().map(message::entry_len).sum();
                left = left.saturating_sub(sent.max(1));
                self.send(now, to, &Message::Delta { sender: self.local.id, delta: d });
            }
            if let Some(version) = stopped {
                let generation = self.table.get(&w.id).map_or(0, |n| n.info.generation);
                more.push(Want { id: w.id, generation, version });
                left = 0;
            }
        }
        if !more.is_empty() {
            self.stats.paced_answers += 1;
            for m in chunk::pack_more(self.local.id, more, MAX_PAYLOAD) {
                self.send(now, to, &m);
            }
        }
    }

    /// A peer cut its answer short: ask it again, from what this replica now holds, for each
    /// owner it named (once per owner and held version, see [`Gossip::pull`]).
    fn on_more(
        &mut self,
        now: Instant,
        from: SocketAddr,
        identity: crate::secure::keys::IdentityPub,
        owners: &[Want],
    ) {
        if owners.len() > MAX_WANTS {
            self.stats.dropped_malformed += 1;
            self.ban(now, identity, format!("{} owners in one More", owners.len()));
            return;
        }
        let me = self.local.id;
        let wants: Vec<Want> = owners
            .iter()
            .filter(|w| w.id != me && !self.forgotten.contains_key(&w.id))
            .map(|w| {
                let (generation, version) =
                    self.table.get(&w.id).map_or((0, 0), |n| (n.info.generation, n.max_version));
                Want { id: w.id, generation, version }
            })
            .collect();
        self.pull(now, from, wants);
    }

    /// Sends `to` requests for `wants`, except those this node asked for at the same held
    /// version within the last [`PULL_REPEAT`] (a window's later chunks arriving after a lost one
    /// each find the same gap: one request answers them all).
    pub(super) fn pull(&mut self, now: Instant, to: SocketAddr, wants: Vec<Want>) {
        self.pulls.retain(|_, (_, t)| now.saturating_duration_since(*t) < PULL_REPEAT);
        let wants: Vec<Want> = wants
            .into_iter()
            .filter(|w| self.pulls.get(&w.id).is_none_or(|(held, _)| *held != (w.generation, w.version)))
            .collect();
        if self.pulls.len() < MAX_PULLS_REMEMBERED {
            for w in &wants {
                self.pulls.insert(w.id, ((w.generation, w.version), now));
            }
        }
        for m in chunk::pack_wants(self.local.id, wants, MAX_PAYLOAD) {
            self.send(now, to, &m);
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        identity: crate::secure::keys::IdentityPub,
        wants: &[Want],
    ) {
        if wants.len() > MAX_WANTS {
            self.stats.dropped_malformed += 1;
            self.ban(now, identity, format!("{} wants in one request", wants.len()));
            return;
        }
        self.serve(now, from, wants);
    }

    /// Rumors that found a gap go on after the earlier delta arrives, or are pulled when it
    /// has not within [`REORDER_WAIT`].
    pub(super) fn reorder_timeout(&mut self, now: Instant) {
        if !self.reordered.iter().any(|r| r.due <= now) {
            return;
        }
        let (late, kept): (Vec<Reordered>, Vec<Reordered>) =
            std::mem::take(&mut self.reordered).into_iter().partition(|r| r.due <= now);
        self.reordered = kept;
        for r in late {
            let owner = r.delta.node.id;
            let (generation, version) = self.table.get(&owner).map_or((0, 0), |n| (n.info.generation, n.max_version));
            if (generation, version) < (r.delta.node.generation, r.delta.to_version) {
                self.stats.reorder_pulls += 1;
                self.pull(now, r.from, vec![Want { id: owner, generation, version }]);
            }
        }
    }

    /// Applies the held rumors of `owner` that no longer start beyond what is held.
    fn resume_reordered(&mut self, now: Instant, owner: NodeId) {
        let Some((generation, version)) = self.table.get(&owner).map(|n| (n.info.generation, n.max_version)) else {
            return;
        };
        let ready = |r: &Reordered| {
            r.delta.node.id == owner && r.delta.node.generation == generation && r.delta.from_version <= version
        };
        if !self.reordered.iter().any(ready) {
            return;
        }
        let (now_ready, kept): (Vec<Reordered>, Vec<Reordered>) =
            std::mem::take(&mut self.reordered).into_iter().partition(ready);
        self.reordered = kept;
        for r in now_ready {
            self.stats.reordered_applied += 1;
            self.on_delta(now, r.from, r.sender, r.identity, r.delta);
        }
    }

    fn on_delta(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        identity: crate::secure::keys::IdentityPub,
        delta: Delta,
    ) {
        let owner = delta.node.id;
        if owner == self.local.id || self.forgotten(&owner, delta.node.generation) {
            return;
        }
        if self.table.get(&owner).is_none() {
            if let Some(holder) = self.live_holder_of(&delta.node.name, &owner) {
                if delta.node.verify() && !self.reported_duplicates.contains(&owner) {
                    self.reported_duplicates.push(owner);
                    self.events.push_back(Event::DuplicateName {
                        name: delta.node.name.clone(),
                        holder,
                        newcomer: owner,
                    });
                }
                return;
            }
        }
        // Authority is checked wherever the delta could teach something: from version 0 (the
        // certificate rides along) or within the generation held (the certificate is held).
        let held_generation = self.table.get(&owner).map(|n| n.info.generation);
        if delta.from_version == 0 || held_generation == Some(delta.node.generation) {
            if let Err(why) = self.authorize(now, &delta) {
                self.refused(&delta, why);
                return;
            }
        }
        match self.table.apply(&delta) {
            Applied::Stale => self.rumor_heard(sender, &delta),
            Applied::Head => {
                // The entries were held, the owner's head for them was not: the copy can now be
                // checked, and the peers a rumor goes to may lack the head too.
                self.check_copy(now, owner, sender);
                if delta.ttl > 0 && self.forwards_can_teach() {
                    let fwd = Delta { ttl: delta.ttl - 1, ..delta };
                    let pushed = self.spread(now, fwd, &[sender, owner], self.cfg.fanout, true);
                    self.stats.rumors_forwarded += pushed as u64;
                }
            }
            Applied::Gap(want) => {
                // A rumor (hops left) that overtook an earlier one of its owner: the earlier is
                // likely in flight; pulling at once would fetch it twice.
                let bytes = delta.entries.iter().map(crate::message::entry_len).sum::<usize>();
                let held_bytes: usize = self.reordered.iter().map(|r| r.bytes).sum();
                if delta.ttl > 0 && self.reordered.len() < MAX_REORDERED && held_bytes + bytes <= MAX_REORDERED_BYTES {
                    let due = now + REORDER_WAIT;
                    self.reordered.push(Reordered { from, sender, identity, delta, due, bytes });
                } else {
                    self.pull(now, from, vec![want]);
                }
            }
            Applied::Forged => {
                self.stats.forged_records += 1;
                self.stats.dropped_malformed += 1;
                self.ban(now, identity, format!("relayed a record of {owner} whose signature does not verify"));
            }
            Applied::Equivocation { key, version, proof } => {
                self.stats.equivocations += 1;
                self.check_copy(now, owner, sender);
                self.events.push_back(Event::CatalogChanged);
                self.events.push_back(Event::Equivocation { owner, key, version });
                self.note_accusations(&owner);
                self.accuse(now, owner, crate::proof::Charge::Equivocation(proof));
                self.review_exclusions_if(false);
            }
            Applied::Changed { new_node, status_changed } => {
                self.stats.deltas_applied += 1;
                // Entries of a kind this build does not know (a newer agent's): kept and relayed
                // as their owner signed them, ignored by every view.
                self.stats.unknown_entries += delta.entries.iter().filter(|e| e.value.is_unknown()).count() as u64;
                self.events.push_back(Event::CatalogChanged);
                self.check_copy(now, owner, sender);
                self.state_advanced(&owner);
                if delta.entries.iter().any(|e| &*e.key == crate::message::KEYRING_KEY) {
                    self.consider_keyring(now, &owner);
                }
                self.consider_revocations(now, &delta);
                if new_node || status_changed {
                    self.update_membership(&owner);
                }
                self.note_accusations(&owner);
                self.review_exclusions_if(false);
                self.note_failures(now, &owner);
                if delta.ttl > 0 && self.forwards_can_teach() {
                    let fwd = Delta { ttl: delta.ttl - 1, ..delta };
                    let pushed = self.spread(now, fwd, &[sender, owner], self.cfg.fanout, true);
                    self.stats.rumors_forwarded += pushed as u64;
                }
                self.resume_reordered(now, owner);
            }
        }
    }

    /// The live node (this one included) other than `except` that holds `name`, if any.
    fn live_holder_of(&self, name: &str, except: &NodeId) -> Option<NodeId> {
        if self.local.name == name && self.local.id != *except {
            return Some(self.local.id);
        }
        self.table
            .iter()
            .find(|n| {
                n.info.name == name
                    && n.info.id != *except
                    && n.status() == NodeStatus::Alive
                    && self.liveness(&n.info.id).serves()
            })
            .map(|n| n.info.id)
    }

    pub(super) fn update_membership(&mut self, id: &NodeId) {
        let Some(node) = self.table.get(id) else { return };
        let info = node.info.clone();
        match node.status() {
            NodeStatus::Alive if !self.liveness(id).serves() => {}
            NodeStatus::Alive => {
                self.returned(id);
                if self.peers.insert(*id) {
                    self.seed_backoff = self.cfg.seed_backoff_min;
                    self.events.push_back(Event::MemberJoined(info));
                }
            }
            NodeStatus::Left => {
                self.suspicions.remove(id);
                self.failures.failed_at.remove(id);
                self.departed(self.last_now, *id);
                if self.peers.remove(id) {
                    self.active.retain(|a| a != id);
                    self.events.push_back(Event::MemberLeft(info));
                }
            }
        }
    }
}
