//! A served forwarder under load: the UDP thread never waits for an upstream, and when every
//! forwarding slot is taken a query gets SERVFAIL at once instead of a task of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dns_front::forward::ForwardConfig;
use dns_front::{DnsServer, ResolverConfig, Snapshot};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

async fn reply(client: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 4096];
    let n = timeout(WAIT, client.recv(&mut buf)).await.expect("a reply").expect("recv");
    Message::from_vec(&buf[..n]).expect("decodes")
}

/// A server forwarding to `upstream`, and a client connected to it.
async fn serve(upstream: SocketAddr, max_in_flight: usize) -> (UdpSocket, tokio::sync::oneshot::Sender<()>) {
    let snap = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let cfg = ForwardConfig { upstreams: vec![upstream], timeout: Duration::from_secs(30), max_in_flight };
    let server = DnsServer::new(snap, ResolverConfig::default()).with_forwarding(Some(cfg));
    let (udp, tcp) = (UdpSocket::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
    let dns: SocketAddr = udp.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(udp, tcp, async move {
        let _ = stopped.await;
    }));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(dns).await.unwrap();
    (client, stop)
}

#[tokio::test]
async fn a_forwarded_reply_larger_than_our_udp_bound_goes_out_truncated() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let (n, src) = upstream.recv_from(&mut buf).await.unwrap();
        let mut r = buf[..n].to_vec();
        r[2] |= 0x80;
        r.resize(3000, 0); // an upstream answering a client that asked for 4096
        upstream.send_to(&r, src).await.unwrap();
    });
    let (client, _stop) = serve(up_addr, 4).await;
    client.send(&query(5, "large.example.")).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = timeout(WAIT, client.recv(&mut buf)).await.expect("a reply").expect("recv");
    assert!(n <= 1232, "{n} bytes");
    let m = Message::from_vec(&buf[..n]).expect("decodes");
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(m.metadata.id, 5);
}

#[tokio::test]
async fn a_full_forwarder_answers_servfail_at_once_and_the_held_query_completes() {
    // The upstream holds the first query it gets until told to answer it.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let (n, src) = upstream.recv_from(&mut buf).await.unwrap();
        let _ = got_tx.send(());
        let _ = go_rx.await;
        let mut r = buf[..n].to_vec();
        r[2] |= 0x80;
        r[3] = 0x80; // NOERROR, RA
        upstream.send_to(&r, src).await.unwrap();
    });

    let snap = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let cfg = ForwardConfig { upstreams: vec![up_addr], timeout: Duration::from_secs(30), max_in_flight: 1 };
    let server = DnsServer::new(snap, ResolverConfig::default()).with_forwarding(Some(cfg));
    let stats = server.stats();
    let (udp, tcp) = (UdpSocket::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
    let dns: SocketAddr = udp.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(udp, tcp, async move {
        let _ = stopped.await;
    }));

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(dns).await.unwrap();
    client.send(&query(1, "held.example.")).await.unwrap();
    timeout(WAIT, got_rx).await.expect("the upstream got the first query").unwrap();
    // The only slot is taken: the next outside name is SERVFAIL now, and our own names are
    // still answered by the UDP thread.
    client.send(&query(2, "second.example.")).await.unwrap();
    let second = reply(&client).await;
    assert_eq!((second.metadata.id, second.metadata.response_code), (2, ResponseCode::ServFail));
    assert!(second.metadata.recursion_desired && second.metadata.recursion_available);
    client.send(&query(3, "nothing.service.gossip.")).await.unwrap();
    let own = reply(&client).await;
    assert_eq!((own.metadata.id, own.metadata.response_code), (3, ResponseCode::NXDomain));
    assert!(own.metadata.recursion_available, "RA: this server recurses");

    go_tx.send(()).unwrap();
    let first = reply(&client).await;
    assert_eq!((first.metadata.id, first.metadata.response_code), (1, ResponseCode::NoError));
    assert_eq!(first.queries[0].name().to_ascii(), "held.example.");
    let counts = stats.counts();
    assert_eq!((counts.forwarded, counts.forward_failed), (1, 1));
}
