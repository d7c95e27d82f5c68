//! Properties of the secure session layer, each test failing if its property breaks:
//! admission by cluster key with zero reply bytes to outsiders, IK and XX handshakes, replay
//! rejection, static-key rotation, keyring rotation, cookies under load, bans, and the
//! amplification bound before authentication.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
use gossip_core::secure::{Outgoing, Received, SecureConfig, SecureLayer, packet};

const WALL: u64 = 1_790_000_000_000_000_000;

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn layer(i: u8, key: u8, now: Instant) -> SecureLayer {
    let cfg = SecureConfig::new(
        Identity::from_secret([i; 32]),
        Keyring::new(ClusterKey::new([key; 32])),
        WALL,
        [i + 100; 32],
    );
    SecureLayer::new(cfg, now)
}

fn layer_cfg(i: u8, key: u8, now: Instant, f: impl FnOnce(&mut SecureConfig)) -> SecureLayer {
    let mut cfg = SecureConfig::new(
        Identity::from_secret([i; 32]),
        Keyring::new(ClusterKey::new([key; 32])),
        WALL,
        [i + 100; 32],
    );
    f(&mut cfg);
    SecureLayer::new(cfg, now)
}

/// Two layers on addresses 1 and 2 and a wire between them.
struct Pair {
    now: Instant,
    a: SecureLayer,
    b: SecureLayer,
    /// Payloads delivered to a, b.
    got_a: Vec<Received>,
    got_b: Vec<Received>,
    /// Every datagram that crossed, (from, bytes).
    wire: Vec<(SocketAddr, Vec<u8>)>,
}

impl Pair {
    fn new(a: SecureLayer, b: SecureLayer, now: Instant) -> Pair {
        Pair { now, a, b, got_a: vec![], got_b: vec![], wire: vec![] }
    }

    /// Delivers datagrams until quiet.
    fn run(&mut self, mut out: Vec<Outgoing>, from: SocketAddr) {
        let mut q: Vec<(SocketAddr, Outgoing)> = out.drain(..).map(|o| (from, o)).collect();
        let mut steps = 0;
        while let Some((src, o)) = (!q.is_empty()).then(|| q.remove(0)) {
            steps += 1;
            assert!(steps < 100, "ping-pong");
            assert!(o.bytes.len() <= 1200);
            self.wire.push((src, o.bytes.clone()));
            let mut replies = Vec::new();
            let (layer, got, me) = if o.dst == addr(1) {
                (&mut self.a, &mut self.got_a, addr(1))
            } else {
                (&mut self.b, &mut self.got_b, addr(2))
            };
            if let Some(r) = layer.recv(self.now, src, &o.bytes, &mut replies) {
                got.push(r);
            }
            q.extend(replies.into_iter().map(|r| (me, r)));
        }
    }

    fn a_sends(&mut self, payload: &[u8], hint: bool) {
        let mut out = Vec::new();
        let binding = hint.then(|| self.b.binding());
        self.a.send(self.now, addr(2), binding, payload, &mut out);
        self.run(out, addr(1));
    }

    fn b_sends(&mut self, payload: &[u8]) {
        let mut out = Vec::new();
        self.b.send(self.now, addr(1), None, payload, &mut out);
        self.run(out, addr(2));
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        let mut out = Vec::new();
        self.a.handle_timeout(self.now, &mut out);
        self.run(std::mem::take(&mut out), addr(1));
        self.b.handle_timeout(self.now, &mut out);
        self.run(out, addr(2));
    }
}

#[test]
fn xx_first_contact_then_both_directions() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"hello", false);
    assert_eq!(p.got_b.len(), 1);
    assert_eq!(p.got_b[0].payload, b"hello");
    assert_eq!(p.got_b[0].identity, Identity::from_secret([1; 32]).public());
    let types: Vec<u8> = p.wire.iter().map(|(_, b)| b[0]).collect();
    // The responder's keepalive confirms the session before the queued data goes out.
    assert_eq!(types, vec![packet::XX_INIT, packet::XX_RESP, packet::XX_FIN, packet::TRANSPORT, packet::TRANSPORT]);
    p.b_sends(b"back");
    assert_eq!(p.got_a.len(), 1);
    assert_eq!(p.got_a[0].identity, Identity::from_secret([2; 32]).public());
    assert_eq!(p.b.stats().handshakes_initiated, 0, "b reuses the session a opened");
}

