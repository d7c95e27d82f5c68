//! Merging received deltas into the replicated table (`Table::apply`, which verifies the owner's
//! Ed25519 signatures on the node info and every entry), on a table that already holds 1,000
//! owners with 10 services each:
//!
//! * `new_owner`: a full delta (about 1.1 kB, every entry new) from an owner not yet held;
//! * `next_version`: a one-entry delta that extends an owner already held (the common rumor);
//! * `stale`: a delta already held (a duplicate rumor or repair), which must cost little.
//!
//! `cargo bench -p gossip-core --bench merge -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use gossip_core::chunk::split_delta;
use gossip_core::message::{Delta, Entry, Value};
use gossip_core::secure::keys::Identity;
use gossip_core::session::MAX_PAYLOAD;
use gossip_core::state::{Applied, Table};
use gossip_core::{NodeInfo, ServiceInstance};

fn identity(n: u64) -> Identity {
    let mut secret = [7u8; 32];
    secret[..8].copy_from_slice(&n.to_be_bytes());
    Identity::from_secret(secret)
}

fn generation(n: u64) -> u64 {
    1_795_223_420 + n
}

fn info(n: u64) -> NodeInfo {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, (n / 256) as u8, (n % 256) as u8)), 7946);
    NodeInfo::signed(&identity(n), format!("node-{n}"), addr, generation(n))
}

fn service_entry(owner: u64, i: u64, version: u64) -> Entry {
    let mut meta = BTreeMap::new();
    meta.insert("version".to_owned(), "1.4.2".to_owned());
    let inst = ServiceInstance {
        id: format!("web-{}", i % 10),
        name: "web".into(),
        address: Some(IpAddr::V4(Ipv4Addr::new(10, 1, (i / 256 % 256) as u8, (i % 256) as u8))),
        port: 8080,
        tags: vec!["v1".into(), "primary".into()],
        meta: meta.into(),
        weight_passing: 1,
        weight_warning: 1,
        ..Default::default()
    };
    Entry::signed(
        &identity(owner),
        generation(owner),
        &format!("svc/web-{}", i % 10),
        version,
        Value::Service(inst.into()),
    )
}

/// Owner `n`'s history of `count` service writes, split into deltas that fit a datagram.
fn deltas(n: u64, count: u64) -> Vec<Delta> {
    let entries: Vec<Entry> = (1..=count).map(|v| service_entry(n, v, v)).collect();
    let refs: Vec<&Entry> = entries.iter().collect();
    split_delta(&info(n), 0, count, &refs, 0, MAX_PAYLOAD, None)
}

/// The first (full) chunk of owner `n`'s history of `count` service writes.
fn first_delta(n: u64, count: u64) -> Delta {
    deltas(n, count).remove(0)
}

fn populated() -> Table {
    let mut t = Table::new();
    for n in 0..1000 {
        for d in deltas(n, 10) {
            assert!(matches!(t.apply(&d), Applied::Changed { .. }));
        }
        assert_eq!(t.get(&info(n).id).map(|s| s.max_version), Some(10));
    }
    t
}

// The crate forbids reading the clock (clippy.toml) so that the protocol stays deterministic;
// a benchmark's timing loop is the one place that must read it.
#[allow(clippy::disallowed_methods)]
fn bench(c: &mut Criterion) {
    let base = populated();
    let mut group = c.benchmark_group("merge_into_1000_owners");

    group.bench_function("new_owner", |b| {
        b.iter_custom(|iters| {
            let deltas: Vec<Delta> = (0..iters).map(|k| first_delta(1_000_000 + k, 40)).collect();
            let mut table = base.clone();
            let start = Instant::now();
            for d in &deltas {
                black_box(table.apply(d));
            }
            let elapsed = start.elapsed();
            drop(table);
            elapsed
        })
    });

    group.bench_function("next_version", |b| {
        b.iter_custom(|iters| {
            let owner = info(500);
            let step = |k: u64| Delta {
                ttl: 2,
                node: owner.clone(),
                from_version: 10 + k,
                to_version: 11 + k,
                entries: vec![service_entry(500, k, 11 + k)],
                head: None,
            };
            let deltas: Vec<Delta> = (1..=iters).map(step).collect();
            let mut table = base.clone();
            // The first write to an owner shared with `base` copies it (copy on write): untimed.
            assert!(matches!(table.apply(&step(0)), Applied::Changed { .. }));
            let start = Instant::now();
            for d in &deltas {
                black_box(table.apply(d));
            }
            start.elapsed()
        })
    });

    let held = first_delta(500, 10);
    let mut table = base.clone();
    group.bench_function("stale", |b| b.iter(|| black_box(table.apply(black_box(&held)))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
