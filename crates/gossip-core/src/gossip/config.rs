//! Configuration, events, counters and command errors of the state machine.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secure::keys::IdentityPub;
use crate::types::{NodeId, NodeInfo};

/// Tunables. The defaults suit a LAN.
#[derive(Debug, Clone)]
pub struct Config {
    /// Period of anti-entropy rounds (each node starts one exchange per period), ±10% jitter.
    pub gossip_interval: Duration,
    /// Peers a fresh change is pushed to, and that each receiver forwards it to.
    pub fanout: usize,
    /// Period of rumor retransmission ticks (only while rumors are queued).
    pub rumor_interval: Duration,
    /// Each rumor is retransmitted `retransmit_mult × ⌈log10(N + 1)⌉` times after its first
    /// push (memberlist's `RetransmitMult`).
    pub retransmit_mult: u32,
    /// Size of the active view: the peers anti-entropy rounds go to (sessions kept warm).
    pub active_view: usize,
    /// Probability per round of replacing one active peer with a random other peer.
    pub active_rotation: f64,
    /// Seed addresses to join through.
    pub seeds: Vec<SocketAddr>,
    /// Seeds pinned to an identity: a seed at such an address must prove it.
    pub pinned_seeds: Vec<(SocketAddr, crate::secure::keys::IdentityPub)>,
    /// First retry delay while no peer is known; doubles up to `seed_backoff_max`.
    pub seed_backoff_min: Duration,
    /// Longest retry delay while no peer is known.
    pub seed_backoff_max: Duration,
    /// Probability that a round goes to a seed rather than a peer (heals partitions).
    pub seed_probability: f64,
    /// Most owners pushed or served in answer to one message (bounds bursts).
    pub max_push_per_message: usize,
    /// Seed of the node's random number generator (peer choice, jitter).
    pub rng_seed: u64,
    /// How long an exchange (probe) may go unanswered before indirect probes.
    pub probe_timeout: Duration,
    /// Peers asked to probe an unanswering partner.
    pub indirect_probes: usize,
    /// Shortest suspicion before a node is declared dead.
    pub suspicion_min: Duration,
    /// Suspicion timeout = max(`suspicion_min`, mult × log10(N) × gossip interval), for a
    /// suspicion only heard of (Lifeguard's upper bound).
    pub suspicion_mult: f64,
    /// Suspicion timeout for a suspicion this node confirmed with a probe of its own (it raised
    /// it, or probed the suspect when it heard of it and got no answer either).
    pub suspicion_confirmed: Duration,
    /// Highest local health score (Lifeguard's local health multiplier, memberlist's
    /// awareness): the score rises when this node's own probes go unanswered or it must refute
    /// a suspicion of itself, falls with each probe answered in time, and stretches the probe
    /// timeout and the suspicion deadlines by `1 + score` (so a slow node neither raises nor
    /// confirms suspicions of peers that answer it late, nor kills them before their
    /// refutation reaches it). 0 turns it off.
    pub max_local_health: u32,
    /// Share of the cluster suspect or recently dead above which the agent suspects its own
    /// network and stops declaring deaths.
    pub self_preservation_share: f64,
    /// Window in which deaths count towards self-preservation.
    pub self_preservation_window: Duration,
    /// Share of the cluster (at least one node) that may be declared dead within
    /// `self_preservation_burst_window`: the death-rate budget. Ripe suspicions beyond it wait,
    /// so a simultaneous loss of most peers evicts at most this share before the
    /// self-preservation stop engages (Eureka counts renewals per window the same way).
    pub self_preservation_burst: f64,
    /// Window of the death-rate budget.
    pub self_preservation_burst_window: Duration,
    /// Longest the self-preservation stop holds deaths back; past it, ripe suspicions die again,
    /// at the death-rate budget, even while the share stays high (so a real loss of most of the
    /// cluster, or a long partition, is not served forever, and the stop never deadlocks on the
    /// very suspects it holds).
    pub self_preservation_max_hold: Duration,
    /// Probability per round of probing a dead node instead (to notice its return).
    pub dead_probe_probability: f64,
    /// Garbage collection grace: a left or dead node's state is dropped this long after it
    /// departed, and an owner whose oldest tombstone is this old re-incarnates (a new
    /// generation holding only its live entries) so that replicas resync without it.
    pub gc_grace: Duration,
    /// A failed (not left) node's state is collected this long after it was declared failed
    /// (the time in its failure record, so that every replica collects it together).
    pub failed_grace: Duration,
    /// Stamp of the keyring the node starts with (0 for one given on the command line; the
    /// stored stamp for one adopted or changed earlier).
    pub keyring_stamp: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            gossip_interval: Duration::from_secs(1),
            fanout: 4,
            rumor_interval: Duration::from_millis(50),
            retransmit_mult: 2,
            active_view: 8,
            active_rotation: 0.125,
            seeds: Vec::new(),
            pinned_seeds: Vec::new(),
            seed_backoff_min: Duration::from_millis(500),
            seed_backoff_max: Duration::from_secs(30),
            seed_probability: 0.05,
            max_push_per_message: 64,
            rng_seed: 0,
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_min: Duration::from_secs(2),
            suspicion_mult: 2.0,
            suspicion_confirmed: Duration::from_secs(1),
            max_local_health: 8,
            self_preservation_share: 0.4,
            self_preservation_window: Duration::from_secs(30),
            self_preservation_burst: 0.1,
            self_preservation_burst_window: Duration::from_secs(5),
            self_preservation_max_hold: Duration::from_secs(60),
            dead_probe_probability: 0.1,
            gc_grace: Duration::from_secs(24 * 3600),
            failed_grace: Duration::from_secs(3600),
            keyring_stamp: 0,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// The whole datagram, at most [`crate::session::MAX_DATAGRAM`] bytes.
    pub payload: Vec<u8>,
}