#[test]
fn ik_is_one_round_trip_when_the_binding_is_known() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"x", true);
    let types: Vec<u8> = p.wire.iter().map(|(_, b)| b[0]).collect();
    assert_eq!(types, vec![packet::IK_INIT, packet::IK_RESP, packet::TRANSPORT]);
    assert_eq!(p.got_b[0].payload, b"x");
    // The responder uses the session once the initiator's first transport packet confirmed it.
    p.b_sends(b"y");
    assert_eq!(p.got_a[0].payload, b"y");
}

#[test]
fn wrong_cluster_key_gets_zero_reply_bytes() {
    let now = t0();
    for hint in [false, true] {
        let mut p = Pair::new(layer(1, 8, now), layer(2, 9, now), now);
        p.a_sends(b"let me in", hint);
        assert_eq!(p.wire.len(), 1, "only the initiation crossed; nothing came back");
        assert!(p.got_b.is_empty());
        assert_eq!(p.b.stats().dropped_unauthenticated, 1);
        assert_eq!(p.b.stats().handshakes_completed, 0);
    }
}

#[test]
fn replayed_transport_packets_are_rejected() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"once", false);
    let transport = p.wire.iter().rfind(|(_, b)| b[0] == packet::TRANSPORT).unwrap().1.clone();
    let mut out = Vec::new();
    assert!(p.b.recv(p.now, addr(1), &transport, &mut out).is_none());
    assert!(out.is_empty());
    assert_eq!(p.b.stats().replays, 1);
    // A tampered packet fails authentication and does not move the window.
    let mut forged = transport.clone();
    forged[5..13].copy_from_slice(&1000u64.to_be_bytes());
    assert!(p.b.recv(p.now, addr(1), &forged, &mut out).is_none());
    assert_eq!(p.b.stats().decrypt_failures, 1);
    p.a_sends(b"twice", false);
    assert_eq!(p.got_b.len(), 2, "counter 1 is still accepted after a forged counter 1000");
}

#[test]
fn replayed_handshakes_are_rejected() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"x", true);
    let init = p.wire[0].1.clone();
    assert_eq!(init[0], packet::IK_INIT);
    let mut out = Vec::new();
    p.b.recv(p.now, addr(1), &init, &mut out);
    assert!(out.is_empty(), "a replayed IK initiation gets no answer");
    assert_eq!(p.b.stats().replays, 1);
    // An XX final message replayed after completion finds no pending handshake.
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"x", false);
    let fin = p.wire.iter().find(|(_, b)| b[0] == packet::XX_FIN).unwrap().1.clone();
    let before = p.b.stats().handshakes_completed;
    p.b.recv(p.now, addr(1), &fin, &mut out);
    assert!(out.is_empty());
    assert_eq!(p.b.stats().handshakes_completed, before);
}

#[test]
fn amplification_before_authentication_is_at_most_one() {
    let now = t0();
    // Every pre-authentication input, answered by a responder that holds the cluster key (the
    // worst case: an outsider gets nothing at all), under load and not.
    let mut inputs: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for (hint, name) in [(false, "xx-init"), (true, "ik-init")] {
        let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
        let mut out = Vec::new();
        p.a.send(now, addr(2), hint.then(|| p.b.binding()), b"x", &mut out);
        inputs.push((name.into(), out[0].bytes.clone(), false));
        inputs.push((format!("{name} under load"), out[0].bytes.clone(), true));
    }
    inputs.push(("junk".into(), vec![0x23; 300], false));
    inputs.push(("empty".into(), vec![], false));
    inputs.push(("transport to unknown index".into(), vec![packet::TRANSPORT; 60], false));
    let mut worst: f64 = 0.0;
    for (name, bytes, load) in inputs {
        let mut b = layer_cfg(2, 9, now, |c| {
            if load {
                c.load_threshold = 0;
            }
        });
        let mut out = Vec::new();
        b.recv(now, addr(1), &bytes, &mut out);
        let sent: usize = out.iter().map(|o| o.bytes.len()).sum();
        let ratio = sent as f64 / bytes.len().max(1) as f64;
        println!("amplification {name}: {} bytes in, {sent} out, ratio {ratio:.3}", bytes.len());
        assert!(sent <= bytes.len(), "{name}: {sent} bytes out for {} in", bytes.len());
        worst = worst.max(ratio);
    }
    println!("worst pre-authentication amplification ratio: {worst:.3}");
}

