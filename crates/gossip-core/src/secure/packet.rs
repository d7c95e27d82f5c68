//! Packet types and layouts of the secure session layer (docs/PROTOCOL.md section 5).
//!
//! Every packet starts with its type byte. Handshake packets end with `mac1 ‖ mac2` (16 bytes
//! each); `mac1` covers everything before it, `mac2` everything before it.

use super::mac::{self, MAC_LEN};

/// IK initiation: `type ‖ sender_idx ‖ noise(e, s, {timestamp ‖ binding ‖ certificate}) ‖ mac1 ‖ mac2`.
pub const IK_INIT: u8 = 0x21;
/// IK response: `type ‖ sender_idx ‖ receiver_idx ‖ noise(e, {}) ‖ mac1 ‖ mac2`.
pub const IK_RESP: u8 = 0x22;
/// XX initiation: `type ‖ sender_idx ‖ noise(e) ‖ zero padding ‖ mac1 ‖ mac2`, padded so that it is
/// never smaller than the response it draws.
pub const XX_INIT: u8 = 0x23;
/// XX response: `type ‖ sender_idx ‖ receiver_idx ‖ noise(e, s, {binding ‖ certificate}) ‖ mac1 ‖ mac2`.
pub const XX_RESP: u8 = 0x24;
/// XX final: `type ‖ receiver_idx ‖ noise(s, {binding ‖ certificate}) ‖ mac1 ‖ mac2`.
pub const XX_FIN: u8 = 0x25;
/// Cookie reply: `type ‖ receiver_idx ‖ nonce (12) ‖ ChaCha20-Poly1305(cookie (16))`.
pub const COOKIE: u8 = 0x26;
/// Transport: `type ‖ receiver_idx ‖ counter (u64 BE) ‖ ChaCha20-Poly1305(payload)`.
pub const TRANSPORT: u8 = 0x27;

/// Noise pattern of the 1-RTT handshake (the responder's static key is known).
pub const IK_PATTERN: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// Noise pattern of first contact.
pub const XX_PATTERN: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";

/// Largest certificate a handshake carries after the binding.
pub const CERT_MAX: usize = crate::cert::MAX_CERT;
/// Credentials a handshake proves: the wire versions spoken (`u8 min ‖ u8 max`), the binding,
/// then the node certificate (0 to [`CERT_MAX`] bytes: empty for a node without one).
pub const CRED_MIN: usize = 2 + super::keys::BINDING_LEN;
/// Largest credentials.
pub const CRED_MAX: usize = CRED_MIN + CERT_MAX;
/// Length of the IK payload: timestamp (u64 BE unix nanoseconds) and the initiator's
/// credentials (smallest).
pub const IK_PAYLOAD_MIN: usize = 8 + CRED_MIN;
/// Largest IK payload.
pub const IK_PAYLOAD_MAX: usize = 8 + CRED_MAX;
/// Noise bytes of IK message 1 around a payload of `n` bytes: e, encrypted s, encrypted payload.
pub const fn ik1_noise(n: usize) -> usize {
    32 + 48 + n + 16
}
/// Payload of IK message 2: the responder's timestamp (u64 BE unix nanoseconds: the initiator
/// learns the responder's clock offset) and the wire versions it speaks (`u8 min ‖ u8 max`; in
/// IK the responder proves no other credentials).
pub const IK2_PAYLOAD: usize = 8 + 2;
/// Noise bytes of IK message 2: e, encrypted payload.
pub const IK2_NOISE: usize = 32 + IK2_PAYLOAD + 16;
/// Noise bytes of XX message 1: e, and the tag of the empty payload (in PSK mode `e` already
/// keys the cipher).
pub const XX1_NOISE: usize = 32 + 16;
/// Noise bytes of XX message 2 around credentials of `n` bytes: e, encrypted s, encrypted payload.
pub const fn xx2_noise(n: usize) -> usize {
    32 + 48 + n + 16
}
/// Noise bytes of XX message 3 around credentials of `n` bytes: encrypted s, encrypted payload.
pub const fn xx3_noise(n: usize) -> usize {
    48 + n + 16
}

