//! The batched UDP path (`server/udp.rs`: one receive takes every queued query, one send
//! answers them all) with many queries in flight at once, from several sources, and with
//! hostile datagrams mixed into the same batches. Real sockets on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dns_front::{DnsServer, DnsStats, Health, Instance, Node, ResolverConfig, Snapshot};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn instance(service: &str, i: usize) -> Instance {
    Instance {
        service: service.into(),
        id: format!("{service}-{i}").into(),
        node: format!("node-{i}").into(),
        address: IpAddr::from([10, 0, 0, u8::try_from(i + 1).expect("small")]),
        port: 8000,
        tags: Vec::new().into(),
        weight: 1,
        health: Health::Passing,
    }
}

/// `web` has 2 instances, `big` 60 (its SRV answer does not fit 512 bytes, nor 1232).
fn snapshot() -> Snapshot {
    let web = (0..2).map(|i| instance("web", i));
    let big = (0..60).map(|i| instance("big", i));
    let nodes = (0..60)
        .map(|i| Node { name: format!("node-{i}"), address: instance("x", i).address, alive: true, meta: Vec::new() })
        .collect();
    Snapshot::build(1, web.chain(big).collect(), nodes)
}

async fn start() -> (SocketAddr, Arc<DnsStats>, oneshot::Sender<()>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let addr = udp.local_addr().expect("addr");
    let server = DnsServer::new(Arc::new(ArcSwap::from_pointee(snapshot())), ResolverConfig::default());
    let stats = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(udp, tcp, async move {
        let _ = stopped.await;
    }));
    (addr, stats, stop)
}

/// The kinds of query sent, one after the other, and what each must get back.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `web A`, lower case: NOERROR, 2 answers.
    WebA,
    /// `WeB.SerVice.gossip A`: the same, with the question's case echoed.
    WebMixedCase,
    /// `web AAAA`: NODATA (NOERROR, no answer, SOA in authority).
    WebAaaa,
    /// A name that does not exist: NXDOMAIN.
    Missing,
    /// `big SRV` without EDNS: truncated to 512 bytes, TC set.
    BigSrv,
    /// `big SRV` with EDNS 4096: clamped to 1232, still truncated, OPT echoed.
    BigSrvEdns,
    /// Outside the domain: REFUSED.
    Outside,
}

const KINDS: [Kind; 7] =
    [Kind::WebA, Kind::WebMixedCase, Kind::WebAaaa, Kind::Missing, Kind::BigSrv, Kind::BigSrvEdns, Kind::Outside];

