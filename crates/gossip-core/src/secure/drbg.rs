//! Deterministic random bits for the secure layer: BLAKE2s in counter mode under a 32-byte
//! seed (a PRF in counter mode is a sound DRBG). The daemon seeds it from the OS; the simulator
//! from its master seed, so runs replay exactly. Also the snow resolver that hands it to Noise.

use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac256};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// A deterministic random bit generator.
#[derive(Clone)]
pub struct Drbg {
    key: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl Drop for Drbg {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
        self.buf.zeroize();
    }
}

impl std::fmt::Debug for Drbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drbg(..)")
    }
}

impl Drbg {
    /// A generator whose output is determined by `seed`.
    pub fn new(seed: [u8; 32]) -> Drbg {
        Drbg { key: seed, counter: 0, buf: [0; 32], used: 32 }
    }

    fn refill(&mut self) {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        Update::update(&mut mac, &self.counter.to_le_bytes());
        self.buf.copy_from_slice(&mac.finalize_fixed());
        self.counter += 1;
        self.used = 0;
    }

    /// Fills `dest`.
    pub fn fill(&mut self, dest: &mut [u8]) {
        for b in dest.iter_mut() {
            if self.used == 32 {
                self.refill();
            }
            *b = self.buf[self.used];
            self.used += 1;
        }
    }

    /// 32 fresh bytes (e.g. the seed of a child generator).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill(&mut out);
        out
    }

    /// A random u32.
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }
}

impl Random for Drbg {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.fill(dest);
        Ok(())
    }
}

/// snow's default primitives, with randomness from a [`Drbg`].
#[derive(Debug)]
pub struct Resolver {
    seed: [u8; 32],
}

impl Resolver {
    /// A resolver whose one RNG is seeded with `seed`.
    pub fn new(seed: [u8; 32]) -> Resolver {
        Resolver { seed }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(Drbg::new(self.seed)))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// BLAKE2s-256 of the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::default();
    for p in parts {
        Update::update(&mut h, p);
    }
    h.finalize_fixed().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let mut a = Drbg::new([1; 32]);
        let mut b = Drbg::new([1; 32]);
        let mut c = Drbg::new([2; 32]);
        let (x, y, z) = (a.bytes32(), b.bytes32(), c.bytes32());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_ne!(a.bytes32(), x);
    }
}
