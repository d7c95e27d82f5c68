//! Long-term identities, short-lived Noise static keys bound to them, and the cluster keyring.
//!
//! - An **identity** is an Ed25519 key pair, created once per node and kept in its data
//!   directory. The node id is the first 16 bytes of `BLAKE2s-256("gossipd node id v1" ‖ public)`,
//!   so an id cannot be claimed without the identity.
//! - A **static key** is an X25519 key pair used by Noise. It rotates; each one is bound to the
//!   identity by a [`Binding`]: `(identity, static public, not_before, not_after)` signed by the
//!   identity. A binding is accepted only between its bounds.
//! - A **cluster key** (32 bytes) admits a node to the cluster: it keys the mac1 of every
//!   handshake and is the Noise PSK. A [`Keyring`] holds the primary key (used to send) and older
//!   ones still accepted during a rotation.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::drbg::hash;
use crate::types::NodeId;
use crate::wire::{DecodeError, Reader, Writer};

/// An identity public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityPub(pub [u8; 32]);

impl std::fmt::Debug for IdentityPub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityPub({:02x}{:02x}{:02x}{:02x})", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl IdentityPub {
    /// The node id this identity owns.
    pub fn node_id(&self) -> NodeId {
        let h = hash(&[b"gossipd node id v1", &self.0]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        NodeId(id)
    }

    /// Verifies an Ed25519 signature by this identity.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        match VerifyingKey::from_bytes(&self.0) {
            Ok(k) => k.verify(msg, &Signature::from_bytes(sig)).is_ok(),
            Err(_) => false,
        }
    }
}

/// A node's long-term identity (secret).
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?})", self.public())
    }
}

impl Identity {
    /// The identity whose secret is `secret`.
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        Identity { key: SigningKey::from_bytes(&secret) }
    }

    /// The secret, for storage.
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> IdentityPub {
        IdentityPub(self.key.verifying_key().to_bytes())
    }

    /// The node id.
    pub fn node_id(&self) -> NodeId {
        self.public().node_id()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// Encoded size of a [`Binding`].
pub const BINDING_LEN: usize = 32 + 32 + 8 + 8 + 64;

/// A static key bound to an identity for a period (unix seconds).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The identity vouching.
    pub identity: IdentityPub,
    /// The X25519 static public key.
    pub static_pub: [u8; 32],
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds).
    pub not_after: u64,
    /// Ed25519 signature over [`Binding::signed_bytes`].
    pub sig: [u8; 64],
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("identity", &self.identity)
            .field("static", &format_args!("{:02x}{:02x}..", self.static_pub[0], self.static_pub[1]))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl Binding {
    /// Creates and signs a binding.
    pub fn sign(identity: &Identity, static_pub: [u8; 32], not_before: u64, not_after: u64) -> Binding {
        let mut b = Binding { identity: identity.public(), static_pub, not_before, not_after, sig: [0; 64] };
        b.sig = identity.sign(&b.signed_bytes());
        b
    }

    /// What the identity signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(96);
        v.extend_from_slice(b"gossipd binding v1");
        v.extend_from_slice(&self.identity.0);
        v.extend_from_slice(&self.static_pub);
        v.extend_from_slice(&self.not_before.to_be_bytes());
        v.extend_from_slice(&self.not_after.to_be_bytes());
        v
    }

    /// True if the signature holds and `now` (unix seconds) is within the bounds.
    pub fn valid_at(&self, now: u64) -> bool {
        self.valid_within(now, 0)
    }

    /// True if the signature holds and `now` (unix seconds) is within the bounds widened by
    /// `skew` seconds on both sides (the clocks of the signer and the checker may differ).
    pub fn valid_within(&self, now: u64, skew: u64) -> bool {
        self.not_before <= now.saturating_add(skew)
            && now.saturating_sub(skew) <= self.not_after
            && self.identity.verify(&self.signed_bytes(), &self.sig)
    }

    /// Appends the encoding ([`BINDING_LEN`] bytes).
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.identity.0);
        w.bytes(&self.static_pub);
        w.u64_fixed(self.not_before);
        w.u64_fixed(self.not_after);
        w.bytes(&self.sig);
    }

    /// Decodes one binding (signature not checked).
    pub fn decode(r: &mut Reader<'_>) -> Result<Binding, DecodeError> {
        let mut identity = [0u8; 32];
        identity.copy_from_slice(r.bytes(32)?);
        let mut static_pub = [0u8; 32];
        static_pub.copy_from_slice(r.bytes(32)?);
        let not_before = r.u64_fixed()?;
        let not_after = r.u64_fixed()?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(r.bytes(64)?);
        Ok(Binding { identity: IdentityPub(identity), static_pub, not_before, not_after, sig })
    }
}

