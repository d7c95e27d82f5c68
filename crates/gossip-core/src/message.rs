//! Gossip messages and their encoding (the payload inside a session frame).
//!
//! Layout of every message: `kind: u8`, `sender: NodeId (16 B)`, then the body of that kind.
//! See `docs/PROTOCOL.md` for the byte-level description; this module is its reference.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::proof::{Accusation, Claim};
use crate::secure::keys::{Binding, Identity, IdentityPub};
use crate::types::{Health, NodeId, NodeInfo, ServiceInstance};
use crate::wire::{DecodeError, Reader, Writer};

/// Longest node name, in bytes.
pub const MAX_NODE_NAME: usize = 64;
/// Longest entry key, in bytes.
pub const MAX_KEY: usize = 160;
/// Longest string inside a service instance (id, name, tag, meta key or value), in bytes.
pub const MAX_FIELD: usize = 512;

/// Message kind byte: range reconciliation.
pub const KIND_RECONCILE: u8 = 1;
/// Message kind byte: a delta of one node's entries.
pub const KIND_DELTA: u8 = 2;
/// Message kind byte: a request for deltas.
pub const KIND_REQUEST: u8 = 3;
/// Message kind byte: a liveness probe.
pub const KIND_PING: u8 = 4;
/// Message kind byte: the answer to a probe (direct or relayed).
pub const KIND_ACK: u8 = 5;
/// Message kind byte: a request to probe a node on the sender's behalf.
pub const KIND_PING_REQ: u8 = 6;
/// Message kind byte: a suspicion rumor.
pub const KIND_SUSPECT: u8 = 7;
/// Message kind: "I hold more of these owners beyond the versions named; ask again".
pub const KIND_MORE: u8 = 8;
/// Message kind: an application query (wire version 6 and later; docs/PROTOCOL.md 3.9).
pub const KIND_QUERY: u8 = 9;
/// Message kind: one part of the answer to an application query (wire version 6 and later).
pub const KIND_ANSWER: u8 = 10;
/// The highest message kind byte, for per-kind counters.
pub const MAX_KIND: u8 = KIND_ANSWER;
/// Longest body of a [`Message::Query`] or of one [`Message::Answer`] part, in bytes: what fits
/// one datagram beside the header (kind, sender, id, part numbers, length).
pub const MAX_APP_BODY: usize = crate::session::MAX_PAYLOAD - 1 - 16 - 8 - 2 - 2;
/// Most parts of one answer (so an answer is at most `MAX_ANSWER_PARTS × MAX_APP_BODY` bytes).
pub const MAX_ANSWER_PARTS: u8 = 64;

/// A bound of a key range: a node id, or past the largest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    /// Ids strictly below this one are in range (for an upper bound).
    Id(NodeId),
    /// Beyond every id.
    Inf,
}

impl Bound {
    /// True if `id` is below this bound.
    pub fn above(&self, id: &NodeId) -> bool {
        match self {
            Bound::Id(b) => id < b,
            Bound::Inf => true,
        }
    }
}

/// What is said about one range `[lo, hi)` of node ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeBody {
    /// The sender's item count and fingerprint over the range.
    Fingerprint {
        /// Number of nodes in the range.
        count: u64,
        /// Hash of the item hashes in id order ([`crate::state::range_fingerprint`]).
        fp: [u8; 16],
    },
    /// Every item the sender holds in the range.
    Items(Vec<Summary>),
}

/// One range of a [`Message::Reconcile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Inclusive lower bound.
    pub lo: NodeId,
    /// Exclusive upper bound.
    pub hi: Bound,
    /// What the sender holds there.
    pub body: RangeBody,
}

/// The version summary of one node's state: the unit of reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Owner.
    pub id: NodeId,
    /// Owner's generation.
    pub generation: u64,
    /// Highest version of the owner's entries held.
    pub version: u64,
    /// Collision-resistant commitment to the held entries ([`crate::state::owner_digest`]):
    /// two replicas at one version that hold different entries (a relay dropped some, or the
    /// owner equivocated) differ here, so reconciliation finds them.
    pub digest: [u8; 16],
}

/// A node's own status, carried as the entry [`STATUS_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Running.
    Alive,
    /// Left gracefully: its services are gone at once.
    Left,
}

/// Key of the status entry every node owns.
pub const STATUS_KEY: &str = "@status";

/// Key of the entry holding the owner's current static-key binding.
pub const KEY_KEY: &str = "@key";
/// Key of the entry holding a cluster keyring written by this owner (an operator's change).
pub const KEYRING_KEY: &str = "@keyring";
/// Key of the entry holding the stamp of the keyring in force at its owner (so that an operator
/// can tell which agents took a keyring change).
pub const RING_KEY: &str = "@ring";
/// Most cluster keys in a keyring.
pub const MAX_KEYRING: usize = 16;

