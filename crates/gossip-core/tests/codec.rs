//! Codec properties: every message round-trips, and arbitrary bytes never panic the decoder
//! nor make it allocate more than the input can justify.

use std::net::{IpAddr, SocketAddr};

use gossip_core::message::{Bound, Delta, Entry, Message, NodeStatus, Range, RangeBody, Summary, Value, Want};
use gossip_core::proof::{Accusation, Charge, Claim, Proof};
use gossip_core::secure::keys::{Binding, IdentityPub};
use gossip_core::session::MAX_PAYLOAD;
use gossip_core::{Health, NodeId, NodeInfo, ServiceInstance};

fn sig() -> impl Strategy<Value = [u8; 64]> {
    proptest::collection::vec(any::<u8>(), 64).prop_map(|v| v.try_into().unwrap())
}
use proptest::prelude::*;

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 16]>().prop_map(NodeId)
}

fn service() -> impl Strategy<Value = ServiceInstance> {
    (
        "[a-z0-9-]{1,20}",
        "[a-z0-9-]{1,20}",
        proptest::option::of(any::<IpAddr>()),
        any::<u16>(),
        proptest::collection::vec("[a-z]{0,10}", 0..4),
        proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,16}", 0..4),
        any::<u16>(),
        any::<u16>(),
        prop_oneof![Just(Health::Passing), Just(Health::Warning), Just(Health::Critical)],
    )
        .prop_map(|(id, name, address, port, tags, meta, wp, ww, health)| ServiceInstance {
            id,
            name,
            address,
            port,
            tags,
            meta: meta.into_iter().collect(),
            weight_passing: wp,
            weight_warning: ww,
            health,
        })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Tombstone),
        Just(Value::Status(NodeStatus::Alive)),
        Just(Value::Status(NodeStatus::Left)),
        service().prop_map(|s| Value::Service(s.into())),
        (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u64>(), any::<u64>(), sig()).prop_map(|(i, s, a, b, sig)| {
            Value::Binding(Box::new(Binding {
                identity: IdentityPub(i),
                static_pub: s,
                not_before: a,
                not_after: b,
                sig,
            }))
        }),
        (1..=16usize, any::<u64>())
            .prop_map(|(n, stamp)| Value::Keyring { stamp, keys: (0..n).map(|i| [i as u8; 32]).collect() }),
        (node_id(), "[ -~]{0,40}")
            .prop_map(|(accused, r)| Value::Accusation(Accusation { accused, charge: Charge::Misbehaved(r) })),
        (node_id(), any::<[u8; 32]>(), any::<u64>(), claim(), claim()).prop_map(
            |(accused, i, generation, first, second)| {
                let proof = Proof { identity: IdentityPub(i), generation, first, second };
                Value::Accusation(Accusation { accused, charge: Charge::Equivocation(Box::new(proof)) })
            }
        ),
        any::<u64>().prop_map(Value::RingStamp),
        (3u8..=9, 0u8..=6)
            .prop_map(|(min, d)| Value::Proto(gossip_core::version::VersionRange::new(min, min + d).unwrap())),
        (node_id(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(target, generation, version, at)| { Value::Failed { target, generation, version, at } }),
        proptest::collection::btree_map("[a-z_-]{1,12}", "[ -~]{0,40}", 0..8).prop_map(Value::NodeMeta),
        (prop_oneof![Just(Health::Passing), Just(Health::Warning), Just(Health::Critical)], "[ -~]{0,200}")
            .prop_map(|(health, output)| Value::CheckNote { health, output }),
        proptest::collection::vec(any::<u8>(), 0..=gossip_core::message::MAX_APP_RECORD).prop_map(Value::App),
        // A kind this build does not know (a newer agent's): kept as its bytes.
        (13u8..=255, proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(tag, bytes)| Value::Unknown { tag, bytes }),
    ]
}

