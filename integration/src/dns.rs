//! A minimal real DNS client: hickory-proto messages over UDP and TCP sockets.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// What a query returned, flattened for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Response code.
    pub rcode: ResponseCode,
    /// Truncated flag.
    pub truncated: bool,
    /// A/AAAA addresses in the answer section.
    pub addrs: Vec<IpAddr>,
    /// SRV (port, target) in the answer section.
    pub srv: Vec<(u16, String)>,
    /// A/AAAA (name, address) in the additional section.
    pub additional: Vec<(String, IpAddr)>,
    /// True if the authority section holds an SOA.
    pub soa_in_authority: bool,
}

fn build(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).expect("query name"), rtype));
    m.to_vec().expect("encode query")
}

fn flatten(m: &Message) -> Reply {
    let mut addrs = Vec::new();
    let mut srv = Vec::new();
    for r in &m.answers {
        match &r.data {
            RData::A(a) => addrs.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => addrs.push(IpAddr::V6(a.0)),
            RData::SRV(s) => srv.push((s.port, s.target.to_ascii())),
            _ => {}
        }
    }
    let mut additional = Vec::new();
    for r in &m.additionals {
        match &r.data {
            RData::A(a) => additional.push((r.name.to_ascii(), IpAddr::V4(a.0))),
            RData::AAAA(a) => additional.push((r.name.to_ascii(), IpAddr::V6(a.0))),
            _ => {}
        }
    }
    let soa_in_authority = m.authorities.iter().any(|r| matches!(r.data, RData::SOA(_)));
    Reply {
        rcode: m.metadata.response_code,
        truncated: m.metadata.truncation,
        addrs,
        srv,
        additional,
        soa_in_authority,
    }
}

/// One query over UDP; `None` on timeout (2 s) or undecodable reply.
pub fn udp(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Reply> {
    udp_timeout(server, name, rtype, Duration::from_secs(2))
}

/// One query over UDP waiting up to `wait`; `None` on timeout or undecodable reply.
pub fn udp_timeout(server: SocketAddr, name: &str, rtype: RecordType, wait: Duration) -> Option<Reply> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(wait)).ok()?;
    sock.send_to(&build(name, rtype), server).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok().map(|m| flatten(&m))
}

/// One query over TCP (2-byte length framing).
pub fn tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Reply> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let q = build(name, rtype);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Message::from_vec(&buf).ok().map(|m| flatten(&m))
}