#[test]
fn cookies_under_load_then_the_handshake_completes() {
    let now = t0();
    let b = layer_cfg(2, 9, now, |c| c.load_threshold = 0);
    let mut p = Pair::new(layer(1, 9, now), b, now);
    p.a_sends(b"x", false);
    assert_eq!(p.b.stats().cookies_sent, 1);
    // The initiation is resent at once with the cookie's mac2 (not after a whole retry
    // interval, which under load made probes through the handshake time out).
    assert_eq!(p.a.stats().cookie_resends, 1);
    assert_eq!(p.got_b.len(), 1, "the resent initiation with a valid mac2 is served without waiting");
    assert_eq!(p.a.stats().handshakes_initiated, 2);
}

#[test]
fn a_cookie_reply_to_an_initiation_that_carried_a_mac2_waits_for_the_timer() {
    // A peer that keeps answering cookies (its secret rotated, or a forger with the cluster
    // key) gets one immediate resend per attempt, then the backoff: no loop.
    let now = t0();
    let mut a = layer(1, 9, now);
    let mut b = layer_cfg(2, 9, now, |c| c.load_threshold = 0);
    let (mut out, mut replies) = (Vec::new(), Vec::new());
    a.send(now, addr(2), None, b"x", &mut out);
    assert!(b.recv(now, addr(1), &out[0].bytes, &mut replies).is_none());
    assert_eq!(replies[0].bytes[0], packet::COOKIE);
    out.clear();
    a.recv(now, addr(2), &replies[0].bytes, &mut out);
    assert_eq!((a.stats().cookie_resends, out.len()), (1, 1), "resent at once with the mac2");
    // Another layer at b's address (a restart: another cookie secret) answers that resend
    // with a cookie too: a keeps it for the next attempt, and sends nothing now.
    let mut b2 = layer_cfg(2, 9, now, |c| {
        c.load_threshold = 0;
        c.seed = [7; 32];
    });
    replies.clear();
    assert!(b2.recv(now, addr(1), &out[0].bytes, &mut replies).is_none());
    assert_eq!(replies[0].bytes[0], packet::COOKIE);
    out.clear();
    a.recv(now, addr(2), &replies[0].bytes, &mut out);
    assert!(out.is_empty(), "a cookie reply to an initiation with a mac2 waits for the timer");
    assert_eq!((a.stats().cookie_resends, a.stats().handshakes_initiated), (1, 2));
}

#[test]
fn unanswered_handshakes_back_off() {
    // Attempts 1 to 4 wait 1, 2, 4 and 8 s (plus up to a quarter): over 15.5 s a peer that
    // never answers gets 4 initiations, where a fixed 1 s interval sent 5 (and then gave up).
    let now = t0();
    let mut a = layer(1, 9, now);
    let mut out = Vec::new();
    a.send(now, addr(2), None, b"x", &mut out);
    let mut sent = out.len();
    let mut times = vec![0.0];
    let mut t = now;
    for _ in 0..1550 {
        t += Duration::from_millis(10);
        out.clear();
        a.handle_timeout(t, &mut out);
        if !out.is_empty() {
            times.push(t.duration_since(now).as_secs_f64());
        }
        sent += out.len();
    }
    println!("initiations at {times:?}");
    assert_eq!(sent, 4, "initiations at {times:?}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (g, base) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(*g >= base && *g <= base * 1.25 + 0.02, "gaps {gaps:?}");
    }
}

