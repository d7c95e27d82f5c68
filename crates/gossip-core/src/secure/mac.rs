//! Keyed MACs checked before any Diffie-Hellman work (WireGuard's mac1 and mac2).
//!
//! `mac1 = BLAKE2s-128(key = BLAKE2s-256("gossipd mac1 v1" ‖ cluster key), packet up to mac1)`:
//! a packet without it costs one keyed hash per keyring key and gets no answer.
//! `mac2 = BLAKE2s-128(key = cookie, packet up to mac2)`: required only under load.

use blake2::Blake2sMac;
use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};

/// Length of a MAC.
pub const MAC_LEN: usize = 16;

/// BLAKE2s-128 keyed with `key` over `data`.
pub fn mac(key: &[u8; 32], data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    Update::update(&mut m, data);
    m.finalize_fixed().into()
}

/// Constant-time equality of two MACs (`subtle`: the compiler may not turn it into an early
/// exit; lengths are public).
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
