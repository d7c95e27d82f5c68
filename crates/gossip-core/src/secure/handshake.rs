//! Handshake messages of the secure layer: building, answering and completing IK and XX
//! handshakes, and cookie replies under load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use snow::{Builder, HandshakeState};

use super::drbg::Resolver;
use super::keys::{BINDING_LEN, Binding, ClusterKey, Identity};
use super::packet::{self, u32_at};
use super::replay::ReplayWindow;
use super::{IK_ATTEMPTS, MAX_PENDING, Outgoing, SecureLayer, Session, StaticKey};
use crate::cert::CertError;
use crate::version::VersionRange;
use crate::wire::{Reader, Writer};

/// A handshake in flight.
pub(super) enum Pending {
    /// We initiated.
    Initiator {
        hs: Box<HandshakeState>,
        ik: bool,
        peer: SocketAddr,
        attempts: u32,
        /// When this attempt is given up and the next one sent (the backoff of
        /// [`SecureLayer::retry_delay`]).
        retry_at: Instant,
        /// This attempt carried a mac2 (a cookie from the peer): a cookie reply to it does not
        /// trigger an immediate resend.
        with_cookie: bool,
        peer_binding: Option<Binding>,
        mac1: [u8; 16],
        key: ClusterKey,
    },
    /// We answered an XX initiation and wait for its final message.
    XxResponder { hs: Box<HandshakeState>, peer: SocketAddr, started: Instant, their_idx: u32, key: ClusterKey },
}

impl Pending {
    pub(super) fn retry_at(&self, retry: Duration) -> Instant {
        match self {
            Pending::Initiator { retry_at, .. } => *retry_at,
            Pending::XxResponder { started, .. } => *started + retry * 5,
        }
    }
    pub(super) fn peer(&self) -> SocketAddr {
        match self {
            Pending::Initiator { peer, .. } | Pending::XxResponder { peer, .. } => *peer,
        }
    }
    pub(super) fn attempts(&self) -> u32 {
        match self {
            Pending::Initiator { attempts, .. } => *attempts,
            Pending::XxResponder { .. } => 0,
        }
    }
    pub(super) fn is_ik(&self) -> bool {
        matches!(self, Pending::Initiator { ik: true, .. })
    }
    pub(super) fn is_initiator(&self) -> bool {
        matches!(self, Pending::Initiator { .. })
    }
    pub(super) fn peer_binding(&self) -> Option<Binding> {
        match self {
            Pending::Initiator { peer_binding, .. } => *peer_binding,
            Pending::XxResponder { .. } => None,
        }
    }
}

/// A new static key pair bound to `identity` from `wall` (minus 5 minutes of clock skew) for
/// `validity`.
pub(super) fn new_static_key(identity: &Identity, seed: [u8; 32], wall: u64, validity: Duration) -> StaticKey {
    let params = packet::XX_PATTERN.parse().unwrap_or_else(|_| unreachable!("valid pattern"));
    let kp = Builder::with_resolver(params, Box::new(Resolver::new(seed)))
        .generate_keypair()
        .unwrap_or_else(|_| unreachable!("keygen with an infallible RNG"));
    let mut kp = kp;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&kp.private);
    zeroize::Zeroize::zeroize(&mut kp.private);
    let mut public = [0u8; 32];
    public.copy_from_slice(&kp.public);
    let binding = Binding::sign(identity, public, wall.saturating_sub(300), wall + validity.as_secs());
    StaticKey { secret, binding }
}

fn builder(pattern: &str, seed: [u8; 32]) -> Builder<'static> {
    let params = pattern.parse().unwrap_or_else(|_| unreachable!("valid pattern"));
    Builder::with_resolver(params, Box::new(Resolver::new(seed)))
}

impl SecureLayer {
    /// What this node proves in a handshake: the wire versions it speaks (`min ‖ max`), its
    /// binding, then its certificate (if any).
    fn credentials(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.cfg.versions.min());
        w.u8(self.cfg.versions.max());
        self.current.binding.encode(&mut w);
        if let Some(c) = &self.cfg.cert {
            w.bytes(c.encoded());
        }
        w.buf
    }
}

