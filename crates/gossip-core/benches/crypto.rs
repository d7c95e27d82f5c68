//! Cost of the cryptography, on one core:
//!
//! * `handshake/ik`, `handshake/xx`: one complete handshake, both sides (initiator and
//!   responder run in the same thread), from the first `send` to the delivery of its one-byte
//!   payload: IKpsk2 is 2 messages and the data; XXpsk3 is 3 messages, the keepalive and the
//!   data. Each includes the mac1 checks and the Ed25519 verification of the peer's binding (one
//!   per side). Fresh layers per iteration are built outside the measurement;
//!   `handshake/ik_cert`, `handshake/xx_cert`: the same with both sides certified by a CA and
//!   requiring a certificate of the other (one more Ed25519 verification per side, and the
//!   certificate's bytes in the handshake messages);
//! * `transport/seal_open/{40,1100}`: one datagram over an established session: `send` (seal)
//!   on one side, `recv` (open, replay window) on the other;
//! * `records/entry_verify`: Ed25519 verification of one signed service entry;
//!   `records/apply_1_entry`: `Table::apply` of a one-entry signed delta extending an owner the
//!   table holds (verifies the node info and the entry, then merges).
//!
//! `cargo bench -p gossip-core --bench crypto -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gossip_core::message::{Delta, Entry, Head, Value};
use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
use gossip_core::secure::{Outgoing, SecureConfig, SecureLayer};
use gossip_core::state::{Applied, Table};
use gossip_core::{NodeInfo, ServiceInstance};

const WALL: u64 = 1_790_000_000_000_000_000;

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn layer(i: u8, seed: u8, now: Instant) -> SecureLayer {
    let cfg =
        SecureConfig::new(Identity::from_secret([i; 32]), Keyring::new(ClusterKey::new([9; 32])), WALL, [seed; 32]);
    SecureLayer::new(cfg, now)
}

/// A layer certified by a test CA (for `web,api-*`) that requires peers to be certified too.
fn certified_layer(i: u8, seed: u8, now: Instant) -> SecureLayer {
    use gossip_core::cert::{CertRequest, Certificate, Trust};
    let ca = Identity::from_secret([200; 32]);
    let secs = WALL / 1_000_000_000;
    let ca_cert = Certificate::new_ca(&ca, "bench-ca", secs - 10, secs + 86_400).expect("CA");
    let identity = Identity::from_secret([i; 32]);
    let req = CertRequest {
        name: format!("node-{i}"),
        identity: identity.public(),
        services: vec!["web".into(), "api-*".into()],
        roles: 0,
        max_entries: 0,
        not_before: secs - 10,
        not_after: secs + 86_400,
    };
    let mut cfg = SecureConfig::new(identity, Keyring::new(ClusterKey::new([9; 32])), WALL, [seed; 32]);
    cfg.cert = Some(std::sync::Arc::new(Certificate::sign(&ca, &req).expect("cert")));
    cfg.trust = Some(Trust::new(vec![ca_cert]).expect("trust"));
    SecureLayer::new(cfg, now)
}

/// Delivers datagrams between node 1 (`addr(1)`) and node 2 until quiet; returns how many
/// payloads node 2 received.
fn run(now: Instant, a: &mut SecureLayer, b: &mut SecureLayer, out: Vec<Outgoing>) -> usize {
    let mut q: Vec<(SocketAddr, Outgoing)> = out.into_iter().map(|o| (addr(1), o)).collect();
    let mut got = 0;
    while let Some((src, o)) = q.pop() {
        let mut replies = Vec::new();
        let (layer, me) = if o.dst == addr(1) { (&mut *a, addr(1)) } else { (&mut *b, addr(2)) };
        if layer.recv(now, src, &o.bytes, &mut replies).is_some() && me == addr(2) {
            got += 1;
        }
        q.extend(replies.into_iter().map(|r| (me, r)));
    }
    got
}

fn handshake(now: Instant, mut a: SecureLayer, mut b: SecureLayer, ik: bool) -> usize {
    let mut out = Vec::new();
    let hint = ik.then(|| b.binding());
    a.send(now, addr(2), hint, b"x", &mut out);
    run(now, &mut a, &mut b, out)
}

