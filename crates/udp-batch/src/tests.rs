//! Real sockets on loopback.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::{RecvBatch, SendBatch};

fn pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    }
    (a, b)
}

/// Receives until `want` datagrams have come (a batch may hold fewer than were sent).
fn recv_all(batch: &mut RecvBatch, socket: &UdpSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    while got.len() < want {
        let n = batch.recv(socket).expect("recv");
        assert!(n >= 1 && n <= batch.capacity() && n == batch.len());
        for i in 0..n {
            let (bytes, src) = batch.get(i).expect("datagram");
            got.push((bytes.to_vec(), src.expect("source")));
        }
        assert!(batch.get(n).is_none());
    }
    got
}

#[test]
fn queued_datagrams_come_in_order_with_their_sources() {
    let (server, client) = pair();
    let to = server.local_addr().expect("addr");
    for i in 0..20u8 {
        client.send_to(&[i; 3][..usize::from(i % 3) + 1], to).expect("send");
    }
    let mut batch = RecvBatch::new(8, 64);
    let got = recv_all(&mut batch, &server, 20);
    let from = client.local_addr().expect("addr");
    for (i, (bytes, src)) in got.iter().enumerate() {
        let i = u8::try_from(i).expect("small");
        assert_eq!(bytes, &[i; 3][..usize::from(i % 3) + 1]);
        assert_eq!(*src, from);
    }
    #[cfg(target_os = "linux")]
    assert!(batch.len() > 1 || got.len() == 1, "queued datagrams are taken in one call");
}

#[test]
fn a_long_datagram_is_cut_to_the_slot_and_an_empty_one_is_kept() {
    let (server, client) = pair();
    let to = server.local_addr().expect("addr");
    client.send_to(&[7u8; 3000], to).expect("send");
    client.send_to(&[], to).expect("send");
    client.send_to(&[1, 2, 3], to).expect("send");
    let mut batch = RecvBatch::new(4, 100);
    let got = recv_all(&mut batch, &server, 3);
    assert_eq!(got[0].0, vec![7u8; 100]);
    assert!(got[1].0.is_empty());
    assert_eq!(got[2].0, vec![1, 2, 3]);
}

#[test]
fn nothing_queued_times_out_as_recv_from_does() {
    let (server, _client) = pair();
    server.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
    let mut batch = RecvBatch::new(4, 100);
    let error = batch.recv(&server).expect_err("nothing to read");
    assert!(matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{error}");
    assert!(batch.is_empty() && batch.get(0).is_none());
}

#[test]
fn more_datagrams_than_the_capacity_are_all_sent_in_order() {
    let (server, client) = pair();
    let to = client.local_addr().expect("addr");
    let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) + 1]).collect();
    let mut sender = SendBatch::new(16);
    let sent = sender.send(&server, payloads.iter().map(|p| (&p[..], to)), |i, e| panic!("datagram {i}: {e}"));
    assert_eq!(sent, 50);
    let mut batch = RecvBatch::new(64, 256);
    let got = recv_all(&mut batch, &client, 50);
    let from = server.local_addr().expect("addr");
    for (p, (bytes, src)) in payloads.iter().zip(&got) {
        assert_eq!(p, bytes);
        assert_eq!(*src, from);
    }
}

#[test]
fn a_refused_datagram_is_reported_and_the_others_still_go() {
    let (server, client) = pair();
    let to = client.local_addr().expect("addr");
    // An IPv6 destination on an IPv4 socket, and port 0: both refused by the kernel.
    let bad6: SocketAddr = "[::1]:9".parse().expect("addr");
    let bad0: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let list = [(&b"a"[..], to), (&b"x"[..], bad6), (&b"b"[..], to), (&b"y"[..], bad0), (&b"c"[..], to)];
    let mut errors = Vec::new();
    let sent = SendBatch::new(8).send(&server, list.iter().copied(), |i, _| errors.push(i));
    assert_eq!(errors, vec![1, 3]);
    assert_eq!(sent, 3);
    let got = recv_all(&mut RecvBatch::new(8, 16), &client, 3);
    let bytes: Vec<&[u8]> = got.iter().map(|(b, _)| &b[..]).collect();
    assert_eq!(bytes, vec![&b"a"[..], b"b", b"c"]);
}

#[test]
fn ipv6_sources_and_destinations_round_trip() {
    let Ok(server) = UdpSocket::bind("[::1]:0") else { return }; // no IPv6 loopback here
    let client = UdpSocket::bind("[::1]:0").expect("bind");
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    client.send_to(b"q", server.local_addr().expect("addr")).expect("send");
    let mut batch = RecvBatch::new(4, 16);
    let got = recv_all(&mut batch, &server, 1);
    assert_eq!(got[0], (b"q".to_vec(), client.local_addr().expect("addr")));
    let sent = SendBatch::new(4).send(&server, [(&b"r"[..], got[0].1)], |i, e| panic!("{i}: {e}"));
    assert_eq!(sent, 1);
    let back = recv_all(&mut batch, &client, 1);
    assert_eq!(back[0], (b"r".to_vec(), server.local_addr().expect("addr")));
}

#[test]
fn capacities_are_bounded() {
    assert_eq!(RecvBatch::new(0, 0).capacity(), 1);
    assert_eq!(RecvBatch::new(1 << 20, 1).capacity(), super::MAX_BATCH);
}
