//! Failure detection (SWIM-style, on the traffic anti-entropy already sends) and
//! self-preservation.
//!
//! - **Probing.** Each anti-entropy exchange with an active-view partner is a probe: its answer
//!   is the ack. No answer within `probe_timeout`: a direct `Ping` and `PingReq`s through
//!   `indirect_probes` other peers. Still nothing by twice `probe_timeout`: the partner is
//!   **suspect**. Any authenticated message from a node clears its pending probes.
//! - **Suspicion** spreads as a rumor naming the state version the accuser held. A replica that
//!   holds a newer state of the suspect ignores it; the suspect itself refutes by writing a fresh
//!   signed status entry, which spreads and clears the suspicion everywhere.
//! - **Confirmation** (Lifeguard's idea, applied locally): a replica that hears of a suspicion
//!   probes the suspect itself at once (direct ping, then indirect). Its answer clears the
//!   suspicion here and tells the suspect to refute; no answer *confirms* it. A confirmed
//!   suspicion becomes **dead** after `suspicion_confirmed`; one only heard of waits the full
//!   suspicion timeout (`suspicion_mult × log10(N)` rounds, at least `suspicion_min`), and so
//!   does one confirmed while this node was **loaded** (its timers ran late within
//!   [`LOADED_MEMORY`]: its probe's silence then says less).
//! - **Death is replicated state** (`death.rs`): the first replica to declare a death writes a
//!   failure record, which every agent that syncs learns with the rest of the catalog.
//! - **Dead nodes** are still probed now and then; one that answers is alive again here, and is
//!   told it was suspected so that it refutes everywhere (healed partitions, reboots).
//! - **Self-preservation** (Eureka's guard), in two parts. A *death-rate budget*: at most
//!   `self_preservation_burst` of the cluster (at least one node) is declared dead per
//!   `self_preservation_burst_window`; ripe suspicions beyond it wait (still served), oldest
//!   first. And a *stop*: when more than `self_preservation_share` of the cluster is suspect or
//!   died within `self_preservation_window`, the agent suspects its own network and declares no
//!   death until the share falls below half of that, or for at most
//!   `self_preservation_max_hold` (then ripe suspicions die again at the budget: a lasting loss
//!   is not served forever, and the stop cannot deadlock on the suspects it holds). A
//!   simultaneous loss of most peers
//!   therefore evicts at most the budget before the stop engages, while ordinary churn (deaths
//!   spread over time) only ever meets the budget.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Event, Gossip};
use crate::message::{Message, NodeStatus, STATUS_KEY, Value};
use crate::types::NodeId;

/// How a replica sees a node's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Answering (or not yet doubted).
    Alive,
    /// Missed its probes; still served until the suspicion times out.
    Suspect,
    /// Suspicion timed out: out of peers and answers.
    Dead,
    /// Excluded by a majority of accusations (see `accuse.rs`): out of peers and answers, and
    /// what it sends is dropped.
    Excluded,
}

impl Liveness {
    /// True if the node's services are answered.
    pub fn serves(self) -> bool {
        matches!(self, Liveness::Alive | Liveness::Suspect)
    }
}

/// A doubt about a node.
#[derive(Debug, Clone)]
pub(super) struct Suspicion {
    pub(super) since: Instant,
    pub(super) generation: u64,
    pub(super) version: u64,
    pub(super) dead: bool,
    /// This node's own probe went unanswered too (it raised the suspicion, or probed the
    /// suspect when it heard of it).
    confirmed: bool,
    /// This node raised it (its own probe of a partner failed first).
    raised: bool,
    /// This node was loaded ([`Gossip::loaded`]) when it confirmed the suspicion: it waits the
    /// heard-of timeout. Decided once, so that the deadline does not move with time (a
    /// deadline that moved earlier, into the past, would look like a pause at every wake-up).
    patient: bool,
    /// Ripe, but held back by the death-rate budget (counted once).
    held: bool,
    /// Dead, and this node still owes a failure record at this time unless one is held by then
    /// (`death.rs`).
    pub(super) record_due: Option<Instant>,
}

