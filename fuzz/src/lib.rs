//! Shared harness of the gossipd fuzz targets: fixed identities, cluster key and CA, one fixed
//! `now` (so every input replays identically), a two-layer wire that can intercept and mutate
//! one packet, and a peer played with snow directly so that handshake messages can carry any
//! plaintext the fuzzer picks.
//!
//! Everything expensive and input-independent is built once per process: identities (an
//! Ed25519 key derivation each), configurations, certificates, and template layers (a static
//! key generation and a binding signature each). Each input runs on fresh copies of the
//! templates ([`SecureLayer::try_clone`]), never on a layer an earlier input touched, so a
//! crash replays from its input alone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use gossip_core::cert::{CertRequest, Certificate, Trust};
use gossip_core::secure::drbg::Resolver;
use gossip_core::secure::keys::{Binding, ClusterKey, Identity, Keyring};
use gossip_core::secure::{Outgoing, Received, SecureConfig, SecureLayer, packet};
use gossip_core::version::VersionRange;
use gossip_core::wire::Writer;

/// Wall clock of every layer at [`now0`] (unix nanoseconds).
pub const WALL: u64 = 1_790_000_000_000_000_000;
/// [`WALL`] in seconds.
pub const WALL_SECS: u64 = WALL / 1_000_000_000;
/// Secret of the harness peer's identity (the fuzzer's own node).
pub const PEER_ID: u8 = 7;
/// Secret of the cluster CA's key.
pub const CA_ID: u8 = 3;

/// The one `now` every target starts from.
pub fn now0() -> Instant {
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

/// `127.0.0.i:7946`.
pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

/// A few distinct sources, IPv4 and IPv6.
pub fn sources() -> [SocketAddr; 4] {
    [addr(1), addr(3), SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 7946)), SocketAddr::from(([10, 9, 8, 7], 65535))]
}

/// The cluster key every layer of the harness holds.
pub fn cluster_key() -> &'static ClusterKey {
    static K: OnceLock<ClusterKey> = OnceLock::new();
    K.get_or_init(|| ClusterKey::new([9; 32]))
}

/// Identity `[i; 32]` (derived once per process for `i < 16`).
pub fn identity(i: u8) -> Identity {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    let ids = IDS.get_or_init(|| (0..16).map(|i| Identity::from_secret([i; 32])).collect());
    ids.get(usize::from(i)).cloned().unwrap_or_else(|| Identity::from_secret([i; 32]))
}

/// Identity `[i; 32]`'s Ed25519 signature of `msg`, as [`Identity::sign`] makes it, from a
/// per-process cache keyed by the signer and the exact bytes signed. Sound because Ed25519
/// signatures are deterministic (RFC 8032: the nonce is a hash of the secret and the message), so
/// a hit is the signature signing again would make; it spares inputs the signing of claims an
/// earlier input already signed (a mutation usually leaves most of an input's claims alone).
/// Only the harness's own signing goes through here: every verification in the code under test
/// still runs. Bounded: two generations of at most [`SIG_CACHE`] entries each, the older dropped
/// when the newer fills, a hit in the older one promoted.
pub fn sign_as(i: u8, msg: &[u8]) -> [u8; 64] {
    type Gen = HashMap<(u8, Vec<u8>), [u8; 64]>;
    thread_local! {
        static SIGS: RefCell<(Gen, Gen)> = RefCell::new((HashMap::new(), HashMap::new()));
    }
    SIGS.with(|c| {
        let (new, old) = &mut *c.borrow_mut();
        let key = (i, msg.to_vec());
        if let Some(s) = new.get(&key) {
            return *s;
        }
        let sig = match old.remove(&key) {
            Some(s) => s,
            None => identity(i).sign(msg),
        };
        if new.len() >= SIG_CACHE {
            *old = std::mem::take(new);
        }
        new.insert(key, sig);
        sig
    })
}

/// Entries per generation of the [`sign_as`] cache (signed messages are at most a few hundred
/// bytes: some tens of MB in all).
pub const SIG_CACHE: usize = 1 << 15;

/// [`Binding::sign`] by identity `[i; 32]`, its signature from [`sign_as`].
pub fn binding_signed(i: u8, static_pub: [u8; 32], not_before: u64, not_after: u64) -> Binding {
    let mut b = Binding { identity: identity(i).public(), static_pub, not_before, not_after, sig: [0; 64] };
    b.sig = sign_as(i, &b.signed_bytes());
    b
}

