//! The UDP cache against the full path it stands in for: a hit must be byte for byte what the
//! full path sends, but for the ID, flags and question case it patches.

use std::net::{IpAddr, SocketAddr};

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RData, RecordType};

use super::*;
use crate::cache::{AnswerCache, Outcome};
use crate::snapshot::{Health, Instance, Node};
use crate::wire::parse_query;

fn snapshot() -> Arc<Snapshot> {
    let inst = |service: &str, i: u8| Instance {
        service: service.into(),
        id: format!("{service}-{i}").into(),
        node: format!("node-{i}").into(),
        address: IpAddr::from([10, 0, 0, i]),
        port: 8000,
        tags: Vec::new().into(),
        weight: 1 + u16::from(i % 3),
        health: Health::Passing,
    };
    let instances = (1..=2).map(|i| inst("web", i)).chain((1..=60).map(|i| inst("big", i))).collect();
    let nodes = (1..=60).map(|i| Node {
        name: format!("node-{i}"),
        address: inst("x", i).address,
        alive: true,
        meta: Vec::new(),
    });
    Arc::new(Snapshot::build(3, instances, nodes.collect()))
}

fn handler(snap: &Arc<Snapshot>) -> Handler {
    Handler {
        snapshot: Arc::new(ArcSwap::new(Arc::clone(snap))),
        cfg: ResolverConfig::default(),
        stats: Arc::default(),
        seed: 99,
        queries: AtomicU64::new(0),
        forward: None,
        remote: None,
    }
}

/// A remote hook that records what it was asked and answers nothing.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl super::Remote for Recorder {
    fn query(
        &self,
        dc: String,
        _query: Vec<u8>,
        _tcp: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        self.0.lock().expect("lock").push(dc);
        Box::pin(async { None })
    }
}

#[test]
fn names_of_other_datacenters_go_to_the_remote_hook_and_local_ones_do_not() {
    let snap = snapshot();
    let mut h = handler(&snap);
    let src = "127.0.0.1:5353".parse().expect("addr");
    // Without the hook another datacenter is an unknown name.
    let raw = query(1, "web.service.dc2.gossip.", RecordType::SRV, None, false);
    assert!(matches!(h.reply(&raw, src, Protocol::Udp, &snap), Reply::Send(_)));
    h.remote = Some(super::RemoteSlot {
        hook: Arc::new(Recorder::default()),
        permits: Arc::new(tokio::sync::Semaphore::new(1)),
    });
    assert!(matches!(h.reply(&raw, src, Protocol::Udp, &snap), Reply::Remote(dc) if dc == "dc2"));
    let local = query(2, "web.service.gossip.gossip.", RecordType::SRV, None, false);
    assert!(matches!(h.reply(&local, src, Protocol::Udp, &snap), Reply::Send(_)), "the local datacenter's label");
    let plain = query(3, "web.service.gossip.", RecordType::SRV, None, false);
    assert!(matches!(h.reply(&plain, src, Protocol::Udp, &snap), Reply::Send(_)));
}

fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>, rd: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

const SRC: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5353);

/// The full path's answer to `raw` from a handler that has answered nothing yet (so that its
/// per-query seed is the same as the cache's first build).
fn uncached(snap: &Arc<Snapshot>, raw: &[u8]) -> Vec<u8> {
    handler(snap).answer(raw, SRC, Protocol::Udp, snap).expect("answered")
}

fn cached(h: &Handler, cache: &mut AnswerCache, snap: &Arc<Snapshot>, raw: &[u8]) -> (Outcome, Vec<u8>) {
    let q = parse_query(raw).expect("plain query");
    let mut out = Vec::new();
    let outcome = cache.answer(raw, &q, snap, 0, &mut out, |c| h.answer(c, SRC, Protocol::Udp, snap));
    (outcome, out)
}