impl Suspicion {
    /// A fresh suspicion of the state `(generation, version)`, raised by this node or heard of.
    pub(super) fn new(since: Instant, generation: u64, version: u64, raised: bool) -> Suspicion {
        Suspicion {
            since,
            generation,
            version,
            dead: false,
            confirmed: raised,
            raised,
            patient: false,
            held: false,
            record_due: None,
        }
    }
}

/// A probe in flight.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) target: NodeId,
    nonce: u64,
    /// When its clock starts (later than when it was sent if a handshake must run first).
    started: Instant,
    indirect: bool,
}

impl Probe {
    fn new(target: NodeId, nonce: u64, started: Instant) -> Probe {
        Probe { target, nonce, started, indirect: false }
    }
}

/// A probe made on another node's behalf.
#[derive(Debug, Clone)]
pub(super) struct Relay {
    nonce_out: u64,
    requester: SocketAddr,
    nonce_in: u64,
    target: NodeId,
    started: Instant,
}

const MAX_RELAYS: usize = 64;

/// A deadline met later than this means this node was not running (CPU starvation, a stopped
/// process, a suspended VM), not that its peers were slow: [`Gossip::detect_pause`]. A loaded
/// but running agent meets its timers within milliseconds; this is a fifth of the default
/// probe timeout.
pub const PAUSE_THRESHOLD: Duration = Duration::from_millis(100);

/// A deadline met this late means this node is loaded (sharing its CPU with a start-up storm,
/// say), if not paused: for [`LOADED_MEMORY`] afterwards a suspicion its own probe confirms
/// waits the heard-of timeout, and it probes a member another replica recorded as failed
/// before it adopts the record (`death.rs`), since the recorder may have been as starved as
/// this node and the member only slow.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(25);

/// How long a late timer marks this node as loaded.
pub const LOADED_MEMORY: Duration = Duration::from_secs(10);

/// About how many replicas without a session to a suspect probe it when they hear of the
/// suspicion ([`Gossip::confirm_probe`]).
const CONFIRMERS: f64 = 8.0;

impl Gossip {
    /// Called with the earliest deadline this node had asked for, when its timer finally runs at
    /// `now`. Past [`PAUSE_THRESHOLD`], the node was not run: answers to its probes and
    /// refutations of its suspicions may be sitting unread in its socket, and the timer (which
    /// a driver may well run before reading them) would otherwise count them as silence. So
    /// every probe and undecided suspicion clock moves on by the lag: deadlines measure the time
    /// this node was there to listen. It also raises the local health score once (a node that
    /// pauses is a slow one), counts the pause, and tells the driver ([`Event::Paused`]).
    pub(super) fn detect_pause(&mut self, now: Instant, due: Instant) {
        let lag = now.saturating_duration_since(due);
        if lag >= LATE_THRESHOLD {
            self.last_late = Some(now);
        }
        if lag <= PAUSE_THRESHOLD {
            return;
        }
        for p in &mut self.probes {
            p.started += lag;
        }
        for s in self.suspicions.values_mut().filter(|s| !s.dead) {
            s.since += lag;
        }
        for r in &mut self.relays {
            r.started += lag;
        }
        self.stats.pauses += 1;
        self.stats.pause_max_ms = self.stats.pause_max_ms.max(lag.as_millis() as u64);
        self.adjust_health(true);
        self.events.push_back(Event::Paused { lag });
    }

    /// True if a timer of this node ran late ([`LATE_THRESHOLD`]) within [`LOADED_MEMORY`].
    pub(super) fn loaded(&self, now: Instant) -> bool {
        self.last_late.is_some_and(|t| now.saturating_duration_since(t) < LOADED_MEMORY)
    }

    /// The liveness of a node as this replica sees it.
    pub fn liveness(&self, id: &NodeId) -> Liveness {
        if self.is_excluded(id) {
            return Liveness::Excluded;
        }
        self.suspicion_state(id)
    }