fn claim() -> impl Strategy<Value = Claim> {
    ("[a-z/@]{0,40}", any::<u64>(), any::<[u8; 32]>(), sig()).prop_map(|(key, version, digest, sig)| Claim {
        key,
        version,
        digest,
        sig,
    })
}

fn delta() -> impl Strategy<Value = Delta> {
    (
        any::<[u8; 32]>(),
        "[a-z0-9-]{1,64}",
        (any::<IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
        any::<u64>(),
        0u64..1000,
        proptest::collection::vec(("[a-z/@]{1,30}", value(), sig()), 0..5),
        (any::<u8>(), sig(), proptest::option::of((any::<[u8; 16]>(), sig()))),
    )
        .prop_map(|(identity, name, addr, generation, from, vals, (ttl, node_sig, head))| {
            let entries: Vec<Entry> = vals
                .into_iter()
                .enumerate()
                .map(|(i, (key, value, sig))| Entry { key: key.into(), version: from + 1 + i as u64, value, sig })
                .collect();
            let to = from + entries.len() as u64 + 3;
            let identity = IdentityPub(identity);
            let node = NodeInfo {
                id: identity.node_id(),
                identity,
                name,
                addr,
                generation,
                cert_digest: None,
                cert: None,
                sig: node_sig,
            };
            let head = head.map(|(digest, sig)| gossip_core::message::Head { digest, sig });
            Delta { ttl, node, from_version: from, to_version: to, entries, head }
        })
}

fn summary() -> impl Strategy<Value = Summary> {
    (node_id(), any::<u64>(), any::<u64>(), any::<[u8; 16]>()).prop_map(|(id, generation, version, digest)| Summary {
        id,
        generation,
        version,
        digest,
    })
}

fn range() -> impl Strategy<Value = Range> {
    let body = prop_oneof![
        (any::<u64>(), any::<[u8; 16]>()).prop_map(|(count, fp)| RangeBody::Fingerprint { count, fp }),
        proptest::collection::vec(summary(), 0..8).prop_map(RangeBody::Items),
    ];
    (node_id(), proptest::option::of(node_id()), body).prop_filter_map("non-empty range", |(lo, hi, body)| {
        let hi = hi.map_or(Bound::Inf, Bound::Id);
        hi.above(&lo).then_some(Range { lo, hi, body })
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (node_id(), any::<bool>(), proptest::collection::vec(range(), 0..6))
            .prop_map(|(sender, initial, ranges)| Message::Reconcile { sender, initial, ranges }),
        (node_id(), delta()).prop_map(|(sender, delta)| Message::Delta { sender, delta }),
        (node_id(), proptest::collection::vec((node_id(), any::<u64>(), any::<u64>()), 0..20)).prop_map(
            |(sender, w)| {
                Message::Request {
                    sender,
                    wants: w.into_iter().map(|(id, generation, version)| Want { id, generation, version }).collect(),
                }
            }
        ),
        (node_id(), proptest::collection::vec((node_id(), any::<u64>(), any::<u64>()), 0..20)).prop_map(
            |(sender, w)| {
                Message::More {
                    sender,
                    owners: w.into_iter().map(|(id, generation, version)| Want { id, generation, version }).collect(),
                }
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.encode();
        prop_assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn truncated_messages_are_rejected(msg in message(), cut in any::<prop::sample::Index>()) {
        let bytes = msg.encode();
        let cut = cut.index(bytes.len());
        prop_assert!(Message::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected(msg in message(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = msg.encode();
        bytes.extend_from_slice(&extra);
        prop_assert!(Message::decode(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = Message::decode(&bytes);
        if let Some(rest) = bytes.get(1..) {
            let _ = Message::decode(rest);
        }
    }

    #[test]
    fn mutated_messages_never_panic(msg in message(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut bytes = msg.encode();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        let _ = Message::decode(&bytes);
    }
}

#[test]
fn huge_declared_counts_do_not_allocate() {
    // kind=Request, sender, then a count of 2^60 wants with no bytes behind it.
    let mut bytes = vec![3u8];
    bytes.extend_from_slice(&[0u8; 16]);
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    assert!(Message::decode(&bytes).is_err());
}

#[test]
fn largest_messages_fit_the_payload_budget() {
    let items: Vec<Summary> = (0..16u8)
        .map(|i| Summary { id: NodeId([i; 16]), generation: u64::MAX, version: u64::MAX, digest: [0xff; 16] })
        .collect();
    let range = Range { lo: NodeId::MIN, hi: Bound::Inf, body: RangeBody::Items(items) };
    let packed = gossip_core::chunk::pack_ranges(NodeId::MIN, vec![range; 10], MAX_PAYLOAD);
    assert!(packed.len() > 1);
    for m in packed {
        assert!(m.encode().len() <= MAX_PAYLOAD);
    }
}

#[test]
fn the_largest_accusation_fits_one_entry() {
    let claim = |c: char| Claim {
        key: std::iter::repeat_n(c, gossip_core::message::MAX_KEY).collect(),
        version: u64::MAX,
        digest: [0xff; 32],
        sig: [0xff; 64],
    };
    let proof =
        Proof { identity: IdentityPub([0xff; 32]), generation: u64::MAX, first: claim('a'), second: claim('b') };
    let accused = NodeId([0xff; 16]);
    let charges =
        [Charge::Equivocation(Box::new(proof)), Charge::Misbehaved("x".repeat(gossip_core::proof::MAX_REASON))];
    for charge in charges {
        let value = Value::Accusation(Accusation { accused, charge });
        let e = Entry { key: Accusation::key(&accused).into(), version: u64::MAX, value, sig: [0xff; 64] };
        let len = gossip_core::message::entry_len(&e);
        assert!(len <= gossip_core::MAX_ENTRY, "an accusation entry of {len} bytes");
    }
}

#[test]
fn node_meta_beyond_64_pairs_and_more_beyond_the_datagram_are_refused() {
    use gossip_core::message::{MAX_NODE_META, decode_value};
    use gossip_core::wire::{Reader, Writer};
    let body = |pairs: usize| {
        let mut b = Writer::new();
        b.varint(pairs as u64);
        for i in 0..pairs {
            b.string(&format!("k{i}"));
            b.string("v");
        }
        let mut w = Writer::new();
        w.u8(10);
        w.varint(b.buf.len() as u64);
        w.bytes(&b.buf);
        w.buf
    };
    let ok = body(MAX_NODE_META);
    assert!(matches!(decode_value(&mut Reader::new(&ok)), Ok(Value::NodeMeta(m)) if m.len() == MAX_NODE_META));
    let big = body(MAX_NODE_META + 1);
    assert!(decode_value(&mut Reader::new(&big)).is_err(), "65 node meta pairs decoded");
    // A check note's output is bounded, and cut at a character boundary when written.
    let note = |len: usize| {
        let mut b = Writer::new();
        b.u8(2);
        b.string(&"x".repeat(len));
        let mut w = Writer::new();
        w.u8(11);
        w.varint(b.buf.len() as u64);
        w.bytes(&b.buf);
        w.buf
    };
    let max = gossip_core::MAX_NOTE;
    assert!(
        matches!(decode_value(&mut Reader::new(&note(max))), Ok(Value::CheckNote { output, .. }) if output.len() == max)
    );
    assert!(decode_value(&mut Reader::new(&note(max + 1))).is_err(), "an oversized note decoded");
    let cut = gossip_core::message::note_output(&format!("  {}é", "y".repeat(max - 1)));
    assert_eq!(cut.len(), max - 1, "cut before the two-byte character that would cross the bound");
    // A More claiming more owners than its bytes hold allocates nothing and fails.
    let mut w = Writer::new();
    w.u8(gossip_core::message::KIND_MORE);
    w.bytes(&[0u8; 16]);
    w.varint(u32::MAX as u64);
    assert!(Message::decode(&w.buf).is_err());
}