/// Something the driver may want to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Some service entry or node status changed: rebuild views (DNS snapshot, API index).
    CatalogChanged,
    /// A node became known and alive.
    MemberJoined(NodeInfo),
    /// A node announced it left.
    MemberLeft(NodeInfo),
    /// A node missed its probes and is suspected.
    MemberSuspect(NodeId),
    /// A suspected node did not refute in time: dead, out of answers.
    MemberFailed(NodeId),
    /// Self-preservation engaged (too many nodes seem to fail at once: deaths are held back) or
    /// released.
    SelfPreservation {
        /// True when engaged.
        engaged: bool,
        /// Nodes suspect or recently dead.
        failing: usize,
        /// Size of the cluster it was measured against.
        cluster: usize,
    },
    /// This node's local health score crossed half its maximum (`slow`: its own probes keep
    /// going unanswered, so it is likelier slow itself, starved of CPU or network, than its
    /// peers dead; its probe and suspicion deadlines are stretched by `1 + score`) or fell back to 0.
    LocalHealth {
        /// True when degraded (score at or above half the maximum), false when recovered.
        slow: bool,
        /// The score now.
        score: u32,
    },
    /// This node was not run for `lag` past one of its deadlines (longer than
    /// [`PAUSE_THRESHOLD`](super::liveness::PAUSE_THRESHOLD)): what its peers sent meanwhile is
    /// still queued, unread, so its probe and suspicion clocks were moved on by `lag` rather than
    /// blaming peers for its own absence (Cassandra's failure detector ignores such pauses the
    /// same way). Frequent pauses mean a host too loaded for its agent.
    Paused {
        /// How late the deadline was met.
        lag: Duration,
    },
    /// An authenticated peer sent malformed or forged data and was banned.
    Banned {
        /// Who.
        identity: IdentityPub,
        /// Why.
        reason: String,
        /// For how long.
        period: Duration,
    },
    /// A node claimed a name that a different live identity holds: it was refused (its state is
    /// not applied, so it is in no answer). If `newcomer` is this node, another node holds our
    /// name.
    DuplicateName {
        /// The contested name.
        name: String,
        /// The live node holding it.
        holder: NodeId,
        /// The refused node.
        newcomer: NodeId,
    },
    /// This node re-incarnated under a new generation (tombstone collection): persist it.
    GenerationChanged(u64),
    /// A member sent an application query (wire version 6): answer it with
    /// `Gossip::send_answer(from, id, ...)`, or not at all.
    Query {
        /// The member that asked (authenticated by its session).
        from: NodeId,
        /// Its id for the query.
        id: u64,
        /// The query, at most `MAX_APP_BODY` bytes.
        body: Vec<u8>,
    },
    /// One part of the answer to an application query this node sent; parts may arrive in any
    /// order, twice or not at all (the application reassembles, and gives up at its deadline).
    Answer {
        /// The member that answered.
        from: NodeId,
        /// The query's id.
        id: u64,
        /// This part, below `parts`.
        part: u8,
        /// The number of parts.
        parts: u8,
        /// The part's bytes.
        body: Vec<u8>,
    },
    /// A departed node's state was collected.
    MemberForgotten(NodeId),
    /// The cluster keyring changed (an operator's change, here or adopted from a peer): persist
    /// it. Keys primary first.
    KeyringChanged {
        /// Ordering stamp of the keyring now in force.
        stamp: u64,
        /// The keys, primary first.
        keys: Vec<[u8; 32]>,
    },
    /// A replica refused an owner's delta: it broke its certificate's grants or quota, or has no
    /// valid certificate (reported once per owner and reason).
    Refused {
        /// The owner.
        owner: NodeId,
        /// The name it claims.
        name: String,
        /// Why.
        reason: String,
    },
    /// A handshake was refused for its certificate (reported once per identity and reason).
    CertRefused {
        /// Where it came from.
        peer: SocketAddr,
        /// The identity it proved.
        identity: IdentityPub,
        /// Why.
        reason: String,
    },
    /// A peer's handshake showed its clock off from ours by more than 30 s (reported once per
    /// identity and order of magnitude). It is admitted while within `tolerated`.
    ClockSkew {
        /// Where it came from.
        peer: SocketAddr,
        /// Its identity.
        identity: IdentityPub,
        /// Its clock minus ours, in seconds.
        offset_secs: i64,
        /// The skew tolerated (seconds).
        tolerated: u64,
    },
    /// A handshake was refused because the peer speaks no wire version this node speaks
    /// (reported once per identity and range).
    VersionRefused {
        /// Where it came from.
        peer: SocketAddr,
        /// The identity it proved.
        identity: IdentityPub,
        /// The versions this node speaks.
        ours: crate::version::VersionRange,
        /// The versions the peer speaks.
        theirs: crate::version::VersionRange,
    },
    /// No seed has answered for a while (this node knows no peer): a wrong or removed cluster
    /// key, a seed down or unreachable, a pin that does not match. Reported with backoff.
    SeedsSilent {
        /// The seeds tried.
        seeds: Vec<SocketAddr>,
        /// Attempts so far.
        attempts: u32,
    },
    /// Handshake initiations from `from` proved no key of the keyring (reported at most once a
    /// minute per source): likely an agent with a wrong or removed cluster key.
    Unadmitted {
        /// The source (unauthenticated: it may be spoofed).
        from: SocketAddr,
        /// How many since the last report.
        count: u64,
    },
    /// Datagrams from `from` failed to decrypt (reported at most once a minute per source):
    /// handshakes that passed admission but did not decrypt (a peer with another static key
    /// than the one it published, a corrupted or forged packet), or transport data under the
    /// session of `identity` (tampering, or a peer that lost the session: it restarts one).
    DecryptFailures {
        /// The source (unauthenticated: it may be spoofed).
        from: SocketAddr,
        /// The identity of the session the transport data claimed, if any.
        identity: Option<crate::secure::keys::IdentityPub>,
        /// How many since the last report.
        count: u64,
    },
    /// A CA-signed revocation was learned: the identity is dropped (persist it).
    Revoked(crate::cert::Revocation),
    /// An owner signed two different entries under one version (proof of misbehaviour).
    Equivocation {
        /// The owner.
        owner: NodeId,
        /// The entry's key.
        key: String,
        /// The version signed twice.
        version: u64,
    },
    /// A majority of live members accuses `node`: it is excluded (out of peers and answers,
    /// its messages dropped). If `node` is this node, the cluster excludes us.
    Excluded {
        /// The excluded node.
        node: NodeId,
        /// How many live members accuse it.
        accusers: usize,
        /// Live members counted (the accused not included).
        members: usize,
        /// The charge.
        reason: String,
    },
    /// An excluded node's accusers no longer form a majority: it is readmitted.
    Readmitted(NodeId),
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Deltas refused for their owner's certificate (missing, invalid, revoked), an ungranted
    /// service, a quota, a keyring change without the operator role or a stamp far ahead.
    pub refused_deltas: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Entries of a value kind this build does not know, received in deltas that were applied
    /// (kept and relayed unchanged, ignored by views).
    pub unknown_entries: u64,
    /// Authenticated payloads that did not decode.
    pub dropped_decode: u64,
    /// Messages that decoded but broke a protocol rule (forged records included).
    pub dropped_malformed: u64,
    /// Anti-entropy rounds started.
    pub rounds: u64,
    /// Deltas that changed the table.
    pub deltas_applied: u64,
    /// Rumor datagrams forwarded.
    pub rumors_forwarded: u64,
    /// Rumor datagrams retransmitted on rumor ticks.
    pub rumor_retransmits: u64,
    /// Deltas refused because a signature did not verify.
    pub forged_records: u64,
    /// Owners caught signing two different entries under one version (each time).
    pub equivocations: u64,
    /// Accusations this node wrote (its own detections, endorsed proofs and bans).
    pub accusations_written: u64,
    /// Accusation entries found not credible (a proof that does not verify), at each review.
    pub accusations_refused: u64,
    /// Authenticated messages dropped because their sender is excluded.
    pub dropped_excluded: u64,
    /// Suspicions this node raised itself: a partner missed its direct and indirect probes.
    pub suspicions_raised: u64,
    /// Times this replica marked a node suspect, whether its own probes failed or a
    /// suspicion rumor arrived (each at most once per suspicion episode).
    pub suspicions: u64,
    /// Times this replica declared a node dead: an unrefuted suspicion timed out, or it adopted
    /// a failure record about a member it knew (see also `deaths_learned`).
    pub deaths: u64,
    /// Suspicions of this node that it refuted with a fresh status entry.
    pub refutations: u64,
    /// Suspicions ignored because they named a state of the target newer than the one held
    /// (the sender may be ahead, or lying: only the target can tell, and bans the liar).
    pub suspicions_beyond_held: u64,
    /// Deaths this replica learned from another member's failure record rather than from its
    /// own timer (a newcomer learning old deaths, or a member that heard of the failure late).
    pub deaths_learned: u64,
    /// Answers cut short by the serving window (a `More` followed).
    pub paced_answers: u64,
    /// Bursts of local writes too large for one rumor (a `More` went to `fanout` peers).
    pub paced_rumors: u64,
    /// Rumors that arrived before an earlier one of their owner and were applied once it came
    /// (held [`REORDER_WAIT`](super::exchange::REORDER_WAIT) at most instead of pulled).
    pub reordered_applied: u64,
    /// Gaps left open by a held rumor's wait, then pulled.
    pub reorder_pulls: u64,
    /// Suspicions heard of that this node's own probe of the suspect then confirmed.
    pub suspicions_confirmed: u64,
    /// Times the local health score rose (a probe failed with its helpers silent too, or this
    /// node refuted a suspicion of itself).
    pub local_health_raised: u64,
    /// The local health score now (a gauge: 0 healthy, up to `max_local_health`).
    pub local_health: u64,
    /// Times this node was not run for longer than [`PAUSE_THRESHOLD`](super::liveness::PAUSE_THRESHOLD)
    /// past a deadline (a CPU-starved host, a stopped process, a suspended VM): its probe and
    /// suspicion clocks were moved on by the pause ([`Event::Paused`]).
    pub pauses: u64,
    /// The longest such pause, in milliseconds.
    pub pause_max_ms: u64,
    /// Messages sent, by kind (index: the kind byte, docs/PROTOCOL.md section 3: 1 reconcile,
    /// 2 delta, 3 request, 4 ping, 5 ack, 6 ping-req, 7 suspect, 8 more, 9 query, 10 answer);
    /// retransmissions included, handshake packets not.
    pub sent_by_kind: [u64; crate::message::MAX_KIND as usize + 1],
    /// Application queries sent (wire version 6; the WAN pool's forwarding).
    pub queries_sent: u64,
    /// Application queries received and handed to the application.
    pub queries_received: u64,
    /// Answers sent (each in one or more parts).
    pub answers_sent: u64,
    /// Queries or answer parts dropped: from a node this one does not know.
    pub dropped_app: u64,
    /// Failure records this node wrote (one per death it declared first).
    pub failure_records_written: u64,
    /// Failure records about a node this replica had just heard from: not adopted, and the node
    /// was told so that it refutes.
    pub failure_records_contradicted: u64,
    /// Failure records about this node that it refuted.
    pub failure_records_refuted: u64,
    /// Failure records of a member this replica knew that arrived while it was loaded (its
    /// timers late): held as a suspicion and probed instead of adopted at once.
    pub failure_records_probed: u64,
    /// Ripe suspicions the death-rate budget held back (each counted once).
    pub deaths_held: u64,
    /// Owner copies found incomplete: still unverified against the owner's signed head a grace
    /// after a delta (a relay withheld entries or the head), once per episode.
    pub incomplete_states: u64,
    /// Pulls of an owner's whole state sent to repair an incomplete copy.
    pub incomplete_pulls: u64,
}