/// The value of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A deleted entry (kept until collected so the deletion spreads).
    Tombstone,
    /// The owner's status.
    Status(NodeStatus),
    /// A service instance (key `svc/<id>`).
    Service(std::sync::Arc<ServiceInstance>),
    /// The owner's current Noise static key, bound to its identity (key [`KEY_KEY`]).
    Binding(Box<Binding>),
    /// A cluster keyring (key [`KEYRING_KEY`]): every node adopts the one with the highest
    /// stamp it has seen.
    Keyring {
        /// Ordering stamp: `max(wall clock seconds, highest stamp seen + 1)` at the change.
        stamp: u64,
        /// The keys, primary first (1..=[`MAX_KEYRING`]).
        keys: Vec<[u8; 32]>,
    },
    /// An accusation against another node (key [`crate::proof::ACCUSE_PREFIX`] + its id).
    Accusation(Accusation),
    /// The stamp of the keyring in force at the owner (key [`RING_KEY`]).
    RingStamp(u64),
    /// A CA-signed revocation this owner spreads (key [`REVOKE_PREFIX`] + the revoked
    /// identity in hex): every node that trusts the CA drops the revoked identity.
    Revocation(Box<crate::cert::Revocation>),
    /// The owner's protocol range (key [`PROTO_KEY`]): the wire versions it speaks.
    Proto(crate::version::VersionRange),
    /// A failure record (key [`FAILED_PREFIX`] + the target's id in hex): the owner declared
    /// `target` failed when the state it held of it was `(generation, version)`. Death is part
    /// of the replicated state: an agent that syncs learns who is dead with everything else.
    /// The target refutes it by writing any newer version.
    Failed {
        /// The node declared failed.
        target: NodeId,
        /// Its generation when declared.
        generation: u64,
        /// Its version when declared.
        version: u64,
        /// When the owner declared it (unix seconds, owner's clock): every replica collects the
        /// failed node's state `failed_grace` after this, so that all collect it together.
        at: u64,
    },
    /// The owner's node metadata (key [`META_KEY`]): answered as TXT records of
    /// `NODE.node.<domain>` and as the catalog's `NodeMeta`, as Consul's `node_meta`.
    NodeMeta(BTreeMap<String, String>),
    /// Why one of the owner's services is not passing (key [`NOTE_PREFIX`] + the service id):
    /// its health and a bounded summary of the failing check's output, so that other agents'
    /// status pages and health APIs can say why a remote instance fails. Written when the
    /// service's health leaves passing, deleted when it is passing again. Agents of protocol 5
    /// that predate it keep and relay it as an unknown kind.
    CheckNote {
        /// The service's health when written (warning or critical).
        health: Health,
        /// The failing check's output, at most [`MAX_NOTE`] bytes.
        output: String,
    },
    /// An application record (key [`APP_PREFIX`] + the application's name for it): opaque bytes
    /// the owner signs and every replica keeps and relays, given meaning by the application
    /// only (gossipd's prepared queries, key `app/query/<id>`, a JSON definition). At most
    /// [`MAX_APP_RECORD`] bytes. Agents of protocol 5 that predate it keep and relay it as an
    /// unknown kind.
    App(Vec<u8>),
    /// A value of a kind this build does not know (written by a newer agent): kept, verified
    /// and relayed as the owner's bytes, ignored by every view. `bytes` is the body as
    /// received (bounded by the datagram); re-encoding reproduces the received value exactly,
    /// so the owner's signature over its digest still verifies.
    Unknown {
        /// The value tag (none of the tags this build knows).
        tag: u8,
        /// The value's body, as received.
        bytes: Vec<u8>,
    },
}

/// Key of the entry holding the owner's protocol range ([`Value::Proto`]).
pub const PROTO_KEY: &str = "@proto";

/// Value tags this build knows; any other tag decodes as [`Value::Unknown`].
pub const KNOWN_VALUE_TAGS: std::ops::RangeInclusive<u8> = 0..=12;

/// Key prefix of application records ([`Value::App`]).
pub const APP_PREFIX: &str = "app/";
/// Longest application record, in bytes (it must fit one delta datagram with its key and
/// signature).
pub const MAX_APP_RECORD: usize = 768;

/// Key prefix of check notes ([`Value::CheckNote`]), followed by the service id.
pub const NOTE_PREFIX: &str = "note/";
/// Longest check note output, in bytes.
pub const MAX_NOTE: usize = 200;

/// `output` cut to at most [`MAX_NOTE`] bytes at a character boundary, trimmed.
pub fn note_output(output: &str) -> String {
    let t = output.trim();
    let mut end = t.len().min(MAX_NOTE);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].to_string()
}

/// Key of the entry holding the owner's node metadata ([`Value::NodeMeta`]).
pub const META_KEY: &str = "@meta";
/// Most node metadata pairs (Consul's limit).
pub const MAX_NODE_META: usize = 64;

/// Key prefix of failure records ([`Value::Failed`]), followed by the target's id in hex.
pub const FAILED_PREFIX: &str = "@failed/";

/// The key of the failure record about `target`.
pub fn failed_key(target: &NodeId) -> String {
    format!("{FAILED_PREFIX}{}", target.to_hex())
}

impl Value {
    /// True for a value that counts towards its owner's quota of live entries: not a
    /// tombstone, not a check note (those are counted apart, bounded by the same quota).
    pub fn counts_live(&self) -> bool {
        !matches!(self, Value::Tombstone | Value::CheckNote { .. })
    }

    /// True for a check note.
    pub fn is_note(&self) -> bool {
        matches!(self, Value::CheckNote { .. })
    }

    /// True for a value of a kind this build does not know.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown { .. })
    }
}

/// Key prefix of revocation entries.
pub const REVOKE_PREFIX: &str = "@revoke/";

/// A versioned entry, signed by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key, unique per owner.
    pub key: std::sync::Arc<str>,
    /// Owner-assigned version (per owner and generation, only grows).
    pub version: u64,
    /// Value.
    pub value: Value,
    /// Ed25519 signature by the owner's identity over [`Entry::signed_bytes`].
    pub sig: [u8; 64],
}

