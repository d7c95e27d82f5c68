//! The pure resolver on a 10,000-instance snapshot: A and SRV of a 10-instance service, the
//! RFC 2782 form, a 1,000-instance service, and NXDOMAIN.
//!
//! `cargo bench -p dns-front --bench resolve -- --warm-up-time 1 --measurement-time 3`
//!
//! This is `resolve()` alone (plain data in, plain data out). The served path adds the hickory
//! conversion and encoding and the socket: `scripts/bench-dns.sh` measures it end to end.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
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
        })
        .collect();
    let instance = |service: String, i: u32| Instance {
        id: format!("{service}-{i}"),
        service,
        node: format!("node{}", i % 100),
        address: IpAddr::V4(Ipv4Addr::new(10, 1 + (i / 65536) as u8, ((i / 256) % 256) as u8, (i % 256) as u8)),
        port: 8080,
        tags: vec!["v1".into(), format!("shard{}", i % 4)],
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
