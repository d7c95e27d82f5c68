//! Unit tests of the pure resolver, one scenario per case of the module contract.

use std::net::IpAddr;

use super::*;
use crate::snapshot::{Instance, Node};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn inst(service: &str, id: &str, node: &str, addr: &str, tags: &[&str], health: Health) -> Instance {
    Instance {
        service: service.into(),
        id: id.into(),
        node: node.into(),
        address: ip(addr),
        port: 8080,
        tags: tags.iter().map(|t| std::sync::Arc::from(*t)).collect(),
        weight: 1,
        health,
    }
}

fn node(name: &str, addr: &str, alive: bool) -> Node {
    Node { name: name.into(), address: ip(addr), alive, meta: Vec::new() }
}

/// web: n1 (passing, v1) and n2 (passing, v2, same address as its node), n3 warning,
/// n4 critical; v6web: one v6 instance; down: only critical instances.
fn snap() -> Snapshot {
    use Health::*;
    Snapshot::build(
        42,
        vec![
            inst("web", "w1", "n1", "10.0.0.1", &["v1", "Primary"], Passing),
            inst("web", "w2", "N2", "10.0.0.2", &["v2"], Passing),
            inst("web", "w3", "n3", "10.0.0.3", &["v1"], Warning),
            inst("web", "w4", "n4", "10.0.0.4", &["v1"], Critical),
            inst("v6web", "x1", "n1", "fd00::1", &[], Passing),
            inst("down", "d1", "n1", "10.0.0.1", &[], Critical),
        ],
        vec![
            node("n1", "10.0.0.1", true),
            node("N2", "10.0.0.2", true),
            node("n3", "10.0.0.3", true),
            node("n4", "10.0.0.4", false),
            node("n6", "fd00::6", true),
        ],
    )
}

fn cfg() -> ResolverConfig {
    ResolverConfig::default()
}

fn ask(name: &str, qtype: QType) -> Answer {
    resolve(&Question::new(name, qtype), &snap(), &cfg(), 1)
}

