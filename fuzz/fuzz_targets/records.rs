//! Gossip records: any bytes to `Message::decode`, a decoded delta applied to a table; and
//! validly signed deltas built from the input, encoded, mutated byte by byte and decoded again:
//! a delta whose signed content (node info or any entry) differs from what the owner signed is
//! never applied (`Applied::Forged`, or refused as stale or gapped before verification), and
//! leaves the table as it was. Owners are one of 16 identities derived once
//! (`gossipd_fuzz::identity`). The harness signs the input's claims through a cache keyed by
//! the exact bytes signed (`gossipd_fuzz::sign_as`: Ed25519 signatures are deterministic, so a
//! cached one is the one signing again would make); `Table::apply` verifies every signature
//! itself, per input, as it would in an agent.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use gossip_core::message::{Bound, Delta, Entry, MAX_FIELD, MAX_KEY, MAX_NODE_NAME, Message, NodeStatus, Value};
use gossip_core::state::{Applied, Scheme, Table};
use gossip_core::{Health, NodeId, NodeInfo, ServiceInstance};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum ValueSpec {
    Tombstone,
    Alive,
    Left,
    Service {
        id: String,
        name: String,
        v4: Option<[u8; 4]>,
        port: u16,
        tags: Vec<String>,
        meta: Vec<(String, String)>,
        health: u8,
    },
    Binding {
        static_pub: [u8; 32],
        not_before: u64,
        not_after: u64,
    },
    /// A kind this build does not know (a newer agent's): kept and relayed as its bytes.
    Unknown {
        tag: u8,
        bytes: Vec<u8>,
    },
    Proto {
        min: u8,
        max: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Signed {
    owner: u8,
    name: String,
    port: u16,
    generation: u64,
    entries: Vec<(String, ValueSpec)>,
    split: u8,
    ttl: u8,
    edits: Vec<(u16, u8)>,
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn value(spec: &ValueSpec, owner: u8) -> Value {
    match spec {
        ValueSpec::Tombstone => Value::Tombstone,
        ValueSpec::Alive => Value::Status(NodeStatus::Alive),
        ValueSpec::Left => Value::Status(NodeStatus::Left),
        ValueSpec::Service { id: sid, name, v4, port, tags, meta, health } => Value::Service(
            ServiceInstance {
                id: clip(sid, MAX_FIELD),
                name: clip(name, MAX_FIELD),
                address: v4.map(|b| IpAddr::V4(Ipv4Addr::from(b))),
                port: *port,
                tags: tags.iter().take(8).map(|t| clip(t, MAX_FIELD)).collect(),
                meta: meta
                    .iter()
                    .take(8)
                    .map(|(k, v)| (clip(k, MAX_FIELD), clip(v, MAX_FIELD)))
                    .collect::<BTreeMap<_, _>>()
                    .into(),
                weight_passing: 1,
                weight_warning: 1,
                health: match health % 3 {
                    0 => Health::Passing,
                    1 => Health::Warning,
                    _ => Health::Critical,
                },
            }
            .into(),
        ),
        ValueSpec::Binding { static_pub, not_before, not_after } => {
            Value::Binding(Box::new(gossipd_fuzz::binding_signed(owner, *static_pub, *not_before, *not_after)))
        }
        ValueSpec::Unknown { tag, bytes } => Value::Unknown {
            tag: (*tag).max(*gossip_core::message::KNOWN_VALUE_TAGS.end() + 1),
            bytes: bytes.iter().copied().take(400).collect(),
        },
        ValueSpec::Proto { min, max } => {
            let (lo, hi) = ((*min).min(*max), (*min).max(*max));
            Value::Proto(gossip_core::version::VersionRange::new(lo, hi).expect("ordered"))
        }
    }
}

fn raw(data: &[u8]) {
    let Ok(m) = Message::decode(data) else { return };
    assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(&m), "decode(encode(m)) != m");
    if let Message::Delta { delta, .. } = &m {
        let mut t = Table::new();
        if let Applied::Changed { .. } = t.apply(delta) {
            assert_eq!(t.apply(delta), Applied::Stale, "a delta applied twice changed the table twice");
        }
    }
}

fn snapshot(t: &Table) -> Vec<(NodeId, u64, u64, Vec<Entry>)> {
    t.iter().map(|n| (n.info.id, n.info.generation, n.max_version, n.entries.values().map(|e| (**e).clone()).collect())).collect()
}

/// `NodeInfo::signed` by identity `[owner; 32]`, its signature from the cache.
fn info_signed(owner: u8, name: String, addr: SocketAddr, generation: u64) -> NodeInfo {
    let public = gossipd_fuzz::identity(owner).public();
    let mut info = NodeInfo {
        id: public.node_id(),
        identity: public,
        name,
        addr,
        generation,
        cert_digest: None,
        cert: None,
        sig: [0; 64],
    };
    info.sig = gossipd_fuzz::sign_as(owner, &info.signed_bytes());
    info
}

/// `Entry::signed` by identity `[owner; 32]` (node `id`), its signature from the cache.
fn entry_signed(owner: u8, id: &NodeId, generation: u64, key: &str, version: u64, value: Value) -> Entry {
    let mut e = Entry { key: key.into(), version, value, sig: [0; 64] };
    e.sig = gossipd_fuzz::sign_as(owner, &e.signed_bytes(id, generation));
    e
}

fn signed(s: &Signed) {
    let owner = s.owner % 16;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), s.port);
    let info = info_signed(owner, clip(&s.name, MAX_NODE_NAME), addr, s.generation);
    let id = info.id;
    let mut entries: Vec<Entry> = s
        .entries
        .iter()
        .take(6)
        .enumerate()
        .map(|(i, (k, v))| entry_signed(owner, &id, s.generation, &clip(k, MAX_KEY), i as u64 + 1, value(v, owner)))
        .collect();
    if entries.is_empty() {
        entries.push(entry_signed(owner, &id, s.generation, "@status", 1, Value::Status(NodeStatus::Alive)));
    }
    let n = entries.len();
    let k = usize::from(s.split) % n; // the second delta holds at least one entry
    let mut table = Table::new();
    if k > 0 {
        let d1 = Delta {
            ttl: 0,
            node: info.clone(),
            from_version: 0,
            to_version: k as u64,
            entries: entries[..k].to_vec(),
            head: None,
        };
        assert!(matches!(table.apply(&d1), Applied::Changed { new_node: true, .. }), "a valid delta was refused");
    }
    let d2 = Delta {
        ttl: s.ttl,
        node: info,
        from_version: k as u64,
        to_version: n as u64,
        entries: entries[k..].to_vec(),
        head: None,
    };
    let msg = Message::Delta { sender: NodeId([3; 16]), delta: d2.clone() };
    let mut bytes = msg.encode();
    assert_eq!(Message::decode(&bytes).as_ref(), Ok(&msg), "a signed delta does not round-trip");
    for (pos, x) in s.edits.iter().take(4) {
        let i = usize::from(*pos) % bytes.len();
        bytes[i] ^= x;
    }
    let Ok(Message::Delta { delta: m, .. }) = Message::decode(&bytes) else { return };
    let before = snapshot(&table);
    let fp = (table.fingerprint(&NodeId::MIN, &Bound::Inf, Scheme::Concat), table.fingerprint(&NodeId::MIN, &Bound::Inf, Scheme::Sum));
    let r = table.apply(&m);
    if m.node != d2.node || m.entries != d2.entries {
        assert!(
            matches!(r, Applied::Forged | Applied::Stale | Applied::Gap(_)),
            "an altered delta was applied: {r:?}\n{m:?}\n{d2:?}"
        );
        assert_eq!(snapshot(&table), before, "a refused delta changed the table");
        let after = (table.fingerprint(&NodeId::MIN, &Bound::Inf, Scheme::Concat), table.fingerprint(&NodeId::MIN, &Bound::Inf, Scheme::Sum));
        assert_eq!(after, fp, "a refused delta changed a fingerprint");
        let fresh_start = m.from_version == 0 || (m.node == d2.node && m.from_version <= k as u64);
        if fresh_start && m.to_version > k as u64 && m.node.id == d2.node.id && m.node.generation == d2.node.generation
        {
            assert_eq!(r, Applied::Forged, "an altered delta was not recognised as forged");
        }
    } else if !m.entries.is_empty() && m.from_version <= k as u64 && m.to_version >= n as u64 {
        // Unchanged signed content (the mutation hit the unsigned ttl or version bounds, or
        // re-encoded a varint): it applies as the original would.
        assert!(matches!(r, Applied::Changed { .. }), "an intact delta was refused: {r:?}");
    }
}

/// Once per process: the cached constructors build what gossip-core's own do (so a change to
/// what `NodeInfo::signed`, `Entry::signed` or `Binding::sign` sign shows here, not as a
/// harness that quietly tests something else).
fn same_as_core() {
    let id = gossipd_fuzz::identity(5);
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7946);
    let info = NodeInfo::signed(&id, "n".into(), addr, 3);
    assert_eq!(info_signed(5, "n".into(), addr, 3), info);
    let v = Value::Binding(Box::new(gossip_core::secure::keys::Binding::sign(&id, [1; 32], 2, 9)));
    assert_eq!(value(&ValueSpec::Binding { static_pub: [1; 32], not_before: 2, not_after: 9 }, 5), v);
    assert_eq!(entry_signed(5, &info.id, 3, "k", 1, v.clone()), Entry::signed(&id, 3, "k", 1, v));
}

fuzz_target!(|data: &[u8]| {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(same_as_core);
    raw(data);
    if let Ok(s) = Signed::arbitrary(&mut Unstructured::new(data)) {
        signed(&s);
    }
});