/// A cluster key and what is derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey {
    key: [u8; 32],
    mac1_key: [u8; 32],
    psk: [u8; 32],
    cookie_key: [u8; 32],
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
        self.mac1_key.zeroize();
        self.psk.zeroize();
        self.cookie_key.zeroize();
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

impl ClusterKey {
    /// Wraps 32 secret bytes.
    pub fn new(key: [u8; 32]) -> ClusterKey {
        ClusterKey {
            key,
            mac1_key: hash(&[b"gossipd mac1 v1", &key]),
            psk: hash(&[b"gossipd psk v1", &key]),
            cookie_key: hash(&[b"gossipd cookie v1", &key]),
        }
    }

    /// The secret bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Key of mac1.
    pub fn mac1_key(&self) -> &[u8; 32] {
        &self.mac1_key
    }

    /// Noise pre-shared key.
    pub fn psk(&self) -> &[u8; 32] {
        &self.psk
    }

    /// Key that encrypts cookie replies.
    pub fn cookie_key(&self) -> &[u8; 32] {
        &self.cookie_key
    }

    /// A public fingerprint (8 hex characters of a hash): safe to show and log.
    pub fn fingerprint(&self) -> String {
        hash(&[b"gossipd key fingerprint v1", &self.key])[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The cluster keys this node accepts; the primary one is used to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<ClusterKey>,
}

/// Why a keyring change was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The key is not installed.
    #[error("key {0} is not installed")]
    NotInstalled(String),
    /// The primary key cannot be removed.
    #[error("key {0} is the primary key: make another key primary first")]
    RemovePrimary(String),
}

impl Keyring {
    /// A keyring with one (primary) key.
    pub fn new(primary: ClusterKey) -> Keyring {
        Keyring { keys: vec![primary] }
    }

    /// The primary key.
    pub fn primary(&self) -> &ClusterKey {
        &self.keys[0]
    }

    /// Every key, primary first.
    pub fn keys(&self) -> &[ClusterKey] {
        &self.keys
    }

    /// Installs a key (accepted, not used to send). Idempotent.
    pub fn install(&mut self, key: ClusterKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, key: &ClusterKey) -> Result<(), KeyringError> {
        let i = self.keys.iter().position(|k| k == key).ok_or_else(|| KeyringError::NotInstalled(key.fingerprint()))?;
        let k = self.keys.remove(i);
        self.keys.insert(0, k);
        Ok(())
    }

    /// Removes a non-primary key.
    pub fn remove(&mut self, key: &ClusterKey) -> Result<(), KeyringError> {
        match self.keys.iter().position(|k| k == key) {
            None => Err(KeyringError::NotInstalled(key.fingerprint())),
            Some(0) => Err(KeyringError::RemovePrimary(key.fingerprint())),
            Some(i) => {
                self.keys.remove(i);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_verify_within_bounds_only() {
        let id = Identity::from_secret([7; 32]);
        let b = Binding::sign(&id, [9; 32], 100, 200);
        assert!(b.valid_at(100) && b.valid_at(200));
        assert!(!b.valid_at(99) && !b.valid_at(201));
        let mut forged = b;
        forged.static_pub = [8; 32];
        assert!(!forged.valid_at(150));
        let other = Identity::from_secret([8; 32]);
        let mut resigned = Binding::sign(&other, [9; 32], 100, 200);
        resigned.identity = id.public();
        assert!(!resigned.valid_at(150));
        let mut w = Writer::new();
        b.encode(&mut w);
        assert_eq!(w.len(), BINDING_LEN);
        assert_eq!(Binding::decode(&mut Reader::new(&w.buf)).unwrap(), b);
    }

    #[test]
    fn keyring_rotation() {
        let (a, b) = (ClusterKey::new([1; 32]), ClusterKey::new([2; 32]));
        let mut ring = Keyring::new(a.clone());
        assert!(ring.use_key(&b).is_err());
        ring.install(b.clone());
        ring.install(b.clone());
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.remove(&a), Err(KeyringError::RemovePrimary(a.fingerprint())));
        ring.use_key(&b).unwrap();
        assert_eq!(ring.primary(), &b);
        ring.remove(&a).unwrap();
        assert_eq!(ring.keys(), &[b]);
    }

    #[test]
    fn node_id_is_bound_to_identity() {
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        assert_ne!(a.node_id(), b.node_id());
        assert_eq!(a.node_id(), a.public().node_id());
    }
}