impl SecureLayer {
    pub(super) fn initiate(&mut self, now: Instant, dst: SocketAddr, peer: Option<Binding>, out: &mut Vec<Outgoing>) {
        self.initiate_attempt(now, dst, peer, 1, out);
    }

    pub(super) fn initiate_attempt(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        peer: Option<Binding>,
        attempts: u32,
        out: &mut Vec<Outgoing>,
    ) {
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let idx = self.fresh_index();
        let key = self.cfg.keyring.primary().clone();
        let wall = self.wall_nanos(now);
        let skew = self.cfg.max_skew.as_secs();
        let ik_target = peer.filter(|b| b.valid_within(wall / 1_000_000_000, skew));
        let use_ik = ik_target.is_some() && self.ik_failures.get(&dst).copied().unwrap_or(0) < IK_ATTEMPTS;
        let seed = self.secret32();
        let built = match (use_ik, ik_target) {
            (true, Some(b)) => builder(packet::IK_PATTERN, seed)
                .local_private_key(&self.current.secret[..])
                .and_then(|x| x.remote_public_key(&b.static_pub))
                .and_then(|x| x.psk(2, key.psk()))
                .and_then(|x| x.build_initiator()),
            _ => builder(packet::XX_PATTERN, seed)
                .local_private_key(&self.current.secret[..])
                .and_then(|x| x.psk(3, key.psk()))
                .and_then(|x| x.build_initiator()),
        };
        let Ok(mut hs) = built else { return };
        let mut pkt;
        if use_ik {
            let mut payload = wall.to_be_bytes().to_vec();
            payload.extend_from_slice(&self.credentials());
            let noise = packet::ik1_noise(payload.len());
            pkt = vec![0u8; 5 + noise + 2 * super::mac::MAC_LEN];
            if hs.write_message(&payload, &mut pkt[5..5 + noise]).ok() != Some(noise) {
                return;
            }
            pkt[0] = packet::IK_INIT;
        } else {
            pkt = vec![0u8; packet::XX_INIT_LEN];
            if hs.write_message(&[], &mut pkt[5..5 + packet::XX1_NOISE]).ok() != Some(packet::XX1_NOISE) {
                return;
            }
            pkt[0] = packet::XX_INIT;
        }
        pkt[1..5].copy_from_slice(&idx.to_be_bytes());
        let cookie = self.cookies.get(&dst).map(|(c, _)| *c);
        let mac1 = packet::seal_macs(&mut pkt, key.mac1_key(), cookie.as_ref());
        let retry_at = now + self.retry_delay(attempts);
        let p = Pending::Initiator {
            hs: Box::new(hs),
            ik: use_ik,
            peer: dst,
            attempts,
            retry_at,
            with_cookie: cookie.is_some(),
            peer_binding: peer,
            mac1,
            key,
        };
        self.pending.insert(idx, p);
        self.pending_by_addr.insert(dst, idx);
        self.stats.handshakes_initiated += 1;
        out.push(Outgoing { dst, bytes: pkt });
    }

    /// Admission of an initiation: mac1 under some keyring key; under load, a mac2 from our
    /// cookie (else a cookie reply), then the per-source rate. Returns the key that admitted it.
    ///
    /// The order is WireGuard's: the cookie before the budget. mac1 proves only the cluster key,
    /// and a captured initiation keeps a valid mac1 when replayed from any spoofed address, so
    /// a budget spent on mac1 alone would let a replay flood from an honest node's address use
    /// up that node's budget and keep it out. A valid mac2 proves that the source receives what
    /// is sent to its address (it got the cookie), so only cookie-proven initiations are
    /// counted against their source; the rest get a cookie reply (smaller than the initiation)
    /// and cost their source nothing.
    fn admit(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) -> Option<ClusterKey> {
        let Some(key) = self.cfg.keyring.keys().iter().find(|k| packet::mac1_ok(data, k.mac1_key())).cloned() else {
            self.stats.dropped_unauthenticated += 1;
            self.note_unadmitted(from);
            return None;
        };
        if self.under_load(now) {
            if self.jar.expired(now) {
                let s = self.secret32();
                self.jar.rotate(now, s);
            }
            let cookie = self.jar.cookie(from);
            if !packet::mac2_ok(data, &cookie) {
                self.send_cookie(from, data, &key, cookie, out);
                return None;
            }
            if !self.limiter.allow(now, from.ip()) {
                self.stats.rate_limited += 1;
                return None;
            }
        }
        Some(key)
    }