    /// Liveness from probes and suspicions alone.
    pub(super) fn suspicion_state(&self, id: &NodeId) -> Liveness {
        match self.suspicions.get(id) {
            None => Liveness::Alive,
            Some(s) if s.dead => Liveness::Dead,
            Some(_) => Liveness::Suspect,
        }
    }

    /// True while self-preservation holds deaths back.
    pub fn self_preservation(&self) -> bool {
        self.self_preservation
    }

    /// Timeout of a suspicion only heard of.
    fn suspicion_timeout(&self) -> Duration {
        let n = (self.peers.len() + 1) as f64;
        let scaled = self.cfg.gossip_interval.mul_f64(self.cfg.suspicion_mult * n.log10().max(1.0));
        scaled.max(self.cfg.suspicion_min)
    }

    /// When a suspicion ripens into a death.
    fn ripens_at(&self, s: &Suspicion, slow: Duration) -> Instant {
        // Both deadlines stretch with the local health score, as the probes do: a node whose
        // own probes fail hears refutations late too. And a suspicion this node confirmed
        // while its own timers ran late (`patient`, decided then) confirms less: the machine
        // is starved (a start-up storm), so the suspect likely is too, and may be only slow. It
        // waits at least the heard-of timeout (Lifeguard's longer bound): a crash is still
        // declared within a few seconds, and a member starved for two is not. At least, not
        // that times the health factor: both say this node is slow, and multiplied they kept a
        // loaded node from declaring a crash for half a minute.
        let f = self.health_factor();
        let fast = self.cfg.suspicion_confirmed.min(slow) * f;
        let confirmed = if s.patient { fast.max(slow) } else { fast };
        s.since + if s.confirmed { confirmed } else { slow * f }
    }

    /// A suspicion only heard of waits for this node's own probe of the suspect, if one is in
    /// flight: its answer clears the suspicion, its failure confirms it. (Under load the probe
    /// is stretched by the local health score, and the heard-of timeout alone would kill a peer
    /// that is merely slow to answer.)
    fn awaits_own_probe(&self, id: &NodeId, s: &Suspicion) -> bool {
        !s.confirmed && self.probes.iter().any(|p| p.target == *id)
    }

    /// `1 + score`: how much this node's probe and suspicion deadlines stretch while its probes go
    /// unanswered (Lifeguard's local health multiplier).
    pub(super) fn health_factor(&self) -> u32 {
        1 + self.health
    }

    /// The probe timeout, stretched by the local health.
    fn probe_timeout(&self) -> Duration {
        self.cfg.probe_timeout * self.health_factor()
    }

    /// This node's local health score (0: healthy; see [`Config::max_local_health`]).
    pub fn local_health(&self) -> u32 {
        self.health
    }

    /// Moves the local health score by one (up: a probe of ours failed, or we had to refute a
    /// suspicion of ourselves; down: a probe was answered in time), and reports crossings.
    fn adjust_health(&mut self, up: bool) {
        let max = self.cfg.max_local_health;
        self.health = if up { (self.health + 1).min(max) } else { self.health.saturating_sub(1) };
        if up {
            self.stats.local_health_raised += 1;
        }
        self.stats.local_health = u64::from(self.health);
        let slow = max > 0 && self.health * 2 >= max;
        if slow && !self.health_slow {
            self.health_slow = true;
            self.events.push_back(Event::LocalHealth { slow: true, score: self.health });
        } else if self.health_slow && self.health == 0 {
            self.health_slow = false;
            self.events.push_back(Event::LocalHealth { slow: false, score: 0 });
        }
    }

    /// Registers the probe that an exchange opened with `target` is. With no session to the
    /// target yet, its clock starts one probe timeout later: the handshake must run first, and
    /// under load (cookies) it takes longer than the exchange itself.
    pub(super) fn start_probe(&mut self, now: Instant, target: NodeId) {
        if self.probes.iter().any(|p| p.target == target) || !self.liveness(&target).serves() {
            return;
        }
        let nonce = self.rng.next_u64();
        let start = now + self.handshake_allowance(now, &target);
        self.probes.push(Probe::new(target, nonce, start));
    }