/// Why a local command was refused. Nothing changed when an error is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The encoded instance would not fit one datagram.
    #[error("service definition too large to gossip: {size} bytes encoded, at most {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The instance id is empty or too long.
    #[error("service ID must be 1..={max} bytes")]
    BadId {
        /// Limit.
        max: usize,
    },
    /// The node has left; it accepts no more changes.
    #[error("the node has left the cluster")]
    Left,
    /// A command that names another node named this one.
    #[error("this is the local node: use leave")]
    NotSelf,
    /// A keyring must hold 1 to 16 distinct keys.
    #[error("a keyring must hold 1 to {max} distinct keys")]
    BadKeyring {
        /// Limit.
        max: usize,
    },
    /// This node's certificate does not grant the service.
    #[error("service {service:?} is not granted by this node's certificate (grants: {grants})")]
    NotGranted {
        /// The service name.
        service: String,
        /// The certificate's grants, comma-separated.
        grants: String,
    },
    /// This node's certificate allows no more services.
    #[error("this node's certificate allows at most {max} services")]
    Quota {
        /// The quota.
        max: u32,
    },
    /// A cluster-wide change needs the operator role in this node's certificate.
    #[error("this node's certificate lacks the operator role")]
    NotOperator,
    /// No valid keyring stamp can be made: the stamp in force is far ahead of this clock.
    #[error("the keyring stamp in force ({stamp}) is too far ahead of this clock ({wall}); fix the clock, or wait")]
    KeyringStamp {
        /// The stamp in force.
        stamp: u64,
        /// This node's wall clock (unix seconds).
        wall: u64,
    },
    /// The revocation does not check.
    #[error("revocation refused: {0}")]
    BadRevocation(String),
    /// This node trusts no CA (started without --ca-file).
    #[error("this agent trusts no CA (start it with --ca-file)")]
    NoTrust,
}