    fn send_cookie(
        &mut self,
        to: SocketAddr,
        data: &[u8],
        key: &ClusterKey,
        cookie: [u8; 16],
        out: &mut Vec<Outgoing>,
    ) {
        // WireGuard's cookie reply: XChaCha20-Poly1305 with a random 24-byte nonce. The cookie key
        // is long-lived (derived from the cluster key), so 12-byte random nonces would risk a
        // repeat (a birthday bound of 2^48 replies); 24 bytes do not.
        let mut nonce = [0u8; packet::COOKIE_NONCE_LEN];
        self.secret_fill(&mut nonce);
        let aead = XChaCha20Poly1305::new(key.cookie_key().into());
        let aad = packet::mac1_of(data);
        let Ok(enc) = aead.encrypt(&nonce.into(), Payload { msg: &cookie, aad: &aad }) else { return };
        let mut pkt = Vec::with_capacity(packet::COOKIE_LEN);
        pkt.push(packet::COOKIE);
        pkt.extend_from_slice(&data[1..5]);
        pkt.extend_from_slice(&nonce);
        pkt.extend_from_slice(&enc);
        self.stats.cookies_sent += 1;
        out.push(Outgoing { dst: to, bytes: pkt });
    }

    /// A cookie reply (the peer is under load): keeps the cookie, and resends the initiation
    /// with its mac2 at once if the attempt answered carried none. (WireGuard waits for the
    /// retransmission timer instead; here a handshake held back for a whole retry under load
    /// made probes through it miss their deadline, and the false suspicions added to the load.
    /// The resend happens once per attempt: a cookie reply to an initiation that already had a
    /// mac2 waits for the timer, so cookie replies cannot make this node loop.)
    pub(super) fn on_cookie(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) {
        if data.len() != packet::COOKIE_LEN {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let idx = u32_at(data, 1);
        let Some(Pending::Initiator { mac1, key, peer, with_cookie, .. }) = self.pending.get(&idx) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        if *peer != from {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let resend = !*with_cookie;
        let aead = XChaCha20Poly1305::new(key.cookie_key().into());
        let end = 5 + packet::COOKIE_NONCE_LEN;
        let nonce: [u8; packet::COOKIE_NONCE_LEN] = data[5..end].try_into().unwrap_or_default();
        match aead.decrypt(&nonce.into(), Payload { msg: &data[end..], aad: mac1 }) {
            Ok(c) if c.len() == 16 => {
                let mut cookie = [0u8; 16];
                cookie.copy_from_slice(&c);
                self.cookies.insert(from, (cookie, now));
                if resend {
                    let Some(p) = self.pending.remove(&idx) else { return };
                    if self.pending_by_addr.get(&from) == Some(&idx) {
                        self.pending_by_addr.remove(&from);
                    }
                    self.stats.cookie_resends += 1;
                    // The same attempt again (its backoff unchanged), now with the mac2.
                    self.initiate_attempt(now, from, p.peer_binding(), p.attempts(), out);
                }
            }
            _ => self.note_decrypt_failure(from, None),
        }
    }

    /// Checks the credentials proved in a handshake: a wire version range with a version in
    /// common; a binding of the Noise static key the peer used, signed by its identity and
    /// current; the identity not banned; and, when this layer trusts a CA, a certificate of
    /// that identity from the CA, current and unrevoked. Returns the binding and the version
    /// the session speaks (`None`: there is none, counted and reported).
    fn accept_binding(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        remote_static: Option<&[u8]>,
    ) -> Option<(Binding, Option<u8>)> {
        if bytes.len() < 2 + BINDING_LEN {
            self.note_decrypt_failure(from, None);
            return None;
        }
        let Some(theirs) = VersionRange::new(bytes[0], bytes[1]) else {
            self.note_decrypt_failure(from, None);
            return None;
        };
        let bytes = &bytes[2..];
        let b = Binding::decode(&mut Reader::new(&bytes[..BINDING_LEN])).ok()?;
        let wall = self.wall_nanos(now) / 1_000_000_000;
        if remote_static != Some(&b.static_pub[..]) || !b.valid_within(wall, self.cfg.max_skew.as_secs()) {
            // A genuine binding outside its bounds: the peer's clock is off beyond the tolerance
            // (a binding starts 300 s before its signer's clock when made). Say so.
            if remote_static == Some(&b.static_pub[..]) && b.valid_within(wall, u64::MAX / 4) {
                let their = b.not_before.saturating_add(300).saturating_mul(1_000_000_000);
                self.note_offset(from, b.identity, their, now);
            }
            self.note_decrypt_failure(from, None);
            return None;
        }
        if self.bans.is_banned(now, &b.identity) {
            self.stats.banned_drops += 1;
            return None;
        }
        if let Some(trust) = &self.cfg.trust {
            let verdict = match crate::cert::Certificate::decode(&bytes[BINDING_LEN..]) {
                _ if bytes.len() == BINDING_LEN => Err(CertError::Invalid("no certificate".into())),
                Err(e) => Err(CertError::Malformed(e)),
                Ok(c) if c.identity != b.identity => Err(CertError::WrongIdentity),
                Ok(c) => trust.check(&c, wall),
            };
            if let Err(e) = verdict {
                self.stats.cert_refusals += 1;
                self.note_refusal(from, b.identity, e);
                return None;
            }
        }
        let version = self.agree(from, b.identity, theirs);
        Some((b, version))
    }

    /// The version a session with a peer speaking `theirs` uses; `None` (counted and reported
    /// with both ranges) when there is none.
    fn agree(&mut self, from: SocketAddr, identity: super::keys::IdentityPub, theirs: VersionRange) -> Option<u8> {
        let v = self.cfg.versions.negotiate(&theirs);
        if v.is_none() {
            self.note_version_refusal(from, identity, theirs);
        }
        v
    }

    pub(super) fn on_ik_init(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) {
        if data.len() < packet::IK_INIT_MIN || data.len() > packet::IK_INIT_MAX {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let noise = &data[5..data.len() - 2 * super::mac::MAC_LEN];
        let Some(key) = self.admit(now, from, data, out) else { return };
        let mut statics = vec![self.current.secret.clone()];
        statics.extend(self.previous.as_ref().map(|p| p.secret.clone()));
        let mut payload = [0u8; packet::IK_PAYLOAD_MAX];
        let mut accepted = None;
        let want = noise.len() - packet::ik1_noise(0);
        for secret in statics {
            let seed = self.secret32();
            let Ok(mut hs) = builder(packet::IK_PATTERN, seed)
                .local_private_key(&secret[..])
                .and_then(|x| x.psk(2, key.psk()))
                .and_then(|x| x.build_responder())
            else {
                return;
            };
            if hs.read_message(noise, &mut payload).ok() == Some(want) {
                accepted = Some(hs);
                break;
            }
        }
        let Some(mut hs) = accepted else {
            self.note_decrypt_failure(from, None);
            return;
        };
        let ts = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
        let Some((binding, Some(version))) = self.accept_binding(now, from, &payload[8..want], hs.get_remote_static())
        else {
            return;
        };
        if !self.remember_timestamp(binding.identity, ts) {
            self.stats.replays += 1;
            return;
        }
        self.note_offset(from, binding.identity, ts, now);
        let my_idx = self.fresh_index();
        let mut pkt = vec![0u8; packet::IK_RESP_LEN];
        pkt[0] = packet::IK_RESP;
        pkt[1..5].copy_from_slice(&my_idx.to_be_bytes());
        pkt[5..9].copy_from_slice(&data[1..5]);
        let mut mine = self.wall_nanos(now).to_be_bytes().to_vec();
        mine.extend_from_slice(&[self.cfg.versions.min(), self.cfg.versions.max()]);
        if hs.write_message(&mine, &mut pkt[9..9 + packet::IK2_NOISE]).ok() != Some(packet::IK2_NOISE) {
            return;
        }
        packet::seal_macs(&mut pkt, key.mac1_key(), None);
        let Ok(transport) = hs.into_stateless_transport_mode() else { return };
        let their_idx = u32_at(data, 1);
        if self.install(now, my_idx, from, binding, transport, their_idx, false, &key, version) {
            out.push(Outgoing { dst: from, bytes: pkt });
        }
    }

    pub(super) fn on_ik_resp(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) {
        if data.len() != packet::IK_RESP_LEN {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let idx = u32_at(data, 5);
        let ok = matches!(self.pending.get(&idx), Some(Pending::Initiator { ik: true, key, .. }) if packet::mac1_ok(data, key.mac1_key()));
        if !ok {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let Some(Pending::Initiator { mut hs, peer, peer_binding, key, .. }) = self.pending.remove(&idx) else {
            return;
        };
        let mut buf = [0u8; 16];
        let Some(binding) = peer_binding else { return };
        if hs.read_message(&data[9..9 + packet::IK2_NOISE], &mut buf).ok() != Some(packet::IK2_PAYLOAD) {
            self.note_decrypt_failure(from, None);
            return;
        }
        self.note_offset(from, binding.identity, u64::from_be_bytes(buf[..8].try_into().unwrap_or_default()), now);
        let Some(theirs) = VersionRange::new(buf[8], buf[9]) else {
            self.note_decrypt_failure(from, None);
            return;
        };
        let Some(version) = self.agree(from, binding.identity, theirs) else { return };
        let Ok(transport) = hs.into_stateless_transport_mode() else { return };
        if self.pending_by_addr.get(&peer) == Some(&idx) {
            self.pending_by_addr.remove(&peer);
        }
        self.ik_failures.remove(&peer);
        if self.install(now, idx, from, binding, transport, u32_at(data, 1), true, &key, version) {
            self.flush_queue(now, from, idx, out);
        }
    }

    pub(super) fn on_xx_init(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) {
        if data.len() != packet::XX_INIT_LEN {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let Some(key) = self.admit(now, from, data, out) else { return };
        if self.pending.len() >= MAX_PENDING {
            self.stats.rate_limited += 1;
            return;
        }
        let seed = self.secret32();
        let Ok(mut hs) = builder(packet::XX_PATTERN, seed)
            .local_private_key(&self.current.secret[..])
            .and_then(|x| x.psk(3, key.psk()))
            .and_then(|x| x.build_responder())
        else {
            return;
        };
        let mut empty = [0u8; 0];
        if hs.read_message(&data[5..5 + packet::XX1_NOISE], &mut empty).is_err() {
            self.note_decrypt_failure(from, None);
            return;
        }
        let my_idx = self.fresh_index();
        let creds = self.credentials();
        let noise = packet::xx2_noise(creds.len());
        let mut pkt = vec![0u8; 9 + noise + 2 * super::mac::MAC_LEN];
        pkt[0] = packet::XX_RESP;
        pkt[1..5].copy_from_slice(&my_idx.to_be_bytes());
        pkt[5..9].copy_from_slice(&data[1..5]);
        if hs.write_message(&creds, &mut pkt[9..9 + noise]).ok() != Some(noise) {
            return;
        }
        packet::seal_macs(&mut pkt, key.mac1_key(), None);
        let their_idx = u32_at(data, 1);
        self.pending
            .insert(my_idx, Pending::XxResponder { hs: Box::new(hs), peer: from, started: now, their_idx, key });
        out.push(Outgoing { dst: from, bytes: pkt });
    }

    pub(super) fn on_xx_resp(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) {
        if data.len() < packet::XX_RESP_MIN || data.len() > packet::XX_RESP_MAX {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let idx = u32_at(data, 5);
        let ok = matches!(self.pending.get(&idx), Some(Pending::Initiator { ik: false, key, .. }) if packet::mac1_ok(data, key.mac1_key()));
        if !ok {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let Some(Pending::Initiator { mut hs, peer, key, .. }) = self.pending.remove(&idx) else { return };
        let mut payload = [0u8; packet::CRED_MAX];
        let noise = &data[9..data.len() - 2 * super::mac::MAC_LEN];
        let want = noise.len() - packet::xx2_noise(0);
        if hs.read_message(noise, &mut payload).ok() != Some(want) {
            self.note_decrypt_failure(from, None);
            return;
        }
        let Some((binding, version)) = self.accept_binding(now, from, &payload[..want], hs.get_remote_static()) else {
            return;
        };
        let their_idx = u32_at(data, 1);
        let mine = self.credentials();
        let noise = packet::xx3_noise(mine.len());
        let mut pkt = vec![0u8; 5 + noise + 2 * super::mac::MAC_LEN];
        pkt[0] = packet::XX_FIN;
        pkt[1..5].copy_from_slice(&their_idx.to_be_bytes());
        if hs.write_message(&mine, &mut pkt[5..5 + noise]).ok() != Some(noise) {
            return;
        }
        packet::seal_macs(&mut pkt, key.mac1_key(), None);
        if self.pending_by_addr.get(&peer) == Some(&idx) {
            self.pending_by_addr.remove(&peer);
        }
        let Some(version) = version else {
            // No version in common: the final message still goes (once), so that the responder
            // learns this node's range and reports the refusal too; no session is installed.
            out.push(Outgoing { dst: from, bytes: pkt });
            return;
        };
        let Ok(transport) = hs.into_stateless_transport_mode() else { return };
        // Unconfirmed until the responder's keepalive proves it processed the final message;
        // queued payloads wait, and the final message is retransmitted meanwhile.
        if self.install(now, idx, from, binding, transport, their_idx, false, &key, version) {
            self.fin_retx.insert(idx, (pkt.clone(), from, now, 1));
            out.push(Outgoing { dst: from, bytes: pkt });
        }
    }

    pub(super) fn on_xx_fin(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<Outgoing>) {
        if data.len() < packet::XX_FIN_MIN || data.len() > packet::XX_FIN_MAX {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let idx = u32_at(data, 1);
        let ok = matches!(self.pending.get(&idx), Some(Pending::XxResponder { key, peer, .. }) if *peer == from && packet::mac1_ok(data, key.mac1_key()));
        if !ok {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let Some(Pending::XxResponder { mut hs, their_idx, key, .. }) = self.pending.remove(&idx) else { return };
        let mut payload = [0u8; packet::CRED_MAX];
        let noise = &data[5..data.len() - 2 * super::mac::MAC_LEN];
        let want = noise.len() - packet::xx3_noise(0);
        if hs.read_message(noise, &mut payload).ok() != Some(want) {
            self.note_decrypt_failure(from, None);
            return;
        }
        let Some((binding, Some(version))) = self.accept_binding(now, from, &payload[..want], hs.get_remote_static())
        else {
            return;
        };
        let Ok(transport) = hs.into_stateless_transport_mode() else { return };
        // The final message proves the initiator holds the session keys: confirmed at once,
        // and a keepalive (an empty transport message, smaller than the final message) tells
        // the initiator so.
        if self.install(now, idx, from, binding, transport, their_idx, true, &key, version) {
            self.encrypt(now, idx, &[], out);
            self.flush_queue(now, from, idx, out);
        }
    }

    /// Installs an established session; a confirmed one becomes the way to reach `peer`.
    /// Refused (false) when `peer` is pinned to another identity.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &mut self,
        now: Instant,
        idx: u32,
        peer: SocketAddr,
        binding: Binding,
        transport: snow::StatelessTransportState,
        their_idx: u32,
        confirmed: bool,
        key: &ClusterKey,
        version: u8,
    ) -> bool {
        if self.pins.get(&peer).is_some_and(|pin| *pin != binding.identity) {
            self.stats.pin_mismatches += 1;
            return false;
        }
        let session = Session {
            peer,
            identity: binding.identity,
            transport,
            their_idx,
            send_counter: 0,
            replay: ReplayWindow::default(),
            established: now,
            confirmed,
            cluster_key: key.fingerprint(),
            unanswered_since: None,
            version,
        };
        self.sessions.insert(idx, session);
        self.bindings_of_sessions.insert(idx, binding);
        if confirmed {
            if let Some(old) = self.by_addr.insert(peer, idx) {
                // The previous session stays until it expires, so packets in flight still open.
                let _ = old;
            }
        }
        self.stats.handshakes_completed += 1;
        true
    }
}
