//! The pure resolver on a 10,000-instance snapshot: A and SRV of a 10-instance service, the
//! RFC 2782 form, a 1,000-instance service, and NXDOMAIN.
//!
//! `cargo bench -p dns-front --bench resolve -- --warm-up-time 1 --measurement-time 3`
//!
//! This is `resolve()` alone (plain data in, plain data out). The served path adds the hickory
//! conversion and encoding and the socket: `scripts/bench-dns.sh` measures it end to end. A
//! repeated UDP question does not reach the resolver at all: the `udp_cache` group measures
//! what it costs instead (reading the query, the lookup, copying and patching the answer).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use dns_front::cache::{AnswerCache, CacheLimits};
use dns_front::wire::parse_query;
use dns_front::{Health, Instance, Node, QType, Question, ResolverConfig, Snapshot, resolve};

/// 100 nodes; 900 services of 10 instances and one (`big`) of 1,000: 10,000 instances. Every
/// instance has an address of its own, so SRV targets are `HEX.addr.gossip.` names and each
/// answer carries 10 additional A records, as in `scripts/bench-dns.sh`.
fn snapshot() -> Snapshot {
    let nodes: Vec<Node> = (0..100u32)
        .map(|n| Node {
            name: format!("node{n}"),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, (n / 256) as u8, (n % 256) as u8)),
            alive: true,
            meta: Vec::new(),
        })
        .collect();
    let instance = |service: String, i: u32| Instance {
        id: format!("{service}-{i}").into(),
        service: service.into(),
        node: format!("node{}", i % 100).into(),
        address: IpAddr::V4(Ipv4Addr::new(10, 1 + (i / 65536) as u8, ((i / 256) % 256) as u8, (i % 256) as u8)),
        port: 8080,
        tags: vec!["v1".into(), format!("shard{}", i % 4).into()].into(),
        weight: 1,
        health: Health::Passing,
    };
    let mut instances = Vec::with_capacity(10_000);
    for s in 0..900u32 {
        for i in 0..10 {
            instances.push(instance(format!("svc{s}"), s * 10 + i));
        }
    }
    for i in 0..1000 {
        instances.push(instance("big".into(), 9000 + i));
    }
    Snapshot::build(1, instances, nodes)
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let cfg = ResolverConfig::default();
    let cases = [
        ("a_10", "svc42.service.gossip", QType::A),
        ("srv_10", "svc42.service.gossip", QType::Srv),
        ("srv_rfc2782_10", "_svc42._tcp.service.gossip", QType::Srv),
        ("a_tag_10", "v1.svc42.service.gossip", QType::A),
        ("a_1000", "big.service.gossip", QType::A),
        ("srv_1000", "big.service.gossip", QType::Srv),
        ("nxdomain", "nosuch.service.gossip", QType::A),
    ];
    let mut group = c.benchmark_group("resolve_10k_instances");
    for (label, name, qtype) in cases {
        let q = Question::new(name, qtype);
        let mut seed = 0u64;
        group.bench_function(label, |b| {
            b.iter(|| {
                seed = seed.wrapping_add(1);
                black_box(resolve(black_box(&q), &snap, &cfg, seed))
            })
        });
    }
    group.finish();

    // A cache hit for `web.service.gossip A` with EDNS whose answer holds 10 A records (225
    // bytes, as gossipd's in scripts/bench-dns.sh), the client's case differing from the
    // cached one.
    let query = |name: &str| {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        m
    };
    let answer = |canonical: &[u8]| {
        let qlen = canonical.len() - 11;
        let mut r = canonical[..qlen].to_vec();
        r[2] = 0x85;
        r[6..8].copy_from_slice(&10u16.to_be_bytes());
        for i in 0..10u8 {
            if i == 0 {
                r.extend_from_slice(&canonical[12..qlen - 4]);
            } else {
                r.extend_from_slice(&[0xC0, qlen as u8]);
            }
            r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 1, i + 1]);
        }
        r.extend_from_slice(&canonical[qlen..]);
        Some(r)
    };
    let snap = Arc::new(Snapshot::default());
    let mut cache = AnswerCache::new(CacheLimits::default());
    let (warm, hot) = (query("web.service.gossip"), query("WeB.sErViCe.GoSsIp"));
    let mut out = Vec::with_capacity(1232);
    let mut pick = 0u64;
    for _ in 0..10_000 {
        pick += 1;
        let q = parse_query(&warm).expect("plain");
        cache.answer(&warm, &q, &snap, pick, &mut out, answer);
    }
    let mut group = c.benchmark_group("udp_cache");
    group.bench_function("hit_a_10", |b| {
        b.iter(|| {
            pick = pick.wrapping_add(1);
            let q = parse_query(black_box(&hot)).expect("plain");
            black_box(cache.answer(&hot, &q, &snap, pick, &mut out, answer));
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