/// The cluster CA: its key and the trust policy of a node that requires certificates from it.
pub fn ca() -> &'static (Identity, Trust) {
    static CA: OnceLock<(Identity, Trust)> = OnceLock::new();
    CA.get_or_init(|| {
        let key = Identity::from_secret([CA_ID; 32]);
        let cert = Certificate::new_ca(&key, "fuzz-ca", 0, u64::MAX / 2).expect("a CA certificate");
        let trust = Trust::new(vec![cert]).expect("trust");
        (key, trust)
    })
}

/// The CA's certificate of identity `[i; 32]` as node `node-i`, valid a day around [`WALL`]
/// (one per `i`, signed once per process).
pub fn cert_of(i: u8) -> Arc<Certificate> {
    thread_local! {
        static CERTS: RefCell<HashMap<u8, Arc<Certificate>>> = RefCell::new(HashMap::new());
    }
    CERTS.with(|c| {
        c.borrow_mut()
            .entry(i)
            .or_insert_with(|| {
                let req = CertRequest {
                    name: format!("node-{i}"),
                    identity: identity(i).public(),
                    services: vec!["*".into()],
                    roles: 0,
                    max_entries: 0,
                    not_before: WALL_SECS - 86_400,
                    not_after: WALL_SECS + 86_400,
                };
                Arc::new(Certificate::sign(&ca().0, &req).expect("a node certificate"))
            })
            .clone()
    })
}

/// The configuration of node `i` (identity `[i; 32]`, cluster key `[9; 32]`).
pub fn config(i: u8) -> SecureConfig {
    SecureConfig::new(identity(i), Keyring::new(cluster_key().clone()), WALL, [i.wrapping_add(100); 32])
}

/// How a harness layer is configured.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mode {
    /// Cookies required from the first initiation (`load_threshold` 0).
    pub under_load: bool,
    /// The layer trusts the harness CA (every peer must prove a certificate from it) and proves
    /// its own certificate.
    pub ca: bool,
}

/// The configuration of node `i` in `mode`.
pub fn config_in(i: u8, mode: Mode) -> SecureConfig {
    let mut cfg = config(i);
    if mode.under_load {
        cfg.load_threshold = 0;
    }
    if mode.ca {
        cfg.trust = Some(ca().1.clone());
        cfg.cert = Some(cert_of(i));
    }
    cfg
}

/// Node `i`'s secure layer in `mode` at [`now0`]: a copy of a template built once, the same
/// state as `SecureLayer::new(config_in(i, mode), now0())`.
pub fn layer_in(i: u8, mode: Mode) -> SecureLayer {
    thread_local! {
        static TEMPLATES: RefCell<HashMap<(u8, Mode), SecureLayer>> = RefCell::new(HashMap::new());
    }
    TEMPLATES.with(|t| {
        t.borrow_mut()
            .entry((i, mode))
            .or_insert_with(|| SecureLayer::new(config_in(i, mode), now0()))
            .try_clone()
            .expect("a template layer holds no session")
    })
}

/// Node `i`'s secure layer at `now` (a template copy at [`now0`]).
pub fn layer(i: u8, now: Instant) -> SecureLayer {
    if now == now0() { layer_in(i, Mode::default()) } else { SecureLayer::new(config(i), now) }
}

/// The credentials a layer proves in its handshakes: versions, binding, certificate.
pub fn credentials(versions: VersionRange, binding: &Binding, cert: Option<&Certificate>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(versions.min());
    w.u8(versions.max());
    binding.encode(&mut w);
    if let Some(c) = cert {
        w.bytes(c.encoded());
    }
    w.buf
}

/// The credentials `layer` proves.
pub fn credentials_of(layer: &SecureLayer) -> Vec<u8> {
    credentials(VersionRange::DEFAULT, &layer.binding(), layer.cert().map(|c| &**c))
}

/// Recomputes mac1 (mac2 zero) of a handshake packet under the cluster key, so that a mutated
/// body is admitted and reaches the Noise and binding parsing.
pub fn reseal(pkt: &mut [u8]) {
    if pkt.len() >= 32 {
        packet::seal_macs(pkt, cluster_key().mac1_key(), None);
    }
}