fn addrs(a: &Answer) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = a
        .answers
        .iter()
        .filter_map(|r| match r {
            Record::A { addr, .. } => Some(IpAddr::V4(*addr)),
            Record::Aaaa { addr, .. } => Some(IpAddr::V6(*addr)),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

fn assert_negative(a: &Answer, rcode: Rcode) {
    assert_eq!(a.rcode, rcode);
    assert!(a.authoritative);
    assert!(a.answers.is_empty() && a.additional.is_empty(), "{a:?}");
    match a.authority.as_slice() {
        [Record::Soa { name, serial: 42, minimum: 0, ttl: 0, .. }] => assert_eq!(name, "gossip."),
        other => panic!("expected one SOA in authority, got {other:?}"),
    }
}

fn srv_targets(a: &Answer) -> Vec<(String, u16)> {
    let mut v: Vec<(String, u16)> = a
        .answers
        .iter()
        .filter_map(|r| match r {
            Record::Srv { target, port, priority: 1, .. } => Some((target.clone(), *port)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn service_a_returns_healthy_v4_addresses() {
    let a = ask("web.service.gossip.", QType::A);
    assert_eq!(a.rcode, Rcode::NoError);
    assert!(a.authoritative && a.authority.is_empty());
    assert_eq!(addrs(&a), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    assert!(a.answers.iter().all(|r| matches!(r, Record::A { name, .. } if name == "web.service.gossip.")));
}

#[test]
fn service_a_is_shuffled_and_deduplicated() {
    let instances = (0..10)
        .flat_map(|i| {
            let addr = format!("10.1.0.{i}");
            [inst("s", "a", "n", &addr, &[], Health::Passing), inst("s", "b", "m", &addr, &[], Health::Passing)]
        })
        .collect();
    let s = Snapshot::build(1, instances, vec![]);
    let q = Question::new("s.service.gossip", QType::A);
    let orders: Vec<Vec<Record>> = (0..8).map(|seed| resolve(&q, &s, &cfg(), seed).answers).collect();
    assert!(orders.iter().all(|o| o.len() == 10), "duplicates removed");
    assert!(orders.iter().any(|o| o != &orders[0]), "seeds give different orders");
    assert_eq!(resolve(&q, &s, &cfg(), 3), resolve(&q, &s, &cfg(), 3), "deterministic per seed");
}

#[test]
fn service_aaaa_and_nodata() {
    let a = ask("v6web.service.gossip", QType::Aaaa);
    assert_eq!(addrs(&a), vec![ip("fd00::1")]);
    assert_negative(&ask("web.service.gossip", QType::Aaaa), Rcode::NoError);
    assert_negative(&ask("v6web.service.gossip", QType::A), Rcode::NoError);
    assert_negative(&ask("web.service.gossip", QType::Other(16)), Rcode::NoError);
    assert_negative(&ask("web.service.gossip", QType::Soa), Rcode::NoError);
}

#[test]
fn any_is_a_plus_aaaa() {
    let s = Snapshot::build(
        42,
        vec![
            inst("dual", "a", "n1", "10.0.0.1", &[], Health::Passing),
            inst("dual", "b", "n1", "fd00::1", &[], Health::Passing),
        ],
        vec![],
    );
    let a = resolve(&Question::new("dual.service.gossip", QType::Any), &s, &cfg(), 0);
    assert_eq!(addrs(&a), vec![ip("10.0.0.1"), ip("fd00::1")]);
}

#[test]
fn unhealthy_instances_are_excluded_and_all_unhealthy_is_nxdomain() {
    let a = ask("web.service.gossip", QType::A);
    assert!(!addrs(&a).contains(&ip("10.0.0.3")) && !addrs(&a).contains(&ip("10.0.0.4")));
    assert_negative(&ask("down.service.gossip", QType::A), Rcode::NxDomain);
    assert_negative(&ask("down.service.gossip", QType::Srv), Rcode::NxDomain);
    assert_negative(&ask("nosuch.service.gossip", QType::A), Rcode::NxDomain);
}

#[test]
fn only_passing_false_admits_warning_not_critical() {
    let c = ResolverConfig { only_passing: false, ..cfg() };
    let a = resolve(&Question::new("web.service.gossip", QType::A), &snap(), &c, 0);
    assert_eq!(addrs(&a), vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]);
}

#[test]
fn srv_answers_with_targets_and_additional() {
    let a = ask("web.service.gossip", QType::Srv);
    assert_eq!(a.rcode, Rcode::NoError);
    assert_eq!(srv_targets(&a), vec![("n1.node.gossip.".to_owned(), 8080), ("n2.node.gossip.".to_owned(), 8080)]);
    let mut glue: Vec<(String, IpAddr)> = a
        .additional
        .iter()
        .filter_map(|r| match r {
            Record::A { name, addr, .. } => Some((name.clone(), IpAddr::V4(*addr))),
            _ => None,
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        vec![("n1.node.gossip.".to_owned(), ip("10.0.0.1")), ("n2.node.gossip.".to_owned(), ip("10.0.0.2"))]
    );
}

#[test]
fn srv_target_is_addr_name_when_instance_address_differs_from_node() {
    let s = Snapshot::build(
        42,
        vec![
            inst("db", "a", "n1", "10.9.9.9", &[], Health::Passing),
            inst("db", "b", "n1", "fd00::9", &[], Health::Passing),
            inst("db", "c", "ghost", "10.0.0.7", &[], Health::Passing),
        ],
        vec![node("n1", "10.0.0.1", true)],
    );
    let a = resolve(&Question::new("db.service.gossip", QType::Srv), &s, &cfg(), 0);
    let targets: Vec<String> = srv_targets(&a).into_iter().map(|(t, _)| t).collect();
    let v6 = "fd000000000000000000000000000009.addr.gossip.";
    assert_eq!(targets, vec!["0a000007.addr.gossip.", "0a090909.addr.gossip.", v6]);
    assert!(a.additional.contains(&Record::Aaaa { name: v6.into(), addr: "fd00::9".parse().expect("v6"), ttl: 0 }));
    // The target names resolve to the same addresses.
    let t = resolve(&Question::new("0a090909.addr.gossip.", QType::A), &s, &cfg(), 0);
    assert_eq!(addrs(&t), vec![ip("10.9.9.9")]);
    assert_negative(&resolve(&Question::new(v6, QType::A), &s, &cfg(), 0), Rcode::NoError);
}

#[test]
fn tag_filter_and_rfc2782_forms() {
    let v1 = ask("v1.web.service.gossip", QType::Srv);
    assert_eq!(srv_targets(&v1), vec![("n1.node.gossip.".to_owned(), 8080)]);
    assert_eq!(ask("PRIMARY.web.service.gossip", QType::A).answers.len(), 1);
    let tcp = ask("_web._tcp.service.gossip", QType::Srv);
    assert_eq!(srv_targets(&tcp).len(), 2);
    assert!(tcp.answers.iter().all(|r| matches!(r, Record::Srv { name, .. } if name == "_web._tcp.service.gossip.")));
    assert_eq!(srv_targets(&ask("_web._v2.service.gossip", QType::Srv)), vec![("n2.node.gossip.".to_owned(), 8080)]);
    assert_negative(&ask("_web._v9.service.gossip", QType::Srv), Rcode::NxDomain);
    assert_negative(&ask("v9.web.service.gossip", QType::A), Rcode::NxDomain);
}

#[test]
fn node_lookup() {
    assert_eq!(addrs(&ask("n1.node.gossip", QType::A)), vec![ip("10.0.0.1")]);
    assert_eq!(addrs(&ask("N2.NODE.gossip", QType::A)), vec![ip("10.0.0.2")]);
    assert_eq!(addrs(&ask("n6.node.gossip", QType::Aaaa)), vec![ip("fd00::6")]);
    assert_negative(&ask("n1.node.gossip", QType::Aaaa), Rcode::NoError);
    assert_negative(&ask("n1.node.gossip", QType::Srv), Rcode::NoError);
    assert_negative(&ask("n4.node.gossip", QType::A), Rcode::NxDomain);
    assert_negative(&ask("nosuch.node.gossip", QType::A), Rcode::NxDomain);
}

#[test]
fn names_are_case_insensitive_and_owner_keeps_query_case() {
    let a = ask("WEB.Service.GOSSIP", QType::A);
    assert_eq!(addrs(&a), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    assert!(matches!(&a.answers[0], Record::A { name, .. } if name == "WEB.Service.GOSSIP."));
}

#[test]
fn unknown_names_and_empty_non_terminals() {
    assert_negative(&ask("a.b.c.service.gossip", QType::A), Rcode::NxDomain);
    assert_negative(&ask("foo.gossip", QType::A), Rcode::NxDomain);
    assert_negative(&ask("service.gossip", QType::A), Rcode::NoError);
    assert_negative(&ask("_tcp.service.gossip", QType::Srv), Rcode::NoError);
}

#[test]
fn apex_soa_ns_and_nodata() {
    let soa = ask("gossip.", QType::Soa);
    assert_eq!(soa.rcode, Rcode::NoError);
    assert_eq!(
        soa.answers,
        vec![Record::Soa {
            name: "gossip.".into(),
            mname: "ns.gossip.".into(),
            rname: "hostmaster.gossip.".into(),
            serial: 42,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 0,
            ttl: 0,
        }]
    );
    let ns = ask("gossip", QType::Ns);
    assert_eq!(ns.answers, vec![Record::Ns { name: "gossip.".into(), target: "ns.gossip.".into(), ttl: 0 }]);
    assert_eq!(ns.additional, vec![Record::A { name: "ns.gossip.".into(), addr: NS_ADDRESS, ttl: 0 }]);
    assert_eq!(ask("gossip", QType::Any).answers.len(), 2);
    assert_negative(&ask("gossip", QType::A), Rcode::NoError);
    assert_eq!(addrs(&ask("ns.gossip", QType::A)), vec![ip("127.0.0.1")]);
}

#[test]
fn soa_uses_config_and_truncated_index() {
    let mut s = snap();
    s.index = (1u64 << 32) + 7;
    let c = ResolverConfig { negative_ttl: 5, ttl: 30, ..cfg() };
    let a = resolve(&Question::new("nosuch.service.gossip", QType::A), &s, &c, 0);
    assert!(matches!(a.authority[0], Record::Soa { serial: 7, minimum: 5, ttl: 5, .. }));
    let ok = resolve(&Question::new("web.service.gossip", QType::A), &s, &c, 0);
    assert!(matches!(ok.answers[0], Record::A { ttl: 30, .. }));
}

#[test]
fn outside_domain_is_refused_without_records() {
    for name in ["example.com.", ".", "gossip.example.", "web.service.consul"] {
        let a = ask(name, QType::A);
        assert_eq!(a, Answer::empty(Rcode::Refused, false), "{name}");
    }
}

#[test]
fn multi_label_domain() {
    let c = ResolverConfig { domain: "consul.example".into(), ..cfg() };
    let q = |n: &str, t| resolve(&Question::new(n, t), &snap(), &c, 0);
    assert_eq!(addrs(&q("web.service.consul.example.", QType::A)).len(), 2);
    assert_eq!(q("web.service.gossip.", QType::A).rcode, Rcode::Refused);
    let srv = q("_web._tcp.service.consul.example", QType::Srv);
    assert!(srv_targets(&srv).iter().all(|(t, _)| t.ends_with(".node.consul.example.")));
    let soa = q("consul.example", QType::Soa);
    assert!(matches!(&soa.answers[0], Record::Soa { mname, .. } if mname == "ns.consul.example."));
    let nx = q("nosuch.service.consul.example", QType::A);
    assert!(matches!(&nx.authority[0], Record::Soa { name, .. } if name == "consul.example."));
}

#[test]
fn weighted_srv_order_is_deterministic_and_weighted() {
    let mut heavy = inst("w", "h", "h", "10.0.0.1", &[], Health::Passing);
    heavy.weight = 9;
    let light = inst("w", "l", "l", "10.0.0.2", &[], Health::Passing);
    let s = Snapshot::build(1, vec![light, heavy], vec![node("h", "10.0.0.1", true), node("l", "10.0.0.2", true)]);
    let q = Question::new("w.service.gossip", QType::Srv);
    assert_eq!(resolve(&q, &s, &cfg(), 11), resolve(&q, &s, &cfg(), 11));
    let trials = 4000u64;
    let heavy_first = (0..trials)
        .filter(|&seed| {
            let a = resolve(&q, &s, &cfg(), seed);
            matches!(&a.answers[0], Record::Srv { weight: 9, .. })
        })
        .count();
    let share = heavy_first as f64 / trials as f64;
    assert!((0.80..0.92).contains(&share), "heavy-first share {share}");
}

fn ptrs(a: &Answer) -> Vec<String> {
    a.answers
        .iter()
        .map(|r| match r {
            Record::Ptr { target, .. } => target.clone(),
            other => panic!("expected PTR, got {other:?}"),
        })
        .collect()
}

#[test]
fn ptr_of_a_node_address_names_the_node() {
    let a = ask("1.0.0.10.in-addr.arpa.", QType::Ptr);
    assert_eq!((a.rcode, a.authoritative), (Rcode::NoError, true));
    assert_eq!(ptrs(&a), vec!["n1.node.gossip.".to_owned()]);
    assert!(matches!(&a.answers[0], Record::Ptr { name, ttl: 0, .. } if name == "1.0.0.10.in-addr.arpa."));
    let v6 = ask(&name::reverse_name(ip("fd00::6")), QType::Ptr);
    assert_eq!(ptrs(&v6), vec!["n6.node.gossip.".to_owned()]);
    assert_eq!(ptrs(&ask("1.0.0.10.in-addr.arpa.", QType::Any)), vec!["n1.node.gossip.".to_owned()]);
}

#[test]
fn ptr_of_an_instance_address_names_the_service() {
    let a = ask(&name::reverse_name(ip("fd00::1")), QType::Ptr);
    assert_eq!(ptrs(&a), vec!["v6web.service.gossip.".to_owned()]);
    // Several services on one address: one PTR each, sorted.
    let s = Snapshot::build(
        1,
        vec![
            inst("b", "1", "n", "10.9.0.1", &[], Health::Passing),
            inst("a", "2", "n", "10.9.0.1", &[], Health::Passing),
            inst("a", "3", "m", "10.9.0.1", &[], Health::Passing),
        ],
        vec![node("n", "10.9.9.9", true)],
    );
    let a = resolve(&Question::new("1.0.9.10.in-addr.arpa", QType::Ptr), &s, &cfg(), 1);
    assert_eq!(ptrs(&a), vec!["a.service.gossip.".to_owned(), "b.service.gossip.".to_owned()]);
}

#[test]
fn ptr_of_unknown_dead_or_unhealthy_addresses_is_nxdomain_without_authority() {
    // 10.0.0.4: a dead node whose instance is critical; 10.0.0.3 is an alive node (n3).
    for addr in ["10.0.0.4", "192.0.2.1", "fd00::99"] {
        let a = ask(&name::reverse_name(ip(addr)), QType::Ptr);
        assert_eq!(a, Answer::empty(Rcode::NxDomain, false), "{addr}");
    }
    assert_eq!(ptrs(&ask("3.0.0.10.in-addr.arpa", QType::Ptr)), vec!["n3.node.gossip.".to_owned()]);
}

#[test]
fn other_types_on_a_known_reverse_name_are_nodata_and_partial_ones_refused() {
    assert_eq!(ask("1.0.0.10.in-addr.arpa.", QType::A), Answer::empty(Rcode::NoError, true));
    assert_eq!(ask("0.0.10.in-addr.arpa.", QType::Ptr), Answer::empty(Rcode::Refused, false));
}

#[test]
fn node_txt_is_nodata() {
    assert_negative(&ask("n1.node.gossip", QType::Other(16)), Rcode::NoError);
    assert_negative(&ask("n4.node.gossip", QType::Other(16)), Rcode::NxDomain);
}

#[test]
fn any_is_a_and_aaaa_on_services_and_nodes() {
    assert_eq!(addrs(&ask("web.service.gossip", QType::Any)), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(addrs(&ask("v6web.service.gossip", QType::Any)), vec![ip("fd00::1")]);
    assert_eq!(addrs(&ask("n6.node.gossip", QType::Any)), vec![ip("fd00::6")]);
}

#[test]
fn the_datacenter_label_answers_as_without_it() {
    for (with, without) in [
        ("web.service.gossip.gossip", "web.service.gossip"),
        ("v1.web.service.gossip.gossip", "v1.web.service.gossip"),
        ("n1.node.gossip.gossip", "n1.node.gossip"),
    ] {
        for t in [QType::A, QType::Srv, QType::Aaaa] {
            let (a, b) = (ask(with, t), ask(without, t));
            // Node targets carry the label too, so that they resolve in the same datacenter.
            let labelled: Vec<(String, u16)> = srv_targets(&b)
                .into_iter()
                .map(|(t, port)| (t.replace(".node.gossip.", ".node.gossip.gossip."), port))
                .collect();
            assert_eq!((a.rcode, addrs(&a), srv_targets(&a)), (b.rcode, addrs(&b), labelled), "{with} {t:?}");
        }
    }
    assert_negative(&ask("web.service.dc2.gossip", QType::A), Rcode::NxDomain);
    assert_negative(&ask("n1.node.dc2.gossip", QType::A), Rcode::NxDomain);
    let c = ResolverConfig { datacenter: "dc1".into(), ..cfg() };
    let a = resolve(&Question::new("web.service.DC1.gossip", QType::A), &snap(), &c, 1);
    assert_eq!(addrs(&a), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
}