fn query(id: u16, kind: Kind) -> Vec<u8> {
    let (name, rtype, edns) = match kind {
        Kind::WebA => ("web.service.gossip.", RecordType::A, None),
        Kind::WebMixedCase => ("WeB.SerVice.gossip.", RecordType::A, Some(1232)),
        Kind::WebAaaa => ("web.service.gossip.", RecordType::AAAA, None),
        Kind::Missing => ("nosuch.service.gossip.", RecordType::A, None),
        Kind::BigSrv => ("big.service.gossip.", RecordType::SRV, None),
        Kind::BigSrvEdns => ("big.service.gossip.", RecordType::SRV, Some(4096)),
        Kind::Outside => ("example.com.", RecordType::A, None),
    };
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

/// Checks one reply against the query kind it answers.
fn check(kind: Kind, raw: &[u8]) {
    let r = Message::from_vec(raw).unwrap_or_else(|e| panic!("{kind:?}: reply does not decode: {e}"));
    assert_eq!(r.metadata.message_type, MessageType::Response, "{kind:?}");
    let code = r.metadata.response_code;
    match kind {
        Kind::WebA | Kind::WebMixedCase => {
            assert_eq!((code, r.answers.len()), (ResponseCode::NoError, 2), "{kind:?}");
            let want = if matches!(kind, Kind::WebA) { "web.service.gossip." } else { "WeB.SerVice.gossip." };
            assert_eq!(r.queries[0].name().to_ascii(), want, "question case echoed");
            assert_eq!(r.edns.is_some(), matches!(kind, Kind::WebMixedCase), "OPT only when asked");
        }
        Kind::WebAaaa => {
            assert_eq!((code, r.answers.len(), r.authorities.len()), (ResponseCode::NoError, 0, 1), "{kind:?}");
        }
        Kind::Missing => assert_eq!(code, ResponseCode::NXDomain, "{kind:?}"),
        Kind::BigSrv => {
            assert!(r.metadata.truncation && raw.len() <= 512, "{kind:?}: TC within 512 ({} B)", raw.len());
        }
        Kind::BigSrvEdns => {
            assert!(r.metadata.truncation && raw.len() <= 1232, "{kind:?}: TC within 1232 ({} B)", raw.len());
            assert_eq!(r.edns.as_ref().map(Edns::max_payload), Some(1232), "OPT echoed, clamped");
        }
        Kind::Outside => assert_eq!(code, ResponseCode::Refused, "{kind:?}"),
    }
}

/// Receives `want` datagrams on `sock` (or fewer, if none comes within WAIT).
async fn recv_n(sock: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65535];
    while got.len() < want {
        match timeout(WAIT, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => got.push(buf[..n].to_vec()),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_queries_in_flight_from_four_sources_are_all_answered_with_their_ids() {
    const PER_SOURCE: usize = 50;
    let (server, stats, _stop) = start().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("client bind")));
    }
    // Receivers first, so that replies are read while the rest is still being sent.
    let receivers: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = Arc::clone(c);
            tokio::spawn(async move { recv_n(&c, PER_SOURCE).await })
        })
        .collect();
    // 200 queries, none waiting for an answer, interleaved across the four sources: whole
    // batches of queries from several sources, each answer addressed to its own source.
    let mut sent: BTreeMap<(usize, u16), Kind> = BTreeMap::new();
    for i in 0..4 * PER_SOURCE {
        let (client, kind) = (i % 4, KINDS[i % KINDS.len()]);
        let id = 0x1000 + u16::try_from(i).expect("small");
        clients[client].send_to(&query(id, kind), server).await.expect("send");
        sent.insert((client, id), kind);
    }
    let mut answered = 0;
    for (client, receiver) in receivers.into_iter().enumerate() {
        let replies = receiver.await.expect("receiver");
        assert_eq!(replies.len(), PER_SOURCE, "source {client}: every query answered");
        for raw in replies {
            let id = u16::from_be_bytes([raw[0], raw[1]]);
            let kind = sent.remove(&(client, id)).unwrap_or_else(|| panic!("source {client}: unexpected id {id:#x}"));
            check(kind, &raw);
            answered += 1;
        }
    }
    assert_eq!(answered, 200);
    assert!(sent.is_empty(), "unanswered: {sent:?}");
    // A batch's latency is recorded after its send returns, so the client can hold the last
    // answers a moment before they are counted: wait (bounded) for the count to settle.
    let mut c = stats.counts();
    for _ in 0..200 {
        if c.latency.count >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        c = stats.counts();
    }
    assert_eq!(c.noerror + c.nxdomain + c.refused, 200, "{c:?}");
    assert_eq!(c.latency.count, 200, "one latency per answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_in_the_same_batches_do_not_stop_the_good_queries() {
    let (server, _stats, _stop) = start().await;
    let good = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let bad = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut response = query(0xEE01, Kind::WebA);
    response[2] |= 0x80; // QR: a response, never answered (no reflection)
    let mut pointer_loop = vec![0xEE, 0x02, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    pointer_loop.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    let mut many_questions = query(0xEE03, Kind::WebA);
    many_questions[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x01],
        vec![0xEE, 0x04, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0], // header only, no question
        response,
        pointer_loop,
        many_questions,
        vec![0xFF; 3000],
        // Longer than a receive slot (4096 bytes): cut to it, then read as any other query.
        [query(0xEE05, Kind::WebA), vec![0; 6000]].concat(),
        vec![0; 512],
    ];
    // Ten rounds of junk and five good queries, none waiting for another; each round's
    // answers are awaited before the next round, so that the socket's receive buffer (about
    // 200 KiB) never overflows and every loss would be the server's.
    for round in 0..10u16 {
        for j in &junk {
            bad.send_to(j, server).await.expect("send junk");
        }
        let ids: Vec<u16> = (0..5).map(|k| round * 5 + k).collect();
        for &id in &ids {
            good.send_to(&query(id, Kind::WebA), server).await.expect("send");
        }
        let replies = recv_n(&good, ids.len()).await;
        assert_eq!(replies.len(), ids.len(), "round {round}: every good query answered");
        let mut got: Vec<u16> = replies
            .iter()
            .map(|raw| {
                check(Kind::WebA, raw);
                u16::from_be_bytes([raw[0], raw[1]])
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, ids);
    }
    // What the junk got back: never an answer to the response, every reply a DNS response
    // of at most 512 bytes (no EDNS was asked for).
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = timeout(Duration::from_millis(300), bad.recv_from(&mut buf)).await {
        assert!((12..=512).contains(&n) && buf[2] & 0x80 != 0, "a reply is a response ({n} B)");
        assert_ne!(u16::from_be_bytes([buf[0], buf[1]]), 0xEE01, "a response is never answered");
    }
    // Still serving.
    good.send_to(&query(999, Kind::WebA), server).await.expect("send");
    let last = recv_n(&good, 1).await;
    assert_eq!(last.len(), 1);
    assert_eq!(u16::from_be_bytes([last[0][0], last[0][1]]), 999);
}