/// Mutation of one packet.
#[derive(Arbitrary, Debug, Clone)]
pub struct Mutation {
    /// `(position, xor)`: position taken modulo the length.
    pub edits: Vec<(u16, u8)>,
    /// New length (truncated, or zero-extended up to 1300 bytes).
    pub resize: Option<u16>,
    /// Recompute mac1 after the edits.
    pub reseal: bool,
}

impl Mutation {
    /// Applies the mutation in place.
    pub fn apply(&self, pkt: &mut Vec<u8>) {
        if let Some(n) = self.resize {
            pkt.resize(usize::from(n) % 1301, 0);
        }
        if !pkt.is_empty() {
            for (pos, x) in &self.edits {
                let i = usize::from(*pos) % pkt.len();
                pkt[i] ^= x;
            }
        }
        if self.reseal {
            reseal(pkt);
        }
    }
}

/// Two layers, node 1 on `addr(1)` and node 2 on `addr(2)`, and a wire between them that hands
/// every datagram to an interceptor first.
pub struct Pair {
    /// Current time.
    pub now: Instant,
    /// Node 1.
    pub a: SecureLayer,
    /// Node 2.
    pub b: SecureLayer,
    /// Payloads delivered to a.
    pub got_a: Vec<Received>,
    /// Payloads delivered to b.
    pub got_b: Vec<Received>,
    /// Payloads a sent.
    pub sent_a: Vec<Vec<u8>>,
    /// Payloads b sent.
    pub sent_b: Vec<Vec<u8>>,
}

/// Sees each datagram `(from, to, bytes)` before delivery and may change it.
pub type Interceptor<'a> = &'a mut dyn FnMut(SocketAddr, SocketAddr, &mut Vec<u8>);

impl Pair {
    /// Two fresh layers.
    pub fn new(a: SecureLayer, b: SecureLayer) -> Pair {
        let now = now0();
        Pair { now, a, b, got_a: vec![], got_b: vec![], sent_a: vec![], sent_b: vec![] }
    }

    /// Delivers datagrams until quiet. Panics on a ping-pong (a datagram storm is a bug).
    pub fn run(&mut self, out: Vec<Outgoing>, from: SocketAddr, f: Interceptor<'_>) {
        let mut q: std::collections::VecDeque<(SocketAddr, Outgoing)> = out.into_iter().map(|o| (from, o)).collect();
        let mut steps = 0;
        while let Some((src, mut o)) = q.pop_front() {
            steps += 1;
            assert!(steps < 100, "datagram ping-pong between two layers");
            assert!(o.bytes.len() <= gossip_core::session::MAX_DATAGRAM, "datagram over the size limit");
            f(src, o.dst, &mut o.bytes);
            let (layer, got, me) = if o.dst == addr(1) {
                (&mut self.a, &mut self.got_a, addr(1))
            } else if o.dst == addr(2) {
                (&mut self.b, &mut self.got_b, addr(2))
            } else {
                continue;
            };
            let mut replies = Vec::new();
            if let Some(r) = layer.recv(self.now, src, &o.bytes, &mut replies) {
                got.push(r);
            }
            q.extend(replies.into_iter().map(|r| (me, r)));
        }
    }

    /// Node 1 sends `payload` to node 2 (with node 2's binding as IK hint if `hint`).
    pub fn a_sends(&mut self, payload: &[u8], hint: bool, f: Interceptor<'_>) {
        let mut out = Vec::new();
        let binding = hint.then(|| self.b.binding());
        self.sent_a.push(payload.to_vec());
        self.a.send(self.now, addr(2), binding, payload, &mut out);
        self.run(out, addr(1), f);
    }

    /// Node 2 sends `payload` to node 1.
    pub fn b_sends(&mut self, payload: &[u8], f: Interceptor<'_>) {
        let mut out = Vec::new();
        self.sent_b.push(payload.to_vec());
        self.b.send(self.now, addr(1), None, payload, &mut out);
        self.run(out, addr(2), f);
    }

    /// Advances time and runs both layers' timers.
    pub fn tick(&mut self, d: Duration, f: Interceptor<'_>) {
        self.now += d;
        let mut out = Vec::new();
        self.a.handle_timeout(self.now, &mut out);
        self.run(std::mem::take(&mut out), addr(1), f);
        self.b.handle_timeout(self.now, &mut out);
        self.run(out, addr(2), f);
    }

