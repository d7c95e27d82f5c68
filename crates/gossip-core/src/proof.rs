//! Accusations and proofs of misbehaviour.
//!
//! An owner assigns each version of its history to exactly one entry. Two different entries it
//! signed under one `(generation, version)` can only come from a misbehaving owner (or a cloned
//! identity running twice), and anyone can check it: that pair is a [`Proof`]. Because an
//! owner signs a digest of each value ([`crate::message::Entry::signed_bytes`]), a proof carries
//! two digests rather than two values and stays small (at most [`MAX_PROOF`] bytes encoded)
//! whatever the values were.
//!
//! A node that detects or verifies a proof writes it as an [`Accusation`], one of its own signed
//! entries (key [`ACCUSE_PREFIX`] followed by the accused id in hex), so that the accusation
//! travels with the accuser's state and stays until withdrawn. A node also accuses a peer it
//! banned for protocol violations ([`Charge::Misbehaved`]): that charge cannot be checked by
//! others, which is why exclusion needs a majority of live members (see `gossip/accuse.rs`).

use crate::secure::drbg::hash;
use crate::secure::keys::IdentityPub;
use crate::types::NodeId;
use crate::wire::{DecodeError, Reader, Writer};

/// Key prefix of accusation entries; the accused node id follows in lowercase hex.
pub const ACCUSE_PREFIX: &str = "@accuse/";
/// Longest reason carried by a [`Charge::Misbehaved`], in bytes.
pub const MAX_REASON: usize = 200;
/// Largest encoded proof: identity, generation and two claims with keys of the longest size
/// (the bound tests and docs check the encoding against).
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub const MAX_PROOF: usize = 32 + 10 + 2 * (2 + crate::message::MAX_KEY + 10 + 32 + 64);

/// One signed claim of an owner: "version `version` of my history is `key` = the value whose
/// digest is `digest`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Entry key.
    pub key: String,
    /// Version.
    pub version: u64,
    /// BLAKE2s-256 of the value's encoding.
    pub digest: [u8; 32],
    /// The owner's Ed25519 signature over [`crate::message::claim_bytes`].
    pub sig: [u8; 64],
}

/// Two different claims signed by one identity under one generation and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The owner's identity (its node id derives from it).
    pub identity: IdentityPub,
    /// The generation both claims were signed in.
    pub generation: u64,
    /// One claim.
    pub first: Claim,
    /// A different claim under the same version.
    pub second: Claim,
}

impl Proof {
    /// True if this proves that `accused` equivocated: the identity owns that id, both claims
    /// name one version, they differ, and both signatures verify.
    pub fn verify(&self, accused: &NodeId) -> bool {
        let (a, b) = (&self.first, &self.second);
        if self.identity.node_id() != *accused || a.version != b.version || (a.key == b.key && a.digest == b.digest) {
            return false;
        }
        [a, b].iter().all(|c| {
            let msg = crate::message::claim_bytes(accused, self.generation, &c.key, c.version, &c.digest);
            self.identity.verify(&msg, &c.sig)
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.identity.0);
        w.varint(self.generation);
        for c in [&self.first, &self.second] {
            w.string(&c.key);
            w.varint(c.version);
            w.bytes(&c.digest);
            w.bytes(&c.sig);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Proof, DecodeError> {
        let mut identity = [0u8; 32];
        identity.copy_from_slice(r.bytes(32)?);
        let generation = r.varint()?;
        let mut claim = || -> Result<Claim, DecodeError> {
            let key = r.string(crate::message::MAX_KEY)?;
            let version = r.varint()?;
            let mut digest = [0u8; 32];
            digest.copy_from_slice(r.bytes(32)?);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(r.bytes(64)?);
            Ok(Claim { key, version, digest, sig })
        };
        let first = claim()?;
        let second = claim()?;
        Ok(Proof { identity: IdentityPub(identity), generation, first, second })
    }
}

/// What a node is accused of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Equivocation, with the proof anyone can check.
    Equivocation(Box<Proof>),
    /// A protocol violation the accuser saw (and banned the node for): its word only.
    Misbehaved(String),
}

/// The value of an accusation entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accusation {
    /// The accused node.
    pub accused: NodeId,
    /// Why.
    pub charge: Charge,
}

impl Accusation {
    /// The entry key of an accusation against `accused`.
    pub fn key(accused: &NodeId) -> String {
        let mut k = String::with_capacity(ACCUSE_PREFIX.len() + 32);
        k.push_str(ACCUSE_PREFIX);
        for b in accused.0 {
            k.push_str(&format!("{b:02x}"));
        }
        k
    }

    /// True if the charge holds up to checking: an equivocation proof must verify against the
    /// accused; a misbehaviour charge is taken at the accuser's word.
    pub fn credible(&self) -> bool {
        match &self.charge {
            Charge::Equivocation(p) => p.verify(&self.accused),
            Charge::Misbehaved(_) => true,
        }
    }

    /// Short human-readable reason.
    pub fn reason(&self) -> String {
        match &self.charge {
            Charge::Equivocation(p) => {
                format!("signed two different entries under version {} (proof)", p.first.version)
            }
            Charge::Misbehaved(r) => r.clone(),
        }
    }

    /// Encodes the value body (after the value tag).
    pub fn encode(&self, w: &mut Writer) {
        w.node_id(&self.accused);
        match &self.charge {
            Charge::Equivocation(p) => {
                w.u8(0);
                p.encode(w);
            }
            Charge::Misbehaved(reason) => {
                w.u8(1);
                w.string(reason);
            }
        }
    }

    /// Decodes the value body.
    pub fn decode(r: &mut Reader<'_>) -> Result<Accusation, DecodeError> {
        let accused = r.node_id()?;
        let charge = match r.u8()? {
            0 => Charge::Equivocation(Box::new(Proof::decode(r)?)),
            1 => Charge::Misbehaved(r.string(MAX_REASON)?),
            tag => return Err(DecodeError::BadTag { what: "charge", tag }),
        };
        Ok(Accusation { accused, charge })
    }
}

/// BLAKE2s-256 of a byte string under a domain tag (the value digest owners sign).
pub fn value_digest(value_encoding: &[u8]) -> [u8; 32] {
    hash(&[b"gossipd value v1", value_encoding])
}

/// Truncates a reason to [`MAX_REASON`] bytes on a character boundary.
pub fn bounded_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