impl Entry {
    /// Creates and signs an entry of the owner `owner` (generation `generation`).
    pub fn signed(identity: &Identity, generation: u64, key: &str, version: u64, value: Value) -> Entry {
        let mut e = Entry { key: key.into(), version, value, sig: [0; 64] };
        e.sig = identity.sign(&e.signed_bytes(&identity.node_id(), generation));
        e
    }

    /// What the owner signs ([`claim_bytes`]): its id and generation, the key, the version and
    /// a digest of the value, so that two claims under one version make a compact proof.
    pub fn signed_bytes(&self, owner: &NodeId, generation: u64) -> Vec<u8> {
        claim_bytes(owner, generation, &self.key, self.version, &self.value_digest())
    }

    /// BLAKE2s-256 of the value's encoding.
    pub fn value_digest(&self) -> [u8; 32] {
        let mut w = Writer::new();
        encode_value(&mut w, &self.value);
        crate::proof::value_digest(&w.buf)
    }

    /// The signed claim this entry is (for a proof of misbehaviour).
    pub fn claim(&self) -> Claim {
        Claim { key: self.key.to_string(), version: self.version, digest: self.value_digest(), sig: self.sig }
    }

    /// True if the owner's identity signed this entry for this generation.
    pub fn verify(&self, owner: &NodeInfo) -> bool {
        owner.identity.verify(&self.signed_bytes(&owner.id, owner.generation), &self.sig)
    }
}

/// The bytes an owner signs for one entry: `"gossipd entry v2"`, owner id (16 B), generation
/// (u64 BE), key (string), version (varint), value digest (32 B).
pub fn claim_bytes(owner: &NodeId, generation: u64, key: &str, version: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(b"gossipd entry v2");
    w.node_id(owner);
    w.u64_fixed(generation);
    w.string(key);
    w.varint(version);
    w.bytes(digest);
    w.buf
}

/// The owner's signed **head**: a commitment to its whole entry set at one version of one
/// generation (the version is the carrying delta's `to_version`, or the one a replica holds it
/// for). A replica whose computed digest ([`crate::state::owner_digest`]) equals the head's at
/// its `max_version` holds exactly what the owner published; one that differs, or holds no head
/// for its `max_version`, knows its copy is incomplete (docs/PROTOCOL.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The owner's digest of its entries at that version.
    pub digest: [u8; 16],
    /// Ed25519 signature by the owner's identity over [`head_bytes`].
    pub sig: [u8; 64],
}

/// Encoded size of a head in a delta header beyond the one-byte tag every header carries.
pub const HEAD_LEN: usize = 16 + 64;

impl Head {
    /// The owner signs its digest at `(generation, version)`.
    pub fn signed(identity: &Identity, generation: u64, version: u64, digest: [u8; 16]) -> Head {
        Head { digest, sig: identity.sign(&head_bytes(&identity.node_id(), generation, version, &digest)) }
    }

    /// True if `owner`'s identity signed this head for its generation and `version`.
    pub fn verify(&self, owner: &NodeInfo, version: u64) -> bool {
        owner.identity.verify(&head_bytes(&owner.id, owner.generation, version, &self.digest), &self.sig)
    }
}

/// The bytes an owner signs for a head: `"gossipd head v4"`, owner id (16 B), generation
/// (u64 BE), version (u64 BE), digest (16 B).
pub fn head_bytes(owner: &NodeId, generation: u64, version: u64, digest: &[u8; 16]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(b"gossipd head v4");
    w.node_id(owner);
    w.u64_fixed(generation);
    w.u64_fixed(version);
    w.bytes(digest);
    w.buf
}

/// A contiguous slice of one owner's history: every entry whose version lies in
/// `(from_version, to_version]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Rumor hops left: forwarded while positive by a receiver that learned from it.
    pub ttl: u8,
    /// Owner's identity, name, address and generation.
    pub node: NodeInfo,
    /// Exclusive lower version bound.
    pub from_version: u64,
    /// Inclusive upper version bound.
    pub to_version: u64,
    /// Entries with versions in the range, ascending.
    pub entries: Vec<Entry>,
    /// The owner's head at `to_version`, when the sender holds it: attached to every delta that
    /// ends at the sender's newest version (the last chunk of a split one), absent from the
    /// chunks before.
    pub head: Option<Head>,
}

/// A pull: "send me what you hold of these owners beyond this version".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Owner.
    pub id: NodeId,
    /// The generation the requester holds (0 if none).
    pub generation: u64,
    /// The version the requester holds in that generation.
    pub version: u64,
}