    /// Whatever was mutated on the wire, each side only ever delivers payloads the other side
    /// sent, attributed to the other side's identity.
    pub fn check_authenticity(&self) {
        let (ia, ib) = (self.a.identity(), self.b.identity());
        for r in &self.got_b {
            assert_eq!(r.identity, ia, "node 2 delivered a payload attributed to a stranger");
            assert!(self.sent_a.contains(&r.payload), "node 2 delivered a payload node 1 never sent");
        }
        for r in &self.got_a {
            assert_eq!(r.identity, ib, "node 1 delivered a payload attributed to a stranger");
            assert!(self.sent_b.contains(&r.payload), "node 1 delivered a payload node 2 never sent");
        }
    }
}

/// The harness peer: identity `[PEER_ID; 32]` and a Noise static key pair of its own.
pub struct Peer {
    /// Identity.
    pub identity: Identity,
    /// X25519 secret.
    pub secret: [u8; 32],
    /// X25519 public.
    pub public: [u8; 32],
}

/// The harness peer (built once).
pub fn peer() -> &'static Peer {
    static P: OnceLock<Peer> = OnceLock::new();
    P.get_or_init(|| {
        let kp = builder(packet::XX_PATTERN, [77; 32]).generate_keypair().expect("keygen");
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&kp.private);
        let mut public = [0u8; 32];
        public.copy_from_slice(&kp.public);
        Peer { identity: identity(PEER_ID), secret, public }
    })
}

/// A snow builder for `pattern` with randomness from `seed`.
pub fn builder(pattern: &str, seed: [u8; 32]) -> snow::Builder<'static> {
    snow::Builder::with_resolver(pattern.parse().expect("valid pattern"), Box::new(Resolver::new(seed)))
}

/// Who signs a crafted binding.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Signer {
    /// The identity named in the binding (a valid signature).
    Owner,
    /// Another identity (the binding still names the harness peer).
    Other,
    /// No one: these 64 bytes.
    Raw([u8; 64]),
}

/// Which static key a crafted binding binds.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum StaticChoice {
    /// The key the harness peer uses in its handshake.
    Ours,
    /// The key of the layer under test.
    Theirs,
    /// These bytes.
    Raw([u8; 32]),
}

/// A binding the fuzzer shapes; signed as it says.
#[derive(Arbitrary, Debug, Clone)]
pub struct BindingSpec {
    /// Signer.
    pub signer: Signer,
    /// Bound key.
    pub static_key: StaticChoice,
    /// `not_before` relative to the wall clock, seconds.
    pub not_before: i32,
    /// `not_after` relative to the wall clock, seconds.
    pub not_after: i32,
    /// Flip bits of the signature after signing: `(byte, xor)`.
    pub flip: Option<(u8, u8)>,
}

impl BindingSpec {
    /// The binding, with `theirs` the static key of the layer under test.
    pub fn build(&self, theirs: [u8; 32]) -> Binding {
        let p = peer();
        let static_pub = match self.static_key {
            StaticChoice::Ours => p.public,
            StaticChoice::Theirs => theirs,
            StaticChoice::Raw(k) => k,
        };
        let at = |d: i32| WALL_SECS.saturating_add_signed(i64::from(d));
        let mut b = Binding {
            identity: p.identity.public(),
            static_pub,
            not_before: at(self.not_before),
            not_after: at(self.not_after),
            sig: [0; 64],
        };
        // What `Binding::sign` by the peer gives, then the signature replaced as the spec says.
        b.sig = match self.signer {
            Signer::Owner => sign_as(PEER_ID, &b.signed_bytes()),
            Signer::Other => sign_as(PEER_ID + 1, &b.signed_bytes()),
            Signer::Raw(s) => s,
        };
        if let Some((i, x)) = self.flip {
            b.sig[usize::from(i) % 64] ^= x;
        }
        b
    }
}

/// The certificate after a crafted binding.
#[derive(Arbitrary, Debug, Clone)]
pub enum CertSpec {
    /// None (what a node without a certificate proves).
    None,
    /// The harness peer's own, from the harness CA.
    Peer,
    /// The CA's certificate of another identity.
    Other,
    /// The peer's own with one byte changed: `(position, xor)`.
    Flipped(u16, u8),
    /// Any bytes (up to a certificate's maximum length).
    Raw(Vec<u8>),
}

