//! Structured fuzzing of the handshakes, from valid messages outward.
//!
//! - `Mutate`: two real layers run an IK or XX exchange (optionally under load, so with
//!   cookies), then traffic both ways, retries and timers; one packet of a chosen type is
//!   mutated on the wire (bit flips, truncation or extension) and, if the input says so, its
//!   mac1 is recomputed with the cluster key the harness holds, so that the mutation gets past
//!   admission into the Noise and binding parsing. Whatever was mutated, each side may only
//!   deliver payloads the other side sent, under the other side's identity.
//! - `Craft*`: the harness plays a peer with its own Noise state and cluster key, and puts the
//!   fuzzer's plaintext (a shaped binding or raw bytes) inside a correctly encrypted IK
//!   initiation, XX response, XX final message or IK response. A layer may only deliver data
//!   from the peer under a currently valid binding, signed by the identity it names, of the
//!   static key the peer really used; an accepted IK initiation replayed is refused.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use gossip_core::secure::keys::BINDING_LEN;
use gossip_core::secure::{SecureLayer, packet};
use gossipd_fuzz::{
    BindingSpec, Mutation, Pair, Plaintext, addr, builder, check_from_peer, cluster_key, config, encode_binding, layer,
    now0, open, peer, reseal, transport,
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
    Mutate { ik: bool, under_load: bool, kind: Kind, nth: bool, mutation: Mutation },
    /// An IK initiation from the harness peer carrying `ts ‖ plaintext`.
    CraftIkInit { ts: u64, plaintext: Plaintext, mutation: Option<Mutation>, data: Vec<u8> },
    /// An XX exchange started by the harness peer whose final message carries `plaintext`.
    CraftXxFin { plaintext: Plaintext, mutation: Option<Mutation>, data: Vec<u8> },
    /// An XX response from the harness peer carrying `plaintext`.
    CraftXxResp { plaintext: Plaintext, mutation: Option<Mutation>, data: Vec<u8> },
    /// An IK initiation to the harness peer (advertised by `hint`) answered with `payload`.
    CraftIkResp { hint: BindingSpec, payload: Vec<u8>, mutation: Option<Mutation>, data: Vec<u8> },
}

