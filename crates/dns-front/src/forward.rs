//! Forwarding to upstream resolvers (`--recursor`): names outside the domain, and reverse
//! names of addresses the catalog does not know, are relayed instead of REFUSED.
//!
//! Contract:
//!
//! * The client's query is relayed as bytes (EDNS and every flag passed through), with a fresh
//!   random ID on a fresh socket (random source port) connected to the upstream; a reply is
//!   accepted only from that upstream, with that ID, QR set and the same question bytes. The
//!   client's ID is written back before the reply is returned.
//! * Upstreams are tried in order; each gets [`ForwardConfig::timeout`] in all (UDP and any TCP
//!   retry). A timeout, a socket error, an unreadable reply, or SERVFAIL / REFUSED from the
//!   upstream moves on to the next; when all fail the caller answers SERVFAIL.
//! * UDP first. A truncated (TC) reply is returned as is to a UDP client (the client retries
//!   over TCP, and we then forward over TCP); for a TCP client the query is retried over TCP to
//!   the same upstream.
//! * Concurrency is bounded by [`ForwardConfig::max_in_flight`] permits: a query that finds
//!   none is answered SERVFAIL at once ([`Forwarder::try_permit`]), so a flood never spawns
//!   more than that many tasks. Replies are read into a bounded buffer (64 KiB at most).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

/// Default time given to one upstream.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default bound on queries being forwarded at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Upstream resolvers, tried in this order.
    pub upstreams: Vec<SocketAddr>,
    /// Time given to each upstream (UDP and a TCP retry together).
    pub timeout: Duration,
    /// Queries forwarded at once, at most; beyond it, SERVFAIL at once.
    pub max_in_flight: usize,
}

impl ForwardConfig {
    /// Forwarding to `upstreams` with the default timeout and concurrency.
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        ForwardConfig { upstreams, timeout: DEFAULT_TIMEOUT, max_in_flight: DEFAULT_MAX_IN_FLIGHT }
    }
}

/// The forwarder shared by the UDP and TCP loops.
#[derive(Debug)]
pub struct Forwarder {
    cfg: ForwardConfig,
    permits: Arc<Semaphore>,
    ids: RandomState,
    counter: AtomicU64,
}

impl Forwarder {
    /// A forwarder for `cfg`.
    pub fn new(cfg: ForwardConfig) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
        Forwarder { cfg, permits, ids: RandomState::new(), counter: AtomicU64::new(0) }
    }

    /// A permit to forward one query, or `None` when [`ForwardConfig::max_in_flight`] are
    /// already under way.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// An unpredictable query ID (SipHash of a counter under a random key).
    fn fresh_id(&self) -> u16 {
        let mut h = self.ids.build_hasher();
        h.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        h.finish() as u16
    }

    /// Relays `query` (a whole DNS message) to the upstreams in turn; the first good reply,
    /// with the client's ID, or `None` when every upstream failed. `tcp_client` says whether a
    /// truncated UDP reply is retried over TCP.
    pub async fn forward(&self, query: &[u8], tcp_client: bool) -> Option<Vec<u8>> {
        let question = question_span(query)?;
        let client_id = [query[0], query[1]];
        for upstream in &self.cfg.upstreams {
            let deadline = Instant::now() + self.cfg.timeout;
            let mut relayed = query.to_vec();
            relayed[..2].copy_from_slice(&self.fresh_id().to_be_bytes());
            let reply = match timeout_at(deadline, udp_exchange(*upstream, &relayed, question.clone())).await {
                Ok(Ok(reply)) => reply,
                _ => continue,
            };
            let reply = if tcp_client && reply[2] & 0x02 != 0 {
                match timeout_at(deadline, tcp_exchange(*upstream, &relayed, question.clone())).await {
                    Ok(Ok(reply)) => reply,
                    _ => continue,
                }
            } else {
                reply
            };
            if matches!(reply[3] & 0x0F, 2 | 5) {
                continue; // SERVFAIL or REFUSED: the next upstream may do better
            }
            let mut reply = reply;
            reply[..2].copy_from_slice(&client_id);
            return Some(reply);
        }
        None
    }
}

/// Whether `reply` answers `query` (ID, QR, same question bytes).
fn matches(reply: &[u8], query: &[u8], question: &std::ops::Range<usize>) -> bool {
    reply.len() >= question.end
        && reply[..2] == query[..2]
        && reply[2] & 0x80 != 0
        && reply[4..6] == query[4..6]
        && reply[question.clone()] == query[question.clone()]
}

async fn udp_exchange(upstream: SocketAddr, query: &[u8], question: std::ops::Range<usize>) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    // Bounded by the caller's deadline; stray datagrams (wrong ID) are skipped.
    loop {
        let n = socket.recv(&mut buf).await?;
        if matches(&buf[..n], query, &question) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, query: &[u8], question: std::ops::Range<usize>) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    if matches(&reply, query, &question) { Ok(reply) } else { Err(io::ErrorKind::InvalidData.into()) }
}

use crate::wire::question_span;

/// SERVFAIL for `query`: its ID, opcode and RD, RA set, its question, nothing else. `None`
/// when the question does not read.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let question = question_span(query)?;
    let mut out = Vec::with_capacity(question.end);
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80 | 2);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[question]);
    Some(out)
}

#[cfg(test)]
mod tests;
