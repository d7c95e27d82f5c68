//! The forwarder against fake upstreams on loopback.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::*;

/// A query for `upstream.test A` with ID 0x1234, RD set.
fn query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["upstream", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The reply to `q` with `rcode` and `flags` (added to QR|RD|RA) and one extra byte marking it.
fn reply_to(q: &[u8], rcode: u8, flags: u8, mark: u8) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80 | flags;
    r[3] = 0x80 | rcode;
    r.push(mark);
    r
}

/// A UDP upstream answering each query as `answer` says, first sending a reply with a wrong
/// ID (which must be ignored).
async fn udp_upstream(rcode: u8, flags: u8) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, src)) = socket.recv_from(&mut buf).await {
            let mut wrong = reply_to(&buf[..n], 0, 0, 9);
            wrong[0] ^= 0xFF;
            let _ = socket.send_to(&wrong, src).await;
            let _ = socket.send_to(&reply_to(&buf[..n], rcode, flags, 1), src).await;
        }
    });
    addr
}

fn cfg(upstreams: Vec<SocketAddr>) -> ForwardConfig {
    ForwardConfig { upstreams, timeout: Duration::from_millis(500), max_in_flight: 2 }
}

#[tokio::test]
async fn relays_with_a_fresh_id_and_maps_it_back() {
    let up = udp_upstream(0, 0).await;
    let f = Forwarder::new(cfg(vec![up]));
    let reply = f.forward(&query(), false).await.expect("forwarded");
    assert_eq!(&reply[..2], &[0x12, 0x34], "client's ID");
    assert_eq!(reply.last(), Some(&1), "the matching reply, not the one with a wrong ID");
    assert_eq!(reply[12..query().len()], query()[12..]);
}

#[tokio::test]
async fn failing_upstreams_are_skipped_and_all_failing_is_none() {
    let dead = UdpSocket::bind("127.0.0.1:0").await.expect("bind"); // never answers
    let dead_addr = dead.local_addr().expect("addr");
    let refusing = udp_upstream(5, 0).await;
    let good = udp_upstream(3, 0).await; // NXDOMAIN is an answer
    let f = Forwarder::new(cfg(vec![dead_addr, refusing, good]));
    let reply = f.forward(&query(), false).await.expect("third upstream answers");
    assert_eq!(reply[3] & 0x0F, 3);
    let f = Forwarder::new(cfg(vec![dead_addr, refusing]));
    assert_eq!(f.forward(&query(), false).await, None);
    let failed = servfail(&query()).expect("reads");
    assert_eq!((&failed[..2], failed[3] & 0x0F, failed.len()), (&[0x12, 0x34][..], 2, query().len()));
}

#[tokio::test]
async fn truncated_replies_go_to_udp_clients_and_are_retried_over_tcp_for_tcp_clients() {
    // The UDP port was free; the same TCP port may not be (another process's connection can
    // hold it as its local port): take another pair then.
    let mut attempt = 0;
    let (up, listener) = loop {
        let up = udp_upstream(0, 0x02).await;
        match TcpListener::bind(up).await {
            Ok(l) => break (up, l),
            Err(e) if attempt < 20 && e.kind() == std::io::ErrorKind::AddrInUse => attempt += 1,
            Err(e) => panic!("same port over TCP: {e}"),
        }
    };
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut q).await.is_err() {
                continue;
            }
            let r = reply_to(&q, 0, 0, 7);
            let mut framed = (r.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&r);
            let _ = stream.write_all(&framed).await;
        }
    });
    let f = Forwarder::new(cfg(vec![up]));
    let udp = f.forward(&query(), false).await.expect("udp");
    assert_eq!((udp[2] & 0x02, udp.last()), (0x02, Some(&1)));
    let tcp = f.forward(&query(), true).await.expect("tcp");
    assert_eq!((tcp[2] & 0x02, tcp.last(), &tcp[..2]), (0, Some(&7), &[0x12, 0x34][..]));
}

#[test]
fn permits_are_bounded() {
    let f = Forwarder::new(cfg(vec![]));
    let (a, b) = (f.try_permit(), f.try_permit());
    assert!(a.is_some() && b.is_some());
    assert!(f.try_permit().is_none());
    drop(a);
    assert!(f.try_permit().is_some());
}

#[test]
fn hostile_queries_are_not_forwarded() {
    assert_eq!(question_span(&[0; 11]), None);
    let mut two = query();
    two[5] = 2;
    assert_eq!(question_span(&two), None);
    let mut cut = query();
    cut.truncate(cut.len() - 1);
    assert_eq!(question_span(&cut), None);
    let mut pointer = query();
    pointer[12] = 0xC0;
    assert_eq!(question_span(&pointer), None);
    assert_eq!(servfail(&pointer), None);
}
