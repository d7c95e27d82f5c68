//! Property tests: no name, label or type a client can send makes parsing or resolving panic,
//! and parsing is insensitive to case and to the trailing dot.

use std::net::IpAddr;

use dns_front::name::{self, Query};
use dns_front::{Health, Instance, Node, QType, Question, Rcode, ResolverConfig, Snapshot, resolve};
use proptest::prelude::*;

fn snapshot() -> Snapshot {
    let inst = |svc: &str, node: &str, addr: &str, tags: &[&str]| Instance {
        service: svc.into(),
        id: format!("{svc}-{node}").into(),
        node: node.into(),
        address: addr.parse::<IpAddr>().expect("addr"),
        port: 80,
        tags: tags.iter().map(|t| std::sync::Arc::from(*t)).collect(),
        weight: 0,
        health: Health::Passing,
    };
    Snapshot::build(
        u64::MAX,
        vec![inst("web", "n1", "10.0.0.1", &["v1"]), inst("web", "n.2", "fd00::2", &["_tcp"])],
        vec![Node { name: "n1".into(), address: "10.0.0.1".parse().expect("addr"), alive: true, meta: Vec::new() }],
    )
}

/// Labels biased towards the ones the parser cares about.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("service".to_owned()),
        Just("node".to_owned()),
        Just("addr".to_owned()),
        Just("gossip".to_owned()),
        Just("web".to_owned()),
        Just("_web".to_owned()),
        Just("_tcp".to_owned()),
        Just("c0a80001".to_owned()),
        Just("in-addr".to_owned()),
        Just("ip6".to_owned()),
        Just("arpa".to_owned()),
        Just("1".to_owned()),
        Just("10".to_owned()),
        Just("0".to_owned()),
        Just(String::new()),
        "[_a-zA-Z0-9\\\\.-]{0,12}",
        any::<String>(),
    ]
}

fn qtype() -> impl Strategy<Value = QType> {
    any::<u16>().prop_map(QType::from_u16)
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(name in any::<String>(), domain in any::<String>(), t in qtype(), seed in any::<u64>()) {
        let _ = name::parse(&name, &domain);
        let cfg = ResolverConfig { domain, ..ResolverConfig::default() };
        let _ = resolve(&Question::new(&name, t), &snapshot(), &cfg, seed);
    }

    #[test]
    fn arbitrary_labels_never_panic(labels in proptest::collection::vec(label(), 0..8), t in qtype(), seed in any::<u64>()) {
        let name = labels.join(".");
        let q = name::parse(&name, "gossip");
        let a = resolve(&Question::new(&name, t), &snapshot(), &ResolverConfig::default(), seed);
        // REFUSED exactly when the parser says the name is not ours.
        prop_assert_eq!(a.rcode == Rcode::Refused, q == Query::NotOurs);
        // Every negative answer carries exactly one SOA (reverse names are not our zone: none).
        if matches!(q, Query::Reverse(_)) {
            prop_assert!(a.authority.is_empty());
        } else if a.answers.is_empty() && a.rcode != Rcode::Refused {
            prop_assert_eq!(a.authority.len(), 1);
        }
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter(labels in proptest::collection::vec("[a-z0-9_-]{1,10}", 0..6), tail in 0usize..3) {
        let domain = ["gossip", "service.gossip", "node.gossip"][tail];
        let name = if labels.is_empty() { domain.to_owned() } else { format!("{}.{domain}", labels.join(".")) };
        let expected = name::parse(&name, "gossip");
        prop_assert_eq!(&name::parse(&format!("{name}."), "gossip"), &expected);
        prop_assert_eq!(&name::parse(&name.to_ascii_uppercase(), "GOSSIP."), &expected);
    }

    #[test]
    fn reverse_names_round_trip(v4 in any::<[u8; 4]>(), v6 in any::<[u8; 16]>(), upper in any::<bool>()) {
        for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
            let mut n = name::reverse_name(ip);
            if upper {
                n = n.to_ascii_uppercase();
            }
            prop_assert_eq!(name::parse(&n, "gossip"), Query::Reverse(ip));
        }
    }

    #[test]
    fn forwarding_reads_any_bytes_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let span = dns_front::wire::question_span(&bytes);
        let failed = dns_front::forward::servfail(&bytes);
        prop_assert_eq!(span.is_some(), failed.is_some());
        if let (Some(span), Some(failed)) = (span, failed) {
            prop_assert!(span.end <= bytes.len());
            prop_assert_eq!(&failed[12..], &bytes[span]);
            prop_assert_eq!(failed[3] & 0x0F, 2);
        }
    }
}