/// A decoded gossip message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // One per datagram, decoded and dropped at once.
pub enum Message {
    /// Range-based set reconciliation of node summaries.
    Reconcile {
        /// Sender's node id.
        sender: NodeId,
        /// True on the first message of an exchange: the receiver always answers it.
        initial: bool,
        /// The ranges.
        ranges: Vec<Range>,
    },
    /// Entries of one owner.
    Delta {
        /// Sender's node id (the relay, not necessarily the owner).
        sender: NodeId,
        /// The delta.
        delta: Delta,
    },
    /// Requests for deltas.
    Request {
        /// Sender's node id.
        sender: NodeId,
        /// What is wanted.
        wants: Vec<Want>,
    },
    /// "Are you there?": answered with an [`Message::Ack`] carrying the same nonce.
    Ping {
        /// Sender's node id.
        sender: NodeId,
        /// Echoed in the answer.
        nonce: u64,
    },
    /// `target` answered the probe `nonce` (sent by the target itself, or relayed by a node
    /// that probed it on the receiver's behalf).
    Ack {
        /// Sender's node id.
        sender: NodeId,
        /// The probe's nonce.
        nonce: u64,
        /// The node that answered.
        target: NodeId,
    },
    /// "Probe `target` for me and relay its answer."
    PingReq {
        /// Sender's node id.
        sender: NodeId,
        /// Nonce to put in the relayed [`Message::Ack`].
        nonce: u64,
        /// Node to probe.
        target: NodeId,
    },
    /// The answer to a request stopped short: the sender holds more of each named owner beyond
    /// `(generation, version)` and expects a new request from what the receiver then holds
    /// (docs/PROTOCOL.md section 4.2: large owners are paced to what the receiver takes).
    More {
        /// Sender's node id.
        sender: NodeId,
        /// Owners, each with the generation and version the answer stopped at.
        owners: Vec<Want>,
    },
    /// "`target` did not answer probes as of its state `(generation, version)`." Forwarded as a
    /// rumor while `ttl` lasts; refuted by any newer state of the target.
    Suspect {
        /// Sender's node id.
        sender: NodeId,
        /// Hops left.
        ttl: u8,
        /// The suspected node.
        target: NodeId,
        /// Its generation as the accuser held it.
        generation: u64,
        /// Its version as the accuser held it.
        version: u64,
    },
    /// An application query (version 6 and later): opaque bytes for the receiver's
    /// application, which answers with [`Message::Answer`] parts carrying the same `id`. The
    /// gossip layer gives it meaning only by its size bound; gossipd uses it to forward DNS and
    /// HTTP reads to another datacenter (docs/PROTOCOL.md 3.9).
    Query {
        /// Sender's node id.
        sender: NodeId,
        /// Chosen by the sender, echoed in the answer.
        id: u64,
        /// At most [`MAX_APP_BODY`] bytes.
        body: Vec<u8>,
    },
    /// Part `part` (from 0) of `parts` of the answer to the query `id` (version 6 and later).
    Answer {
        /// Sender's node id.
        sender: NodeId,
        /// The query's id.
        id: u64,
        /// This part's index, below `parts`.
        part: u8,
        /// The number of parts, 1 to [`MAX_ANSWER_PARTS`].
        parts: u8,
        /// At most [`MAX_APP_BODY`] bytes.
        body: Vec<u8>,
    },
}

impl Message {
    /// The node that sent the message.
    pub fn sender(&self) -> NodeId {
        match self {
            Message::Reconcile { sender, .. }
            | Message::Delta { sender, .. }
            | Message::Request { sender, .. }
            | Message::Ping { sender, .. }
            | Message::Ack { sender, .. }
            | Message::PingReq { sender, .. }
            | Message::More { sender, .. }
            | Message::Suspect { sender, .. }
            | Message::Query { sender, .. }
            | Message::Answer { sender, .. } => *sender,
        }
    }

    /// The lowest wire version that carries this message: 6 for [`Message::Query`] and
    /// [`Message::Answer`], 5 for every other.
    pub fn min_version(&self) -> u8 {
        match self {
            Message::Query { .. } | Message::Answer { .. } => 6,
            _ => 5,
        }
    }

    /// Encodes at wire version `version` (one this build speaks, and at least
    /// [`Message::min_version`]; see [`crate::version`]). Versions 5, 6 and 7 share one format
    /// (6 adds the kinds [`KIND_QUERY`] and [`KIND_ANSWER`]; 7 changes what range fingerprints
    /// are, not how they are encoded); the synthetic version 8 of the `testing` feature appends
    /// one byte `0x08`, so that a message encoded at the wrong version does not decode.
    pub fn encode_for(&self, version: u8) -> Vec<u8> {
        #[allow(unused_mut)]
        let mut buf = self.encode();
        #[cfg(feature = "testing")]
        if version == 8 {
            buf.push(0x08);
        }
        debug_assert!((crate::version::BUILD_MIN..=crate::version::BUILD_MAX).contains(&version), "version {version}");
        debug_assert!(version >= self.min_version(), "{:?} at version {version}", buf.first());
        let _ = version;
        buf
    }

    /// Decodes a message encoded at wire version `version`; the whole input must be consumed.
    /// A kind newer than the version (a query at version 5) does not decode.
    pub fn decode_for(version: u8, buf: &[u8]) -> Result<Message, DecodeError> {
        let m = match version {
            #[cfg(feature = "testing")]
            8 => match buf.split_last() {
                Some((0x08, rest)) => Message::decode(rest)?,
                _ => return Err(DecodeError::BadTag { what: "version 8 trailer", tag: buf.last().copied().unwrap_or(0) }),
            },
            5..=7 => Message::decode(buf)?,
            v => return Err(DecodeError::BadTag { what: "wire version", tag: v }),
        };
        if m.min_version() > version {
            return Err(DecodeError::BadTag { what: "message kind at this wire version", tag: buf[0] });
        }
        Ok(m)
    }

