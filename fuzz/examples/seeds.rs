//! Writes the committed seed inputs under `fuzz/seeds/<target>/`: every packet of real IK, XX
//! and cookie exchanges (datagram), valid signed messages (records, datagram) and query names
//! (dns_name). The handshake target's inputs are structured and start from nothing.
//!
//! `cd fuzz && cargo run --example seeds`

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gossip_core::message::{Bound, Delta, Entry, Message, NodeStatus, Range, RangeBody, Summary, Value, Want};
use gossip_core::secure::SecureLayer;
use gossip_core::secure::keys::Identity;
use gossip_core::{NodeId, NodeInfo, ServiceInstance};
use gossipd_fuzz::{Pair, addr, config, layer, now0};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    fs::create_dir_all(&dir).expect("create seed directory");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn wire(ik: bool, under_load: bool) -> Vec<Vec<u8>> {
    let mut cfg = config(2);
    if under_load {
        cfg.load_threshold = 0;
    }
    let mut p = Pair::new(layer(1, now0()), SecureLayer::new(cfg, now0()));
    let mut seen = Vec::new();
    let mut f = |_: SocketAddr, _: SocketAddr, b: &mut Vec<u8>| seen.push(b.clone());
    p.a_sends(b"hello", ik, &mut f);
    p.tick(Duration::from_millis(1100), &mut f);
    p.b_sends(b"back", &mut f);
    seen
}

fn messages() -> Vec<Message> {
    let id = Identity::from_secret([5; 32]);
    let info = NodeInfo::signed(&id, "node-1".into(), addr(5), 3);
    let mut meta = BTreeMap::new();
    meta.insert("version".to_owned(), "1.4.2".to_owned());
    let svc = ServiceInstance {
        id: "web-1".into(),
        name: "web".into(),
        port: 8080,
        tags: vec!["v1".into()],
        meta: meta.into(),
        weight_passing: 1,
        weight_warning: 1,
        ..Default::default()
    };
    let entries = vec![
        Entry::signed(&id, 3, "@status", 1, Value::Status(NodeStatus::Alive)),
        Entry::signed(&id, 3, "svc/web-1", 2, Value::Service(svc.into())),
        Entry::signed(&id, 3, "@key", 3, Value::Binding(Box::new(layer(5, now0()).binding()))),
        Entry::signed(&id, 3, "svc/old", 4, Value::Tombstone),
        Entry::signed(&id, 3, "@proto", 5, Value::Proto(gossip_core::version::VersionRange::DEFAULT)),
        // A kind this build does not know (value framing: tag, length, body kept as bytes).
        Entry::signed(&id, 3, "x/new", 6, Value::Unknown { tag: 200, bytes: b"newer agent".to_vec() }),
    ];
    let sender = NodeId([3; 16]);
    vec![
        Message::Delta {
            sender,
            delta: Delta { ttl: 2, node: info, from_version: 0, to_version: 6, entries, head: None },
        },
        Message::Reconcile {
            sender,
            initial: true,
            ranges: vec![
                Range {
                    lo: NodeId::MIN,
                    hi: Bound::Id(NodeId([0x80; 16])),
                    body: RangeBody::Fingerprint { count: 3, fp: [77; 16] },
                },
                Range {
                    lo: NodeId([0x80; 16]),
                    hi: Bound::Inf,
                    body: RangeBody::Items(vec![Summary {
                        id: NodeId([0x90; 16]),
                        generation: 1,
                        version: 9,
                        digest: [0x5a; 16],
                    }]),
                },
            ],
        },
        Message::Request { sender, wants: vec![Want { id: NodeId([0x90; 16]), generation: 1, version: 4 }] },
    ]
}

fn main() {
    for (name, ik, load) in
        [("ik", true, false), ("xx", false, false), ("cookie-xx", false, true), ("cookie-ik", true, true)]
    {
        for (i, pkt) in wire(ik, load).iter().enumerate() {
            write("datagram", &format!("{name}-{i:02}-type{:02x}", pkt.first().copied().unwrap_or(0)), pkt);
        }
    }
    for (i, m) in messages().iter().enumerate() {
        write("datagram", &format!("message-{i}"), &m.encode());
        write("records", &format!("message-{i}"), &m.encode());
    }
    let names = [
        "web.service.gossip.",
        "v1.web.service.gossip",
        "_web._tcp.service.gossip.",
        "_web._v1.service.gossip",
        "n1.node.gossip",
        "c0a80001.addr.gossip.",
        "fd000000000000000000000000000001.addr.gossip",
        "ns.gossip",
        "service.gossip",
        "we\\.b.service.gossip",
        "\\065.node.gossip",
        "a..service.gossip",
        "example.com.",
    ];
    for (i, n) in names.iter().enumerate() {
        write("dns_name", &format!("name-{i:02}"), n.as_bytes());
    }
}