    /// How much later a probe's clock starts: a probe timeout if a handshake must run first.
    fn handshake_allowance(&self, now: Instant, target: &NodeId) -> Duration {
        let addr = self.table.get(target).map(|n| n.info.addr);
        match addr {
            Some(a) if self.secure.session_version(now, a).is_none() => self.probe_timeout(),
            _ => Duration::ZERO,
        }
    }

    /// Probes a node this replica just heard is suspect, to confirm or clear the suspicion
    /// itself: a direct ping now, indirect pings after `probe_timeout`. Only over a session
    /// already up, or else at random by about [`CONFIRMERS`] of the cluster: every replica
    /// opening a handshake with the suspect at once (a hundred of them within milliseconds)
    /// loaded a node that was perhaps only slow, and in a start-up storm made it slower; the
    /// replicas that do not probe wait the heard-of timeout.
    fn confirm_probe(&mut self, now: Instant, target: NodeId) {
        if self.probes.iter().any(|p| p.target == target) {
            return;
        }
        let warm = self.table.get(&target).is_some_and(|n| self.secure.session_version(now, n.info.addr).is_some());
        let share = CONFIRMERS / (self.peers.len() as f64 + 1.0);
        if !warm && self.rng.unit() >= share {
            return;
        }
        let nonce = self.rng.next_u64();
        let start = now + self.handshake_allowance(now, &target);
        self.probes.push(Probe::new(target, nonce, start));
        let me = self.local.id;
        self.send_to_node(now, &target, &Message::Ping { sender: me, nonce });
    }

    /// An authenticated message arrived from `id`: it is alive.
    pub(super) fn heard_from(&mut self, now: Instant, from: SocketAddr, id: NodeId, answer: bool) {
        self.probes_answered(now, answer, |p| p.target == id);
        self.last_heard.insert(id, now);
        // The node itself speaks: whatever was collected of it, it exists (a long partition
        // healed); its state is relearned through the ordinary exchange.
        self.forgotten.remove(&id);
        if let Some(s) = self.suspicions.remove(&id) {
            let was_dead = s.dead;
            if was_dead {
                self.update_membership(&id);
                self.events.push_back(Event::CatalogChanged);
            }
            // Tell it, so that it refutes for everyone else.
            let msg = Message::Suspect {
                sender: self.local.id,
                ttl: 0,
                target: id,
                generation: s.generation,
                version: s.version,
            };
            self.send(now, from, &msg);
        }
    }

    /// The owner's state of `id` moved past a suspected version: the suspicion is refuted.
    pub(super) fn state_advanced(&mut self, id: &NodeId) {
        let Some(s) = self.suspicions.get(id) else { return };
        let Some(n) = self.table.get(id) else { return };
        if (n.info.generation, n.max_version) > (s.generation, s.version) {
            let was_dead = s.dead;
            self.suspicions.remove(id);
            if was_dead {
                self.update_membership(id);
                self.events.push_back(Event::CatalogChanged);
            }
        }
    }

    pub(super) fn on_ping(&mut self, now: Instant, from: SocketAddr, nonce: u64) {
        let me = self.local.id;
        self.send(now, from, &Message::Ack { sender: me, nonce, target: me });
    }

    pub(super) fn on_ping_req(&mut self, now: Instant, from: SocketAddr, nonce: u64, target: NodeId) {
        if target == self.local.id {
            return self.on_ping(now, from, nonce);
        }
        if self.relays.len() >= MAX_RELAYS || self.table.get(&target).is_none() {
            return;
        }
        let nonce_out = self.rng.next_u64();
        self.relays.push(Relay { nonce_out, requester: from, nonce_in: nonce, target, started: now });
        self.send_to_node(now, &target, &Message::Ping { sender: self.local.id, nonce: nonce_out });
    }