    /// Encodes at wire version 4.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Message::Reconcile { sender, initial, ranges } => {
                w.u8(KIND_RECONCILE);
                w.node_id(sender);
                w.u8(u8::from(*initial));
                w.varint(ranges.len() as u64);
                for r in ranges {
                    encode_range(&mut w, r);
                }
            }
            Message::Delta { sender, delta } => {
                w.u8(KIND_DELTA);
                w.node_id(sender);
                encode_delta_header(&mut w, delta);
                w.varint(delta.entries.len() as u64);
                for e in &delta.entries {
                    encode_entry(&mut w, e);
                }
            }
            Message::Request { sender, wants } => {
                w.u8(KIND_REQUEST);
                w.node_id(sender);
                encode_wants(&mut w, wants);
            }
            Message::Ping { sender, nonce } => {
                w.u8(KIND_PING);
                w.node_id(sender);
                w.u64_fixed(*nonce);
            }
            Message::Ack { sender, nonce, target } => {
                w.u8(KIND_ACK);
                w.node_id(sender);
                w.u64_fixed(*nonce);
                w.node_id(target);
            }
            Message::PingReq { sender, nonce, target } => {
                w.u8(KIND_PING_REQ);
                w.node_id(sender);
                w.u64_fixed(*nonce);
                w.node_id(target);
            }
            Message::More { sender, owners } => {
                w.u8(KIND_MORE);
                w.node_id(sender);
                encode_wants(&mut w, owners);
            }
            Message::Suspect { sender, ttl, target, generation, version } => {
                w.u8(KIND_SUSPECT);
                w.node_id(sender);
                w.u8(*ttl);
                w.node_id(target);
                w.varint(*generation);
                w.varint(*version);
            }
            Message::Query { sender, id, body } => {
                w.u8(KIND_QUERY);
                w.node_id(sender);
                w.u64_fixed(*id);
                w.varint(body.len() as u64);
                w.bytes(body);
            }
            Message::Answer { sender, id, part, parts, body } => {
                w.u8(KIND_ANSWER);
                w.node_id(sender);
                w.u64_fixed(*id);
                w.u8(*part);
                w.u8(*parts);
                w.varint(body.len() as u64);
                w.bytes(body);
            }
        }
        w.buf
    }

    /// Decodes one message encoded at wire version 4; the whole input must be consumed.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(buf);
        let kind = r.u8()?;
        let sender = r.node_id()?;
        let msg = match kind {
            KIND_RECONCILE => {
                let initial = match r.u8()? {
                    0 => false,
                    1 => true,
                    tag => {
                        return Err(DecodeError::BadTag { what: "initial flag", tag });
                    }
                };
                let n = r.count(4)?;
                let mut ranges = Vec::with_capacity(n);
                for _ in 0..n {
                    ranges.push(decode_range(&mut r)?);
                }
                Message::Reconcile { sender, initial, ranges }
            }
            KIND_DELTA => {
                let mut delta = decode_delta_header(&mut r)?;
                let n = r.count(68)?;
                delta.entries.reserve_exact(n);
                let mut last = delta.from_version;
                for _ in 0..n {
                    let e = decode_entry(&mut r)?;
                    if e.version <= last || e.version > delta.to_version {
                        return Err(DecodeError::OutOfRange("entry version"));
                    }
                    last = e.version;
                    delta.entries.push(e);
                }
                Message::Delta { sender, delta }
            }
            KIND_REQUEST => Message::Request { sender, wants: decode_wants(&mut r)? },
            KIND_MORE => Message::More { sender, owners: decode_wants(&mut r)? },
            KIND_PING => Message::Ping { sender, nonce: r.u64_fixed()? },
            KIND_ACK => Message::Ack { sender, nonce: r.u64_fixed()?, target: r.node_id()? },
            KIND_PING_REQ => Message::PingReq { sender, nonce: r.u64_fixed()?, target: r.node_id()? },
            KIND_SUSPECT => Message::Suspect {
                sender,
                ttl: r.u8()?,
                target: r.node_id()?,
                generation: r.varint()?,
                version: r.varint()?,
            },
            KIND_QUERY => Message::Query { sender, id: r.u64_fixed()?, body: decode_app_body(&mut r)? },
            KIND_ANSWER => {
                let id = r.u64_fixed()?;
                let (part, parts) = (r.u8()?, r.u8()?);
                if parts == 0 || parts > MAX_ANSWER_PARTS || part >= parts {
                    return Err(DecodeError::OutOfRange("answer part"));
                }
                Message::Answer { sender, id, part, parts, body: decode_app_body(&mut r)? }
            }
            tag => {
                return Err(DecodeError::BadTag { what: "message kind", tag });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// The length-prefixed body of a query or answer part: at most [`MAX_APP_BODY`] bytes, and no
/// more than the input holds.
fn decode_app_body(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = r.varint()?;
    if n > MAX_APP_BODY as u64 {
        return Err(DecodeError::OutOfRange("application body length"));
    }
    Ok(r.bytes(n as usize)?.to_vec())
}

/// A count, then each want (the body of `Request` and `More`).
fn encode_wants(w: &mut Writer, wants: &[Want]) {
    w.varint(wants.len() as u64);
    for want in wants {
        encode_want(w, want);
    }
}

fn decode_wants(r: &mut Reader<'_>) -> Result<Vec<Want>, DecodeError> {
    let n = r.count(18)?;
    let mut wants = Vec::with_capacity(n);
    for _ in 0..n {
        wants.push(Want { id: r.node_id()?, generation: r.varint()?, version: r.varint()? });
    }
    Ok(wants)
}

/// Encodes a bound: `0xFF` for infinity, else a length `L <= 16` and the id's first `L` bytes
/// (the rest are zero). Trailing zero bytes are trimmed.
pub fn encode_bound(w: &mut Writer, b: &Bound) {
    match b {
        Bound::Inf => w.u8(0xff),
        Bound::Id(id) => encode_id_prefix(w, id),
    }
}

fn encode_id_prefix(w: &mut Writer, id: &NodeId) {
    let len = id.0.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    w.u8(len as u8);
    w.bytes(&id.0[..len]);
}

fn decode_id_prefix(r: &mut Reader<'_>, len: u8) -> Result<NodeId, DecodeError> {
    if len > 16 {
        return Err(DecodeError::OutOfRange("bound length"));
    }
    let mut id = [0u8; 16];
    id[..len as usize].copy_from_slice(r.bytes(len as usize)?);
    Ok(NodeId(id))
}

fn decode_bound(r: &mut Reader<'_>) -> Result<Bound, DecodeError> {
    match r.u8()? {
        0xff => Ok(Bound::Inf),
        len => Ok(Bound::Id(decode_id_prefix(r, len)?)),
    }
}

/// Encoded size of one range.
pub fn range_len(r: &Range) -> usize {
    let mut w = Writer::new();
    encode_range(&mut w, r);
    w.len()
}

fn encode_range(w: &mut Writer, r: &Range) {
    encode_id_prefix(w, &r.lo);
    encode_bound(w, &r.hi);
    match &r.body {
        RangeBody::Fingerprint { count, fp } => {
            w.u8(0);
            w.varint(*count);
            w.bytes(fp);
        }
        RangeBody::Items(items) => {
            w.u8(1);
            w.varint(items.len() as u64);
            for s in items {
                w.node_id(&s.id);
                w.varint(s.generation);
                w.varint(s.version);
                w.bytes(&s.digest);
            }
        }
    }
}

fn decode_range(r: &mut Reader<'_>) -> Result<Range, DecodeError> {
    let lo_len = r.u8()?;
    let lo = decode_id_prefix(r, lo_len)?;
    let hi = decode_bound(r)?;
    if !hi.above(&lo) {
        return Err(DecodeError::OutOfRange("empty range"));
    }
    let body = match r.u8()? {
        0 => RangeBody::Fingerprint { count: r.varint()?, fp: commitment(r)? },
        1 => {
            let n = r.count(34)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(Summary {
                    id: r.node_id()?,
                    generation: r.varint()?,
                    version: r.varint()?,
                    digest: commitment(r)?,
                });
            }
            RangeBody::Items(items)
        }
        tag => {
            return Err(DecodeError::BadTag { what: "range body", tag });
        }
    };
    Ok(Range { lo, hi, body })
}

fn commitment(r: &mut Reader<'_>) -> Result<[u8; 16], DecodeError> {
    let mut out = [0u8; 16];
    out.copy_from_slice(r.bytes(16)?);
    Ok(out)
}

fn encode_want(w: &mut Writer, want: &Want) {
    w.node_id(&want.id);
    w.varint(want.generation);
    w.varint(want.version);
}

/// Encoded size of one want.
pub fn want_len(want: &Want) -> usize {
    let mut w = Writer::new();
    encode_want(&mut w, want);
    w.len()
}

fn encode_delta_header(w: &mut Writer, d: &Delta) {
    w.u8(d.ttl);
    w.bytes(&d.node.identity.0);
    w.string(&d.node.name);
    w.socket_addr(d.node.addr);
    w.varint(d.node.generation);
    w.bytes(&d.node.sig);
    match (&d.node.cert, &d.node.cert_digest) {
        // A delta from version 0 may be the first a replica sees of this owner: it carries the
        // certificate. Later ones carry only the digest the replica checks against.
        (Some(cert), _) if d.from_version == 0 => {
            w.u8(CERT_FULL);
            w.varint(cert.encoded().len() as u64);
            w.bytes(cert.encoded());
        }
        (_, Some(digest)) => {
            w.u8(CERT_DIGEST);
            w.bytes(digest);
        }
        _ => w.u8(CERT_NONE),
    }
    w.varint(d.from_version);
    w.varint(d.to_version);
    match &d.head {
        Some(h) => {
            w.u8(HEAD_PRESENT);
            w.bytes(&h.digest);
            w.bytes(&h.sig);
        }
        None => w.u8(HEAD_NONE),
    }
}

/// Delta header head tag: no head.
const HEAD_NONE: u8 = 0;
/// Delta header head tag: the owner's head at `to_version` follows (16-byte digest, 64-byte
/// signature).
const HEAD_PRESENT: u8 = 1;

/// Delta header certificate tag: the owner has no certificate.
const CERT_NONE: u8 = 0;
/// Delta header certificate tag: the owner's certificate digest (16 bytes) follows.
const CERT_DIGEST: u8 = 1;
/// Delta header certificate tag: the owner's certificate follows (varint length, bytes).
const CERT_FULL: u8 = 2;

/// Encoded size of a delta message with no entries (kind, sender, header, entry count).
pub fn delta_overhead(d: &Delta) -> usize {
    let mut w = Writer::new();
    encode_delta_header(&mut w, d);
    1 + 16 + w.len() + 2
}

fn decode_delta_header(r: &mut Reader<'_>) -> Result<Delta, DecodeError> {
    let ttl = r.u8()?;
    let mut identity = [0u8; 32];
    identity.copy_from_slice(r.bytes(32)?);
    let identity = IdentityPub(identity);
    let name = r.string(MAX_NODE_NAME)?;
    let addr: SocketAddr = r.socket_addr()?;
    let generation = r.varint()?;
    let mut sig = [0u8; 64];
    sig.copy_from_slice(r.bytes(64)?);
    let (cert_digest, cert) = match r.u8()? {
        CERT_NONE => (None, None),
        CERT_DIGEST => {
            let d: [u8; 16] = r.bytes(16)?.try_into().map_err(|_| DecodeError::Truncated)?;
            (Some(d), None)
        }
        CERT_FULL => {
            let len = r.varint()?;
            if len > crate::cert::MAX_CERT as u64 {
                return Err(DecodeError::OutOfRange("certificate length"));
            }
            let cert = crate::cert::Certificate::decode(r.bytes(len as usize)?)?;
            (Some(cert.digest()), Some(std::sync::Arc::new(cert)))
        }
        tag => return Err(DecodeError::BadTag { what: "certificate", tag }),
    };
    let from_version = r.varint()?;
    let to_version = r.varint()?;
    if to_version < from_version {
        return Err(DecodeError::OutOfRange("version range"));
    }
    let head = match r.u8()? {
        HEAD_NONE => None,
        HEAD_PRESENT => {
            let digest = commitment(r)?;
            let mut sig = [0u8; 64];
            sig.copy_from_slice(r.bytes(64)?);
            Some(Head { digest, sig })
        }
        tag => return Err(DecodeError::BadTag { what: "head", tag }),
    };
    let node = NodeInfo { id: identity.node_id(), identity, name, addr, generation, cert_digest, cert, sig };
    Ok(Delta { ttl, node, from_version, to_version, entries: Vec::new(), head })
}

/// Encoded size of one entry.
pub fn entry_len(e: &Entry) -> usize {
    let mut w = Writer::new();
    encode_entry(&mut w, e);
    w.len()
}

fn encode_entry(w: &mut Writer, e: &Entry) {
    encode_entry_body(w, e);
    w.bytes(&e.sig);
}

fn encode_entry_body(w: &mut Writer, e: &Entry) {
    w.string(&e.key);
    w.varint(e.version);
    encode_value(w, &e.value);
}

/// Encodes a value: `tag ‖ varint len ‖ body` (docs/PROTOCOL.md section 3.2), so that a
/// receiver that does not know the tag can skip the body and keep it as bytes.
fn encode_value(w: &mut Writer, value: &Value) {
    if let Value::Unknown { tag, bytes } = value {
        w.u8(*tag);
        w.varint(bytes.len() as u64);
        w.bytes(bytes);
        return;
    }
    let mut b = Writer::new();
    let tag = encode_value_body(&mut b, value);
    w.u8(tag);
    w.varint(b.len() as u64);
    w.bytes(&b.buf);
}

/// Writes the body of a known value and returns its tag.
fn encode_value_body(w: &mut Writer, value: &Value) -> u8 {
    match value {
        Value::Tombstone => 0,
        Value::Status(s) => {
            w.u8(match s {
                NodeStatus::Alive => 0,
                NodeStatus::Left => 1,
            });
            1
        }
        Value::Service(s) => {
            encode_service(w, s);
            2
        }
        Value::Binding(b) => {
            b.encode(w);
            3
        }
        Value::Keyring { stamp, keys } => {
            w.varint(*stamp);
            w.varint(keys.len() as u64);
            for k in keys {
                w.bytes(k);
            }
            4
        }
        Value::Accusation(a) => {
            a.encode(w);
            5
        }
        Value::Revocation(r) => {
            r.encode(w);
            6
        }
        Value::RingStamp(s) => {
            w.varint(*s);
            7
        }
        Value::Proto(range) => {
            w.u8(range.min());
            w.u8(range.max());
            8
        }
        Value::Failed { target, generation, version, at } => {
            w.node_id(target);
            w.varint(*generation);
            w.varint(*version);
            w.varint(*at);
            9
        }
        Value::NodeMeta(meta) => {
            w.varint(meta.len() as u64);
            for (k, v) in meta {
                w.string(k);
                w.string(v);
            }
            10
        }
        Value::CheckNote { health, output } => {
            w.u8(health_tag(*health));
            w.string(output);
            11
        }
        Value::App(bytes) => {
            w.bytes(bytes);
            12
        }
        Value::Unknown { tag, bytes } => {
            w.bytes(bytes);
            *tag
        }
    }
}

fn health_tag(h: Health) -> u8 {
    match h {
        Health::Passing => 0,
        Health::Warning => 1,
        Health::Critical => 2,
    }
}

fn decode_health(r: &mut Reader<'_>) -> Result<Health, DecodeError> {
    Ok(match r.u8()? {
        0 => Health::Passing,
        1 => Health::Warning,
        2 => Health::Critical,
        tag => return Err(DecodeError::BadTag { what: "health", tag }),
    })
}

/// Decodes a value: its tag, its length (the shortest varint for it, so that re-encoding
/// reproduces the bytes the owner signed), then a body of exactly that length. A tag this build
/// does not know yields [`Value::Unknown`] with the body as received.
pub fn decode_value(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    let tag = r.u8()?;
    let before = r.remaining();
    let len = r.varint()?;
    if before - r.remaining() != crate::wire::varint_len(len) {
        return Err(DecodeError::BadVarint);
    }
    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
    let body = r.bytes(len)?;
    if !KNOWN_VALUE_TAGS.contains(&tag) {
        return Ok(Value::Unknown { tag, bytes: body.to_vec() });
    }
    let mut r = Reader::new(body);
    let value = decode_value_body(&mut r, tag)?;
    r.finish()?;
    Ok(value)
}

fn decode_value_body(r: &mut Reader<'_>, tag: u8) -> Result<Value, DecodeError> {
    Ok(match tag {
        0 => Value::Tombstone,
        1 => Value::Status(match r.u8()? {
            0 => NodeStatus::Alive,
            1 => NodeStatus::Left,
            tag => {
                return Err(DecodeError::BadTag { what: "node status", tag });
            }
        }),
        2 => Value::Service(std::sync::Arc::new(decode_service(r)?)),
        3 => Value::Binding(Box::new(Binding::decode(r)?)),
        4 => {
            let stamp = r.varint()?;
            let n = r.count(32)?;
            if n == 0 || n > MAX_KEYRING {
                return Err(DecodeError::OutOfRange("keyring size"));
            }
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                let mut k = [0u8; 32];
                k.copy_from_slice(r.bytes(32)?);
                keys.push(k);
            }
            Value::Keyring { stamp, keys }
        }
        5 => Value::Accusation(Accusation::decode(r)?),
        6 => Value::Revocation(Box::new(crate::cert::Revocation::decode(r)?)),
        7 => Value::RingStamp(r.varint()?),
        8 => {
            let (min, max) = (r.u8()?, r.u8()?);
            Value::Proto(crate::version::VersionRange::new(min, max).ok_or(DecodeError::OutOfRange("protocol range"))?)
        }
        9 => Value::Failed { target: r.node_id()?, generation: r.varint()?, version: r.varint()?, at: r.varint()? },
        10 => {
            let n = r.count(2)?;
            if n > MAX_NODE_META {
                return Err(DecodeError::OutOfRange("node meta pairs"));
            }
            let mut meta = BTreeMap::new();
            for _ in 0..n {
                let k = r.string(MAX_FIELD)?;
                let v = r.string(MAX_FIELD)?;
                meta.insert(k, v);
            }
            Value::NodeMeta(meta)
        }
        11 => Value::CheckNote { health: decode_health(r)?, output: r.string(MAX_NOTE)? },
        12 => {
            if r.remaining() > MAX_APP_RECORD {
                return Err(DecodeError::OutOfRange("application record length"));
            }
            Value::App(r.bytes(r.remaining())?.to_vec())
        }
        tag => return Err(DecodeError::BadTag { what: "entry value", tag }),
    })
}