#[test]
fn rotated_static_keys_keep_working_until_the_binding_expires() {
    let now = t0();
    let rot = |c: &mut SecureConfig| {
        c.rotation = Duration::from_secs(600);
        c.overlap = Duration::from_secs(300);
        c.rekey_after = Duration::from_secs(30);
        c.reject_after = Duration::from_secs(45);
    };
    let mut p = Pair::new(layer_cfg(1, 9, now, rot), layer_cfg(2, 9, now, rot), now);
    let old = p.b.binding();
    // Run through two rotations of b's key; a keeps using the binding it learned first.
    let mut delivered = 0;
    let mut t = 0;
    while t < 2000 {
        p.tick(Duration::from_secs(10));
        t += 10;
        let mut out = Vec::new();
        p.a.send(p.now, addr(2), Some(old), b"ping", &mut out);
        p.run(out, addr(1));
        p.tick(Duration::from_millis(1100));
        p.tick(Duration::from_millis(1100));
        p.tick(Duration::from_millis(1100));
        delivered = p.got_b.len();
    }
    assert!(p.b.stats().rotations >= 2, "b rotated {} times", p.b.stats().rotations);
    assert_ne!(p.b.binding(), old);
    // Every ping arrived: IK with the old key during the overlap, XX after it expired.
    assert_eq!(delivered, 200, "lost exchanges across rotations");
    // An IK initiation to the expired key is refused.
    let mut fresh = layer_cfg(3, 9, p.now, rot);
    let mut out = Vec::new();
    fresh.send(p.now, addr(2), Some(old), b"x", &mut out);
    let mut replies = Vec::new();
    p.b.recv(p.now, addr(3), &out[0].bytes, &mut replies);
    assert!(replies.is_empty(), "an initiation to an expired static key is not answered");
}

#[test]
fn sessions_rekey_after_half_their_message_budget_and_lose_nothing() {
    let now = t0();
    let budget = |c: &mut SecureConfig| c.max_messages = 8;
    let mut p = Pair::new(layer_cfg(1, 9, now, budget), layer_cfg(2, 9, now, budget), now);
    for i in 0..40u32 {
        let mut out = Vec::new();
        p.a.send(p.now, addr(2), None, &i.to_be_bytes(), &mut out);
        p.run(out, addr(1));
        p.tick(Duration::from_millis(10));
    }
    assert_eq!(p.got_b.len(), 40, "messages lost across rekeys");
    // 40 messages at a budget of 8 take ten sessions when each is renewed at 4 (five if sessions
    // were only replaced once exhausted, with messages queued behind a handshake each time).
    assert!(p.a.stats().handshakes_initiated >= 8, "only {} handshakes", p.a.stats().handshakes_initiated);
}

#[test]
fn keyring_rotation_new_key_works_and_old_key_stops() {
    let now = t0();
    let (k1, k2) = (ClusterKey::new([1; 32]), ClusterKey::new([2; 32]));
    let mut p = Pair::new(layer(1, 1, now), layer(2, 1, now), now);
    p.a_sends(b"old key", false);
    assert_eq!(p.got_b.len(), 1);
    // Install k2 everywhere, make it primary on a, then remove k1 on b.
    for l in [&mut p.a, &mut p.b] {
        let mut ring = l.keyring().clone();
        ring.install(k2.clone());
        l.set_keyring(ring);
    }
    let mut ring = p.a.keyring().clone();
    ring.use_key(&k2).unwrap();
    ring.remove(&k1).unwrap();
    p.a.set_keyring(ring);
    p.a_sends(b"new key", false);
    assert_eq!(p.got_b.len(), 2);
    let mut ring = p.b.keyring().clone();
    ring.use_key(&k2).unwrap();
    ring.remove(&k1).unwrap();
    p.b.set_keyring(ring);
    // A node still on k1 alone is now refused, with nothing sent back.
    let mut stale = layer(3, 1, p.now);
    let mut out = Vec::new();
    stale.send(p.now, addr(2), None, b"x", &mut out);
    let mut replies = Vec::new();
    p.b.recv(p.now, addr(3), &out[0].bytes, &mut replies);
    assert!(replies.is_empty());
}