impl CertSpec {
    /// The bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            CertSpec::None => Vec::new(),
            CertSpec::Peer => cert_of(PEER_ID).encoded().to_vec(),
            CertSpec::Other => cert_of(PEER_ID + 1).encoded().to_vec(),
            CertSpec::Flipped(at, x) => {
                let mut b = cert_of(PEER_ID).encoded().to_vec();
                let i = usize::from(*at) % b.len();
                b[i] ^= (*x).max(1);
                b
            }
            CertSpec::Raw(b) => b.iter().copied().take(packet::CERT_MAX).collect(),
        }
    }
}

/// The plaintext of a crafted handshake message (for an IK initiation, what follows the
/// timestamp).
#[derive(Arbitrary, Debug, Clone)]
pub enum Plaintext {
    /// Credentials as a layer proves them: wire versions (`None`: this build's), a binding,
    /// then a certificate.
    Credentials {
        /// `min ‖ max`, any bytes.
        versions: Option<(u8, u8)>,
        /// The binding.
        binding: BindingSpec,
        /// The certificate.
        cert: CertSpec,
    },
    /// Any bytes (up to 400); `fit` pads or truncates them to the shortest credentials' length
    /// so that the message has a length the receiver expects and the bytes reach the parsing of
    /// the versions and `Binding::decode`.
    Raw {
        /// The bytes.
        bytes: Vec<u8>,
        /// Fit to the shortest credentials' length.
        fit: bool,
    },
}

impl Plaintext {
    /// The bytes, with `theirs` the static key of the layer under test.
    pub fn bytes(&self, theirs: [u8; 32]) -> Vec<u8> {
        match self {
            Plaintext::Credentials { versions, binding, cert } => {
                let (min, max) = versions.unwrap_or((VersionRange::DEFAULT.min(), VersionRange::DEFAULT.max()));
                let mut v = vec![min, max];
                v.extend(encode_binding(&binding.build(theirs)));
                v.extend(cert.bytes());
                v
            }
            Plaintext::Raw { bytes, fit } => {
                let mut v: Vec<u8> = bytes.iter().copied().take(400).collect();
                if *fit {
                    v.resize(packet::CRED_MIN, 0);
                }
                v
            }
        }
    }
}

/// A binding's encoding.
pub fn encode_binding(b: &Binding) -> Vec<u8> {
    let mut w = Writer::new();
    b.encode(&mut w);
    w.buf
}

/// Checks what a layer delivered from the harness peer: the identity is the one whose valid
/// binding (within the tolerated clock skew) bound the static key the peer really used, and the
/// payload is what it sent.
pub fn check_from_peer(r: &Received, sent: &[u8]) {
    let p = peer();
    let skew = config(0).max_skew.as_secs();
    assert_eq!(r.binding.static_pub, p.public, "delivered under a binding of a key the peer did not use");
    assert_eq!(r.identity, r.binding.identity, "identity and binding disagree");
    assert!(r.binding.valid_within(WALL_SECS, skew), "delivered under an invalid or expired binding");
    assert_eq!(r.identity, p.identity.public(), "delivered attributed to a stranger");
    assert_eq!(r.payload, sent, "payload altered");
}

/// A transport packet to `their_idx` with `counter`.
pub fn transport(t: &snow::StatelessTransportState, their_idx: u32, counter: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let mut pkt = vec![0u8; packet::TRANSPORT_OVERHEAD + payload.len()];
    pkt[0] = packet::TRANSPORT;
    pkt[1..5].copy_from_slice(&their_idx.to_be_bytes());
    pkt[5..13].copy_from_slice(&counter.to_be_bytes());
    let n = t.write_message(counter, payload, &mut pkt[packet::TRANSPORT_HEADER..]).ok()?;
    pkt.truncate(packet::TRANSPORT_HEADER + n);
    Some(pkt)
}

/// Opens a transport packet; `None` unless it authenticates.
pub fn open(t: &snow::StatelessTransportState, pkt: &[u8]) -> Option<Vec<u8>> {
    if pkt.len() < packet::TRANSPORT_OVERHEAD || pkt[0] != packet::TRANSPORT {
        return None;
    }
    let counter = u64::from_be_bytes(pkt[5..13].try_into().ok()?);
    let mut out = vec![0u8; pkt.len()];
    let n = t.read_message(counter, &pkt[packet::TRANSPORT_HEADER..], &mut out).ok()?;
    out.truncate(n);
    Some(out)
}
