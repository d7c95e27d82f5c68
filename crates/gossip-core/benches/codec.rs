//! Encoding and decoding of gossip messages: a delta filled close to the payload budget with
//! service entries (what a rumor or an anti-entropy repair carries), a reconcile of 16
//! fingerprint ranges (a summary-first exchange), and a reconcile listing 48 node summaries.
//!
//! `cargo bench -p gossip-core --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use gossip_core::chunk::split_delta;
use gossip_core::message::{Bound, Entry, Message, Range, RangeBody, Summary, Value};
use gossip_core::secure::keys::Identity;
use gossip_core::session::MAX_PAYLOAD;
use gossip_core::{NodeId, NodeInfo, ServiceInstance};

fn id(n: u64) -> NodeId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    b[8..].copy_from_slice(&n.to_be_bytes());
    NodeId(b)
}

fn service_entry(i: u64, version: u64) -> Entry {
    let mut meta = BTreeMap::new();
    meta.insert("version".to_owned(), "1.4.2".to_owned());
    let inst = ServiceInstance {
        id: format!("web-{i}"),
        name: "web".into(),
        address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8))),
        port: 8080,
        tags: vec!["v1".into(), "primary".into()],
        meta: meta.into(),
        weight_passing: 1,
        weight_warning: 1,
        ..Default::default()
    };
    Entry::signed(&owner(), GENERATION, &format!("svc/web-{i}"), version, Value::Service(inst.into()))
}

const GENERATION: u64 = 1_795_223_420;

fn owner() -> Identity {
    Identity::from_secret([1; 32])
}

/// The first chunk of a 40-service history split at the payload budget: a delta as full as
/// the protocol makes them.
fn full_delta() -> Message {
    let info = NodeInfo::signed(
        &owner(),
        "node-alpha-01".into(),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7946),
        GENERATION,
    );
    let entries: Vec<Entry> = (1..=40).map(|v| service_entry(v, v)).collect();
    let refs: Vec<&Entry> = entries.iter().collect();
    let delta = split_delta(&info, 0, 40, &refs, 2, MAX_PAYLOAD, None).remove(0);
    Message::Delta { sender: id(2), delta }
}

/// The id whose first byte is `b`, the rest zero (a range bound as reconciliation splits them).
fn prefix(b: u8) -> NodeId {
    let mut id = [0u8; 16];
    id[0] = b;
    NodeId(id)
}

fn reconcile_fingerprints() -> Message {
    let ranges = (0..16u64)
        .map(|k| {
            let lo = prefix((k * 16) as u8);
            let hi = if k == 15 { Bound::Inf } else { Bound::Id(prefix(((k + 1) * 16) as u8)) };
            Range { lo, hi, body: RangeBody::Fingerprint { count: 600 + k, fp: [k as u8; 16] } }
        })
        .collect();
    Message::Reconcile { sender: id(3), initial: false, ranges }
}

fn reconcile_items() -> Message {
    let mut items: Vec<Summary> = (0..48)
        .map(|n| Summary {
            id: id(n),
            generation: 1_795_223_000 + n,
            version: 5 + n % 7,
            digest: u128::from(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes(),
        })
        .collect();
    items.sort_by_key(|s| s.id);
    let ranges = vec![Range { lo: NodeId::MIN, hi: Bound::Inf, body: RangeBody::Items(items) }];
    Message::Reconcile { sender: id(3), initial: true, ranges }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (label, msg) in [
        ("delta", full_delta()),
        ("reconcile_16_fingerprints", reconcile_fingerprints()),
        ("reconcile_48_items", reconcile_items()),
    ] {
        let bytes = msg.encode();
        assert_eq!(Message::decode(&bytes).as_ref(), Ok(&msg), "{label} does not round-trip");
        let size = bytes.len();
        group.bench_function(format!("encode/{label}_{size}B"), |b| b.iter(|| black_box(black_box(&msg).encode())));
        group.bench_function(format!("decode/{label}_{size}B"), |b| {
            b.iter(|| black_box(Message::decode(black_box(&bytes))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