fn handshakes(c: &mut Criterion) {
    let now = t0();
    let mut g = c.benchmark_group("handshake");
    type Make = fn(u8, u8, Instant) -> SecureLayer;
    let cases: [(&str, bool, Make); 4] = [
        ("ik", true, layer),
        ("xx", false, layer),
        ("ik_cert", true, certified_layer),
        ("xx_cert", false, certified_layer),
    ];
    for (name, ik, make) in cases {
        // Check once that the exchange completes and delivers.
        assert_eq!(handshake(now, make(1, 101, now), make(2, 102, now), ik), 1);
        let mut seed = 0u8;
        g.bench_function(name, |bench| {
            bench.iter_batched(
                || {
                    seed = seed.wrapping_add(2);
                    (make(1, seed, now), make(2, seed.wrapping_add(1), now))
                },
                |(a, b)| handshake(now, a, b, ik),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn transport(c: &mut Criterion) {
    let now = t0();
    let (mut a, mut b) = (layer(1, 101, now), layer(2, 102, now));
    let mut out = Vec::new();
    a.send(now, addr(2), Some(b.binding()), b"x", &mut out);
    assert_eq!(run(now, &mut a, &mut b, out), 1);
    let mut g = c.benchmark_group("transport");
    for size in [40usize, 1100] {
        let payload = vec![0x5a; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("seal_open/{size}"), |bench| {
            bench.iter(|| {
                let mut out = Vec::with_capacity(1);
                a.send(now, addr(2), None, black_box(&payload), &mut out);
                let mut replies = Vec::new();
                let got = b.recv(now, addr(1), &out[0].bytes, &mut replies);
                debug_assert_eq!(got.as_ref().map(|r| r.payload.len()), Some(size));
                got
            })
        });
    }
    g.finish();
}

fn service(i: u64) -> Value {
    let mut meta = BTreeMap::new();
    meta.insert("version".to_owned(), "1.4.2".to_owned());
    Value::Service(
        ServiceInstance {
            id: format!("web-{i}"),
            name: "web".into(),
            address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i % 256) as u8))),
            port: 8080,
            tags: vec!["v1".into(), "primary".into()],
            meta: meta.into(),
            weight_passing: 1,
            weight_warning: 1,
            ..Default::default()
        }
        .into(),
    )
}

fn records(c: &mut Criterion) {
    let id = Identity::from_secret([5; 32]);
    let info = NodeInfo::signed(&id, "node-alpha-01".into(), addr(5), 1_795_223_420);
    let e1 = Entry::signed(&id, info.generation, "svc/web-1", 1, service(1));
    let e2 = Entry::signed(&id, info.generation, "svc/web-2", 2, service(2));
    assert!(e2.verify(&info));
    let mut held = Table::new();
    let d1 = Delta { ttl: 0, node: info.clone(), from_version: 0, to_version: 1, entries: vec![e1], head: None };
    assert!(matches!(held.apply(&d1), Applied::Changed { .. }));
    let d2 =
        Delta { ttl: 0, node: info.clone(), from_version: 1, to_version: 2, entries: vec![e2.clone()], head: None };
    assert!(matches!(held.clone().apply(&d2), Applied::Changed { .. }));

    // The same change with the owner's head (protocol 4): one more signature to check.
    let mut owner = Table::new();
    owner.insert_local(info.clone());
    for v in 1..=2u64 {
        owner.write_local(&id, &format!("svc/web-{v}"), service(v));
    }
    let d2h = owner.deltas_for(&id.node_id(), info.generation, 1, 0, 1136).remove(0);
    assert!(d2h.head.is_some());
    let head = d2h.head.unwrap();
    assert!(matches!(held.clone().apply(&d2h), Applied::Changed { .. }));

    let mut g = c.benchmark_group("records");
    g.bench_function("entry_verify", |bench| bench.iter(|| black_box(&e2).verify(black_box(&info))));
    g.bench_function("head_sign", |bench| {
        bench.iter(|| Head::signed(black_box(&id), info.generation, 2, black_box(head.digest)))
    });
    g.bench_function("head_verify", |bench| bench.iter(|| black_box(&head).verify(black_box(&info), 2)));
    g.bench_function("apply_1_entry", |bench| {
        bench.iter_batched_ref(|| held.clone(), |t| t.apply(black_box(&d2)), BatchSize::SmallInput)
    });
    g.bench_function("apply_1_entry_with_head", |bench| {
        bench.iter_batched_ref(|| held.clone(), |t| t.apply(black_box(&d2h)), BatchSize::SmallInput)
    });
    // A local change: the entry's signature, the digest, the head's signature.
    g.bench_function("write_local", |bench| {
        bench.iter_batched_ref(
            || owner.clone(),
            |t| t.write_local(black_box(&id), "svc/web-3", service(3)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = handshakes, transport, records
}
criterion_main!(benches);
