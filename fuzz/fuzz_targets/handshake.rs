//! Structured fuzzing of the handshakes, from valid messages outward.
//!
//! - `Mutate`: two real layers run an IK or XX exchange (optionally under load, so with
//!   cookies), then traffic both ways, retries and timers; one packet of a chosen type is
//!   mutated on the wire (bit flips, truncation or extension) and, if the input says so, its
//!   mac1 is recomputed with the cluster key the harness holds, so that the mutation gets past
//!   admission into the Noise and binding parsing. Whatever was mutated, each side may only
//!   deliver payloads the other side sent, under the other side's identity.
//! - `Craft*`: the harness plays a peer with its own Noise state and cluster key, and puts the
//!   fuzzer's plaintext (shaped credentials: wire versions, a binding, a certificate; or raw
//!   bytes) inside a correctly encrypted IK initiation, XX response, XX final message or IK
//!   response. A layer may only deliver data from the peer under a currently valid binding,
//!   signed by the identity it names, of the static key the peer really used, and, when it
//!   trusts the harness CA, after the peer proved exactly its CA-signed certificate; an
//!   accepted IK initiation replayed is refused.
//!
//! Either side may run in the harness CA's mode (`ca`: certificates required and proved), so
//! that the certificate decoder and trust checks of the handshake are reached too. Layers are
//! copies of templates built once (`gossipd_fuzz::layer_in`); the handshakes themselves (DH,
//! signatures) are the inputs' own work.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use arbitrary::Arbitrary;
use gossip_core::secure::{Received, packet};
use gossip_core::version::VersionRange;
use gossipd_fuzz::{
    BindingSpec, Mode, Mutation, PEER_ID, Pair, Plaintext, WALL, addr, builder, cert_of, check_from_peer, cluster_key,
    credentials_of, layer_in, now0, open, peer, reseal, transport,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    IkInit,
    IkResp,
    XxInit,
    XxResp,
    XxFin,
    Cookie,
    Transport,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::IkInit => packet::IK_INIT,
            Kind::IkResp => packet::IK_RESP,
            Kind::XxInit => packet::XX_INIT,
            Kind::XxResp => packet::XX_RESP,
            Kind::XxFin => packet::XX_FIN,
            Kind::Cookie => packet::COOKIE,
            Kind::Transport => packet::TRANSPORT,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Case {
    /// A real exchange with the `nth` (0 or 1) packet of type `kind` mutated.
    Mutate { ik: bool, mode: Mode, kind: Kind, nth: bool, mutation: Mutation },
    /// An IK initiation from the harness peer carrying `ts ‖ plaintext` (`ts` relative to the
    /// layer's wall clock if `relative`, nanoseconds).
    CraftIkInit { ca: bool, ts: u64, relative: bool, plaintext: Plaintext, mutation: Option<Mutation>, data: Vec<u8> },
    /// An XX exchange started by the harness peer whose final message carries `plaintext`.
    CraftXxFin { ca: bool, plaintext: Plaintext, mutation: Option<Mutation>, data: Vec<u8> },
    /// An XX response from the harness peer carrying `plaintext`.
    CraftXxResp { ca: bool, plaintext: Plaintext, mutation: Option<Mutation>, data: Vec<u8> },
    /// An IK initiation to the harness peer (advertised by `hint`) answered with `payload`.
    CraftIkResp { ca: bool, hint: BindingSpec, payload: IkPayload, mutation: Option<Mutation>, data: Vec<u8> },
}

/// The plaintext of a crafted IK response.
#[derive(Arbitrary, Debug)]
enum IkPayload {
    /// `timestamp ‖ min ‖ max`, the timestamp `skew` seconds off the layer's clock and the
    /// versions this build's if `None`.
    Shaped { skew: i32, versions: Option<(u8, u8)> },
    /// Any bytes (up to 400).
    Raw(Vec<u8>),
}

impl IkPayload {
    fn bytes(&self) -> Vec<u8> {
        match self {
            IkPayload::Shaped { skew, versions } => {
                let ts = WALL.saturating_add_signed(i64::from(*skew) * 1_000_000_000);
                let d = VersionRange::DEFAULT;
                let (min, max) = versions.unwrap_or((d.min(), d.max()));
                let mut v = ts.to_be_bytes().to_vec();
                v.extend([min, max]);
                v
            }
            IkPayload::Raw(b) => b.iter().copied().take(400).collect(),
        }
    }
}

fn mode(ca: bool) -> Mode {
    Mode { under_load: false, ca }
}

/// What a layer trusting the CA may only have accepted: credentials ending in exactly the
/// peer's CA-signed certificate.
fn check_cert(ca: bool, credentials: &[u8]) {
    if ca {
        assert_eq!(
            credentials.get(packet::CRED_MIN..),
            Some(cert_of(PEER_ID).encoded()),
            "a layer requiring certificates accepted credentials without the peer's"
        );
    }
}

fn delivered(ca: bool, r: &Received, data: &[u8], credentials: &[u8]) {
    check_from_peer(r, data);
    check_cert(ca, credentials);
}

fn mutate(pkt: &mut Vec<u8>, m: &Option<Mutation>) {
    reseal(pkt);
    if let Some(m) = m {
        m.apply(pkt);
    }
}

fn amplification_ok(input: usize, out: &[gossip_core::secure::Outgoing]) {
    let sent: usize = out.iter().map(|o| o.bytes.len()).sum();
    assert!(sent <= input, "{sent} bytes answered to {input}");
}

/// The exchange of `mutate_exchange`, every datagram shown to `f` first.
fn exchange(ik: bool, mode: Mode, f: &mut dyn FnMut(SocketAddr, SocketAddr, &mut Vec<u8>)) {
    let mut p = Pair::new(layer_in(1, mode), layer_in(2, mode));
    p.a_sends(b"first", ik, f);
    p.tick(Duration::from_millis(1100), f);
    p.b_sends(b"second", f);
    p.a_sends(b"third", ik, f);
    p.tick(Duration::from_millis(1100), f);
    p.tick(Duration::from_secs(6), f);
    p.b_sends(b"fourth", f);
    p.check_authenticity();
}

/// The datagrams of the unmutated exchange in `(ik, mode)`, in the order the wire carries them,
/// if it is deterministic: recorded once per process (the exchange runs, and is checked, twice,
/// on copies of the template layers, and must carry the same bytes both times), `None` if the
/// two runs differ.
fn unmutated(ik: bool, mode: Mode) -> Option<Rc<Vec<Vec<u8>>>> {
    thread_local! {
        static RUNS: RefCell<HashMap<(bool, Mode), Option<Rc<Vec<Vec<u8>>>>>> = RefCell::new(HashMap::new());
    }
    RUNS.with(|r| {
        r.borrow_mut()
            .entry((ik, mode))
            .or_insert_with(|| {
                let record = || {
                    let mut wire = Vec::new();
                    exchange(ik, mode, &mut |_, _, bytes: &mut Vec<u8>| wire.push(bytes.clone()));
                    wire
                };
                let first = record();
                (record() == first).then(|| Rc::new(first))
            })
            .clone()
    })
}

fn mutate_exchange(ik: bool, mode: Mode, kind: Kind, nth: bool, m: &Mutation) {
    let (target, nth) = (kind.byte(), usize::from(nth));
    // Layers are fresh copies of the templates at the same `now`, so the exchange is the
    // unmutated one up to the packet the mutation hits. If there is no such packet, or the
    // mutation leaves its bytes as they were, this input's exchange is exactly the unmutated one,
    // already run and checked in this process: skip it (nothing about it can differ).
    if let Some(wire) = unmutated(ik, mode) {
        match wire.iter().filter(|b| b.first() == Some(&target)).nth(nth) {
            None => return,
            Some(pkt) => {
                let mut b = pkt.clone();
                m.apply(&mut b);
                if &b == pkt {
                    return;
                }
            }
        }
    }
    let mut seen = 0;
    let mut f = |_: SocketAddr, _: SocketAddr, bytes: &mut Vec<u8>| {
        if bytes.first() == Some(&target) {
            if seen == nth {
                m.apply(bytes);
            }
            seen += 1;
        }
    };
    exchange(ik, mode, &mut f);
}

fn craft_ik_init(
    ca: bool,
    ts: u64,
    relative: bool,
    plaintext: &Plaintext,
    m: &Option<Mutation>,
    data: &[u8],
) -> Option<()> {
    let now = now0();
    let mut b = layer_in(2, mode(ca));
    let theirs = b.binding().static_pub;
    let me = peer();
    let mut hs = builder(packet::IK_PATTERN, [1; 32])
        .local_private_key(&me.secret)
        .and_then(|x| x.remote_public_key(&theirs))
        .and_then(|x| x.psk(2, cluster_key().psk()))
        .and_then(|x| x.build_initiator())
        .ok()?;
    let ts = if relative { WALL.wrapping_add(ts) } else { ts };
    let mut pt = ts.to_be_bytes().to_vec();
    let creds = plaintext.bytes(theirs);
    pt.extend(&creds);
    let mut noise = vec![0u8; 4096];
    let n = hs.write_message(&pt, &mut noise).ok()?;
    let mut pkt = vec![packet::IK_INIT, 0, 0, 0, 42];
    pkt.extend_from_slice(&noise[..n]);
    pkt.extend_from_slice(&[0; 32]);
    mutate(&mut pkt, m);
    let mut out = Vec::new();
    assert!(b.recv(now, addr(7), &pkt, &mut out).is_none());
    amplification_ok(pkt.len(), &out);
    let resp = out.first()?.bytes.clone();
    if resp[0] != packet::IK_RESP {
        return None;
    }
    // Accepted: the peer completes the handshake (the layer is honest) and sends data.
    let mut buf = [0u8; 64];
    hs.read_message(&resp[9..9 + packet::IK2_NOISE], &mut buf).expect("an honest IK response");
    let t = hs.into_stateless_transport_mode().expect("handshake done");
    let their_idx = packet::u32_at(&resp, 1);
    let tp = transport(&t, their_idx, 0, data)?;
    let mut out = Vec::new();
    check_cert(ca, &creds);
    match b.recv(now, addr(7), &tp, &mut out) {
        Some(r) => delivered(ca, &r, data, &creds),
        None => assert!(data.is_empty(), "data over an accepted IK session was not delivered"),
    }
    // The accepted initiation replayed is refused, without an answer.
    let mut out = Vec::new();
    b.recv(now, addr(7), &pkt, &mut out);
    assert!(out.is_empty(), "a replayed IK initiation was answered");
    Some(())
}

fn craft_xx_fin(ca: bool, plaintext: &Plaintext, m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut b = layer_in(2, mode(ca));
    let theirs = b.binding();
    let their_creds = credentials_of(&b);
    let me = peer();
    let mut hs = builder(packet::XX_PATTERN, [2; 32])
        .local_private_key(&me.secret)
        .and_then(|x| x.psk(3, cluster_key().psk()))
        .and_then(|x| x.build_initiator())
        .ok()?;
    let mut pkt = vec![0u8; packet::XX_INIT_LEN];
    pkt[0] = packet::XX_INIT;
    pkt[1..5].copy_from_slice(&42u32.to_be_bytes());
    let n = hs.write_message(&[], &mut pkt[5..]).ok()?;
    assert_eq!(n, packet::XX1_NOISE);
    reseal(&mut pkt);
    let mut out = Vec::new();
    b.recv(now, addr(7), &pkt, &mut out);
    let resp = out.first().expect("an XX initiation with the cluster key is answered").bytes.clone();
    assert_eq!(resp[0], packet::XX_RESP);
    let mut got = [0u8; 1024];
    let n =
        hs.read_message(&resp[9..9 + packet::xx2_noise(their_creds.len())], &mut got).expect("an honest XX response");
    assert_eq!(&got[..n], &their_creds[..], "the responder proves its own credentials");
    let mut noise = vec![0u8; 4096];
    let creds = plaintext.bytes(theirs.static_pub);
    let n = hs.write_message(&creds, &mut noise).ok()?;
    let mut fin = vec![packet::XX_FIN];
    fin.extend_from_slice(&resp[1..5]);
    fin.extend_from_slice(&noise[..n]);
    fin.extend_from_slice(&[0; 32]);
    mutate(&mut fin, m);
    let before = b.stats().handshakes_completed;
    let mut out = Vec::new();
    assert!(b.recv(now, addr(7), &fin, &mut out).is_none());
    amplification_ok(fin.len(), &out);
    let accepted = b.stats().handshakes_completed > before;
    if accepted {
        check_cert(ca, &creds);
    }
    let t = hs.into_stateless_transport_mode().ok()?;
    let tp = transport(&t, packet::u32_at(&resp, 1), 0, data)?;
    let mut out = Vec::new();
    match b.recv(now, addr(7), &tp, &mut out) {
        Some(r) => {
            assert!(accepted, "data delivered without a completed handshake");
            delivered(ca, &r, data, &creds);
        }
        None => assert!(!accepted || data.is_empty(), "data over an accepted XX session was not delivered"),
    }
    Some(())
}

fn craft_xx_resp(ca: bool, plaintext: &Plaintext, m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut a = layer_in(1, mode(ca));
    let mine = a.binding();
    let my_creds = credentials_of(&a);
    let me = peer();
    let mut out = Vec::new();
    a.send(now, addr(7), None, b"queued", &mut out);
    let init = out.first()?.bytes.clone();
    let mut hs = builder(packet::XX_PATTERN, [3; 32])
        .local_private_key(&me.secret)
        .and_then(|x| x.psk(3, cluster_key().psk()))
        .and_then(|x| x.build_responder())
        .ok()?;
    hs.read_message(&init[5..5 + packet::XX1_NOISE], &mut []).expect("an honest XX initiation");
    let mut noise = vec![0u8; 4096];
    let creds = plaintext.bytes(mine.static_pub);
    let n = hs.write_message(&creds, &mut noise).ok()?;
    let mut resp = vec![packet::XX_RESP, 0, 0, 0, 43];
    resp.extend_from_slice(&init[1..5]);
    resp.extend_from_slice(&noise[..n]);
    resp.extend_from_slice(&[0; 32]);
    mutate(&mut resp, m);
    let mut out = Vec::new();
    assert!(a.recv(now, addr(7), &resp, &mut out).is_none());
    let fin = out.first()?.bytes.clone();
    assert_eq!(fin[0], packet::XX_FIN);
    // The initiator answered: it accepted the responder's credentials.
    check_cert(ca, &creds);
    let mut got = [0u8; 1024];
    let n =
        hs.read_message(&fin[5..5 + packet::xx3_noise(my_creds.len())], &mut got).expect("an honest XX final message");
    assert_eq!(&got[..n], &my_creds[..], "the initiator proves its own credentials");
    let t = hs.into_stateless_transport_mode().expect("handshake done");
    let their_idx = packet::u32_at(&init, 1);
    let keepalive = transport(&t, their_idx, 0, &[])?;
    let mut out = Vec::new();
    assert!(a.recv(now, addr(7), &keepalive, &mut out).is_none());
    let flushed: Vec<Vec<u8>> = out.iter().filter_map(|o| open(&t, &o.bytes)).collect();
    let theirs = VersionRange::new(creds[0], creds[1]).expect("accepted credentials name a range");
    if VersionRange::DEFAULT.negotiate(&theirs).is_none() {
        // No version in common: the final message still goes (so that the responder reports the
        // refusal too), but no session is installed, and the refusal is reported here.
        assert!(flushed.is_empty(), "a payload went out over a session without a common version");
        let tp = transport(&t, their_idx, 1, data)?;
        assert!(a.recv(now, addr(7), &tp, &mut Vec::new()).is_none(), "data delivered without a common version");
        let refused = a.take_version_refusals();
        assert!(refused.iter().any(|(_, id, r)| *id == peer().identity.public() && *r == theirs), "{refused:?}");
        return Some(());
    }
    // The keepalive confirms the session; the initiator flushes what it queued.
    assert_eq!(flushed, vec![b"queued".to_vec()], "the queued payload goes out once confirmed");
    let tp = transport(&t, their_idx, 1, data)?;
    match a.recv(now, addr(7), &tp, &mut Vec::new()) {
        Some(r) => delivered(ca, &r, data, &creds),
        None => assert!(data.is_empty(), "data over an accepted XX session was not delivered"),
    }
    Some(())
}

fn craft_ik_resp(ca: bool, hint: &BindingSpec, payload: &IkPayload, m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut a = layer_in(1, mode(ca));
    let my_creds = credentials_of(&a);
    let hint = hint.build(a.binding().static_pub);
    let me = peer();
    let mut out = Vec::new();
    a.send(now, addr(7), Some(hint), b"queued", &mut out);
    let init = out.first()?.bytes.clone();
    if init[0] != packet::IK_INIT {
        assert!(!hint.valid_at(gossipd_fuzz::WALL_SECS), "a valid binding hint was not used for IK");
        return None;
    }
    let mut hs = builder(packet::IK_PATTERN, [4; 32])
        .local_private_key(&me.secret)
        .and_then(|x| x.psk(2, cluster_key().psk()))
        .and_then(|x| x.build_responder())
        .ok()?;
    let mut got = [0u8; 1024];
    // Only readable if the hint bound the peer's real static key.
    let n = hs.read_message(&init[5..5 + packet::ik1_noise(8 + my_creds.len())], &mut got).ok()?;
    assert_eq!(n, 8 + my_creds.len());
    assert_eq!(&got[8..n], &my_creds[..], "the initiator proves its own credentials");
    let mut noise = vec![0u8; 1024];
    let n = hs.write_message(&payload.bytes(), &mut noise).ok()?;
    let mut resp = vec![packet::IK_RESP, 0, 0, 0, 44];
    resp.extend_from_slice(&init[1..5]);
    resp.extend_from_slice(&noise[..n]);
    resp.extend_from_slice(&[0; 32]);
    mutate(&mut resp, m);
    let before = a.stats().handshakes_completed;
    let mut out = Vec::new();
    assert!(a.recv(now, addr(7), &resp, &mut out).is_none());
    let accepted = a.stats().handshakes_completed > before;
    let t = hs.into_stateless_transport_mode().ok()?;
    if accepted {
        let flushed: Vec<Vec<u8>> = out.iter().filter_map(|o| open(&t, &o.bytes)).collect();
        assert_eq!(flushed, vec![b"queued".to_vec()]);
    } else {
        assert!(out.is_empty());
    }
    let tp = transport(&t, packet::u32_at(&init, 1), 0, data)?;
    match a.recv(now, addr(7), &tp, &mut Vec::new()) {
        Some(r) => {
            assert!(accepted, "data delivered without a completed handshake");
            // The initiator proved nothing about the responder but its static key: the identity
            // is the one of the (valid) binding it was told.
            assert_eq!(r.binding, hint);
            assert_eq!(r.payload, data);
        }
        None => assert!(!accepted || data.is_empty(), "data over an accepted IK session was not delivered"),
    }
    Some(())
}

/// Longest data payload sent over a crafted session (it must fit a datagram).
const MAX_DATA: usize = 1000;

fuzz_target!(|case: Case| {
    // Never empty (an empty payload is a keepalive, which the exchanges above cover).
    let cap = |d: &Vec<u8>| std::iter::once(1u8).chain(d.iter().copied()).take(MAX_DATA).collect::<Vec<u8>>();
    match &case {
        Case::Mutate { ik, mode, kind, nth, mutation } => mutate_exchange(*ik, *mode, *kind, *nth, mutation),
        Case::CraftIkInit { ca, ts, relative, plaintext, mutation, data } => {
            craft_ik_init(*ca, *ts, *relative, plaintext, mutation, &cap(data));
        }
        Case::CraftXxFin { ca, plaintext, mutation, data } => {
            craft_xx_fin(*ca, plaintext, mutation, &cap(data));
        }
        Case::CraftXxResp { ca, plaintext, mutation, data } => {
            craft_xx_resp(*ca, plaintext, mutation, &cap(data));
        }
        Case::CraftIkResp { ca, hint, payload, mutation, data } => {
            craft_ik_resp(*ca, hint, payload, mutation, &cap(data));
        }
    }
});