    /// Removes the probes `answered` says were answered; each answered by an `answer` (an
    /// exchange's reply, an ack) within the unstretched probe timeout lowers the local health
    /// score. (A late answer, within only the stretched deadline, leaves it: else a node
    /// slower than the base timeout would rise and fall by one each probe, and keep accusing
    /// its peers every other round.)
    fn probes_answered(&mut self, now: Instant, answer: bool, answered: impl Fn(&Probe) -> bool) {
        let prompt = self.cfg.probe_timeout;
        let mut n = 0;
        self.probes.retain(|p| {
            let done = answered(p);
            if done && answer && now < p.started + prompt {
                n += 1;
            }
            !done
        });
        for _ in 0..n {
            if self.health > 0 {
                self.adjust_health(false);
            }
        }
    }

    pub(super) fn on_ack(&mut self, now: Instant, nonce: u64, target: NodeId) {
        self.probes_answered(now, true, |p| p.target == target && p.nonce == nonce);
        if let Some(i) = self.relays.iter().position(|r| r.nonce_out == nonce && r.target == target) {
            let r = self.relays.swap_remove(i);
            self.send(now, r.requester, &Message::Ack { sender: self.local.id, nonce: r.nonce_in, target });
        }
    }

    pub(super) fn on_suspect(
        &mut self,
        now: Instant,
        sender: NodeId,
        ttl: u8,
        target: NodeId,
        generation: u64,
        version: u64,
    ) {
        let loaded = self.loaded(now);
        if target == self.local.id {
            // Refute: a fresh signed status entry supersedes the suspected version everywhere.
            // (A suspicion beyond the newest state was refused, and its sender banned, on receipt.)
            if generation == self.local.generation && version >= self.own_version() {
                self.stats.refutations += 1;
                self.write_local(now, STATUS_KEY, Value::Status(NodeStatus::Alive));
                // Suspected though alive: likelier slow here than the accuser wrong.
                self.adjust_health(true);
            }
            return;
        }
        let Some(n) = self.table.get(&target) else { return };
        let held = (n.info.generation, n.max_version);
        if held > (generation, version) {
            return;
        }
        if let Some(s) = self.suspicions.get_mut(&target) {
            // Our own probe of a node already suspect: it confirms the suspicion here.
            if sender == self.local.id && !s.confirmed && (s.generation, s.version) == held {
                s.confirmed = true;
                s.patient = loaded;
                self.stats.suspicions_confirmed += 1;
            }
            return;
        }
        if (generation, version) > held {
            // A suspicion must name a state that exists, or the target could never refute it
            // (its next version would not be past it). This replica cannot tell a sender that
            // is ahead from one that lies, so it neither adopts nor forwards the claim; what is
            // forwarded is therefore always a state held, i.e. signed by the target.
            self.stats.suspicions_beyond_held += 1;
            return;
        }
        if n.status() != NodeStatus::Alive {
            return;
        }
        self.start_suspicion(now, target, (generation, version), sender == self.local.id);
        if ttl > 0 {
            self.spread_suspicion(now, (target, generation, version), ttl - 1, &[sender, target]);
        }
    }

    /// Marks `target` suspect here, of its state `held`: raised by this node (its own probe
    /// failed: confirmed, and patient if it is loaded), or heard of (a suspicion rumor, or a
    /// failure record a loaded node holds back), which this node's own probe then confirms or
    /// clears.
    pub(super) fn start_suspicion(&mut self, now: Instant, target: NodeId, held: (u64, u64), raised: bool) {
        let mut s = Suspicion::new(now, held.0, held.1, raised);
        s.patient = raised && self.loaded(now);
        self.suspicions.insert(target, s);
        self.stats.suspicions += 1;
        if raised {
            self.stats.suspicions_raised += 1;
        } else {
            self.confirm_probe(now, target);
        }
        self.events.push_back(Event::MemberSuspect(target));
    }

