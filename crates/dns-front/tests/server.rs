//! Socket-level tests: a real `DnsServer` on 127.0.0.1 ports, queried over UDP and TCP with
//! hickory-proto's message encoding.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dns_front::{DnsError, DnsServer, DnsStats, Health, Instance, Node, ResolverConfig, Snapshot};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const BIG: usize = 60;

fn instance(service: &str, i: usize) -> Instance {
    Instance {
        service: service.into(),
        id: format!("{service}-{i}").into(),
        node: format!("node-{i}").into(),
        address: IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8 + 1]),
        port: 8000 + i as u16,
        tags: vec!["v1".into()].into(),
        weight: 1 + i as u16 % 5,
        health: Health::Passing,
    }
}

/// `big` has 60 instances on 60 nodes, `web` has 2.
fn snapshot(index: u64) -> Snapshot {
    let big = (0..BIG).map(|i| instance("big", i));
    let web = (0..2).map(|i| instance("web", i));
    let nodes = (0..BIG)
        .map(|i| Node { name: format!("node-{i}"), address: instance("x", i).address, alive: true, meta: Vec::new() })
        .collect();
    Snapshot::build(index, big.chain(web).collect(), nodes)
}

struct Fixture {
    udp: SocketAddr,
    tcp: SocketAddr,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stats: Arc<DnsStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), DnsError>>,
}

async fn start() -> Fixture {
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot(7)));
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let (udp_addr, tcp_addr) = (udp.local_addr().expect("udp addr"), tcp.local_addr().expect("tcp addr"));
    let server = DnsServer::new(Arc::clone(&snapshot), ResolverConfig::default()).with_rng_seed(1);
    let stats = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(udp, tcp, async move {
        let _ = stopped.await;
    }));
    Fixture { udp: udp_addr, tcp: tcp_addr, snapshot, stats, stop: Some(stop), task }
}

fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("client bind");
    sock.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf)).await.expect("udp reply in time").expect("recv");
    buf.truncate(n);
    buf
}

async fn udp(server: SocketAddr, m: &Message) -> (Message, usize) {
    let raw = udp_raw(server, &m.to_vec().expect("encode")).await;
    (Message::from_vec(&raw).expect("decode reply"), raw.len())
}

async fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let bytes = m.to_vec().expect("encode");
    let len = u16::try_from(bytes.len()).expect("query size");
    stream.write_all(&len.to_be_bytes()).await.expect("write len");
    stream.write_all(&bytes).await.expect("write");
    let mut len = [0u8; 2];
    timeout(WAIT, stream.read_exact(&mut len)).await.expect("tcp reply in time").expect("read len");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.expect("read body");
    Message::from_vec(&buf).expect("decode reply")
}

fn srv_count(m: &Message) -> usize {
    m.answers.iter().filter(|r| matches!(r.data, RData::SRV(_))).count()
}

#[tokio::test]
async fn udp_answer_echoes_id_and_sets_aa() {
    let f = start().await;
    let (r, _) = udp(f.udp, &query(0xBEEF, "WEB.service.gossip.", RecordType::A, None)).await;
    assert_eq!(r.metadata.id, 0xBEEF);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative && !r.metadata.truncation);
    assert!(r.edns.is_none(), "no OPT in reply to a query without OPT");
    assert_eq!(r.queries[0].name().to_ascii(), "WEB.service.gossip.");
    let mut addrs: Vec<String> = r.answers.iter().map(|a| a.data.to_string()).collect();
    addrs.sort();
    assert_eq!(addrs, vec!["10.0.0.1", "10.0.0.2"]);
    assert!(r.answers.iter().all(|a| a.name.to_ascii() == "WEB.service.gossip."));
}

#[tokio::test]
async fn edns_is_echoed_with_clamped_payload() {
    let f = start().await;
    for (asked, expected) in [(4096, 1232), (800, 800), (100, 512)] {
        let (r, _) = udp(f.udp, &query(1, "web.service.gossip.", RecordType::A, Some(asked))).await;
        let edns = r.edns.as_ref().expect("OPT echoed");
        assert_eq!((edns.max_payload(), edns.version()), (expected, 0), "asked {asked}");
    }
    let mut bad = query(2, "web.service.gossip.", RecordType::A, Some(1232));
    if let Some(e) = bad.edns.as_mut() {
        e.set_version(1);
    }
    let (r, _) = udp(f.udp, &bad).await;
    // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), u16::from(ResponseCode::BADVERS));
    assert!(r.edns.is_some());
}

#[tokio::test]
async fn large_srv_over_udp_without_edns_sets_tc() {
    let f = start().await;
    let (r, len) = udp(f.udp, &query(3, "big.service.gossip.", RecordType::SRV, None)).await;
    assert!(len <= 512, "reply is {len} bytes");
    assert!(r.metadata.truncation, "TC must be set");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(srv_count(&r) < BIG);
    assert!(r.additionals.is_empty() && r.authorities.is_empty());

    let (a, len) = udp(f.udp, &query(4, "big.service.gossip.", RecordType::A, None)).await;
    assert!(len <= 512 && a.metadata.truncation, "60 A records do not fit in 512 bytes");
    assert!(!a.answers.is_empty(), "as many whole answers as fit are kept");
    assert!(f.stats.counts().truncated >= 2);
}

