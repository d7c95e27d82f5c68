//! One source cannot take the DNS server from others: a source holding many TCP connections
//! does not stop another client's TCP queries; UDP answers past the rate limit are dropped or
//! slipped (truncated, no larger than the query).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dns_front::limits::RrlConfig;
use dns_front::{DnsServer, Health, Instance, Node, ResolverConfig, Snapshot};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn snapshot() -> Snapshot {
    let inst = Instance {
        service: "web".into(),
        id: "web-1".into(),
        node: "n1".into(),
        address: IpAddr::from([10, 0, 0, 1]),
        port: 80,
        tags: Vec::new().into(),
        weight: 1,
        health: Health::Passing,
    };
    Snapshot::build(
        1,
        vec![inst],
        vec![Node { name: "n1".into(), address: IpAddr::from([10, 0, 0, 1]), alive: true, meta: Vec::new() }],
    )
}

async fn start(server: DnsServer, udp: UdpSocket) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (u, t) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(udp, tcp, async move {
        let _ = stopped.await;
    }));
    (u, t, stop)
}

fn query(id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("web.service.gossip.").unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

#[tokio::test]
async fn a_source_holding_tcp_connections_does_not_stop_another_clients_queries() {
    let snap = Arc::new(ArcSwap::from_pointee(snapshot()));
    let server = DnsServer::new(snap, ResolverConfig::default());
    let stats = server.stats();
    let (_, tcp, _stop) = start(server, UdpSocket::bind("127.0.0.1:0").await.unwrap()).await;
    // 300 idle connections from 127.0.0.1: more than the server's 256 slots.
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(tcp).await.unwrap());
    }
    // Another source (127.0.0.2) still gets its answer over TCP.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = sock.connect(tcp).await.unwrap();
    let q = query(7);
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    timeout(WAIT, s.read_exact(&mut len))
        .await
        .expect("an answer in time")
        .expect("an answer, not a closed connection");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (7, ResponseCode::NoError));
    assert_eq!(m.answers.len(), 1);
    assert!(stats.counts().tcp_refused >= 300 - 16, "the held source's extra connections were refused and counted");
    drop(held);
}

#[tokio::test]
async fn udp_answers_past_the_rate_are_dropped_or_slipped() {
    let snap = Arc::new(ArcSwap::from_pointee(snapshot()));
    // Loopback is exempt by default; not here, so that a loopback client stands for a victim.
    let rrl = RrlConfig { rate: 2, slip: 2, exempt_loopback: false };
    let server = DnsServer::new(snap, ResolverConfig::default()).with_rrl(Some(rrl));
    let stats = server.stats();
    let (udp, _, _stop) = start(server, UdpSocket::bind("127.0.0.1:0").await.unwrap()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query(0);
    for id in 0..20u16 {
        client.send_to(&query(id), udp).await.unwrap();
    }
    let (mut full, mut slipped, mut total) = (0, 0, 0);
    let mut buf = [0u8; 1500];
    // Collect until the server has been quiet for a while (dropped answers never come).
    while let Ok(Ok((n, _))) = timeout(Duration::from_secs(2), client.recv_from(&mut buf)).await {
        total += 1;
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty() && n <= q.len(), "a slipped answer is bare and no larger than the query");
            slipped += 1;
        } else {
            full += 1;
        }
        assert!(total <= 20);
    }
    assert!((1..=4).contains(&full), "about `rate` full answers: {full}");
    let c = stats.counts();
    assert_eq!((c.rrl_slipped, c.rrl_dropped), (slipped, 20 - total), "every limited answer is counted");
    assert!(
        slipped >= 5 && total < 20,
        "past the rate, every second answer slips and the others are dropped: {slipped} of {total}"
    );

    // With the default (loopback exempt), every query is answered in full.
    let snap = Arc::new(ArcSwap::from_pointee(snapshot()));
    let server =
        DnsServer::new(snap, ResolverConfig::default()).with_rrl(Some(RrlConfig { rate: 2, ..Default::default() }));
    let (udp, _, _stop) = start(server, UdpSocket::bind("127.0.0.1:0").await.unwrap()).await;
    for id in 0..20u16 {
        client.send_to(&query(id), udp).await.unwrap();
        let (n, _) = timeout(WAIT, client.recv_from(&mut buf)).await.expect("an answer").unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert!(!m.metadata.truncation && m.answers.len() == 1);
    }
}