    fn suspect(&mut self, now: Instant, target: NodeId) {
        let Some(n) = self.table.get(&target) else { return };
        let (generation, version) = (n.info.generation, n.max_version);
        let ttl = self.rumor_ttl();
        let me = self.local.id;
        self.on_suspect(now, me, ttl, target, generation, version);
    }

    /// Advances probes, suspicions and relays; returns the earliest deadline left.
    pub(super) fn liveness_timeout(&mut self, now: Instant) {
        let t = self.probe_timeout();
        let mut due_indirect = Vec::new();
        let mut due_suspect = Vec::new();
        for p in &mut self.probes {
            if !p.indirect && now >= p.started + t {
                p.indirect = true;
                due_indirect.push((p.target, p.nonce));
            } else if p.indirect && now >= p.started + t * 2 {
                due_suspect.push(p.target);
            }
        }
        // Lifeguard's local health: each probe of ours that fails raises the score by 2, each
        // answered promptly lowers it by 1 (memberlist adds one per helper that sent no nack),
        // so the score climbs only once more than a third of the probes fail: then this node
        // is likelier the slow one (starved of CPU, its queue late) than most of its peers
        // dead, and its deadlines stretch. A real death is one failure among answered probes
        // and falls back within a few rounds. A probe of a node another member already
        // suspects does not count: it agrees with the cluster, so says nothing of this node
        // (memberlist learns this from the nacks); a mass loss raises the score far less than a
        // slow node's own doubts.
        let failed = self
            .probes
            .iter()
            .filter(|p| due_suspect.contains(&p.target) && !self.suspicions.contains_key(&p.target))
            .count();
        self.probes.retain(|p| !due_suspect.contains(&p.target));
        for _ in 0..failed * 2 {
            self.adjust_health(true);
        }
        for (target, nonce) in due_indirect {
            let me = self.local.id;
            self.send_to_node(now, &target, &Message::Ping { sender: me, nonce });
            // Helpers with a session first (as rumor targets): asking cold ones costs each a
            // handshake at the moment this node may be the slow one.
            let warm = self.secure.warm_peers(now);
            for helper in self.rumor_targets(&warm, self.cfg.indirect_probes, &[target]) {
                self.send_to_node(now, &helper, &Message::PingReq { sender: me, nonce, target });
            }
        }
        for target in due_suspect {
            self.suspect(now, target);
        }
        let relay = self.cfg.probe_timeout * 3;
        self.relays.retain(|r| now < r.started + relay);

        self.ripen(now);
    }

    /// Declares the ripe suspicions dead, unless too much of the cluster seems to be failing at
    /// once (self-preservation: none dies), and no faster than the death-rate budget (the oldest
    /// suspicions first; the rest wait for the budget). A death shrinks the cluster and with it
    /// the suspicion timeout, which can ripen more suspicions: repeat until none is ripe (each
    /// pass kills at least one, so this ends).
    fn ripen(&mut self, now: Instant) {
        let window = self.cfg.self_preservation_window;
        self.recent_deaths.retain(|d| now < *d + window);
        let burst_window = self.cfg.self_preservation_burst_window;
        let threshold = self.cfg.self_preservation_share;
        self.death_hold = None;
        loop {
            let slow = self.suspicion_timeout();
            let mut ripe: Vec<(Instant, NodeId)> = self
                .suspicions
                .iter()
                .filter(|(id, s)| !s.dead && !self.awaits_own_probe(id, s) && now >= self.ripens_at(s, slow))
                .map(|(id, s)| (s.since, *id))
                .collect();
            ripe.sort();
            let suspects = self.suspicions.values().filter(|s| !s.dead).count();
            let failing = suspects + self.recent_deaths.len();
            let cluster = self.peers.len() + self.recent_deaths.len();
            let share = if cluster == 0 { 0.0 } else { failing as f64 / cluster as f64 };
            let preserve = cluster >= 3 && share > threshold;
            if preserve != self.self_preservation && (preserve || suspects == 0 || share < threshold / 2.0) {
                self.self_preservation = preserve;
                self.preserving_since = preserve.then_some(now);
                self.events.push_back(Event::SelfPreservation { engaged: preserve, failing, cluster });
            }
            let holding = self.self_preservation
                && self.preserving_since.is_none_or(|t| now < t + self.cfg.self_preservation_max_hold);
            if holding || ripe.is_empty() {
                return;
            }
            let burst: Vec<Instant> = self.recent_deaths.iter().copied().filter(|d| now < *d + burst_window).collect();
            let budget = ((cluster as f64 * self.cfg.self_preservation_burst).floor() as usize).max(1);
            let allowed = budget.saturating_sub(burst.len()).min(ripe.len());
            for (_, id) in &ripe[allowed..] {
                if let Some(s) = self.suspicions.get_mut(id) {
                    if !s.held {
                        s.held = true;
                        self.stats.deaths_held += 1;
                    }
                }
            }
            if allowed == 0 {
                // Over the budget: wait until the oldest death in the window leaves it.
                self.death_hold = burst.iter().min().map(|d| *d + burst_window);
                return;
            }
            for (_, id) in ripe.into_iter().take(allowed) {
                self.declare_dead(now, id, true);
            }
        }
    }