#[tokio::test]
async fn large_srv_over_udp_with_edns_sets_tc_and_keeps_opt() {
    let f = start().await;
    let (r, len) = udp(f.udp, &query(5, "big.service.gossip.", RecordType::SRV, Some(1232))).await;
    assert!(len <= 1232, "reply is {len} bytes");
    assert!(r.metadata.truncation);
    assert_eq!(r.edns.as_ref().map(Edns::max_payload), Some(1232));
    assert!(srv_count(&r) < BIG);
}

#[tokio::test]
async fn same_query_over_tcp_returns_all_records() {
    let f = start().await;
    let r = tcp(f.tcp, &query(6, "_big._tcp.service.gossip.", RecordType::SRV, None)).await;
    assert_eq!(r.metadata.id, 6);
    assert!(!r.metadata.truncation);
    assert_eq!(srv_count(&r), BIG);
    assert_eq!(r.additionals.len(), BIG, "one address per target");
    for add in &r.additionals {
        assert!(add.name.to_ascii().ends_with(".node.gossip."), "{}", add.name);
    }
}

#[tokio::test]
async fn small_srv_over_udp_has_additional_addresses() {
    let f = start().await;
    let (r, _) = udp(f.udp, &query(7, "v1.web.service.gossip.", RecordType::SRV, Some(1232))).await;
    assert!(!r.metadata.truncation);
    assert_eq!(srv_count(&r), 2);
    let mut glue: Vec<String> = r.additionals.iter().map(|a| format!("{} {}", a.name, a.data)).collect();
    glue.sort();
    assert_eq!(glue, vec!["node-0.node.gossip. 10.0.0.1", "node-1.node.gossip. 10.0.0.2"]);
}

#[tokio::test]
async fn negative_answers_and_refused() {
    let f = start().await;
    let (r, _) = udp(f.udp, &query(8, "nosuch.service.gossip.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative && r.answers.is_empty());
    assert!(matches!(r.authorities.as_slice(), [soa] if matches!(&soa.data, RData::SOA(s) if s.serial == 7)));

    let (r, _) = udp(f.udp, &query(9, "web.service.gossip.", RecordType::AAAA, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty() && r.authorities.len() == 1, "NODATA with SOA");

    let (r, _) = udp(f.udp, &query(10, "example.com.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative && r.answers.is_empty() && r.authorities.is_empty());

    let (r, _) = udp(f.udp, &query(11, "gossip.", RecordType::NS, None)).await;
    assert!(matches!(&r.answers[0].data, RData::NS(ns) if ns.0.to_ascii() == "ns.gossip."));
    assert_eq!(r.additionals[0].data.to_string(), "127.0.0.1");
    let c = f.stats.counts();
    assert_eq!((c.nxdomain, c.refused), (1, 1));
}

#[tokio::test]
async fn malformed_requests_do_not_hurt() {
    let f = start().await;
    // Garbage, and a header claiming a question that is not there: no crash.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for junk in [&b"\x01\x02\x03"[..], &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0]] {
        sock.send_to(junk, f.udp).await.expect("send junk");
    }
    let mut two = query(12, "web.service.gossip.", RecordType::A, None);
    two.add_query(Query::query(Name::from_ascii("gossip.").expect("name"), RecordType::SOA));
    let (r, _) = udp(f.udp, &two).await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    let mut ch = query(13, "web.service.gossip.", RecordType::A, None);
    ch.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let (r, _) = udp(f.udp, &ch).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let (r, _) = udp(f.udp, &query(14, "web.service.gossip.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 2, "still serving");
}

#[tokio::test]
async fn swapped_snapshot_is_served_and_shutdown_is_clean() {
    let mut f = start().await;
    f.snapshot.store(Arc::new(Snapshot::build(8, vec![instance("fresh", 3)], vec![])));
    let (r, _) = udp(f.udp, &query(15, "fresh.service.gossip.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1);
    let (r, _) = udp(f.udp, &query(16, "web.service.gossip.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    if let Some(stop) = f.stop.take() {
        let _ = stop.send(());
    }
    let res = timeout(WAIT, &mut f.task).await.expect("stops in time").expect("task joined");
    assert!(res.is_ok(), "{res:?}");
}

#[tokio::test]
async fn repeated_queries_follow_snapshot_swaps_and_echo_case() {
    // The UDP fast path answers repeats from its cache: a swap must be seen at once, and a
    // mixed-case repeat (0x20) must get its own case back in the question and owner names.
    let f = start().await;
    for id in 20..25 {
        let (r, _) = udp(f.udp, &query(id, "web.service.gossip.", RecordType::A, Some(1232))).await;
        assert_eq!((r.metadata.id, r.answers.len()), (id, 2));
    }
    let (r, _) = udp(f.udp, &query(25, "wEb.SeRvIcE.gOsSiP.", RecordType::A, Some(1232))).await;
    assert_eq!(r.queries[0].name().to_ascii(), "wEb.SeRvIcE.gOsSiP.");
    assert!(r.answers.iter().all(|a| a.name.to_ascii() == "wEb.SeRvIcE.gOsSiP."), "{:?}", r.answers);
    let c = f.stats.counts();
    assert_eq!(c.noerror, 6, "hits are counted like misses");

    let mut fresh = snapshot(9);
    fresh.services.remove("web");
    f.snapshot.store(Arc::new(fresh));
    let (r, _) = udp(f.udp, &query(26, "web.service.gossip.", RecordType::A, Some(1232))).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "the swap is seen at once");
    let (r, _) = udp(f.udp, &query(27, "WEB.service.gossip.", RecordType::A, Some(1232))).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.queries[0].name().to_ascii(), "WEB.service.gossip.");
}