#[test]
fn banned_identities_are_refused_then_forgiven() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"x", false);
    let a_id = Identity::from_secret([1; 32]).public();
    let period = p.b.ban(p.now, a_id, "malformed payload");
    assert_eq!(period, Duration::from_secs(60));
    let mut fresh = layer(1, 9, p.now);
    let mut out = Vec::new();
    fresh.send(p.now, addr(2), None, b"x", &mut out);
    p.a = fresh;
    p.wire.clear();
    p.run(out, addr(1));
    assert_eq!(p.got_b.len(), 1, "nothing more delivered while banned");
    assert!(p.b.stats().banned_drops >= 1);
    p.tick(Duration::from_secs(61));
    p.tick(Duration::from_secs(2));
    p.a_sends(b"after", false);
    assert_eq!(p.got_b.last().unwrap().payload, b"after", "forgiven after the period");
    // A second ban lasts twice as long.
    assert_eq!(p.b.ban(p.now, a_id, "again"), Duration::from_secs(120));
}

#[test]
fn arbitrary_bytes_never_panic_and_are_never_answered_without_the_key() {
    let now = t0();
    let mut b = layer(2, 9, now);
    let mut rng = gossip_core::rng::Rng::from_seed(5);
    for len in [0usize, 1, 5, 13, 29, 60, 89, 245, 281, 285, 1200, 1201] {
        for first in [0u8, 0x11, 0x17, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0xff] {
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(f) = bytes.first_mut() {
                *f = first;
            }
            let mut out = Vec::new();
            assert!(b.recv(now, addr(1), &bytes, &mut out).is_none());
            assert!(out.is_empty());
        }
    }
}

#[test]
fn a_lost_xx_final_message_is_retransmitted() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    let mut out = Vec::new();
    p.a.send(p.now, addr(2), None, b"x", &mut out);
    let mut replies = Vec::new();
    p.b.recv(p.now, addr(1), &out[0].bytes, &mut replies); // XX_RESP
    let mut fin = Vec::new();
    p.a.recv(p.now, addr(2), &replies[0].bytes, &mut fin);
    assert_eq!(fin.len(), 1, "only the final message: data waits for confirmation");
    assert_eq!(fin[0].bytes[0], packet::XX_FIN);
    // The final message is lost. The retransmission completes the handshake.
    p.tick(Duration::from_millis(1100));
    assert_eq!(p.got_b.len(), 1);
    assert_eq!(p.got_b[0].payload, b"x");
}

#[test]
fn a_restarted_peer_is_reached_again_with_a_new_handshake() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    let old_binding = p.b.binding();
    p.a_sends(b"before", false);
    assert_eq!(p.got_b.len(), 1);
    // b restarts: same identity, new process, no sessions, a new static key.
    p.b = layer_cfg(2, 9, p.now, |c| c.seed = [77; 32]);
    p.got_b.clear();
    let mut out = Vec::new();
    p.a.send(p.now, addr(2), Some(old_binding), b"lost", &mut out);
    p.run(out, addr(1));
    assert!(p.got_b.is_empty(), "the old session is gone on b's side");
    // After the dead-session delay a's next send opens a new handshake (IK to the stale key
    // fails, then XX), and traffic flows again.
    p.tick(Duration::from_secs(6));
    let mut out = Vec::new();
    p.a.send(p.now, addr(2), Some(old_binding), b"after", &mut out);
    p.run(out, addr(1));
    for _ in 0..5 {
        p.tick(Duration::from_millis(1100));
    }
    assert!(p.got_b.iter().any(|r| r.payload == b"after"), "got {:?}", p.got_b.len());
}

#[test]
fn a_pinned_seed_must_prove_the_pinned_identity() {
    let now = t0();
    // a pins address 2 to an identity b does not hold: the handshake completes cryptographically
    // but no session is installed, and nothing is delivered.
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a.pin(addr(2), Identity::from_secret([99; 32]).public());
    p.a_sends(b"secret", false);
    assert!(p.got_b.is_empty());
    assert_eq!(p.a.stats().pin_mismatches, 1);
    // Pinned to b's real identity, the same exchange works.
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a.pin(addr(2), Identity::from_secret([2; 32]).public());
    p.a_sends(b"secret", false);
    assert_eq!(p.got_b.len(), 1);
    assert_eq!(p.a.stats().pin_mismatches, 0);
}

