//! The secure session layer: every datagram between agents is a Noise handshake message or a
//! Noise transport message (docs/PROTOCOL.md section 5, docs/SECURITY.md).
//!
//! - **Admission**: handshakes carry a mac1 keyed by a cluster key; one without a valid mac1
//!   costs a keyed hash and gets no answer. Under load an initiation also needs a mac2 from a
//!   cookie bound to its source address (a cookie reply is smaller than the initiation).
//! - **Handshakes**: `IKpsk2` (1 RTT) when the peer's static key is known from its gossiped
//!   binding, `XXpsk3` for first contact. Both sides prove an identity-signed binding of their
//!   static key. IK initiations carry a timestamp; one not newer than the last seen from that
//!   identity is a replay and is refused.
//! - **Transport**: explicit 64-bit counters and a sliding replay window updated only after a
//!   packet authenticates; sessions are replaced after `rekey_after` or half of
//!   `max_messages`, and refused after `reject_after` or `max_messages`.
//! - **Static keys rotate** every `rotation` plus jitter; the previous key is still accepted
//!   until its binding expires, then wiped.
//!
//! Sans-IO like the rest of the core: `now` is a parameter, wall-clock time is derived from the
//! `wall_clock_at_start` given in [`SecureConfig`], and all randomness comes from a seeded DRBG.

internal!(drbg, limits, mac, packet, replay);
pub mod keys;

pub use limits::Ban;

mod handshake;
#[cfg(feature = "testing")]
mod template;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use drbg::Drbg;
use keys::{Binding, ClusterKey, Identity, IdentityPub, Keyring};
use limits::{BanList, CookieJar, RateLimiter};
use replay::ReplayWindow;

/// Tunables of the secure layer.
#[derive(Debug, Clone)]
pub struct SecureConfig {
    /// This node's identity.
    pub identity: Identity,
    /// Accepted cluster keys, primary first.
    pub keyring: Keyring,
    /// Static key lifetime before rotation (plus up to 10% jitter).
    pub rotation: Duration,
    /// How long a replaced static key stays valid (its binding's expiry after rotation).
    pub overlap: Duration,
    /// Start a new handshake when a session is this old.
    pub rekey_after: Duration,
    /// Refuse a session this old.
    pub reject_after: Duration,
    /// Refuse a session after this many messages each way.
    pub max_messages: u64,
    /// Retry an unanswered handshake after this long.
    pub handshake_retry: Duration,
    /// A session that carried traffic out but nothing in for this long is presumed lost by the
    /// peer (it restarted): a new handshake starts.
    pub dead_session_after: Duration,
    /// Initiations per second above which cookies are required.
    pub load_threshold: u32,
    /// Handshakes per second accepted from one source IP under load, counting only
    /// initiations whose mac2 proves the source (cookie before budget).
    pub per_source_rate: f64,
    /// First ban period; doubles on repeat.
    pub ban_base: Duration,
    /// Unix time in nanoseconds at the `now` the layer was created (wall clock for bindings and
    /// handshake timestamps).
    pub wall_clock_at_start: u64,
    /// Seed of the DRBG (ephemeral keys, indexes, static keys).
    pub seed: [u8; 32],
    /// The CAs this node trusts, with its revocations: when set, every peer must prove a
    /// certificate from one of them in its handshake. `None`: a cluster run with a cluster key
    /// only (the weaker mode, docs/SECURITY.md).
    pub trust: Option<crate::cert::Trust>,
    /// This node's certificate, proved in every handshake.
    pub cert: Option<std::sync::Arc<crate::cert::Certificate>>,
    /// Clock skew tolerated between peers on the bounds of static-key bindings (and reported
    /// when a handshake shows a peer's clock off by more than [`SKEW_REPORTED`]).
    pub max_skew: Duration,
    /// Where key material comes from: every static key, handshake ephemeral, cookie secret and
    /// cookie nonce. The daemon passes the OS RNG, so that nothing the process keeps derives a
    /// past or future key; `None` (the simulator, tests) draws them from the seeded DRBG, so
    /// that runs replay exactly.
    pub entropy: Option<Entropy>,
    /// The wire versions this node speaks, proved in every handshake: a session speaks the
    /// highest version both sides speak, and none is established without one.
    pub versions: crate::version::VersionRange,
}

/// Fills a buffer with key material.
pub type FillFn = dyn Fn(&mut [u8]) + Send + Sync;

/// A source of key material owned by the caller (the core never reads the OS itself).
#[derive(Clone)]
pub struct Entropy(pub std::sync::Arc<FillFn>);

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy(..)")
    }
}