fn layer_loaded(i: u8, under_load: bool) -> SecureLayer {
    let mut cfg = config(i);
    if under_load {
        cfg.load_threshold = 0;
    }
    SecureLayer::new(cfg, now0())
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

fn mutate_exchange(ik: bool, under_load: bool, kind: Kind, nth: bool, m: &Mutation) {
    let mut p = Pair::new(layer_loaded(1, under_load), layer_loaded(2, under_load));
    let (target, nth) = (kind.byte(), usize::from(nth));
    let mut seen = 0;
    let mut f = |_: SocketAddr, _: SocketAddr, bytes: &mut Vec<u8>| {
        if bytes.first() == Some(&target) {
            if seen == nth {
                m.apply(bytes);
            }
            seen += 1;
        }
    };
    p.a_sends(b"first", ik, &mut f);
    p.tick(Duration::from_millis(1100), &mut f);
    p.b_sends(b"second", &mut f);
    p.a_sends(b"third", ik, &mut f);
    p.tick(Duration::from_millis(1100), &mut f);
    p.tick(Duration::from_secs(6), &mut f);
    p.b_sends(b"fourth", &mut f);
    p.check_authenticity();
}

fn craft_ik_init(ts: u64, plaintext: &Plaintext, m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut b = layer(2, now);
    let theirs = b.binding().static_pub;
    let me = peer();
    let mut hs = builder(packet::IK_PATTERN, [1; 32])
        .local_private_key(&me.secret)
        .and_then(|x| x.remote_public_key(&theirs))
        .and_then(|x| x.psk(2, cluster_key().psk()))
        .and_then(|x| x.build_initiator())
        .ok()?;
    let mut pt = ts.to_be_bytes().to_vec();
    pt.extend(plaintext.bytes(theirs));
    let mut noise = vec![0u8; 1024];
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
    match b.recv(now, addr(7), &tp, &mut out) {
        Some(r) => check_from_peer(&r, data),
        None => assert!(data.is_empty(), "data over an accepted IK session was not delivered"),
    }
    // The accepted initiation replayed is refused, without an answer.
    let mut out = Vec::new();
    b.recv(now, addr(7), &pkt, &mut out);
    assert!(out.is_empty(), "a replayed IK initiation was answered");
    Some(())
}

fn craft_xx_fin(plaintext: &Plaintext, m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut b = layer(2, now);
    let theirs = b.binding();
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
    let mut got = [0u8; 256];
    let n = hs.read_message(&resp[9..9 + packet::xx2_noise(BINDING_LEN)], &mut got).expect("an honest XX response");
    assert_eq!(&got[..n], &encode_binding(&theirs)[..], "the responder proves its own binding");
    let mut noise = vec![0u8; 1024];
    let n = hs.write_message(&plaintext.bytes(theirs.static_pub), &mut noise).ok()?;
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
    let t = hs.into_stateless_transport_mode().ok()?;
    let tp = transport(&t, packet::u32_at(&resp, 1), 0, data)?;
    let mut out = Vec::new();
    match b.recv(now, addr(7), &tp, &mut out) {
        Some(r) => {
            assert!(accepted, "data delivered without a completed handshake");
            check_from_peer(&r, data);
        }
        None => assert!(!accepted || data.is_empty(), "data over an accepted XX session was not delivered"),
    }
    Some(())
}

fn craft_xx_resp(plaintext: &Plaintext, m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut a = layer(1, now);
    let mine = a.binding();
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
    let mut noise = vec![0u8; 1024];
    let n = hs.write_message(&plaintext.bytes(mine.static_pub), &mut noise).ok()?;
    let mut resp = vec![packet::XX_RESP, 0, 0, 0, 43];
    resp.extend_from_slice(&init[1..5]);
    resp.extend_from_slice(&noise[..n]);
    resp.extend_from_slice(&[0; 32]);
    mutate(&mut resp, m);
    let mut out = Vec::new();
    assert!(a.recv(now, addr(7), &resp, &mut out).is_none());
    let fin = out.first()?.bytes.clone();
    assert_eq!(fin[0], packet::XX_FIN);
    let mut got = [0u8; 256];
    let n = hs.read_message(&fin[5..5 + packet::xx3_noise(BINDING_LEN)], &mut got).expect("an honest XX final message");
    assert_eq!(&got[..n], &encode_binding(&mine)[..]);
    let t = hs.into_stateless_transport_mode().expect("handshake done");
    let their_idx = packet::u32_at(&init, 1);
    // The keepalive confirms the session; the initiator flushes what it queued.
    let keepalive = transport(&t, their_idx, 0, &[])?;
    let mut out = Vec::new();
    assert!(a.recv(now, addr(7), &keepalive, &mut out).is_none());
    let flushed: Vec<Vec<u8>> = out.iter().filter_map(|o| open(&t, &o.bytes)).collect();
    assert_eq!(flushed, vec![b"queued".to_vec()], "the queued payload goes out once confirmed");
    let tp = transport(&t, their_idx, 1, data)?;
    match a.recv(now, addr(7), &tp, &mut Vec::new()) {
        Some(r) => check_from_peer(&r, data),
        None => assert!(data.is_empty(), "data over an accepted XX session was not delivered"),
    }
    Some(())
}

fn craft_ik_resp(hint: &BindingSpec, payload: &[u8], m: &Option<Mutation>, data: &[u8]) -> Option<()> {
    let now = now0();
    let mut a = layer(1, now);
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
    let mut got = [0u8; 256];
    // Only readable if the hint bound the peer's real static key.
    let n = hs.read_message(&init[5..5 + packet::ik1_noise(packet::IK_PAYLOAD_MIN)], &mut got).ok()?;
    assert_eq!(n, 8 + BINDING_LEN);
    assert_eq!(&got[8..n], &encode_binding(&a.binding())[..]);
    let mut noise = vec![0u8; 1024];
    let payload: Vec<u8> = payload.iter().copied().take(400).collect();
    let n = hs.write_message(&payload, &mut noise).ok()?;
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
        Case::Mutate { ik, under_load, kind, nth, mutation } => {
            mutate_exchange(*ik, *under_load, *kind, *nth, mutation)
        }
        Case::CraftIkInit { ts, plaintext, mutation, data } => {
            craft_ik_init(*ts, plaintext, mutation, &cap(data));
        }
        Case::CraftXxFin { plaintext, mutation, data } => {
            craft_xx_fin(plaintext, mutation, &cap(data));
        }
        Case::CraftXxResp { plaintext, mutation, data } => {
            craft_xx_resp(plaintext, mutation, &cap(data));
        }
        Case::CraftIkResp { hint, payload, mutation, data } => {
            craft_ik_resp(hint, payload, mutation, &cap(data));
        }
    }
});