#[test]
fn hits_are_the_full_path_bytes_with_id_flags_and_case_patched() {
    let snap = snapshot();
    let cases = [
        ("web.service.gossip.", RecordType::A, None),
        ("web.service.gossip.", RecordType::SRV, Some(1232)),
        ("big.service.gossip.", RecordType::SRV, None), // TC
        ("big.service.gossip.", RecordType::A, Some(4096)),
        ("big.service.gossip.", RecordType::SRV, Some(1232)), // TC, OPT kept
        ("web.service.gossip.", RecordType::AAAA, Some(1232)), // NODATA
        ("nope.service.gossip.", RecordType::A, None),        // NXDOMAIN
        ("gossip.", RecordType::SOA, Some(1232)),
        ("node-7.node.gossip.", RecordType::A, None),
        ("0a000001.addr.gossip.", RecordType::A, None),
        ("7.0.0.10.in-addr.arpa.", RecordType::PTR, None),
        ("7.0.0.10.in-addr.arpa.", RecordType::ANY, Some(1232)),
        ("1.2.0.10.in-addr.arpa.", RecordType::PTR, None), // NXDOMAIN, not authoritative
        ("web.service.gossip.gossip.", RecordType::A, None),
        ("node-7.node.gossip.gossip.", RecordType::TXT, None), // NODATA
    ];
    for (name, rtype, edns) in cases {
        let (h, mut cache) = (handler(&snap), AnswerCache::new(CacheLimits::default()));
        let first = query(0x1111, name, rtype, edns, true);
        let (outcome, miss) = cached(&h, &mut cache, &snap, &first);
        assert_eq!(outcome, Outcome::Miss, "{name} {rtype}");
        assert_eq!(miss, uncached(&snap, &first), "{name} {rtype}: miss = full path");

        let second = query(0x2222, name, rtype, edns, false);
        let (outcome, hit) = cached(&h, &mut cache, &snap, &second);
        assert!(matches!(outcome, Outcome::Hit { .. }), "{name} {rtype}: {outcome:?}");
        assert_eq!(hit, uncached(&snap, &second), "{name} {rtype}: hit = full path, new ID and RD");

        // Mixed case (0x20): the question and the owner names carry the client's case. The
        // bytes may differ from the full path's in compression only: hickory compresses
        // case-sensitively, so the full path does not point `ns.gossip.` at `GoSsIp.` while
        // the cached answer (built lower-case) does; both decode to the same records.
        let mixed: String =
            name.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
        let third = query(0x3333, &mixed, rtype, edns, true);
        let (outcome, hit) = cached(&h, &mut cache, &snap, &third);
        assert!(matches!(outcome, Outcome::Hit { .. }), "{name} {rtype}: {outcome:?}");
        let reply = Message::from_vec(&hit).expect("decodes");
        let full = Message::from_vec(&uncached(&snap, &third)).expect("decodes");
        assert_eq!(reply, full, "{name} {rtype}: same message as the full path");
        assert_eq!(reply.metadata.id, 0x3333);
        assert!(reply.metadata.recursion_desired);
        assert_eq!(reply.queries[0].name().to_ascii(), mixed, "0x20 case echoed");
        for r in reply.answers.iter() {
            assert_eq!(r.name.to_ascii(), mixed, "answer owners carry the question's case");
        }
    }
}

#[test]
fn refused_and_odd_queries_are_not_cached() {
    let snap = snapshot();
    let (h, mut cache) = (handler(&snap), AnswerCache::new(CacheLimits::default()));
    let outside = query(1, "example.com.", RecordType::A, None, true);
    for _ in 0..2 {
        assert_eq!(cached(&h, &mut cache, &snap, &outside).0, Outcome::Miss);
    }
    assert!(cache.is_empty());
    let c = h.stats.counts();
    assert_eq!(c.refused, 2);
}

#[test]
fn stats_count_hits_once() {
    let snap = snapshot();
    let (h, mut cache) = (handler(&snap), AnswerCache::new(CacheLimits::default()));
    let q = query(1, "nope.service.gossip.", RecordType::A, None, true);
    let (o1, _) = cached(&h, &mut cache, &snap, &q);
    let (o2, _) = cached(&h, &mut cache, &snap, &q);
    assert_eq!((o1, o2), (Outcome::Miss, Outcome::Hit { rcode: CountedRcode::NxDomain, truncated: false }));
    assert_eq!(h.stats.counts().nxdomain, 1, "the full path counted the miss; the loop counts hits");
}

#[test]
fn ptr_is_encoded() {
    let snap = snapshot();
    let reply = Message::from_vec(&uncached(&snap, &query(1, "7.0.0.10.in-addr.arpa.", RecordType::PTR, None, true)))
        .expect("decodes");
    assert!(reply.metadata.authoritative);
    let targets: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, vec!["node-7.node.gossip.".to_owned()]);
}

#[test]
fn with_forwarding_names_not_ours_are_handed_over_and_never_cached() {
    let snap = snapshot();
    let mut h = handler(&snap);
    h.forward = Some(Arc::new(Forwarder::new(ForwardConfig::new(vec!["127.0.0.1:9".parse().expect("addr")]))));
    let mut cache = AnswerCache::new(CacheLimits::default());
    for (name, rtype) in [("example.com.", RecordType::A), ("1.2.0.10.in-addr.arpa.", RecordType::PTR)] {
        let raw = query(7, name, rtype, None, true);
        assert!(matches!(h.reply(&raw, SRC, Protocol::Udp, &snap), Reply::Forward), "{name}");
        for _ in 0..2 {
            let (outcome, _) = cached(&h, &mut cache, &snap, &raw);
            assert_eq!(outcome, Outcome::NoAnswer, "{name}: the UDP loop forwards it, uncached");
        }
    }
    // Our names, and the catalog's own NXDOMAIN, are still answered here.
    for name in ["web.service.gossip.", "nope.service.gossip.", "7.0.0.10.in-addr.arpa."] {
        assert!(matches!(
            h.reply(&query(7, name, RecordType::A, None, true), SRC, Protocol::Udp, &snap),
            Reply::Send(_)
        ));
    }
}