/// A peer whose handshake timestamp is this far from the local clock is reported (logged and
/// counted), though it is still admitted up to [`SecureConfig::max_skew`].
pub const SKEW_REPORTED: Duration = Duration::from_secs(30);

impl SecureConfig {
    /// Defaults around the given identity, keyring, wall clock and seed.
    pub fn new(identity: Identity, keyring: Keyring, wall_clock_at_start: u64, seed: [u8; 32]) -> SecureConfig {
        SecureConfig {
            identity,
            keyring,
            rotation: Duration::from_secs(4 * 3600),
            overlap: Duration::from_secs(3600),
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            max_messages: 1 << 40,
            handshake_retry: Duration::from_secs(1),
            dead_session_after: Duration::from_secs(5),
            load_threshold: 200,
            per_source_rate: 50.0,
            ban_base: Duration::from_secs(60),
            wall_clock_at_start,
            seed,
            trust: None,
            cert: None,
            max_skew: Duration::from_secs(3600),
            entropy: None,
            versions: crate::version::VersionRange::DEFAULT,
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Handshakes started by us.
    pub handshakes_initiated: u64,
    /// Handshakes completed (either role).
    pub handshakes_completed: u64,
    /// Packets without a valid mac1, of unknown type or malformed: dropped silently.
    pub dropped_unauthenticated: u64,
    /// Transport packets or handshakes that failed to decrypt.
    pub decrypt_failures: u64,
    /// Replayed transport packets or handshakes.
    pub replays: u64,
    /// Handshakes dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Cookie replies sent.
    pub cookies_sent: u64,
    /// Initiations resent at once with a mac2 after a cookie reply.
    pub cookie_resends: u64,
    /// Packets from banned identities.
    pub banned_drops: u64,
    /// Handshakes refused because the peer's identity was not the one pinned for its address.
    pub pin_mismatches: u64,
    /// Bans issued.
    pub bans: u64,
    /// Static key rotations.
    pub rotations: u64,
    /// Handshakes refused for a missing, invalid, expired or revoked certificate.
    pub cert_refusals: u64,
    /// Largest clock offset seen in a peer's handshake timestamp, in seconds (absolute).
    pub max_clock_offset_secs: u64,
    /// Handshakes refused because the peer speaks no wire version this node speaks.
    pub version_refusals: u64,
    /// Payloads dropped because they were encoded at another wire version than the session's
    /// and could not be transcoded.
    pub version_mismatch_drops: u64,
}

/// A static key pair and its binding. The secret is wiped when the key is dropped (after its
/// overlap ends, or with the layer).
#[derive(Clone)]
struct StaticKey {
    secret: zeroize::Zeroizing<[u8; 32]>,
    binding: Binding,
}

/// An established session.
struct Session {
    peer: SocketAddr,
    identity: IdentityPub,
    transport: snow::StatelessTransportState,
    their_idx: u32,
    send_counter: u64,
    replay: ReplayWindow,
    established: Instant,
    confirmed: bool,
    cluster_key: String,
    /// When we first sent on the session since we last received on it.
    unanswered_since: Option<Instant>,
    /// The wire version negotiated in the handshake (the highest both sides speak).
    version: u8,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination.
    pub dst: SocketAddr,
    /// Bytes.
    pub bytes: Vec<u8>,
}

/// A payload that arrived authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Who sent it (proved by the handshake).
    pub identity: IdentityPub,
    /// The sender's binding as proved in the handshake.
    pub binding: Binding,
    /// The plaintext.
    pub payload: Vec<u8>,
    /// The wire version of the session it came on: the payload is encoded at that version.
    pub version: u8,
}

/// Re-encodes a payload from one wire version to another (`None`: it cannot be).
pub type Transcoder = fn(&[u8], u8, u8) -> Option<Vec<u8>>;

/// The secure session layer.
pub struct SecureLayer {
    cfg: SecureConfig,
    start: Instant,
    rng: Drbg,
    current: StaticKey,
    previous: Option<StaticKey>,
    next_rotation: Instant,
    sessions: HashMap<u32, Session>,
    bindings_of_sessions: HashMap<u32, Binding>,
    by_addr: HashMap<SocketAddr, u32>,
    pending: HashMap<u32, handshake::Pending>,
    pending_by_addr: HashMap<SocketAddr, u32>,
    /// Payloads waiting for a handshake, with the wire version they were encoded at.
    queue: HashMap<SocketAddr, Vec<(u8, Vec<u8>)>>,
    /// Re-encodes queued payloads when the session negotiates another version than they were
    /// encoded at (set by the gossip layer, which knows the message formats).
    transcoder: Option<Transcoder>,
    version_refusals: Vec<(SocketAddr, IdentityPub, crate::version::VersionRange)>,
    cookies: HashMap<SocketAddr, ([u8; 16], Instant)>,
    ik_failures: HashMap<SocketAddr, u32>,
    last_timestamp: HashMap<IdentityPub, u64>,
    /// XX final messages awaiting the responder's keepalive: (packet, peer, sent at, attempts).
    fin_retx: HashMap<u32, (Vec<u8>, SocketAddr, Instant, u32)>,
    /// Identities required of the peers at these addresses (pinned seeds).
    pins: HashMap<SocketAddr, IdentityPub>,
    jar: CookieJar,
    limiter: RateLimiter,
    bans: BanList,
    window_start: Instant,
    window_count: u32,
    stats: SecureStats,
    /// Handshakes refused for their certificate, for the gossip layer to report (bounded).
    refusals: Vec<(SocketAddr, IdentityPub, crate::cert::CertError)>,
    /// Peers whose handshake showed a clock offset beyond [`SKEW_REPORTED`]: address, identity,
    /// offset in seconds (theirs minus ours), for the gossip layer to report (bounded).
    skews: Vec<(SocketAddr, IdentityPub, i64)>,
    /// Handshake initiations that proved no key of the keyring, by source (bounded): a member
    /// with a wrong or removed cluster key, or junk (sources can be spoofed: only reported).
    unadmitted: HashMap<SocketAddr, u64>,
    /// Datagrams that failed to decrypt since the last report, by source.
    decrypt_failed: HashMap<SocketAddr, (Option<IdentityPub>, u64)>,
}

impl std::fmt::Debug for SecureLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureLayer")
            .field("identity", &self.cfg.identity.public())
            .field("sessions", &self.sessions.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Most handshakes in flight (either role); past half of it the layer counts as under load.
const MAX_PENDING: usize = 1024;
/// Most payloads queued per destination while its handshake runs.
const MAX_QUEUED: usize = 32;
/// Most destinations with queued payloads.
const MAX_QUEUED_DSTS: usize = 1024;
/// Most identities whose last handshake timestamp is remembered.
const MAX_TIMESTAMPS: usize = 65_536;
/// IK attempts without an answer before falling back to XX (the peer's key may have rotated).
const IK_ATTEMPTS: u32 = 2;
/// Attempts before a handshake is abandoned (queued payloads dropped).
const MAX_ATTEMPTS: u32 = 5;

impl SecureLayer {
    /// A layer with a fresh static key.
    pub fn new(mut cfg: SecureConfig, now: Instant) -> SecureLayer {
        let mut rng = Drbg::new(cfg.seed);
        // The seed is not kept: the DRBG erases its past keys as it goes.
        zeroize::Zeroize::zeroize(&mut cfg.seed);
        let mut secret = || {
            let mut b = [0u8; 32];
            match &cfg.entropy {
                Some(e) => (e.0)(&mut b),
                None => rng.fill(&mut b),
            }
            b
        };
        let jar = CookieJar::new(now, secret());
        let static_seed = secret();
        let limiter = RateLimiter::new(cfg.per_source_rate, cfg.per_source_rate * 2.0);
        let wall = cfg.wall_clock_at_start / 1_000_000_000;
        let current = handshake::new_static_key(&cfg.identity, static_seed, wall, cfg.rotation + cfg.overlap);
        let jitter = cfg.rotation.mul_f64(0.1 * (rng.u32() as f64 / u32::MAX as f64));
        SecureLayer {
            next_rotation: now + cfg.rotation + jitter,
            start: now,
            rng,
            current,
            previous: None,
            sessions: HashMap::new(),
            bindings_of_sessions: HashMap::new(),
            by_addr: HashMap::new(),
            pending: HashMap::new(),
            pending_by_addr: HashMap::new(),
            queue: HashMap::new(),
            transcoder: None,
            version_refusals: Vec::new(),
            cookies: HashMap::new(),
            ik_failures: HashMap::new(),
            last_timestamp: HashMap::new(),
            fin_retx: HashMap::new(),
            pins: HashMap::new(),
            jar,
            limiter,
            bans: BanList::default(),
            window_start: now,
            window_count: 0,
            stats: SecureStats::default(),
            refusals: Vec::new(),
            skews: Vec::new(),
            unadmitted: HashMap::new(),
            decrypt_failed: HashMap::new(),
            cfg,
        }
    }

    /// Wall-clock time at `now`, unix nanoseconds.
    pub fn wall_nanos(&self, now: Instant) -> u64 {
        self.cfg.wall_clock_at_start + now.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn wall_secs(&self, now: Instant) -> u64 {
        self.wall_nanos(now) / 1_000_000_000
    }

    /// This node's identity public key.
    pub fn identity(&self) -> IdentityPub {
        self.cfg.identity.public()
    }

    /// The identity (to sign records).
    pub fn identity_key(&self) -> &Identity {
        &self.cfg.identity
    }

    /// The binding of the current static key (gossiped so that peers can use IK).
    pub fn binding(&self) -> Binding {
        self.current.binding
    }

    /// Counters.
    pub fn stats(&self) -> &SecureStats {
        &self.stats
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.cfg.keyring
    }

    /// Replaces the keyring. Sessions established under a key no longer in it are closed.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        let fps: Vec<String> = keyring.keys().iter().map(ClusterKey::fingerprint).collect();
        let dead: Vec<u32> =
            self.sessions.iter().filter(|(_, s)| !fps.contains(&s.cluster_key)).map(|(i, _)| *i).collect();
        for i in dead {
            self.close(i);
        }
        self.cfg.keyring = keyring;
    }

    /// The trust policy (CAs and revocations), when this node requires certificates.
    pub fn trust(&self) -> Option<&crate::cert::Trust> {
        self.cfg.trust.as_ref()
    }

    /// Clock skew tolerated between peers.
    pub fn max_skew(&self) -> Duration {
        self.cfg.max_skew
    }

    /// This node's certificate.
    pub fn cert(&self) -> Option<&std::sync::Arc<crate::cert::Certificate>> {
        self.cfg.cert.as_ref()
    }

    /// Adds a CA-signed revocation and closes the revoked identity's sessions. Returns true if
    /// it was new; an error if no trusted CA signed it (or no CA is trusted).
    pub fn revoke(&mut self, r: crate::cert::Revocation) -> Result<bool, crate::cert::CertError> {
        let trust = self.cfg.trust.as_mut().ok_or(crate::cert::CertError::UnknownIssuer)?;
        let new = trust.revoke(r)?;
        let dead: Vec<u32> = self.sessions.iter().filter(|(_, s)| s.identity == r.identity).map(|(i, _)| *i).collect();
        for i in dead {
            self.close(i);
        }
        Ok(new)
    }

    /// Forgets revocations of certificates expired at `now`.
    pub fn expire_revocations(&mut self, now: Instant) {
        let wall = self.wall_secs(now);
        if let Some(t) = self.cfg.trust.as_mut() {
            t.expire_revocations(wall);
        }
    }

    fn note_refusal(&mut self, from: SocketAddr, identity: IdentityPub, e: crate::cert::CertError) {
        if self.refusals.len() < 16 {
            self.refusals.push((from, identity, e));
        }
    }

    /// Counts a datagram that failed to decrypt, by source (and the session's identity, for
    /// transport data): reported by [`SecureLayer::take_decrypt_failures`] (bounded: 64 sources).
    pub(super) fn note_decrypt_failure(&mut self, from: SocketAddr, identity: Option<IdentityPub>) {
        self.stats.decrypt_failures += 1;
        if self.decrypt_failed.len() < 64 || self.decrypt_failed.contains_key(&from) {
            let e = self.decrypt_failed.entry(from).or_insert((identity, 0));
            e.0 = e.0.or(identity);
            e.1 += 1;
        }
    }

    /// Sources whose datagrams failed to decrypt since the last call: address, the identity of
    /// the session they claimed (if transport data), count.
    pub fn take_decrypt_failures(&mut self) -> Vec<(SocketAddr, Option<IdentityPub>, u64)> {
        let mut v: Vec<(SocketAddr, Option<IdentityPub>, u64)> =
            self.decrypt_failed.drain().map(|(a, (i, n))| (a, i, n)).collect();
        v.sort_unstable_by_key(|(a, _, _)| *a);
        v
    }

    pub(super) fn note_unadmitted(&mut self, from: SocketAddr) {
        if self.unadmitted.len() < 64 || self.unadmitted.contains_key(&from) {
            *self.unadmitted.entry(from).or_default() += 1;
        }
    }

    /// Sources whose handshake initiations proved no key of the keyring since the last call,
    /// with how many, sorted by address.
    pub fn take_unadmitted(&mut self) -> Vec<(SocketAddr, u64)> {
        let mut v: Vec<(SocketAddr, u64)> = self.unadmitted.drain().collect();
        v.sort_unstable();
        v
    }

    /// Peers seen since the last call whose clock is off by more than [`SKEW_REPORTED`]:
    /// address, identity, offset in seconds (theirs minus ours).
    pub fn take_skews(&mut self) -> Vec<(SocketAddr, IdentityPub, i64)> {
        std::mem::take(&mut self.skews)
    }

    pub(super) fn note_offset(&mut self, from: SocketAddr, identity: IdentityPub, their_nanos: u64, now: Instant) {
        let ours = self.wall_nanos(now) as i128;
        let offset = ((their_nanos as i128 - ours) / 1_000_000_000) as i64;
        let abs = offset.unsigned_abs();
        self.stats.max_clock_offset_secs = self.stats.max_clock_offset_secs.max(abs);
        if abs >= SKEW_REPORTED.as_secs() && self.skews.len() < 16 {
            self.skews.push((from, identity, offset));
        }
    }

    /// Handshakes refused for their certificate since the last call: address, identity, why.
    pub fn take_refusals(&mut self) -> Vec<(SocketAddr, IdentityPub, crate::cert::CertError)> {
        std::mem::take(&mut self.refusals)
    }

    /// Requires the peer at `addr` to prove `identity` (a pinned seed): a handshake with that
    /// address that proves another identity is refused, whoever initiated it.
    pub fn pin(&mut self, addr: SocketAddr, identity: IdentityPub) {
        self.pins.insert(addr, identity);
    }

    /// Identities banned now, with why and until when.
    pub fn bans(&self, now: Instant) -> Vec<(IdentityPub, limits::Ban)> {
        self.bans.active(now).map(|(i, b)| (*i, b.clone())).collect()
    }

    /// Bans an authenticated identity that misbehaved, closing its sessions. Returns the period.
    pub fn ban(&mut self, now: Instant, id: IdentityPub, reason: &str) -> Duration {
        self.stats.bans += 1;
        let period = self.bans.ban(now, id, self.cfg.ban_base, reason);
        let dead: Vec<u32> = self.sessions.iter().filter(|(_, s)| s.identity == id).map(|(i, _)| *i).collect();
        for i in dead {
            self.close(i);
        }
        period
    }

    /// True while `id` is banned.
    pub fn is_banned(&self, now: Instant, id: &IdentityPub) -> bool {
        self.bans.is_banned(now, id)
    }

    /// The identity of the session currently used to reach `addr`, if any.
    pub fn peer_identity(&self, addr: &SocketAddr) -> Option<IdentityPub> {
        self.by_addr.get(addr).and_then(|i| self.sessions.get(i)).map(|s| s.identity)
    }

    /// The node ids of the peers reachable now over an established, usable session (no
    /// handshake needed), sorted: the cheap targets for rumors.
    pub fn warm_peers(&self, now: Instant) -> Vec<crate::types::NodeId> {
        let mut ids: Vec<crate::types::NodeId> = self
            .by_addr
            .values()
            .filter(|i| self.session_usable(now, **i))
            .filter_map(|i| self.sessions.get(i))
            .map(|s| s.identity.node_id())
            .collect();
        // Hash maps iterate in a per-process random order: sort, so runs replay exactly.
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub(super) fn close(&mut self, idx: u32) {
        if let Some(s) = self.sessions.remove(&idx) {
            if self.by_addr.get(&s.peer) == Some(&idx) {
                self.by_addr.remove(&s.peer);
            }
        }
        self.bindings_of_sessions.remove(&idx);
    }

    /// 32 bytes of key material: from the caller's entropy source, else the DRBG.
    pub(super) fn secret32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.secret_fill(&mut b);
        b
    }

    pub(super) fn secret_fill(&mut self, b: &mut [u8]) {
        match &self.cfg.entropy {
            Some(e) => (e.0)(b),
            None => self.rng.fill(b),
        }
    }

    fn fresh_index(&mut self) -> u32 {
        loop {
            let i = self.rng.u32();
            if i != 0 && !self.sessions.contains_key(&i) && !self.pending.contains_key(&i) {
                return i;
            }
        }
    }

    /// Sends `payload` (encoded at the highest version this node speaks) to `dst`: see
    /// [`SecureLayer::send_at`].
    pub fn send(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        peer: Option<Binding>,
        payload: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        let version = self.cfg.versions.max();
        self.send_at(now, dst, peer, version, payload, out);
    }

    /// The wire version of the usable session with `dst`, if there is one: what a payload sent
    /// to `dst` now must be encoded at.
    pub fn session_version(&self, now: Instant, dst: SocketAddr) -> Option<u8> {
        let idx = self.by_addr.get(&dst).copied().filter(|i| self.session_usable(now, *i))?;
        self.sessions.get(&idx).map(|s| s.version)
    }

    /// The wire versions this node speaks.
    pub fn versions(&self) -> crate::version::VersionRange {
        self.cfg.versions
    }

    /// Sets the function that re-encodes a queued payload when its session negotiates another
    /// wire version than the one it was encoded at.
    pub fn set_transcoder(&mut self, t: Transcoder) {
        self.transcoder = Some(t);
    }

    /// Handshakes refused since the last call because the peer speaks no common wire version:
    /// address, identity, the peer's range.
    pub fn take_version_refusals(&mut self) -> Vec<(SocketAddr, IdentityPub, crate::version::VersionRange)> {
        std::mem::take(&mut self.version_refusals)
    }

    pub(super) fn note_version_refusal(
        &mut self,
        from: SocketAddr,
        identity: IdentityPub,
        theirs: crate::version::VersionRange,
    ) {
        self.stats.version_refusals += 1;
        if self.version_refusals.len() < 16 {
            self.version_refusals.push((from, identity, theirs));
        }
    }

    /// Sends `payload`, encoded at wire version `version`, to `dst`: at once over an
    /// established session, else queued while a handshake runs (IK if the peer's binding is
    /// known, XX otherwise). A payload queued at another version than the session negotiates
    /// is transcoded when the session is up.
    pub fn send_at(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        peer: Option<Binding>,
        version: u8,
        payload: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        let usable = self.by_addr.get(&dst).copied().filter(|i| self.session_usable(now, *i));
        if let Some(idx) = usable {
            let Some(payload) = self.at_session_version(idx, version, payload) else { return };
            let (age, sent) = self
                .sessions
                .get(&idx)
                .map_or((Duration::ZERO, 0), |s| (now.saturating_duration_since(s.established), s.send_counter));
            self.encrypt(now, idx, &payload, out);
            // Rekey after a bounded time or half the message budget, whichever comes first, so
            // the new session is up long before the old one is refused.
            let worn = age >= self.cfg.rekey_after || sent >= self.cfg.max_messages / 2;
            if worn && !self.pending_by_addr.contains_key(&dst) {
                self.initiate(now, dst, peer, out);
            }
            return;
        }
        if self.queue.len() >= MAX_QUEUED_DSTS && !self.queue.contains_key(&dst) {
            return;
        }
        let q = self.queue.entry(dst).or_default();
        if q.len() < MAX_QUEUED {
            q.push((version, payload.to_vec()));
        }
        if !self.pending_by_addr.contains_key(&dst) {
            self.initiate(now, dst, peer, out);
        }
    }

    fn session_usable(&self, now: Instant, idx: u32) -> bool {
        self.sessions.get(&idx).is_some_and(|s| {
            s.confirmed
                && now.saturating_duration_since(s.established) < self.cfg.reject_after
                && s.send_counter < self.cfg.max_messages
                && s.unanswered_since.is_none_or(|t| now.saturating_duration_since(t) < self.cfg.dead_session_after)
        })
    }

    pub(super) fn encrypt(&mut self, now: Instant, idx: u32, payload: &[u8], out: &mut Vec<Outgoing>) {
        let Some(s) = self.sessions.get_mut(&idx) else { return };
        if s.unanswered_since.is_none() {
            s.unanswered_since = Some(now);
        }
        let mut bytes = vec![0u8; packet::TRANSPORT_OVERHEAD + payload.len()];
        bytes[0] = packet::TRANSPORT;
        bytes[1..5].copy_from_slice(&s.their_idx.to_be_bytes());
        bytes[5..13].copy_from_slice(&s.send_counter.to_be_bytes());
        match s.transport.write_message(s.send_counter, payload, &mut bytes[packet::TRANSPORT_HEADER..]) {
            Ok(n) => {
                bytes.truncate(packet::TRANSPORT_HEADER + n);
                s.send_counter += 1;
                out.push(Outgoing { dst: s.peer, bytes });
            }
            Err(_) => self.stats.decrypt_failures += 1,
        }
    }

    /// Processes one received datagram. Returns the payload if it was authenticated transport
    /// data; handshake answers go to `out`. Anything else is counted and dropped, unanswered
    /// unless it proved the cluster key.
    pub fn recv(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) -> Option<Received> {
        if data.len() > crate::session::MAX_DATAGRAM {
            self.stats.dropped_unauthenticated += 1;
            return None;
        }
        match data.first().copied() {
            Some(packet::TRANSPORT) => self.recv_transport(now, from, data, out),
            Some(packet::IK_INIT) => {
                self.on_ik_init(now, from, data, out);
                None
            }
            Some(packet::IK_RESP) => {
                self.on_ik_resp(now, from, data, out);
                None
            }
            Some(packet::XX_INIT) => {
                self.on_xx_init(now, from, data, out);
                None
            }
            Some(packet::XX_RESP) => {
                self.on_xx_resp(now, from, data, out);
                None
            }
            Some(packet::XX_FIN) => {
                self.on_xx_fin(now, from, data, out);
                None
            }
            Some(packet::COOKIE) => {
                self.on_cookie(now, from, data, out);
                None
            }
            _ => {
                self.stats.dropped_unauthenticated += 1;
                None
            }
        }
    }

    fn recv_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<Outgoing>,
    ) -> Option<Received> {
        if data.len() < packet::TRANSPORT_OVERHEAD {
            self.stats.dropped_unauthenticated += 1;
            return None;
        }
        let idx = packet::u32_at(data, 1);
        let counter = u64::from_be_bytes(data[5..13].try_into().ok()?);
        let reject_after = self.cfg.reject_after;
        let max_messages = self.cfg.max_messages;
        let Some(s) = self.sessions.get_mut(&idx) else {
            self.stats.dropped_unauthenticated += 1;
            return None;
        };
        if now.saturating_duration_since(s.established) >= reject_after || counter >= max_messages {
            self.stats.dropped_unauthenticated += 1;
            return None;
        }
        if !s.replay.check(counter) {
            self.stats.replays += 1;
            return None;
        }
        let mut payload = vec![0u8; data.len() - packet::TRANSPORT_OVERHEAD];
        match s.transport.read_message(counter, &data[packet::TRANSPORT_HEADER..], &mut payload) {
            Ok(n) => payload.truncate(n),
            Err(_) => {
                let identity = s.identity;
                self.note_decrypt_failure(from, Some(identity));
                return None;
            }
        }
        s.replay.update(counter);
        s.unanswered_since = None;
        let identity = s.identity;
        if !s.confirmed {
            s.confirmed = true;
            s.peer = from;
            self.by_addr.insert(from, idx);
            self.fin_retx.remove(&idx);
            self.flush_queue(now, from, idx, out);
        }
        if payload.is_empty() {
            return None; // keepalive: it only confirms the session
        }
        if self.bans.is_banned(now, &identity) {
            self.stats.banned_drops += 1;
            return None;
        }
        let binding = self.bindings_of_sessions.get(&idx).copied()?;
        let version = self.sessions.get(&idx)?.version;
        Some(Received { identity, binding, payload, version })
    }

    /// Sends what was queued for `dst` over session `idx`.
    pub(super) fn flush_queue(&mut self, now: Instant, dst: SocketAddr, idx: u32, out: &mut Vec<Outgoing>) {
        for (version, payload) in self.queue.remove(&dst).unwrap_or_default() {
            if let Some(payload) = self.at_session_version(idx, version, &payload) {
                self.encrypt(now, idx, &payload, out);
            }
        }
    }

    /// `payload` (encoded at `version`) as session `idx` must carry it: as it is, transcoded,
    /// or `None` (counted) when it cannot be.
    fn at_session_version<'p>(
        &mut self,
        idx: u32,
        version: u8,
        payload: &'p [u8],
    ) -> Option<std::borrow::Cow<'p, [u8]>> {
        let session = self.sessions.get(&idx)?.version;
        if session == version || payload.is_empty() {
            return Some(std::borrow::Cow::Borrowed(payload));
        }
        match self.transcoder.and_then(|t| t(payload, version, session)) {
            Some(p) => Some(std::borrow::Cow::Owned(p)),
            None => {
                self.stats.version_mismatch_drops += 1;
                None
            }
        }
    }

    /// When [`SecureLayer::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self.pending.values().map(|p| p.retry_at(self.cfg.handshake_retry)).min();
        let fin = self.fin_retx.values().map(|(_, _, t, _)| *t + self.cfg.handshake_retry).min();
        let t = [retry, fin].into_iter().flatten().min();
        Some(t.map_or(self.next_rotation, |r| r.min(self.next_rotation)))
    }

    /// Retransmits unacknowledged XX final messages; gives up on a session after
    /// `MAX_ATTEMPTS` and starts over with a new handshake if traffic is waiting.
    fn retransmit_fins(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        let retry = self.cfg.handshake_retry;
        let mut due: Vec<u32> =
            self.fin_retx.iter().filter(|(_, (_, _, t, _))| now >= *t + retry).map(|(i, _)| *i).collect();
        // Hash maps iterate in a per-process random order: sort, so runs replay exactly.
        due.sort_unstable();
        for idx in due {
            let Some((pkt, dst, _, attempts)) = self.fin_retx.remove(&idx) else { continue };
            if attempts >= MAX_ATTEMPTS {
                self.close(idx);
                if self.queue.get(&dst).is_some_and(|q| !q.is_empty()) && !self.pending_by_addr.contains_key(&dst) {
                    self.initiate(now, dst, None, out);
                }
                continue;
            }
            out.push(Outgoing { dst, bytes: pkt.clone() });
            self.fin_retx.insert(idx, (pkt, dst, now, attempts + 1));
        }
    }

    /// Rotates the static key when due, retries or abandons handshakes, expires sessions.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        if now >= self.next_rotation {
            self.rotate(now);
        }
        self.retransmit_fins(now, out);
        let wall = self.wall_secs(now);
        if self.previous.as_ref().is_some_and(|p| p.binding.not_after < wall) {
            self.previous = None; // wiped: its binding expired
        }
        let mut due: Vec<u32> =
            self.pending.iter().filter(|(_, p)| now >= p.retry_at(self.cfg.handshake_retry)).map(|(i, _)| *i).collect();
        due.sort_unstable();
        for idx in due {
            let Some(p) = self.pending.remove(&idx) else { continue };
            let (dst, attempts, was_ik, initiator) = (p.peer(), p.attempts(), p.is_ik(), p.is_initiator());
            if self.pending_by_addr.get(&dst) == Some(&idx) {
                self.pending_by_addr.remove(&dst);
            }
            if !initiator {
                continue;
            }
            if was_ik {
                *self.ik_failures.entry(dst).or_default() += 1;
            }
            if attempts >= MAX_ATTEMPTS {
                self.queue.remove(&dst);
                continue;
            }
            if self.queue.get(&dst).is_some_and(|q| !q.is_empty()) {
                let hint = p.peer_binding();
                self.initiate_attempt(now, dst, hint, attempts + 1, out);
            }
        }
        let reject = self.cfg.reject_after;
        let dead: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.established) >= reject)
            .map(|(i, _)| *i)
            .collect();
        for i in dead {
            self.close(i);
        }
        self.cookies.retain(|_, (_, t)| now.saturating_duration_since(*t) < limits::COOKIE_LIFETIME);
        self.bans.expire(now, self.cfg.ban_base);
    }

    /// How long attempt `attempts` (1 for the first) of a handshake waits for its answer
    /// before the next: `handshake_retry` doubled per attempt up to 8 times it, plus up to a
    /// quarter of that at random (WireGuard's jitter). A fixed interval retried every
    /// unanswered handshake each second: when a start-up storm of a hundred agents on two
    /// cores made answers take longer than that, every retry added load and none completed.
    pub(super) fn retry_delay(&mut self, attempts: u32) -> Duration {
        let base = self.cfg.handshake_retry * (1u32 << attempts.saturating_sub(1).min(3));
        base + base.mul_f64(0.25 * (self.rng.u32() as f64 / u32::MAX as f64))
    }

    fn rotate(&mut self, now: Instant) {
        let wall = self.wall_secs(now);
        let seed = self.secret32();
        let fresh = handshake::new_static_key(&self.cfg.identity, seed, wall, self.cfg.rotation + self.cfg.overlap);
        let mut old = std::mem::replace(&mut self.current, fresh);
        // The old key stays valid until the end of the overlap, whatever its binding said.
        old.binding.not_after = old.binding.not_after.min(wall + self.cfg.overlap.as_secs());
        self.previous = Some(old);
        let jitter = self.cfg.rotation.mul_f64(0.1 * (self.rng.u32() as f64 / u32::MAX as f64));
        self.next_rotation = now + self.cfg.rotation + jitter;
        self.stats.rotations += 1;
    }

    fn under_load(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count += 1;
        self.window_count > self.cfg.load_threshold || self.pending.len() >= MAX_PENDING / 2
    }

    fn remember_timestamp(&mut self, id: IdentityPub, ts: u64) -> bool {
        if self.last_timestamp.get(&id).is_some_and(|last| ts <= *last) {
            return false;
        }
        if self.last_timestamp.len() >= MAX_TIMESTAMPS && !self.last_timestamp.contains_key(&id) {
            // Bounded memory: forget the oldest half.
            let mut v: Vec<(IdentityPub, u64)> = self.last_timestamp.drain().collect();
            v.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
            v.truncate(MAX_TIMESTAMPS / 2);
            self.last_timestamp.extend(v);
        }
        self.last_timestamp.insert(id, ts);
        true
    }
}