#[test]
fn a_spoofed_replay_flood_from_an_honest_address_does_not_keep_that_node_out() {
    // An attacker captured a's (validly MACed) XX initiation and replays it to b from a's
    // address, 300 times a second: enough to put b under load. Then a restarts and must get in
    // with a new handshake. The replays carry no valid mac2 (the attacker never sees the
    // cookies b sends to a's address), so they must cost a's address nothing.
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"first", false);
    let init = p.wire.iter().find(|(src, b)| *src == addr(1) && b[0] == packet::XX_INIT).unwrap().1.clone();
    p.a = layer_cfg(1, 9, p.now, |c| c.seed = [77; 32]);
    let mut sent = false;
    // Every 10 ms, 3 replays, then whatever a does at that instant (its first initiation,
    // retries): the replays always come first, as from a fast attacker.
    for step in 0..600 {
        p.now += Duration::from_millis(10);
        for _ in 0..3 {
            let mut replies = Vec::new();
            let _ = p.b.recv(p.now, addr(1), &init, &mut replies);
            assert!(replies.iter().all(|r| r.bytes.len() <= init.len()), "amplification");
            for r in replies {
                let mut out = Vec::new();
                let _ = p.a.recv(p.now, addr(2), &r.bytes, &mut out);
                p.run(out, addr(1));
            }
        }
        if step == 100 {
            p.a_sends(b"after restart", false);
            sent = true;
        }
        p.tick(Duration::ZERO);
    }
    assert!(sent);
    assert!(
        p.got_b.iter().any(|r| r.payload == b"after restart"),
        "the restarted node was kept out by replays of its old initiation"
    );
    assert!(p.b.stats().cookies_sent > 0, "b was under load and answered replays with cookies");
}

/// Key material comes from the caller's entropy source, not from the DRBG seed: two layers
/// with the same seed but different entropy have different static keys, and every handshake
/// draws fresh entropy (its ephemeral). Without the source, the seed alone decides the keys.
#[test]
fn key_material_comes_from_the_entropy_source_not_the_seed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let now = t0();
    let draws = Arc::new(AtomicU64::new(0));
    let source = |byte: u8, draws: Arc<AtomicU64>| {
        gossip_core::secure::Entropy(Arc::new(move |b: &mut [u8]| {
            let n = draws.fetch_add(1, Ordering::Relaxed);
            for (i, x) in b.iter_mut().enumerate() {
                *x = byte ^ (n as u8).wrapping_mul(31) ^ i as u8;
            }
        }))
    };
    let a = layer_cfg(1, 9, now, |c| c.entropy = Some(source(0x11, draws.clone())));
    let b = layer_cfg(1, 9, now, |c| c.entropy = Some(source(0x22, Arc::new(AtomicU64::new(0)))));
    let plain_a = layer_cfg(1, 9, now, |_| {});
    let plain_b = layer_cfg(1, 9, now, |_| {});
    assert_ne!(a.binding().static_pub, b.binding().static_pub, "the static key ignored the entropy source");
    assert_eq!(plain_a.binding().static_pub, plain_b.binding().static_pub, "seeded layers replay");
    // A handshake draws from the source.
    let mut a = a;
    let before = draws.load(Ordering::Relaxed);
    let mut out = Vec::new();
    a.send(now, addr(2), None, b"x", &mut out);
    assert!(draws.load(Ordering::Relaxed) > before, "the handshake's ephemeral did not come from the source");
}

#[test]
fn transport_data_that_fails_to_decrypt_is_attributed_to_its_session() {
    let now = t0();
    let mut p = Pair::new(layer(1, 9, now), layer(2, 9, now), now);
    p.a_sends(b"hello", false);
    assert_eq!(p.got_b.len(), 1);
    // A's next transport datagram, tampered with on the path.
    let mut out = Vec::new();
    p.a.send(p.now, addr(2), None, b"second", &mut out);
    assert_eq!(out.len(), 1);
    let mut bytes = out.remove(0).bytes;
    *bytes.last_mut().unwrap() ^= 1;
    let mut replies = Vec::new();
    assert!(p.b.recv(p.now, addr(1), &bytes, &mut replies).is_none());
    assert_eq!(p.b.stats().decrypt_failures, 1);
    let failed = p.b.take_decrypt_failures();
    assert_eq!(failed, vec![(addr(1), Some(Identity::from_secret([1; 32]).public()), 1)]);
    assert!(p.b.take_decrypt_failures().is_empty(), "reported once");
}