fn decode_entry(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
    let key = r.string(MAX_KEY)?;
    let version = r.varint()?;
    let value = decode_value(r)?;
    let mut sig = [0u8; 64];
    sig.copy_from_slice(r.bytes(64)?);
    Ok(Entry { key: key.into(), version, value, sig })
}

fn encode_service(w: &mut Writer, s: &ServiceInstance) {
    w.string(&s.id);
    w.string(&s.name);
    w.opt_ip(s.address);
    w.u16(s.port);
    w.varint(s.tags.len() as u64);
    for t in &s.tags {
        w.string(t);
    }
    w.varint(s.meta.len() as u64);
    for (k, v) in s.meta.iter() {
        w.string(k);
        w.string(v);
    }
    w.u16(s.weight_passing);
    w.u16(s.weight_warning);
    w.u8(health_tag(s.health));
}

fn decode_service(r: &mut Reader<'_>) -> Result<ServiceInstance, DecodeError> {
    let id = r.string(MAX_FIELD)?;
    let name = r.string(MAX_FIELD)?;
    let address = r.opt_ip()?;
    let port = r.u16()?;
    let n = r.count(1)?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(r.string(MAX_FIELD)?);
    }
    let n = r.count(2)?;
    let mut meta = BTreeMap::new();
    for _ in 0..n {
        let k = r.string(MAX_FIELD)?;
        let v = r.string(MAX_FIELD)?;
        meta.insert(k, v);
    }
    let meta = crate::types::Meta::from(meta);
    let weight_passing = r.u16()?;
    let weight_warning = r.u16()?;
    let health = decode_health(r)?;
    Ok(ServiceInstance { id, name, address, port, tags, meta, weight_passing, weight_warning, health })
}

/// Re-encodes a message from wire version `from` to `to` (for payloads queued before their
/// session negotiated its version). `None` if it does not decode at `from`.
/// A message newer than `to` (a query for a version 5 session) is `None` too: it is dropped;
/// so is a Reconcile carrying fingerprints across [`crate::version::SUM_MIN`].
pub fn transcode(payload: &[u8], from: u8, to: u8) -> Option<Vec<u8>> {
    let m = Message::decode_for(from, payload).ok().filter(|m| m.min_version() <= to)?;
    // A range fingerprint was computed by the rule of the version the message was encoded at
    // (docs/PROTOCOL.md 3.1); at a version of the other rule the receiver would compare it
    // with its own by that rule, never match, and split the range for nothing. Such a message
    // (an exchange opened before the handshake settled on an older version) is dropped,
    // counted (`version_mismatch_drops`); the next round opens on the session, by its rule.
    let fingerprints = matches!(&m, Message::Reconcile { ranges, .. }
        if ranges.iter().any(|r| matches!(r.body, RangeBody::Fingerprint { .. })));
    if fingerprints && crate::state::Scheme::at(from) != crate::state::Scheme::at(to) {
        return None;
    }
    Some(m.encode_for(to))
}