    /// Marks `id` dead here: out of peers and answers. `counted`: a death this node detected
    /// (it counts towards self-preservation and owes a failure record); otherwise one learned
    /// from a record.
    pub(super) fn declare_dead(&mut self, now: Instant, id: NodeId, counted: bool) {
        let Some(n) = self.table.get(&id) else { return };
        let (generation, version) = (n.info.generation, n.max_version);
        let s = self.suspicions.entry(id).or_insert_with(|| Suspicion::new(now, generation, version, false));
        if s.dead {
            return;
        }
        s.dead = true;
        if counted {
            // The node that raised the suspicion records it at once; the others wait a little,
            // so that one record (theirs) usually suffices.
            let delay = if s.raised { Duration::ZERO } else { self.cfg.gossip_interval.mul_f64(self.rng.unit()) };
            s.record_due = Some(now + delay);
            self.recent_deaths.push(now);
            self.stats.deaths += 1;
        } else {
            self.stats.deaths_learned += 1;
        }
        self.failures.failed_at.insert(id, now);
        self.peers.remove(&id);
        self.active.retain(|a| *a != id);
        self.probes.retain(|p| p.target != id);
        self.events.push_back(Event::MemberFailed(id));
        self.events.push_back(Event::CatalogChanged);
    }

    /// The earliest liveness deadline.
    pub(super) fn liveness_deadline(&self) -> Option<Instant> {
        let t = self.probe_timeout();
        let probe = self.probes.iter().map(|p| if p.indirect { p.started + t * 2 } else { p.started + t }).min();
        // While self-preservation holds deaths back, ripe suspicions are looked at again each
        // round, not at their (past) deadline: that would wake the driver in a loop.
        let slow = self.suspicion_timeout();
        let suspicion = if self.self_preservation {
            None
        } else {
            let hold = self.death_hold;
            self.suspicions
                .iter()
                .filter(|(id, s)| !s.dead && !self.awaits_own_probe(id, s))
                .map(|(_, s)| self.ripens_at(s, slow))
                .map(|t| hold.map_or(t, |h| t.max(h)))
                .min()
        };
        [probe, suspicion].into_iter().flatten().min()
    }

    /// A dead node to probe this round, now and then.
    pub(super) fn dead_to_probe(&mut self) -> Option<NodeId> {
        let dead: Vec<NodeId> = self.suspicions.iter().filter(|(_, s)| s.dead).map(|(id, _)| *id).collect();
        if dead.is_empty() || self.rng.unit() >= self.cfg.dead_probe_probability {
            return None;
        }
        Some(dead[self.rng.index(dead.len())])
    }
}
