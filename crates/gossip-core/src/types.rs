//! Plain data types of the catalog: node identity, service instances and their health.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use crate::cert::Certificate;
use crate::secure::keys::{Identity, IdentityPub};

/// A node's identifier: 16 random bytes chosen once and kept in the data directory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// The smallest id (all zero bytes).
    pub const MIN: NodeId = NodeId([0; 16]);

    /// Lower-case hex, 32 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Option<NodeId> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, chunk) in s.chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(NodeId(out))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Health of a service instance, as decided by its owner's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// All checks pass (the default for a service without checks).
    #[default]
    Passing,
    /// A check warns.
    Warning,
    /// A check is critical.
    Critical,
}

/// A service's metadata (Consul `Meta`): key/value pairs by key, each key once, held packed
/// (one allocation for all the text, one for the bounds; none when empty). A one-pair
/// `BTreeMap` allocates a whole 11-slot node, ~540 bytes; every replica holds one per instance.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Every key and value, concatenated in key order.
    text: Box<str>,
    /// The end of each key and of each value in `text`, alternately.
    ends: Box<[u32]>,
}

impl Meta {
    /// The pairs, by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.ends.chunks_exact(2).enumerate().map(move |(i, e)| {
            let start = if i == 0 { 0 } else { self.ends[2 * i - 1] as usize };
            let (k, v) = (e[0] as usize, e[1] as usize);
            (&self.text[start..k], &self.text[k..v])
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value` (rebuilds the whole: metadata is written once, read often).
    pub fn insert(&mut self, key: String, value: String) {
        let mut m = self.to_map();
        m.insert(key, value);
        *self = Meta::from(m);
    }

    /// The pairs as a map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl From<BTreeMap<String, String>> for Meta {
    fn from(m: BTreeMap<String, String>) -> Meta {
        let mut text = String::with_capacity(m.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(2 * m.len());
        for (k, v) in &m {
            text.push_str(k);
            ends.push(text.len() as u32);
            text.push_str(v);
            ends.push(text.len() as u32);
        }
        Meta { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }
}

impl FromIterator<(String, String)> for Meta {
    /// Each key once: a later pair replaces an earlier one of the same key.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Meta {
        Meta::from(iter.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A service instance registered on its owner's agent (Consul's service definition, the fields
/// that travel).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInstance {
    /// Instance id, unique on its node (Consul `ID`; defaults to the name).
    pub id: String,
    /// Service name (Consul `Name`).
    pub name: String,
    /// Address to connect to; `None` means the owning node's address (as Consul's empty `Address`).
    pub address: Option<IpAddr>,
    /// Port (Consul `Port`).
    pub port: u16,
    /// Tags (Consul `Tags`).
    pub tags: Vec<String>,
    /// Metadata (Consul `Meta`).
    pub meta: Meta,
    /// SRV weight while passing (Consul `Weights.Passing`, default 1).
    pub weight_passing: u16,
    /// SRV weight while warning (Consul `Weights.Warning`, default 1).
    pub weight_warning: u16,
    /// Current health.
    pub health: Health,
}

/// What a node says about itself, signed by its identity: name, gossip address and generation.
/// Relays forward these signed bytes unchanged; a replica accepts them only if the signature
/// holds and the id is the identity's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id: derived from the identity ([`IdentityPub::node_id`]).
    pub id: NodeId,
    /// The node's long-term identity.
    pub identity: IdentityPub,
    /// Human-readable node name (unique in a cluster).
    pub name: String,
    /// Address other agents reach it at over UDP.
    pub addr: SocketAddr,
    /// Incarnation: raised at every start, persisted.
    pub generation: u64,
    /// Digest of the owner's certificate ([`Certificate::digest`]), signed with the rest:
    /// `None` for a node without a certificate (a cluster run with a cluster key only).
    pub cert_digest: Option<[u8; 16]>,
    /// The certificate itself, when carried: deltas from version 0 carry it, later ones only
    /// its digest; a replica keeps it with the owner's state. Not signed (the digest is).
    pub cert: Option<Arc<Certificate>>,
    /// Ed25519 signature by `identity` over [`NodeInfo::signed_bytes`].
    pub sig: [u8; 64],
}

impl NodeInfo {
    /// Creates and signs the info of the node whose identity is `identity`.
    pub fn signed(identity: &Identity, name: String, addr: SocketAddr, generation: u64) -> NodeInfo {
        Self::signed_with_cert(identity, name, addr, generation, None)
    }

    /// Creates and signs the info of a node that holds the certificate `cert`.
    pub fn signed_with_cert(
        identity: &Identity,
        name: String,
        addr: SocketAddr,
        generation: u64,
        cert: Option<Arc<Certificate>>,
    ) -> NodeInfo {
        let public = identity.public();
        let mut info = NodeInfo {
            id: public.node_id(),
            identity: public,
            name,
            addr,
            generation,
            cert_digest: cert.as_ref().map(|c| c.digest()),
            cert,
            sig: [0; 64],
        };
        info.sig = identity.sign(&info.signed_bytes());
        info
    }

    /// What the identity signs: `"gossipd node v1"`, identity, name, address, generation; a
    /// node with a certificate signs `"gossipd node v2"`, the same fields and the certificate's
    /// digest.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = crate::wire::Writer::new();
        w.bytes(if self.cert_digest.is_some() { b"gossipd node v2" } else { b"gossipd node v1" });
        w.bytes(&self.identity.0);
        w.string(&self.name);
        w.socket_addr(self.addr);
        w.u64_fixed(self.generation);
        if let Some(d) = &self.cert_digest {
            w.bytes(d);
        }
        w.buf
    }

    /// True if `other` is the same signed statement (every signed field and the signature
    /// equal): one of them verified means both do. The certificate itself is not compared
    /// (it is not signed; its digest is).
    pub fn same_signed(&self, other: &NodeInfo) -> bool {
        self.sig == other.sig
            && self.id == other.id
            && self.identity == other.identity
            && self.generation == other.generation
            && self.addr == other.addr
            && self.cert_digest == other.cert_digest
            && self.name == other.name
    }

    /// True if the id is the identity's and the signature holds.
    pub fn verify(&self) -> bool {
        self.id == self.identity.node_id() && self.identity.verify(&self.signed_bytes(), &self.sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_a_map_held_packed() {
        assert!(Meta::default().is_empty());
        assert_eq!(Meta::default().iter().count(), 0);
        let m: Meta = [("zone", "eu-1"), ("", "empty key"), ("rev", ""), ("zone", "eu-2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(m.len(), 3, "each key once");
        let pairs: Vec<(&str, &str)> = m.iter().collect();
        assert_eq!(pairs, [("", "empty key"), ("rev", ""), ("zone", "eu-2")], "by key, the later pair kept");
        assert_eq!((m.get("zone"), m.get("rev"), m.get("nope")), (Some("eu-2"), Some(""), None));
        let mut n = m.clone();
        n.insert("a".into(), "1".into());
        assert_eq!(n.iter().next(), Some(("", "empty key")));
        assert_eq!(n.get("a"), Some("1"));
        assert_eq!(n.to_map().len(), 4);
        assert_eq!(Meta::from(m.to_map()), m);
        assert_eq!(format!("{m:?}"), r#"{"": "empty key", "rev": "", "zone": "eu-2"}"#);
    }
}