/// Shortest IK initiation.
pub const IK_INIT_MIN: usize = 1 + 4 + ik1_noise(IK_PAYLOAD_MIN) + 2 * MAC_LEN;
/// Longest IK initiation.
pub const IK_INIT_MAX: usize = 1 + 4 + ik1_noise(IK_PAYLOAD_MAX) + 2 * MAC_LEN;
/// Total length of an IK response.
pub const IK_RESP_LEN: usize = 1 + 4 + 4 + IK2_NOISE + 2 * MAC_LEN;
/// Shortest XX response.
pub const XX_RESP_MIN: usize = 1 + 4 + 4 + xx2_noise(CRED_MIN) + 2 * MAC_LEN;
/// Longest XX response.
pub const XX_RESP_MAX: usize = 1 + 4 + 4 + xx2_noise(CRED_MAX) + 2 * MAC_LEN;
/// Total length of an XX initiation: padded to the longest response (no amplification).
pub const XX_INIT_LEN: usize = XX_RESP_MAX;
/// Shortest XX final message.
pub const XX_FIN_MIN: usize = 1 + 4 + xx3_noise(CRED_MIN) + 2 * MAC_LEN;
/// Longest XX final message.
pub const XX_FIN_MAX: usize = 1 + 4 + xx3_noise(CRED_MAX) + 2 * MAC_LEN;
/// Length of a cookie reply's nonce (XChaCha20-Poly1305: random 24-byte nonces never repeat in
/// practice, whatever the number of cookies sent under one cookie key).
pub const COOKIE_NONCE_LEN: usize = 24;
/// Total length of a cookie reply.
pub const COOKIE_LEN: usize = 1 + 4 + COOKIE_NONCE_LEN + 16 + 16;
/// Transport header: type, receiver index, counter.
pub const TRANSPORT_HEADER: usize = 1 + 4 + 8;
/// Transport overhead: header and tag.
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER + 16;

/// Reads a big-endian u32 at `at` (caller checked the length).
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes `mac1` (keyed by `mac1_key`) and `mac2` (keyed by `cookie`, or zeros) into the last 32
/// bytes of a handshake packet whose body is already written.
pub fn seal_macs(packet: &mut [u8], mac1_key: &[u8; 32], cookie: Option<&[u8; 16]>) -> [u8; 16] {
    let n = packet.len();
    let m1 = mac::mac(mac1_key, &packet[..n - 2 * MAC_LEN]);
    packet[n - 2 * MAC_LEN..n - MAC_LEN].copy_from_slice(&m1);
    let m2 = match cookie {
        Some(c) => mac::mac(&cookie_mac_key(c), &packet[..n - MAC_LEN]),
        None => [0; MAC_LEN],
    };
    packet[n - MAC_LEN..].copy_from_slice(&m2);
    m1
}

/// True if the packet's mac1 verifies under `mac1_key`.
pub fn mac1_ok(packet: &[u8], mac1_key: &[u8; 32]) -> bool {
    let n = packet.len();
    n >= 2 * MAC_LEN && mac::eq(&mac::mac(mac1_key, &packet[..n - 2 * MAC_LEN]), &packet[n - 2 * MAC_LEN..n - MAC_LEN])
}

/// True if the packet's mac2 verifies under `cookie`.
pub fn mac2_ok(packet: &[u8], cookie: &[u8; 16]) -> bool {
    let n = packet.len();
    n >= 2 * MAC_LEN && mac::eq(&mac::mac(&cookie_mac_key(cookie), &packet[..n - MAC_LEN]), &packet[n - MAC_LEN..])
}

/// The packet's mac1 field.
pub fn mac1_of(packet: &[u8]) -> [u8; 16] {
    let n = packet.len();
    let mut m = [0u8; 16];
    m.copy_from_slice(&packet[n - 2 * MAC_LEN..n - MAC_LEN]);
    m
}

fn cookie_mac_key(cookie: &[u8; 16]) -> [u8; 32] {
    super::drbg::hash(&[b"gossipd mac2 v1", cookie])
}

// No answer sent before authentication is larger than what drew it, and every packet fits a
// datagram: checked when the crate compiles.
const _: () = {
    assert!(IK_RESP_LEN <= IK_INIT_MIN);
    assert!(XX_RESP_MAX <= XX_INIT_LEN);
    assert!(COOKIE_LEN <= IK_INIT_MIN && COOKIE_LEN <= XX_INIT_LEN);
    assert!(XX_INIT_LEN <= 1200 && IK_INIT_MAX <= 1200 && XX_FIN_MAX <= 1200);
    assert!(TRANSPORT_OVERHEAD <= crate::session::MAX_OVERHEAD);
    // The keepalive that answers an XX final message is smaller than it.
    assert!(TRANSPORT_OVERHEAD <= XX_FIN_MIN);
};
